//! `mesh stat`, `mesh routes`, `mesh edges`: golden metrics from the control plane's embedded
//! store (or a real Prometheus with `--prometheus URL`), printed as Linkerd prints them.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use mesh_viz::metrics::{
    self, EdgesQuery, MetricsSource, Output, PrometheusSource, Resource, RoutesQuery, StatQuery,
    Target, api,
};

/// Where the numbers come from.
#[derive(Parser, Debug)]
pub(crate) struct SourceArgs {
    /// The control plane's state directory.
    #[arg(long, env = "MESH_STATE_DIR", default_value_os_t = crate::local::default_state_dir())]
    state_dir: PathBuf,
    /// Ask a Prometheus (Linkerd's PromQL) instead of the control plane's embedded store.
    #[arg(long)]
    prometheus: Option<String>,
}

impl SourceArgs {
    fn source(&self) -> anyhow::Result<Box<dyn MetricsSource>> {
        Ok(match &self.prometheus {
            Some(url) => Box::new(PrometheusSource::new(url.clone(), &self.state_dir)),
            None => {
                let addr = api::read_addr(&self.state_dir).with_context(|| {
                    format!(
                        "no control plane API recorded in {}: start the control plane with \
                         `mesh control` or `mesh demo` (or pass --state-dir, or --prometheus URL)",
                        self.state_dir.display()
                    )
                })?;
                Box::new(api::ApiClient::new(addr))
            }
        })
    }
}

/// `mesh stat`.
#[derive(Parser, Debug)]
pub(crate) struct StatArgs {
    /// deploy, ns, deploy/NAME or ns/NAME.
    resource: String,
    /// The namespace (default: all).
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// Only traffic from this resource (e.g. deploy/vote-bot).
    #[arg(long)]
    from: Option<String>,
    /// Only traffic to this resource (e.g. deploy/voting).
    #[arg(long)]
    to: Option<String>,
    /// The time window.
    #[arg(long, short = 't', default_value = "1m")]
    time_window: String,
    /// table, wide or json.
    #[arg(long, short = 'o', default_value = "table")]
    output: String,
    #[command(flatten)]
    source: SourceArgs,
}

fn target(s: &Option<String>, ns: &Option<String>) -> anyhow::Result<Option<Target>> {
    s.as_deref()
        .map(|t| -> anyhow::Result<Target> {
            Ok(Target::new(t.parse::<Resource>()?).in_namespace(ns.clone()))
        })
        .transpose()
}

pub(crate) async fn stat(args: StatArgs) -> anyhow::Result<()> {
    let output: Output = args.output.parse()?;
    let query = StatQuery::new(args.resource.parse::<Resource>()?)
        .namespace(args.namespace.clone())
        .window(metrics::parse_window(&args.time_window)?)
        .from(target(&args.from, &args.namespace)?)
        .to(target(&args.to, &args.namespace)?);
    let rows = args.source.source()?.stat(&query).await?;
    if rows.is_empty() && output != Output::Json {
        eprintln!("{}", metrics::NO_TRAFFIC);
    } else {
        print!("{}", metrics::render_stat(&rows, output));
    }
    Ok(())
}

/// `mesh edges`.
#[derive(Parser, Debug)]
pub(crate) struct EdgesArgs {
    /// The resource kind (only deploy).
    #[arg(default_value = "deploy")]
    resource: String,
    /// The namespace (default: all).
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// table, wide or json.
    #[arg(long, short = 'o', default_value = "table")]
    output: String,
    #[command(flatten)]
    source: SourceArgs,
}

pub(crate) async fn edges(args: EdgesArgs) -> anyhow::Result<()> {
    let output: Output = args.output.parse()?;
    let _ = args.resource;
    let rows = args
        .source
        .source()?
        .edges(&EdgesQuery::new(args.namespace.clone()))
        .await?;
    if rows.is_empty() && output != Output::Json {
        eprintln!("{}", metrics::NO_EDGES);
    } else {
        print!("{}", metrics::render_edges(&rows, output));
    }
    Ok(())
}

