//! A temporary mailgate config folder with Java `.properties` files.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// File name of the main server properties file.
pub const IS_PROPERTIES: &str = "is.properties";
/// File name of the security properties file.
pub const SECURITY_PROPERTIES: &str = "security.properties";

/// A temporary folder laid out like an RV&S config folder: `is.properties`
/// and `security.properties` (plus whatever else a test writes, such as a CA
/// file). Deleted on drop.
///
/// ```
/// use mailgate_integration_tests::ConfigDir;
///
/// let dir = ConfigDir::with_properties(
///     &[("mksis.logging.email.server.hostname", "localhost")],
///     &[("mksis.security.smtp.oauth.clientID", "abc")],
/// );
/// assert!(dir.read_file("is.properties").contains("hostname=localhost"));
/// ```
pub struct ConfigDir {
    dir: TempDir,
}

impl ConfigDir {
    /// An empty folder: no properties file yet.
    pub fn new() -> ConfigDir {
        ConfigDir {
            dir: tempfile::Builder::new()
                .prefix("mailgate-config-")
                .tempdir()
                .expect("creating the config temp dir"),
        }
    }

    /// The folder most tests start from: SMTP basic AUTH as `user` with
    /// `password` over STARTTLS to `localhost:port`, trusting the CA in
    /// `ca_pem` (written as `ca.pem` beside the files), then `extra` (a key
    /// given again there wins, as in any properties file); an empty
    /// `security.properties`.
    pub fn basic_over_starttls(
        port: u16,
        user: &str,
        password: &str,
        ca_pem: impl AsRef<[u8]>,
        extra: &[(&str, &str)],
    ) -> ConfigDir {
        let dir = ConfigDir::new();
        dir.write_file("ca.pem", ca_pem);
        let port = port.to_string();
        let mut is = vec![
            ("mksis.smtp.oauth.authentication", "false"),
            ("mksis.smtp.authentication", "true"),
            ("mksis.smtp.ssl.enabled", "true"),
            ("mksis.logging.email.from", user),
            ("mksis.logging.emailfrom.password", password),
            ("mksis.logging.email.server.hostname", "localhost"),
            ("mksis.logging.email.server.port", port.as_str()),
            ("mailgate.smtp.ssl.caFile", "ca.pem"),
        ];
        is.extend_from_slice(extra);
        dir.write_is(&is);
        dir.write_security(&[]);
        dir
    }

    /// A folder with both files written from the given key/value lists (an
    /// empty list still writes the file).
    pub fn with_properties(is: &[(&str, &str)], security: &[(&str, &str)]) -> ConfigDir {
        let dir = ConfigDir::new();
        dir.write_is(is);
        dir.write_security(security);
        dir
    }

    /// The folder (what `--config-dir` / `MAILGATE_CONFIG_DIR` take).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Path of `is.properties` (whether or not it exists).
    pub fn is_path(&self) -> PathBuf {
        self.dir.path().join(IS_PROPERTIES)
    }

    /// Path of `security.properties` (whether or not it exists).
    pub fn security_path(&self) -> PathBuf {
        self.dir.path().join(SECURITY_PROPERTIES)
    }

    /// (Over)writes `is.properties` from key/value pairs, escaped as Java's
    /// `Properties.store` does. Returns its path.
    pub fn write_is(&self, entries: &[(&str, &str)]) -> PathBuf {
        self.write_file(IS_PROPERTIES, properties_text(entries))
    }

    /// (Over)writes `security.properties` from key/value pairs. Returns its path.
    pub fn write_security(&self, entries: &[(&str, &str)]) -> PathBuf {
        self.write_file(SECURITY_PROPERTIES, properties_text(entries))
    }

    /// Writes any file (raw bytes, e.g. hand-written properties with
    /// comments and continuations, or a CA PEM) relative to the folder,
    /// creating sub-folders. Returns its path.
    pub fn write_file(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
        }
        fs::write(&path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }

    /// Reads a file of the folder as UTF-8 (panics if missing).
    pub fn read_file(&self, name: &str) -> String {
        let path = self.dir.path().join(name);
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }

    /// Deletes a file of the folder if it exists.
    pub fn remove_file(&self, name: &str) {
        let path = self.dir.path().join(name);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("removing {}: {e}", path.display()),
        }
    }
}

impl Default for ConfigDir {
    fn default() -> Self {
        ConfigDir::new()
    }
}

impl std::fmt::Debug for ConfigDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigDir")
            .field("path", &self.dir.path())
            .finish()
    }
}

/// The text of a `.properties` file holding `entries`, one `key=value` line
/// each, escaped like Java's `Properties.store`: `\`, `=`, `:`, `#`, `!` and
/// control characters are backslash-escaped (spaces too in keys, and a
/// value's leading spaces), and anything outside printable ASCII is written
/// as `\uXXXX`, so the file is pure ASCII and reads the same whatever
/// encoding the reader assumes.
pub fn properties_text(entries: &[(&str, &str)]) -> String {
    let mut out = String::from("# written by mailgate-integration-tests\n");
    for (key, value) in entries {
        escape(&mut out, key, true);
        out.push('=');
        escape(&mut out, value, false);
        out.push('\n');
    }
    out
}

fn escape(out: &mut String, text: &str, is_key: bool) {
    let mut leading = true;
    for c in text.chars() {
        if c != ' ' {
            leading = false;
        }
        match c {
            '\\' => out.push_str("\\\\"),
            ' ' if is_key || leading => out.push_str("\\ "),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{0c}' => out.push_str("\\f"),
            '=' | ':' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04X}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_java() {
        let text = properties_text(&[("a key", "x=y:z"), ("pw", "  lead é\\#!"), ("emoji", "😀")]);
        assert_eq!(
            text,
            "# written by mailgate-integration-tests\n\
             a\\ key=x\\=y\\:z\n\
             pw=\\ \\ lead \\u00E9\\\\\\#\\!\n\
             emoji=\\uD83D\\uDE00\n"
        );
    }

    #[test]
    fn writes_both_files() {
        let dir = ConfigDir::with_properties(&[("k", "v")], &[]);
        assert!(dir.read_file(IS_PROPERTIES).ends_with("k=v\n"));
        assert!(dir.security_path().exists());
        dir.remove_file(SECURITY_PROPERTIES);
        dir.remove_file(SECURITY_PROPERTIES);
        assert!(!dir.security_path().exists());
    }
}
