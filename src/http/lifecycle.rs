//! Whether this instance is stopping (SIGTERM): read by `/readyz` and by the layer that asks
//! clients to close their connections while the instance drains.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Whether this instance is stopping: set on SIGTERM, before it stops accepting.
#[derive(Debug, Default)]
pub struct Lifecycle {
    draining: AtomicBool,
}

impl Lifecycle {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}
