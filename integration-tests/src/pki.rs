//! Certificates made at test time with `rcgen`.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tempfile::TempDir;

/// File names inside [`TestPki::dir`].
const CA_CERT: &str = "ca.pem";
const SERVER_CERT: &str = "server.pem";
const SERVER_KEY: &str = "server-key.pem";
const OTHER_CA_CERT: &str = "other-ca.pem";

/// A throw-away PKI, written as PEM files into a temporary folder that is
/// deleted on drop:
///
/// - `ca.pem`: a CA certificate ("mailgate test CA");
/// - `server.pem` / `server-key.pem`: a server certificate for `localhost`
///   and `127.0.0.1` signed by that CA (`CA:FALSE`, extended key usage
///   serverAuth), and its PKCS#8 key;
/// - `other-ca.pem`: a second, unrelated CA that signed nothing here: trust
///   it instead of `ca.pem` to test a client rejecting the server.
///
/// Keys are ECDSA P-256; each `TestPki` has fresh keys.
pub struct TestPki {
    dir: TempDir,
    ca_cert_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
    other_ca_cert_pem: String,
}

impl TestPki {
    /// Makes the certificates and writes the PEM files. Panics on failure.
    pub fn new() -> TestPki {
        let ca = make_ca("mailgate test CA");
        let other_ca = make_ca("mailgate unrelated test CA");

        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server certificate names");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let server_key = KeyPair::generate().expect("generating the server key");
        let server_cert = params
            .signed_by(&server_key, &ca)
            .expect("signing the server certificate");

        let pki = TestPki {
            dir: tempfile::Builder::new()
                .prefix("mailgate-pki-")
                .tempdir()
                .expect("creating the PKI temp dir"),
            ca_cert_pem: ca.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            other_ca_cert_pem: other_ca.pem(),
        };
        for (name, pem) in [
            (CA_CERT, &pki.ca_cert_pem),
            (SERVER_CERT, &pki.server_cert_pem),
            (SERVER_KEY, &pki.server_key_pem),
            (OTHER_CA_CERT, &pki.other_ca_cert_pem),
        ] {
            let path = pki.dir.path().join(name);
            fs::write(&path, pem).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        }
        pki
    }

    /// The folder holding the PEM files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Path of the CA certificate (`ca.pem`) that signed the server certificate.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.path().join(CA_CERT)
    }

    /// PEM text of the CA certificate.
    pub fn ca_cert_pem(&self) -> &str {
        &self.ca_cert_pem
    }

    /// Path of the server certificate (`server.pem`, leaf only).
    pub fn server_cert_path(&self) -> PathBuf {
        self.dir.path().join(SERVER_CERT)
    }

    /// PEM text of the server certificate.
    pub fn server_cert_pem(&self) -> &str {
        &self.server_cert_pem
    }

    /// Path of the server's private key (`server-key.pem`, PKCS#8).
    pub fn server_key_path(&self) -> PathBuf {
        self.dir.path().join(SERVER_KEY)
    }

    /// PEM text of the server's private key.
    pub fn server_key_pem(&self) -> &str {
        &self.server_key_pem
    }

    /// Path of the unrelated CA certificate (`other-ca.pem`).
    pub fn other_ca_cert_path(&self) -> PathBuf {
        self.dir.path().join(OTHER_CA_CERT)
    }

    /// PEM text of the unrelated CA certificate.
    pub fn other_ca_cert_pem(&self) -> &str {
        &self.other_ca_cert_pem
    }
}

impl Default for TestPki {
    fn default() -> Self {
        TestPki::new()
    }
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki")
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

fn make_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.distinguished_name.push(DnType::CommonName, name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "mailgate tests");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("generating a CA key");
    CertifiedIssuer::self_signed(params, key).expect("self-signing a CA")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_pem_files() {
        let pki = TestPki::new();
        for path in [
            pki.ca_cert_path(),
            pki.server_cert_path(),
            pki.server_key_path(),
            pki.other_ca_cert_path(),
        ] {
            let text = fs::read_to_string(&path).unwrap();
            assert!(text.starts_with("-----BEGIN "), "{}", path.display());
        }
        assert_ne!(pki.ca_cert_pem(), pki.other_ca_cert_pem());
        assert!(pki.server_key_pem().contains("PRIVATE KEY"));
    }
}
