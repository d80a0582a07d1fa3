//! One-use bootstrap tokens: how a proxy proves its identity the first time it calls `Certify`.
//!
//! `mesh run` issues a token bound to the workload's identity, hands it to the proxy, and the
//! proxy sends it with its first CSR. The identity service redeems it: the token must be known,
//! unexpired, unused and bound to exactly the identity the CSR asks for. Later renewals are
//! authenticated by the proxy's current certificate over mutual TLS, so the token is never needed
//! again (and cannot be used again).
//!
//! Tokens look like `mesh1.<id>.<secret>` (hex). The store keeps only the id, the SHA-256 of the
//! secret, the identity and the expiry, and compares digests in constant time. A store is either
//! in memory (one process) or in a directory (`<state-dir>/tokens`, files mode 0600), so a
//! separate `mesh run` process can issue tokens that the running control plane redeems.
//!
//! ```
//! use std::time::Duration;
//! use mesh_control::token::TokenStore;
//! use mesh_tls::ServiceIdentity;
//!
//! let store = TokenStore::in_memory();
//! let web: ServiceIdentity = "web.emojivoto.serviceaccount.identity.mesh.cluster.local".parse()?;
//! let token = store.issue(&web, Duration::from_secs(600))?;
//! store.redeem(&token, &web)?.commit();
//! assert!(store.redeem(&token, &web).unwrap_err().is_used());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mesh_tls::{ServiceIdentity, UtcTime};
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// How long a token issued by `mesh run` stays valid by default.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(10 * 60);

/// How long expired and used tokens are remembered, so that presenting one says "expired" or
/// "already used" rather than "unknown".
const REMEMBER: Duration = Duration::from_secs(24 * 3600);

const PREFIX: &str = "mesh1";

/// Issues and redeems bootstrap tokens. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct TokenStore {
    backend: Arc<Backend>,
    clock: Arc<dyn Fn() -> SystemTime + Send + Sync>,
}

struct Backend {
    kind: Kind,
    /// Serializes redemptions in this process; across processes the directory's renames do.
    lock: Mutex<()>,
}

enum Kind {
    Memory(Mutex<HashMap<String, Stored>>),
    Dir(PathBuf),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Stored {
    identity: String,
    sha256: String,
    /// Seconds since the Unix epoch.
    expires: u64,
    #[serde(default)]
    used: bool,
}

/// Why a token was not issued or not accepted.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Not a token at all.
    #[error("the token is malformed: a bootstrap token looks like mesh1.<id>.<secret>")]
    Malformed,
    /// No such token, or the wrong secret.
    #[error("the bootstrap token is not valid (unknown, or its secret is wrong)")]
    Invalid,
    /// The token was redeemed before.
    #[error(
        "the bootstrap token was already used; tokens are one-use (issue a new one, or renew with the current certificate over mutual TLS)"
    )]
    Used,
    /// The token expired.
    #[error("the bootstrap token expired at {0}; issue a new one")]
    Expired(UtcTime),
    /// The token was issued for another identity.
    #[error("the bootstrap token was issued for {issued_for}, not for {requested}")]
    WrongIdentity {
        /// The identity the token is bound to.
        issued_for: String,
        /// The identity the caller asked for.
        requested: ServiceIdentity,
    },
    /// The token directory could not be read or written.
    #[error("token store {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The system random number generator failed.
    #[error("cannot generate a token: the system random number generator failed")]
    Random,
}

impl TokenError {
    /// Whether the token was already redeemed.
    pub fn is_used(&self) -> bool {
        matches!(self, Self::Used)
    }

    /// Whether the token expired.
    pub fn is_expired(&self) -> bool {
        matches!(self, Self::Expired(_))
    }

    /// Whether the token is bound to another identity.
    pub fn is_wrong_identity(&self) -> bool {
        matches!(self, Self::WrongIdentity { .. })
    }

    /// Whether the store itself failed (not the caller's fault).
    pub fn is_internal(&self) -> bool {
        matches!(self, Self::Io { .. } | Self::Random)
    }
}

/// A redeemed token, not yet final: [`commit`](Redemption::commit) once the certificate is
/// issued, or drop it (or call [`restore`](Redemption::restore)) to make the token usable again
/// when signing failed for a reason that is not the caller's.
#[must_use = "a redemption is undone unless committed"]
pub struct Redemption {
    store: TokenStore,
    id: String,
    done: bool,
}

// === impl TokenStore ===

impl TokenStore {
    /// A store that lives in this process.
    pub fn in_memory() -> Self {
        Self::with_backend(Kind::Memory(Mutex::new(HashMap::new())))
    }

