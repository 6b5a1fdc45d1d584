//! Webhook delivery payloads packed at rest on SQLite.
//!
//! A Kapso-format payload (about 4 KiB for a text message: the message, its conversation and
//! contact, the text in several places) was the largest thing an inbound event wrote: 5.8 KiB of
//! the 13.7 KiB per event in `bench/ingest.sh`, past a 4 KiB page, so every one spilled into an
//! overflow page. SQLite ingest spends about a tenth of its core waiting on the disk, so its
//! bytes count. PostgreSQL keeps payloads as they are: it compresses large values itself
//! (TOAST), packing measured neutral there, and its instances may run two versions during a
//! rolling upgrade, where an older one would send a packed payload as it is.
//!
//! A packed payload is [`MAGIC`] followed by an LZ4 block with its length in front. JSON never
//! starts with a NUL byte, so unpacked payloads (PostgreSQL's, and SQLite rows written before
//! packing) read back unchanged.

/// Marks a packed payload.
const MAGIC: &[u8; 4] = b"\0lz4";

/// Payloads shorter than this are stored as they are: packing them saves too little.
const PACK_FROM: usize = 512;

/// A delivery's own payload as a backend keeps it: packed where `pack` (SQLite), as it is
/// otherwise.
pub fn at_rest(pack: bool, payload: Option<&[u8]>) -> Option<Vec<u8>> {
    payload.map(|payload| {
        if pack {
            self::pack(payload)
        } else {
            payload.to_vec()
        }
    })
}

/// The payload as SQLite keeps it: packed when that saves room, as it is otherwise.
fn pack(payload: &[u8]) -> Vec<u8> {
    if payload.len() < PACK_FROM {
        return payload.to_vec();
    }
    let block = lz4_flex::compress_prepend_size(payload);
    if block.len() + MAGIC.len() >= payload.len() {
        return payload.to_vec();
    }
    let mut packed = Vec::with_capacity(MAGIC.len() + block.len());
    packed.extend_from_slice(MAGIC);
    packed.extend_from_slice(&block);
    packed
}

/// A stored payload as it was given to [`pack`] (or as it is, if it was never packed).
pub fn unpack(stored: Vec<u8>) -> Result<Vec<u8>, super::StoreError> {
    match stored.strip_prefix(MAGIC) {
        Some(block) => lz4_flex::decompress_size_prepended(block).map_err(|error| {
            super::StoreError::Other(anyhow::anyhow!(
                "a stored webhook payload is damaged ({error}); the delivery cannot be sent"
            ))
        }),
        None => Ok(stored),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_payload_is_packed_smaller_and_reads_back_the_same() {
        let text = "the same words, again and again; ".repeat(60);
        let payload = serde_json::to_vec(&serde_json::json!({
            "message": { "text": { "body": text } },
            "conversation": { "last_message_text": text },
        }))
        .unwrap();
        let stored = pack(&payload);
        assert!(stored.starts_with(MAGIC));
        assert!(stored.len() < payload.len() / 4, "{} bytes", stored.len());
        assert_eq!(unpack(stored).unwrap(), payload);
    }

    #[test]
    fn small_or_incompressible_payloads_and_old_rows_stay_as_they_are() {
        let small = br#"{"event":"whatsapp.message.received"}"#.to_vec();
        assert_eq!(pack(&small), small);
        // Bytes that do not compress (a digest stream): packing would only add its header.
        let noisy: Vec<u8> = (0..64u32)
            .flat_map(|i| crate::crypto::sha256_hex(&i.to_be_bytes()).into_bytes())
            .map(|b| b.wrapping_mul(131))
            .collect();
        assert_eq!(pack(&noisy), noisy);
        assert_eq!(unpack(small.clone()).unwrap(), small);
    }

    #[test]
    fn a_damaged_packed_payload_is_an_error_not_garbage() {
        let payload = "abc".repeat(400).into_bytes();
        let mut stored = pack(&payload);
        stored.truncate(stored.len() - 8);
        let error = unpack(stored).unwrap_err().to_string();
        assert!(error.contains("damaged"), "{error}");
    }
}
