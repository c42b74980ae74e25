//! SubjectPublicKeyInfo from the raw public-key attributes a PKCS#11 token reports, and the key hash.
//! Pure functions: the PKCS#11 module and the mock both use them.

use crate::script::KeyAlgorithm;
use const_oid::db::{fips204, rfc5912, rfc5912::ID_EC_PUBLIC_KEY};
use der::asn1::{AnyRef, BitString, ObjectIdentifier, OctetString, UintRef};
use der::{Decode, Encode};
use sha2::{Digest, Sha256};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

/// Named-curve OID of an EC algorithm; `None` for RSA.
pub fn curve_oid(algorithm: KeyAlgorithm) -> Option<ObjectIdentifier> {
    match algorithm {
        KeyAlgorithm::P256 => Some(rfc5912::SECP_256_R_1),
        KeyAlgorithm::P384 => Some(rfc5912::SECP_384_R_1),
        _ => None,
    }
}

/// RFC 9881's OID of an ML-DSA parameter set (id-ml-dsa-44/65/87); `None` for other algorithms.
pub fn ml_dsa_oid(algorithm: KeyAlgorithm) -> Option<ObjectIdentifier> {
    match algorithm {
        KeyAlgorithm::MlDsa44 => Some(fips204::ID_ML_DSA_44),
        KeyAlgorithm::MlDsa65 => Some(fips204::ID_ML_DSA_65),
        KeyAlgorithm::MlDsa87 => Some(fips204::ID_ML_DSA_87),
        _ => None,
    }
}

/// FIPS 204 sizes in bytes of an ML-DSA parameter set: (public key, signature).
pub fn ml_dsa_sizes(algorithm: KeyAlgorithm) -> Option<(usize, usize)> {
    match algorithm {
        KeyAlgorithm::MlDsa44 => Some((1312, 2420)),
        KeyAlgorithm::MlDsa65 => Some((1952, 3309)),
        KeyAlgorithm::MlDsa87 => Some((2592, 4627)),
        _ => None,
    }
}

/// The ML-DSA parameter set an SPKI or signature algorithm OID names.
pub fn ml_dsa_of_oid(oid: &ObjectIdentifier) -> Option<KeyAlgorithm> {
    [
        KeyAlgorithm::MlDsa44,
        KeyAlgorithm::MlDsa65,
        KeyAlgorithm::MlDsa87,
    ]
    .into_iter()
    .find(|a| ml_dsa_oid(*a).as_ref() == Some(oid))
}

/// SPKI for an ML-DSA key (RFC 9881): the parameter set's OID with absent parameters, and the raw
/// public key (CKA_VALUE) as the BIT STRING.
pub fn ml_dsa_spki_der(algorithm: KeyAlgorithm, value: &[u8]) -> Result<Vec<u8>, String> {
    let (oid, (size, _)) = ml_dsa_oid(algorithm)
        .zip(ml_dsa_sizes(algorithm))
        .ok_or_else(|| format!("{algorithm} is not an ML-DSA algorithm"))?;
    if value.len() != size {
        return Err(format!(
            "CKA_VALUE of an {algorithm} public key is {} bytes, expected {size}",
            value.len()
        ));
    }
    let spki = SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid,
            parameters: None,
        },
        subject_public_key: BitString::from_bytes(value).map_err(|e| e.to_string())?,
    };
    spki.to_der().map_err(|e| e.to_string())
}

/// DER of the namedCurve OID, the value PKCS#11 expects in CKA_EC_PARAMS.
pub fn ec_params_der(algorithm: KeyAlgorithm) -> Option<Vec<u8>> {
    curve_oid(algorithm).and_then(|oid| oid.to_der().ok())
}

