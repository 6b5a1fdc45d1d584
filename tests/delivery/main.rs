//! End-to-end tests of webhook forwarding: a real wagate on an ephemeral port forwards what Meta
//! POSTs to programmable receivers, on SQLite and PostgreSQL.

#[allow(dead_code)]
#[path = "../api/graph_mock.rs"]
mod graph_mock;
#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;

#[allow(dead_code)]
mod receiver;
#[allow(dead_code)]
mod support;

mod api;
mod forwarding;
mod isolation;
mod ssrf;
