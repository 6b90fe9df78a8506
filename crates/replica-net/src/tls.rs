//! TLS through tokio-rustls (ring): CA file or the webpki roots, client certificate for mutual
//! TLS, SNI, and verification on unless explicitly turned off.

use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    self, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
};

use crate::error::{Error, Kind, Result};

/// TLS settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsConfig {
    /// PEM file of the CA certificates to trust (default: the Mozilla roots of `webpki-roots`).
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client certificate chain, for servers that require one.
    pub cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    pub key_file: Option<PathBuf>,
    /// The name to send as SNI and to verify the certificate against (default: the host).
    pub server_name: Option<String>,
    /// Accept any server certificate. Dangerous: only for tests and trusted networks.
    pub insecure: bool,
}

impl TlsConfig {
    /// Sets [`ca_file`](Self::ca_file).
    pub fn ca_file(&mut self, p: impl Into<PathBuf>) -> &mut Self {
        self.ca_file = Some(p.into());
        self
    }
    /// Sets the client certificate and key files.
    pub fn client_cert(&mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> &mut Self {
        self.cert_file = Some(cert.into());
        self.key_file = Some(key.into());
        self
    }
    /// Sets [`server_name`](Self::server_name).
    pub fn server_name(&mut self, name: impl Into<String>) -> &mut Self {
        self.server_name = Some(name.into());
        self
    }
    /// Sets [`insecure`](Self::insecure).
    pub fn insecure(&mut self, on: bool) -> &mut Self {
        self.insecure = on;
        self
    }
}

fn config_err(msg: String, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::with_source(Kind::Config, msg, e)
}

#[derive(Debug)]
struct AcceptAnything(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
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

/// Builds the rustls client configuration.
pub(crate) fn client_config(t: &TlsConfig) -> Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| config_err("TLS protocol versions".into(), e))?;
    let builder = if t.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider)))
    } else {
        let mut roots = RootCertStore::empty();
        match &t.ca_file {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path).map_err(|e| {
                    config_err(format!("cannot read CA file {}", path.display()), e)
                })?;
                for c in certs {
                    let c =
                        c.map_err(|e| config_err(format!("bad CA file {}", path.display()), e))?;
                    roots.add(c).map_err(|e| {
                        config_err(format!("bad CA certificate in {}", path.display()), e)
                    })?;
                }
                if roots.is_empty() {
                    return Err(Error::new(
                        Kind::Config,
                        format!("no certificate in CA file {}", path.display()),
                    ));
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots)
    };
    let config = match (&t.cert_file, &t.key_file) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| config_err(format!("cannot read {}", cert.display()), e))?
                .collect::<Result<_, _>>()
                .map_err(|e| config_err(format!("bad certificate file {}", cert.display()), e))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| config_err(format!("cannot read the key {}", key.display()), e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| config_err("bad client certificate or key".into(), e))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(Error::new(
                Kind::Config,
                "a client certificate needs both --tls-cert and --tls-key",
            ));
        }
    };
    Ok(Arc::new(config))
}

/// The name to verify: SNI override, else the host (an IP address is verified as one).
pub(crate) fn server_name(t: &TlsConfig, host: &str) -> Result<ServerName<'static>> {
    let name = t.server_name.as_deref().unwrap_or(host);
    ServerName::try_from(name.to_owned())
        .map_err(|e| config_err(format!("bad TLS server name {name:?}"), e))
}
