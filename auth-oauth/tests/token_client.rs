//! The token endpoint client against wiremock: request shape and error mapping.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;
use mailgate_auth_oauth::{ClientAuth, DEFAULT_TOKEN_LIFETIME, TokenClient, TokenError};
use mailgate_core::secrecy::ExposeSecret;
use mailgate_core::{Error, ErrorKind};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn server_with(response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(response)
        .mount(&server)
        .await;
    server
}

fn form(body: &[u8]) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// Fails unless nothing secret is in the error's Display or Debug (nor its core form).
fn assert_secret_free(e: &TokenError) {
    let core = Error::from(e.clone());
    for text in [
        e.to_string(),
        format!("{e:?}"),
        core.to_string(),
        format!("{core:?}"),
    ] {
        assert!(!text.contains(SECRET), "secret leaked: {text}");
        assert!(!text.contains(TOKEN), "token leaked: {text}");
    }
}

async fn fetch_err(response: ResponseTemplate) -> TokenError {
    let server = server_with(response).await;
    let client = TokenClient::new(config(&server.uri())).unwrap();
    let err = client.fetch().await.unwrap_err();
    assert_secret_free(&err);
    err
}

#[tokio::test]
async fn successful_fetch() {
    let server = server_with(token_response(TOKEN, 3599)).await;
    let client = TokenClient::new(config(&server.uri())).unwrap();
    let token = client.fetch().await.unwrap();
    assert_eq!(token.secret().expose_secret(), TOKEN);
    assert_eq!(token.lifetime(), Duration::from_secs(3599));
    assert!(token.lifetime_known());
    let debug = format!("{token:?} {client:?}");
    assert!(!debug.contains(TOKEN) && !debug.contains(SECRET), "{debug}");
}