    /// A store in `dir` (created with mode 0700), shared with other processes using the same
    /// directory.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Result<Self, TokenError> {
        let dir = dir.into();
        let io = |source| TokenError::Io {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        }
        Ok(Self::with_backend(Kind::Dir(dir)))
    }

    fn with_backend(kind: Kind) -> Self {
        Self {
            backend: Arc::new(Backend {
                kind,
                lock: Mutex::new(()),
            }),
            clock: Arc::new(SystemTime::now),
        }
    }

    /// Uses `clock` for expiry instead of the system clock (tests). Clones made before keep
    /// their clock; the tokens are shared.
    pub fn with_clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    fn now(&self) -> SystemTime {
        (self.clock)()
    }

    /// Issues a one-use token for `identity`, valid for `ttl`.
    pub fn issue(&self, identity: &ServiceIdentity, ttl: Duration) -> Result<String, TokenError> {
        let rng = SystemRandom::new();
        let mut id = [0u8; 8];
        let mut secret = [0u8; 32];
        rng.fill(&mut id).map_err(|_| TokenError::Random)?;
        rng.fill(&mut secret).map_err(|_| TokenError::Random)?;
        let id = hex(&id);
        let secret = hex(&secret);
        let expires = unix_secs(self.now() + ttl);
        let stored = Stored {
            identity: identity.as_str().to_owned(),
            sha256: hex(digest::digest(&digest::SHA256, secret.as_bytes()).as_ref()),
            expires,
            used: false,
        };
        self.prune();
        match &self.backend.kind {
            Kind::Memory(m) => {
                m.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id.clone(), stored);
            }
            Kind::Dir(dir) => write_new(&dir.join(format!("{id}.json")), &stored)?,
        }
        Ok(format!("{PREFIX}.{id}.{secret}"))
    }

    /// Checks `token` for `identity` and marks it used. Fails if the token is malformed,
    /// unknown, wrong, used, expired or bound to another identity.
    pub fn redeem(
        &self,
        token: &str,
        identity: &ServiceIdentity,
    ) -> Result<Redemption, TokenError> {
        let (id, secret) = parse(token).ok_or(TokenError::Malformed)?;
        let _guard = self.backend.lock.lock().unwrap_or_else(|p| p.into_inner());
        let stored = self.load(id)?.ok_or(TokenError::Invalid)?;
        let presented = digest::digest(&digest::SHA256, secret.as_bytes());
        let expected = unhex(&stored.sha256).ok_or(TokenError::Invalid)?;
        if !bool::from(presented.as_ref().ct_eq(expected.as_slice())) {
            return Err(TokenError::Invalid);
        }
        if stored.used {
            return Err(TokenError::Used);
        }
        if stored.identity != identity.as_str() {
            return Err(TokenError::WrongIdentity {
                issued_for: stored.identity,
                requested: identity.clone(),
            });
        }
        let expires_at = UNIX_EPOCH + Duration::from_secs(stored.expires);
        if self.now() >= expires_at {
            return Err(TokenError::Expired(expires_at.into()));
        }
        self.set_used(id, true)?;
        Ok(Redemption {
            store: self.clone(),
            id: id.to_owned(),
            done: false,
        })
    }

    fn load(&self, id: &str) -> Result<Option<Stored>, TokenError> {
        match &self.backend.kind {
            Kind::Memory(m) => Ok(m.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned()),
            Kind::Dir(dir) => {
                for (name, used) in [(format!("{id}.json"), false), (format!("{id}.used"), true)] {
                    let path = dir.join(name);
                    match std::fs::read(&path) {
                        Ok(bytes) => {
                            let mut stored: Stored =
                                serde_json::from_slice(&bytes).map_err(|e| TokenError::Io {
                                    path: path.clone(),
                                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                                })?;
                            stored.used |= used;
                            return Ok(Some(stored));
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(source) => return Err(TokenError::Io { path, source }),
                    }
                }
                Ok(None)
            }
        }
    }

    fn set_used(&self, id: &str, used: bool) -> Result<(), TokenError> {
        match &self.backend.kind {
            Kind::Memory(m) => {
                if let Some(s) = m.lock().unwrap_or_else(|p| p.into_inner()).get_mut(id) {
                    s.used = used;
                }
                Ok(())
            }
            Kind::Dir(dir) => {
                let fresh = dir.join(format!("{id}.json"));
                let spent = dir.join(format!("{id}.used"));
                let (from, to) = if used { (fresh, spent) } else { (spent, fresh) };
                // The rename is the atomic step: of two processes redeeming at once, one wins.
                std::fs::rename(&from, &to).map_err(|source| {
                    if source.kind() == std::io::ErrorKind::NotFound && used {
                        TokenError::Used
                    } else {
                        TokenError::Io { path: from, source }
                    }
                })
            }
        }
    }

    /// Forgets tokens that expired more than a day ago.
    fn prune(&self) {
        let horizon = unix_secs(self.now()).saturating_sub(REMEMBER.as_secs());
        match &self.backend.kind {
            Kind::Memory(m) => m
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|_, s| s.expires >= horizon),
            Kind::Dir(dir) => {
                let Ok(entries) = std::fs::read_dir(dir) else {
                    return;
                };
                for entry in entries.flatten() {
                    let path = entry.path();
                    let old = std::fs::read(&path)
                        .ok()
                        .and_then(|b| serde_json::from_slice::<Stored>(&b).ok())
                        .is_some_and(|s| s.expires < horizon);
                    if old {
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
        }
    }
}

impl fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = match &self.backend.kind {
            Kind::Memory(_) => "memory".to_owned(),
            Kind::Dir(d) => d.display().to_string(),
        };
        f.debug_struct("TokenStore")
            .field("backend", &backend)
            .finish_non_exhaustive()
    }
}

