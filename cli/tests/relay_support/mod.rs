//! For `relay.rs`: `mailgate relay` as a child process (its stderr
//! collected, its address read from the `listening on` line, killed on
//! drop), real SMTP clients (Python's smtplib, swaks, and a raw one for
//! byte-level control), and waiting with deadlines.

// Each test uses its own subset.
#![allow(dead_code)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use mailgate_integration_tests::ConfigDir;

pub mod memory;

/// `mksis.logging.email.from` in these tests.
pub const SENDER: &str = "alm@example.com";
/// How long a test waits for anything (a delivery, a log line, an exit).
/// Generous: CI runs on two loaded cores; a passing test never waits it out.
pub const WAIT: Duration = Duration::from_secs(30);

/// Runs blocking work (child processes, std sockets, sleeps) without
/// stalling the runtime that serves the dev servers.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// The `mailgate` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_mailgate")
}

/// `mailgate --config-dir DIR ARGS...`, without `MAILGATE_CONFIG_DIR`.
pub fn mailgate_cmd(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg("--config-dir")
        .arg(dir)
        .args(args)
        .env_remove("MAILGATE_CONFIG_DIR")
        .env("NO_COLOR", "1");
    cmd
}

/// A finished short command.
pub struct Ran {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert!(
            self.status.success(),
            "{}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// stdout as one JSON value.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// Runs `cmd` to its end with `stdin` (killed after [`WAIT`]).
pub fn run(mut cmd: Command, stdin: &[u8]) -> Ran {
    blocking(|| {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let mut input = child.stdin.take().expect("piped stdin");
        let bytes = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&bytes);
        });
        let out = read_all(child.stdout.take().expect("piped stdout"));
        let err = read_all(child.stderr.take().expect("piped stderr"));
        let status = wait_child(&mut child, WAIT)
            .unwrap_or_else(|| panic!("{cmd:?} still ran after {WAIT:?}: killed"));
        let _ = writer.join();
        Ran {
            status,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        }
    })
}

