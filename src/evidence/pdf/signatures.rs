//! The signature page of report.pdf: a wet-ink block (name, role, date, line) for every participant,
//! and, beside the block of each signer the security level requires, the files of their digital
//! signatures.

use super::cards::{digital_rule, required, signature_files};
use super::layout::{Layout, BODY, CONTENT_W, MARGIN_X};
use super::metrics::{wrap, Face};
use super::sections::roles;
use crate::evidence::bundle::SIGNATURES_DIR;
use crate::evidence::report::Report;

pub fn page(l: &mut Layout, r: &Report) {
    let signers = required(r);
    l.new_page();
    l.title("Signatures", 16.0);
    l.space(6.0);
    l.para(
        Face::Regular,
        BODY,
        "By signing, each participant states that this report is a true record of the ceremony \
         they took part in, and that the key hashes and the audit-log head above match what was \
         shown and read aloud in the room.",
    );
    digital_rule(l, r, &signers);
    l.space(4.0);
    let left_w = CONTENT_W * 0.55;
    let right_x = MARGIN_X + CONTENT_W * 0.6;
    let right_w = MARGIN_X + CONTENT_W - right_x;
    for p in &r.participants {
        let names = wrap(&p.name, Face::Bold, 11.0, left_w);
        let mut role = roles(&p.roles);
        if let Some(org) = &p.organisation {
            role = format!("{role} - {org}");
        }
        let role_lines = wrap(&role, Face::Regular, 9.0, left_w);
        // Right of the name: the date line, then what this person signs digitally.
        let mut digital: Vec<(Face, f32, String)> = Vec::new();
        match signers.iter().find(|s| s.person == p.name) {
            Some(signer) => {
                let head = format!(
                    "Signs digitally, as {}, in {SIGNATURES_DIR}/:",
                    signer.reason
                );
                for line in wrap(&head, Face::Bold, 8.0, right_w) {
                    digital.push((Face::Bold, 8.0, line));
                }
                for file in signature_files(signer) {
                    let name = file
                        .strip_prefix(&format!("{SIGNATURES_DIR}/"))
                        .unwrap_or(&file)
                        .to_string();
                    for line in wrap(&name, Face::Mono, 7.5, right_w) {
                        digital.push((Face::Mono, 7.5, line));
                    }
                }
            }
            None => digital.push((
                Face::Regular,
                8.0,
                "No digital signature required.".to_string(),
            )),
        }
        let left_h = 13.0 * names.len() as f32 + 11.0 * role_lines.len() as f32;
        let right_h = 22.0 + 10.0 * digital.len() as f32;
        // Room for the taller side, then at least 40 pt to sign in.
        let block = (left_h.max(right_h) + 60.0).max(96.0);
        l.ensure(block);
        let top = l.y();
        let mut y = top - 12.0;
        for line in &names {
            l.text_at(MARGIN_X, y, Face::Bold, 11.0, line);
            y -= 13.0;
        }
        for line in &role_lines {
            l.text_at(MARGIN_X, y, Face::Regular, 9.0, line);
            y -= 11.0;
        }
        l.text_at(right_x, top - 12.0, Face::Regular, 9.0, "Date:");
        l.line(
            right_x + 26.0,
            top - 13.0,
            MARGIN_X + CONTENT_W,
            top - 13.0,
            0.5,
        );
        let mut y = top - 32.0;
        for (face, size, line) in &digital {
            l.text_at(right_x, y, *face, *size, line);
            y -= 10.0;
        }
        let line_y = top - block + 20.0;
        l.line(MARGIN_X, line_y, MARGIN_X + CONTENT_W, line_y, 0.7);
        l.text_at(MARGIN_X, line_y - 10.0, Face::Regular, 7.5, "Signature");
        l.set_y(top - block);
    }
}
