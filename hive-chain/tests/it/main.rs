//! hive-chain integration tests: the RPC client against the dry-run node on loopback, and the
//! dhive-generated vectors.

// Test code: panics are the failure reports.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod node;
mod props;
mod vectors;
