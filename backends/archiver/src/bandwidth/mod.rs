//! Bandwidth limits: one token bucket per direction, shared by every request in flight (every
//! part, every candidate, retries too), its rate set by a [`Schedule`] as the clock passes each
//! entry's time.
//!
//! Backends apply a [`Throttle`] where bytes meet their transport (the HTTP body, the file
//! written or read), so whatever the engine or a client library sends is counted. Bytes are let
//! through in small pieces (a sixteenth of a second's worth), so the line is never flooded by a
//! whole part at once and progress advances smoothly at the limited rate.

mod schedule;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_speed_limit::clock::Clock;
use async_speed_limit::Limiter;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;

pub use schedule::{Limit, Schedule, ScheduleError, DAY_SECONDS, MIN_RATE};

/// Seconds after local midnight, now: what a timetable is read against.
pub type DayClock = Arc<dyn Fn() -> u32 + Send + Sync>;

/// The most requests a run has in flight at once, all sharing one bucket: the bound
/// [`Throttle::longest_wait`] assumes (a backend sends at most 64 parts at once, and the
/// engine's small archives share that budget; indexes and listings come on top).
const MOST_STREAMS: u64 = 128;

/// The longest a rate is trusted before the time of day is read again, so a clock set forward
/// or back (or a machine resumed from sleep) reaches the right entry within a minute.
const RECHECK: Duration = Duration::from_secs(60);

/// The limits of both directions. Clones share their buckets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bandwidth {
    /// What is sent: archive bytes and every other request body.
    pub upload: Throttle,
    /// What is received: downloads and every other response body.
    pub download: Throttle,
}

/// One direction's limit: unlimited, or a bucket whose rate follows a schedule. Cheap to clone;
/// clones share the bucket.
#[derive(Clone, Default)]
pub struct Throttle(Option<Arc<Limited>>);

struct Limited {
    schedule: Schedule,
    limiter: Limiter<TokioClock>,
    day: DayClock,
    current: Mutex<Current>,
}

/// The limit in force and when to read the time of day again.
struct Current {
    limit: Limit,
    recheck_at: tokio::time::Instant,
}

impl Throttle {
    /// A throttle following `schedule`, read against `day`. A schedule that is always `off`
    /// gives the unlimited throttle.
    pub fn new(schedule: Schedule, day: DayClock) -> Self {
        if schedule.is_off() {
            return Throttle(None);
        }
        let limiter = Limiter::<TokioClock>::new(f64::INFINITY);
        let limited = Limited {
            schedule,
            limiter,
            day,
            current: Mutex::new(Current {
                limit: Limit::Off,
                recheck_at: tokio::time::Instant::now(),
            }),
        };
        limited.refresh();
        Throttle(Some(Arc::new(limited)))
    }

    /// A throttle at `bytes` a second all day (programs embedding a backend, tests).
    pub fn per_second(bytes: u64) -> Self {
        Throttle::new(Schedule::fixed(Limit::PerSecond(bytes)), Arc::new(|| 0))
    }

    /// Whether any time of day has a limit.
    pub fn is_limited(&self) -> bool {
        self.0.is_some()
    }

    /// Bytes let through while a limit was in force, since this throttle was made.
    pub fn bytes_through(&self) -> u64 {
        self.0
            .as_ref()
            .map_or(0, |l| l.limiter.total_bytes_consumed() as u64)
    }

    /// The limit in force now.
    pub fn limit(&self) -> Limit {
        self.0.as_ref().map_or(Limit::Off, |l| l.refresh())
    }

    /// The slowest rate the schedule ever sets (`None`: never limited).
    pub fn slowest(&self) -> Option<u64> {
        self.0.as_ref().and_then(|l| l.schedule.slowest())
    }

    /// The longest `bytes` can take to pass, sharing the slowest rate with every other request
    /// a run can have in flight. Timeouts that count the time a request is being sent extend by
    /// this, so a limited request is never given up on for being paced.
    pub fn longest_wait(&self, bytes: u64) -> Duration {
        match self.slowest() {
            None => Duration::ZERO,
            Some(rate) => Duration::from_secs_f64(bytes as f64 * MOST_STREAMS as f64 / rate as f64),
        }
    }

