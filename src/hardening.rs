//! Process hardening done once at start, before any PIN, share or activation secret is in memory:
//! no core file, and no dumpable process. A crash or a `gcore` must not write secrets to disk, and
//! another process of the same user must not read them through ptrace or /proc/PID/mem.
//! (docs/threat-model.md, "Memory disclosure".)

use rustix::process::{
    dumpable_behavior, getrlimit, set_dumpable_behavior, setrlimit, DumpableBehavior, Resource,
    Rlimit,
};

/// What [`harden_process`] could not do. keyrite still runs (a ceremony must not fail because a
/// container forbids prctl), but the caller warns, so the room knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HardeningGap(pub String);

/// Core file size 0 (soft and hard, so no child can raise it) and PR_SET_DUMPABLE 0.
pub fn harden_process() -> Result<(), HardeningGap> {
    let zero = Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    setrlimit(Resource::Core, zero)
        .map_err(|e| HardeningGap(format!("could not set the core file size limit to 0: {e}")))?;
    set_dumpable_behavior(DumpableBehavior::NotDumpable).map_err(|e| {
        HardeningGap(format!(
            "could not mark the process non-dumpable (PR_SET_DUMPABLE 0): {e}"
        ))
    })?;
    Ok(())
}

/// Whether this process is hardened now: no core file possible and not dumpable.
pub fn is_hardened() -> bool {
    let core = getrlimit(Resource::Core);
    core.current == Some(0)
        && core.maximum == Some(0)
        && dumpable_behavior().is_ok_and(|d| d == DumpableBehavior::NotDumpable)
}

/// Called first thing in `main`: hardens, or says on stderr what could not be done and why it matters.
pub fn harden_or_warn() {
    if let Err(HardeningGap(what)) = harden_process() {
        eprintln!(
            "keyrite: warning: {what}; a crash could leave PINs or shares in a core file — \
             run keyrite where setrlimit and prctl are allowed (not in a restricted container)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardening_disables_core_files_and_dumping() {
        assert_eq!(harden_process(), Ok(()));
        assert!(is_hardened());
        let core = getrlimit(Resource::Core);
        assert_eq!((core.current, core.maximum), (Some(0), Some(0)));
        // Idempotent: a second call (a test harness, a library user) changes nothing and does not fail.
        assert_eq!(harden_process(), Ok(()));
        assert!(is_hardened());
    }
}
