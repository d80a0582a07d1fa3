//! The process's shutdown signal, the same for every binary of the mesh (the sidecar, the
//! control plane, `mesh demo`, the demo's apps).

/// Resolves on the first SIGTERM (how supervisors and Kubernetes stop a process) or Ctrl-C.
/// If a signal handler cannot be installed, that signal is never awaited; the other still is.
///
/// ```no_run
/// # async fn serve() {}
/// # async fn drain() {}
/// # async fn example() {
/// tokio::select! {
///     () = serve() => {}
///     () = mesh_core::signal::shutdown() => drain().await,
/// }
/// # }
/// ```
pub async fn shutdown() {
    let terminate = async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            if let Ok(mut term) = signal(SignalKind::terminate()) {
                term.recv().await;
                return;
            }
        }
        std::future::pending::<()>().await;
    };
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = terminate => {}
        () = interrupt => {}
    }
}
