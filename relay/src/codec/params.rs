//! The parameters of MAIL and RCPT (RFC 5321 4.1.2, RFC 1870 SIZE, 6152
//! BODY, 6531 SMTPUTF8, 4954 AUTH=, 3461 DSN): only those of the
//! extensions offered, each at most once, strictly.

use super::command::syntax;
use super::reply::Answer;

/// What the EHLO reply offered, as far as MAIL and RCPT parameters go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offered {
    /// The session greeted with EHLO (after HELO no parameter exists).
    pub extended: bool,
    /// `SIZE` was offered.
    pub size: bool,
    /// `8BITMIME` was offered (`BODY=`).
    pub eight_bit_mime: bool,
    /// `SMTPUTF8` was offered.
    pub smtputf8: bool,
    /// `DSN` was offered (`RET=`, `ENVID=`, `NOTIFY=`, `ORCPT=`).
    pub dsn: bool,
    /// `AUTH` was offered (`AUTH=`, accepted and ignored).
    pub auth: bool,
}

/// The `BODY=` value of MAIL (RFC 6152).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// `BODY=7BIT`.
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
}

/// The parameters of a MAIL command.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MailParams {
    /// `SIZE=`, saturated at `u64::MAX`.
    pub size: Option<u64>,
    /// `BODY=`.
    pub body: Option<Body>,
    /// `SMTPUTF8` was given.
    pub smtputf8: bool,
    /// `AUTH=` was given (RFC 4954 section 5); its value is ignored.
    pub auth: bool,
    /// `RET=FULL` (true) or `RET=HDRS` (RFC 3461 §4.3).
    pub ret_full: Option<bool>,
    /// `ENVID=`, decoded from xtext (RFC 3461 §4.4).
    pub envid: Option<String>,
}

/// The DSN parameters of one RCPT (RFC 3461 §4.1, §4.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RcptParams {
    /// `NOTIFY=`: `None` when not given; `Some(vec![])` for NEVER; else
    /// some of `SUCCESS`, `FAILURE`, `DELAY`.
    pub notify: Option<Vec<String>>,
    /// `ORCPT=addr-type;address`, the address decoded from xtext.
    pub orcpt: Option<String>,
}

/// Longest ENVID (RFC 3461 §4.4: 100 characters) and ORCPT we keep.
const MAX_ENVID: usize = 100;
const MAX_ORCPT: usize = 500;

/// Decodes xtext (RFC 3461 §4): `+XX` is a byte in upper-case hex; `+`
/// and `=` are otherwise not allowed. The result must be printable ASCII.
fn xtext(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'+' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex
                .iter()
                .all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(h))
            {
                return None;
            }
            let decoded = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            if !(32..=126).contains(&decoded) {
                return None;
            }
            out.push(char::from(decoded));
            i += 3;
        } else if (33..=126).contains(&b) && b != b'=' {
            out.push(char::from(b));
            i += 1;
        } else {
            return None;
        }
    }
    Some(out)
}

/// Splits parameters into `(KEYWORD, value)`; checks the syntax of
/// RFC 5321 4.1.2 (esmtp-keyword, esmtp-value).
fn split_params(params: &str) -> Result<Vec<(String, Option<&str>)>, Answer> {
    let mut out = Vec::new();
    for param in params.split(' ').filter(|p| !p.is_empty()) {
        let (key, value) = match param.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (param, None),
        };
        let key_ok = !key.is_empty()
            && key.len() <= 64
            && key.as_bytes()[0].is_ascii_alphanumeric()
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !key_ok {
            return Err(syntax(501, "5.5.4 Bad parameter syntax"));
        }
        let key = key.to_ascii_uppercase();
        if let Some(v) = value
            && (v.is_empty() || !v.bytes().all(|b| (33..=126).contains(&b) && b != b'='))
        {
            return Err(syntax(501, format!("5.5.4 Bad {key} value")));
        }
        if out.iter().any(|(k, _)| *k == key) {
            return Err(syntax(501, format!("5.5.4 Duplicate {key} parameter")));
        }
        out.push((key, value));
    }
    Ok(out)
}

