//! An HSM-resident key as the signer that x509-cert's builder (and later CMS) expects, and
//! verification of what the HSM signed.

use crate::hsm::{Hsm, HsmError, SignMechanism};
use crate::script::{HashAlgorithm, KeyAlgorithm};
use const_oid::db::rfc5912::{
    ECDSA_WITH_SHA_256, ECDSA_WITH_SHA_384, SHA_256_WITH_RSA_ENCRYPTION,
    SHA_384_WITH_RSA_ENCRYPTION,
};
use der::asn1::ObjectIdentifier;
use der::Encode;
use sha2::{Digest, Sha256, Sha384};
use signature::{KeypairRef, Verifier};
use spki::{
    AlgorithmIdentifierOwned, DecodePublicKey, Document, DynSignatureAlgorithmIdentifier,
    EncodePublicKey, SubjectPublicKeyInfoOwned,
};
use x509_cert::Certificate;

/// The public half of an HSM key as DER SubjectPublicKeyInfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpkiBytes(pub Vec<u8>);

impl EncodePublicKey for SpkiBytes {
    fn to_public_key_der(&self) -> spki::Result<Document> {
        Ok(Document::try_from(self.0.as_slice())?)
    }
}

/// A key pair that lives in the HSM, named by label; signing goes through [`Hsm::sign`].
#[derive(Debug, Clone)]
pub struct HsmKey {
    pub label: String,
    pub algorithm: KeyAlgorithm,
    pub hash: HashAlgorithm,
    spki: SpkiBytes,
}

impl HsmKey {
    pub fn new(
        label: &str,
        algorithm: KeyAlgorithm,
        hash: HashAlgorithm,
        spki_der: Vec<u8>,
    ) -> Self {
        HsmKey {
            label: label.to_string(),
            algorithm,
            hash,
            spki: SpkiBytes(spki_der),
        }
    }

    pub fn spki(&self) -> Result<SubjectPublicKeyInfoOwned, HsmError> {
        use der::Decode;
        SubjectPublicKeyInfoOwned::from_der(&self.spki.0).map_err(|e| {
            HsmError::new(
                "read public key",
                format!("the HSM's public key does not parse: {e}"),
                "check the HSM module",
            )
        })
    }

    /// Sign `message` inside the HSM. RSA: CKM_SHA256/384_RSA_PKCS over the message. ECDSA: hash here,
    /// CKM_ECDSA over the digest, then DER-encode r‖s as X.509 requires.
    pub fn sign(&self, hsm: &mut dyn Hsm, message: &[u8]) -> Result<Vec<u8>, HsmError> {
        let bad_sig = |e: &dyn std::fmt::Display| {
            HsmError::new(
                "C_Sign",
                format!("the HSM returned a malformed ECDSA signature: {e}"),
                "check that the key label names an EC key of the script's curve",
            )
        };
        match (self.algorithm, self.hash) {
            (KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096, HashAlgorithm::Sha256) => {
                hsm.sign(&self.label, SignMechanism::RsaPkcs1Sha256, message)
            }
            (KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096, HashAlgorithm::Sha384) => {
                hsm.sign(&self.label, SignMechanism::RsaPkcs1Sha384, message)
            }
            (KeyAlgorithm::MlDsa44 | KeyAlgorithm::MlDsa65 | KeyAlgorithm::MlDsa87, _) => {
                hsm.sign(&self.label, SignMechanism::MlDsa, message)
            }
            (KeyAlgorithm::P256 | KeyAlgorithm::P384, hash) => {
                let digest = match hash {
                    HashAlgorithm::Sha256 => Sha256::digest(message).to_vec(),
                    HashAlgorithm::Sha384 => Sha384::digest(message).to_vec(),
                };
                let raw = hsm.sign(&self.label, SignMechanism::EcdsaPrehashed, &digest)?;
                Ok(match self.algorithm {
                    KeyAlgorithm::P256 => p256::ecdsa::Signature::from_slice(&raw)
                        .map_err(|e| bad_sig(&e))?
                        .to_der()
                        .to_bytes()
                        .to_vec(),
                    _ => p384::ecdsa::Signature::from_slice(&raw)
                        .map_err(|e| bad_sig(&e))?
                        .to_der()
                        .to_bytes()
                        .to_vec(),
                })
            }
        }
    }

    pub fn signature_oid(&self) -> ObjectIdentifier {
        // RFC 9881: an ML-DSA signature's OID is the key's parameter set; no separate hash.
        if let Some(oid) = crate::hsm::spki::ml_dsa_oid(self.algorithm) {
            return oid;
        }
        match (self.algorithm.is_rsa(), self.hash) {
            (true, HashAlgorithm::Sha256) => SHA_256_WITH_RSA_ENCRYPTION,
            (true, HashAlgorithm::Sha384) => SHA_384_WITH_RSA_ENCRYPTION,
            (false, HashAlgorithm::Sha256) => ECDSA_WITH_SHA_256,
            (false, HashAlgorithm::Sha384) => ECDSA_WITH_SHA_384,
        }
    }
}

