//! A real terminal for the SoftHSM test binaries: a detached tmux session `app` on a private
//! server (its socket in the test's directory), driven with send-keys, and read by polling
//! capture-pane with a deadline, never a blind sleep. Every distinct screen is kept in `seen`, so
//! a test can search all of them for secrets at the end.

use std::path::Path;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// How long any wait for the screen may take.
const DEADLINE: Duration = Duration::from_secs(60);

pub struct Tmux {
    socket: PathBuf,
    /// Every screen captured, for the PIN search at the end.
    pub seen: Vec<String>,
}

/// Whether tmux is installed; in CI (KEYRITE_REQUIRE_EXTERNAL=1) a missing one fails the test.
pub fn have_tmux() -> bool {
    super::have("tmux")
}

impl Tmux {
    /// A private tmux server with its socket in `dir`, running `command` in the session `app` at
    /// `cols`×`rows`.
    pub fn start(dir: &Path, command: &str, cols: u16, rows: u16) -> Tmux {
        let tmux = Tmux {
            socket: dir.join("tmux.sock"),
            seen: Vec::new(),
        };
        let (cols, rows) = (cols.to_string(), rows.to_string());
        let started = tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "app",
            "-x",
            &cols,
            "-y",
            &rows,
            command,
        ]);
        assert!(
            started.status.success(),
            "{}",
            String::from_utf8_lossy(&started.stderr)
        );
        tmux
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("-f")
            .arg("/dev/null")
            .args(args)
            .output()
            .expect("tmux runs")
    }

    /// The whole pane including its scrollback, recorded in `seen` when it changed.
    pub fn screen(&mut self) -> String {
        let out = self.run(&["capture-pane", "-p", "-S", "-2000", "-t", "app"]);
        let screen = String::from_utf8_lossy(&out.stdout).into_owned();
        if self.seen.last() != Some(&screen) {
            self.seen.push(screen.clone());
        }
        screen
    }

    /// Poll the screen until `done` holds for it, with a generous deadline; never a blind sleep.
    /// `what` names what is awaited in the timeout message.
    pub fn wait_until(&mut self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Poll the screen until `text` shows.
    pub fn wait_for(&mut self, text: &str) -> String {
        self.wait_until(&format!("{text:?}"), |screen| screen.contains(text))
    }

    /// Like [`Self::wait_for`], until `text` shows `n` times (prompts repeat in the scrollback).
    pub fn wait_for_nth(&mut self, text: &str, n: usize) -> String {
        self.wait_until(&format!("{text:?} #{n}"), |screen| {
            screen.matches(text).count() >= n
        })
    }

    /// Each of `keys` in turn, as tmux key names (`Enter`, `C-c`, `Down`, or a character).
    pub fn keys(&self, keys: &[&str]) {
        for k in keys {
            assert!(self.run(&["send-keys", "-t", "app", k]).status.success());
        }
    }

    /// `text` typed literally.
    pub fn literal(&self, text: &str) {
        assert!(self
            .run(&["send-keys", "-t", "app", "-l", text])
            .status
            .success());
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}
