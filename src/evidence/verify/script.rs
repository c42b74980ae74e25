//! script.toml in the bundle: the script the log started with, passing the same security-level
//! policy as `keyrite check`, and the log replaying under its rules.

use super::{sha256_hex, short, Verification};
use crate::evidence::bundle::{LOG_FILE, SCRIPT_FILE};
use crate::evidence::events::Record;
use crate::evidence::report::Parsed;
use crate::evidence::safe_read::{BundleDir, SCRIPT_LIMIT};
use crate::script::{Script, Severity};

/// How the log replayed under the script.
pub(super) struct Replay {
    ok: bool,
    /// The replay ran out of log where the script's rules give more ("the log ends …"): what a
    /// run that stopped early leaves, never a contradiction.
    pub ended: Option<String>,
}

impl Replay {
    pub fn is_ok(&self) -> bool {
        self.ok
    }
}

pub(super) struct Checked {
    pub script: Script,
    pub replay: Replay,
}

/// The replay's messages for a log that stops where the script's rules go on (src/evidence/replay.rs);
/// every other replay error is a contradiction between the log and the script.
const LOG_ENDS: &str = "the log ends";

/// Before the log's other entries are read: script.toml must be the file the first entry
/// (`ceremony_started`, given parsed) names, and pass the security-level policy. The script is
/// returned for the replay.
pub(super) fn prepare(
    v: &mut Verification,
    bundle: &BundleDir,
    first: Result<&Parsed, &String>,
) -> Option<Script> {
    let (recorded, rehearsal) = match first {
        Ok(Parsed::Record(Record::CeremonyStarted {
            script_sha256,
            rehearsal,
            ..
        })) => (script_sha256, *rehearsal),
        _ => {
            v.fail(LOG_FILE, "the first entry is not ceremony_started");
            return None;
        }
    };
    let bytes = match bundle.read(SCRIPT_FILE, SCRIPT_LIMIT) {
        Ok(bytes) => bytes,
        Err(e) => {
            v.fail(SCRIPT_FILE, e.to_string());
            return None;
        }
    };
    let actual = sha256_hex(&bytes);
    if !v.check(
        actual == *recorded,
        SCRIPT_FILE,
        format!("SHA-256 {} matches the log's first entry", short(&actual)),
        format!("SHA-256 {actual} differs from {recorded} recorded in the log"),
    ) {
        return None;
    }
    let Ok(source) = String::from_utf8(bytes) else {
        v.fail(SCRIPT_FILE, "is not UTF-8");
        return None;
    };
    let Ok(loaded) = crate::script::parse(SCRIPT_FILE, &source) else {
        v.fail(
            SCRIPT_FILE,
            "does not parse as a ceremony script of this keyrite version",
        );
        return None;
    };
    policy(v, &loaded, rehearsal);
    Some(loaded.script)
}

/// After the last entry: how the log replayed under the script (`finished`: it ends with
/// `report_written`).
pub(super) fn judge(
    v: &mut Verification,
    replayed: Result<usize, String>,
    finished: bool,
) -> Replay {
    match replayed {
        Ok(n) => {
            v.pass(
                LOG_FILE,
                format!("all {n} ceremony events replay under script.toml's rules (dual control, order, roles, write-ahead)"),
            );
            Replay {
                ok: true,
                ended: None,
            }
        }
        Err(e) if e.starts_with(LOG_ENDS) && !finished => {
            v.pass(
                LOG_FILE,
                "every ceremony event so far replays under script.toml's rules (dual control, order, roles, write-ahead)",
            );
            Replay {
                ok: false,
                ended: Some(e),
            }
        }
        Err(e) => {
            v.fail(
                LOG_FILE,
                format!("does not replay under script.toml's rules: {e}"),
            );
            Replay {
                ok: false,
                ended: None,
            }
        }
    }
}

/// The same policy `keyrite check` applies: a script it refuses at this security level cannot have
/// run, so its errors are failures here (a script stripped of its cards fails this way). A rehearsal
/// is judged as `keyrite rehearse` judged it: its folder's record of the split stood in for a pinned
/// `commitments_sha256`.
fn policy(v: &mut Verification, loaded: &crate::script::LoadedScript, rehearsal: bool) {
    let findings = if rehearsal {
        crate::script::policy::check_rehearsal(loaded)
    } else {
        crate::script::policy::check(loaded)
    };
    let level = loaded.script.ceremony.security_level;
    let warnings = findings
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .count();
    let mut errors = 0;
    for d in findings.iter().filter(|d| d.severity == Severity::Error) {
        errors += 1;
        v.fail(
            SCRIPT_FILE,
            format!(
                "line {}:{}: the security-level policy ({level}) refuses it: {} — `keyrite check` refuses this script, so it cannot have run",
                d.line, d.col, d.what
            ),
        );
    }
    if errors == 0 {
        let noted = match warnings {
            0 => String::new(),
            n => format!(" ({n} warning(s): `keyrite check script.toml` shows them)"),
        };
        v.pass(
            SCRIPT_FILE,
            format!("passes the security-level policy for {level}, as `keyrite check` applies it{noted}"),
        );
    }
}
