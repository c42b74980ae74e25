//! The paper script's forms: the sign-in sheet, the HSM and the planned keys and certificates, the
//! quorum cards and their bags, and the write-in fields of each step (what the step asks people to
//! write down or compare). Part of the pure render of `keyrite print`.

use super::layout::{Column, Layout, BODY};
use super::metrics::Face;
use crate::script::{Action, Script, Step};

/// Blank groups for a SHA-256 written by hand: 16 groups of 4 hex digits, in two lines.
const HASH_FIELD: &str =
    "____ ____ ____ ____ ____ ____ ____ ____\n____ ____ ____ ____ ____ ____ ____ ____";

/// Everyone signs in: printed name, signature, date, time and time zone.
pub fn sign_in(l: &mut Layout, s: &Script) {
    l.heading("Sign-in sheet");
    l.para(
        Face::Regular,
        BODY,
        "Each participant prints their name, signs, and writes the date, time and time zone of \
         arrival.",
    );
    let rows: Vec<Vec<String>> = s
        .participants
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                "\n\n".into(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ]
        })
        .collect();
    l.table(
        &[
            Column::new("Participant", 0.22, Face::Regular),
            Column::new("Printed name", 0.22, Face::Regular),
            Column::new("Signature", 0.22, Face::Regular),
            Column::new("Date", 0.12, Face::Regular),
            Column::new("Time", 0.1, Face::Regular),
            Column::new("Time zone", 0.12, Face::Regular),
        ],
        &rows,
    );
}

/// The HSM as the script names it, with fields for what is read off the device, and the keys and
/// certificates the ceremony is to make.
pub fn planned(l: &mut Layout, s: &Script) {
    l.heading("HSM, keys and certificates planned");
    let module = std::path::Path::new(&s.hsm.module)
        .file_name()
        .map_or(s.hsm.module.clone(), |f| f.to_string_lossy().into_owned());
    l.table(
        &[
            Column::new("HSM in the script", 0.4, Face::Regular),
            Column::new("Serial read off the device", 0.35, Face::Regular),
            Column::new("Initials", 0.25, Face::Regular),
        ],
        &[vec![
            format!("token {}\nmodule {module}", s.hsm.token),
            "\n\n".into(),
            String::new(),
        ]],
    );
    let keys: Vec<Vec<String>> = s
        .keys
        .iter()
        .map(|k| vec![k.label.clone(), k.algorithm.to_string(), HASH_FIELD.into()])
        .collect();
    if !keys.is_empty() {
        l.table(
            &[
                Column::new("Key label", 0.3, Face::Regular),
                Column::new("Algorithm", 0.15, Face::Regular),
                Column::new("Key hash as read aloud (write it here)", 0.55, Face::Mono),
            ],
            &keys,
        );
    }
    let certs: Vec<Vec<String>> = s
        .certificates
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.key.clone(),
                c.subject.to_string(),
                match (&c.not_after, c.validity_days) {
                    (Some(t), _) => format!("until {t}"),
                    (None, Some(days)) => format!("{days} days"),
                    (None, None) => String::new(),
                },
            ]
        })
        .collect();
    if !certs.is_empty() {
        l.table(
            &[
                Column::new("Certificate", 0.22, Face::Regular),
                Column::new("Signed with key", 0.22, Face::Regular),
                Column::new("Subject", 0.38, Face::Regular),
                Column::new("Validity", 0.18, Face::Regular),
            ],
            &certs,
        );
    }
    // What each sign_crl step will sign, to compare with the screen, and where to write its
    // fingerprint as read back.
    for c in &s.crls {
        let previous = c
            .previous_crl
            .as_deref()
            .map(|p| format!("; entries of the earlier CRL {p} carry over"))
            .unwrap_or_default();
        l.para(
            Face::Regular,
            BODY,
            &format!(
                "CRL \"{}\": number {}, this update {}, next update {}, signed with key {} (issuer certificate {}){previous}.",
                c.name, c.number, c.this_update, c.next_update, c.key, c.issuer_certificate
            ),
        );
        let mut rows: Vec<Vec<String>> = c
            .revoked
            .iter()
            .map(|r| vec![r.serial.clone(), r.date.clone(), r.reason.to_string()])
            .collect();
        if rows.is_empty() {
            rows.push(vec![
                "(none added by this script)".into(),
                String::new(),
                String::new(),
            ]);
        }
        l.table(
            &[
                Column::new("Revoked serial", 0.45, Face::Mono),
                Column::new("Date (UTC)", 0.3, Face::Regular),
                Column::new("Reason", 0.25, Face::Regular),
            ],
            &rows,
        );
        l.table(
            &[Column::new(
                "CRL SHA-256 fingerprint as read back (write it here)",
                1.0,
                Face::Mono,
            )],
            &[vec![HASH_FIELD.into()]],
        );
    }
    // What each sign_subordinate_ca / sign_cross_certificate step will sign, and where to write the
    // certificate's fingerprint as read back.
    for c in &s.ca_certificates {
        let kind = match s
            .steps
            .iter()
            .find(|st| st.certificate.as_deref() == Some(c.name.as_str()))
            .map(|st| st.action)
        {
            Some(Action::SignCrossCertificate) => "Cross-certificate",
            _ => "Subordinate CA certificate",
        };
        let input = c
            .input
            .as_deref()
            .map(|p| format!("from {p}"))
            .unwrap_or_else(|| "given at run time".into());
        let validity = match (&c.not_after, c.validity_days) {
            (Some(t), _) => format!("until {t}"),
            (None, Some(days)) => format!("{days} days from signing"),
            (None, None) => "as the script sets it".into(),
        };
        let path_len = c
            .path_len
            .map(|n| format!(", pathLenConstraint {n}"))
            .unwrap_or_default();
        l.para(
            Face::Regular,
            BODY,
            &format!(
                "{kind} \"{}\": signed with key {}; request or certificate {input}; validity {validity}{path_len}.",
                c.name, c.issuer_key
            ),
        );
        l.table(
            &[Column::new(
                "Certificate SHA-256 fingerprint as read back (write it here)",
                1.0,
                Face::Mono,
            )],
            &[vec![HASH_FIELD.into()]],
        );
    }
}

