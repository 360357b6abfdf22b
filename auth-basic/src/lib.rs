//! SMTP basic authentication for mailgate ("closed mail relay"): `AUTH PLAIN`
//! or `AUTH LOGIN`, whichever the server offers, PLAIN first.
//!
//! User: `mksis.logging.email.from`; password: `mksis.logging.emailfrom.password`
//! (an `ENC(...)` value is decrypted at load). Chosen when
//! `mksis.smtp.authentication=true` (whatever the OAuth flag says), or by
//! `mailgate.smtp.auth.strategy=basic`. The password is held in a
//! [`SecretString`] and never logged: the session log shows `<redacted>`.
//! Register [`DESCRIPTOR`] (the `mailgate` facade's `default_registry()`
//! does, with feature `basic`); it declares [`PASSWORD_KEY`] secret, so
//! `mailgate encrypt` encrypts it.

#![warn(missing_docs)]

use std::fmt;

use mailgate_core::secrecy::{ExposeSecret, SecretString};
use mailgate_core::{
    AuthStrategy, Error, KeySpec, Reply, Result, Settings, SettingsBuilder, SharedStrategy,
    SmtpSession, Stage, StrategyDescriptor, VendorMode, keys, sasl,
};

/// The registered name.
pub const NAME: &str = "basic";

/// The password (note `emailfrom`, no dot); may be `ENC(...)`.
pub const PASSWORD_KEY: &str = "mksis.logging.emailfrom.password";

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
        let password = settings.require_secret(PASSWORD_KEY, NAME)?;
        Ok(Self::new(user, password))
    }

    async fn plain(&self, session: &mut SmtpSession<'_>) -> Result<Reply> {
        // Secret types are zeroized on drop: no copy of the password
        // outlives the exchange.
        let payload = sasl::plain(&self.user, &self.password).map_err(|e| invalid(session, e))?;
        let line = SecretString::from(format!("AUTH PLAIN {}", payload.expose_secret()));
        session
            .auth_command(line.expose_secret(), "AUTH PLAIN <redacted>")
            .await
    }

    async fn login(&self, session: &mut SmtpSession<'_>) -> Result<Reply> {
        let (user, password) =
            sasl::login(&self.user, &self.password).map_err(|e| invalid(session, e))?;
        let reply = session.auth_command("AUTH LOGIN", "AUTH LOGIN").await?;
        if reply.code != 334 {
            return Ok(reply);
        }
        let reply = session.auth_command(&user, "<user, base64>").await?;
        if reply.code != 334 {
            return Ok(reply);
        }
        session
            .auth_command(password.expose_secret(), "<redacted>")
            .await
    }
}

#[mailgate_core::async_trait]
impl AuthStrategy for BasicAuth {
    type Credential = ();

    async fn prepare(&self) -> Result<()> {
        Ok(())
    }

