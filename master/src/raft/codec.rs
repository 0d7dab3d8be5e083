//! The one binary encoding of everything Raft stores or sends: log entries, votes, snapshots
//! (the serialized registry) and the payloads of the Raft RPCs.
//!
//! postcard: compact (a component's bytes take their own size plus a length prefix, where JSON
//! took about four times as much), deterministic, and not self-describing, so every type it
//! carries must serialize the same fields in the same order on every master. Enums are
//! externally tagged for that reason.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// An encoding or decoding failure.
pub type Error = postcard::Error;

/// Encodes `value`.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    postcard::to_allocvec(value)
}

/// Decodes a value that [`to_vec`] encoded; bytes left over are an error, so a record with
/// trailing garbage is not taken for a good one.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let (value, rest) = postcard::take_from_bytes(bytes)?;
    if !rest.is_empty() {
        return Err(postcard::Error::DeserializeBadEncoding);
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Command;

    #[test]
    fn bytes_take_their_own_size() {
        let command = Command::PutComponent {
            sha256: "ab".repeat(32),
            bytes: crate::registry::BlobBytes::from(vec![7u8; 100_000]),
        };
        let encoded = to_vec(&command).unwrap();
        assert!(encoded.len() < 100_100, "{} bytes", encoded.len());
        assert_eq!(from_slice::<Command>(&encoded).unwrap(), command);
        let mut trailing = encoded.clone();
        trailing.push(0);
        assert!(from_slice::<Command>(&trailing).is_err());
    }
}