/// `mesh routes`.
#[derive(Parser, Debug)]
pub(crate) struct RoutesArgs {
    /// The service: svc/NAME or deploy/NAME.
    resource: String,
    /// The namespace.
    #[arg(long, short = 'n', default_value = "default")]
    namespace: String,
    /// Only traffic to this resource.
    #[arg(long)]
    to: Option<String>,
    /// table, wide or json.
    #[arg(long, short = 'o', default_value = "table")]
    output: String,
    #[command(flatten)]
    source: SourceArgs,
}

pub(crate) async fn routes(args: RoutesArgs) -> anyhow::Result<()> {
    let output: Output = args.output.parse()?;
    let service = args
        .resource
        .rsplit_once('/')
        .map(|(_, n)| n.to_string())
        .unwrap_or_else(|| args.resource.clone());
    let ns = Some(args.namespace.clone());
    let query = RoutesQuery::new(service, args.namespace.clone()).to(target(&args.to, &ns)?);
    let rows = args.source.source()?.routes(&query).await?;
    print!("{}", metrics::render_routes(&rows, output));
    Ok(())
}

/// `mesh tap` and `mesh top`.
#[derive(Parser, Debug)]
pub(crate) struct TapArgs {
    /// What to watch: deploy/NAME, deploy (every workload of the namespace) or ns/NAME.
    resource: String,
    /// The namespace.
    #[arg(long, short = 'n', default_value = "default")]
    namespace: String,
    /// Only requests to this resource (deploy/NAME, svc/NAME or ns/NAME).
    #[arg(long)]
    to: Option<String>,
    /// Only requests whose path starts with this.
    #[arg(long)]
    path: Option<String>,
    /// Only requests with this method.
    #[arg(long)]
    method: Option<String>,
    /// Only requests to this authority.
    #[arg(long)]
    authority: Option<String>,
    /// At most this many requests per second (0: no limit).
    #[arg(long, default_value_t = 100.0)]
    max_rps: f64,
    /// Stop after this many requests.
    #[arg(long)]
    limit: Option<u64>,
    /// json for one JSON object per event (tap only).
    #[arg(long, short = 'o', default_value = "")]
    output: String,
    /// The control plane's state directory.
    #[arg(long, env = "MESH_STATE_DIR", default_value_os_t = crate::local::default_state_dir())]
    state_dir: PathBuf,
}

impl TapArgs {
    fn query(&self) -> mesh_viz::tap::TapQuery {
        let mut q = mesh_viz::tap::TapQuery::new(self.namespace.clone(), self.resource.clone())
            .max_rps(self.max_rps);
        if let Some(t) = &self.to {
            q = q.to(t.clone());
        }
        if let Some(p) = &self.path {
            q = q.path(p.clone());
        }
        if let Some(m) = &self.method {
            q = q.method(m.clone());
        }
        if let Some(a) = &self.authority {
            q = q.authority(a.clone());
        }
        if let Some(l) = self.limit {
            q = q.limit(l);
        }
        q
    }

    fn api(&self) -> anyhow::Result<std::net::SocketAddr> {
        api::read_addr(&self.state_dir).with_context(|| {
            format!(
                "no control plane API recorded in {}: start it with `mesh control` or `mesh demo`",
                self.state_dir.display()
            )
        })
    }
}

pub(crate) async fn tap(args: TapArgs) -> anyhow::Result<()> {
    use mesh_viz::tap::{ProxyState, TapLine, client, render};
    let json = match args.output.as_str() {
        "" | "table" => false,
        "json" => true,
        other => anyhow::bail!("unknown output {other:?}: use json (or nothing)"),
    };
    let mut lines = client::stream(args.api()?, &args.query()).await?;
    while let Some(line) = lines.next().await {
        match line? {
            TapLine::Event(e) => println!(
                "{}",
                if json {
                    render::json_line(&e)
                } else {
                    render::tap_line(&e)
                }
            ),
            TapLine::Proxy(s) if s.state == ProxyState::Failed => eprintln!("{s}"),
            TapLine::Proxy(s) if !json => eprintln!("{s}"),
            TapLine::Proxy(_) => {}
        }
    }
    Ok(())
}

pub(crate) async fn top(args: TapArgs) -> anyhow::Result<()> {
    let lines = mesh_viz::tap::client::stream(args.api()?, &args.query()).await?;
    crate::top::run_top(lines).await?;
    Ok(())
}
