//! The `mailgate` command line as a library: [`run`] with a strategy
//! [`Registry`], so a strategy crate ships its own `mailgate` binary in five
//! lines, with every command (check, send, sendmail, encrypt, token, queue,
//! relay, demo) aware of its strategy:
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     // ...and `.and_then(|r| r.with(&my_strategy::DESCRIPTOR))`
//!     mailgate_cli::run(mailgate::default_registry())
//! }
//! ```
//!
//! `mailgate` sends mail with the settings of an RV&S server's config folder.
//!
//! Exit codes follow sysexits: 0 ok, 64 usage, 65 bad message input, 66 an
//! input file unusable, 68 unknown host, 69 unavailable or refused for good,
//! 74 stdout could not be written, 75 temporary failure (refused connection,
//! timeout, 4xx), 77 authentication refused, 78 configuration error (each
//! command's `--help` lists its own, see `help.rs`).
//!
//! With `--json`, a failure is also one object on stdout, `{"error": ...}`
//! (see `report.rs`): stderr's text, the exit code and the object come from
//! one `ErrorReport`.
//!
//! A closed stdout (`mailgate token | head -c 0`, a reader that quit) is not
//! a crash: the command exits 74 (EX_IOERR) without a message, because its
//! output did not reach the reader (as a pipeline under `set -o pipefail`
//! should see) but the reader chose to stop, so there is nothing to explain.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[cfg(feature = "demo")]
mod demo;
mod encrypt;
mod help;
mod keys;
mod man;
mod queue;
mod relay;
mod report;
mod send;
mod sendmail;
mod warnings;

use clap::{Args, Parser, Subcommand};
use mailgate::properties::ConfigFiles;
use mailgate::secrecy::ExposeSecret;
use mailgate::settings::LoadOptions;
use mailgate::{Error, Mailer, MailerBuilder, Registry, Settings};
use report::ErrorReport;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

#[derive(Parser, Debug)]
#[command(
    name = "mailgate",
    version,
    // `mailgate check --version` works too.
    propagate_version = true,
    about = "Send notification mail the way an RV&S server does",
    after_long_help = help::EXIT_CODES
)]
struct Cli {
    /// Folder holding is.properties and security.properties
    /// [default: $MAILGATE_CONFIG_DIR, else ./config]
    #[arg(long, global = true, value_name = "DIR", help_heading = help::GLOBAL)]
    config_dir: Option<PathBuf>,
    /// The is.properties file (overrides the folder's)
    #[arg(long = "is", global = true, value_name = "FILE", help_heading = help::GLOBAL)]
    is_file: Option<PathBuf>,
    /// The security.properties file (overrides the folder's)
    #[arg(long = "security", global = true, value_name = "FILE", help_heading = help::GLOBAL)]
    security_file: Option<PathBuf>,
    /// Key file for ENC(...) secrets [default: mailgate.crypto.keyFile, else mailgate.key in the config folder]
    #[arg(long, global = true, value_name = "FILE", help_heading = help::GLOBAL)]
    key_file: Option<PathBuf>,
    /// More output: -v logs the SMTP conversation (AUTH payloads redacted), -vv traces
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet", help_heading = help::GLOBAL)]
    verbose: u8,
    /// Nothing on stdout or stderr on success; only errors on stderr
    #[arg(short, long, global = true, help_heading = help::GLOBAL)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate the settings; print the strategy, the rule, and where each setting came from
    #[command(after_help = help::CHECK)]
    Check(CheckArgs),
    /// Send a message composed from options, or a prepared one (--raw)
    #[command(after_help = help::SEND)]
    Send(Box<send::SendArgs>),
    /// Read a message on stdin and send it, as /usr/sbin/sendmail does
    /// (also what runs when this binary is called `sendmail`)
    // sendmail's own `-V ENVID` must not print the version.
    #[command(
        disable_help_flag = true,
        disable_version_flag = true,
        after_help = help::SENDMAIL
    )]
    Sendmail(SendmailCommand),
    /// Print an OAuth access token on stdout, and nothing else there
    #[command(after_help = help::TOKEN)]
    Token,
    /// The outbox: list, flush, retry, delete, stats
    #[command(after_help = help::QUEUE)]
    Queue {
        #[command(subcommand)]
        command: queue::QueueCommand,
    },
    /// Deliver queued messages until SIGTERM (several workers may share a PostgreSQL outbox)
    #[command(after_help = help::DELIVER)]
    Deliver(queue::DeliverArgs),
    /// SMTP listener + outbox worker: legacy senders submit here, mailgate delivers upstream
    #[command(after_help = help::RELAY)]
    Relay,
    /// Local AUTH users of the relay (mailgate.relay.usersFile)
    #[command(after_help = help::RELAY_USER)]
    RelayUser {
        #[command(subcommand)]
        command: RelayUserCommand,
    },
    /// Print HOST:PORT of the SMTP server
    #[command(after_help = help::SERVER)]
    Server,
    /// Encrypt the secret properties in place (ENC(...) values)
    #[command(after_help = help::ENCRYPT)]
    Encrypt(encrypt::EncryptArgs),
    /// Print a shell completion script: `source <(mailgate completions bash)`
    #[command(after_help = help::GENERATED)]
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `mailgate man > mailgate.1`; with --dir, write one page per command
    #[command(after_help = help::GENERATED)]
    Man {
        /// Write every page (mailgate.1, mailgate-send.1, mailgate-sendmail.8, ...) into this folder
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Run the whole job on loopback: dev servers, one config folder per strategy, one message each
    #[cfg(feature = "demo")]
    #[command(after_help = format!("{}\n\n{}", demo::IGNORED_OPTIONS, help::DEMO))]
    Demo(demo::DemoArgs),
    /// Not in this build: the demo needs the cargo feature `demo`
    /// (`cargo run -p mailgate-cli --features demo -- demo`)
    #[cfg(not(feature = "demo"))]
    #[command(after_help = help::DEMO)]
    Demo {
        /// Keep the servers running after the demo
        #[arg(long)]
        serve: bool,
    },
}

