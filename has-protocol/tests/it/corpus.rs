//! Every file of `schemas/examples/` behaves as it says, and the committed schemas are what
//! the types generate.

use std::path::PathBuf;

use has_protocol::{corpus, validate};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("schemas")
}

fn files(sub: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("examples").join(sub))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    v.sort();
    v
}

#[test]
fn corpus_examples() {
    let valid = files("valid");
    let invalid = files("invalid");
    assert!(
        valid.len() + invalid.len() >= 60,
        "the corpus has at least 60 files"
    );
    let mut failures = vec![];
    for (path, must_fail) in valid
        .iter()
        .map(|p| (p, false))
        .chain(invalid.iter().map(|p| (p, true)))
    {
        let text = std::fs::read_to_string(path).unwrap();
        let has_expect = text.contains("\"expect_error\"");
        assert_eq!(
            has_expect,
            must_fail,
            "{}: expect_error belongs exactly to invalid/",
            path.display()
        );
        if let Err(e) = corpus::check_example(&text) {
            failures.push(format!(
                "{}: {e}",
                path.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "corpus failures:\n{}",
        failures.join("\n")
    );
}

#[test]
fn committed_schemas_match_the_types() {
    for entry in validate::SCHEMAS {
        let path = root().join(entry.file_name());
        let committed = std::fs::read_to_string(&path).unwrap_or_else(|_| {
            panic!(
                "{} is missing: run cargo xtask validate-schemas",
                path.display()
            )
        });
        let generated = serde_json::to_string_pretty(&entry.schema()).unwrap() + "\n";
        assert!(
            committed == generated,
            "{} is stale: run cargo xtask validate-schemas",
            path.display()
        );
    }
}
