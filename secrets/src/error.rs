//! The error type. No variant ever holds a property value, a plaintext or key
//! material: only property names, paths, line numbers, key ids and fixed
//! reasons.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Where a property was found: a file and its 1-based line, when known.
///
/// Displays as ` (FILE:LINE)`, or as nothing for a bare value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Location {
    /// The properties file.
    pub file: Option<PathBuf>,
    /// The 1-based line where the property's logical line starts.
    pub line: Option<usize>,
}

impl Location {
    /// A location in `file` at `line`.
    pub fn new(file: &Path, line: usize) -> Self {
        Location {
            file: Some(file.to_path_buf()),
            line: Some(line),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, " ({}:{line})", file.display()),
            (Some(file), None) => write!(f, " ({})", file.display()),
            (None, Some(line)) => write!(f, " (line {line})"),
            (None, None) => Ok(()),
        }
    }
}

/// Which key a value was tried with: its key file, or a key given in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyName {
    /// The key file the key was loaded from, if any.
    pub file: Option<PathBuf>,
    /// The key's id (8 hex digits, see [`crate::SecretKey::id`]).
    pub id: String,
}

impl fmt::Display for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "key file {} (key id {})", file.display(), self.id),
            None => write!(f, "the given key (key id {})", self.id),
        }
    }
}

/// Everything that can go wrong. Messages name the property, the file and
/// the key file where they are known, and never contain a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key file does not exist.
    #[error(
        "key file {path} not found: the ENC(...) values need the key file they were \
         encrypted with; restore it there, or point mailgate.crypto.keyFile at it \
         (`mailgate encrypt` creates a key file only for a config without ENC(...) values)"
    )]
    KeyFileMissing {
        /// The key file.
        path: PathBuf,
    },

    /// The key file can be read by its group or by others (checked on Unix
    /// only).
    #[error(
        "key file {path} is accessible by group or others (mode {mode:04o}); \
         refusing to use it: run `chmod 600 {path}`"
    )]
    KeyFilePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },

    /// The key file exists but does not hold a key in the documented format.
    #[error("key file {path} is not a mailgate key file: {reason}")]
    KeyFileFormat {
        /// The key file.
        path: PathBuf,
        /// What is wrong, in fixed words.
        reason: &'static str,
    },

    /// A key rotation was interrupted and is not finished yet.
    #[error(
        "a key rotation is unfinished ({pending} exists); finish it first: run `mailgate encrypt`"
    )]
    RotationPending {
        /// The pending key file.
        pending: PathBuf,
    },

    /// Another process is rotating the key right now.
    #[error(
        "another process is rotating the key right now ({pending} is locked); wait for it and run the command again"
    )]
    RotationBusy {
        /// The pending key file.
        pending: PathBuf,
    },

    /// The new key of a rotation is the key already in use.
    #[error("the new key is the key already in {path}; nothing to rotate")]
    SameKey {
        /// The key file.
        path: PathBuf,
    },

    /// A key file was to be created where one already exists.
    #[error("key file {path} already exists; not overwriting it")]
    KeyFileExists {
        /// The key file.
        path: PathBuf,
    },

    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,

    /// A file could not be read or written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done, e.g. "read".
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },

    /// A properties file could not be parsed (safely) at some line.
    #[error("{path}:{line}: {reason}")]
    Parse {
        /// The properties file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// What is wrong, in fixed words.
        reason: &'static str,
    },

    /// A file changed between being read and being replaced: another
    /// program wrote it, or it was moved or replaced meanwhile.
    #[error(
        "{path} changed while encrypting (another program wrote or replaced it); \
         it was not written: run the command again"
    )]
    Changed {
        /// The file.
        path: PathBuf,
    },

    /// A plaintext secret holds U+FFFD: bytes that were not text in the
    /// file's encoding, or an unpaired `\uD800`-`\uDFFF` escape. Encrypting
    /// it would lock in a value that is not what was meant.
    #[error(
        "{property}{location} holds an undecodable character (U+FFFD: a byte that is not \
         text in this file's encoding, or a lone \\uD800-\\uDFFF escape); fix the value \
         (write it with \\uXXXX escapes, or save the file as UTF-8) and run again"
    )]
    Undecodable {
        /// The property.
        property: String,
        /// Where it was found.
        location: Location,
    },

    /// The value looks encrypted by another tool (the RV&S server's
    /// `encryptPassword`): it is neither a plaintext nor a mailgate value.
    #[error(
        "{property}{location} looks encrypted by another tool (the RV&S server's \
         encryptPassword writes such values): mailgate cannot decrypt it and will not \
         encrypt it again as if it were the secret; give mailgate its own copy of the \
         files with the plain secret, then run `mailgate encrypt`"
    )]
    ForeignEncrypted {
        /// The property.
        property: String,
        /// Where it was found.
        location: Location,
    },

    /// The value was encrypted with another key.
    #[error(
        "cannot decrypt {property}{location}: it was encrypted with another key \
         (key id {found}), not with {key}"
    )]
    WrongKey {
        /// The property.
        property: String,
        /// Where it was found.
        location: Location,
        /// The key id recorded in the value.
        found: String,
        /// The key that was tried.
        key: Box<KeyName>,
    },

    /// The value was encrypted for another property (it was moved or copied).
    #[error(
        "cannot decrypt {property}{location}: the value was encrypted for another \
         property (moved or copied from another key?); encrypt it again under this name"
    )]
    WrongProperty {
        /// The property.
        property: String,
        /// Where it was found.
        location: Location,
    },

    /// Authentication failed although key and property match: the value was
    /// altered or corrupted.
    #[error(
        "cannot decrypt {property}{location}: the value fails authentication \
         (altered or corrupted)"
    )]
    Tampered {
        /// The property.
        property: String,
        /// Where it was found.
        location: Location,
    },

    /// The value looks like `ENC(...)` but is not a well-formed value.
    #[error("cannot decrypt {property}{location}: malformed ENC(...) value: {reason}")]
    Format {
        /// The property.
        property: String,
        /// Where it was found.
        location: Location,
        /// What is wrong, in fixed words.
        reason: &'static str,
    },

    /// The value is not encrypted (`decrypt_value` needs an `ENC(...)` value).
    #[error("{property}{location} is not encrypted (no ENC(...) value)")]
    NotEncrypted {
        /// The property.
        property: String,
        /// Where it was found.
        location: Location,
    },
}

impl Error {
    /// The same error, with the file and line where the property was found.
    pub(crate) fn at(mut self, loc: Location) -> Self {
        match &mut self {
            Error::WrongKey { location, .. }
            | Error::WrongProperty { location, .. }
            | Error::Tampered { location, .. }
            | Error::Format { location, .. }
            | Error::NotEncrypted { location, .. } => *location = loc,
            _ => {}
        }
        self
    }

    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        Error::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
