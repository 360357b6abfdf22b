//! The outbox on the command line: `send --queue`, `queue ...`, `deliver`.

use std::io::IsTerminal as _;
use std::time::SystemTime;

use clap::{Args, Subcommand};
use mailgate::outbox::{
    DeliveryOutcome, MessageId, QueuedMessage, RecipientRecord, Stats, Status, Worker,
};
use mailgate::{Error, Mailer, RecipientRefusal};

use crate::report::ErrorReport;
use crate::{Failure, print_out};

/// `mailgate queue ...`
#[derive(Subcommand, Debug)]
pub(crate) enum QueueCommand {
    /// List the messages (sent ones only with --all)
    List(ListArgs),
    /// Try every queued message now, whatever its back-off
    Flush,
    /// Make a queued or dead message due now (--dead: every dead message)
    Retry(RetryArgs),
    /// Delete a message (not one being sent)
    Delete {
        /// The message's id
        id: MessageId,
    },
    /// Messages per state
    Stats {
        /// Print one JSON object
        #[arg(long)]
        json: bool,
    },
}

impl QueueCommand {
    /// Whether it asks for JSON output.
    pub(crate) fn json(&self) -> bool {
        match self {
            QueueCommand::List(args) => args.json,
            QueueCommand::Stats { json } => *json,
            QueueCommand::Flush | QueueCommand::Retry(_) | QueueCommand::Delete { .. } => false,
        }
    }
}

/// `queue list`
#[derive(Args, Debug)]
pub(crate) struct ListArgs {
    /// Include sent messages (kept mailgate.outbox.keepSentHours)
    #[arg(long)]
    all: bool,
    /// Print a JSON array
    #[arg(long)]
    json: bool,
}

/// `deliver`
#[derive(Args, Debug)]
pub(crate) struct DeliverArgs {
    /// Exit once nothing is queued (what `sendmail` and `send --queue` start
    /// when no worker runs)
    #[arg(long)]
    pub(crate) until_empty: bool,
}

/// The config options of this command, for a `deliver --until-empty` it
/// starts (set once, before the command runs).
static CONFIG_ARGS: std::sync::OnceLock<Vec<std::ffi::OsString>> = std::sync::OnceLock::new();

pub(crate) fn remember_config(args: Vec<std::ffi::OsString>) {
    let _ = CONFIG_ARGS.set(args);
}

/// `queue retry`
#[derive(Args, Debug)]
pub(crate) struct RetryArgs {
    /// The message's id
    #[arg(required_unless_present = "dead", conflicts_with = "dead")]
    id: Option<MessageId>,
    /// Every dead message
    #[arg(long)]
    dead: bool,
}

/// EX_TEMPFAIL and EX_UNAVAILABLE, for `queue flush`.
const EXIT_TEMPFAIL: u8 = 75;
const EXIT_UNAVAILABLE: u8 = 69;

/// What a `send --queue` printed, and its exit code.
pub(crate) async fn send_queued(
    mailer: &Mailer,
    id: MessageId,
    json: bool,
    quiet: bool,
) -> Result<(), Failure> {
    let worker = Worker::new(mailer)?;
    // Durable already: a failure of this first attempt only leaves it queued.
    let outcome = match worker.deliver_id(id).await {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::warn!("message {id} is queued; the first attempt failed: {e}");
            None
        }
    };
    worker.retire().await;
    // Gone before the look for a live worker below: its own presence (a
    // lock held while it exists) must not count.
    drop(worker);
    let (status, dead) = match &outcome {
        Some(DeliveryOutcome::Sent(_)) => ("sent", None),
        Some(DeliveryOutcome::Dead { error, exit_code }) => (
            "dead",
            Some(ErrorReport::plain(
                *exit_code,
                "dead",
                format!("message {id} is dead: {error}"),
            )),
        ),
        Some(DeliveryOutcome::Retry { error, .. }) => {
            if !quiet {
                eprintln!("mailgate: message {id} is queued; it will be tried again: {error}");
            }
            ("queued", None)
        }
        Some(
            outcome @ DeliveryOutcome::Recipients {
                finished,
                error,
                exit_code,
                ..
            },
        ) => {
            let status = outcome.status();
            let sent: Vec<&str> = finished
                .iter()
                .filter(|r| r.status == Status::Sent)
                .map(|r| r.address.as_str())
                .collect();
            let dead: Vec<&str> = finished
                .iter()
                .filter(|r| r.status == Status::Dead)
                .map(|r| r.address.as_str())
                .collect();
            let got = if sent.is_empty() {
                "no recipient got it".to_owned()
            } else {
                format!("sent to {}", sent.join(", "))
            };
            if dead.is_empty() {
                if !quiet {
                    eprintln!(
                        "mailgate: message {id}: {got}; the other recipients are queued and will be tried again: {error}"
                    );
                }
                (status.as_str(), None)
            } else {
                let refused: Vec<RecipientRefusal> = finished
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.status == Status::Dead)
                    .filter_map(|(index, r)| refusal(index, r))
                    .collect();
                let text = format!(
                    "message {id}: {got}; {} will never get it: {error}",
                    dead.join(", ")
                );
                (
                    status.as_str(),
                    Some(ErrorReport::plain(*exit_code, "dead", text).refusals(&refused)),
                )
            }
        }
        None => ("queued", None),
    };
    if status == "queued" {
        ensure_deliverer(mailer).await;
    }
    // Stored, but (some of) it will never be delivered: the caller must know.
    let mut failure = dead.map(|report| Failure::Exit(Box::new(report)));
    if json {
        let mut value = serde_json::json!({ "id": id, "status": status });
        if matches!(outcome, Some(DeliveryOutcome::Recipients { .. }))
            && let Ok(Some(message)) = find(mailer, id).await
        {
            value["recipients"] = recipients_json(&message);
        }
        failure = failure.map(|f| f.put_in(&mut value));
        print_out(format_args!("{value}"))?;
    } else if !quiet || failure.is_some() {
        print_out(format_args!("{status} {id}"))?;
    }
    match failure {
        Some(failure) => Err(failure),
        None => Ok(()),
    }
}