impl AsRef<SpkiBytes> for HsmKey {
    fn as_ref(&self) -> &SpkiBytes {
        &self.spki
    }
}

impl KeypairRef for HsmKey {
    type VerifyingKey = SpkiBytes;
}

impl DynSignatureAlgorithmIdentifier for HsmKey {
    fn signature_algorithm_identifier(&self) -> spki::Result<AlgorithmIdentifierOwned> {
        // RFC 4055: RSA PKCS#1 v1.5 carries NULL parameters; RFC 5758 (ECDSA) and RFC 9881
        // (ML-DSA) carry none.
        let parameters = self.algorithm.is_rsa().then(|| der::asn1::Null.into());
        Ok(AlgorithmIdentifierOwned {
            oid: self.signature_oid(),
            parameters,
        })
    }
}

pub fn algorithm_name(oid: &ObjectIdentifier) -> String {
    match *oid {
        SHA_256_WITH_RSA_ENCRYPTION => "sha256WithRSAEncryption".into(),
        SHA_384_WITH_RSA_ENCRYPTION => "sha384WithRSAEncryption".into(),
        ECDSA_WITH_SHA_256 => "ecdsa-with-SHA256".into(),
        ECDSA_WITH_SHA_384 => "ecdsa-with-SHA384".into(),
        other => match super::ml_dsa::parameter_set(&other) {
            // OpenSSL 3.5 names them so; the parameter set is what the report must show.
            Some(set) => set.as_str().into(),
            None => other.to_string(),
        },
    }
}

/// Verify `signature` over `message` with the DER SPKI `spki_der`, for the algorithms keyrite signs.
pub fn verify_signature(
    spki_der: &[u8],
    algorithm: &ObjectIdentifier,
    message: &[u8],
    signature: &[u8],
) -> Result<(), String> {
    let fail = |e: &dyn std::fmt::Display| e.to_string();
    match *algorithm {
        SHA_256_WITH_RSA_ENCRYPTION | SHA_384_WITH_RSA_ENCRYPTION => {
            let key = rsa::PublicKey::from_public_key_der(spki_der).map_err(|e| fail(&e))?;
            let sig = rsa::pkcs1v15::Signature::try_from(signature).map_err(|e| fail(&e))?;
            if *algorithm == SHA_256_WITH_RSA_ENCRYPTION {
                rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key).verify(message, &sig)
            } else {
                rsa::pkcs1v15::VerifyingKey::<Sha384>::new(key).verify(message, &sig)
            }
            .map_err(|e| fail(&e))
        }
        ECDSA_WITH_SHA_256 | ECDSA_WITH_SHA_384 => {
            if let Ok(key) = p256::ecdsa::VerifyingKey::from_public_key_der(spki_der) {
                let sig = p256::ecdsa::Signature::from_der(signature).map_err(|e| fail(&e))?;
                return verify_ecdsa_prehash(&key, algorithm, message, &sig);
            }
            let key =
                p384::ecdsa::VerifyingKey::from_public_key_der(spki_der).map_err(|e| fail(&e))?;
            let sig = p384::ecdsa::Signature::from_der(signature).map_err(|e| fail(&e))?;
            verify_ecdsa_prehash(&key, algorithm, message, &sig)
        }
        other if super::ml_dsa::parameter_set(&other).is_some() => {
            super::ml_dsa::verify(spki_der, &other, message, signature)
        }
        other => Err(format!("unsupported signature algorithm {other}")),
    }
}

fn verify_ecdsa_prehash<K, S>(
    key: &K,
    algorithm: &ObjectIdentifier,
    message: &[u8],
    sig: &S,
) -> Result<(), String>
where
    K: signature::hazmat::PrehashVerifier<S>,
{
    let digest = if *algorithm == ECDSA_WITH_SHA_256 {
        Sha256::digest(message).to_vec()
    } else {
        Sha384::digest(message).to_vec()
    };
    key.verify_prehash(&digest, sig).map_err(|e| e.to_string())
}

/// Check a self-signed certificate's signature with its own public key.
pub fn verify_self_signed(cert: &Certificate) -> Result<(), String> {
    let tbs = cert.tbs_certificate();
    if tbs.signature() != cert.signature_algorithm() {
        return Err("the signed and the outer signature algorithms differ".into());
    }
    let tbs_der = tbs.to_der().map_err(|e| e.to_string())?;
    let spki_der = tbs
        .subject_public_key_info()
        .to_der()
        .map_err(|e| e.to_string())?;
    let signature = cert
        .signature()
        .as_bytes()
        .ok_or("the signature BIT STRING has unused bits")?;
    verify_signature(
        &spki_der,
        &cert.signature_algorithm().oid,
        &tbs_der,
        signature,
    )
}
