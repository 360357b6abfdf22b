//! The command line with OAuth: `token`, `check` (plain, `--json`,
//! `--connect`) and `send` against real SMTP servers (Nodemailer's
//! `smtp-server`, Python's `aiosmtpd`) and a loopback token endpoint; exit
//! codes of token endpoint failures; and no client secret, token or SASL
//! payload in any output at any log level.
//!
//! The token endpoint is a small scripted HTTP/1.1 server on 127.0.0.1 (this
//! crate has no wiremock dev-dependency); it records every request body so
//! tests can count token requests as wiremock's `.expect(n)` would.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use base64::Engine as _;
use mailgate_integration_tests::{
    ConfigDir, PeerConfig, PeerKind, SmtpPeer, TestPki, exit_code as code, output_text as text,
    run_mailgate,
};

const USER: &str = "alm-cli@example.com";
const CLIENT_ID: &str = "3c4d5e6f-cli0-4e2e-9abc-0a1b2c3d4e5f";
const SECRET: &str = "CliE2E~ClientSecret+k/V=w";
const SCOPE: &str = "https://outlook.office365.com/.default";
const TOKEN: &str = "eyJ0eXAiOiJKV1QifQ.cli-e2e-ACCESS-TOKEN-dddd";
const TOKEN_PATH: &str = "/cli-tenant/oauth2/v2.0/token";
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// A scripted token endpoint

/// One canned HTTP response.
#[derive(Clone)]
struct Canned {
    status: u16,
    content_type: &'static str,
    body: String,
    delay: Duration,
}

impl Canned {
    fn json(status: u16, body: serde_json::Value) -> Canned {
        Canned {
            status,
            content_type: "application/json; charset=utf-8",
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    fn token(token: &str) -> Canned {
        Canned::json(
            200,
            serde_json::json!({
                "token_type": "Bearer",
                "expires_in": 3599,
                "ext_expires_in": 3599,
                "access_token": token,
            }),
        )
    }

    fn error(status: u16, error: &str, description: &str) -> Canned {
        Canned::json(
            status,
            serde_json::json!({
                "error": error,
                "error_description": description,
                "error_codes": [7000215],
                "trace_id": "0f1e2d3c-cli",
            }),
        )
    }

    fn raw(status: u16, content_type: &'static str, body: &str) -> Canned {
        Canned {
            status,
            content_type,
            body: body.to_owned(),
            delay: Duration::ZERO,
        }
    }

    fn delayed(mut self, delay: Duration) -> Canned {
        self.delay = delay;
        self
    }
}

/// Answers POSTs to [`TOKEN_PATH`] on 127.0.0.1 with the canned responses in
/// turn (the last one repeats); anything else gets 404. Lives until the test
/// process ends.
struct TokenEndpoint {
    port: u16,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl TokenEndpoint {
    fn start(responses: Vec<Canned>) -> TokenEndpoint {
        assert!(!responses.is_empty());
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the token endpoint");
        let port = listener.local_addr().unwrap().port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = bodies.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let seen = seen.clone();
                let responses = responses.clone();
                thread::spawn(move || serve(stream, &seen, &responses));
            }
        });
        TokenEndpoint { port, bodies }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}{TOKEN_PATH}", self.port)
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Bodies of the token requests so far.
    fn requests(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }
}

fn serve(mut stream: TcpStream, seen: &Mutex<Vec<String>>, responses: &[Canned]) {
    let _ = stream.set_read_timeout(Some(WAIT));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let canned = if head.starts_with(&format!("POST {TOKEN_PATH} ")) {
        let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
        let mut seen = seen.lock().unwrap();
        seen.push(body);
        responses[(seen.len() - 1).min(responses.len() - 1)].clone()
    } else {
        Canned::raw(404, "text/plain", "not found")
    };
    thread::sleep(canned.delay);
    let response = format!(
        "HTTP/1.1 {} Canned\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        canned.status,
        canned.content_type,
        canned.body.len(),
        canned.body
    );
    // The client may have given up (timeout tests): ignore write errors.
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.shutdown(Shutdown::Both);
}

