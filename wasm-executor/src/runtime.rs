//! [`WasmRuntime`]: the process's one `Engine`, its `Linker`, and the loaded-component table.
//!
//! Loading a component validates it (a component, of the `wasmos:framework` world), compiles it
//! or takes it from the disk cache, and pre-links it into an `InstancePre`, so every later
//! instantiation is a few microseconds with the pooling allocator.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use wasmos_api::{ComponentDigest, WasmHeader};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::cli::StdoutStream;

use crate::bindings::FrameworkPre;
use crate::cache::DiskCache;
use crate::compile::{Compiler, compile_in_child, engine_config};
use crate::config::{LimitMode, RuntimeConfig, TaskLimits};
use crate::error::ComponentError;
use crate::host::{HostState, Limiter, Role};
use crate::output::CappedOutput;

/// A validated, compiled, pre-linked component.
pub struct LoadedComponent {
    digest: ComponentDigest,
    pub(crate) pre: FrameworkPre<HostState>,
    size: usize,
}

impl LoadedComponent {
    /// The sha256 of the component's bytes.
    pub fn digest(&self) -> ComponentDigest {
        self.digest
    }

    /// Size of the component's bytes.
    pub fn size(&self) -> usize {
        self.size
    }
}

struct Inner {
    engine: Engine,
    linker: Linker<HostState>,
    config: RuntimeConfig,
    loaded: Mutex<LoadedTable>,
    disk: Option<DiskCache>,
    compiles: AtomicU64,
    stop_ticker: Arc<AtomicBool>,
    /// How many [`ComponentLease`]s each component has.
    leases: Mutex<HashMap<ComponentDigest, usize>>,
}

/// A user's claim on a loaded component (a framework on an agent, a hosted scheduler on the
/// master), from [`WasmRuntime::lease`]. When the last lease of a component is dropped, the
/// component is unloaded from the in-memory table ([`WasmRuntime::unload`]), so the memory of
/// its machine code goes back once no instance holds it, instead of waiting for the table's
/// bound to push it out.
pub struct ComponentLease {
    runtime: std::sync::Weak<Inner>,
    digest: ComponentDigest,
}

impl ComponentLease {
    /// The leased component's digest.
    pub fn digest(&self) -> ComponentDigest {
        self.digest
    }
}

impl Drop for ComponentLease {
    fn drop(&mut self) {
        let Some(inner) = self.runtime.upgrade() else {
            return;
        };
        let last = {
            let mut leases = inner.leases.lock().unwrap_or_else(|p| p.into_inner());
            match leases.get_mut(&self.digest) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                _ => {
                    leases.remove(&self.digest);
                    true
                }
            }
        };
        if last {
            WasmRuntime { inner }.unload(&self.digest);
            tracing::debug!(
                digest = %format_args!("sha256:{}", self.digest),
                "last user gone: component unloaded"
            );
        }
    }
}

/// The compiled components in memory, by digest, each with when it was last used (a counter),
/// bounded by [`RuntimeConfig::max_loaded_components`].
#[derive(Default)]
struct LoadedTable {
    entries: HashMap<ComponentDigest, (Arc<LoadedComponent>, u64)>,
    clock: u64,
}

