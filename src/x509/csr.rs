//! Inputs a CA signs for another CA (issue 11): a PKCS#10 request (PEM or DER), checked before
//! anything reaches the HSM — its self-signature verified, its key strong enough and on a known
//! curve — and, for a cross-certificate, the other CA's certificate or bare public key.

use super::signer::{algorithm_name, verify_signature};
use const_oid::db::rfc5912::{ID_EC_PUBLIC_KEY, RSA_ENCRYPTION, SECP_256_R_1, SECP_384_R_1};
use der::asn1::ObjectIdentifier;
use der::{Decode, Encode};
use sha2::{Digest, Sha256};
use spki::{DecodePublicKey, SubjectPublicKeyInfoOwned};
use x509_cert::name::Name;
use x509_cert::request::CertReq;
use x509_cert::Certificate;

/// The smallest RSA key keyrite ever certifies, and the size below which policy warns (and
/// very-high refuses): design.md's CA key table.
pub const RSA_MIN_BITS: u32 = 2048;
pub const RSA_POLICY_BITS: u32 = 3072;

/// The subject key of a request or certificate, as far as strength goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectKey {
    /// "RSA-3072", "P-256", "P-384".
    pub name: String,
    /// The modulus size of an RSA key.
    pub rsa_bits: Option<u32>,
}

/// What a CA signs for another CA, read and checked.
#[derive(Debug, Clone)]
pub struct CheckedInput {
    /// The input exactly as read, and its SHA-256 (lowercase hex: what `sha256sum` prints).
    pub bytes: Vec<u8>,
    pub sha256: String,
    /// The DER of the request or certificate (or SPKI) inside, and the PEM written to the bundle.
    pub der: Vec<u8>,
    pub pem: String,
    /// The subject the input carries (none for a bare public key).
    pub subject: Option<Name>,
    pub spki: SubjectPublicKeyInfoOwned,
    pub spki_der: Vec<u8>,
    pub key: SubjectKey,
    /// A cross-certified CA's own subjectKeyIdentifier, kept so chains still match by key id.
    pub subject_key_id: Option<Vec<u8>>,
    /// For a request: its signature algorithm, verified.
    pub signature_algorithm: Option<String>,
}

/// PEM (by its label) or DER bytes to DER, with the PEM label found.
fn pem_or_der(bytes: &[u8], labels: &[&str]) -> Result<(Option<String>, Vec<u8>), String> {
    let text = std::str::from_utf8(bytes).ok().map(str::trim_start);
    match text {
        Some(t) if t.starts_with("-----BEGIN ") => {
            let (label, der) = der::pem::decode_vec(t.as_bytes())
                .map_err(|e| format!("the PEM does not decode: {e}"))?;
            if !labels.contains(&label) {
                return Err(format!(
                    "the PEM is a \"{label}\"; expected {}",
                    labels.join(" or ")
                ));
            }
            Ok((Some(label.to_string()), der))
        }
        _ => Ok((None, bytes.to_vec())),
    }
}

fn to_pem(label: &str, der: &[u8]) -> Result<String, String> {
    der::pem::encode_string(label, der::pem::LineEnding::LF, der).map_err(|e| e.to_string())
}

/// Read a PKCS#10 request: decode it, verify its self-signature with its own key, and check the key.
pub fn check_request(bytes: &[u8]) -> Result<CheckedInput, String> {
    let (_, der) = pem_or_der(bytes, &["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"])?;
    let req = CertReq::from_der(&der)
        .map_err(|e| format!("it is not a PKCS#10 certificate request (DER or PEM): {e}"))?;
    let info_der = req.info.to_der().map_err(|e| e.to_string())?;
    let spki_der = req.info.public_key.to_der().map_err(|e| e.to_string())?;
    let signature = req
        .signature
        .as_bytes()
        .ok_or("its signature BIT STRING has unused bits")?;
    verify_signature(&spki_der, &req.algorithm.oid, &info_der, signature).map_err(|e| {
        format!(
            "its signature ({}) does not verify with the key it carries: {e} — the request was \
             damaged or altered; ask the subordinate CA for a new one",
            algorithm_name(&req.algorithm.oid)
        )
    })?;
    let key = subject_key(&spki_der)?;
    Ok(CheckedInput {
        sha256: hex::encode(Sha256::digest(bytes)),
        bytes: bytes.to_vec(),
        pem: to_pem("CERTIFICATE REQUEST", &der)?,
        der,
        subject: Some(req.info.subject.clone()),
        spki: req.info.public_key.clone(),
        spki_der,
        key,
        subject_key_id: None,
        signature_algorithm: Some(algorithm_name(&req.algorithm.oid)),
    })
}

