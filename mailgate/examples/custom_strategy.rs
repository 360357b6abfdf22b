//! A third-party authentication strategy: a crate (here, a module) that
//! depends on the `mailgate` facade, submits one `StrategyDescriptor` with
//! `inventory`, and is named by the binary (`use vault_strategy as _;`) so
//! the linker keeps its registration.
//!
//! `vault` is basic authentication whose password is not in `is.properties`
//! but in the file named by `example.vault.passwordFile` (as a secret
//! manager's agent would leave it). It supplies the credentials and leaves
//! the SASL exchange to the facade's `basic` strategy (AUTH PLAIN or LOGIN,
//! the final reply classified as for every built-in strategy). Choose it with
//! `mailgate.smtp.auth.strategy=vault`.
//!
//! A strategy with a SASL mechanism of its own sends it with
//! `SmtpSession::auth_command` and ends it with `SmtpSession::finish_auth`;
//! such a crate needs only `mailgate-core`.
//!
//! ```sh
//! cargo run -p mailgate --example custom_strategy -- path/to/config
//! ```

mod vault {
    use std::path::PathBuf;
    use std::sync::Arc;

    use mailgate::basic::BasicAuth;
    use mailgate::secrecy::SecretString;
    use mailgate::{AuthStrategy, Result, Settings, SmtpSession, StrategyDescriptor, keys};

    pub const NAME: &str = "vault";
    pub const PASSWORD_FILE: &str = "example.vault.passwordFile";

    #[derive(Debug)]
    pub struct Vault {
        /// The exchange itself; its `Debug` hides the password.
        basic: BasicAuth,
        user: String,
        password_file: PathBuf,
    }

    #[mailgate::async_trait]
    impl AuthStrategy for Vault {
        async fn authenticate(&self, session: &mut SmtpSession<'_>) -> Result<()> {
            self.basic.authenticate(session).await
        }

        /// The server lets the user send only as itself: `Mailer::send`
        /// refuses another sender before connecting (exit 65).
        fn required_sender(&self) -> Option<&str> {
            Some(&self.user)
        }

        /// What `mailgate check` shows: never the password.
        fn describe(&self) -> Vec<(&'static str, String)> {
            vec![
                ("user", self.user.clone()),
                ("password file", self.password_file.display().to_string()),
            ]
        }
    }

    fn build(settings: &Settings) -> Result<Arc<dyn AuthStrategy>> {
        let user = settings
            .require_mailbox(keys::EMAIL_FROM, NAME)?
            .email
            .to_string();
        let password_file = settings
            .base_dir()
            .join(settings.require(PASSWORD_FILE, NAME)?);
        let mut password = std::fs::read_to_string(&password_file)
            .map_err(|e| settings.invalid(PASSWORD_FILE, &format!("a readable file ({e})")))?;
        password.truncate(password.trim_end_matches(['\r', '\n']).len());
        Ok(Arc::new(Vault {
            basic: BasicAuth::new(user.clone(), SecretString::from(password)),
            user,
            password_file,
        }))
    }

    mailgate::inventory::submit! {
        StrategyDescriptor {
            name: NAME,
            keys: &[PASSWORD_FILE],
            build,
            module_path: module_path!(),
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let registry = mailgate::Registry::collect()?;
    println!("registered strategies: {}", registry.names().join(", "));
    let Some(dir) = std::env::args().nth(1) else {
        return Ok(());
    };
    let mailer = mailgate::Mailer::builder()
        .config_dir(dir)
        .property(mailgate::keys::AUTH_STRATEGY, vault::NAME)
        .build()?;
    println!(
        "strategy {} chosen: {}",
        mailer.resolution().strategy,
        mailer.resolution().rule
    );
    Ok(())
}

/// `cargo test -p mailgate --example custom_strategy`: the strategy against
/// the development SMTP server (STARTTLS, then AUTH PLAIN).
#[cfg(test)]
mod tests {
    use mailgate::Mailer;
    use mailgate_devserver::{DevSmtpServer, Fault, Mechanism, Stage};

    const USER: &str = "alm@example.com";
    const PASSWORD: &str = "from-the-vault";

    async fn start(fault: Option<Fault>) -> DevSmtpServer {
        let mut builder = DevSmtpServer::builder()
            .starttls_required()
            .mechanisms([Mechanism::Plain])
            .user(USER, PASSWORD);
        if let Some(fault) = fault {
            builder = builder.fault(fault);
        }
        builder.start().await.expect("dev server starts")
    }

    /// A config folder that chooses `vault`, with the password in a file;
    /// returns the folder (removed on drop) and the Mailer built from it.
    fn vault_mailer(server: &DevSmtpServer, password_file: &str) -> (tempfile::TempDir, Mailer) {
        let dir = tempfile::tempdir().unwrap();
        server.ca().write_ca_pem(dir.path().join("ca.pem")).unwrap();
        std::fs::write(dir.path().join("vault-password"), password_file).unwrap();
        let is = format!(
            "mksis.smtp.ssl.enabled=true\n\
             mksis.logging.email.from={USER}\n\
             mksis.logging.email.server.hostname=localhost\n\
             mksis.logging.email.server.port={}\n\
             mailgate.smtp.ssl.caFile=ca.pem\n\
             mailgate.smtp.auth.strategy=vault\n\
             example.vault.passwordFile=vault-password\n",
            server.port()
        );
        std::fs::write(dir.path().join("is.properties"), is).unwrap();
        let mailer = Mailer::builder()
            .config_dir(dir.path())
            .env_overrides(false)
            .build()
            .expect("the vault strategy builds");
        (dir, mailer)
    }

    #[tokio::test]
    async fn sends_as_the_user_with_the_password_from_the_file() {
        let server = start(None).await;
        let (_dir, mailer) = vault_mailer(&server, &format!("{PASSWORD}\n"));
        assert_eq!(mailer.resolution().strategy, "vault");
        mailer
            .sendmail(USER, "dev@example.com", "vault", "hello")
            .await
            .expect("sent");
        let messages = server.messages();
        let auth = messages[0].auth.as_ref().expect("authenticated");
        assert_eq!(
            (auth.mechanism, auth.user.as_str()),
            (Mechanism::Plain, USER)
        );
        assert!(messages[0].tls);

        // required_sender: another sender is refused before anything is sent.
        let err = mailer
            .sendmail("other@example.com", "dev@example.com", "s", "b")
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), 65, "{err}");
        assert_eq!(server.messages().len(), 1);
        mailer.close().await;
    }

    #[tokio::test]
    async fn replies_are_classified_as_for_the_built_in_strategies() {
        // 535: refused (77).
        let server = start(None).await;
        let (_dir, mailer) = vault_mailer(&server, "wrong-password");
        let err = mailer
            .sendmail(USER, "dev@example.com", "s", "b")
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), 77, "{err}");

        // 454: a temporary failure (75), not a refusal.
        let server = start(Some(Fault::reply(
            Stage::Auth,
            454,
            "4.7.0 Temporary authentication failure",
        )))
        .await;
        let (_dir, mailer) = vault_mailer(&server, PASSWORD);
        let err = mailer
            .sendmail(USER, "dev@example.com", "s", "b")
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), 75, "{err}");
        assert!(server.messages().is_empty());
    }
}
