//! The exact words the room reads when `keyrite resume` refuses an interrupted quorum step, or
//! refuses to adopt a certificate the interrupted run signed: each is a golden file
//! (src/driver/snapshots), so a change of wording is reviewed as such.

use super::resume::{resumption, Resumption};
use super::resume_quorum::{refusal, Progress};
use crate::script::Action;

#[test]
fn every_refusal_of_an_interrupted_quorum_step_reads_as_reviewed() {
    let progresses = [
        Progress::Untouched,
        Progress::FreshTokenInitialised,
        Progress::CardsWritten(vec![
            "write_share card-1 (serial 0001)".into(),
            "write_share card-2 (serial 0002)".into(),
        ]),
        Progress::PinsChanging {
            next: "present 2 cards to finish the PIN change".into(),
        },
        Progress::SharesDestroyed(vec!["destroy_share card-3 (serial 0003)".into()]),
    ];
    let mut text = String::new();
    for action in [
        Action::SplitActivation,
        Action::Reshare,
        Action::RetireShares,
    ] {
        assert_eq!(resumption(action), Resumption::AgainIfUntouched, "{action}");
        for progress in &progresses {
            for rehearsal in [false, true] {
                let said = refusal(action, progress, rehearsal)
                    .unwrap_or_else(|| "(performed again)".into());
                text.push_str(&format!(
                    "{action} / {progress:?} / rehearsal={rehearsal}:\n  {said}\n\n"
                ));
            }
        }
    }
    insta::assert_snapshot!("resume_refusals", text);
}

#[test]
fn every_refusal_to_adopt_a_saved_certificate_reads_as_reviewed() {
    use super::actions::certs_adopt::Refusal;
    let file = || "artifacts/example-issuing-ca-2026.pem".to_string();
    let step = || "sign-issuing-ca".to_string();
    let (bound, found) = ("ab".repeat(32), "cd".repeat(32));
    let refusals = [
        (
            "bound, missing",
            Refusal::Missing {
                file: file(),
                sha256: bound.clone(),
            },
        ),
        (
            "bound, altered",
            Refusal::Altered {
                file: file(),
                bound: bound.clone(),
                found: found.clone(),
            },
        ),
        (
            "not the issuer's",
            Refusal::Unusable {
                file: file(),
                why: "does not verify under the issuer: the signature does not verify with the \
                      issuer's key: signature error"
                    .into(),
            },
        ),
        (
            "another input",
            Refusal::OtherInput {
                file: file(),
                step: step(),
                what: format!(
                    "its signing was logged for input SHA-256 {bound}, the input given now has \
                     SHA-256 {found}"
                ),
            },
        ),
        (
            "another key",
            Refusal::OtherInput {
                file: file(),
                step: step(),
                what: "it certifies another key".into(),
            },
        ),
    ];
    let text: String = refusals
        .iter()
        .map(|(case, r)| {
            format!(
                "{case}:\n  before reopening: {}\n  hint: {}\n  in the step: {r}\n\n",
                r.what(),
                r.fix()
            )
        })
        .collect();
    insta::assert_snapshot!("resume_adopt_refusals", text);
}
