//! The HTTP listener of a TLS master: the master's own certificate, but no client
//! certificate asked for (browsers and `curl` have none; the bearer token decides what a
//! caller may do). Handshakes run in tasks of their own, each bounded by a deadline, so a
//! client that connects and stalls holds up nobody else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;
use tracing::debug;

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the server to take them.
const QUEUE: usize = 64;

/// The server configuration for HTTP: `tls`'s certificate and key, HTTP/1.1 by ALPN, no
/// client certificate.
pub fn http_server_config(
    tls: &wasmos_api::tls::TlsMaterial,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let files = tls.files();
    let chain: Vec<rustls::pki_types::CertificateDer<'static>> = {
        use rustls::pki_types::pem::PemObject;
        let pem = std::fs::read(&files.cert)
            .map_err(|e| format!("cannot read {}: {e}", files.cert.display()))?;
        rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: {e}", files.cert.display()))?
    };
    let key = {
        use rustls::pki_types::pem::PemObject;
        let pem = std::fs::read(&files.key)
            .map_err(|e| format!("cannot read {}: {e}", files.key.display()))?;
        rustls::pki_types::PrivateKeyDer::from_pem_slice(&pem)
            .map_err(|e| format!("{}: {e}", files.key.display()))?
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("{}: {e}", files.cert.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A listener whose connections come out of TLS handshakes done elsewhere.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `listener` and hands over connections once `acceptor` finished their
    /// handshake.
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        debug!(error = %e, "HTTP accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => debug!(%peer, error = %e, "HTTP TLS handshake failed"),
                        Err(_) => debug!(%peer, "HTTP TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { rx, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accepting task ended (never, while the listener lives): wait for shutdown.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
