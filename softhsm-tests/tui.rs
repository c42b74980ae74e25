//! The terminal UI end to end, in a detached tmux session at 80×24: the real binary, every
//! confirmation typed with send-keys, every wait on screen text (polling capture-pane, never a blind
//! sleep), the bundle verified afterwards, and every captured screen searched for the PINs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Participants of ceremony-scripts/root-ca-p256.toml, by their number in the TUI's picker.
const MARIA: char = '1';
const OMAR: char = '2';
const OLGA: char = '3';
const SVEN: char = '4';
const WIEBKE: char = '5';
const INES: char = '6';

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

struct Tmux {
    socket: PathBuf,
    /// Every screen captured, for the PIN search at the end.
    seen: Vec<String>,
}

impl Tmux {
    fn start(dir: &Path, command: &str) -> Tmux {
        let tmux = Tmux {
            socket: dir.join("tmux.sock"),
            seen: Vec::new(),
        };
        let started = tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "app",
            "-x",
            "80",
            "-y",
            "24",
            command,
        ]);
        assert!(
            started.status.success(),
            "{}",
            String::from_utf8_lossy(&started.stderr)
        );
        tmux
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("-f")
            .arg("/dev/null")
            .args(args)
            .output()
            .expect("tmux runs")
    }

    fn screen(&mut self) -> String {
        let out = self.run(&["capture-pane", "-p", "-S", "-2000", "-t", "app"]);
        let screen = String::from_utf8_lossy(&out.stdout).into_owned();
        if self.seen.last() != Some(&screen) {
            self.seen.push(screen.clone());
        }
        screen
    }

    /// Poll the screen until `text` shows, with a generous deadline; never a blind sleep.
    fn wait_for(&mut self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {text:?}; screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            assert!(self.run(&["send-keys", "-t", "app", k]).status.success());
        }
    }

    fn literal(&self, text: &str) {
        assert!(self
            .run(&["send-keys", "-t", "app", "-l", text])
            .status
            .success());
    }

    /// Confirm as participant `number` (picker: `c`, then the number).
    fn confirm(&self, number: char) {
        self.keys(&["c", &number.to_string()]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

fn have_tmux() -> bool {
    let ok = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("KEYRITE_REQUIRE_EXTERNAL").is_none(),
            "tmux is required in CI"
        );
    }
    ok
}