#[tokio::test]
async fn client_secret_post_request_shape() {
    let server = server_with(token_response(TOKEN, 3600)).await;
    TokenClient::new(config(&server.uri()))
        .unwrap()
        .fetch()
        .await
        .unwrap();
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method.as_str(), "POST");
    assert_eq!(r.url.path(), "/token");
    assert_eq!(
        r.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(r.headers["accept"], "application/json");
    assert!(
        r.headers.get("authorization").is_none(),
        "no Basic header with client_secret_post"
    );
    let expected: BTreeMap<String, String> = [
        ("grant_type", "client_credentials"),
        ("scope", SCOPE),
        ("client_id", CLIENT_ID),
        ("client_secret", SECRET),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(form(&r.body), expected);
}

#[tokio::test]
async fn client_secret_basic_request_shape() {
    let server = server_with(token_response(TOKEN, 3600)).await;
    let mut c = config(&server.uri());
    c.client_auth = ClientAuth::Basic;
    c.client_id = "my client:1".to_owned();
    TokenClient::new(c).unwrap().fetch().await.unwrap();
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method.as_str(), "POST");
    assert_eq!(
        r.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    // RFC 6749 §2.3.1: id and secret are form-urlencoded before the Basic encoding.
    let encoded_secret: String = url::form_urlencoded::byte_serialize(SECRET.as_bytes()).collect();
    assert_eq!(
        encoded_secret,
        "s3cr3t%7EValue%2Bwith%2Fodd%3Dchars%26%C3%A9"
    );
    let expected_header = format!(
        "Basic {}",
        STANDARD.encode(format!("my+client%3A1:{encoded_secret}"))
    );
    assert_eq!(r.headers["authorization"], expected_header.as_str());
    let expected: BTreeMap<String, String> =
        [("grant_type", "client_credentials"), ("scope", SCOPE)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    assert_eq!(
        form(&r.body),
        expected,
        "no credentials in the body with client_secret_basic"
    );
}

#[tokio::test]
async fn missing_expires_in_is_short_lived() {
    let server = server_with(
        ResponseTemplate::new(200)
            .set_body_json(serde_json::json!({"access_token": TOKEN, "token_type": "bearer"})),
    )
    .await;
    let token = TokenClient::new(config(&server.uri()))
        .unwrap()
        .fetch()
        .await
        .unwrap();
    assert_eq!(token.lifetime(), DEFAULT_TOKEN_LIFETIME);
    assert!(!token.lifetime_known());
}

#[tokio::test]
async fn expires_in_as_string_is_accepted() {
    let server = server_with(ResponseTemplate::new(200).set_body_json(
        serde_json::json!({"access_token": TOKEN, "token_type": "Bearer", "expires_in": "3599"}),
    ))
    .await;
    let token = TokenClient::new(config(&server.uri()))
        .unwrap()
        .fetch()
        .await
        .unwrap();
    assert_eq!(token.lifetime(), Duration::from_secs(3599));
}

#[tokio::test]
async fn non_bearer_token_is_refused() {
    let err = fetch_err(ResponseTemplate::new(200).set_body_json(
        serde_json::json!({"access_token": TOKEN, "token_type": "mac", "expires_in": 60}),
    ))
    .await;
    assert!(err.to_string().contains("`mac`"), "{err}");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
}

#[tokio::test]
async fn server_error_is_temporary() {
    let err = fetch_err(ResponseTemplate::new(500).set_body_string("internal error")).await;
    let msg = err.to_string();
    assert!(msg.contains("HTTP 500"), "{msg}");
    assert_eq!(err.kind(), ErrorKind::Temporary);
    assert_eq!(Error::from(err).exit_code(), 75);

    let err = fetch_err(error_response(503, "temporarily_unavailable", "try later")).await;
    assert_eq!(Error::from(err).exit_code(), 75);
}

#[tokio::test]
async fn timeout_is_temporary() {
    let server =
        server_with(token_response(TOKEN, 3600).set_delay(Duration::from_millis(2000))).await;
    let mut c = config(&server.uri());
    c.timeout = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let err = TokenClient::new(c).unwrap().fetch().await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    let msg = err.to_string();
    assert!(msg.contains("did not answer within 0.3s"), "{msg}");
    assert!(msg.contains("mailgate.oauth.timeoutSeconds"), "{msg}");
    let e = Error::from(err);
    assert_eq!(e.exit_code(), 75);
    assert!(e.is_transient());
}

#[tokio::test]
async fn connection_refused_is_temporary() {
    // Bind and drop a listener to get a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = TokenClient::new(config(&format!("http://127.0.0.1:{port}")))
        .unwrap()
        .fetch()
        .await
        .unwrap_err();
    assert_secret_free(&err);
    assert!(
        err.to_string().contains("cannot reach the token endpoint"),
        "{err}"
    );
    assert_eq!(Error::from(err).exit_code(), 75);
}

#[tokio::test]
async fn html_body_gives_status_and_clean_excerpt() {
    let html = format!(
        "<!DOCTYPE html><html><head><title>Sign in to your account</title>\
         <script>var config = {{ secret: '{SECRET}' }};</script><style>body{{color:red}}</style></head>\
         <body><div class=\"x\">The page you asked for   is not here. {}</div></body></html>",
        "lorem ipsum ".repeat(30)
    );
    let err = fetch_err(
        ResponseTemplate::new(404).set_body_raw(html.clone(), "text/html; charset=utf-8"),
    )
    .await;
    let msg = err.to_string();
    assert!(msg.contains("HTTP 404"), "{msg}");
    assert!(msg.contains("`text/html`"), "{msg}");
    assert!(
        msg.contains("\"Sign in to your account The page you asked for is not here."),
        "{msg}"
    );
    assert!(
        !msg.contains('<') && !msg.contains("color:red") && !msg.contains("var config"),
        "{msg}"
    );
    let excerpt = msg.split('"').nth(1).unwrap();
    assert!(
        excerpt.chars().count() <= mailgate_auth_oauth::EXCERPT_LEN + 1,
        "{excerpt}"
    );
    assert!(
        msg.contains("mksis.security.smtp.oauth.tokenEndpointURL"),
        "{msg}"
    );
    assert_eq!(Error::from(err).exit_code(), 78);

    // The same page with 200 (a login portal instead of the token endpoint).
    let err = fetch_err(ResponseTemplate::new(200).set_body_raw(html, "text/html")).await;
    assert!(err.to_string().contains("HTTP 200"), "{err}");
    assert!(
        err.to_string().contains("instead of a JSON token response"),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::Config);

    // A 502 from a proxy in HTML is temporary.
    let err = fetch_err(ResponseTemplate::new(502).set_body_raw(
        "<html><body><h1>502 Bad Gateway</h1></body></html>",
        "text/html",
    ))
    .await;
    assert!(err.to_string().contains("HTTP 502"), "{err}");
    assert!(err.to_string().contains("\"502 Bad Gateway\""), "{err}");
    assert_eq!(err.kind(), ErrorKind::Temporary);
}

#[tokio::test]
async fn non_json_success_body_is_not_shown() {
    // A form-encoded token (not what RFC 6749 allows) must not leak into the error.
    let err = fetch_err(ResponseTemplate::new(200).set_body_raw(
        format!("access_token={TOKEN}&token_type=bearer"),
        "application/x-www-form-urlencoded",
    ))
    .await;
    assert!(err.to_string().contains("HTTP 200"), "{err}");
}

#[tokio::test]
async fn invalid_client_is_auth_refused() {
    let description = format!(
        "AADSTS7000215: Invalid client secret provided. The secret sent was {SECRET}.\r\nTrace ID: 1b2c"
    );
    let err = fetch_err(error_response(401, "invalid_client", &description)).await;
    let msg = err.to_string();
    assert!(msg.contains("invalid_client"), "{msg}");
    assert!(
        msg.contains("AADSTS7000215: Invalid client secret provided."),
        "{msg}"
    );
    assert!(
        msg.contains("<redacted>"),
        "an echoed secret is masked: {msg}"
    );
    assert!(msg.contains("Trace ID: 1b2c"), "{msg}");
    assert!(
        msg.contains("mksis.security.smtp.oauth.clientSecret"),
        "{msg}"
    );
    assert_eq!(err.kind(), ErrorKind::AuthRefused);
    let e = Error::from(err);
    assert_eq!(e.exit_code(), 77);
    assert!(e.to_string().starts_with("oauth: "), "{e}");
    assert!(
        matches!(e, Error::Strategy { ref strategy, kind: ErrorKind::AuthRefused, .. } if strategy == "oauth")
    );

    let err = fetch_err(error_response(
        400,
        "unauthorized_client",
        "AADSTS700016: app not found",
    ))
    .await;
    assert!(err.to_string().contains("AADSTS700016"), "{err}");
    assert_eq!(Error::from(err).exit_code(), 77);
}

#[tokio::test]
async fn invalid_scope_is_config_naming_the_key() {
    let err = fetch_err(error_response(
        400,
        "invalid_scope",
        "AADSTS70011: The provided value for scope is not valid.",
    ))
    .await;
    let msg = err.to_string();
    assert!(msg.contains("invalid_scope"), "{msg}");
    assert!(msg.contains("AADSTS70011"), "{msg}");
    assert!(msg.contains("`mksis.security.smtp.oauth.scope`"), "{msg}");
    assert!(msg.contains(SCOPE), "{msg}");
    assert_eq!(Error::from(err).exit_code(), 78);
}

#[tokio::test]
async fn endpoint_must_be_https_off_loopback() {
    let mut c = config("http://login.example.com");
    let err = TokenClient::new(c.clone()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("mksis.security.smtp.oauth.tokenEndpointURL"),
        "{msg}"
    );
    assert!(msg.contains("https://"), "{msg}");
    assert_eq!(err.exit_code(), 78);
    c.endpoint = "https://login.example.com/token".into();
    TokenClient::new(c).unwrap();
}

#[tokio::test]
async fn huge_expires_in_is_capped_not_a_panic() {
    for expires_in in [serde_json::json!(1e20), serde_json::json!("1e300")] {
        let server = server_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"access_token": TOKEN, "token_type": "Bearer", "expires_in": expires_in}),
        ))
        .await;
        let token = TokenClient::new(config(&server.uri()))
            .unwrap()
            .fetch()
            .await
            .unwrap();
        assert_eq!(token.lifetime(), Duration::from_secs(366 * 24 * 3600));
        assert!(token.lifetime_known());
    }
}

