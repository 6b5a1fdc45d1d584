//! The media vault's bytes: an object store (the local filesystem by default, an S3-compatible
//! bucket in production, both through the `object_store` crate) holding each file once, under
//! its SHA-256 (`sha256/ab/abcdef…`). Rows that say which message owns which file live in the
//! database; this module knows nothing about messages.
//!
//! Writes stream: bytes go to the store as they arrive (a multipart upload on S3, a staging
//! file on disk; bounded buffering, see `staging`), hashed on the way, and only a complete
//! write whose hash and size are right becomes visible: anything else is aborted, so a reader
//! never sees a partial or wrong file. A write dropped half-way (the download's timeout) aborts
//! itself; what a killed process left in `incoming/` goes with
//! [`MediaVault::remove_stale_uploads`].

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{GetOptions, GetRange, ObjectStore, RetryConfig};
use sha2::{Digest, Sha256};

use crate::config::MediaConfig;

mod staging;

use staging::StagedWrite;

/// Files up to this size are read whole and written in one step (no staging file, rename or
/// delete): most WhatsApp media (images, voice notes, stickers) are this small.
const SMALL_FILE_BYTES: usize = 1024 * 1024;
/// Where writes stage their bytes until they are complete and checked.
const INCOMING: &str = "incoming";
/// object_store's own retries of one S3 request (its default: 10 over up to 3 minutes). The
/// download worker retries with its own backoff and records every attempt, so a bucket that is
/// down shows on the message as a retry within seconds instead of holding a worker (and a
/// `GET /media/{id}`) for minutes.
const S3_RETRIES: usize = 3;
const S3_RETRY_BUDGET: Duration = Duration::from_secs(10);

