//! `mailgate demo`: the whole job on loopback, out of the box.
//!
//! Starts the development servers (an internal open relay; a submission
//! server with STARTTLS required and AUTH PLAIN, LOGIN and XOAUTH2; an OAuth
//! 2.0 token endpoint), writes one real config folder per strategy
//! (`is.properties`, `security.properties`, the CA file, secrets encrypted as
//! `mailgate encrypt` leaves them), builds the same `Mailer` that
//! `mailgate --config-dir DIR send` builds from each, sends one message, and
//! checks what the server recorded. `--serve` then keeps everything running
//! for hand-made `mailgate` commands until Ctrl-C (or SIGTERM, SIGHUP).
//! However it stops, short of SIGKILL, the temporary folder (config folders
//! and key files) is removed.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use mailgate::secrets::{self, SecretKey};
use mailgate::{ConfigError, Error, Mailer, Rule};
use mailgate_devserver::{DevSmtpServer, DevTokenEndpoint, Mechanism, ReceivedMessage};

const FROM: &str = "alm@example.com";
const TO: &str = "dev@example.com";
const PASSWORD: &str = "demo-Passw0rd";
const CLIENT_ID: &str = "mailgate-demo-client";
const CLIENT_SECRET: &str = "demo-client-secret";
const SCOPE: &str = "https://mail.example.test/.default";
const CA_FILE: &str = "demo-ca.pem";
/// EX_SOFTWARE: mailgate sent, but the server saw something else.
const EXIT_MISMATCH: u8 = 70;
/// EX_OSERR: the demo could not set itself up (ports, temp dir).
const EXIT_SETUP: u8 = 71;

/// `mailgate demo --help`: the global options it lists do not all apply.
pub(crate) const IGNORED_OPTIONS: &str = "The demo ignores --config-dir, --is, --security, --key-file and \
MAILGATE_CONFIG_DIR: it writes its own config folders (and key files) in a temporary folder \
and removes them when it ends, also on Ctrl-C, SIGTERM or SIGHUP. -v and -q apply.";

/// `mailgate demo` options.
#[derive(Args, Debug)]
pub(crate) struct DemoArgs {
    /// After the demo, keep the servers running, print a ready-to-paste
    /// `mailgate --config-dir DIR send ...` per config folder, and wait for Ctrl-C
    #[arg(long)]
    serve: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Open,
    Basic,
    OAuth,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::Open, Mode::Basic, Mode::OAuth];

    /// The strategy the folder must resolve to; also the folder's name.
    fn strategy(self) -> &'static str {
        match self {
            Mode::Open => "open",
            Mode::Basic => "basic",
            Mode::OAuth => "oauth",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Mode::Open => "open mail relay, plain SMTP, no AUTH",
            Mode::Basic => "SMTP basic AUTH over STARTTLS",
            Mode::OAuth => "OAuth 2.0 client credentials, XOAUTH2 over STARTTLS",
        }
    }

    fn rule(self) -> Rule {
        match self {
            Mode::Open => Rule::Neither,
            Mode::Basic => Rule::BasicOnly,
            Mode::OAuth => Rule::OAuthOnly,
        }
    }

    fn subject(self) -> String {
        format!("mailgate demo: {}", self.strategy())
    }

    /// What the server must record.
    fn expected_tls(self) -> bool {
        self != Mode::Open
    }

    fn expected_auth(self) -> Option<Mechanism> {
        match self {
            Mode::Open => None,
            Mode::Basic => Some(Mechanism::Plain),
            Mode::OAuth => Some(Mechanism::XOAuth2),
        }
    }

    fn expected_tokens(self) -> u64 {
        u64::from(self == Mode::OAuth)
    }
}

/// The running servers and the folder holding the config folders.
struct World {
    relay: DevSmtpServer,
    submission: DevSmtpServer,
    endpoint: DevTokenEndpoint,
    root: tempfile::TempDir,
}

