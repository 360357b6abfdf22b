//! In-place editing of `.properties` files: encrypt, check, rotate.
//!
//! Files are read with `mailgate-properties`, the reader mailgate's settings
//! loader uses, so the plaintext encrypted here is exactly the value loading
//! would have used.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use mailgate_properties::{Document, Entry};
use secrecy::ExposeSecret;
use zeroize::Zeroizing;

use crate::error::{Error, Location, Result};
use crate::key::{SecretKey, parent_dir, sync_dir};
use crate::value::{self, decrypt_value, encrypt_value, is_encrypted};

/// One occurrence of a secret property in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Occurrence {
    /// The property name.
    pub key: String,
    /// The 1-based line where its (logical) line starts, before any edit.
    pub line: usize,
}

/// What a secret property holds (see [`find_secrets`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValueState {
    /// Empty: nothing to encrypt.
    Empty,
    /// A plaintext value.
    Plaintext,
    /// An `ENC(v1:...)` value.
    Encrypted,
    /// A value another tool encrypted (see [`crate::looks_foreign_encrypted`]):
    /// neither plaintext nor decryptable here.
    Foreign,
}

/// What [`encrypt_file`] or [`rotate_file`] did. It holds names, line
/// numbers and paths only, never values.
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
    /// `rotate_file` only: values another tool encrypted, left alone.
    pub foreign: Vec<Occurrence>,
    /// Listed secret keys that do not occur in the file.
    pub missing: Vec<String>,
    /// Whether the file was rewritten (false when nothing changed).
    pub written: bool,
    /// Things the caller should tell the user about a rewritten file: its
    /// owner or group could not be kept, or other hard links to it still
    /// hold the old content.
    pub warnings: Vec<String>,
}

/// Encrypts, in place, the plaintext value of every occurrence of each
/// property in `secret_keys`, and returns what it did.
///
/// Only the value text of those lines changes (a value spread over
/// continuation lines becomes one `ENC(...)` on the first of them); every
/// other byte of the file, including comments, blank lines, order,
/// separators, escapes, line endings and encoding, stays as it was. The
/// plaintext is the value as mailgate (and Java) decodes it: escapes
/// resolved, the file read as UTF-8 when it is valid UTF-8, else as
/// ISO-8859-1 (see `mailgate-properties`).
///
/// * A key that occurs more than once (Java uses the last) has every
///   occurrence encrypted, so no shadowed copy stays readable.
/// * Empty values are left alone (reported in [`Report::empty`]).
/// * Values already `ENC(...)` are left alone, but must decrypt with `key`:
///   a file is never left holding values under two keys.
/// * A value another tool encrypted ([`crate::looks_foreign_encrypted`]) is
///   refused with [`Error::ForeignEncrypted`]: it is not a plaintext.
/// * A plaintext holding U+FFFD (bytes that were not text) is refused with
///   [`Error::Undecodable`].
/// * The result is re-read and checked (every other value decodes as
///   before, every new value decrypts to its plaintext) before it is
///   written atomically: temporary file in the same folder, same
///   permissions, same owner where the operating system allows it (only
///   root may give a file to another user; a user keeps the group when they
///   are in it; anything not kept is reported in [`Report::warnings`]),
///   fsync, rename, fsync of the folder.
/// * A symlink is resolved once, before reading, and its target replaced.
///   If the file changes between the read and the rename (device, inode,
///   size, modification or change time), nothing is written and the call
///   fails with [`Error::Changed`]: run it again.
/// * A file with other hard links is replaced under this name only; the
///   other links keep the old plaintext: reported in [`Report::warnings`].
/// * Idempotent: when nothing needs encrypting, the file is not written.
pub fn encrypt_file(
    path: impl AsRef<Path>,
    secret_keys: &[&str],
    key: &SecretKey,
) -> Result<Report> {
    prepare_encrypt(path.as_ref(), secret_keys, key)?.commit()
}

/// [`encrypt_file`] for several files as one step: every file is read,
/// checked and its new content prepared before any is written, so a value
/// under a wrong key or a syntax error in the last file leaves all of them
/// untouched. A file named twice (or through a symlink) is handled once. A
/// failure while writing (disk full, a file changed meanwhile) leaves the
/// files before it encrypted; running again finishes the rest.
pub fn encrypt_files<P: AsRef<Path>>(
    paths: &[P],
    secret_keys: &[&str],
    key: &SecretKey,
) -> Result<Vec<Report>> {
    commit_all(
        paths
            .iter()
            .map(|p| prepare_encrypt(p.as_ref(), secret_keys, key)),
    )
}

