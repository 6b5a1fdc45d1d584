//! The floor of the proxy's stack, for `bench/proxy.sh`: a hyper server and a hyper-util client
//! on the same tokio runtime as wagate, doing only what any proxy must (drop the caller's key,
//! set a token, rebase the path) and nothing wagate adds (routing, auth, logging, limits).
//! Whatever this reaches against nginx is the best ratio the chosen stack can give.
//!
//! Two runtime shapes (issue #24 asks for both): `FLOOR_RUNTIME=multi_thread` (the default, as
//! wagate runs: one tokio multi-thread runtime, `TOKIO_WORKER_THREADS` workers) or
//! `FLOOR_RUNTIME=current_thread` (one current-thread runtime per CPU this process may run on,
//! each with its own `SO_REUSEPORT` listener and client pool: thread-per-core).
//!
//! Usage: bare_proxy <listen addr> <upstream base, e.g. http://127.0.0.1:18080>

use std::convert::Infallible;

use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen: std::net::SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:18084".into())
        .parse()
        .expect("listen address");
    let upstream: &'static str = Box::leak(
        args.next()
            .unwrap_or_else(|| "http://127.0.0.1:18080".into())
            .into_boxed_str(),
    );
    if std::env::var("FLOOR_RUNTIME").as_deref() == Ok("current_thread") {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads: Vec<_> = (0..cores)
            .map(|_| {
                std::thread::spawn(move || {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?
                        .block_on(serve(listen, upstream))
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("server thread")?;
        }
        Ok(())
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(serve(listen, upstream))
    }
}

async fn serve(listen: std::net::SocketAddr, upstream: &'static str) -> std::io::Result<()> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseport(true)?;
    socket.set_reuseaddr(true)?;
    socket.bind(listen)?;
    let listener = socket.listen(4096)?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Body> =
        Client::builder(TokioExecutor::new()).build(connector);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let client = client.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let client = client.clone();
            async move {
                let (mut parts, body) = request.into_parts();
                let path = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                let path = path.strip_prefix("/meta/whatsapp").unwrap_or(path);
                parts.uri = format!("{upstream}{path}").parse().expect("valid URI");
                parts.headers.remove("x-api-key");
                parts.headers.remove(hyper::header::HOST);
                parts.headers.insert(
                    hyper::header::AUTHORIZATION,
                    hyper::header::HeaderValue::from_static("Bearer bench-token"),
                );
                let request = hyper::Request::from_parts(parts, Body::new(body));
                let response = match client.request(request).await {
                    Ok(response) => response.map(Body::new),
                    Err(_) => hyper::Response::builder()
                        .status(502)
                        .body(Body::empty())
                        .expect("static response"),
                };
                Ok::<_, Infallible>(response)
            }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
