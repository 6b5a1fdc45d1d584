//! End-to-end tests of webhook forwarding: a real wagate on an ephemeral port forwards what Meta
//! POSTs to programmable receivers, on SQLite and PostgreSQL.

#[path = "../common/mod.rs"]
mod common;

mod support;

mod api;
mod forwarding;
mod isolation;
mod outcomes;
mod ssrf;
