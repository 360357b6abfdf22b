//! `mailgate.outbox.*`: where the outbox is and how it is run.

use std::time::Duration;

use super::{DEFAULT_DELAY_WARNING, Settings, keys};
use crate::error::ConfigError;
use crate::outbox::{OutboxSettings, OutboxUrl};

impl Settings {
    /// `mailgate.outbox.*`, validated.
    pub(super) fn outbox_settings(&self) -> Result<OutboxSettings, ConfigError> {
        // Opaque here: the registered store that takes its scheme parses it.
        let url = self
            .entry(keys::OUTBOX_URL)
            .filter(|e| !e.value.trim().is_empty())
            .map(|e| OutboxUrl::new(e.value.as_str(), e.origin.clone()));
        let seconds = |key: &str, default: u64, max: u64| -> Result<Duration, ConfigError> {
            match self.value(key) {
                None => Ok(Duration::from_secs(default)),
                Some(v) => v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .map(Duration::from_secs)
                    .ok_or_else(|| self.invalid(key, &format!("a whole number from 1 to {max}"))),
            }
        };
        let hours = |key: &str, default: u64| -> Result<Duration, ConfigError> {
            seconds(key, default, 24 * 365).map(|d| d * 3600)
        };
        let outbox = OutboxSettings {
            url,
            retry_initial: seconds(keys::OUTBOX_RETRY_INITIAL, 30, 86_400)?,
            retry_max: seconds(keys::OUTBOX_RETRY_MAX, 1800, 7 * 86_400)?,
            max_age: hours(keys::OUTBOX_MAX_AGE, 72)?,
            keep_sent: hours(keys::OUTBOX_KEEP_SENT, 24)?,
            lease: seconds(keys::OUTBOX_LEASE, 300, 86_400)?,
            worker_timeout: seconds(keys::OUTBOX_WORKER_TIMEOUT, 30, 3600)?,
            delay_warning: self.delay_warning()?,
            keep_sent_bodies: self.flag_or(keys::OUTBOX_KEEP_SENT_BODIES, false)?,
        };
        if outbox.lease < self.server.timeout * 10 {
            tracing::warn!(
                "`{}` ({} s) is short: a delivery may take several `{}` and a worker that outlives its lease lets another send the message too; make it at least {} s",
                keys::OUTBOX_LEASE,
                outbox.lease.as_secs(),
                keys::TIMEOUT_SECONDS,
                (self.server.timeout * 10).as_secs()
            );
        }
        if outbox.retry_max < outbox.retry_initial {
            return Err(self.invalid(
                keys::OUTBOX_RETRY_MAX,
                &format!(
                    "at least {} (`{}`)",
                    outbox.retry_initial.as_secs(),
                    keys::OUTBOX_RETRY_INITIAL
                ),
            ));
        }
        Ok(outbox)
    }

    /// `mailgate.outbox.delayWarningHours`: hours with decimals (Postfix's
    /// `delay_warning_time`), 0 for none; at most a year.
    fn delay_warning(&self) -> Result<Option<Duration>, ConfigError> {
        let Some(v) = self.value(keys::OUTBOX_DELAY_WARNING) else {
            return Ok(Some(DEFAULT_DELAY_WARNING));
        };
        let hours = v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|h| h.is_finite() && (0.0..=24.0 * 365.0).contains(h))
            .ok_or_else(|| {
                self.invalid(
                    keys::OUTBOX_DELAY_WARNING,
                    "a number of hours from 0 (no delay notices) to 8760, decimals allowed (0.25 is 15 minutes)",
                )
            })?;
        Ok(Some(Duration::from_secs_f64(hours * 3600.0)).filter(|d| !d.is_zero()))
    }
}
