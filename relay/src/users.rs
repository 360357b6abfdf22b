//! The relay's local users: a file of `name:$argon2id$...` lines.
//!
//! ```text
//! # mailgate relay users (mailgate relay-user add NAME)
//! printer:$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$...
//! alm:$argon2id$v=19$m=19456,t=2,p=1$...
//! ```
//!
//! Lines starting with `#` (after optional spaces) and blank lines are
//! ignored; a line ending in CRLF is read like one ending in LF. A name is
//! 1 to 255 bytes of UTF-8 without whitespace, control characters or `:`;
//! each name occurs once. The hash is an Argon2id PHC string, as
//! [`hash_password`] makes. Errors name the file and the line and never
//! repeat a hash.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2};

/// Longest user name accepted, in bytes.
pub const MAX_USER_NAME: usize = 255;

/// Largest Argon2 memory cost accepted from a users file, in KiB (1 GiB):
/// a hash asking for more would let one login attempt exhaust memory.
const MAX_MEMORY_KIB: u32 = 1024 * 1024;

/// Largest Argon2 time cost accepted from a users file.
const MAX_TIME_COST: u32 = 64;

/// The relay's users and their password hashes.
///
/// `Debug` shows the number of users only, never names or hashes.
#[derive(Clone)]
pub struct Users {
    /// Name -> PHC string (already checked to parse as Argon2id).
    entries: HashMap<String, String>,
}

/// What [`add_user`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserChange {
    /// The name was new: a line was appended.
    Added,
    /// The name existed: its line now holds the new hash, in place.
    Replaced,
}

/// An error reading or writing a users file.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// Reading, writing or replacing the file failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done ("read", "write", ...).
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A line of the file is not `name:$argon2id$...`.
    #[error("{}:{line}: {reason}", path.display())]
    Line {
        /// The users file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it (never the hash itself).
        reason: String,
    },
    /// A user name is not acceptable (for [`add_user`]).
    #[error("user name {name:?}: {reason}")]
    InvalidName {
        /// The name, as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The file changed while [`add_user`] was rewriting it; nothing was
    /// written. Run it again.
    #[error("{} changed while it was being rewritten; nothing was written, try again", path.display())]
    Changed {
        /// The users file.
        path: PathBuf,
    },
}

/// One parsed entry line.
struct Entry<'a> {
    name: &'a str,
    hash: &'a str,
}

/// A users file, refused when it is not a regular file or over 4 MiB
/// (a FIFO would block, `/dev/zero` would fill memory).
fn read_bounded(path: &Path) -> Result<Vec<u8>, UsersError> {
    mailgate_properties::fs::read_regular(path, mailgate_properties::MAX_FILE_BYTES).map_err(|e| {
        UsersError::Io {
            action: "read",
            path: path.to_path_buf(),
            source: e.into(),
        }
    })
}

impl Users {
    /// Reads and checks a users file. Warns (tracing) when the file can be
    /// read by group or others.
    pub fn load(path: impl AsRef<Path>) -> Result<Users, UsersError> {
        let path = path.as_ref();
        let bytes = read_bounded(path)?;
        warn_if_readable_by_others(path);
        Users::parse(&bytes, path)
    }

    /// Parses the content of a users file; `path` is used in errors only.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Users, UsersError> {
        let mut entries = HashMap::new();
        for_each_line(bytes, path, |line_no, entry| {
            if let Some(entry) = entry
                && entries
                    .insert(entry.name.to_owned(), entry.hash.to_owned())
                    .is_some()
            {
                return Err(UsersError::Line {
                    path: path.to_path_buf(),
                    line: line_no,
                    reason: format!("user {:?} is listed more than once", entry.name),
                });
            }
            Ok(())
        })?;
        // Made now rather than at the first unknown name, whose check
        // would otherwise take two hashes and stand out.
        dummy_hash();
        Ok(Users { entries })
    }

    /// Whether `password` is `name`'s password. Slow on purpose (one
    /// Argon2 hash, also for an unknown name, so that timing does not tell
    /// which names exist); call it from a blocking thread in async code.
    pub fn verify(&self, name: &str, password: &str) -> bool {
        let argon2 = Argon2::default();
        match self.entries.get(name) {
            Some(phc) => match PasswordHash::new(phc) {
                Ok(hash) => argon2.verify_password(password.as_bytes(), &hash).is_ok(),
                Err(_) => false,
            },
            None => {
                let dummy = dummy_hash();
                if let Ok(hash) = PasswordHash::new(dummy) {
                    // The result is irrelevant: the name does not exist.
                    let _ = argon2.verify_password(password.as_bytes(), &hash);
                }
                false
            }
        }
    }

    /// Whether a user of that name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// The number of users.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no user (then nobody can authenticate).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The user names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.entries.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Users")
            .field("count", &self.entries.len())
            .finish_non_exhaustive()
    }
}

