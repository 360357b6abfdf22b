//! The dev server's AUTH mechanisms: PLAIN and LOGIN against its users,
//! XOAUTH2 and OAUTHBEARER against its token validators, with the error
//! challenges real servers send; every exchange is recorded
//! ([`AuthAttempt`]). The codec checked that AUTH may run and decodes
//! each response.

use mailgate_relay::codec::{self, Event, SaslResponse};

use super::message::{AuthAttempt, AuthInfo};
use super::sasl;
use super::session::{End, Result, Session};
use super::{Mechanism, Replacement, Stage};

impl Session {
    /// AUTH with one of the mechanisms offered.
    pub(super) async fn auth(&mut self, name: &str, initial: Option<SaslResponse>) -> Result<()> {
        let mechanism = match Mechanism::from_name(name) {
            Some(m) if self.config().mechanisms.contains(&m) => m,
            _ => {
                self.codec
                    .error(504, "5.5.4 Error: unrecognized authentication type");
                return Ok(());
            }
        };
        match mechanism {
            Mechanism::Plain => self.auth_plain(initial).await,
            Mechanism::Login => self.auth_login(initial).await,
            Mechanism::XOAuth2 | Mechanism::OAuthBearer => {
                self.auth_bearer(mechanism, initial).await
            }
        }
    }

    async fn auth_plain(&mut self, initial: Option<SaslResponse>) -> Result<()> {
        let mech = Mechanism::Plain;
        let bytes = match self.initial_or_prompt(initial, "").await? {
            SaslResponse::Data(b) => b,
            other => return self.sasl_abort(mech, other, None, None).await,
        };
        let Some(plain) = codec::plain(&bytes) else {
            return self
                .auth_reply(
                    mech,
                    None,
                    None,
                    501,
                    "5.5.2 Error: malformed PLAIN response",
                )
                .await;
        };
        let password = plain.password.to_string();
        let ok = !self.state.refuse_auth()
            && (plain.authzid.is_empty() || plain.authzid == plain.user)
            && self.state.check_password(&plain.user, &password);
        self.password_result(mech, plain.user, password, ok).await
    }

    async fn auth_login(&mut self, initial: Option<SaslResponse>) -> Result<()> {
        let mech = Mechanism::Login;
        let user = match self.initial_or_prompt(initial, "VXNlcm5hbWU6").await? {
            SaslResponse::Data(b) => b,
            other => return self.sasl_abort(mech, other, None, None).await,
        };
        let Ok(user) = String::from_utf8(user.to_vec()) else {
            return self
                .auth_reply(
                    mech,
                    None,
                    None,
                    501,
                    "5.5.2 Error: malformed LOGIN response",
                )
                .await;
        };
        let password = match self.prompt("UGFzc3dvcmQ6").await? {
            SaslResponse::Data(b) => b,
            other => return self.sasl_abort(mech, other, Some(user), None).await,
        };
        let Ok(password) = String::from_utf8(password.to_vec()) else {
            return self
                .auth_reply(
                    mech,
                    Some(user),
                    None,
                    501,
                    "5.5.2 Error: malformed LOGIN response",
                )
                .await;
        };
        let ok = !self.state.refuse_auth() && self.state.check_password(&user, &password);
        self.password_result(mech, user, password, ok).await
    }

    async fn password_result(
        &mut self,
        mech: Mechanism,
        user: String,
        password: String,
        ok: bool,
    ) -> Result<()> {
        if ok {
            self.auth_success(mech, user, password).await
        } else {
            self.auth_final(
                mech,
                Some(user),
                Some(password),
                535,
                "5.7.8 Error: authentication failed: authentication credentials invalid",
            )
            .await
            .map(drop)
        }
    }

