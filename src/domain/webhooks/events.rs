//! Kapso-format events (contract §9.4): rendered once, when the fact they announce is written,
//! and queued as one delivery per webhook that wants them, in the same transaction.
