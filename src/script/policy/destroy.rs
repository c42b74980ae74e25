//! Issue 12, key destruction: a `destroy_key` step is witnessed (besides its dual control), and no
//! later step uses the destroyed key.

use super::{step_path, Checker};
use crate::script::diagnostic::Target;
use crate::script::model::Action;

impl Checker<'_> {
    pub(super) fn destructions(&mut self) {
        for (i, st) in self.s.steps.iter().enumerate() {
            if st.action != Action::DestroyKey {
                continue;
            }
            let name = self.step_name(i);
            if st.witnessed_by.is_empty() {
                let what = format!(
                    "{name} destroys a key without a witness: a key destruction is witnessed"
                );
                let fix = "add witnessed_by = [\"internal-witness\"] (or \"independent-witness\"), and that participant";
                self.error(&step_path(i).key("action"), Target::Value, what, fix);
            }
            let Some(key) = st.key.as_deref() else {
                continue;
            };
            for (j, later) in self.s.steps.iter().enumerate().skip(i + 1) {
                if self.s.step_key(later) != Some(key) {
                    continue;
                }
                let what = format!(
                    "{} uses key \"{key}\" after {name} destroyed it",
                    self.step_name(j)
                );
                let fix = format!("move it before {name}, or remove it");
                self.error(&step_path(j).key("action"), Target::Value, what, fix);
            }
        }
    }
}
