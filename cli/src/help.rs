//! What `--help`, the man page and the shell completions say beyond the
//! options: the exit codes of each command (sysexits, as msmtp uses them).

use std::io::Write as _;

use clap::CommandFactory as _;

use crate::{Cli, Failure};

/// The heading of the options every command takes.
pub(crate) const GLOBAL: &str = "Global options";

/// Every exit code, for `mailgate --help` and the man page.
pub(crate) const EXIT_CODES: &str = "\
Exit status (sysexits):
  0   ok
  64  usage error (EX_USAGE)
  65  bad message input: an address, CR/LF in a header, a message too large; or the server refused an address or the size (EX_DATAERR)
  66  an input file (--body-file, --html-file, --attach, --raw) is missing, unreadable or not a regular file (EX_NOINPUT)
  68  the SMTP server's host name does not resolve (EX_NOHOST)
  69  unavailable: TLS failed, STARTTLS or a usable AUTH mechanism not offered, a permanent 5xx, a feature not in this build (EX_UNAVAILABLE)
  70  demo: a message arrived other than expected (EX_SOFTWARE)
  71  the runtime or the demo could not start (EX_OSERR)
  74  stdout could not be written, or the outbox could not be read or written (EX_IOERR)
  75  temporary failure: connection refused, timeout, 4xx, token endpoint 5xx; try again later (EX_TEMPFAIL)
  77  authentication or permission refused: 530, 535, 5.7.x, invalid_client (EX_NOPERM)
  78  configuration error: a key missing or invalid, a properties, CA or key file unusable, a secret that does not decrypt (EX_CONFIG)
Each command's --help lists the codes it returns.";

/// `check`.
pub(crate) const CHECK: &str = "\
Exit status: 0 the settings are valid (with --connect: the server took the connection, TLS and the credentials); 64 usage; 74 the outbox cannot be read; 78 configuration error (a key missing or invalid, a file unusable, a secret that does not decrypt). With --connect also: 68 unknown host; 69 TLS, STARTTLS or AUTH mechanism unavailable; 75 temporary failure; 77 credentials refused. With -q nothing is printed: the exit status is the answer.";

/// `send`.
pub(crate) const SEND: &str = "\
Exit status: 0 sent (with --queue: sent or queued); 64 usage (no recipient, no subject, stdin a terminal or closed); 65 bad message input or refused address or size; 66 an input file missing, unreadable or not a regular file; 68 unknown host; 69 unavailable or refused for good; 74 the outbox cannot be written; 75 temporary failure; 77 authentication refused; 78 configuration error. With -q nothing is printed on success.";

/// `sendmail`.
pub(crate) const SENDMAIL: &str = "\
Exit status: 0 sent or stored in the outbox; 64 usage; 65 bad message input; 68 unknown host; 69 refused for good; 75 temporary failure without an outbox; 77 authentication refused; 78 configuration error. Silent on success.";

/// `token`.
pub(crate) const TOKEN: &str = "\
Exit status: 0 the token is on stdout; 64 the strategy uses no token; 69 the endpoint's certificate is not trusted, or its token malformed; 74 stdout could not be written; 75 token endpoint unreachable or 5xx; 77 credentials refused (invalid_client); 78 configuration error.";

/// `server`.
pub(crate) const SERVER: &str = "\
Exit status: 0 HOST:PORT is on stdout; 74 stdout could not be written; 78 configuration error.";

/// `queue`.
pub(crate) const QUEUE: &str = "\
Exit status: 0 ok (flush: none left queued, none became dead); 64 usage (an unknown id); 69 flush: some messages became dead; 74 the outbox cannot be read or written; 75 flush: some remain queued; 78 configuration error.";

/// `deliver`.
pub(crate) const DELIVER: &str = "\
Exit status: 0 stopped by SIGTERM or SIGINT; 74 the outbox cannot be read or written; 78 configuration error.";

/// `relay`.
pub(crate) const RELAY: &str = "\
Exit status: 0 stopped by SIGTERM or SIGINT (transactions and deliveries in hand finished); 74 the outbox cannot be read or written; 78 configuration error (also: a listen address it cannot bind). SIGHUP reloads the settings (invalid ones are logged, the old ones kept).";

/// `relay-user`.
pub(crate) const RELAY_USER: &str = "\
Exit status: 0 added or replaced; 64 usage (an empty password, a bad name, an unreadable users file); 78 mailgate.relay.usersFile not set.";

/// `encrypt`.
pub(crate) const ENCRYPT: &str = "\
Exit status: 0 done (--check: no secret in plain text); 64 usage; 66 the --rotate-key file is missing; 75 another `mailgate encrypt` holds the folder; 78 a secret in plain text (--check), a value under another key or encrypted by another tool, a folder the RV&S server reads (without --yes), a key or properties file unusable. With -q nothing is printed on success.";

/// `completions` and `man`.
pub(crate) const GENERATED: &str = "\
Exit status: 0 written to stdout (man --dir: the pages written into the folder); 73 the folder or a page cannot be written; 74 stdout could not be written.";

/// `demo`.
pub(crate) const DEMO: &str = "\
Exit status: 0 all three delivered as expected; 69 this build has no demo (cargo feature `demo`); 70 a message arrived other than expected; 71 the servers or folders could not be set up; else the code of the failing send.";

/// `mailgate completions SHELL`: the completion script on stdout.
pub(crate) fn completions(shell: clap_complete::Shell) -> Result<(), Failure> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "mailgate", &mut out);
    write_stdout(&out)
}

fn write_stdout(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(Failure::Stdout)
}
