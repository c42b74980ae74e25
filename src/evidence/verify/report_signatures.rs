//! The report's signatures (detached CMS over report.json and report.pdf, one per signer): each
//! verifies with a card the log recorded, and everyone the security level requires has signed.

use super::signatures::{Card, Explained};
use super::Verification;
use crate::evidence::bundle::{SIGNATURES_DIR, SIGNED_DOCUMENTS, SIGNERS_CA_FILE};
use crate::evidence::safe_read::{BundleDir, Kind, ReadError, FILE_LIMIT, REPORT_LIMIT};
use crate::script::signers::{signer_stems, signers_by_role};
use crate::script::{Script, SecurityLevel};
use crate::x509::cms::verify_detached;
use der::Encode;
use std::collections::{BTreeMap, BTreeSet};

pub(super) fn check_report_signatures(
    v: &mut Verification,
    bundle: &BundleDir,
    script: &Script,
    known: &BTreeMap<&str, Card>,
    explained: &[Explained],
) {
    let documents: Vec<&str> = SIGNED_DOCUMENTS
        .iter()
        .copied()
        .filter(|d| !matches!(bundle.kind(d), Ok(None)))
        .collect();
    let stems: BTreeMap<String, &str> = signer_stems(script)
        .into_iter()
        .zip(script.participants.iter().map(|p| p.name.as_str()))
        .collect();
    let mut present: BTreeSet<String> = BTreeSet::new();
    let names = match bundle.list(SIGNATURES_DIR) {
        Ok(names) => names,
        Err(ReadError::Missing) => Vec::new(),
        Err(e) => {
            v.fail(SIGNATURES_DIR, e.to_string());
            return;
        }
    };
    for (name, kind) in names {
        let file = format!("{SIGNATURES_DIR}/{name}");
        if file == SIGNERS_CA_FILE {
            continue;
        }
        present.insert(file.clone());
        if kind != Kind::File {
            v.fail(&file, super::progress::not_a_file(kind).to_string());
            continue;
        }
        let parsed = name.strip_suffix(".p7s").and_then(|rest| {
            documents.iter().find_map(|d| {
                let stem = rest.strip_suffix(&format!(".{d}"))?;
                Some((stems.get(stem)?, *d))
            })
        });
        let Some((person, document)) = parsed else {
            v.fail(
                &file,
                "not part of the evidence: not a signature of a participant over a report document",
            );
            continue;
        };
        let Some(card) = known.get(person) else {
            v.fail(&file, format!("{person} has no verified personal card"));
            continue;
        };
        let read = bundle
            .read(&file, FILE_LIMIT)
            .and_then(|p7s| Ok((p7s, bundle.read(document, REPORT_LIMIT)?)));
        let (p7s, content) = match read {
            Ok(both) => both,
            Err(e) => {
                v.fail(&file, e.to_string());
                continue;
            }
        };
        if p7s.is_empty() {
            // Created, then the run stopped before its bytes were written (write_new creates first).
            v.incomplete(
                &file,
                format!("empty: {person}'s signature over {document} was not written when the run stopped"),
            );
            continue;
        }
        match verify_detached(&p7s, &content) {
            Ok(cert) if cert.to_der().ok().as_deref() == Some(card.der.as_slice()) => {
                v.pass(&file, format!("CMS signature of {person} over {document} verifies with their card certificate"));
            }
            Ok(_) => v.fail(
                &file,
                format!("signed with a certificate that is not {person}'s personal card"),
            ),
            Err(e) => v.fail(
                &file,
                format!("CMS signature over {document} does not verify: {e}"),
            ),
        }
    }
    let level = script.ceremony.security_level;
    // By level and role, whatever cards the script lists: a script stripped of its cards still
    // names who had to sign.
    for (signer, carded) in signers_by_role(script) {
        for document in &documents {
            let file = format!("{SIGNATURES_DIR}/{}.{document}.p7s", signer.stem);
            if present.contains(&file) {
                continue;
            }
            let who = format!("the {} ({})", signer.reason, signer.person);
            if let Some(e) = explained.iter().find(|e| e.record.person == signer.person) {
                v.warn(
                    &file,
                    format!(
                        "not signed: {who} could not sign {document} because their card \
                         refused during the ceremony: {} (confirmation_unsigned at entry {}; \
                         the ceremony aborted there)",
                        e.record.reason, e.seq
                    ),
                );
            } else if !carded && level == SecurityLevel::Medium {
                v.warn(
                    &file,
                    format!(
                        "not signed: {who} has no personal card in script.toml; security level \
                         medium allows that, so the report carries no signature of theirs"
                    ),
                );
            } else if !carded {
                v.fail(
                    &file,
                    format!(
                        "missing: {who} must sign {document} at security level {level}, but \
                         script.toml gives them no personal card, which `keyrite check` refuses \
                         at this level: the cards were stripped from the script"
                    ),
                );
            } else if known.contains_key(signer.person.as_str()) {
                v.incomplete(
                    &file,
                    format!(
                        "missing: {who} must sign {document} at security level {level}; \
                         not signed yet (the run stopped, or their card failed, after \
                         report_written)"
                    ),
                );
            } else {
                v.fail(
                    &file,
                    format!(
                        "missing: {who} must sign {document} at security level {level}, and \
                         has no verified personal card to sign with"
                    ),
                );
            }
        }
    }
}
