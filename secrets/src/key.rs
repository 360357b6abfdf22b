//! The key and its key file.
//!
//! # Key file format
//!
//! A text file (ASCII). Lines starting with `#` are comments and blank lines
//! are ignored; exactly one other line holds the key: 64 hexadecimal digits
//! (either case), the 32 key bytes. Surrounding whitespace and a CRLF line
//! ending are accepted. A file mailgate creates looks like this:
//!
//! ```text
//! # mailgate secrets key (XChaCha20-Poly1305, 32 bytes as hex).
//! # Keep this file secret (mode 0600) and back it up: without it the
//! # ENC(...) values in the properties files cannot be decrypted.
//! 8f1c...64 hex digits...e2
//! ```
//!
//! One can be made by hand with `(umask 077; openssl rand -hex 32 > FILE)`.
//!
//! On Unix a key file whose mode grants anything to group or others
//! (`mode & 0o077 != 0`) is refused with an error that says to run
//! `chmod 600 FILE`. On other systems permissions are not checked (protect
//! the file with the system's own access control lists).

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::Generate;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{Error, KeyName, Result};

/// Length of a key in bytes.
pub const KEY_LEN: usize = 32;
/// Length of a key id in bytes (shown as 8 hex digits).
pub(crate) const KEY_ID_LEN: usize = 4;
/// A key file larger than this is not a key file.
const MAX_KEY_FILE_LEN: u64 = 4096;

const KEY_FILE_HEADER: &str = "\
# mailgate secrets key (XChaCha20-Poly1305, 32 bytes as hex).
# Keep this file secret (mode 0600) and back it up: without it the
# ENC(...) values in the properties files cannot be decrypted.
";

/// Whether [`SecretKey::load_or_create`] found the key file or made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyOrigin {
    /// The key file existed and was loaded.
    Loaded,
    /// The key file did not exist; a new key was generated and written.
    Created,
}

/// A 32-byte key. The bytes are zeroed when it is dropped, and `Debug`
/// shows only the key id and the key file, never key bytes.
#[derive(Clone)]
pub struct SecretKey {
    bytes: Zeroizing<[u8; KEY_LEN]>,
    id: [u8; KEY_ID_LEN],
    file: Option<PathBuf>,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey")
            .field("id", &self.id())
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl SecretKey {
    /// A key from raw bytes (for tests and for callers holding a key
    /// elsewhere). The caller should zero its own copy.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        let bytes = Zeroizing::new(bytes);
        let id = key_id(&bytes);
        SecretKey {
            bytes,
            id,
            file: None,
        }
    }

