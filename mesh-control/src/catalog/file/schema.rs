//! The schema of `mesh.yaml`: what serde-saphyr reads the file into. Unknown keys are errors,
//! so a typo never silently does nothing; [`convert`](super::convert) checks the values.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct Doc {
    #[serde(default)]
    pub(super) default_policy: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) cluster_networks: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub(super) namespaces: Vec<Spanned<NamespaceDoc>>,
    #[serde(default)]
    pub(super) workloads: Vec<Spanned<WorkloadDoc>>,
    #[serde(default)]
    pub(super) services: Vec<Spanned<ServiceDoc>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct NamespaceDoc {
    pub(super) name: String,
    pub(super) default_policy: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct WorkloadDoc {
    pub(super) name: String,
    #[serde(default)]
    pub(super) namespace: Option<String>,
    pub(super) default_policy: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct ServiceDoc {
    pub(super) name: String,
    #[serde(default)]
    pub(super) namespace: Option<String>,
    #[serde(default)]
    pub(super) ports: Vec<Spanned<PortDoc>>,
    #[serde(default)]
    pub(super) workloads: Option<Vec<String>>,
    #[serde(default)]
    pub(super) endpoints: Vec<Spanned<EndpointDoc>>,
    #[serde(default)]
    pub(super) profile: Option<ProfileDoc>,
    #[serde(default)]
    pub(super) split: Vec<Spanned<SplitDoc>>,
    #[serde(default)]
    pub(super) failure_accrual: Option<Spanned<FailureAccrualDoc>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct PortDoc {
    pub(super) port: u16,
    #[serde(default)]
    pub(super) target_port: Option<u16>,
    #[serde(default)]
    pub(super) protocol: Option<ProtocolDoc>,
    #[serde(default)]
    pub(super) authorization: Option<Spanned<AuthorizationDoc>>,
    #[serde(default)]
    pub(super) routes: Vec<Spanned<InboundRouteDoc>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct InboundRouteDoc {
    pub(super) name: String,
    #[serde(default)]
    pub(super) condition: InboundConditionDoc,
    #[serde(default)]
    pub(super) authorization: Option<Spanned<AuthorizationDoc>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct InboundConditionDoc {
    #[serde(default)]
    pub(super) method: Option<String>,
    #[serde(default)]
    pub(super) path: Option<String>,
    #[serde(default)]
    pub(super) path_prefix: Option<String>,
    #[serde(default)]
    pub(super) path_regex: Option<String>,
    #[serde(default)]
    pub(super) grpc_service: Option<String>,
    #[serde(default)]
    pub(super) grpc_method: Option<String>,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum ProtocolDoc {
    Detect,
    Http1,
    Http2,
    Grpc,
    Opaque,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct AuthorizationDoc {
    #[serde(default)]
    pub(super) policy: Option<String>,
    #[serde(default)]
    pub(super) identities: Vec<String>,
    #[serde(default)]
    pub(super) service_accounts: Vec<String>,
    #[serde(default)]
    pub(super) suffixes: Vec<String>,
    #[serde(default)]
    pub(super) unauthenticated: bool,
    #[serde(default)]
    pub(super) networks: Vec<NetworkDoc>,
}

/// A client network: `10.0.0.0/8`, or `{cidr: 10.0.0.0/8, except: [10.0.1.0/24]}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum NetworkDoc {
    Cidr(String),
    WithExcept {
        cidr: String,
        #[serde(default)]
        except: Vec<String>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct EndpointDoc {
    pub(super) address: String,
    #[serde(default)]
    pub(super) identity: Option<String>,
    #[serde(default)]
    pub(super) service_account: Option<String>,
    #[serde(default)]
    pub(super) protocol_hint: Option<HintDoc>,
    #[serde(default)]
    pub(super) labels: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) workload: Option<String>,
    #[serde(default)]
    pub(super) ports: Option<Vec<u16>>,
    #[serde(default)]
    pub(super) weight: Option<u32>,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum HintDoc {
    H2,
    Opaque,
    None,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct ProfileDoc {
    #[serde(default)]
    pub(super) routes: Vec<Spanned<RouteDoc>>,
    #[serde(default)]
    pub(super) retry_budget: Option<Spanned<RetryBudgetDoc>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RouteDoc {
    pub(super) name: String,
    #[serde(default)]
    pub(super) condition: ConditionDoc,
    #[serde(default)]
    pub(super) is_retryable: bool,
    #[serde(default)]
    pub(super) max_retries: Option<u32>,
    #[serde(default)]
    pub(super) timeout: Option<String>,
    #[serde(default)]
    pub(super) response_classes: Vec<ResponseClassDoc>,
    #[serde(default)]
    pub(super) retry: Option<RetryDoc>,
}

/// Linkerd 2.16's retry policy of a route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RetryDoc {
    #[serde(default)]
    pub(super) limit: Option<u32>,
    #[serde(default)]
    pub(super) timeout: Option<String>,
    #[serde(default)]
    pub(super) http: Vec<String>,
    #[serde(default)]
    pub(super) grpc: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct ConditionDoc {
    #[serde(default)]
    pub(super) method: Option<String>,
    #[serde(default)]
    pub(super) path_regex: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct ResponseClassDoc {
    pub(super) condition: ResponseConditionDoc,
    #[serde(default)]
    pub(super) is_failure: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct ResponseConditionDoc {
    pub(super) status: StatusRangeDoc,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct StatusRangeDoc {
    #[serde(default)]
    pub(super) min: Option<u16>,
    #[serde(default)]
    pub(super) max: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RetryBudgetDoc {
    #[serde(default)]
    pub(super) retry_ratio: Option<f32>,
    #[serde(default)]
    pub(super) min_retries_per_second: Option<u32>,
    #[serde(default)]
    pub(super) ttl: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct SplitDoc {
    pub(super) service: String,
    #[serde(default)]
    pub(super) namespace: Option<String>,
    #[serde(default)]
    pub(super) port: Option<u16>,
    pub(super) weight: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct FailureAccrualDoc {
    pub(super) consecutive_failures: u32,
    #[serde(default)]
    pub(super) backoff: Option<BackoffDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct BackoffDoc {
    #[serde(default)]
    pub(super) min: Option<String>,
    #[serde(default)]
    pub(super) max: Option<String>,
    #[serde(default)]
    pub(super) jitter_ratio: Option<f32>,
}