// ---------------------------------------------------------------------------
// Running the binary

fn mailgate(dir: &Path, args: &[&str]) -> Output {
    run_mailgate(env!("CARGO_BIN_EXE_mailgate"), dir, args)
}

fn send(dir: &Path, level: &str) -> Output {
    let mut args = Vec::new();
    if !level.is_empty() {
        args.push(level);
    }
    args.extend([
        "send",
        "--to",
        "dev@example.com",
        "--subject",
        "oauth cli",
        "--body",
        "hello",
    ]);
    mailgate(dir, &args)
}

/// application/x-www-form-urlencoded, as the token request carries it.
fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Every form a secret could leak in: the client secret (plain, form-encoded,
/// base64, inside HTTP Basic credentials) and the token (plain, base64, and
/// inside the XOAUTH2 and OAUTHBEARER initial responses). base64 without
/// padding, so padded output is caught too.
fn leak_forms(include_token: bool) -> Vec<String> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD_NO_PAD.encode(s);
    let mut forms = vec![
        SECRET.to_owned(),
        form_encode(SECRET),
        b64(SECRET),
        b64(&format!("{CLIENT_ID}:{SECRET}")),
        b64(&format!(
            "{}:{}",
            form_encode(CLIENT_ID),
            form_encode(SECRET)
        )),
    ];
    if include_token {
        forms.extend([
            TOKEN.to_owned(),
            b64(TOKEN),
            b64(&format!("user={USER}\x01auth=Bearer {TOKEN}\x01\x01")),
            b64(&format!("n,a={USER},\x01auth=Bearer {TOKEN}\x01\x01")),
        ]);
    }
    forms
}

/// Neither stdout nor stderr holds the secret, the token or a SASL payload.
fn assert_no_secret(out: &Output) {
    let (stdout, stderr) = text(out);
    for form in leak_forms(true) {
        assert!(!stdout.contains(&form), "secret in stdout:\n{stdout}");
        assert!(!stderr.contains(&form), "secret in stderr:\n{stderr}");
    }
}

/// For `mailgate token`: stdout is exactly the token and a newline; stderr
/// holds no secret or token.
fn assert_only_token_on_stdout(out: &Output) {
    let (stdout, stderr) = text(out);
    assert_eq!(stdout, format!("{TOKEN}\n"), "stderr:\n{stderr}");
    for form in leak_forms(true) {
        assert!(!stderr.contains(&form), "secret in stderr:\n{stderr}");
    }
    for form in leak_forms(false) {
        assert!(!stdout.contains(&form), "secret in stdout:\n{stdout}");
    }
}

// ---------------------------------------------------------------------------
// Configuration and peers

fn oauth_dir(
    smtp_port: u16,
    pki: &TestPki,
    endpoint: &TokenEndpoint,
    extra: &[(&str, &str)],
) -> ConfigDir {
    let port = smtp_port.to_string();
    let ca = pki.ca_cert_path().display().to_string();
    let url = endpoint.url();
    let mut is = vec![
        ("mksis.smtp.oauth.authentication", "true"),
        ("mksis.smtp.authentication", "false"),
        ("mksis.smtp.ssl.enabled", "true"),
        ("mksis.logging.email.from", USER),
        ("mksis.logging.email.server.hostname", "localhost"),
        ("mksis.logging.email.server.port", port.as_str()),
        ("mailgate.smtp.ssl.caFile", ca.as_str()),
        ("mailgate.smtp.timeoutSeconds", "10"),
        ("mailgate.oauth.timeoutSeconds", "5"),
    ];
    is.extend_from_slice(extra);
    ConfigDir::with_properties(
        &is,
        &[
            ("mksis.security.smtp.oauth.clientID", CLIENT_ID),
            ("mksis.security.smtp.oauth.clientSecret", SECRET),
            ("mksis.security.smtp.oauth.tokenEndpointURL", &url),
            ("mksis.security.smtp.oauth.scope", SCOPE),
        ],
    )
}

