//! Which workers of a SQLite outbox are alive: each holds an exclusive
//! lock (`flock`, through std's `File::try_lock`, which is `flock` on Unix
//! like the secrets crate's helper) on its own file
//! `<outbox>.workers/<worker>.lock` for its whole life. The kernel drops
//! the lock when the process dies, however it dies, so a lock that can be
//! taken is a dead worker: its `sending` messages are due at once, and its
//! file is removed.
//!
//! A worker file appears under its final name only once locked (it is
//! created under a dot name and renamed), so a file found unlocked was
//! never a live worker's. A worker without a file (an older mailgate) is
//! never taken for dead: its messages wait for their lease.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use mailgate_core::outbox::Presence;
use mailgate_core::{Error, Result};

use super::{SqliteOutbox, outbox_error};
use crate::row::to_ms;

/// A half-made worker file older than this belongs to a worker that died
/// while announcing itself.
const STALE_NEW: Duration = Duration::from_secs(60);

/// What can go wrong with the worker files, naming the file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LivenessError {
    /// The folder of worker files cannot be made or read.
    #[error("cannot use the workers' folder {}: {source}", path.display())]
    Folder {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A worker file cannot be created, locked or named.
    #[error("cannot make the worker file {}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// A live worker's lock: unlocked and removed when dropped.
struct WorkerLock {
    _file: File,
    path: PathBuf,
}

impl Drop for WorkerLock {
    fn drop(&mut self) {
        // Removed while still locked: nobody can find it unlocked and
        // mistake this worker, still finishing, for a dead one.
        let _ = fs::remove_file(&self.path);
    }
}

/// A dead worker found by [`scan`], its file locked by us.
struct Dead {
    worker: String,
    _file: File,
    path: PathBuf,
}

/// What a look at the worker files found.
#[derive(Default)]
struct Scan {
    alive: u64,
    dead: Vec<Dead>,
}

/// `<outbox>.workers`, beside the outbox file.
fn folder(outbox: &Path) -> PathBuf {
    let mut name = outbox.as_os_str().to_owned();
    name.push(".workers");
    PathBuf::from(name)
}

/// A worker id as a file name: bytes outside `[A-Za-z0-9._-]` as `%XX`
/// (a host name could hold anything), so that the name maps back.
fn file_name(worker: &str) -> String {
    let mut out = String::with_capacity(worker.len() + 5);
    for b in worker.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push_str(".lock");
    out
}

/// The worker a file name stands for; `None` for anything else.
fn worker_of(name: &str) -> Option<String> {
    let stem = name.strip_suffix(".lock")?;
    if stem.is_empty() || stem.starts_with('.') {
        return None;
    }
    let bytes = stem.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = stem.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Creates and locks `worker`'s file, made visible under its final name
/// only once locked.
fn lock_worker(outbox: &Path, worker: &str) -> std::result::Result<WorkerLock, LivenessError> {
    let dir = folder(outbox);
    match fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(source) => return Err(LivenessError::Folder { path: dir, source }),
    }
    let name = file_name(worker);
    let path = dir.join(&name);
    let new = dir.join(format!(".new-{name}"));
    let file_error = |path: &Path| {
        let path = path.to_owned();
        move |source| LivenessError::File { path, source }
    };
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&new)
        .map_err(file_error(&new))?;
    if let Err(e) = file.try_lock() {
        let _ = fs::remove_file(&new);
        return Err(LivenessError::File {
            path: new,
            source: io::Error::from(e),
        });
    }
    if let Err(source) = fs::rename(&new, &path) {
        let _ = fs::remove_file(&new);
        return Err(LivenessError::File { path, source });
    }
    Ok(WorkerLock { _file: file, path })
}

