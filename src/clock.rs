//! The time the run takes as now: the system's, or `GLACIER_BACKUP_NOW` (seconds since the
//! epoch), which tests set to check behaviour that depends on dates without waiting for them.
//! A backup records its uploads' times by it too, so a test plants a ledger's history by
//! running backups at the times it chooses.

use time::OffsetDateTime;

/// The variable that sets the clock.
pub const NOW_VARIABLE: &str = "GLACIER_BACKUP_NOW";

/// Now, as the run should take it.
pub fn now() -> OffsetDateTime {
    std::env::var(NOW_VARIABLE)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or_else(OffsetDateTime::now_utc)
}
