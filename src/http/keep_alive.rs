//! Idle HTTP/1 keep-alive connections without hyper's per-connection state.
//!
//! hyper keeps a connection's buffers (an 8 KiB read buffer, an 8 KiB head buffer) and its
//! dispatcher for as long as the connection lives, idle or not: 10,000 idle keep-alive
//! connections (a load balancer's pool, clients that keep sockets open) held about 22 KiB each.
//! Here an HTTP/1 connection idle for `server.park_after` ends its hyper connection (its
//! `WatchedIo` reports end of stream, see `http::connections`) without closing the socket; the
//! bare stream then waits for the next request, `server.idle_timeout` or shutdown, and a new
//! hyper connection serves the next request. A busy connection never parks; a parked one costs
//! its socket and this task.
//!
//! HTTP/2 and anything that might be (a first read starting like its preface) is served by
//! hyper-util's protocol-sniffing connection as before and never parks.

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::connections::{count_close, ConnWatch, WatchedIo};

/// What the first bytes of a new connection say.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Sniffed {
    /// An HTTP/1 request (it does not start like HTTP/2's preface).
    Http1,
    /// HTTP/2 prior knowledge, or too few bytes yet to tell.
    MaybeHttp2,
    /// Nothing within `server.header_read_timeout`.
    Silent,
    /// Closed or failed before sending anything.
    Closed,
}

/// Waits (up to `timeout`) for a new connection's first bytes and looks at them without
/// consuming them.
pub(super) async fn sniff(stream: &TcpStream, timeout: Duration) -> Sniffed {
    const PREFACE: &[u8] = b"PRI";
    let mut head = [0u8; 3];
    match tokio::time::timeout(timeout, stream.peek(&mut head)).await {
        Err(_) => Sniffed::Silent,
        Ok(Err(_) | Ok(0)) => Sniffed::Closed,
        Ok(Ok(read)) if head[..read] == PREFACE[..read] => Sniffed::MaybeHttp2,
        Ok(Ok(_)) => Sniffed::Http1,
    }
}

/// How often a connection told to stop before its request has begun looks again (see
/// `server::Watched::run`, which this follows).
const STOP_RECHECK: Duration = Duration::from_millis(10);

/// Serves an HTTP/1 connection until it closes, parking it while idle. `stop`: close an idle
/// connection, finish a request in flight and then close.
pub(super) async fn serve_http1<S>(
    mut stream: TcpStream,
    watch: Arc<ConnWatch>,
    builder: &http1::Builder,
    service: S,
    peer: std::net::SocketAddr,
    stop: CancellationToken,
) where
    S: hyper::service::HttpService<Incoming, ResBody = axum::body::Body> + Clone + Unpin,
    S::Future: Unpin,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    loop {
        let io = TokioIo::new(WatchedIo::new(stream, watch.clone()));
        // Boxed: this task keeps only a pointer to it, and none while parked.
        let mut connection = Box::new(builder.serve_connection(io, service.clone()));
        let begun_before = watch.requests();
        let mut stopping = std::pin::pin!(stop.cancelled());
        let (mut stop_seen, mut told) = (false, false);
        let result = loop {
            tokio::select! {
                result = std::future::poll_fn(|cx| connection.poll_without_shutdown(cx)) => break result,
                () = &mut stopping, if !stop_seen => stop_seen = true,
                () = tokio::time::sleep(STOP_RECHECK), if stop_seen && !told => {}
            }
            // Only once its request has begun: hyper closes a connection that has not read one
            // yet at once, and the request on its way (the reason this connection woke) is lost.
            if stop_seen && !told && watch.has_begun_since(begun_before) {
                std::pin::Pin::new(&mut *connection).graceful_shutdown();
                told = true;
            }
        };
        if let Err(error) = result {
            tracing::debug!(%peer, %error, "connection closed with an error");
            return;
        }
        let parked = watch.take_park();
        let http1::Parts {
            io,
            read_buf,
            service,
            ..
        } = connection.into_parts();
        drop(service);
        stream = io.into_inner().into_inner();
        // A park happens only between requests, so hyper holds nothing unread; if it did, those
        // bytes would be lost by parking, so the connection closes instead.
        let unread = !read_buf.is_empty();
        // Dropped before parking, not at the end of this iteration: even empty, `read_buf`
        // shares hyper's 8 KiB read buffer, and holding it made a parked connection cost 9 KiB.
        drop(read_buf);
        if !parked || told || unread {
            let _ = stream.shutdown().await;
            return;
        }
        if !wait_parked(&stream, &watch, &stop).await {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

/// Holds a parked connection: `true` when its next request arrives, `false` when it is to
/// close (idle past `server.idle_timeout`, or shutdown).
async fn wait_parked(stream: &TcpStream, watch: &ConnWatch, stop: &CancellationToken) -> bool {
    let parked = metrics::gauge!("wagate_http_connections_parked");
    parked.increment(1.0);
    let resume = tokio::select! {
        ready = stream.readable() => ready.is_ok(),
        () = tokio::time::sleep_until(watch.idle_deadline()) => {
            count_close("idle");
            false
        }
        () = stop.cancelled() => false,
    };
    parked.decrement(1.0);
    resume
}