fn keyrite() -> &'static str {
    env!("CARGO_BIN_EXE_keyrite")
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Walk the 9 steps through the TUI. `on_activate` runs after `g` at the HSM login step.
fn walk(tmux: &mut Tmux, mut on_activate: impl FnMut(&mut Tmux)) {
    for (i, people) in STEPS.iter().enumerate() {
        let n = i + 1;
        tmux.wait_for(&format!("▶ {n:>2} "));
        if n == 6 {
            tmux.wait_for("as PGP words");
        }
        for &p in *people {
            tmux.confirm(p);
        }
        if n == 1 {
            // The same person twice: the engine refuses, and the TUI says why.
            tmux.confirm(MARIA);
            tmux.wait_for("one person never counts twice");
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
    let mut tmux = Tmux::start(dir.path(), &command);
    let first = tmux.wait_for("REHEARSAL");
    assert!(first.contains("level very-high"), "{first}");
    walk(&mut tmux, |_| {});
    let done = tmux.wait_for("Ceremony completed");
    assert!(
        done.contains(&format!("keyrite verify {}", out.display())),
        "{done}"
    );
    tmux.keys(&["q"]);
    let screen = tmux.wait_for("KEYRITE-EXIT=");
    assert!(screen.contains("KEYRITE-EXIT=0"), "{screen}");
    verify(&out);
    // The rehearsal's PINs, from its rehearsal.toml, never reach the screen.
    let toml = std::fs::read_to_string(env.join("rehearsal.toml")).unwrap();
    let pins: Vec<String> = toml
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.trim().ends_with("_pin"))
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
        .collect();
    assert_eq!(pins.len(), 2, "{toml}");
    assert_never_shown(&tmux, &pins);
}

#[test]
fn a_run_takes_the_pin_in_the_masked_modal() {
    if !have_tmux() {
        return;
    }
    const PIN: &str = "Kq-owl-Lime";
    const SO_PIN: &str = "Vx-heron-Plum";
    let dir = tempfile::tempdir().unwrap();
    let conf = common::softhsm_util_token(dir.path(), SO_PIN, PIN);
    // Medium, so the pre-flight warns instead of refusing on a networked test machine.
    let script = std::fs::read_to_string(root().join("ceremony-scripts/root-ca-p256.toml"))
        .unwrap()
        .replace(
            "security_level = \"very-high\"",
            "security_level = \"medium\"",
        );
    let script_path = dir.path().join("script.toml");
    std::fs::write(&script_path, script).unwrap();
    let out = dir.path().join("bundle");
    let command = format!(
        "SOFTHSM2_CONF={} {} run {} --out {}; echo KEYRITE-EXIT=$?; sleep 60",
        conf.display(),
        keyrite(),
        script_path.display(),
        out.display()
    );
    let mut tmux = Tmux::start(dir.path(), &command);
    walk(&mut tmux, |tmux| {
        tmux.wait_for("User PIN for token");
        tmux.literal(PIN);
        let masked = tmux.wait_for(&format!("PIN: {}", "•".repeat(PIN.len())));
        assert!(!masked.contains(PIN));
        tmux.keys(&["Enter"]);
    });
    tmux.wait_for("Ceremony completed");
    tmux.keys(&["q"]);
    let screen = tmux.wait_for("KEYRITE-EXIT=");
    assert!(screen.contains("KEYRITE-EXIT=0"), "{screen}");
    verify(&out);
    for file in ["audit.jsonl", "report.json"] {
        let text = std::fs::read_to_string(out.join(file)).unwrap();
        assert!(!text.contains(PIN), "the PIN reached {file}");
    }
    assert_never_shown(&tmux, &[PIN.to_string(), SO_PIN.to_string()]);
}

/// The unhappy paths through the real binary: a resize below 80×24 and back, an exception typed
/// into the log, Ctrl-C answered "no", then a wrong PIN: the error dialog, the aborted final
/// screen, exit code 4, and a bundle that still verifies.
#[test]
fn a_wrong_pin_shows_the_error_dialog_and_the_bundle_still_verifies() {
    if !have_tmux() {
        return;
    }
    const PIN: &str = "Kq-owl-Lime";
    const WRONG: &str = "Zz-moth-Fig";
    let dir = tempfile::tempdir().unwrap();
    let conf = common::softhsm_util_token(dir.path(), "Vx-heron-Plum", PIN);
    let script = std::fs::read_to_string(root().join("ceremony-scripts/root-ca-p256.toml"))
        .unwrap()
        .replace(
            "security_level = \"very-high\"",
            "security_level = \"medium\"",
        );
    let script_path = dir.path().join("script.toml");
    std::fs::write(&script_path, script).unwrap();
    let out = dir.path().join("bundle");
    let command = format!(
        "SOFTHSM2_CONF={} {} run {} --out {}; echo KEYRITE-EXIT=$?; sleep 60",
        conf.display(),
        keyrite(),
        script_path.display(),
        out.display()
    );
    let mut tmux = Tmux::start(dir.path(), &command);
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
    walk_until_pin(&mut tmux);
    tmux.literal(WRONG);
    tmux.keys(&["Enter"]);
    let error = tmux.wait_for("What failed:");
    assert!(error.contains("failed"), "{error}");
    tmux.wait_for("CKR_PIN_INCORRECT");
    tmux.keys(&["Enter"]);
    tmux.wait_for("Ceremony aborted");
    tmux.keys(&["q"]);
    let screen = tmux.wait_for("KEYRITE-EXIT=");
    assert!(screen.contains("KEYRITE-EXIT=4"), "{screen}");
    verify(&out);
    let log = std::fs::read_to_string(out.join("audit.jsonl")).unwrap();
    assert!(log.contains("laptop seal number differs from the inventory"));
    assert!(!log.contains(WRONG) && !log.contains(PIN));
    assert_never_shown(&tmux, &[PIN.to_string(), WRONG.to_string()]);
}

/// Steps 1–3 as in [`walk`], then the go at step 4, up to the PIN dialog.
fn walk_until_pin(tmux: &mut Tmux) {
    for (i, people) in STEPS.iter().take(4).enumerate() {
        tmux.wait_for(&format!("▶ {:>2} ", i + 1));
        for &p in *people {
            tmux.confirm(p);
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
    let mut tmux = Tmux::start(dir.path(), &command);
    tmux.wait_for("▶  1 ");
    tmux.confirm(MARIA);
    tmux.wait_for("✓ Maria Keller");
    tmux.keys(&["C-c"]);
    tmux.wait_for("Abort the ceremony?");
    tmux.keys(&["y"]);
    let done = tmux.wait_for("Ceremony aborted");
    assert!(done.contains("Ctrl-C"), "{done}");
    tmux.keys(&["q"]);
    let screen = tmux.wait_for("KEYRITE-EXIT=");
    assert!(screen.contains("KEYRITE-EXIT=3"), "{screen}");
    verify(&out);
    let log = std::fs::read_to_string(out.join("audit.jsonl")).unwrap();
    assert!(log.contains("ceremony_aborted") && log.contains("Ctrl-C"));
}
