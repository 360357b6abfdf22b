//! `mailgate sendmail`, the drop-in for `/usr/sbin/sendmail` (also what
//! runs when the binary is called `sendmail`): options as cron, cronie,
//! PHP's `mail()`, mailx, mutt, git send-email and logwatch write them;
//! bare local names (`root`) qualified or mapped through an aliases file,
//! as msmtp and Postfix do.

use crate::keys as cli_keys;
use std::path::PathBuf;

use mailgate::message::aliases::{Aliases, bare_name};
use mailgate::message::raw;
use mailgate::{Error, Mailer, Settings, keys};

use crate::Failure;
use crate::send::{envelope, read_bounded, refusals};

/// A sendmail command line, as cron, PHP's mail(), git send-email and
/// monitoring tools write it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SendmailArgs {
    /// `-t`: recipients from the message's To, Cc and Bcc (Bcc then removed).
    pub(crate) from_headers: bool,
    /// `-i` / `-oi`: a line with a single `.` does not end the message.
    pub(crate) ignore_dots: bool,
    /// `-f ADDR` / `-r ADDR`: the envelope sender (`<>` or empty: the null
    /// sender).
    pub(crate) sender: Option<String>,
    /// `-F NAME`: the full name for a From the message lacks.
    pub(crate) full_name: Option<String>,
    /// `-C DIR`: the config folder.
    pub(crate) config_dir: Option<PathBuf>,
    /// Recipients given as arguments.
    pub(crate) recipients: Vec<String>,
    /// `--help`: print the usage, send nothing.
    pub(crate) help: bool,
    /// `--version`: print the version, send nothing.
    pub(crate) version: bool,
}

/// Options that take a value and are accepted and ignored (as msmtp does).
const IGNORED_WITH_VALUE: &[char] = &['B', 'h', 'L', 'N', 'O', 'R', 'V', 'X'];
/// Options without a value that are accepted and ignored. `-v` shows the
/// SMTP conversation through the global `-v` (as msmtp's `-v` does).
const IGNORED_FLAGS: &[char] = &['G', 'U', 'm', 'n', 'v', 'd'];

/// What `sendmail --help` prints.
pub(crate) const USAGE: &str = "\
Usage: sendmail [-t] [-i] [-oi] [-f ADDR] [-F NAME] [-C DIR] [--] [RCPT...] < MESSAGE
       mailgate [--config-dir DIR] sendmail [same options]

Reads a message on stdin and sends it (or stores it in the outbox and sends it at once), like /usr/sbin/sendmail.

  -t          recipients from the message's To, Cc and Bcc (Bcc is removed)
  -i, -oi     a line with a single `.` does not end the message
  -f ADDR     envelope sender (also -r); `-f '<>'` or `-f ''` sends with the null sender
  -F NAME     full name for a From the message lacks
  -C DIR      config folder (else $MAILGATE_CONFIG_DIR, else /etc/mailgate when called as sendmail)
  -v          show the SMTP conversation on stderr (AUTH redacted)
  --help, --version
Accepted and ignored: -oem -odi -odb -oXxx -bm -B TYPE -N DSN -R RET -V ENVID -X FILE -h N -L TAG -O OPT -G -U -m -n -d.