/// Every occurrence of the properties in `secret_keys`, in file order, with
/// what it holds. Nothing key-related is needed or touched.
pub fn find_secrets(
    path: impl AsRef<Path>,
    secret_keys: &[&str],
) -> Result<Vec<(Occurrence, ValueState)>> {
    let path = path.as_ref();
    let source = Source::read(path)?;
    let doc = parse(path, &source.bytes)?;
    Ok(doc
        .entries
        .iter()
        .filter(|e| secret_keys.contains(&e.key.as_str()))
        .map(|e| (occurrence(e), state(e)))
        .collect())
}

/// The occurrences of the properties in `secret_keys` whose value is still
/// plaintext (non-empty and not `ENC(...)`), with their line numbers, in file
/// order. For `mailgate encrypt --check`.
pub fn plaintext_secrets(path: impl AsRef<Path>, secret_keys: &[&str]) -> Result<Vec<Occurrence>> {
    Ok(find_secrets(path, secret_keys)?
        .into_iter()
        .filter(|(_, s)| *s == ValueState::Plaintext)
        .map(|(o, _)| o)
        .collect())
}

/// Re-encrypts, in place, every `ENC(...)` value of the properties in
/// `secret_keys` from `old_key` to `new_key`.
///
/// Every value is decrypted before anything is written: with a wrong old key
/// or a damaged value the call fails and the file is untouched. Values
/// already under `new_key` are left alone, so an interrupted rotation can
/// simply be run again. Plaintext values are left alone and reported in
/// [`Report::plaintext`]. Written like [`encrypt_file`]. For several files
/// use [`rotate_files`].
pub fn rotate_file(
    path: impl AsRef<Path>,
    secret_keys: &[&str],
    old_key: &SecretKey,
    new_key: &SecretKey,
) -> Result<Report> {
    prepare_rotate(path.as_ref(), secret_keys, old_key, new_key)?.commit()
}

/// [`rotate_file`] for several files as one step: every value of every file
/// is decrypted and every new content prepared before any file is written,
/// so a wrong old key or a damaged value anywhere leaves all files under the
/// old key. A failure while writing leaves the files before it under the new
/// key; running again (with both keys still at hand) finishes the rest.
pub fn rotate_files<P: AsRef<Path>>(
    paths: &[P],
    secret_keys: &[&str],
    old_key: &SecretKey,
    new_key: &SecretKey,
) -> Result<Vec<Report>> {
    commit_all(
        paths
            .iter()
            .map(|p| prepare_rotate(p.as_ref(), secret_keys, old_key, new_key)),
    )
}

fn prepare_encrypt(path: &Path, secret_keys: &[&str], key: &SecretKey) -> Result<Prepared> {
    let source = Source::read(path)?;
    let doc = parse(path, &source.bytes)?;
    let mut report = Report::new(path, &doc, secret_keys);
    let mut edits = Vec::new();
    for (idx, e) in doc.entries.iter().enumerate() {
        if !secret_keys.contains(&e.key.as_str()) {
            continue;
        }
        let occ = occurrence(e);
        match state(e) {
            ValueState::Empty => report.empty.push(occ),
            ValueState::Foreign => {
                return Err(Error::ForeignEncrypted {
                    property: e.key.clone(),
                    location: loc(path, e),
                });
            }
            ValueState::Encrypted => {
                decrypt_value(key, &e.key, &e.value).map_err(|err| err.at(loc(path, e)))?;
                report.unchanged.push(occ);
            }
            ValueState::Plaintext => {
                if e.value.contains(char::REPLACEMENT_CHARACTER) {
                    return Err(Error::Undecodable {
                        property: e.key.clone(),
                        location: loc(path, e),
                    });
                }
                let text = encrypt_value(key, &e.key, &e.value)?;
                edits.push(Edit { idx, text });
                report.changed.push(occ);
            }
        }
    }
    let new = edit(path, &source.bytes, &doc, &edits, |e, new_value| {
        decrypt_value(key, &e.key, new_value).is_ok_and(|s| s.expose_secret() == e.value.as_str())
    })?;
    Ok(Prepared {
        source,
        new,
        report,
    })
}

