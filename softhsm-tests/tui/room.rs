//! The room's view end to end at 80×24 (issue 14): a long instruction scrolled to its last line,
//! and Ctrl-U clearing a half-typed HSM PIN before the right one is accepted.

use super::{keyrite, name, run_command, verify, walk_until_pin, MARIA, STEPS, SVEN};
use crate::common::root;
use crate::common::tmux::{have_tmux, Tmux};
use std::time::{Duration, Instant};

const LAST: &str = "END-OF-PREFLIGHT.";

#[test]
fn a_long_instruction_scrolls_to_its_last_line_at_80x24() {
    if !have_tmux() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let long = format!(
        "instructions = \"\"\"\n{}{LAST}\"\"\"\naction = \"preflight\"",
        "The master of ceremony reads the laptop's serial number aloud and the internal witness \
         compares it with the inventory sheet, line by line.\n"
            .repeat(10)
    );
    let script = std::fs::read_to_string(root().join("ceremony-scripts/root-ca-p256.toml"))
        .unwrap()
        .replacen(
            "instructions = \"\"\"\nkeyrite now records the laptop's name, operating system, clock and time zone, and every network\ninterface. The master of ceremony confirms that no network cable is plugged in and that Wi-Fi is\nswitched off. The internal witness watches and confirms.\"\"\"\naction = \"preflight\"",
            &long,
            1,
        );
    assert!(script.contains(LAST), "the pre-flight step was found");
    let script_path = dir.path().join("script.toml");
    std::fs::write(&script_path, script).unwrap();
    let command = format!(
        "{} rehearse {} --out {} --env {}; echo KEYRITE-EXIT=$?; sleep 60",
        keyrite(),
        script_path.display(),
        dir.path().join("bundle").display(),
        dir.path().join("env").display()
    );
    let mut tmux = Tmux::start(dir.path(), &command, 80, 24);
    let first = tmux.wait_for("▼ more below");
    assert!(!first.contains(LAST), "{first}");
    // Scroll down one line at a time until the last sentence shows, within the deadline.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut screen = first;
    while !screen.contains(LAST) {
        assert!(
            Instant::now() < deadline,
            "never scrolled to the end:\n{screen}"
        );
        tmux.keys(&["Down"]);
        let before = screen.clone();
        screen = tmux.wait_until("the text to move", |s| s != before || s.contains("▲ end"));
    }
    let end = tmux.wait_for("▲ end");
    assert!(end.contains(LAST), "{end}");
    // Back up: the first line returns.
    tmux.keys(&["PageUp", "PageUp", "PageUp", "PageUp", "PageUp"]);
    tmux.wait_for("▼ more below (lines 1-");
    tmux.keys(&["C-c"]);
    tmux.wait_for("Abort the ceremony?");
    tmux.keys(&["y"]);
    tmux.wait_for("Ceremony aborted");
    tmux.keys(&["q"]);
    let exit = tmux.wait_for("KEYRITE-EXIT=");
    assert!(exit.contains("KEYRITE-EXIT=3"), "{exit}");
}

#[test]
fn ctrl_u_clears_the_pin_field_and_the_right_pin_is_accepted() {
    if !have_tmux() {
        return;
    }
    const PIN: &str = "Kq-owl-Lime";
    const CARD_PIN: &str = "Jw-finch-Rye";
    let dir = tempfile::tempdir().unwrap();
    let command = run_command(dir.path(), "Vx-heron-Plum", PIN, CARD_PIN);
    let out = dir.path().join("bundle");
    let mut tmux = Tmux::start(dir.path(), &command, 80, 24);
    tmux.wait_for("▶  1 ");
    tmux.confirm(MARIA);
    tmux.card_pin(name(MARIA), CARD_PIN);
    walk_until_pin(&mut tmux, CARD_PIN);
    // A wrong PIN half typed, then Ctrl-U: the field is empty again (no dot left, no "u" typed).
    tmux.literal("Zz-moth");
    tmux.wait_for(&format!("PIN: {}", "•".repeat(7)));
    tmux.keys(&["C-u"]);
    tmux.wait_until("the PIN field to be empty", |s| {
        s.lines().any(|l| l.contains("PIN:") && !l.contains('•'))
    });
    tmux.literal(PIN);
    tmux.wait_for(&format!("PIN: {}", "•".repeat(PIN.len())));
    tmux.keys(&["Enter"]);
    // The login succeeded: the ceremony moves on to step 5 and completes.
    for (i, people) in STEPS.iter().enumerate().skip(4) {
        tmux.wait_for(&format!("▶ {:>2} ", i + 1));
        if i == 5 {
            tmux.wait_for("as PGP words");
        }
        for &p in *people {
            tmux.confirm(p);
            tmux.card_pin(name(p), CARD_PIN);
        }
        tmux.keys(&["g"]);
    }
    tmux.card_pin(name(SVEN), CARD_PIN);
    tmux.wait_for("Ceremony completed");
    tmux.keys(&["q"]);
    let screen = tmux.wait_for("KEYRITE-EXIT=");
    assert!(screen.contains("KEYRITE-EXIT=0"), "{screen}");
    // The final screen's notices stay in the terminal after it closes.
    assert!(
        screen.contains("report signatures and notices:"),
        "{screen}"
    );
    verify(&out);
    for s in &tmux.seen {
        assert!(
            !s.contains(PIN) && !s.contains(CARD_PIN),
            "a PIN showed:\n{s}"
        );
    }
}
