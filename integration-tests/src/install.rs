//! Installs the SMTP peers' third-party dependencies on first use.
//!
//! The work is done by `peers/install.sh` (also run by `.ci/run`); this module
//! decides whether it is needed and serialises it:
//!
//! - a peer counts as installed when its stamp file is a byte copy of its lock
//!   file (`node/node_modules/.mailgate-installed` vs `node/package-lock.json`,
//!   `python/.deps/.mailgate-installed` vs `python/requirements.txt`);
//! - threads of one test process share one attempt per peer kind (`OnceLock`);
//! - test processes (nextest runs one per test) serialise on an exclusive
//!   [`File::lock`] of `peers/.install.lock`, then look at the stamp again.
//!
//! A failed install is an error that carries the installer's output: a test
//! never skips because a peer is missing.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::peer::{PeerError, PeerKind};

/// `integration-tests/peers`, where the peers' scripts and dependencies live.
pub fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers")
}

/// (stamp file, lock file whose exact copy the stamp must be)
fn stamp_paths(kind: PeerKind) -> (PathBuf, PathBuf) {
    let peers = peers_dir();
    match kind {
        PeerKind::Node => (
            peers.join("node/node_modules/.mailgate-installed"),
            peers.join("node/package-lock.json"),
        ),
        PeerKind::Python => (
            peers.join("python/.deps/.mailgate-installed"),
            peers.join("python/requirements.txt"),
        ),
    }
}

fn is_installed(kind: PeerKind) -> bool {
    let (stamp, lock) = stamp_paths(kind);
    match (fs::read(stamp), fs::read(lock)) {
        (Ok(stamp), Ok(lock)) => stamp == lock,
        _ => false,
    }
}

/// Makes sure the dependencies of `kind`'s peer are installed, installing
/// them (`npm ci`, or `pip install --target peers/python/.deps`) if not.
///
/// Cheap once done: a file comparison. Safe to call from many threads and
/// processes at once. [`SmtpPeer::start`](crate::SmtpPeer::start) calls it.
pub fn ensure_installed(kind: PeerKind) -> Result<(), PeerError> {
    static NODE: OnceLock<Result<(), PeerError>> = OnceLock::new();
    static PYTHON: OnceLock<Result<(), PeerError>> = OnceLock::new();
    let once = match kind {
        PeerKind::Node => &NODE,
        PeerKind::Python => &PYTHON,
    };
    once.get_or_init(|| install(kind)).clone()
}

fn install(kind: PeerKind) -> Result<(), PeerError> {
    if is_installed(kind) {
        return Ok(());
    }
    let lock_path = peers_dir().join(".install.lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| PeerError::new(format!("cannot open {}: {e}", lock_path.display())))?;
    lock_file(&lock, &lock_path)?;
    // Another process may have installed it while we waited for the lock.
    if is_installed(kind) {
        return Ok(());
    }
    let script = peers_dir().join("install.sh");
    eprintln!("mailgate-integration-tests: installing the {kind} SMTP peer ...");
    let output = Command::new("bash")
        .arg(&script)
        .arg(kind.install_arg())
        .env("MAILGATE_PEER_INSTALL_LOCKED", "1")
        .output()
        .map_err(|e| PeerError::new(format!("cannot run bash {}: {e}", script.display())))?;
    // Dropping `lock` (at return) releases the file lock.
    if !output.status.success() || !is_installed(kind) {
        return Err(PeerError::new(format!(
            "installing the {kind} SMTP peer failed ({}); run `bash {} {}` to retry\n\
             --- stdout ---\n{}\n--- stderr ---\n{}",
            output.status,
            script.display(),
            kind.install_arg(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        )));
    }
    Ok(())
}

fn lock_file(file: &File, path: &Path) -> Result<(), PeerError> {
    file.lock()
        .map_err(|e| PeerError::new(format!("cannot lock {}: {e}", path.display())))
}