impl LoadedTable {
    fn get(&mut self, digest: &ComponentDigest) -> Option<Arc<LoadedComponent>> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(digest).map(|(c, used)| {
            *used = clock;
            c.clone()
        })
    }

    /// Inserts `c`, then drops least recently used entries nobody else holds until at most
    /// `max` remain (or only held ones do).
    fn insert(&mut self, c: Arc<LoadedComponent>, max: usize) {
        self.clock += 1;
        self.entries.insert(c.digest, (c, self.clock));
        while self.entries.len() > max {
            let idle = self
                .entries
                .iter()
                .filter(|(_, (c, _))| Arc::strong_count(c) == 1)
                .min_by_key(|(_, (_, used))| *used)
                .map(|(d, _)| *d);
            match idle {
                Some(d) => {
                    self.entries.remove(&d);
                }
                None => break,
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

/// The Wasm runtime of one process. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct WasmRuntime {
    inner: Arc<Inner>,
}

/// The engine could not be created.
#[derive(Debug, thiserror::Error)]
#[error("cannot create the Wasm engine: {0}")]
pub struct EngineError(pub String);

impl WasmRuntime {
    /// Creates the engine (reserving the pooling allocator's slots), the linker with WASI p2 and
    /// the framework imports, the disk cache if configured, and, for epoch metering, the ticker
    /// thread.
    pub fn new(config: RuntimeConfig) -> Result<Self, EngineError> {
        let mut wt: Config = engine_config(config.limit_mode, config.max_wasm_stack);
        if let Some(p) = &config.pooling {
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(p.total_component_instances)
                .total_core_instances(p.total_component_instances.saturating_mul(4))
                .total_memories(p.total_memories)
                .total_tables(p.total_tables)
                .total_stacks(p.total_component_instances)
                .max_memory_size(p.max_memory_bytes);
            wt.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&wt).map_err(|e| EngineError(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| EngineError(format!("linking WASI: {e:#}")))?;
        crate::bindings::Framework::add_to_linker::<_, wasmtime::component::HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| EngineError(format!("linking the framework imports: {e:#}")))?;
        let disk = match &config.cache_dir {
            Some(dir) => Some(DiskCache::new(dir, &engine).map_err(|e| {
                EngineError(format!(
                    "cannot create cache directory {}: {e}",
                    dir.display()
                ))
            })?),
            None => None,
        };
        let stop_ticker = Arc::new(AtomicBool::new(false));
        if config.limit_mode == LimitMode::Epoch {
            let weak = engine.weak();
            let stop = stop_ticker.clone();
            let tick = config.epoch_tick;
            std::thread::Builder::new()
                .name("wasmos-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        match weak.upgrade() {
                            Some(engine) => engine.increment_epoch(),
                            None => break,
                        }
                    }
                })
                .map_err(|e| EngineError(format!("cannot start the epoch thread: {e}")))?;
        }
        Ok(WasmRuntime {
            inner: Arc::new(Inner {
                engine,
                linker,
                config,
                loaded: Mutex::new(LoadedTable::default()),
                disk,
                compiles: AtomicU64::new(0),
                stop_ticker,
                leases: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The configuration this runtime was created with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// How many components this runtime compiled (rather than took from a cache).
    pub fn compile_count(&self) -> u64 {
        self.inner.compiles.load(Ordering::Relaxed)
    }

    /// Reads and loads a component file.
    pub fn load_file(&self, path: &Path) -> Result<Arc<LoadedComponent>, ComponentError> {
        let bytes = std::fs::read(path).map_err(|source| ComponentError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        self.load(&bytes)
    }

    /// Validates, compiles (or takes from a cache) and pre-links a component. Blocking: it may
    /// compile for a while; from async code use [`WasmRuntime::load_async`].
    pub fn load(&self, bytes: &[u8]) -> Result<Arc<LoadedComponent>, ComponentError> {
        check_header(bytes, self.inner.config.max_component_bytes)?;
        let digest = ComponentDigest::of(bytes);
        if let Some(c) = self.lock_loaded().get(&digest) {
            return Ok(c);
        }
        let engine = &self.inner.engine;
        let cached = self
            .inner
            .disk
            .as_ref()
            .and_then(|d| d.get(engine, &digest));
        let from_disk = cached.is_some();
        let component = match cached {
            Some(c) => c,
            None => {
                check_bounds(bytes)?;
                self.inner.compiles.fetch_add(1, Ordering::Relaxed);
                self.compile(bytes)?
            }
        };
        let instance_pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|e| ComponentError::WrongWorld(root_message(&e)))?;
        let pre = FrameworkPre::new(instance_pre)
            .map_err(|e| ComponentError::WrongWorld(root_message(&e)))?;
        if !from_disk && let Some(d) = &self.inner.disk {
            d.put(&digest, &component);
        }
        let loaded = Arc::new(LoadedComponent {
            digest,
            pre,
            size: bytes.len(),
        });
        self.lock_loaded()
            .insert(loaded.clone(), self.inner.config.max_loaded_components);
        tracing::debug!(
            digest = %format_args!("sha256:{digest}"),
            from_disk,
            "component loaded"
        );
        Ok(loaded)
    }

    /// Compiles content-checked `bytes` with the configured [`Compiler`].
    fn compile(&self, bytes: &[u8]) -> Result<Component, ComponentError> {
        let engine = &self.inner.engine;
        match &self.inner.config.compiler {
            Compiler::InProcess => {
                Component::new(engine, bytes).map_err(|e| ComponentError::Invalid(root_message(&e)))
            }
            Compiler::Subprocess(child) => {
                let artifact = compile_in_child(child, &self.inner.config, bytes)?;
                // SAFETY: `deserialize` trusts the bytes to be wasmtime's own output. They are:
                // the artifact of `Engine::precompile_component`, run by our compiler child (the
                // configured program, this same build) on the component we content-checked
                // above, read from the child's stdout pipe that nothing else writes to. wasmtime
                // still checks the header and that the artifact matches this engine's
                // configuration, and refuses it otherwise.
                unsafe { Component::deserialize(engine, &artifact) }
                    .map_err(|e| ComponentError::Artifact(root_message(&e)))
            }
        }
    }

    /// [`WasmRuntime::load`] on a blocking thread.
    pub async fn load_async(&self, bytes: Vec<u8>) -> Result<Arc<LoadedComponent>, ComponentError> {
        let rt = self.clone();
        tokio::task::spawn_blocking(move || rt.load(&bytes))
            .await
            .map_err(|e| ComponentError::Invalid(format!("compilation thread failed: {e}")))?
    }

    /// A component loaded earlier, by digest.
    pub fn get(&self, digest: &ComponentDigest) -> Option<Arc<LoadedComponent>> {
        self.lock_loaded().get(digest)
    }

    /// How many compiled components the in-memory table holds (at most
    /// [`RuntimeConfig::max_loaded_components`] unless more are in use).
    pub fn loaded_count(&self) -> usize {
        self.lock_loaded().entries.len()
    }

    /// Drops the compiled component from the in-memory table (a framework that ended); its
    /// memory is freed once no executor or scheduler holds it. The disk cache keeps it.
    pub fn unload(&self, digest: &ComponentDigest) {
        self.lock_loaded().entries.remove(digest);
    }

    /// Claims the component `digest` for one user until the lease is dropped; the last lease
    /// dropped unloads it (see [`ComponentLease`]).
    pub fn lease(&self, digest: ComponentDigest) -> ComponentLease {
        *self
            .inner
            .leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(digest)
            .or_default() += 1;
        ComponentLease {
            runtime: Arc::downgrade(&self.inner),
            digest,
        }
    }

    fn lock_loaded(&self) -> std::sync::MutexGuard<'_, LoadedTable> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts).
        self.inner.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates a store without a filesystem, instantiates `component` in it, and drops both:
    /// the cost of starting a fresh executor instance, less its sandbox directory. For
    /// benchmarks and health checks.
    pub async fn instantiate_probe(
        &self,
        component: &LoadedComponent,
        limits: &TaskLimits,
    ) -> Result<(), crate::TaskError> {
        let role = Role::Executor {
            events: None,
            task_id: String::new(),
            framework_id: String::new(),
            log: Default::default(),
            stderr: None,
        };
        let mut store = self
            .new_store(
                limits,
                role,
                None,
                None::<CappedOutput>,
                None::<CappedOutput>,
            )
            .map_err(|e| crate::TaskError::Instantiate(root_message(&e)))?;
        component
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| crate::TaskError::Instantiate(root_message(&e)))?;
        Ok(())
    }

    /// A fresh store for one instance: WASI with only `sandbox` preopened (as `/`), no network,
    /// no environment, stdout/stderr to the given streams (capped files, or a scheduler's
    /// in-memory tail), limits installed.
    pub(crate) fn new_store(
        &self,
        limits: &TaskLimits,
        role: Role,
        sandbox: Option<&Path>,
        stdout: Option<impl StdoutStream + 'static>,
        stderr: Option<impl StdoutStream + 'static>,
    ) -> wasmtime::Result<Store<HostState>> {
        let mut b = WasiCtxBuilder::new();
        b.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if let Some(out) = stdout {
            b.stdout(out);
        }
        if let Some(err) = stderr {
            b.stderr(err);
        }
        if let Some(dir) = sandbox {
            b.preopened_dir(dir, "/", wasmtime_wasi::FsPerms::ReadWrite)?;
        }
        let state = HostState {
            wasi: b.build(),
            table: ResourceTable::new(),
            limiter: Limiter {
                memory_bytes: limits.memory_bytes,
                max_table_elements: limits.max_table_elements,
                max_tables: limits.max_tables,
                max_memories: limits.max_memories,
                max_instances: limits.max_instances,
                denied_memory: None,
            },
            role,
        };
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|s| &mut s.limiter);
        // What one import call may copy out of the guest, however its lists alias.
        store.set_hostcall_fuel(wasmos_api::limits::MAX_GUEST_CALL_BYTES);
        match self.inner.config.limit_mode {
            LimitMode::Fuel => {
                store.set_fuel(limits.fuel.unwrap_or(u64::MAX))?;
                store.fuel_async_yield_interval(Some(self.inner.config.yield_interval_fuel))?;
            }
            LimitMode::Epoch => {
                store.set_epoch_deadline(1);
                store.epoch_deadline_async_yield_and_update(1);
            }
            LimitMode::Unmetered => {}
        }
        Ok(store)
    }
}

/// The innermost message of a wasmtime error, which is the one that names the problem.
pub(crate) fn root_message(e: &wasmtime::Error) -> String {
    let mut parts: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    parts.dedup();
    parts.join(": ")
}

/// Refuses a component over the content bounds before compiling it: the compiler's memory and
/// time grow with what is inside (a 2.9 MB component of 100,000 functions took 1.4 GB to
/// compile), and an agent or a framework host must not depend on the master having checked.
/// Bytes that do not parse are left to the compiler, whose message names the problem.
fn check_bounds(bytes: &[u8]) -> Result<(), ComponentError> {
    use wasmos_api::component_contents::{ContentsError, check_contents};
    match check_contents(bytes, &wasmos_api::limits::COMPONENT_BOUNDS) {
        Ok(_) | Err(ContentsError::Malformed(_)) => Ok(()),
        Err(e) => Err(ComponentError::OverBound(e)),
    }
}

/// Cheap checks that give a precise message before the compiler gives a generic one.
fn check_header(bytes: &[u8], limit: usize) -> Result<(), ComponentError> {
    if bytes.is_empty() {
        return Err(ComponentError::Empty);
    }
    if bytes.len() > limit {
        return Err(ComponentError::TooLarge {
            size: bytes.len(),
            limit,
        });
    }
    match WasmHeader::of(bytes) {
        WasmHeader::NotWasm => Err(ComponentError::NotWasm),
        WasmHeader::CoreModule => Err(ComponentError::CoreModule),
        // Another component version is left to the compiler, whose message names it.
        WasmHeader::Component | WasmHeader::OtherComponentVersion => Ok(()),
    }
}
