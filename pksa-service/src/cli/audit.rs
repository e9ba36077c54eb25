//! `pksa-service audit list|verify`.

use std::path::Path;

use super::{AuditCmd, load_config, open_store, parse_duration, rfc3339};
use crate::state::now_ms;
use crate::text::Escaped;

pub(super) fn run(path: &Path, cmd: AuditCmd) -> anyhow::Result<()> {
    let config = load_config(path)?;
    let (_ks, store) = open_store(&config)?;
    match cmd {
        AuditCmd::List {
            account,
            app,
            since,
            json,
        } => {
            let since = since
                .map(|s| parse_duration(&s).map(|d| now_ms() - d.as_millis() as i64))
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let rows = store.call_blocking(move |c| {
                crate::state::audit::list(c, account.as_deref(), app.as_deref(), since)
            })?;
            for r in rows {
                let e = &r.entry;
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"id": r.id, "time": rfc3339(r.time), "time_ms": r.time,
                            "uuid": e.uuid, "account": e.account, "app": e.app, "cmd": e.cmd,
                            "op_types": e.op_types, "decision": e.decision, "rule": e.rule,
                            "reason": e.reason, "hash": r.hash})
                    );
                    continue;
                }
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    r.id,
                    rfc3339(r.time),
                    e.uuid,
                    e.account,
                    Escaped(&e.app),
                    e.cmd,
                    e.op_types,
                    e.decision,
                    Escaped(&e.rule),
                    Escaped(&e.reason)
                );
            }
            Ok(())
        }
        AuditCmd::Verify => {
            let verdict = crate::state::verify_audit(store.path(), store.sealer())?;
            match verdict {
                crate::state::audit::Verdict::Intact { rows } => {
                    println!("audit chain intact: {rows} rows");
                    Ok(())
                }
                crate::state::audit::Verdict::Broken { id, reason } => {
                    anyhow::bail!("audit chain broken at row {id}: {reason}")
                }
            }
        }
    }
}