impl World {
    async fn start() -> std::io::Result<World> {
        let endpoint = DevTokenEndpoint::builder()
            .client(CLIENT_ID, CLIENT_SECRET)
            .allowed_scopes([SCOPE])
            .start()
            .await?;
        // An internal relay (port 25 style): accepts mail without AUTH.
        let relay = DevSmtpServer::builder().start().await?;
        // A submission server (port 587 style): STARTTLS before anything,
        // then AUTH is required.
        let submission = DevSmtpServer::builder()
            .starttls_required()
            .mechanisms([Mechanism::Plain, Mechanism::Login, Mechanism::XOAuth2])
            .user(FROM, PASSWORD)
            .token_registry(endpoint.registry())
            .oauth_scope(SCOPE)
            .start()
            .await?;
        let root = tempfile::Builder::new()
            .prefix("mailgate-demo-")
            .tempdir()?;
        Ok(World {
            relay,
            submission,
            endpoint,
            root,
        })
    }

    fn dir(&self, mode: Mode) -> PathBuf {
        self.root.path().join(mode.strategy())
    }

    fn server(&self, mode: Mode) -> &DevSmtpServer {
        match mode {
            Mode::Open => &self.relay,
            Mode::Basic | Mode::OAuth => &self.submission,
        }
    }

    /// Writes `is.properties` and `security.properties` for `mode`, as an
    /// administrator would, then encrypts the secrets in place.
    fn write_config(&self, mode: Mode) -> Result<PathBuf, String> {
        let dir = self.dir(mode);
        let fail =
            |what: &str, e: &dyn std::fmt::Display| format!("{what} in {}: {e}", dir.display());
        std::fs::create_dir_all(&dir).map_err(|e| fail("creating the folder", &e))?;
        let server = self.server(mode);
        let (oauth, basic, ssl) = match mode {
            Mode::Open => (false, false, false),
            Mode::Basic => (false, true, true),
            Mode::OAuth => (true, false, true),
        };
        let mut is = format!(
            "# mailgate demo: {title}\n\
             mksis.smtp.oauth.authentication={oauth}\n\
             mksis.smtp.authentication={basic}\n\
             mksis.smtp.ssl.enabled={ssl}\n\
             mksis.logging.email.from={FROM}\n\
             mksis.logging.email.server.hostname=localhost\n\
             mksis.logging.email.server.port={port}\n\
             mailgate.smtp.timeoutSeconds=10\n",
            title = mode.title(),
            port = server.port(),
        );
        if ssl {
            server
                .ca()
                .write_ca_pem(dir.join(CA_FILE))
                .map_err(|e| fail("writing the CA file", &e))?;
            is.push_str("# the dev server's CA (the keytool -importcert step)\n");
            let _ = writeln!(is, "mailgate.smtp.ssl.caFile={CA_FILE}");
        }
        if mode == Mode::Basic {
            let _ = writeln!(is, "mksis.logging.emailfrom.password={PASSWORD}");
        }
        let mut security = String::from("# mailgate demo\n");
        if mode == Mode::OAuth {
            let _ = write!(
                security,
                "mksis.security.smtp.oauth.clientID={CLIENT_ID}\n\
                 mksis.security.smtp.oauth.clientSecret={CLIENT_SECRET}\n\
                 mksis.security.smtp.oauth.tokenEndpointURL={url}\n\
                 mksis.security.smtp.oauth.scope={SCOPE}\n",
                url = self.endpoint.url(),
            );
        }
        let is_path = dir.join("is.properties");
        let security_path = dir.join("security.properties");
        std::fs::write(&is_path, is).map_err(|e| fail("writing is.properties", &e))?;
        std::fs::write(&security_path, security)
            .map_err(|e| fail("writing security.properties", &e))?;
        if mode != Mode::Open {
            encrypt_secrets(&dir, [&is_path, &security_path])
                .map_err(|e| fail("encrypting the secrets", &e))?;
        }
        Ok(dir)
    }
}

