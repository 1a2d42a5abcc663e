//! TLS for connections to external servers, as libpq's `sslmode` defines it, with rustls
//! (pure Rust, through `tokio-postgres-rustls`).
//!
//! - `disable`: never; `allow` / `prefer` (the default): TLS when the server offers it,
//!   certificate not checked; `require`: TLS or fail, certificate not checked (as libpq
//!   does without a root certificate);
//! - `verify-ca`: the chain must lead to `sslrootcert`; `verify-full`: and the host name
//!   must match the certificate.
//!
//! The `postgres` crate only knows disable/prefer/require, so the verification level is
//! kept here for the process (pgx talks to one server per run); [`crate::target`] sets it
//! from the URL's `sslmode` / `sslrootcert` or `PGSSLMODE` / `PGSSLROOTCERT`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use postgres::config::{Host, SslMode as DriverSslMode};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::fail;

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    Disable,
    Allow,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

pub const SSLMODES: &str = "disable, allow, prefer, require, verify-ca, verify-full";

impl SslMode {
    pub fn parse(text: &str) -> Option<SslMode> {
        Some(match text {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// What the driver is told: it only needs to know whether TLS is off, optional or a must.
    pub fn for_driver(self) -> DriverSslMode {
        match self {
            SslMode::Disable => DriverSslMode::Disable,
            SslMode::Allow | SslMode::Prefer => DriverSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => DriverSslMode::Require,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct TlsPolicy {
    pub mode: SslMode,
    /// `sslrootcert`: the CA certificate(s) verify-ca and verify-full check against.
    pub root_cert: Option<PathBuf>,
}

static POLICY: Mutex<Option<TlsPolicy>> = Mutex::new(None);

/// Set the policy for this process's connections to external servers.
pub fn set_policy(policy: TlsPolicy) {
    if let Ok(mut guard) = POLICY.lock() {
        *guard = Some(policy);
    }
}

fn policy() -> TlsPolicy {
    POLICY
        .lock()
        .ok()
        .and_then(|g| g.clone())
        .unwrap_or_default()
}

/// A rustls connector for this config, or `None` when TLS is off or every host is a Unix
/// socket (PostgreSQL offers no TLS there).
pub fn connector_for(config: &postgres::Config) -> Result<Option<MakeRustlsConnect>> {
    if config.get_ssl_mode() == DriverSslMode::Disable || all_unix(config) {
        return Ok(None);
    }
    Ok(Some(connector(&policy())?))
}

/// Every host of the config is a Unix socket directory.
pub fn all_unix(config: &postgres::Config) -> bool {
    let hosts = config.get_hosts();
    !hosts.is_empty() && hosts.iter().all(|h| matches!(h, Host::Unix(_)))
}

/// For cancel requests, which travel on a new connection like the one they cancel.
pub fn cancel_connector() -> Option<MakeRustlsConnect> {
    let policy = policy();
    if policy.mode == SslMode::Disable {
        return None;
    }
    connector(&policy).ok()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn connector(policy: &TlsPolicy) -> Result<MakeRustlsConnect> {
    let provider = provider();
    let verifier: Arc<dyn ServerCertVerifier> = match policy.mode {
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let roots = root_store(policy)?;
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| anyhow::anyhow!("cannot use the root certificates: {e}"))?;
            if policy.mode == SslMode::VerifyFull {
                webpki
            } else {
                Arc::new(ChainOnly(webpki))
            }
        }
        _ => Arc::new(Unverified(provider.clone())),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("TLS set-up failed: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

fn root_store(policy: &TlsPolicy) -> Result<rustls::RootCertStore> {
    let path = policy
        .root_cert
        .clone()
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".postgresql/root.crt")))
        .filter(|p| p.is_file())
        .ok_or_else(|| {
            fail(
                "sslmode verify-ca / verify-full needs the server's CA certificate, and none was found",
                "give it with sslrootcert=/path/to/ca.crt in the URL (or PGSSLROOTCERT), or put it at ~/.postgresql/root.crt as for psql",
            )
        })?;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&path).map_err(|e| {
        fail(
            format!("cannot read sslrootcert {}: {e}", path.display()),
            "give a PEM file with the CA certificate",
        )
    })?;
    for cert in certs {
        let cert = cert.map_err(|e| {
            fail(
                format!(
                    "sslrootcert {} is not a PEM certificate file: {e}",
                    path.display()
                ),
                "give a PEM file with the CA certificate",
            )
        })?;
        roots.add(cert).map_err(|e| {
            fail(
                format!("sslrootcert {}: {e}", path.display()),
                "give a PEM file with the CA certificate",
            )
        })?;
    }
    if roots.is_empty() {
        return Err(fail(
            format!("sslrootcert {} holds no certificate", path.display()),
            "give a PEM file with the CA certificate",
        ));
    }
    Ok(roots)
}

/// `require` / `prefer`: encrypted, the certificate not checked (libpq's behaviour when
/// no root certificate is configured). Handshake signatures are still verified.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
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
        verify_tls12_signature(
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
        verify_tls13_signature(
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

/// `verify-ca`: the chain must lead to a root, whatever host name the certificate names.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
