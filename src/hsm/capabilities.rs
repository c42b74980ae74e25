//! What a token offers (C_GetMechanismList, C_GetMechanismInfo) against what a script's steps will
//! ask of it. Pure: the PKCS#11 driver reads the list, the driver checks it at HSM activation, so that
//! a token that cannot do a step is refused before anyone confirms a key generation.

use crate::script::KeyAlgorithm;

/// The mechanisms keyrite's ceremony keys use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mech {
    RsaKeyPairGen,
    EcKeyPairGen,
    Ecdsa,
    /// CKM_RSA_PKCS: raw PKCS#1 v1.5 over a DigestInfo keyrite builds (the fallback).
    RsaPkcs,
    Sha256RsaPkcs,
    Sha384RsaPkcs,
    MlDsaKeyPairGen,
    /// CKM_ML_DSA: pure ML-DSA over the whole message.
    MlDsa,
}

impl Mech {
    pub fn ckm(self) -> &'static str {
        match self {
            Mech::RsaKeyPairGen => "CKM_RSA_PKCS_KEY_PAIR_GEN",
            Mech::EcKeyPairGen => "CKM_EC_KEY_PAIR_GEN",
            Mech::Ecdsa => "CKM_ECDSA",
            Mech::RsaPkcs => "CKM_RSA_PKCS",
            Mech::Sha256RsaPkcs => "CKM_SHA256_RSA_PKCS",
            Mech::Sha384RsaPkcs => "CKM_SHA384_RSA_PKCS",
            Mech::MlDsaKeyPairGen => "CKM_ML_DSA_KEY_PAIR_GEN",
            Mech::MlDsa => "CKM_ML_DSA",
        }
    }
}

/// One offered mechanism with CK_MECHANISM_INFO's key sizes (0 = the token does not say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offered {
    pub mech: Mech,
    pub min_key: usize,
    pub max_key: usize,
    /// CKF_SIGN or CKF_GENERATE_KEY_PAIR, as fits the mechanism.
    pub usable: bool,
}

/// What a step will ask: generate a key of this algorithm, or sign with one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Generate(KeyAlgorithm),
    Sign(KeyAlgorithm),
}

fn find(offered: &[Offered], mech: Mech) -> Option<&Offered> {
    offered.iter().find(|o| o.mech == mech && o.usable)
}

/// RSA sizes in bits. EC sizes are in bits by the standard, but some tokens report bytes or field
/// ranges of their own (tpm2-pkcs11: 192..638), so only an RSA size outside the range is refused.
fn size_refused(o: &Offered, bits: usize) -> bool {
    (o.max_key != 0 && bits > o.max_key) || (o.min_key != 0 && bits < o.min_key)
}

/// The RSA signing mechanism keyrite will use with this token: the hash-and-sign one when offered,
/// else CKM_RSA_PKCS over a host-built DigestInfo. `None` when neither is offered.
pub fn rsa_sign_mech(offered: &[Offered], hashed: Mech) -> Option<Mech> {
    [hashed, Mech::RsaPkcs]
        .into_iter()
        .find(|m| find(offered, *m).is_some())
}

fn ml_dsa_missing(mech: Mech, doing: &str, alg: KeyAlgorithm) -> String {
    format!("it offers no {} to {doing} {alg}", mech.ckm())
}

/// Few tokens have ML-DSA yet: say which one would (PKCS#11 3.2's mechanisms, Kryoptic's pqc build).
const ML_DSA_TOKENS: &str =
    "a token with FIPS 204 ML-DSA (PKCS#11 3.2) offers them: Kryoptic 1.5.4 \
     built with its pqc feature does (softhsm-tests/backends/build-kryoptic-pqc.sh builds it), \
     SoftHSM2 2.6 does not";

