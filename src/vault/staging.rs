//! A large file on its way into the vault, staged under `incoming/` until it is complete and
//! checked (then moved under its hash by the caller).
//!
//! On S3 that is an object_store multipart upload. On local disk it is a plain file written
//! through tokio's `File`, whose one buffer goes to the blocking pool and comes back for every
//! write. object_store's local multipart instead copies each part into a new buffer that a
//! blocking thread frees, and memory freed on another thread is not reused by the thread that
//! allocated it until its allocator collects it: a 1 GiB upload kept by the vault grew the
//! process by ~28 MiB of parts already written (issue #24's 1 GiB measurement), with never more
//! than 3 MiB live.

use std::path::PathBuf;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, WriteMultipart};
use tokio::io::AsyncWriteExt as _;

/// Multipart chunk on S3: the most a write holds in memory per part (S3's minimum part is
/// 5 MiB).
const CHUNK_BYTES: usize = 5 * 1024 * 1024;
/// Parts uploading at once per write; with the chunk size, bounds a write's memory (~10 MiB).
const PARTS_IN_FLIGHT: usize = 2;
/// The most a local write holds in its one buffer (tokio's default is 2 MiB): many concurrent
/// downloads stay within a small memory budget (50 at once near 25 MiB).
const LOCAL_BUFFER_BYTES: usize = 512 * 1024;

/// A staged write until it is finished or aborted. Dropped unfinished (the download's timeout
/// drops `put_stream` half-way), it removes what it wrote: on S3 an upload neither completed
/// nor aborted stays in the bucket, unlisted and billed, until a lifecycle rule removes it.
pub(super) struct StagedWrite(Option<Staged>);

enum Staged {
    Local {
        file: tokio::fs::File,
        path: PathBuf,
    },
    Remote(WriteMultipart),
}

impl StagedWrite {
    /// Starts a write at `staging`: a file of `local` when the vault is on this machine's disk
    /// (so the finished file moves under its hash through the store, as on S3), else a
    /// multipart upload to `store`.
    pub(super) async fn start(
        store: &dyn ObjectStore,
        local: Option<&LocalFileSystem>,
        staging: &Path,
    ) -> object_store::Result<Self> {
        let staged = match local {
            Some(local) => {
                let path = local.path_to_filesystem(staging)?;
                if let Some(folder) = path.parent() {
                    tokio::fs::create_dir_all(folder)
                        .await
                        .map_err(store_error)?;
                }
                let mut file = tokio::fs::File::create(&path).await.map_err(store_error)?;
                file.set_max_buf_size(LOCAL_BUFFER_BYTES);
                Staged::Local { file, path }
            }
            None => {
                let upload = store.put_multipart(staging).await?;
                Staged::Remote(WriteMultipart::new_with_chunk_size(upload, CHUNK_BYTES))
            }
        };
        Ok(Self(Some(staged)))
    }

    /// Appends `chunk`, waiting while earlier bytes are still being written.
    pub(super) async fn write(&mut self, chunk: &Bytes) -> object_store::Result<()> {
        match self.0.as_mut().expect("an unfinished write") {
            Staged::Local { file, .. } => file.write_all(chunk).await.map_err(store_error),
            Staged::Remote(writer) => {
                writer.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                writer.write(chunk);
                Ok(())
            }
        }
    }

    /// Removes what was written.
    pub(super) async fn abort(mut self) {
        match self.0.take() {
            Some(Staged::Local { file, path }) => {
                drop(file);
                let _ = tokio::fs::remove_file(path).await;
            }
            Some(Staged::Remote(writer)) => {
                let _ = writer.abort().await;
            }
            None => {}
        }
    }

    /// Waits until every byte is written and the staged file is complete.
    pub(super) async fn finish(mut self) -> object_store::Result<()> {
        match self.0.take() {
            Some(Staged::Local { mut file, path }) => {
                // Surfaces the error of the write still in the blocking pool.
                if let Err(error) = file.flush().await {
                    drop(file);
                    let _ = tokio::fs::remove_file(path).await;
                    return Err(store_error(error));
                }
                Ok(())
            }
            Some(Staged::Remote(writer)) => writer.finish().await.map(drop),
            None => Ok(()),
        }
    }
}

impl Drop for StagedWrite {
    fn drop(&mut self) {
        let Some(staged) = self.0.take() else { return };
        let runtime = tokio::runtime::Handle::try_current();
        match staged {
            // A write still in the blocking pool finishes into the unlinked file.
            Staged::Local { file, path } => {
                drop(file);
                match runtime {
                    Ok(runtime) => drop(runtime.spawn_blocking(move || std::fs::remove_file(path))),
                    Err(_) => drop(std::fs::remove_file(path)),
                }
            }
            // With no runtime to abort on, the bucket's lifecycle rule removes the upload.
            Staged::Remote(writer) => {
                if let Ok(runtime) = runtime {
                    runtime.spawn(async move {
                        let _ = writer.abort().await;
                    });
                }
            }
        }
    }
}

/// A local disk's error as object_store reports its own.
pub(super) fn store_error(source: std::io::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "LocalFileSystem",
        source: Box::new(source),
    }
}
