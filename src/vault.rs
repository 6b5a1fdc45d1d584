//! The media vault's bytes: an object store (the local filesystem by default, an S3-compatible
//! bucket in production, both through the `object_store` crate) holding each file once, under
//! its SHA-256 (`sha256/ab/abcdef…`). Rows that say which message owns which file live in the
//! database; this module knows nothing about messages.
//!
//! Writes stream: bytes go to the store as they arrive (multipart upload, bounded buffering),
//! hashed on the way, and only a complete upload whose hash and size are right becomes visible:
//! anything else is aborted, so a reader never sees a partial or wrong file.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{GetOptions, GetRange, ObjectStore, WriteMultipart};
use sha2::{Digest, Sha256};

use crate::config::MediaConfig;

/// Multipart chunk: the most a write holds in memory per part (S3's minimum part is 5 MiB).
const CHUNK_BYTES: usize = 5 * 1024 * 1024;
/// The same on local disk, which has no minimum part: small parts keep many concurrent
/// downloads within a small memory budget (50 at once stay near 50 MiB of buffers).
const LOCAL_CHUNK_BYTES: usize = 512 * 1024;
/// Parts uploading at once per write; with the chunk size, bounds a write's memory (~10 MiB).
const PARTS_IN_FLIGHT: usize = 2;

/// Where the files are, and how to reach them. Cheap to clone.
#[derive(Clone)]
pub struct MediaVault {
    store: Arc<dyn ObjectStore>,
    /// `local:/path` or `s3://bucket/prefix`, for logs (never in a response).
    location: String,
    is_local: bool,
}

impl std::fmt::Debug for MediaVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaVault")
            .field("location", &self.location)
            .finish()
    }
}

/// A file the vault holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    /// Lower-case hex SHA-256 of the bytes: the file's address.
    pub sha256: String,
    pub byte_size: u64,
}

/// Bytes being read back, with the file's full size.
pub struct BlobRead {
    pub total_size: u64,
    /// The byte range this read covers (the whole file without a range request).
    pub range: Range<u64>,
    pub bytes: futures::stream::BoxStream<'static, Result<Bytes, VaultError>>,
}

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("the file is larger than media.max_bytes ({limit} bytes)")]
    TooLarge { limit: u64 },
    #[error("the bytes do not match Meta's sha256 (expected {expected}, got {actual})")]
    HashMismatch { expected: String, actual: String },
    #[error("reading the source failed: {0}")]
    Source(String),
    #[error("no such file in the media store")]
    NotFound,
    #[error("the requested range is outside the file")]
    BadRange,
    #[error("media store: {0}")]
    Store(#[from] object_store::Error),
}

impl VaultError {
    /// Whether trying again later can succeed (the source or the store was unavailable).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Source(_) | Self::Store(_))
    }
}

