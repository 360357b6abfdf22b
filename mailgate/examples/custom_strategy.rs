//! A third-party authentication strategy: a crate (here, a module) that
//! depends on `mailgate-core`, submits one descriptor, and is named by the
//! binary so the linker keeps its registration.
//!
//! This one authenticates with AUTH PLAIN using a password read from a file
//! named by `example.vault.passwordFile` (as a secret manager's agent would
//! leave it). Choose it with `mailgate.smtp.auth.strategy=vault`.
//!
//! ```sh
//! cargo run -p mailgate --example custom_strategy -- path/to/config
//! ```

mod vault {
    use std::sync::Arc;

    use base64::Engine as _;
    use mailgate::secrecy::{ExposeSecret, SecretString};
    use mailgate::{AuthStrategy, Error, Result, Settings, SmtpSession, StrategyDescriptor, keys};

    const PASSWORD_FILE: &str = "example.vault.passwordFile";

    #[derive(Debug)]
    pub struct Vault {
        user: String,
        password: SecretString,
    }

    #[mailgate::async_trait]
    impl AuthStrategy for Vault {
        async fn authenticate(&self, session: &mut SmtpSession<'_>) -> Result<()> {
            let payload = format!("\0{}\0{}", self.user, self.password.expose_secret());
            let line = format!(
                "AUTH PLAIN {}",
                base64::engine::general_purpose::STANDARD.encode(payload)
            );
            let reply = session.auth_command(&line, "AUTH PLAIN <redacted>").await?;
            if reply.code == 235 {
                Ok(())
            } else {
                Err(Error::AuthRefused {
                    strategy: "vault".into(),
                    server: session.server().into(),
                    reply: reply.to_string(),
                    retry_on_new_connection: false,
                })
            }
        }
    }

    fn build(settings: &Settings) -> Result<Arc<dyn AuthStrategy>> {
        let user = settings
            .require_mailbox(keys::EMAIL_FROM, "vault")?
            .email
            .to_string();
        let file = settings
            .base_dir()
            .join(settings.require(PASSWORD_FILE, "vault")?);
        let password = std::fs::read_to_string(&file)
            .map_err(|e| settings.invalid(PASSWORD_FILE, &format!("a readable file ({e})")))?;
        Ok(Arc::new(Vault {
            user,
            password: SecretString::from(password.trim().to_owned()),
        }))
    }

    mailgate::inventory::submit! {
        StrategyDescriptor {
            name: "vault",
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
        .property("mailgate.smtp.auth.strategy", "vault")
        .build()?;
    println!(
        "strategy {} chosen: {}",
        mailer.resolution().strategy,
        mailer.resolution().rule
    );
    Ok(())
}
