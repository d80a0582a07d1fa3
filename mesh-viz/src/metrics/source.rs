//! Where numbers come from: the embedded [`Store`], a real Prometheus
//! ([`PrometheusSource`](super::PrometheusSource)), or a control plane's HTTP API
//! ([`ApiClient`](super::api::ApiClient)), all behind one trait so the CLI and the dashboard
//! do not care which.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::query::{EdgesQuery, RoutesQuery, StatQuery};
use super::rows::{EdgeRow, RouteRow, StatRow, WorkloadStatus};
use super::series::{SeriesQuery, TimeSeries};
use super::store::Store;
use crate::QueryError;

/// Answers `stat`, `edges` and `routes` queries.
pub trait MetricsSource: Send + Sync + 'static {
    /// Golden metrics per workload or namespace.
    fn stat<'a>(&'a self, q: &'a StatQuery) -> BoxFuture<'a, Result<Vec<StatRow>, QueryError>>;

    /// Who talks to whom.
    fn edges<'a>(&'a self, q: &'a EdgesQuery) -> BoxFuture<'a, Result<Vec<EdgeRow>, QueryError>>;

    /// Golden metrics per route.
    fn routes<'a>(&'a self, q: &'a RoutesQuery)
    -> BoxFuture<'a, Result<Vec<RouteRow>, QueryError>>;

    /// The workloads known, and whether each is meshed.
    fn workloads(&self) -> BoxFuture<'_, Result<Vec<WorkloadStatus>, QueryError>>;

    /// Golden metrics of one workload over time (the dashboard's latency chart). Default is
    /// [`QueryError::Unavailable`]: only the embedded store keeps that history.
    fn series<'a>(&'a self, q: &'a SeriesQuery) -> BoxFuture<'a, Result<TimeSeries, QueryError>> {
        let _ = q;
        Box::pin(std::future::ready(Err(QueryError::Unavailable(
            "this source keeps no time series; ask the control plane's embedded store".into(),
        ))))
    }
}

impl MetricsSource for Store {
    fn stat<'a>(&'a self, q: &'a StatQuery) -> BoxFuture<'a, Result<Vec<StatRow>, QueryError>> {
        Box::pin(std::future::ready(self.stat_at(q, self.now())))
    }

    fn edges<'a>(&'a self, q: &'a EdgesQuery) -> BoxFuture<'a, Result<Vec<EdgeRow>, QueryError>> {
        Box::pin(std::future::ready(self.edges_at(q, self.now())))
    }

    fn routes<'a>(
        &'a self,
        q: &'a RoutesQuery,
    ) -> BoxFuture<'a, Result<Vec<RouteRow>, QueryError>> {
        Box::pin(std::future::ready(self.routes_at(q, self.now())))
    }

    fn workloads(&self) -> BoxFuture<'_, Result<Vec<WorkloadStatus>, QueryError>> {
        Box::pin(std::future::ready(Ok(self.workloads_at(self.now()))))
    }

    fn series<'a>(&'a self, q: &'a SeriesQuery) -> BoxFuture<'a, Result<TimeSeries, QueryError>> {
        Box::pin(std::future::ready(self.series_at(q, self.now())))
    }
}

impl<T: MetricsSource + ?Sized> MetricsSource for Arc<T> {
    fn stat<'a>(&'a self, q: &'a StatQuery) -> BoxFuture<'a, Result<Vec<StatRow>, QueryError>> {
        (**self).stat(q)
    }

    fn edges<'a>(&'a self, q: &'a EdgesQuery) -> BoxFuture<'a, Result<Vec<EdgeRow>, QueryError>> {
        (**self).edges(q)
    }

    fn routes<'a>(
        &'a self,
        q: &'a RoutesQuery,
    ) -> BoxFuture<'a, Result<Vec<RouteRow>, QueryError>> {
        (**self).routes(q)
    }

    fn workloads(&self) -> BoxFuture<'_, Result<Vec<WorkloadStatus>, QueryError>> {
        (**self).workloads()
    }

    fn series<'a>(&'a self, q: &'a SeriesQuery) -> BoxFuture<'a, Result<TimeSeries, QueryError>> {
        (**self).series(q)
    }
}

impl<T: MetricsSource + ?Sized> MetricsSource for Box<T> {
    fn stat<'a>(&'a self, q: &'a StatQuery) -> BoxFuture<'a, Result<Vec<StatRow>, QueryError>> {
        (**self).stat(q)
    }

    fn edges<'a>(&'a self, q: &'a EdgesQuery) -> BoxFuture<'a, Result<Vec<EdgeRow>, QueryError>> {
        (**self).edges(q)
    }

    fn routes<'a>(
        &'a self,
        q: &'a RoutesQuery,
    ) -> BoxFuture<'a, Result<Vec<RouteRow>, QueryError>> {
        (**self).routes(q)
    }

    fn workloads(&self) -> BoxFuture<'_, Result<Vec<WorkloadStatus>, QueryError>> {
        (**self).workloads()
    }

    fn series<'a>(&'a self, q: &'a SeriesQuery) -> BoxFuture<'a, Result<TimeSeries, QueryError>> {
        (**self).series(q)
    }
}