/// SPKI for an EC key. `ec_point` is CKA_EC_POINT, which PKCS#11 v2.40 defines as a DER OCTET STRING
/// around the uncompressed point; some tokens return the bare point, so both are accepted.
pub fn ec_spki_der(algorithm: KeyAlgorithm, ec_point: &[u8]) -> Result<Vec<u8>, String> {
    let curve =
        curve_oid(algorithm).ok_or_else(|| format!("{algorithm} is not an EC algorithm"))?;
    let expected = match algorithm {
        KeyAlgorithm::P256 => 65,
        _ => 97,
    };
    // Only unwrap when the length fits a DER OCTET STRING around a point of this curve: a bare point
    // can itself look like DER (first coordinate byte 0x3f).
    let point = match OctetString::from_der(ec_point) {
        Ok(os) if ec_point.len() == expected + 2 => os.as_bytes().to_vec(),
        _ => ec_point.to_vec(),
    };
    if point.len() != expected || point.first() != Some(&0x04) {
        return Err(format!(
            "CKA_EC_POINT is not an uncompressed {algorithm} point ({} bytes, expected {expected})",
            point.len()
        ));
    }
    let params = AnyRef::from(&curve);
    let spki = SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: ID_EC_PUBLIC_KEY,
            parameters: Some(params.into()),
        },
        subject_public_key: BitString::from_bytes(&point).map_err(|e| e.to_string())?,
    };
    spki.to_der().map_err(|e| e.to_string())
}

/// SPKI for an RSA key from CKA_MODULUS and CKA_PUBLIC_EXPONENT (big-endian unsigned).
pub fn rsa_spki_der(modulus: &[u8], public_exponent: &[u8]) -> Result<Vec<u8>, String> {
    let key = pkcs1::RsaPublicKey {
        modulus: UintRef::new(modulus).map_err(|e| e.to_string())?,
        public_exponent: UintRef::new(public_exponent).map_err(|e| e.to_string())?,
    };
    let pkcs1_der = key.to_der().map_err(|e| e.to_string())?;
    let spki = SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: rfc5912::RSA_ENCRYPTION,
            parameters: Some(der::asn1::Null.into()),
        },
        subject_public_key: BitString::from_bytes(&pkcs1_der).map_err(|e| e.to_string())?,
    };
    spki.to_der().map_err(|e| e.to_string())
}

/// A public key's raw PKCS#11 attributes, read back out of a DER SubjectPublicKeyInfo (issue 12:
/// a restored key's public object is made from its original certificate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicParts {
    /// CKA_EC_PARAMS (namedCurve DER) and CKA_EC_POINT (DER OCTET STRING around the point).
    Ec { params: Vec<u8>, point: Vec<u8> },
    /// CKA_MODULUS and CKA_PUBLIC_EXPONENT, big-endian unsigned.
    Rsa { modulus: Vec<u8>, exponent: Vec<u8> },
}

/// The algorithm and raw attributes of an SPKI keyrite could have made; the SPKI rebuilt from them
/// must equal the input, so the key hash cannot change on the way.
pub fn public_parts(spki_der: &[u8]) -> Result<(KeyAlgorithm, PublicParts), String> {
    let spki = SubjectPublicKeyInfoOwned::from_der(spki_der).map_err(|e| e.to_string())?;
    let key = spki
        .subject_public_key
        .as_bytes()
        .ok_or("the public key has unused bits")?;
    let (algorithm, parts, rebuilt) = if spki.algorithm.oid == ID_EC_PUBLIC_KEY {
        let curve: ObjectIdentifier = spki
            .algorithm
            .parameters
            .as_ref()
            .ok_or("an EC key without curve parameters")?
            .decode_as()
            .map_err(|e| format!("EC parameters: {e}"))?;
        let algorithm = [KeyAlgorithm::P256, KeyAlgorithm::P384]
            .into_iter()
            .find(|a| curve_oid(*a) == Some(curve))
            .ok_or_else(|| format!("curve {curve} is not P-256 or P-384"))?;
        let params = ec_params_der(algorithm).ok_or("no curve parameters")?;
        let point = OctetString::new(key.to_vec())
            .and_then(|o| o.to_der())
            .map_err(|e| e.to_string())?;
        let rebuilt = ec_spki_der(algorithm, &point)?;
        (algorithm, PublicParts::Ec { params, point }, rebuilt)
    } else if spki.algorithm.oid == rfc5912::RSA_ENCRYPTION {
        let rsa: pkcs1::RsaPublicKey<UintRef<'_>> =
            pkcs1::RsaPublicKey::from_der(key).map_err(|e| e.to_string())?;
        let modulus = rsa.modulus.as_bytes().to_vec();
        let exponent = rsa.public_exponent.as_bytes().to_vec();
        let algorithm = match modulus.len() * 8 {
            3072 => KeyAlgorithm::Rsa3072,
            4096 => KeyAlgorithm::Rsa4096,
            bits => return Err(format!("an RSA key of {bits} bits")),
        };
        let rebuilt = rsa_spki_der(&modulus, &exponent)?;
        (algorithm, PublicParts::Rsa { modulus, exponent }, rebuilt)
    } else {
        return Err(format!(
            "key algorithm {} is not RSA or EC",
            spki.algorithm.oid
        ));
    };
    if rebuilt != spki_der {
        return Err("the public key is not in the DER form keyrite writes".into());
    }
    Ok((algorithm, parts))
}

