//! What a crate declares of each property key it reads: secret, file, bound, URL.

/// Which file of the vendor's a key belongs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFile {
    /// `is.properties`.
    Is,
    /// `security.properties`.
    Security,
}

/// A property key a strategy reads, as its descriptor declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeySpec {
    /// The key.
    pub name: &'static str,
    /// A secret: encrypted by `mailgate encrypt`, never shown, decrypted at load.
    pub secret: bool,
    /// The file it belongs in (for "wrong file" warnings).
    pub file: KeyFile,
    /// Longest value accepted, in bytes.
    pub max_len: usize,
    /// A URL: shown as `scheme://host/...` only (the path may name a tenant).
    pub url: bool,
    /// Spellings operators get wrong that no edit distance catches; loading
    /// warns "did you mean" for them.
    pub misspellings: &'static [&'static str],
}

impl KeySpec {
    /// A key of `is.properties` whose value may be shown.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            secret: false,
            file: KeyFile::Is,
            max_len: 998,
            url: false,
            misspellings: &[],
        }
    }

    /// A secret key.
    pub const fn secret(name: &'static str) -> Self {
        Self {
            secret: true,
            ..Self::new(name)
        }
    }

    /// The key belongs in `security.properties`.
    pub const fn in_security_file(self) -> Self {
        Self {
            file: KeyFile::Security,
            ..self
        }
    }

    /// Values up to `max_len` bytes (default 998).
    pub const fn max_len(self, max_len: usize) -> Self {
        Self { max_len, ..self }
    }

    /// A URL, shown as `scheme://host/...` only.
    pub const fn url(self) -> Self {
        Self { url: true, ..self }
    }

    /// Spellings to answer with "did you mean" this key.
    pub const fn misspelled_as(self, misspellings: &'static [&'static str]) -> Self {
        Self {
            misspellings,
            ..self
        }
    }
}
