//! Messages: composed from parts ([`OutgoingMessage`]) or prepared
//! elsewhere ([`raw`]), checked so that what goes on the wire is valid
//! RFC 5322 whatever the input holds, and addresses checked before anything
//! costly is done with them.

pub mod address;
pub mod aliases;
mod compose;
pub mod convert;
pub mod raw;

pub use address::{parse_mailbox, split_addresses};
pub use compose::{Attachment, MAX_SUBJECT, OutgoingMessage, normalize_crlf};
