//! In-place editing of a `.properties` file: encrypt, check, rotate.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use java_properties::LineContent;
use secrecy::ExposeSecret;

use crate::error::{Error, Location, Result};
use crate::key::{SecretKey, parent_dir, sync_dir};
use crate::props::{self, Entry};
use crate::value::{self, decrypt_value, encrypt_value, is_encrypted};

/// One occurrence of a secret property in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Occurrence {
    /// The property name.
    pub key: String,
    /// The 1-based line where its (logical) line starts, before any edit.
    pub line: usize,
}

/// What [`encrypt_file`] or [`rotate_file`] did. It holds names and line
/// numbers only, never values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// The file.
    pub path: PathBuf,
    /// Values this call encrypted (`encrypt_file`) or re-encrypted under the
    /// new key (`rotate_file`).
    pub changed: Vec<Occurrence>,
    /// Values left as they were because they are already done: already
    /// encrypted with this key (`encrypt_file`), or already under the new
    /// key (`rotate_file`).
    pub unchanged: Vec<Occurrence>,
    /// `rotate_file` only: values still in plaintext, left alone (run
    /// `encrypt_file` on them).
    pub plaintext: Vec<Occurrence>,
    /// Occurrences with an empty value: nothing to encrypt.
    pub empty: Vec<Occurrence>,
    /// Listed secret keys that do not occur in the file.
    pub missing: Vec<String>,
    /// Whether the file was rewritten (false when nothing changed).
    pub written: bool,
}

/// Encrypts, in place, the plaintext value of every occurrence of each
/// property in `secret_keys`, and returns what it did.
///
/// Only the value text of those lines changes (a value spread over
/// continuation lines becomes one `ENC(...)` on the first of them); every
/// other byte of the file, including comments, blank lines, order,
/// separators, escapes, line endings and encoding, stays as it was. The
/// plaintext is the value as Java decodes it (escapes resolved; the file read
/// as UTF-8 when it is valid UTF-8, else windows-1252).
///
/// * A key that occurs more than once (Java uses the last) has every
///   occurrence encrypted, so no shadowed copy stays readable.
/// * Empty values are left alone (reported in [`Report::empty`]).
/// * Values already `ENC(...)` are left alone, but must decrypt with `key`:
///   a file is never left holding values under two keys.
/// * The result is re-parsed and checked (every other line decodes as
///   before, every new value decrypts to its plaintext) before it is
///   written atomically: temporary file in the same folder, same
///   permissions (and owner, where allowed), fsync, rename, fsync of the
///   folder. A symlink is followed and its target replaced.
/// * Idempotent: when nothing needs encrypting, the file is not written.
pub fn encrypt_file(
    path: impl AsRef<Path>,
    secret_keys: &[&str],
    key: &SecretKey,
) -> Result<Report> {
    let path = path.as_ref();
    let bytes = read(path)?;
    let entries = props::entries(path, &bytes)?;
    let mut report = Report {
        path: path.to_path_buf(),
        missing: missing(&entries, secret_keys),
        ..Report::default()
    };
    let mut edits = Vec::new();
    for (idx, e) in entries.iter().enumerate() {
        if !secret_keys.contains(&e.key.as_str()) {
            continue;
        }
        let occ = occurrence(e);
        if e.value.is_empty() {
            report.empty.push(occ);
        } else if is_encrypted(&e.value) {
            decrypt_value(key, &e.key, &e.value).map_err(|err| err.at(loc(path, e)))?;
            report.unchanged.push(occ);
        } else {
            let enc = encrypt_value(key, &e.key, &e.value)?;
            edits.push(Edit { idx, text: enc });
            report.changed.push(occ);
        }
    }
    if !edits.is_empty() {
        let new = apply(&bytes, &entries, &edits);
        verify(path, &bytes, &new, &entries, &edits, |e, new_value| {
            decrypt_value(key, &e.key, new_value)
                .is_ok_and(|s| s.expose_secret() == e.value.as_str())
        })?;
        write_atomic(path, &new)?;
        report.written = true;
    }
    Ok(report)
}

