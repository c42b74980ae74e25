use super::*;
use crate::script::*;

fn person(name: &str, role: Role) -> Participant {
    Participant {
        name: name.into(),
        role,
        also: None,
        organisation: None,
        card: None,
    }
}

fn step(id: &str, action: Action, confirm_by: Vec<Role>, witnessed_by: Vec<Role>) -> Step {
    Step {
        id: id.into(),
        title: id.into(),
        instructions: "do it".into(),
        action,
        confirm_by,
        min_confirmations: None,
        witnessed_by,
        key: None,
        certificate: None,
        attachment: None,
        crl: None,
        hsm: None,
        min_per_role: Default::default(),
    }
}

fn script() -> Script {
    Script {
        format: SCRIPT_FORMAT,
        ceremony: CeremonyInfo {
            id: "T-1".into(),
            name: "test".into(),
            kind: "root-key-generation".into(),
            place: "lab".into(),
            security_level: SecurityLevel::VeryHigh,
        },
        policy: PolicyOptions::default(),
        quorum: None,
        backup: None,
        restore: None,
        ca_certificates: Vec::new(),
        participants: vec![
            person("Mia", Role::MasterOfCeremony),
            person("Otto", Role::Operator),
            person("Olga", Role::Operator),
            person("Wim", Role::InternalWitness),
            person("Ines", Role::IndependentWitness),
        ],
        hsm: HsmConfig {
            name: None,
            module: "/x.so".into(),
            token: TokenSelector::default(),
            activation: None,
            cards_module: None,
            network_interface: None,
        },
        hsms: vec![],
        keys: vec![],
        certificates: vec![],
        crls: vec![],
        steps: vec![
            step("bags", Action::Manual, vec![Role::MasterOfCeremony], vec![]),
            step(
                "keygen",
                Action::GenerateKey,
                vec![Role::Operator, Role::InternalWitness],
                vec![Role::IndependentWitness],
            ),
        ],
    }
}

fn events(effects: &[Effect]) -> Vec<&Event> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Record(ev) => Some(ev),
            Effect::Perform { .. } => None,
        })
        .collect()
}

fn performs(effects: &[Effect]) -> usize {
    effects
        .iter()
        .filter(|e| matches!(e, Effect::Perform { .. }))
        .count()
}

fn at_keygen() -> Engine {
    let mut engine = Engine::new(&script());
    engine.start();
    let out = engine.handle(Input::Confirm {
        person: "Mia".into(),
    });
    assert_eq!(performs(&out), 0, "nothing is performed before Proceed");
    let out = engine.handle(Input::Proceed);
    assert_eq!(
        performs(&out),
        1,
        "a one-person manual step is authorised by one confirmation"
    );
    engine.handle(Input::ActionSucceeded);
    assert_eq!(engine.phase(), Phase::Confirming(1));
    engine
}

#[test]
fn dual_control_needs_two_distinct_operators_and_the_witness() {
    let mut engine = at_keygen();
    assert_eq!(
        performs(&engine.handle(Input::Confirm {
            person: "Otto".into()
        })),
        0
    );
    assert_eq!(
        performs(&engine.handle(Input::Confirm {
            person: "Ines".into()
        })),
        0
    );
    let out = engine.handle(Input::Confirm {
        person: "Olga".into(),
    });
    assert_eq!(
        performs(&out),
        0,
        "the room says go, not the last confirmation"
    );
    let out = engine.handle(Input::Proceed);
    assert_eq!(
        out.last(),
        Some(&Effect::Perform {
            index: 1,
            action: Action::GenerateKey
        })
    );
    let authorised = events(&out).into_iter().find_map(|e| match e {
        Event::StepAuthorised {
            confirmed_by,
            witnessed_by,
            ..
        } => Some((confirmed_by.clone(), witnessed_by.clone())),
        _ => None,
    });
    assert_eq!(
        authorised,
        Some((
            vec!["Otto".to_string(), "Olga".to_string()],
            vec!["Ines".to_string()]
        ))
    );
    let done = engine.handle(Input::ActionSucceeded);
    assert!(events(&done).contains(&&Event::CeremonyCompleted));
    assert_eq!(engine.phase(), Phase::Completed);
}

