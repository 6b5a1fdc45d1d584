//! Uploads kept on their way to Meta: `POST {pnid}/media` streams to Graph unchanged while a
//! copy of its bytes (handed over chunk by chunk by the proxy, never buffered whole) is read as
//! multipart here and the `file` part streamed into the vault. When Meta answers with the media
//! id, the file is recorded as that id's kept upload, and the message that later sends the id
//! is stored from it with no download.
//!
//! The copy is best effort by design: it never slows or fails the upload. If it falls behind,
//! breaks off or finds no file, it is dropped, and the message's media is downloaded from Graph
//! like any other.

use bytes::Bytes;
use futures::Stream;

use crate::store::{DynStore, KeptUpload};
use crate::vault::MediaVault;

/// What the copy kept: the file part of the upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptFile {
    pub sha256: String,
    pub byte_size: u64,
    pub content_type: Option<String>,
    pub filename: Option<String>,
}

/// Reads the upload's multipart body (`boundary` from its `Content-Type`) and keeps its `file`
/// part; `None` when the body broke off, had no file, or the store refused it.
pub async fn keep_file<S>(
    body: S,
    boundary: String,
    vault: MediaVault,
    max_bytes: u64,
) -> Option<KeptFile>
where
    S: Stream<Item = Result<Bytes, String>> + Send + 'static,
{
    let mut multipart = multer::Multipart::new(body, boundary);
    let mut kept = None;
    let mut declared_type = None;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(error) => {
                tracing::debug!(%error, "the upload's copy was dropped; the message's media will be downloaded");
                return None;
            }
        };
        match field.name() {
            Some("file") if kept.is_none() => {
                let filename = field.file_name().map(str::to_owned);
                let content_type = field.content_type().map(ToString::to_string);
                match vault.put_stream(field, None, max_bytes).await {
                    Ok(blob) => {
                        kept = Some(KeptFile {
                            sha256: blob.sha256,
                            byte_size: blob.byte_size,
                            content_type,
                            filename,
                        })
                    }
                    Err(error) => {
                        tracing::debug!(%error, "the upload's copy was not kept; the message's media will be downloaded");
                        return None;
                    }
                }
            }
            // Meta's own form field for the media type, used when the file part has none.
            Some("type") => declared_type = field.text().await.ok(),
            _ => {}
        }
    }
    kept.map(|mut file| {
        if file.content_type.is_none() {
            file.content_type = declared_type.filter(|t| !t.is_empty());
        }
        file
    })
}

/// Records the kept file as the upload Meta named `media_id`.
pub async fn record(
    store: &DynStore,
    number: &super::number_directory::NumberConfig,
    media_id: &str,
    file: KeptFile,
) {
    let upload = KeptUpload {
        project_id: number.project_id,
        phone_number_internal_id: number.internal_id,
        phone_number_id: number.phone_number_id.clone(),
        media_id: media_id.to_owned(),
        sha256: file.sha256,
        byte_size: i64::try_from(file.byte_size).unwrap_or(i64::MAX),
        content_type: file.content_type,
        filename: file.filename,
        at: crate::store::now(),
    };
    if let Err(error) = store.record_kept_upload(&upload).await {
        tracing::warn!(%error, "recording a kept upload failed; the message's media will be downloaded");
    }
}
