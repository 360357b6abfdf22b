//! Running the password command: the credential source, apart from the
//! strategy's contract with mailgate.

use std::process::{ExitStatus, Stdio};

use tokio::io::AsyncReadExt;

/// Most bytes read of the command's stdout and of its stderr: a command
/// that writes more blocks on a full pipe until its deadline kills it.
const MAX_OUTPUT: u64 = 64 * 1024;

/// Runs `command` under `sh -c` with no stdin: its stdout, exit status and
/// stderr, each bounded. Killed when the returned future is dropped (the
/// caller's deadline).
pub(crate) async fn run(command: &str) -> std::io::Result<(Vec<u8>, ExitStatus, Vec<u8>)> {
    let mut child = tokio::process::Command::new("sh")
        .args(["-c", command])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(std::io::Error::other("the command's output is not piped"));
    };
    let (mut stdout, mut stderr) = (stdout.take(MAX_OUTPUT), stderr.take(MAX_OUTPUT));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let read = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
    let status = child.wait().await?;
    read.0.and(read.1)?;
    Ok((out, status, err))
}