/// sendmail's own options, parsed by [`sendmail::parse_sendmail_args`].
#[derive(Args, Debug)]
struct SendmailCommand {
    /// [-t] [-i] [-oi] [-f ADDR] [-F NAME] [-C DIR] [--] [RCPT...]; other
    /// sendmail options (-oem, -odi, -bm, -B, -N, ...) are accepted and ignored
    #[arg(allow_hyphen_values = true, trailing_var_arg = true, num_args = 0.., value_name = "ARGS")]
    args: Vec<String>,
}

/// `mailgate relay-user ...`
#[derive(Subcommand, Debug)]
enum RelayUserCommand {
    /// Add or replace a user; the password is read from stdin (a prompt on a terminal)
    Add {
        /// The user name
        name: String,
    },
}

#[derive(Args, Debug)]
struct CheckArgs {
    /// Print one JSON object
    #[arg(long)]
    json: bool,
    /// Also connect, negotiate TLS and authenticate (then QUIT without sending)
    #[arg(long)]
    connect: bool,
}

/// Where a binary called `sendmail` finds its config folder when neither
/// `-C DIR` nor `$MAILGATE_CONFIG_DIR` says.
const SENDMAIL_CONFIG_DIR: &str = "/etc/mailgate";

/// Called as `sendmail` (a symlink): `mailgate sendmail ARGS`, with the
/// config folder from `-C`, else `$MAILGATE_CONFIG_DIR`, else /etc/mailgate.
fn sendmail_argv() -> Option<Vec<std::ffi::OsString>> {
    let mut argv = std::env::args_os();
    let argv0 = PathBuf::from(argv.next()?);
    if argv0.file_name()? != "sendmail" {
        return None;
    }
    let mut out: Vec<std::ffi::OsString> = vec!["mailgate".into()];
    if std::env::var_os("MAILGATE_CONFIG_DIR").is_none() {
        out.push("--config-dir".into());
        out.push(SENDMAIL_CONFIG_DIR.into());
    }
    out.push("sendmail".into());
    out.extend(argv);
    Some(out)
}

