//! `mailgate send`: a message composed from options, or a prepared one
//! (`--raw`).

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use clap::Args;
use mailgate::message::raw;
use mailgate::{Attachment, Envelope, Error, Mailer, OutgoingMessage};

use crate::report::ErrorReport;
use crate::{Failure, print_out};

/// Options of `mailgate send`.
#[derive(Args, Debug)]
pub(crate) struct SendArgs {
    /// Recipient; repeat or separate with commas
    #[arg(long, value_name = "ADDR", help_heading = "Envelope")]
    to: Vec<String>,
    /// Carbon-copy recipient
    #[arg(long, value_name = "ADDR", help_heading = "Envelope")]
    cc: Vec<String>,
    /// Blind carbon-copy recipient (envelope only)
    #[arg(long, value_name = "ADDR", help_heading = "Envelope")]
    bcc: Vec<String>,
    /// Sender [default: mksis.logging.email.from]
    #[arg(long, value_name = "ADDR", help_heading = "Envelope")]
    from: Option<String>,
    /// Subject line
    #[arg(long, help_heading = "Message")]
    subject: Option<String>,
    /// Body text (else --body-file, else stdin)
    #[arg(long, conflicts_with = "body_file", help_heading = "Message")]
    body: Option<String>,
    /// Read the body from a file (`-`: stdin)
    #[arg(long, value_name = "FILE", help_heading = "Message")]
    body_file: Option<PathBuf>,
    /// The body is HTML
    #[arg(long, help_heading = "Message")]
    html: bool,
    /// An HTML version of the text body: the message becomes multipart/alternative
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "html",
        help_heading = "Message"
    )]
    html_file: Option<PathBuf>,
    /// Attach a file (repeatable); its type is guessed from its name
    #[arg(long, value_name = "FILE", help_heading = "Message")]
    attach: Vec<PathBuf>,
    /// Reply-To address (repeatable)
    #[arg(long, value_name = "ADDR", help_heading = "Message")]
    reply_to: Vec<String>,
    /// Extra header, `Name: value` (repeatable)
    #[arg(long, value_name = "'NAME: VALUE'", help_heading = "Message")]
    header: Vec<String>,
    /// Send a prepared RFC 5322 message from FILE (`-`: stdin); recipients
    /// from --to/--cc/--bcc, else from its To, Cc and Bcc. Date,
    /// Message-ID, MIME-Version and From are added if missing, its Bcc
    /// field is removed and it is converted to fit the server (see --as-is)
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = ["subject", "body", "body_file", "html", "html_file", "attach", "reply_to", "header"],
        help_heading = "Message"
    )]
    raw: Option<PathBuf>,
    /// With --raw: send the message byte for byte as given (a DKIM-signed
    /// one stays valid): nothing added, nothing converted, and its Bcc
    /// field is NOT removed. Refused (exit 65) if a line ends in a bare LF
    /// or CR, a line is over 998 octets, or it is 8-bit and the server
    /// offers no 8BITMIME (no SMTPUTF8 for 8-bit headers). Not with --queue
    #[arg(long, help_heading = "Message")]
    as_is: bool,
    /// Store the message in the outbox first, then try it once: it is
    /// delivered later if the server cannot take it now. Prints `sent ID`
    /// or `queued ID`
    #[arg(long, help_heading = "Output")]
    queue: bool,
    /// Print one JSON object: message_id, recipients, accepted, refused,
    /// status (with --queue: id, status, and recipients when they differ);
    /// on failure {"error": {...}}, or an `error` member beside those
    #[arg(long, help_heading = "Output")]
    pub(crate) json: bool,
    /// Send to no one if the server refuses any recipient (by default the
    /// accepted ones get it and the exit status names the refusals)
    #[arg(long, conflicts_with = "queue", help_heading = "Output")]
    pub(crate) all_or_nothing: bool,
}

/// What `send` does with the message: send it now, or store it first.
enum Dispatch {
    Delivery(mailgate::Delivery),
    Queued(mailgate::outbox::MessageId),
}

/// Where the body comes from, decided before anything is read.
enum BodySource {
    Text(String),
    File(PathBuf),
    Stdin,
}

/// Checks the arguments that need no settings: usage errors come first.
pub(crate) fn check_send_args(args: &SendArgs) -> Result<(), Error> {
    if args.as_is && args.raw.is_none() {
        return Err(Error::Usage(
            "--as-is sends a prepared message as given: pass it with --raw FILE (or --raw - for stdin)".into(),
        ));
    }
    if args.as_is && args.queue {
        // The outbox converts a stored message to fit the server at
        // delivery and keeps no flag that would forbid it.
        return Err(Error::Usage(
            "--as-is cannot be combined with --queue: the outbox may convert a message at delivery; send it now without --queue, or queue it without --as-is".into(),
        ));
    }
    if args.raw.is_some() {
        if args.raw.as_deref() == Some(Path::new("-")) {
            stdin_ready()?;
        }
        return Ok(());
    }
    if args.to.is_empty() && args.cc.is_empty() && args.bcc.is_empty() {
        return Err(Error::Usage(
            "no recipient: pass --to ADDR (or --cc, --bcc)".into(),
        ));
    }
    if args.subject.is_none() {
        return Err(Error::Usage("no subject: pass --subject TEXT".into()));
    }
    if matches!(body_source(args), BodySource::Stdin) {
        stdin_ready()?;
    }
    Ok(())
}

