//! The component blob store: framework components, content-addressed by sha256 and capped in
//! size, that agents fetch by digest.
//!
//! Plain data: [`BlobStore::insert`] takes bytes whose digest the caller computed with
//! [`Digest::of`] (outside any lock: hashing a large component takes milliseconds). Components
//! are replicated with the registry (`Command::PutComponent`); this store is the leader's
//! index of them, sharing their bytes.
//!
//! Only components of the `wasmos:framework@0.1.0` world are stored: [`BlobStore::check`] reads
//! the component's top-level import and export sections with `wasmparser` (skipping the bytes of
//! nested core modules and components, so it costs microseconds however large the component)
//! and refuses one that does not export `wasmos:framework/scheduler` and
//! `wasmos:framework/executor`, or imports anything but the world's own interfaces and the WASI
//! 0.2 packages the host links. Then [`wasmos_api::component_contents::check_contents`] walks
//! every nested module and refuses one over a content bound (functions, code, nesting, data,
//! ...), so nothing the master stores costs unbounded memory to compile. Types and code are
//! validated when the framework host compiles the component.
//!
//! Deleting (an operator's, or the leader's collection of components no framework names) goes
//! through the registry too (`Command::DeleteComponent`); see `core/components.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The component preamble and the digest type live in `wasmos-api`, shared with the agent and
/// the Wasm runtime; they are re-exported here under the names the master's code uses.
pub use wasmos_api::component::{
    COMPONENT_PREAMBLE, ComponentDigest as Digest, DigestError, WasmHeader,
};

/// Why a blob was refused or not found.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BlobError {
    /// A digest given by the caller (an upload's expected digest, a framework's
    /// `component_sha256`) is not 64 hex digits.
    #[error(transparent)]
    BadDigest(#[from] DigestError),
    /// The component is larger than the per-component cap; refused before it is hashed or
    /// parsed, and a streamed upload stops reading as soon as it passes the cap.
    #[error(
        "component is {size} bytes, above the master's limit of {limit} bytes per component; \
         shrink it (strip debug info) or raise the limit"
    )]
    TooLarge {
        /// The component's size (for a streamed upload, the bytes received so far), in bytes.
        size: u64,
        /// The per-component cap,
        /// [`MasterConfig::max_component_bytes`](crate::MasterConfig::max_component_bytes).
        limit: u64,
    },
    /// Storing the component would take the store past its total cap. Storing a component
    /// already held never fails this way.
    #[error(
        "the blob store holds {used} of {limit} bytes and cannot take a component of {size} \
         bytes; raise the master's blob store limit"
    )]
    StoreFull {
        /// The refused component's size, in bytes.
        size: u64,
        /// The bytes the store already holds.
        used: u64,
        /// The store's total cap,
        /// [`MasterConfig::max_blob_store_bytes`](crate::MasterConfig::max_blob_store_bytes).
        limit: u64,
    },
    /// The bytes do not start with the component preamble (a core Wasm module, or not Wasm
    /// at all).
    #[error(
        "the uploaded bytes are not a Wasm component (no component preamble); build the \
         framework for wasm32-wasip2 or run `wasm-tools component new` on the module"
    )]
    NotAComponent,
    /// A component, but not of the `wasmos:framework@0.1.0` world: a required export is
    /// missing, it imports an interface the host does not link, or it is truncated or its
    /// top-level sections do not parse.
    /// The text names the offending imports or exports (at most eight).
    #[error(
        "the component is not a wasmos framework (world wasmos:framework@0.1.0): {0}; build it \
         with the wasmos-guest SDK or against wit/framework.wit"
    )]
    NotAFramework(String),
    /// A component over one of the content bounds
    /// ([`wasmos_api::limits::COMPONENT_BOUNDS`]: functions, code, nesting, data, modules,
    /// instances, imports and exports), refused before anything compiles it. The text names
    /// the bound, the value and the limit.
    #[error("component refused before compiling: {0}")]
    Contents(#[from] wasmos_api::component_contents::ContentsError),
    /// An upload whose bytes do not hash to the digest its first chunk announced.
    #[error(
        "the uploaded bytes hash to {actual}, not to the expected {expected}; the upload is \
         corrupt or the wrong file"
    )]
    DigestMismatch {
        /// The digest the uploader announced.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },
    /// Storing the component would take the bytes of components no framework references
    /// (uploads not yet subscribed, components of ended frameworks not yet collected) past
    /// their cap. An upload counts against this until a framework names it, so a client with
    /// no framework cannot fill the store.
    #[error(
        "components no framework references hold {used} of {limit} bytes, and this one of \
         {size} bytes would pass the cap; subscribe a framework with an uploaded component \
         first, delete unused ones (wasmos components delete), or wait for them to be \
         collected"
    )]
    UnreferencedFull {
        /// The refused component's size, in bytes.
        size: u64,
        /// The bytes of unreferenced components already held.
        used: u64,
        /// The cap,
        /// [`MasterConfig::max_unreferenced_component_bytes`](crate::MasterConfig::max_unreferenced_component_bytes).
        limit: u64,
    },
    /// No component with this digest is stored: a framework names a component that was
    /// never uploaded (or was uploaded to a master whose store was lost).
    #[error(
        "component {0} is not in the master's blob store; upload it first \
         (OperatorService.UploadComponent)"
    )]
    Unknown(Digest),
}

