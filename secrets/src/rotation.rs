//! Key rotation across several files and the key file, all or nothing.
//!
//! [`rotate_key`] moves every `ENC(...)` value of a set of properties files
//! from the key in a key file to a new key, and then puts the new key in
//! that key file. The files are replaced one after another, so a crash can
//! stop it between them; the protocol makes every such state recoverable:
//!
//! 1. every value of every file is decrypted and its new content prepared
//!    (any failure: nothing is written);
//! 2. the new key is written to the *pending* key file `KEYFILE.pending`
//!    (complete or absent), which also lists the properties files;
//! 3. each properties file is replaced atomically, values under the new key;
//! 4. the key file is replaced atomically by one holding the new key;
//! 5. the pending file is removed.
//!
//! While `KEYFILE.pending` exists a rotation is unfinished, and
//! [`recover_rotation`] finishes it: it re-encrypts what is still under the
//! old key (values already under the new key are left alone), promotes the
//! key and removes the pending file. Every step of it is idempotent, so a
//! crash during recovery is recovered the same way. Until then, a value
//! decrypts with one of the two keys, which [`pending_key`] gives.
//!
//! A rotation holds an exclusive lock (`flock`) on the pending file from
//! its creation to its removal; recovery takes the same lock without
//! waiting, so it never runs beside a rotation in progress.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::file::{Report, dedup, prepare_rotate};
use crate::key::{SecretKey, WriteMode, parent_dir, sync_dir, write_key_file};

/// Where [`rotate_key`] has got to; a hook sees each step just after it is
/// durable (tests stop there to play a crash).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RotationStep {
    /// The pending key file is written.
    PendingWritten,
    /// The properties file with this index (0-based, in the order given,
    /// duplicates and files without a change skipped) is replaced.
    FileRewritten(usize),
    /// The key file holds the new key; the pending file is still there.
    KeyPromoted,
    /// The pending file is removed: the rotation is complete.
    Done,
}

/// What a rotation or a recovery did.
#[derive(Debug)]
#[non_exhaustive]
pub struct Rotation {
    /// One report per properties file.
    pub reports: Vec<Report>,
    /// The key now in the key file.
    pub key: SecretKey,
}

/// The pending key file of a rotation of `key_file`: `KEYFILE.pending`.
pub fn pending_key_path(key_file: &Path) -> PathBuf {
    let mut name = key_file.as_os_str().to_owned();
    name.push(".pending");
    PathBuf::from(name)
}

/// Re-encrypts every `ENC(...)` value of the properties in `secret_keys`,
/// in all of `files`, from the key in `key_file` to `new_key`, then puts
/// `new_key` in `key_file`: all or nothing across the files and the key file
/// (see the module documentation for the protocol).
///
/// Fails, writing nothing, when a rotation is already pending (run
/// [`recover_rotation`] first), when `new_key` is the current key, when a
/// value does not decrypt with the current key, or when a file path is not
/// UTF-8. Plaintext values are left alone (reported).
pub fn rotate_key<P: AsRef<Path>>(
    key_file: &Path,
    files: &[P],
    secret_keys: &[&str],
    new_key: &SecretKey,
) -> Result<Rotation> {
    rotate_key_with_hook(key_file, files, secret_keys, new_key, &mut |_| {})
}

/// [`rotate_key`], calling `hook` after each durable step. For tests that
/// play a crash at each step (the hook aborts the process or panics).
#[doc(hidden)]
pub fn rotate_key_with_hook<P: AsRef<Path>>(
    key_file: &Path,
    files: &[P],
    secret_keys: &[&str],
    new_key: &SecretKey,
    hook: &mut dyn FnMut(RotationStep),
) -> Result<Rotation> {
    let key_file = resolve(key_file);
    let pending = pending_key_path(&key_file);
    if pending.exists() {
        return Err(Error::RotationPending { pending });
    }
    let old = SecretKey::load(&key_file)?;
    if old.id() == new_key.id() {
        return Err(Error::SameKey {
            path: key_file.clone(),
        });
    }
    let prepared = dedup(
        files
            .iter()
            .map(|p| prepare_rotate(p.as_ref(), secret_keys, &old, new_key)),
    )?;
    let mut comments = String::from(
        "# A key rotation is in progress: this is the new key. `mailgate encrypt`, or\n\
         # loading the config, finishes it; do not remove this file until then.\n",
    );
    for p in &prepared {
        let path = p.target().to_str().filter(|s| !s.contains(['\n', '\r']));
        let Some(path) = path else {
            return Err(Error::io(
                "rotate the key of",
                p.target(),
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "its path is not UTF-8 text on one line",
                ),
            ));
        };
        comments.push_str(FILE_PREFIX);
        comments.push_str(path);
        comments.push('\n');
    }
    // Locked before it appears, held until it is removed (dropping the file
    // unlocks): a recovery never starts on a rotation in progress.
    let lock = write_key_file(&pending, new_key, &comments, WriteMode::CreateNewLocked)?;
    hook(RotationStep::PendingWritten);
    let mut reports = Vec::new();
    let mut written = 0;
    for p in prepared {
        let report = p.commit()?;
        if report.written {
            hook(RotationStep::FileRewritten(written));
            written += 1;
        }
        reports.push(report);
    }
    promote(&key_file, new_key)?;
    hook(RotationStep::KeyPromoted);
    remove_pending(&pending)?;
    drop(lock);
    hook(RotationStep::Done);
    Ok(Rotation {
        reports,
        key: new_key.clone().with_file(&key_file),
    })
}

