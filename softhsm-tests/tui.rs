//! The terminal UI end to end, in a detached tmux session at 80×24: the real binary, every
//! confirmation typed with send-keys, every PIN (the HSM's, and each personal card's after each
//! carded confirmation and for the report signatures) typed into the masked modal, every wait on
//! screen text (polling capture-pane, never a blind sleep), the bundle verified afterwards, and every
//! captured screen searched for the PINs.

mod common;
/// The quorum screen end to end (root-ca-quorum.toml, then key-activation.toml).
#[path = "tui/quorum_screen.rs"]
mod quorum_screen;
/// The room's view: scrolling a long instruction, line editing in the PIN dialog.
#[path = "tui/room.rs"]
mod room;

use common::root;
use common::tmux::{have_tmux, Tmux};
use std::path::Path;
use std::process::Command;

/// Participants of ceremony-scripts/root-ca-p256.toml, by their number in the TUI's picker.
const MARIA: char = '1';
const OMAR: char = '2';
const OLGA: char = '3';
const SVEN: char = '4';
const WIEBKE: char = '5';
const INES: char = '6';

/// Names by picker number, as the card-PIN prompt names them.
fn name(number: char) -> &'static str {
    match number {
        MARIA => "Maria Keller",
        OMAR => "Omar Haddad",
        OLGA => "Olga Petrova",
        SVEN => "Sven Lindqvist",
        WIEBKE => "Wiebke Janssen",
        _ => "Ines Moreau",
    }
}

/// Every participant's personal card, by the labels of ceremony-scripts/root-ca-p256.toml.
const CARDS: [(&str, &str); 6] = [
    ("Maria Keller", "card-maria-keller"),
    ("Omar Haddad", "card-omar-haddad"),
    ("Olga Petrova", "card-olga-petrova"),
    ("Sven Lindqvist", "card-sven-lindqvist"),
    ("Wiebke Janssen", "card-wiebke-janssen"),
    ("Ines Moreau", "card-ines-moreau"),
];

/// Who confirms each of the 9 steps (as in softhsm-tests/interactive.rs).
const STEPS: [&[char]; 9] = [
    &[MARIA, WIEBKE],
    &[MARIA, INES],
    &[SVEN, WIEBKE],
    &[OMAR, OLGA, INES],
    &[OMAR, OLGA, INES],
    &[OMAR, SVEN, INES],
    &[OMAR, OLGA, INES],
    &[OMAR],
    &[SVEN, WIEBKE],
];

/// The TUI's own gestures, on top of the shared harness.
impl Tmux {
    /// Confirm as participant `number` (picker: `c`, then the number).
    fn confirm(&self, number: char) {
        self.keys(&["c", &number.to_string()]);
    }

    /// The final screen (its first line `title`), scrolled to its end: the top screen and the
    /// end screen together, so every notice on it can be searched.
    fn done_screen(&mut self, title: &str) -> String {
        let top = self.wait_for(title);
        if !top.contains("▼ more below") {
            return top;
        }
        self.keys(&["PageDown", "PageDown", "PageDown", "PageDown", "PageDown"]);
        let end = self.wait_for("▲ end");
        format!("{top}\n{end}")
    }

    /// Wait for `person`'s card-PIN modal, type `pin` (checking it shows masked), and submit it.
    fn card_pin(&mut self, person: &str, pin: &str) -> String {
        let modal = self.wait_for(&format!("{person}, enter the PIN of your personal card"));
        assert!(modal.contains("Personal card PIN"), "{modal}");
        self.literal(pin);
        self.wait_for(&format!("PIN: {}", "•".repeat(pin.chars().count())));
        self.keys(&["Enter"]);
        modal
    }
}

fn keyrite() -> &'static str {
    env!("CARGO_BIN_EXE_keyrite")
}

/// Walk the 9 steps through the TUI. `on_activate` runs after `g` at the HSM login step. With
/// `card_pin`, every participant has a card whose PIN the modal asks after each confirmation.
fn walk(tmux: &mut Tmux, card_pin: Option<&str>, mut on_activate: impl FnMut(&mut Tmux)) {
    for (i, people) in STEPS.iter().enumerate() {
        let n = i + 1;
        tmux.wait_for(&format!("▶ {n:>2} "));
        if n == 6 {
            tmux.wait_for("as PGP words");
        }
        for &p in *people {
            tmux.confirm(p);
            if let Some(pin) = card_pin {
                tmux.card_pin(name(p), pin);
            }
        }
        if n == 1 {
            // The same person twice: the engine refuses, and the TUI says why.
            tmux.confirm(MARIA);
            tmux.wait_for("one person never counts");
        }
        tmux.keys(&["g"]);
        if n == 4 {
            on_activate(tmux);
        }
    }
}

