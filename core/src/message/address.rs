//! Addresses as a caller gives them: checked cheaply before anything costly,
//! never echoed whole, domains turned into A-labels for the headers.

use lettre::Address;
use lettre::message::Mailbox;

use crate::error::{Error, Result};
use crate::smtp::escape_controls;

/// Longest address input accepted (a display name and the address; RFC 5322
/// lines hold 998 octets). Checked before any parsing.
pub const MAX_ADDRESS_INPUT: usize = 998;

/// At most this many characters of a refused address are shown.
const SHOWN: usize = 80;

/// The input as an error may show it: controls escaped, cut short.
pub(crate) fn shown(value: &str) -> String {
    escape_controls(value.trim(), SHOWN)
}

/// C0 and C1 controls, DEL, and the invisible format characters that can
/// disguise an address (zero-width, bidi overrides, BOM).
pub(crate) fn is_forbidden_char(c: char) -> bool {
    c.is_control() || crate::smtp::redact::is_format(c)
}

/// Checks `value` for `field` (`to`, `from`, ...): length first, then
/// characters, then syntax. The error names the field and shows the value
/// escaped and cut short.
pub fn parse_mailbox(field: &str, value: &str) -> Result<Mailbox> {
    let value = value.trim();
    if value.len() > MAX_ADDRESS_INPUT {
        return Err(Error::invalid_message(
            field,
            format!(
                "`{}` is {} bytes long; an address may have at most {MAX_ADDRESS_INPUT}",
                shown(value),
                value.len()
            ),
        ));
    }
    if let Some(c) = value.chars().find(|c| is_forbidden_char(*c)) {
        let what = if matches!(c, '\r' | '\n') {
            "a line break (CR or LF), which could inject headers".to_owned()
        } else {
            format!("the control or invisible character U+{:04X}", c as u32)
        };
        return Err(Error::invalid_message(
            field,
            format!("`{}` contains {what}; nothing was sent", shown(value)),
        ));
    }
    let mailbox: Mailbox = value.parse().map_err(|e| {
        Error::invalid_message(
            field,
            format!("`{}` is not a valid address ({e})", shown(value)),
        )
    })?;
    let email = ascii_domain(field, &mailbox.email)?;
    Ok(Mailbox::new(mailbox.name, email))
}

/// The address with its domain as an A-label (`xn--...`), which every server
/// and header accepts; the local part is kept (non-ASCII needs SMTPUTF8).
pub fn ascii_domain(field: &str, address: &Address) -> Result<Address> {
    if address.domain().is_ascii() {
        return Ok(address.clone());
    }
    let domain = idna::domain_to_ascii(address.domain()).map_err(|_| {
        Error::invalid_message(
            field,
            format!(
                "`{}` has a domain that is not a valid international domain name",
                shown(address.as_ref())
            ),
        )
    })?;
    Address::new(address.user(), domain).map_err(|e| {
        Error::invalid_message(
            field,
            format!("`{}` is not a valid address ({e})", shown(address.as_ref())),
        )
    })
}

/// Splits an address list at commas outside quoted names, so that
/// `"Doe, John" <j@example.com>, a@example.com` is two addresses.
pub fn split_addresses(list: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in list.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&list[start..]);
    parts
}

/// The key under which two recipients are the same: the local part as
/// written, the domain case-insensitively (RFC 5321 §2.4).
pub(crate) fn recipient_key(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => format!("{local}@{}", domain.to_lowercase()),
        None => address.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_characters_are_refused_by_name() {
        for bad in [
            "a\u{202e}b@example.com",
            "a\u{200b}@example.com",
            "a@exa\u{0}mple.com",
            "a\u{85}b@example.com",
            "\"x\u{1b}[2J\" <a@example.com>",
        ] {
            let err = parse_mailbox("to", bad).unwrap_err();
            assert_eq!(err.exit_code(), 65);
            let text = err.to_string();
            assert!(text.contains("invalid to"), "{text}");
            assert!(!text.chars().any(is_forbidden_char), "{text:?}");
        }
    }

    #[test]
    fn long_input_is_refused_before_parsing_and_cut_short() {
        let long = format!("{}@example.com", "a".repeat(8 * 1024 * 1024));
        let start = std::time::Instant::now();
        let err = parse_mailbox("to", &long).unwrap_err();
        assert!(start.elapsed() < std::time::Duration::from_millis(500));
        assert!(err.to_string().len() < 400, "{err}");
    }

    #[test]
    fn idn_domains_become_a_labels() {
        let m = parse_mailbox("to", "Jöhn <user@bücher.example>").unwrap();
        assert_eq!(m.email.to_string(), "user@xn--bcher-kva.example");
        assert_eq!(m.name.as_deref(), Some("Jöhn"));
        let m = parse_mailbox("to", "üser@bücher.example").unwrap();
        assert_eq!(m.email.to_string(), "üser@xn--bcher-kva.example");
    }

    #[test]
    fn recipients_compare_domains_without_case() {
        assert_eq!(
            recipient_key("Ab@Example.COM"),
            recipient_key("Ab@example.com")
        );
        assert_ne!(
            recipient_key("ab@example.com"),
            recipient_key("Ab@example.com")
        );
    }

    #[test]
    fn lists_split_outside_quotes() {
        assert_eq!(
            split_addresses(r#""a \" ,b" <x@y>, z@w"#),
            [r#""a \" ,b" <x@y>"#, " z@w"]
        );
    }
}