/// The custodians' cards, each with its bag, and fields for the new bag serial and initials.
pub fn quorum_cards(l: &mut Layout, s: &Script) {
    let Some(q) = &s.quorum else {
        return;
    };
    l.heading("Quorum cards and bags");
    l.para(
        Face::Regular,
        BODY,
        &format!(
            "{} of {} cards activate the HSM{}. Check each bag's serial against this list before \
             it is opened; write the serial of the new bag each card goes into.",
            q.threshold,
            q.cards.len(),
            q.reshare.as_ref().map_or(String::new(), |r| format!(
                "; after the reshare, {} of {} new cards",
                r.threshold,
                r.cards.len()
            ))
        ),
    );
    let sealed = |c: &crate::script::QuorumCard| c.medium == crate::script::ShareMedium::Sealed;
    let any_sealed = q
        .cards
        .iter()
        .chain(q.reshare.iter().flat_map(|r| r.cards.iter()))
        .any(sealed);
    if any_sealed {
        l.para(
            Face::Regular,
            BODY,
            &format!(
                "Cards marked (sealed) keep their share in an envelope file sealed to the card's key:                  the envelope travels with the card, and is copied into {} before the card is used.",
                q.envelope_dir.as_deref().unwrap_or("the envelope folder")
            ),
        );
    }
    let sets = std::iter::once(("current", &q.cards))
        .chain(q.reshare.iter().map(|r| ("new (reshare)", &r.cards)));
    let mut rows = Vec::new();
    for (set, cards) in sets {
        for (i, c) in cards.iter().enumerate() {
            rows.push(vec![
                format!("{} {set}", i + 1),
                c.holder.clone(),
                // The bare label or serial: `label "…"` would break mid-word in the column.
                (c.token.label.clone())
                    .or_else(|| c.token.serial.clone())
                    .unwrap_or_else(|| c.token.to_string())
                    + if sealed(c) { " (sealed)" } else { "" },
                c.bag.clone(),
                "\n\n".into(),
                String::new(),
            ]);
        }
    }
    l.table(
        &[
            Column::new("Card", 0.1, Face::Regular),
            Column::new("Holder", 0.16, Face::Regular),
            Column::new("Card token", 0.28, Face::Regular),
            Column::new("Bag serial", 0.16, Face::Regular),
            Column::new("New bag serial", 0.18, Face::Regular),
            Column::new("Initials", 0.12, Face::Regular),
        ],
        &rows,
    );
}

/// What a step asks people to write down or compare, as blank fields under its instructions.
pub fn write_ins(st: &Step) -> String {
    let mut fields = Vec::new();
    match st.action {
        Action::ConfirmFingerprint => {
            fields.push(format!("Key hash as read aloud:\n{HASH_FIELD}"));
        }
        Action::ActivateHsm | Action::ActivateQuorum | Action::SplitActivation => {
            fields.push("HSM serial on the device: ________________".to_string());
        }
        _ => {}
    }
    let text = st.instructions.to_lowercase();
    if text.contains("bag") {
        fields.push("Bag serial: ______________  new bag: ______________".to_string());
    }
    if fields.is_empty() {
        String::new()
    } else {
        format!("\n{}", fields.join("\n"))
    }
}
