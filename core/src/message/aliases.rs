//! Aliases files in msmtp's format, for `sendmail`'s local names:
//! `name: address, address` lines, `#` comments, blank lines, and
//! `default` for any local name not listed. Read whole (at most 1 MiB)
//! and checked line by line; names compare without case.

use std::path::{Path, PathBuf};

/// Largest aliases file read: a hostile or mistaken path (a log file, a
/// device) must not be read whole.
pub const MAX_ALIASES_BYTES: u64 = 1024 * 1024;

/// Why an aliases file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AliasesError {
    /// It could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A folder, a FIFO, a device.
    #[error("{} is not a regular file", path.display())]
    NotAFile {
        /// The file.
        path: PathBuf,
    },
    /// Larger than [`MAX_ALIASES_BYTES`].
    #[error("{} is larger than {MAX_ALIASES_BYTES} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// Not UTF-8 text.
    #[error("{} is not UTF-8 text", path.display())]
    NotText {
        /// The file.
        path: PathBuf,
    },
    /// A line that is not `name: address, ...`.
    #[error("{}line {line}: {reason}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Line {
        /// The file, when read from one.
        path: Option<PathBuf>,
        /// Its number, from 1.
        line: usize,
        /// What is wrong, with the line shown escaped.
        reason: String,
    },
}

/// The name when `address` is a bare local name (`root`, `<root>`): no `@`,
/// no display name, no spaces, at most 64 octets.
pub fn bare_name(address: &str) -> Option<&str> {
    let a = address.trim();
    // A local part is at most 64 octets; anything longer is not a name
    // (and a hostile 8 MB "address" is not scanned).
    if a.len() > 66 {
        return None;
    }
    let a = a
        .strip_prefix('<')
        .and_then(|a| a.strip_suffix('>'))
        .unwrap_or(a);
    let plain = !a.is_empty()
        && !a.contains(['@', '<', '>', '"', ',', ':', ';'])
        && !a.chars().any(|c| c.is_whitespace() || c.is_control());
    plain.then_some(a)
}

/// An aliases file as msmtp reads it: `name: address, address` lines, `#`
/// comments, blank lines; `default` for any local name not listed. Names
/// are compared without case.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Aliases {
    entries: Vec<(String, Vec<String>)>,
}

impl Aliases {
    /// Reads and parses `path`; the error says what is wrong and where.
    pub fn load(path: &Path) -> Result<Aliases, AliasesError> {
        // Looked at before it is opened: opening a FIFO would block.
        let read = |source| AliasesError::Read {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read)?;
        if !meta.is_file() {
            return Err(AliasesError::NotAFile {
                path: path.to_owned(),
            });
        }
        let file = std::fs::File::open(path).map_err(read)?;
        let mut text = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(file, MAX_ALIASES_BYTES + 1),
            &mut text,
        )
        .map_err(read)?;
        if text.len() as u64 > MAX_ALIASES_BYTES {
            return Err(AliasesError::TooLarge {
                path: path.to_owned(),
            });
        }
        let text = String::from_utf8(text).map_err(|_| AliasesError::NotText {
            path: path.to_owned(),
        })?;
        Aliases::parse(&text).map_err(|e| match e {
            AliasesError::Line { line, reason, .. } => AliasesError::Line {
                path: Some(path.to_owned()),
                line,
                reason,
            },
            other => other,
        })
    }

    /// Parses the text of an aliases file.
    pub fn parse(text: &str) -> Result<Aliases, AliasesError> {
        let mut entries: Vec<(String, Vec<String>)> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let shown = || crate::smtp::escape_controls(line, 80);
            let (name, targets) = line.split_once(':').ok_or_else(|| {
                line_error(n, format!("`{}` is not `name: address, ...`", shown()))
            })?;
            let name = name.trim();
            if bare_name(name) != Some(name) {
                return Err(line_error(
                    n,
                    format!("`{}` is not a local name (no @, no spaces)", shown()),
                ));
            }
            let targets: Vec<String> = targets
                .split(',')
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect();
            if targets.is_empty() {
                return Err(line_error(n, format!("`{name}` has no address")));
            }
            if let Some(t) = targets.iter().find(|t| t.chars().any(char::is_control)) {
                return Err(line_error(
                    n,
                    format!(
                        "`{}` holds a control character",
                        crate::smtp::escape_controls(t, 80)
                    ),
                ));
            }
            if entries.iter().any(|(e, _)| e.eq_ignore_ascii_case(name)) {
                return Err(line_error(n, format!("`{name}` is listed twice")));
            }
            entries.push((name.to_owned(), targets));
        }
        Ok(Aliases { entries })
    }

    /// The addresses for local name `name` (its own entry, else `default`);
    /// `None` for a full address or a name with neither.
    pub fn lookup(&self, name: Option<&str>) -> Option<&[String]> {
        let name = name?;
        let find = |n: &str| {
            self.entries
                .iter()
                .find(|(e, _)| e.eq_ignore_ascii_case(n))
                .map(|(_, t)| t.as_slice())
        };
        find(name).or_else(|| find("default"))
    }
}

fn line_error(index: usize, reason: String) -> AliasesError {
    AliasesError::Line {
        path: None,
        line: index + 1,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_aliases_file_is_refused_with_its_line() {
        for (text, what) in [
            ("root ops@example.com", "line 1"),
            ("\nfirst last: a@example.com", "line 2"),
            ("root:", "no address"),
            ("root: a@example.com\nROOT: b@example.com", "twice"),
            ("root: a\u{7}@example.com", "control"),
            ("a@b: c@example.com", "not a local name"),
        ] {
            let err = Aliases::parse(text).unwrap_err().to_string();
            assert!(err.contains(what), "{text:?}: {err}");
        }
        let dir = std::env::temp_dir().join(format!("mailgate-aliases-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big");
        std::fs::write(&big, vec![b'#'; MAX_ALIASES_BYTES as usize + 10]).unwrap();
        assert!(
            Aliases::load(&big)
                .unwrap_err()
                .to_string()
                .contains("larger than")
        );
        assert!(
            Aliases::load(&dir)
                .unwrap_err()
                .to_string()
                .contains("not a regular file")
        );
        assert!(Aliases::load(&dir.join("missing")).is_err());
        // The path is named in a line error read from a file.
        let bad = dir.join("bad");
        std::fs::write(&bad, "root: a@example.com\nnot a line\n").unwrap();
        let err = Aliases::load(&bad).unwrap_err().to_string();
        assert!(err.contains("bad: line 2"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
