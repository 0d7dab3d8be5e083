//! Target `component_upload`: the checks an uploaded component passes on the master before it
//! is stored (`BlobStore::check`: size, preamble, the `wasmos:framework` world's imports and
//! exports, the content bounds of `check_contents`), on bytes as they arrive in
//! `UploadComponent` chunks. Nothing panics, and what the checks accept is stored and read back
//! unchanged.

use prost::Message;
use wasmos_api::component::COMPONENT_PREAMBLE;
use wasmos_api::component_contents::check_contents;
use wasmos_api::limits::COMPONENT_BOUNDS;
use wasmos_api::proto as pb;
use wasmos_api::{ComponentDigest, WasmHeader};
use wasmos_master::blobs::{BlobStore, check_framework_world};

use crate::input::Input;

/// The preamble of a core module, to start inputs past the header check.
const MODULE_PREAMBLE: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
/// The per-component cap of the harness's store: larger than any input libFuzzer makes by
/// default, so that what passes the cap is parsed.
const MAX_BLOB: u64 = 1 << 20;

/// The first byte chooses how the rest becomes a component: as is, after a component or a
/// core module preamble, or assembled from prost-decoded upload chunks as the operator
/// service assembles them.
pub fn component_upload(data: &[u8]) {
    let mut input = Input::new(data);
    let bytes = match input.byte() % 4 {
        0 => input.rest().to_vec(),
        1 => [&COMPONENT_PREAMBLE[..], input.rest()].concat(),
        2 => [&MODULE_PREAMBLE[..], input.rest()].concat(),
        _ => {
            let mut bytes = Vec::new();
            let mut first = true;
            while !input.is_empty() {
                let Ok(chunk) = pb::UploadComponentChunk::decode(input.chunk(1024)) else {
                    return;
                };
                if first && !chunk.expected_sha256.is_empty() {
                    let _ = ComponentDigest::parse(&chunk.expected_sha256);
                }
                first = false;
                bytes.extend_from_slice(&chunk.data);
            }
            bytes
        }
    };
    let _ = WasmHeader::of(&bytes);
    // The bounds walk on its own, as the agent's and the master's other callers use it.
    let _ = check_contents(&bytes, &COMPONENT_BOUNDS);

    let mut store = BlobStore::new(MAX_BLOB, 4 * MAX_BLOB);
    match store.check(&bytes) {
        Ok(()) => {
            assert!(check_framework_world(&bytes).is_ok());
            let digest = ComponentDigest::of(&bytes);
            store
                .insert(digest, bytes.clone())
                .expect("a checked component fits an empty store");
            let back = store.get(&digest).expect("a stored component is found");
            assert!(*back == bytes, "a stored component changed");
            assert!(digest.verify(&back).is_ok());
        }
        Err(_) => {
            let digest = ComponentDigest::of(&bytes);
            assert!(
                store.insert(digest, bytes).is_err(),
                "a component the checks refuse was stored"
            );
        }
    }
}
