//! `mesh`: the command line of the mesh. Every subcommand is a thin call into a library crate.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mesh_tls::{CertificateAuthority, IdentityDomain};

mod check;
mod dashboard;
mod local;
mod observe;
mod top;

/// The emojivoto demo apps (`examples/emojivoto/`), built in so `mesh demo` can start them.
#[path = "../examples/emojivoto/mod.rs"]
mod emojivoto;

#[derive(Parser, Debug)]
#[command(
    name = "mesh",
    version,
    about = "A service mesh built from embeddable tower layers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Manage the mesh's certificate authority (trust anchor and issuer).
    #[command(subcommand)]
    Ca(CaCommand),
    /// Run the control plane in the foreground (local mode).
    Control(local::ControlArgs),
    /// Run a workload behind its own sidecar: `mesh run --name web -n emojivoto --port 8080 -- ./web`.
    Run(Box<local::RunArgs>),
    /// Bring up the control plane and the emojivoto demo, each workload behind a sidecar.
    Demo(local::DemoArgs),
    /// Golden metrics per workload or namespace: success rate, RPS, latency percentiles.
    Stat(observe::StatArgs),
    /// Golden metrics per route of a service.
    Routes(observe::RoutesArgs),
    /// Who calls whom, and whether the connection is secured by mTLS.
    Edges(observe::EdgesArgs),
    /// Watch requests live, as a workload's proxy sees them.
    Tap(observe::TapArgs),
    /// The busiest paths, live, refreshed in place (q quits).
    Top(observe::TapArgs),
    /// Check that the mesh is healthy: control plane, certificates, every workload's proxy.
    Check(check::CheckArgs),
    /// Open the web dashboard: health, golden metrics, topology and live tap in a browser.
    Dashboard(dashboard::DashboardArgs),
    /// Run the sidecar proxy (the same as the `mesh-proxy` binary).
    Proxy(Box<mesh_proxy::Args>),
    /// Run one app of the emojivoto demo (what `mesh demo` starts behind each sidecar).
    #[command(subcommand, hide = true)]
    Emojivoto(emojivoto::App),
}

#[derive(Subcommand, Debug)]
enum CaCommand {
    /// Create a trust anchor and an issuer in DIR, or show the ones already there.
    Init {
        /// Directory for trust-anchors.pem, issuer.pem and the keys (mode 0600).
        dir: PathBuf,
        /// DNS suffix of workload identities.
        #[arg(long, default_value = "mesh.cluster.local")]
        identity_suffix: String,
        /// SPIFFE trust domain.
        #[arg(long, default_value = "cluster.local")]
        trust_domain: String,
    },
    /// Issue a certificate and key for a workload identity, for clients that cannot make a CSR.
    Issue {
        /// Directory of the CA (see `mesh ca init`).
        #[arg(long)]
        ca: PathBuf,
        /// Service account of the workload.
        #[arg(long)]
        service_account: String,
        /// Namespace of the workload.
        #[arg(long, short = 'n', default_value = "default")]
        namespace: String,
        /// Directory to write tls.crt, tls.key and ca.pem into.
        #[arg(long)]
        out: PathBuf,
        /// DNS suffix of workload identities.
        #[arg(long, default_value = "mesh.cluster.local")]
        identity_suffix: String,
        /// SPIFFE trust domain.
        #[arg(long, default_value = "cluster.local")]
        trust_domain: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Proxy(args) => mesh_proxy::main_with(*args),
        Command::Check(args) => {
            match multi_thread().and_then(|rt| rt.block_on(check::check(args))) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("mesh check: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run(args) => {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("mesh run: {e}");
                    return ExitCode::FAILURE;
                }
            };
            mesh_proxy::init_logging(false);
            match rt.block_on(local::run(*args)) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("mesh run: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        command => match run(Cli { command }) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mesh: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Ca(CaCommand::Init {
            dir,
            identity_suffix,
            trust_domain,
        }) => {
            let domain = IdentityDomain::new(&identity_suffix, &trust_domain)?;
            let ca = CertificateAuthority::builder()
                .domain(domain)
                .load_or_generate(&dir)?;
            println!("{ca:?}");
            println!(
                "trust bundle: {}",
                dir.join(mesh_tls::ca::files::TRUST_ANCHORS).display()
            );
            Ok(())
        }
        Command::Ca(CaCommand::Issue {
            ca,
            service_account,
            namespace,
            out,
            identity_suffix,
            trust_domain,
        }) => {
            let domain = IdentityDomain::new(&identity_suffix, &trust_domain)?;
            let ca = CertificateAuthority::builder().domain(domain).load(&ca)?;
            let id = ca.domain().workload(&service_account, &namespace)?;
            let leaf = ca.issue(&id)?;
            std::fs::create_dir_all(&out)?;
            std::fs::write(out.join("ca.pem"), ca.trust_bundle().to_pem())?;
            std::fs::write(out.join("tls.crt"), leaf.chain_pem())?;
            write_secret(&out.join("tls.key"), &leaf.key_pem())?;
            println!("issued {id} into {}", out.display());
            Ok(())
        }
        Command::Control(args) => multi_thread()?.block_on(local::control(args)),
        Command::Stat(args) => current_thread()?.block_on(observe::stat(args)),
        Command::Routes(args) => current_thread()?.block_on(observe::routes(args)),
        Command::Edges(args) => current_thread()?.block_on(observe::edges(args)),
        Command::Tap(args) => current_thread()?.block_on(observe::tap(args)),
        Command::Top(args) => current_thread()?.block_on(observe::top(args)),
        Command::Demo(args) => multi_thread()?.block_on(local::demo(args)),
        Command::Dashboard(args) => current_thread()?.block_on(dashboard::dashboard(args)),
        Command::Proxy(_) | Command::Run(_) | Command::Check(_) => unreachable_command(),
        Command::Emojivoto(app) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(emojivoto::run(app))
                .map_err(anyhow::Error::from_boxed)
        }
    }
}

fn multi_thread() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn current_thread() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn unreachable_command() -> anyhow::Result<()> {
    anyhow::bail!("internal: this command is dispatched before `run`")
}

fn write_secret(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())
}
