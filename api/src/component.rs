//! A framework component's identity and binary header: [`ComponentDigest`], the sha256 of its
//! bytes (how the master's blob store, the agent's fetcher and the Wasm runtime's cache all name
//! a component), and [`WasmHeader`], what its first eight bytes say it is.
//!
//! What lives elsewhere: whether a component is of the `wasmos:framework` world (the master's
//! blob store reads its top-level imports and exports with `wasmparser`, a dependency this crate
//! does not take), and compiling it (`wasmos-wasm-executor`). Each caller turns a refused header
//! or a mismatched digest into its own error, whose message names its own context.

use std::fmt;

use sha2::{Digest as _, Sha256};

/// The first eight bytes of every binary Wasm component: the `\0asm` magic, then version 0x0d
/// and layer 1 (the component-model encoding; a core module has version 1, layer 0).
pub const COMPONENT_PREAMBLE: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

/// The Wasm magic, the first four bytes of every binary module or component.
const WASM_MAGIC: [u8; 4] = [0x00, 0x61, 0x73, 0x6d];

/// Longest part of a malformed digest quoted back in [`DigestError`], in characters.
const MAX_QUOTED_DIGEST_CHARS: usize = 80;

/// The sha256 of a component's bytes: its identity everywhere in wasmos.
///
/// It shows (`Display`) as 64 lower-case hex digits, the form the wire (`component_sha256`,
/// `sha256` fields) and the registry use; [`ComponentDigest::parse`] reads that form back.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentDigest(pub [u8; 32]);

impl ComponentDigest {
    /// The digest of `bytes`. Hashing costs about a millisecond per few MiB, so callers that
    /// hold a lock hash outside it.
    pub fn of(bytes: &[u8]) -> Self {
        ComponentDigest(Sha256::digest(bytes).into())
    }

    /// Parses 64 hex digits (either case).
    pub fn parse(hex_digits: &str) -> Result<Self, DigestError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_digits, &mut out).map_err(|_| DigestError {
            digest: hex_digits.chars().take(MAX_QUOTED_DIGEST_CHARS).collect(),
        })?;
        Ok(ComponentDigest(out))
    }

    /// 64 lower-case hex digits (the same as `to_string()`).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Checks that `bytes` hash to this digest; on a mismatch, says what they hash to.
    pub fn verify(&self, bytes: &[u8]) -> Result<(), DigestMismatch> {
        let actual = ComponentDigest::of(bytes);
        if actual == *self {
            Ok(())
        } else {
            Err(DigestMismatch {
                expected: *self,
                actual,
            })
        }
    }
}

impl fmt::Display for ComponentDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ComponentDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ComponentDigest({})", self.to_hex())
    }
}

/// A component digest that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("component digest {digest:?} is not a sha256: give 64 hex digits")]
pub struct DigestError {
    /// The text that was given, cut to its first 80 characters.
    pub digest: String,
}

/// Bytes that do not hash to the digest they were expected to have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the bytes hash to {actual}, not to the expected {expected}")]
pub struct DigestMismatch {
    /// The digest the bytes were fetched or uploaded under.
    pub expected: ComponentDigest,
    /// The digest of the bytes themselves.
    pub actual: ComponentDigest,
}

/// What the first eight bytes of a Wasm binary say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmHeader {
    /// Fewer than eight bytes, or no `\0asm` magic: not WebAssembly at all.
    NotWasm,
    /// A core module (layer 0), not a component.
    CoreModule,
    /// Exactly [`COMPONENT_PREAMBLE`]: a component in the encoding wasmos builds and runs.
    Component,
    /// The magic and a non-zero layer, but another version than [`COMPONENT_PREAMBLE`]'s: a
    /// component encoding this build does not know (a compiler names the version it cannot
    /// read).
    OtherComponentVersion,
}

impl WasmHeader {
    /// Reads the header of `bytes`; nothing past the first eight bytes is looked at.
    pub fn of(bytes: &[u8]) -> Self {
        if bytes.len() < COMPONENT_PREAMBLE.len() || bytes[..4] != WASM_MAGIC {
            return WasmHeader::NotWasm;
        }
        // Bytes 4..6 are the version, 6..8 the layer.
        if bytes[6..8] == [0, 0] {
            return WasmHeader::CoreModule;
        }
        if bytes.starts_with(&COMPONENT_PREAMBLE) {
            WasmHeader::Component
        } else {
            WasmHeader::OtherComponentVersion
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_round_trip_through_hex_and_show_as_hex() {
        let d = ComponentDigest::of(b"x");
        assert_eq!(d.to_string(), d.to_hex());
        assert_eq!(d.to_hex().len(), 64);
        assert_eq!(ComponentDigest::parse(&d.to_hex()).unwrap(), d);
        assert_eq!(
            ComponentDigest::parse(&d.to_hex().to_uppercase()).unwrap(),
            d
        );
    }

    #[test]
    fn malformed_digests_are_refused_quoting_at_most_80_characters() {
        let e = ComponentDigest::parse("xyz").unwrap_err();
        assert_eq!(
            e.to_string(),
            "component digest \"xyz\" is not a sha256: give 64 hex digits"
        );
        let long = "z".repeat(200);
        assert_eq!(ComponentDigest::parse(&long).unwrap_err().digest.len(), 80);
    }

    #[test]
    fn verify_names_both_digests() {
        let d = ComponentDigest::of(b"x");
        assert_eq!(d.verify(b"x"), Ok(()));
        let m = d.verify(b"y").unwrap_err();
        assert_eq!((m.expected, m.actual), (d, ComponentDigest::of(b"y")));
    }

    #[test]
    fn headers_are_told_apart() {
        assert_eq!(WasmHeader::of(b""), WasmHeader::NotWasm);
        assert_eq!(WasmHeader::of(b"\0asm\x0d\0"), WasmHeader::NotWasm);
        assert_eq!(WasmHeader::of(b"ELF\0\0\0\0\0"), WasmHeader::NotWasm);
        assert_eq!(WasmHeader::of(b"\0asm\x01\0\0\0"), WasmHeader::CoreModule);
        assert_eq!(WasmHeader::of(&COMPONENT_PREAMBLE), WasmHeader::Component);
        assert_eq!(
            WasmHeader::of(b"\0asm\x0e\0\x01\0"),
            WasmHeader::OtherComponentVersion
        );
    }
}
