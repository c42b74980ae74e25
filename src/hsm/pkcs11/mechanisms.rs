//! What the token offers (C_GetMechanismList, C_GetMechanismInfo), and signing whatever the token
//! returns: ECDSA as raw r‖s or as DER, RSA through CKM_SHA256/384_RSA_PKCS or, when the token lacks
//! those, CKM_RSA_PKCS over a DigestInfo built on the host.

use super::{module, Ck, Pkcs11Hsm};
use crate::hsm::capabilities::{rsa_sign_mech, Mech, Offered};
use crate::hsm::{spki, HsmError};
use crate::script::KeyAlgorithm;
use cryptoki::mechanism::dsa::{HedgeType, SignAdditionalContext};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use sha2::{Digest, Sha256, Sha384};

/// Test hooks that make a token look poorer than it is, so the fallbacks run on SoftHSM2:
/// `no_hash_and_sign` hides CKM_SHA256/384_RSA_PKCS, `der_ecdsa` turns the token's raw ECDSA
/// signature into DER as some tokens return it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignQuirks {
    pub no_hash_and_sign: bool,
    pub der_ecdsa: bool,
}

const MECHS: [(Mech, MechanismType); 8] = [
    (Mech::RsaKeyPairGen, MechanismType::RSA_PKCS_KEY_PAIR_GEN),
    (Mech::EcKeyPairGen, MechanismType::ECC_KEY_PAIR_GEN),
    (Mech::Ecdsa, MechanismType::ECDSA),
    (Mech::RsaPkcs, MechanismType::RSA_PKCS),
    (Mech::Sha256RsaPkcs, MechanismType::SHA256_RSA_PKCS),
    (Mech::Sha384RsaPkcs, MechanismType::SHA384_RSA_PKCS),
    (Mech::MlDsaKeyPairGen, MechanismType::ML_DSA_KEY_PAIR_GEN),
    (Mech::MlDsa, MechanismType::ML_DSA),
];

/// DER DigestInfo prefixes (RFC 8017 §9.2, note 1) for SHA-256 and SHA-384.
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];
const SHA384_DIGEST_INFO: [u8; 19] = [
    0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05,
    0x00, 0x04, 0x30,
];

/// The DigestInfo CKM_RSA_PKCS signs in place of CKM_SHA256/384_RSA_PKCS over `data`.
pub(crate) fn digest_info(hashed: Mech, data: &[u8]) -> Vec<u8> {
    let (prefix, digest) = if hashed == Mech::Sha384RsaPkcs {
        (&SHA384_DIGEST_INFO, Sha384::digest(data).to_vec())
    } else {
        (&SHA256_DIGEST_INFO, Sha256::digest(data).to_vec())
    };
    let mut out = prefix.to_vec();
    out.extend(digest);
    out
}

/// An ECDSA signature as raw r‖s of the curve's length, whether the token returned that or DER.
/// `curve` is the key's curve when the token reports it.
pub(crate) fn ecdsa_raw(sig: &[u8], curve: Option<KeyAlgorithm>) -> Result<Vec<u8>, String> {
    let field = |c: KeyAlgorithm| if c == KeyAlgorithm::P384 { 48 } else { 32 };
    if let Some(c) = curve {
        if sig.len() == 2 * field(c) {
            return Ok(sig.to_vec());
        }
    }
    let p256 = || p256::ecdsa::Signature::from_der(sig).map(|s| s.to_bytes().to_vec());
    let p384 = || p384::ecdsa::Signature::from_der(sig).map(|s| s.to_bytes().to_vec());
    let der = match curve {
        Some(KeyAlgorithm::P384) => p384().ok(),
        Some(_) => p256().ok(),
        None => p256().or_else(|_| p384()).ok(),
    };
    match der {
        Some(raw) => Ok(raw),
        None if curve.is_none() && (sig.len() == 64 || sig.len() == 96) => Ok(sig.to_vec()),
        None => Err(format!(
            "the token returned a {}-byte ECDSA signature that is neither r‖s of the curve's length nor DER",
            sig.len()
        )),
    }
}

/// Raw r‖s as DER (the `der_ecdsa` quirk).
fn ecdsa_der(raw: &[u8]) -> Vec<u8> {
    let der = if raw.len() == 96 {
        p384::ecdsa::Signature::from_slice(raw).map(|s| s.to_der().as_bytes().to_vec())
    } else {
        p256::ecdsa::Signature::from_slice(raw).map(|s| s.to_der().as_bytes().to_vec())
    };
    der.unwrap_or_else(|_| raw.to_vec())
}

impl Pkcs11Hsm {
    /// Force the fallbacks (tests): see [`SignQuirks`].
    pub fn force_sign_quirks(&mut self, quirks: SignQuirks) {
        self.quirks = quirks;
        self.offered = None;
    }

