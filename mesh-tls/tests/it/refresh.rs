use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use mesh_tls::certify::{self, Certify, CertifyFuture, CertifyRequest, RefreshPolicy};
use mesh_tls::{CertificateAuthority, Credentials};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Signs with a CA after `fail_first` failures, reporting each attempt's time.
struct Recorder {
    ca: CertificateAuthority,
    fail_first: u32,
    calls: AtomicU32,
    tx: mpsc::UnboundedSender<(Instant, bool)>,
}

impl Certify for Recorder {
    fn certify(&self, request: CertifyRequest) -> CertifyFuture<'_> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let ok = n >= self.fail_first;
        let _ = self.tx.send((Instant::now(), ok));
        Box::pin(async move {
            if !ok {
                return Err("identity service unavailable".into());
            }
            self.ca.certify(request).await
        })
    }
}

fn recorder(
    fail_first: u32,
) -> (
    Arc<Recorder>,
    mpsc::UnboundedReceiver<(Instant, bool)>,
    Credentials,
) {
    let ca = CertificateAuthority::builder()
        .leaf_lifetime(Duration::from_secs(1000))
        .generate()
        .expect("ca");
    let id = ca.domain().workload("web", "emojivoto").expect("id");
    let creds = Credentials::generate(id, ca.trust_bundle()).expect("creds");
    let (tx, rx) = mpsc::unbounded_channel();
    (
        Arc::new(Recorder {
            ca,
            fail_first,
            calls: AtomicU32::new(0),
            tx,
        }),
        rx,
        creds,
    )
}

#[tokio::test(start_paused = true)]
async fn renews_at_seventy_percent_of_the_lifetime() {
    let (rec, mut rx, creds) = recorder(0);
    assert!(!creds.is_ready());
    let task = tokio::spawn(certify::refresh(
        creds.clone(),
        rec.clone(),
        RefreshPolicy::default(),
    ));
    let (t0, ok) = rx.recv().await.expect("first certify");
    assert!(ok);
    creds.ready().await;
    let first = creds.leaf_certificate().expect("certified");
    let (t1, _) = rx.recv().await.expect("second certify");
    // Lifetime 1000 s (+60 s of clock-skew allowance at the start): renew after ~700 s.
    let waited = t1 - t0;
    assert!(
        waited >= Duration::from_secs(690) && waited <= Duration::from_secs(710),
        "renewed after {waited:?}"
    );
    // Wait for the renewed certificate to be installed.
    let deadline = Instant::now() + Duration::from_secs(5);
    while creds.leaf_certificate().as_ref() == Some(&first) {
        assert!(
            Instant::now() < deadline,
            "renewed certificate never installed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn failures_back_off_with_jitter_and_readiness_waits() {
    let (rec, mut rx, creds) = recorder(3);
    let policy = RefreshPolicy::default();
    let task = tokio::spawn(certify::refresh(creds.clone(), rec.clone(), policy.clone()));
    let mut times = Vec::new();
    for _ in 0..4 {
        let (t, ok) = rx.recv().await.expect("attempt");
        times.push(t);
        assert_eq!(ok, times.len() == 4);
        if !ok {
            assert!(!creds.is_ready(), "not ready before a certificate arrives");
        }
    }
    creds.ready().await;
    // Backoff 1 s, 2 s, 4 s, each plus up to 50% jitter.
    for (i, pair) in times.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        let base = policy.backoff_min * 2u32.pow(i as u32);
        assert!(gap >= base && gap <= base.mul_f64(1.5), "gap {i}: {gap:?}");
    }
    task.abort();
}
