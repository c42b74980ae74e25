//! Line editing in the dialogs that take text (an exception, an attachment's path), by tui-input:
//! Ctrl-U, Ctrl-W, Ctrl-A/Home, Ctrl-E/End, ←/→, Delete. A control key never lands in the text as a
//! letter. The PIN dialog has its own, smaller editor (`pin_key`): its buffer must stay zeroizing,
//! which tui-input's `String` is not.

use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use tui_input::backend::crossterm::EventHandler;
use zeroize::Zeroize;

pub use tui_input::Input as LineInput;

/// Apply an editing key to `input`.
pub(super) fn edit(input: &mut LineInput, key: KeyEvent) {
    input.handle_event(&Event::Key(key));
}

/// `label` and the text, the character under the cursor shown reversed.
pub(super) fn line<'a>(label: &str, input: &LineInput, style: Style) -> Line<'a> {
    let chars: Vec<char> = input.value().chars().collect();
    let at = input.cursor().min(chars.len());
    let before: String = chars[..at].iter().collect();
    let under = chars.get(at).map_or(" ".to_string(), char::to_string);
    let after: String = chars
        .get(at + 1..)
        .map_or(String::new(), |c| c.iter().collect());
    Line::from(vec![
        Span::styled(format!("{label}{before}"), style),
        Span::styled(
            under,
            style.add_modifier(ratatui::style::Modifier::REVERSED),
        ),
        Span::styled(after, style),
    ])
}

/// A key in the PIN dialog, on its zeroizing buffer: Backspace and Ctrl-H delete a character,
/// Ctrl-W the last word, Ctrl-U everything; other control keys are ignored, never typed. Returns
/// whether the key was an editing key.
pub(super) fn pin_key(buffer: &mut String, key: KeyEvent) -> bool {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    match key.code {
        KeyCode::Backspace => {
            buffer.pop();
        }
        KeyCode::Char('h') if ctrl => {
            buffer.pop();
        }
        KeyCode::Char('u') if ctrl => buffer.zeroize(),
        KeyCode::Char('w') if ctrl => {
            while buffer.ends_with(char::is_whitespace) {
                buffer.pop();
            }
            while buffer.chars().last().is_some_and(|c| !c.is_whitespace()) {
                buffer.pop();
            }
        }
        KeyCode::Char(c) if !ctrl && !key.modifiers.contains(KeyModifiers::ALT) => buffer.push(c),
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    fn typed(input: &mut LineInput, text: &str) {
        for c in text.chars() {
            edit(input, k(KeyCode::Char(c), KeyModifiers::NONE));
        }
    }

    #[test]
    fn control_keys_edit_the_line_instead_of_typing_letters() {
        let ctrl = KeyModifiers::CONTROL;
        let mut input = LineInput::default();
        typed(&mut input, "bag seal torn");
        edit(&mut input, k(KeyCode::Char('w'), ctrl));
        assert_eq!(input.value(), "bag seal ");
        edit(&mut input, k(KeyCode::Char('a'), ctrl));
        typed(&mut input, "new ");
        assert_eq!(input.value(), "new bag seal ");
        edit(&mut input, k(KeyCode::End, KeyModifiers::NONE));
        edit(&mut input, k(KeyCode::Left, KeyModifiers::NONE));
        edit(&mut input, k(KeyCode::Backspace, KeyModifiers::NONE));
        assert_eq!(input.value(), "new bag sea ");
        edit(&mut input, k(KeyCode::Char('u'), ctrl));
        assert_eq!(input.value(), "", "Ctrl-U clears the line");
    }

    #[test]
    fn the_pin_editor_clears_and_never_types_control_letters() {
        let ctrl = KeyModifiers::CONTROL;
        let mut pin = String::new();
        for c in "12 34".chars() {
            assert!(pin_key(&mut pin, k(KeyCode::Char(c), KeyModifiers::NONE)));
        }
        assert!(pin_key(&mut pin, k(KeyCode::Char('w'), ctrl)));
        assert_eq!(pin, "12 ");
        assert!(!pin_key(&mut pin, k(KeyCode::Char('a'), ctrl)));
        assert_eq!(pin, "12 ");
        assert!(pin_key(&mut pin, k(KeyCode::Char('u'), ctrl)));
        assert_eq!(pin, "");
    }
}
