//! `pksa-service session create|list|revoke`.

use std::path::Path;

use has_protocol::AuthKey;

use serde_json::json;

use super::{SessionCmd, load_config, open_store, rfc3339};
use crate::state::now_ms;
use crate::state::sessions::{self, NewSession};
use crate::text::Escaped;

pub(super) fn run(path: &Path, cmd: SessionCmd) -> anyhow::Result<()> {
    let config = load_config(path)?;
    let (ks, store) = open_store(&config)?;
    match cmd {
        SessionCmd::Create {
            account,
            app,
            days,
            json,
        } => {
            if ks.account(&account).is_none() {
                anyhow::bail!("no keys for {account} in the keystore");
            }
            if !(days > 0.0 && days <= 3650.0) {
                anyhow::bail!("--days must be more than 0 and at most 3650");
            }
            let key = AuthKey::generate();
            let expire = now_ms() + (days * 86_400_000.0) as i64;
            let sealer = store.sealer().clone();
            let new = NewSession {
                account: account.clone(),
                app: app.clone(),
                key: key.clone(),
                expire,
                max_expire: expire,
                origin: "operator",
                token: None,
                nonce_floor: 0,
            };
            let id = store.call_blocking(move |c| sessions::insert(c, &sealer, &new))?;
            if json {
                println!(
                    "{}",
                    json!({"id": id, "account": account, "app": app,
                        "auth_key": key.expose_secret(), "expire_ms": expire,
                        "expire": rfc3339(expire)})
                );
                return Ok(());
            }
            println!("session {id} for {account} / {}", Escaped(&app));
            println!("auth_key {}", key.expose_secret());
            println!("expire   {} ({expire} ms)", rfc3339(expire));
            println!(
                "Put the auth_key and expiry in the app's configuration; anyone holding the key can act for {app}."
            );
        }
        SessionCmd::List { account, json } => {
            let rows = store.call_blocking(move |c| sessions::list(c, account.as_deref()))?;
            if json {
                for r in rows {
                    println!(
                        "{}",
                        json!({"id": r.id, "account": r.account, "app": r.app,
                            "origin": r.origin, "created": rfc3339(r.created),
                            "expire": rfc3339(r.expire), "expire_ms": r.expire,
                            "last_used": r.last_used.map(rfc3339),
                            "last_nonce": r.last_nonce, "revoked": r.revoked})
                    );
                }
                return Ok(());
            }
            println!("id\taccount\tapp\torigin\texpire\tlast_nonce\trevoked");
            for r in rows {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    r.id,
                    r.account,
                    Escaped(&r.app),
                    r.origin,
                    rfc3339(r.expire),
                    r.last_nonce,
                    r.revoked
                );
            }
        }
        SessionCmd::Revoke { id } => {
            if !store.call_blocking(move |c| sessions::revoke(c, id))? {
                anyhow::bail!("no session {id}");
            }
            println!("session {id} revoked");
        }
    }
    Ok(())
}
