//! What wagate tells its operators: structured logs (`logs`) and Prometheus metrics (`metrics`).

pub mod logs;
pub mod metrics;