/// Read another CA's certificate (to cross-certify its key and subject) or a bare public key.
pub fn check_cross_input(bytes: &[u8]) -> Result<CheckedInput, String> {
    let (label, der) = pem_or_der(bytes, &["CERTIFICATE", "PUBLIC KEY"])?;
    let sha256 = hex::encode(Sha256::digest(bytes));
    let as_key = label.as_deref() == Some("PUBLIC KEY")
        || (label.is_none() && Certificate::from_der(&der).is_err());
    if as_key {
        let spki = SubjectPublicKeyInfoOwned::from_der(&der).map_err(|e| {
            format!("it is neither an X.509 certificate nor a public key (DER or PEM): {e}")
        })?;
        let key = subject_key(&der)?;
        return Ok(CheckedInput {
            sha256,
            bytes: bytes.to_vec(),
            pem: to_pem("PUBLIC KEY", &der)?,
            spki_der: der.clone(),
            der,
            subject: None,
            spki,
            key,
            subject_key_id: None,
            signature_algorithm: None,
        });
    }
    let cert =
        Certificate::from_der(&der).map_err(|e| format!("it is not an X.509 certificate: {e}"))?;
    let tbs = cert.tbs_certificate();
    let spki = tbs.subject_public_key_info().clone();
    let spki_der = spki.to_der().map_err(|e| e.to_string())?;
    let key = subject_key(&spki_der)?;
    let ski = tbs
        .get_extension::<x509_cert::ext::pkix::SubjectKeyIdentifier>()
        .ok()
        .flatten()
        .map(|(_, ski)| ski.0.as_bytes().to_vec());
    let ca = tbs
        .get_extension::<x509_cert::ext::pkix::BasicConstraints>()
        .ok()
        .flatten()
        .is_some_and(|(_, bc)| bc.ca);
    if !ca {
        return Err(
            "the certificate is not a CA certificate (no basicConstraints CA:TRUE); a \
                    cross-certificate certifies another CA"
                .into(),
        );
    }
    Ok(CheckedInput {
        sha256,
        bytes: bytes.to_vec(),
        pem: to_pem("CERTIFICATE", &der)?,
        der,
        subject: Some(tbs.subject().clone()),
        spki,
        spki_der,
        key,
        subject_key_id: ski,
        signature_algorithm: None,
    })
}