/// A dead recipient's record as a refusal: its reply is the server's
/// `CODE TEXT` (anything else, e.g. a message given up as too old, has no
/// code and is left out).
fn refusal(index: usize, record: &RecipientRecord) -> Option<RecipientRefusal> {
    let reply = record.reply.as_deref()?;
    let (code, text) = reply.split_once(' ').unwrap_or((reply, ""));
    let code: u16 = code.parse().ok().filter(|c| (200..600).contains(c))?;
    Some(RecipientRefusal {
        address: record.address.clone(),
        code,
        reply: text.to_owned(),
        index,
    })
}

/// A queued message always has a deliverer: when no worker holds the
/// outbox (no `deliver` or `relay` alive), one `mailgate deliver
/// --until-empty` is started, detached, unless
/// `mailgate.outbox.autoDeliver=false`. Failing to start one is logged, not
/// an error: the message is stored either way.
async fn ensure_deliverer(mailer: &Mailer) {
    match mailer
        .settings()
        .flag_or(mailgate::keys::OUTBOX_AUTO_DELIVER, true)
    {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::warn!("{e}; no worker started");
            return;
        }
    }
    let alive = match mailer.outbox() {
        Ok(store) => store.live_workers().await,
        Err(_) => return,
    };
    match alive {
        Ok(0) => {}
        Ok(_) => return,
        Err(e) => {
            tracing::warn!("cannot tell whether a worker runs ({e}); starting one");
        }
    }
    match spawn_deliverer() {
        Ok(pid) => tracing::info!(
            "no worker was running: started `mailgate deliver --until-empty` (pid {pid})"
        ),
        Err(e) => tracing::warn!(
            "no worker is running and none could be started ({e}): run `mailgate deliver`, or `mailgate queue flush`"
        ),
    }
}