/// Where the files are, and how to reach them. Cheap to clone.
#[derive(Clone)]
pub struct MediaVault {
    store: Arc<dyn ObjectStore>,
    /// `local:/path` or `s3://bucket/prefix`, for logs (never in a response).
    location: String,
    /// The same store when files live on this machine's disk (it maps a path to its file).
    local: Option<Arc<LocalFileSystem>>,
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
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(RetryConfig {
                    max_retries: S3_RETRIES,
                    retry_timeout: S3_RETRY_BUDGET,
                    ..RetryConfig::default()
                });
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
                local: None,
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
        let local = Arc::new(local);
        Ok(Self {
            store: local.clone(),
            location: format!("local:{}", dir.display()),
            local: Some(local),
        })
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    /// Whether files live on this machine's disk (several instances then need a shared folder).
    pub fn is_local(&self) -> bool {
        self.local.is_some()
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
        let mut source = std::pin::pin!(source);
        // The first megabyte decides: a file that ends within it is written in one step.
        let mut head: Vec<Bytes> = Vec::new();
        let mut size: u64 = 0;
        let ended = loop {
            match source.next().await {
                None => break true,
                Some(Err(e)) => return Err(VaultError::Source(e.to_string())),
                Some(Ok(chunk)) => {
                    size += chunk.len() as u64;
                    if size > max_bytes {
                        return Err(VaultError::TooLarge { limit: max_bytes });
                    }
                    head.push(chunk);
                    if size > SMALL_FILE_BYTES as u64 {
                        break false;
                    }
                }
            }
        };
        if ended {
            return self.put_small(head, size, expected).await;
        }
        let staging = Path::from(format!("{INCOMING}/{}", uuid::Uuid::now_v7()));
        let mut writer =
            StagedWrite::start(self.store.as_ref(), self.local.as_deref(), &staging).await?;
        let mut hasher = Sha256::new();
        let copied = async {
            for chunk in head {
                hasher.update(&chunk);
                writer.write(&chunk).await?;
            }
            while let Some(chunk) = source.next().await {
                let chunk = chunk.map_err(|e| VaultError::Source(e.to_string()))?;
                size += chunk.len() as u64;
                if size > max_bytes {
                    return Err(VaultError::TooLarge { limit: max_bytes });
                }
                hasher.update(&chunk);
                writer.write(&chunk).await?;
            }
            Ok(())
        }
        .await;
        if let Err(error) = copied {
            writer.abort().await;
            return Err(error);
        }
        let actual = hex::encode(hasher.finalize());
        if let Some(expected) = expected {
            if !checksum_matches(expected, &actual) {
                writer.abort().await;
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

    /// A whole small file: checked, then written straight under its hash. Writing over the same
    /// file (a concurrent download of it) is harmless: the bytes are the same.
    async fn put_small(
        &self,
        chunks: Vec<Bytes>,
        size: u64,
        expected: Option<&str>,
    ) -> Result<StoredBlob, VaultError> {
        let mut hasher = Sha256::new();
        for chunk in &chunks {
            hasher.update(chunk);
        }
        let actual = hex::encode(hasher.finalize());
        if let Some(expected) = expected {
            if !checksum_matches(expected, &actual) {
                return Err(VaultError::HashMismatch {
                    expected: expected.to_owned(),
                    actual,
                });
            }
        }
        let payload: object_store::PutPayload = chunks.into_iter().collect();
        self.store.put(&Self::blob_path(&actual), payload).await?;
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

    /// Removes what writes that never finished left in `incoming/` more than `older_than` ago
    /// (a process killed mid-download cleans nothing up); returns how many. With `older_than` at
    /// least `media.lease` no live write is touched: a write still running that long after its
    /// claim has lost the claim anyway (the lease exceeds `media.download_timeout`).
    ///
    /// Covered: on a local folder, every staged file (the unfinished `incoming/<id>#<n>` that
    /// object_store's listing hides, and a finished `incoming/<id>` never moved to `sha256/`);
    /// on S3, every staged object (a write completed but not moved when the process died). Not
    /// covered: S3 multipart uploads never completed nor aborted. S3 does not list them as
    /// objects and object_store has no call for `ListMultipartUploads`, so the bucket needs a
    /// lifecycle rule (`AbortIncompleteMultipartUpload`, a day say) for what a killed process
    /// was writing.
    pub async fn remove_stale_uploads(&self, older_than: Duration) -> Result<usize, VaultError> {
        let cutoff = SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        if let Some(local) = &self.local {
            let incoming = local.path_to_filesystem(&Path::from(INCOMING))?;
            return tokio::task::spawn_blocking(move || remove_files_before(&incoming, cutoff))
                .await
                .map_err(|e| local_error(std::io::Error::other(e)))?
                .map_err(local_error);
        }
        let cutoff = chrono::DateTime::<chrono::Utc>::from(cutoff);
        let stale: Vec<Path> = self
            .store
            .list(Some(&Path::from(INCOMING)))
            .try_filter(|meta| futures::future::ready(meta.last_modified < cutoff))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await?;
        for location in &stale {
            match self.store.delete(location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(stale.len())
    }

    /// [`remove_stale_uploads`](Self::remove_stale_uploads) at a worker's start: the outcome
    /// goes to the log, never stops the worker.
    pub async fn sweep_incoming(&self, older_than: Duration) {
        match self.remove_stale_uploads(older_than).await {
            Ok(0) => {}
            Ok(removed) => {
                tracing::info!(
                    removed,
                    "removed unfinished media writes left by an earlier run"
                )
            }
            Err(error) => {
                tracing::warn!(%error, "removing unfinished media writes failed; the next start tries again")
            }
        }
    }

    /// Removes a file (retention, a deleted number); a missing file is not an error.
    pub async fn delete(&self, sha256: &str) -> Result<(), VaultError> {
        match self.store.delete(&Self::blob_path(sha256)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Removes the files directly in `dir` last written before `cutoff`; a missing folder holds none.
fn remove_files_before(dir: &std::path::Path, cutoff: SystemTime) -> std::io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let meta = entry.metadata()?;
        if !meta.is_file() || meta.modified()? >= cutoff {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

fn local_error(source: std::io::Error) -> VaultError {
    VaultError::Store(staging::store_error(source))
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
mod tests;
