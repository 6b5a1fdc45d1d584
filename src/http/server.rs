//! The accept loop. axum's `serve` has no header-read timeout, so connections are driven by
//! hyper-util directly: HTTP/1 and HTTP/2, per-connection timeouts (`connections`: slow heads,
//! silent new connections, idle keep-alive), `server.max_connections` (over it, a connection is
//! answered 503 and closed rather than queued; descriptors run out only at the process limit,
//! and the accept loop rides that out), and a graceful shutdown that stops accepting, then
//! waits (bounded) for in-flight requests.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::connections::{count_close, ConnLimits, ConnWatch, WatchedIo};
use super::keep_alive::Sniffed;
use super::HttpApp;

#[derive(Debug, Clone, Copy)]
pub struct ServeSettings {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// Idle this long, an HTTP/1 connection is parked (`http::keep_alive`); `None`: never.
    pub park_after: Option<Duration>,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
}

/// Pending connections the kernel queues before `accept` (std's default, 128, overflows under
/// a reconnect storm and clients wait out SYN retransmits, seconds, instead of a fast 503).
const LISTEN_BACKLOG: u32 = 4096;

/// Binds the listener with [`LISTEN_BACKLOG`] (the kernel caps it at `net.core.somaxconn`).
/// `reuse_port`: other sockets of this process may then listen on the same address, and the
/// kernel spreads new connections across them (the thread-per-core shape).
pub fn bind(addr: std::net::SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket = bound_socket(addr, reuse_port)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A socket bound to `addr`, not yet listening (listening registers it with the runtime of
/// the calling thread).
pub(super) fn bound_socket(
    addr: std::net::SocketAddr,
    reuse_port: bool,
) -> std::io::Result<tokio::net::TcpSocket> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    Ok(socket)
}

/// Listens on a socket from [`bound_socket`] in the calling thread's runtime.
pub(super) fn listen(socket: tokio::net::TcpSocket) -> std::io::Result<TcpListener> {
    socket.listen(LISTEN_BACKLOG)
}

/// How long an over-limit connection may take to send its request head before it is closed:
/// it is only owed a 503, and a silent one must not hold a descriptor for long.
const OVER_LIMIT_HEAD_TIMEOUT: Duration = Duration::from_secs(1);

pub async fn serve(
    listener: TcpListener,
    app: HttpApp,
    settings: ServeSettings,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    serve_with_slots(listener, "0", app, settings, slots, shutdown).await;
}

/// [`serve`] with the `server.max_connections` slots given, so listeners on several threads
/// share one limit.
/// `name` labels the listener in `wagate_http_connections_accepted_total` (the thread index in
/// the thread-per-core shape, so its balance shows).
pub(super) async fn serve_with_slots(
    listener: TcpListener,
    name: &str,
    app: HttpApp,
    settings: ServeSettings,
    slots: Arc<Semaphore>,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's own header timer would also run on idle keep-alive connections; `ConnWatch`
    // keeps the two apart.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true);
    let serving = Arc::new(Serving {
        auto: builder.clone(),
        http1,
        app,
        limits: ConnLimits {
            header_read_timeout: settings.header_read_timeout,
            idle_timeout: settings.idle_timeout,
            park_after: settings.park_after,
        },
    });
    let over_limit = ConnLimits {
        header_read_timeout: settings.header_read_timeout.min(OVER_LIMIT_HEAD_TIMEOUT),
        idle_timeout: Duration::ZERO,
        park_after: None,
    };
    let accepted =
        metrics::counter!("wagate_http_connections_accepted_total", "listener" => name.to_owned());
    let connections = TaskTracker::new();
    let stop_connections = CancellationToken::new();
    let mut accept_errors = AcceptErrors::default();
    tokio::pin!(shutdown);
    let serve_one = |stream: tokio::net::TcpStream, peer: std::net::SocketAddr| {
        let _ = stream.set_nodelay(true);
        accepted.increment(1);
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                connections.spawn(serving.clone().serve(
                    stream,
                    peer,
                    slot,
                    stop_connections.clone(),
                ));
            }
            Err(_) => {
                // Answered, not queued and not dropped: each lives for one short 503.
                let watch = ConnWatch::new(over_limit);
                let io = TokioIo::new(WatchedIo::new(stream, watch.clone()));
                let connection = builder.serve_connection(io, serve_overloaded());
                let connection = Watched {
                    connection: connection.into_owned(),
                    watch,
                    slot: None,
                    peer,
                };
                connections.spawn(connection.run(stop_connections.clone()));
            }
        }
    };

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and friends: back off, keep accepting once descriptors free up.
                    accept_errors.record(&error);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        serve_one(stream, peer);
    }

    // Connections the kernel completed but the loop has not accepted yet would be reset when
    // the listener closes, requests and all (a load balancer's POST is then a 502): they are
    // taken and served first, so only a connection arriving within the last system call is.
    for (stream, peer) in take_pending(listener) {
        serve_one(stream, peer);
    }
    tracing::info!("shutting down: no new connections, draining in-flight requests");
    connections.close();
    stop_connections.cancel();
    tokio::select! {
        () = connections.wait() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(settings.shutdown_grace) => {
            tracing::warn!(grace = ?settings.shutdown_grace, "shutdown grace period over; closing remaining connections");
        }
    }
}