fn verify(out: &Path) {
    let verify = Command::new(keyrite())
        .arg("verify")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

fn assert_never_shown(tmux: &Tmux, pins: &[String]) {
    assert!(!tmux.seen.is_empty());
    for pin in pins {
        assert!(pin.len() >= 8, "a PIN too short to search for");
        for screen in &tmux.seen {
            assert!(!screen.contains(pin.as_str()), "a PIN showed:\n{screen}");
        }
    }
}

#[test]
fn a_rehearsal_walked_through_the_tui_completes_and_verifies() {
    if !have_tmux() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bundle");
    let env = dir.path().join("env");
    let command = format!(
        "{} rehearse {} --out {} --env {}; echo KEYRITE-EXIT=$?; sleep 60",
        keyrite(),
        root().join("ceremony-scripts/root-ca-p256.toml").display(),
        out.display(),
        env.display()
    );
    let mut tmux = Tmux::start(dir.path(), &command, 80, 24);
    // The header, not the line keyrite prints before the TUI takes the screen.
    let first = tmux.wait_for("level very-high");
    assert!(first.contains("REHEARSAL │"), "{first}");
    walk(&mut tmux, None, |_| {});
    let done = tmux.done_screen("Ceremony completed");
    assert!(
        done.contains(&format!("keyrite verify {}", out.display())),
        "{done}"
    );
    // The rehearsal cards sign the report (very-high: every carded participant); the final screen
    // lists the signatures.
    assert!(done.contains("Report signatures and notices:"), "{done}");
    assert!(
        done.contains("Maria Keller (master-of-ceremony with a personal card)"),
        "{done}"
    );
    tmux.keys(&["q"]);
    let screen = tmux.wait_for("KEYRITE-EXIT=");
    assert!(screen.contains("KEYRITE-EXIT=0"), "{screen}");
    verify(&out);
    // Every PIN of the rehearsal's rehearsal.toml (the HSM token, the participants CA and each
    // throw-away card: an SO and a user PIN per `[[tokens]]` entry) never reaches the screen.
    let toml = std::fs::read_to_string(env.join("rehearsal.toml")).unwrap();
    let tokens = toml.lines().filter(|l| l.trim() == "[[tokens]]").count();
    assert!(
        tokens >= 1 + 1 + CARDS.len(),
        "HSM, CA and 6 cards:\n{toml}"
    );
    let pins: Vec<String> = toml
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.trim().ends_with("_pin"))
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
        .collect();
    assert_eq!(pins.len(), 2 * tokens, "{toml}");
    assert_never_shown(&tmux, &pins);
}

/// A softhsm2-util HSM token, a softhsm2-util card with a certificate from an openssl CA for every
/// participant (PIN `card_pin`), and the shipped P-256 script at medium (so the pre-flight warns
/// instead of refusing on a networked test machine). Returns the tmux command that runs it.
fn run_command(dir: &Path, so_pin: &str, pin: &str, card_pin: &str) -> String {
    let conf = common::softhsm_util_token(dir, so_pin, pin);
    let ca = common::softhsm_util_cards(dir, &conf, &CARDS, card_pin);
    let script = std::fs::read_to_string(root().join("ceremony-scripts/root-ca-p256.toml"))
        .unwrap()
        .replace(
            "security_level = \"very-high\"",
            "security_level = \"medium\"",
        );
    let script_path = dir.join("script.toml");
    std::fs::write(&script_path, script).unwrap();
    format!(
        "SOFTHSM2_CONF={} {} run {} --out {} --signers-ca {}; echo KEYRITE-EXIT=$?; sleep 60",
        conf.display(),
        keyrite(),
        script_path.display(),
        dir.join("bundle").display(),
        ca.display()
    )
}

