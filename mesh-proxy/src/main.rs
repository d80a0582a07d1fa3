//! `mesh-proxy`: the sidecar binary. See the `mesh_proxy` crate for what it does.

use clap::Parser;

fn main() -> std::process::ExitCode {
    mesh_proxy::main_with(mesh_proxy::Args::parse())
}