/// Runs the command line of this process with the strategies of
/// `registry` (or exits 78 with the error that kept it from being
/// assembled, e.g. two strategies under one name), and returns its exit code.
pub fn run(registry: Result<Registry, mailgate::ConfigError>) -> ExitCode {
    // Past a file-size limit (RLIMIT_FSIZE) a write must fail with EFBIG,
    // reported as exit 74, not kill the process with SIGXFSZ, perhaps after
    // the message was stored: the caller would retry and send it twice.
    // SAFETY: setting a signal's disposition to SIG_IGN has no handler to
    // race with; it is done before any thread starts.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let parsed = match sendmail_argv() {
        Some(argv) => Cli::try_parse_from(argv),
        None => Cli::try_parse(),
    };
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            if !e.use_stderr() {
                // --help, --version: not a failure.
                return ExitCode::SUCCESS;
            }
            let argv = match sendmail_argv() {
                Some(argv) => argv,
                None => std::env::args_os().collect(),
            };
            if report::argv_asks_json(argv) {
                let text = e.render().to_string();
                let report =
                    ErrorReport::plain(report::EXIT_USAGE, "usage", text.trim_end().to_owned());
                let _ = print_out(format_args!("{}", report.object()));
            }
            return ExitCode::from(report::EXIT_USAGE);
        }
    };
    let json = json_requested(&cli.command);
    // A long-running relay logs each message at info; one-shot commands
    // stay quiet unless asked.
    let service = matches!(cli.command, Command::Relay);
    let collect_warnings = matches!(&cli.command, Command::Check(args) if args.json);
    init_logging(cli.verbose, cli.quiet, service, collect_warnings);
    // The command line's own parts declare their keys, as strategies do.
    let registry = match registry {
        Ok(registry) => registry
            .with_keys(keys::SENDMAIL_KEYS)
            .with_keys(keys::RELAY_KEYS),
        Err(e) => return fail(Failure::Mailgate(Error::from(e)), json),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let failure = Failure::exit(
                EXIT_OSERR,
                "os_error",
                format!("cannot start the async runtime: {e}"),
            );
            return fail(failure, json);
        }
    };
    // The demo brings its own servers and config folders: no Mailer here.
    #[cfg(feature = "demo")]
    if let Command::Demo(args) = &cli.command {
        return runtime.block_on(demo::run(args));
    }
    match runtime.block_on(run_command(cli, registry)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => fail(failure, json),
    }
}

/// Reports `failure`: its text on stderr and, when the command was asked
/// for JSON, the error object on stdout (unless the command's own object
/// there carries it already); returns its exit code.
fn fail(failure: Failure, json: bool) -> ExitCode {
    let (report, printed) = match failure {
        Failure::Mailgate(e) => (ErrorReport::of(&e), false),
        Failure::Exit(report) => (*report, false),
        Failure::Printed(report) => (*report, true),
        Failure::Stdout(e) => {
            // A reader that went away needs no explanation; anything else
            // does. There is no JSON: stdout is what failed.
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                eprintln!("mailgate: cannot write to stdout: {e}");
            }
            return ExitCode::from(EXIT_IOERR);
        }
    };
    eprintln!("mailgate: {}", report.message());
    // The exit status stays the failure's own even when stdout cannot take
    // the object: the caller learns of the failure either way.
    if json && !printed {
        let _ = print_out(format_args!("{}", report.object()));
    }
    ExitCode::from(report.exit_code())
}

/// Whether the command line asks for JSON output (`--json` of `check`,
/// `send`, `queue list`, `queue stats`).
fn json_requested(command: &Command) -> bool {
    match command {
        Command::Check(args) => args.json,
        Command::Send(args) => args.json,
        Command::Queue { command } => command.json(),
        _ => false,
    }
}

/// EX_IOERR: stdout could not be written (see the module docs).
const EXIT_IOERR: u8 = 74;

/// EX_OSERR: the process could not set itself up.
const EXIT_OSERR: u8 = 71;