/// Tries the lock of every worker file but `except`'s: the held ones are
/// alive; the free ones are dead and stay locked by us until dropped.
/// Half-made files of workers that died while announcing are removed.
fn scan(outbox: &Path, except: Option<&str>) -> std::result::Result<Scan, LivenessError> {
    let dir = folder(outbox);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Scan::default()),
        Err(source) => return Err(LivenessError::Folder { path: dir, source }),
    };
    let mut scan = Scan::default();
    for entry in entries {
        let entry = entry.map_err(|source| LivenessError::Folder {
            path: dir.clone(),
            source,
        })?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let path = entry.path();
        if name.starts_with(".new-") {
            remove_if_stale(&path);
            continue;
        }
        let Some(worker) = worker_of(&name) else {
            continue;
        };
        if Some(worker.as_str()) == except || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        // Read-only is enough for flock; gone meanwhile: its worker ended.
        let Ok(file) = File::open(&path) else {
            continue;
        };
        match file.try_lock() {
            Ok(()) => scan.dead.push(Dead {
                worker,
                _file: file,
                path,
            }),
            Err(TryLockError::WouldBlock) => scan.alive += 1,
            // Cannot tell: alive, so that nothing is taken from it.
            Err(TryLockError::Error(_)) => scan.alive += 1,
        }
    }
    Ok(scan)
}

/// Removes a half-made worker file whose worker died while announcing.
fn remove_if_stale(path: &Path) {
    let old = fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age > STALE_NEW);
    if old
        && let Ok(file) = File::open(path)
        && file.try_lock().is_ok()
    {
        let _ = fs::remove_file(path);
    }
}

impl SqliteOutbox {
    /// The error of a worker file, naming it, for this outbox.
    fn liveness_error(&self, e: LivenessError) -> Error {
        outbox_error(&self.path, e.to_string())
    }

    /// [`mailgate_core::outbox::OutboxStore::announce_worker`]: a lock
    /// held for the worker's life.
    pub(super) fn lock_worker(&self, worker: &str) -> Result<Option<Presence>> {
        let lock = lock_worker(&self.path, worker).map_err(|e| self.liveness_error(e))?;
        Ok(Some(Presence::held(lock)))
    }

    /// [`mailgate_core::outbox::OutboxStore::reclaim_dead`]: the leases of
    /// the workers whose lock is free end now; then their files go.
    pub(super) async fn reclaim_unlocked(&self, worker: &str, now: SystemTime) -> Result<u64> {
        let scan = scan(&self.path, Some(worker)).map_err(|e| self.liveness_error(e))?;
        if scan.dead.is_empty() {
            return Ok(0);
        }
        let owners: Vec<&str> = scan.dead.iter().map(|d| d.worker.as_str()).collect();
        let pool = self.worker_pool().await?;
        let done = sqlx::query(
            "UPDATE outbox_messages SET lease_until = MIN(lease_until, ?)
              WHERE status = 'sending' AND lease_owner IN (SELECT value FROM json_each(?))",
        )
        .bind(to_ms(now))
        .bind(serde_json::to_string(&owners).unwrap_or_else(|_| "[]".into()))
        .execute(pool)
        .await
        .map_err(|e| self.err(e))?;
        // Only once their messages are free: a failure above leaves the
        // files for the next look.
        for dead in &scan.dead {
            let _ = fs::remove_file(&dead.path);
        }
        Ok(done.rows_affected())
    }

    /// [`mailgate_core::outbox::OutboxStore::live_workers`]: the worker
    /// files whose lock is held.
    pub(super) fn count_locked(&self) -> Result<u64> {
        scan(&self.path, None)
            .map(|s| s.alive)
            .map_err(|e| self.liveness_error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_ids_map_to_file_names_and_back() {
        for id in ["host-12-abcdef", "h\u{e9}te/../x y-1", "a%b.c_d"] {
            let name = file_name(id);
            assert!(!name.contains('/'), "{name}");
            assert_eq!(worker_of(&name).as_deref(), Some(id));
        }
        assert_eq!(worker_of(".new-x.lock"), None);
        assert_eq!(worker_of("x.txt"), None);
        assert_eq!(worker_of("%zz.lock"), None);
    }

    #[test]
    fn a_held_lock_is_alive_and_a_free_one_dead() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = dir.path().join("outbox.db");
        let alive = lock_worker(&outbox, "alive-1").unwrap();
        // A worker killed with -9 leaves its file, unlocked.
        let dead_path = folder(&outbox).join(file_name("dead-2"));
        fs::write(&dead_path, "").unwrap();
        let scan = scan(&outbox, None).unwrap();
        assert_eq!(scan.alive, 1);
        assert_eq!(
            scan.dead
                .iter()
                .map(|d| d.worker.as_str())
                .collect::<Vec<_>>(),
            ["dead-2"]
        );
        assert!(dead_path.exists());
        drop(scan);
        let path = alive.path.clone();
        drop(alive);
        assert!(!path.exists(), "a worker that ends removes its file");
    }
}
