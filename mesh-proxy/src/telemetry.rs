//! The proxy's metrics: one registry, the families every stack records into.

use std::sync::{Arc, Mutex};

use mesh_balance::BalanceMetrics;
use mesh_core::metrics::{self, HttpMetrics, Labels, TcpMetrics};
use mesh_core::retry::RetryMetrics;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Every metric family of one proxy. Cheap to clone.
#[derive(Clone)]
pub struct ProxyMetrics {
    registry: Arc<Mutex<Registry>>,
    /// `request_total`, `response_total`, `response_latency_ms` for both directions.
    pub http: HttpMetrics,
    /// Per-attempt outcomes under retries (`actual_*`).
    pub http_actual: HttpMetrics,
    /// `tcp_*` transport metrics.
    pub tcp: TcpMetrics,
    /// `retry_total`, `retry_skipped_total`.
    pub retries: RetryMetrics,
    /// Balancer endpoint gauges.
    pub balance: BalanceMetrics,
    /// `detect_timeout_total{direction}`: connections whose protocol could not be detected in
    /// time (and were served as opaque TCP).
    pub detect_timeouts: Family<Labels, Counter>,
    /// `inbound_http_authz_allow_total`: requests an authorization admitted.
    pub http_authz_allow: Family<Labels, Counter>,
    /// `inbound_http_authz_deny_total`: requests refused (403, or 404 without a route).
    pub http_authz_deny: Family<Labels, Counter>,
    /// `inbound_tcp_authz_allow_total`: opaque connections an authorization admitted.
    pub tcp_authz_allow: Family<Labels, Counter>,
    /// `inbound_tcp_authz_deny_total`: opaque connections refused (closed).
    pub tcp_authz_deny: Family<Labels, Counter>,
    /// `proxy_errors_total{direction, reason}`: connections that failed before a request
    /// (TLS handshake, malformed HTTP, header too large, ...).
    pub conn_errors: Family<Labels, Counter>,
    /// `identity_cert_expiration_timestamp_seconds`.
    pub cert_expiry: Gauge,
    /// `proxy_ready` (1 once the proxy holds a certificate and discovery has synced).
    pub ready: Gauge,
}

impl ProxyMetrics {
    /// Registers every family.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let http = HttpMetrics::register(&mut registry);
        let http_actual = HttpMetrics::register(registry.sub_registry_with_prefix("actual"));
        let tcp = TcpMetrics::register(&mut registry);
        let retries = RetryMetrics::register(&mut registry);
        let balance = BalanceMetrics::register(registry.sub_registry_with_prefix("outbound"));
        let detect_timeouts = Family::<Labels, Counter>::default();
        registry.register(
            "detect_timeout",
            "Connections whose protocol was not detected in time",
            detect_timeouts.clone(),
        );
        let family = |registry: &mut Registry, name: &str, help: &str| {
            let f = Family::<Labels, Counter>::default();
            registry.register(name, help, f.clone());
            f
        };
        let http_authz_allow = family(
            &mut registry,
            "inbound_http_authz_allow",
            "Inbound requests an authorization admitted",
        );
        let http_authz_deny = family(
            &mut registry,
            "inbound_http_authz_deny",
            "Inbound requests refused by policy",
        );
        let tcp_authz_allow = family(
            &mut registry,
            "inbound_tcp_authz_allow",
            "Inbound opaque connections an authorization admitted",
        );
        let tcp_authz_deny = family(
            &mut registry,
            "inbound_tcp_authz_deny",
            "Inbound opaque connections refused by policy",
        );
        let conn_errors = Family::<Labels, Counter>::default();
        registry.register(
            "proxy_errors",
            "Connections that failed before a request, by reason",
            conn_errors.clone(),
        );
        let cert_expiry = Gauge::default();
        registry.register(
            "identity_cert_expiration_timestamp_seconds",
            "When the proxy's certificate expires",
            cert_expiry.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "proxy_ready",
            "1 when the proxy serves traffic",
            ready.clone(),
        );
        Self {
            registry: Arc::new(Mutex::new(registry)),
            http,
            http_actual,
            tcp,
            retries,
            balance,
            detect_timeouts,
            http_authz_allow,
            http_authz_deny,
            tcp_authz_allow,
            tcp_authz_deny,
            conn_errors,
            cert_expiry,
            ready,
        }
    }

    /// The OpenMetrics text of every family.
    pub fn encode(&self) -> String {
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        metrics::encode(&registry)
    }

    /// Counts a connection error.
    pub fn conn_error(&self, direction: &'static str, reason: &'static str) {
        self.conn_errors
            .get_or_create(
                &Labels::new()
                    .with("direction", direction)
                    .with("reason", reason),
            )
            .inc();
    }
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ProxyMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyMetrics").finish_non_exhaustive()
    }
}
