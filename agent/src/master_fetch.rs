//! [`MasterFetcher`]: a [`ComponentFetcher`] that downloads components from the master's blob
//! store over `AgentService.FetchComponent`, trying each master address in turn.
//!
//! It only transports bytes: [`crate::fetch::ComponentStore`] verifies them against the digest
//! and keeps them on disk, so a component crosses the network once per agent.

use std::time::Duration;

use tonic::transport::Endpoint;
use wasmos_api::proto as pb;
use wasmos_api::proto::agent_service_client::AgentServiceClient;
use wasmos_wasm_executor::ComponentDigest;

use crate::fetch::{ComponentFetcher, FetchError};

/// Largest component fetched by default, in bytes (the master's default upload cap).
pub const DEFAULT_MAX_COMPONENT_BYTES: u64 = 64 << 20;

/// The gRPC endpoint of a master given as `host:port` or `http://host:port`.
pub(crate) fn master_endpoint(master: &str) -> Result<Endpoint, String> {
    let uri = if master.contains("://") {
        master.to_string()
    } else {
        format!("http://{master}")
    };
    Endpoint::from_shared(uri)
        .map(|e| e.connect_timeout(Duration::from_secs(5)))
        .map_err(|e| format!("bad master address {master:?}: {e}"))
}

/// Fetches components from the masters at `masters`.
#[derive(Clone, Debug)]
pub struct MasterFetcher {
    masters: Vec<String>,
    max_bytes: u64,
}

impl MasterFetcher {
    /// Fetches from `masters` (tried in order), refusing components above
    /// [`DEFAULT_MAX_COMPONENT_BYTES`].
    pub fn new(masters: Vec<String>) -> Self {
        MasterFetcher {
            masters,
            max_bytes: DEFAULT_MAX_COMPONENT_BYTES,
        }
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
        let endpoint = master_endpoint(master).map_err(|e| (false, e))?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| (false, format!("cannot connect to master {master}: {e}")))?;
        let mut client = AgentServiceClient::new(channel)
            .max_decoding_message_size(usize::try_from(self.max_bytes).unwrap_or(usize::MAX));
        let request = pb::FetchComponentRequest {
            sha256: digest.to_hex(),
        };
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
