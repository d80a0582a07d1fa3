//! A control plane on 127.0.0.1 with real TLS, and clients that talk to it as proxies do.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use linkerd2_proxy_api::destination::{
    self as dst, GetDestination, destination_client::DestinationClient,
};
use linkerd2_proxy_api::identity::{CertifyRequest, identity_client::IdentityClient};
use mesh_control::{Config, ControlPlane};
use mesh_control_client::registration::RegistrationClient;
use mesh_control_client::transport::{self as client, Tls};
use mesh_tls::{Credentials, IssuedCertificate, ServiceIdentity};
use tonic::Streaming;
use tonic::transport::Channel;

/// The bound on every wait in these tests.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Awaits `fut`, failing the test if it takes longer than [`PATIENCE`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    within_for(PATIENCE, what, fut).await
}

/// Awaits `fut`, failing the test if it takes longer than `limit`.
pub async fn within_for<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

/// Reads stream messages until one satisfies `pred`, within `limit`.
pub async fn next_matching<T>(
    stream: &mut Streaming<T>,
    limit: Duration,
    what: &str,
    mut pred: impl FnMut(&T) -> bool,
) -> T {
    within_for(limit, what, async {
        loop {
            match stream.message().await {
                Ok(Some(m)) if pred(&m) => return m,
                Ok(Some(_)) => continue,
                Ok(None) => panic!("stream ended while waiting for {what}"),
                Err(status) => panic!("stream failed while waiting for {what}: {status}"),
            }
        }
    })
    .await
}

/// The next message of a stream.
pub async fn next<T>(stream: &mut Streaming<T>, what: &str) -> T {
    next_matching(stream, PATIENCE, what, |_| true).await
}

/// A test control plane in its own state directory.
pub struct Harness {
    pub cp: ControlPlane,
    pub dir: tempfile::TempDir,
}

impl Harness {
    /// A TLS control plane with a fast-polled `mesh.yaml` holding `yaml` (if given).
    pub async fn start(yaml: Option<&str>) -> Self {
        Self::start_with(yaml, |c| c).await
    }

    /// As [`start`](Self::start), with extra configuration.
    pub async fn start_with(yaml: Option<&str>, configure: impl FnOnce(Config) -> Config) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::new(dir.path().join("state"))
            .listen("127.0.0.1:0".parse().expect("addr"))
            .poll_interval(Duration::from_millis(50))
            .drain_timeout(Duration::from_secs(1));
        if let Some(yaml) = yaml {
            let file = dir.path().join("mesh.yaml");
            std::fs::write(&file, yaml).expect("write mesh.yaml");
            config = config.catalog_file(file);
        }
        let cp = within("start", ControlPlane::start(configure(config)))
            .await
            .expect("the control plane starts");
        Self { cp, dir }
    }

    pub fn yaml_path(&self) -> PathBuf {
        self.dir.path().join("mesh.yaml")
    }

    /// Replaces `mesh.yaml` atomically, as an editor saving the file does.
    pub fn edit_yaml(&self, yaml: &str) {
        write_atomic(&self.yaml_path(), yaml);
    }

    pub fn id(&self, sa: &str) -> ServiceIdentity {
        self.cp
            .ca()
            .domain()
            .workload(sa, "emojivoto")
            .expect("identity")
    }

    /// Fresh, uncertified credentials for `sa`, trusting the mesh.
    pub fn creds(&self, sa: &str) -> Credentials {
        Credentials::generate(self.id(sa), self.cp.trust_bundle()).expect("credentials")
    }

    /// A TLS channel presenting `creds` (a certificate once they have one).
    pub fn channel(&self, creds: &Credentials) -> Channel {
        client::channel(
            self.cp.addr(),
            Tls::new(creds.clone(), self.cp.identity().clone()),
        )
    }

    /// A channel with no certificate: what a proxy has before its first `Certify`.
    pub fn anonymous(&self) -> Channel {
        self.channel(&self.creds("anonymous"))
    }

    /// Credentials for `sa` certified through `Identity.Certify` with a fresh token.
    pub async fn certified(&self, sa: &str) -> Credentials {
        let creds = self.creds(sa);
        let token = self
            .cp
            .issue_token(creds.identity(), Duration::from_secs(60))
            .expect("token");
        let issued = certify(&self.channel(&creds), &creds, token.as_bytes())
            .await
            .expect("certified");
        creds.set_certificate(issued).expect("install");
        creds
    }

    pub async fn get(&self, path: &str) -> Streaming<dst::Update> {
        within(
            "Get",
            DestinationClient::new(self.anonymous()).get(GetDestination {
                path: path.into(),
                ..Default::default()
            }),
        )
        .await
        .expect("Get")
        .into_inner()
    }

    pub async fn get_profile(&self, path: &str) -> Streaming<dst::DestinationProfile> {
        within(
            "GetProfile",
            DestinationClient::new(self.anonymous()).get_profile(GetDestination {
                path: path.into(),
                ..Default::default()
            }),
        )
        .await
        .expect("GetProfile")
        .into_inner()
    }

    pub fn registration(&self, creds: &Credentials) -> RegistrationClient<Channel> {
        RegistrationClient::new(self.channel(creds))
    }
}

/// Calls `Identity.Certify` for `creds`' identity and CSR with `token`.
pub async fn certify(
    channel: &Channel,
    creds: &Credentials,
    token: &[u8],
) -> Result<IssuedCertificate, tonic::Status> {
    certify_as(channel, creds, creds.identity(), token).await
}

/// Calls `Identity.Certify` claiming `identity` with `creds`' CSR.
pub async fn certify_as(
    channel: &Channel,
    creds: &Credentials,
    identity: &ServiceIdentity,
    token: &[u8],
) -> Result<IssuedCertificate, tonic::Status> {
    let rsp = within(
        "Certify",
        IdentityClient::new(channel.clone()).certify(CertifyRequest {
            identity: identity.as_str().to_owned(),
            token: token.to_vec(),
            certificate_signing_request: creds.csr().expect("csr").to_vec(),
        }),
    )
    .await?
    .into_inner();
    Ok(mesh_control_client::identity::issued(rsp).expect("a whole certificate"))
}

pub fn write_atomic(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// The DNS names and URIs in a certificate's subject alternative names.
pub fn sans(der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).expect("x509");
    let san = cert
        .subject_alternative_name()
        .expect("san extension")
        .expect("has sans");
    san.value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => format!("dns:{d}"),
            GeneralName::URI(u) => format!("uri:{u}"),
            other => format!("{other:?}"),
        })
        .collect()
}
