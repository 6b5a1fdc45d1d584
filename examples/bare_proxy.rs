//! The floor of the proxy's stack, for `bench/proxy.sh`: a hyper server and a hyper-util client
//! on the same tokio runtime as wagate, doing only what any proxy must (drop the caller's key,
//! set a token, rebase the path) and nothing wagate adds (routing, auth, logging, limits).
//! Whatever this reaches against nginx is the best ratio the chosen stack can give.
//!
//! Usage: bare_proxy <listen addr> <upstream base, e.g. http://127.0.0.1:18080>

use std::convert::Infallible;

use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:18084".into());
    let upstream: &'static str = Box::leak(
        args.next()
            .unwrap_or_else(|| "http://127.0.0.1:18080".into())
            .into_boxed_str(),
    );
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Body> =
        Client::builder(TokioExecutor::new()).build(connector);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
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
