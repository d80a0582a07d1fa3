//! `Identity.Certify`: the proxy's certificate from the control plane ([`RemoteCertify`]).

use std::net::SocketAddr;
use std::time::SystemTime;

use linkerd2_proxy_api::identity::{
    CertifyRequest, CertifyResponse, identity_client::IdentityClient,
};
use mesh_tls::certify::{Certify, CertifyFuture, CertifyRequest as TlsCertifyRequest};
use mesh_tls::{BoxError, IssuedCertificate};
use rustls_pki_types::CertificateDer;

use crate::transport::{Tls, connect};

/// A [`Certify`] signer backed by the control plane's `Identity.Certify`.
///
/// Each call connects afresh, so that once the proxy has a certificate, renewals are
/// authenticated by it over mutual TLS (a long-lived connection opened before the first
/// certificate would carry no client identity). The bootstrap token is sent with every request;
/// the control plane ignores it when the connection already proves the identity.
///
/// ```no_run
/// # async fn f(creds: mesh_tls::Credentials, addr: std::net::SocketAddr,
/// #            control: mesh_tls::ServiceIdentity, token: String) {
/// use mesh_control_client::{RemoteCertify, transport::Tls};
/// use mesh_tls::certify::{refresh, RefreshPolicy};
///
/// let certify = RemoteCertify::new(addr, Tls::new(creds.clone(), control), Some(token));
/// tokio::spawn(refresh(creds.clone(), certify, RefreshPolicy::default()));
/// creds.ready().await;
/// # }
/// ```
#[derive(Clone)]
pub struct RemoteCertify {
    addr: SocketAddr,
    tls: Tls,
    token: Option<String>,
}

impl RemoteCertify {
    /// Certifies at the control plane at `addr`, proving the identity with `token` the first
    /// time.
    pub fn new(addr: SocketAddr, tls: Tls, token: Option<String>) -> Self {
        Self { addr, tls, token }
    }

    async fn call(&self, request: TlsCertifyRequest) -> Result<IssuedCertificate, BoxError> {
        let channel = connect(self.addr, self.tls.clone()).await?;
        let rsp = IdentityClient::new(channel)
            .certify(CertifyRequest {
                identity: request.identity.as_str().to_owned(),
                token: self
                    .token
                    .as_deref()
                    .map(|t| t.as_bytes().to_vec())
                    .unwrap_or_default(),
                certificate_signing_request: request.csr.to_vec(),
            })
            .await?
            .into_inner();
        Ok(issued(rsp)?)
    }
}

/// The certificate a `Certify` response carries.
///
/// ```
/// use linkerd2_proxy_api::identity::CertifyResponse;
///
/// let err = mesh_control_client::identity::issued(CertifyResponse::default()).unwrap_err();
/// assert!(err.to_string().contains("valid_until"));
/// ```
pub fn issued(rsp: CertifyResponse) -> Result<IssuedCertificate, MalformedCertificate> {
    let valid_until = rsp
        .valid_until
        .and_then(|t| SystemTime::try_from(t).ok())
        .ok_or(MalformedCertificate(
            "the control plane sent a certificate without valid_until",
        ))?;
    Ok(IssuedCertificate {
        leaf: CertificateDer::from(rsp.leaf_certificate),
        intermediates: rsp
            .intermediate_certificates
            .into_iter()
            .map(CertificateDer::from)
            .collect(),
        valid_until,
    })
}

/// A `Certify` response without what a certificate needs.
#[derive(Debug)]
pub struct MalformedCertificate(&'static str);

impl std::fmt::Display for MalformedCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for MalformedCertificate {}

impl Certify for RemoteCertify {
    fn certify(&self, request: TlsCertifyRequest) -> CertifyFuture<'_> {
        Box::pin(self.call(request))
    }
}

impl std::fmt::Debug for RemoteCertify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteCertify")
            .field("addr", &self.addr)
            .field("server", &self.tls.server)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}