/// The occurrences of the properties in `secret_keys` whose value is still
/// plaintext (non-empty and not `ENC(...)`), with their line numbers, in file
/// order. For `mailgate encrypt --check`.
pub fn plaintext_secrets(path: impl AsRef<Path>, secret_keys: &[&str]) -> Result<Vec<Occurrence>> {
    let path = path.as_ref();
    let bytes = read(path)?;
    Ok(props::entries(path, &bytes)?
        .iter()
        .filter(|e| {
            secret_keys.contains(&e.key.as_str()) && !e.value.is_empty() && !is_encrypted(&e.value)
        })
        .map(occurrence)
        .collect())
}

/// Re-encrypts, in place, every `ENC(...)` value of the properties in
/// `secret_keys` from `old_key` to `new_key`.
///
/// Every value is decrypted before anything is written: with a wrong old key
/// or a damaged value the call fails and the file is untouched. Values
/// already under `new_key` are left alone, so an interrupted rotation over
/// several files can simply be run again. Plaintext values are left alone
/// and reported in [`Report::plaintext`]. Written like [`encrypt_file`].
pub fn rotate_file(
    path: impl AsRef<Path>,
    secret_keys: &[&str],
    old_key: &SecretKey,
    new_key: &SecretKey,
) -> Result<Report> {
    let path = path.as_ref();
    let bytes = read(path)?;
    let entries = props::entries(path, &bytes)?;
    let mut report = Report {
        path: path.to_path_buf(),
        missing: missing(&entries, secret_keys),
        ..Report::default()
    };
    let mut edits = Vec::new();
    for (idx, e) in entries.iter().enumerate() {
        if !secret_keys.contains(&e.key.as_str()) {
            continue;
        }
        let occ = occurrence(e);
        if e.value.is_empty() {
            report.empty.push(occ);
            continue;
        }
        if !is_encrypted(&e.value) {
            report.plaintext.push(occ);
            continue;
        }
        let parsed = value::parse(&e.key, &e.value).map_err(|err| err.at(loc(path, e)))?;
        if parsed.key_id() == new_key.id_bytes()
            && value::decrypt_parsed(new_key, &e.key, &parsed).is_ok()
        {
            report.unchanged.push(occ);
            continue;
        }
        let plain =
            value::decrypt_parsed(old_key, &e.key, &parsed).map_err(|err| err.at(loc(path, e)))?;
        let enc = encrypt_value(new_key, &e.key, plain.expose_secret())?;
        edits.push(Edit { idx, text: enc });
        report.changed.push(occ);
    }
    if !edits.is_empty() {
        let new = apply(&bytes, &entries, &edits);
        verify(path, &bytes, &new, &entries, &edits, |e, new_value| {
            let before = decrypt_value(old_key, &e.key, &e.value);
            let after = decrypt_value(new_key, &e.key, new_value);
            matches!((before, after), (Ok(b), Ok(a)) if b.expose_secret() == a.expose_secret())
        })?;
        write_atomic(path, &new)?;
        report.written = true;
    }
    Ok(report)
}

/// Replace the value span of entry `idx` with `text`.
struct Edit {
    idx: usize,
    text: String,
}

fn occurrence(e: &Entry) -> Occurrence {
    Occurrence {
        key: e.key.clone(),
        line: e.line,
    }
}

fn loc(path: &Path, e: &Entry) -> Location {
    Location::new(path, e.line)
}

fn missing(entries: &[Entry], secret_keys: &[&str]) -> Vec<String> {
    secret_keys
        .iter()
        .filter(|k| !entries.iter().any(|e| e.key == **k))
        .map(|k| (*k).to_owned())
        .collect()
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| Error::io("read", path, e))
}

fn apply(bytes: &[u8], entries: &[Entry], edits: &[Edit]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + edits.len() * 128);
    let mut pos = 0;
    for ed in edits {
        let span = &entries[ed.idx].span;
        out.extend_from_slice(&bytes[pos..span.start]);
        out.extend_from_slice(ed.text.as_bytes());
        pos = span.end;
    }
    out.extend_from_slice(&bytes[pos..]);
    out
}

