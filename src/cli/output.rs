//! `--json`: every admin command prints for people by default and JSON on request.

use clap::Args;

#[derive(Debug, Args, Clone, Copy)]
pub struct Output {
    /// Print machine-readable JSON.
    #[arg(long)]
    pub json: bool,
}
