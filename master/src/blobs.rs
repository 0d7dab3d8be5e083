//! The component blob store: framework components, content-addressed by sha256 and capped in
//! size, that agents fetch by digest.
//!
//! Plain data: [`BlobStore::insert`] takes bytes whose digest the caller computed with
//! [`Digest::of`] (outside any lock: hashing a large component takes milliseconds). Kept in
//! memory for now; the Raft issue replicates the blobs with the registry. Checking that a blob
//! is a component of the `wasmos:framework` world (not just a component) needs wasmtime and
//! belongs to the framework host.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use sha2::Digest as _;

/// The first eight bytes of every binary Wasm component: the `\0asm` magic, then layer 1,
/// version 0x0d (the component-model encoding; a core module has layer 0, version 1).
const COMPONENT_PREAMBLE: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

/// A sha256 digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(sha2::Sha256::digest(bytes).into())
    }

    /// Parses 64 hex digits (either case).
    pub fn parse(hex_digits: &str) -> Result<Self, BlobError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_digits, &mut out).map_err(|_| BlobError::BadDigest {
            digest: hex_digits.chars().take(80).collect(),
        })?;
        Ok(Digest(out))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Why a blob was refused or not found.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BlobError {
    #[error("component digest {digest:?} is not a sha256: give 64 hex digits")]
    BadDigest { digest: String },
    #[error(
        "component is {size} bytes, above the master's limit of {limit} bytes per component; \
         shrink it (strip debug info) or raise the limit"
    )]
    TooLarge { size: u64, limit: u64 },
    #[error(
        "the blob store holds {used} of {limit} bytes and cannot take a component of {size} \
         bytes; raise the master's blob store limit"
    )]
    StoreFull { size: u64, used: u64, limit: u64 },
    #[error(
        "the uploaded bytes are not a Wasm component (no component preamble); build the \
         framework for wasm32-wasip2 or run `wasm-tools component new` on the module"
    )]
    NotAComponent,
    #[error(
        "the uploaded bytes hash to {actual}, not to the expected {expected}; the upload is \
         corrupt or the wrong file"
    )]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error(
        "component {0} is not in the master's blob store; upload it first \
         (OperatorService.UploadComponent)"
    )]
    Unknown(Digest),
}

/// Components by digest, with a per-component and a total size cap.
#[derive(Clone, Debug)]
pub struct BlobStore {
    blobs: BTreeMap<Digest, Arc<Vec<u8>>>,
    used_bytes: u64,
    max_blob_bytes: u64,
    max_total_bytes: u64,
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

    /// Checks that `bytes` may be stored at all (size, preamble), before hashing them.
    pub fn check(&self, bytes: &[u8]) -> Result<(), BlobError> {
        let size = bytes.len() as u64;
        if size > self.max_blob_bytes {
            return Err(BlobError::TooLarge {
                size,
                limit: self.max_blob_bytes,
            });
        }
        if !bytes.starts_with(&COMPONENT_PREAMBLE) {
            return Err(BlobError::NotAComponent);
        }
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
        self.blobs.insert(digest, Arc::new(bytes));
        Ok(())
    }

    /// The component with this digest.
    pub fn get(&self, digest: &Digest) -> Result<Arc<Vec<u8>>, BlobError> {
        self.blobs
            .get(digest)
            .cloned()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn component(tail: &[u8]) -> Vec<u8> {
        let mut b = COMPONENT_PREAMBLE.to_vec();
        b.extend_from_slice(tail);
        b
    }

    #[test]
    fn stores_by_digest_once_and_counts_bytes() {
        let mut store = BlobStore::new(100, 1000);
        let c = component(b"abc");
        let d = Digest::of(&c);
        store.insert(d, c.clone()).unwrap();
        store.insert(d, c.clone()).unwrap();
        assert_eq!(store.used_bytes(), c.len() as u64);
        assert_eq!(*store.get(&d).unwrap(), c);
        assert_eq!(Digest::parse(&d.to_string()).unwrap(), d);
    }

    #[test]
    fn refuses_what_does_not_fit_or_is_not_a_component() {
        let mut store = BlobStore::new(20, 30);
        let big = component(&[0; 20]);
        assert!(matches!(
            store.insert(Digest::of(&big), big),
            Err(BlobError::TooLarge { .. })
        ));
        let module = b"\0asm\x01\0\0\0".to_vec();
        assert_eq!(
            store.insert(Digest::of(&module), module),
            Err(BlobError::NotAComponent)
        );
        let a = component(&[1; 10]);
        let b = component(&[2; 10]);
        store.insert(Digest::of(&a), a).unwrap();
        assert!(matches!(
            store.insert(Digest::of(&b), b),
            Err(BlobError::StoreFull { .. })
        ));
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
            Digest::parse("xyz"),
            Err(BlobError::BadDigest { .. })
        ));
    }
}