#[tokio::test]
async fn access_token_outside_the_b64token_charset_is_refused() {
    let bad = "part one\u{1}auth=Bearer two";
    let err = fetch_err(ResponseTemplate::new(200).set_body_json(
        serde_json::json!({"access_token": bad, "token_type": "Bearer", "expires_in": 60}),
    ))
    .await;
    let msg = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!(Error::from(err.clone()).exit_code(), 69);
    assert!(msg.contains("127.0.0.1"), "names the endpoint host: {msg}");
    assert!(msg.contains("RFC 6750"), "{msg}");
    assert!(!msg.contains("part one") && !msg.contains("two"), "{msg}");
}

#[tokio::test]
async fn retry_after_as_an_http_date_is_honoured() {
    // A date far ahead: capped at the longest back-off.
    let err = fetch_err(
        error_response(429, "slow_down", "too many requests")
            .insert_header("retry-after", "Fri, 31 Dec 2100 23:59:59 GMT"),
    )
    .await;
    assert_eq!(err.retry_after(), Some(mailgate_auth_oauth::MAX_BACKOFF));
    assert_eq!(err.kind(), ErrorKind::Temporary);
    // A date in the past: no extra wait.
    let err = fetch_err(
        ResponseTemplate::new(503).insert_header("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT"),
    )
    .await;
    assert_eq!(err.retry_after(), Some(Duration::ZERO));
    assert!(err.to_string().contains("Retry-After 0s"), "{err}");
    // Seconds, as before.
    let err = fetch_err(ResponseTemplate::new(503).insert_header("retry-after", "7")).await;
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    // Only with 429 and 503.
    let err = fetch_err(ResponseTemplate::new(500).insert_header("retry-after", "7")).await;
    assert_eq!(err.retry_after(), None);
}

