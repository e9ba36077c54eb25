//! has-protocol integration tests: the example corpus, the committed schemas, round trips.

// Test code: panics are the failure reports.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod corpus;
mod roundtrip;
