//! The spill file's record format: `len: u32 LE | crc32c(payload): u32 LE | payload`, appended
//! one after another. A crash can tear only the tail (records are appended in order and a group
//! is acknowledged after its fsync), so a scan stops at the first frame that is short, too long
//! or fails its checksum, and reports where the valid part ends.

use crc::{Crc, CRC_32_ISCSI};

const CRC: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);
/// Bytes before each payload.
pub const HEADER: usize = 8;
/// No recording comes near this; a larger length is garbage from a torn header.
pub const MAX_PAYLOAD: usize = 16 * 1024 * 1024;

/// One payload framed for the file.
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("payload under 4 GiB");
    let mut frame = Vec::with_capacity(HEADER + payload.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&CRC.checksum(payload).to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// What a scan of the file's bytes found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Each valid record: the offset just past it (relative to the scanned slice) and its payload.
    pub records: Vec<(u64, Vec<u8>)>,
    /// Where the valid records end; everything after is a torn tail.
    pub valid_len: u64,
    /// Bytes after `valid_len` (0 when the file ends cleanly).
    pub torn: u64,
}

/// Reads frames from the start of `bytes` until the end or the first invalid frame.
pub fn scan(bytes: &[u8]) -> Scan {
    let mut scan = Scan::default();
    let mut at = 0usize;
    while at < bytes.len() {
        let Some(header) = bytes.get(at..at + HEADER) else {
            break;
        };
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let sum = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        if len > MAX_PAYLOAD {
            break;
        }
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        if CRC.checksum(payload) != sum {
            break;
        }
        at += HEADER + len;
        scan.records.push((at as u64, payload.to_vec()));
    }
    scan.valid_len = at as u64;
    scan.torn = (bytes.len() - at) as u64;
    scan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(payloads: &[&[u8]]) -> Vec<u8> {
        payloads.iter().flat_map(|p| encode(p)).collect()
    }

    #[test]
    fn round_trip() {
        let bytes = file(&[b"{\"a\":1}", b"", b"{\"b\":2}"]);
        let scan = scan(&bytes);
        assert_eq!(scan.torn, 0);
        assert_eq!(scan.valid_len, bytes.len() as u64);
        let payloads: Vec<&[u8]> = scan.records.iter().map(|(_, p)| p.as_slice()).collect();
        assert_eq!(payloads, [&b"{\"a\":1}"[..], b"", b"{\"b\":2}"]);
        assert_eq!(scan.records[0].0, (HEADER + 7) as u64);
    }

    #[test]
    fn torn_tail_is_cut_at_every_length() {
        let whole = file(&[b"first record", b"second record"]);
        let first_end = (HEADER + 12) as u64;
        for cut in 0..whole.len() {
            let scan = scan(&whole[..cut]);
            let expected = if cut as u64 >= first_end { 1 } else { 0 };
            assert_eq!(scan.records.len(), expected, "cut at {cut}");
            assert_eq!(scan.valid_len + scan.torn, cut as u64);
        }
    }

    #[test]
    fn a_flipped_bit_ends_the_valid_part() {
        let mut bytes = file(&[b"first record", b"second record", b"third"]);
        let second = HEADER + 12;
        bytes[second + HEADER + 3] ^= 0x10;
        let scan = scan(&bytes);
        assert_eq!(scan.records.len(), 1);
        assert_eq!(scan.valid_len, second as u64);
        assert_eq!(scan.torn, (bytes.len() - second) as u64);
    }

    #[test]
    fn a_garbage_length_is_not_allocated() {
        let mut bytes = file(&[b"ok"]);
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&[0; 12]);
        let scan = scan(&bytes);
        assert_eq!(scan.records.len(), 1);
        assert_eq!(scan.torn, 16);
    }
}