    /// The ceremony mechanisms on this token, read once per session.
    pub(super) fn offered(&mut self) -> Result<Vec<Offered>, HsmError> {
        if let Some(o) = &self.offered {
            return Ok(o.clone());
        }
        let ctx = module::loaded_module(&self.identity.module_path)?;
        let doing = || format!("list the mechanisms of token \"{}\"", self.token());
        let listed = ctx
            .get_mechanism_list(self.slot)
            .ck("C_GetMechanismList", doing)?;
        let mut out = Vec::new();
        for (mech, ty) in MECHS {
            if !listed.contains(&ty) {
                continue;
            }
            let info = ctx
                .get_mechanism_info(self.slot, ty)
                .ck("C_GetMechanismInfo", doing)?;
            let usable = match mech {
                Mech::RsaKeyPairGen | Mech::EcKeyPairGen | Mech::MlDsaKeyPairGen => {
                    info.generate_key_pair()
                }
                _ => info.sign(),
            };
            let hidden = self.quirks.no_hash_and_sign
                && matches!(mech, Mech::Sha256RsaPkcs | Mech::Sha384RsaPkcs);
            if !hidden {
                out.push(Offered {
                    mech,
                    min_key: info.min_key_size(),
                    max_key: info.max_key_size(),
                    usable,
                });
            }
        }
        self.offered = Some(out.clone());
        Ok(out)
    }

    /// RSA PKCS#1 v1.5 with `hashed` (CKM_SHA256/384_RSA_PKCS), or CKM_RSA_PKCS over a host-built
    /// DigestInfo when the token does not offer `hashed`.
    pub(super) fn sign_rsa(
        &mut self,
        key: ObjectHandle,
        hashed: Mech,
        label: &str,
        data: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        // A token that cannot list its mechanisms is asked for the hash-and-sign one, as before.
        let offered = self.offered().unwrap_or_default();
        let listed = !offered.is_empty();
        if listed && rsa_sign_mech(&offered, hashed) == Some(Mech::RsaPkcs) {
            let info = digest_info(hashed, data);
            return self.sign_object(&Mechanism::RsaPkcs, key, label, &info);
        }
        let mech = if hashed == Mech::Sha384RsaPkcs {
            Mechanism::Sha384RsaPkcs
        } else {
            Mechanism::Sha256RsaPkcs
        };
        self.sign_object(&mech, key, label, data)
    }

    /// CKM_ML_DSA over the whole message: pure ML-DSA, hedged, with the empty context X.509 uses
    /// (RFC 9881). No hashing on the host: FIPS 204 hashes the message inside the algorithm.
    pub(super) fn sign_ml_dsa(
        &mut self,
        key: ObjectHandle,
        label: &str,
        data: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        let params = SignAdditionalContext::new(HedgeType::Preferred, None);
        self.sign_object(&Mechanism::MlDsa(params), key, label, data)
    }

    /// CKM_ECDSA over a host digest; the signature comes back as raw r‖s whatever the token gave.
    pub(super) fn sign_ecdsa(
        &mut self,
        key: ObjectHandle,
        digest: &[u8],
        label: &str,
        doing: &str,
    ) -> Result<Vec<u8>, HsmError> {
        let sig = self.sign_object(&Mechanism::Ecdsa, key, label, digest)?;
        let sig = if self.quirks.der_ecdsa {
            ecdsa_der(&sig)
        } else {
            sig
        };
        let params = self
            .attributes(key, &[AttributeType::EcParams], label)
            .unwrap_or_default();
        let curve = params.into_iter().find_map(|a| match a {
            Attribute::EcParams(p) => [KeyAlgorithm::P256, KeyAlgorithm::P384]
                .into_iter()
                .find(|alg| spki::ec_params_der(*alg).as_deref() == Some(p.as_slice())),
            _ => None,
        });
        ecdsa_raw(&sig, curve).map_err(|why| {
            HsmError::new(
                "C_Sign",
                format!("{doing}: {why}"),
                "report this to the HSM vendor with the token's model and firmware; keyrite cannot use the signature",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::hazmat::PrehashSigner;

    #[test]
    fn ecdsa_is_taken_as_raw_or_der() {
        let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let digest = Sha256::digest(b"tbs");
        let sig: p256::ecdsa::Signature = key.sign_prehash(&digest).unwrap();
        let raw = sig.to_bytes().to_vec();
        let der = sig.to_der().as_bytes().to_vec();
        assert_eq!(ecdsa_raw(&raw, Some(KeyAlgorithm::P256)).unwrap(), raw);
        assert_eq!(ecdsa_raw(&der, Some(KeyAlgorithm::P256)).unwrap(), raw);
        assert_eq!(ecdsa_raw(&der, None).unwrap(), raw);
        assert_eq!(ecdsa_der(&raw), der);
        // Wrong length for the curve and not DER: refused, never truncated or padded.
        assert!(ecdsa_raw(&raw[..63], Some(KeyAlgorithm::P256)).is_err());
        assert!(ecdsa_raw(&raw, Some(KeyAlgorithm::P384)).is_err());
        let mut bad = der.clone();
        bad.push(0);
        assert!(ecdsa_raw(&bad, Some(KeyAlgorithm::P256)).is_err());
    }

    #[test]
    fn the_digest_info_is_what_rsa_pkcs1_v15_signs() {
        let info = digest_info(Mech::Sha256RsaPkcs, b"abc");
        assert_eq!(info.len(), 19 + 32);
        assert_eq!(&info[19..], Sha256::digest(b"abc").as_slice());
        let info = digest_info(Mech::Sha384RsaPkcs, b"abc");
        assert_eq!(info.len(), 19 + 48);
        assert_eq!(info[1] as usize, info.len() - 2, "outer SEQUENCE length");
    }
}
