//! Value framing: `crc32c(json) (4 bytes, little endian) || json`. JSON
//! keeps records readable in a backup; the checksum catches a torn or
//! flipped value that sled itself would hand back without complaint.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::StoreError;

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    let json = serde_json::to_vec(value).map_err(|e| StoreError::Io(e.to_string()))?;
    Ok(encode_raw(&json))
}

pub fn decode<T: DeserializeOwned>(key: &[u8], raw: &[u8]) -> Result<T, StoreError> {
    let json = decode_raw(key, raw)?;
    serde_json::from_slice(json).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        detail: e.to_string(),
    })
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
        key: hex::encode(key),
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

#[cfg(test)]
mod tests {
    use super::*;

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