fn read_all(mut r: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Waits for `child` to exit; `None` (after killing it) when it did not
/// within `within`.
fn wait_child(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `mailgate --config-dir DIR ARGS...` to its end.
pub fn mailgate(dir: &Path, args: &[&str]) -> Ran {
    run(mailgate_cmd(dir, args), b"")
}

/// The outbox's messages (`queue list --all --json`).
pub fn queue_all(dir: &Path) -> Vec<serde_json::Value> {
    let ran = mailgate(dir, &["queue", "list", "--all", "--json"]);
    ran.assert_ok();
    ran.json().as_array().expect("a JSON array").clone()
}

/// The subjects of the outbox's messages, sorted.
pub fn queued_subjects(dir: &Path) -> Vec<String> {
    let mut subjects: Vec<String> = queue_all(dir)
        .iter()
        .map(|m| m["subject"].as_str().unwrap_or_default().to_owned())
        .collect();
    subjects.sort();
    subjects
}

/// Polls `probe` until it returns `Some`, at most `within`; panics naming
/// `what` (and the last state `describe` gives) otherwise.
pub fn poll<T>(
    what: &str,
    within: Duration,
    mut probe: impl FnMut() -> Option<T>,
    describe: impl Fn() -> String,
) -> T {
    blocking(|| {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = probe() {
                return v;
            }
            if Instant::now() >= deadline {
                panic!("waited {within:?} for {what}; last state:\n{}", describe());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    })
}

/// The `is.properties` of a relay folder: an upstream open relay on
/// `port`, the relay on a free loopback port, short retries; `extra`
/// replaces keys it names and adds the others.
pub fn relay_properties(port: u16, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut is: Vec<(String, String)> = [
        ("mksis.smtp.oauth.authentication", "false"),
        ("mksis.smtp.authentication", "false"),
        ("mksis.smtp.ssl.enabled", "false"),
        ("mksis.logging.email.from", SENDER),
        ("mksis.logging.email.server.hostname", "127.0.0.1"),
        ("mksis.logging.email.server.port", &port.to_string()),
        ("mailgate.smtp.timeoutSeconds", "5"),
        ("mailgate.relay.listen", "127.0.0.1:0"),
        ("mailgate.outbox.retry.initialSeconds", "1"),
        ("mailgate.outbox.retry.maxSeconds", "1"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    for (key, value) in extra {
        match is.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = (*value).to_owned(),
            None => is.push(((*key).to_owned(), (*value).to_owned())),
        }
    }
    is
}

/// Writes `entries` as `is.properties` of `dir`.
pub fn write_is(dir: &ConfigDir, entries: &[(String, String)]) {
    let pairs: Vec<(&str, &str)> = entries
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    dir.write_is(&pairs);
}

/// A relay folder for an open-relay upstream on `port`.
pub fn relay_folder(port: u16, extra: &[(&str, &str)]) -> ConfigDir {
    let dir = ConfigDir::with_properties(&[], &[]);
    write_is(&dir, &relay_properties(port, extra));
    dir
}

// ---------------------------------------------------------------------------
// The relay process

/// `mailgate relay` running in the background. Killed (SIGKILL) on drop if
/// still running; its stderr is printed when a test panics.
pub struct Relay {
    child: Option<Child>,
    pub pid: i32,
    pub addr: SocketAddr,
    /// Its stderr so far, and a signal for each line added.
    log: Arc<(Mutex<String>, Condvar)>,
    status: Option<ExitStatus>,
}

impl Relay {
    /// `mailgate --config-dir DIR relay`, waiting for its `listening on` line.
    pub fn start(dir: &Path) -> Relay {
        Relay::spawn(mailgate_cmd(dir, &["relay"]))
    }

    /// With `-v` (debug log: reloads, sessions).
    pub fn start_verbose(dir: &Path) -> Relay {
        Relay::spawn(mailgate_cmd(dir, &["-v", "relay"]))
    }

    /// Starts `cmd` (a `relay` command) and waits for the `listening on`
    /// line; panics with its stderr if it exits or does not say it in time.
    pub fn spawn(mut cmd: Command) -> Relay {
        blocking(|| {
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            let mut child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
            let pid = child.id() as i32;
            let log = Arc::new((Mutex::new(String::new()), Condvar::new()));
            let stderr = child.stderr.take().expect("piped stderr");
            let sink = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stderr);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match reader.read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            sink.0
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push_str(&String::from_utf8_lossy(&line));
                            sink.1.notify_all();
                        }
                    }
                }
            });
            let mut relay = Relay {
                child: Some(child),
                pid,
                addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                log,
                status: None,
            };
            let deadline = Instant::now() + WAIT;
            loop {
                // Woken by each line: the caller may act on the line at
                // once, as a service manager would.
                let text = {
                    let (lock, cvar) = &*relay.log;
                    let text = lock.lock().unwrap_or_else(|p| p.into_inner());
                    let text = if listening_addr(&text).is_some() {
                        text
                    } else {
                        cvar.wait_timeout(text, Duration::from_millis(10))
                            .unwrap_or_else(|p| p.into_inner())
                            .0
                    };
                    text.clone()
                };
                if let Some(addr) = listening_addr(&text) {
                    relay.addr = addr;
                    return relay;
                }
                if let Some(status) = relay.try_status() {
                    // Let the reader take the last lines.
                    std::thread::sleep(Duration::from_millis(100));
                    panic!(
                        "mailgate relay exited ({status}) before listening:\n{}",
                        relay.log()
                    );
                }
                assert!(
                    Instant::now() < deadline,
                    "mailgate relay did not say `listening on` within {WAIT:?}:\n{text}"
                );
            }
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Everything it wrote on stderr so far.
    pub fn log(&self) -> String {
        self.log.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits until its stderr, from byte `from` on, holds `needle`;
    /// returns the stderr from `from`.
    pub fn wait_log(&self, from: usize, needle: &str) -> String {
        poll(
            &format!("`{needle}` on the relay's stderr"),
            WAIT,
            || {
                let log = self.log();
                let tail = log.get(from..).unwrap_or_default();
                tail.contains(needle).then(|| tail.to_owned())
            },
            || self.log(),
        )
    }

    /// The exit status, if it has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none()
            && let Some(child) = self.child.as_mut()
        {
            self.status = child.try_wait().expect("try_wait");
        }
        self.status
    }

    /// Sends `signal`.
    pub fn signal(&self, signal: i32) {
        assert!(self.status.is_none(), "the relay has exited already");
        // SAFETY: kill(2) on our own unreaped child.
        let rc = unsafe { libc::kill(self.pid, signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.pid);
    }

    /// Waits for it to exit (panics after [`WAIT`]).
    pub fn wait_exit(&mut self) -> ExitStatus {
        blocking(|| {
            let deadline = Instant::now() + WAIT;
            loop {
                if let Some(status) = self.try_status() {
                    // Let the reader take the last lines.
                    std::thread::sleep(Duration::from_millis(50));
                    return status;
                }
                assert!(
                    Instant::now() < deadline,
                    "the relay did not exit within {WAIT:?}:\n{}",
                    self.log()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        let status = self.wait_exit();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
    }

    /// `Threads:` of `/proc/PID/status`.
    pub fn threads(&self) -> usize {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .expect("the relay's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("a Threads: line")
    }

    /// The number of open file descriptors (`/proc/PID/fd`).
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .expect("the relay's /proc fd folder")
            .count()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.status.is_none() && matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- mailgate relay stderr ---\n{}", self.log());
        }
    }
}

/// The address of `mailgate relay: listening on ADDR; ...`.
fn listening_addr(log: &str) -> Option<SocketAddr> {
    let rest = &log[log.find("listening on ")? + "listening on ".len()..];
    let end = rest.find([';', ' ', '\n'])?;
    rest[..end].parse().ok()
}

// ---------------------------------------------------------------------------
// Clients

/// A raw SMTP client on a std socket: every byte as the test says.
pub struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    /// Connects and reads the greeting.
    pub fn connect(addr: SocketAddr) -> (Client, (u16, String)) {
        let mut client = Client::connect_only(addr);
        let greeting = client.reply();
        (client, greeting)
    }

    /// Connects without reading anything.
    pub fn connect_only(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_read_timeout(Some(WAIT)).expect("read timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone the socket"));
        Client { stream, reader }
    }

    /// Connects and expects `220`.
    #[track_caller]
    pub fn greeted(addr: SocketAddr) -> Client {
        let (client, (code, text)) = Client::connect(addr);
        assert_eq!(code, 220, "greeting: {text}");
        client
    }

    /// The socket, for a writer thread.
    pub fn try_clone_stream(&self) -> TcpStream {
        self.stream.try_clone().expect("clone the socket")
    }

    pub fn set_read_timeout(&self, timeout: Duration) {
        self.stream
            .set_read_timeout(Some(timeout))
            .expect("read timeout");
    }

    /// One reply: its code and its lines joined by `\n`; `(0, why)` when
    /// the connection closed or the read failed instead.
    pub fn reply(&mut self) -> (u16, String) {
        let mut text = Vec::new();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => return (0, format!("closed; before: {text:?}")),
                Ok(_) => {}
                Err(e) => return (0, format!("read failed: {e}; before: {text:?}")),
            }
            let line = line.trim_end_matches(['\r', '\n']).to_owned();
            let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            let last = line.as_bytes().get(3) != Some(&b'-');
            text.push(line.get(4..).unwrap_or_default().to_owned());
            if last {
                return (code, text.join("\n"));
            }
        }
    }

    /// Writes bytes as they are.
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends `line` CRLF and reads the reply.
    pub fn cmd(&mut self, line: &str) -> (u16, String) {
        if let Err(e) = self.send(format!("{line}\r\n").as_bytes()) {
            return (0, format!("write failed: {e}"));
        }
        self.reply()
    }

    /// Sends `line`, asserting the reply code.
    #[track_caller]
    pub fn expect(&mut self, line: &str, code: u16) -> String {
        let (got, text) = self.cmd(line);
        assert_eq!(got, code, "{line} -> {got} {text}");
        text
    }

    /// Whether the server closed the connection within `within` (reading
    /// and discarding what it still sends).
    pub fn closed_within(&mut self, within: Duration) -> bool {
        self.set_read_timeout(within);
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            match self.reader.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return false;
                }
                Err(_) => return true,
            }
        }
        false
    }
}

