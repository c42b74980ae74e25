//! `keyrite print`: the paper script for the room, in the style of the IANA root KSK ceremony
//! scripts. Every step with its instructions and the roles involved, with columns for the initials
//! and the time, places to write the anchors keyrite prints at the end, and a blank exceptions sheet.

use super::layout::{Column, Layout, BODY, BOTTOM, TOP};
use super::metrics::Face;
use super::{write_document, Footer};
use crate::hsm::spki::grouped_hex;
use crate::script::{LoadedScript, Role, Step};

/// Render the paper script. Deterministic: the same script file gives the same bytes.
pub fn render(loaded: &LoadedScript) -> Vec<u8> {
    let s = &loaded.script;
    let footer = Footer {
        left: format!("{} - paper script - script SHA-256", s.ceremony.id),
        hash: grouped_hex(&loaded.sha256),
        watermark: false,
    };
    let title = format!("Key ceremony script {}", s.ceremony.id);
    let info = super::writer::Info {
        title: &title,
        date: "",
        id_seed: &loaded.sha256,
    };
    let mut bytes = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = write_document(&mut bytes, &info, &footer, |l| lay_out(loaded, l));
    bytes
}

fn lay_out(loaded: &LoadedScript, l: &mut Layout) {
    let s = &loaded.script;
    l.para(
        Face::Bold,
        10.0,
        "KEY CEREMONY SCRIPT - PAPER COPY FOR THE ROOM",
    );
    l.title(&s.ceremony.name, 20.0);
    l.space(8.0);
    l.key_values(&[
        ("Ceremony id", s.ceremony.id.clone(), Face::Regular),
        ("Type", s.ceremony.kind.clone(), Face::Regular),
        ("Place", s.ceremony.place.clone(), Face::Regular),
        (
            "Security level",
            s.ceremony.security_level.to_string(),
            Face::Regular,
        ),
        // The file's name only: the printing machine's folders mean nothing in the room.
        (
            "Script file",
            std::path::Path::new(&loaded.file_name)
                .file_name()
                .map_or(loaded.file_name.clone(), |f| {
                    f.to_string_lossy().into_owned()
                }),
            Face::Regular,
        ),
        ("Script SHA-256", grouped_hex(&loaded.sha256), Face::Mono),
        ("Date", String::new(), Face::Regular),
    ]);
    l.para(
        Face::Regular,
        BODY,
        "Before starting, compare the script SHA-256 above with the one keyrite shows. At each \
         step, the people named initial the step and write the UTC time from the ceremony clock. \
         Anything that does not go as written is recorded on the exceptions sheet at the end.",
    );

    l.heading("Participants");
    let rows: Vec<Vec<String>> = s
        .participants
        .iter()
        .map(|p| {
            let roles: Vec<&str> = p.roles().map(Role::as_str).collect();
            vec![
                p.name.clone(),
                roles.join(", "),
                p.organisation.clone().unwrap_or_default(),
                String::new(),
                "\n\n".into(),
            ]
        })
        .collect();
    l.table(
        &[
            Column::new("Name", 0.25, Face::Regular),
            Column::new("Role(s)", 0.2, Face::Regular),
            Column::new("Organisation", 0.2, Face::Regular),
            Column::new("Identity checked by (initials)", 0.2, Face::Regular),
            Column::new("Initials", 0.15, Face::Regular),
        ],
        &rows,
    );

    super::paper::sign_in(l, s);
    super::paper::planned(l, s);
    super::paper::quorum_cards(l, s);

    l.heading("Steps");
    let rows: Vec<Vec<String>> = s
        .steps
        .iter()
        .enumerate()
        .map(|(i, st)| {
            vec![
                (i + 1).to_string(),
                format!("{}{}", step_text(st), super::paper::write_ins(st)),
                who(st),
                "\n\n\n".into(),
                String::new(),
            ]
        })
        .collect();
    l.table(
        &[
            Column::new("#", 0.05, Face::Regular),
            Column::new("Step and instructions", 0.5, Face::Regular),
            Column::new("Roles involved", 0.21, Face::Regular),
            Column::new("Initials", 0.12, Face::Regular),
            Column::new("Time (UTC)", 0.12, Face::Regular),
        ],
        &rows,
    );

    // A short section: keep it on one page. When that takes a fresh page, the exceptions sheet
    // shares it rather than leaving the anchors alone on a near-empty page.
    l.ensure(190.0);
    let anchors_page_to_share = l.y() >= TOP;
    l.heading("Anchors written at the end");
    l.para(
        Face::Regular,
        BODY,
        "When the ceremony ends keyrite prints the audit-log head and the report.json SHA-256. \
         Copy both here in groups of four; the witnesses compare and initial.",
    );
    l.table(
        &[
            Column::new("Anchor", 0.22, Face::Regular),
            Column::new("Value (16 groups of 4 hex digits)", 0.58, Face::Regular),
            Column::new("Initials", 0.2, Face::Regular),
        ],
        &[
            vec!["Log head".into(), "\n\n".into(), String::new()],
            vec!["report.json SHA-256".into(), "\n\n".into(), String::new()],
        ],
    );

    // A blank entry is three lines tall; a shared page holds fewer of them than the 14 of a page.
    let entry_h = 3.0 * 8.5 * 1.3 + 7.0;
    let entries = if anchors_page_to_share {
        l.space(12.0);
        (((l.y() - BOTTOM - 80.0) / entry_h).floor() as usize).clamp(6, 14)
    } else {
        l.new_page();
        14
    };
    l.title("Exceptions", 16.0);
    l.space(4.0);
    l.para(
        Face::Regular,
        BODY,
        "Record every deviation from the script: what happened, at which step, who noticed, and \
         what was done. The master of ceremony and a witness initial each entry.",
    );
    let rows: Vec<Vec<String>> = (0..entries)
        .map(|_| vec![String::new(), String::new(), "\n\n".into(), String::new()])
        .collect();
    l.table(
        &[
            Column::new("Time (UTC)", 0.14, Face::Regular),
            Column::new("Step #", 0.1, Face::Regular),
            Column::new("What happened, and what was done", 0.56, Face::Regular),
            Column::new("Initials", 0.2, Face::Regular),
        ],
        &rows,
    );
}

