//! Per-connection timeouts that hyper does not give: an idle keep-alive timeout separate from the
//! header-read timeout, and a header-read timeout that also covers a new connection that never
//! sends a byte.
//!
//! hyper's own `header_read_timeout` starts when it begins waiting for a request head, which on a
//! kept-alive connection is right after the previous response: an idle upstream connection of a
//! load balancer was cut after 10 s, before nginx (60 s) or a cloud balancer let go of it, and the
//! balancer then reused a connection wagate was closing (intermittent 502s). And a connection that
//! never sends a byte sits in hyper-util's protocol sniffing, outside hyper's timer, forever.
//!
//! So the stream is wrapped: [`WatchedIo`] sees every read, [`ConnWatch`] knows (from the service)
//! whether a request is in flight, and a read that would wait past the deadline of the
//! connection's phase ends the stream (EOF), which closes the connection:
//! - new, nothing received yet: `header_read_timeout` from accept;
//! - bytes of a request head arriving: `header_read_timeout` from its first byte;
//! - a request in flight: no deadline here (bodies have `body_idle_timeout`, handlers the
//!   per-request deadline);
//! - idle between requests (HTTP/1 keep-alive, or an HTTP/2 connection with no stream):
//!   `idle_timeout` from the end of the last response; an HTTP/1 connection that may park
//!   (`park_after`) ends its hyper connection after that much idle time instead, and
//!   `http::keep_alive` holds the bare stream until the next request or `idle_timeout`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The limits every connection is held to.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// Idle this long, an HTTP/1 connection is parked (see `http::keep_alive`); `None` for
    /// connections that cannot park (HTTP/2, over-limit ones) or with parking off.
    pub park_after: Option<Duration>,
}

#[derive(Debug)]
struct Phase {
    in_flight: u32,
    /// When the connection was accepted or its last response ended.
    idle_since: Instant,
    /// A request was served on this connection already (so waiting is keep-alive idle).
    served: bool,
    /// The first byte of the next request head, while it is incomplete.
    head_started: Option<Instant>,
    /// HTTP/2 (prior knowledge): its frames (pings, settings) are not request heads.
    http2: bool,
    /// Nothing read yet.
    fresh: bool,
    /// The read waiting while a request ran: woken when the request ends, so the idle deadline
    /// is armed even if no byte comes.
    parked_read: Option<std::task::Waker>,
    /// Requests begun on this connection so far.
    requests: u64,
    /// The stream ended its hyper connection to park, not to close.
    park: bool,
}

/// What the service and the stream share about one connection.
#[derive(Debug)]
pub struct ConnWatch {
    phase: Mutex<Phase>,
    limits: ConnLimits,
}

/// Why a connection was closed by its watch (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    SilentNew,
    SlowHead,
    Idle,
    /// Not a close: hyper's connection ends so the stream can park.
    Park,
}

