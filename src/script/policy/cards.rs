//! Policy rules about personal cards: the people who must sign the report need one.

use super::{root, Checker};
use crate::script::diagnostic::Severity;
use crate::script::diagnostic::Target;
use crate::script::model::SecurityLevel;
use crate::script::signers::signing_roles;

impl Checker<'_> {
    /// Every holder of a report-signing role needs a card (an error at high and very-high, a warning
    /// at medium),
    /// and a card selector names exactly one of label, serial or uri, without a PIN.
    pub(super) fn cards(&mut self) {
        let level = self.s.ceremony.security_level;
        let roles = signing_roles(level);
        // An error at high and very-high (the report must carry these signatures, and `keyrite
        // verify` demands them by role); advice at medium, where a role holder without a card
        // simply does not sign.
        let severity = if level >= SecurityLevel::High {
            Severity::Error
        } else {
            Severity::Warning
        };
        for (i, p) in self.s.participants.iter().enumerate() {
            let at = root().key("participants").index(i);
            match &p.card {
                Some(card) => {
                    let card_path = at.clone().key("card");
                    self.token_selector(&card_path, card, "card");
                }
                None => {
                    if let Some(role) = roles.iter().find(|r| p.holds(**r)) {
                        let name = p.name.trim();
                        let what = if severity == Severity::Error {
                            format!("the {role} \"{name}\" has no personal card, but security level {level} needs the {role}'s signature on the report")
                        } else {
                            format!("the {role} \"{name}\" has no personal card, so the report will lack the {role}'s signature that security level {level} asks for")
                        };
                        let fix = "add card = { label = \"…\" } (or serial / uri) naming the person's signing card; \
                                   `keyrite rehearse` makes a throw-away card for it";
                        self.push(
                            severity,
                            &at.clone().key("name"),
                            Target::Value,
                            what,
                            fix.into(),
                        );
                    }
                }
            }
        }
    }
}
