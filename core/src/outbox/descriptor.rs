//! How an outbox store is registered ([`OutboxDescriptor`]) and the URL it
//! is opened with ([`OutboxUrl`]). Core keeps the URL opaque: it reads only
//! its scheme, to find the registered store that takes it; the store parses
//! the rest.

use std::fmt;
use std::sync::Arc;

use super::{OutboxStore, shown_url};
use crate::error::{ConfigError, Origin, Result};
use crate::settings::{KeySpec, Settings, keys};

/// `mailgate.outbox.url` as it was given, with where it was set: a file
/// line, the environment, the builder, or the program's default when the
/// key is not set ([`Origin::Default`]). `Debug` and [`OutboxUrl::shown`]
/// leave out a password.
#[derive(Clone, PartialEq, Eq)]
pub struct OutboxUrl {
    value: String,
    origin: Origin,
}

impl OutboxUrl {
    /// `value` (trimmed), set at `origin`.
    pub fn new(value: impl Into<String>, origin: Origin) -> Self {
        Self {
            value: value.into().trim().to_owned(),
            origin,
        }
    }

    /// The URL as given. It may hold a password: show [`Self::shown`].
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// Where it was set.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The scheme (`scheme` of `scheme:...`, as RFC 3986 spells one), in
    /// lower case; `None` when the value does not begin with one.
    pub fn scheme(&self) -> Option<String> {
        let (scheme, _) = self.value.split_once(':')?;
        let mut chars = scheme.chars();
        let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        valid.then(|| scheme.to_ascii_lowercase())
    }

    /// What follows `scheme:`; the whole value when it has no scheme.
    pub fn rest(&self) -> &str {
        match self.scheme() {
            Some(scheme) => &self.value[scheme.len() + 1..],
            None => &self.value,
        }
    }

    /// The URL as it may be shown: without password, query or fragment
    /// ([`shown_url`]).
    pub fn shown(&self) -> String {
        shown_url(&self.value)
    }

    /// A configuration error for this URL: it does not have the form
    /// `expected` describes (a store's own syntax). Names the key and
    /// where it was set; shows the URL without its password.
    pub fn invalid(&self, expected: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: keys::OUTBOX_URL.to_owned(),
            origin: self.origin.clone(),
            value: Some(crate::settings::cut_short(&self.shown(), 80)),
            expected: expected.into(),
        }
    }
}

impl fmt::Debug for OutboxUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxUrl")
            .field("url", &self.shown())
            .field("origin", &self.origin)
            .finish()
    }
}

/// Opens a store: the URL (as given: the store parses it, and resolves a
/// relative path against [`Settings::base_dir`], the config folder) and
/// the settings (`settings.outbox()` for `mailgate.outbox.*`, such as
/// `keep_sent_bodies`, and the keys the descriptor declares). Nothing
/// needs to be connected or created yet: a store may do that on first use.
pub type OpenStoreFn = fn(&OutboxUrl, &Settings) -> Result<Arc<dyn OutboxStore>>;

/// An outbox store's registration: its name, the URL schemes it takes, the
/// keys it reads and how to open it. Only constant data; a store crate
/// exports one as a `static` (behind the cargo feature that builds the
/// store), and the facade's `mailgate::default_registry()` lists the
/// built-in ones, as it lists strategies.
///
/// ```
/// # use std::sync::Arc;
/// # use mailgate_core::outbox::{OutboxDescriptor, OutboxStore, OutboxUrl};
/// # use mailgate_core::{KeySpec, Result, Settings};
/// # fn open(_: &OutboxUrl, _: &Settings) -> Result<Arc<dyn OutboxStore>> { unimplemented!() }
/// pub static DESCRIPTOR: OutboxDescriptor =
///     OutboxDescriptor::new("kv", &["kv", "kv+tls"], open, module_path!())
///         .keys(&[KeySpec::new("example.kv.namespace")]);
/// ```
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct OutboxDescriptor {
    /// The store's name, for `mailgate check` and errors.
    pub name: &'static str,
    /// The URL schemes it takes, lower case, without the colon.
    pub schemes: &'static [&'static str],
    /// Property keys the store reads beyond `mailgate.outbox.*` (for "did
    /// you mean" warnings, env overrides, encryption and redaction).
    pub keys: &'static [KeySpec],
    /// Opens the store.
    pub open: OpenStoreFn,
    /// `module_path!()` of the registering crate, to name it in errors.
    pub module_path: &'static str,
}

impl OutboxDescriptor {
    /// A descriptor with no keys of its own.
    pub const fn new(
        name: &'static str,
        schemes: &'static [&'static str],
        open: OpenStoreFn,
        module_path: &'static str,
    ) -> Self {
        Self {
            name,
            schemes,
            keys: &[],
            open,
            module_path,
        }
    }

    /// The keys the store reads.
    pub const fn keys(self, keys: &'static [KeySpec]) -> Self {
        Self { keys, ..self }
    }

    /// Whether it takes URLs of `scheme` (compared without case).
    pub fn takes(&self, scheme: &str) -> bool {
        self.schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme))
    }
}

impl fmt::Debug for OutboxDescriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxDescriptor")
            .field("name", &self.name)
            .field("schemes", &self.schemes)
            .field("module_path", &self.module_path)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_is_read_and_the_rest_kept_opaque() {
        let url = OutboxUrl::new(" Kv+TLS://u:pw@h/x ", Origin::Builder);
        assert_eq!(url.scheme().as_deref(), Some("kv+tls"));
        assert_eq!(url.rest(), "//u:pw@h/x");
        assert_eq!(url.as_str(), "Kv+TLS://u:pw@h/x");
        for no_scheme in ["outbox.db", "1kv:x", ":x", "C\\dir\\x", "k v:x"] {
            let url = OutboxUrl::new(no_scheme, Origin::Builder);
            assert_eq!(url.scheme(), None, "{no_scheme}");
            assert_eq!(url.rest(), no_scheme.trim());
        }
    }

    #[test]
    fn a_password_is_never_shown() {
        let url = OutboxUrl::new("kv://mg:Hidden-9@h:1/db?password=Q", Origin::Default);
        let err = url.invalid("`kv://HOST/DB`");
        for text in [format!("{url:?}"), url.shown(), err.to_string()] {
            assert!(!text.contains("Hidden-9") && !text.contains("=Q"), "{text}");
        }
        assert!(err.to_string().contains("mailgate.outbox.url"), "{err}");
        assert!(err.to_string().contains("`kv://HOST/DB`"), "{err}");
    }
}
