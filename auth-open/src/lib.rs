//! The open mail relay strategy of mailgate: no `AUTH` command at all.
//!
//! Chosen when neither `mksis.smtp.oauth.authentication` nor
//! `mksis.smtp.authentication` is true, or by `mailgate.smtp.auth.strategy=open`.
//! Registers itself with the core registry; a binary links it by naming the
//! crate (`use mailgate_auth_open as _;`, which the `mailgate` facade does).

#![warn(missing_docs)]

use std::sync::Arc;

use mailgate_core::{AuthStrategy, Result, Settings, SmtpSession, StrategyDescriptor};

/// The registered name.
pub const NAME: &str = "open";

/// Sends without authenticating.
#[derive(Debug, Default, Clone, Copy)]
pub struct OpenRelay;

#[mailgate_core::async_trait]
impl AuthStrategy for OpenRelay {
    fn sends_credentials(&self) -> bool {
        false
    }

    async fn authenticate(&self, _session: &mut SmtpSession<'_>) -> Result<()> {
        Ok(())
    }
}

fn build(_: &Settings) -> Result<Arc<dyn AuthStrategy>> {
    Ok(Arc::new(OpenRelay))
}

mailgate_core::inventory::submit! {
    StrategyDescriptor {
        name: NAME,
        keys: &[],
        build,
        module_path: module_path!(),
    }
}
