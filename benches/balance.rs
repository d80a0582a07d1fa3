//! mesh-balance's pick against round robin, and the tail latency it buys under skew.
//!
//! - `pick/{p2c_ewma,tower_p2c_peak_ewma,round_robin}/N`: one pick and dispatch over N
//!   always-ready in-process endpoints (10, 100, 1,000): `poll_ready` + `call` + the (already
//!   complete) response. `p2c_ewma` is mesh-balance's [`Pool`](mesh_balance::Pool): tower's P2C
//!   over mesh-balance's lock-free peak-EWMA load with failure accrual on each endpoint.
//!   `tower_p2c_peak_ewma` is tower's P2C over tower's `PeakEwma` alone (no failure accrual,
//!   no stats): the baseline mesh-balance's own load had to beat. Round robin is the cheapest
//!   balancer there is.
//! - `tail/{p2c_ewma,round_robin,random}`: a simulation (paused Tokio time, no sockets) of
//!   open-loop traffic over a skewed set: 8 fast endpoints (exponential service time, mean 5 ms)
//!   and 2 slow ones (mean 50 ms), each serving 4 requests at a time and queueing the rest, at
//!   600 requests/s. Before the timed runs it prints each strategy's p50/p99/p99.9 over 20,000
//!   requests and the p99 ratios.
//!
//! Run with `cargo bench --bench balance`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::Empty;
use mesh_balance::{Builder, Endpoint, discover};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::{Service, ServiceExt};

// === pick cost ===

#[derive(Clone)]
struct Instant200;

impl Service<Request<()>> for Instant200 {
    type Response = Response<Empty<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        std::future::ready(Ok(Response::new(Empty::new())))
    }
}

/// The simplest balancer: the next ready endpoint in turn.
struct RoundRobin<S> {
    endpoints: Vec<S>,
    next: usize,
}

impl<S, Req> Service<Req> for RoundRobin<S>
where
    S: Service<Req>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        let n = self.endpoints.len();
        for i in 0..n {
            let idx = (self.next + i) % n;
            if let Poll::Ready(r) = self.endpoints[idx].poll_ready(cx) {
                self.next = idx;
                return Poll::Ready(r);
            }
        }
        Poll::Pending
    }

    fn call(&mut self, req: Req) -> S::Future {
        let idx = self.next;
        self.next = (idx + 1) % self.endpoints.len();
        self.endpoints[idx].call(req)
    }
}

/// Uniformly random among the endpoints (they are always ready here).
struct Random<S> {
    endpoints: Vec<S>,
    rng: XorShift,
    next: usize,
}

impl<S, Req> Service<Req> for Random<S>
where
    S: Service<Req>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.next = (self.rng.next_u64() % self.endpoints.len() as u64) as usize;
        self.endpoints[self.next].poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> S::Future {
        self.endpoints[self.next].call(req)
    }
}