impl MediaVault {
    /// Opens the store `media.store` names; `data_dir` is the SQLite data folder, if any.
    pub fn open(config: &MediaConfig, data_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let spec = config.store.trim();
        if let Some(rest) = spec.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                anyhow::bail!("media.store: s3:// needs a bucket, e.g. s3://my-bucket/wagate");
            }
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            if !config.s3_endpoint.is_empty() {
                builder = builder
                    .with_endpoint(&config.s3_endpoint)
                    .with_allow_http(config.s3_endpoint.starts_with("http://"));
            }
            let s3 = builder
                .build()
                .context("media.store: configuring the S3 bucket (credentials come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION)")?;
            let prefix = prefix.trim_matches('/');
            let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(PrefixStore::new(s3, prefix))
            };
            return Ok(Self {
                store,
                location: format!("s3://{bucket}/{prefix}"),
                is_local: false,
            });
        }
        let dir = match spec.strip_prefix("file://").unwrap_or(spec) {
            "" => data_dir.unwrap_or_default().join("media"),
            path => PathBuf::from(path),
        };
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("media.store: creating {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("media.store: {}", dir.display()))?;
        let local = LocalFileSystem::new_with_prefix(&dir)
            .with_context(|| format!("media.store: {}", dir.display()))?;
        Ok(Self {
            store: Arc::new(local),
            location: format!("local:{}", dir.display()),
            is_local: true,
        })
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    /// Whether files live on this machine's disk (several instances then need a shared folder).
    pub fn is_local(&self) -> bool {
        self.is_local
    }

    fn blob_path(sha256: &str) -> Path {
        Path::from(format!(
            "sha256/{}/{sha256}",
            &sha256[..2.min(sha256.len())]
        ))
    }

    /// Whether the file with this hash is already kept (the same file twice is stored once).
    pub async fn contains(&self, sha256: &str) -> Result<bool, VaultError> {
        Ok(self.size_of(sha256).await?.is_some())
    }

    /// The size of the file with this hash, if it is kept.
    pub async fn size_of(&self, sha256: &str) -> Result<Option<u64>, VaultError> {
        match self.store.head(&Self::blob_path(sha256)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Streams `source` into the vault, at most `max_bytes`. With `expected` (Meta's checksum,
    /// hex or base64), bytes that do not match are refused and nothing is kept.
    pub async fn put_stream<S, E>(
        &self,
        source: S,
        expected: Option<&str>,
        max_bytes: u64,
    ) -> Result<StoredBlob, VaultError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let staging = Path::from(format!("incoming/{}", uuid::Uuid::now_v7()));
        let upload = self.store.put_multipart(&staging).await?;
        let chunk = if self.is_local {
            LOCAL_CHUNK_BYTES
        } else {
            CHUNK_BYTES
        };
        let mut writer = WriteMultipart::new_with_chunk_size(upload, chunk);
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut source = std::pin::pin!(source);
        let failure = loop {
            let chunk = match source.next().await {
                None => break None,
                Some(Err(e)) => break Some(VaultError::Source(e.to_string())),
                Some(Ok(chunk)) => chunk,
            };
            size += chunk.len() as u64;
            if size > max_bytes {
                break Some(VaultError::TooLarge { limit: max_bytes });
            }
            hasher.update(&chunk);
            if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                break Some(e.into());
            }
            writer.write(&chunk);
        };
        if let Some(error) = failure {
            let _ = writer.abort().await;
            return Err(error);
        }
        let actual = hex::encode(hasher.finalize());
        if let Some(expected) = expected {
            if !checksum_matches(expected, &actual) {
                let _ = writer.abort().await;
                return Err(VaultError::HashMismatch {
                    expected: expected.to_owned(),
                    actual,
                });
            }
        }
        writer.finish().await?;
        // Content addressing: the staged file becomes `sha256/…` (a rename on disk, a server-side
        // copy on S3); when that file exists already, the copy is simply dropped.
        let target = Self::blob_path(&actual);
        let moved = match self.store.rename_if_not_exists(&staging, &target).await {
            Ok(()) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(object_store::Error::NotSupported { .. } | object_store::Error::NotImplemented) => {
                self.store.copy(&staging, &target).await
            }
            Err(e) => Err(e),
        };
        let _ = self.store.delete(&staging).await;
        moved?;
        Ok(StoredBlob {
            sha256: actual,
            byte_size: size,
        })
    }

    /// Reads a file back, whole or one byte range (`start..end`, end exclusive).
    pub async fn get(
        &self,
        sha256: &str,
        range: Option<Range<u64>>,
    ) -> Result<BlobRead, VaultError> {
        let options = GetOptions {
            range: range.clone().map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let result = match self.store.get_opts(&Self::blob_path(sha256), options).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Err(VaultError::NotFound),
            Err(e) if range.is_some() && is_range_error(&e) => return Err(VaultError::BadRange),
            Err(e) => return Err(e.into()),
        };
        let total_size = result.meta.size;
        let range = result.range.clone();
        let bytes = result.into_stream().map_err(VaultError::from).boxed();
        Ok(BlobRead {
            total_size,
            range,
            bytes,
        })
    }

    /// Removes a file (retention, a deleted number); a missing file is not an error.
    pub async fn delete(&self, sha256: &str) -> Result<(), VaultError> {
        match self.store.delete(&Self::blob_path(sha256)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

fn is_range_error(error: &object_store::Error) -> bool {
    error.to_string().to_ascii_lowercase().contains("range")
}

/// Meta's checksum (hex or base64) as the lower-case hex the vault addresses files by.
pub fn checksum_hex(checksum: &str) -> Option<String> {
    use base64::Engine as _;
    let checksum = checksum.trim();
    if checksum.len() == 64 && checksum.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some(checksum.to_ascii_lowercase());
    }
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(checksum.trim_end_matches('='))
        .or_else(|_| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(checksum.trim_end_matches('='))
        })
        .ok()?;
    (bytes.len() == 32).then(|| hex::encode(bytes))
}

/// Meta's `sha256` is hex in some payloads and base64 in others: accept either.
pub fn checksum_matches(expected: &str, actual_hex: &str) -> bool {
    let expected = expected.trim();
    if expected.eq_ignore_ascii_case(actual_hex) {
        return true;
    }
    use base64::Engine as _;
    let Ok(actual) = hex::decode(actual_hex) else {
        return false;
    };
    [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::URL_SAFE,
    ]
    .iter()
    .any(|engine| engine.decode(expected).is_ok_and(|bytes| bytes == actual))
        || base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(expected.trim_end_matches('='))
            .is_ok_and(|bytes| bytes == actual)
}

#[cfg(test)]
mod tests {
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
}
