use std::collections::{BTreeSet, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_util::Stream;
use futures_util::future::BoxFuture;
use tokio::time::{Instant, Sleep};

use super::Update;
use crate::Endpoint;

type Resolve = Arc<dyn Fn(&str) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> + Send + Sync>;

/// Endpoints from a DNS name, resolved again every [`refresh`](Self::refresh) period: the
/// fallback for names the mesh does not know (no control-plane endpoints for them).
///
/// Each answer replaces the set: new addresses are inserted, missing ones removed. A failed or
/// empty lookup keeps the last answer (a resolver hiccup must not drain a working balancer); a
/// name that never resolves leaves the balancer empty, which fails requests fast with
/// [`Reason::NoEndpoints`](crate::Reason::NoEndpoints). Endpoints from DNS carry no identity, no
/// protocol hint and no labels.
///
/// ```
/// use mesh_balance::discover::Dns;
/// use std::time::Duration;
///
/// let dns = Dns::new("example.com", 443).refresh(Duration::from_secs(30));
/// assert_eq!(dns.name(), "example.com:443");
/// ```
pub struct Dns {
    name: Arc<str>,
    every: Duration,
    resolve: Resolve,
    current: BTreeSet<SocketAddr>,
    queue: VecDeque<Update>,
    sleep: Option<Pin<Box<Sleep>>>,
    lookup: Option<BoxFuture<'static, io::Result<Vec<SocketAddr>>>>,
}

impl Dns {
    /// How often a name is resolved unless told otherwise.
    pub const DEFAULT_REFRESH: Duration = Duration::from_secs(10);

    /// Resolves `host` (a DNS name or an IP literal) with the system resolver
    /// ([`tokio::net::lookup_host`]); endpoints listen on `port`.
    pub fn new(host: impl AsRef<str>, port: u16) -> Self {
        let host = host.as_ref();
        // An IPv6 literal needs brackets before the port.
        let name = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Self::with_resolver(name, |name: &str| {
            let name = name.to_owned();
            async move { Ok(tokio::net::lookup_host(name).await?.collect()) }
        })
    }

    /// Resolves `name` with `resolve` (a custom resolver, or a fake one in tests).
    pub fn with_resolver<R, F>(name: impl Into<Arc<str>>, resolve: R) -> Self
    where
        R: Fn(&str) -> F + Send + Sync + 'static,
        F: Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'static,
    {
        Self {
            name: name.into(),
            every: Self::DEFAULT_REFRESH,
            resolve: Arc::new(move |name| Box::pin(resolve(name))),
            current: BTreeSet::new(),
            queue: VecDeque::new(),
            sleep: None,
            lookup: None,
        }
    }

    /// Sets how often the name is resolved again. Default is [`Dns::DEFAULT_REFRESH`] (10 s).
    pub fn refresh(mut self, every: Duration) -> Self {
        self.every = every.max(Duration::from_millis(1));
        self
    }

    /// The name resolved (`host:port`).
    pub fn name(&self) -> &str {
        &self.name
    }

    fn answer(&mut self, result: io::Result<Vec<SocketAddr>>) {
        let addrs: BTreeSet<SocketAddr> = match result {
            Ok(addrs) if !addrs.is_empty() => addrs.into_iter().collect(),
            Ok(_) => {
                tracing::warn!(name = %self.name, kept = self.current.len(), "DNS answer is empty; keeping the last one");
                return;
            }
            Err(error) => {
                tracing::warn!(name = %self.name, %error, kept = self.current.len(), "DNS lookup failed; keeping the last answer");
                return;
            }
        };
        for addr in addrs.difference(&self.current) {
            self.queue
                .push_back(Update::Insert(*addr, Endpoint::new(*addr)));
        }
        for addr in self.current.difference(&addrs) {
            self.queue.push_back(Update::Remove(*addr));
        }
        self.current = addrs;
    }
}

impl Stream for Dns {
    type Item = Result<Update, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(update) = this.queue.pop_front() {
                return Poll::Ready(Some(Ok(update)));
            }
            if let Some(lookup) = this.lookup.as_mut() {
                let result = ready!(lookup.as_mut().poll(cx));
                this.lookup = None;
                this.answer(result);
                let next = Instant::now() + this.every;
                match this.sleep.as_mut() {
                    Some(sleep) => sleep.as_mut().reset(next),
                    None => this.sleep = Some(Box::pin(tokio::time::sleep_until(next))),
                }
                continue;
            }
            // The first lookup starts at once; later ones when the refresh period has passed.
            if let Some(sleep) = this.sleep.as_mut() {
                ready!(sleep.as_mut().poll(cx));
            }
            this.lookup = Some((this.resolve)(&this.name));
        }
    }
}

impl fmt::Debug for Dns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dns")
            .field("name", &self.name)
            .field("refresh", &self.every)
            .field("current", &self.current)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::sync::Mutex;

    fn addr(last: u8) -> SocketAddr {
        ([10, 0, 0, last], 80).into()
    }

    #[tokio::test(start_paused = true)]
    async fn follows_answers_and_keeps_the_last_on_errors() {
        let answers = Arc::new(Mutex::new(VecDeque::from([
            Ok(vec![addr(1), addr(2), addr(1)]),
            Err(io::Error::other("SERVFAIL")),
            Ok(vec![]),
            Ok(vec![addr(2), addr(3)]),
        ])));
        let lookups = answers.clone();
        let mut dns = Dns::with_resolver("web.example:80", move |name: &str| {
            assert_eq!(name, "web.example:80");
            let next = lookups
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Ok(vec![addr(3), addr(2)]));
            async move { next }
        })
        .refresh(Duration::from_secs(5));

        let start = Instant::now();
        let mut next = async || match dns.next().await {
            Some(Ok(Update::Insert(a, ep))) => {
                assert_eq!(ep.addr(), a);
                ('+', a)
            }
            Some(Ok(Update::Remove(a))) => ('-', a),
            None => panic!("a DNS stream never ends"),
        };
        assert_eq!(next().await, ('+', addr(1)));
        assert_eq!(next().await, ('+', addr(2)));
        assert_eq!(start.elapsed(), Duration::ZERO);
        // The error and the empty answer change nothing; the fourth answer does.
        assert_eq!(next().await, ('+', addr(3)));
        assert_eq!(next().await, ('-', addr(1)));
        assert_eq!(start.elapsed(), Duration::from_secs(15));
        // Then the same answer forever: nothing to report.
        let quiet = tokio::time::timeout(Duration::from_secs(60), next()).await;
        assert!(quiet.is_err());
        assert!(answers.lock().unwrap().is_empty());
    }

    #[test]
    fn names() {
        assert_eq!(Dns::new("::1", 80).name(), "[::1]:80");
        assert_eq!(Dns::new("[::1]", 80).name(), "[::1]:80");
        assert_eq!(Dns::new("web", 8080).name(), "web:8080");
    }
}
