//! restic's retention rules, applied to one path's uploads: which a policy keeps, and why.

use time::OffsetDateTime;

use crate::config::Retention;

/// A rule that keeps an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// One of the newest `keep_last`.
    Last,
    /// The newest of its hour, among the newest `keep_hourly` hours with an upload.
    Hourly,
    /// ... of its day.
    Daily,
    /// ... of its ISO week.
    Weekly,
    /// ... of its month.
    Monthly,
    /// ... of its year.
    Yearly,
    /// Within `keep_within` of the path's newest upload.
    Within,
}

impl Rule {
    /// The config key that states the rule.
    pub fn key(self) -> &'static str {
        match self {
            Rule::Last => "keep_last",
            Rule::Hourly => "keep_hourly",
            Rule::Daily => "keep_daily",
            Rule::Weekly => "keep_weekly",
            Rule::Monthly => "keep_monthly",
            Rule::Yearly => "keep_yearly",
            Rule::Within => "keep_within",
        }
    }
}

/// For each of `times` (one path's uploads, newest first), the rules of `policy` that keep it
/// (none: the policy lets it go). As restic's `forget`: each bucket rule walks the uploads
/// from the newest, keeping an upload whenever its bucket (hour, day, ISO week, month, year,
/// in UTC) differs from the last one it kept, until it has kept its count.
pub fn kept_by(policy: &Retention, times: &[OffsetDateTime]) -> Vec<Vec<Rule>> {
    let mut kept = vec![Vec::new(); times.len()];
    let buckets: [(Rule, Option<u64>, Bucket); 6] = [
        (Rule::Last, policy.last, |_| 0),
        (Rule::Hourly, policy.hourly, |t| {
            day(t) * 100 + i64::from(t.hour())
        }),
        (Rule::Daily, policy.daily, day),
        (Rule::Weekly, policy.weekly, |t| {
            let (year, week, _) = t.to_iso_week_date();
            i64::from(year) * 100 + i64::from(week)
        }),
        (Rule::Monthly, policy.monthly, |t| {
            i64::from(t.year()) * 100 + i64::from(u8::from(t.month()))
        }),
        (Rule::Yearly, policy.yearly, |t| i64::from(t.year())),
    ];
    for (rule, count, bucket) in buckets {
        let Some(mut left) = count else { continue };
        let mut last = None;
        for (n, &time) in times.iter().enumerate() {
            if left == 0 {
                break;
            }
            // keep_last counts uploads, not buckets: every upload is a bucket of its own.
            let this = match rule {
                Rule::Last => n as i64,
                _ => bucket(time),
            };
            if last != Some(this) {
                kept[n].push(rule);
                last = Some(this);
                left -= 1;
            }
        }
    }
    if let (Some(span), Some(&newest)) = (policy.within, times.first()) {
        let since = span.before(newest);
        for (n, &time) in times.iter().enumerate() {
            if time > since {
                kept[n].push(Rule::Within);
            }
        }
    }
    kept
}

/// The bucket an upload's time falls in, for one rule.
type Bucket = fn(OffsetDateTime) -> i64;

fn day(t: OffsetDateTime) -> i64 {
    i64::from(t.year()) * 10_000 + i64::from(u8::from(t.month())) * 100 + i64::from(t.day())
}