/// Components by digest, with a per-component and a total size cap, and for each when a
/// framework last needed it (for [`BlobStore::collectible`]).
///
/// A framework names one component, so the per-component cap is also each framework's quota
/// of the store (uploads carry no principal yet to hold a quota per tenant). Components no
/// framework references are capped together ([`BlobStore::check_unreferenced_room`]) and
/// collected after a grace period.
#[derive(Clone, Debug)]
pub struct BlobStore {
    blobs: BTreeMap<Digest, Stored>,
    used_bytes: u64,
    max_blob_bytes: u64,
    max_total_bytes: u64,
}

#[derive(Clone, Debug)]
struct Stored {
    bytes: Arc<Vec<u8>>,
    /// When a sweep last found it referenced (or first saw it), master clock in
    /// milliseconds; `None` until the first sweep after it was stored.
    needed_ms: Option<u64>,
}

impl BlobStore {
    /// An empty store taking components up to `max_blob_bytes` each and `max_total_bytes` in
    /// all.
    pub fn new(max_blob_bytes: u64, max_total_bytes: u64) -> Self {
        BlobStore {
            blobs: BTreeMap::new(),
            used_bytes: 0,
            max_blob_bytes,
            max_total_bytes,
        }
    }

    /// The per-component cap, for uploaders that want to stop reading early.
    pub fn max_blob_bytes(&self) -> u64 {
        self.max_blob_bytes
    }

    /// Checks that `bytes` may be stored at all (size, preamble, the `wasmos:framework` world's
    /// exports and imports, see [`check_framework_world`]; then what it contains, see
    /// [`wasmos_api::component_contents::check_contents`]), before hashing them.
    pub fn check(&self, bytes: &[u8]) -> Result<(), BlobError> {
        let size = bytes.len() as u64;
        if size > self.max_blob_bytes {
            return Err(BlobError::TooLarge {
                size,
                limit: self.max_blob_bytes,
            });
        }
        check_framework_world(bytes)?;
        wasmos_api::component_contents::check_contents(
            bytes,
            &wasmos_api::limits::COMPONENT_BOUNDS,
        )?;
        Ok(())
    }

    /// Stores `bytes` under `digest`, which must be `Digest::of(&bytes)`. Storing a blob that
    /// is already there changes nothing.
    pub fn insert(&mut self, digest: Digest, bytes: Vec<u8>) -> Result<(), BlobError> {
        self.check(&bytes)?;
        if self.blobs.contains_key(&digest) {
            return Ok(());
        }
        let size = bytes.len() as u64;
        if self.used_bytes.saturating_add(size) > self.max_total_bytes {
            return Err(BlobError::StoreFull {
                size,
                used: self.used_bytes,
                limit: self.max_total_bytes,
            });
        }
        self.used_bytes += size;
        self.blobs.insert(
            digest,
            Stored {
                bytes: Arc::new(bytes),
                needed_ms: None,
            },
        );
        Ok(())
    }

    /// Holds `bytes` under `digest` without checks: for components already in the registry
    /// (checked when they were uploaded), when a master rebuilds its store from it.
    pub fn insert_shared(&mut self, digest: Digest, bytes: Arc<Vec<u8>>) {
        if self.blobs.contains_key(&digest) {
            return;
        }
        self.used_bytes += bytes.len() as u64;
        self.blobs.insert(
            digest,
            Stored {
                bytes,
                needed_ms: None,
            },
        );
    }

