//! `mailgate`: send mail with the settings of an RV&S server's config folder.
//!
//! Exit codes follow sysexits: 0 ok, 64 usage, 65 bad message input, 69
//! server unreachable, 75 temporary failure, 77 authentication refused, 78
//! configuration error.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

#[cfg(feature = "demo")]
mod demo;
mod encrypt;

use clap::{Args, Parser, Subcommand};
use mailgate::properties::ConfigFiles;
use mailgate::secrecy::ExposeSecret;
use mailgate::{Error, Mailer, MailerBuilder, OutgoingMessage};
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(
    name = "mailgate",
    version,
    about = "Send notification mail the way an RV&S server does"
)]
struct Cli {
    /// Folder holding is.properties and security.properties
    /// [default: $MAILGATE_CONFIG_DIR, else ./config]
    #[arg(long, global = true, value_name = "DIR")]
    config_dir: Option<PathBuf>,
    /// The is.properties file (overrides the folder's)
    #[arg(long = "is", global = true, value_name = "FILE")]
    is_file: Option<PathBuf>,
    /// The security.properties file (overrides the folder's)
    #[arg(long = "security", global = true, value_name = "FILE")]
    security_file: Option<PathBuf>,
    /// Key file for ENC(...) secrets [default: mailgate.crypto.keyFile, else mailgate.key in the config folder]
    #[arg(long, global = true, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// More output: -v logs the SMTP conversation (AUTH payloads redacted), -vv traces
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,
    /// Only errors on stderr
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate the settings; print the chosen strategy and the rule that chose it
    Check(CheckArgs),
    /// Send a message
    Send(SendArgs),
    /// Print an OAuth access token on stdout, and nothing else there
    Token,
    /// Print HOST:PORT of the SMTP server
    Server,
    /// Encrypt the secret properties in place (ENC(...) values)
    Encrypt(encrypt::EncryptArgs),
    /// Run the whole job on loopback: dev servers, one config folder per strategy, one message each
    #[cfg(feature = "demo")]
    Demo(demo::DemoArgs),
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

#[derive(Args, Debug)]
struct SendArgs {
    /// Recipient; repeat or separate with commas
    #[arg(long, required = true, value_name = "ADDR")]
    to: Vec<String>,
    /// Carbon-copy recipient
    #[arg(long, value_name = "ADDR")]
    cc: Vec<String>,
    /// Blind carbon-copy recipient
    #[arg(long, value_name = "ADDR")]
    bcc: Vec<String>,
    /// Subject line
    #[arg(long)]
    subject: String,
    /// Body text (else --body-file, else stdin)
    #[arg(long, conflicts_with = "body_file")]
    body: Option<String>,
    /// Read the body from a file
    #[arg(long, value_name = "FILE")]
    body_file: Option<PathBuf>,
    /// Sender [default: mksis.logging.email.from]
    #[arg(long, value_name = "ADDR")]
    from: Option<String>,
    /// The body is HTML
    #[arg(long)]
    html: bool,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 64 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_logging(cli.verbose, cli.quiet);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mailgate: cannot start the async runtime: {e}");
            return ExitCode::from(71);
        }
    };
    // The demo brings its own servers and config folders: no Mailer here.
    #[cfg(feature = "demo")]
    if let Command::Demo(args) = &cli.command {
        return runtime.block_on(demo::run(args));
    }
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailgate: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Our crates log at the chosen level; others stay at warnings so no
/// third-party trace output (HTTP headers, TLS secrets) reaches the terminal.
fn init_logging(verbose: u8, quiet: bool) {
    let ours = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let others = if quiet { "error" } else { "warn" };
    let filter = EnvFilter::new(format!(
        "{others},mailgate={ours},mailgate_core={ours},mailgate_auth_open={ours},mailgate_auth_basic={ours},mailgate_auth_oauth={ours},mailgate_cli={ours}"
    ));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .init();
}

/// The files to read: `--config-dir`, else `$MAILGATE_CONFIG_DIR`, else
/// `./config`; `--is` and `--security` name files directly.
fn config_files(cli: &Cli) -> Result<ConfigFiles, Error> {
    let dir = cli
        .config_dir
        .clone()
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
        files.security = Some(security.clone());
    }
    Ok(files)
}

