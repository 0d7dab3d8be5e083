//! The TLS files of a cluster member and what is built from them: the client configuration
//! every wasmos client dials masters with ([`TlsMaterial::client_config`], [`endpoint`]), and
//! the master's mutual-TLS server configuration ([`TlsMaterial::server_config`]).
//!
//! Three PEM files make a member's TLS: its certificate (`--tls-cert`), its private key
//! (`--tls-key`) and the cluster CA's certificate (`--tls-ca`), all from `wasmos certs`.
//! Every link is mutual: the master requires a client certificate signed by the CA, and each
//! client requires the master's certificate to name `master.wasmos` ([`MASTER_SERVER_NAME`]),
//! whatever address it dialled. Crypto is rustls with ring.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::identity::{IdentityError, PeerIdentity, Role};

/// The server name clients verify on a master's certificate: a certificate of the master role.
pub const MASTER_SERVER_NAME: &str = "master.wasmos";

/// Where a member's TLS files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// Its certificate (PEM), issued by `wasmos certs issue`.
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8); should be readable by its owner only (mode 0600).
    pub key: PathBuf,
    /// The cluster CA's certificate (PEM), from `wasmos certs init`.
    pub ca: PathBuf,
}

/// Why TLS files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read the TLS {what} file {path}: {source}")]
    Read {
        /// Which file: certificate, key or CA.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file holds no usable PEM of the expected kind.
    #[error("the TLS {what} file {path} is not usable: {why}")]
    Invalid {
        /// Which file: certificate, key or CA.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The certificate names no single role.
    #[error("the certificate {path} cannot be used: {source}")]
    Identity {
        /// The certificate's path.
        path: PathBuf,
        /// Why it names no single role.
        source: IdentityError,
    },
    /// The certificate is of another role than the member needs.
    #[error(
        "the certificate {path} is a {found} certificate, but this needs a {wanted} certificate; \
         issue one with `wasmos certs issue {wanted} NAME`"
    )]
    WrongRole {
        /// The certificate's path.
        path: PathBuf,
        /// The role it carries.
        found: Role,
        /// The role needed.
        wanted: Role,
    },
    /// rustls refused the combination (key not matching the certificate, ...).
    #[error("cannot build the TLS configuration from {cert}: {why}")]
    Config {
        /// The certificate's path.
        cert: PathBuf,
        /// rustls's reason.
        why: String,
    },
}

/// The loaded contents of a member's [`TlsFiles`].
#[derive(Clone)]
pub struct TlsMaterial {
    files: TlsFiles,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    ca_pem: Vec<u8>,
    identity: PeerIdentity,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("TlsMaterial")
            .field("files", &self.files)
            .field("identity", &self.identity)
            .finish()
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn certs(
    what: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Invalid {
            what,
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Invalid {
            what,
            path: path.to_path_buf(),
            why: "no PEM certificate in it".into(),
        });
    }
    Ok(certs)
}

impl TlsFiles {
    /// Reads and checks the three files: they must parse, and the certificate must name one
    /// role, which must be `wanted` when given.
    pub fn load(&self, wanted: Option<Role>) -> Result<TlsMaterial, TlsError> {
        let cert_pem = read("certificate", &self.cert)?;
        let key_pem = read("key", &self.key)?;
        let ca_pem = read("CA", &self.ca)?;
        let leaf = certs("certificate", &self.cert, &cert_pem)?;
        certs("CA", &self.ca, &ca_pem)?;
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Invalid {
            what: "key",
            path: self.key.clone(),
            why: e.to_string(),
        })?;
        let identity = PeerIdentity::from_der(&leaf[0]).map_err(|source| TlsError::Identity {
            path: self.cert.clone(),
            source,
        })?;
        if let Some(wanted) = wanted
            && identity.role != wanted
        {
            return Err(TlsError::WrongRole {
                path: self.cert.clone(),
                found: identity.role,
                wanted,
            });
        }
        let material = TlsMaterial {
            files: self.clone(),
            cert_pem,
            key_pem,
            ca_pem,
            identity,
        };
        // Catch a key that does not match its certificate now, not at the first connection.
        material.server_config()?;
        Ok(material)
    }
}

impl TlsMaterial {
    /// What this member's own certificate says it is.
    pub fn identity(&self) -> &PeerIdentity {
        &self.identity
    }

    /// The files it was loaded from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The configuration to dial a master with: this member's certificate as the client
    /// certificate, the cluster CA as the only root, and `master.wasmos` as the name the
    /// master's certificate must carry.
    pub fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .domain_name(MASTER_SERVER_NAME)
    }

    /// The master's server configuration: this certificate and key, HTTP/2 by ALPN, and a
    /// client certificate required and verified against the cluster CA.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let config_error = |why: String| TlsError::Config {
            cert: self.files.cert.clone(),
            why,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for ca in certs("CA", &self.files.ca, &self.ca_pem)? {
            roots
                .add(ca)
                .map_err(|e| config_error(format!("the CA certificate is refused: {e}")))?;
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .map_err(|e| config_error(e.to_string()))?;
        let chain = certs("certificate", &self.files.cert, &self.cert_pem)?;
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem).map_err(|e| TlsError::Invalid {
            what: "key",
            path: self.files.key.clone(),
            why: e.to_string(),
        })?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| config_error(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| config_error(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The gRPC endpoint of the master at `master` (`host:port`, `http://host:port` or
/// `https://host:port`): over TLS with `tls`'s client configuration when given (an `http://`
/// address is then dialled as `https://`), plain text otherwise. Connections give up after
/// `connect_timeout`.
pub fn endpoint(
    master: &str,
    tls: Option<&TlsMaterial>,
    connect_timeout: Duration,
) -> Result<Endpoint, String> {
    let bare = master
        .strip_prefix("http://")
        .or_else(|| master.strip_prefix("https://"))
        .unwrap_or(master);
    let uri = match (tls, master.starts_with("https://")) {
        (Some(_), _) | (None, true) => format!("https://{bare}"),
        (None, false) => format!("http://{bare}"),
    };
    let endpoint = Endpoint::from_shared(uri)
        .map_err(|e| format!("bad master address {master:?}: {e}"))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true);
    match tls {
        Some(tls) => endpoint
            .tls_config(tls.client_config())
            .map_err(|e| format!("cannot use TLS towards {master}: {e}")),
        None => Ok(endpoint),
    }
}
