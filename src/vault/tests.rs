//! The vault on local disk: content addressing, staging, limits and clean-up.

use super::*;

fn local(dir: &std::path::Path) -> MediaVault {
    let mut config = crate::config::Config::defaults().media;
    config.store = dir.display().to_string();
    MediaVault::open(&config, None).unwrap()
}

fn source(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::iter(
        parts
            .iter()
            .map(|p| Ok(Bytes::from_static(p)))
            .collect::<Vec<_>>(),
    )
}

#[tokio::test]
async fn files_are_kept_once_by_hash_and_read_back_in_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let vault = local(dir.path());
    let hash = hex::encode(Sha256::digest(b"hello world"));
    let blob = vault
        .put_stream(source(&[b"hello ", b"world"]), Some(&hash), 100)
        .await
        .unwrap();
    assert_eq!(blob.sha256, hash);
    assert_eq!(blob.byte_size, 11);
    assert!(vault.contains(&hash).await.unwrap());
    // Again: the same address, no second copy, no staging left behind.
    vault
        .put_stream(source(&[b"hello world"]), None, 100)
        .await
        .unwrap();
    let files: Vec<_> = walk(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");

    let read = vault.get(&hash, Some(6..11)).await.unwrap();
    assert_eq!((read.total_size, read.range.clone()), (11, 6..11));
    let bytes: Vec<Bytes> = read.bytes.try_collect().await.unwrap();
    assert_eq!(bytes.concat(), b"world");
}

/// Past the first megabyte a file is staged under `incoming/` and moved under its hash.
#[tokio::test]
async fn large_files_are_staged_then_kept_whole() {
    let dir = tempfile::tempdir().unwrap();
    let vault = local(dir.path());
    let file: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let hash = hex::encode(Sha256::digest(&file));
    let chunks: Vec<Result<Bytes, std::io::Error>> = file
        .chunks(100_000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let blob = vault
        .put_stream(futures::stream::iter(chunks), Some(&hash), 4 << 20)
        .await
        .unwrap();
    assert_eq!(
        (blob.sha256.as_str(), blob.byte_size),
        (hash.as_str(), 3 << 20)
    );
    let files = walk(dir.path());
    assert_eq!(files.len(), 1, "nothing left staged: {files:?}");
    let read = vault.get(&hash, None).await.unwrap();
    let bytes: Vec<Bytes> = read.bytes.try_collect().await.unwrap();
    assert!(bytes.concat() == file, "the kept bytes differ");

    // Over the limit once staged: refused, and the staged part removed.
    let error = vault
        .put_stream(
            source(&[&[7; 600_000], &[8; 600_000], &[9; 600_000]]),
            None,
            1_500_000,
        )
        .await
        .unwrap_err();
    assert!(matches!(error, VaultError::TooLarge { .. }), "{error}");
    assert_eq!(walk(dir.path()).len(), 1, "{:?}", walk(dir.path()));
}

#[tokio::test]
async fn wrong_or_oversized_bytes_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let vault = local(dir.path());
    let wrong = hex::encode(Sha256::digest(b"something else"));
    let error = vault
        .put_stream(source(&[b"hello"]), Some(&wrong), 100)
        .await
        .unwrap_err();
    assert!(matches!(error, VaultError::HashMismatch { .. }), "{error}");
    let error = vault
        .put_stream(source(&[b"hello", b"world"]), None, 7)
        .await
        .unwrap_err();
    assert!(
        matches!(error, VaultError::TooLarge { limit: 7 }),
        "{error}"
    );
    assert!(walk(dir.path()).is_empty(), "{:?}", walk(dir.path()));
}

#[tokio::test]
async fn stale_staged_writes_are_swept_and_live_ones_and_files_kept() {
    let dir = tempfile::tempdir().unwrap();
    let vault = local(dir.path());
    let hash = hex::encode(Sha256::digest(b"kept"));
    vault
        .put_stream(source(&[b"kept"]), Some(&hash), 100)
        .await
        .unwrap();
    // What a killed process leaves: an unfinished multipart file (hidden from object_store's
    // listing) and a finished write it never moved; and a write running right now.
    let incoming = dir.path().join(INCOMING);
    std::fs::create_dir_all(&incoming).unwrap();
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    for (name, modified) in [
        ("0190-killed#1", Some(an_hour_ago)),
        ("0190-finished", Some(an_hour_ago)),
        ("0190-live#1", None),
    ] {
        let file = std::fs::File::create(incoming.join(name)).unwrap();
        if let Some(modified) = modified {
            file.set_modified(modified).unwrap();
        }
    }
    let removed = vault
        .remove_stale_uploads(Duration::from_secs(300))
        .await
        .unwrap();
    assert_eq!(removed, 2);
    let mut left: Vec<_> = walk(dir.path())
        .into_iter()
        .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
        .collect();
    left.sort();
    let blob = format!("sha256/{}/{hash}", &hash[..2]);
    assert_eq!(left, [format!("{INCOMING}/0190-live#1"), blob]);
    // Nothing staged at all (a fresh vault) is no error.
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(
        local(empty.path())
            .remove_stale_uploads(Duration::ZERO)
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn a_write_dropped_half_way_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let vault = local(dir.path());
    // Past the first megabyte, so the bytes are already staged when the write is dropped.
    let endless =
        futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(&[1; 1_100_000]))])
            .chain(futures::stream::pending());
    let put = vault.put_stream(endless, None, 2_000_000);
    let timed_out = tokio::time::timeout(Duration::from_millis(100), put).await;
    assert!(timed_out.is_err());
    // The clean-up runs on the runtime after the drop.
    for _ in 0..500 {
        if walk(dir.path()).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("left behind: {:?}", walk(dir.path()));
}

#[test]
fn checksums_match_in_hex_or_base64() {
    use base64::Engine as _;
    let digest = Sha256::digest(b"x");
    let hex = hex::encode(digest);
    assert!(checksum_matches(&hex.to_uppercase(), &hex));
    let b64 = base64::engine::general_purpose::STANDARD.encode(digest);
    assert!(checksum_matches(&b64, &hex));
    assert!(checksum_matches(b64.trim_end_matches('='), &hex));
    assert!(!checksum_matches("AAAA", &hex));
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}