/// The security officer's detached CMS signature of report.json checks out with openssl against
/// the card CA (medium: he is the one required report signer).
fn assert_report_signed_by_sven(dir: &Path) {
    let out = dir.join("bundle");
    let p7s = out.join("signatures/sven-lindqvist.report.json.p7s");
    assert!(p7s.exists(), "no report signature by Sven Lindqvist");
    let cms = Command::new("openssl")
        .args([
            "cms", "-verify", "-binary", "-inform", "DER", "-purpose", "any",
        ])
        .arg("-in")
        .arg(&p7s)
        .arg("-content")
        .arg(out.join("report.json"))
        .arg("-CAfile")
        .arg(dir.join("ca.pem"))
        .args(["-out", "/dev/null"])
        .output()
        .unwrap();
    assert!(
        cms.status.success(),
        "openssl cms -verify: {}",
        String::from_utf8_lossy(&cms.stderr)
    );
}

#[test]
fn a_run_takes_the_pin_in_the_masked_modal() {
    if !have_tmux() {
        return;
    }
    const PIN: &str = "Kq-owl-Lime";
    const SO_PIN: &str = "Vx-heron-Plum";
    const CARD_PIN: &str = "Jw-finch-Rye";
    let dir = tempfile::tempdir().unwrap();
    let command = run_command(dir.path(), SO_PIN, PIN, CARD_PIN);
    let out = dir.path().join("bundle");
    let mut tmux = Tmux::start(dir.path(), &command, 80, 24);
    walk(&mut tmux, Some(CARD_PIN), |tmux| {
        let modal = tmux.wait_for("User PIN for token");
        assert!(modal.contains("HSM PIN"), "{modal}");
        tmux.literal(PIN);
        let masked = tmux.wait_for(&format!("PIN: {}", "•".repeat(PIN.len())));
        assert!(!masked.contains(PIN));
        tmux.keys(&["Enter"]);
    });
    // The security officer signs the report with his card at the end.
    tmux.card_pin(name(SVEN), CARD_PIN);
    let done = tmux.done_screen("Ceremony completed");
    assert!(
        done.contains("Sven Lindqvist (security-officer) signed"),
        "{done}"
    );
    tmux.keys(&["q"]);
    let screen = tmux.wait_for("KEYRITE-EXIT=");
    assert!(screen.contains("KEYRITE-EXIT=0"), "{screen}");
    // The driver's notice after each card signature showed in the step pane.
    assert!(
        tmux.seen
            .iter()
            .any(|s| s.contains("Omar Haddad signed the")),
        "no signature notice was shown"
    );
    verify(&out);
    assert_report_signed_by_sven(dir.path());
    for file in ["audit.jsonl", "report.json"] {
        let text = std::fs::read_to_string(out.join(file)).unwrap();
        assert!(
            !text.contains(PIN) && !text.contains(CARD_PIN),
            "a PIN reached {file}"
        );
    }
    let report = common::report(&out);
    let signed: usize = STEPS.iter().map(|people| people.len()).sum();
    assert_eq!(
        report["signed_confirmations"].as_array().unwrap().len(),
        signed,
        "every confirmation is signed with a card"
    );
    assert_never_shown(
        &tmux,
        &[PIN.to_string(), SO_PIN.to_string(), CARD_PIN.to_string()],
    );
}