pub(crate) fn prepare_rotate(
    path: &Path,
    secret_keys: &[&str],
    old_key: &SecretKey,
    new_key: &SecretKey,
) -> Result<Prepared> {
    let source = Source::read(path)?;
    let doc = parse(path, &source.bytes)?;
    let mut report = Report::new(path, &doc, secret_keys);
    let mut edits = Vec::new();
    for (idx, e) in doc.entries.iter().enumerate() {
        if !secret_keys.contains(&e.key.as_str()) {
            continue;
        }
        let occ = occurrence(e);
        match state(e) {
            ValueState::Empty => report.empty.push(occ),
            ValueState::Plaintext => report.plaintext.push(occ),
            ValueState::Foreign => report.foreign.push(occ),
            ValueState::Encrypted => {
                let parsed = value::parse(&e.key, &e.value).map_err(|err| err.at(loc(path, e)))?;
                if parsed.key_id() == new_key.id_bytes()
                    && value::decrypt_parsed(new_key, &e.key, &parsed).is_ok()
                {
                    report.unchanged.push(occ);
                    continue;
                }
                let plain = value::decrypt_parsed(old_key, &e.key, &parsed)
                    .map_err(|err| err.at(loc(path, e)))?;
                let text = encrypt_value(new_key, &e.key, plain.expose_secret())?;
                edits.push(Edit { idx, text });
                report.changed.push(occ);
            }
        }
    }
    let new = edit(path, &source.bytes, &doc, &edits, |e, new_value| {
        let before = decrypt_value(old_key, &e.key, &e.value);
        let after = decrypt_value(new_key, &e.key, new_value);
        matches!((before, after), (Ok(b), Ok(a)) if b.expose_secret() == a.expose_secret())
    })?;
    Ok(Prepared {
        source,
        new,
        report,
    })
}

impl Report {
    fn new(path: &Path, doc: &Document, secret_keys: &[&str]) -> Self {
        Report {
            path: path.to_path_buf(),
            missing: secret_keys
                .iter()
                .filter(|k| !doc.entries.iter().any(|e| e.key == **k))
                .map(|k| (*k).to_owned())
                .collect(),
            ..Report::default()
        }
    }
}

/// A file read and its checked new content, not written yet.
pub(crate) struct Prepared {
    source: Source,
    /// `None` when nothing changes.
    new: Option<Vec<u8>>,
    report: Report,
}

impl Prepared {
    pub(crate) fn commit(mut self) -> Result<Report> {
        if let Some(new) = &self.new {
            self.report.warnings = self.source.replace(new)?;
            self.report.written = true;
        }
        Ok(self.report)
    }
}

fn commit_all(prepared: impl Iterator<Item = Result<Prepared>>) -> Result<Vec<Report>> {
    dedup(prepared)?.into_iter().map(Prepared::commit).collect()
}

/// Every file prepared, each file (symlinks resolved) once; the first error stops.
pub(crate) fn dedup(prepared: impl Iterator<Item = Result<Prepared>>) -> Result<Vec<Prepared>> {
    let mut all: Vec<Prepared> = Vec::new();
    for p in prepared {
        let p = p?;
        if !all.iter().any(|q| q.source.target == p.source.target) {
            all.push(p);
        }
    }
    Ok(all)
}

impl Prepared {
    /// The file itself, symlinks resolved.
    pub(crate) fn target(&self) -> &Path {
        &self.source.target
    }
}

/// The prefix and suffix of the temporary files [`encrypt_file`] and
/// [`rotate_file`] write through (`.mailgate-XXXXXX.tmp`).
const TEMP_PREFIX: &str = ".mailgate-";
const TEMP_SUFFIX: &str = ".tmp";

/// Removes, from `dir`, the temporary files a killed run of this crate left:
/// `.mailgate-XXXXXX.tmp` (a properties file being replaced: it may hold
/// plaintext secrets) and `.mailgate-key-XXXXXX` (a key file being written:
/// raw key material), `XXXXXX` being six letters or digits. Only regular
/// files of exactly that pattern, last modified before `before`, are removed.
/// A file another run is writing right now would qualify if it started
/// before `before`: the caller makes sure no other run works in `dir` (the
/// `mailgate encrypt` command locks the folder). Returns what was removed.
pub fn remove_stale_temp_files(dir: &Path, before: std::time::SystemTime) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(Error::io("list", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if !is_temp_name(name) {
            continue;
        }
        // Not followed: a symlink of that name is not ours.
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if !meta.file_type().is_file() || meta.modified().map_or(true, |m| m >= before) {
            continue;
        }
        let path = entry.path();
        match fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &path, e)),
        }
    }
    if !removed.is_empty() {
        sync_dir(dir).map_err(|e| Error::io("sync folder", dir, e))?;
    }
    Ok(removed)
}

