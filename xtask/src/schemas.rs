//! `cargo xtask validate-schemas`: regenerate `schemas/` from the has-protocol types, fail if
//! anything changed, then check the example corpus.

use anyhow::{Result, bail};
use has_protocol::{corpus, validate};

use crate::js;

pub fn validate_schemas() -> Result<()> {
    let root = js::root().join("schemas");
    let mut changed = vec![];
    let mut expected_files = std::collections::BTreeSet::new();
    for entry in validate::SCHEMAS {
        let schema = entry.schema();
        if !jsonschema::meta::is_valid(&schema) {
            bail!("{} is not a valid JSON Schema", entry.file_name());
        }
        let path = root.join(entry.file_name());
        expected_files.insert(path.clone());
        let text = serde_json::to_string_pretty(&schema)? + "\n";
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, text)?;
            changed.push(entry.file_name());
        }
    }
    // Schema files no type generates any more.
    for dir in [
        validate::dir::APP_TO_RELAY,
        validate::dir::PKSA_TO_RELAY,
        validate::dir::RELAY_TO_PKSA,
        validate::dir::RELAY_TO_APP,
        validate::dir::PAYLOADS,
    ] {
        for e in std::fs::read_dir(root.join(dir))? {
            let p = e?.path();
            if !expected_files.contains(&p) {
                std::fs::remove_file(&p)?;
                changed.push(format!("{} (removed)", p.display()));
            }
        }
    }
    println!(
        "schemas: {} generated, {} changed",
        validate::SCHEMAS.len(),
        changed.len()
    );

    let mut counts = (0, 0);
    let mut failures = vec![];
    for (sub, must_fail) in [("valid", false), ("invalid", true)] {
        let mut paths: Vec<_> = std::fs::read_dir(root.join("examples").join(sub))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        for p in paths {
            let text = std::fs::read_to_string(&p)?;
            if text.contains("\"expect_error\"") != must_fail {
                failures.push(format!(
                    "{}: expect_error belongs exactly to invalid/",
                    p.display()
                ));
                continue;
            }
            match corpus::check_example(&text) {
                Ok(_) => {
                    if must_fail {
                        counts.1 += 1
                    } else {
                        counts.0 += 1
                    }
                }
                Err(e) => failures.push(format!("{}: {e}", p.display())),
            }
        }
    }
    println!(
        "examples: {} valid passed, {} invalid rejected as named, {} failures",
        counts.0,
        counts.1,
        failures.len()
    );
    for f in &failures {
        eprintln!("  {f}");
    }
    if !changed.is_empty() {
        for c in &changed {
            eprintln!("  changed: {c}");
        }
        bail!("schemas/ was out of date and has been regenerated: review and commit the changes");
    }
    if !failures.is_empty() {
        bail!("{} corpus examples failed", failures.len());
    }
    Ok(())
}
