//! The `oauth` strategy built from settings: keys, defaults, errors, registration.

mod common;

use std::time::Duration;

use common::*;
use mailgate_auth_oauth::{ClientAuth, Mechanism, OAuthStrategy};
use mailgate_core::registry::Registry;
use mailgate_core::secrecy::ExposeSecret;
use mailgate_core::{AuthStrategy, Error};
use wiremock::matchers::{header_exists, method, path};
use wiremock::{Mock, MockServer};

fn strategy(
    is_extra: &str,
    security_extra: &str,
    endpoint: &str,
) -> mailgate_core::Result<OAuthStrategy> {
    let settings = settings(
        &is_properties(is_extra),
        &security_properties(endpoint, security_extra),
    )?;
    OAuthStrategy::from_settings(&settings)
}

fn config_message(r: mailgate_core::Result<OAuthStrategy>) -> String {
    let err = r.unwrap_err();
    assert_eq!(err.exit_code(), 78, "{err}");
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    let msg = err.to_string();
    assert!(!msg.contains(SECRET), "{msg}");
    msg
}

#[test]
fn defaults_and_description() {
    let s = strategy(
        "",
        "",
        "https://login.microsoftonline.com/tenant/oauth2/v2.0/token",
    )
    .unwrap();
    assert_eq!(
        s.user(),
        "alm@example.com",
        "address part of mksis.logging.email.from"
    );
    assert_eq!(s.mechanism(), Mechanism::Xoauth2);
    assert!(s.sends_credentials());
    assert_eq!(s.required_sender(), None);
    assert!(s.token_source().is_some());
    let client = s.cache().client();
    assert_eq!(client.client_auth(), ClientAuth::Post);
    assert_eq!(
        client.timeout(),
        Duration::from_secs(30),
        "the SMTP timeout"
    );
    assert_eq!(s.cache().policy().refresh_margin, Duration::from_secs(60));
    assert_eq!(
        s.describe(),
        vec![
            ("token endpoint", "login.microsoftonline.com".to_owned()),
            ("scope", SCOPE.to_owned()),
            ("mechanism", "XOAUTH2".to_owned()),
            ("user", "alm@example.com".to_owned()),
            ("client auth", "client_secret_post".to_owned()),
        ]
    );
    let debug = format!("{s:?}");
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(debug.contains(CLIENT_ID), "{debug}");
}

#[test]
fn extension_keys() {
    let s = strategy(
        "mailgate.oauth.user=shared-mailbox@example.com\n\
         mailgate.oauth.mechanism=OAUTHBEARER\n\
         mailgate.oauth.clientAuth=basic\n\
         mailgate.oauth.timeoutSeconds=2.5\n\
         mailgate.oauth.refreshMarginSeconds=120\n\
         mailgate.smtp.timeoutSeconds=10\n",
        "",
        "http://127.0.0.1:8080/token",
    )
    .unwrap();
    assert_eq!(s.user(), "shared-mailbox@example.com");
    assert_eq!(s.mechanism(), Mechanism::OAuthBearer);
    assert_eq!(s.cache().client().client_auth(), ClientAuth::Basic);
    assert_eq!(s.cache().client().timeout(), Duration::from_millis(2500));
    assert_eq!(s.cache().policy().refresh_margin, Duration::from_secs(120));
    let described = s.describe();
    assert!(
        described.contains(&("token endpoint", "127.0.0.1:8080".to_owned())),
        "{described:?}"
    );
    assert!(
        described.contains(&("mechanism", "OAUTHBEARER".to_owned())),
        "{described:?}"
    );
    assert!(
        described.contains(&("client auth", "client_secret_basic".to_owned())),
        "{described:?}"
    );

    let s = strategy(
        "mailgate.smtp.timeoutSeconds=7\n",
        "",
        "http://localhost/token",
    )
    .unwrap();
    assert_eq!(s.cache().client().timeout(), Duration::from_secs(7));
}

#[test]
fn bad_values_name_the_key() {
    for (line, key) in [
        (
            "mailgate.oauth.mechanism=plain\n",
            "mailgate.oauth.mechanism",
        ),
        (
            "mailgate.oauth.clientAuth=jwt\n",
            "mailgate.oauth.clientAuth",
        ),
        (
            "mailgate.oauth.timeoutSeconds=0\n",
            "mailgate.oauth.timeoutSeconds",
        ),
        (
            "mailgate.oauth.refreshMarginSeconds=-1\n",
            "mailgate.oauth.refreshMarginSeconds",
        ),
    ] {
        let msg = config_message(strategy(line, "", "https://login.example.com/token"));
        assert!(msg.contains(&format!("`{key}`")), "{msg}");
        assert!(msg.contains("is.properties:7"), "{msg}");
    }
}

#[test]
fn plain_http_endpoint_off_loopback_is_refused() {
    let msg = config_message(strategy("", "", "http://login.example.com/token"));
    assert!(
        msg.contains("`mksis.security.smtp.oauth.tokenEndpointURL`"),
        "{msg}"
    );
    assert!(msg.contains("security.properties:3"), "{msg}");
    assert!(msg.contains("https://"), "{msg}");
}

