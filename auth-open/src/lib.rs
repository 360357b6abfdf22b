//! The open mail relay strategy of mailgate: no `AUTH` command at all.
//!
//! Provides the vendor's open-relay mode: chosen when neither
//! `mksis.smtp.oauth.authentication` nor `mksis.smtp.authentication` is true,
//! or by `mailgate.smtp.auth.strategy=open`. Register [`DESCRIPTOR`] (the
//! `mailgate` facade's `default_registry()` does, with feature `open`).

#![warn(missing_docs)]

use mailgate_core::{
    AuthStrategy, Result, Settings, SharedStrategy, SmtpSession, StrategyDescriptor, VendorMode,
};

/// The registered name.
pub const NAME: &str = "open";

/// Sends without authenticating.
#[derive(Debug, Default, Clone, Copy)]
pub struct OpenRelay;

#[mailgate_core::async_trait]
impl AuthStrategy for OpenRelay {
    type Credential = ();

    async fn prepare(&self) -> Result<()> {
        Ok(())
    }

    async fn authenticate(&self, _session: &mut SmtpSession<'_>, _: ()) -> Result<()> {
        Ok(())
    }

    fn sends_credentials(&self) -> bool {
        false
    }
}

fn build(_: &Settings) -> Result<SharedStrategy> {
    Ok(SharedStrategy::new(OpenRelay))
}

/// The registration: name `open`, the open-relay mode, no keys.
pub static DESCRIPTOR: StrategyDescriptor =
    StrategyDescriptor::new(NAME, build, module_path!()).provides(VendorMode::OpenRelay);
