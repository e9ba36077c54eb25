//! has-relay tests with real sockets on 127.0.0.1:0.

// Test code: panics are the failure reports.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod cluster;
mod peer;
mod relay;

/// The binary refuses bad arguments before it writes anything (no server key file for a
/// start that fails).
#[test]
fn a_refused_start_writes_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("relay.key");
    let bad_accounts = dir.path().join("accounts.json");
    std::fs::write(&bad_accounts, "not json").unwrap();
    let bad_config = dir.path().join("relay.toml");
    std::fs::write(&bad_config, "max_connections = \"many\"\n").unwrap();
    let key_s = key.to_string_lossy().into_owned();
    let accounts_s = bad_accounts.to_string_lossy().into_owned();
    let config_s = bad_config.to_string_lossy().into_owned();
    for args in [
        vec!["--listen", "127.0.0.1:0", "--accounts", accounts_s.as_str()],
        vec![
            "--listen",
            "127.0.0.1:0",
            "--accounts",
            "/nonexistent/accounts.json",
        ],
        vec!["--config", config_s.as_str()],
        vec!["--listen", "not-an-address"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_has-relay"))
            .args(&args)
            .args(["--key-file", key_s.as_str()])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} started");
        assert!(!key.exists(), "{args:?} wrote {}", key.display());
    }
}

/// The per-address caps count an IPv6 /64 as one address (and a v4-mapped address as its
/// IPv4 one).
#[test]
fn addresses_are_grouped_by_ipv6_64() {
    use has_relay::hub::address_group;
    use std::net::IpAddr;
    let g = |s: &str| address_group(s.parse::<IpAddr>().unwrap());
    assert_eq!(g("2001:db8:1:2:aaaa::1"), g("2001:db8:1:2:ffff:1:2:3"));
    assert_ne!(g("2001:db8:1:2::1"), g("2001:db8:1:3::1"));
    assert_eq!(g("::ffff:192.0.2.7"), g("192.0.2.7"));
    assert_ne!(g("192.0.2.7"), g("192.0.2.8"));
}

/// `spawn` (the sandbox's way in) refuses an unreadable accounts file before it writes a key
/// file, as the binary does.
#[tokio::test]
async fn spawn_refuses_before_writing_a_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("relay.key");
    let accounts = dir.path().join("accounts.json");
    std::fs::write(&accounts, "not json").unwrap();
    let config = has_relay::RelayConfig::new(key.clone(), has_relay::AccountSource::File(accounts));
    let r = has_relay::spawn(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), config).await;
    assert!(r.is_err());
    assert!(!key.exists());
}

include!("../../../build-support/version_test.rs");

/// `--version` names the commit the binary was built from.
#[test]
fn version_names_the_commit() {
    assert_version_names_the_commit(
        env!("CARGO_BIN_EXE_has-relay"),
        "has-relay",
        env!("CARGO_PKG_VERSION"),
    );
}
