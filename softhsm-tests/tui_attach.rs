//! `attach` steps in the terminal UI, end to end in a detached tmux session at 80×24: one step's
//! path comes from `--attach STEP=PATH` (which must reach the TUI run), the other is typed into the
//! TUI's path modal; both hashes are checked with sha256sum, and the bundle verifies.

mod common;

use common::tmux::{have_tmux, Tmux};
use std::path::Path;
use std::process::Command;

const SCRIPT: &str = r#"format = 1

[ceremony]
id = "ATTACH-TUI-TEST"
name = "Attach in the TUI"
type = "root-key-generation"
place = "Test room"
security_level = "medium"

[[participants]]
name = "Maria Keller"
role = "master-of-ceremony"

[[participants]]
name = "Omar Haddad"
role = "operator"

[[participants]]
name = "Olga Petrova"
role = "operator"

[[participants]]
name = "Wiebke Janssen"
role = "internal-witness"

[hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
token = { label = "attach-test" }

[[steps]]
id = "attach-sign-in-sheet"
title = "Attach the scanned sign-in sheet"
instructions = "Give keyrite the path of the scan."
action = "attach"
attachment = "scanned sign-in sheet"
confirm_by = ["master-of-ceremony"]

[[steps]]
id = "attach-video"
title = "Attach the video"
instructions = "Give keyrite the path of the recording."
action = "attach"
attachment = "video of the ceremony"
confirm_by = ["master-of-ceremony"]
"#;

fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn attach_paths_come_from_the_command_line_or_the_path_modal() {
    if !have_tmux() || !common::have("sha256sum") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("attach.toml");
    std::fs::write(&script, SCRIPT).unwrap();
    let sheet = dir.path().join("sheet.pdf");
    std::fs::write(&sheet, b"%PDF-1.4 a scanned sheet\n".repeat(100)).unwrap();
    let video = dir.path().join("ceremony video.mp4");
    std::fs::write(&video, b"not really a video\n".repeat(3000)).unwrap();
    let out = dir.path().join("bundle");
    let command = format!(
        "{} rehearse {} --attach attach-sign-in-sheet={} --out {}; echo KEYRITE-EXIT=$?; sleep 60",
        env!("CARGO_BIN_EXE_keyrite"),
        script.display(),
        sheet.display(),
        out.display(),
    );
    let mut tmux = Tmux::start(dir.path(), &command, 80, 24);
    // Step 1: the path came with --attach, so no modal opens.
    tmux.wait_for("▶  1 ");
    tmux.keys(&["c", "1"]);
    tmux.wait_for("✓ Maria Keller");
    tmux.keys(&["g"]);
    // Step 2: no --attach path, so the TUI asks for it.
    tmux.wait_for("▶  2 ");
    tmux.keys(&["c", "1"]);
    tmux.wait_for("✓ Maria Keller");
    tmux.keys(&["g"]);
    let modal = tmux.wait_for("File to attach");
    assert!(modal.contains("attach-video"), "{modal}");
    // A pasted path in quotes, as file managers paste it.
    let typed = format!("'{}'", video.display());
    tmux.literal(&typed);
    tmux.keys(&["Enter"]);
    tmux.wait_for("Ceremony completed");
    tmux.keys(&["q"]);
    let screen = tmux.wait_for("KEYRITE-EXIT=");
    assert!(screen.contains("KEYRITE-EXIT=0"), "{screen}");

    let report = common::report(&out);
    let attachments = report["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 2, "{report}");
    assert_eq!(attachments[0]["step"], "attach-sign-in-sheet");
    assert_eq!(attachments[0]["sha256"], sha256sum(&sheet).as_str());
    assert_eq!(attachments[1]["step"], "attach-video");
    assert_eq!(attachments[1]["file_name"], "ceremony video.mp4");
    assert_eq!(attachments[1]["sha256"], sha256sum(&video).as_str());
    let verified = Command::new(env!("CARGO_BIN_EXE_keyrite"))
        .arg("verify")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
}
