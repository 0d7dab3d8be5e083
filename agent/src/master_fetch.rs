//! [`MasterFetcher`]: a [`ComponentFetcher`] that downloads components from the master's blob
//! store over `AgentService.FetchComponent`, trying each master address in turn.
//!
//! It only transports bytes: [`crate::fetch::ComponentStore`] verifies them against the digest
//! and keeps them on disk, so a component crosses the network once per agent.

use std::time::Duration;

use tonic::transport::Endpoint;
use wasmos_api::proto as pb;
use wasmos_api::proto::agent_service_client::AgentServiceClient;
use wasmos_api::tls::TlsMaterial;
use wasmos_wasm_executor::ComponentDigest;

use crate::fetch::{ComponentFetcher, FetchError};

/// Largest component fetched by default, in bytes (the master's default upload cap).
pub const DEFAULT_MAX_COMPONENT_BYTES: u64 = 64 << 20;

/// The gRPC endpoint of a master given as `host:port` or `http://host:port`, over mutual TLS
/// with `tls` when given.
pub(crate) fn master_endpoint(master: &str, tls: Option<&TlsMaterial>) -> Result<Endpoint, String> {
    wasmos_api::tls::endpoint(master, tls, Duration::from_secs(5))
}

/// Puts `token` (an agent token, for a master that enforces ACLs) on `request` as
/// `authorization: Bearer TOKEN`; nothing when `None`. Fails when the token is not printable
/// ASCII.
pub(crate) fn with_token<T>(
    mut request: tonic::Request<T>,
    token: Option<&str>,
) -> Result<tonic::Request<T>, String> {
    if let Some(t) = token {
        let value = format!("Bearer {t}").parse().map_err(|_| {
            "the agent token (--token or WASMOS_TOKEN) is not printable ASCII".to_string()
        })?;
        request.metadata_mut().insert("authorization", value);
    }
    Ok(request)
}

/// Fetches components from the masters at `masters`.
#[derive(Clone)]
pub struct MasterFetcher {
    masters: Vec<String>,
    max_bytes: u64,
    tls: Option<TlsMaterial>,
    token: Option<String>,
}

impl std::fmt::Debug for MasterFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the token: a secret never reaches a log.
        f.debug_struct("MasterFetcher")
            .field("masters", &self.masters)
            .field("max_bytes", &self.max_bytes)
            .field("tls", &self.tls)
            .field("token", &self.token.as_ref().map(|_| "<secret>"))
            .finish()
    }
}

impl MasterFetcher {
    /// Fetches from `masters` (tried in order), refusing components above
    /// [`DEFAULT_MAX_COMPONENT_BYTES`].
    pub fn new(masters: Vec<String>) -> Self {
        MasterFetcher {
            masters,
            max_bytes: DEFAULT_MAX_COMPONENT_BYTES,
            tls: None,
            token: None,
        }
    }

    /// Sends `token` with every fetch (an agent token, for a master that enforces ACLs
    /// without TLS, or besides it); `None` (the default): none.
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// Fetches over mutual TLS with `tls` (the agent's certificate, key and the cluster CA);
    /// `None`: plain text.
    pub fn with_tls(mut self, tls: Option<TlsMaterial>) -> Self {
        self.tls = tls;
        self
    }

    /// Refuses components above `max_bytes`.
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    async fn fetch_from(
        &self,
        master: &str,
        digest: &ComponentDigest,
    ) -> Result<Vec<u8>, (bool, String)> {
        let endpoint = master_endpoint(master, self.tls.as_ref()).map_err(|e| (false, e))?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| (false, format!("cannot connect to master {master}: {e}")))?;
        let mut client = AgentServiceClient::new(channel)
            .max_decoding_message_size(usize::try_from(self.max_bytes).unwrap_or(usize::MAX));
        let request = pb::FetchComponentRequest {
            sha256: digest.to_hex(),
        };
        let request = with_token(tonic::Request::new(request), self.token.as_deref())
            .map_err(|e| (true, e))?;
        let mut chunks = client
            .fetch_component(request)
            .await
            .map_err(|s| {
                let definite = s.code() == tonic::Code::NotFound;
                (definite, format!("master {master}: {}", s.message()))
            })?
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) = chunks
            .message()
            .await
            .map_err(|s| (false, format!("master {master}: download broke off: {s}")))?
        {
            if bytes.len() as u64 + chunk.data.len() as u64 > self.max_bytes {
                return Err((
                    true,
                    format!(
                        "master {master} sent more than {} bytes; the agent refuses larger \
                         components",
                        self.max_bytes
                    ),
                ));
            }
            bytes.extend_from_slice(&chunk.data);
        }
        Ok(bytes)
    }
}

#[async_trait::async_trait]
impl ComponentFetcher for MasterFetcher {
    async fn fetch(&self, digest: &ComponentDigest) -> Result<Vec<u8>, FetchError> {
        let mut errors = Vec::new();
        for master in &self.masters {
            match self.fetch_from(master, digest).await {
                Ok(bytes) => return Ok(bytes),
                // The master answered for certain (it has no such component): asking
                // another one would only repeat the answer until replication exists.
                Err((true, e)) => return Err(FetchError(e)),
                Err((false, e)) => errors.push(e),
            }
        }
        if errors.is_empty() {
            errors.push("no master address configured".into());
        }
        Err(FetchError(errors.join("; ")))
    }
}
