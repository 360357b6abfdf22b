//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use mailgate_auth_oauth::{ClientAuth, TokenClientConfig};
use mailgate_core::Settings;
use mailgate_core::properties::ConfigFiles;
use mailgate_core::secrecy::SecretString;
use mailgate_core::settings::LoadOptions;
use serde_json::json;
use wiremock::ResponseTemplate;

pub const CLIENT_ID: &str = "00000000-aaaa-bbbb-cccc-123456789abc";
pub const SECRET: &str = "s3cr3t~Value+with/odd=chars&é";
pub const SCOPE: &str = "https://outlook.office365.com/.default";
pub const TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJub25jZSI6IkFCQyJ9.secret-token-payload";

/// A client config for a wiremock server's `/token`.
pub fn config(server_uri: &str) -> TokenClientConfig {
    let mut c = TokenClientConfig::new(
        format!("{server_uri}/token"),
        CLIENT_ID,
        SecretString::from(SECRET.to_owned()),
        Some(SCOPE.to_owned()),
    );
    c.timeout = Duration::from_secs(5);
    c.client_auth = ClientAuth::Post;
    c
}

/// A successful token response.
pub fn token_response(token: &str, expires_in: u64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "token_type": "Bearer",
        "expires_in": expires_in,
        "ext_expires_in": expires_in,
        "access_token": token,
    }))
}

/// An OAuth error response.
pub fn error_response(status: u16, error: &str, description: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "error": error,
        "error_description": description,
        "error_codes": [7000215],
        "trace_id": "1b2c",
    }))
}

/// Settings from `is.properties` and `security.properties` text in a temporary folder.
pub fn settings(is: &str, security: &str) -> mailgate_core::Result<Settings> {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), is, security);
    Settings::load(LoadOptions {
        files: ConfigFiles::in_dir(dir.path()),
        strategy_keys: mailgate_auth_oauth::keys::ALL.to_vec(),
        ..LoadOptions::default()
    })
}

fn write(dir: &Path, is: &str, security: &str) {
    std::fs::write(dir.join("is.properties"), is).unwrap();
    std::fs::write(dir.join("security.properties"), security).unwrap();
}

/// A typical OAuth `is.properties`, plus `extra` lines.
pub fn is_properties(extra: &str) -> String {
    format!(
        "mksis.smtp.oauth.authentication=true\n\
         mksis.smtp.authentication=false\n\
         mksis.smtp.ssl.enabled=true\n\
         mksis.logging.email.server.hostname=smtp.office365.com\n\
         mksis.logging.email.server.port=587\n\
         mksis.logging.email.from=ALM Server <alm@example.com>\n\
         {extra}"
    )
}

/// A typical `security.properties` for `endpoint`, plus `extra` lines.
pub fn security_properties(endpoint: &str, extra: &str) -> String {
    format!(
        "mksis.security.smtp.oauth.clientID={CLIENT_ID}\n\
         mksis.security.smtp.oauth.clientSecret={}\n\
         mksis.security.smtp.oauth.tokenEndpointURL={endpoint}\n\
         mksis.security.smtp.oauth.scope={SCOPE}\n\
         {extra}",
        // `:` and `=` are separators in .properties values only before the key ends; escape anyway.
        SECRET.replace('=', "\\=")
    )
}