    async fn authenticate(&self, session: &mut SmtpSession<'_>, _: ()) -> Result<()> {
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

/// A user or password the SASL message cannot carry.
fn invalid(session: &SmtpSession<'_>, e: sasl::SaslError) -> Error {
    Error::Protocol {
        server: session.server().to_owned(),
        stage: Stage::Auth,
        reason: format!("{e}; check `{}` and `{PASSWORD_KEY}`", keys::EMAIL_FROM),
        source: None,
    }
}

fn build(settings: &Settings) -> Result<SharedStrategy> {
    Ok(SharedStrategy::new(BasicAuth::from_settings(settings)?))
}

/// The registration: name `basic`, the basic-auth mode, the password key.
pub static DESCRIPTOR: StrategyDescriptor = StrategyDescriptor::new(NAME, build, module_path!())
    .provides(VendorMode::BasicAuth)
    .keys(&[KeySpec::secret(PASSWORD_KEY).misspelled_as(&["mksis.logging.email.password"])]);

/// The typed builder method for basic AUTH, beside the properties. It lives
/// here, not in core, because the password key is this crate's; the
/// `mailgate` facade re-exports it in `mailgate::prelude` (feature `basic`).
pub trait BasicBuilderExt: Sized {
    /// SMTP basic AUTH as `user` with `password`: sets
    /// `mksis.smtp.authentication=true`, `mksis.smtp.oauth.authentication=false`,
    /// `mksis.logging.email.from` (the vendor's user name is the sender
    /// address, so it is the default From too) and
    /// `mksis.logging.emailfrom.password`, each as set in code. The
    /// password is a [`SecretString`]: no `Debug` of the builder or the
    /// mailer shows it.
    ///
    /// Credentials are only sent over TLS: pair it with `starttls()` or
    /// `implicit_tls()`.
    ///
    /// ```no_run
    /// use mailgate_auth_basic::BasicBuilderExt as _;
    /// # async fn run() -> mailgate_core::Result<()> {
    /// let password = std::env::var("SMTP_PASSWORD").unwrap_or_default();
    /// let mailer = mailgate_core::Mailer::builder()
    ///     .registry(mailgate_core::Registry::new().with(&mailgate_auth_basic::DESCRIPTOR)?)
    ///     .server("smtp.office365.com", 587)
    ///     .starttls()
    ///     .basic("alm@example.com", password)
    ///     .build()?;
    /// mailer.sendmail("alm@example.com", "dev@example.com", "Build 42", "passed").await?;
    /// # Ok(()) }
    /// ```
    fn basic(self, user: impl Into<String>, password: impl Into<SecretString>) -> Self;
}

impl<B: SettingsBuilder> BasicBuilderExt for B {
    fn basic(self, user: impl Into<String>, password: impl Into<SecretString>) -> Self {
        self.vendor_mode(VendorMode::BasicAuth)
            .sender(user)
            .secret_property(PASSWORD_KEY, password)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailgate_core::ScriptedServer;

    fn alm() -> BasicAuth {
        BasicAuth::new("alm@example.com", SecretString::from("hunter2".to_owned()))
    }

    #[tokio::test]
    async fn plain_is_preferred_and_the_password_is_never_shown() {
        let mut server = ScriptedServer::new()
            .offering(&["LOGIN", "PLAIN"])
            .reply("235 2.7.0 Authentication successful");
        alm().authenticate(&mut server.session(), ()).await.unwrap();
        assert_eq!(
            server.sent(),
            ["AUTH PLAIN AGFsbUBleGFtcGxlLmNvbQBodW50ZXIy"]
        );
        assert_eq!(server.shown(), ["AUTH PLAIN <redacted>"]);
        assert_eq!(server.unused_replies(), 0);
    }

    #[tokio::test]
    async fn login_when_plain_is_not_offered() {
        let mut server = ScriptedServer::new()
            .offering(&["LOGIN"])
            .reply("334 VXNlcm5hbWU6")
            .reply("334 UGFzc3dvcmQ6")
            .reply("235 ok");
        alm().authenticate(&mut server.session(), ()).await.unwrap();
        assert_eq!(
            server.sent(),
            ["AUTH LOGIN", "YWxtQGV4YW1wbGUuY29t", "aHVudGVyMg=="]
        );
        assert_eq!(server.shown()[2], "<redacted>");
    }

    #[tokio::test]
    async fn a_refusal_is_auth_refused_and_an_echo_is_masked() {
        // A hostile server echoes the payload in its refusal.
        let mut server = ScriptedServer::new()
            .offering(&["PLAIN"])
            .reply("535 5.7.8 bad AGFsbUBleGFtcGxlLmNvbQBodW50ZXIy hunter2");
        let err = alm()
            .authenticate(&mut server.session(), ())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::AuthRefused { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(!msg.contains("AGFsbUBleGFtcGxlLmNvbQBodW50ZXIy"), "{msg}");
        assert_eq!(err.exit_code(), 77);
    }

    #[tokio::test]
    async fn no_mechanism_in_common() {
        let mut server = ScriptedServer::new().offering(&["XOAUTH2"]);
        let err = alm()
            .authenticate(&mut server.session(), ())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NoMechanism { .. }), "{err:?}");
        assert!(server.sent().is_empty());
    }

    #[test]
    fn the_descriptor_declares_the_password_secret() {
        assert_eq!(DESCRIPTOR.name, "basic");
        assert_eq!(DESCRIPTOR.provides, Some(VendorMode::BasicAuth));
        assert!(
            DESCRIPTOR
                .keys
                .iter()
                .any(|k| k.name == PASSWORD_KEY && k.secret)
        );
    }

    #[test]
    fn debug_hides_the_password() {
        let auth = BasicAuth::new("alm@example.com", SecretString::from("hunter2".to_owned()));
        let dbg = format!("{auth:?}");
        assert!(dbg.contains("alm@example.com"));
        assert!(!dbg.contains("hunter2"), "{dbg}");
    }
}
