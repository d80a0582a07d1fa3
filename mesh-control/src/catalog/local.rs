//! The local catalog: `mesh.yaml`, watched, plus the registrations of running proxies.
//!
//! Two tasks keep it current:
//! - the **file watcher** re-reads the file every poll interval (1 s by default) and, when its
//!   bytes changed, parses it; a good file replaces the static part of the catalog, a broken one
//!   is logged and ignored (the previous catalog stays), and [`LocalCatalog::reloads`] reports
//!   both;
//! - the **lease sweeper** removes registrations whose lease ran out, waking at the earliest
//!   expiry or when a registration changes.
//!
//! Every change recomputes the [`Snapshot`] (file + live registrations) and publishes it on the
//! watch channel if it differs, so API streams wake only for real changes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mesh_tls::IdentityDomain;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Catalog, CatalogError, Registry, Snapshot};
use super::{file, persist};

/// The local catalog backend. Cheap to clone; the background tasks stop when the last clone is
/// dropped.
///
/// ```
/// use std::time::Duration;
/// use mesh_control::catalog::{Catalog, LocalCatalog, Registration, ServiceRef};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let catalog = LocalCatalog::builder().start().await?;
/// let mut snapshots = catalog.snapshots();
/// let web = ServiceRef::new("web", "emojivoto");
/// catalog.registry().register(
///     Registration::new(web.clone(), 8080, "127.0.0.1:4143".parse()?),
///     Duration::from_secs(30),
/// );
/// let snap = snapshots.wait_for(|s| s.service(&web).is_some()).await?.clone();
/// assert_eq!(snap.service(&web).unwrap().endpoints.len(), 1);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct LocalCatalog {
    inner: Arc<Inner>,
    _tasks: Arc<Tasks>,
}

/// Configures a [`LocalCatalog`].
#[derive(Clone, Debug)]
pub struct LocalCatalogBuilder {
    file: Option<PathBuf>,
    domain: IdentityDomain,
    poll_interval: Duration,
    registry: Option<Registry>,
    persist: Option<PathBuf>,
}

/// The outcome of the catalog file's loads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadStatus {
    /// Successful loads, the first one included.
    pub loads: u64,
    /// Failed reloads since start.
    pub failures: u64,
    /// The error of the last failed reload, if the file is still broken.
    pub last_error: Option<String>,
}

#[derive(Debug)]
struct Inner {
    file: Option<PathBuf>,
    persist: Option<PathBuf>,
    domain: IdentityDomain,
    registry: Registry,
    /// The catalog file's part of the snapshot.
    from_file: Mutex<Snapshot>,
    snapshots: watch::Sender<Arc<Snapshot>>,
    reloads: watch::Sender<ReloadStatus>,
}

#[derive(Debug, Default)]
struct Tasks(Mutex<Vec<JoinHandle<()>>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        let tasks = self.0.get_mut().unwrap_or_else(|p| p.into_inner());
        for t in tasks.drain(..) {
            t.abort();
        }
    }
}

// === impl LocalCatalogBuilder ===

impl LocalCatalogBuilder {
    /// The `mesh.yaml` to load and watch. Default is none: registrations only.
    pub fn file(mut self, path: impl Into<Option<PathBuf>>) -> Self {
        self.file = path.into();
        self
    }

    /// The identity domain `serviceAccount` fields expand in. Default is
    /// [`IdentityDomain::default`].
    pub fn identity_domain(mut self, domain: IdentityDomain) -> Self {
        self.domain = domain;
        self
    }

