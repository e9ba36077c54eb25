//! Installing the pinned JS reference libraries and running Node scripts against them.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The repository root (the parent of this crate).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Where the pinned npm packages are installed (rebuildable scratch space).
pub fn scratch() -> PathBuf {
    root().join("target").join("xtask-js")
}

/// Installs `xtask/js/package.json` + `package-lock.json` with `npm ci` into the scratch
/// directory, unless the same lock file is already installed there.
pub fn ensure_installed() -> Result<PathBuf> {
    let src = root().join("xtask").join("js");
    let dst = scratch();
    std::fs::create_dir_all(&dst)?;
    let lock = std::fs::read(src.join("package-lock.json")).context("reading package-lock.json")?;
    let stamp = dst.join(".installed-lock");
    if std::fs::read(&stamp).ok().as_deref() == Some(lock.as_slice())
        && dst.join("node_modules").is_dir()
    {
        return Ok(dst);
    }
    std::fs::copy(src.join("package.json"), dst.join("package.json"))?;
    std::fs::write(dst.join("package-lock.json"), &lock)?;
    eprintln!(
        "xtask: installing pinned JS reference libraries into {}",
        dst.display()
    );
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dst)
        .status()
        .context("running npm (is Node.js installed?)")?;
    if !status.success() {
        bail!("npm ci failed in {}", dst.display());
    }
    std::fs::write(&stamp, &lock)?;
    Ok(dst)
}

/// Runs `node xtask/js/<script> args…` with the scratch `node_modules` on `NODE_PATH`.
pub fn node(script: &str, args: &[&str]) -> Result<String> {
    let dir = ensure_installed()?;
    let script_path = root().join("xtask").join("js").join(script);
    let out = Command::new("node")
        .arg(&script_path)
        .args(args)
        .env("NODE_PATH", dir.join("node_modules"))
        .output()
        .with_context(|| format!("running node {script}"))?;
    if !out.status.success() {
        bail!(
            "node {script} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