/// A message as a client submits it (CRLF line ends).
pub fn message(subject: &str, body: &str) -> String {
    format!(
        "From: Build Bot <{SENDER}>\r\nTo: dev@example.com\r\nSubject: {subject}\r\nMessage-ID: <{}@client.example>\r\n\r\n{body}\r\n",
        subject.replace(' ', ".")
    )
}

/// What the smtplib script reports (see [`SMTPLIB`]).
#[derive(Debug, serde::Deserialize)]
pub struct SmtplibReport {
    /// The connection or greeting failed: smtplib's exception.
    #[serde(default)]
    pub connect_error: Option<String>,
    /// The AUTH mechanisms offered before (and after) STARTTLS.
    #[serde(default)]
    pub auth_offered: String,
    #[serde(default)]
    pub auth_offered_tls: Option<String>,
    /// The reply code to AUTH (235 when accepted), and its text.
    #[serde(default)]
    pub auth: Option<u16>,
    #[serde(default)]
    pub auth_text: Option<String>,
    /// Per message: 250, or the code that refused it (0: disconnected).
    #[serde(default)]
    pub results: Vec<u16>,
    /// The text of the last refusal.
    #[serde(default)]
    pub last_error: Option<String>,
}

/// The submission script; its argument is a JSON spec: port, count,
/// subject (numbered per message), from, to, optional body_lines,
/// starttls + cafile, user + password.
pub const SMTPLIB: &str = r#"
import json, smtplib, ssl, sys
spec = json.loads(sys.argv[1])
out = {"results": []}
try:
    s = smtplib.SMTP("127.0.0.1", spec["port"], local_hostname="client.example", timeout=30)