/// The unhappy paths through the real binary: a resize below 80×24 and back, an exception typed
/// into the log, Ctrl-C answered "no", a wrong card PIN (the card's refusal in the modal, then the
/// right PIN), then a wrong HSM PIN (the modal asks again with the token's answer on top), Esc (back
/// to the step, which is performed again), the right HSM PIN: the ceremony completes, exit code 0,
/// the retry is in the log, and the bundle verifies.
#[test]
fn a_wrong_hsm_pin_is_asked_again_and_the_ceremony_completes() {
    if !have_tmux() {
        return;
    }
    const PIN: &str = "Kq-owl-Lime";
    const WRONG: &str = "Zz-moth-Fig";
    const CARD_PIN: &str = "Jw-finch-Rye";
    const WRONG_CARD: &str = "Qy-wren-Oak";
    let dir = tempfile::tempdir().unwrap();
    let command = run_command(dir.path(), "Vx-heron-Plum", PIN, CARD_PIN);
    let out = dir.path().join("bundle");
    let mut tmux = Tmux::start(dir.path(), &command, 80, 24);
    tmux.wait_for("▶  1 ");
    // Too small, then back: the screen says so, and nothing is lost.
    tmux.run(&["resize-window", "-t", "app", "-x", "70", "-y", "20"]);
    tmux.wait_for("make it at least 80×24");
    tmux.run(&["resize-window", "-t", "app", "-x", "80", "-y", "24"]);
    tmux.wait_for("▶  1 ");
    // An exception, by the internal witness.
    tmux.keys(&["x", &WIEBKE.to_string()]);
    tmux.wait_for("Exception recorded by Wiebke Janssen");
    tmux.literal("laptop seal number differs from the inventory");
    tmux.keys(&["Enter"]);
    tmux.wait_for("exception_recorded");
    // Ctrl-C asks first; "n" carries on.
    tmux.keys(&["C-c"]);
    tmux.wait_for("Abort the ceremony?");
    tmux.keys(&["n"]);
    // A wrong card PIN: the card refuses, and the modal asks again with the card's answer on top.
    tmux.confirm(MARIA);
    tmux.card_pin(name(MARIA), WRONG_CARD);
    // "! " is the modal's warning line (the step pane says "! warning: ").
    let again = tmux.wait_for("! Maria Keller's card refused the login");
    assert!(again.contains("Personal card PIN"), "{again}");
    tmux.card_pin(name(MARIA), CARD_PIN);
    tmux.wait_for("Maria Keller signed the");
    walk_until_pin(&mut tmux, CARD_PIN);
    tmux.literal(WRONG);
    tmux.keys(&["Enter"]);
    // The token refused it: the modal asks again with what the token said on top.
    let again = tmux.wait_for("! wrong HSM PIN");
    assert!(
        again.contains("HSM PIN") && again.contains("CKR_PIN_INCORRECT"),
        "{again}"
    );
    // Esc goes back to the step (not an abort); `g` performs it again.
    tmux.keys(&["Escape"]);
    tmux.wait_for("step_withdrawn");
    tmux.keys(&["g"]);
    tmux.wait_for("User PIN for token");
    tmux.literal(PIN);
    tmux.wait_for(&format!("PIN: {}", "•".repeat(PIN.len())));
    tmux.keys(&["Enter"]);
    for (i, people) in STEPS.iter().enumerate().skip(4) {
        tmux.wait_for(&format!("▶ {:>2} ", i + 1));
        for &p in *people {
            tmux.confirm(p);
            tmux.card_pin(name(p), CARD_PIN);
        }
        tmux.keys(&["g"]);
    }
    tmux.card_pin(name(SVEN), CARD_PIN);
    let done = tmux.wait_for("Ceremony completed");
    assert!(
        done.contains("Sven Lindqvist (security-officer) signed"),
        "{done}"
    );
    tmux.keys(&["q"]);
    let screen = tmux.wait_for("KEYRITE-EXIT=");
    assert!(screen.contains("KEYRITE-EXIT=0"), "{screen}");
    verify(&out);
    assert_report_signed_by_sven(dir.path());
    let log = std::fs::read_to_string(out.join("audit.jsonl")).unwrap();
    assert!(log.contains("laptop seal number differs from the inventory"));
    assert!(log.contains("\"kind\":\"retried\"") && log.contains("\"kind\":\"step_withdrawn\""));
    for pin in [PIN, WRONG, CARD_PIN, WRONG_CARD] {
        assert!(!log.contains(pin), "a PIN reached the log");
    }
    assert_never_shown(
        &tmux,
        &[
            PIN.to_string(),
            WRONG.to_string(),
            CARD_PIN.to_string(),
            WRONG_CARD.to_string(),
        ],
    );
}

