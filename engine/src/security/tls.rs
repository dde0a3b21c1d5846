//! rustls configs from the `tls` blocks. The ring provider is named explicitly, so the result
//! does not depend on which providers other crates switch on in rustls.

use super::SecurityError;
use crate::config::{TlsClientConfig, TlsServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

/// The application protocol a listener or client speaks (TLS ALPN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// HTTP/2 (gRPC): gRPC clients insist on `h2` in ALPN.
    H2,
    /// HTTP/1.1 (the axum listeners).
    Http1,
}

impl Alpn {
    fn protocols(self) -> Vec<Vec<u8>> {
        match self {
            Alpn::H2 => vec![b"h2".to_vec()],
            Alpn::Http1 => vec![b"http/1.1".to_vec()],
        }
    }
}

/// The crypto provider of every redwatch TLS config.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, SecurityError> {
    std::fs::read(path).map_err(|source| SecurityError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Every certificate of a PEM file (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, SecurityError> {
    let pem = |message: String| SecurityError::Pem {
        path: path.display().to_string(),
        message,
    };
    let certs = CertificateDer::pem_slice_iter(&read(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem("holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// The first private key of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, SecurityError> {
    PrivateKeyDer::from_pem_slice(&read(path)?).map_err(|e| SecurityError::Pem {
        path: path.display().to_string(),
        message: format!("holds no PEM private key: {e}"),
    })
}

fn roots(path: &Path) -> Result<RootCertStore, SecurityError> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(path)? {
        roots.add(c)?;
    }
    Ok(roots)
}

fn required<'a>(
    file: &'a Option<std::path::PathBuf>,
    key: &str,
) -> Result<&'a Path, SecurityError> {
    file.as_deref().ok_or_else(|| SecurityError::Pem {
        path: key.to_string(),
        message: "is required when tls is set".into(),
    })
}

/// The rustls server config of a listener: its certificate and key, and with `client_ca_file`
/// a verifier that requires a client certificate signed by those CAs.
pub fn server_config(
    cfg: &TlsServerConfig,
    alpn: Alpn,
) -> Result<Arc<rustls::ServerConfig>, SecurityError> {
    let provider = provider();
    let certs = load_certs(required(&cfg.cert_file, "cert_file")?)?;
    let key = load_key(required(&cfg.key_file, "key_file")?)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match &cfg.client_ca_file {
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca)?),
                provider,
            )
            .build()
            .map_err(|e| SecurityError::ClientCa(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key)?;
    config.alpn_protocols = alpn.protocols();
    Ok(Arc::new(config))
}

/// The rustls client config of a `tls` client block (the OTLP exporter, `redwatch sql`).
pub fn client_config(
    cfg: &TlsClientConfig,
    alpn: Alpn,
) -> Result<rustls::ClientConfig, SecurityError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = if cfg.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
    } else {
        let ca = cfg.ca_file.as_deref().ok_or_else(|| SecurityError::Pem {
            path: "ca_file".into(),
            message: "is required (no built-in roots) unless insecure_skip_verify is set".into(),
        })?;
        builder.with_root_certificates(roots(ca)?)
    };
    let mut config = match (&cfg.cert_file, &cfg.key_file) {
        (Some(c), Some(k)) => builder.with_client_auth_cert(load_certs(c)?, load_key(k)?)?,
        (None, None) => builder.with_no_client_auth(),
        (Some(_), None) | (None, Some(_)) => {
            return Err(SecurityError::Pem {
                path: "cert_file/key_file".into(),
                message: "a client certificate needs both cert_file and key_file".into(),
            })
        }
    };
    config.alpn_protocols = alpn.protocols();
    Ok(config)
}

/// `insecure_skip_verify`: any certificate passes, signatures are still checked (so the
/// handshake itself is sound; only the server's identity is not).
#[derive(Debug)]
struct AnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
