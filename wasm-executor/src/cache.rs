//! The compiled-component cache on disk, keyed by the component's sha256 and the engine's
//! compatibility hash.
//!
//! Compiling a component costs tens of milliseconds (seconds for a component that carries an
//! interpreter); loading a compiled artifact costs a fraction of a millisecond. So an agent that
//! restarts, or a second agent sharing the directory, does not compile again. Entries are written
//! to a temporary file and renamed, so a crash never leaves a half-written entry under a real
//! name; an entry that fails to load is deleted and rebuilt.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmos_api::ComponentDigest;
use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of compiled components for one engine configuration.
pub(crate) struct DiskCache {
    dir: PathBuf,
    engine_tag: String,
}

impl DiskCache {
    pub fn new(dir: &Path, engine: &Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Ok(DiskCache {
            dir: dir.to_path_buf(),
            engine_tag: format!("{:016x}", h.finish()),
        })
    }

    fn path(&self, digest: &ComponentDigest) -> PathBuf {
        self.dir
            .join(format!("{}-{}.cwasm", digest.to_hex(), self.engine_tag))
    }

    /// The cached compiled component, if there is a usable one.
    pub fn get(&self, engine: &Engine, digest: &ComponentDigest) -> Option<Component> {
        let path = self.path(digest);
        // Read into memory rather than map the file: a mapped file truncated underneath a live
        // component (by an operator cleaning up, say) would crash the process with SIGBUS.
        let bytes = std::fs::read(&path).ok()?;
        // SAFETY: files in the cache directory are written only by `put` below, from
        // `Component::serialize` of this process's engine configuration (the engine tag is in the
        // name), and wasmtime checks the artifact's header and compatibility before use. The
        // directory belongs to the agent and is never preopened for a guest.
        match unsafe { Component::deserialize(engine, &bytes) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "discarding unusable cache entry");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores a compiled component. Failure only costs a recompile later, so it is logged.
    pub fn put(&self, digest: &ComponentDigest, component: &Component) {
        let path = self.path(digest);
        let result = component
            .serialize()
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                let tmp = path.with_extension(format!("tmp{}", std::process::id()));
                std::fs::write(&tmp, &bytes)
                    .and_then(|()| std::fs::rename(&tmp, &path))
                    .map_err(|e| {
                        let _ = std::fs::remove_file(&tmp);
                        e.to_string()
                    })
            });
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "cannot write compiled component");
        }
    }
}
