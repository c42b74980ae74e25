//! The quorum screen end to end: ceremony-scripts/root-ca-quorum.toml rehearsed in the TUI, then
//! ceremony-scripts/key-activation.toml on the same --env with the custodian cards presented on the
//! quorum screen (one of them twice, refused on screen), both bundles verified.

use super::{keyrite, verify, INES, MARIA, OLGA, OMAR, SVEN, WIEBKE};
use crate::common::root;
use crate::common::tmux::{have_tmux, Tmux};
use std::path::Path;

/// Who confirms each step of ceremony-scripts/root-ca-quorum.toml (the 7th reads the key hash).
const ROOT_QUORUM_STEPS: [&[char]; 11] = [
    &[MARIA, WIEBKE],
    &[MARIA, INES],
    &[SVEN, WIEBKE],
    &[OMAR, OLGA, INES],
    &[OMAR, OLGA, INES],
    &[OMAR, OLGA, INES],
    &[OMAR, SVEN, INES],
    &[OMAR, OLGA, INES],
    &[OMAR],
    &[SVEN, WIEBKE],
    &[SVEN, WIEBKE],
];

/// Who confirms each step of ceremony-scripts/key-activation.toml (the 3rd takes the cards).
const ACTIVATION_STEPS: [&[char]; 5] = [
    &[MARIA, WIEBKE],
    &[MARIA, INES],
    &[OMAR, OLGA, INES],
    &[OMAR, OLGA, INES],
    &[OMAR],
];

/// Walk a rehearsal's steps (rehearsal PINs come from rehearsal.toml); `after_go` runs after `g`.
fn walk_steps(tmux: &mut Tmux, steps: &[&[char]], mut after_go: impl FnMut(&mut Tmux, usize)) {
    for (i, people) in steps.iter().enumerate() {
        let n = i + 1;
        tmux.wait_for(&format!("▶ {n:>2} "));
        for &p in *people {
            tmux.confirm(p);
        }
        tmux.keys(&["g"]);
        after_go(tmux, n);
    }
}

/// The quorum pane's text (right of the steps pane), its wrapped lines joined, whitespace collapsed.
fn pane_text(screen: &str) -> String {
    let text: Vec<&str> = screen
        .lines()
        .filter_map(|l| l.split_once("││").map(|(_, right)| right))
        .map(|right| right.trim_end().trim_end_matches('│'))
        .collect();
    text.join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Poll until the quorum pane says `text` (across its wrapped lines).
fn wait_for_pane(tmux: &mut Tmux, text: &str) -> String {
    tmux.wait_until(&format!("{text:?} in the quorum pane"), |screen| {
        pane_text(screen).contains(text)
    })
}

/// Rehearse one script in a fresh tmux session; `walk` drives it to the final screen.
fn rehearse_in_tui(script: &str, out: &Path, env: &Path, walk: impl FnOnce(&mut Tmux)) {
    let command = format!(
        "{} rehearse {} --out {} --env {}; echo KEYRITE-EXIT=$?; sleep 60",
        keyrite(),
        root().join("ceremony-scripts").join(script).display(),
        out.display(),
        env.display()
    );
    // A tmux server of its own: the previous one may still be going away.
    let socket_dir = out.with_extension("tmux");
    std::fs::create_dir_all(&socket_dir).unwrap();
    let mut tmux = Tmux::start(&socket_dir, &command, 80, 24);
    tmux.wait_for("level very-high");
    walk(&mut tmux);
    tmux.wait_for("Ceremony completed");
    tmux.keys(&["q"]);
    let screen = tmux.wait_for("KEYRITE-EXIT=");
    assert!(screen.contains("KEYRITE-EXIT=0"), "{screen}");
    verify(out);
}

#[test]
fn quorum_cards_are_presented_on_the_quorum_screen() {
    if !have_tmux() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("env");
    let root_ca = dir.path().join("root");
    rehearse_in_tui("root-ca-quorum.toml", &root_ca, &env, |tmux| {
        walk_steps(tmux, &ROOT_QUORUM_STEPS, |tmux, n| {
            if n == 6 {
                tmux.wait_for("as PGP words");
            }
        });
    });
    let activation = dir.path().join("activation");
    rehearse_in_tui("key-activation.toml", &activation, &env, |tmux| {
        walk_steps(tmux, &ACTIVATION_STEPS, |tmux, n| {
            if n != 3 {
                return;
            }
            let screen = wait_for_pane(tmux, "present their cards in any order");
            let pane = pane_text(&screen);
            assert!(pane.contains("0 of 2 accepted"), "{screen}");
            assert!(
                pane.contains("example-custodian-card-d · bag TEB-104204"),
                "{screen}"
            );
            // Aiko's card by its number, then the same card again: refused, and the screen says why.
            tmux.keys(&["1"]);
            wait_for_pane(tmux, "1 of 2 accepted");
            tmux.keys(&["1"]);
            wait_for_pane(tmux, "the same card counts once");
            // Dmitri's card by the arrows: the cursor rests on the first card still waiting (2).
            // With 2 of 2 accepted the step goes on at once (the walk waits for step 4); the
            // log below shows which cards counted.
            tmux.keys(&["Down", "Down", "Enter"]);
        });
    });
    let log = std::fs::read_to_string(activation.join("audit.jsonl")).unwrap();
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"quorum_card_refused\""))
        .collect();
    assert_eq!(refused.len(), 1, "{log}");
    assert!(refused[0].contains("example-custodian-card-a"), "{log}");
    let accepted: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"quorum_card_accepted\""))
        .collect();
    assert_eq!(accepted.len(), 2, "{log}");
    assert!(accepted[0].contains("example-custodian-card-a"), "{log}");
    assert!(accepted[1].contains("example-custodian-card-d"), "{log}");
}
