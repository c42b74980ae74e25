//! ML-DSA (FIPS 204) signature verification for certificates, CRLs and requests, with RustCrypto's
//! `ml-dsa` crate. keyrite only verifies here: ML-DSA signing happens in the token (CKM_ML_DSA).
//! RFC 9881: the SPKI and the signature algorithm are the parameter set's OID with absent parameters,
//! the public key is the raw FIPS 204 encoding, and signatures are pure ML-DSA with an empty context.

use crate::hsm::spki::{ml_dsa_of_oid, ml_dsa_sizes};
use crate::script::KeyAlgorithm;
use der::asn1::ObjectIdentifier;
use der::Decode;
use ml_dsa::{
    EncodedVerifyingKey, MlDsa44, MlDsa65, MlDsa87, MlDsaParams, Signature, VerifyingKey,
};
use spki::SubjectPublicKeyInfoOwned;

/// The ML-DSA parameter set a signature algorithm OID names, if any.
pub fn parameter_set(algorithm: &ObjectIdentifier) -> Option<KeyAlgorithm> {
    ml_dsa_of_oid(algorithm)
}

/// Verify the pure ML-DSA `signature` over `message` (empty context) with the key in `spki_der`.
/// The key must be of the parameter set `algorithm` names: RFC 9881 allows no other pairing.
pub fn verify(
    spki_der: &[u8],
    algorithm: &ObjectIdentifier,
    message: &[u8],
    signature: &[u8],
) -> Result<(), String> {
    let set = parameter_set(algorithm)
        .ok_or_else(|| format!("{algorithm} is not an ML-DSA signature algorithm"))?;
    let spki = SubjectPublicKeyInfoOwned::from_der(spki_der)
        .map_err(|e| format!("the public key does not parse: {e}"))?;
    if ml_dsa_of_oid(&spki.algorithm.oid) != Some(set) {
        return Err(format!(
            "the signature is {set}, but the key is {} (RFC 9881: the key's parameter set signs)",
            spki.algorithm.oid
        ));
    }
    if spki.algorithm.parameters.is_some() {
        return Err("the ML-DSA key's algorithm identifier carries parameters; RFC 9881 requires them absent".into());
    }
    let key = spki
        .subject_public_key
        .as_bytes()
        .ok_or("the public key BIT STRING has unused bits")?;
    let (key_len, sig_len) = ml_dsa_sizes(set).unwrap_or_default();
    if key.len() != key_len || signature.len() != sig_len {
        return Err(format!(
            "an {set} public key is {key_len} bytes and a signature {sig_len}; got {} and {}",
            key.len(),
            signature.len()
        ));
    }
    let ok = match set {
        KeyAlgorithm::MlDsa44 => verify_with::<MlDsa44>(key, message, signature),
        KeyAlgorithm::MlDsa65 => verify_with::<MlDsa65>(key, message, signature),
        _ => verify_with::<MlDsa87>(key, message, signature),
    }?;
    if ok {
        Ok(())
    } else {
        Err(format!("the {set} signature does not verify"))
    }
}

fn verify_with<P: MlDsaParams>(key: &[u8], message: &[u8], sig: &[u8]) -> Result<bool, String> {
    let encoded = EncodedVerifyingKey::<P>::try_from(key)
        .map_err(|_| "the ML-DSA public key has the wrong length".to_string())?;
    let key = VerifyingKey::<P>::decode(&encoded);
    let sig = Signature::<P>::try_from(sig).map_err(|_| {
        "the ML-DSA signature is malformed (its hint encoding is invalid)".to_string()
    })?;
    Ok(key.verify_with_context(message, &[], &sig))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::x509::signer::verify_self_signed;
    use der::{DecodePem, Encode};
    use x509_cert::Certificate;

    /// A root an ML-DSA-65 key in Kryoptic signed during a rehearsal; OpenSSL 3.5.5 accepts it
    /// (`verify -check_ss_sig`).
    const ROOT: &str = include_str!("testdata/mldsa65-root.pem");

    fn parts() -> (Vec<u8>, ObjectIdentifier, Vec<u8>, Vec<u8>) {
        let cert = Certificate::from_pem(ROOT).unwrap();
        let tbs = cert.tbs_certificate();
        (
            tbs.subject_public_key_info().to_der().unwrap(),
            cert.signature_algorithm().oid,
            tbs.to_der().unwrap(),
            cert.signature().raw_bytes().to_vec(),
        )
    }

    #[test]
    fn a_token_made_ml_dsa_65_root_verifies_and_one_flipped_bit_does_not() {
        let cert = Certificate::from_pem(ROOT).unwrap();
        verify_self_signed(&cert).unwrap();
        let (spki, oid, tbs, sig) = parts();
        assert_eq!(parameter_set(&oid), Some(KeyAlgorithm::MlDsa65));
        assert_eq!(sig.len(), 3309);
        for at in [0, 1000, sig.len() - 1] {
            let mut bad = sig.clone();
            bad[at] ^= 0x01;
            assert!(verify(&spki, &oid, &tbs, &bad).is_err(), "bit at {at}");
        }
        let mut other = tbs.clone();
        other[10] ^= 0x01;
        assert!(verify(&spki, &oid, &other, &sig).is_err());
    }

    #[test]
    fn an_ml_dsa_key_signs_under_its_parameter_set_oid_without_parameters() {
        use crate::script::HashAlgorithm;
        use spki::DynSignatureAlgorithmIdentifier;
        let (spki, oid, _, _) = parts();
        let key = crate::x509::HsmKey::new("k", KeyAlgorithm::MlDsa65, HashAlgorithm::Sha384, spki);
        let id = key.signature_algorithm_identifier().unwrap();
        assert_eq!(id.oid, oid);
        assert!(id.parameters.is_none(), "RFC 9881: parameters absent");
        assert_eq!(crate::x509::signer::algorithm_name(&oid), "ML-DSA-65");
    }

    #[test]
    fn the_parameter_set_of_key_and_signature_must_agree() {
        let (spki, _, tbs, sig) = parts();
        let e = verify(&spki, &const_oid::db::fips204::ID_ML_DSA_87, &tbs, &sig).unwrap_err();
        assert!(e.contains("ML-DSA-87") && e.contains("the key is"), "{e}");
        let e = verify(
            &spki,
            &const_oid::db::fips204::ID_ML_DSA_65,
            &tbs,
            &sig[..100],
        )
        .unwrap_err();
        assert!(e.contains("3309"), "{e}");
    }
}
