//! Value framing: `crc32c(json) (4 bytes, little endian) || json`. JSON
//! keeps records readable in a backup; the checksum catches a torn or
//! flipped value that sled itself would hand back without complaint.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::StoreError;

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    let json = serde_json::to_vec(value)
        .map_err(|e| StoreError::Invariant(format!("encoding a record: {e}")))?;
    Ok(encode_raw(&json))
}

pub fn decode<T: DeserializeOwned>(key: &[u8], raw: &[u8]) -> Result<T, StoreError> {
    let json = decode_raw(key, raw)?;
    serde_json::from_slice(json).map_err(|e| StoreError::Corrupt {
        key: key_name(key),
        detail: e.to_string(),
    })
}

/// A stored key as reports name it: printable ASCII as it is, other bytes
/// escaped (`\x00`). Keys are ids, digests and indices, never personal data.
pub fn key_name(key: &[u8]) -> String {
    key.escape_ascii().to_string()
}

/// Frames raw bytes (ledger entries, which are hashed exactly as stored).
pub fn encode_raw(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 4);
    out.extend_from_slice(&crc32fast::hash(bytes).to_le_bytes());
    out.extend_from_slice(bytes);
    out
}

/// The bytes inside a raw frame, after checking the checksum.
pub fn decode_raw<'a>(key: &[u8], raw: &'a [u8]) -> Result<&'a [u8], StoreError> {
    let corrupt = |detail: &str| StoreError::Corrupt {
        key: key_name(key),
        detail: detail.to_string(),
    };
    if raw.len() < 4 {
        return Err(corrupt("value shorter than its checksum"));
    }
    let (sum, bytes) = raw.split_at(4);
    if sum != crc32fast::hash(bytes).to_le_bytes() {
        return Err(corrupt("checksum mismatch"));
    }
    Ok(bytes)
}

/// Appends one ledger entry to a batch value under construction: a
/// 4-byte little-endian length, then the entry's bytes. The finished batch
/// is framed with [`encode_raw`].
pub fn push_entry(batch: &mut Vec<u8>, entry: &[u8]) -> Result<(), StoreError> {
    let len = u32::try_from(entry.len())
        .map_err(|_| StoreError::Invariant("ledger entry larger than 4 GiB".into()))?;
    batch.extend_from_slice(&len.to_le_bytes());
    batch.extend_from_slice(entry);
    Ok(())
}

/// The entries of a batch value (checksum checked), in order.
pub fn decode_entries<'a>(key: &[u8], raw: &'a [u8]) -> Result<Vec<&'a [u8]>, StoreError> {
    let mut rest = decode_raw(key, raw)?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let truncated = || StoreError::Corrupt {
            key: key_name(key),
            detail: "ledger entry batch is truncated".into(),
        };
        let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(truncated)?;
        let len = usize::try_from(u32::from_le_bytes(*len)).map_err(|_| truncated())?;
        if tail.len() < len {
            return Err(truncated());
        }
        let (entry, tail) = tail.split_at(len);
        out.push(entry);
        rest = tail;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_batches_round_trip_and_refuse_truncation() {
        let mut batch = Vec::new();
        for e in [&b"{\"v\":1}"[..], b"", b"third"] {
            push_entry(&mut batch, e).unwrap();
        }
        let raw = encode_raw(&batch);
        let entries = decode_entries(b"k", &raw).unwrap();
        assert_eq!(entries, vec![&b"{\"v\":1}"[..], b"", b"third"]);
        let cut = encode_raw(&batch[..batch.len() - 1]);
        assert!(matches!(
            decode_entries(b"k", &cut),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn a_flipped_byte_is_reported_as_corruption() {
        let mut raw = encode(&vec!["warden".to_string()]).unwrap();
        assert_eq!(
            decode::<Vec<String>>(b"k", &raw).unwrap(),
            vec!["warden".to_string()]
        );
        let last = raw.len() - 3;
        raw[last] ^= 0x01;
        assert!(matches!(
            decode::<Vec<String>>(b"k", &raw),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
