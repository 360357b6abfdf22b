//! Running the `mailgate` binary from the command line's own tests (only they
//! know its path, through `env!("CARGO_BIN_EXE_mailgate")`).

use std::io::Read;
use std::os::unix::process::ExitStatusExt as _;
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

/// A run of the binary with what it cost.
#[derive(Debug)]
pub struct MeasuredRun {
    /// Exit status, stdout and stderr.
    pub output: Output,
    /// Wall-clock time from spawn to exit.
    pub elapsed: Duration,
    /// The process's peak resident set size, KiB: the highest `VmHWM` of
    /// `/proc/PID/status` seen while it ran, sampled every few milliseconds.
    /// (`getrusage`'s `ru_maxrss` cannot be used: a child started from a
    /// large test process inherits that process's peak at `exec`.)
    pub peak_rss_kib: u64,
}

/// [`run_mailgate`], measuring wall time and the child's peak RSS (Linux).
/// A child still running after `kill_after` is killed (its status then says
/// so), so a hang fails the test instead of stalling it.
pub fn run_mailgate_measured(
    bin: &str,
    config_dir: &Path,
    args: &[&str],
    kill_after: Duration,
) -> MeasuredRun {
    let start = Instant::now();
    let mut child = Command::new(bin)
        .arg("--config-dir")
        .arg(config_dir)
        .args(args)
        .env_remove("MAILGATE_CONFIG_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {bin}: {e}"));
    let pid = child.id() as libc::pid_t;
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
    let watcher = std::thread::spawn(move || {
        let deadline = Instant::now() + kill_after;
        let status = format!("/proc/{pid}/status");
        let mut peak = 0;
        loop {
            // Until the child is reaped its status file exists; a zombie's
            // has no VmHWM any more.
            let Ok(text) = std::fs::read_to_string(&status) else {
                return peak;
            };
            if let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kib);
            } else if text.contains("State:\tZ") {
                return peak;
            }
            if Instant::now() >= deadline {
                // SAFETY: the pid is our unreaped child (wait4 below reaps it).
                unsafe { libc::kill(pid, libc::SIGKILL) };
                return peak;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    let mut status = 0;
    // SAFETY: pid is our child; status is valid for writes.
    let reaped = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(reaped, pid, "wait4 on {bin}");
    let elapsed = start.elapsed();
    // The child is reaped; std must not wait on it again.
    std::mem::forget(child);
    let peak_rss_kib = watcher.join().unwrap_or(0);
    let output = Output {
        status: ExitStatus::from_raw(status),
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    };
    MeasuredRun {
        output,
        elapsed,
        peak_rss_kib,
    }
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
