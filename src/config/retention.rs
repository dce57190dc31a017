//! Retention policies: `[retention]` for every path, each key overridable in a path section,
//! in restic's vocabulary (`keep_last`, `keep_hourly` ... `keep_yearly`, `keep_within`).

use std::fmt;

use glacier_backup_archiver::settings::{Section, SettingsError};
use time::OffsetDateTime;

/// The keys a retention policy has, in `[retention]` and in path sections.
pub const RETENTION_KEYS: &[&str] = &[
    "keep_last",
    "keep_hourly",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
    "keep_yearly",
    "keep_within",
];

/// What to keep of a path's uploads; an upload is kept when any rule keeps it. Every key unset
/// is no policy: nothing of the path is pruned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// The newest this many uploads.
    pub last: Option<u64>,
    /// The newest upload of each of the newest this many hours that have one (UTC).
    pub hourly: Option<u64>,
    /// ... days.
    pub daily: Option<u64>,
    /// ... ISO weeks.
    pub weekly: Option<u64>,
    /// ... months.
    pub monthly: Option<u64>,
    /// ... years.
    pub yearly: Option<u64>,
    /// Every upload within this span before the path's newest upload.
    pub within: Option<Span>,
}

impl Retention {
    /// Whether any rule keeps anything: without one, nothing is pruned. As restic, a policy of
    /// zeros is none (`keep_last = 0` alone never means "delete all but the latest").
    pub fn is_set(&self) -> bool {
        let counts = [
            self.last,
            self.hourly,
            self.daily,
            self.weekly,
            self.monthly,
            self.yearly,
        ];
        counts.iter().any(|n| n.is_some_and(|n| n > 0))
            || self.within.is_some_and(|span| span != Span::default())
    }

    /// Reads the keys `section` sets.
    pub fn read(section: &Section) -> Result<Self, SettingsError> {
        let within = match section.string("keep_within")? {
            Some(text) => Some(text.parse::<Span>().map_err(|why| {
                section.error(
                    Some("keep_within"),
                    format!("{why}; write it as restic does, such as 2y6m, 30d or 12h"),
                )
            })?),
            None => None,
        };
        Ok(Retention {
            last: section.u64("keep_last")?,
            hourly: section.u64("keep_hourly")?,
            daily: section.u64("keep_daily")?,
            weekly: section.u64("keep_weekly")?,
            monthly: section.u64("keep_monthly")?,
            yearly: section.u64("keep_yearly")?,
            within,
        })
    }

    /// This policy with every key `over` sets put in its place.
    pub fn overridden_by(self, over: Retention) -> Retention {
        Retention {
            last: over.last.or(self.last),
            hourly: over.hourly.or(self.hourly),
            daily: over.daily.or(self.daily),
            weekly: over.weekly.or(self.weekly),
            monthly: over.monthly.or(self.monthly),
            yearly: over.yearly.or(self.yearly),
            within: over.within.or(self.within),
        }
    }
}

/// A span of calendar time, as restic writes one: years, months, days and hours, such as
/// `2y6m` or `36h`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    /// Years.
    pub years: u32,
    /// Months.
    pub months: u32,
    /// Days.
    pub days: u32,
    /// Hours.
    pub hours: u32,
}

impl Span {
    /// The time this span before `at`, by the calendar (a month back from March 31 is the
    /// last day of February).
    pub fn before(&self, at: OffsetDateTime) -> OffsetDateTime {
        let months = i64::from(self.years) * 12 + i64::from(self.months);
        let total = i64::from(at.year()) * 12 + i64::from(u8::from(at.month())) - 1 - months;
        let (year, month) = (total.div_euclid(12), total.rem_euclid(12) + 1);
        let month = time::Month::try_from(month as u8).expect("1 to 12");
        let year = i32::try_from(year).unwrap_or(i32::MIN).max(-9999);
        let day = at.day().min(month.length(year));
        let date = time::Date::from_calendar_date(year, month, day).unwrap_or(time::Date::MIN);
        at.replace_date(date)
            - time::Duration::days(i64::from(self.days))
            - time::Duration::hours(i64::from(self.hours))
    }
}

impl std::str::FromStr for Span {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut span = Span::default();
        let mut number = String::new();
        let mut any = false;
        for c in text.trim().chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let n: u32 = number
                .parse()
                .map_err(|_| format!("{text:?}: a number must come before each unit"))?;
            match c {
                'y' => span.years += n,
                'm' => span.months += n,
                'd' => span.days += n,
                'h' => span.hours += n,
                other => return Err(format!("{text:?}: unknown unit {other:?} (y, m, d or h)")),
            }
            number.clear();
            any = true;
        }
        if !number.is_empty() || !any {
            return Err(format!("{text:?}: each number needs a unit (y, m, d or h)"));
        }
        Ok(span)
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ];
        let mut wrote = false;
        for (n, unit) in parts.into_iter().filter(|(n, _)| *n > 0) {
            write!(f, "{n}{unit}")?;
            wrote = true;
        }
        if !wrote {
            f.write_str("0h")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn spans_read_as_restic_writes_them_and_count_by_the_calendar() {
        let span: Span = "2y6m".parse().unwrap();
        assert_eq!(
            (span.years, span.months, span.days, span.hours),
            (2, 6, 0, 0)
        );
        assert_eq!(span.to_string(), "2y6m");
        assert_eq!("1y2m3d4h".parse::<Span>().unwrap().to_string(), "1y2m3d4h");
        for bad in ["", "5", "y", "3w", "2y5"] {
            assert!(bad.parse::<Span>().is_err(), "{bad:?}");
        }
        let at = datetime!(2026-03-31 12:00 UTC);
        assert_eq!(
            "1m".parse::<Span>().unwrap().before(at),
            datetime!(2026-02-28 12:00 UTC)
        );
        assert_eq!(
            "1y1d2h".parse::<Span>().unwrap().before(at),
            datetime!(2025-03-30 10:00 UTC)
        );
        assert_eq!(
            "14m".parse::<Span>().unwrap().before(at),
            datetime!(2025-01-31 12:00 UTC)
        );
    }
}
