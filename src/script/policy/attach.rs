//! Policy rules for `attach` steps: each says what file it records, and only they do.

use super::{step_path, Checker};
use crate::script::diagnostic::Target;
use crate::script::Action;

impl Checker<'_> {
    /// `attachment` on steps: a non-empty description on every attach step, absent elsewhere.
    pub(super) fn attachments(&mut self) {
        for (i, st) in self.s.steps.iter().enumerate() {
            let path = step_path(i).key("attachment");
            let name = self.step_name(i);
            match (&st.attachment, st.action == Action::Attach) {
                (None, true) => self.error(
                    &step_path(i).key("action"),
                    Target::Value,
                    format!("{name} (attach) does not say what file it records"),
                    "add attachment = \"…\" describing the file, e.g. \"video recording of the \
                     whole ceremony\"; its path is given at run time",
                ),
                (Some(d), true) if d.trim().is_empty() => self.error(
                    &path,
                    Target::Value,
                    format!("{name} has an empty attachment description"),
                    "say what the file is, e.g. \"scanned sign-in sheet\"",
                ),
                (Some(_), false) => self.error(
                    &path,
                    Target::Key,
                    format!("`attachment` has no meaning for a {} step", st.action),
                    "remove the line, or make the step action = \"attach\"",
                ),
                _ => {}
            }
        }
    }
}