/// Parses the parameters of MAIL: those of the extensions `offered`,
/// none after HELO.
pub(crate) fn mail_params(params: &str, offered: &Offered) -> Result<MailParams, Answer> {
    let mut out = MailParams::default();
    for (key, value) in split_params(params)? {
        if !offered.extended {
            return Err(Answer::ParamAfterHelo(key));
        }
        let known = match key.as_str() {
            "SIZE" => offered.size,
            "BODY" => offered.eight_bit_mime,
            "SMTPUTF8" => offered.smtputf8,
            "RET" | "ENVID" => offered.dsn,
            "AUTH" => offered.auth,
            _ => false,
        };
        if !known {
            return Err(Answer::UnsupportedParam(key));
        }
        match (key.as_str(), value) {
            ("SIZE", Some(v)) => {
                if !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(syntax(501, "5.5.4 Bad SIZE value"));
                }
                // Saturating: a number too large for u64 is just too large.
                let size = v.bytes().fold(0u64, |acc, b| {
                    acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
                });
                out.size = Some(size);
            }
            ("BODY", Some(v)) => {
                out.body = Some(if v.eq_ignore_ascii_case("7BIT") {
                    Body::SevenBit
                } else if v.eq_ignore_ascii_case("8BITMIME") {
                    Body::EightBitMime
                } else {
                    return Err(Answer::UnsupportedBody);
                });
            }
            ("SMTPUTF8", None) => out.smtputf8 = true,
            ("RET", Some(v)) if v.eq_ignore_ascii_case("FULL") => out.ret_full = Some(true),
            ("RET", Some(v)) if v.eq_ignore_ascii_case("HDRS") => out.ret_full = Some(false),
            ("ENVID", Some(v)) => {
                match xtext(v).filter(|e| !e.is_empty() && e.len() <= MAX_ENVID) {
                    Some(envid) => out.envid = Some(envid),
                    None => return Err(syntax(501, "5.5.4 Bad ENVID value")),
                }
            }
            ("AUTH", Some(_)) => out.auth = true,
            _ => return Err(syntax(501, format!("5.5.4 Bad {key} parameter"))),
        }
    }
    Ok(out)
}