/// What every connection of one listener is served with.
struct Serving {
    auto: auto::Builder<TokioExecutor>,
    http1: hyper::server::conn::http1::Builder,
    app: HttpApp,
    limits: ConnLimits,
}

impl Serving {
    /// Serves one accepted connection (holding its `server.max_connections` slot) until it
    /// closes. HTTP/1 may park while idle (`http::keep_alive`); what may be HTTP/2 goes to
    /// hyper-util's protocol-sniffing connection.
    async fn serve(
        self: Arc<Self>,
        stream: tokio::net::TcpStream,
        peer: std::net::SocketAddr,
        slot: OwnedSemaphorePermit,
        stop: CancellationToken,
    ) {
        let sniffed = if self.limits.park_after.is_some() {
            super::keep_alive::sniff(&stream, self.limits.header_read_timeout).await
        } else {
            Sniffed::MaybeHttp2
        };
        match sniffed {
            Sniffed::Silent => count_close("silent_new"),
            Sniffed::Closed => {}
            Sniffed::Http1 => {
                let watch = ConnWatch::new(self.limits);
                let service = serve_app(self.app.clone(), peer, watch.clone());
                super::keep_alive::serve_http1(stream, watch, &self.http1, service, peer, stop)
                    .await;
            }
            Sniffed::MaybeHttp2 => {
                let watch = ConnWatch::new(ConnLimits {
                    park_after: None,
                    ..self.limits
                });
                let service = serve_app(self.app.clone(), peer, watch.clone());
                let io = TokioIo::new(WatchedIo::new(stream, watch.clone()));
                let connection = self.auto.serve_connection_with_upgrades(io, service);
                // Boxed: this task stays small for the HTTP/1 connections that park.
                let connection = Watched {
                    connection: Box::pin(connection.into_owned()),
                    watch,
                    slot: None,
                    peer,
                };
                connection.run(stop).await;
            }
        }
        drop(slot);
    }
}

/// Accepts what waits in `listener`'s queue (without waiting), then closes it.
fn take_pending(listener: TcpListener) -> Vec<(tokio::net::TcpStream, std::net::SocketAddr)> {
    let mut pending = Vec::new();
    // Plain system calls: the runtime's readiness may not have seen the newest arrivals yet.
    let Ok(listener) = listener.into_std() else {
        return pending;
    };
    while let Ok((stream, peer)) = listener.accept() {
        let stream = stream
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpStream::from_std(stream));
        if let Ok(stream) = stream {
            pending.push((stream, peer));
        }
    }
    pending
}

/// How often a connection told to stop while it has not begun its first request looks again.
const STOP_RECHECK: Duration = Duration::from_millis(10);

/// A connection as the accept loop runs it: its slot frees when it closes.
struct Watched<C> {
    connection: C,
    watch: Arc<ConnWatch>,
    slot: Option<OwnedSemaphorePermit>,
    peer: std::net::SocketAddr,
}

