//! Policy rules about what a ceremony produces: one artifact file per key and certificate, and signature
//! hashes that suit the key.

use super::{root, Checker};
use crate::script::diagnostic::{KeyPath, Target};
use crate::script::model::{HashAlgorithm, KeyAlgorithm};
use std::collections::HashMap;

/// One file the evidence bundle will hold, and the script entry that produces it.
struct Artifact {
    file: String,
    /// `key "x"` or `certificate "x"`, for messages.
    owner: String,
    path: KeyPath,
    at: (usize, usize),
}

impl Checker<'_> {
    /// Two entries writing the same artifact would either fail mid-ceremony (the bundle never overwrites)
    /// or, once copied to another system, leave one file where the report lists two.
    pub(super) fn artifact_clashes(&mut self, keys: &[usize], certificates: &[usize]) {
        let mut artifacts: Vec<Artifact> = Vec::new();
        for &i in keys {
            let k = &self.s.keys[i];
            let path = root().key("keys").index(i).key("label");
            let at = self.l.locate(&path, Target::Value);
            let (file, owner) = (k.public_key_file(), format!("key \"{}\"", k.label));
            artifacts.push(Artifact {
                file,
                owner,
                path,
                at,
            });
        }
        for &i in certificates {
            let c = &self.s.certificates[i];
            let path = root().key("certificates").index(i).key("name");
            let at = self.l.locate(&path, Target::Value);
            let (file, owner) = (c.file(), format!("certificate \"{}\"", c.name));
            artifacts.push(Artifact {
                file,
                owner,
                path,
                at,
            });
        }
        // [[keys]] and [[certificates]] may come in any order: the later one in the file is the clash.
        artifacts.sort_by_key(|a| a.at);
        // Letter case is folded because Windows and macOS, where auditors may unpack the bundle, fold it.
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (n, a) in artifacts.iter().enumerate() {
            let folded = a.file.to_ascii_lowercase();
            let Some(&first) = seen.get(&folded) else {
                seen.insert(folded, n);
                continue;
            };
            let earlier = &artifacts[first];
            let (file, owner, line) = (&a.file, &a.owner, earlier.at.0);
            let what = if earlier.file == a.file {
                format!(
                    "{owner} would be written to {file}, the file of {} (line {line})",
                    earlier.owner
                )
            } else {
                format!(
                    "{owner} would be written to {file}, which differs only in letter case from {} of {} \
                     (line {line}): one file on Windows and macOS, where the bundle may be checked",
                    earlier.file, earlier.owner
                )
            };
            let fix = "rename one of them so that each has its own artifact file (characters other than A-Z, \
                       a-z, 0-9, '.', '_' and '-' become '_'; a key's public key goes to \
                       artifacts/<label>.pub.pem, a certificate to artifacts/<name>.pem)";
            self.error(&a.path, Target::Value, what, fix);
        }
    }

    /// Pure ML-DSA signs the whole message with no separate hash (RFC 9881): a `signature_hash`
    /// next to an ML-DSA key would be silently ignored, so it is refused.
    pub(super) fn ml_dsa_without_hash(&mut self) {
        let s = self.s;
        let certs = s.certificates.iter().map(|c| (&c.key, c.signature_hash));
        let issued = s
            .ca_certificates
            .iter()
            .map(|c| (&c.issuer_key, c.signature_hash));
        let crls = s.crls.iter().map(|c| (&c.key, c.signature_hash));
        let sections = [
            ("certificates", certs.collect::<Vec<_>>()),
            ("ca_certificates", issued.collect()),
            ("crls", crls.collect()),
        ];
        for (section, entries) in sections {
            for (i, (key, hash)) in entries.into_iter().enumerate() {
                let Some(spec) = s.key(key) else { continue };
                if hash.is_none() || !spec.algorithm.is_ml_dsa() {
                    continue;
                }
                let what = format!(
                    "{section}[{i}] is signed by {} key \"{key}\", which signs the whole message (pure \
                     ML-DSA, RFC 9881): it takes no signature_hash",
                    spec.algorithm
                );
                let path = root().key(section).index(i).key("signature_hash");
                self.error(&path, Target::Value, what, "remove the signature_hash line");
            }
        }
    }

    /// CA/B Forum Baseline Requirements 7.1.3.2.2: a P-256 key signs with SHA-256 and a P-384 key with
    /// SHA-384 only. RSA keys may use either.
    pub(super) fn signature_hashes(&mut self) {
        for (i, c) in self.s.certificates.iter().enumerate() {
            let (Some(hash), Some(key)) = (c.signature_hash, self.s.key(&c.key)) else {
                continue;
            };
            let algorithm = key.algorithm;
            let wanted = match algorithm {
                KeyAlgorithm::P256 => HashAlgorithm::Sha256,
                KeyAlgorithm::P384 => HashAlgorithm::Sha384,
                _ => continue,
            };
            if hash == wanted {
                continue;
            }
            let what = format!(
                "certificate \"{}\" is signed by {algorithm} key \"{}\" with {hash}, but the CA/B Forum Baseline \
                 Requirements (7.1.3.2.2) allow a {algorithm} key to sign with {wanted} only",
                c.name, key.label
            );
            let written = match wanted {
                HashAlgorithm::Sha256 => "sha256",
                HashAlgorithm::Sha384 => "sha384",
            };
            let fix = format!(
                "write signature_hash = \"{written}\", or remove the line (the default matches the curve)"
            );
            let path = root().key("certificates").index(i).key("signature_hash");
            self.error(&path, Target::Value, what, fix);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::script::parse::parse;
    use crate::script::policy::check;

    #[test]
    fn the_shipped_ml_dsa_root_passes_and_a_signature_hash_beside_ml_dsa_is_refused() {
        let shipped = include_str!("../../../ceremony-scripts/root-ca-mldsa.toml");
        let errors = |src: &str| -> Vec<String> {
            let loaded = parse("pq.toml", src).unwrap();
            check(&loaded)
                .iter()
                .map(ToString::to_string)
                .filter(|d| d.contains("error"))
                .collect()
        };
        assert!(errors(shipped).is_empty(), "{:?}", errors(shipped));
        let with_hash = shipped.replace(
            "validity_days = 9131",
            "validity_days = 9131\nsignature_hash = \"sha384\"",
        );
        let found = errors(&with_hash);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("pure ML-DSA"), "{found:?}");
    }
}
