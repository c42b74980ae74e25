//! The one test-only crash hook: with `KEYRITE_TEST_KILL_AT=SCOPE:POINT` set, keyrite sends itself
//! SIGKILL at that point, so tests can interrupt a ceremony where a power cut would, with nothing
//! flushed or cleaned up. With `KEYRITE_TEST_KILL_AT=list` it dies nowhere and prints every point it
//! passes to stderr (`keyrite test hook: kill point SCOPE:POINT`), so the crash matrix
//! (softhsm-tests/kill_matrix.rs) takes its points from a dry run and covers new actions by
//! itself. Unset (always, in a real ceremony), it does nothing.
//!
//! SCOPE is the step id (or `report`). POINT is one of:
//! - `before-OP`: the `hsm_intent` for OP is logged, the HSM has not been called;
//! - `after-OP`: the HSM answered OP, its result is not logged yet (the next entry after the intent);
//! - `after-step`: `step_completed` is logged;
//! - `before-artifact_written`: a file is in `artifacts/`, its entry is not logged yet;
//! - `stage-STAGE`: a quorum PIN change logged STAGE (`setting-so-pin`, `so-pin-set`,
//!   `setting-user-pin`, `done`, `failed`), before the HSM call it announces;
//! - `before-signatures` (scope `report`): report_written is logged, no signature made yet.
//!
//! A point passed again in the same run gets `#N` (the Nth time), e.g. `split-activation:before-write_share#3`.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock, PoisonError};

pub const VAR: &str = "KEYRITE_TEST_KILL_AT";
/// The value that lists the points instead of killing at one.
pub const LIST: &str = "list";
/// The stderr prefix of a listed point.
pub const LISTED: &str = "keyrite test hook: kill point ";

fn armed() -> Option<&'static str> {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    AT.get_or_init(|| std::env::var(VAR).ok().filter(|v| !v.is_empty()))
        .as_deref()
}

/// How often each point was passed in this process.
static PASSED: Mutex<BTreeMap<String, u32>> = Mutex::new(BTreeMap::new());

/// Die here if the hook is armed for `scope`:`point` (this pass of it).
pub fn point(scope: &str, point: &str) {
    let Some(at) = armed() else {
        return;
    };
    let base = format!("{scope}:{point}");
    let n = {
        let mut passed = PASSED.lock().unwrap_or_else(PoisonError::into_inner);
        let n = passed.entry(base.clone()).or_insert(0);
        *n += 1;
        *n
    };
    let name = if n == 1 { base } else { format!("{base}#{n}") };
    if at == LIST {
        eprintln!("{LISTED}{name}");
    } else if at == name {
        eprintln!("keyrite: {VAR}={name}: killed here as a power cut would (test hook)");
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}
