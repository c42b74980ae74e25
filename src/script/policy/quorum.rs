//! `[quorum]` rules (docs/script-format.md, "Quorum"): M ≥ 2; N ≥ M, N ≥ M+1 at high, N ≥ M+2 at
//! very-high; one card per holder; holders are custodians; quorum steps in a sensible order; the
//! commitments of the split the cards hold are pinned (an error at high and very-high).

use super::{quoted, root, step_path, Checker};
use crate::script::diagnostic::{KeyPath, Severity, Target};
use crate::script::model::{Action, Role, SecurityLevel};
use crate::script::quorum::{QuorumCard, ShareMedium};
use std::collections::HashMap;

const QUORUM_ACTIONS: [Action; 5] = [
    Action::SplitActivation,
    Action::ActivateQuorum,
    Action::ShareHealthCheck,
    Action::Reshare,
    Action::RetireShares,
];

impl Checker<'_> {
    pub(super) fn quorum(&mut self) {
        let Some(q) = self.s.quorum.as_ref() else {
            for (i, st) in self.s.steps.iter().enumerate() {
                if QUORUM_ACTIONS.contains(&st.action) {
                    let what = format!(
                        "{} ({}) needs the custodian quorum, but the script has no [quorum] section",
                        self.step_name(i),
                        st.action
                    );
                    let fix =
                        "add [quorum] with threshold and [[quorum.cards]] (holder, token, bag)";
                    self.error(&step_path(i).key("action"), Target::Value, what, fix);
                }
            }
            return;
        };
        let at = root().key("quorum");
        // Cards written or destroyed here need their holders in the room; cards only read (activation,
        // health check) need only as many holders present as the threshold.
        let writes = self
            .s
            .steps
            .iter()
            .any(|s| matches!(s.action, Action::SplitActivation | Action::RetireShares));
        self.quorum_set(&at, q.threshold, &q.cards, writes);
        if let Some(r) = &q.reshare {
            self.quorum_set(&at.clone().key("reshare"), r.threshold, &r.cards, true);
        }
        let splits = self
            .s
            .steps
            .iter()
            .any(|s| s.action == Action::SplitActivation);
        if !splits
            && q.split_ceremony
                .as_deref()
                .is_none_or(|s| s.trim().is_empty())
        {
            let what = "[quorum] does not say which ceremony made the split the cards hold".into();
            let fix = "add split_ceremony = \"<id of the ceremony that made the split>\" (from its report)";
            self.error(&at, Target::Key, what, fix);
        }
        if let Some(sha) = &q.commitments_sha256 {
            if sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
                let what = format!("`quorum.commitments_sha256` \"{sha}\" is not a SHA-256 in hex");
                let fix = "copy quorum.commitments_sha256 from the split ceremony's report.json (64 hex digits)";
                self.error(
                    &at.clone().key("commitments_sha256"),
                    Target::Value,
                    what,
                    fix,
                );
            }
        }
        self.quorum_order(splits, q.reshare.is_some());
        self.commitments_pinned(splits, q.commitments_sha256.is_some());
        self.sealed_cards(q);
    }

    /// Sealed cards need a folder for their envelopes; key_label only means something for them.
    fn sealed_cards(&mut self, q: &crate::script::QuorumConfig) {
        let at = root().key("quorum");
        let sets = std::iter::once((at.clone(), &q.cards)).chain(
            q.reshare
                .iter()
                .map(|r| (at.clone().key("reshare"), &r.cards)),
        );
        let mut sealed = false;
        for (set_at, cards) in sets {
            for (i, card) in cards.iter().enumerate() {
                let c = set_at.clone().key("cards").index(i);
                match card.medium {
                    ShareMedium::Sealed => sealed = true,
                    ShareMedium::DataObject if card.key_label.is_some() => {
                        let what = format!(
                            "card of \"{}\" names key_label but keeps its share as a data object",
                            card.holder
                        );
                        let fix = "add medium = \"sealed\" to seal the share to that key, or remove key_label";
                        self.error(&c.key("key_label"), Target::Key, what, fix);
                    }
                    ShareMedium::DataObject => {}
                }
            }
        }
        if sealed
            && q.envelope_dir
                .as_deref()
                .is_none_or(|d| d.trim().is_empty())
        {
            let what =
                "[quorum] has sealed cards but no envelope_dir for their share envelopes".into();
            let fix = "add envelope_dir = \"<folder on the medium the envelopes travel on>\" to [quorum] \
                       (keyrite rehearse uses its --env folder instead)";
            self.error(&at, Target::Key, what, fix);
        }
    }

    /// A step that reads cards of an earlier split must know that split's commitments from a trusted
    /// source before it accepts any card: otherwise foreign or forged cards can cost an HSM PIN try
    /// or get genuine cards blamed. An error at high and very-high, advice at medium; a rehearsal
    /// takes them from its folder's record of the split.
    fn commitments_pinned(&mut self, has_split: bool, pinned: bool) {
        if has_split || pinned {
            return;
        }
        let Some(i) = self.s.steps.iter().position(|st| {
            matches!(
                st.action,
                Action::ActivateQuorum
                    | Action::ShareHealthCheck
                    | Action::Reshare
                    | Action::RetireShares
            )
        }) else {
            return;
        };
        // A rehearsal's throw-away split has commitments no script can know: the folder's record
        // of the split is the trusted source there.
        if self.rehearsal {
            return;
        }
        let level = self.s.ceremony.security_level;
        let severity = if level == SecurityLevel::Medium {
            Severity::Warning
        } else {
            Severity::Error
        };
        let what = format!(
            "[quorum] does not pin the split's commitments, so {} cannot tell the split's cards from foreign or forged ones before they are used",
            self.step_name(i)
        );
        let fix =
            "add commitments_sha256 = \"…\" to [quorum], copied from the split ceremony's report \
                   (quorum.commitments_sha256) or from the line the split showed";
        self.push(
            severity,
            &root().key("quorum"),
            Target::Key,
            what,
            fix.into(),
        );
    }

    fn quorum_set(&mut self, at: &KeyPath, threshold: u16, cards: &[QuorumCard], writes: bool) {
        let level = self.s.ceremony.security_level;
        let n = cards.len();
        let m = usize::from(threshold);
        let spare = match level {
            SecurityLevel::Medium => 0,
            SecurityLevel::High => 1,
            SecurityLevel::VeryHigh => 2,
        };
        if m < 2 {
            let what = format!("quorum threshold {threshold} lets one person activate the HSM");
            self.error(
                &at.clone().key("threshold"),
                Target::Value,
                what,
                "set threshold = 2 or more (M-of-N needs M ≥ 2)",
            );
        } else if n < m + spare {
            let what = if spare == 0 {
                format!("{n} card(s) cannot reach a threshold of {m}")
            } else {
                format!(
                    "security level {level} needs at least {} cards for a threshold of {m} (N ≥ M+{spare}, so a lost card is survivable), but [quorum] lists {n}",
                    m + spare
                )
            };
            let fix = "add [[quorum.cards]] entries (one per custodian), or lower the threshold";
            self.error(&at.clone().key("threshold"), Target::Value, what, fix);
        } else if n > usize::from(crate::quorum::MAX_SHARES) {
            // Caught here rather than by the split, after the room has gathered.
            let what = format!(
                "[quorum] lists {n} cards; keyrite splits onto at most {} cards",
                crate::quorum::MAX_SHARES
            );
            let fix = "split onto fewer cards, e.g. one per custodian who must be able to activate";
            self.error(&at.clone().key("cards"), Target::Key, what, fix);
        }
        self.presented_here(at, threshold, cards, writes);
        let mut holders: HashMap<&str, usize> = HashMap::new();
        let mut labels: HashMap<String, usize> = HashMap::new();
        for (i, card) in cards.iter().enumerate() {
            let c = at.clone().key("cards").index(i);
            match self.s.participant(&card.holder) {
                // A holder who is not in the room: their card stays in its bag (presented_here below).
                None if !writes => {}
                None => {
                    let known = quoted(
                        self.s
                            .participants
                            .iter()
                            .filter(|p| p.holds(Role::Custodian))
                            .map(|p| &p.name),
                    );
                    let what = format!("card holder \"{}\" is not a participant", card.holder);
                    let fix =
                        format!("name a participant with the custodian role ({known}), or add one");
                    self.error(&c.clone().key("holder"), Target::Value, what, fix);
                }
                Some(p) if !p.holds(Role::Custodian) => {
                    let what = format!(
                        "card holder \"{}\" does not hold the custodian role",
                        card.holder
                    );
                    let fix = "give the holder role = \"custodian\" (or also = \"custodian\"), or choose a custodian";
                    self.error(&c.clone().key("holder"), Target::Value, what, fix);
                }
                Some(_) => {}
            }
            if let Some(&first) = holders.get(card.holder.as_str()) {
                let what = format!(
                    "\"{}\" holds two cards (cards #{} and #{}); one custodian may hold one card",
                    card.holder,
                    first + 1,
                    i + 1
                );
                let fix =
                    "give the card to another custodian: a person with two shares weakens M-of-N";
                self.error(&c.clone().key("holder"), Target::Value, what, fix);
            } else {
                holders.insert(&card.holder, i);
            }
            let t = &card.token;
            let set = [&t.label, &t.serial, &t.uri]
                .iter()
                .filter(|v| v.is_some())
                .count();
            if set != 1 {
                let what = format!(
                    "card #{} must name its token by exactly one of label, serial or uri",
                    i + 1
                );
                self.error(
                    &c.clone().key("token"),
                    Target::Value,
                    what,
                    "e.g. token = { label = \"custodian-card-1\" }",
                );
            }
            let key = t.to_string();
            if let Some(&first) = labels.get(&key) {
                let what = format!(
                    "cards #{} and #{} name the same token ({key})",
                    first + 1,
                    i + 1
                );
                self.error(
                    &c.clone().key("token"),
                    Target::Value,
                    what,
                    "each share goes to its own card",
                );
            } else {
                labels.insert(key, i);
            }
            if card.bag.trim().is_empty() {
                let what = format!("card #{} has no tamper-evident bag serial", i + 1);
                self.error(
                    &c.clone().key("bag"),
                    Target::Value,
                    what,
                    "write the bag's serial, e.g. bag = \"TEB-104233\"",
                );
            }
        }
    }

    fn quorum_order(&mut self, has_split: bool, has_reshare_set: bool) {
        let (mut split_at, mut quorum_login_at, mut reshare_at) = (None, None, None);
        for (i, st) in self.s.steps.iter().enumerate() {
            let name = self.step_name(i);
            let at = step_path(i).key("action");
            match st.action {
                Action::ActivateHsm if split_at.is_some() || !has_split => {
                    let what = format!(
                        "{name} logs in with a typed user PIN, but this HSM's PINs come from the quorum (nobody knows them)"
                    );
                    self.error(
                        &at,
                        Target::Value,
                        what,
                        "use action = \"activate_quorum\" (custodians present their cards)",
                    );
                }
                Action::ActivateQuorum if has_split && split_at.is_none() => {
                    let what = format!(
                        "{name} needs the quorum, but the split_activation step comes later"
                    );
                    self.error(&at, Target::Value, what, "activate with activate_hsm before the split, and with activate_quorum after it");
                }
                Action::SplitActivation => split_at = Some(i),
                Action::ActivateQuorum => quorum_login_at = Some(i),
                Action::Reshare => {
                    if quorum_login_at.is_none() {
                        let what = format!(
                            "{name} needs the secret, but no activate_quorum step comes before it"
                        );
                        self.error(
                            &at,
                            Target::Value,
                            what,
                            "put an activate_quorum step before the reshare",
                        );
                    }
                    if !has_reshare_set {
                        let what = format!("{name} has no new cards to write");
                        self.error(
                            &at,
                            Target::Value,
                            what,
                            "add [quorum.reshare] with threshold and [[quorum.reshare.cards]]",
                        );
                    }
                    reshare_at = Some(i);
                }
                Action::RetireShares if reshare_at.is_none() => {
                    let what = format!(
                        "{name} destroys the old shares, but no reshare step replaces them first"
                    );
                    self.error(&at, Target::Value, what, "put a reshare step before retire_shares: destroying the only shares locks the HSM forever");
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::script::parse::parse;
    use crate::script::policy::check;

    /// The shipped 2-of-4 split, grown to `n` custodians with one card each.
    fn split_onto(n: usize) -> Vec<String> {
        let shipped = include_str!("../../../ceremony-scripts/root-ca-quorum.toml");
        let mut src = shipped.to_string();
        for i in 5..=n {
            src.push_str(&format!(
                "\n[[participants]]\nname = \"Custodian {i}\"\nrole = \"custodian\"\ncard = {{ label = \"card-c{i}\" }}\n"
            ));
            src.push_str(&format!(
                "\n[[quorum.cards]]\nholder = \"Custodian {i}\"\ntoken = {{ label = \"custodian-card-{i}\" }}\nbag = \"TEB-{i}\"\n"
            ));
        }
        let loaded = parse("q.toml", &src).unwrap();
        check(&loaded).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn more_cards_than_the_split_supports_are_refused_by_check() {
        let limit = usize::from(crate::quorum::MAX_SHARES);
        let at_limit = split_onto(limit);
        assert!(
            at_limit.iter().all(|d| !d.contains("at most")),
            "{at_limit:?}"
        );
        let over = split_onto(limit + 1);
        assert!(
            over.iter()
                .any(|d| d.contains(&format!("lists {} cards", limit + 1))),
            "{over:?}"
        );
    }

    #[test]
    fn an_unpinned_activation_is_refused_at_very_high_and_warned_at_medium() {
        let shipped = include_str!("../../../ceremony-scripts/key-activation.toml");
        let pin_finding = |src: &str, rehearsal: bool| -> Vec<String> {
            let loaded = parse("ka.toml", src).unwrap();
            let found = if rehearsal {
                crate::script::policy::check_rehearsal(&loaded)
            } else {
                check(&loaded)
            };
            found
                .iter()
                .map(ToString::to_string)
                .filter(|d| d.contains("does not pin the split's commitments"))
                .collect()
        };
        let at = pin_finding(shipped, false);
        assert!(at.len() == 1 && at[0].contains("error"), "{at:?}");
        assert!(
            pin_finding(shipped, true).is_empty(),
            "a rehearsal uses its folder's record"
        );
        let medium = shipped.replace(
            "security_level = \"very-high\"",
            "security_level = \"medium\"",
        );
        let at = pin_finding(&medium, false);
        assert!(at.len() == 1 && at[0].contains("warning"), "{at:?}");
        let pinned = shipped.replace(
            "split_ceremony = \"EXAMPLE-ROOT-QUORUM-2026\"",
            &format!(
                "split_ceremony = \"EXAMPLE-ROOT-QUORUM-2026\"\ncommitments_sha256 = \"{}\"",
                "ab".repeat(32)
            ),
        );
        assert!(pin_finding(&pinned, false).is_empty());
    }
}