impl ConnWatch {
    pub fn new(limits: ConnLimits) -> Arc<Self> {
        Arc::new(Self {
            phase: Mutex::new(Phase {
                in_flight: 0,
                idle_since: Instant::now(),
                served: false,
                head_started: None,
                http2: false,
                fresh: true,
                parked_read: None,
                requests: 0,
                park: false,
            }),
            limits,
        })
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A request's head was read and its handler starts; the guard ends it when the response
    /// (body included) is done or dropped.
    pub fn request_started(self: &Arc<Self>) -> InFlight {
        let mut phase = self.phase();
        phase.in_flight += 1;
        phase.requests += 1;
        phase.head_started = None;
        InFlight(self.clone())
    }

    /// Requests begun on this connection so far.
    pub fn requests(&self) -> u64 {
        self.phase().requests
    }

    /// A request is running, or one has begun since [`Self::requests`] read `since`.
    pub fn has_begun_since(&self, since: u64) -> bool {
        let phase = self.phase();
        phase.in_flight > 0 || phase.requests > since
    }

    /// Whether the stream ended its hyper connection to park (and forgets it).
    pub fn take_park(&self) -> bool {
        std::mem::take(&mut self.phase().park)
    }

    /// When an idle connection is closed (`idle_timeout` after its last response).
    pub fn idle_deadline(&self) -> Instant {
        self.phase().idle_since + self.limits.idle_timeout
    }

    /// The connection is past protocol sniffing: a request has begun or been served, or it
    /// speaks HTTP/2 (so closing it gracefully answers what it sent).
    pub fn has_begun(&self) -> bool {
        let phase = self.phase();
        phase.in_flight > 0 || phase.served || phase.http2
    }

    fn on_bytes(&self, bytes: &[u8]) {
        let mut phase = self.phase();
        if phase.fresh {
            phase.fresh = false;
            phase.http2 = bytes.starts_with(b"PRI * HTTP/2.0");
        }
        if phase.in_flight == 0 && phase.head_started.is_none() && !phase.http2 {
            phase.head_started = Some(Instant::now());
        }
    }

    /// When a read that finds nothing should give up, and why; `None` while a request runs
    /// (the read is parked, to be woken when it ends).
    fn deadline(&self, cx: &Context<'_>) -> Option<(Instant, Cut)> {
        let mut phase = self.phase();
        if phase.in_flight > 0 {
            phase.parked_read = Some(cx.waker().clone());
            return None;
        }
        let limits = &self.limits;
        Some(match phase.head_started {
            Some(started) => (started + limits.header_read_timeout, Cut::SlowHead),
            None if phase.fresh => (
                phase.idle_since + limits.header_read_timeout,
                Cut::SilentNew,
            ),
            None if !phase.served && !phase.http2 => {
                (phase.idle_since + limits.header_read_timeout, Cut::SlowHead)
            }
            None => match limits.park_after {
                Some(park) if park < limits.idle_timeout => (phase.idle_since + park, Cut::Park),
                _ => (phase.idle_since + limits.idle_timeout, Cut::Idle),
            },
        })
    }
}

/// A request in flight on a connection (see [`ConnWatch::request_started`]).
#[derive(Debug)]
pub struct InFlight(Arc<ConnWatch>);

impl InFlight {
    /// Keeps the guard alive inside closures that must own it.
    pub fn hold(&self) {}
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut phase = self.0.phase();
        phase.in_flight = phase.in_flight.saturating_sub(1);
        if phase.in_flight == 0 {
            phase.idle_since = Instant::now();
            phase.served = true;
            if let Some(read) = phase.parked_read.take() {
                read.wake();
            }
        }
    }
}

/// A stream whose reads end (EOF) once its connection's phase deadline passes.
pub struct WatchedIo<T> {
    inner: T,
    watch: Arc<ConnWatch>,
    timer: Pin<Box<Sleep>>,
    armed_for: Option<Instant>,
}

impl<T> WatchedIo<T> {
    pub fn new(inner: T, watch: Arc<ConnWatch>) -> Self {
        Self {
            inner,
            watch,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed_for: None,
        }
    }

    pub fn into_inner(self) -> T {
        self.inner
    }
}

/// `wagate_http_connections_closed_total{reason}`: a connection closed by its watch.
pub fn count_close(reason: &'static str) {
    metrics::counter!("wagate_http_connections_closed_total", "reason" => reason).increment(1);
}

impl<T: AsyncRead + Unpin> AsyncRead for WatchedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.watch.on_bytes(&buf.filled()[before..]);
                }
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Pending => {}
        }
        let Some((deadline, cut)) = this.watch.deadline(cx) else {
            return Poll::Pending;
        };
        if this.armed_for != Some(deadline) {
            this.timer.as_mut().reset(deadline);
            this.armed_for = Some(deadline);
        }
        if this.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let reason = match cut {
            Cut::SilentNew => "silent_new",
            Cut::SlowHead => "slow_head",
            Cut::Idle => "idle",
            Cut::Park => {
                this.watch.phase().park = true;
                return Poll::Ready(Ok(()));
            }
        };
        count_close(reason);
        if cut != Cut::Idle {
            tracing::debug!(
                reason,
                "closing a connection that sent no complete request head within server.header_read_timeout"
            );
        }
        // No bytes and Ok: end of stream, so hyper closes the connection.
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WatchedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
