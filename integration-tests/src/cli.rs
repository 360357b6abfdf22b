//! Running the `mailgate` binary from the command line's own tests (only they
//! know its path, through `env!("CARGO_BIN_EXE_mailgate")`).

use std::io::{Read, Write as _};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::Path;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `bin --config-dir dir args...` with no stdin and without
/// `MAILGATE_CONFIG_DIR` from the test's environment.
pub fn run_mailgate(bin: &str, config_dir: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .arg("--config-dir")
        .arg(config_dir)
        .args(args)
        .env_remove("MAILGATE_CONFIG_DIR")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {bin}: {e}"))
}

/// stdout and stderr as text.
pub fn output_text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The exit code; panics if the process was killed by a signal.
pub fn exit_code(out: &Output) -> i32 {
    out.status.code().expect("exited normally")
}

/// What a child's stdin is.
pub enum Input {
    /// `Stdio::null()`: an empty stdin, open for reading.
    Empty,
    /// A pipe carrying these bytes, then closed.
    Bytes(Vec<u8>),
    /// No file descriptor 0 at all.
    Closed,
}

impl Input {
    /// A pipe carrying `text`.
    pub fn text(text: &str) -> Self {
        Input::Bytes(text.as_bytes().to_vec())
    }
}

/// A finished run of a command with what it cost.
#[derive(Debug)]
pub struct Run {
    /// Exit status, stdout and stderr.
    pub output: Output,
    /// Wall-clock time from spawn to exit.
    pub elapsed: Duration,
    /// The child's CPU time (user and system): what it cost, whatever else
    /// the machine was doing.
    pub cpu: Duration,
    /// The child's peak resident set size, KiB, when asked for
    /// ([`RunOptions::sample_rss`]): the highest `VmHWM` of
    /// `/proc/PID/status` seen while it ran, sampled every few
    /// milliseconds. (`getrusage`'s `ru_maxrss` cannot be used: a child
    /// started from a large test process inherits that process's peak at
    /// `exec`.) 0 when not sampled.
    pub peak_rss_kib: u64,
}

/// The runs of [`run_mailgate_measured`].
pub type MeasuredRun = Run;

impl Run {
    /// Refused "within a second": at most a second of CPU, and no wait
    /// (a hang, a timeout) on the clock. The CPU time is the bound: the
    /// tests share two cores with parallel tests and builds, so the wall
    /// clock is only checked against a generous limit.
    #[track_caller]
    pub fn assert_quick(&self) {
        assert!(
            self.cpu < Duration::from_secs(1),
            "{:?} of CPU time ({:?} on the clock)",
            self.cpu,
            self.elapsed
        );
        assert!(
            self.elapsed < Duration::from_secs(5),
            "{:?} on the clock ({:?} of CPU time)",
            self.elapsed,
            self.cpu
        );
    }

    /// The exit code; `None` when a signal ended it.
    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    /// stdout as text.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    /// stderr as text.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// Fails, showing both outputs, unless the exit code is `code`.
    #[track_caller]
    pub fn assert_code(&self, code: i32) {
        assert_eq!(
            self.code(),
            Some(code),
            "status {}\nstdout:\n{}\nstderr:\n{}",
            self.output.status,
            self.stdout(),
            self.stderr()
        );
    }

    /// stdout as one JSON value (the whole of it).
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.output.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}):\n{}", self.stdout()))
    }
}

/// How [`run_command`] runs a child.
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    /// A child still running after this is killed and the test fails.
    pub kill_after: Duration,
    /// Sample the child's peak RSS ([`Run::peak_rss_kib`]).
    pub sample_rss: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            kill_after: Duration::from_secs(60),
            sample_rss: false,
        }
    }
}