    async fn auth_bearer(&mut self, mech: Mechanism, initial: Option<SaslResponse>) -> Result<()> {
        let bytes = match self.initial_or_prompt(initial, "").await? {
            SaslResponse::Data(b) => b,
            other => return self.sasl_abort(mech, other, None, None).await,
        };
        let parsed = match mech {
            Mechanism::XOAuth2 => sasl::parse_xoauth2(&bytes),
            _ => sasl::parse_oauthbearer(&bytes),
        };
        let Some(bearer) = parsed else {
            let text = format!("5.5.2 Error: malformed {mech} response");
            return self.auth_reply(mech, None, None, 501, &text).await;
        };
        let ok = !self.state.refuse_auth() && self.state.check_token(&bearer.user, &bearer.token);
        if ok {
            return self.auth_success(mech, bearer.user, bearer.token).await;
        }
        // The error challenge; the client must answer it before the 535.
        let scope = &self.config().oauth_scope;
        let (challenge, expected): (String, &[u8]) = match mech {
            Mechanism::XOAuth2 => (sasl::xoauth2_error_challenge(scope), b""),
            _ => (sasl::oauthbearer_error_challenge(scope), b"\x01"),
        };
        let (user, token) = (Some(bearer.user), Some(bearer.token));
        match self.prompt(&challenge).await? {
            SaslResponse::Data(answer) if answer.as_slice() == expected => {
                let text = match mech {
                    Mechanism::XOAuth2 => "5.7.8 Username and Password not accepted",
                    _ => "5.7.8 Error: authentication failed: invalid token",
                };
                self.auth_final(mech, user, token, 535, text)
                    .await
                    .map(drop)
            }
            SaslResponse::Data(_) => {
                let text = match mech {
                    Mechanism::XOAuth2 => {
                        "5.5.2 Error: expected an empty response to the XOAUTH2 error challenge"
                    }
                    _ => "5.5.2 Error: expected AQ== (%x01) after the OAUTHBEARER error challenge",
                };
                self.auth_reply(mech, user, token, 501, text).await
            }
            other => self.sasl_abort(mech, other, user, token).await,
        }
    }

    async fn auth_success(&mut self, mech: Mechanism, user: String, secret: String) -> Result<()> {
        let code = self
            .auth_final(
                mech,
                Some(user.clone()),
                Some(secret),
                235,
                "2.7.0 Authentication successful",
            )
            .await?;
        if code == 235 {
            self.codec.authenticated();
            self.auth = Some(AuthInfo {
                mechanism: mech,
                user,
            });
        }
        Ok(())
    }

    /// The final reply of an exchange, subject to [`Stage::Auth`] faults;
    /// returns the code sent.
    async fn auth_final(
        &mut self,
        mech: Mechanism,
        user: Option<String>,
        secret: Option<String>,
        code: u16,
        text: &str,
    ) -> Result<u16> {
        let faults = self.apply_faults(Stage::Auth).await?;
        // Raw bytes or a trickle stand for the normal reply; another reply
        // is what the client gets.
        let taken = match &faults.replace {
            Some(Replacement::Reply { code, .. }) => *code,
            _ => code,
        };
        self.record_auth(mech, user, secret, taken);
        let sent = self.deliver(faults, code, text).await?;
        if sent >= 500 {
            self.codec.count_error();
        }
        Ok(sent)
    }

    fn record_auth(
        &self,
        mechanism: Mechanism,
        user: Option<String>,
        secret: Option<String>,
        code: u16,
    ) {
        self.state.record_auth(AuthAttempt {
            connection_id: self.id,
            mechanism,
            user,
            secret,
            success: code == 235,
            tls: self.codec.is_tls(),
            reply_code: code,
        });
    }

    /// Records the attempt and answers `code text`.
    async fn auth_reply(
        &mut self,
        mechanism: Mechanism,
        user: Option<String>,
        secret: Option<String>,
        code: u16,
        text: &str,
    ) -> Result<()> {
        self.record_auth(mechanism, user, secret, code);
        if code >= 500 {
            self.codec.error(code, text);
        } else {
            self.codec.reply(code, text);
        }
        Ok(())
    }

    async fn sasl_abort(
        &mut self,
        mech: Mechanism,
        input: SaslResponse,
        user: Option<String>,
        secret: Option<String>,
    ) -> Result<()> {
        let text = match input {
            SaslResponse::Cancel => "5.7.0 Error: authentication aborted",
            _ => "5.5.2 Error: invalid base64 data",
        };
        self.auth_reply(mech, user, secret, 501, text).await
    }

    async fn initial_or_prompt(
        &mut self,
        initial: Option<SaslResponse>,
        challenge: &str,
    ) -> Result<SaslResponse> {
        match initial {
            Some(response) => Ok(response),
            None => self.prompt(challenge).await,
        }
    }

    /// Sends `334 challenge` and reads the client's response.
    async fn prompt(&mut self, challenge: &str) -> Result<SaslResponse> {
        self.codec.challenge(challenge);
        self.flush().await?;
        loop {
            match self.codec.next_event() {
                Some(Event::SaslResponse(response)) => return Ok(response),
                Some(Event::Line(line)) => self.log_line(&line),
                Some(Event::Close(_)) => {
                    self.flush().await?;
                    return Err(End::Sent421);
                }
                Some(_) => {}
                None => self.fill().await?,
            }
        }
    }
}
