//! `pksa-service enroll`: open an enrollment window (single use unless told otherwise), list
//! the open ones, close them.

use std::path::Path;

use serde_json::json;

use super::{EnrollArgs, EnrollCmd, load_config, local_time, open_store, parse_duration, rfc3339};
use crate::state::{enrollments, now_ms};
use crate::text::Escaped;

pub(super) fn run(path: &Path, a: EnrollArgs) -> anyhow::Result<()> {
    let config = load_config(path)?;
    let (ks, store) = open_store(&config)?;
    match a.cmd {
        None => {
            let Some(account) = a.account else {
                anyhow::bail!(
                    "--account is required to open a window (or: enroll list, enroll close)"
                );
            };
            let d = parse_duration(&a.duration).map_err(anyhow::Error::msg)?;
            if ks.account(&account).is_none() {
                anyhow::bail!("no keys for {account} in the keystore");
            }
            let uses = (!a.unlimited).then_some(a.uses);
            let until = now_ms() + d.as_millis() as i64;
            let (acct, app) = (account.clone(), a.app.clone());
            let id = store
                .call_blocking(move |c| enrollments::open(c, &acct, app.as_deref(), until, uses))?;
            if a.json {
                println!(
                    "{}",
                    json!({"id": id, "account": account, "app": a.app,
                        "until": rfc3339(until), "until_ms": until, "uses_left": uses})
                );
                return Ok(());
            }
            println!(
                "enrollment window {id} open for {account}{} until {} ({} s), {}",
                a.app
                    .map(|x| format!(", app {}", Escaped(&x)))
                    .unwrap_or_default(),
                local_time(until),
                d.as_secs(),
                match uses {
                    Some(1) => "for one session".to_owned(),
                    Some(n) => format!("for {n} sessions"),
                    None => "for any number of sessions".to_owned(),
                }
            );
        }
        Some(EnrollCmd::List { json }) => {
            let now = now_ms();
            let rows = store.call_blocking(move |c| enrollments::list_open(c, now))?;
            if json {
                for w in rows {
                    println!(
                        "{}",
                        json!({"id": w.id, "account": w.account, "app": w.app,
                            "until": rfc3339(w.until), "until_ms": w.until,
                            "seconds_left": (w.until - now) / 1000, "uses_left": w.uses_left})
                    );
                }
                return Ok(());
            }
            println!("id\taccount\tapp\tuntil\tseconds_left\tuses_left");
            for w in rows {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    w.id,
                    w.account,
                    w.app
                        .as_deref()
                        .map(|x| Escaped(x).to_string())
                        .unwrap_or_else(|| "*".into()),
                    rfc3339(w.until),
                    (w.until - now) / 1000,
                    w.uses_left
                        .map(|u| u.to_string())
                        .unwrap_or_else(|| "unlimited".into())
                );
            }
        }
        Some(EnrollCmd::Close { id, account }) => {
            let n = store.call_blocking(move |c| enrollments::close(c, account.as_deref(), id))?;
            if n == 0 {
                anyhow::bail!("no open window matched");
            }
            println!("closed {n} window(s)");
        }
    }
    Ok(())
}