    /// Drops the component with this digest; returns its size, or `None` if it was not held.
    pub fn remove(&mut self, digest: &Digest) -> Option<u64> {
        let stored = self.blobs.remove(digest)?;
        let size = stored.bytes.len() as u64;
        self.used_bytes -= size;
        Some(size)
    }

    /// Bytes of the components not in `referenced`.
    pub fn unreferenced_bytes(&self, referenced: &BTreeSet<Digest>) -> u64 {
        self.blobs
            .iter()
            .filter(|(d, _)| !referenced.contains(d))
            .map(|(_, s)| s.bytes.len() as u64)
            .sum()
    }

    /// Refuses a new component of `size` bytes (not yet held) if the components not in
    /// `referenced` would then hold more than `limit` bytes. A component already held is
    /// always accepted (storing it again changes nothing).
    pub fn check_unreferenced_room(
        &self,
        digest: &Digest,
        size: u64,
        referenced: &BTreeSet<Digest>,
        limit: u64,
    ) -> Result<(), BlobError> {
        if self.contains(digest) {
            return Ok(());
        }
        let used = self.unreferenced_bytes(referenced);
        if used.saturating_add(size) > limit {
            return Err(BlobError::UnreferencedFull { size, used, limit });
        }
        Ok(())
    }

    /// One garbage-collection sweep at `now`: components in `referenced` are marked needed
    /// now, ones never swept before start their grace now, and the digests of those not
    /// referenced for more than `grace_ms` are returned (the caller deletes them). A component
    /// uploaded before its framework subscribes therefore has at least `grace_ms` to be named.
    pub fn collectible(
        &mut self,
        referenced: &BTreeSet<Digest>,
        now_ms: u64,
        grace_ms: u64,
    ) -> Vec<Digest> {
        let mut out = Vec::new();
        for (digest, stored) in &mut self.blobs {
            match stored.needed_ms {
                _ if referenced.contains(digest) => stored.needed_ms = Some(now_ms),
                None => stored.needed_ms = Some(now_ms),
                Some(t) if now_ms.saturating_sub(t) > grace_ms => out.push(*digest),
                Some(_) => {}
            }
        }
        out
    }

    /// The component with this digest.
    pub fn get(&self, digest: &Digest) -> Result<Arc<Vec<u8>>, BlobError> {
        self.blobs
            .get(digest)
            .map(|s| s.bytes.clone())
            .ok_or(BlobError::Unknown(*digest))
    }

    /// Whether the store holds this digest.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.blobs.contains_key(digest)
    }

    /// Bytes held.
    pub fn used_bytes(&self) -> u64 {
        self.used_bytes
    }
}

/// The `wasmos:framework` interfaces a framework component must export.
const REQUIRED_EXPORTS: [&str; 2] = ["scheduler", "executor"];
/// The `wasmos:framework` interfaces a framework component may import.
const FRAMEWORK_IMPORTS: [&str; 3] = ["types", "driver", "executor-driver"];
/// The WASI 0.2 packages the host links into every instance (`wasmtime_wasi::p2`).
const WASI_PACKAGES: [&str; 6] = ["cli", "clocks", "filesystem", "io", "random", "sockets"];
/// Most import or export names listed in an error message.
const MAX_LISTED: usize = 8;

/// An interface name `NAMESPACE:PACKAGE/INTERFACE@VERSION`, split.
struct InterfaceName<'a> {
    namespace: &'a str,
    package: &'a str,
    interface: &'a str,
    version: Option<&'a str>,
}

fn interface_name(name: &str) -> Option<InterfaceName<'_>> {
    let (path, version) = match name.split_once('@') {
        Some((p, v)) => (p, Some(v)),
        None => (name, None),
    };
    let (namespace, rest) = path.split_once(':')?;
    let (package, interface) = rest.split_once('/')?;
    Some(InterfaceName {
        namespace,
        package,
        interface,
        version,
    })
}

/// `0.1.0` and later `0.1.x` (compatible by the component model's semver rules).
fn is_framework_version(v: Option<&str>) -> bool {
    v.and_then(|v| v.strip_prefix("0.1."))
        .is_some_and(|patch| patch.parse::<u64>().is_ok())
}

