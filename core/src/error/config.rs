//! [`ConfigError`]: what is wrong with the settings, naming the file or key.

use std::fmt;
use std::path::PathBuf;

use super::Origin;

/// A settings problem. Messages name the file or key and what is expected, never a secret value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A properties file could not be read.
    #[error("cannot read {}: {source}; check the path and its permissions", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A properties file is not valid Java properties syntax.
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Line, where the parser knows it.
        line: Option<usize>,
        /// The parser's message.
        message: String,
    },
    /// A key the chosen mode needs is absent.
    #[error(
        "missing property `{key}`, required by {}; add it to {file} (read: {read})",
        needed_by_text(needed_by)
    )]
    Missing {
        /// The key.
        key: String,
        /// What needs it (a strategy name or "every").
        needed_by: String,
        /// The file the key belongs in (`is.properties`, `security.properties`).
        file: &'static str,
        /// The files that were read, for orientation.
        read: String,
    },
    /// A key the chosen mode needs is present but blank.
    #[error(
        "property `{key}` at {origin} is blank, but {} requires a value",
        needed_by_text(needed_by)
    )]
    Blank {
        /// The key.
        key: String,
        /// Where it was set.
        origin: Origin,
        /// What needs it.
        needed_by: String,
    },
    /// A value does not have the expected form.
    #[error("property `{key}` at {origin} has an invalid value{}; expected {expected}", value.as_ref().map(|v| format!(" `{v}`")).unwrap_or_default())]
    Invalid {
        /// The key.
        key: String,
        /// Where it was set.
        origin: Origin,
        /// The bad value; `None` for secrets, which are never shown.
        value: Option<String>,
        /// What would be accepted.
        expected: String,
    },
    /// A value is longer than its key allows (a host name of megabytes).
    #[error(
        "property `{key}` at {origin} is {len} bytes long, more than the {max} it may hold{}; shorten it",
        shown.as_ref().map(|v| format!(" (it begins `{v}`)")).unwrap_or_default()
    )]
    TooLong {
        /// The key.
        key: String,
        /// Where it was set.
        origin: Origin,
        /// Its length in bytes.
        len: usize,
        /// The most it may hold.
        max: usize,
        /// Its start, escaped and cut short; `None` for secrets.
        shown: Option<String>,
    },
    /// A secret holds a value another tool encrypted (the RV&S server's
    /// `encryptPassword`): mailgate cannot decrypt it and does not send it as
    /// the secret.
    #[error(
        "`{key}` at {origin} looks encrypted by another tool (the RV&S server's encryptPassword writes such values); mailgate cannot decrypt it and will not send it as the secret. Give mailgate its own copy of the files with the plain secret (see \"Secrets at rest\" in the README), then run `mailgate encrypt`"
    )]
    ForeignEncrypted {
        /// The key.
        key: String,
        /// Where it was set.
        origin: Origin,
    },
    /// A CA file named by `mailgate.smtp.ssl.caFile` is unusable.
    #[error("CA file {} (from `mailgate.smtp.ssl.caFile` at {origin}): {reason}", path.display())]
    CaFile {
        /// The CA file.
        path: PathBuf,
        /// Where the key was set.
        origin: Origin,
        /// Why it cannot be used.
        reason: String,
    },
    /// The chosen strategy is not in this build.
    #[error("{} (chosen because {chosen_by})", unknown_strategy_message(name, available, hint.as_deref()))]
    UnknownStrategy {
        /// The strategy asked for, quoted, or the mode it must provide.
        name: String,
        /// Why it was chosen (the rule).
        chosen_by: String,
        /// Strategies compiled into this build.
        available: Vec<String>,
        /// What adds it to the build, where the registry knows (built-in strategies).
        hint: Option<String>,
    },
    /// Two linked crates register a strategy under the same name.
    #[error(
        "two strategies are registered {name}: one in `{first}` and one in `{second}`; register only one of them"
    )]
    DuplicateStrategy {
        /// The shared name (`as `x``) or mode.
        name: String,
        /// Module path of the first.
        first: String,
        /// Module path of the second.
        second: String,
    },
    /// `mailgate.outbox.url` (or the program's default for it) names a
    /// scheme no registered outbox store takes.
    #[error("{0}")]
    UnknownOutboxStore(Box<UnknownOutboxStore>),
    /// An outbox is wanted, but `mailgate.outbox.url` is not set and the
    /// program has no default for it.
    #[error(
        "property `mailgate.outbox.url` is not set and this program has no default outbox; set it in is.properties to a URL one of the registered outbox stores takes (available: {})",
        list_or_none(available)
    )]
    NoOutboxUrl {
        /// The schemes the registered stores take (`scheme:`).
        available: Vec<String>,
    },
    /// Two registered outbox stores share a name or a URL scheme.
    #[error(
        "two outbox stores are registered {name}: one in `{first}` and one in `{second}`; register only one of them"
    )]
    DuplicateStore {
        /// The shared name (`as `x``) or scheme (`for `x:` URLs`).
        name: String,
        /// Module path of the first.
        first: String,
        /// Module path of the second.
        second: String,
    },
    /// `mailgate encrypt --check` found secrets in plain text.
    #[error("{count} secret(s) stored in plain text; run `mailgate encrypt`")]
    PlaintextSecrets {
        /// How many.
        count: usize,
    },
    /// Reading, writing or using the key file or an encrypted file failed.
    #[error(transparent)]
    SecretStore(#[from] mailgate_secrets::Error),
    /// A secret could not be decrypted.
    #[error("`{key}` at {origin}: {reason}")]
    Secret {
        /// The key.
        key: String,
        /// Where it was set.
        origin: Origin,
        /// Why (never contains the value).
        reason: String,
    },
}

