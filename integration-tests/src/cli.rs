//! Running the `mailgate` binary from the command line's own tests (only they
//! know its path, through `env!("CARGO_BIN_EXE_mailgate")`).

use std::path::Path;
use std::process::{Command, Output, Stdio};

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
