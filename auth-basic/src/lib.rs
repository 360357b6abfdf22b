//! SMTP basic authentication for mailgate ("closed mail relay"): `AUTH PLAIN`
//! or `AUTH LOGIN`, whichever the server offers, PLAIN first.
//!
//! User: `mksis.logging.email.from`; password: `mksis.logging.emailfrom.password`
//! (an `ENC(...)` value is decrypted at load). Chosen when
//! `mksis.smtp.authentication=true` (whatever the OAuth flag says), or by
//! `mailgate.smtp.auth.strategy=basic`. The password is held in a
//! [`SecretString`] and never logged: the session log shows `<redacted>`.

#![warn(missing_docs)]

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mailgate_core::secrecy::{ExposeSecret, SecretString};
use mailgate_core::{
    AuthStrategy, Error, Reply, Result, Settings, SmtpSession, StrategyDescriptor, keys,
};
use zeroize::Zeroizing;

/// The registered name.
pub const NAME: &str = "basic";

/// A user name and password.
pub struct BasicAuth {
    user: String,
    password: SecretString,
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl BasicAuth {
    /// Credentials for `user`.
    pub fn new(user: impl Into<String>, password: SecretString) -> Self {
        Self {
            user: user.into(),
            password,
        }
    }

    /// From `mksis.logging.email.from` and `mksis.logging.emailfrom.password`.
    pub fn from_settings(settings: &Settings) -> Result<Self> {
        let user = settings
            .require_mailbox(keys::EMAIL_FROM, NAME)?
            .email
            .to_string();
        let password = settings.require_secret(keys::EMAIL_PASSWORD, NAME)?;
        Ok(Self::new(user, password))
    }

    async fn plain(&self, session: &mut SmtpSession<'_>) -> Result<Reply> {
        // Zeroized on drop: no copy of the password outlives the exchange.
        let payload = Zeroizing::new(format!(
            "\0{}\0{}",
            self.user,
            self.password.expose_secret()
        ));
        let line = Zeroizing::new(format!(
            "AUTH PLAIN {}",
            STANDARD.encode(payload.as_bytes())
        ));
        session.auth_command(&line, "AUTH PLAIN <redacted>").await
    }

    async fn login(&self, session: &mut SmtpSession<'_>) -> Result<Reply> {
        let reply = session.auth_command("AUTH LOGIN", "AUTH LOGIN").await?;
        if reply.code != 334 {
            return Ok(reply);
        }
        let reply = session
            .auth_command(&STANDARD.encode(&self.user), "<user, base64>")
            .await?;
        if reply.code != 334 {
            return Ok(reply);
        }
        let password = Zeroizing::new(STANDARD.encode(self.password.expose_secret()));
        session.auth_command(&password, "<redacted>").await
    }
}

#[mailgate_core::async_trait]
impl AuthStrategy for BasicAuth {
    async fn authenticate(&self, session: &mut SmtpSession<'_>) -> Result<()> {
        // Whatever the server echoes later, the password does not show.
        session.protect(self.password.expose_secret());
        let reply = if session.offers_auth("PLAIN").await? {
            self.plain(session).await?
        } else if session.offers_auth("LOGIN").await? {
            self.login(session).await?
        } else {
            return Err(Error::NoMechanism {
                strategy: NAME.to_owned(),
                server: session.server().to_owned(),
                wanted: "PLAIN, LOGIN".to_owned(),
            });
        };
        session.finish_auth(NAME, &reply, false).await
    }

    fn required_sender(&self) -> Option<&str> {
        Some(&self.user)
    }

    fn describe(&self) -> Vec<(&'static str, String)> {
        vec![
            ("user", self.user.clone()),
            ("mechanisms", "PLAIN, LOGIN".to_owned()),
        ]
    }
}

fn build(settings: &Settings) -> Result<Arc<dyn AuthStrategy>> {
    Ok(Arc::new(BasicAuth::from_settings(settings)?))
}

mailgate_core::inventory::submit! {
    StrategyDescriptor {
        name: NAME,
        keys: &[],
        build,
        module_path: module_path!(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        let auth = BasicAuth::new("alm@example.com", SecretString::from("hunter2".to_owned()));
        let dbg = format!("{auth:?}");
        assert!(dbg.contains("alm@example.com"));
        assert!(!dbg.contains("hunter2"), "{dbg}");
    }
}