#[tokio::test]
async fn one_timeout_bounds_the_whole_exchange_body_included() {
    // Headers at once, then a body that never comes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf).await;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{\"access")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
    });
    let mut c = config(&format!("http://127.0.0.1:{port}"));
    c.timeout = Duration::from_millis(400);
    let started = std::time::Instant::now();
    let err = TokenClient::new(c).unwrap().fetch().await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(350) && elapsed < Duration::from_millis(1500),
        "{elapsed:?}"
    );
    assert!(
        err.to_string().contains("did not answer within 0.4s"),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::Temporary);
}

#[tokio::test]
async fn echoed_secret_is_masked_in_every_encoding() {
    let encoded: String = url::form_urlencoded::byte_serialize(SECRET.as_bytes()).collect();
    let id: String = url::form_urlencoded::byte_serialize(CLIENT_ID.as_bytes()).collect();
    let basic = STANDARD.encode(format!("{id}:{encoded}"));
    let description = format!(
        "AADSTS7000215: bad secret. form: {encoded} header: Basic {basic} b64: {}",
        STANDARD.encode(SECRET)
    );
    let err = fetch_err(error_response(401, "invalid_client", &description)).await;
    let msg = err.to_string();
    for leaked in [encoded.as_str(), basic.as_str(), &STANDARD.encode(SECRET)] {
        assert!(!msg.contains(leaked), "{leaked} in {msg}");
    }
    assert_eq!(msg.matches("<redacted>").count(), 3, "{msg}");
    assert!(msg.contains("AADSTS7000215: bad secret."), "{msg}");
}

#[tokio::test]
async fn endpoint_user_info_and_query_never_show() {
    let mut c = config("https://login.example.com");
    c.endpoint = "https://admin:pa55word@login.example.com/t/token?sig=QSECRET".to_owned();
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("pa55word") && !shown.contains("QSECRET"),
        "{shown}"
    );
    let err = TokenClient::new(c).unwrap_err();
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(
            !text.contains("pa55word") && !text.contains("QSECRET"),
            "{text}"
        );
        assert!(text.contains("https://login.example.com/t/token"), "{text}");
    }
    assert_eq!(err.exit_code(), 78);
}
