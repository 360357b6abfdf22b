//! What the server's EHLO reply offers (RFC 5321 §4.1.1.1).

use std::collections::BTreeMap;

use super::reply::Reply;

/// The extensions of an EHLO reply, keyword upper-cased.
///
/// Lenient where servers differ and harmless: `AUTH x` and the old `AUTH=x`
/// form, keywords repeated over several lines (their parameters merge), blank
/// and whitespace-only lines (skipped), unknown keywords (kept). A HELO
/// session has none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    domain: String,
    extensions: BTreeMap<String, Vec<String>>,
}

impl Capabilities {
    /// Reads a 250 reply to EHLO.
    pub fn from_ehlo(reply: &Reply) -> Self {
        let mut lines = reply.lines.iter();
        let domain = lines
            .next()
            .and_then(|first| first.split_whitespace().next())
            .unwrap_or_default()
            .to_owned();
        let mut extensions: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in lines {
            let mut words = line.split_whitespace();
            let Some(first) = words.next() else { continue };
            let (keyword, inline) = match first.split_once('=') {
                Some((k, v)) if k.eq_ignore_ascii_case("AUTH") => (k, Some(v)),
                _ => (first, None),
            };
            let params = extensions.entry(keyword.to_ascii_uppercase()).or_default();
            for p in inline.into_iter().chain(words).filter(|p| !p.is_empty()) {
                if !params.iter().any(|q| q.eq_ignore_ascii_case(p)) {
                    params.push(p.to_owned());
                }
            }
        }
        Self { domain, extensions }
    }

    /// The name the server gave in its EHLO reply.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Whether `keyword` (e.g. `PIPELINING`) was offered, in any case.
    pub fn supports(&self, keyword: &str) -> bool {
        self.extensions.contains_key(&keyword.to_ascii_uppercase())
    }

    /// The parameters that came with `keyword`.
    pub fn params(&self, keyword: &str) -> &[String] {
        self.extensions
            .get(&keyword.to_ascii_uppercase())
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Whether the AUTH line lists `mechanism` (`PLAIN`, `XOAUTH2`, ...).
    pub fn offers_auth(&self, mechanism: &str) -> bool {
        self.params("AUTH")
            .iter()
            .any(|m| m.eq_ignore_ascii_case(mechanism))
    }

    /// The offered SASL mechanisms, as the server spelled them.
    pub fn auth_mechanisms(&self) -> &[String] {
        self.params("AUTH")
    }

    /// RFC 2920 command pipelining.
    pub fn pipelining(&self) -> bool {
        self.supports("PIPELINING")
    }

    /// RFC 3207 STARTTLS.
    pub fn starttls(&self) -> bool {
        self.supports("STARTTLS")
    }

    /// RFC 6152 8BITMIME.
    pub fn eight_bit_mime(&self) -> bool {
        self.supports("8BITMIME")
    }

    /// RFC 6531 SMTPUTF8.
    pub fn smtputf8(&self) -> bool {
        self.supports("SMTPUTF8")
    }

    /// The RFC 1870 SIZE limit in bytes, when the server states one (`SIZE`
    /// without a number, `SIZE 0` or a number too large to mean anything
    /// state none).
    pub fn size_limit(&self) -> Option<u64> {
        self.params("SIZE")
            .first()?
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
    }

    /// Every keyword, upper-cased, in order.
    pub fn keywords(&self) -> impl Iterator<Item = &str> {
        self.extensions.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(lines: &[&str]) -> Capabilities {
        Capabilities::from_ehlo(&Reply {
            code: 250,
            lines: lines.iter().map(|s| (*s).to_owned()).collect(),
        })
    }

    #[test]
    fn usual_reply() {
        let c = caps(&[
            "mx.example greets you",
            "PIPELINING",
            "SIZE 35882577",
            "8BITMIME",
            "AUTH PLAIN LOGIN XOAUTH2",
            "STARTTLS",
            "SMTPUTF8",
        ]);
        assert_eq!(c.domain(), "mx.example");
        assert!(c.pipelining() && c.starttls() && c.eight_bit_mime() && c.smtputf8());
        assert_eq!(c.size_limit(), Some(35_882_577));
        assert!(c.offers_auth("xoauth2") && !c.offers_auth("OAUTHBEARER"));
    }

    #[test]
    fn odd_but_harmless_lines() {
        let c = caps(&[
            "",
            " ",
            "\t",
            "auth=LOGIN",
            "AUTH PLAIN",
            "AUTH PLAIN OAUTHBEARER",
            "X-UNKNOWN-THING a b",
            "pipelining",
            "SIZE",
        ]);
        assert_eq!(c.domain(), "");
        assert_eq!(c.auth_mechanisms(), ["LOGIN", "PLAIN", "OAUTHBEARER"]);
        assert!(c.supports("x-unknown-thing") && c.pipelining());
        assert_eq!(c.size_limit(), None);
        assert_eq!(
            caps(&["mx", "SIZE 99999999999999999999999"]).size_limit(),
            None
        );
        assert_eq!(caps(&["mx", "SIZE 0"]).size_limit(), None);
    }

    #[test]
    fn code_only_reply_has_nothing() {
        let c = caps(&[""]);
        assert_eq!(c.domain(), "");
        assert_eq!(c.keywords().count(), 0);
    }
}
