//! Process hardening seen from outside (docs/threat-model.md, "Memory disclosure"): a keyrite
//! waiting at a prompt mid-ceremony has a core file size limit of 0 in /proc/PID/limits, and is not
//! dumpable: the kernel then hands its /proc files to root, which an unprivileged run shows.

mod common;

use common::{have, root, sh};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// An unprivileged uid (nobody) for the dumpable check; only root can switch to it.
const NOBODY: u32 = 65534;

fn is_root() -> bool {
    String::from_utf8_lossy(&sh("id -u").stdout).trim() == "0"
}

/// Lines of `child`'s stdout until one contains `wanted`, with a deadline; the lines read so far
/// on failure.
fn wait_for_line(child: &mut Child, wanted: &str) -> Result<(), String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = String::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(wanted) => return Ok(()),
            Ok(line) => seen.push_str(&format!("{line}\n")),
            Err(_) => break,
        }
    }
    Err(seen)
}

/// `(soft, hard)` of "Max core file size" in /proc/PID/limits.
fn core_limit(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap_or_else(|| panic!("no core line in:\n{limits}"));
    let fields: Vec<&str> = line["Max core file size".len()..]
        .split_whitespace()
        .collect();
    (fields[0].to_string(), fields[1].to_string())
}

/// Owner uid of /proc/PID/environ: the process's own uid when it is dumpable, root when it is not.
fn proc_owner(pid: u32) -> u32 {
    std::fs::metadata(format!("/proc/{pid}/environ"))
        .unwrap()
        .uid()
}

fn spawn(command: &mut Command, unprivileged: bool) -> Child {
    if unprivileged {
        command.uid(NOBODY).gid(NOBODY);
    }
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns")
}

#[test]
fn a_running_keyrite_cannot_dump_core() {
    if !have("softhsm2-util") {
        return;
    }
    let unprivileged = is_root();
    let dir = tempfile::tempdir().unwrap();
    // World-writable, so the unprivileged run can read the script and write its bundle and tokens.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    // Medium without personal cards: the quickest way to a prompt (no cards to make).
    let script: String = std::fs::read_to_string(root().join("ceremony-scripts/root-ca-p256.toml"))
        .unwrap()
        .replace(
            "security_level = \"very-high\"",
            "security_level = \"medium\"",
        )
        .lines()
        .filter(|l| !l.starts_with("card = "))
        .map(|l| format!("{l}\n"))
        .collect();
    let script_path = dir.path().join("script.toml");
    std::fs::write(&script_path, script).unwrap();
    std::fs::set_permissions(&script_path, std::fs::Permissions::from_mode(0o644)).unwrap();

    // The oracle tells the two cases apart: an ordinary process of nobody owns its /proc files.
    if unprivileged {
        let mut sleeper = spawn(Command::new("sleep").arg("300"), true);
        let owner = proc_owner(sleeper.id());
        let _ = sleeper.kill();
        let _ = sleeper.wait();
        assert_eq!(owner, NOBODY, "a dumpable process owns /proc/PID/environ");
    }

    // A rehearsal waiting at its first prompt for a name, stdin an open pipe nobody writes to.
    // The checkout may sit in a folder nobody cannot enter (a mktemp -d clone is 0700): the
    // unprivileged run gets its own copy of the binary in the world-readable test folder.
    let binary = if unprivileged {
        let copy = dir.path().join("keyrite");
        std::fs::copy(env!("CARGO_BIN_EXE_keyrite"), &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        copy
    } else {
        std::path::PathBuf::from(env!("CARGO_BIN_EXE_keyrite"))
    };
    let mut command = Command::new(&binary);
    command
        .args([
            "rehearse",
            script_path.to_str().unwrap(),
            "--plain",
            "--out",
        ])
        .arg(dir.path().join("bundle"))
        .current_dir(dir.path())
        .env("TMPDIR", dir.path())
        .env("HOME", dir.path())
        .env_remove("SOFTHSM2_CONF")
        .env_remove("KEYRITE_REHEARSAL_DIR");
    let mut child = spawn(&mut command, unprivileged);
    let pid = child.id();
    let waiting = wait_for_line(&mut child, "type your full name");
    let limits = waiting.as_ref().map(|_| core_limit(pid));
    let owner = waiting.as_ref().map(|_| proc_owner(pid));
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if let Err(seen) = &waiting {
        panic!("keyrite never reached its prompt:\n{seen}\nstderr:\n{stderr}");
    }
    assert_eq!(limits.unwrap(), ("0".into(), "0".into()), "core file size");
    assert!(!stderr.contains("could not"), "{stderr}");
    if unprivileged {
        assert_eq!(
            owner.unwrap(),
            0,
            "keyrite is not dumpable: root owns its /proc files"
        );
    } else {
        eprintln!("not root: the dumpable check needs to run keyrite as another user; skipped");
    }
}