    /// A new random key from the operating system's CSPRNG.
    pub fn generate() -> Result<Self> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        *bytes = <[u8; KEY_LEN]>::try_generate().map_err(|_| Error::Random)?;
        let id = key_id(&bytes);
        Ok(SecretKey {
            bytes,
            id,
            file: None,
        })
    }

    /// The key id: the first 4 bytes of
    /// SHA-256(`"mailgate-secrets/v1/key-id\0"` || key), as 8 lowercase hex
    /// digits. Every ENC value records it, so a wrong key is told apart from
    /// a tampered value. It reveals nothing usable about the key.
    pub fn id(&self) -> String {
        hex_lower(&self.id)
    }

    pub(crate) fn id_bytes(&self) -> [u8; KEY_ID_LEN] {
        self.id
    }

    /// The key file this key was loaded from or written to, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    pub(crate) fn name(&self) -> KeyName {
        KeyName {
            file: self.file.clone(),
            id: self.id(),
        }
    }

    /// Loads the key from `path`.
    ///
    /// Errors: [`Error::KeyFileMissing`] when there is no such file,
    /// [`Error::KeyFilePermissions`] when group or others have any access to
    /// it (checked on Unix only), [`Error::KeyFileFormat`] when it is not a
    /// regular file (it is opened without blocking, so a FIFO or a device is
    /// refused before a byte is read) or holds no valid key.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        // Opened without blocking (a FIFO without a writer would block a
        // plain open), then what was opened is checked.
        let mut file = match mailgate_properties::fs::open_regular(path) {
            Ok((file, _)) => file,
            Err(e) if e.is_not_found() => {
                return Err(Error::KeyFileMissing {
                    path: path.to_path_buf(),
                });
            }
            Err(mailgate_properties::fs::ReadError::NotRegular { .. }) => {
                return Err(Error::KeyFileFormat {
                    path: path.to_path_buf(),
                    reason: "not a regular file",
                });
            }
            Err(e) => return Err(Error::io("open key file", path, e.into())),
        };
        let meta = file
            .metadata()
            .map_err(|e| Error::io("inspect key file", path, e))?;
        check_key_file(path, &meta)?;
        let mut text = Zeroizing::new(Vec::with_capacity(meta.len() as usize + 1));
        (&mut file)
            .take(MAX_KEY_FILE_LEN + 1)
            .read_to_end(&mut text)
            .map_err(|e| Error::io("read key file", path, e))?;
        let bytes = parse_key_file(&text).map_err(|reason| Error::KeyFileFormat {
            path: path.to_path_buf(),
            reason,
        })?;
        let id = key_id(&bytes);
        Ok(SecretKey {
            bytes,
            id,
            file: Some(path.to_path_buf()),
        })
    }

    /// Loads the key from `path`, or, when there is no file there, generates
    /// a new key and writes it (see [`SecretKey::create`]).
    pub fn load_or_create(path: impl AsRef<Path>) -> Result<(Self, KeyOrigin)> {
        let path = path.as_ref();
        match Self::load(path) {
            Ok(key) => Ok((key, KeyOrigin::Loaded)),
            Err(Error::KeyFileMissing { .. }) => match Self::create(path) {
                Ok(key) => Ok((key, KeyOrigin::Created)),
                // Another process created it in between: use theirs.
                Err(Error::KeyFileExists { .. }) => Ok((Self::load(path)?, KeyOrigin::Loaded)),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Generates a new key and writes it to a new key file at `path`, which
    /// must not exist. The file is complete or absent, never partial: the key
    /// is written to a temporary file in the same folder (which `tempfile`
    /// creates with mode 0600 on Unix), synced,
    /// then linked into place without replacing anything (create-new
    /// semantics), and the folder is synced. Missing parent folders are
    /// created (mode 0700).
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let mut key = Self::generate()?;
        let dir = parent_dir(path);
        if !dir.as_os_str().is_empty() && !dir.exists() {
            create_private_dirs(dir).map_err(|e| Error::io("create folder", dir, e))?;
        }
        write_key_file(path, &key, "", WriteMode::CreateNew)?;
        key.file = Some(path.to_path_buf());
        Ok(key)
    }

    /// This key, remembered as loaded from or written to `path`.
    pub(crate) fn with_file(mut self, path: &Path) -> Self {
        self.file = Some(path.to_path_buf());
        self
    }
}

/// How [`write_key_file`] puts the file in place.
pub(crate) enum WriteMode {
    /// Only where no file is: [`Error::KeyFileExists`] otherwise.
    CreateNew,
    /// As `CreateNew`, with an exclusive `flock` taken before the file
    /// appears under its name (held as long as the returned file is open).
    CreateNewLocked,
    /// Replacing what is there, atomically.
    Replace,
}

/// Writes `key` as a key file at `path`, complete or not at all: the text
/// (the header, then `comments`, then the key) goes to a temporary file in
/// the same folder (mode 0600 on Unix), is synced, then linked or renamed
/// into place, and the folder is synced. Returns the file, still open.
pub(crate) fn write_key_file(
    path: &Path,
    key: &SecretKey,
    comments: &str,
    mode: WriteMode,
) -> Result<fs::File> {
    // Never a key file that loading would refuse (a pending key listing
    // many long paths, say): then nothing could finish the rotation.
    let len = KEY_FILE_HEADER.len() + comments.len() + 2 * KEY_LEN + 1;
    if len as u64 > MAX_KEY_FILE_LEN {
        return Err(Error::io(
            "write key file",
            path,
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "it would be {len} bytes, more than the {MAX_KEY_FILE_LEN} a key file may have; rotate fewer or shorter-named files at a time"
                ),
            ),
        ));
    }
    let dir = parent_dir(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(KEY_TEMP_PREFIX)
        .tempfile_in(dir)
        .map_err(|e| Error::io("create a temporary file in", dir, e))?;
    let mut text = Zeroizing::new(String::with_capacity(
        KEY_FILE_HEADER.len() + comments.len() + 2 * KEY_LEN + 1,
    ));
    text.push_str(KEY_FILE_HEADER);
    text.push_str(comments);
    for b in key.bytes.iter() {
        push_hex(&mut text, *b);
    }
    text.push('\n');
    tmp.write_all(text.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| Error::io("write key file", path, e))?;
    if matches!(mode, WriteMode::CreateNewLocked) {
        flock(tmp.as_file(), Wait::Yes).map_err(|e| Error::io("lock", path, e))?;
    }
    let file = match mode {
        WriteMode::CreateNew | WriteMode::CreateNewLocked => match tmp.persist_noclobber(path) {
            Ok(file) => file,
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Error::KeyFileExists {
                    path: path.to_path_buf(),
                });
            }
            Err(e) => return Err(Error::io("create key file", path, e.error)),
        },
        WriteMode::Replace => tmp
            .persist(path)
            .map_err(|e| Error::io("replace key file", path, e.error))?,
    };
    sync_dir(dir).map_err(|e| Error::io("sync folder", dir, e))?;
    Ok(file)
}

/// Whether [`flock`] waits for the lock.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    Yes,
    /// `WouldBlock` while another process holds it.
    No,
}