fn body_source(args: &SendArgs) -> BodySource {
    match (&args.body, &args.body_file) {
        (Some(text), _) => BodySource::Text(text.clone()),
        (None, Some(path)) if path.as_os_str() == "-" => BodySource::Stdin,
        (None, Some(path)) => BodySource::File(path.clone()),
        (None, None) => BodySource::Stdin,
    }
}

/// stdin can be read: it is not a terminal (nobody is piping a body) and
/// it is open. /dev/null, opened for reading only (a shell's `< /dev/null`)
/// or for reading and writing (Python's `subprocess.DEVNULL`, daemon(3),
/// and Rust's runtime when fd 0 was closed), is an empty body: those
/// callers mean "no input", and refusing them loses their mail.
fn stdin_ready() -> Result<(), Error> {
    if std::io::stdin().is_terminal() {
        return Err(Error::Usage(
            "no message: pass --body TEXT, --body-file FILE or --raw FILE, or pipe it on stdin (stdin is a terminal)".into(),
        ));
    }
    // SAFETY: F_GETFL on fd 0 only reads its flags.
    if unsafe { libc::fcntl(0, libc::F_GETFL) } == -1 {
        return Err(Error::Usage(
            "stdin is closed (no file descriptor 0): pass --body, --body-file or --raw FILE, or give the command an input".into(),
        ));
    }
    Ok(())
}

/// Reads at most `limit` bytes from `source`; more is an error naming it.
pub(crate) fn read_bounded(
    mut source: impl Read,
    what: &str,
    limit: u64,
) -> Result<Vec<u8>, Error> {
    let mut buf = Vec::new();
    source
        .by_ref()
        .take(limit.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| Error::InvalidMessage {
            field: what.to_owned(),
            reason: format!("cannot read it: {e}"),
        })?;
    if buf.len() as u64 > limit {
        return Err(Error::InvalidMessage {
            field: what.to_owned(),
            reason: format!(
                "it is larger than {limit} bytes (`mailgate.smtp.maxMessageBytes`); nothing was sent"
            ),
        });
    }
    Ok(buf)
}

/// EX_NOINPUT: an input file is missing, unreadable or not a regular file.
const EXIT_NOINPUT: u8 = 66;

/// Reads an input file: opened without blocking, refused unless it is a
/// regular file (a FIFO, `/dev/zero`, a folder: exit 66, nothing read), and
/// at most `limit` bytes (more: exit 65, nothing sent).
fn read_file(path: &Path, what: &str, limit: u64) -> Result<Vec<u8>, Failure> {
    use mailgate::properties::fs::{ReadError, read_regular};
    read_regular(path, limit).map_err(|e| match e {
        ReadError::TooLarge { .. } => Error::InvalidMessage {
            field: format!("{what} {}", path.display()),
            reason: format!(
                "it is larger than {limit} bytes (`mailgate.smtp.maxMessageBytes`); nothing was sent"
            ),
        }
        .into(),
        ReadError::NotRegular { .. } => Failure::exit(
            EXIT_NOINPUT,
            "no_input",
            format!(
                "{what} {}: {e}; nothing was sent (to read a pipe, give `-` and pipe it to stdin)",
                path.display()
            ),
        ),
        e => Failure::exit(
            EXIT_NOINPUT,
            "no_input",
            format!("{what}: cannot read {}: {e}; nothing was sent", path.display()),
        ),
    })
}

fn utf8(bytes: Vec<u8>, what: &str) -> Result<String, Error> {
    String::from_utf8(bytes).map_err(|e| Error::InvalidMessage {
        field: what.to_owned(),
        reason: format!(
            "it is not UTF-8 (invalid byte at offset {}); send it as an attachment (--attach) or with --raw",
            e.utf8_error().valid_up_to()
        ),
    })
}