/// Why a command failed.
pub(crate) enum Failure {
    /// A mailgate error: its message goes to stderr, its kind picks the exit code.
    Mailgate(Error),
    /// stdout could not be written, e.g. a closed pipe.
    Stdout(std::io::Error),
    /// An outcome with its own exit code, kind and message (`queue flush`,
    /// a queued message that became dead, a message some recipients got).
    Exit(Box<ErrorReport>),
    /// A failure the command's JSON object on stdout carries already (its
    /// `error` member): only stderr and the exit code are left to do.
    Printed(Box<ErrorReport>),
}

impl Failure {
    /// [`Failure::Exit`] with a failure of the command line's own.
    pub(crate) fn exit(code: u8, kind: &'static str, message: impl Into<String>) -> Self {
        Failure::Exit(Box::new(ErrorReport::plain(code, kind, message.into())))
    }

    /// Puts this failure in `obj`, the JSON object a command is about to
    /// print, as its `error` member; the failure is then [`Failure::Printed`].
    pub(crate) fn put_in(self, obj: &mut serde_json::Value) -> Failure {
        let report = match self {
            Failure::Mailgate(e) => ErrorReport::of(&e),
            Failure::Exit(report) | Failure::Printed(report) => *report,
            // Not put in anything: stdout is what failed.
            Failure::Stdout(e) => return Failure::Stdout(e),
        };
        obj["error"] = report.json();
        Failure::Printed(Box::new(report))
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Mailgate(e)
    }
}

/// Writes `text` to stdout and flushes; a failed write (a closed pipe) is a
/// [`Failure::Stdout`] instead of `println!`'s panic.
pub(crate) fn print_out(text: std::fmt::Arguments<'_>) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(Failure::Stdout)
}

/// Our crates log at the chosen level; others stay at warnings so no
/// third-party trace output (HTTP headers, TLS secrets) reaches the terminal.
///
/// One directive covers all of ours: `EnvFilter` matches a target by plain
/// string prefix (`target.starts_with(directive)`, not by `::` segments), so
/// `mailgate` takes in `mailgate_core::*`, `mailgate_auth_*`, the `mailgate::smtp`
/// and `mailgate::oauth` targets, this binary (crate `mailgate`) and the demo's
/// `mailgate_devserver`. No third-party crate's name starts with `mailgate`.
///
/// With `collect_warnings`, each warning shown is also kept for `check
/// --json` (see `warnings.rs`).
fn init_logging(verbose: u8, quiet: bool, service: bool, collect_warnings: bool) {
    let ours = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) if service => "info",
        (false, 0) => "warn",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let others = if quiet { "error" } else { "warn" };
    let filter = EnvFilter::new(format!("{others},mailgate={ours}"));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR"),
        ))
        .without_time();
    // The filter comes first and applies to both layers: what is collected
    // is what stderr shows.
    tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(collect_warnings.then_some(warnings::Collector))
        .init();
}

/// Colours only on a terminal, and not when `NO_COLOR` is set to anything
/// but the empty string (https://no-color.org).
fn colour(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// The files to read: `--config-dir`, else `$MAILGATE_CONFIG_DIR`, else
/// `./config`; `--is` and `--security` name files directly.
fn config_files(cli: &Cli) -> Result<ConfigFiles, Error> {
    config_files_in(cli, None)
}

/// [`config_files`], with `sendmail -C DIR` naming the folder before
/// anything else (called as `sendmail`, `--config-dir /etc/mailgate` is
/// only the default, and neither it nor `$MAILGATE_CONFIG_DIR` is looked at).
fn config_files_in(cli: &Cli, sendmail_dir: Option<&Path>) -> Result<ConfigFiles, Error> {
    let dir = sendmail_dir
        .map(Path::to_path_buf)
        .or_else(|| cli.config_dir.clone())
        .or_else(|| std::env::var_os("MAILGATE_CONFIG_DIR").map(PathBuf::from));
    let mut files = match (dir, &cli.is_file) {
        (Some(dir), _) => {
            if !dir.is_dir() {
                return Err(Error::Config(mailgate::ConfigError::Unreadable {
                    path: dir,
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "the config folder does not exist",
                    ),
                }));
            }
            ConfigFiles::in_dir(dir)
        }
        (None, Some(_)) => ConfigFiles::default(),
        (None, None) => {
            let default = PathBuf::from("config");
            if !default.is_dir() {
                return Err(Error::Usage(
                    "no config folder: pass --config-dir DIR (or --is FILE), set MAILGATE_CONFIG_DIR, or create ./config with is.properties".into(),
                ));
            }
            ConfigFiles::in_dir(default)
        }
    };
    if let Some(is) = &cli.is_file {
        files.is = Some(is.clone());
    }
    if let Some(security) = &cli.security_file {
        files = files.with_security(security);
    }
    Ok(files)
}

