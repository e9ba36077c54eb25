//! The README's quick start, run as written: each command line of the "Quick start for a
//! real deployment" block goes through `bash -c` in a temporary directory, with no terminal,
//! the built `pksa-service` first on PATH. Only stdin is the test's (the WIF that `keys add`
//! reads), and the last line, `run`, is stopped with SIGTERM once it holds its pid file.

use std::process::{Command, Stdio};

use has_crypto::{KeyRole, PrivateKey};

/// The lines of the README block (comments and blank lines dropped, trailing comments kept:
/// the shell ignores them).
fn quick_start() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("## Quick start for a real deployment")
        .nth(1)
        .expect("the README has its quick start");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a sh block");
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

fn bash(dir: &std::path::Path, env: &[(String, String)], line: &str) -> Command {
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_pksa-service"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = Command::new("bash");
    c.arg("-c")
        .arg(line)
        .current_dir(dir)
        .env("PATH", path)
        .env("RUST_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    c
}

#[test]
fn the_readme_quick_start_runs_as_written() {
    let lines = quick_start();
    assert!(lines.len() >= 8, "{lines:?}");
    let dir = tempfile::tempdir().unwrap();
    let mut env: Vec<(String, String)> = vec![];
    let (last, steps) = lines.split_last().unwrap();
    assert!(last.contains("pksa-service run"), "{last}");
    for line in steps {
        // `export NAME=value`: the rest of the block runs with it, as in one shell.
        if let Some(assign) = line.strip_prefix("export ") {
            let assign = assign.split("  #").next().unwrap().trim();
            let (k, v) = assign.split_once('=').unwrap();
            env.push((k.to_owned(), v.to_owned()));
            continue;
        }
        let stdin = ["posting", "memo"]
            .iter()
            .find(|r| line.contains("keys add") && line.contains(&format!("--role {r}")))
            .map(|r| {
                let role: KeyRole = r.parse().unwrap();
                let key = PrivateKey::from_login("alice", "quick-start", role).unwrap();
                format!("{}\n", key.to_wif().expose_secret())
            })
            .unwrap_or_default();
        let out = crate::cli::output_with_stdin(&mut bash(dir.path(), &env, line), &stdin);
        assert!(
            out.status.success(),
            "{line}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        if line.contains("keys list") {
            let posting = PrivateKey::from_login("alice", "quick-start", KeyRole::Posting)
                .unwrap()
                .public_key()
                .to_string();
            assert!(stdout.contains(&posting), "{stdout}");
        }
        if line.contains("session create") {
            assert!(stdout.contains("auth_key "), "{stdout}");
        }
    }

    // The service starts with what the steps made, and stops on SIGTERM.
    let mut svc = bash(dir.path(), &env, &format!("exec {last}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = svc.stderr.take().unwrap();
    let log = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let pid_file = dir.path().join("pksa-state.pid");
    crate::cli::wait_for_pid_file(&pid_file, &mut svc);
    crate::cli::signal(svc.id(), "-TERM");
    let status = svc.wait().unwrap();
    let log = log.join().unwrap();
    assert!(status.success(), "{status:?}\n{log}");
    assert!(log.contains("signing for"), "{log}");
}