/// Runs `cmd` with `input` on stdin and its output piped, measuring wall
/// and CPU time (`wait4`), and its peak RSS when asked. A child that runs
/// longer than `options.kill_after` is killed and the test fails. Blocks:
/// from async code, call it in `spawn_blocking`.
pub fn run_command(mut cmd: Command, input: Input, options: RunOptions) -> Run {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let bytes = match input {
        Input::Empty => {
            cmd.stdin(Stdio::null());
            None
        }
        Input::Bytes(bytes) => {
            cmd.stdin(Stdio::piped());
            Some(bytes)
        }
        Input::Closed => {
            cmd.stdin(Stdio::null());
            // SAFETY: close(2) is async-signal-safe; this runs in the
            // child after its stdio is set up, before exec.
            unsafe {
                cmd.pre_exec(|| {
                    libc::close(0);
                    Ok(())
                });
            }
            None
        }
    };
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let writer = child.stdin.take().map(|mut stdin| {
        let bytes = bytes.unwrap_or_default();
        // The child may refuse early and close its end: not our error.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&bytes);
        })
    });
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let pid = child.id() as libc::pid_t;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = options.sample_rss.then(|| {
        let done = std::sync::Arc::clone(&done);
        std::thread::spawn(move || {
            let status = format!("/proc/{pid}/status");
            let mut peak = 0;
            // Until the child is reaped its status file exists; a zombie's
            // has no VmHWM any more.
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(text) = std::fs::read_to_string(&status) else {
                    break;
                };
                match text
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                {
                    Some(kib) => peak = peak.max(kib),
                    None if text.contains("State:\tZ") => break,
                    None => {}
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            peak
        })
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let mut status = 0;
        // SAFETY: zeroed rusage is a valid value for wait4 to fill in.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: pid is our child, not reaped by anyone else (std never
        // waits on it: `child` is not waited on); status and usage are
        // valid for writes.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        let _ = tx.send((reaped, status, usage));
    });
    let (reaped, status, usage) = match rx.recv_timeout(options.kill_after) {
        Ok(result) => result,
        Err(_) => {
            // SAFETY: the child is not reaped yet (its waiter is still
            // waiting), so the pid is still ours.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = waiter.join();
            panic!("{cmd:?} still ran after {:?}: killed", options.kill_after);
        }
    };
    let elapsed = start.elapsed();
    assert_eq!(reaped, pid, "wait4 on {cmd:?}");
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = waiter.join();
    // The child is reaped; std must not wait on it again.
    std::mem::forget(child);
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    let peak_rss_kib = sampler.map_or(0, |s| s.join().unwrap_or(0));
    let output = Output {
        status: ExitStatus::from_raw(status),
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    };
    let cpu = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    Run {
        output,
        elapsed,
        cpu: cpu(usage.ru_utime) + cpu(usage.ru_stime),
        peak_rss_kib,
    }
}

/// [`run_mailgate`], measuring wall time and the child's peak RSS (Linux).
/// A child still running after `kill_after` is killed and the test fails,
/// so a hang fails the test instead of stalling it.
pub fn run_mailgate_measured(
    bin: &str,
    config_dir: &Path,
    args: &[&str],
    kill_after: Duration,
) -> MeasuredRun {
    let mut cmd = Command::new(bin);
    cmd.arg("--config-dir")
        .arg(config_dir)
        .args(args)
        .env_remove("MAILGATE_CONFIG_DIR");
    run_command(
        cmd,
        Input::Empty,
        RunOptions {
            kill_after,
            sample_rss: true,
        },
    )
}

/// A copy of the binary at `path` that other users can run: the checkout
/// may be in a folder only its owner can enter (`mktemp -d`, a home
/// folder), and a test that runs the binary as `nobody` must not fail for
/// that. Made once per path and process, in a world-readable temporary
/// folder removed at exit.
pub fn runnable_by_others(path: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    static COPIES: std::sync::Mutex<Vec<(std::path::PathBuf, tempfile::TempDir)>> =
        std::sync::Mutex::new(Vec::new());
    let mut copies = COPIES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, dir)) = copies.iter().find(|(p, _)| p == path) {
        return dir.path().join("mailgate");
    }
    let dir = tempfile::Builder::new()
        .prefix("mailgate-bin-")
        .tempdir_in(std::env::temp_dir())
        .expect("a temporary folder");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("folder mode");
    let copy = dir.path().join("mailgate");
    std::fs::copy(path, &copy).expect("binary copied");
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).expect("binary mode");
    copies.push((path.to_owned(), dir));
    copy
}

/// `cmd` (a `mailgate` command line) as user and group `uid`, running a
/// copy of the binary that user can reach ([`runnable_by_others`]), from `/`.
pub fn as_other_user(cmd: &Command, uid: u32) -> Command {
    use std::os::unix::process::CommandExt as _;
    let mut other = Command::new(runnable_by_others(Path::new(cmd.get_program())));
    other.args(cmd.get_args()).current_dir("/");
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => other.env(key, value),
            None => other.env_remove(key),
        };
    }
    other.uid(uid).gid(uid);
    other
}