/// `mailgate [config options] -q deliver --until-empty`, in a session of
/// its own with no terminal and stdio on /dev/null (so that cron, which
/// waits for its job's output to end, does not wait for it), not waited for.
fn spawn_deliverer() -> std::io::Result<u32> {
    use std::os::unix::process::CommandExt as _;
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    // As `mailgate`, whatever name this binary was called by (`sendmail`).
    cmd.arg0("mailgate")
        .args(CONFIG_ARGS.get().map(Vec::as_slice).unwrap_or_default())
        .args(["-q", "deliver", "--until-empty"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: setsid is async-signal-safe and touches nothing of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    Ok(child.id())
}

/// Message `id` as a listing shows it.
async fn find(mailer: &Mailer, id: MessageId) -> Result<Option<QueuedMessage>, Error> {
    Ok(mailer
        .outbox()?
        .list(true)
        .await?
        .into_iter()
        .find(|m| m.id == id))
}

/// `recipients: [{address, status, last_error, attempts}]`.
fn recipients_json(m: &QueuedMessage) -> serde_json::Value {
    m.recipients()
        .into_iter()
        .map(|r| {
            serde_json::json!({
                "address": r.address,
                "status": r.status.as_str(),
                "last_error": r.last_error,
                "attempts": r.attempts,
            })
        })
        .collect()
}

/// `mailgate queue ...`; with `quiet`, only `list` and `stats` (what was
/// asked for) print on success.
pub(crate) async fn run(
    mailer: &Mailer,
    command: &QueueCommand,
    quiet: bool,
) -> Result<(), Failure> {
    let store = mailer.outbox()?;
    let now = SystemTime::now();
    // A confirmation, not asked-for output: -q leaves it out.
    let confirm = |text: std::fmt::Arguments<'_>| {
        if quiet { Ok(()) } else { print_out(text) }
    };
    match command {
        QueueCommand::List(args) => {
            let messages = store.list(args.all).await?;
            if args.json {
                let list: Vec<serde_json::Value> = messages.iter().map(json_of).collect();
                print_out(format_args!("{}", serde_json::Value::Array(list)))
            } else {
                print_out(format_args!("{}", table(&messages)))
            }
        }
        QueueCommand::Flush => flush(mailer, quiet).await,
        QueueCommand::Retry(args) => match (args.id, args.dead) {
            (_, true) => {
                let n = store.retry_dead(now).await?;
                confirm(format_args!("{n} dead message(s) queued again"))
            }
            (Some(id), false) => {
                if store.retry(id, now).await? {
                    confirm(format_args!("queued {id}"))
                } else {
                    Err(Error::Usage(format!(
                        "no queued or dead message {id} (see `mailgate queue list --all`)"
                    ))
                    .into())
                }
            }
            (None, false) => unreachable!("clap requires an id or --dead"),
        },
        QueueCommand::Delete { id } => {
            if store.delete(*id).await? {
                confirm(format_args!("deleted {id}"))
            } else {
                Err(Error::Usage(format!(
                    "no message {id} that can be deleted (it does not exist, or it is being sent)"
                ))
                .into())
            }
        }
        QueueCommand::Stats { json } => {
            let stats = store.stats().await?;
            if *json {
                print_out(format_args!("{}", stats_json(&stats, &store.describe())))
            } else {
                print_out(format_args!(
                    "outbox:   {}\n{}",
                    store.describe(),
                    stats_text(&stats)
                ))
            }
        }
    }
}

/// `queue flush`: every queued message now, a progress bar on a terminal.
async fn flush(mailer: &Mailer, quiet: bool) -> Result<(), Failure> {
    let worker = Worker::new(mailer)?;
    let bar = (std::io::stderr().is_terminal() && !quiet).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} messages ({elapsed})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let report = worker
        .flush(|done, total| {
            if let Some(bar) = &bar {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            }
        })
        .await;
    worker.retire().await;
    let report = report?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let left = mailer.outbox()?.stats().await?.queued;
    if !quiet || left > 0 || report.dead > 0 {
        print_out(format_args!(
            "flushed: {} sent, {} still queued, {} dead",
            report.sent, left, report.dead
        ))?;
    }
    if left > 0 {
        Err(Failure::exit(
            EXIT_TEMPFAIL,
            "queued",
            format!("{left} message(s) remain queued"),
        ))
    } else if report.dead > 0 {
        Err(Failure::exit(
            EXIT_UNAVAILABLE,
            "dead",
            format!(
                "{} message(s) became dead (see `mailgate queue list`)",
                report.dead
            ),
        ))
    } else {
        Ok(())
    }
}

/// `mailgate deliver`: until SIGTERM or SIGINT, then the delivery in hand
/// is finished and the exit is 0.
pub(crate) async fn deliver(
    mailer: &Mailer,
    quiet: bool,
    until_empty: bool,
) -> Result<(), Failure> {
    let worker = Worker::new(mailer)?;
    // An outbox that cannot be read at all (damaged, not a database, no
    // access) is exit 74 naming it, not a worker that warns forever; a
    // store that fails later is retried (a database may be restarting).
    let store = mailer.outbox()?;
    store.next_due().await?;
    tracing::info!(
        "delivering from {} as worker {}",
        store.describe(),
        worker.id()
    );
    if !quiet {
        eprintln!(
            "mailgate: delivering from {} (worker {})",
            store.describe(),
            worker.id()
        );
    }
    if !until_empty {
        worker.run(shutdown_signal()).await?;
        return Ok(());
    }
    // One started worker at a time: another (or any live worker) delivers.
    let Some(_only) = sole_deliverer(mailer) else {
        tracing::info!("another worker delivers this outbox; nothing to do");
        return Ok(());
    };
    if store.live_workers().await.unwrap_or(0) > 0 {
        tracing::info!("a worker runs on this outbox; nothing to do");
        return Ok(());
    }
    // Until nothing is queued or being sent: a worker started for what
    // sendmail left queued. It looks again after saying goodbye, so that a
    // message stored while it was leaving (whose sender saw it alive and
    // started none) is still delivered.
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let mut worker = worker;
    loop {
        let watch = async {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                if outbox_gone(mailer) {
                    return;
                }
                if let Ok(stats) = store.stats().await
                    && stats.queued + stats.sending == 0
                {
                    return;
                }
            }
        };
        let mut signalled = false;
        // run() finishes the deliveries in hand whichever ends it.
        worker
            .run(async {
                tokio::select! {
                    () = watch => {}
                    () = &mut shutdown => signalled = true,
                }
            })
            .await?;
        if signalled || outbox_gone(mailer) {
            return Ok(());
        }
        let stats = store.stats().await?;
        if stats.queued + stats.sending == 0 {
            return Ok(());
        }
        worker = Worker::new(mailer)?;
    }
}

