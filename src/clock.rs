//! The time the run takes as now: the system's, or `GLACIER_BACKUP_NOW` (seconds since the
//! epoch), which tests set to check behaviour that depends on dates without waiting for them.
//! A backup records its uploads' times by it too, so a test plants a ledger's history by
//! running backups at the times it chooses.

use std::sync::Arc;

use chrono::Timelike;

use glacier_backup_archiver::bandwidth::{DayClock, Schedule, Throttle, DAY_SECONDS};
use time::OffsetDateTime;

/// The variable that sets the clock.
pub const NOW_VARIABLE: &str = "GLACIER_BACKUP_NOW";

/// Now, as the run should take it.
pub fn now() -> OffsetDateTime {
    set_now().unwrap_or_else(OffsetDateTime::now_utc)
}

fn set_now() -> Option<OffsetDateTime> {
    std::env::var(NOW_VARIABLE)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
}

/// A bandwidth throttle following `schedule` by the local time of day.
pub fn throttle(schedule: Schedule) -> Throttle {
    Throttle::new(schedule, day_clock())
}

/// Seconds after local midnight, for bandwidth timetables: the system's local time or, when
/// `GLACIER_BACKUP_NOW` sets the clock, that moment in local time advancing from when this was
/// called (a set clock does not move, and a timetable must).
pub fn day_clock() -> DayClock {
    match set_now() {
        Some(start) => {
            let start = chrono::DateTime::from_timestamp(start.unix_timestamp(), 0)
                .unwrap_or_default()
                .with_timezone(&chrono::Local)
                .num_seconds_from_midnight();
            let began = tokio::time::Instant::now();
            Arc::new(move || {
                let elapsed = began.elapsed().as_secs() % u64::from(DAY_SECONDS);
                (start + elapsed as u32) % DAY_SECONDS
            })
        }
        None => Arc::new(|| chrono::Local::now().num_seconds_from_midnight()),
    }
}