    /// Waits until `bytes` more may pass.
    pub async fn take(&self, bytes: usize) {
        let Some(limited) = &self.0 else { return };
        if limited.refresh() != Limit::Off && bytes > 0 {
            limited.limiter.consume(bytes).await;
        }
    }

    /// The size of the pieces bytes are let through in: a sixteenth of a second at the rate in
    /// force, between 1 KiB and 1 MiB, or everything at once when unlimited.
    pub fn piece(&self) -> usize {
        match self.limit() {
            Limit::Off => usize::MAX,
            Limit::PerSecond(rate) => (rate / 16).clamp(1 << 10, 1 << 20) as usize,
        }
    }

    /// `stream`, its chunks cut into pieces that each wait their turn. An unlimited throttle
    /// returns the stream untouched.
    pub fn limit_stream<E: Send + 'static>(
        &self,
        stream: BoxStream<'static, Result<Bytes, E>>,
    ) -> BoxStream<'static, Result<Bytes, E>> {
        if self.0.is_none() {
            return stream;
        }
        let cutter = self.clone();
        let waiter = self.clone();
        stream
            .flat_map(move |chunk| {
                let pieces = match chunk {
                    Ok(bytes) => cut(bytes, cutter.piece()).into_iter().map(Ok).collect(),
                    Err(e) => vec![Err(e)],
                };
                futures::stream::iter(pieces)
            })
            .then(move |piece| {
                let throttle = waiter.clone();
                async move {
                    if let Ok(bytes) = &piece {
                        throttle.take(bytes.len()).await;
                    }
                    piece
                }
            })
            .boxed()
    }
}

/// `bytes` in pieces of at most `piece` bytes (no copies: each is a slice of `bytes`).
pub fn cut(mut bytes: Bytes, piece: usize) -> Vec<Bytes> {
    let mut pieces = Vec::with_capacity(bytes.len().div_ceil(piece.max(1)).max(1));
    while bytes.len() > piece {
        pieces.push(bytes.split_to(piece));
    }
    if !bytes.is_empty() {
        pieces.push(bytes);
    }
    pieces
}

impl Limited {
    /// The limit in force, read again from the schedule when an entry's time has passed (or
    /// [`RECHECK`] has), and handed to the bucket when it changed. (A new throttle starts
    /// unlimited and due for a reading.)
    fn refresh(&self) -> Limit {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let now = tokio::time::Instant::now();
        if now >= current.recheck_at {
            let second = (self.day)();
            let limit = self.schedule.limit_at(second);
            if limit != current.limit {
                self.limiter.set_speed_limit(match limit {
                    Limit::Off => f64::INFINITY,
                    Limit::PerSecond(rate) => rate as f64,
                });
                current.limit = limit;
            }
            let until_change = self
                .schedule
                .seconds_until_change(second)
                .map_or(RECHECK, |s| Duration::from_secs(s.into()).min(RECHECK));
            current.recheck_at = now + until_change;
        }
        current.limit
    }
}

impl PartialEq for Throttle {
    /// Same schedule (a setting compared, not a bucket).
    fn eq(&self, other: &Self) -> bool {
        self.0.as_ref().map(|l| &l.schedule) == other.0.as_ref().map(|l| &l.schedule)
    }
}

impl Eq for Throttle {}

impl std::fmt::Display for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            None => f.write_str("off"),
            Some(limited) => limited.schedule.fmt(f),
        }
    }
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Throttle({self})")
    }
}

/// The bucket's clock: tokio's, so the waits are tokio timers (no thread of their own) and a
/// test with tokio's paused time runs an hour of limited transfer in no time.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    type Instant = tokio::time::Instant;
    type Delay = std::pin::Pin<Box<tokio::time::Sleep>>;

    fn now(&self) -> Self::Instant {
        tokio::time::Instant::now()
    }

    fn sleep(&self, dur: Duration) -> Self::Delay {
        Box::pin(tokio::time::sleep(dur))
    }
}

#[cfg(test)]
mod tests;
