//! At HSM activation, before the PIN: can this token do what the script's later steps will ask? The
//! mechanisms and key sizes of every key the script generates or signs with, and for a quorum split
//! or reshare whether keyrite can set the token's PINs at all (PIN length limits, no PIN pad). A
//! token that cannot is refused here, before anyone confirms a key generation. Nothing on the token
//! changes, so the activation step resumes by running again.

use crate::hsm::capabilities::{refusals, Need};
use crate::hsm::{Hsm, HsmError};
use crate::script::{Action, Script};

/// What the script's steps will ask of the HSM, in script order.
#[cfg(test)]
pub(crate) fn needs(script: &Script) -> Vec<Need> {
    needs_on(script, script.primary_token())
}

/// What the steps that act on the token `token` will ask of it (issue 12).
pub(crate) fn needs_on(script: &Script, token: &str) -> Vec<Need> {
    let mut out = Vec::new();
    for step in script
        .steps
        .iter()
        .filter(|s| script.step_token(s) == token)
    {
        // Every step that signs with a key, or makes one (a sub-CA or cross-certificate signs
        // with its issuer key).
        let signs = matches!(
            step.action,
            Action::GenerateKey
                | Action::SignTestMessage
                | Action::SignCertificate
                | Action::SignCrl
        ) || step.action.issues_ca_certificate();
        if !signs {
            continue;
        }
        let key = script.step_key(step);
        let Some(spec) = key.and_then(|k| script.key(k)) else {
            continue;
        };
        if step.action == Action::GenerateKey {
            out.push(Need::Generate(spec.algorithm));
        }
        out.push(Need::Sign(spec.algorithm));
    }
    out
}

/// `Err` names every shortfall of the token and what to do; `Ok` also when the driver cannot list
/// the token's mechanisms (the step itself then reports the token's own error).
#[cfg(test)]
pub(crate) fn check_token(script: &Script, hsm: &mut dyn Hsm) -> Result<(), HsmError> {
    check_token_on(script, script.primary_token(), hsm)
}

/// [`check_token`] for the script's token named `name` (issue 12): the steps that act on it.
pub(crate) fn check_token_on(
    script: &Script,
    name: &str,
    hsm: &mut dyn Hsm,
) -> Result<(), HsmError> {
    let token = hsm.identity().token_label.clone();
    let mut problems = Vec::new();
    if let Some(offered) = hsm.mechanisms()? {
        problems.extend(refusals(&offered, &needs_on(script, name)));
    }
    let sets_pins = script.steps.iter().any(|s| {
        matches!(s.action, Action::SplitActivation | Action::Reshare)
            && script.step_token(s) == name
    });
    if sets_pins {
        let limits = hsm.pin_limits()?;
        if limits.protected_path {
            problems.push(
                "it takes PINs on its own PIN pad or PED (CKF_PROTECTED_AUTHENTICATION_PATH), so \
                 keyrite cannot set the quorum-derived PINs the script's split or reshare needs"
                    .to_string(),
            );
        } else if let Err(e) = crate::quorum::pin_length(limits.min_len, limits.max_len) {
            problems.push(format!("for the script's quorum: {e}"));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(HsmError::new(
        "check the token",
        format!(
            "token \"{token}\" cannot carry out this script: {}; nothing was done on the token",
            problems.join("; ")
        ),
        "use an HSM that offers these (pkcs11-tool --list-mechanisms and -T show what a token offers), \
         or change the script's key algorithms; see docs/hsm-compatibility.md",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hsm::capabilities::{Mech, Offered};
    use crate::hsm::mock::MockHsm;
    use crate::script::KeyAlgorithm;

    fn script(name: &str) -> Script {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ceremony-scripts");
        let text = std::fs::read_to_string(path.join(name)).unwrap();
        crate::script::parse::parse(name, &text).unwrap().script
    }

    fn offered(mech: Mech, min_key: usize, max_key: usize) -> Offered {
        Offered {
            mech,
            min_key,
            max_key,
            usable: true,
        }
    }

    #[test]
    fn the_root_script_needs_its_key_generated_and_signing() {
        let s = script("root-ca.toml");
        let n = needs(&s);
        let alg = s.keys[0].algorithm;
        assert!(
            n.contains(&Need::Generate(alg)) && n.contains(&Need::Sign(alg)),
            "{n:?}"
        );
    }

    #[test]
    fn the_ca_signing_scripts_need_their_issuer_key_to_sign_and_nothing_generated() {
        for name in [
            "sub-ca-signing.toml",
            "cross-certificate.toml",
            "crl-issuance.toml",
        ] {
            let s = script(name);
            let n = needs(&s);
            let alg = s.keys[0].algorithm;
            assert_eq!(n.first(), Some(&Need::Sign(alg)), "{name}: {n:?}");
            assert!(
                !n.iter().any(|x| matches!(x, Need::Generate(_))),
                "{name}: {n:?}"
            );
        }
    }

    #[test]
    fn a_token_without_the_key_size_is_refused_with_the_reason() {
        let mut s = script("root-ca.toml");
        s.keys[0].algorithm = KeyAlgorithm::Rsa4096;
        let mut hsm = MockHsm::new("1234");
        hsm.offered = Some(vec![
            offered(Mech::RsaKeyPairGen, 1024, 3072),
            offered(Mech::Sha384RsaPkcs, 1024, 3072),
        ]);
        let e = check_token(&s, &mut hsm).unwrap_err();
        assert!(
            e.what.contains("1024..3072") && e.what.contains("RSA-4096"),
            "{e}"
        );
        assert!(
            hsm.call_log().is_empty(),
            "nothing reached the token: {:?}",
            hsm.call_log()
        );
        s.keys[0].algorithm = KeyAlgorithm::Rsa3072;
        hsm.offered
            .as_mut()
            .unwrap()
            .push(offered(Mech::RsaPkcs, 1024, 3072));
        check_token(&s, &mut hsm).unwrap();
    }

    #[test]
    fn a_split_on_a_pin_pad_token_is_refused_at_activation() {
        let s = script("root-ca-quorum.toml");
        let mut hsm = MockHsm::new("1234");
        check_token(&s, &mut hsm).unwrap();
        hsm.limits.protected_path = true;
        let e = check_token(&s, &mut hsm).unwrap_err();
        assert!(e.what.contains("PIN pad"), "{e}");
    }
}
