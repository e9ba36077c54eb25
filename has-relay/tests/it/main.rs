//! has-relay tests with real sockets on 127.0.0.1:0.

// Test code: panics are the failure reports.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod peer;
mod relay;
