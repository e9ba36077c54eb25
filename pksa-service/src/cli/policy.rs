//! `pksa-service policy validate|check`.

use std::path::Path;

use super::{PolicyCmd, load_config};
use crate::state::spend;

/// `policy check`'s exit status when the policy denies (1 is an error).
pub const DENIED_EXIT: i32 = 3;

pub(super) fn run(path: &Path, cmd: PolicyCmd) -> anyhow::Result<()> {
    match cmd {
        PolicyCmd::Validate { file } => {
            let text = std::fs::read_to_string(&file)?;
            let p: crate::policy::PolicyConfig =
                toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            p.validate()
                .map_err(|(f, m)| anyhow::anyhow!("{}: {f}: {m}", file.display()))?;
            println!(
                "{}: valid, {} rule(s), hash {}",
                file.display(),
                p.rules.len(),
                crate::policy::hash(&p)
            );
            Ok(())
        }
        PolicyCmd::Check {
            file,
            account,
            app,
            json,
        } => {
            let config = load_config(path)?;
            let text = std::fs::read_to_string(&file)?;
            let v: serde_json::Value = serde_json::from_str(&text)?;
            let d = crate::policy::explain(
                &config.policy,
                &v,
                &account,
                &app,
                config.challenge_decrypt,
                &config.chain_id,
            )
            .map_err(anyhow::Error::msg)?;
            // The rule's spend limits against what the state file has counted for the account
            // (read only; no state file yet: nothing spent). The service refuses a request
            // that would pass one, so does this check.
            let mut spends = vec![];
            let mut over = None;
            if d.approve && !d.spend.is_empty() {
                let conn = config
                    .state
                    .exists()
                    .then(|| {
                        rusqlite::Connection::open_with_flags(
                            &config.state,
                            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                        )
                    })
                    .transpose()?;
                for s in &d.spend {
                    let already = match &conn {
                        Some(c) => spend::spent(c, &s.counter, &account, s.window_secs)?,
                        None => 0,
                    };
                    let within = already.saturating_add(s.amount) <= s.max;
                    let line = format!(
                        "{}: {} spent in the last {} h + {} requested, limit {}",
                        s.counter,
                        spend::show(&s.counter, already),
                        s.window_secs / 3600,
                        spend::show(&s.counter, s.amount),
                        spend::show(&s.counter, s.max)
                    );
                    if !within && over.is_none() {
                        over = Some(format!("spend limit {line}"));
                    }
                    spends.push((line, within));
                }
            }
            let approve = d.approve && over.is_none();
            let reason = over.unwrap_or(d.reason);
            let decision = if approve { "approve" } else { "deny" };
            if json {
                let spend: Vec<_> = spends
                    .iter()
                    .map(|(l, w)| serde_json::json!({"limit": l, "within": w}))
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({"decision": decision, "rule": d.rule, "reason": reason, "spend": spend})
                );
            } else {
                println!(
                    "decision {decision}\nrule     {}\nreason   {reason}",
                    d.rule
                );
                for (line, within) in &spends {
                    println!(
                        "spend    {line}{}",
                        if *within { "" } else { " (exceeded)" }
                    );
                }
            }
            if approve {
                Ok(())
            } else {
                // Scripts tell a denial from an error (1) by the exit status.
                std::process::exit(DENIED_EXIT)
            }
        }
    }
}