/// An exclusive `flock` on `file` (the crate's rust-version predates
/// `File::lock`; on Linux both are `flock`, so they exclude each other).
#[cfg(unix)]
pub(crate) fn flock(file: &fs::File, wait: Wait) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    let op = match wait {
        Wait::Yes => libc::LOCK_EX,
        Wait::No => libc::LOCK_EX | libc::LOCK_NB,
    };
    // SAFETY: flock on a descriptor this function borrows.
    if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(unix))]
pub(crate) fn flock(_file: &fs::File, _wait: Wait) -> io::Result<()> {
    Ok(())
}

/// The prefix of the temporary files key files are written through.
pub(crate) const KEY_TEMP_PREFIX: &str = ".mailgate-key-";

/// A regular file of plausible size, private on Unix.
fn check_key_file(path: &Path, meta: &fs::Metadata) -> Result<()> {
    if !meta.is_file() {
        return Err(Error::KeyFileFormat {
            path: path.to_path_buf(),
            reason: "not a regular file",
        });
    }
    check_permissions(path, meta)?;
    if meta.len() > MAX_KEY_FILE_LEN {
        return Err(Error::KeyFileFormat {
            path: path.to_path_buf(),
            reason: "file is too large",
        });
    }
    Ok(())
}

fn key_id(bytes: &[u8; KEY_LEN]) -> [u8; KEY_ID_LEN] {
    let mut h = Sha256::new();
    h.update(b"mailgate-secrets/v1/key-id\0");
    h.update(bytes);
    let digest = h.finalize();
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&digest[..KEY_ID_LEN]);
    id
}

/// Parses the key file text. Errors are fixed words: never key material.
fn parse_key_file(text: &[u8]) -> std::result::Result<Zeroizing<[u8; KEY_LEN]>, &'static str> {
    let text = std::str::from_utf8(text).map_err(|_| "it is not text")?;
    let mut key = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if key.is_some() {
            return Err("it holds more than one key line");
        }
        if line.len() != 2 * KEY_LEN {
            return Err("the key line is not 64 hex digits");
        }
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        for (i, pair) in line.as_bytes().chunks(2).enumerate() {
            let hi = hex_val(pair[0]).ok_or("the key line is not 64 hex digits")?;
            let lo = hex_val(pair[1]).ok_or("the key line is not 64 hex digits")?;
            bytes[i] = (hi << 4) | lo;
        }
        key = Some(bytes);
    }
    key.ok_or("it holds no key line")
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn push_hex(s: &mut String, b: u8) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    s.push(DIGITS[(b >> 4) as usize] as char);
    s.push(DIGITS[(b & 15) as usize] as char);
}

pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        push_hex(&mut s, *b);
    }
    s
}

pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(unix)]
fn check_permissions(path: &Path, meta: &fs::Metadata) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(Error::KeyFilePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &Path, _meta: &fs::Metadata) -> Result<()> {
    Ok(())
}

#[cfg(unix)]
fn create_private_dirs(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dirs(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

/// Makes a rename or link in `dir` durable.
#[cfg(unix)]
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
pub(crate) fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_comments_case_and_crlf() {
        let hex = "00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff";
        let text = format!("# c\r\n\r\n  {hex}  \r\n# trailing\r\n");
        let k = parse_key_file(text.as_bytes()).unwrap();
        assert_eq!(k[0], 0x00);
        assert_eq!(k[9], 0x99);
        assert_eq!(k[10], 0xaa);
        assert_eq!(k[31], 0xff);
    }

    #[test]
    fn parse_rejects_bad_files() {
        assert_eq!(parse_key_file(b"").unwrap_err(), "it holds no key line");
        assert_eq!(
            parse_key_file(b"# only\n").unwrap_err(),
            "it holds no key line"
        );
        assert!(parse_key_file(b"abcd\n").is_err());
        let g = "g".repeat(64);
        assert!(parse_key_file(g.as_bytes()).is_err());
        let two = format!("{0}\n{0}\n", "a".repeat(64));
        assert_eq!(
            parse_key_file(two.as_bytes()).unwrap_err(),
            "it holds more than one key line"
        );
        assert_eq!(parse_key_file(&[0xff, 0xfe]).unwrap_err(), "it is not text");
    }

    #[test]
    fn ids_differ_and_debug_hides_bytes() {
        let a = SecretKey::from_bytes([0x41; KEY_LEN]);
        let b = SecretKey::from_bytes([0x42; KEY_LEN]);
        assert_ne!(a.id(), b.id());
        assert_eq!(a.id().len(), 8);
        let dbg = format!("{a:?}");
        assert!(dbg.contains(&a.id()));
        assert!(!dbg.contains("41, 65"));
        assert!(!dbg.contains(&"41".repeat(8)));
        assert!(!dbg.contains("65, 65"));
    }

    #[test]
    fn generate_is_random() {
        let a = SecretKey::generate().unwrap();
        let b = SecretKey::generate().unwrap();
        assert_ne!(a.bytes(), b.bytes());
    }
}
