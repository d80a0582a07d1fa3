//! The `mesh.yaml` catalog file: its schema, and its translation into a [`Snapshot`].
//!
//! The file is read with serde-saphyr into the schema types below (unknown keys are errors, so a
//! typo never silently does nothing), then checked: names, addresses, identities, regexes,
//! durations, duplicate services/ports/endpoints, splits. Every error names the file, the line
//! when known, and the field, e.g.
//!
//! ```text
//! mesh.yaml:14: services[0] (web.emojivoto).profile.routes[1].condition.pathRegex: invalid regex: ...
//! ```
//!
//! # Schema
//!
//! The annotated example below is the reference (it is `mesh.example.yaml` in the crate and is
//! checked by the tests):
//!
//! ```yaml
#![doc = include_str!("../../mesh.example.yaml")]
//! ```
//!
//! Notes:
//! - A service is `<name>.<namespace>`; clients address it as
//!   `<name>.<namespace>.svc.<cluster-domain>:<port>` (see [`crate::name`]).
//! - Route conditions match the method and a regex over the **whole** path (as ServiceProfiles
//!   do); `all`/`any`/`not` conditions are not supported yet. Response classes match a status
//!   range (`{min, max}`; one bound alone is a single status).
//! - `timeout` bounds the whole request including retries. `maxRetries` (default 3) is what the
//!   outbound policy API sends; the profile API sends `isRetryable` and the retry budget.
//! - A `split` sends a service's clients to its backends by weight (SMI TrafficSplit, served as
//!   the profile's `dstOverrides` and as weighted backends in outbound policy). Backends are
//!   services in the same namespace unless `namespace` is given; `port` defaults to the port the
//!   client addressed.
//! - Endpoint identity: `serviceAccount: sa` expands to
//!   `sa.<namespace>.serviceaccount.identity.<identity-suffix>`; `identity:` takes any DNS-like
//!   name or SPIFFE ID; neither means an unmeshed endpoint (no TLS). `protocolHint` is `h2`,
//!   `opaque` or `none`; unset, meshed endpoints get `h2` (or `opaque` on opaque ports).
//! - Authorization is either `policy: <default policy>` or explicit clients: `identities`,
//!   `serviceAccounts`, `suffixes` (an empty suffix admits every meshed client),
//!   `unauthenticated: true`, and `networks` restricting all of them.

mod convert;
mod schema;

use std::fmt;
use std::path::{Path, PathBuf};

use mesh_tls::IdentityDomain;

pub(crate) use self::convert::check_label;
use self::convert::convert;
use self::schema::Doc;
use super::model::Snapshot;

/// The example catalog shown in the schema docs.
pub const EXAMPLE: &str = include_str!("../../mesh.example.yaml");

/// Why a catalog file could not be used.
///
/// Its `Display` names the file, the line when known, the field and the problem.
#[derive(Debug)]
pub struct CatalogError {
    file: Option<PathBuf>,
    line: Option<u64>,
    column: Option<u64>,
    field: Option<String>,
    message: String,
    io: Option<std::io::Error>,
}

impl CatalogError {
    fn invalid(line: Option<u64>, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: None,
            line: line.filter(|l| *l > 0),
            column: None,
            field: Some(field.into()),
            message: message.into(),
            io: None,
        }
    }

    pub(crate) fn io(path: &Path, error: std::io::Error) -> Self {
        Self {
            file: Some(path.to_owned()),
            line: None,
            column: None,
            field: None,
            message: format!("cannot read the catalog file: {error}"),
            io: Some(error),
        }
    }

    fn in_file(mut self, file: Option<&Path>) -> Self {
        if self.file.is_none() {
            self.file = file.map(Path::to_owned);
        }
        self
    }

    /// The file, if the catalog came from one.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The line (from 1), when known.
    pub fn line(&self) -> Option<u64> {
        self.line
    }

    /// The offending field, e.g. `services[0] (web.emojivoto).ports[1].protocol`.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// Whether the file could not be read at all.
    pub fn is_io(&self) -> bool {
        self.io.is_some()
    }
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}", file.display())?,
            None => f.write_str("catalog")?,
        }
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for CatalogError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.io.as_ref().map(|e| e as _)
    }
}

/// Reads and checks a catalog file.
pub fn load(path: &Path, domain: &IdentityDomain) -> Result<Snapshot, CatalogError> {
    let text = std::fs::read_to_string(path).map_err(|e| CatalogError::io(path, e))?;
    parse(&text, Some(path), domain)
}

/// Parses and checks catalog text; `file` names it in errors.
///
/// ```
/// use mesh_control::catalog::{file, ServiceRef};
/// use mesh_tls::IdentityDomain;
///
/// let snapshot = file::parse(file::EXAMPLE, None, &IdentityDomain::default())?;
/// let web = snapshot.service(&ServiceRef::new("web", "emojivoto")).unwrap();
/// assert_eq!(web.profile.routes[0].name, "list");
///
/// let err = file::parse("services: [{name: web, ports: [{port: 80, protocol: htp1}]}]", None,
///     &IdentityDomain::default()).unwrap_err();
/// assert!(err.to_string().contains("protocol"), "{err}");
/// # Ok::<(), mesh_control::catalog::CatalogError>(())
/// ```
pub fn parse(
    text: &str,
    file: Option<&Path>,
    domain: &IdentityDomain,
) -> Result<Snapshot, CatalogError> {
    let doc: Doc = if text.trim().is_empty() {
        Doc::default()
    } else {
        serde_saphyr::from_str(text)
            .map_err(|e| syntax_error(text, &e))
            .map_err(|e| e.in_file(file))?
    };
    convert(doc, domain).map_err(|e| e.in_file(file))
}

fn syntax_error(text: &str, e: &serde_saphyr::Error) -> CatalogError {
    let location = e.location().filter(|l| l.line() > 0);
    let line = location.map(|l| l.line());
    // The rendered message carries a snippet; the first line is the message itself, which ends
    // with the position we report in front instead.
    let rendered = e.without_snippet().to_string();
    let mut message = rendered
        .lines()
        .next()
        .unwrap_or("invalid YAML")
        .trim()
        .to_owned();
    if let Some(at) = message.rfind(" at line ") {
        message.truncate(at);
    }
    // serde does not say which field failed to parse; the source line does: the last `key:`
    // before the error's column, else the line's first key.
    let raw = line.and_then(|l| text.lines().nth(usize::try_from(l).ok()?.checked_sub(1)?));
    let source = raw.map(str::trim).filter(|l| !l.is_empty());
    let column = location.map(|l| l.column()).filter(|c| *c > 0);
    let field = raw.and_then(|raw| {
        let upto: String = match column {
            Some(c) => raw
                .chars()
                .take(usize::try_from(c).unwrap_or(usize::MAX))
                .collect(),
            None => raw.to_owned(),
        };
        last_key(&upto)
            .or_else(|| last_key(raw.split(':').next().map(|k| format!("{k}:")).as_deref()?))
    });
    if let Some(src) = source {
        message = format!("{message} (in `{src}`)");
    }
    CatalogError {
        file: None,
        line,
        column,
        field,
        message,
        io: None,
    }
}

/// The last `key:` in `s`, if any.
fn last_key(s: &str) -> Option<String> {
    let is_key = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let colon = s.rfind(':')?;
    let head = &s[..colon];
    let start = head.rfind(|c: char| !is_key(c)).map_or(0, |i| i + 1);
    let key = &head[start..];
    (!key.is_empty()).then(|| key.to_owned())
}

#[cfg(test)]
mod tests;
