//! The warnings a command shows on stderr, collected for `check --json`.
//!
//! Warnings come from many places (the settings loader, a plain-text
//! secret found when it is read, the outbox's lease check, a key rotation
//! finished at load), all as `tracing::warn!` events. Collecting the events
//! the logger lets through, rather than returning warnings from each of
//! those places, makes `warnings` hold exactly what stderr shows: one
//! decision, here, and nothing new to thread through the library.

use std::fmt::Write as _;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Each distinct warning, in the order first shown.
static COLLECTED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// A layer that records each WARN event that passes the logger's filter.
/// Installed only for `check --json`: a relay running for months must not
/// keep every warning it ever logged.
pub(crate) struct Collector;

impl<S: Subscriber> Layer<S> for Collector {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if *event.metadata().level() != Level::WARN {
            return;
        }
        let mut text = Text::default();
        event.record(&mut text);
        // A poisoned lock only means a panic elsewhere; the list is still whole.
        let mut all = COLLECTED.lock().unwrap_or_else(|p| p.into_inner());
        // A secret read twice (by the strategy, then by the check of every
        // secret) warns twice; the list names it once.
        if !all.contains(&text.0) {
            all.push(text.0);
        }
    }
}

/// The warnings collected so far.
pub(crate) fn collected() -> Vec<String> {
    COLLECTED.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// An event as the logger's line shows it: the message, then ` key=value`
/// for each other field.
#[derive(Default)]
struct Text(String);

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.insert_str(0, value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0.insert_str(0, &format!("{value:?}"));
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}