#[test]
fn missing_keys_name_key_and_file() {
    let security = format!(
        "mksis.security.smtp.oauth.clientID={CLIENT_ID}\n\
         mksis.security.smtp.oauth.tokenEndpointURL=https://login.example.com/token\n\
         mksis.security.smtp.oauth.scope={SCOPE}\n"
    );
    let msg = config_message(
        settings(&is_properties(""), &security).and_then(|s| OAuthStrategy::from_settings(&s)),
    );
    assert!(
        msg.contains("`mksis.security.smtp.oauth.clientSecret`"),
        "{msg}"
    );
    assert!(msg.contains("security.properties"), "{msg}");
    assert!(msg.contains("oauth strategy"), "{msg}");

    // No sender and no mailgate.oauth.user: the user is missing.
    let is = "mksis.smtp.oauth.authentication=true\nmksis.logging.email.server.hostname=smtp.example.com\n";
    let msg = config_message(
        settings(
            is,
            &security_properties("https://login.example.com/token", ""),
        )
        .and_then(|s| OAuthStrategy::from_settings(&s)),
    );
    assert!(msg.contains("`mksis.logging.email.from`"), "{msg}");
}

#[test]
fn registered_as_oauth() {
    let registry = Registry::new()
        .with(&mailgate_auth_oauth::DESCRIPTOR)
        .unwrap();
    let d = registry
        .get("oauth")
        .expect("the oauth strategy is registered");
    assert_eq!(d.module_path, "mailgate_auth_oauth");
    for key in mailgate_auth_oauth::keys::ALL {
        assert!(d.keys.contains(key), "{key:?}");
    }
    let settings = settings(
        &is_properties(""),
        &security_properties("https://login.example.com/token", ""),
    )
    .unwrap();
    let built = (d.build)(&settings).unwrap();
    assert!(built.token_source().is_some());
    let secret: Vec<&str> = registry.secret_keys();
    assert_eq!(secret, [mailgate_auth_oauth::keys::CLIENT_SECRET]);
}

#[tokio::test]
async fn token_source_fetches_through_settings() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(header_exists("authorization"))
        .respond_with(token_response(TOKEN, 3600))
        .expect(1)
        .mount(&server)
        .await;
    let s = strategy(
        "mailgate.oauth.clientAuth=basic\n",
        "",
        &format!("{}/token", server.uri()),
    )
    .unwrap();
    let source = s.token_source().unwrap();
    for _ in 0..3 {
        assert_eq!(source.access_token().await.unwrap().expose_secret(), TOKEN);
    }
    server.verify().await;
}

#[test]
fn user_is_trimmed() {
    let s = strategy(
        "mailgate.oauth.user=  shared-mailbox@example.com \t \n",
        "",
        "https://login.example.com/token",
    )
    .unwrap();
    assert_eq!(s.user(), "shared-mailbox@example.com");
}

#[test]
fn with_cache_validates_the_user() {
    use mailgate_auth_oauth::{TokenCache, TokenClient};
    use std::sync::Arc;
    let cache = Arc::new(TokenCache::new(
        TokenClient::new(config("https://login.example.com")).unwrap(),
    ));
    for bad in ["", "  ", "a\u{1}b@example.com", "a@example.com\r\nRSET"] {
        let err = OAuthStrategy::with_cache(Arc::clone(&cache), bad.to_owned(), Mechanism::Xoauth2)
            .unwrap_err();
        assert!(matches!(err, Error::Usage(_)), "{err:?}");
        assert!(err.to_string().contains("mailgate.oauth.user"), "{err}");
        assert!(!err.to_string().contains(['\r', '\n', '\u{1}']), "{err}");
    }
    let s = OAuthStrategy::with_cache(
        cache,
        " alm@example.com ".to_owned(),
        Mechanism::OAuthBearer,
    )
    .unwrap();
    assert_eq!(s.user(), "alm@example.com");
}

#[test]
fn endpoint_errors_show_no_user_info_or_query() {
    let msg = config_message(strategy(
        "",
        "",
        "http://admin:pa55word@login.example.com/t/token?sig=QSECRET",
    ));
    assert!(
        msg.contains("`mksis.security.smtp.oauth.tokenEndpointURL`"),
        "{msg}"
    );
    assert!(msg.contains("security.properties:3"), "{msg}");
    assert!(msg.contains("http://login.example.com/t/token"), "{msg}");
    assert!(
        !msg.contains("pa55word") && !msg.contains("QSECRET"),
        "{msg}"
    );
    assert!(!msg.contains("admin"), "{msg}");

    // Allowed scheme and host, but with user info: refused, not shown.
    let msg = config_message(strategy(
        "",
        "",
        "https://admin:pa55word@login.example.com/token",
    ));
    assert!(msg.contains("user:password@"), "{msg}");
    assert!(!msg.contains("pa55word"), "{msg}");
}
