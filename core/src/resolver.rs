//! Which strategy sends: the vendor's flag precedence, in one function.

use std::fmt;

/// The flags that choose the strategy. Absent flags are `false`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthFlags {
    /// `mksis.smtp.oauth.authentication`
    pub oauth: bool,
    /// `mksis.smtp.authentication`
    pub basic: bool,
    /// `mailgate.smtp.auth.strategy`, when set.
    pub strategy_override: Option<String>,
}

impl AuthFlags {
    /// The flags a properties file sets for `mode`, without an override:
    /// what the typed builder methods (`open()`, a strategy crate's
    /// `basic(..)`) write, so that [`precedence`] alone still decides and
    /// `check` shows the same rule as for the files. Each mode's row is the
    /// one the vendor's page gives (never both flags).
    pub fn for_mode(mode: VendorMode) -> Self {
        let (oauth, basic) = match mode {
            VendorMode::OpenRelay => (false, false),
            VendorMode::BasicAuth => (false, true),
            VendorMode::OAuth => (true, false),
        };
        Self {
            oauth,
            basic,
            strategy_override: None,
        }
    }
}

/// The rule of the precedence table that fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// `mailgate.smtp.auth.strategy` names the strategy.
    Override,
    /// Both flags true: basic wins (vendor page, explicit).
    OAuthAndBasic,
    /// Only the OAuth flag: OAuth (vendor page, explicit).
    OAuthOnly,
    /// Only the basic flag: closed mail relay (vendor property table).
    BasicOnly,
    /// Neither flag: open mail relay (vendor page).
    Neither,
}

impl Rule {
    /// A stable identifier that says which flags fired, for `check` and
    /// `check --json`.
    pub fn id(self) -> &'static str {
        match self {
            Rule::Override => "override",
            Rule::OAuthAndBasic => "oauth-and-basic",
            Rule::OAuthOnly => "oauth-only",
            Rule::BasicOnly => "basic-only",
            Rule::Neither => "no-auth-flag",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rule::Override => "mailgate.smtp.auth.strategy names the strategy explicitly",
            Rule::OAuthAndBasic => {
                "mksis.smtp.oauth.authentication=true and mksis.smtp.authentication=true: SMTP basic authentication wins"
            }
            Rule::OAuthOnly => {
                "mksis.smtp.oauth.authentication=true and mksis.smtp.authentication=false: OAuth token authentication"
            }
            Rule::BasicOnly => {
                "mksis.smtp.oauth.authentication=false and mksis.smtp.authentication=true: closed mail relay (basic authentication)"
            }
            Rule::Neither => {
                "neither mksis.smtp.oauth.authentication nor mksis.smtp.authentication is true: open mail relay"
            }
        })
    }
}

/// The three ways the vendor's server sends mail, one per row group of the
/// precedence table. A strategy declares the one it provides
/// ([`StrategyDescriptor::provides`](crate::StrategyDescriptor::provides)), so
/// the table names modes, never strategy crates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum VendorMode {
    /// Open mail relay: no AUTH.
    OpenRelay,
    /// SMTP basic authentication ("closed mail relay").
    BasicAuth,
    /// OAuth 2.0 client-credentials token.
    OAuth,
}

impl VendorMode {
    /// A short stable name (`open-relay`, `basic-auth`, `oauth`).
    pub fn id(self) -> &'static str {
        match self {
            VendorMode::OpenRelay => "open-relay",
            VendorMode::BasicAuth => "basic-auth",
            VendorMode::OAuth => "oauth",
        }
    }
}

impl fmt::Display for VendorMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VendorMode::OpenRelay => "open mail relay",
            VendorMode::BasicAuth => "SMTP basic authentication",
            VendorMode::OAuth => "OAuth token authentication",
        })
    }
}

/// What the precedence table asks for: a mode of the vendor's, or a
/// strategy named by `mailgate.smtp.auth.strategy`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice {
    /// The strategy that provides this mode.
    Mode(VendorMode),
    /// The strategy registered under this name.
    Named(String),
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Choice::Mode(mode) => write!(f, "the {mode} strategy"),
            Choice::Named(name) => write!(f, "the strategy `{name}`"),
        }
    }
}

/// The chosen strategy and why, once the registry has found it
/// ([`Registry::resolve`](crate::Registry::resolve)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution {
    /// The strategy's registered name.
    pub strategy: String,
    /// What the precedence table asked for.
    pub choice: Choice,
    /// The rule that chose it.
    pub rule: Rule,
}

/// The precedence table. The only place that decides which strategy sends.
pub fn precedence(flags: &AuthFlags) -> (Choice, Rule) {
    match (&flags.strategy_override, flags.oauth, flags.basic) {
        (Some(name), _, _) => (Choice::Named(name.clone()), Rule::Override),
        (None, true, true) => (Choice::Mode(VendorMode::BasicAuth), Rule::OAuthAndBasic),
        (None, true, false) => (Choice::Mode(VendorMode::OAuth), Rule::OAuthOnly),
        (None, false, true) => (Choice::Mode(VendorMode::BasicAuth), Rule::BasicOnly),
        (None, false, false) => (Choice::Mode(VendorMode::OpenRelay), Rule::Neither),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(oauth: bool, basic: bool) -> AuthFlags {
        AuthFlags {
            oauth,
            basic,
            strategy_override: None,
        }
    }

    #[test]
    fn the_four_combinations() {
        use VendorMode::*;
        let cases = [
            (true, true, BasicAuth, Rule::OAuthAndBasic),
            (true, false, OAuth, Rule::OAuthOnly),
            (false, true, BasicAuth, Rule::BasicOnly),
            (false, false, OpenRelay, Rule::Neither),
        ];
        for (oauth, basic, mode, rule) in cases {
            let (choice, fired) = precedence(&flags(oauth, basic));
            assert_eq!(choice, Choice::Mode(mode), "oauth={oauth} basic={basic}");
            assert_eq!(fired, rule, "oauth={oauth} basic={basic}");
        }
    }

    #[test]
    fn the_flags_for_a_mode_choose_that_mode() {
        use VendorMode::*;
        for mode in [OpenRelay, BasicAuth, OAuth] {
            let (choice, rule) = precedence(&AuthFlags::for_mode(mode));
            assert_eq!(choice, Choice::Mode(mode));
            assert_ne!(rule, Rule::OAuthAndBasic, "{mode}: one flag at most");
        }
    }

    #[test]
    fn absent_flags_are_open_relay() {
        let (choice, rule) = precedence(&AuthFlags::default());
        assert_eq!(choice, Choice::Mode(VendorMode::OpenRelay));
        assert_eq!(rule, Rule::Neither);
    }

    #[test]
    fn override_wins_over_flags() {
        let (choice, rule) = precedence(&AuthFlags {
            oauth: true,
            basic: true,
            strategy_override: Some("vault".into()),
        });
        assert_eq!(choice, Choice::Named("vault".into()));
        assert_eq!(rule, Rule::Override);
        assert_eq!(rule.id(), "override");
    }

    #[test]
    fn rules_explain_themselves() {
        assert!(
            Rule::OAuthAndBasic
                .to_string()
                .contains("basic authentication wins")
        );
        assert!(Rule::Neither.to_string().contains("open mail relay"));
        assert_eq!(Rule::Neither.id(), "no-auth-flag");
    }
}