except Exception as e:
    print(json.dumps({"connect_error": repr(e)}))
    sys.exit(0)
s.ehlo()
out["auth_offered"] = s.esmtp_features.get("auth", "").strip()
if spec.get("starttls"):
    s.starttls(context=ssl.create_default_context(cafile=spec["cafile"]))
    s.ehlo()
    out["auth_offered_tls"] = s.esmtp_features.get("auth", "").strip()
if spec.get("user") is not None:
    try:
        s.login(spec["user"], spec["password"])
        out["auth"] = 235
    except smtplib.SMTPAuthenticationError as e:
        out["auth"] = e.smtp_code
        out["auth_text"] = e.smtp_error.decode(errors="replace")
    except smtplib.SMTPNotSupportedError as e:
        out["auth"] = 0
        out["auth_text"] = str(e)
body = "\r\n".join(["line %d of the body" % i for i in range(spec.get("body_lines", 1))])
for i in range(spec.get("count", 1)):
    subject = "%s %d" % (spec["subject"], i)
    msg = ("From: Build Bot <%s>\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s.%d@client.example>\r\n\r\n%s\r\n"
           % (spec["from"], ", ".join(spec["to"]), subject, spec["subject"].replace(" ", "."), i, body))
    try:
        s.sendmail(spec["from"], spec["to"], msg)
        out["results"].append(250)
    except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as e:
        out["results"].append(e.smtp_code)
        out["last_error"] = e.smtp_error.decode(errors="replace")
    except smtplib.SMTPRecipientsRefused as e:
        code, text = list(e.recipients.values())[0]
        out["results"].append(code)
        out["last_error"] = text.decode(errors="replace")
    except smtplib.SMTPServerDisconnected as e:
        out["results"].append(0)
        out["last_error"] = repr(e)
        break
try:
    s.quit()
except Exception:
    pass
print(json.dumps(out))
"#;

/// One smtplib session against `port` (see [`SMTPLIB`] for `spec`).
#[track_caller]
pub fn smtplib(spec: serde_json::Value) -> SmtplibReport {
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(SMTPLIB).arg(spec.to_string());
    let ran = run(cmd, b"");
    assert!(
        ran.status.success(),
        "python3 smtplib failed ({}): is python3 installed?\nstdout:\n{}\nstderr:\n{}",
        ran.status,
        ran.stdout,
        ran.stderr
    );
    serde_json::from_str(ran.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "the smtplib script's report ({e}):\n{}\n{}",
            ran.stdout, ran.stderr
        )
    })
}

/// `count` messages from [`SENDER`] to dev@example.com in one smtplib
/// session, subjects `"{subject} {i}"`; panics unless each got 250.
#[track_caller]
pub fn submit(port: u16, subject: &str, count: usize) {
    let report = smtplib(serde_json::json!({
        "port": port,
        "count": count,
        "subject": subject,
        "from": SENDER,
        "to": ["dev@example.com"],
    }));
    if report.results != vec![250; count] {
        let first = report.results.iter().position(|&c| c != 250);
        panic!(
            "{} of {count} messages got 250; the first other reply, to message {first:?}: {:?} ({:?}); connect error: {:?}",
            report.results.iter().filter(|&&c| c == 250).count(),
            first.map(|i| report.results[i]),
            report.last_error,
            report.connect_error,
        );
    }
}

/// swaks on PATH (the Debian package `swaks`; `.ci/run` installs it).
pub fn swaks_path() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("swaks"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("swaks is not installed: `apt-get install -y swaks` (.ci/run installs it)")
    })
}

/// Runs swaks with `args` (plus `--server 127.0.0.1:PORT`); its stderr
/// goes to stdout, so that the transcript keeps its order.
pub fn swaks(port: u16, args: &[&str]) -> Ran {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "exec \"$0\" \"$@\" 2>&1"])
        .arg(swaks_path())
        .arg("--server")
        .arg(format!("127.0.0.1:{port}"))
        .args(["--helo", "swaks.example", "--timeout", "30"])
        .args(args);
    run(cmd, b"")
}

/// The reply codes swaks shows (`<-  250 ...` and `<** 451 ...` lines),
/// in order, without continuation lines.
pub fn swaks_codes(ran: &Ran) -> Vec<u16> {
    ran.stdout
        .lines()
        .filter_map(|l| {
            let rest = l
                .strip_prefix("<-  ")
                .or_else(|| l.strip_prefix("<** "))
                .or_else(|| l.strip_prefix("<~  "))
                .or_else(|| l.strip_prefix("<~* "))?;
            if rest.as_bytes().get(3) == Some(&b'-') {
                return None;
            }
            rest.get(..3)?.parse().ok()
        })
        .collect()
}