/// Parses the parameters of RCPT: the DSN ones when DSN was offered.
pub(crate) fn rcpt_params(params: &str, offered: &Offered) -> Result<RcptParams, Answer> {
    let mut out = RcptParams::default();
    for (key, value) in split_params(params)? {
        if !(offered.dsn && matches!(key.as_str(), "NOTIFY" | "ORCPT")) {
            return Err(Answer::UnsupportedParam(key));
        }
        match (key.as_str(), value) {
            ("NOTIFY", Some(v)) => {
                let words: Vec<String> = v.split(',').map(str::to_ascii_uppercase).collect();
                let never = words.len() == 1 && words[0] == "NEVER";
                let known = words
                    .iter()
                    .all(|w| matches!(w.as_str(), "SUCCESS" | "FAILURE" | "DELAY"));
                let mut unique = words.clone();
                unique.sort();
                unique.dedup();
                if !never && (!known || unique.len() != words.len()) {
                    return Err(syntax(501, "5.5.4 Bad NOTIFY value"));
                }
                out.notify = Some(if never { Vec::new() } else { words });
            }
            ("ORCPT", Some(v)) => {
                let decoded = v.split_once(';').and_then(|(kind, address)| {
                    let kind_ok =
                        kind.eq_ignore_ascii_case("rfc822") || kind.eq_ignore_ascii_case("utf-8");
                    kind_ok.then(|| xtext(address)).flatten()
                });
                match decoded.filter(|a| !a.is_empty() && a.len() <= MAX_ORCPT) {
                    Some(address) => out.orcpt = Some(address),
                    None => return Err(syntax(501, "5.5.4 Bad ORCPT value")),
                }
            }
            _ => return Err(syntax(501, format!("5.5.4 Bad {key} parameter"))),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the relay offers: everything, AUTH when users are set.
    fn mail_params(params: &str, extended: bool, auth: bool) -> Result<MailParams, Answer> {
        let offered = Offered {
            extended,
            size: true,
            eight_bit_mime: true,
            smtputf8: true,
            dsn: true,
            auth,
        };
        super::mail_params(params, &offered)
    }

    fn rcpt_params(params: &str) -> Result<RcptParams, Answer> {
        let offered = Offered {
            extended: true,
            size: true,
            eight_bit_mime: true,
            smtputf8: true,
            dsn: true,
            auth: false,
        };
        super::rcpt_params(params, &offered)
    }

    #[test]
    fn dsn_parameters_rfc_3461() {
        let m = mail_params("RET=HDRS ENVID=QQ314159+2Bx", true, false).unwrap();
        assert_eq!(m.ret_full, Some(false));
        assert_eq!(m.envid.as_deref(), Some("QQ314159+x"));
        assert!(mail_params("RET=ALL", true, false).is_err());
        assert!(
            mail_params("ENVID=a+0D+0Ab", true, false).is_err(),
            "no CR LF"
        );
        assert!(mail_params(&format!("ENVID={}", "x".repeat(101)), true, false).is_err());
        let r = rcpt_params("NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bb@example.com").unwrap();
        assert_eq!(
            r.notify,
            Some(vec!["SUCCESS".to_owned(), "FAILURE".to_owned()])
        );
        assert_eq!(r.orcpt.as_deref(), Some("a+b@example.com"));
        assert_eq!(rcpt_params("NOTIFY=never").unwrap().notify, Some(vec![]));
        for bad in [
            "NOTIFY=NEVER,SUCCESS",
            "NOTIFY=SOMETIMES",
            "NOTIFY=DELAY,DELAY",
            "ORCPT=x400;abc",
            "ORCPT=rfc822;",
            "ORCPT=rfc822;a+zz",
            "NOTIFY",
        ] {
            assert!(rcpt_params(bad).is_err(), "{bad}");
        }
        assert_eq!(rcpt_params("").unwrap(), RcptParams::default());
    }

    #[test]
    fn parameters() {
        let p = mail_params("SIZE=100 BODY=8bitmime SMTPUTF8", true, false).unwrap();
        assert_eq!(p.size, Some(100));
        assert_eq!(p.body, Some(Body::EightBitMime));
        assert!(p.smtputf8);
        assert_eq!(
            mail_params("SIZE=99999999999999999999999999", true, false)
                .unwrap()
                .size,
            Some(u64::MAX)
        );
        assert_eq!(
            mail_params("SIZE=1 SIZE=2", true, false)
                .unwrap_err()
                .code(),
            501
        );
        assert_eq!(mail_params("SIZE=x", true, false).unwrap_err().code(), 501);
        assert_eq!(mail_params("SIZE", true, false).unwrap_err().code(), 501);
        assert_eq!(mail_params("FOO=bar", true, false).unwrap_err().code(), 555);
        assert_eq!(mail_params("RET=ALL", true, false).unwrap_err().code(), 501);
        assert_eq!(
            mail_params("MT-PRIORITY=0", true, false)
                .unwrap_err()
                .code(),
            555
        );
        assert_eq!(
            mail_params("BODY=BINARYMIME", true, false)
                .unwrap_err()
                .code(),
            555
        );
        assert_eq!(mail_params("AUTH=<>", true, false).unwrap_err().code(), 555);
        assert!(mail_params("AUTH=<>", true, true).unwrap().auth);
        assert_eq!(mail_params("SIZE=1", false, false).unwrap_err().code(), 555);
        assert_eq!(
            mail_params("SMTPUTF8=yes", true, false).unwrap_err().code(),
            501
        );
        assert_eq!(mail_params("=x", true, false).unwrap_err().code(), 501);
        assert!(rcpt_params("").is_ok());
        assert_eq!(rcpt_params("FOO=1").unwrap_err().code(), 555);
    }

    #[test]
    fn only_what_was_offered() {
        let plain = Offered {
            extended: true,
            size: true,
            eight_bit_mime: true,
            smtputf8: false,
            dsn: false,
            auth: false,
        };
        for param in ["SMTPUTF8", "RET=HDRS", "ENVID=x", "AUTH=<>"] {
            assert_eq!(
                super::mail_params(param, &plain),
                Err(Answer::UnsupportedParam(
                    param.split('=').next().unwrap().to_owned()
                )),
            );
        }
        assert_eq!(
            super::rcpt_params("NOTIFY=NEVER", &plain),
            Err(Answer::UnsupportedParam("NOTIFY".into()))
        );
        assert!(super::mail_params("body=7bit size=5", &plain).is_ok());
    }
}
