//! `io.linkerd.proxy.identity.Identity.Certify`: signs a proxy's CSR once it proved its identity.
//!
//! A caller proves the identity it asks for in one of two ways:
//! - **mutual TLS**: it connected with a valid certificate for that very identity (a renewal:
//!   proxies re-certify at 70% of their certificate's lifetime); the token is then ignored;
//! - **a bootstrap token** ([`TokenStore`]): one-use, unexpired and bound to that identity (the
//!   first certification, when the proxy has no certificate yet).
//!
//! Then the CA signs the CSR, which must ask for nothing but that identity. The CSR may be DER (as
//! Linkerd's proxy sends it) or PEM; the leaf and intermediates come back DER, with `valid_until`.
//!
//! | outcome | status |
//! |---|---|
//! | no token and no matching client certificate | `UNAUTHENTICATED` |
//! | malformed, unknown, reused or expired token | `UNAUTHENTICATED`, saying which |
//! | token issued for another identity | `PERMISSION_DENIED` |
//! | CSR for another identity than requested | `PERMISSION_DENIED` |
//! | malformed identity or CSR | `INVALID_ARGUMENT` |
//! | the issuer expired | `FAILED_PRECONDITION` |
//!
//! A token is spent only when a certificate is issued: a failure that is not the token's fault
//! leaves it usable.

use std::sync::Arc;

use linkerd2_proxy_api::identity::{
    self as api, identity_server::Identity, identity_server::IdentityServer,
};
use mesh_tls::ca::SignError;
use mesh_tls::server::ClientIdentity;
use mesh_tls::{CertificateAuthority, ServiceIdentity, UtcTime};
use rustls_pki_types::CertificateSigningRequestDer;
use rustls_pki_types::pem::PemObject;
use tonic::{Request, Response, Status};

use crate::token::{TokenError, TokenStore};

/// The identity service.
#[derive(Clone, Debug)]
pub struct IdentityService {
    ca: Arc<CertificateAuthority>,
    tokens: TokenStore,
}

impl IdentityService {
    /// Signs with `ca` for callers that prove themselves with a token from `tokens` (or with mutual
    /// TLS).
    pub fn new(ca: Arc<CertificateAuthority>, tokens: TokenStore) -> Self {
        Self { ca, tokens }
    }

    /// The tonic server for this service.
    pub fn into_server(self) -> IdentityServer<Self> {
        IdentityServer::new(self)
    }
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn certify(
        &self,
        request: Request<api::CertifyRequest>,
    ) -> Result<Response<api::CertifyResponse>, Status> {
        let peer = request.extensions().get::<ClientIdentity>().cloned();
        let api::CertifyRequest {
            identity,
            token,
            certificate_signing_request,
        } = request.into_inner();
        let identity = ServiceIdentity::parse(&identity)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let csr = parse_csr(&certificate_signing_request)?;

        // Renewal over mutual TLS: the connection already proves the identity.
        let redemption = if peer.as_ref().is_some_and(|p| p.0 == identity) {
            None
        } else {
            if token.is_empty() {
                return Err(Status::unauthenticated(format!(
                    "no bootstrap token for {identity}: the first Certify must carry the token \
                     issued for this identity; renewals are authenticated by the current \
                     certificate over mutual TLS"
                )));
            }
            let token = std::str::from_utf8(&token)
                .map_err(|_| Status::unauthenticated(TokenError::Malformed.to_string()))?;
            Some(self.tokens.redeem(token, &identity).map_err(|e| {
                tracing::warn!(%identity, error = %e, "Certify refused");
                token_status(&e)
            })?)
        };

        let issued = self.ca.sign(&csr, &identity).map_err(|e| {
            tracing::warn!(%identity, error = %e, "Certify: signing failed");
            sign_status(&e)
        })?;
        let how = if redemption.is_some() {
            "bootstrap token"
        } else {
            "mutual TLS"
        };
        if let Some(r) = redemption {
            r.commit();
        }
        tracing::info!(%identity, via = how, valid_until = %UtcTime(issued.valid_until), "certified");
        Ok(Response::new(api::CertifyResponse {
            leaf_certificate: issued.leaf.to_vec(),
            intermediate_certificates: issued.intermediates.iter().map(|c| c.to_vec()).collect(),
            valid_until: Some(prost_types::Timestamp::from(issued.valid_until)),
        }))
    }
}

fn parse_csr(bytes: &[u8]) -> Result<CertificateSigningRequestDer<'static>, Status> {
    if bytes.is_empty() {
        return Err(Status::invalid_argument(
            "the certificate signing request is empty",
        ));
    }
    if bytes.starts_with(b"-----BEGIN") {
        return CertificateSigningRequestDer::from_pem_slice(bytes).map_err(|e| {
            Status::invalid_argument(format!(
                "the certificate signing request is not valid PEM: {e}"
            ))
        });
    }
    Ok(CertificateSigningRequestDer::from(bytes.to_vec()))
}

fn token_status(e: &TokenError) -> Status {
    match e {
        TokenError::WrongIdentity { .. } => Status::permission_denied(e.to_string()),
        TokenError::Io { .. } | TokenError::Random => {
            Status::internal(format!("cannot check the token: {e}"))
        }
        _ => Status::unauthenticated(e.to_string()),
    }
}

fn sign_status(e: &SignError) -> Status {
    match e {
        SignError::MalformedCsr(_) | SignError::NoIdentity => {
            Status::invalid_argument(e.to_string())
        }
        SignError::IdentityMismatch { .. } => Status::permission_denied(e.to_string()),
        SignError::IssuerExpired(_) => Status::failed_precondition(e.to_string()),
        SignError::Sign(_) => Status::internal(e.to_string()),
    }
}