    /// How often the file is checked for edits. Default is 1 s.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// The registry to merge. Default is a new [`Registry`].
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Saves the registrations to `path` on every change and restores them at start (each with
    /// a fresh lease), so a restarted control plane serves the endpoints it served before.
    /// Default is none: registrations live in memory only.
    pub fn persist_registrations(mut self, path: impl Into<Option<PathBuf>>) -> Self {
        self.persist = path.into();
        self
    }

    /// Loads the file (a broken or missing file is an error here, unlike later edits) and starts
    /// the watcher and the lease sweeper on the current Tokio runtime.
    pub async fn start(self) -> Result<LocalCatalog, CatalogError> {
        let (from_file, bytes) = match &self.file {
            Some(path) => {
                let bytes = tokio::fs::read(path)
                    .await
                    .map_err(|e| CatalogError::io(path, e))?;
                let text = String::from_utf8_lossy(&bytes);
                (file::parse(&text, Some(path), &self.domain)?, Some(bytes))
            }
            None => (Snapshot::default(), None),
        };
        let registry = self.registry.unwrap_or_default();
        if let Some(path) = &self.persist {
            let restored = persist::load(path);
            if !restored.is_empty() {
                tracing::info!(
                    count = restored.len(),
                    "restored registrations from before the restart; their proxies renew them"
                );
            }
            for (registration, lease) in restored {
                registry.register(registration, lease);
            }
        }
        let (snapshots, _) = watch::channel(Arc::new(from_file.clone()));
        let (reloads, _) = watch::channel(ReloadStatus {
            loads: u64::from(self.file.is_some()),
            ..ReloadStatus::default()
        });
        let inner = Arc::new(Inner {
            file: self.file,
            persist: self.persist,
            domain: self.domain,
            registry,
            from_file: Mutex::new(from_file),
            snapshots,
            reloads,
        });
        inner.publish();
        let mut tasks = vec![tokio::spawn(sweep_leases(inner.clone()))];
        if let Some(path) = inner.file.clone() {
            tasks.push(tokio::spawn(watch_file(
                inner.clone(),
                path,
                bytes,
                self.poll_interval,
            )));
        }
        Ok(LocalCatalog {
            inner,
            _tasks: Arc::new(Tasks(Mutex::new(tasks))),
        })
    }
}

// === impl LocalCatalog ===

impl LocalCatalog {
    /// Starts configuring a local catalog.
    pub fn builder() -> LocalCatalogBuilder {
        LocalCatalogBuilder {
            file: None,
            domain: IdentityDomain::default(),
            poll_interval: Duration::from_secs(1),
            registry: None,
            persist: None,
        }
    }

    /// The registrations of running proxies.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The catalog file, if any.
    pub fn file(&self) -> Option<&Path> {
        self.inner.file.as_deref()
    }

    /// The outcome of file (re)loads: wait on it to know an edit was seen.
    pub fn reloads(&self) -> watch::Receiver<ReloadStatus> {
        self.inner.reloads.subscribe()
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.snapshots.borrow().clone()
    }
}

impl Catalog for LocalCatalog {
    fn snapshots(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.inner.snapshots.subscribe()
    }

    fn registry(&self) -> Option<&Registry> {
        Some(&self.inner.registry)
    }
}

// === impl Inner ===

impl Inner {
    /// Recomputes the snapshot and publishes it if it changed.
    fn publish(&self) {
        let mut snapshot = self
            .from_file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        self.registry.apply(&mut snapshot);
        self.snapshots.send_if_modified(|current| {
            if **current == snapshot {
                return false;
            }
            *current = Arc::new(snapshot);
            true
        });
    }
}

async fn sweep_leases(inner: Arc<Inner>) {
    let mut changes = inner.registry.subscribe();
    loop {
        // Mark first: a change that lands while we sweep wakes the next wait.
        changes.mark_unchanged();
        let next = inner.registry.sweep(tokio::time::Instant::now());
        inner.publish();
        if let Some(path) = &inner.persist
            && let Err(error) = persist::save(path, &inner.registry.leases())
        {
            tracing::warn!(file = %path.display(), %error, "cannot save the registrations");
        }
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    res = changes.changed() => if res.is_err() { return },
                }
            }
            None => {
                if changes.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn watch_file(
    inner: Arc<Inner>,
    path: PathBuf,
    mut last: Option<Vec<u8>>,
    interval: Duration,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut read_error_logged = false;
    loop {
        ticker.tick().await;
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => {
                read_error_logged = false;
                b
            }
            Err(e) => {
                if !read_error_logged {
                    tracing::warn!(file = %path.display(), error = %e, "cannot read the catalog file; keeping the current catalog");
                    read_error_logged = true;
                }
                continue;
            }
        };
        if last.as_deref() == Some(bytes.as_slice()) {
            continue;
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        last = Some(bytes);
        match file::parse(&text, Some(&path), &inner.domain) {
            Ok(snapshot) => {
                *inner.from_file.lock().unwrap_or_else(|p| p.into_inner()) = snapshot;
                inner.publish();
                inner.reloads.send_modify(|s| {
                    s.loads += 1;
                    s.last_error = None;
                });
                tracing::info!(file = %path.display(), "catalog file reloaded");
            }
            Err(error) => {
                tracing::warn!(%error, "catalog file edit rejected; keeping the previous catalog");
                inner.reloads.send_modify(|s| {
                    s.failures += 1;
                    s.last_error = Some(error.to_string());
                });
            }
        }
    }
}
