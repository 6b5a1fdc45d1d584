//! Background work that must not slow the request path: a tokio runtime of its own whose
//! threads run at a lower scheduling priority (nice about 10 on Linux), so when the machine is
//! busy the kernel gives the HTTP handlers and the ingest writer the CPU first, and the
//! background work the rest. The media vault's downloads run here: copying and hashing 50 MB/s
//! of media on the same core as ingest would otherwise show in every webhook's acknowledgement.

use std::future::Future;

use thread_priority::{ThreadPriority, ThreadPriorityValue};

/// The priority of background threads, on the crate's 0–99 scale (mapped to niceness 9–10 for
/// normal Linux threads; 50 would be the default, nice 0).
const BACKGROUND_PRIORITY: u8 = 25;

/// Runs `work` to completion on a new thread with a lower-priority runtime (two worker threads
/// at most; blocking work on its own pool, inheriting the lower priority).
pub fn spawn(
    name: &'static str,
    work: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(2));
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            lower_priority();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .thread_name(name)
                .on_thread_start(lower_priority)
                .enable_all()
                .build();
            match runtime {
                Ok(runtime) => runtime.block_on(work),
                Err(error) => {
                    tracing::error!(%error, name, "starting a background runtime failed; its work does not run")
                }
            }
        })
        .map(drop)
}

/// Lowers the calling thread's priority (Linux keeps one per thread). Failing only means the
/// work competes with requests on equal terms, so it is logged, not fatal.
fn lower_priority() {
    let Ok(value) = ThreadPriorityValue::try_from(BACKGROUND_PRIORITY) else {
        return;
    };
    if let Err(error) =
        thread_priority::set_current_thread_priority(ThreadPriority::Crossplatform(value))
    {
        tracing::debug!(?error, "lowering a background thread's priority failed");
    }
}
