//! Getting a framework's component by digest: the [`ComponentFetcher`] trait (the master serves
//! blobs; tests and `wasmos dev` hand them over in memory), and [`ComponentStore`], which
//! verifies what was fetched against its sha256, keeps the bytes on disk and loads each
//! component into the Wasm runtime once.
//!
//! Compiled forms are cached by the runtime itself (`RuntimeConfig::cache_dir`); this module
//! keeps the source bytes (`<work_dir>/components/<sha256>.wasm`) so a restarted agent does not
//! fetch again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use wasmos_wasm_executor::{ComponentDigest, LoadedComponent, WasmRuntime};

/// A fetch failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct FetchError(pub String);

/// Where component bytes come from.
#[async_trait::async_trait]
pub trait ComponentFetcher: Send + Sync {
    /// The bytes of the component with this digest. The caller verifies them.
    async fn fetch(&self, digest: &ComponentDigest) -> Result<Vec<u8>, FetchError>;
}

/// Components held in memory, by digest (for tests and single-process clusters). Bytes may be
/// inserted under any digest, which lets tests serve a corrupt component.
#[derive(Default)]
pub struct MemoryFetcher {
    blobs: Mutex<HashMap<ComponentDigest, Vec<u8>>>,
}

impl MemoryFetcher {
    /// An empty fetcher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a component under its real digest; returns the digest.
    pub fn add(&self, bytes: Vec<u8>) -> ComponentDigest {
        let d = ComponentDigest::of(&bytes);
        self.insert(d, bytes);
        d
    }

    /// Serves `bytes` when `digest` is asked for.
    pub fn insert(&self, digest: ComponentDigest, bytes: Vec<u8>) {
        self.blobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(digest, bytes);
    }
}

#[async_trait::async_trait]
impl ComponentFetcher for MemoryFetcher {
    async fn fetch(&self, digest: &ComponentDigest) -> Result<Vec<u8>, FetchError> {
        self.blobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(digest)
            .cloned()
            .ok_or_else(|| FetchError(format!("component sha256:{digest} is not available")))
    }
}

/// Why a component could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum ComponentStoreError {
    /// The fetcher could not get the component.
    #[error("cannot fetch component sha256:{digest}: {source}")]
    Fetch {
        /// The component asked for.
        digest: ComponentDigest,
        /// Why the fetch failed.
        source: FetchError,
    },
    /// The bytes fetched are not the component asked for; they are not kept.
    #[error(
        "component refused: the bytes fetched for sha256:{expected} hash to sha256:{actual}; \
         the blob is corrupt or the wrong one (re-submit the framework's component)"
    )]
    DigestMismatch {
        /// The digest asked for.
        expected: ComponentDigest,
        /// The digest of the bytes fetched.
        actual: ComponentDigest,
    },
    /// The component's bytes are right but the Wasm runtime cannot load them.
    #[error("cannot load component sha256:{digest}: {source}")]
    Load {
        /// The component.
        digest: ComponentDigest,
        /// Why it does not load.
        source: wasmos_wasm_executor::ComponentError,
    },
}

/// Fetches, verifies, keeps and loads components, each once.
pub struct ComponentStore {
    runtime: WasmRuntime,
    fetcher: Arc<dyn ComponentFetcher>,
    dir: PathBuf,
    /// One lock per digest, so concurrent launches of a new framework fetch it once.
    loading: Mutex<HashMap<ComponentDigest, Arc<tokio::sync::Mutex<()>>>>,
}

impl ComponentStore {
    /// Keeps component bytes in `dir`.
    pub fn new(runtime: WasmRuntime, fetcher: Arc<dyn ComponentFetcher>, dir: PathBuf) -> Self {
        ComponentStore {
            runtime,
            fetcher,
            dir,
            loading: Mutex::new(HashMap::new()),
        }
    }

    fn path(&self, digest: &ComponentDigest) -> PathBuf {
        self.dir.join(format!("{}.wasm", digest.to_hex()))
    }

    /// The loaded component with this digest: from memory, else from disk, else fetched.
    pub async fn get(
        &self,
        digest: ComponentDigest,
    ) -> Result<Arc<LoadedComponent>, ComponentStoreError> {
        if let Some(c) = self.runtime.get(&digest) {
            return Ok(c);
        }
        let lock = self
            .loading
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(digest)
            .or_default()
            .clone();
        let _guard = lock.lock().await;
        if let Some(c) = self.runtime.get(&digest) {
            return Ok(c);
        }
        let path = self.path(&digest);
        let on_disk = tokio::fs::read(&path)
            .await
            .ok()
            .filter(|b| digest.verify(b).is_ok());
        let bytes = match on_disk {
            Some(b) => b,
            None => {
                let bytes = self
                    .fetcher
                    .fetch(&digest)
                    .await
                    .map_err(|source| ComponentStoreError::Fetch { digest, source })?;
                digest
                    .verify(&bytes)
                    .map_err(|m| ComponentStoreError::DigestMismatch {
                        expected: m.expected,
                        actual: m.actual,
                    })?;
                if let Err(e) = write_atomically(&path, &bytes).await {
                    tracing::warn!(
                        digest = %format_args!("sha256:{digest}"),
                        error = %e,
                        "cannot keep component bytes on disk"
                    );
                }
                bytes
            }
        };
        let loaded = self
            .runtime
            .load_async(bytes)
            .await
            .map_err(|source| ComponentStoreError::Load { digest, source })?;
        self.loading
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&digest);
        Ok(loaded)
    }
}

async fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    tokio::fs::write(&tmp, bytes).await?;
    tokio::fs::rename(&tmp, path).await
}