A bare local name (root, www-data) as sender or recipient gets @ and mailgate.sendmail.domain (default: the domain of mksis.logging.email.from); mailgate.sendmail.aliases maps local names to addresses (msmtp's format: `root: ops@example.com`, `default: admin@example.com`).
";

/// Parses sendmail's options: single letters, values attached (`-fADDR`) or
/// separate (`-f ADDR`), `-o*` flags ignored but for `-oi`, `--` ends them.
pub(crate) fn parse_sendmail_args(args: &[String]) -> Result<SendmailArgs, Error> {
    let mut out = SendmailArgs::default();
    let mut i = 0;
    let usage = |msg: String| {
        Error::Usage(format!(
            "sendmail: {msg} (sendmail --help lists the options)"
        ))
    };
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        match arg.as_str() {
            "--" => {
                out.recipients.extend(args[i..].iter().cloned());
                break;
            }
            "--help" => {
                out.help = true;
                continue;
            }
            "--version" => {
                out.version = true;
                continue;
            }
            _ => {}
        }
        let Some(opt) = arg.strip_prefix('-').filter(|o| !o.is_empty()) else {
            out.recipients.push(arg.clone());
            continue;
        };
        let mut chars = opt.chars();
        let letter = chars.next().unwrap_or_default();
        let attached = chars.as_str();
        let mut value = |name: char| -> Result<String, Error> {
            if !attached.is_empty() {
                return Ok(attached.to_owned());
            }
            let v = args
                .get(i)
                .cloned()
                .ok_or_else(|| usage(format!("-{name} needs a value")))?;
            i += 1;
            Ok(v)
        };
        match letter {
            't' if attached.is_empty() => out.from_headers = true,
            'i' if attached.is_empty() => out.ignore_dots = true,
            'o' => {
                // -oi and -o i mean -i; every other -o option is ignored.
                if value('o')? == "i" {
                    out.ignore_dots = true;
                }
            }
            'f' | 'r' => out.sender = Some(value(letter)?),
            'F' => out.full_name = Some(value('F')?),
            'C' => out.config_dir = Some(PathBuf::from(value('C')?)),
            'b' => match attached {
                "m" | "" => {}
                other => {
                    return Err(usage(format!(
                        "-b{other} is not supported: mailgate only delivers a message (-bm)"
                    )));
                }
            },
            c if IGNORED_WITH_VALUE.contains(&c) => {
                let _ = value(c)?;
            }
            c if IGNORED_FLAGS.contains(&c) => {}
            _ => {
                return Err(usage(format!(
                    "unknown option -{}",
                    mailgate::smtp::escape_controls(opt, 40)
                )));
            }
        }
    }
    Ok(out)
}

