//! The SMTP listener of `mailgate relay`: a local store-and-forward relay
//! that legacy senders (printers, cron, an ALM server's triggers) submit
//! to. Each message is handed to a [`MessageSink`] (the durable outbox)
//! and the client gets `250` only after the sink stored it; mailgate
//! delivers it upstream later.
//!
//! ```no_run
//! use std::sync::Arc;
//! use mailgate_relay::{MessageSink, RelayConfig, RelayServer, Rejection, Submission};
//!
//! struct Print;
//!
//! #[mailgate_relay::async_trait]
//! impl MessageSink for Print {
//!     async fn accept(&self, envelope: Submission, data: Vec<u8>) -> Result<String, Rejection> {
//!         println!("{} -> {:?}: {} bytes", envelope.from, envelope.to, data.len());
//!         Ok("Q1".to_owned())
//!     }
//! }
//!
//! # async fn demo() -> std::io::Result<()> {
//! let server = RelayServer::bind("127.0.0.1:2525".parse().unwrap(), RelayConfig::default()).await?;
//! let handle = server.handle(); // reload with handle.set_config(...), read handle.stats()
//! server.run(Arc::new(Print), async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
//!
//! # What a client meets
//!
//! - A client outside [`RelayConfig::allow`] gets `554 5.7.1` and nothing
//!   else; beyond [`RelayConfig::max_connections`] sessions, `421 4.7.0`.
//! - `220` greeting; EHLO offers PIPELINING, `SIZE n`, 8BITMIME, SMTPUTF8,
//!   ENHANCEDSTATUSCODES, STARTTLS (when TLS is configured and not yet
//!   active) and `AUTH PLAIN LOGIN` (when users are set, and TLS is active
//!   or not required). HELO works too (then no MAIL parameter).
//! - MAIL takes `SIZE=`, `BODY=7BIT|8BITMIME`, `SMTPUTF8` and (when AUTH
//!   is offered) `AUTH=`; any other parameter is `555 5.5.4`, a duplicate
//!   or bad value `501 5.5.4`. RCPT takes none (no DSN). Addresses are
//!   checked (RFC 5321 syntax, at most 254 octets, no control characters,
//!   no `<`/`>` even quoted, non-ASCII only with SMTPUTF8) and passed on
//!   as sent, quoted local parts still quoted.
//! - Command lines end in CRLF only: a bare LF, a bare CR or another
//!   control character in a command is `500 5.5.2`. DATA ends only at
//!   `<CR><LF>.<CR><LF>`; a bare LF or CR anywhere in the data refuses the
//!   message (`550 5.5.2`, SMTP smuggling), after reading it to its end.
//! - After `220` to STARTTLS, whatever the client had sent already is
//!   discarded unread (RFC 3207 section 6), and the session starts over
//!   (EHLO again, no AUTH, no transaction).
//! - A DATA that is refused (no MAIL, no valid recipient) with more input
//!   already sent behind it (message content pipelined without waiting
//!   for the 354) gets `554 5.5.0` and the connection is closed: that
//!   content never runs as commands.
//! - Every stored message gets a trace field first (RFC 5321 4.4):
//!   `Received: from HELO (HOST [IP]) by NAME (mailgate) with ESMTP[S][A]
//!   id ID [for <rcpt>]; DATE`, the client's names cleaned of anything a
//!   header may not hold. A message already carrying more than
//!   [`RelayConfig::max_hops`] Received fields is on a loop: `554 5.4.6`,
//!   not stored. With [`RelayConfig::instance_id`] the EHLO reply's first
//!   line shows the id, so that a client in the same process can tell it
//!   is talking to itself.
//! - Wrong credentials get `535 5.7.8` after [`RelayConfig::auth_failure_delay`];
//!   `*` cancels (`501`); [`RelayConfig::max_auth_failures`] failures close
//!   the session. AUTH payloads and passwords are never logged.
//! - Limits: see [`RelayConfig`]. Every read and write has a deadline;
//!   the input buffer has a fixed size; a message is capped at
//!   `max_message_bytes` while it is read. The data of all sessions
//!   together is bounded by [`RelayConfig::max_data_memory`]: beyond it
//!   `DATA` gets `452 4.3.1` and the client retries later. A message is
//!   received into one buffer (sized by `SIZE=` when declared) with room
//!   for the trace field in front, and handed to the sink as it is.
//!
//! # Why not `smtp-proto`
//!
//! Stalwart's `smtp-proto` 0.2.5 was evaluated for parsing command lines
//! (it builds with rustc 1.95, and 50 million random command lines did
//! not make it panic). It is not used, because this relay passes what it
//! accepts on to another server later, so what it accepts must mean the
//! same thing there, and `smtp-proto` is lenient in ways that break that:
//!
//! - it ends a command at a bare LF and silently drops CR bytes anywhere
//!   in a line (`MAIL FROM:<a\r@b>` becomes `a@b`);
//! - it unquotes quoted local parts: `RCPT TO:<"x>"@b>` yields `x>@b`,
//!   which a next hop reads as `<x>`;
//! - `SIZE=` with more than 20 digits wraps instead of saturating
//!   (`SIZE=99999999999999999999999` parses as 999), which would let an
//!   oversized declaration pass the SIZE check;
//! - it accepts DEL and quoted control characters in addresses, and any
//!   control character in the EHLO name;
//! - it parses some fifteen MAIL/RCPT parameters this relay does not
//!   offer (DSN, DELIVERBY, FUTURERELEASE, MT-PRIORITY, REQUIRETLS, ...),
//!   some into values indistinguishable from absence (`MT-PRIORITY=0`),
//!   and keeps the last of duplicates, so refusing what was not offered
//!   (RFC 5321 4.1.1.11: 555) would depend on its internals;
//! - its `DataReceiver` ends data at `<CR><LF>.<CR><CR><LF>` (treating the
//!   data after it as commands) and has no size or line-length bound;
//! - its line limit is a fixed 4096, not `max_line`.
//!
//! The subset this relay speaks is small, so it has its own strict codec
//! ([`codec`]: the command parser, property-tested; the DATA reader,
//! tested for chunking independence; the session state machine, fuzzed),
//! which the dev server (`mailgate-devserver`) runs on too.

#![warn(missing_docs)]

mod budget;
mod cidr;
pub mod codec;
mod config;
mod server;
mod session;
mod sink;
mod stats;
pub mod stream;
mod trace;
mod users;

pub use cidr::{Cidr, CidrError};
pub use config::{ConfigError, RelayConfig, default_allow};
pub use server::{RelayHandle, RelayServer, serve_connection};
pub use sink::{DsnRequest, MessageSink, RecipientDsn, Rejection, Submission};
pub use stats::{RefusedStats, RelayStats};
pub use users::{
    MAX_USER_NAME, UserChange, Users, UsersError, add_user, check_user_name, hash_password,
};

// Re-exported so that implementors need not depend on these crates
// themselves.
pub use async_trait::async_trait;
pub use rustls;