/// What `mailgate --config-dir DIR encrypt` does (`encrypt.rs`): the key file
/// `mailgate.key` beside the properties, then every secret key of
/// the built-in strategies declare in each file encrypted in place with it.
fn encrypt_secrets<'a>(
    dir: &Path,
    files: impl IntoIterator<Item = &'a PathBuf>,
) -> Result<(), ConfigError> {
    let (key, _created) =
        SecretKey::load_or_create(dir.join(mailgate::settings::DEFAULT_KEY_FILE))?;
    let secret_keys = mailgate::default_registry()?.secret_keys();
    for path in files {
        secrets::encrypt_file(path, &secret_keys, &key)?;
    }
    Ok(())
}

/// What happened in one mode.
struct Outcome {
    mode: Mode,
    strategy: Option<String>,
    rule: Option<Rule>,
    message: Option<ReceivedMessage>,
    tokens: u64,
    error: Option<Error>,
    differences: Vec<String>,
}

impl Outcome {
    fn ok(&self) -> bool {
        self.error.is_none() && self.differences.is_empty()
    }
}

/// SIGINT, SIGTERM and SIGHUP, caught for the whole run so that the
/// temporary folder (with its key files) is removed however the demo is
/// stopped.
struct Stop {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Stop {
    fn new() -> std::io::Result<Stop> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Stop {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The next of the three: its name and number.
    async fn wait(&mut self) -> (&'static str, u8) {
        tokio::select! {
            _ = self.int.recv() => ("SIGINT", 2),
            _ = self.term.recv() => ("SIGTERM", 15),
            _ = self.hup.recv() => ("SIGHUP", 1),
        }
    }
}

/// Runs the demo; the exit code is 0 only if every message arrived as
/// expected (128 + the signal's number when one stops the demo itself).
pub(crate) async fn run(args: &DemoArgs) -> ExitCode {
    let mut stop = match Stop::new() {
        Ok(stop) => stop,
        Err(e) => {
            eprintln!("mailgate demo: cannot catch signals: {e}");
            return ExitCode::from(EXIT_SETUP);
        }
    };
    let world = match World::start().await {
        Ok(world) => world,
        Err(e) => {
            eprintln!("mailgate demo: cannot start the dev servers: {e}");
            return ExitCode::from(EXIT_SETUP);
        }
    };
    let code = demo(&world, args, &mut stop).await;
    let World {
        relay,
        submission,
        endpoint,
        root,
    } = world;
    relay.shutdown().await;
    submission.shutdown().await;
    endpoint.shutdown().await;
    let path = root.path().to_owned();
    if let Err(e) = root.close() {
        eprintln!("mailgate demo: cannot remove {}: {e}", path.display());
    }
    ExitCode::from(code)
}

/// The demo itself, then `--serve`; its exit code. A signal during the
/// demo stops it (128 + the signal's number); during `--serve` it ends the
/// serving, as Ctrl-C does.
async fn demo(world: &World, args: &DemoArgs, stop: &mut Stop) -> u8 {
    let mut dirs = Vec::new();
    for mode in Mode::ALL {
        match world.write_config(mode) {
            Ok(dir) => dirs.push((mode, dir)),
            Err(e) => {
                eprintln!("mailgate demo: {e}");
                return EXIT_SETUP;
            }
        }
    }

    print_header(world);
    let sends = async {
        let mut outcomes = Vec::new();
        for (mode, dir) in &dirs {
            let outcome = send_one(world, *mode, dir).await;
            print_outcome(&outcome);
            outcomes.push(outcome);
        }
        outcomes
    };
    let outcomes = tokio::select! {
        outcomes = sends => outcomes,
        (name, number) = stop.wait() => {
            eprintln!("mailgate demo: stopped by {name}; removing {}", world.root.path().display());
            return 128 + number;
        }
    };

    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.ok()).collect();
    let code = if failed.is_empty() {
        println!();
        println!("demo ok: open, basic and oauth all delivered as expected");
        0
    } else {
        let names: Vec<&str> = failed.iter().map(|o| o.mode.strategy()).collect();
        eprintln!(
            "mailgate demo: FAILED for {}: see `result` above",
            names.join(", ")
        );
        failed
            .iter()
            .find_map(|o| o.error.as_ref().map(Error::exit_code))
            .unwrap_or(EXIT_MISMATCH)
    };