/// Reads the message from stdin: to EOF with `-i`, else up to a line that
/// holds only `.` (traditional sendmail).
fn read_sendmail_input(ignore_dots: bool, limit: u64) -> Result<Vec<u8>, Error> {
    let input = read_bounded(std::io::stdin().lock(), "message on stdin", limit)?;
    if ignore_dots {
        return Ok(input);
    }
    let mut start = 0;
    while start < input.len() {
        let end = input[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(input.len(), |n| start + n + 1);
        let line = &input[start..end];
        if line == b".\n" || line == b".\r\n" || line == b"." {
            return Ok(input[..start].to_vec());
        }
        start = end;
    }
    Ok(input)
}

/// `mailgate sendmail`: reads the message on stdin and sends it (silent on
/// success, like sendmail).
pub(crate) async fn sendmail(mailer: &Mailer, args: &SendmailArgs) -> Result<(), Failure> {
    let local = LocalNames::from_settings(mailer.settings())?;
    let limit = mailer.settings().max_message_bytes();
    let message = read_sendmail_input(args.ignore_dots, limit)?;
    let mut given: Vec<String> = args
        .recipients
        .iter()
        .flat_map(|r| mailgate::message::split_addresses(r))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if args.from_headers {
        given.extend(raw::header_recipients(&message)?);
    }
    let recipients = local.recipients(&given)?;
    if recipients.is_empty() {
        return Err(Error::Usage(
            "sendmail: no recipient: give addresses as arguments, or -t to read To, Cc and Bcc"
                .into(),
        )
        .into());
    }
    let sender = match args.sender.as_deref() {
        Some(s) => local.sender(s)?,
        None => mailer.settings().sender().map(|m| m.email.to_string()),
    };
    // A From the message lacks is the envelope sender, named by -F.
    let name = args.full_name.as_deref();
    let envelope = envelope(sender.as_deref(), &recipients)?;
    let queue = mailer
        .settings()
        .flag_or(cli_keys::SENDMAIL_QUEUE, true)
        .map_err(Error::from)?;
    if !queue || mailer.outbox().is_err() {
        // mailgate.sendmail.queue=false, or a build without an outbox
        // store: sent at once, as msmtp does (75 when the server cannot
        // take it now); the outbox is not opened, so nothing is created.
        let delivery = mailer.send_raw_named(&envelope, name, &message).await?;
        return refusals(&delivery).map_or(Ok(()), Err);
    }
    // As sendmail does: durable first, then one attempt; silent on success.
    match mailer.enqueue_raw_named(&envelope, name, &message).await {
        Ok(id) => crate::queue::send_queued(mailer, id, false, true).await,
        Err(e @ Error::Outbox { .. }) => {
            // The mail still goes out; the operator learns the outbox is unusable.
            tracing::warn!("{e}; sending directly, without the outbox");
            let delivery = mailer.send_raw_named(&envelope, name, &message).await?;
            refusals(&delivery).map_or(Ok(()), Err)
        }
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------
// Local names

/// How bare local names (`root`, `www-data`: no `@`) become addresses: the
/// aliases file first (its `default` for names it does not list), else
/// `@` and the domain.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct LocalNames {
    domain: Option<String>,
    aliases: Aliases,
}

impl LocalNames {
    /// From `mailgate.sendmail.domain` (else the domain of
    /// `mksis.logging.email.from`) and `mailgate.sendmail.aliases`.
    pub(crate) fn from_settings(settings: &Settings) -> Result<LocalNames, Error> {
        let domain = settings
            .value(cli_keys::SENDMAIL_DOMAIN)
            .map(str::to_owned)
            .or_else(|| settings.sender().map(|m| m.email.domain().to_owned()));
        let aliases = match settings.value(cli_keys::SENDMAIL_ALIASES) {
            Some(path) => {
                let path = settings.base_dir().join(path);
                Aliases::load(&path).map_err(|reason| {
                    settings.invalid(
                        cli_keys::SENDMAIL_ALIASES,
                        &format!("a readable aliases file: {reason}"),
                    )
                })?
            }
            None => Aliases::default(),
        };
        Ok(LocalNames { domain, aliases })
    }

    /// The envelope sender of `-f`: `None` for the null sender (`<>` or
    /// empty), a bare name qualified (aliases are for recipients only, as
    /// in msmtp).
    pub(crate) fn sender(&self, given: &str) -> Result<Option<String>, Error> {
        let given = given.trim();
        if given.is_empty() || given == "<>" {
            return Ok(None);
        }
        self.qualify("-f", given).map(Some)
    }

    /// `given` with each bare name replaced by its aliases (or qualified);
    /// duplicates removed, order kept.
    pub(crate) fn recipients(&self, given: &[String]) -> Result<Vec<String>, Error> {
        let mut out: Vec<String> = Vec::with_capacity(given.len());
        for address in given {
            let expanded = match self.aliases.lookup(bare_name(address)) {
                Some(targets) => targets
                    .iter()
                    .map(|t| self.qualify("the aliases file", t))
                    .collect::<Result<Vec<_>, _>>()?,
                None => vec![self.qualify("recipient", address)?],
            };
            for a in expanded {
                if !out.iter().any(|o| o.eq_ignore_ascii_case(&a)) {
                    out.push(a);
                }
            }
        }
        Ok(out)
    }

    /// `address` as it is when it has an `@` (or a display form), else
    /// `name@domain`.
    fn qualify(&self, what: &str, address: &str) -> Result<String, Error> {
        let Some(name) = bare_name(address) else {
            return Ok(address.to_owned());
        };
        match &self.domain {
            Some(domain) => Ok(format!("{name}@{domain}")),
            None => Err(Error::InvalidMessage {
                field: what.into(),
                reason: format!(
                    "`{}` is a local name and there is no domain to add: set {} (or {}) or give a full address",
                    mailgate::smtp::escape_controls(name, 80),
                    cli_keys::SENDMAIL_DOMAIN,
                    keys::EMAIL_FROM
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<SendmailArgs, Error> {
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        parse_sendmail_args(&args)
    }

    #[test]
    fn sendmail_options_as_callers_write_them() {
        let a = parse(&[
            "-t",
            "-i",
            "-f",
            "alm@example.com",
            "-FCron Daemon",
            "--",
            "-odd@example.com",
        ])
        .unwrap();
        assert!(a.from_headers && a.ignore_dots);
        assert_eq!(a.sender.as_deref(), Some("alm@example.com"));
        assert_eq!(a.full_name.as_deref(), Some("Cron Daemon"));
        assert_eq!(a.recipients, ["-odd@example.com"]);

        let a = parse(&[
            "-oi",
            "-oem",
            "-odi",
            "-bm",
            "-B8BITMIME",
            "-N",
            "never",
            "-v",
            "-falm@example.com",
            "root",
        ])
        .unwrap();
        assert!(a.ignore_dots && !a.from_headers);
        assert_eq!(a.sender.as_deref(), Some("alm@example.com"));
        assert_eq!(a.recipients, ["root"]);

        // `-o i` as two words, and another option's value is not a recipient.
        let a = parse(&["-o", "i", "-o", "em", "root"]).unwrap();
        assert!(a.ignore_dots);
        assert_eq!(a.recipients, ["root"]);

        // cronie: `sendmail -FCronDaemon -i -odi -oem -oi -t -f root`.
        let a = parse(&[
            "-FCronDaemon",
            "-i",
            "-odi",
            "-oem",
            "-oi",
            "-t",
            "-f",
            "root",
        ])
        .unwrap();
        assert!(a.from_headers && a.ignore_dots);
        assert_eq!(a.sender.as_deref(), Some("root"));
        assert_eq!(a.full_name.as_deref(), Some("CronDaemon"));

        // The null sender, both ways.
        assert_eq!(
            parse(&["-f", "<>", "x@example.com"])
                .unwrap()
                .sender
                .as_deref(),
            Some("<>")
        );
        assert_eq!(
            parse(&["-f", "", "x@example.com"])
                .unwrap()
                .sender
                .as_deref(),
            Some("")
        );

        assert!(parse(&["--help"]).unwrap().help);
        assert!(parse(&["--version"]).unwrap().version);
        assert_eq!(parse(&["-bp"]).unwrap_err().exit_code(), 64);
        assert_eq!(parse(&["-f"]).unwrap_err().exit_code(), 64);
        assert_eq!(parse(&["-Q"]).unwrap_err().exit_code(), 64);
    }

    fn names(domain: Option<&str>, aliases: &str) -> LocalNames {
        LocalNames {
            domain: domain.map(str::to_owned),
            aliases: Aliases::parse(aliases).unwrap(),
        }
    }

    #[test]
    fn bare_names_are_qualified_or_aliased() {
        let local = names(
            Some("example.com"),
            "# who gets what\nroot: ops@example.com, admin\n\nWWW-DATA: web@example.com\n",
        );
        let given: Vec<String> = [
            "root",
            "<www-data>",
            "dev@example.com",
            "nobody",
            "Ops <ops@example.com>",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        assert_eq!(
            local.recipients(&given).unwrap(),
            [
                "ops@example.com",
                "admin@example.com",
                "web@example.com",
                "dev@example.com",
                "nobody@example.com",
                "Ops <ops@example.com>",
            ]
        );
        // `default` takes every name not listed.
        let local = names(
            Some("example.com"),
            "default: it@example.com\nroot: ops@example.com",
        );
        let given = vec!["root".to_owned(), "cron".to_owned()];
        assert_eq!(
            local.recipients(&given).unwrap(),
            ["ops@example.com", "it@example.com"]
        );
        // Senders: qualified, never aliased; `<>` and empty are the null sender.
        assert_eq!(
            local.sender("root").unwrap().as_deref(),
            Some("root@example.com")
        );
        assert_eq!(local.sender("<>").unwrap(), None);
        assert_eq!(local.sender(" ").unwrap(), None);
        assert_eq!(
            local.sender("a@b.example").unwrap().as_deref(),
            Some("a@b.example")
        );
        // No domain to add: a clear error naming both keys.
        let err = names(None, "").sender("root").unwrap_err().to_string();
        assert!(
            err.contains(cli_keys::SENDMAIL_DOMAIN) && err.contains("root"),
            "{err}"
        );
    }
}
