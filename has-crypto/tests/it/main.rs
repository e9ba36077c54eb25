//! Integration tests: vectors generated from the JS libraries, and properties.

// Test code: panics are the failure reports.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod properties;
mod vectors;
