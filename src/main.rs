//! The `wagate` binary: parse the command line and hand over to [`wagate::cli`].

use clap::Parser as _;

// mimalloc: the proxy path allocates per request (headers, bodies, futures); glibc malloc was a
// tenth of its CPU profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    disable_transparent_huge_pages();
    let cli = wagate::cli::Cli::parse();
    // Read before the runtime starts: `server.runtime` decides its shape.
    let config = match wagate::cli::load_config(&cli) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let runtime = match wagate::cli::main_runtime(&config) {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(wagate::cli::run(cli, config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Transparent huge pages off for this process. mimalloc's arenas are 2 MiB-aligned, so with
/// THP the first touch of a page in one could back it with a whole 2 MiB page: 10,000 idle
/// connections took 371 MiB instead of 245 (33 against 22 KiB each) and the idle process 43 MiB
/// instead of 28, with throughput inside the run-to-run spread (README "Benchmarks"). The
/// `no_thp` feature stops mimalloc asking for huge pages; this also covers hosts where THP is
/// `always`. The flag is the process's (its memory map's), whatever thread sets it; a failure (an old
/// kernel) leaves THP as the host configured it.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}