/// The global options that name the config, for a `mailgate deliver`
/// started on this command's behalf.
fn config_args(cli: &Cli, sendmail_dir: Option<&Path>) -> Vec<std::ffi::OsString> {
    let mut args = Vec::new();
    // The folder this command resolved (`-C`, `--config-dir`,
    // `$MAILGATE_CONFIG_DIR`, ./config), made absolute.
    if let Ok(ConfigFiles { dir: Some(dir), .. }) = config_files_in(cli, sendmail_dir) {
        args.push("--config-dir".into());
        args.push(absolute(&dir));
    }
    if let Some(is) = &cli.is_file {
        args.push("--is".into());
        args.push(absolute(is));
    }
    if let Some(security) = &cli.security_file {
        args.push("--security".into());
        args.push(absolute(security));
    }
    if let Some(key) = &cli.key_file {
        args.push("--key-file".into());
        args.push(absolute(key));
    }
    args
}

fn absolute(path: &Path) -> std::ffi::OsString {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_owned())
        .into_os_string()
}

fn builder(
    cli: &Cli,
    registry: &Registry,
    sendmail_dir: Option<&Path>,
) -> Result<MailerBuilder, Error> {
    // The command line reads MKSIS_* / MAILGATE_* variables (the library
    // does not by default): its users configure it that way.
    let mut builder = Mailer::builder()
        .registry(registry.clone())
        .files(config_files_in(cli, sendmail_dir)?)
        .env_overrides(true);
    // The outbox is the registry's: the store `mailgate.outbox.url` names,
    // opened lazily (nothing is created until a command uses it).
    if let Some(key) = &cli.key_file {
        builder = builder.key_file(key);
    }
    Ok(builder)
}

/// The settings alone, without building the strategy: nothing is decrypted,
/// no key file is read, no strategy-specific key is required.
fn settings(cli: &Cli, registry: &Registry) -> Result<Settings, Error> {
    Settings::load(LoadOptions {
        files: config_files(cli)?,
        env: true,
        strategy_keys: registry.keys().copied().collect(),
        key_file: cli.key_file.clone(),
        ..LoadOptions::default()
    })
}

