//! The bucket under tokio's paused clock: every wait is exact virtual time, so rates are
//! measured to the millisecond without a test that takes as long as the transfer.

use super::*;
use tokio::time::Instant;

const MIB: usize = 1 << 20;

/// A day clock that starts at `start` seconds after midnight and follows tokio's clock.
fn day_from(start: u32) -> DayClock {
    let began = Instant::now();
    Arc::new(move || start + began.elapsed().as_secs() as u32)
}

fn throttle(setting: &str, start: u32) -> Throttle {
    Throttle::new(setting.parse().unwrap(), day_from(start))
}

/// Sends `streams` streams of `each` bytes (in 8 MiB chunks, like parts) through `throttle` at
/// once, recording (seconds since the start, bytes through so far) after every piece.
async fn send(throttle: &Throttle, streams: usize, each: usize) -> Vec<(f64, usize)> {
    let began = Instant::now();
    let through = Arc::new(Mutex::new(Vec::new()));
    let total = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks = (0..streams).map(|_| {
        let chunks: Vec<Result<Bytes, ()>> = cut(Bytes::from(vec![7u8; each]), 8 * MIB)
            .into_iter()
            .map(Ok)
            .collect();
        let mut stream = throttle.limit_stream(futures::stream::iter(chunks).boxed());
        let (through, total) = (through.clone(), total.clone());
        async move {
            while let Some(piece) = stream.next().await {
                let n = piece.unwrap().len();
                let sum = total.fetch_add(n, std::sync::atomic::Ordering::SeqCst) + n;
                let at = began.elapsed().as_secs_f64();
                through.lock().unwrap().push((at, sum));
            }
        }
    });
    futures::future::join_all(tasks).await;
    let through = through.lock().unwrap().clone();
    through
}

/// Bytes through by `second`.
fn through_by(log: &[(f64, usize)], second: f64) -> usize {
    log.iter()
        .filter(|(at, _)| *at <= second)
        .map(|(_, n)| *n)
        .max()
        .unwrap_or(0)
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / MIB as f64
}

#[tokio::test(start_paused = true)]
async fn four_streams_share_one_rate() {
    let log = send(&throttle("4M", 0), 4, 16 * MIB).await;
    let seconds = log.last().unwrap().0;
    // 64 MiB at 4 MiB/s, less the one refill period's worth (0.1 s) the bucket starts with.
    assert!((15.8..=16.1).contains(&seconds), "took {seconds} s");
    // Smooth: every second moves about 4 MiB, never a whole part at once.
    for second in 1..15 {
        let moved = mib(through_by(&log, second as f64) - through_by(&log, second as f64 - 1.0));
        assert!((3.5..=4.5).contains(&moved), "second {second}: {moved} MiB");
    }
}

#[tokio::test(start_paused = true)]
async fn a_timetable_entry_changes_the_rate_mid_transfer() {
    // 07:59:30: 1 MiB/s until 08:00, then 4 MiB/s.
    let log = send(
        &throttle("00:00,1M 08:00,4M", 7 * 3600 + 59 * 60 + 30),
        2,
        30 * MIB,
    )
    .await;
    let before = mib(through_by(&log, 29.0) - through_by(&log, 19.0));
    let after = mib(through_by(&log, 36.0) - through_by(&log, 31.0));
    assert!(
        (9.5..=10.5).contains(&before),
        "10 s before 08:00 moved {before} MiB"
    );
    assert!(
        (19.0..=21.0).contains(&after),
        "5 s after 08:00 moved {after} MiB"
    );
    // 30 MiB in the first 30 s, the other 30 MiB at 4 MiB/s.
    let seconds = log.last().unwrap().0;
    assert!((37.0..=38.0).contains(&seconds), "took {seconds} s");
}

#[tokio::test(start_paused = true)]
async fn off_in_a_timetable_lifts_the_limit_and_a_later_entry_restores_it() {
    // 11:59:50: off at noon, 1 MiB/s again at 12:01.
    let throttle = throttle("00:00,1M 12:00,off 12:01,1M", 11 * 3600 + 59 * 60 + 50);
    let log = send(&throttle, 1, 20 * MIB).await;
    assert_eq!(throttle.limit(), Limit::Off);
    let seconds = log.last().unwrap().0;
    assert!(
        (9.8..=10.1).contains(&seconds),
        "10 MiB at 1 MiB/s, then the rest at once: {seconds} s"
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(throttle.limit(), Limit::PerSecond(MIB as u64));
    let log = send(&throttle, 1, 2 * MIB).await;
    assert!(log.last().unwrap().0 >= 1.8, "limited again at 12:01");
}

#[tokio::test(start_paused = true)]
async fn an_unlimited_throttle_passes_everything_at_once() {
    for throttle in [
        Throttle::default(),
        throttle("off", 0),
        throttle("01:00,off 02:00,off", 0),
    ] {
        assert!(!throttle.is_limited());
        let log = send(&throttle, 2, 20 * MIB).await;
        assert_eq!(log.last().unwrap().0, 0.0);
        assert_eq!(throttle.piece(), usize::MAX);
    }
}

#[test]
fn pieces_are_slices_of_the_chunk() {
    let bytes = Bytes::from((0..=255u8).cycle().take(10_000).collect::<Vec<_>>());
    let pieces = cut(bytes.clone(), 4096);
    assert_eq!(
        pieces.iter().map(Bytes::len).collect::<Vec<_>>(),
        [4096, 4096, 1808]
    );
    assert_eq!(pieces.concat(), bytes.to_vec());
    assert!(cut(Bytes::new(), 10).is_empty());
}
