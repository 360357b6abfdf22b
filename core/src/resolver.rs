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

/// The chosen strategy and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution {
    /// The strategy's registered name.
    pub strategy: String,
    /// The rule that chose it.
    pub rule: Rule,
}

/// The precedence table. The only place that decides which strategy sends.
pub fn resolve(flags: &AuthFlags) -> Resolution {
    let (strategy, rule) = match (&flags.strategy_override, flags.oauth, flags.basic) {
        (Some(name), _, _) => (name.as_str(), Rule::Override),
        (None, true, true) => ("basic", Rule::OAuthAndBasic),
        (None, true, false) => ("oauth", Rule::OAuthOnly),
        (None, false, true) => ("basic", Rule::BasicOnly),
        (None, false, false) => ("open", Rule::Neither),
    };
    Resolution {
        strategy: strategy.to_owned(),
        rule,
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
        let cases = [
            (true, true, "basic", Rule::OAuthAndBasic),
            (true, false, "oauth", Rule::OAuthOnly),
            (false, true, "basic", Rule::BasicOnly),
            (false, false, "open", Rule::Neither),
        ];
        for (oauth, basic, strategy, rule) in cases {
            let r = resolve(&flags(oauth, basic));
            assert_eq!(r.strategy, strategy, "oauth={oauth} basic={basic}");
            assert_eq!(r.rule, rule, "oauth={oauth} basic={basic}");
        }
    }

    #[test]
    fn absent_flags_are_open_relay() {
        let r = resolve(&AuthFlags::default());
        assert_eq!(r.strategy, "open");
        assert_eq!(r.rule, Rule::Neither);
    }

    #[test]
    fn override_wins_over_flags() {
        let r = resolve(&AuthFlags {
            oauth: true,
            basic: true,
            strategy_override: Some("vault".into()),
        });
        assert_eq!(r.strategy, "vault");
        assert_eq!(r.rule, Rule::Override);
        assert_eq!(r.rule.id(), "override");
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