/// `.mailgate-XXXXXX.tmp` or `.mailgate-key-XXXXXX`.
fn is_temp_name(name: &str) -> bool {
    let random = |s: &str| s.len() == 6 && s.bytes().all(|b| b.is_ascii_alphanumeric());
    if let Some(rest) = name.strip_prefix(crate::key::KEY_TEMP_PREFIX) {
        return random(rest);
    }
    name.strip_prefix(TEMP_PREFIX)
        .and_then(|rest| rest.strip_suffix(TEMP_SUFFIX))
        .is_some_and(random)
}

/// A file read for editing: symlinks resolved once, its bytes (zeroed when
/// dropped: they hold plaintext secrets), and what it looked like.
struct Source {
    /// The path as given, for messages.
    path: PathBuf,
    /// The file itself, symlinks resolved.
    target: PathBuf,
    bytes: Zeroizing<Vec<u8>>,
    meta: fs::Metadata,
}

impl Source {
    fn read(path: &Path) -> Result<Self> {
        let target = fs::canonicalize(path).map_err(|e| Error::io("read", path, e))?;
        // Opened without blocking: a FIFO or a device is refused unread.
        let (file, meta) = mailgate_properties::fs::open_regular(&target)
            .map_err(|e| Error::io("read", path, e.into()))?;
        // Room for the whole file, so the buffer is not reallocated (which
        // would leave a copy of the plaintext behind).
        let bytes = Zeroizing::new(
            mailgate_properties::fs::read_open(file, &meta, mailgate_properties::MAX_FILE_BYTES)
                .map_err(|e| Error::io("read", path, e.into()))?,
        );
        if bytes.len() as u64 != meta.len() {
            return Err(Error::Changed {
                path: path.to_path_buf(),
            });
        }
        Ok(Source {
            path: path.to_path_buf(),
            target,
            bytes,
            meta,
        })
    }

    /// Fails with [`Error::Changed`] unless the file is still the one read.
    fn check_unchanged(&self) -> Result<()> {
        let changed = || Error::Changed {
            path: self.path.clone(),
        };
        let now = fs::symlink_metadata(&self.target).map_err(|_| changed())?;
        if mailgate_properties::fs::same_state(&self.meta, &now) {
            Ok(())
        } else {
            Err(changed())
        }
    }

    /// Replaces the file by `bytes` atomically, keeping its permissions
    /// and, where allowed, its owner and group. Returns warnings.
    fn replace(&self, bytes: &[u8]) -> Result<Vec<String>> {
        let target = &self.target;
        let dir = parent_dir(target);
        let mut tmp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .suffix(TEMP_SUFFIX)
            .tempfile_in(dir)
            .map_err(|e| Error::io("create a temporary file in", dir, e))?;
        let werr = |e: io::Error| Error::io("write", target, e);
        let mut warnings = keep_owner(tmp.as_file(), &self.meta, &self.path);
        tmp.as_file()
            .set_permissions(self.meta.permissions())
            .map_err(werr)?;
        tmp.write_all(bytes).map_err(werr)?;
        tmp.as_file().sync_all().map_err(werr)?;
        self.check_unchanged()?;
        tmp.persist(target)
            .map_err(|e| Error::io("replace", target, e.error))?;
        sync_dir(dir).map_err(|e| Error::io("sync folder", dir, e))?;
        let links = hard_links(&self.meta);
        if links > 1 {
            warnings.push(format!(
                "{} had {links} hard links: only this name was replaced, the other {} still \
                 hold the old content (with the plaintext); remove them",
                self.path.display(),
                links - 1
            ));
        }
        Ok(warnings)
    }
}

#[cfg(unix)]
fn hard_links(meta: &fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::nlink(meta)
}

#[cfg(not(unix))]
fn hard_links(_meta: &fs::Metadata) -> u64 {
    1
}

