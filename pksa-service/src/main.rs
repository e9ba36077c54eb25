//! `pksa-service`: parses flags and hands over to [`pksa_service::cli::main`].

// Only has-crypto may use `unsafe` (md5x and aesx: calls of #[target_feature] functions
// after the CPU reported the feature); everything else forbids it.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() {
    let cli = pksa_service::cli::Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pksa-service: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(pksa_service::cli::main(cli)) {
        eprintln!("pksa-service: {e:#}");
        std::process::exit(1);
    }
}