// === impl Redemption ===

impl Redemption {
    /// Makes the redemption final: the token can never be used again.
    pub fn commit(mut self) {
        self.done = true;
    }

    /// Makes the token usable again.
    pub fn restore(mut self) {
        self.undo();
    }

    fn undo(&mut self) {
        if !self.done {
            self.done = true;
            if let Err(error) = self.store.set_used(&self.id, false) {
                tracing::warn!(%error, "could not restore a bootstrap token after a failed signing");
            }
        }
    }
}

impl Drop for Redemption {
    fn drop(&mut self) {
        self.undo();
    }
}

impl fmt::Debug for Redemption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redemption").field("id", &self.id).finish()
    }
}

// === helpers ===

fn parse(token: &str) -> Option<(&str, &str)> {
    let mut parts = token.trim().split('.');
    let (prefix, id, secret) = (parts.next()?, parts.next()?, parts.next()?);
    let hexy = |s: &str, len| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    (prefix == PREFIX && parts.next().is_none() && hexy(id, 16) && hexy(secret, 64))
        .then_some((id, secret))
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn write_new(path: &Path, stored: &Stored) -> Result<(), TokenError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| TokenError::Io {
        path: path.to_owned(),
        source,
    };
    let json = serde_json::to_vec(stored)
        .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(&json).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn id(name: &str) -> ServiceIdentity {
        format!("{name}.emojivoto.serviceaccount.identity.mesh.cluster.local")
            .parse()
            .unwrap()
    }

    fn stores() -> (Vec<TokenStore>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        (
            vec![
                TokenStore::in_memory(),
                TokenStore::in_dir(dir.path().join("tokens")).unwrap(),
            ],
            dir,
        )
    }

    #[test]
    fn one_use_and_bound_to_one_identity() {
        let (stores, _dir) = stores();
        for store in stores {
            let token = store.issue(&id("web"), Duration::from_secs(60)).unwrap();
            let stolen = store.redeem(&token, &id("voting")).unwrap_err();
            assert!(stolen.is_wrong_identity(), "{stolen}");
            assert!(stolen.to_string().contains("issued for web."), "{stolen}");
            store.redeem(&token, &id("web")).unwrap().commit();
            let again = store.redeem(&token, &id("web")).unwrap_err();
            assert!(again.is_used(), "{again}");
        }
    }

    #[test]
    fn wrong_secret_and_garbage_are_refused() {
        let (stores, _dir) = stores();
        for store in stores {
            let token = store.issue(&id("web"), Duration::from_secs(60)).unwrap();
            let mut forged = token.clone();
            let last = forged.pop().unwrap();
            forged.push(if last == '0' { '1' } else { '0' });
            assert!(matches!(
                store.redeem(&forged, &id("web")),
                Err(TokenError::Invalid)
            ));
            assert!(matches!(
                store.redeem("hello", &id("web")),
                Err(TokenError::Malformed)
            ));
            // The forged attempt did not burn the real token.
            store.redeem(&token, &id("web")).unwrap().commit();
        }
    }

    #[test]
    fn expiry_follows_the_injected_clock() {
        let now = Arc::new(AtomicU64::new(1_000_000));
        let clock = {
            let now = now.clone();
            move || UNIX_EPOCH + Duration::from_secs(now.load(Ordering::SeqCst))
        };
        let store = TokenStore::in_memory().with_clock(clock);
        let token = store.issue(&id("web"), Duration::from_secs(30)).unwrap();
        now.fetch_add(31, Ordering::SeqCst);
        let err = store.redeem(&token, &id("web")).unwrap_err();
        assert!(err.is_expired(), "{err}");
    }

    #[test]
    fn an_uncommitted_redemption_restores_the_token() {
        let (stores, _dir) = stores();
        for store in stores {
            let token = store.issue(&id("web"), Duration::from_secs(60)).unwrap();
            drop(store.redeem(&token, &id("web")).unwrap());
            store.redeem(&token, &id("web")).unwrap().commit();
        }
    }

    #[test]
    fn directory_store_is_shared_and_keeps_only_digests() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = TokenStore::in_dir(dir.path()).unwrap();
        let redeemer = TokenStore::in_dir(dir.path()).unwrap();
        let token = issuer.issue(&id("web"), Duration::from_secs(60)).unwrap();
        let secret = token.rsplit('.').next().unwrap();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                !text.contains(secret),
                "the secret is stored in {}",
                path.display()
            );
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        redeemer.redeem(&token, &id("web")).unwrap().commit();
        assert!(issuer.redeem(&token, &id("web")).unwrap_err().is_used());
    }
}
