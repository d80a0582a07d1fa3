//! Linkerd's emojivoto demo in Rust: `cargo run --example emojivoto -- <emoji|voting|web|vote-bot>`.
//! The apps live in `mod.rs` and beside it; `mesh emojivoto <app>` runs the same code.

use std::process::ExitCode;

use clap::Parser;

#[path = "mod.rs"]
mod emojivoto;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = emojivoto::Cli::parse();
    match emojivoto::run(cli.app).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("emojivoto: {e}");
            ExitCode::FAILURE
        }
    }
}