/// Why the token cannot serve the needs, one sentence per missing piece; empty when it can.
pub fn refusals(offered: &[Offered], needs: &[Need]) -> Vec<String> {
    let mut out = Vec::new();
    for need in needs {
        let why = match *need {
            Need::Generate(alg) if alg.is_rsa() => match find(offered, Mech::RsaKeyPairGen) {
                None => Some(format!(
                    "it offers no {} to generate {alg}",
                    Mech::RsaKeyPairGen.ckm()
                )),
                Some(o) if size_refused(o, alg.bits() as usize) => Some(format!(
                    "its {} takes {}..{}-bit keys, so it cannot generate {alg}",
                    Mech::RsaKeyPairGen.ckm(),
                    o.min_key,
                    o.max_key
                )),
                Some(_) => None,
            },
            Need::Generate(alg) if alg.is_ml_dsa() => find(offered, Mech::MlDsaKeyPairGen)
                .is_none()
                .then(|| ml_dsa_missing(Mech::MlDsaKeyPairGen, "generate", alg)),
            Need::Sign(alg) if alg.is_ml_dsa() => find(offered, Mech::MlDsa)
                .is_none()
                .then(|| ml_dsa_missing(Mech::MlDsa, "sign with", alg)),
            Need::Generate(alg) => find(offered, Mech::EcKeyPairGen).is_none().then(|| {
                format!(
                    "it offers no {} to generate {alg}",
                    Mech::EcKeyPairGen.ckm()
                )
            }),
            Need::Sign(alg) if alg.is_rsa() => {
                let hashed = if alg.bits() >= 4096 {
                    Mech::Sha384RsaPkcs
                } else {
                    Mech::Sha256RsaPkcs
                };
                match rsa_sign_mech(offered, hashed).and_then(|m| find(offered, m)) {
                    None => Some(format!(
                        "it offers neither {} nor {} to sign with {alg}",
                        hashed.ckm(),
                        Mech::RsaPkcs.ckm()
                    )),
                    Some(o) if size_refused(o, alg.bits() as usize) => Some(format!(
                        "its {} takes {}..{}-bit keys, so it cannot sign with {alg}",
                        o.mech.ckm(),
                        o.min_key,
                        o.max_key
                    )),
                    Some(_) => None,
                }
            }
            Need::Sign(alg) => find(offered, Mech::Ecdsa)
                .is_none()
                .then(|| format!("it offers no {} to sign with {alg}", Mech::Ecdsa.ckm())),
        };
        if let Some(why) = why {
            if !out.contains(&why) {
                out.push(why);
            }
        }
    }
    if out.iter().any(|w| w.contains("CKM_ML_DSA")) {
        out.push(ML_DSA_TOKENS.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(mech: Mech, min_key: usize, max_key: usize) -> Offered {
        Offered {
            mech,
            min_key,
            max_key,
            usable: true,
        }
    }

    /// tpm2-pkcs11 1.9 over swtpm, as pkcs11-tool -M lists it.
    fn tpm2() -> Vec<Offered> {
        vec![
            o(Mech::RsaKeyPairGen, 1024, 3072),
            o(Mech::RsaPkcs, 1024, 3072),
            o(Mech::Sha256RsaPkcs, 1024, 3072),
            o(Mech::Sha384RsaPkcs, 1024, 3072),
            o(Mech::EcKeyPairGen, 192, 638),
            o(Mech::Ecdsa, 192, 638),
        ]
    }

    #[test]
    fn the_tpm_refuses_rsa_4096_and_serves_the_rest() {
        let t = tpm2();
        let r = refusals(&t, &[Need::Generate(KeyAlgorithm::Rsa4096)]);
        assert_eq!(r.len(), 1);
        assert!(
            r[0].contains("1024..3072") && r[0].contains("RSA-4096"),
            "{r:?}"
        );
        for alg in [
            KeyAlgorithm::Rsa3072,
            KeyAlgorithm::P256,
            KeyAlgorithm::P384,
        ] {
            assert!(refusals(&t, &[Need::Generate(alg), Need::Sign(alg)]).is_empty());
        }
    }

    #[test]
    fn rsa_signing_falls_back_to_raw_pkcs1_and_needs_one_of_them() {
        let only_raw = vec![o(Mech::RsaPkcs, 0, 0)];
        assert_eq!(
            rsa_sign_mech(&only_raw, Mech::Sha256RsaPkcs),
            Some(Mech::RsaPkcs)
        );
        assert!(refusals(&only_raw, &[Need::Sign(KeyAlgorithm::Rsa3072)]).is_empty());
        let r = refusals(
            &[],
            &[
                Need::Sign(KeyAlgorithm::Rsa3072),
                Need::Sign(KeyAlgorithm::P256),
            ],
        );
        assert_eq!(r.len(), 2, "{r:?}");
        assert!(r[0].contains("CKM_SHA256_RSA_PKCS") && r[0].contains("CKM_RSA_PKCS"));
        assert!(r[1].contains("CKM_ECDSA"));
    }

    #[test]
    fn a_token_without_ml_dsa_is_refused_naming_the_mechanism_and_a_token_that_has_it() {
        let r = refusals(
            &tpm2(),
            &[
                Need::Generate(KeyAlgorithm::MlDsa65),
                Need::Sign(KeyAlgorithm::MlDsa65),
            ],
        );
        assert_eq!(r.len(), 3, "{r:?}");
        assert!(r[0].contains("CKM_ML_DSA_KEY_PAIR_GEN") && r[0].contains("ML-DSA-65"));
        assert!(r[1].contains("CKM_ML_DSA ") && r[2].contains("Kryoptic"));
        let pqc = [o(Mech::MlDsaKeyPairGen, 0, 0), o(Mech::MlDsa, 0, 0)];
        let needs = [
            Need::Generate(KeyAlgorithm::MlDsa87),
            Need::Sign(KeyAlgorithm::MlDsa87),
        ];
        assert!(refusals(&pqc, &needs).is_empty());
    }

    #[test]
    fn a_mechanism_without_the_usage_flag_does_not_count() {
        let mut gen = o(Mech::EcKeyPairGen, 256, 521);
        gen.usable = false;
        assert_eq!(
            refusals(&[gen], &[Need::Generate(KeyAlgorithm::P256)]).len(),
            1
        );
    }
}
