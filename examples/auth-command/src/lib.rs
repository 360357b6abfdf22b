//! A third-party mailgate strategy, `command`: the SMTP password is the
//! standard output of a command run for each new connection (like msmtp's
//! `passwordeval`), so it never sits in a properties file.
//!
//! ```properties
//! mailgate.smtp.auth.strategy=command
//! mailgate.auth.command=pass show mail/alm
//! mailgate.auth.command.timeoutSeconds=10
//! ```
//!
//! The user is `mksis.logging.email.from`. The command runs under `sh -c`
//! with no stdin and a deadline; its stdout (one trailing newline removed)
//! is the password, held as a secret; its stderr appears in errors with the
//! password masked. Register [`DESCRIPTOR`] with the registry (see
//! `src/bin/mailgate-with-command.rs`), or let `Registry::with_inventory()`
//! find it.

mod command;

use std::time::Duration;

use mailgate_core::secrecy::{ExposeSecret, SecretString};
use mailgate_core::smtp::Redactor;
use mailgate_core::{AuthStrategy, Error, ErrorKind, ErrorKind::*, KeySpec, Result, Settings};
use mailgate_core::{SharedStrategy, SmtpSession, StrategyDescriptor, Submitted, keys};

use command::run;

/// The registered name.
pub const NAME: &str = "command";
/// The command whose stdout is the password.
pub const COMMAND_KEY: &str = "mailgate.auth.command";
/// Seconds the command may take (default 10).
pub const TIMEOUT_KEY: &str = "mailgate.auth.command.timeoutSeconds";
/// The registration: name, keys, builder.
pub static DESCRIPTOR: StrategyDescriptor = StrategyDescriptor::new(NAME, build, module_path!())
    .keys(&[
        KeySpec::new(COMMAND_KEY).max_len(4096),
        KeySpec::new(TIMEOUT_KEY).max_len(16),
    ]);

// Opt-in discovery for binaries that call `Registry::with_inventory()`.
mailgate_core::inventory::submit!(Submitted(&DESCRIPTOR));

fn fail(kind: ErrorKind, text: impl std::fmt::Display) -> Error {
    Error::strategy(NAME, kind, format!("`{COMMAND_KEY}` {text}"))
}

fn build(settings: &Settings) -> Result<SharedStrategy> {
    Ok(SharedStrategy::new(CommandAuth::from_settings(settings)?))
}

/// Authenticates as `user` with the password the command prints.
#[derive(Debug)]
pub struct CommandAuth {
    user: String,
    command: String,
    timeout: Duration,
}

impl CommandAuth {
    /// From `mksis.logging.email.from`, [`COMMAND_KEY`] and [`TIMEOUT_KEY`].
    pub fn from_settings(settings: &Settings) -> Result<Self> {
        Ok(CommandAuth {
            user: settings
                .require_mailbox(keys::EMAIL_FROM, NAME)?
                .email
                .to_string(),
            command: settings.require(COMMAND_KEY, NAME)?.to_owned(),
            timeout: settings.seconds(TIMEOUT_KEY, 10, 1..=3600)?,
        })
    }
}

#[mailgate_core::async_trait]
impl AuthStrategy for CommandAuth {
    type Credential = SecretString;

    async fn prepare(&self) -> Result<SecretString> {
        let secs = self.timeout.as_secs();
        let (out, status, stderr) = tokio::time::timeout(self.timeout, run(&self.command))
            .await
            .map_err(|_| fail(Temporary, format!("did not finish within {secs} s")))?
            .map_err(|e| fail(Config, format!("cannot run: {e}")))?;
        // Moved, not copied: the only copy is the secret's, zeroed on drop.
        let mut text = String::from_utf8(out).map_err(|_| fail(Config, "printed no UTF-8"))?;
        if text.ends_with('\n') {
            text.pop();
        }
        let password = SecretString::from(text);
        if !status.success() || password.expose_secret().is_empty() {
            let mut redactor = Redactor::new();
            redactor.protect(password.expose_secret());
            let stderr = redactor.clean_bytes(&stderr);
            return Err(fail(
                Config,
                format!("failed ({status}): {}", stderr.trim()),
            ));
        }
        Ok(password)
    }

    async fn authenticate(
        &self,
        session: &mut SmtpSession<'_>,
        password: SecretString,
    ) -> Result<()> {
        session.auth_plain(NAME, &self.user, &password).await
    }

    fn required_sender(&self) -> Option<&str> {
        Some(&self.user)
    }
}