/// A hash of a random password with the default parameters, verified
/// against for unknown names.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        let password = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_str().as_bytes(), &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// Hashes `password` with Argon2id (the argon2 crate's defaults: 19 MiB,
/// 2 passes, 1 lane; RFC 9106's second recommended option) and a random
/// salt; returns the PHC string (`$argon2id$v=19$...`).
///
/// # Panics
///
/// Only if the password is longer than 4 GiB (Argon2's limit).
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("Argon2 with default parameters hashes any password under 4 GiB")
        .to_string()
}

/// Checks a user name: 1 to [`MAX_USER_NAME`] bytes, no whitespace, no
/// control characters, no `:`; not starting with `#`.
pub fn check_user_name(name: &str) -> Result<(), UsersError> {
    let invalid = |reason| UsersError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("must not be empty"));
    }
    if name.len() > MAX_USER_NAME {
        return Err(invalid("longer than 255 bytes"));
    }
    if let Some(reason) = name_problem(name) {
        return Err(invalid(reason));
    }
    Ok(())
}

fn name_problem(name: &str) -> Option<&'static str> {
    if name.contains(':') {
        Some("must not contain ':'")
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("must not contain spaces or control characters")
    } else if name.starts_with('#') {
        Some("must not start with '#' (that is a comment)")
    } else {
        None
    }
}

