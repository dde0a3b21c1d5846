//! Test certificates, made at test time with rcgen (no private key is committed): a CA, a
//! server certificate for `127.0.0.1`/`localhost` signed by it, a client certificate signed by
//! it, and a client certificate from a second, untrusted CA.

use redwatch::config::{TlsClientConfig, TlsServerConfig};
use std::path::{Path, PathBuf};

pub struct Pki {
    pub dir: PathBuf,
}

/// Which client certificate a test client presents.
#[derive(Clone, Copy, Debug)]
pub enum ClientCert {
    None,
    /// Signed by the CA the server trusts.
    Trusted,
    /// Signed by another CA.
    WrongCa,
}

fn ca(name: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().expect("CA key"))
        .expect("self-signed CA")
}

fn leaf(
    dir: &Path,
    name: &str,
    sans: &[&str],
    purpose: rcgen::ExtendedKeyUsagePurpose,
    issuer: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
) {
    let key = rcgen::KeyPair::generate().expect("leaf key");
    let mut params =
        rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("leaf params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.extended_key_usages = vec![purpose];
    let cert = params.signed_by(&key, issuer).expect("signed leaf");
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).expect("write cert");
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).expect("write key");
}

impl Pki {
    /// A fresh set under the system temp dir, unique per process and `tag`.
    pub fn new(tag: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("redwatch-pki-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("pki dir");
        let trusted = ca("redwatch test CA");
        let other = ca("some other CA");
        std::fs::write(dir.join("ca.pem"), trusted.pem()).expect("write CA");
        std::fs::write(dir.join("other-ca.pem"), other.pem()).expect("write other CA");
        use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
        leaf(
            &dir,
            "server",
            &["127.0.0.1", "localhost"],
            ServerAuth,
            &trusted,
        );
        leaf(&dir, "client", &["client"], ClientAuth, &trusted);
        leaf(&dir, "intruder", &["client"], ClientAuth, &other);
        Pki { dir }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// The listener side: the server certificate; with `mtls`, client certificates must be
    /// signed by the CA.
    pub fn server(&self, mtls: bool) -> TlsServerConfig {
        TlsServerConfig {
            cert_file: Some(self.path("server.pem")),
            key_file: Some(self.path("server.key")),
            client_ca_file: mtls.then(|| self.path("ca.pem")),
        }
    }

    /// The client side: trusts the CA, presents `cert`.
    pub fn client(&self, cert: ClientCert) -> TlsClientConfig {
        let (cert_file, key_file) = match cert {
            ClientCert::None => (None, None),
            ClientCert::Trusted => (Some(self.path("client.pem")), Some(self.path("client.key"))),
            ClientCert::WrongCa => (
                Some(self.path("intruder.pem")),
                Some(self.path("intruder.key")),
            ),
        };
        TlsClientConfig {
            ca_file: Some(self.path("ca.pem")),
            cert_file,
            key_file,
            insecure_skip_verify: false,
        }
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
