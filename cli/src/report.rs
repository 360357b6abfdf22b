//! How a failed command reports: its text on stderr, its exit code, and
//! with `--json` the error object on stdout. Every failure goes through
//! [`ErrorReport`], so the three always agree.
//!
//! The object is `{"error": {"kind", "exit_code", "message", "stage",
//! "status", "enhanced_status", "recipients"}}`; a command whose own JSON
//! object is already on stdout when it fails (`check`, `send` that reached
//! some recipients, `send --queue` with a dead message) carries the same
//! `error` member in that object instead, so stdout always holds one object.

use mailgate::{ConfigError, Error, RecipientRefusal};
use serde::Serialize;

/// EX_USAGE, for command lines clap refuses.
pub(crate) const EXIT_USAGE: u8 = 64;

/// One failure, as stderr, the exit status and `--json` show it.
#[derive(Debug, Serialize)]
pub(crate) struct ErrorReport {
    /// A stable snake_case name: [`Error::name`] for mailgate's errors, else
    /// one of the command line's own (README, "JSON output").
    kind: &'static str,
    exit_code: u8,
    /// The text stderr shows after `mailgate: `; error texts never hold a
    /// secret, and nothing is added here that stderr does not show.
    message: String,
    stage: Option<&'static str>,
    status: Option<u16>,
    /// `class.subject.detail`, e.g. `5.1.1`.
    enhanced_status: Option<String>,
    recipients: Vec<Refused>,
}

/// A refused recipient, as the success object's `refused` lists them.
#[derive(Debug, Serialize)]
struct Refused {
    address: String,
    code: u16,
    reply: String,
}

impl From<&RecipientRefusal> for Refused {
    fn from(r: &RecipientRefusal) -> Self {
        Refused {
            address: r.address.clone(),
            code: r.code,
            reply: r.reply.clone(),
        }
    }
}

impl ErrorReport {
    /// A mailgate error with the text stderr shows for it.
    pub(crate) fn of(e: &Error) -> Self {
        Self::with_message(e, format!("{e}{}", flag_hint(e)))
    }

    /// A mailgate error shown with the command's own text (which says
    /// more, e.g. who got a partly sent message).
    pub(crate) fn with_message(e: &Error, message: String) -> Self {
        ErrorReport {
            kind: e.name(),
            exit_code: e.exit_code(),
            message,
            stage: e.stage().map(mailgate::Stage::as_str),
            status: e.status(),
            enhanced_status: e
                .enhanced_status()
                .map(|(class, subject, detail)| format!("{class}.{subject}.{detail}")),
            recipients: e.refused_recipients().iter().map(Refused::from).collect(),
        }
    }

    /// A failure of the command line's own, outside the SMTP conversation.
    pub(crate) fn plain(exit_code: u8, kind: &'static str, message: String) -> Self {
        ErrorReport {
            kind,
            exit_code,
            message,
            stage: None,
            status: None,
            enhanced_status: None,
            recipients: Vec::new(),
        }
    }

    /// Recipients a server refused for good, with the reply that decides
    /// `status` and `enhanced_status` (the first): a queued message's dead
    /// recipients.
    pub(crate) fn refusals(mut self, refused: &[RecipientRefusal]) -> Self {
        if let Some(first) = refused.first() {
            self.stage = Some(mailgate::Stage::Rcpt.as_str());
            self.status = Some(first.code);
            self.enhanced_status = first
                .enhanced_status()
                .map(|(class, subject, detail)| format!("{class}.{subject}.{detail}"));
        }
        self.recipients = refused.iter().map(Refused::from).collect();
        self
    }

    pub(crate) fn exit_code(&self) -> u8 {
        self.exit_code
    }

    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// The value of an `error` member.
    pub(crate) fn json(&self) -> serde_json::Value {
        // Strings, numbers, null and arrays of those: nothing that can fail.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// `{"error": {...}}`, the whole of stdout for a failed command.
    pub(crate) fn object(&self) -> serde_json::Value {
        serde_json::json!({ "error": self.json() })
    }
}

/// The options that fix an error, where the library's text cannot name them.
fn flag_hint(e: &Error) -> &'static str {
    match e {
        Error::Config(ConfigError::Unreadable { .. }) => " (see --config-dir, --is, --security)",
        _ => "",
    }
}

/// Whether a command line clap refused asked for JSON: `--json` before any
/// `--` (after it, it is an operand). The command may not take `--json`;
/// the caller asked for JSON either way.
pub(crate) fn argv_asks_json(argv: impl IntoIterator<Item = std::ffi::OsString>) -> bool {
    argv.into_iter()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_fills_every_field() {
        let e = Error::Recipients {
            server: "s:25".into(),
            total: 1,
            refused: vec![RecipientRefusal {
                address: "a@x".into(),
                code: 550,
                reply: "5.1.1 User unknown".into(),
                index: 0,
            }],
        };
        let v = ErrorReport::of(&e).object();
        assert_eq!(
            v,
            serde_json::json!({ "error": {
                "kind": "recipients_refused",
                "exit_code": 65,
                "message": e.to_string(),
                "stage": "rcpt",
                "status": 550,
                "enhanced_status": "5.1.1",
                "recipients": [{ "address": "a@x", "code": 550, "reply": "5.1.1 User unknown" }],
            }})
        );
    }

    #[test]
    fn a_plain_failure_has_nulls_and_no_recipients() {
        let v = ErrorReport::plain(66, "no_input", "gone".into()).json();
        assert_eq!(
            v,
            serde_json::json!({
                "kind": "no_input", "exit_code": 66, "message": "gone",
                "stage": null, "status": null, "enhanced_status": null, "recipients": [],
            })
        );
    }

    #[test]
    fn json_asked_for_before_the_end_of_options_only() {
        let argv = |args: &[&str]| {
            args.iter()
                .map(std::ffi::OsString::from)
                .collect::<Vec<_>>()
        };
        assert!(argv_asks_json(argv(&[
            "mailgate", "send", "--bogus", "--json"
        ])));
        assert!(!argv_asks_json(argv(&["mailgate", "send", "--", "--json"])));
        assert!(!argv_asks_json(argv(&["--json"])));
    }
}
