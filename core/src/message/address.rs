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

/// Longest envelope address (RFC 5321 §4.5.3.1.3: a path of 256 octets
/// with its angle brackets).
pub const MAX_PATH: usize = 254;

/// An envelope address (MAIL FROM, RCPT TO) as mailgate delivers it: the
/// one grammar that the relay's MAIL and RCPT, `sendmail`, `send` and the
/// outbox share, so that what is accepted can be delivered.
///
/// RFC 5321 Mailbox: a dot-atom or quoted-string local part (UTF-8 allowed,
/// for SMTPUTF8), a domain (U-labels allowed), an IPv4 literal or an
/// `IPv6:` literal. Like Postfix, a local part longer than the 64 octets
/// RFC 5321 names is accepted (servers take them; refusing them would
/// lose mail). The error names `field` and shows the address escaped.
pub fn envelope_address(field: &str, text: &str) -> Result<Address> {
    let bad = |why: &str| {
        Error::invalid_message(
            field,
            format!("`{}` cannot be delivered: {why}", shown(text)),
        )
    };
    if text.len() > MAX_PATH {
        return Err(bad(&format!(
            "it is {} octets long, and an address may have {MAX_PATH}",
            text.len()
        )));
    }
    if text.chars().any(is_forbidden_char) {
        return Err(bad("it contains a control or invisible character"));
    }
    let Some((local, domain)) = text.rsplit_once('@') else {
        return Err(bad("it has no domain"));
    };
    if !local_part_ok(local) {
        return Err(bad(
            "its local part is neither a dot-atom nor a quoted string",
        ));
    }
    let address = match text.parse::<Address>() {
        Ok(address) => address,
        // lettre stops at 64 octets; the syntax was checked above.
        Err(lettre::address::AddressError::InvalidUser) if local.len() > 64 => {
            // The domain is still lettre's to check.
            format!("x@{domain}")
                .parse::<Address>()
                .map_err(|e| bad(&e.to_string()))?;
            Address::new_dangerous(local, domain)
        }
        Err(e) => return Err(bad(&e.to_string())),
    };
    if let Some(literal) = domain.strip_prefix('[') {
        let literal = literal.strip_suffix(']').unwrap_or(literal);
        let ok = match literal.strip_prefix("IPv6:") {
            Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => literal.parse::<std::net::Ipv4Addr>().is_ok(),
        };
        if !ok {
            return Err(bad("its address literal is neither IPv4 nor IPv6:..."));
        }
    } else {
        ascii_domain(field, &address)?;
    }
    Ok(address)
}

/// RFC 5321 Local-part: Dot-string or Quoted-string (RFC 6531: UTF-8 too).
fn local_part_ok(local: &str) -> bool {
    if let Some(inner) = local.strip_prefix('"').and_then(|l| l.strip_suffix('"'))
        && local.len() >= 2
    {
        let mut escaped = false;
        for c in inner.chars() {
            match (escaped, c) {
                (true, ' '..='~') => escaped = false,
                (true, _) => return false,
                (false, '\\') => escaped = true,
                (false, '"') => return false,
                (false, c) if c == ' ' || ('!'..='~').contains(&c) || !c.is_ascii() => {}
                _ => return false,
            }
        }
        return !escaped;
    }
    !local.is_empty()
        && local.split('.').all(|atom| {
            !atom.is_empty()
                && atom.chars().all(|c| {
                    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
                })
        })
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
    fn envelope_addresses_follow_rfc_5321() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        for ok in [
            "a@example.com",
            "\"john doe\"@example.com",
            "\"a\\\"b\"@example.org",
            "a@[192.0.2.7]",
            "a@[IPv6:2001:db8::7]",
            "first.last+tag@sub.example.com",
            "j\u{f6}rg@b\u{fc}cher.example",
            long_local.as_str(),
        ] {
            let address = envelope_address("to", ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(AsRef::<str>::as_ref(&address), ok);
        }
        let too_long = format!("{}@example.com", "a".repeat(250));
        for bad in [
            "postmaster",
            "a@",
            "@example.com",
            "a..b@example.com",
            ".a@example.com",
            "a b@example.com",
            "\"a@example.com",
            "a@[300.1.1.1]",
            "a@[IPv6:zz::1]",
            "a\u{202e}@example.com",
            "a@exa mple.com",
            too_long.as_str(),
        ] {
            let err = envelope_address("to", bad).unwrap_err();
            assert_eq!(err.exit_code(), 65, "{bad}");
            assert!(err.to_string().contains("cannot be delivered"), "{err}");
        }
    }

    #[test]
    fn lists_split_outside_quotes() {
        assert_eq!(
            split_addresses(r#""a \" ,b" <x@y>, z@w"#),
            [r#""a \" ,b" <x@y>"#, " z@w"]
        );
    }
}
