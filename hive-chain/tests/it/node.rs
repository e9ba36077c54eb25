//! RPC client ⇄ dry-run node over real HTTP on 127.0.0.1.

use std::time::Duration;

use has_crypto::{KeyRole, PrivateKey};
use hive_chain::accounts::Account;
use hive_chain::dryrun::{self, DryRunNode};
use hive_chain::rpc::{NodeErrorKind, RpcClient, RpcError, RpcOptions};
use hive_chain::{ChainId, Operation, Transaction};
use serde_json::json;

fn keys(name: &str) -> [PrivateKey; 4] {
    KeyRole::ALL.map(|r| PrivateKey::from_login(name, "dry-run-password", r).unwrap())
}

fn account(name: &str) -> Account {
    let [m, p, a, o] = keys(name);
    Account::with_keys(
        name,
        *o.public_key(),
        *a.public_key(),
        *p.public_key(),
        *m.public_key(),
    )
}

async fn setup() -> (std::sync::Arc<DryRunNode>, RpcClient) {
    let node = DryRunNode::new(ChainId::MAINNET, vec![account("alice"), account("bob")]);
    let (url, _h) = dryrun::spawn(node.clone(), 0).await.unwrap();
    // A dead node first: the client must fail over to the live one.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        drop(l);
        format!("http://{a}/")
    };
    let client = RpcClient::new(
        vec![dead, url],
        RpcOptions {
            timeout: Duration::from_secs(5),
            ..Default::default()
        },
    )
    .unwrap();
    (node, client)
}

fn vote(voter: &str) -> Vec<Operation> {
    Operation::list_from_json(&[
        json!(["vote", {"voter": voter, "author": "bob", "permlink": "p", "weight": 10000}]),
    ])
    .unwrap()
}

#[tokio::test]
async fn broadcast_verify_record_and_refusals() {
    let (node, client) = setup().await;
    let head = client.head_block().await.unwrap();
    let [_, posting, active, _] = keys("alice");

    let tx = Transaction::new(&head, vote("alice"), 60).unwrap();
    let id = tx.id().unwrap();
    let signed = tx.clone().sign(&ChainId::MAINNET, &[&posting]).unwrap();
    let b = client.broadcast(&signed).await.unwrap();
    assert_eq!(b.id, id);
    assert!(b.dry_run);
    assert_eq!(node.recorded().len(), 1);
    assert!(
        client.stats()[0]
            .failures
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1,
        "the dead node was tried"
    );

    // The same transaction again: duplicate.
    match client.broadcast(&signed).await {
        Err(RpcError::Node { kind, .. }) => assert_eq!(kind, NodeErrorKind::Duplicate),
        // With two nodes configured a duplicate is reported as success (an earlier attempt won).
        Ok(b) => assert_eq!(b.id, id),
        Err(e) => panic!("{e}"),
    }
    assert_eq!(node.recorded().len(), 1, "never recorded twice");

    // HF28: an active key does not satisfy a posting operation.
    let tx2 = Transaction::new(&head, vote("alice"), 61).unwrap();
    let err = client
        .broadcast(&tx2.clone().sign(&ChainId::MAINNET, &[&active]).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RpcError::Node {
                kind: NodeErrorKind::MissingAuthority,
                ..
            }
        ),
        "{err}"
    );

    // Wrong chain id: the signature recovers to another key.
    let err = client
        .broadcast(
            &tx2.clone()
                .sign(&ChainId::from_name("testnet").unwrap(), &[&posting])
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RpcError::Node {
                kind: NodeErrorKind::MissingAuthority,
                ..
            }
        ),
        "{err}"
    );

    // Mixed posting + active operations need both keys.
    let mut ops = vote("alice");
    ops.extend(
        Operation::list_from_json(&[
            json!(["transfer", {"from": "alice", "to": "bob", "amount": "1.000 HIVE", "memo": ""}]),
        ])
        .unwrap(),
    );
    let mixed = Transaction::new(&head, ops, 62).unwrap();
    assert!(
        client
            .broadcast(&mixed.clone().sign(&ChainId::MAINNET, &[&active]).unwrap())
            .await
            .is_err()
    );
    client
        .broadcast(&mixed.sign(&ChainId::MAINNET, &[&posting, &active]).unwrap())
        .await
        .unwrap();

    // Expired.
    let mut old = head.clone();
    old.time.0 -= 3600;
    let expired = Transaction::new(&old, vote("alice"), 60)
        .unwrap()
        .sign(&ChainId::MAINNET, &[&posting])
        .unwrap();
    let err = client.broadcast(&expired).await.unwrap_err();
    assert!(
        matches!(
            err,
            RpcError::Node {
                kind: NodeErrorKind::Expired,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(node.recorded().len(), 2);
}

#[tokio::test]
async fn accounts_lookup_both_apis() {
    let (node, client) = setup().await;
    let got = client
        .get_accounts(&["alice".into(), "nobody".into()])
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0], account("alice"));
    let v = client
        .call("database_api.find_accounts", json!({"accounts": ["bob"]}))
        .await
        .unwrap();
    assert_eq!(v["accounts"][0]["name"], "bob");
    let err = client
        .call("condenser_api.nope", json!([]))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::Node { code: -32601, .. }));
    // The node counts what it served, by method; unknown methods are not counted.
    assert_eq!(node.calls("condenser_api.get_accounts"), 1);
    assert_eq!(node.calls("database_api.find_accounts"), 1);
    assert_eq!(node.calls("condenser_api.nope"), 0);
    client.head_block().await.unwrap();
    assert_eq!(node.calls("condenser_api.get_dynamic_global_properties"), 1);
}

#[tokio::test]
async fn all_nodes_down_is_unavailable() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/", l.local_addr().unwrap())
    };
    let client = RpcClient::new(
        vec![dead],
        RpcOptions {
            timeout: Duration::from_secs(1),
            rounds: 2,
            round_backoff: Duration::from_millis(10),
        },
    )
    .unwrap();
    assert!(matches!(
        client.head_block().await.unwrap_err(),
        RpcError::Unavailable { .. }
    ));
}
