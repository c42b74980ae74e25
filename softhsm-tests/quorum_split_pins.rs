//! The split's HSM PIN change under failure: a wrong current SO PIN changes nothing, and a run
//! stopped at each point of the PIN change (the test-only hook KEYRITE_TEST_KILL_AT) leaves a
//! recorded state that a later run finishes with the cards. Every PIN is checked from outside with
//! pkcs11-tool.

mod common;

use common::quorum::*;
use common::{root, text};
use keyrite::quorum::combine;
use secrecy::ExposeSecret;

const HSM: &str = "example-quorum-hsm";

/// The shipped root ceremony without its activate-hsm step: its split is the first HSM step, so it
/// finishes an interrupted split recorded in the rehearsal folder.
fn finishing_script(env: &Env) -> String {
    let text =
        std::fs::read_to_string(root().join("ceremony-scripts/root-ca-quorum.toml")).unwrap();
    let (a, b) = (
        text.find("[[steps]]\nid = \"activate-hsm\"").unwrap(),
        text.find("[[steps]]\nid = \"split-activation\"").unwrap(),
    );
    let path = env.dir.path().join("finish.toml");
    std::fs::write(&path, format!("{}{}", &text[..a], &text[b..])).unwrap();
    path.display().to_string()
}

/// The rehearsal folder's record of the root split.
fn recorded_stage(env: &Env) -> (String, String, String) {
    let text = std::fs::read_to_string(env.env_dir().join("rehearsal.toml")).unwrap();
    let v: toml::Value = toml::from_str(&text).unwrap();
    let split = v["splits"]
        .as_array()
        .and_then(|s| s.last())
        .unwrap_or_else(|| panic!("no split recorded: {text}"))
        .clone();
    let s = |k: &str| split[k].as_str().unwrap().to_string();
    (s("stage"), s("so_pin"), s("user_pin"))
}

#[test]
fn a_wrong_current_so_pin_at_the_split_changes_nothing() {
    let Some(mut env) = Env::new() else {
        return;
    };
    // A run that stops at its first step makes the throw-away tokens and nothing else.
    let (out, _) = env.rehearse("root-ca-quorum.toml", "tokens", Some(""));
    assert!(!out.status.success(), "{}", text(&out));
    let (user, so) = (env.pin(HSM), env.so_pin(HSM));
    let file = env.env_dir().join("rehearsal.toml");
    let saved = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, saved.replace(&so, "Kq-owl-Lime-wrong-so")).unwrap();
    let (out, bundle) = env.rehearse("root-ca-quorum.toml", "wrong-so", None);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("refused its current SO PIN"), "{t}");
    assert!(t.contains("nothing was changed"), "{t}");
    let log = std::fs::read_to_string(bundle.join("audit.jsonl")).unwrap();
    assert!(
        !log.contains("write_share") && !log.contains("set_so_pin"),
        "{log}"
    );
    verify(&bundle);
    std::fs::write(&file, saved).unwrap();
    // Both old PINs still log in (pkcs11-tool), and no card holds a share.
    assert!(env.user_logs_in(HSM, &user), "the old user PIN");
    assert!(env.so_logs_in(HSM, &so), "the old SO PIN");
    assert!(
        !env.so_logs_in(HSM, "Kq-owl-Lime-wrong-so"),
        "the check can fail"
    );
    for card in OLD_CARDS {
        let list = env.data_objects(card);
        assert!(!list.contains("keyrite"), "{card}: {list}");
    }
}

#[test]
fn a_split_stopped_at_each_point_of_its_pin_change_is_recorded_and_finished() {
    // (hook point, stage recorded, SO PIN, user PIN) — as the log and the folder must say.
    let points = [
        (
            "split-activation:stage-setting-so-pin",
            "setting-so-pin",
            "old or derived",
            "old",
        ),
        (
            "split-activation:stage-setting-user-pin",
            "setting-user-pin",
            "derived",
            "old or derived",
        ),
        ("split-activation:stage-done", "done", "derived", "derived"),
    ];
    for (point, stage, so_state, user_state) in points {
        let Some(mut env) = Env::new() else {
            return;
        };
        let vars = [("KEYRITE_TEST_KILL_AT", point)];
        let (out, bundle) = env.rehearse_with("root-ca-quorum.toml", "killed", None, &vars);
        let t = text(&out);
        assert!(!out.status.success(), "{point}: {t}");
        assert!(
            t.contains("killed here"),
            "{point}: the hook did not fire: {t}"
        );
        // The log's last PIN record says which PIN is which and what to do; no split is recorded.
        let log = Env::log(&bundle);
        let pins = log
            .iter()
            .rev()
            .find(|e| e["event"]["kind"] == "quorum_pins")
            .unwrap_or_else(|| panic!("{point}: no quorum_pins"));
        assert_eq!(pins["event"]["stage"], stage, "{point}");
        assert_eq!(pins["event"]["so_pin"], so_state, "{point}");
        assert_eq!(pins["event"]["user_pin"], user_state, "{point}");
        if stage != "done" {
            let next = pins["event"]["next"].as_str().unwrap_or_default();
            assert!(next.contains("Finishing an interrupted split"), "{next}");
        }
        assert!(log.iter().all(|e| e["event"]["kind"] != "quorum_split"));
        assert_eq!(
            recorded_stage(&env),
            (stage.into(), so_state.into(), user_state.into()),
            "{point}: the rehearsal folder's record"
        );
        // What the HSM really holds, seen by pkcs11-tool.
        let (shares, commitments) = shares_of(&env, &OLD_CARDS[..2], ROOT_ID);
        let secret = combine(&shares, &commitments).unwrap();
        let (user, so) = (secret.user_pin(), secret.so_pin());
        let (old_user, old_so) = (env.pin(HSM), env.so_pin(HSM));
        let so_is_derived = env.so_logs_in(HSM, so.expose_secret());
        assert_eq!(so_is_derived, so_state == "derived", "{point}: SO PIN");
        if !so_is_derived {
            assert!(env.so_logs_in(HSM, &old_so), "{point}: old SO PIN");
        }
        let user_is_derived = user_state == "derived";
        let user_pin = if user_is_derived {
            user.expose_secret().to_string()
        } else {
            old_user.clone()
        };
        assert!(env.user_logs_in(HSM, &user_pin), "{point}: user PIN");
        // A later run finishes the change with the cards, and records the split.
        let script = finishing_script(&env);
        let (out, bundle) = env.rehearse(&script, "finished", None);
        assert!(out.status.success(), "{point}: {}", text(&out));
        verify(&bundle);
        let log = Env::log(&bundle);
        assert!(log.iter().any(|e| e["event"]["kind"] == "quorum_split"));
        assert_eq!(recorded_stage(&env).0, "done");
        assert!(
            env.user_logs_in(HSM, user.expose_secret()),
            "{point}: derived user PIN"
        );
        assert!(
            env.so_logs_in(HSM, so.expose_secret()),
            "{point}: derived SO PIN"
        );
        if !user_is_derived {
            assert!(
                !env.user_logs_in(HSM, &old_user),
                "{point}: old user PIN gone"
            );
        }
    }
}
