//! Project automation: `cargo xtask <command>`.
//!
//! * `ci`: everything CI runs (fmt, clippy, tests, docs, schemas, interop, fuzz smoke, bench
//!   build).
//! * `vectors`: regenerate the test vectors from the pinned JS libraries.
//! * `validate-schemas`: regenerate `schemas/`, fail on changes, check the example corpus.
//! * `interop <crypto|chain|apps> [--count N]`: live cross-check against the JS libraries.
//! * `bench crypto`: criterion benches and the same operations in Node, side by side.
//! * `hostile [--seconds N]`: every attack a stranger can make on a relay and a service, with
//!   the bounds it must stay within (release binaries on loopback; CI runs 5 s each).
//! * `fuzz-smoke [--seconds N]`: run every fuzz target briefly.
//! * `container`: `dist/container`'s recipe run as written in Linux namespaces, without a
//!   Docker engine (root; see `container.rs`).

// Only has-crypto may use `unsafe` (md5x and aesx: calls of #[target_feature] functions
// after the CPU reported the feature); everything else forbids it.
#![forbid(unsafe_code)]
// xtask is a developer tool, not a library: indexing and early exits are acceptable here.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

mod apps;
mod bench;
mod container;
mod e2e;
mod hostile;
mod interop;
mod js;
mod relay;
mod schemas;

use std::process::Command;

use anyhow::{Context, Result, bail};

const USAGE: &str = "usage: cargo xtask <ci | vectors | validate-schemas | interop <crypto|chain|apps> [--count N] | bench <crypto|chain|relay [--nodes N]|e2e> | hostile [--seconds N] | fuzz-smoke [--seconds N] | container>";

fn main() {
    if let Err(e) = run() {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
}

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci(&args[1..]),
        Some("vectors") => vectors(),
        Some("validate-schemas") => schemas::validate_schemas(),
        Some("container") => container::check(),
        Some("interop") => match args.get(1).map(String::as_str) {
            Some("crypto") => {
                let count = flag(&args, "--count")
                    .map(|c| c.parse())
                    .transpose()?
                    .unwrap_or(200);
                interop::crypto(count)
            }
            Some("chain") => {
                let count = flag(&args, "--count")
                    .map(|c| c.parse())
                    .transpose()?
                    .unwrap_or(500);
                interop::chain(count)
            }
            Some("apps") => apps::interop(),
            _ => bail!("{USAGE}"),
        },
        Some("bench") => match args.get(1).map(String::as_str) {
            Some("crypto") => bench::crypto(),
            Some("chain") => bench::chain(),
            Some("e2e") => e2e::run(),
            Some("relay") => match flag(&args, "--nodes") {
                Some(n) => relay::bench_nodes(n.parse()?),
                None => relay::bench(),
            },
            _ => bail!("{USAGE}"),
        },
        Some("hostile") => {
            let secs = flag(&args, "--seconds")
                .map(|c| c.parse())
                .transpose()?
                .unwrap_or(15);
            hostile::run(secs)
        }
        Some("fuzz-smoke") => {
            let secs = flag(&args, "--seconds")
                .map(|c| c.parse())
                .transpose()?
                .unwrap_or(5);
            fuzz_smoke(secs)
        }
        _ => bail!("{USAGE}"),
    }
}

