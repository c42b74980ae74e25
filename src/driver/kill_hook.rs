//! A test-only crash: with `KEYRITE_TEST_KILL_AT=STEP:POINT` set, keyrite sends itself SIGKILL at
//! that point, so tests can interrupt a ceremony where a power cut would, with nothing flushed or
//! cleaned up. Unset (always, in a real ceremony), it does nothing.
//!
//! Points: `before-OP` (the `hsm_intent` for OP is logged, the HSM has not been called),
//! `after-OP` (the HSM call returned, its result is not logged yet), `after-step` (step_completed
//! is logged), `before-artifact_written` (a file is in `artifacts/`, its entry is not logged yet),
//! and `report:before-signatures` (report_written is logged, no signature made yet).

use std::sync::OnceLock;

pub const VAR: &str = "KEYRITE_TEST_KILL_AT";

fn armed() -> Option<&'static str> {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    AT.get_or_init(|| std::env::var(VAR).ok()).as_deref()
}

/// Die here if the hook is armed for `step`:`point`.
pub fn point(step: &str, point: &str) {
    let Some(at) = armed() else {
        return;
    };
    if at.split_once(':') == Some((step, point)) {
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}