/// `mailgate send`.
pub(crate) async fn send(mailer: &Mailer, args: &SendArgs, quiet: bool) -> Result<(), Failure> {
    let limit = mailer.settings().max_message_bytes();
    let dispatched = match &args.raw {
        Some(path) => {
            let message = if path.as_os_str() == "-" {
                read_bounded(std::io::stdin().lock(), "message on stdin", limit)?
            } else {
                read_file(path, "--raw", limit)?
            };
            // send_raw removes the Bcc field whoever the recipients are;
            // send_raw_exact keeps it, as it keeps every byte.
            let envelope = raw_envelope(mailer, args, &message)?;
            if args.as_is {
                Dispatch::Delivery(mailer.send_raw_exact(&envelope, &message).await?)
            } else if args.queue {
                Dispatch::Queued(mailer.enqueue_raw(&envelope, &message).await?)
            } else {
                Dispatch::Delivery(mailer.send_raw(&envelope, &message).await?)
            }
        }
        None => {
            let body = match body_source(args) {
                BodySource::Text(text) => text,
                BodySource::File(path) => {
                    utf8(read_file(&path, "--body-file", limit)?, "--body-file")?
                }
                BodySource::Stdin => utf8(
                    read_bounded(std::io::stdin().lock(), "body on stdin", limit)?,
                    "body on stdin",
                )?,
            };
            let html_alternative = match &args.html_file {
                Some(path) => Some(utf8(read_file(path, "--html-file", limit)?, "--html-file")?),
                None => None,
            };
            let mut attachments = Vec::new();
            for path in &args.attach {
                attachments.push(attachment(path, limit)?);
            }
            let mut headers = Vec::new();
            for h in &args.header {
                headers.push(parse_header(h)?);
            }
            let message = OutgoingMessage {
                from: args.from.clone(),
                to: args.to.clone(),
                cc: args.cc.clone(),
                bcc: args.bcc.clone(),
                reply_to: args.reply_to.clone(),
                subject: args.subject.clone().unwrap_or_default(),
                body,
                html: args.html,
                html_alternative,
                headers,
                attachments,
                message_id_domain: None,
            };
            if args.queue {
                Dispatch::Queued(mailer.enqueue_message(message).await?)
            } else {
                Dispatch::Delivery(mailer.send_message(message).await?)
            }
        }
    };
    let delivery = match dispatched {
        Dispatch::Queued(id) => {
            return crate::queue::send_queued(mailer, id, args.json, quiet).await;
        }
        Dispatch::Delivery(delivery) => delivery,
    };
    let mut failure = refusals(&delivery);
    if args.json {
        let refused: Vec<serde_json::Value> = delivery
            .refused
            .iter()
            .map(|r| serde_json::json!({ "address": r.address, "code": r.code, "reply": r.reply }))
            .collect();
        let mut obj = serde_json::json!({
            "message_id": delivery.message_id,
            "recipients": delivery.recipients,
            "accepted": delivery.accepted,
            "refused": refused,
            "status": if delivery.is_complete() { "sent" } else { "partly sent" },
        });
        failure = failure.map(|f| f.put_in(&mut obj));
        print_out(format_args!("{obj}"))?;
    } else if !quiet {
        print_out(format_args!("sent: {}", delivery.reply))?;
    }
    match failure {
        Some(failure) => Err(failure),
        None => Ok(()),
    }
}

/// A delivery some recipients did not get is a failure of their class
/// (65, 69 or 75), with a text that says who got it.
pub(crate) fn refusals(delivery: &mailgate::Delivery) -> Option<Failure> {
    let e = delivery.refusal()?;
    let text = format!("{e} ({})", delivery.accepted.join(", "));
    Some(Failure::Exit(Box::new(ErrorReport::with_message(&e, text))))
}

/// The envelope of a `--raw` message: the options, else its headers; and
/// whether the recipients came from its headers.
fn raw_envelope(mailer: &Mailer, args: &SendArgs, message: &[u8]) -> Result<Envelope, Error> {
    let mut recipients: Vec<String> = args
        .to
        .iter()
        .chain(&args.cc)
        .chain(&args.bcc)
        .flat_map(|l| mailgate::message::split_addresses(l))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if recipients.is_empty() {
        recipients = raw::header_recipients(message)?;
    }
    let from = match &args.from {
        Some(from) => Some(from.clone()),
        None => mailer.settings().sender().map(|m| m.email.to_string()),
    };
    envelope(from.as_deref(), &recipients)
}

pub(crate) fn envelope(from: Option<&str>, recipients: &[String]) -> Result<Envelope, Error> {
    if recipients.is_empty() {
        return Err(Error::InvalidMessage {
            field: "to".into(),
            reason: "no recipient: none given and none in the message's To, Cc or Bcc".into(),
        });
    }
    let from = from
        .map(|f| mailgate::message::parse_mailbox("from", f).map(|m| m.email))
        .transpose()?;
    let mut to = Vec::new();
    for r in recipients {
        to.push(mailgate::message::parse_mailbox("to", r)?.email);
    }
    Envelope::new(from, to).map_err(|e| Error::InvalidMessage {
        field: "to".into(),
        reason: e.to_string(),
    })
}

fn attachment(path: &Path, limit: u64) -> Result<Attachment, Failure> {
    let content = read_file(path, "--attach", limit)?;
    let filename = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "attachment".to_owned());
    let content_type = mime_guess::from_path(path)
        .first_or_octet_stream()
        .essence_str()
        .to_owned();
    Ok(Attachment {
        filename,
        content_type,
        content,
    })
}

fn parse_header(spec: &str) -> Result<(String, String), Error> {
    match spec.split_once(':') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(Error::Usage(format!(
            "--header `{}`: expected `Name: value`",
            mailgate::smtp::escape_controls(spec, 80)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_from_the_command_line() {
        assert_eq!(
            parse_header("X-Build: 42").unwrap(),
            ("X-Build".into(), "42".into())
        );
        assert_eq!(
            parse_header("X-Empty:").unwrap(),
            ("X-Empty".into(), String::new())
        );
        assert_eq!(parse_header("nocolon").unwrap_err().exit_code(), 64);
    }
}
