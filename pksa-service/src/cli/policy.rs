//! `pksa-service policy validate|check`.

use std::path::Path;

use super::{PolicyCmd, load_config};

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
        PolicyCmd::Check { file, account, app } => {
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
            println!(
                "decision {}\nrule     {}\nreason   {}",
                if d.approve { "approve" } else { "deny" },
                d.rule,
                d.reason
            );
            Ok(())
        }
    }
}
