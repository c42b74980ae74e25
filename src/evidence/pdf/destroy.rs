//! report.pdf: keys destroyed (issue 12), each with the objects destroyed and the read-back.

use super::layout::{Layout, BODY};
use super::metrics::Face;
use super::sections::{mono, regular};
use crate::evidence::report::Report;
use crate::hsm::spki::grouped_hex;

pub(super) fn destroyed_keys(l: &mut Layout, r: &Report) {
    for d in &r.destroyed_keys {
        l.subheading(&format!("Key \"{}\" DESTROYED", d.key));
        let objects: Vec<String> = d
            .destroyed
            .iter()
            .map(|o| format!("{} \"{}\" (CKA_ID {})", o.class, o.label, o.id_hex))
            .collect();
        let read_back = if d.remaining.is_empty() {
            format!(
                "no object with CKA_ID {} or label \"{}\" remains",
                d.id, d.label
            )
        } else {
            format!("{} object(s) REMAIN", d.remaining.len())
        };
        l.key_values(&[
            regular(
                "Token",
                format!("\"{}\", serial {}", d.token_label, d.token_serial),
            ),
            regular("CKA_LABEL", &d.label),
            mono("CKA_ID", &d.id),
            regular("Objects destroyed", objects.join("; ")),
            regular("Read back afterwards", read_back),
        ]);
        if d.finished_after_interruption {
            l.para(
                Face::Regular,
                BODY,
                "The destruction was interrupted and finished by keyrite resume; objects destroyed \
                 before the interruption are not listed.",
            );
        }
        l.para(Face::Bold, BODY, "Key hash of the destroyed key:");
        l.para(Face::Mono, 10.0, &grouped_hex(&d.key_hash));
        l.space(4.0);
    }
}