/// Gives the temporary file the original's owner and group where allowed.
/// Returns a warning for what could not be kept.
#[cfg(unix)]
fn keep_owner(tmp: &fs::File, meta: &fs::Metadata, path: &Path) -> Vec<String> {
    use std::os::unix::fs::{MetadataExt, fchown};
    let Ok(now) = tmp.metadata() else {
        return vec![format!(
            "{}: could not check that its owner and group were kept",
            path.display()
        )];
    };
    chown_as_allowed(
        (now.uid(), now.gid()),
        (meta.uid(), meta.gid()),
        |uid, gid| fchown(tmp, uid, gid),
        path,
    )
}

/// Moves a file owned by `now` to `want` with `chown`: both at once (root),
/// else the group alone (a user may give their file any group they are in:
/// `fchown` changes both or neither, so a refused owner must not cost the
/// group). Returns a warning for each of owner and group that stays changed.
#[cfg(unix)]
fn chown_as_allowed(
    now: (u32, u32),
    want: (u32, u32),
    mut chown: impl FnMut(Option<u32>, Option<u32>) -> io::Result<()>,
    path: &Path,
) -> Vec<String> {
    let ((now_uid, now_gid), (uid, gid)) = (now, want);
    if now == want || chown(Some(uid), Some(gid)).is_ok() {
        return Vec::new();
    }
    let group_kept = now_gid == gid || chown(None, Some(gid)).is_ok();
    let mut warnings = Vec::new();
    if now_uid != uid {
        warnings.push(format!(
            "{}: its owner is now uid {now_uid} instead of uid {uid} (only root can keep \
             another user's file theirs); run `chown {uid} {}` as root if it matters",
            path.display(),
            path.display()
        ));
    }
    if !group_kept {
        warnings.push(format!(
            "{}: its group is now gid {now_gid} instead of gid {gid} (you are not in that \
             group); run `chgrp {gid} {}` as root if it matters",
            path.display(),
            path.display()
        ));
    }
    warnings
}

#[cfg(not(unix))]
fn keep_owner(_tmp: &fs::File, _meta: &fs::Metadata, _path: &Path) -> Vec<String> {
    Vec::new()
}

/// Replace the value span of entry `idx` with `text`.
struct Edit {
    idx: usize,
    text: String,
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Document> {
    mailgate_properties::parse(bytes).map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        line: e.line,
        reason: e.reason,
    })
}

