//! `pksa-service policy validate|check`.

use std::path::Path;

use super::{PolicyCmd, load_config};

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
            let decision = if d.approve { "approve" } else { "deny" };
            if json {
                println!(
                    "{}",
                    serde_json::json!({"decision": decision, "rule": d.rule, "reason": d.reason})
                );
            } else {
                println!(
                    "decision {decision}\nrule     {}\nreason   {}",
                    d.rule, d.reason
                );
            }
            if d.approve {
                Ok(())
            } else {
                // Scripts tell a denial from an error (1) by the exit status.
                std::process::exit(DENIED_EXIT)
            }
        }
    }
}
