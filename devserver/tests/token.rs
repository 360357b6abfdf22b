//! The dev token endpoint driven with reqwest and raw HTTP.

use std::time::{Duration, Instant};

use mailgate_devserver::{ClientAuthMethod, DevTokenEndpoint, TokenFault};
use reqwest::{Client, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SCOPE: &str = "https://outlook.office365.com/.default";

fn http() -> Client {
    Client::builder().no_proxy().build().unwrap()
}

async fn endpoint() -> DevTokenEndpoint {
    DevTokenEndpoint::builder()
        .client("cid", "csecret")
        .expires_in(Duration::from_secs(1234))
        .start()
        .await
        .unwrap()
}

async fn post(
    e: &DevTokenEndpoint,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (StatusCode, String, Value) {
    let mut request = http().post(e.url()).form(form);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, content_type, json)
}

fn post_form(secret: &str) -> Vec<(&str, &str)> {
    vec![
        ("grant_type", "client_credentials"),
        ("client_id", "cid"),
        ("client_secret", secret),
        ("scope", SCOPE),
    ]
}

#[tokio::test]
async fn client_secret_post_issues_unique_tokens() {
    let e = endpoint().await;
    assert!(e.url().starts_with("http://127.0.0.1:"));
    assert!(e.url().ends_with("/token"));
    let (status, content_type, a) = post(&e, &post_form("csecret"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/json");
    assert_eq!(a["token_type"], "Bearer");
    assert_eq!(a["expires_in"], 1234);
    assert_eq!(a["scope"], SCOPE);
    let (_, _, b) = post(&e, &post_form("csecret"), None).await;
    let (a, b) = (
        a["access_token"].as_str().unwrap(),
        b["access_token"].as_str().unwrap(),
    );
    assert_ne!(a, b);
    assert!(a.len() > 30);
    assert_eq!(e.issued_tokens(), [a, b]);
    assert!(e.registry().is_valid(a));
    assert_eq!(e.request_count(), 2);
    assert_eq!(e.issued_count(), 2);
    let requests = e.requests();
    assert_eq!(requests[0].client_auth, Some(ClientAuthMethod::Post));
    assert_eq!(requests[0].client_id.as_deref(), Some("cid"));
    assert_eq!(requests[0].scope.as_deref(), Some(SCOPE));
    assert_eq!(requests[0].status, 200);
}

#[tokio::test]
async fn client_secret_basic() {
    let e = endpoint().await;
    let form = [("grant_type", "client_credentials"), ("scope", SCOPE)];
    let (status, _, json) = post(&e, &form, Some(("cid", "csecret"))).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(e.requests()[0].client_auth, Some(ClientAuthMethod::Basic));

    let response = http()
        .post(e.url())
        .basic_auth("cid", Some("wrong"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().contains_key("www-authenticate"));
    let json: Value = response.json().await.unwrap();
    assert_eq!(json["error"], "invalid_client");
    assert_eq!(e.issued_tokens().len(), 1);
}

/// Form, Basic credentials, expected status, expected `error`.
type Case<'a> = (
    Vec<(&'a str, &'a str)>,
    Option<(&'a str, &'a str)>,
    StatusCode,
    &'a str,
);

#[tokio::test]
async fn request_errors() {
    let e = endpoint().await;
    let cases: Vec<Case> = vec![
        (
            post_form("wrong"),
            None,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            vec![("grant_type", "client_credentials"), ("scope", SCOPE)],
            None,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", "cid"),
                ("client_secret", "csecret"),
            ],
            None,
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", "cid"),
                ("client_secret", "csecret"),
                ("scope", ""),
            ],
            None,
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        ),
        (
            vec![
                ("grant_type", "password"),
                ("client_id", "cid"),
                ("client_secret", "csecret"),
                ("scope", SCOPE),
            ],
            None,
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (
            vec![
                ("client_id", "cid"),
                ("client_secret", "csecret"),
                ("scope", SCOPE),
            ],
            None,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            post_form("csecret"),
            Some(("cid", "csecret")),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("scope", SCOPE),
                ("scope", SCOPE),
            ],
            Some(("cid", "csecret")),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (form, basic, status, error) in cases {
        let (got, _, json) = post(&e, &form, basic).await;
        assert_eq!(
            (got, json["error"].as_str()),
            (status, Some(error)),
            "{form:?}"
        );
    }
    assert!(e.issued_tokens().is_empty());

    let response = http().get(e.url()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let url = e.url().replace("/token", "/other");
    let response = http()
        .post(url)
        .form(&post_form("csecret"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = http()
        .post(e.url())
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(e.request_count(), 11);
}

#[tokio::test]
async fn allowed_scopes_and_path() {
    let e = DevTokenEndpoint::builder()
        .client("cid", "csecret")
        .path("oauth2/v2.0/token")
        .allowed_scopes([SCOPE])
        .start()
        .await
        .unwrap();
    assert!(e.url().ends_with("/oauth2/v2.0/token"));
    let (status, _, _) = post(&e, &post_form("csecret"), None).await;
    assert_eq!(status, StatusCode::OK);
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", "cid"),
        ("client_secret", "csecret"),
        ("scope", "https://graph.microsoft.com/.default"),
    ];
    let (status, _, json) = post(&e, &form, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json["error"], "invalid_scope");
}

#[tokio::test]
async fn faults() {
    let e = endpoint().await;
    let expect = [
        (TokenFault::invalid_client(), 401, "invalid_client"),
        (TokenFault::invalid_scope(), 400, "invalid_scope"),
        (TokenFault::server_error(), 500, "server_error"),
    ];
    for (fault, status, error) in expect {
        e.add_fault(fault.times(1));
        let (got, _, json) = post(&e, &post_form("csecret"), None).await;
        assert_eq!(got.as_u16(), status);
        assert_eq!(json["error"], error);
    }
    e.add_fault(TokenFault::html().times(1));
    let response = http()
        .post(e.url())
        .form(&post_form("csecret"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(response.text().await.unwrap().contains("<html>"));

    e.add_fault(TokenFault::status(503, "text/plain", "busy").times(1));
    let response = http()
        .post(e.url())
        .form(&post_form("csecret"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.text().await.unwrap(), "busy");

    let delay = Duration::from_millis(300);
    e.add_fault(TokenFault::delay(delay).times(1));
    let start = Instant::now();
    let (status, _, _) = post(&e, &post_form("csecret"), None).await;
    assert!(start.elapsed() >= delay);
    assert_eq!(status, StatusCode::OK);

    // Every fault was used up: back to normal.
    let (status, _, _) = post(&e, &post_form("csecret"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(e.issued_count(), 2);

    e.add_fault(TokenFault::server_error());
    for _ in 0..2 {
        let (status, _, _) = post(&e, &post_form("csecret"), None).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    }
    e.clear_faults();
    let (status, _, _) = post(&e, &post_form("csecret"), None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn builder_faults_and_expiry() {
    let e = DevTokenEndpoint::builder()
        .client("cid", "csecret")
        .fault(TokenFault::invalid_client().times(1))
        .expires_in(Duration::ZERO)
        .start()
        .await
        .unwrap();
    let (status, _, _) = post(&e, &post_form("csecret"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, json) = post(&e, &post_form("csecret"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["expires_in"], 0);
    let token = json["access_token"].as_str().unwrap();
    assert!(!e.registry().is_valid(token));
    e.set_expires_in(Duration::from_secs(60));
    let (_, _, json) = post(&e, &post_form("csecret"), None).await;
    assert!(
        e.registry()
            .is_valid(json["access_token"].as_str().unwrap())
    );
}

#[tokio::test]
async fn raw_http_with_garbage_does_not_break_the_server() {
    let e = endpoint().await;
    let mut s = tokio::net::TcpStream::connect(e.addr()).await.unwrap();
    s.write_all(b"\x00\xffNOT HTTP\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 400"),
        "{text}"
    );

    // A hand-written request works: Basic with form-urlencoded credentials.
    let mut s = tokio::net::TcpStream::connect(e.addr()).await.unwrap();
    let body = format!(
        "grant_type=client_credentials&scope={}",
        "https%3A%2F%2Fx%2F.default"
    );
    let request = format!(
        "POST /token HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        common_b64("cid:csecret"),
        body.len()
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("cache-control: no-store"), "{out}");
    assert!(out.contains("\"scope\":\"https://x/.default\""), "{out}");
}

fn common_b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn shutdown_on_drop() {
    let e = endpoint().await;
    let addr = e.addr();
    drop(e);
    let mut refused = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused);
}