/// Three wrong PINs for a personal card: the modal asks three times, each retry with the card's
/// refusal on top; then keyrite stops, says why in its dialog, logs the abort (exit code 4), and the
/// bundle's chain and report stay intact (see the KNOWN GAP below for the two checks that fail).
#[test]
fn three_wrong_card_pins_stop_the_ceremony_on_the_record() {
    if !have_tmux() {
        return;
    }
    const CARD_PIN: &str = "Jw-finch-Rye";
    const WRONG_CARD: &str = "Qy-wren-Oak";
    let dir = tempfile::tempdir().unwrap();
    let command = run_command(dir.path(), "Vx-heron-Plum", "Kq-owl-Lime", CARD_PIN);
    let out = dir.path().join("bundle");
    let mut tmux = Tmux::start(dir.path(), &command, 80, 24);
    tmux.wait_for("▶  1 ");
    tmux.confirm(MARIA);
    let first = tmux.card_pin(name(MARIA), WRONG_CARD);
    assert!(!first.contains("card refused the login"), "{first}");
    for _ in 0..2 {
        tmux.wait_for("! Maria Keller's card refused the login");
        tmux.card_pin(name(MARIA), WRONG_CARD);
    }
    // The confirmation_unsigned entry is checked in the log below (the evidence pane at 80×24
    // shows only the newest entry).
    tmux.wait_for("Maria Keller's confirmation stays unsigned");
    // The abort is on the record, and the security officer still signs the aborted report.
    tmux.card_pin(name(SVEN), CARD_PIN);
    let done = tmux.done_screen("Ceremony aborted");
    assert!(
        done.contains("Maria Keller's card did not sign") && done.contains("CKR_PIN_INCORRECT"),
        "{done}"
    );
    // The signature made shows before the card's refusals, which the abort reason already gives.
    assert!(
        done.contains("i Sven Lindqvist (security-officer) signed"),
        "{done}"
    );
    tmux.keys(&["q"]);
    let screen = tmux.wait_for("KEYRITE-EXIT=");
    assert!(screen.contains("KEYRITE-EXIT=3"), "{screen}");
    // The aborted report carries the security officer's signature (checked with openssl), and none
    // by Maria, whose card refused.
    assert_report_signed_by_sven(dir.path());
    assert!(!out.join("signatures/maria-keller.report.json.p7s").exists());
    let log = std::fs::read_to_string(out.join("audit.jsonl")).unwrap();
    let kinds: Vec<String> = log
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["event"]["kind"].as_str().unwrap().to_string()
        })
        .collect();
    let at = kinds
        .iter()
        .position(|k| k == "confirmation_unsigned")
        .expect("confirmation_unsigned in the log");
    // The three refused logins are logged as retries, between the confirmation and its verdict.
    assert_eq!(kinds[at - 3..at], ["retried", "retried", "retried"]);
    assert_eq!(kinds[at - 4], "confirmed");
    assert_eq!(kinds[at + 1], "ceremony_aborted");
    assert!(!log.contains("confirmation_signed"));
    // verify passes: the unsigned confirmation is explained by the log, and says so (WARN).
    let verified = Command::new(keyrite())
        .arg("verify")
        .arg(&out)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success(), "{table}");
    assert!(!table.contains("FAIL"), "{table}");
    let warned: Vec<&str> = table.lines().filter(|l| l.starts_with("WARN")).collect();
    assert_eq!(warned.len(), 1, "{table}");
    assert!(
        warned[0].contains("by Maria Keller (step preflight) is not signed")
            && warned[0].contains("confirmation_unsigned at entry"),
        "{table}"
    );
    assert!(table.contains("ceremony result:     ABORTED"), "{table}");
    assert_never_shown(&tmux, &[CARD_PIN.to_string(), WRONG_CARD.to_string()]);
}

/// Steps 1–3 as in [`walk`] (Maria's step-1 confirmation, with its card PIN, already given), then
/// the go at step 4, up to the HSM PIN dialog.
fn walk_until_pin(tmux: &mut Tmux, card_pin: &str) {
    for (i, people) in STEPS.iter().take(4).enumerate() {
        tmux.wait_for(&format!("▶ {:>2} ", i + 1));
        for &p in *people {
            if i == 0 && p == MARIA {
                continue;
            }
            tmux.confirm(p);
            tmux.card_pin(name(p), card_pin);
        }
        tmux.keys(&["g"]);
    }
    tmux.wait_for("User PIN for token");
}

/// Ctrl-C, then "y": the abort is logged with its reason and the bundle verifies (exit code 3).
#[test]
fn ctrl_c_then_yes_aborts_on_the_record() {
    if !have_tmux() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bundle");
    let command = format!(
        "{} rehearse {} --out {}; echo KEYRITE-EXIT=$?; sleep 60",
        keyrite(),
        root().join("ceremony-scripts/root-ca-p256.toml").display(),
        out.display(),
    );
    let mut tmux = Tmux::start(dir.path(), &command, 80, 24);
    tmux.wait_for("▶  1 ");
    tmux.confirm(MARIA);
    tmux.wait_for("✓ Maria Keller");
    tmux.keys(&["C-c"]);
    tmux.wait_for("Abort the ceremony?");
    tmux.keys(&["y"]);
    let done = tmux.done_screen("Ceremony aborted");
    assert!(done.contains("Ctrl-C"), "{done}");
    tmux.keys(&["q"]);
    let screen = tmux.wait_for("KEYRITE-EXIT=");
    assert!(screen.contains("KEYRITE-EXIT=3"), "{screen}");
    verify(&out);
    let log = std::fs::read_to_string(out.join("audit.jsonl")).unwrap();
    assert!(log.contains("ceremony_aborted") && log.contains("Ctrl-C"));
}