    if args.serve {
        serve(world, &dirs, stop).await;
    }
    code
}

/// Builds the Mailer from `dir` as `mailgate --config-dir DIR send` does
/// (but with environment overrides off, so stray `MKSIS_*` variables cannot
/// change the demo), sends one message and compares what the server recorded.
async fn send_one(world: &World, mode: Mode, dir: &Path) -> Outcome {
    let server = world.server(mode);
    let tokens_before = world.endpoint.issued_count();
    let mut outcome = Outcome {
        mode,
        strategy: None,
        rule: None,
        message: None,
        tokens: 0,
        error: None,
        differences: Vec::new(),
    };
    let mailer = match Mailer::builder()
        .config_dir(dir)
        .env_overrides(false)
        .build()
    {
        Ok(mailer) => mailer,
        Err(e) => {
            outcome.error = Some(e);
            return outcome;
        }
    };
    outcome.strategy = Some(mailer.resolution().strategy.clone());
    outcome.rule = Some(mailer.resolution().rule);
    let subject = mode.subject();
    let body = format!(
        "Sent by `mailgate demo` with the {} strategy.\n",
        mode.strategy()
    );
    let sent = mailer.sendmail(FROM, TO, &subject, &body).await;
    mailer.close().await;
    outcome.tokens = world.endpoint.issued_count() - tokens_before;
    if let Err(e) = sent {
        outcome.error = Some(e);
        return outcome;
    }
    // The server records a message before it answers 250.
    outcome.message = server
        .messages()
        .into_iter()
        .rev()
        .find(|m| m.subject().as_deref() == Some(subject.as_str()));
    outcome.differences = compare(mode, &outcome, &body);
    outcome
}

/// Every recorded fact that is not what `mode` should produce.
fn compare(mode: Mode, outcome: &Outcome, body: &str) -> Vec<String> {
    let mut diffs = Vec::new();
    let mut differ = |what: &str, saw: String, expected: String| {
        if saw != expected {
            diffs.push(format!("{what} was {saw}, expected {expected}"));
        }
    };
    differ(
        "strategy",
        outcome.strategy.clone().unwrap_or_default(),
        mode.strategy().to_owned(),
    );
    differ(
        "rule",
        outcome.rule.map(Rule::id).unwrap_or_default().to_owned(),
        mode.rule().id().to_owned(),
    );
    differ(
        "tokens fetched",
        outcome.tokens.to_string(),
        mode.expected_tokens().to_string(),
    );
    let Some(m) = &outcome.message else {
        diffs.push(format!(
            "the server recorded no message with subject {:?}",
            mode.subject()
        ));
        return diffs;
    };
    let mut differ = |what: &str, saw: String, expected: String| {
        if saw != expected {
            diffs.push(format!("{what} was {saw}, expected {expected}"));
        }
    };
    differ(
        "TLS",
        yes_no(m.tls).into(),
        yes_no(mode.expected_tls()).into(),
    );
    differ(
        "AUTH",
        auth_text(m),
        match mode.expected_auth() {
            Some(mech) => format!("{mech} as {FROM}"),
            None => "none".into(),
        },
    );
    differ("MAIL FROM", m.mail_from.clone(), FROM.into());
    differ("RCPT TO", m.rcpt_to.join(", "), TO.into());
    let received = String::from_utf8_lossy(m.body()).replace("\r\n", "\n");
    if !received.contains(body.trim_end()) {
        diffs.push(format!("the body was {received:?}, expected {body:?}"));
    }
    diffs
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn auth_text(m: &ReceivedMessage) -> String {
    match &m.auth {
        Some(a) => format!("{} as {}", a.mechanism, a.user),
        None => "none".into(),
    }
}

fn print_header(world: &World) {
    println!(
        "mailgate demo: real config folders, real servers on loopback, the Mailer of `mailgate send`"
    );
    println!();
    println!(
        "  relay SMTP       {}  no TLS, no AUTH (an internal open relay)",
        world.relay.addr()
    );
    println!(
        "  submission SMTP  {}  STARTTLS required, then AUTH PLAIN LOGIN XOAUTH2",
        world.submission.addr()
    );
    println!(
        "  token endpoint   {}  OAuth 2.0 client credentials",
        world.endpoint.url()
    );
    println!(
        "  config folders   {}/{{open,basic,oauth}}",
        world.root.path().display()
    );
    println!(
        "  secrets          ENC(...) and a mailgate.key per folder, as `mailgate encrypt` leaves them"
    );
}

fn print_outcome(o: &Outcome) {
    println!();
    println!("{}: {}", o.mode.strategy(), o.mode.title());
    if let (Some(strategy), Some(rule)) = (&o.strategy, o.rule) {
        println!("  strategy    {strategy}");
        println!("  rule        {}: {rule}", rule.id());
    }
    if let Some(m) = &o.message {
        println!(
            "  server saw  TLS {}, AUTH {}, on {}",
            yes_no(m.tls),
            auth_text(m),
            match o.mode {
                Mode::Open => "the relay",
                Mode::Basic | Mode::OAuth => "the submission server",
            }
        );
        println!(
            "              MAIL FROM {}, RCPT TO {}, Subject {:?}",
            m.mail_from,
            m.rcpt_to.join(", "),
            m.subject().unwrap_or_default()
        );
    }
    println!("  tokens      {} fetched", o.tokens);
    match &o.error {
        Some(e) => println!("  result      FAILED (exit {}): {e}", e.exit_code()),
        None if o.differences.is_empty() => println!("  result      delivered as expected"),
        None => println!("  result      FAILED: {}", o.differences.join("; ")),
    }
}

/// Keeps the servers up, prints a command per folder, and reports each
/// message that arrives until Ctrl-C, SIGTERM or SIGHUP. Each arrival
/// copies only the new messages, however many are stored.
async fn serve(world: &World, dirs: &[(Mode, PathBuf)], stop: &mut Stop) {
    let exe = std::env::current_exe()
        .map(|p| shell_quote(&p.display().to_string()))
        .unwrap_or_else(|_| "mailgate".into());
    println!();
    println!(
        "serving until Ctrl-C (or SIGTERM, SIGHUP); paste one of these into another terminal:"
    );
    for (mode, dir) in dirs {
        println!();
        println!("  # {}: {}", mode.strategy(), mode.title());
        println!(
            "  {exe} --config-dir {} send --to {TO} --subject 'hello from {}' --body 'sent by hand'",
            shell_quote(&dir.display().to_string()),
            mode.strategy()
        );
    }
    println!();
    let mut seen_relay = world.relay.message_count();
    let mut seen_submission = world.submission.message_count();
    let forever = Duration::from_secs(24 * 3600);
    let name = loop {
        tokio::select! {
            (name, _) = stop.wait() => break name,
            new = world.relay.wait_for_messages_after(seen_relay, forever) => {
                for m in &new {
                    print_received("relay", m, world.endpoint.issued_count());
                }
                seen_relay += new.len();
            }
            new = world.submission.wait_for_messages_after(seen_submission, forever) => {
                for m in &new {
                    print_received("submission", m, world.endpoint.issued_count());
                }
                seen_submission += new.len();
            }
        }
    };
    println!(
        "stopping on {name}; removing {}",
        world.root.path().display()
    );
}

fn print_received(server: &str, m: &ReceivedMessage, tokens: u64) {
    println!(
        "received on the {server} server: TLS {}, AUTH {}, MAIL FROM {}, RCPT TO {}, Subject {:?} (tokens issued so far: {tokens})",
        yes_no(m.tls),
        auth_text(m),
        m.mail_from,
        m.rcpt_to.join(", "),
        m.subject().unwrap_or_default()
    );
}

/// Quotes for a POSIX shell when needed.
fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:=@,".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