/// Finishes a rotation of `key_file` that was interrupted (see the module
/// documentation): `Ok(None)` when none is pending. The files are the ones
/// the pending file lists.
///
/// [`Error::RotationBusy`] when another process is rotating right now.
pub fn recover_rotation(key_file: &Path, secret_keys: &[&str]) -> Result<Option<Rotation>> {
    let key_file = resolve(key_file);
    let pending = pending_key_path(&key_file);
    let lock = match mailgate_properties::fs::open_regular(&pending) {
        Ok((file, _)) => file,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(Error::io("open", &pending, e.into())),
    };
    match crate::key::flock(&lock, crate::key::Wait::No) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            return Err(Error::RotationBusy { pending });
        }
        Err(e) => return Err(Error::io("lock", &pending, e)),
    }
    // The rotation may have finished between the open and the lock.
    if !same_file(&lock, &pending) {
        return Ok(None);
    }
    let (new_key, files) = read_pending(&pending)?;
    let old = SecretKey::load(&key_file)?;
    let mut reports = Vec::new();
    if old.id() != new_key.id() {
        let prepared = dedup(
            files
                .iter()
                .map(|p| prepare_rotate(p, secret_keys, &old, &new_key)),
        )?;
        for p in prepared {
            reports.push(p.commit()?);
        }
    }
    promote(&key_file, &new_key)?;
    remove_pending(&pending)?;
    drop(lock);
    Ok(Some(Rotation {
        reports,
        key: new_key.with_file(&key_file),
    }))
}

/// The new key of an unfinished rotation of `key_file`, when one is
/// pending: a value that does not decrypt with the key file's key may be
/// under this one already. `Ok(None)` when no rotation is pending.
pub fn pending_key(key_file: &Path) -> Result<Option<SecretKey>> {
    let pending = pending_key_path(&resolve(key_file));
    match SecretKey::load(&pending) {
        Ok(key) => Ok(Some(key)),
        Err(Error::KeyFileMissing { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

const FILE_PREFIX: &str = "# file: ";

/// The key and the files a pending file records.
fn read_pending(pending: &Path) -> Result<(SecretKey, Vec<PathBuf>)> {
    let key = SecretKey::load(pending)?;
    // The key loaded, so the file is a small regular text file.
    let text = mailgate_properties::fs::read_regular(pending, 64 * 1024)
        .map_err(|e| Error::io("read", pending, e.into()))?;
    let text = zeroize::Zeroizing::new(text);
    let files = String::from_utf8_lossy(&text)
        .lines()
        .filter_map(|l| l.strip_prefix(FILE_PREFIX))
        .map(PathBuf::from)
        .collect();
    Ok((key, files))
}

/// Puts `key` in `key_file`, replacing what is there, atomically. The file
/// keeps its owner and group where allowed.
fn promote(key_file: &Path, key: &SecretKey) -> Result<()> {
    let before = fs::metadata(key_file).ok();
    let file = write_key_file(key_file, key, "", WriteMode::Replace)?;
    keep_owner(&file, before.as_ref());
    Ok(())
}

fn remove_pending(pending: &Path) -> Result<()> {
    match fs::remove_file(pending) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("remove", pending, e)),
    }
    let dir = parent_dir(pending);
    sync_dir(dir).map_err(|e| Error::io("sync folder", dir, e))
}

/// The key file with symlinks resolved, so the target is what is replaced.
fn resolve(key_file: &Path) -> PathBuf {
    fs::canonicalize(key_file).unwrap_or_else(|_| key_file.to_path_buf())
}

#[cfg(unix)]
fn keep_owner(file: &fs::File, before: Option<&fs::Metadata>) {
    use std::os::unix::fs::{MetadataExt, fchown};
    if let (Some(before), Ok(now)) = (before, file.metadata())
        && (before.uid(), before.gid()) != (now.uid(), now.gid())
    {
        // Best effort: only root may give a file to another user.
        let _ = fchown(file, Some(before.uid()), Some(before.gid()))
            .or_else(|_| fchown(file, None, Some(before.gid())));
    }
}

#[cfg(not(unix))]
fn keep_owner(_file: &fs::File, _before: Option<&fs::Metadata>) {}

/// Whether `path` still names the file open as `file`.
#[cfg(unix)]
fn same_file(file: &fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &fs::File, path: &Path) -> bool {
    path.exists()
}
