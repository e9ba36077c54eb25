// `--version` names the commit the binary was built from (`NAME VERSION (COMMIT)`, COMMIT
// 12 hex digits, or `unknown` outside a git checkout): the test of pksa-service, has-relay
// and has-client (`include!`d by each one's tests).

fn assert_version_names_the_commit(binary: &str, name: &str, version: &str) {
    let out = std::process::Command::new(binary)
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let commit = text
        .trim()
        .strip_prefix(&format!("{name} {version} ("))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "{text}"
    );
}