fn addr(i: usize) -> SocketAddr {
    ([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 8080).into()
}

/// One pick and dispatch, polled in place with a no-op waker.
fn pick<S>(svc: &mut S, cx: &mut Context<'_>)
where
    S: Service<Request<()>>,
    S::Future: Unpin,
    S::Error: std::fmt::Debug,
{
    match svc.poll_ready(cx) {
        Poll::Ready(Ok(())) => {}
        other => panic!("not ready: {:?}", other.map(|r| r.err())),
    }
    let mut fut = svc.call(Request::new(()));
    match Pin::new(&mut fut).poll(cx) {
        Poll::Ready(Ok(rsp)) => drop(std::hint::black_box(rsp)),
        Poll::Ready(Err(e)) => panic!("failed: {e:?}"),
        Poll::Pending => panic!("pending"),
    }
}

fn bench_pick(c: &mut Criterion) {
    // Outside any runtime on purpose: with Tokio's `test-util` (on in this package's dev builds)
    // every `Instant::now()` inside a runtime takes the test clock's lock, which production
    // builds do not. Nothing on this path needs a timer.
    let mut cx = Context::from_waker(Waker::noop());
    let mut group = c.benchmark_group("pick");
    for n in [10usize, 100, 1_000] {
        let mut pool = Builder::new("bench.pick:80").build_pool(
            discover::fixed((0..n).map(|i| Endpoint::new(addr(i)))),
            |_| Instant200,
        );
        // Discover and ready every endpoint before measuring.
        for _ in 0..4 {
            pick(&mut pool, &mut cx);
        }
        assert_eq!(pool.stats().ready(), n);
        group.bench_with_input(BenchmarkId::new("p2c_ewma", n), &n, |b, _| {
            b.iter(|| pick(&mut pool, &mut cx))
        });
        // tower's `balance` and `load` features reach this package through mesh-balance.
        let list = tower::discover::ServiceList::new((0..n).map(|_| Instant200));
        let ewma = tower::load::PeakEwmaDiscover::new(
            list,
            Duration::from_millis(30),
            Duration::from_secs(10),
            tower::load::CompleteOnResponse::default(),
        );
        let mut tower_p2c = tower::balance::p2c::Balance::new(ewma);
        for _ in 0..4 {
            pick(&mut tower_p2c, &mut cx);
        }
        group.bench_with_input(BenchmarkId::new("tower_p2c_peak_ewma", n), &n, |b, _| {
            b.iter(|| pick(&mut tower_p2c, &mut cx))
        });
        let mut rr = RoundRobin {
            endpoints: vec![Instant200; n],
            next: 0,
        };
        group.bench_with_input(BenchmarkId::new("round_robin", n), &n, |b, _| {
            b.iter(|| pick(&mut rr, &mut cx))
        });
    }
    group.finish();
}

// === tail latency under skew ===

/// A small deterministic PRNG (xorshift64*), so every strategy sees the same workload.
#[derive(Clone)]
struct XorShift(u64);

impl XorShift {
    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    fn exp(&mut self, mean: Duration) -> Duration {
        mean.mul_f64(-self.unit().ln())
    }
}

/// A simulated endpoint: `slots` requests served at a time, the rest queue; service time is
/// exponential around `mean`, drawn from a seed per endpoint.
#[derive(Clone)]
struct SimEndpoint {
    slots: Arc<Semaphore>,
    mean: Duration,
    rng: Arc<Mutex<XorShift>>,
}

impl Service<Request<()>> for SimEndpoint {
    type Response = Response<Empty<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        let slots = self.slots.clone();
        let service = self
            .rng
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .exp(self.mean)
            .max(Duration::from_micros(200));
        Box::pin(async move {
            let _slot = slots.acquire_owned().await.expect("semaphore open");
            tokio::time::sleep(service).await;
            Ok(Response::new(Empty::new()))
        })
    }
}

const FAST: usize = 8;
const SLOW: usize = 2;

fn fleet(seed: u64) -> Vec<SimEndpoint> {
    (0..FAST + SLOW)
        .map(|i| SimEndpoint {
            slots: Arc::new(Semaphore::new(4)),
            mean: if i < FAST {
                Duration::from_millis(5)
            } else {
                Duration::from_millis(50)
            },
            rng: Arc::new(Mutex::new(XorShift(
                seed ^ (0x9E37_79B9_7F4A_7C15 * (i as u64 + 1)),
            ))),
        })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Strategy {
    P2cEwma,
    RoundRobin,
    Random,
}

impl Strategy {
    const ALL: [Strategy; 3] = [Strategy::P2cEwma, Strategy::RoundRobin, Strategy::Random];

    fn name(self) -> &'static str {
        match self {
            Strategy::P2cEwma => "p2c_ewma",
            Strategy::RoundRobin => "round_robin",
            Strategy::Random => "random",
        }
    }
}

/// Sends `requests` at `rps` (Poisson arrivals) through `svc`; returns every latency, sorted.
async fn drive<S>(mut svc: S, requests: usize, rps: f64, seed: u64) -> Vec<Duration>
where
    S: Service<Request<()>, Error = mesh_balance::BoxError>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    let mut arrivals = XorShift(seed);
    let gap = Duration::from_secs_f64(1.0 / rps);
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(requests)));
    let done = Arc::new(AtomicU64::new(0));
    let mut next = Instant::now();
    let mut tasks = Vec::with_capacity(requests);
    for _ in 0..requests {
        next += arrivals.exp(gap);
        tokio::time::sleep_until(next).await;
        let start = Instant::now();
        let fut = svc.ready().await.expect("ready").call(Request::new(()));
        let (latencies, done) = (latencies.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let rsp = fut.await.expect("response");
            drop(rsp);
            latencies
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(start.elapsed());
            done.fetch_add(1, Ordering::Relaxed);
        }));
    }
    for t in tasks {
        t.await.expect("request task");
    }
    let mut l = std::mem::take(&mut *latencies.lock().unwrap_or_else(|p| p.into_inner()));
    l.sort();
    l
}