/// Checks an edit before it is written: the new bytes, read back by the
/// `java-properties` crate, hold the same lines as the old ones, except that
/// each edited value passes `check(old_entry, new_value)`; and this module
/// can read the new file again. Any surprise is an error, and nothing is
/// written.
fn verify(
    path: &Path,
    old: &[u8],
    new: &[u8],
    entries: &[Entry],
    edits: &[Edit],
    check: impl Fn(&Entry, &str) -> bool,
) -> Result<()> {
    let fail = |line, reason| Error::Parse {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let first_line = entries[edits[0].idx].line;
    let (Ok(before), Ok(after)) = (props::decode_all(old), props::decode_all(new)) else {
        return Err(fail(
            first_line,
            "the edited file does not read back; not written",
        ));
    };
    if before.len() != after.len() {
        return Err(fail(
            first_line,
            "the edited file does not read back the same; not written",
        ));
    }
    let mut ordinal = 0;
    let mut next_edit = edits.iter().peekable();
    for (b, a) in before.iter().zip(&after) {
        let is_edit = matches!(b, LineContent::KVPair(..))
            && next_edit.peek().is_some_and(|ed| ed.idx == ordinal);
        let line = entries.get(ordinal).map_or(first_line, |e| e.line);
        let ok = if is_edit {
            next_edit.next();
            let e = &entries[ordinal];
            match (b, a) {
                (LineContent::KVPair(kb, _), LineContent::KVPair(ka, va)) => {
                    kb == ka && *kb == e.key && check(e, va)
                }
                _ => false,
            }
        } else {
            b == a
        };
        if !ok {
            let reason = if props::detect_encoding(old) != props::detect_encoding(new) {
                "the file mixes UTF-8 and Latin-1 bytes, and encrypting would change how \
                 this line is decoded; convert the file to one encoding first (not written)"
            } else {
                "the edited file does not read back the same; not written"
            };
            return Err(fail(line, reason));
        }
        if matches!(b, LineContent::KVPair(..)) {
            ordinal += 1;
        }
    }
    if ordinal != entries.len() || next_edit.next().is_some() {
        return Err(fail(
            first_line,
            "the file's lines could not be matched up; not written",
        ));
    }
    if props::entries(path, new)?.len() != entries.len() {
        return Err(fail(
            first_line,
            "the edited file does not read back the same; not written",
        ));
    }
    Ok(())
}

/// Replaces `path` by `bytes` atomically, keeping its permissions (and, where
/// allowed, owner and group). A symlink is followed.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let target = fs::canonicalize(path).map_err(|e| Error::io("resolve", path, e))?;
    let meta = fs::metadata(&target).map_err(|e| Error::io("inspect", &target, e))?;
    let dir = parent_dir(&target);
    let mut tmp = tempfile::Builder::new()
        .prefix(".mailgate-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| Error::io("create a temporary file in", dir, e))?;
    let werr = |e: io::Error| Error::io("write", &target, e);
    tmp.as_file()
        .set_permissions(meta.permissions())
        .map_err(werr)?;
    keep_owner(tmp.as_file(), &meta);
    tmp.write_all(bytes).map_err(werr)?;
    tmp.as_file().sync_all().map_err(werr)?;
    tmp.persist(&target)
        .map_err(|e| Error::io("replace", &target, e.error))?;
    sync_dir(dir).map_err(|e| Error::io("sync folder", dir, e))?;
    Ok(())
}

#[cfg(unix)]
fn keep_owner(file: &fs::File, meta: &fs::Metadata) {
    use std::os::unix::fs::MetadataExt;
    // Best effort: only root may give a file away; a user keeps their own.
    let _ = std::os::unix::fs::fchown(file, Some(meta.uid()), Some(meta.gid()));
}

#[cfg(not(unix))]
fn keep_owner(_file: &fs::File, _meta: &fs::Metadata) {}