#[test]
fn one_person_never_counts_twice() {
    let mut engine = at_keygen();
    engine.handle(Input::Confirm {
        person: "Otto".into(),
    });
    let out = engine.handle(Input::Confirm {
        person: "Otto".into(),
    });
    match events(&out).as_slice() {
        [Event::ConfirmationRefused { reason, .. }] => {
            assert!(reason.contains("never counts twice"), "{reason}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let out = engine.handle(Input::Proceed);
    assert_eq!(performs(&out), 0, "nothing may reach the HSM");
    match events(&out).as_slice() {
        [Event::StepRefused { reason, .. }] => {
            assert!(reason.contains("dual control"), "{reason}");
            assert!(reason.contains("confirmed by Otto"), "{reason}");
        }
        other => panic!("expected a step refusal, got {other:?}"),
    }
}

#[test]
fn a_witness_never_counts_as_an_operator_on_a_sensitive_step() {
    let mut engine = at_keygen();
    engine.handle(Input::Confirm {
        person: "Otto".into(),
    });
    let out = engine.handle(Input::Confirm {
        person: "Wim".into(),
    });
    match events(&out).as_slice() {
        [Event::ConfirmationRefused { reason, .. }] => {
            assert!(reason.contains("never counts as a confirmer"), "{reason}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(engine.phase(), Phase::Confirming(1));
}

#[test]
fn wrong_role_and_strangers_are_refused_with_reasons() {
    let mut engine = at_keygen();
    let out = engine.handle(Input::Confirm {
        person: "Mia".into(),
    });
    match events(&out).as_slice() {
        [Event::ConfirmationRefused { reason, .. }] => {
            assert!(
                reason.contains("holds master-of-ceremony") && reason.contains("operator"),
                "{reason}"
            )
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let out = engine.handle(Input::Confirm {
        person: "Mallory 1234".into(),
    });
    assert!(
        matches!(events(&out).as_slice(), [Event::ConfirmationRefused { person, reason, .. }]
            if person == UNRECOGNISED && reason.contains("not a participant") && !reason.contains("Mallory"))
    );
}

#[test]
fn missing_witness_blocks_the_step() {
    let mut engine = at_keygen();
    engine.handle(Input::Confirm {
        person: "Otto".into(),
    });
    engine.handle(Input::Confirm {
        person: "Olga".into(),
    });
    let out = engine.handle(Input::Proceed);
    assert!(
        matches!(events(&out).as_slice(), [Event::StepRefused { reason, .. }] if reason.contains("independent-witness has not witnessed"))
    );
}

#[test]
fn steps_run_in_order_and_failures_abort() {
    let mut engine = Engine::new(&script());
    engine.start();
    // Confirmations for keygen are not accepted while step 1 is current: Otto holds no role there.
    let out = engine.handle(Input::Confirm {
        person: "Otto".into(),
    });
    assert!(matches!(
        events(&out).as_slice(),
        [Event::ConfirmationRefused { .. }]
    ));
    engine.handle(Input::Confirm {
        person: "Mia".into(),
    });
    engine.handle(Input::Proceed);
    let out = engine.handle(Input::ActionFailed {
        reason: "bag seal broken".into(),
    });
    assert!(matches!(
        events(&out).as_slice(),
        [Event::StepFailed { .. }, Event::CeremonyAborted { .. }]
    ));
    assert!(engine.is_finished());
    assert!(engine
        .handle(Input::Confirm {
            person: "Otto".into()
        })
        .is_empty());
}

#[test]
fn exceptions_are_recorded_at_any_step_by_participants_only() {
    let mut engine = at_keygen();
    let out = engine.handle(Input::Exception {
        person: "Wim".into(),
        text: "HSM serial differs from inventory".into(),
    });
    assert!(
        matches!(events(&out).as_slice(), [Event::ExceptionRecorded { step, .. }] if step == "keygen")
    );
    let out = engine.handle(Input::Exception {
        person: "Eve".into(),
        text: "x".into(),
    });
    assert!(matches!(
        events(&out).as_slice(),
        [Event::ConfirmationRefused { .. }]
    ));
}

#[test]
fn abort_is_final() {
    let mut engine = at_keygen();
    let out = engine.handle(Input::Abort {
        reason: "Ctrl-C".into(),
    });
    assert!(
        matches!(events(&out).as_slice(), [Event::CeremonyAborted { step: Some(s), .. }] if s == "keygen")
    );
    assert_eq!(engine.phase(), Phase::Aborted);
}

/// "2 operators and 1 security officer": a step with per-role minimums.
fn per_role_script() -> Script {
    let mut s = script();
    s.participants.push(person("Sofia", Role::SecurityOfficer));
    s.participants.push(person("Oskar", Role::Operator));
    let mut both = person("Sam", Role::SecurityOfficer);
    both.also = Some(Role::Operator);
    s.participants.push(both);
    let mut sign = step(
        "sign",
        Action::SignCrl,
        vec![Role::Operator, Role::SecurityOfficer],
        vec![],
    );
    sign.min_per_role = [(Role::Operator, 2), (Role::SecurityOfficer, 1)].into();
    s.steps = vec![sign];
    s
}

fn confirm(engine: &mut Engine, who: &str) -> Vec<Effect> {
    engine.handle(Input::Confirm { person: who.into() })
}

#[test]
fn a_per_role_minimum_needs_each_role_not_just_the_head_count() {
    let script = per_role_script();
    assert_eq!(script.steps[0].required_confirmations(), 3);
    let mut engine = Engine::new(&script);
    engine.start();
    for who in ["Otto", "Olga", "Oskar"] {
        confirm(&mut engine, who);
    }
    let out = engine.handle(Input::Proceed);
    assert_eq!(
        performs(&out),
        0,
        "three operators are not two plus a security officer"
    );
    let refused = events(&out).into_iter().find_map(|e| match e {
        Event::StepRefused { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert_eq!(
        refused.as_deref(),
        Some("sign_crl needs 1 person confirming as security-officer; 0 so far")
    );
    confirm(&mut engine, "Sofia");
    assert_eq!(performs(&engine.handle(Input::Proceed)), 1);
}

#[test]
fn a_per_role_minimum_refuses_too_few_of_one_role() {
    let mut engine = Engine::new(&per_role_script());
    engine.start();
    confirm(&mut engine, "Otto");
    confirm(&mut engine, "Sofia");
    let plan = engine.current().unwrap().clone();
    assert_eq!(plan.still_needed(Role::Operator), 1);
    assert_eq!(plan.still_needed(Role::SecurityOfficer), 0);
    let out = engine.handle(Input::Proceed);
    assert_eq!(performs(&out), 0);
    let reason = events(&out).into_iter().find_map(|e| match e {
        Event::StepRefused { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.contains("needs 2 people confirming as operator; 1 so far")),
        "{reason:?}"
    );
}

#[test]
fn a_person_with_two_roles_counts_under_the_role_still_missing() {
    let mut engine = Engine::new(&per_role_script());
    engine.start();
    confirm(&mut engine, "Otto");
    confirm(&mut engine, "Olga");
    // Sam is security officer and operator: the operators are complete, so Sam counts as SO.
    let out = confirm(&mut engine, "Sam");
    let role = events(&out).into_iter().find_map(|e| match e {
        Event::Confirmed { role, .. } => Some(*role),
        _ => None,
    });
    assert_eq!(role, Some(Role::SecurityOfficer));
    assert_eq!(performs(&engine.handle(Input::Proceed)), 1);
}

#[test]
fn a_resumed_step_forgets_the_roles_counted() {
    let mut engine = Engine::new(&per_role_script());
    engine.start();
    for who in ["Otto", "Olga", "Sofia"] {
        confirm(&mut engine, who);
    }
    engine.handle(Input::Resume);
    let plan = engine.current().unwrap();
    assert!(plan.per_role.counted.is_empty() && plan.confirmed_by.is_empty());
    assert_eq!(plan.still_needed(Role::Operator), 2);
}