/// An outbox file that was removed (its folder cleaned up): a started
/// worker leaves instead of delivering from a deleted file forever.
fn outbox_gone(mailer: &Mailer) -> bool {
    mailer
        .outbox()
        .ok()
        .and_then(|store| store.local_file())
        .is_some_and(|path| !path.exists())
}

/// The lock that makes a `deliver --until-empty` the only one started on
/// an outbox in a local file (`PATH.deliver.lock`); `None` when another
/// holds it. On a shared database the live-worker check alone decides (two
/// started at the same moment share the outbox like any two workers).
fn sole_deliverer(mailer: &Mailer) -> Option<Option<std::fs::File>> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let Some(path) = mailer.outbox().ok().and_then(|store| store.local_file()) else {
        return Some(None);
    };
    let mut name = path.as_os_str().to_owned();
    name.push(".deliver.lock");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(std::path::PathBuf::from(name));
    match file {
        // Without a lock file (a read-only folder) it runs anyway.
        Err(_) => Some(None),
        Ok(file) => match file.try_lock() {
            Ok(()) => Some(Some(file)),
            Err(_) => None,
        },
    }
}

/// SIGTERM or SIGINT.
pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the default action (exit) applies.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// One object of `queue list --json` (the contract scripts parse).
fn json_of(m: &QueuedMessage) -> serde_json::Value {
    serde_json::json!({
        "id": m.id,
        "status": m.status.as_str(),
        "attempts": m.attempts,
        "last_error": m.last_error,
        "next_attempt": m.next_attempt.filter(|_| m.status == Status::Queued).map(rfc3339),
        "from": m.from,
        "to": m.to,
        "subject": m.subject,
        "message_id": m.message_id,
        "created": rfc3339(m.created),
        "size": m.size,
        // Once sent, only the header section is kept unless
        // `mailgate.outbox.keepSentBodies=true`.
        "body_dropped": m.body_dropped,
        "recipients": recipients_json(m),
    })
}

fn table(messages: &[QueuedMessage]) -> String {
    if messages.is_empty() {
        return "the outbox is empty".into();
    }
    let mut out = format!(
        "{:>6}  {:<7}  {:>8}  {:<20}  {:<28}  {:<30}  last error",
        "id", "status", "attempts", "next attempt", "to", "subject"
    );
    for m in messages {
        let next = m
            .next_attempt
            .filter(|_| m.status == Status::Queued)
            .map(rfc3339)
            .unwrap_or_else(|| "-".into());
        let to = cut(&m.to.join(", "), 28);
        out.push_str(&format!(
            "\n{:>6}  {:<7}  {:>8}  {:<20}  {:<28}  {:<30}  {}",
            m.id,
            m.status.as_str(),
            m.attempts,
            next,
            to,
            cut(&m.subject, 30),
            cut(m.last_error.as_deref().unwrap_or("-"), 120)
        ));
    }
    out
}

fn cut(text: &str, max: usize) -> String {
    mailgate::smtp::escape_controls(text, max)
}

pub(crate) fn stats_text(stats: &Stats) -> String {
    let oldest = stats
        .oldest_waiting
        .map(|t| format!(", oldest waiting since {}", rfc3339(t)))
        .unwrap_or_default();
    let r = &stats.recipients;
    format!(
        "messages: {} queued, {} sending, {} sent, {} dead{oldest}\nrecipients: {} due, {} sent, {} dead",
        stats.queued, stats.sending, stats.sent, stats.dead, r.queued, r.sent, r.dead
    )
}

pub(crate) fn stats_json(stats: &Stats, location: &str) -> serde_json::Value {
    serde_json::json!({
        "outbox": location,
        "queued": stats.queued,
        "sending": stats.sending,
        "sent": stats.sent,
        "dead": stats.dead,
        "oldest_waiting": stats.oldest_waiting.map(rfc3339),
        "recipients": {
            "queued": stats.recipients.queued,
            "sent": stats.recipients.sent,
            "dead": stats.recipients.dead,
        },
    })
}

/// `2026-12-01T20:54:37Z` (RFC 3339, UTC, seconds).
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_158_477);
        assert_eq!(rfc3339(t), "2026-12-01T20:54:37Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }
}