/// Sets `name`'s password in the users file at `path`, creating the file
/// when it does not exist.
///
/// Every other line (comments, blank lines, other users, line endings)
/// stays byte for byte; an existing entry for `name` is replaced in place,
/// otherwise a line is appended. The existing file must be valid (its
/// errors are returned and nothing is written). The write is atomic: a
/// temporary file in the same folder with mode 0600, fsync, rename over
/// the file, fsync of the folder. If the file changes between the read
/// and the rename, nothing is written ([`UsersError::Changed`]).
pub fn add_user(
    path: impl AsRef<Path>,
    name: &str,
    password: &str,
) -> Result<UserChange, UsersError> {
    check_user_name(name)?;
    // A link (config management, a mounted secret) stays a link: the file
    // it points to is the one replaced, in its own folder.
    let resolved;
    let path = match fs::symlink_metadata(path.as_ref()) {
        Ok(meta) if meta.file_type().is_symlink() => {
            resolved = fs::canonicalize(path.as_ref()).map_err(|source| UsersError::Io {
                action: "resolve the link",
                path: path.as_ref().to_path_buf(),
                source,
            })?;
            resolved.as_path()
        }
        _ => path.as_ref(),
    };
    let before = match fs::metadata(path) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(UsersError::Io {
                action: "read",
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let bytes = match &before {
        Some(_) => read_bounded(path)?,
        None => Vec::new(),
    };
    // Valid as a whole, or nothing is written.
    Users::parse(&bytes, path)?;
    let new_line = format!("{name}:{}", hash_password(password));

    let mut out = Vec::with_capacity(bytes.len() + new_line.len() + 2);
    let mut change = UserChange::Added;
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let (content, ending) = split_ending(line);
        if change == UserChange::Added && entry_name(content) == Some(name) {
            out.extend_from_slice(new_line.as_bytes());
            out.extend_from_slice(ending);
            change = UserChange::Replaced;
        } else {
            out.extend_from_slice(line);
        }
    }
    if change == UserChange::Added {
        if !out.is_empty() && !out.ends_with(b"\n") {
            out.push(b'\n');
        }
        out.extend_from_slice(new_line.as_bytes());
        out.push(b'\n');
    }
    write_atomically(path, &out, before.as_ref())?;
    Ok(change)
}

/// A line without its line ending, and the ending (`\n`, `\r\n` or none).
fn split_ending(line: &[u8]) -> (&[u8], &[u8]) {
    if let Some(rest) = line.strip_suffix(b"\r\n") {
        (rest, &line[rest.len()..])
    } else if let Some(rest) = line.strip_suffix(b"\n") {
        (rest, &line[rest.len()..])
    } else {
        (line, &[])
    }
}

/// The user name of an entry line (not a comment or blank line).
fn entry_name(content: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(content).ok()?.trim();
    if text.is_empty() || text.starts_with('#') {
        return None;
    }
    text.split_once(':').map(|(name, _)| name)
}

/// Calls `f` with each line number and its entry (None for a comment or
/// blank line); stops at the first bad line.
fn for_each_line<'a>(
    bytes: &'a [u8],
    path: &Path,
    mut f: impl FnMut(usize, Option<Entry<'a>>) -> Result<(), UsersError>,
) -> Result<(), UsersError> {
    let bad = |line: usize, reason: String| UsersError::Line {
        path: path.to_path_buf(),
        line,
        reason,
    };
    for (index, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = index + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Ok(text) = std::str::from_utf8(line) else {
            return Err(bad(line_no, "not UTF-8 text".to_owned()));
        };
        let text = text.trim();
        if text.is_empty() || text.starts_with('#') {
            f(line_no, None)?;
            continue;
        }
        let Some((name, hash)) = text.split_once(':') else {
            return Err(bad(
                line_no,
                "expected `name:$argon2id$...` (no ':' found)".to_owned(),
            ));
        };
        if name.is_empty() {
            return Err(bad(line_no, "the user name is empty".to_owned()));
        }
        if name.len() > MAX_USER_NAME {
            return Err(bad(
                line_no,
                "the user name is longer than 255 bytes".to_owned(),
            ));
        }
        if let Some(reason) = name_problem(name) {
            return Err(bad(line_no, format!("user name {name:?} {reason}")));
        }
        check_hash(hash).map_err(|reason| bad(line_no, format!("user {name:?}: {reason}")))?;
        f(line_no, Some(Entry { name, hash }))?;
    }
    Ok(())
}

/// Checks a PHC string: Argon2id with sane parameters. The error never
/// contains the hash.
fn check_hash(hash: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(hash).map_err(|_| {
        "the password hash is not a PHC string (expected $argon2id$v=19$m=...,t=...,p=...$salt$hash, as `mailgate relay-user add` writes)".to_owned()
    })?;
    if parsed.algorithm != Algorithm::Argon2id.ident() {
        return Err(format!(
            "the password hash uses {}, not argon2id",
            parsed.algorithm.as_str().escape_debug()
        ));
    }
    if parsed.hash.is_none() || parsed.salt.is_none() {
        return Err("the password hash lacks its salt or hash part".to_owned());
    }
    let params = argon2::Params::try_from(&parsed)
        .map_err(|e| format!("the password hash has invalid Argon2 parameters ({e})"))?;
    if params.m_cost() > MAX_MEMORY_KIB || params.t_cost() > MAX_TIME_COST {
        return Err(format!(
            "the password hash asks for more than {MAX_MEMORY_KIB} KiB or {MAX_TIME_COST} passes per login (m={}, t={})",
            params.m_cost(),
            params.t_cost()
        ));
    }
    Ok(())
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{mode:o}"),
                "the relay users file can be read by other users; chmod 600 it"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

fn write_atomically(
    path: &Path,
    bytes: &[u8],
    before: Option<&fs::Metadata>,
) -> Result<(), UsersError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let io_err = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| UsersError::Io {
            action,
            path,
            source,
        }
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".mailgate-users-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io_err("create a temporary file in", dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io_err("set the permissions of", tmp.path()))?;
    }
    tmp.write_all(bytes).map_err(io_err("write", tmp.path()))?;
    tmp.as_file()
        .sync_all()
        .map_err(io_err("write", tmp.path()))?;
    if !unchanged(path, before) {
        return Err(UsersError::Changed {
            path: path.to_path_buf(),
        });
    }
    tmp.persist(path)
        .map_err(|e| io_err("replace", path)(e.error))?;
    sync_dir(dir).map_err(io_err("sync the folder", dir))?;
    Ok(())
}

/// Whether the file is still as it was when read (or still absent).
fn unchanged(path: &Path, before: Option<&fs::Metadata>) -> bool {
    let now = fs::metadata(path).ok();
    match (before, now) {
        (None, None) => true,
        (Some(a), Some(b)) => mailgate_properties::fs::same_state(a, &b),
        _ => false,
    }
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}