/// Runs a command from the repository root, failing on a non-zero exit.
pub fn sh(program: &str, args: &[&str], envs: &[(&str, &str)]) -> Result<()> {
    eprintln!("xtask$ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(js::root())
        .status()
        .with_context(|| format!("running {program}"))?;
    if !status.success() {
        bail!("{program} {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn vectors() -> Result<()> {
    for (script, krate) in [
        ("crypto_vectors.js", "has-crypto"),
        ("chain_vectors.js", "hive-chain"),
    ] {
        let out = js::root().join(krate).join("tests").join("vectors");
        let out_s = out.to_string_lossy().into_owned();
        let printed = js::node(script, &[&out_s])?;
        print!("{printed}");
    }
    Ok(())
}

pub const FUZZ_TARGETS: &[&str] = &[
    "ops_json",
    "decrypt",
    "memo_decode",
    "wif_parse",
    "signature_parse",
    "frame_parse",
];

fn fuzz_smoke(seconds: u64) -> Result<()> {
    let have = Command::new("cargo").args(["fuzz", "--version"]).output();
    if !have.map(|o| o.status.success()).unwrap_or(false) {
        sh(
            "cargo",
            &["install", "cargo-fuzz", "--version", "0.13.2", "--locked"],
            &[],
        )?;
    }
    let time = format!("-max_total_time={seconds}");
    for target in FUZZ_TARGETS {
        let fuzz_dir = js::root().join("fuzz");
        // Committed seeds (fuzz/seeds/<target>) join the scratch corpus (fuzz/corpus/<target>).
        let mut corpora = vec![];
        if fuzz_dir.join("seeds").join(target).is_dir() {
            let scratch = format!("corpus/{target}");
            std::fs::create_dir_all(fuzz_dir.join(&scratch))?;
            corpora = vec![scratch, format!("seeds/{target}")];
        }
        eprintln!(
            "xtask$ (cd fuzz && cargo fuzz run {target} {} -- {time})",
            corpora.join(" ")
        );
        let status = Command::new("cargo")
            .args(["fuzz", "run", target])
            .args(&corpora)
            .args(["--", &time, "-print_final_stats=1"])
            .current_dir(&fuzz_dir)
            .status()
            .context("running cargo fuzz")?;
        if !status.success() {
            bail!("fuzz target {target} failed ({status}); see fuzz/artifacts/{target}/");
        }
    }
    Ok(())
}

/// Prints the free space where the build writes (CI machines can be short of disk; a CI run
/// once failed with "No space left on device" while building the fuzz targets).
fn disk_report(when: &str) {
    let out = Command::new("df")
        .args(["-Pk", "."])
        .current_dir(js::root())
        .output();
    let free_kib = out.ok().and_then(|o| {
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let line = text.lines().nth(1)?.to_owned();
        line.split_whitespace().nth(3)?.parse::<u64>().ok()
    });
    match free_kib {
        Some(kib) => eprintln!(
            "xtask: {when}: {:.1} GiB free on the build's disk",
            kib as f64 / 1024.0 / 1024.0
        ),
        None => eprintln!("xtask: {when}: free disk space unknown (df failed)"),
    }
}

/// `dist/pksa.service`: systemd's own rating of its sandboxing, offline (no systemd needs to
/// run). Fails above an exposure of 2.0 ("OK" starts below 4.0; the unit rates 1.2).
fn systemd_unit() -> Result<()> {
    let unit = js::root().join("dist").join("pksa.service");
    let unit_s = unit.to_string_lossy().into_owned();
    eprintln!("xtask$ systemd-analyze security --offline=true --threshold=20 {unit_s}");
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20", &unit_s])
        .output()
        .context("running systemd-analyze (Debian package systemd)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let overall = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or("no overall exposure line");
    println!("systemd unit: {}", overall.trim_start_matches(['→', ' ']));
    if !out.status.success() {
        bail!("dist/pksa.service rates above 2.0:\n{text}");
    }
    Ok(())
}

fn ci(args: &[String]) -> Result<()> {
    let skip_fuzz = args.iter().any(|a| a == "--no-fuzz");
    disk_report("start");
    sh("cargo", &["fmt", "--all", "--", "--check"], &[])?;
    sh(
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    sh("cargo", &["test", "--workspace"], &[])?;
    sh(
        "cargo",
        &["doc", "--workspace", "--no-deps"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    schemas::validate_schemas()?;
    systemd_unit()?;
    interop::crypto(200)?;
    interop::chain(500)?;
    apps::interop()?;
    // What strangers can do, briefly (release binaries on loopback).
    hostile::run(5)?;
    // The container recipe, as written (its build is the release build hostile used). A
    // machine that cannot make namespaces at all (not root, or a runtime that forbids
    // unshare) says so loudly and goes on: CI machines can (they run as root, as this
    // script's apt-get needs).
    match container::unavailable() {
        None => container::check()?,
        Some(why) => eprintln!(
            "xtask: CONTAINER CHECK NOT RUN: this machine cannot create namespaces ({why})"
        ),
    }
    // Bench targets only (not every lib's test harness in release): clippy already type-checks
    // them; this proves they build and link in the bench profile.
    sh(
        "cargo",
        &[
            "bench",
            "-p",
            "has-crypto",
            "-p",
            "has-protocol",
            "-p",
            "hive-chain",
            "--benches",
            "--no-run",
        ],
        &[],
    )?;
    disk_report("release and bench builds done");
    if !skip_fuzz {
        // The fuzz targets build into fuzz/target with sanitizers; the release binaries
        // (hostile) and bench builds are not needed any more: give their space back first.
        sh("cargo", &["clean", "--release"], &[])?;
        disk_report("target/release removed");
        fuzz_smoke(5)?;
    }
    disk_report("end");
    eprintln!("xtask: ci passed");
    Ok(())
}
