//! pksa-service end to end: the real relay, the dry-run node, has-client, a real SQLite file,
//! all on 127.0.0.1.

// Test code: panics are the failure reports.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod cli;
mod env;
mod faults;
mod flows;
mod holes;
mod hostile;
mod quickstart;
mod reference_bugs;
mod sandbox;
