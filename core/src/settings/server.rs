//! The SMTP server settings: host, port, TLS, CA files, limits.

use std::path::PathBuf;
use std::time::Duration;

use super::{
    DEFAULT_MAX_CONNECTIONS, MAX_CA_FILE_BYTES, MAX_CA_FILES, MAX_MAX_CONNECTIONS, Settings,
    Warning, keys,
};
use crate::error::{ConfigError, Origin, Result};

/// How the connection is encrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// No TLS (`mksis.smtp.ssl.enabled=false`).
    None,
    /// Plain connect, then STARTTLS, required.
    StartTls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Implicit,
}

impl TlsMode {
    /// `none`, `starttls` or `implicit`.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::None => "none",
            TlsMode::StartTls => "starttls",
            TlsMode::Implicit => "implicit",
        }
    }
}

/// A CA certificate file to trust in addition to the system roots.
#[derive(Clone, Debug)]
pub struct CaFile {
    /// Resolved path.
    pub path: PathBuf,
    /// PEM content.
    pub pem: Vec<u8>,
    /// Its certificates, each checked to be usable as a trust anchor.
    pub certs: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// Where `mailgate.smtp.ssl.caFile` named it.
    pub origin: Origin,
}

/// The certificates of a PEM file, each usable as a trust anchor.
fn parse_ca_pem(pem: &[u8]) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("not a valid PEM certificate: {e}"))?;
        rustls::RootCertStore::empty()
            .add(cert.clone())
            .map_err(|e| format!("not a usable CA certificate: {e}"))?;
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err("it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    Ok(certs)
}

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// SMTP host.
    pub host: String,
    /// SMTP port.
    pub port: u16,
    /// TLS mode.
    pub tls: TlsMode,
    /// Extra trusted CAs.
    pub ca_files: Vec<CaFile>,
    /// Limit for connect, TLS and each reply.
    pub timeout: Duration,
    /// EHLO name, when set.
    pub helo_name: Option<String>,
    /// Credentials may cross an unencrypted connection.
    pub allow_plaintext_auth: bool,
    /// Bound on simultaneous connections; as many are kept idle.
    pub max_connections: usize,
}

impl ServerSettings {
    /// `host:port`.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl Settings {
    pub(super) fn load_server(&self) -> Result<(ServerSettings, Vec<Warning>), ConfigError> {
        let mut warnings = Vec::new();
        let host = self.require(keys::SERVER_HOSTNAME, "every")?.to_owned();
        let is_ipv6 = host.parse::<std::net::Ipv6Addr>().is_ok();
        if host.contains(char::is_whitespace)
            || host.contains(['/', '@', '[', ']'])
            || (host.contains(':') && !is_ipv6)
        {
            return Err(self.invalid(
                keys::SERVER_HOSTNAME,
                "a host name or IP address without a port (the port is mksis.logging.email.server.port)",
            ));
        }
        let port =
            match self.value(keys::SERVER_PORT) {
                None => 25,
                Some(v) => v.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                    self.invalid(keys::SERVER_PORT, "a port number from 1 to 65535")
                })?,
            };
        let ssl = self.flag(keys::SSL_ENABLED)?;
        if !ssl && self.value(keys::SSL_MODE).is_some() {
            warnings.push(Warning(format!(
                "`{}` is ignored because `{}` is not true",
                keys::SSL_MODE,
                keys::SSL_ENABLED
            )));
        }
        if !ssl && port == 465 {
            warnings.push(Warning(format!(
                "port 465 usually speaks implicit TLS, but `{}` is not true: the connection will wait for a greeting that never comes",
                keys::SSL_ENABLED
            )));
        }
        let tls = match (ssl, self.value(keys::SSL_MODE)) {
            (false, _) => TlsMode::None,
            (true, None) if port == 465 => TlsMode::Implicit,
            (true, None) => TlsMode::StartTls,
            (true, Some(m)) if m.eq_ignore_ascii_case("starttls") => TlsMode::StartTls,
            (true, Some(m)) if m.eq_ignore_ascii_case("implicit") => TlsMode::Implicit,
            (true, Some(_)) => return Err(self.invalid(keys::SSL_MODE, "`starttls` or `implicit`")),
        };
        let timeout = match self.value(keys::TIMEOUT_SECONDS) {
            None => Duration::from_secs(30),
            Some(v) => v
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0 && *s <= 3600.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| {
                    self.invalid(
                        keys::TIMEOUT_SECONDS,
                        "a number of seconds above 0, at most 3600",
                    )
                })?,
        };
        let helo_name = self.value(keys::HELO_NAME).map(str::to_owned);
        if let Some(name) = &helo_name
            && (name.contains(char::is_whitespace) || name.contains(['\r', '\n']))
        {
            return Err(self.invalid(keys::HELO_NAME, "a host name without spaces"));
        }
        let max_connections = match self.value(keys::MAX_CONNECTIONS) {
            None => DEFAULT_MAX_CONNECTIONS,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_MAX_CONNECTIONS).contains(n))
                .ok_or_else(|| {
                    self.invalid(
                        keys::MAX_CONNECTIONS,
                        &format!("a whole number from 1 to {MAX_MAX_CONNECTIONS}"),
                    )
                })?,
        };
        let server = ServerSettings {
            host,
            port,
            tls,
            ca_files: self.ca_files()?,
            timeout,
            helo_name,
            allow_plaintext_auth: self.flag(keys::ALLOW_PLAINTEXT_AUTH)?,
            max_connections,
        };
        Ok((server, warnings))
    }

    fn ca_files(&self) -> Result<Vec<CaFile>, ConfigError> {
        let Some(entry) = self.entry(keys::SSL_CA_FILE) else {
            return Ok(Vec::new());
        };
        let base = self.base_dir();
        let mut out = Vec::new();
        let names: Vec<&str> = entry
            .value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if names.len() > MAX_CA_FILES {
            return Err(self.invalid(
                keys::SSL_CA_FILE,
                &format!("at most {MAX_CA_FILES} CA files"),
            ));
        }
        for name in names {
            let path = base.join(name);
            let fail = |reason: String| ConfigError::CaFile {
                path: path.clone(),
                origin: entry.origin.clone(),
                reason,
            };
            let pem = mailgate_properties::fs::read_regular(&path, MAX_CA_FILE_BYTES)
                .map_err(|e| fail(format!("cannot read it: {e}")))?;
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                return Err(fail(
                    "it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
                ));
            }
            let certs = parse_ca_pem(&pem).map_err(fail)?;
            out.push(CaFile {
                path,
                pem,
                certs,
                origin: entry.origin.clone(),
            });
        }
        Ok(out)
    }
}