/// The key hash: SHA-256 over the DER SubjectPublicKeyInfo, lowercase hex. The same bytes that
/// `openssl pkey -pubin -outform DER | sha256sum` hashes.
pub fn key_hash(spki_der: &[u8]) -> String {
    hex::encode(Sha256::digest(spki_der))
}

/// Lowercase hex in groups of 4, for reading aloud and for the report.
pub fn grouped_hex(hex: &str) -> String {
    hex.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_parts_round_trip_to_the_same_spki_and_refuse_other_forms() {
        let point = {
            let mut p = vec![0x04];
            p.extend([7u8; 64]);
            p
        };
        let ec = ec_spki_der(KeyAlgorithm::P256, &point).unwrap();
        let (alg, parts) = public_parts(&ec).unwrap();
        assert_eq!(alg, KeyAlgorithm::P256);
        let PublicParts::Ec {
            params,
            point: wrapped,
        } = parts
        else {
            panic!("an EC key");
        };
        assert_eq!(Some(params), ec_params_der(KeyAlgorithm::P256));
        assert_eq!(ec_spki_der(KeyAlgorithm::P256, &wrapped).unwrap(), ec);
        let mut modulus = vec![0xc5u8];
        modulus.extend([0x11u8; 383]);
        let rsa = rsa_spki_der(&modulus, &[1, 0, 1]).unwrap();
        let (alg, parts) = public_parts(&rsa).unwrap();
        assert_eq!(alg, KeyAlgorithm::Rsa3072);
        assert_eq!(
            parts,
            PublicParts::Rsa {
                modulus,
                exponent: vec![1, 0, 1]
            }
        );
        assert!(public_parts(&rsa[..rsa.len() - 1]).is_err());
    }

    #[test]
    fn grouped_hex_groups_by_four() {
        assert_eq!(grouped_hex("0123456789"), "0123 4567 89");
    }

    #[test]
    fn an_ml_dsa_spki_is_the_oid_without_parameters_around_the_raw_key() {
        let der = ml_dsa_spki_der(KeyAlgorithm::MlDsa65, &[7u8; 1952]).unwrap();
        let spki = SubjectPublicKeyInfoOwned::from_der(&der).unwrap();
        assert_eq!(spki.algorithm.oid.to_string(), "2.16.840.1.101.3.4.3.18");
        assert!(spki.algorithm.parameters.is_none());
        assert_eq!(spki.subject_public_key.raw_bytes(), &[7u8; 1952][..]);
        let err = ml_dsa_spki_der(KeyAlgorithm::MlDsa87, &[7u8; 1952]).unwrap_err();
        assert!(err.contains("expected 2592"), "{err}");
        assert_eq!(
            ml_dsa_of_oid(&fips204::ID_ML_DSA_44),
            Some(KeyAlgorithm::MlDsa44)
        );
    }

    #[test]
    fn ec_point_must_be_uncompressed_and_sized() {
        let err = ec_spki_der(KeyAlgorithm::P256, &[0x04; 10]).unwrap_err();
        assert!(err.contains("10 bytes"), "{err}");
    }
}
