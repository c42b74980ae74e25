//! `keyrite run --plain` typed at a real terminal (tmux): the line prompt, where people confirm by
//! name, say `go`, and the PIN is entered without echo. The screen captures are checked for the PIN.
//! (Without --plain, a terminal gets the TUI: see softhsm-tests/tui.rs.)

mod common;

use common::tmux::{have_tmux, Tmux};
use std::process::Command;

const PIN: &str = "31415926";

/// A line typed at the prompt, then Enter.
fn type_line(tmux: &Tmux, line: &str) {
    tmux.literal(line);
    tmux.keys(&["Enter"]);
}

#[test]
fn a_run_typed_at_a_terminal_completes_and_never_shows_the_pin() {
    if !have_tmux() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let conf = common::softhsm_util_token(dir.path(), "27182818", PIN);
    let root = common::root();
    // The security officer signs with a personal card (PIN asked after each of his confirmations and
    // for the report signature); the others have no card here.
    let ca = common::softhsm_util_cards(
        dir.path(),
        &conf,
        &[("Sven Lindqvist", "card-sven-lindqvist")],
        PIN,
    );
    // Medium, so the pre-flight warns instead of refusing on a networked test machine.
    let script: String = std::fs::read_to_string(root.join("ceremony-scripts/root-ca-p256.toml"))
        .unwrap()
        .replace(
            "security_level = \"very-high\"",
            "security_level = \"medium\"",
        )
        .lines()
        .filter(|l| !l.starts_with("card = ") || l.contains("card-sven-lindqvist"))
        .map(|l| format!("{l}\n"))
        .collect();
    let script_path = dir.path().join("script.toml");
    std::fs::write(&script_path, script).unwrap();
    let out = dir.path().join("bundle");
    let command = format!(
        "SOFTHSM2_CONF={} {} run --plain {} --out {} --signers-ca {}; echo KEYRITE-EXIT=$?; sleep 60",
        conf.display(),
        env!("CARGO_BIN_EXE_keyrite"),
        script_path.display(),
        out.display(),
        ca.display()
    );
    let mut tmux = Tmux::start(dir.path(), &command, 200, 50);

    let operators = ["Omar Haddad", "Olga Petrova", "Ines Moreau"];
    let steps: [(&str, &[&str]); 9] = [
        ("[1/9]", &["Maria Keller", "Wiebke Janssen"]),
        ("[2/9]", &["Maria Keller", "Ines Moreau"]),
        ("[3/9]", &["Sven Lindqvist", "Wiebke Janssen"]),
        ("[4/9]", &operators),
        ("[5/9]", &operators),
        ("[6/9]", &["Omar Haddad", "Sven Lindqvist", "Ines Moreau"]),
        ("[7/9]", &operators),
        ("[8/9]", &["Omar Haddad"]),
        ("[9/9]", &["Sven Lindqvist", "Wiebke Janssen"]),
    ];
    let card_prompt = "Sven Lindqvist, enter the PIN of your personal card";
    let mut card_pins = 0;
    for (header, names) in steps {
        tmux.wait_for(header);
        for name in names {
            type_line(&tmux, name);
            if *name == "Sven Lindqvist" {
                card_pins += 1;
                tmux.wait_for_nth(card_prompt, card_pins);
                type_line(&tmux, PIN);
            }
        }
        type_line(&tmux, "go");
        if header == "[4/9]" {
            tmux.wait_for("User PIN for token");
            type_line(&tmux, PIN);
        }
    }
    // The report signature at the end.
    tmux.wait_for_nth(card_prompt, card_pins + 1);
    type_line(&tmux, PIN);
    let screen = tmux.wait_for("KEYRITE-EXIT=");
    assert!(screen.contains("KEYRITE-EXIT=0"), "{screen}");
    assert!(screen.contains("ceremony completed"), "{screen}");
    assert!(
        screen.contains("key hash of example-root-p256-2026"),
        "{screen}"
    );
    assert!(!screen.contains(PIN), "the PIN was echoed:\n{screen}");
    for file in ["audit.jsonl", "report.json"] {
        let text = std::fs::read_to_string(out.join(file)).unwrap();
        assert!(!text.contains(PIN), "the PIN reached {file}");
    }
    let report = common::report(&out);
    assert_eq!(report["confirmations"]["kind"], "keyboard");
    assert_eq!(report["signed_confirmations"].as_array().unwrap().len(), 3);
    assert!(out
        .join("signatures/sven-lindqvist.report.json.p7s")
        .exists());
    let verify = Command::new(env!("CARGO_BIN_EXE_keyrite"))
        .arg("verify")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}