impl<C, E> Watched<C>
where
    C: Future<Output = Result<(), E>> + Closable,
    E: std::fmt::Display,
{
    /// Serves until the connection closes. Once `stop` fires it is asked to close gracefully
    /// (an idle one closes, a request in flight finishes first), but not before its first
    /// request has begun: hyper-util cancels a connection still sniffing its protocol, so a
    /// request already on its way (a load balancer connected just before the listener closed)
    /// would be reset unanswered, and a POST is not retried (a 502). One that never sends a
    /// byte is closed by its header-read timeout.
    async fn run(self, stop: CancellationToken) {
        let Self {
            connection,
            watch,
            slot,
            peer,
        } = self;
        let mut connection = std::pin::pin!(connection);
        let mut stopping = std::pin::pin!(stop.cancelled_owned());
        let (mut stop_seen, mut told) = (false, false);
        let result = loop {
            tokio::select! {
                result = connection.as_mut() => break result,
                () = &mut stopping, if !stop_seen => stop_seen = true,
                () = tokio::time::sleep(STOP_RECHECK), if stop_seen && !told => {}
            }
            if stop_seen && !told && watch.has_begun() {
                connection.as_mut().close_gracefully();
                told = true;
            }
        };
        if let Err(error) = result {
            tracing::debug!(%peer, error = %error, "connection closed with an error");
        }
        drop(slot);
    }
}

/// hyper-util's connections, asked to close gracefully.
trait Closable {
    fn close_gracefully(self: std::pin::Pin<&mut Self>);
}

impl<C: Closable + ?Sized> Closable for std::pin::Pin<Box<C>> {
    fn close_gracefully(self: std::pin::Pin<&mut Self>) {
        self.get_mut().as_mut().close_gracefully();
    }
}

impl<I, S, E> Closable for auto::UpgradeableConnection<'static, I, S, E>
where
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S::ResBody: hyper::body::Body + 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, S::ResBody>,
{
    fn close_gracefully(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, E> Closable for auto::Connection<'static, I, S, E>
where
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
    S::ResBody: hyper::body::Body + 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, S::ResBody>,
{
    fn close_gracefully(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// The app for one connection: records the peer and tells the connection's watch when a
/// request runs (until its response body is done).
fn serve_app(
    app: HttpApp,
    peer: std::net::SocketAddr,
    watch: Arc<ConnWatch>,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = std::pin::Pin<
        Box<dyn Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send>,
    >,
> + Clone
       + Unpin {
    hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let in_flight = watch.request_started();
        let mut request = request.map(axum::body::Body::new);
        // What axum's `into_make_service_with_connect_info` would record: the TCP peer, for
        // the failed-authentication limit (`http::client_addr`).
        request.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        // Boxed so the future is `Unpin`, which hyper needs to hand a parking connection's
        // stream back (`poll_without_shutdown`).
        Box::pin(async move {
            let response = app.serve(request).await;
            Ok(response.map(|body| {
                axum::body::Body::new(body.map_frame(move |frame| {
                    in_flight.hold();
                    frame
                }))
            }))
        }) as std::pin::Pin<Box<dyn Future<Output = _> + Send>>
    })
}

/// Every request on an over-limit connection: 503 in its route's envelope, then close.
fn serve_overloaded() -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = std::future::Ready<Result<axum::response::Response, std::convert::Infallible>>,
> + Clone {
    hyper::service::service_fn(|request: hyper::Request<Incoming>| {
        std::future::ready(Ok(super::overload::too_many_connections(
            request.uri().path(),
        )))
    })
}

/// Accept failures, logged at most once a second with a count (descriptor exhaustion would
/// otherwise fill the log).
#[derive(Default)]
struct AcceptErrors {
    since_log: u64,
    last_log: Option<Instant>,
}

impl AcceptErrors {
    fn record(&mut self, error: &std::io::Error) {
        metrics::counter!("wagate_http_accept_errors_total").increment(1);
        self.since_log += 1;
        if self
            .last_log
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(1))
        {
            tracing::warn!(
                %error,
                failures = self.since_log,
                "accept failed (out of file descriptors? raise `ulimit -n` or lower server.max_connections); retrying"
            );
            self.since_log = 0;
            self.last_log = Some(Instant::now());
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
