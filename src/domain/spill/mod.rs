//! The durable half of the writer's retry buffer: recordings the proxy made after Meta accepted
//! something, kept in a local append-only file while the database is away, and drained to it
//! once it answers (see `domain::writer` for who writes and drains).

mod frame;
mod log;

pub use log::{Pending, Spill, SpillError, SpillStats};

/// The records in a spill file's bytes, up to a torn tail (for inspection and tests).
pub fn records_in(bytes: &[u8]) -> Vec<Vec<u8>> {
    frame::scan(bytes)
        .records
        .into_iter()
        .map(|(_, payload)| payload)
        .collect()
}
