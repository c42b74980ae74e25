//! The exact words the room reads when `keyrite resume` refuses an interrupted quorum step: each is
//! a golden file (src/driver/snapshots), so a change of wording is reviewed as such.

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