/// Any `0.2.x`, as the host's WASI p2 linker accepts.
fn is_wasi_p2_version(v: Option<&str>) -> bool {
    v.and_then(|v| v.strip_prefix("0.2.")).is_some_and(|rest| {
        rest.split(['-', '+'])
            .next()
            .is_some_and(|p| p.parse::<u64>().is_ok())
    })
}

fn is_framework_interface(name: &str, allowed: &[&str]) -> bool {
    interface_name(name).is_some_and(|n| {
        n.namespace == "wasmos"
            && n.package == "framework"
            && allowed.contains(&n.interface)
            && is_framework_version(n.version)
    })
}

fn is_allowed_import(name: &str) -> bool {
    if is_framework_interface(name, &FRAMEWORK_IMPORTS) {
        return true;
    }
    interface_name(name).is_some_and(|n| {
        n.namespace == "wasi" && WASI_PACKAGES.contains(&n.package) && is_wasi_p2_version(n.version)
    })
}

fn listing(names: &[String]) -> String {
    if names.is_empty() {
        return "nothing".into();
    }
    let mut s = names
        .iter()
        .take(MAX_LISTED)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > MAX_LISTED {
        s.push_str(&format!(" and {} more", names.len() - MAX_LISTED));
    }
    s
}

/// Checks that `bytes` are a component of the `wasmos:framework@0.1.0` world, structurally: the
/// component preamble, then its top-level imports and exports (nested core modules and
/// components are skipped unread). It must export `wasmos:framework/scheduler@0.1.x` and
/// `wasmos:framework/executor@0.1.x`, and import only `wasmos:framework/{types, driver,
/// executor-driver}@0.1.x` and WASI 0.2 interfaces of the packages the host links (cli, clocks,
/// filesystem, io, random, sockets). Other exports are allowed (the host ignores them).
pub fn check_framework_world(bytes: &[u8]) -> Result<(), BlobError> {
    if WasmHeader::of(bytes) != WasmHeader::Component {
        return Err(BlobError::NotAComponent);
    }
    let malformed = |e: wasmparser::BinaryReaderError| {
        BlobError::NotAFramework(format!("cannot parse it: {e}"))
    };
    let mut parser = wasmparser::Parser::new(0);
    let mut data = bytes;
    let mut imports: Vec<String> = Vec::new();
    let mut exports: Vec<String> = Vec::new();
    loop {
        let (payload, consumed) = match parser.parse(data, true).map_err(malformed)? {
            wasmparser::Chunk::Parsed { consumed, payload } => (payload, consumed),
            // Impossible with `eof = true`; treated as a truncated component all the same.
            wasmparser::Chunk::NeedMoreData(_) => {
                return Err(BlobError::NotAFramework("it is truncated".into()));
            }
        };
        data = &data[consumed..];
        match payload {
            wasmparser::Payload::ComponentImportSection(section) => {
                for import in section {
                    imports.push(import.map_err(malformed)?.name.name.to_string());
                }
            }
            wasmparser::Payload::ComponentExportSection(section) => {
                for export in section {
                    exports.push(export.map_err(malformed)?.name.name.to_string());
                }
            }
            wasmparser::Payload::ModuleSection {
                unchecked_range, ..
            }
            | wasmparser::Payload::ComponentSection {
                unchecked_range, ..
            } => {
                // The parser has already stepped over the nested bytes; skip them here too.
                data = data.get(unchecked_range.len()..).ok_or_else(|| {
                    BlobError::NotAFramework("it is truncated inside a nested module".into())
                })?;
            }
            wasmparser::Payload::End(_) => break,
            _ => {}
        }
    }
    for required in REQUIRED_EXPORTS {
        if !exports
            .iter()
            .any(|e| is_framework_interface(e, &[required]))
        {
            return Err(BlobError::NotAFramework(format!(
                "it does not export wasmos:framework/{required}@0.1.0 (it exports {})",
                listing(&exports)
            )));
        }
    }
    let foreign: Vec<String> = imports
        .iter()
        .filter(|i| !is_allowed_import(i))
        .cloned()
        .collect();
    if !foreign.is_empty() {
        return Err(BlobError::NotAFramework(format!(
            "it imports {}, which the host does not provide (only wasmos:framework/types, \
             driver and executor-driver @0.1 and WASI 0.2 cli, clocks, filesystem, io, random \
             and sockets)",
            listing(&foreign)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An example component built by `scripts/build-examples.sh`.
    fn example(name: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples-wasm/target/wasm32-wasip2/release")
            .join(format!("{name}.wasm"));
        std::fs::read(&p).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run scripts/build-examples.sh before the tests",
                p.display()
            )
        })
    }

    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn section(id: u8, content: &[u8], out: &mut Vec<u8>) {
        out.push(id);
        leb(content.len(), out);
        out.extend_from_slice(content);
    }

    fn string(s: &str, out: &mut Vec<u8>) {
        leb(s.len(), out);
        out.extend_from_slice(s.as_bytes());
    }

    /// `bytes` with a custom section appended (still the same component, another digest).
    fn with_custom_section(mut bytes: Vec<u8>, data: &[u8]) -> Vec<u8> {
        let mut content = Vec::new();
        string("padding", &mut content);
        content.extend_from_slice(data);
        section(0, &content, &mut bytes);
        bytes
    }

    /// A hand-encoded component that imports one empty instance named `import` and exports it
    /// under each of `exports`.
    fn reexporting(import: &str, exports: &[&str]) -> Vec<u8> {
        let mut b = COMPONENT_PREAMBLE.to_vec();
        // Type section: one instance type with no declarations.
        section(7, &[0x01, 0x42, 0x00], &mut b);
        // Import section: `import` as an instance of type 0.
        let mut imports = vec![0x01, 0x00];
        string(import, &mut imports);
        imports.extend_from_slice(&[0x05, 0x00]);
        section(10, &imports, &mut b);
        // Export section: instance 0 under every name, with no type ascription.
        let mut out = Vec::new();
        leb(exports.len(), &mut out);
        for name in exports {
            out.push(0x00);
            string(name, &mut out);
            out.extend_from_slice(&[0x05, 0x00, 0x00]);
        }
        section(11, &out, &mut b);
        b
    }

    /// A framework component (pi) with one more core module of `functions` empty functions
    /// that nothing instantiates, encoded by hand.
    fn pi_with_unused_module(functions: usize) -> Vec<u8> {
        let mut module = b"\0asm\x01\0\0\0".to_vec();
        section(1, &[0x01, 0x60, 0x00, 0x00], &mut module);
        let mut funcs = Vec::new();
        leb(functions, &mut funcs);
        funcs.extend(std::iter::repeat_n(0u8, functions));
        section(3, &funcs, &mut module);
        let mut code = Vec::new();
        leb(functions, &mut code);
        for _ in 0..functions {
            code.extend_from_slice(&[0x02, 0x00, 0x0b]);
        }
        section(10, &code, &mut module);
        let mut bytes = example("pi");
        section(1, &module, &mut bytes);
        bytes
    }

    #[test]
    fn a_framework_with_an_unused_module_of_too_many_functions_is_refused() {
        use wasmos_api::limits::MAX_COMPONENT_FUNCTIONS;
        let store = BlobStore::new(64 << 20, 1 << 30);
        // pi's own 223 functions plus the extra module's, at the bound.
        let own = wasmos_api::component_contents::check_contents(
            &example("pi"),
            &wasmos_api::limits::COMPONENT_BOUNDS,
        )
        .unwrap()
        .functions as usize;
        let at_bound = pi_with_unused_module(MAX_COMPONENT_FUNCTIONS as usize - own);
        store.check(&at_bound).unwrap();
        for extra in [MAX_COMPONENT_FUNCTIONS as usize - own + 1, 100_000] {
            let e = store.check(&pi_with_unused_module(extra)).unwrap_err();
            assert!(matches!(e, BlobError::Contents(_)), "{e:?}");
            let text = e.to_string();
            assert!(
                text.contains("MAX_COMPONENT_FUNCTIONS")
                    && text.contains(&format!("{}", own + extra))
                    && text.contains("before compiling"),
                "{text}"
            );
        }
    }

    const SCHEDULER: &str = "wasmos:framework/scheduler@0.1.0";
    const EXECUTOR: &str = "wasmos:framework/executor@0.1.0";

    #[test]
    fn stores_by_digest_once_and_counts_bytes() {
        let mut store = BlobStore::new(1 << 20, 10 << 20);
        let c = example("pi");
        let d = Digest::of(&c);
        store.insert(d, c.clone()).unwrap();
        store.insert(d, c.clone()).unwrap();
        assert_eq!(store.used_bytes(), c.len() as u64);
        assert_eq!(*store.get(&d).unwrap(), c);
        assert_eq!(Digest::parse(&d.to_string()).unwrap(), d);
    }

    #[test]
    fn refuses_what_does_not_fit_or_is_not_a_component() {
        let pi = example("pi");
        let size = pi.len() as u64;
        let mut store = BlobStore::new(size + 100, size + 150);
        let big = with_custom_section(pi.clone(), &[0; 200]);
        assert!(matches!(
            store.insert(Digest::of(&big), big),
            Err(BlobError::TooLarge { .. })
        ));
        let module = b"\0asm\x01\0\0\0".to_vec();
        assert_eq!(
            store.insert(Digest::of(&module), module),
            Err(BlobError::NotAComponent)
        );
        let a = with_custom_section(pi.clone(), &[1; 10]);
        let b = with_custom_section(pi, &[2; 10]);
        store.insert(Digest::of(&a), a).unwrap();
        assert!(matches!(
            store.insert(Digest::of(&b), b),
            Err(BlobError::StoreFull { .. })
        ));
    }

    #[test]
    fn every_example_framework_is_of_the_world() {
        for name in ["pi", "logreg", "service", "hostile", "benchguest"] {
            check_framework_world(&example(name)).unwrap_or_else(|e| panic!("{name} refused: {e}"));
        }
        check_framework_world(&reexporting(
            "wasmos:framework/driver@0.1.3",
            &[SCHEDULER, EXECUTOR, "extra"],
        ))
        .expect("a later 0.1 patch and an extra export are fine");
    }

    #[test]
    fn a_component_of_another_world_is_refused_saying_what_is_missing() {
        let e = check_framework_world(&example("wrongworld")).unwrap_err();
        assert!(matches!(e, BlobError::NotAFramework(_)), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("does not export wasmos:framework/scheduler@0.1.0")
                && text.contains("it exports greet")
                && text.contains("not a wasmos framework"),
            "{text}"
        );

        let e = check_framework_world(&reexporting("wasi:io/streams@0.2.6", &[SCHEDULER]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("wasmos:framework/executor@0.1.0"), "{e}");

        let e = check_framework_world(&reexporting(
            "wasi:io/streams@0.2.6",
            &["wasmos:framework/scheduler@0.2.0", EXECUTOR],
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("does not export wasmos:framework/scheduler"),
            "{e}"
        );

        // An empty component: the preamble and nothing else.
        let e = check_framework_world(&COMPONENT_PREAMBLE)
            .unwrap_err()
            .to_string();
        assert!(e.contains("it exports nothing"), "{e}");
    }

    #[test]
    fn imports_the_host_does_not_provide_are_refused_by_name() {
        for foreign in [
            "other:pkg/thing@1.0.0",
            "wasi:http/types@0.2.0",
            "wasi:cli/environment@0.3.0",
            "wasmos:framework/scheduler@0.1.0",
            "wasmos:framework/driver@1.0.0",
            "plain-function",
        ] {
            let e =
                check_framework_world(&reexporting(foreign, &[SCHEDULER, EXECUTOR])).unwrap_err();
            assert!(matches!(e, BlobError::NotAFramework(_)), "{e:?}");
            let text = e.to_string();
            assert!(
                text.contains(&format!("it imports {foreign}"))
                    && text.contains("does not provide"),
                "{text}"
            );
        }
    }

    #[test]
    fn truncated_and_garbage_components_are_refused() {
        let pi = example("pi");
        let e = check_framework_world(&pi[..pi.len() / 2]).unwrap_err();
        assert!(
            matches!(&e, BlobError::NotAFramework(m) if m.contains("truncated") || m.contains("cannot parse")),
            "{e:?}"
        );
        let mut garbage = COMPONENT_PREAMBLE.to_vec();
        garbage.extend((0..5000u32).map(|i| (i as u8).wrapping_mul(31).wrapping_add(7)));
        let e = check_framework_world(&garbage).unwrap_err();
        assert!(matches!(e, BlobError::NotAFramework(_)), "{e:?}");
    }

    #[test]
    fn unknown_and_malformed_digests_say_so() {
        let store = BlobStore::new(10, 10);
        let d = Digest::of(b"x");
        let e = store.get(&d).unwrap_err().to_string();
        assert!(
            e.contains(&d.to_string()) && e.contains("upload it first"),
            "{e}"
        );
        assert!(matches!(
            Digest::parse("xyz").map_err(BlobError::from),
            Err(BlobError::BadDigest { .. })
        ));
    }
}
