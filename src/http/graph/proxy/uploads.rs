//! `POST {pnid}/media` with the media vault on: the upload streams to Graph exactly as before,
//! through a body that hands each chunk (a reference-counted `Bytes`, not a copy) to
//! `domain::media_uploads`, which keeps the file part in the vault. Meta's answer names the
//! media id the kept file is recorded under.
//!
//! The copy keeps pace with the upload through a small bounded channel (the upload waits for
//! the vault, so memory stays at a few chunks per upload whatever the file size), but never
//! holds it up for long: a copy that cannot take the next chunk within [`COPY_STALL`], or that
//! failed, is dropped and the upload goes on alone (the message's media is then downloaded
//! from Graph later, as without the copy).

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::HeaderMap;
use futures::StreamExt as _;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::PollSender;

use crate::domain::media_uploads::{self, KeptFile};
use crate::domain::number_directory::NumberConfig;
use crate::http::state::AppState;

/// Chunks the copy may be behind the upload. multer copies every chunk it can take into one
/// buffer, so this sets that buffer's size: 8 grew it to 4 MiB on a 1 GiB upload, 2 keeps it
/// near 1 MiB at the same speed.
const COPY_BACKLOG: usize = 2;

/// How long the upload waits for a copy that cannot keep up before dropping it.
const COPY_STALL: Duration = Duration::from_secs(2);

/// One piece of the copy, and whether it is the last: a channel that closes before the last
/// piece means the upload broke off (or the copy was dropped), and nothing is kept.
type Piece = (Bytes, bool);

/// The copy of one upload under way.
pub(super) struct UploadCopy(JoinHandle<Option<KeptFile>>);

/// Starts the copy when the vault keeps uploads and the body is multipart; returns the body to
/// send upstream.
pub(super) fn tee(state: &AppState, headers: &HeaderMap, body: Body) -> (Body, Option<UploadCopy>) {
    let (Some(vault), true) = (state.vault.clone(), state.config.media.keep_uploads) else {
        return (body, None);
    };
    let Some(boundary) = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| multer::parse_boundary(v).ok())
    else {
        return (body, None);
    };
    let (sender, receiver) = mpsc::channel(COPY_BACKLOG);
    let pieces = futures::stream::unfold((receiver, false), |(mut receiver, ended)| async move {
        if ended {
            return None;
        }
        match receiver.recv().await {
            Some((bytes, last)) => Some((Ok(bytes), (receiver, last))),
            None => Some((
                Err("the upload broke off or the copy fell behind".to_owned()),
                (receiver, true),
            )),
        }
    })
    .boxed();
    let max_bytes = state.config.media.max_bytes;
    let copy = tokio::spawn(media_uploads::keep_file(pieces, boundary, vault, max_bytes));
    let body = Body::new(TeeBody {
        length: headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()),
        seen: 0,
        inner: body,
        copy: Some(PollSender::new(sender)),
        stall: None,
    });
    (body, Some(UploadCopy(copy)))
}

impl UploadCopy {
    /// After Meta answered: records the kept file under Meta's media id (2xx with an `id`), or
    /// removes it (Meta refused the upload). Runs in its own task: the client's answer never
    /// waits for the store.
    pub(super) fn finish(
        self,
        state: &AppState,
        number: &NumberConfig,
        status: u16,
        answer: &[u8],
    ) {
        let media_id = (200..300)
            .contains(&status)
            .then(|| serde_json::from_slice::<serde_json::Value>(answer).ok())
            .flatten()
            .and_then(|v| v.get("id").and_then(|id| id.as_str()).map(str::to_owned));
        let (store, vault) = (state.store.clone(), state.vault.clone());
        let number = number.clone();
        tokio::spawn(async move {
            let Ok(Some(file)) = self.0.await else {
                return;
            };
            match media_id {
                Some(media_id) => media_uploads::record(&store, &number, &media_id, file).await,
                None => {
                    if let Some(vault) = vault {
                        crate::domain::media::remove_files(store.as_ref(), &vault, &[file.sha256])
                            .await;
                    }
                }
            }
        });
    }
}

pin_project_lite::pin_project! {
    /// The request body, unchanged, with each data chunk also handed to the copy.
    struct TeeBody {
        #[pin]
        inner: Body,
        copy: Option<PollSender<Piece>>,
        // The declared `Content-Length`, and the bytes passed so far: the client sending a body
        // of declared length stops polling after its last byte, so that is where the copy ends.
        length: Option<u64>,
        seen: u64,
        // Running while the upload waits for the copy to take a chunk.
        stall: Option<Pin<Box<tokio::time::Sleep>>>,
    }
}

impl HttpBody for TeeBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let mut this = self.project();
        // A slot for the next chunk first, so the upload never runs ahead of the copy.
        if let Some(copy) = this.copy.as_mut() {
            match copy.poll_reserve(cx) {
                Poll::Ready(Ok(())) => *this.stall = None,
                Poll::Ready(Err(_)) => *this.copy = None,
                Poll::Pending => {
                    let stall = this
                        .stall
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(COPY_STALL)));
                    if stall.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    tracing::debug!("the upload's copy fell behind and was dropped");
                    *this.copy = None;
                    *this.stall = None;
                }
            }
        }
        let polled = std::task::ready!(this.inner.as_mut().poll_frame(cx));
        let piece = match &polled {
            Some(Ok(frame)) => frame.data_ref().map(|data| {
                *this.seen += data.len() as u64;
                let last = this.inner.is_end_stream() || Some(*this.seen) == *this.length;
                (data.clone(), last)
            }),
            // Broken off: the channel closes before the last piece, and the copy is dropped.
            Some(Err(_)) => {
                *this.copy = None;
                None
            }
            None => Some((Bytes::new(), true)),
        };
        if let (Some((bytes, last)), Some(copy)) = (piece, this.copy.as_mut()) {
            if copy.send_item((bytes, last)).is_err() || last {
                *this.copy = None;
            }
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
