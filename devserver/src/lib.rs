//! Development SMTP server and OAuth 2.0 token endpoint for mailgate's demo,
//! tests and benchmarks. Not part of the library's build.
//!
//! - [`DevSmtpServer`]: SMTP on 127.0.0.1 (ephemeral port), plain, STARTTLS
//!   (optionally required) or implicit TLS with a generated CA ([`DevCa`]);
//!   AUTH PLAIN, LOGIN, XOAUTH2 and OAUTHBEARER with the error challenges
//!   real servers send; records messages, AUTH attempts and every command
//!   line with whether it came pipelined ([`ReceivedCommand`]); advertises
//!   PIPELINING. Injects faults ([`Fault`]): other replies, delays,
//!   disconnects, and the hostile ones for testing a client against an
//!   attacker: raw bytes instead of a reply, bytes injected after the
//!   STARTTLS `220`, floods, replies that trickle in byte by byte.
//!   Strict about line endings by default: only `<CR><LF>.<CR><LF>` ends
//!   DATA, and bare LF or CR is refused (see
//!   [`DevSmtpServerBuilder::reject_bare_lf`]).
//! - [`DevTokenEndpoint`]: the client-credentials grant (RFC 6749 4.4) over
//!   HTTP on 127.0.0.1, with client_secret_basic and client_secret_post;
//!   issued tokens go to a [`TokenRegistry`] the SMTP server can accept,
//!   for any user unless bound to one
//!   ([`DevTokenEndpointBuilder::client_user`]).
//! - [`DelayProxy`]: a TCP proxy adding a fixed latency in each direction,
//!   for benchmarks, recording what clients send.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use mailgate_devserver::{DevSmtpServer, DevTokenEndpoint, Fault, Mechanism, Stage};
//! let endpoint = DevTokenEndpoint::builder()
//!     .client("client-id", "client-secret")
//!     .start()
//!     .await?;
//! let smtp = DevSmtpServer::builder()
//!     .starttls_required()
//!     .mechanisms([Mechanism::XOAuth2, Mechanism::OAuthBearer])
//!     .token_registry(endpoint.registry())
//!     .fault(Fault::reply(Stage::Mail, 421, "4.3.2 Try again later").times(1))
//!     .start()
//!     .await?;
//! smtp.ca().write_ca_pem("/tmp/dev-ca.pem")?;
//! // point the client at endpoint.url() and smtp.port() ...
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod proxy;
mod shared;
pub mod smtp;
pub mod tls;
pub mod token;

pub use proxy::{DelayProxy, ProxyChunk};
pub use smtp::{
    AuthAttempt, AuthInfo, DevSmtpServer, DevSmtpServerBuilder, Fault, FaultAction, Mechanism,
    ReceivedCommand, ReceivedMessage, Stage, TlsMode, TokenValidator,
};
pub use tls::DevCa;
pub use token::{
    ClientAuthMethod, DevTokenEndpoint, DevTokenEndpointBuilder, IssuedToken, TokenFault,
    TokenFaultKind, TokenRegistry, TokenRequest,
};