/// The key's type and size, refusing what a CA must never certify: RSA under 2048 bits, an even or
/// tiny public exponent, curves other than P-256 and P-384, malformed ML-DSA keys, other algorithms.
pub fn subject_key(spki_der: &[u8]) -> Result<SubjectKey, String> {
    let spki = SubjectPublicKeyInfoOwned::from_der(spki_der)
        .map_err(|e| format!("the public key does not decode: {e}"))?;
    let oid = spki.algorithm.oid;
    if oid == RSA_ENCRYPTION {
        let raw = spki
            .subject_public_key
            .as_bytes()
            .ok_or("the RSA key's BIT STRING has unused bits")?;
        let rsa = pkcs1::RsaPublicKey::<der::asn1::UintRef<'_>>::from_der(raw)
            .map_err(|e| format!("the RSA public key does not decode: {e}"))?;
        let bits = bit_length(rsa.modulus.as_bytes());
        let e = rsa.public_exponent.as_bytes();
        if bits < RSA_MIN_BITS {
            return Err(format!(
                "its key is RSA-{bits}, too weak for a CA: keyrite never certifies RSA keys under \
                 {RSA_MIN_BITS} bits (policy asks for {RSA_POLICY_BITS} or more) — have the CA \
                 generate a stronger key (RSA-3072, RSA-4096, P-256 or P-384) and a new request"
            ));
        }
        if e.last().is_none_or(|b| b & 1 == 0) || (e.len() == 1 && e[0] < 3) {
            return Err(format!(
                "its RSA public exponent 0x{} is not an odd number of at least 3",
                hex::encode(e)
            ));
        }
        return Ok(SubjectKey {
            name: format!("RSA-{bits}"),
            rsa_bits: Some(bits),
        });
    }
    if oid == ID_EC_PUBLIC_KEY {
        let curve: Option<ObjectIdentifier> = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as().ok());
        let name = match curve {
            Some(c) if c == SECP_256_R_1 => {
                p256::PublicKey::from_public_key_der(spki_der)
                    .map_err(|e| format!("the P-256 public key is not a valid point: {e}"))?;
                "P-256"
            }
            Some(c) if c == SECP_384_R_1 => {
                p384::PublicKey::from_public_key_der(spki_der)
                    .map_err(|e| format!("the P-384 public key is not a valid point: {e}"))?;
                "P-384"
            }
            other => {
                return Err(format!(
                    "its EC key is on curve {}, which keyrite does not certify for a CA (P-256 or \
                     P-384 only)",
                    other.map_or("(unnamed)".to_string(), |c| c.to_string())
                ))
            }
        };
        return Ok(SubjectKey {
            name: name.into(),
            rsa_bits: None,
        });
    }
    if let Some(set) = crate::hsm::spki::ml_dsa_of_oid(&oid) {
        // RFC 9881: absent parameters and the raw key of the parameter set's size.
        let raw = spki.subject_public_key.as_bytes().unwrap_or_default();
        let size = crate::hsm::spki::ml_dsa_sizes(set).map_or(0, |(k, _)| k);
        if spki.algorithm.parameters.is_some() || raw.len() != size {
            return Err(format!(
                "its {set} key is malformed: RFC 9881 wants no parameters and a {size}-byte key \
                 (got {} bytes)",
                raw.len()
            ));
        }
        return Ok(SubjectKey {
            name: set.as_str().into(),
            rsa_bits: None,
        });
    }
    Err(format!(
        "its key algorithm {oid} is not one keyrite certifies for a CA (RSA, P-256, P-384, ML-DSA)"
    ))
}

fn bit_length(be: &[u8]) -> u32 {
    let digits: Vec<u8> = be.iter().copied().skip_while(|b| *b == 0).collect();
    digits
        .first()
        .map_or(0, |top| digits.len() as u32 * 8 - top.leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A P-256 request made by `openssl req -new` (test vector: openssl 3.0, subject CN=t).
    fn p256_request() -> Vec<u8> {
        let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let subject: Name = "CN=Example Issuing CA".parse().unwrap();
        let builder = x509_cert::builder::RequestBuilder::new(subject).expect("request builder");
        let req = x509_cert::builder::Builder::build::<_, p256::ecdsa::DerSignature>(builder, &key)
            .unwrap();
        req.to_der().unwrap()
    }

    #[test]
    fn a_good_request_passes_and_a_flipped_signature_byte_fails() {
        let der = p256_request();
        let checked = check_request(&der).unwrap();
        assert_eq!(checked.key.name, "P-256");
        assert_eq!(checked.sha256, hex::encode(Sha256::digest(&der)));
        let pem = to_pem("CERTIFICATE REQUEST", &der).unwrap();
        assert_eq!(check_request(pem.as_bytes()).unwrap().der, der);
        let mut bad = der.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x01;
        let err = check_request(&bad).unwrap_err();
        assert!(err.contains("does not verify"), "{err}");
        assert!(check_request(b"not a request").is_err());
        let err = check_request(to_pem("CERTIFICATE", &der).unwrap().as_bytes()).unwrap_err();
        assert!(err.contains("expected"), "{err}");
    }
}