fn simulate(strategy: Strategy, requests: usize, seed: u64) -> Vec<Duration> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let endpoints = fleet(seed);
        let rps = 600.0;
        match strategy {
            Strategy::P2cEwma => {
                let by_addr: Arc<Vec<SimEndpoint>> = Arc::new(endpoints);
                let eps = by_addr.clone();
                let pool = Builder::new("bench.tail:80").build_pool(
                    discover::fixed((0..eps.len()).map(|i| Endpoint::new(addr(i)))),
                    move |ep: Endpoint| {
                        let i = usize::from(match ep.addr() {
                            SocketAddr::V4(a) => a.ip().octets()[3],
                            SocketAddr::V6(_) => 0,
                        });
                        eps[i].clone()
                    },
                );
                drive(pool, requests, rps, seed).await
            }
            Strategy::RoundRobin => {
                let rr = RoundRobin { endpoints, next: 0 };
                drive(
                    rr.map_err(mesh_balance::BoxError::from),
                    requests,
                    rps,
                    seed,
                )
                .await
            }
            Strategy::Random => {
                let random = Random {
                    endpoints,
                    rng: XorShift(seed.rotate_left(17) | 1),
                    next: 0,
                };
                drive(
                    random.map_err(mesh_balance::BoxError::from),
                    requests,
                    rps,
                    seed,
                )
                .await
            }
        }
    })
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn report_tail() {
    let requests = 20_000;
    let seed = 0x5EED_CAFE_F00D_0001;
    let mut p99 = Vec::new();
    println!(
        "\ntail latency, {} fast (5 ms) + {} slow (50 ms) endpoints, 4 slots each, 600 req/s, {requests} requests:",
        FAST, SLOW
    );
    for s in Strategy::ALL {
        let l = simulate(s, requests, seed);
        let (p50, p99_, p999) = (quantile(&l, 0.5), quantile(&l, 0.99), quantile(&l, 0.999));
        println!(
            "  {:<12} p50 {:>9.2?}  p99 {:>9.2?}  p99.9 {:>9.2?}",
            s.name(),
            p50,
            p99_,
            p999
        );
        p99.push((s, p99_));
    }
    let of = |s: Strategy| {
        p99.iter()
            .find(|(x, _)| *x == s)
            .map(|(_, d)| *d)
            .unwrap_or_default()
    };
    let p2c = of(Strategy::P2cEwma).as_secs_f64();
    println!(
        "  p99 ratio: p2c_ewma / round_robin = {:.3}, p2c_ewma / random = {:.3}\n",
        p2c / of(Strategy::RoundRobin).as_secs_f64(),
        p2c / of(Strategy::Random).as_secs_f64()
    );
}

fn bench_tail(c: &mut Criterion) {
    report_tail();
    let mut group = c.benchmark_group("tail");
    group.sample_size(10);
    for s in Strategy::ALL {
        group.bench_function(s.name(), |b| b.iter(|| simulate(s, 2_000, 7)));
    }
    group.finish();
}

criterion_group!(benches, bench_pick, bench_tail);
criterion_main!(benches);