async fn run_command(cli: Cli, registry: Registry) -> Result<(), Failure> {
    match &cli.command {
        Command::Encrypt(args) => {
            let mut report = String::new();
            let result = encrypt::run(
                &config_files(&cli)?,
                cli.key_file.as_deref(),
                args,
                &encrypt::Known::of(&registry),
                &mut report,
            );
            // The report is shown on failure too (`--check` lists what it
            // found); -q leaves only the error, on stderr.
            if !report.is_empty() && !cli.quiet {
                print_out(format_args!("{}", report.trim_end_matches('\n')))?;
            }
            return result;
        }
        Command::Completions { shell } => return help::completions(*shell),
        Command::Relay => {
            let files = config_files(&cli)?;
            let key_file = cli.key_file.clone();
            let registry = registry.clone();
            let build: relay::Build = Box::new(move || {
                let mut builder = Mailer::builder()
                    .registry(registry.clone())
                    .files(files.clone())
                    .env_overrides(true);
                if let Some(key) = &key_file {
                    builder = builder.key_file(key);
                }
                Ok(builder)
            });
            return relay::run(build).await;
        }
        Command::RelayUser {
            command: RelayUserCommand::Add { name },
        } => {
            let report = relay::add_user(&settings(&cli, &registry)?, name)?;
            return if cli.quiet {
                Ok(())
            } else {
                print_out(format_args!("{report}"))
            };
        }
        Command::Man { dir } => return man::man(dir.as_deref()),
        #[cfg(not(feature = "demo"))]
        Command::Demo { .. } => {
            return Err(Failure::exit(
                69,
                "unavailable",
                "this mailgate is built without the demo (cargo feature `demo`); run it with `cargo run -p mailgate-cli --features demo -- demo`",
            ));
        }
        // Only the settings: `server` works without the key file or the secrets.
        Command::Server => {
            return print_out(format_args!(
                "{}",
                settings(&cli, &registry)?.server().address()
            ));
        }
        _ => {}
    }
    // Usage errors (no recipient, no body) come before the settings are loaded.
    let sendmail_args = match &cli.command {
        Command::Send(args) => {
            send::check_send_args(args)?;
            None
        }
        Command::Sendmail(cmd) => {
            let args = sendmail::parse_sendmail_args(&cmd.args)?;
            if args.help {
                return print_out(format_args!("{}", sendmail::USAGE.trim_end()));
            }
            if args.version {
                return print_out(format_args!(
                    "mailgate {} (sendmail)",
                    env!("CARGO_PKG_VERSION")
                ));
            }
            Some(args)
        }
        _ => None,
    };
    let sendmail_dir = sendmail_args.as_ref().and_then(|a| a.config_dir.as_deref());
    queue::remember_config(config_args(&cli, sendmail_dir));
    let mut builder = builder(&cli, &registry, sendmail_dir)?;
    if let Command::Send(args) = &cli.command {
        builder = builder.all_or_nothing(args.all_or_nothing);
    }
    let mailer = builder.build()?;
    let result = match &cli.command {
        Command::Check(args) => check(&mailer, &registry, args, cli.quiet).await,
        Command::Send(args) => send::send(&mailer, args, cli.quiet).await,
        Command::Sendmail(_) => match &sendmail_args {
            Some(args) => sendmail::sendmail(&mailer, args).await,
            None => unreachable!("parsed above"),
        },
        Command::Queue { command } => queue::run(&mailer, command, cli.quiet).await,
        Command::Deliver(args) => queue::deliver(&mailer, cli.quiet, args.until_empty).await,
        Command::Token => match mailer.oauth_access_token().await {
            Ok(token) => print_out(format_args!("{}", token.expose_secret())),
            Err(e) => Err(e.into()),
        },
        Command::Server
        | Command::Encrypt(_)
        | Command::Completions { .. }
        | Command::Man { .. }
        | Command::Relay
        | Command::RelayUser { .. } => {
            unreachable!("handled before the mailer is built")
        }
        #[cfg(feature = "demo")]
        Command::Demo(_) => unreachable!("handled in main, before any mailer"),
        #[cfg(not(feature = "demo"))]
        Command::Demo { .. } => unreachable!("handled before the mailer is built"),
    };
    mailer.close().await;
    result
}

/// Each setting that is set: its key, its value as it may be shown, where
/// it came from.
fn setting_origins(settings: &Settings) -> Vec<(String, String, &mailgate::Origin)> {
    settings
        .keys()
        .filter_map(|key| Some((key.to_owned(), settings.shown(key)?, settings.origin(key)?)))
        .collect()
}

fn origin_json(origin: &mailgate::Origin) -> serde_json::Value {
    match origin {
        mailgate::Origin::File { path, line } => serde_json::json!({
            "source": "file", "file": path.display().to_string(), "line": line,
        }),
        mailgate::Origin::Env { var } => serde_json::json!({ "source": "env", "variable": var }),
        _ => serde_json::json!({ "source": "builder" }),
    }
}

