// Records the commit the binary is built from (`PKSA_BUILD_COMMIT`), for `--version` and
// the start-up log: the build script of pksa-service, has-relay and has-client
// (`include!`d by each one's `build.rs`).

fn main() {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=PKSA_BUILD_COMMIT={commit}");
    // A new commit changes HEAD (or the branch it points at).
    for path in ["../.git/HEAD", "../.git/refs/heads"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
