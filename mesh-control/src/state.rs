//! The control plane's state directory, and how other processes find things in it.
//!
//! ```text
//! <state-dir>/                 mode 0700
//!   trust-anchors.pem          the trust bundle proxies verify against (public)
//!   trust-anchor.key           the anchor's key, when generated here (0600)
//!   issuer.pem, issuer.key     the issuer that signs workload certificates (key 0600)
//!   control.addr               where the control plane listens, e.g. 127.0.0.1:8086
//!   control.identity           the identity its TLS certificate proves
//!   registrations.json         proxies' registered endpoints, restored on restart
//!   tokens/                    one-use bootstrap tokens (0700; files 0600, digests only)
//!   api.addr                   where the JSON API (stat, edges, routes, tap) listens
//!   workloads/NS.NAME.json     what `mesh run` records of each running workload (admin and tap
//!                              addresses of its proxy), for the metrics scraper and tap
//! ```
//!
//! The CA files are written on first start and reused on every restart, so certificates issued
//! before a restart still verify. `mesh run` reads `control.addr`, `control.identity` and
//! `trust-anchors.pem`, and issues a token into `tokens/` for the proxy it starts.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use mesh_tls::{ServiceIdentity, TrustBundle};

use crate::token::{TokenError, TokenStore};

/// The file holding the control plane's listen address.
pub const CONTROL_ADDR: &str = "control.addr";
/// The file holding the identity the control plane's certificate proves.
pub const CONTROL_IDENTITY: &str = "control.identity";
/// The registrations of running proxies, saved so a restart serves them at once.
pub const REGISTRATIONS: &str = "registrations.json";
/// The directory of bootstrap tokens.
pub const TOKENS_DIR: &str = "tokens";
/// The trust bundle (written by the CA).
pub const TRUST_ANCHORS: &str = mesh_tls::ca::files::TRUST_ANCHORS;

fn invalid(path: &Path, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {what}", path.display()),
    )
}

/// Where the control plane using `dir` listens.
pub fn read_control_addr(dir: &Path) -> io::Result<SocketAddr> {
    let path = dir.join(CONTROL_ADDR);
    let text = std::fs::read_to_string(&path)?;
    text.trim()
        .parse()
        .map_err(|_| invalid(&path, "not an ip:port address"))
}

/// The identity the control plane using `dir` proves.
pub fn read_control_identity(dir: &Path) -> io::Result<ServiceIdentity> {
    let path = dir.join(CONTROL_IDENTITY);
    let text = std::fs::read_to_string(&path)?;
    ServiceIdentity::parse(text.trim()).map_err(|e| invalid(&path, e))
}

/// The trust bundle of the CA in `dir`.
pub fn read_trust_bundle(dir: &Path) -> io::Result<TrustBundle> {
    let path = dir.join(TRUST_ANCHORS);
    let text = std::fs::read_to_string(&path)?;
    TrustBundle::from_pem(&text).map_err(|e| invalid(&path, e))
}

/// The bootstrap token store in `dir`, shared with the running control plane.
pub fn tokens(dir: &Path) -> Result<TokenStore, TokenError> {
    TokenStore::in_dir(tokens_dir(dir))
}

/// `<dir>/tokens`.
pub fn tokens_dir(dir: &Path) -> PathBuf {
    dir.join(TOKENS_DIR)
}

/// Writes `contents` to `dir/name` atomically (a temporary file renamed over it).
pub fn write_atomic(dir: &Path, name: &str, contents: &str) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, dir.join(name))
}

/// Creates `dir` (mode 0700) if needed.
pub(crate) fn create_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}
