//! The token endpoint URL: which URLs are accepted, and how one is shown.

use url::Url;

use crate::redaction::{EXCERPT_LEN, collapse, truncate};

/// Why an endpoint URL is unacceptable, or the parsed URL.
pub(crate) fn check_endpoint(endpoint: &str) -> Result<Url, &'static str> {
    const EXPECTED: &str = "an https:// URL of the token endpoint (http:// only on loopback: 127.0.0.0/8, ::1, localhost)";
    let url = Url::parse(endpoint.trim()).map_err(|_| EXPECTED)?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        _ => return Err(EXPECTED),
    }
    if url.host().is_none() {
        return Err(EXPECTED);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "an https:// URL without user:password@ (the client credentials go in clientID and clientSecret)",
        );
    }
    Ok(url)
}

/// Whether the URL's host is 127.0.0.0/8, `::1` or `localhost`.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// `host[:port]` of the URL.
pub(crate) fn host_port(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    }
}

/// `scheme://host[:port]/path`: the URL without user info, query or
/// fragment, for messages (a query may carry a signature or key).
pub(crate) fn shown_url(url: &Url) -> String {
    let host = match url.host() {
        Some(h) => h.to_string(),
        None => String::new(),
    };
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{}://{host}{port}{}", url.scheme(), url.path())
}

/// The endpoint as it may be shown anywhere (errors, `Debug`):
/// `scheme://host[:port]/path`, never `user:password@`, the query or the
/// fragment. Text that is not a URL is cut at `?`/`#` and loses everything
/// up to an `@` before the path.
pub(crate) fn redact_endpoint(endpoint: &str) -> String {
    let endpoint = endpoint.trim();
    if let Some(url) = Url::parse(endpoint).ok().filter(|u| u.host().is_some()) {
        return shown_url(&url);
    }
    let cut = endpoint.find(['?', '#']).unwrap_or(endpoint.len());
    let text = &endpoint[..cut];
    let (scheme, rest) = match text.find("://") {
        Some(at) => text.split_at(at + 3),
        None => ("", text),
    };
    let path_at = rest.find(['/', '\\']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(path_at);
    let authority = authority.rsplit('@').next().unwrap_or_default();
    truncate(
        &collapse(&format!("{scheme}{authority}{path}")),
        EXCERPT_LEN,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_rules() {
        assert!(check_endpoint("https://login.example.com/t/oauth2/v2.0/token").is_ok());
        for ok in [
            "http://127.0.0.1:8080/token",
            "http://127.1.2.3/token",
            "http://[::1]:9/token",
            "http://localhost/token",
            "http://LOCALHOST:1/token",
        ] {
            assert!(check_endpoint(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://login.example.com/token",
            "http://10.0.0.1/token",
            "ftp://localhost/x",
            "login.example.com/token",
            "",
            "https://user:pw@login.example.com/token",
        ] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoints_are_shown_without_user_info_or_query() {
        for (raw, shown) in [
            (
                "https://user:pa55word@login.example.com/t/token?sig=QSECRET#frag",
                "https://login.example.com/t/token",
            ),
            (
                "https://login.example.com:8443/token?code=QSECRET",
                "https://login.example.com:8443/token",
            ),
            ("http://[::1]:9/token", "http://[::1]:9/token"),
            ("https://login.example.com", "https://login.example.com/"),
            (
                "https://user:pa55word@login.example.com:99999/token?x=QSECRET",
                "https://login.example.com:99999/token",
            ),
            (
                "user:pa55word@login.example.com/token?QSECRET",
                "login.example.com/token",
            ),
            ("login.example.com/token", "login.example.com/token"),
            ("ftp://u:pa55word@h/x", "ftp://h/x"),
        ] {
            let got = redact_endpoint(raw);
            assert_eq!(got, shown, "{raw}");
            assert!(!got.contains("pa55word") && !got.contains("QSECRET"));
        }
        let url = Url::parse("https://u:pa55word@h.example.com/p?q=QSECRET").unwrap();
        assert_eq!(shown_url(&url), "https://h.example.com/p");
    }
}
