//! Reading Java `.properties` files and layering them with environment overrides.
//!
//! Parsing is `mailgate-properties`', the one reader mailgate has (the
//! `encrypt` command edits files with it too): Java's `Properties.load` rules,
//! the file read as ISO-8859-1 as Java's `load(InputStream)` does, or as UTF-8
//! when it is valid UTF-8 (a UTF-8 byte order mark skipped), with line
//! numbers. This module adds an ordered merge where later sources win. Keys
//! are flat strings: dots are part of the name.

use std::collections::BTreeMap;
use std::fmt;

use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

use crate::error::{ConfigError, Origin};

/// The largest properties file read.
pub use mailgate_properties::MAX_FILE_BYTES;
/// Reading local files without blocking on a FIFO or a device, and bounded.
pub use mailgate_properties::fs;

/// One property with its origin.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    /// The decoded value, zeroed when dropped (it may be a secret until
    /// [`Settings`](crate::Settings) moves secrets into their own store).
    pub value: Zeroizing<String>,
    /// Where it was set.
    pub origin: Origin,
}

/// Keys merged from every source; the last source to set a key wins.
#[derive(Clone, Default)]
pub struct Properties {
    entries: BTreeMap<String, Entry>,
}

impl Properties {
    /// Reads one file. Fails on unreadable files, on anything but a regular
    /// file (a FIFO or a device is refused without blocking or reading), on
    /// files over [`mailgate_properties::MAX_FILE_BYTES`] and on syntax errors.
    pub fn read_file(path: &Path) -> Result<Self, ConfigError> {
        let bytes =
            mailgate_properties::fs::read_regular(path, mailgate_properties::MAX_FILE_BYTES)
                .map_err(|e| ConfigError::Unreadable {
                    path: path.to_owned(),
                    source: e.into(),
                })?;
        // The file may hold secrets: zeroed when dropped.
        let bytes = zeroize::Zeroizing::new(bytes);
        Self::parse(&bytes, path)
    }

    /// Parses file content; `path` is used for origins and errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self, ConfigError> {
        let doc = mailgate_properties::parse(bytes).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            line: Some(e.line),
            message: e.reason.to_owned(),
        })?;
        let mut props = Properties::default();
        for entry in doc.entries {
            // Moved, not copied: the parser's buffer stays the only one.
            props.entries.insert(
                entry.key,
                Entry {
                    value: entry.value,
                    origin: Origin::File {
                        path: path.to_owned(),
                        line: entry.line,
                    },
                },
            );
        }
        Ok(props)
    }

    /// Reads the environment overrides for `keys`: key `a.bC.d` is variable `A_BC_D`.
    pub fn from_env<'k>(keys: impl IntoIterator<Item = &'k str>) -> Self {
        let mut props = Properties::default();
        for key in keys {
            let var = env_var_name(key);
            if let Ok(value) = std::env::var(&var) {
                props.set(key.to_owned(), value, Origin::Env { var });
            }
        }
        props
    }

    /// Sets one key.
    pub fn set(&mut self, key: String, value: String, origin: Origin) {
        self.entries.insert(
            key,
            Entry {
                value: Zeroizing::new(value),
                origin,
            },
        );
    }

    /// Takes `key` out.
    pub fn remove(&mut self, key: &str) -> Option<Entry> {
        self.entries.remove(key)
    }

    /// Keeps only the keys `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.entries.retain(|key, _| keep(key));
    }

    /// Layers `other` over `self`: its keys win.
    pub fn merge(&mut self, other: Properties) {
        self.entries.extend(other.entries);
    }

    /// The entry for `key`.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// All keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The environment variable that overrides `key`: upper case, dots to underscores.
pub fn env_var_name(key: &str) -> String {
    key.replace('.', "_").to_ascii_uppercase()
}

