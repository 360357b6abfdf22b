//! Reading local files that may be hostile: a FIFO, a device, a huge file.
//!
//! Every file mailgate reads (properties files, CA files, the key file,
//! message inputs) goes through [`read_regular`]: it opens without blocking
//! (`O_NONBLOCK`, so a FIFO without a writer cannot stall the open, and
//! `O_NOCTTY`, so a terminal never becomes the controlling one), refuses
//! anything that is not a regular file (a FIFO, `/dev/zero`, a socket, a
//! folder) before reading a byte, and reads at most a given number of bytes.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::path::Path;

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// Opening or reading failed (missing, no permission, ...).
    #[error("{0}")]
    Io(#[from] io::Error),
    /// It is not a regular file; nothing was read from it.
    #[error("it is {kind}, not a regular file")]
    NotRegular {
        /// What it is instead, e.g. "a FIFO (named pipe)".
        kind: &'static str,
    },
    /// It holds more than the limit; at most the limit plus one byte was read.
    #[error("it is larger than {limit} bytes, the most allowed here")]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
}

impl ReadError {
    /// Whether the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Io(e) if e.kind() == io::ErrorKind::NotFound)
    }
}

impl From<ReadError> for io::Error {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidInput, other),
        }
    }
}

/// Opens `path` for reading without blocking and checks that it is a regular
/// file. Symlinks are followed (a config may link to its files).
pub fn open_regular(path: &Path) -> Result<(File, Metadata), ReadError> {
    let file = open_nonblocking(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular {
            kind: file_kind(&meta),
        });
    }
    Ok((file, meta))
}

/// Reads the whole of the regular file `path`, at most `limit` bytes.
///
/// A file whose size is already above `limit` is refused without reading;
/// one that grows while read is cut at `limit + 1` bytes and refused. The
/// buffer is allocated once at the file's size, so a caller that zeroes it
/// afterwards leaves no stray copy behind.
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let (file, meta) = open_regular(path)?;
    read_open(file, &meta, limit)
}

/// [`read_regular`] for a file opened with [`open_regular`].
pub fn read_open(file: File, meta: &Metadata, limit: u64) -> Result<Vec<u8>, ReadError> {
    if meta.len() > limit {
        return Err(ReadError::TooLarge { limit });
    }
    let capacity = usize::try_from(meta.len()).unwrap_or(usize::MAX - 1);
    let mut bytes = Vec::with_capacity(capacity.saturating_add(1));
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge { limit });
    }
    Ok(bytes)
}

#[cfg(unix)]
fn open_nonblocking(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> io::Result<File> {
    File::open(path)
}

/// What a file that is not a regular file is, for messages.
pub fn file_kind(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a folder";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_file() {
        "a regular file"
    } else {
        "a special file"
    }
}

/// Whether `now` is the file `before` described, unchanged: a regular file
/// with the same device, inode, size and modification and change times (on
/// other systems: size and modification time). For "reload only if it
/// changed" and "nobody wrote it meanwhile" checks; the change time makes a
/// rewrite within the same mtime tick count as a change.
pub fn same_state(before: &Metadata, now: &Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let state = |m: &Metadata| {
            (
                m.dev(),
                m.ino(),
                m.len(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
            )
        };
        now.is_file() && state(before) == state(now)
    }
    #[cfg(not(unix))]
    {
        now.is_file() && before.len() == now.len() && before.modified().ok() == now.modified().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_read_up_to_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"12345").unwrap();
        assert_eq!(read_regular(&path, 5).unwrap(), b"12345");
        assert!(matches!(
            read_regular(&path, 4),
            Err(ReadError::TooLarge { limit: 4 })
        ));
        let missing = read_regular(&dir.path().join("nope"), 5).unwrap_err();
        assert!(missing.is_not_found(), "{missing}");
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fifo");
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let start = std::time::Instant::now();
        let e = read_regular(&path, 1024).unwrap_err();
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
        assert_eq!(
            e.to_string(),
            "it is a FIFO (named pipe), not a regular file"
        );
    }

    #[cfg(unix)]
    #[test]
    fn devices_and_folders_are_refused() {
        let e = read_regular(Path::new("/dev/zero"), 1024).unwrap_err();
        assert!(
            matches!(
                e,
                ReadError::NotRegular {
                    kind: "a character device"
                }
            ),
            "{e}"
        );
        let e = read_regular(Path::new("/"), 1024).unwrap_err();
        assert!(
            matches!(e, ReadError::NotRegular { kind: "a folder" }),
            "{e}"
        );
        let io: io::Error = e.into();
        assert_eq!(io.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn same_state_sees_a_same_size_rewrite_and_a_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        std::fs::write(&path, "alice:1\n").unwrap();
        let before = std::fs::metadata(&path).unwrap();
        assert!(same_state(&before, &std::fs::metadata(&path).unwrap()));
        // Same size, new content: the change time moves even within one mtime tick.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, "alice:2\n").unwrap();
        assert!(!same_state(&before, &std::fs::metadata(&path).unwrap()));
        // Replaced by a folder.
        let now = std::fs::metadata(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert!(!same_state(&now, &std::fs::metadata(&path).unwrap()));
    }
}