async fn check(
    mailer: &Mailer,
    registry: &Registry,
    args: &CheckArgs,
    quiet: bool,
) -> Result<(), Failure> {
    let settings = mailer.settings();
    // Every ENC(...) value, not only the strategy's: a value under another
    // key is found now rather than when a send needs it.
    let secrets = settings.verify_secrets();
    let origins = setting_origins(settings);
    let resolution = mailer.resolution();
    let server = settings.server();
    let files: Vec<String> = settings
        .files_read()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let ca_files: Vec<String> = server
        .ca_files
        .iter()
        .map(|c| c.path.display().to_string())
        .collect();
    let details = mailer.describe_strategy();
    let connect = if args.connect {
        Some(mailer.check_connection().await)
    } else {
        None
    };
    // The outbox: where, and what it holds (a file not created yet is read
    // as empty, and not created by looking).
    let outbox = match mailer.outbox() {
        Err(_) => None,
        Ok(store) if !store.created() => Some((store.describe(), Ok(None))),
        Ok(store) => Some((store.describe(), store.stats().await.map(Some))),
    };
    // The stores this mailgate can open (`mailgate.outbox.url` schemes).
    let stores: Vec<String> = registry
        .stores()
        .map(|d| format!("{} ({})", d.name, d.schemes.join(":, ") + ":"))
        .collect();
    // Whether anything delivers what is queued.
    let workers = match mailer.outbox() {
        Ok(store) if store.created() => store.live_workers().await.ok(),
        _ => None,
    };
    // A relay running on this folder: whether its settings are current.
    let relay = relay::status_line(mailer);
    // Built first, printed once the failures are known: the JSON object
    // carries the first one.
    let mut json_out = None;
    let mut text_out = None;
    if args.json {
        let mut obj = serde_json::json!({
            "strategy": resolution.strategy,
            "rule": resolution.rule.id(),
            "rule_text": resolution.rule.to_string(),
            "server": server.address(),
            "host": server.host,
            "port": server.port,
            "tls": server.tls.as_str(),
            "ca_files": ca_files,
            "files": files,
            "details": details.iter().map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(v.clone()))).collect::<serde_json::Map<_, _>>(),
            // Every warning stderr shows, from loading and from this check.
            "warnings": warnings::collected(),
            "settings": origins.iter().map(|(key, value, origin)| {
                let mut o = origin_json(origin);
                o["value"] = serde_json::Value::from(value.clone());
                o["origin"] = serde_json::Value::from(origin.to_string());
                (key.clone(), o)
            }).collect::<serde_json::Map<_, _>>(),
            "secrets": match &secrets {
                Ok(()) => serde_json::json!({ "ok": true }),
                Err(e) => serde_json::json!({ "ok": false, "error": e.to_string(), "exit_code": 78 }),
            },
        });
        if let Some(relay) = &relay {
            obj["relay"] = serde_json::Value::from(relay.clone());
        }
        obj["outbox_stores"] = serde_json::Value::from(registry.store_names());
        if let Some((location, stats)) = &outbox {
            obj["outbox"] = match stats {
                Ok(Some(stats)) => {
                    let mut o = queue::stats_json(stats, location);
                    o["workers"] = serde_json::Value::from(workers);
                    o
                }
                Ok(None) => serde_json::json!({ "outbox": location, "created": false }),
                Err(e) => {
                    serde_json::json!({ "outbox": location, "error": e.to_string(), "exit_code": e.exit_code() })
                }
            };
        }
        if let Some(result) = &connect {
            obj["connect"] = match result {
                Ok(r) => serde_json::json!({
                    "ok": true,
                    "server_name": r.server_name,
                    "encrypted": r.encrypted,
                    "authenticated_with": r.strategy,
                    "extensions": r.extensions,
                    "elapsed_ms": r.elapsed.as_millis() as u64,
                }),
                Err(e) => serde_json::json!({
                    "ok": false,
                    "error": e.to_string(),
                    "exit_code": e.exit_code(),
                }),
            };
        }
        json_out = Some(obj);
    } else if !quiet {
        use std::fmt::Write as _;
        let mut text = String::new();
        let _ = writeln!(text, "strategy: {}", resolution.strategy);
        let _ = writeln!(
            text,
            "rule:     {}: {}",
            resolution.rule.id(),
            resolution.rule
        );
        let _ = writeln!(text, "server:   {}", server.address());
        let _ = write!(text, "tls:      {}", server.tls.as_str());
        if !ca_files.is_empty() {
            let _ = write!(text, " (extra CA files: {})", ca_files.join(", "));
        }
        let _ = write!(text, "\nfiles:    {}", files.join(", "));
        for (key, value) in &details {
            let _ = write!(text, "\n{:<9} {value}", format!("{key}:"));
        }
        match &outbox {
            Some((location, Ok(Some(stats)))) => {
                let _ = write!(
                    text,
                    "\noutbox:   {location}\n          {}",
                    queue::stats_text(stats)
                );
                let waiting = stats.queued + stats.sending;
                match workers {
                    Some(0) if waiting > 0 => {
                        let _ = write!(
                            text,
                            "\n          workers: none alive, {waiting} message(s) waiting: run `mailgate deliver` (or leave mailgate.outbox.autoDeliver on)"
                        );
                    }
                    Some(n) => {
                        let _ = write!(text, "\n          workers: {n} alive");
                    }
                    None => {}
                }
            }
            Some((location, Ok(None))) => {
                let _ = write!(
                    text,
                    "\noutbox:   {location} (not created yet: it is on first use)"
                );
            }
            Some((location, Err(e))) => {
                let _ = write!(
                    text,
                    "\noutbox:   {location}: FAILED (exit {}; the error is on stderr)",
                    e.exit_code()
                );
            }
            None => {}
        }
        if !stores.is_empty() {
            let _ = write!(text, "\nstores:   {}", stores.join(", "));
        }
        if let Some(relay) = &relay {
            let _ = write!(text, "\nrelay:    {relay}");
        }
        match &secrets {
            Ok(()) => {}
            Err(_) => {
                let _ = write!(text, "\nsecrets:  FAILED (exit 78; the error is on stderr)");
            }
        }
        if !origins.is_empty() {
            let _ = write!(text, "\nsettings: where each value came from");
            let key_width = origins.iter().map(|(k, _, _)| k.len()).max().unwrap_or(0);
            let value_width = origins
                .iter()
                .map(|(_, v, _)| v.chars().count())
                .max()
                .unwrap_or(0)
                .min(40);
            for (key, value, origin) in &origins {
                let _ = write!(
                    text,
                    "\n  {key:<key_width$}  {value:<value_width$}  {origin}"
                );
            }
        }
        match &connect {
            Some(Ok(r)) => {
                let _ = write!(
                    text,
                    "\nconnect:  ok: {} ({}) {}, authenticated with {} in {} ms",
                    r.server,
                    r.server_name,
                    if r.encrypted {
                        "encrypted"
                    } else {
                        "NOT encrypted"
                    },
                    r.strategy,
                    r.elapsed.as_millis()
                );
                let _ = write!(text, "\noffers:   {}", r.extensions.join(" "));
            }
            // The error itself is printed once, on stderr, by `main`.
            Some(Err(e)) => {
                let _ = write!(
                    text,
                    "\nconnect:  FAILED (exit {}; the error is on stderr)",
                    e.exit_code()
                );
            }
            None => {}
        }
        text_out = Some(text);
    }
    // Every failure is shown; the first decides the exit code (and is
    // printed by `run`, or carried by the JSON object).
    let mut failures: Vec<Error> = Vec::new();
    if let Err(e) = secrets {
        failures.push(Error::Config(e));
    }
    if let Some(Err(e)) = connect {
        failures.push(e);
    }
    if let Some((_, Err(e))) = outbox {
        failures.push(e);
    }
    let mut failures = failures.into_iter();
    let mut failure = failures.next().map(Failure::Mailgate);
    if let Some(mut obj) = json_out.filter(|_| !quiet) {
        failure = failure.map(|f| f.put_in(&mut obj));
        print_out(format_args!("{obj:#}"))?;
    }
    if let Some(text) = text_out {
        print_out(format_args!("{text}"))?;
    }
    match failure {
        None => Ok(()),
        Some(first) => {
            for other in failures {
                eprintln!("mailgate: {other}");
            }
            Err(first)
        }
    }
}