/// Whether a key holds a secret whose value must never be shown.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "secret", "token"]
        .iter()
        .any(|w| k.contains(w) && !k.ends_with("url"))
}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys and origins only: which values are secret (a strategy's
        // declared key, a URL with a password) is known to `Settings`, not
        // here; `Settings::shown` is the value as it may be shown.
        f.debug_map()
            .entries(self.entries.iter().map(|(key, entry)| (key, &entry.origin)))
            .finish()
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // An entry does not know its key, so it never shows its value.
        f.debug_struct("Entry")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// The files a settings load reads.
#[derive(Clone, Debug, Default)]
pub struct ConfigFiles {
    /// The config folder, for relative paths (CA files, key file).
    pub dir: Option<PathBuf>,
    /// `is.properties`.
    pub is: Option<PathBuf>,
    /// `security.properties`.
    pub security: Option<PathBuf>,
    /// A missing `security` file is skipped (true for the folder's default
    /// file: open and basic modes do not need it; false for a named file).
    pub security_optional: bool,
}

impl ConfigFiles {
    /// `is.properties` and (optional) `security.properties` in `dir`.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        Self {
            is: Some(dir.join("is.properties")),
            security: Some(dir.join("security.properties")),
            dir: Some(dir),
            security_optional: true,
        }
    }

    /// Names the `security.properties` file explicitly: then it must exist.
    pub fn with_security(mut self, path: impl Into<PathBuf>) -> Self {
        self.security = Some(path.into());
        self.security_optional = false;
        self
    }

    /// The files, in read order.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.is
            .iter()
            .chain(self.security.iter())
            .map(PathBuf::as_path)
    }

    /// Reads the files, `security` over `is`; returns the merged keys and the
    /// files that were read.
    pub fn read(&self) -> Result<(Properties, Vec<PathBuf>), ConfigError> {
        let mut props = Properties::default();
        let mut read = Vec::new();
        for path in self.paths() {
            let optional = self.security_optional && Some(path) == self.security.as_deref();
            match Properties::read_file(path) {
                Ok(p) => {
                    props.merge(p);
                    read.push(path.to_owned());
                }
                Err(ConfigError::Unreadable { source, .. })
                    if optional && source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok((props, read))
    }

    /// The folder relative paths are resolved against: the config folder, else
    /// the folder of `is.properties`.
    pub fn base_dir(&self) -> PathBuf {
        self.dir
            .clone()
            .or_else(|| {
                self.is
                    .as_ref()
                    .and_then(|p| p.parent().map(Path::to_owned))
            })
            .unwrap_or_else(|| PathBuf::from("."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &[u8]) -> Properties {
        Properties::parse(text, Path::new("is.properties")).unwrap()
    }

    fn value<'a>(p: &'a Properties, key: &str) -> &'a str {
        &p.get(key).unwrap_or_else(|| panic!("{key} missing")).value
    }

    #[test]
    fn separators_comments_and_whitespace() {
        let p = parse(
            b"# comment\n! also comment\na=1\nb:2\nc 3\n  d  =  4\ne\t5\nf=\n\ng = with spaces  \n",
        );
        assert_eq!(value(&p, "a"), "1");
        assert_eq!(value(&p, "b"), "2");
        assert_eq!(value(&p, "c"), "3");
        assert_eq!(value(&p, "d"), "4");
        assert_eq!(value(&p, "e"), "5");
        assert_eq!(value(&p, "f"), "");
        assert_eq!(value(&p, "g"), "with spaces  ");
        assert_eq!(p.len(), 7);
    }

    #[test]
    fn escapes_and_continuations() {
        let p = parse(
            b"key\\ with\\=odd\\:chars = v\\=1\\:2\nuni=caf\\u00e9\nlong = first \\\n    second\\\n  third\ntab=a\\tb\ntrail=x\\ \n",
        );
        assert_eq!(value(&p, "key with=odd:chars"), "v=1:2");
        assert_eq!(value(&p, "uni"), "caf\u{e9}");
        assert_eq!(value(&p, "long"), "first secondthird");
        assert_eq!(value(&p, "tab"), "a\tb");
        assert_eq!(value(&p, "trail"), "x ");
    }

    #[test]
    fn line_numbers_point_at_the_key() {
        let p = parse(b"# c\n\nx = a \\\n  b\ny=2\n");
        assert_eq!(
            p.get("y").unwrap().origin,
            Origin::File {
                path: "is.properties".into(),
                line: 5
            }
        );
        assert_eq!(
            p.get("x").unwrap().origin,
            Origin::File {
                path: "is.properties".into(),
                line: 3
            }
        );
    }

    #[test]
    fn latin1_and_utf8_files_both_read() {
        let latin1 = parse(b"from=Ren\xe9 <rene@example.com>\n");
        assert_eq!(value(&latin1, "from"), "Ren\u{e9} <rene@example.com>");
        let utf8 = parse("from=Ren\u{e9} <rene@example.com>\n".as_bytes());
        assert_eq!(value(&utf8, "from"), "Ren\u{e9} <rene@example.com>");
        let bom = parse(b"\xEF\xBB\xBFa=1\n");
        assert_eq!(value(&bom, "a"), "1");
    }

    #[test]
    fn bom_with_a_latin1_byte_reads_latin1() {
        // The BOM is skipped; the rest is not UTF-8, so it is ISO-8859-1
        // (the bytes `encrypt` sees too), not U+FFFD.
        let p = parse(b"\xEF\xBB\xBFpw=caf\xe9\n");
        assert_eq!(value(&p, "pw"), "caf\u{e9}");
    }

    #[test]
    fn latin1_is_iso_8859_1_as_in_java() {
        // Java's Properties.load(InputStream): 0x80 is U+0080, not the euro
        // sign of windows-1252.
        let p = parse(b"k=\x80\x9f\xe9\n");
        assert_eq!(value(&p, "k"), "\u{80}\u{9f}\u{e9}");
    }

    #[test]
    fn continuation_backslash_at_end_of_file_keeps_the_key() {
        let p = parse(b"a=1\nk=abc\\");
        assert_eq!(value(&p, "k"), "abc");
        assert_eq!(
            p.get("k").unwrap().origin,
            Origin::File {
                path: "is.properties".into(),
                line: 2
            }
        );
    }

    #[test]
    fn malformed_escape_names_file_and_line() {
        let e = Properties::parse(b"a=1\nb=x\\uZZZZ\n", Path::new("is.properties")).unwrap_err();
        match e {
            ConfigError::Syntax { path, line, .. } => {
                assert_eq!((path, line), (PathBuf::from("is.properties"), Some(2)));
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn crlf_line_endings() {
        let p = parse(b"a=1\r\nb=2 \\\r\n  3\r\n");
        assert_eq!(value(&p, "a"), "1");
        assert_eq!(value(&p, "b"), "2 3");
    }

    #[test]
    fn later_sources_win() {
        let mut a = parse(b"k=1\nonly=a\n");
        let b = Properties::parse(b"k=2\n", Path::new("security.properties")).unwrap();
        a.merge(b);
        assert_eq!(value(&a, "k"), "2");
        assert_eq!(value(&a, "only"), "a");
    }

    #[test]
    fn env_names() {
        assert_eq!(
            env_var_name("mksis.security.smtp.oauth.clientSecret"),
            "MKSIS_SECURITY_SMTP_OAUTH_CLIENTSECRET"
        );
        assert_eq!(
            env_var_name("mailgate.smtp.ssl.caFile"),
            "MAILGATE_SMTP_SSL_CAFILE"
        );
    }

    #[test]
    fn debug_redacts_secrets() {
        let p = parse(b"mksis.logging.emailfrom.password=hunter2\nmksis.security.smtp.oauth.clientSecret=s3cr3t\nhost=h\nx.vault.credential=c-r-e-d\nmailgate.outbox.url=postgres://mg:pw-9@db/m\n");
        let dbg = format!("{p:?}");
        for secret in ["hunter2", "s3cr3t", "c-r-e-d", "pw-9"] {
            assert!(!dbg.contains(secret), "{dbg}");
        }
        assert!(dbg.contains("host"));
        let entry = format!("{:?}", p.get("mksis.logging.emailfrom.password").unwrap());
        assert!(!entry.contains("hunter2"));
    }

    #[test]
    fn url_keys_are_not_secret() {
        assert!(!is_secret_key("mksis.security.smtp.oauth.tokenEndpointURL"));
        assert!(is_secret_key("mksis.security.smtp.oauth.clientSecret"));
        assert!(is_secret_key("mksis.logging.emailfrom.password"));
    }
}
