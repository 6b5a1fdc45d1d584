//! The thread-per-core shape (`server.runtime = "thread_per_core"`): `server.threads` threads,
//! each with a single-threaded tokio runtime and its own `SO_REUSEPORT` listener on the same
//! address. The kernel spreads new connections across the listeners; a connection and the
//! tasks its requests spawn stay on their thread, so the request path pays no work-stealing
//! or cross-thread wake-ups (the floor proxy measured 1.12× the multi-thread shape on one
//! core; README "Benchmarks").
//!
//! What stays shared: the app (`HttpApp`) and its state (caches, pools, the group-commit writer) and
//! the `server.max_connections` slots. Background work (deliveries, sweeps, pacing) stays on
//! the main runtime. Database and upstream connections opened from an HTTP thread are driven
//! by that thread's runtime but serve every thread through the shared pools, so the runtimes
//! are kept alive after their listeners drain, until the whole server has stopped
//! ([`PerCoreServers::release`]): dropping one earlier would break the connections it owns
//! while the deliveries still drain.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{oneshot, Semaphore};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::server::{bound_socket, listen, serve_with_slots, ServeSettings};
use super::HttpApp;

/// The HTTP threads after their listeners closed and their connections drained. Dropped, it
/// lets them end too (so does dropping [`serve`]'s future: nothing outlives the server).
pub struct PerCoreServers {
    release: DropGuard,
    exited: Vec<oneshot::Receiver<()>>,
}

impl PerCoreServers {
    /// Ends the HTTP threads' runtimes (dropping what they still own) and waits for them.
    pub async fn release(self) {
        drop(self.release);
        for exited in self.exited {
            let _ = exited.await;
        }
    }
}

/// Serves on `threads` (at least one) threads until `shutdown` resolves and each thread has drained its
/// connections (within `shutdown_grace`). `first` is the listener already bound (with
/// `SO_REUSEPORT`); the others are bound to its address.
pub async fn serve(
    first: tokio::net::TcpListener,
    threads: usize,
    app: HttpApp,
    settings: ServeSettings,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<PerCoreServers> {
    let threads = threads.max(1);
    let addr = first.local_addr()?;
    let first = first.into_std()?;
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let stop = CancellationToken::new();
    let release = CancellationToken::new();
    let stop_on_drop = stop.clone().drop_guard();
    let release_on_drop = release.clone().drop_guard();
    let mut drained = Vec::with_capacity(threads);
    let mut exited = Vec::with_capacity(threads);
    let mut first = Some(first);
    for index in 0..threads {
        // Bound here, on the calling thread, so a failure (address taken by another user's
        // socket) is reported before anything is served.
        let socket = match first.take() {
            Some(listener) => Listener::Listening(listener),
            None => Listener::Bound(bound_socket(addr, true)?),
        };
        let (drained_tx, drained_rx) = oneshot::channel();
        let (exited_tx, exited_rx) = oneshot::channel();
        let thread = HttpThread {
            name: index.to_string(),
            app: app.clone(),
            settings,
            slots: slots.clone(),
            stop: stop.clone(),
            release: release.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name(format!("wagate-http-{index}"))
            .spawn(move || {
                thread.run(socket, drained_tx);
                let _ = exited_tx.send(());
            });
        // On an error the guards end the threads already started.
        spawned?;
        drained.push(drained_rx);
        exited.push(exited_rx);
    }
    tracing::info!(threads, %addr, "serving HTTP thread-per-core");
    shutdown.await;
    drop(stop_on_drop);
    for thread in drained {
        let _ = thread.await;
    }
    Ok(PerCoreServers {
        release: release_on_drop,
        exited,
    })
}

/// A listener for one HTTP thread: the first is already listening; the others listen once on
/// their thread, so they register with that thread's runtime.
enum Listener {
    Listening(std::net::TcpListener),
    Bound(tokio::net::TcpSocket),
}

struct HttpThread {
    name: String,
    app: HttpApp,
    settings: ServeSettings,
    slots: Arc<Semaphore>,
    stop: CancellationToken,
    release: CancellationToken,
}

impl HttpThread {
    fn run(self, socket: Listener, drained: oneshot::Sender<()>) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                tracing::error!(%error, "starting an HTTP thread's runtime failed; the other threads serve");
                let _ = drained.send(());
                return;
            }
        };
        runtime.block_on(async move {
            let listener = match socket {
                Listener::Listening(listener) => tokio::net::TcpListener::from_std(listener),
                Listener::Bound(socket) => listen(socket),
            };
            match listener {
                Ok(listener) => {
                    let stop = self.stop.clone();
                    serve_with_slots(
                        listener,
                        &self.name,
                        self.app,
                        self.settings,
                        self.slots,
                        stop.cancelled_owned(),
                    )
                    .await;
                }
                Err(error) => {
                    tracing::error!(%error, "an HTTP thread could not listen; the other threads serve")
                }
            }
            let _ = drained.send(());
            self.release.cancelled().await;
        });
    }
}