/// "every strategy" or "the NAME strategy".
fn needed_by_text(needed_by: &str) -> String {
    if needed_by == "every" {
        "every strategy".to_owned()
    } else {
        format!("the {needed_by} strategy")
    }
}

fn unknown_strategy_message(name: &str, available: &[String], hint: Option<&str>) -> String {
    let available = if available.is_empty() {
        "none".to_owned()
    } else {
        available.join(", ")
    };
    match hint {
        Some(hint) => format!(
            "authentication strategy {name} is not compiled into this build (available: {available}); enable {hint}"
        ),
        None => format!(
            "no authentication strategy {name} is registered (available: {available}); register its descriptor (`Registry::with(&its_crate::DESCRIPTOR)`), or, for a crate that submits it through inventory, use `Registry::with_inventory()` and name the crate in the binary (`use its_crate as _;`)"
        ),
    }
}

/// `a, b` or `none`.
fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// What [`ConfigError::UnknownOutboxStore`] knows: the URL, where it was
/// set, and the stores there are.
#[derive(Debug)]
pub struct UnknownOutboxStore {
    /// The URL as it may be shown (no password).
    pub url: String,
    /// Where it was set.
    pub origin: Origin,
    /// Its scheme; `None` when it has none.
    pub scheme: Option<String>,
    /// The store known to take that scheme but left out of this build.
    pub store: Option<String>,
    /// The schemes the registered stores take (`scheme:`).
    pub available: Vec<String>,
    /// What adds the store to the build, where the registry knows.
    pub hint: Option<String>,
}

impl fmt::Display for UnknownOutboxStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&unknown_store_message(self))
    }
}

fn unknown_store_message(e: &UnknownOutboxStore) -> String {
    let url = &e.url;
    let given = match &e.origin {
        Origin::Default => {
            format!("property `mailgate.outbox.url` is not set and its default is `{url}`")
        }
        origin => format!("property `mailgate.outbox.url` at {origin} is `{url}`"),
    };
    let available = list_or_none(&e.available);
    match (e.scheme.as_deref(), e.store.as_deref(), e.hint.as_deref()) {
        (None, _, _) => format!(
            "{given}, which is not a URL (`SCHEME:...`); set it to a URL one of the registered outbox stores takes (available: {available})"
        ),
        (Some(scheme), Some(store), Some(hint)) => format!(
            "{given}, but the outbox store `{store}` for `{scheme}:` URLs is not compiled into this build (available: {available}); enable {hint}, or set `mailgate.outbox.url` to a URL of an available store"
        ),
        (Some(scheme), _, _) => format!(
            "{given}, but no registered outbox store takes `{scheme}:` URLs (available: {available}); set it to a URL of an available store, or register the store that takes it (`Registry::with_store(&its_crate::DESCRIPTOR)`)"
        ),
    }
}
