//! Issue 12: report.pdf's backup and restore section (what was wrapped or unwrapped, the blob's
//! SHA-256 for the paper script, and the plain statement that NEVER_EXTRACTABLE is false by
//! design). Left out when the report has none, so older reports render as before.

use super::layout::{Layout, BODY};
use super::metrics::Face;
use super::sections::{key_hash_words, mono, regular};
use crate::evidence::report::Report;
use crate::hsm::spki::grouped_hex;
use crate::hsm::KeyAttributes;

fn attributes(a: &KeyAttributes) -> String {
    let show = |v: Option<bool>| match v {
        Some(true) => "true",
        Some(false) => "false",
        None => "not reported",
    };
    format!(
        "SENSITIVE {}, EXTRACTABLE {}, WRAP_WITH_TRUSTED {}, NEVER_EXTRACTABLE {}, ALWAYS_SENSITIVE {}, LOCAL {}",
        show(a.sensitive),
        show(a.extractable),
        show(a.wrap_with_trusted),
        show(a.never_extractable),
        show(a.always_sensitive),
        show(a.local)
    )
}

pub fn section(l: &mut Layout, r: &Report) {
    if r.backups.is_empty() && r.restores.is_empty() && r.restores_undone.is_empty() {
        return;
    }
    l.ensure(260.0);
    l.heading("Key backup and restore");
    for b in &r.backups {
        l.ensure(240.0);
        l.subheading(&format!("Backup of key \"{}\"", b.key));
        l.key_values(&[
            mono("Key hash", grouped_hex(&b.key_hash)),
            regular(
                "Token",
                format!("{} (serial {})", b.token_label, b.token_serial),
            ),
            regular("Wrapped with", &b.mechanism),
            regular("Wrapped key file", &b.blob_file),
            mono("Wrapped key SHA-256", grouped_hex(&b.blob_sha256)),
            regular("Read back as", key_hash_words(&b.blob_sha256)),
            regular(
                "KEK quorum",
                format!(
                    "{} of {}: {}",
                    b.kek_split.threshold,
                    b.kek_split.total,
                    b.kek_split
                        .cards
                        .iter()
                        .map(|c| c.holder.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            mono(
                "KEK commitments SHA-256",
                grouped_hex(&b.kek_split.commitments_sha256),
            ),
            regular("Key attributes read back", attributes(&b.attributes)),
            regular(
                "Secret keys left on the token",
                b.secret_keys_left.to_string(),
            ),
        ]);
        l.para(Face::Regular, BODY, &b.statement);
        l.para(
            Face::Regular,
            BODY,
            &format!("The key-encryption key: {}.", b.kek_handling),
        );
    }
    for x in &r.restores {
        l.ensure(240.0);
        l.subheading(&format!("Restore of key \"{}\"", x.key));
        l.key_values(&[
            regular("From the backup of ceremony", &x.backup_ceremony),
            mono("Key hash (backup report)", grouped_hex(&x.expected_key_hash)),
            mono("Key hash (restored)", grouped_hex(&x.key_hash)),
            regular("Read back as", key_hash_words(&x.key_hash)),
            regular("Token", format!("{} (serial {})", x.token_label, x.token_serial)),
            regular("Unwrapped with", &x.mechanism),
            mono("Wrapped key SHA-256", grouped_hex(&x.blob_sha256)),
            mono("KEK commitments SHA-256", grouped_hex(&x.kek_commitments_sha256)),
            regular("Restored key attributes", attributes(&x.attributes)),
            regular(
                "Proof",
                format!(
                    "a challenge signed by the restored key ({}) {} under the original certificate ({})",
                    x.proof_signature_algorithm,
                    if x.proof_verified { "verifies" } else { "DOES NOT verify" },
                    x.certificate_file
                ),
            ),
            regular("Secret keys left on the token", x.secret_keys_left.to_string()),
        ]);
    }
    for u in &r.restores_undone {
        l.para(
            Face::Regular,
            BODY,
            &format!(
                "Restore of \"{}\" undone: {}. {} object(s) destroyed; {} left under the label, {} secret keys left.",
                u.key, u.reason, u.objects_destroyed, u.objects_left, u.secret_keys_left
            ),
        );
    }
}