fn oauth_peer(kind: PeerKind, pki: &TestPki, mechanism: &str, token: &str) -> SmtpPeer {
    SmtpPeer::start(
        kind,
        PeerConfig::new()
            .starttls(pki)
            .auth(&[mechanism])
            .scope(SCOPE)
            .token(USER, token),
    )
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn token_prints_exactly_the_token_and_a_newline() {
    let pki = TestPki::new();
    let endpoint = TokenEndpoint::start(vec![Canned::token(TOKEN)]);
    let dir = oauth_dir(2525, &pki, &endpoint, &[]);
    for level in [None, Some("-v"), Some("-vv")] {
        let args: Vec<&str> = level.into_iter().chain(["token"]).collect();
        let out = mailgate(dir.path(), &args);
        assert_eq!(code(&out), 0, "{}", text(&out).1);
        assert_only_token_on_stdout(&out);
    }
    let requests = endpoint.requests();
    assert_eq!(requests.len(), 3, "one token request per run");
    // The secret went to the token endpoint, and only there.
    assert!(requests[0].contains("grant_type=client_credentials"));
    assert!(requests[0].contains(&format!("client_secret={}", form_encode(SECRET))));
    assert!(requests[0].contains(&format!("scope={}", form_encode(SCOPE))));
}

#[test]
fn check_shows_the_endpoint_host_and_scope_never_the_secret() {
    let pki = TestPki::new();
    let endpoint = TokenEndpoint::start(vec![Canned::token(TOKEN)]);
    let dir = oauth_dir(2525, &pki, &endpoint, &[]);
    let out = mailgate(dir.path(), &["check"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(code(&out), 0, "{stderr}");
    assert!(stdout.contains("strategy: oauth"), "{stdout}");
    assert!(stdout.contains("rule:     oauth-only: "), "{stdout}");
    assert!(
        stdout.contains(&format!("token endpoint: {}", endpoint.host())),
        "{stdout}"
    );
    assert!(
        !stdout.contains(TOKEN_PATH),
        "the host, not the URL: {stdout}"
    );
    assert!(stdout.contains(&format!("scope:    {SCOPE}")), "{stdout}");
    assert!(stdout.contains("XOAUTH2"), "{stdout}");
    assert!(stdout.contains(USER), "{stdout}");
    assert_no_secret(&out);
    assert!(
        endpoint.requests().is_empty(),
        "check without --connect fetches no token"
    );
}

#[test]
fn check_json_reports_the_oauth_strategy() {
    let pki = TestPki::new();
    let endpoint = TokenEndpoint::start(vec![Canned::token(TOKEN)]);
    let dir = oauth_dir(2525, &pki, &endpoint, &[]);
    let out = mailgate(dir.path(), &["check", "--json"]);
    assert_eq!(code(&out), 0, "{}", text(&out).1);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["strategy"], "oauth");
    assert_eq!(v["rule"], "oauth-only");
    assert_eq!(v["tls"], "starttls");
    assert_eq!(v["details"]["token endpoint"], endpoint.host().as_str());
    assert_eq!(v["details"]["scope"], SCOPE);
    assert_eq!(v["details"]["mechanism"], "XOAUTH2");
    assert_eq!(v["details"]["user"], USER);
    assert_no_secret(&out);
    assert!(endpoint.requests().is_empty());
}

#[test]
fn check_connect_authenticates_with_a_token_without_sending() {
    let pki = TestPki::new();
    let peer = oauth_peer(PeerKind::Node, &pki, "XOAUTH2", TOKEN);
    let endpoint = TokenEndpoint::start(vec![Canned::token(TOKEN)]);
    let dir = oauth_dir(peer.port(), &pki, &endpoint, &[]);
    let out = mailgate(dir.path(), &["-vv", "check", "--connect"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(code(&out), 0, "{stderr}");
    assert_no_secret(&out);
    assert!(stdout.contains("connect:  ok"), "{stdout}");
    assert!(stdout.contains("encrypted"), "{stdout}");
    assert!(stdout.contains("authenticated with oauth"), "{stdout}");
    assert!(stderr.contains("AUTH XOAUTH2 <redacted>"), "{stderr}");
    let attempts = peer.wait_for_auth_attempts(1, WAIT);
    assert_eq!(attempts.len(), 1);
    assert!(attempts[0].ok);
    assert_eq!(attempts[0].method, "XOAUTH2");
    assert_eq!(attempts[0].user.as_deref(), Some(USER));
    peer.wait_for_closed_connections(1, WAIT);
    assert!(peer.messages().is_empty(), "check --connect sends nothing");
    assert_eq!(endpoint.requests().len(), 1);
}

#[test]
fn send_at_v_and_vv_logs_no_secret_or_token() {
    let pki = TestPki::new();
    let peer = oauth_peer(PeerKind::Node, &pki, "XOAUTH2", TOKEN);
    let endpoint = TokenEndpoint::start(vec![Canned::token(TOKEN)]);
    let dir = oauth_dir(peer.port(), &pki, &endpoint, &[]);
    for level in ["-v", "-vv"] {
        let out = send(dir.path(), level);
        let (stdout, stderr) = text(&out);
        assert_eq!(code(&out), 0, "{stderr}");
        assert_no_secret(&out);
        assert!(stdout.starts_with("sent: "), "{stdout}");
        assert!(
            stderr.contains("AUTH XOAUTH2 <redacted>"),
            "the conversation is logged:\n{stderr}"
        );
        assert!(
            stderr.contains("MAIL FROM:<alm-cli@example.com>"),
            "{stderr}"
        );
    }
    let msgs = peer.wait_for_messages(2, WAIT);
    assert!(msgs.iter().all(|m| m.secure
        && m.user.as_deref() == Some(USER)
        && m.method.as_deref() == Some("XOAUTH2")));
    assert_eq!(endpoint.requests().len(), 2, "one token per process");
}

#[test]
fn refused_token_exits_77_without_secret_or_token() {
    let pki = TestPki::new();
    let peer = oauth_peer(PeerKind::Node, &pki, "XOAUTH2", "a-token-nobody-issued");
    let endpoint = TokenEndpoint::start(vec![Canned::token(TOKEN)]);
    let dir = oauth_dir(peer.port(), &pki, &endpoint, &[]);
    for level in ["-v", "-vv"] {
        let out = send(dir.path(), level);
        let (stdout, stderr) = text(&out);
        assert_eq!(code(&out), 77, "{stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert!(stderr.contains("refused oauth authentication"), "{stderr}");
        assert!(stderr.contains("535"), "{stderr}");
        assert!(
            stderr.contains("retrying once on a new connection"),
            "{stderr}"
        );
        assert_no_secret(&out);
    }
    assert_eq!(peer.wait_for_auth_attempts(4, WAIT).len(), 4);
    assert!(peer.messages().is_empty());
    assert_eq!(
        endpoint.requests().len(),
        4,
        "two tokens per run: the first and the retry's"
    );
}

#[test]
fn oauthbearer_with_aiosmtpd_logs_no_payload() {
    let pki = TestPki::new();
    let endpoint = TokenEndpoint::start(vec![Canned::token(TOKEN)]);
    let extra = [("mailgate.oauth.mechanism", "oauthbearer")];

    let peer = oauth_peer(PeerKind::Python, &pki, "OAUTHBEARER", TOKEN);
    let dir = oauth_dir(peer.port(), &pki, &endpoint, &extra);
    let out = send(dir.path(), "-vv");
    let (_, stderr) = text(&out);
    assert_eq!(code(&out), 0, "{stderr}");
    assert_no_secret(&out);
    assert!(stderr.contains("AUTH OAUTHBEARER <redacted>"), "{stderr}");
    let msgs = peer.wait_for_messages(1, WAIT);
    assert_eq!(msgs[0].method.as_deref(), Some("OAUTHBEARER"));

    let refusing = oauth_peer(
        PeerKind::Python,
        &pki,
        "OAUTHBEARER",
        "a-token-nobody-issued",
    );
    let dir = oauth_dir(refusing.port(), &pki, &endpoint, &extra);
    for level in ["-v", "-vv"] {
        let out = send(dir.path(), level);
        let (_, stderr) = text(&out);
        assert_eq!(code(&out), 77, "{stderr}");
        assert!(stderr.contains("status invalid_token"), "{stderr}");
        assert_no_secret(&out);
    }
    assert!(refusing.messages().is_empty());
}

#[test]
fn invalid_client_exits_77_and_masks_an_echoed_secret() {
    let pki = TestPki::new();
    let peer = oauth_peer(PeerKind::Node, &pki, "XOAUTH2", TOKEN);
    // An endpoint that echoes the secret it was sent: mailgate must mask it.
    let endpoint = TokenEndpoint::start(vec![Canned::error(
        401,
        "invalid_client",
        &format!("AADSTS7000215: Invalid client secret provided: '{SECRET}'."),
    )]);
    let dir = oauth_dir(peer.port(), &pki, &endpoint, &[]);
    let mut runs = Vec::new();
    for level in ["-v", "-vv"] {
        runs.push(send(dir.path(), level));
        runs.push(mailgate(dir.path(), &[level, "token"]));
    }
    for out in &runs {
        let (stdout, stderr) = text(out);
        assert_eq!(code(out), 77, "{stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert!(stderr.contains("invalid_client"), "{stderr}");
        assert!(
            stderr.contains("AADSTS7000215: Invalid client secret provided"),
            "{stderr}"
        );
        assert!(stderr.contains("<redacted>"), "{stderr}");
        assert!(
            stderr.contains("mksis.security.smtp.oauth.clientSecret"),
            "{stderr}"
        );
        assert_no_secret(out);
    }
    assert_eq!(endpoint.requests().len(), 4);
    thread::sleep(Duration::from_millis(200));
    assert!(peer.auth_attempts().is_empty());
    assert!(peer.messages().is_empty());
}

/// A token endpoint failure: what the endpoint answers, extra `is.properties`
/// keys, the exit code and what stderr must say.
struct FailureCase {
    name: &'static str,
    canned: Canned,
    extra: &'static [(&'static str, &'static str)],
    exit: i32,
    needles: &'static [&'static str],
}

#[test]
fn token_endpoint_failures_exit_with_their_codes() {
    let html = "<!DOCTYPE html><html><head><title>Sign in to continue</title></head>\
                <body><p>Proxy authentication required</p></body></html>";
    let cases = [
        FailureCase {
            name: "500",
            canned: Canned::raw(500, "text/plain", "upstream token service exploded"),
            extra: &[],
            exit: 75,
            needles: &["HTTP 500", "upstream token service exploded"],
        },
        FailureCase {
            name: "timeout",
            canned: Canned::token(TOKEN).delayed(Duration::from_secs(3)),
            extra: &[("mailgate.oauth.timeoutSeconds", "1")],
            exit: 75,
            needles: &["did not answer within 1s", "mailgate.oauth.timeoutSeconds"],
        },
        FailureCase {
            name: "html",
            canned: Canned::raw(200, "text/html; charset=utf-8", html),
            extra: &[],
            exit: 78,
            needles: &[
                "HTTP 200",
                "text/html",
                "Sign in to continue Proxy authentication required",
            ],
        },
        FailureCase {
            name: "invalid_scope",
            canned: Canned::error(
                400,
                "invalid_scope",
                "AADSTS70011: The provided value for the input parameter 'scope' is not valid.",
            ),
            extra: &[],
            exit: 78,
            needles: &[
                "invalid_scope",
                "AADSTS70011",
                "mksis.security.smtp.oauth.scope",
            ],
        },
    ];
    let pki = TestPki::new();
    let peer = oauth_peer(PeerKind::Node, &pki, "XOAUTH2", TOKEN);
    for FailureCase {
        name,
        canned,
        extra,
        exit,
        needles,
    } in cases
    {
        let endpoint = TokenEndpoint::start(vec![canned]);
        let dir = oauth_dir(peer.port(), &pki, &endpoint, extra);
        for out in [send(dir.path(), "-v"), mailgate(dir.path(), &["token"])] {
            let (stdout, stderr) = text(&out);
            assert_eq!(code(&out), exit, "{name}: {stderr}");
            assert!(stdout.is_empty(), "{name}: {stdout}");
            for needle in needles {
                assert!(stderr.contains(needle), "{name}: no `{needle}` in {stderr}");
            }
            assert_no_secret(&out);
        }
        assert_eq!(endpoint.requests().len(), 2, "{name}: one request per run");
    }
    thread::sleep(Duration::from_millis(200));
    assert!(
        peer.auth_attempts().is_empty(),
        "no AUTH without a token: {:?}",
        peer.auth_attempts()
    );
    assert!(peer.messages().is_empty());
}

/// A server that echoes the XOAUTH2 initial response, the token and the
/// client secret in its refusal (and in a 334 challenge): none of it reaches
/// stderr, at any verbosity.
#[test]
fn echoed_xoauth2_payload_token_and_secret_are_masked() {
    use mailgate_devserver::{DevSmtpServer, Fault, Mechanism, Stage};

    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let payload = b64(&format!("user={USER}\x01auth=Bearer {TOKEN}\x01\x01"));
    // RFC 3986 percent-encoding leaves `~` literal.
    let secret_rfc3986 = form_encode(SECRET).replace("%7E", "~");
    let echoes = [
        (535, format!("5.7.8 rejected {payload} for {TOKEN}")),
        (
            535,
            format!(
                "5.7.8 secret was {SECRET} / {secret_rfc3986} / {}",
                b64(SECRET)
            ),
        ),
        (
            334,
            b64(&format!("{{\"status\":\"401\",\"echo\":\"{TOKEN}\"}}")),
        ),
    ];
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let endpoint = TokenEndpoint::start(vec![Canned::token(TOKEN)]);
    for (reply_code, echo) in echoes {
        let server = runtime.block_on(async {
            DevSmtpServer::builder()
                .starttls_required()
                .mechanisms([Mechanism::XOAuth2])
                .accept_token(TOKEN)
                .fault(Fault::reply(Stage::Auth, reply_code, echo.clone()))
                .start()
                .await
                .expect("dev server starts")
        });
        let dir = ConfigDir::new();
        server
            .ca()
            .write_ca_pem(dir.path().join("ca.pem"))
            .expect("CA written");
        let port = server.port().to_string();
        dir.write_is(&[
            ("mksis.smtp.oauth.authentication", "true"),
            ("mksis.smtp.authentication", "false"),
            ("mksis.smtp.ssl.enabled", "true"),
            ("mksis.logging.email.from", USER),
            ("mksis.logging.email.server.hostname", "localhost"),
            ("mksis.logging.email.server.port", &port),
            ("mailgate.smtp.ssl.caFile", "ca.pem"),
            ("mailgate.smtp.timeoutSeconds", "10"),
        ]);
        dir.write_security(&[
            ("mksis.security.smtp.oauth.clientID", CLIENT_ID),
            ("mksis.security.smtp.oauth.clientSecret", SECRET),
            (
                "mksis.security.smtp.oauth.tokenEndpointURL",
                &endpoint.url(),
            ),
            ("mksis.security.smtp.oauth.scope", SCOPE),
        ]);
        for level in ["-q", "", "-v", "-vv"] {
            let out = send(dir.path(), level);
            let (_, stderr) = text(&out);
            assert_ne!(code(&out), 0, "{stderr}");
            assert_no_secret(&out);
            assert!(!stderr.contains(&secret_rfc3986), "{stderr}");
            if reply_code == 535 {
                assert!(
                    stderr.contains("<redacted>"),
                    "{reply_code} {level}: {stderr}"
                );
            }
        }
        assert!(server.messages().is_empty());
    }
}
