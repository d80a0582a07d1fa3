use super::*;
use std::sync::atomic::AtomicUsize;

fn counting_cache(
    idle: Duration,
) -> (
    Cache<&'static str, impl NewService<&'static str, Service = Arc<str>> + Send + Sync + 'static>,
    Arc<AtomicUsize>,
) {
    let built = Arc::new(AtomicUsize::new(0));
    let b = built.clone();
    let cache = Cache::new(
        move |target: &'static str| {
            b.fetch_add(1, Ordering::SeqCst);
            Arc::<str>::from(target)
        },
        idle,
    );
    (cache, built)
}

#[tokio::test(start_paused = true)]
async fn builds_once_and_evicts_when_idle() {
    let (cache, built) = counting_cache(Duration::from_secs(10));
    let a = cache.get("a");
    let a2 = cache.get("a");
    let b = cache.get("b");
    assert_eq!((built.load(Ordering::SeqCst), cache.len()), (2, 2));
    assert_eq!(&**a.get_ref(), "a");

    // In use: never evicted, however long.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(cache.len(), 2);

    // `b` idle from now; `a` still held by one clone.
    drop(b);
    drop(a);
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(cache.len(), 2, "not idle long enough yet");
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    assert_eq!(cache.len(), 1, "b evicted within timeout + sweep period");

    // Used again before it expires: the idle clock restarts.
    drop(a2);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let a3 = cache.get("a");
    assert_eq!(built.load(Ordering::SeqCst), 2, "reused, not rebuilt");
    drop(a3);
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(cache.len(), 1, "idle clock restarted at the last drop");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(cache.is_empty());

    // Evicted targets are built again on next use.
    let _b = cache.get("b");
    assert_eq!(built.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn sweeper_stops_with_the_cache() {
    let (cache, _) = counting_cache(Duration::from_millis(100));
    let weak = Arc::downgrade(&cache.inner);
    drop(cache.get("a"));
    drop(cache);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(weak.upgrade().is_none());
}