fn state(e: &Entry) -> ValueState {
    if e.value.is_empty() {
        ValueState::Empty
    } else if value::looks_foreign_encrypted(&e.value) {
        ValueState::Foreign
    } else if is_encrypted(&e.value) {
        ValueState::Encrypted
    } else {
        ValueState::Plaintext
    }
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

/// The file with the edits applied and checked, or `None` without edits.
fn edit(
    path: &Path,
    bytes: &[u8],
    doc: &Document,
    edits: &[Edit],
    check: impl Fn(&Entry, &str) -> bool,
) -> Result<Option<Vec<u8>>> {
    if edits.is_empty() {
        return Ok(None);
    }
    let mut new = Vec::with_capacity(bytes.len() + edits.len() * 128);
    let mut pos = 0;
    for ed in edits {
        let span = &doc.entries[ed.idx].value_span;
        new.extend_from_slice(&bytes[pos..span.start]);
        new.extend_from_slice(ed.text.as_bytes());
        pos = span.end;
    }
    new.extend_from_slice(&bytes[pos..]);
    verify(path, doc, &new, edits, check)?;
    Ok(Some(new))
}

/// Checks an edit before it is written: the new bytes read back as the same
/// keys with the same values, except that each edited value passes
/// `check(old_entry, new_value)`. Any surprise is an error, and nothing is
/// written.
fn verify(
    path: &Path,
    old: &Document,
    new: &[u8],
    edits: &[Edit],
    check: impl Fn(&Entry, &str) -> bool,
) -> Result<()> {
    let fail = |line, reason| Error::Parse {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let first_line = old.entries[edits[0].idx].line;
    let Ok(new) = mailgate_properties::parse(new) else {
        return Err(fail(
            first_line,
            "the edited file does not read back; not written",
        ));
    };
    if new.entries.len() != old.entries.len() {
        return Err(fail(
            first_line,
            "the edited file does not read back the same; not written",
        ));
    }
    let mut edits = edits.iter().peekable();
    for (idx, (b, a)) in old.entries.iter().zip(&new.entries).enumerate() {
        let ok = if edits.next_if(|ed| ed.idx == idx).is_some() {
            a.key == b.key && check(b, &a.value)
        } else {
            a.key == b.key && a.value.as_str() == b.value.as_str()
        };
        if !ok {
            let reason = if old.encoding != new.encoding {
                "the file mixes UTF-8 and Latin-1 bytes, and encrypting would change how \
                 this line is decoded; convert the file to one encoding first (not written)"
            } else {
                "the edited file does not read back the same; not written"
            };
            return Err(fail(b.line, reason));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &[u8]) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn temp_names_are_exactly_ours() {
        for ours in [".mailgate-a1B2c3.tmp", ".mailgate-key-Zz9yX0"] {
            assert!(is_temp_name(ours), "{ours}");
        }
        for other in [
            ".mailgate-a1B2c3.tmpx",
            ".mailgate-a1B2c.tmp",
            ".mailgate-key-a1B2c3d",
            ".mailgate-key-a1-2c3",
            "mailgate-a1B2c3.tmp",
            "mailgate.key",
            "mailgate.key.pending",
            ".mailgate-outbox.db",
        ] {
            assert!(!is_temp_name(other), "{other}");
        }
    }

    #[test]
    fn a_file_written_meanwhile_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "a.properties", b"k=one\n");
        let source = Source::read(&path).unwrap();
        // Another program saves the file (same size, so only the times tell).
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&path, b"k=two\n").unwrap();
        let e = source.replace(b"k=ENC(x)\n").unwrap_err();
        assert!(matches!(e, Error::Changed { .. }), "{e}");
        assert!(e.to_string().contains("run the command again"), "{e}");
        assert_eq!(fs::read(&path).unwrap(), b"k=two\n");
        // No temporary file left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_file_replaced_meanwhile_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "a.properties", b"k=one\n");
        let source = Source::read(&path).unwrap();
        let other = write(dir.path(), "b.properties", b"k=one\n");
        fs::rename(&other, &path).unwrap();
        let e = source.replace(b"k=ENC(x)\n").unwrap_err();
        assert!(matches!(e, Error::Changed { .. }), "{e}");
        fs::remove_file(&path).unwrap();
        let e = source.replace(b"k=ENC(x)\n").unwrap_err();
        assert!(matches!(e, Error::Changed { .. }), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_is_resolved_once_before_reading() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let first = write(dir.path(), "first.properties", b"k=one\n");
        let second = write(dir.path(), "second.properties", b"k=two\n");
        let link = dir.path().join("link.properties");
        symlink(&first, &link).unwrap();
        let source = Source::read(&link).unwrap();
        // The link is pointed elsewhere: the file that was read is the one
        // replaced, and the other is left alone.
        fs::remove_file(&link).unwrap();
        symlink(&second, &link).unwrap();
        source.replace(b"k=ENC(x)\n").unwrap();
        assert_eq!(fs::read(&first).unwrap(), b"k=ENC(x)\n");
        assert_eq!(fs::read(&second).unwrap(), b"k=two\n");
    }

    #[cfg(unix)]
    #[test]
    fn owner_refused_keeps_the_group() {
        let p = Path::new("is.properties");
        // A user: changing the owner is refused, the group alone is allowed.
        let mut calls = Vec::new();
        let w = chown_as_allowed(
            (1000, 1000),
            (1000, 50),
            |uid, gid| {
                calls.push((uid, gid));
                if uid.is_some() {
                    Err(io::Error::from(io::ErrorKind::PermissionDenied))
                } else {
                    Ok(())
                }
            },
            p,
        );
        assert_eq!(calls, [(Some(1000), Some(50)), (None, Some(50))]);
        assert!(w.is_empty(), "{w:?}");
        // Another user's file: the owner cannot be kept, the group can.
        let w = chown_as_allowed(
            (1000, 1000),
            (0, 50),
            |uid, _| match uid {
                Some(_) => Err(io::Error::from(io::ErrorKind::PermissionDenied)),
                None => Ok(()),
            },
            p,
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("owner is now uid 1000 instead of uid 0"),
            "{w:?}"
        );
        // Neither.
        let w = chown_as_allowed(
            (1000, 1000),
            (0, 0),
            |_, _| Err(io::Error::from(io::ErrorKind::PermissionDenied)),
            p,
        );
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[1].contains("group is now gid 1000 instead of gid 0"),
            "{w:?}"
        );
        // Nothing to do: no call.
        let w = chown_as_allowed((5, 6), (5, 6), |_, _| unreachable!(), p);
        assert!(w.is_empty());
    }
}
