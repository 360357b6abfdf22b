//! A throw-away certificate authority and the server certificate it signs.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A CA made for one test run, and a server certificate for `localhost` and
/// `127.0.0.1` signed by it.
///
/// Clients trust the servers by trusting [`DevCa::ca_cert_pem`] (write it to a
/// file with [`DevCa::write_ca_pem`] for a `caFile` setting). Share one `DevCa`
/// between several servers with `DevSmtpServer::builder().ca(ca.clone())`.
#[derive(Clone)]
pub struct DevCa {
    ca_cert_pem: String,
    ca_cert_der: CertificateDer<'static>,
    server_cert_pem: String,
    server_cert_der: CertificateDer<'static>,
    server_key_pem: String,
    server_key_der: Vec<u8>,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa")
            .field("ca_cert_pem", &self.ca_cert_pem)
            .field("server_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl DevCa {
    /// Generates a new CA and a server certificate valid for `localhost` and
    /// `127.0.0.1`.
    pub fn generate() -> io::Result<Self> {
        Self::generate_for(&["localhost", "127.0.0.1"])
    }

    /// Generates a new CA and a server certificate for the given DNS names
    /// and IP addresses.
    pub fn generate_for(names: &[&str]) -> io::Result<Self> {
        let mut ca_params =
            CertificateParams::new(Vec::<String>::new()).map_err(io::Error::other)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "mailgate devserver test CA");
        ca_params
            .distinguished_name
            .push(DnType::OrganizationName, "mailgate devserver");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().map_err(io::Error::other)?;
        let ca_cert = ca_params.self_signed(&ca_key).map_err(io::Error::other)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone()).map_err(io::Error::other)?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_else(|| "localhost".into()),
        );
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().map_err(io::Error::other)?;
        let cert = params.signed_by(&key, &issuer).map_err(io::Error::other)?;

        Ok(Self {
            ca_cert_pem: ca_cert.pem(),
            ca_cert_der: ca_cert.der().clone(),
            server_cert_pem: cert.pem(),
            server_cert_der: cert.der().clone(),
            server_key_pem: key.serialize_pem(),
            server_key_der: key.serialize_der(),
        })
    }

    /// The CA certificate, PEM: what a client must trust.
    pub fn ca_cert_pem(&self) -> &str {
        &self.ca_cert_pem
    }

    /// The CA certificate, DER.
    pub fn ca_cert_der(&self) -> &CertificateDer<'static> {
        &self.ca_cert_der
    }

    /// The server (leaf) certificate, PEM.
    pub fn server_cert_pem(&self) -> &str {
        &self.server_cert_pem
    }

    /// The server's private key, PKCS#8 PEM.
    pub fn server_key_pem(&self) -> &str {
        &self.server_key_pem
    }

    /// Writes the CA certificate (PEM) to `path`.
    pub fn write_ca_pem(&self, path: impl AsRef<Path>) -> io::Result<()> {
        std::fs::write(path, &self.ca_cert_pem)
    }

    /// A rustls server configuration (aws-lc-rs provider) presenting the
    /// server certificate followed by the CA.
    pub fn server_config(&self) -> io::Result<Arc<ServerConfig>> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key_der.clone()));
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(
                vec![self.server_cert_der.clone(), self.ca_cert_der.clone()],
                key,
            )
            .map_err(io::Error::other)?;
        Ok(Arc::new(config))
    }

    /// A rustls client configuration (aws-lc-rs provider) that trusts only
    /// this CA: handy for tests that speak to the servers directly.
    pub fn client_config(&self) -> io::Result<Arc<rustls::ClientConfig>> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.ca_cert_der.clone())
            .map_err(io::Error::other)?;
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

/// Fills `buf` with random bytes from the aws-lc-rs provider. Callers add a
/// counter of their own, so values stay unique even if the system RNG fails.
pub(crate) fn random_bytes(buf: &mut [u8]) {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    if provider.secure_random.fill(buf).is_err() {
        tracing::warn!("system random number generator failed");
    }
}