fn builder(cli: &Cli) -> Result<MailerBuilder, Error> {
    let mut builder = Mailer::builder().files(config_files(cli)?);
    if let Some(key) = &cli.key_file {
        builder = builder.key_file(key);
    }
    Ok(builder)
}

async fn run(cli: Cli) -> Result<(), Error> {
    if let Command::Encrypt(args) = &cli.command {
        return encrypt::run(&config_files(&cli)?, cli.key_file.as_deref(), args);
    }
    let mailer = builder(&cli)?.build()?;
    let result = match &cli.command {
        Command::Check(args) => check(&mailer, args).await,
        Command::Send(args) => send(&mailer, args).await,
        Command::Token => {
            let token = mailer.oauth_access_token().await?;
            println!("{}", token.expose_secret());
            Ok(())
        }
        Command::Server => {
            println!("{}", mailer.mail_hostname_and_port());
            Ok(())
        }
        Command::Encrypt(_) => unreachable!("handled before the mailer is built"),
        #[cfg(feature = "demo")]
        Command::Demo(_) => unreachable!("handled in main, before any mailer"),
    };
    mailer.close().await;
    result
}

async fn check(mailer: &Mailer, args: &CheckArgs) -> Result<(), Error> {
    let settings = mailer.settings();
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
            "warnings": settings.warnings().iter().map(|w| w.0.clone()).collect::<Vec<_>>(),
        });
        if let Some(result) = &connect {
            obj["connect"] = match result {
                Ok(r) => serde_json::json!({
                    "ok": true,
                    "server_name": r.server_name,
                    "encrypted": r.encrypted,
                    "authenticated_with": r.strategy,
                    "elapsed_ms": r.elapsed.as_millis() as u64,
                }),
                Err(e) => serde_json::json!({
                    "ok": false,
                    "error": e.to_string(),
                    "exit_code": e.exit_code(),
                }),
            };
        }
        println!("{obj:#}");
    } else {
        println!("strategy: {}", resolution.strategy);
        println!("rule:     {} ({})", resolution.rule, resolution.rule.id());
        println!("server:   {}", server.address());
        print!("tls:      {}", server.tls.as_str());
        if !ca_files.is_empty() {
            print!(" (extra CA files: {})", ca_files.join(", "));
        }
        println!();
        println!("files:    {}", files.join(", "));
        for (key, value) in &details {
            println!("{:<9} {value}", format!("{key}:"));
        }
        if let Some(result) = &connect {
            match result {
                Ok(r) => println!(
                    "connect:  ok: {} ({}) {}, authenticated with {} in {} ms",
                    r.server,
                    r.server_name,
                    if r.encrypted {
                        "encrypted"
                    } else {
                        "NOT encrypted"
                    },
                    r.strategy,
                    r.elapsed.as_millis()
                ),
                Err(e) => println!("connect:  FAILED: {e}"),
            }
        }
    }
    match connect {
        Some(Err(e)) => Err(e),
        _ => Ok(()),
    }
}

async fn send(mailer: &Mailer, args: &SendArgs) -> Result<(), Error> {
    let body = match (&args.body, &args.body_file) {
        (Some(body), _) => body.clone(),
        (None, Some(path)) => std::fs::read_to_string(path).map_err(|e| Error::InvalidMessage {
            field: "--body-file".into(),
            reason: format!("cannot read {}: {e}", path.display()),
        })?,
        (None, None) => {
            let mut body = String::new();
            std::io::stdin()
                .read_to_string(&mut body)
                .map_err(|e| Error::InvalidMessage {
                    field: "body".into(),
                    reason: format!("cannot read the body from stdin: {e}"),
                })?;
            body
        }
    };
    let message = OutgoingMessage {
        from: args.from.clone(),
        to: args.to.clone(),
        cc: args.cc.clone(),
        bcc: args.bcc.clone(),
        subject: args.subject.clone(),
        body,
        html: args.html,
    }
    .build(mailer.settings().sender())?;
    let delivery = mailer.send(&message).await?;
    println!("sent: {}", delivery.reply);
    Ok(())
}