fn step_text(st: &Step) -> String {
    let mut text = format!("{}  [{}]\n", st.title, st.id);
    text.push_str(&reflow(&st.instructions));
    let mut detail = vec![format!("action: {}", st.action)];
    if let Some(k) = &st.key {
        detail.push(format!("key: {k}"));
    }
    if let Some(c) = &st.certificate {
        detail.push(format!("certificate: {c}"));
    }
    if let Some(a) = &st.attachment {
        detail.push(format!("attach: {a}"));
    }
    text.push_str(&format!("\n({})", detail.join("; ")));
    text
}

/// Join the hard-wrapped lines of a TOML multi-line string into paragraphs, so the PDF can wrap them
/// to its own width. Blank lines and list items (`-`, `*`, `1.`) keep their line breaks.
fn reflow(text: &str) -> String {
    let mut out = String::new();
    let mut blank = false;
    for line in text.trim().lines().map(str::trim) {
        if line.is_empty() {
            blank = true;
            continue;
        }
        let item = line.starts_with(['-', '*', '•'])
            || line
                .split_once(['.', ')'])
                .is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        if !out.is_empty() {
            out.push_str(if blank {
                "\n\n"
            } else if item {
                "\n"
            } else {
                " "
            });
        }
        out.push_str(line);
        blank = false;
    }
    out
}

fn who(st: &Step) -> String {
    let confirm: Vec<&str> = st.confirm_by.iter().map(|r| r.as_str()).collect();
    let mut text = format!(
        "confirm: {} ({} {})",
        confirm.join(", "),
        st.required_confirmations(),
        if st.required_confirmations() == 1 {
            "person"
        } else {
            "different people"
        }
    );
    if !st.witnessed_by.is_empty() {
        let w: Vec<&str> = st.witnessed_by.iter().map(|r| r.as_str()).collect();
        text.push_str(&format!("\nwitness: {}", w.join(", ")));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::reflow;

    #[test]
    fn reflow_joins_wrapped_lines_and_keeps_lists() {
        assert_eq!(reflow("a b\nc d\n\ne"), "a b c d\n\ne");
        assert_eq!(
            reflow("do:\n1. one\n2. two\n- three"),
            "do:\n1. one\n2. two\n- three"
        );
    }
}
