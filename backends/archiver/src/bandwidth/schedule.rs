//! What a bandwidth setting says: one rate all day, or a timetable of `HH:MM,RATE` entries
//! (rclone's form), each rate holding from its time until the next entry's, round the clock.

use std::fmt;
use std::str::FromStr;

/// Seconds in a day, the timetable's period.
pub const DAY_SECONDS: u32 = 24 * 60 * 60;

/// The lowest rate accepted: below it a request in flight could send nothing for long enough
/// that the server or the client's stall detection gives up on it.
pub const MIN_RATE: u64 = 1024;

/// How fast one direction may go while an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// No limit.
    Off,
    /// At most this many bytes per second.
    PerSecond(u64),
}

/// One timetable entry: from `start` (seconds after local midnight) the limit is `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    start: u32,
    limit: Limit,
}

/// A bandwidth setting, parsed: `4M`, `off`, or `08:00,512k 23:00,off`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Sorted by start, never empty; a single rate is one entry at midnight.
    entries: Vec<Entry>,
    /// Whether it was written as a timetable (for display).
    timetable: bool,
}

/// A setting that is neither a rate nor a timetable; the message says what to write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(String);

const FORMS: &str = "write bytes per second with an optional k, M or G suffix (1024-based), \
                     e.g. 4M or 512k, or off, or a timetable such as \"08:00,512k 23:00,off\"";

impl Schedule {
    /// The same limit all day.
    pub fn fixed(limit: Limit) -> Self {
        Schedule {
            entries: vec![Entry { start: 0, limit }],
            timetable: false,
        }
    }

    /// Whether it never limits anything (`off`, or a timetable of only `off`).
    pub fn is_off(&self) -> bool {
        self.entries.iter().all(|e| e.limit == Limit::Off)
    }

    /// The slowest rate any entry sets (`None` when every entry is `off`).
    pub fn slowest(&self) -> Option<u64> {
        self.entries
            .iter()
            .filter_map(|e| match e.limit {
                Limit::Off => None,
                Limit::PerSecond(rate) => Some(rate),
            })
            .min()
    }

    /// The limit at `second` after local midnight: the last entry that started by then, or the
    /// day's last entry still holding from yesterday.
    pub fn limit_at(&self, second: u32) -> Limit {
        let second = second % DAY_SECONDS;
        self.entries
            .iter()
            .rev()
            .find(|e| e.start <= second)
            .or(self.entries.last())
            .expect("a schedule has an entry")
            .limit
    }

    /// Seconds from `second` after local midnight until the next entry starts (`None` for a
    /// single entry, which never changes).
    pub fn seconds_until_change(&self, second: u32) -> Option<u32> {
        if self.entries.len() < 2 {
            return None;
        }
        let second = second % DAY_SECONDS;
        let next = self
            .entries
            .iter()
            .find(|e| e.start > second)
            .map_or(self.entries[0].start + DAY_SECONDS, |e| e.start);
        Some(next - second)
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<Self, ScheduleError> {
        let tokens: Vec<&str> = text.split_whitespace().collect();
        match tokens.as_slice() {
            [] => Err(ScheduleError(format!("is empty; {FORMS}"))),
            [single] if !single.contains(',') => Ok(Schedule::fixed(parse_limit(single)?)),
            _ => parse_timetable(&tokens),
        }
    }
}

fn parse_timetable(tokens: &[&str]) -> Result<Schedule, ScheduleError> {
    let mut entries = Vec::with_capacity(tokens.len());
    for token in tokens {
        let Some((time, rate)) = token.split_once(',') else {
            return Err(ScheduleError(format!(
                "{token:?} is not a timetable entry; write each as HH:MM,RATE (e.g. \
                 08:00,512k), separated by spaces"
            )));
        };
        let start = parse_time(time).ok_or_else(|| {
            ScheduleError(format!(
                "{time:?} in {token:?} is not a time of day; write HH:MM from 00:00 to 23:59"
            ))
        })?;
        entries.push(Entry {
            start,
            limit: parse_limit(rate)?,
        });
    }
    entries.sort_by_key(|e| e.start);
    if let Some(pair) = entries.windows(2).find(|w| w[0].start == w[1].start) {
        return Err(ScheduleError(format!(
            "the timetable names {} twice; give each time one rate",
            clock_time(pair[0].start)
        )));
    }
    Ok(Schedule {
        entries,
        timetable: true,
    })
}

fn parse_time(time: &str) -> Option<u32> {
    let (hours, minutes) = time.split_once(':')?;
    let digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(hours) || !digits(minutes) {
        return None;
    }
    let (hours, minutes): (u32, u32) = (hours.parse().ok()?, minutes.parse().ok()?);
    (hours < 24 && minutes < 60).then_some(hours * 3600 + minutes * 60)
}

fn parse_limit(rate: &str) -> Result<Limit, ScheduleError> {
    if rate.eq_ignore_ascii_case("off") {
        return Ok(Limit::Off);
    }
    let bad = || ScheduleError(format!("{rate:?} is not a rate; {FORMS}"));
    let lower = rate.to_ascii_lowercase();
    let trimmed = lower.strip_suffix("/s").unwrap_or(&lower);
    let trimmed = trimmed
        .strip_suffix("ib")
        .or_else(|| trimmed.strip_suffix('b'))
        .unwrap_or(trimmed);
    let (number, unit) = match trimmed.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&trimmed[..i], Some(c)),
        _ => (trimmed, None),
    };
    let multiple: u64 = match unit {
        None => 1,
        Some('k') => 1 << 10,
        Some('m') => 1 << 20,
        Some('g') => 1 << 30,
        Some(_) => return Err(bad()),
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    if !value.is_finite() || value <= 0.0 {
        return Err(bad());
    }
    let bytes = (value * multiple as f64).round();
    if bytes < MIN_RATE as f64 {
        return Err(ScheduleError(format!(
            "{rate:?} is below the lowest rate, 1k (1024 bytes per second): a slower request \
             would look stalled to the server; use at least 1k, or off"
        )));
    }
    if bytes > u64::MAX as f64 / 2.0 {
        return Err(bad());
    }
    Ok(Limit::PerSecond(bytes as u64))
}

fn clock_time(second: u32) -> String {
    format!("{:02}:{:02}", second / 3600, second / 60 % 60)
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Off => f.write_str("off"),
            Limit::PerSecond(bytes) => {
                let units = [(1u64 << 30, "G"), (1 << 20, "M"), (1 << 10, "k")];
                match units.iter().find(|(size, _)| bytes % size == 0) {
                    Some((size, unit)) => write!(f, "{}{unit}", bytes / size),
                    None => write!(f, "{bytes}"),
                }
            }
        }
    }
}

impl fmt::Display for Schedule {
    /// The setting in the form it is written, normalised (sorted, canonical units).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.timetable {
            return self.entries[0].limit.fmt(f);
        }
        let entries: Vec<String> = self
            .entries
            .iter()
            .map(|e| format!("{},{}", clock_time(e.start), e.limit))
            .collect();
        f.write_str(&entries.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(text: &str) -> Limit {
        text.parse::<Schedule>().unwrap().limit_at(0)
    }

    #[test]
    fn rates_take_1024_based_suffixes_in_either_case() {
        assert_eq!(rate("4M"), Limit::PerSecond(4 << 20));
        assert_eq!(rate("4m"), Limit::PerSecond(4 << 20));
        assert_eq!(rate("512k"), Limit::PerSecond(512 << 10));
        assert_eq!(rate("512KiB"), Limit::PerSecond(512 << 10));
        assert_eq!(rate("2MB/s"), Limit::PerSecond(2 << 20));
        assert_eq!(rate("1G"), Limit::PerSecond(1 << 30));
        assert_eq!(rate("1.5M"), Limit::PerSecond(3 << 19));
        assert_eq!(rate("100000"), Limit::PerSecond(100_000));
        assert_eq!(rate("OFF"), Limit::Off);
    }

    #[test]
    fn bad_rates_say_what_to_write() {
        for bad in ["", "fast", "4X", "-1M", "0", "M", "nanM", "1e400"] {
            let message = bad.parse::<Schedule>().unwrap_err().to_string();
            assert!(message.contains("e.g. 4M"), "{bad:?}: {message}");
        }
        let message = "100".parse::<Schedule>().unwrap_err().to_string();
        assert!(message.contains("at least 1k"), "{message}");
    }

    #[test]
    fn a_timetable_holds_each_rate_until_the_next_entry_round_the_clock() {
        let schedule: Schedule = "23:00,off 08:00,512k 12:30,4M".parse().unwrap();
        let at = |h: u32, m: u32| schedule.limit_at(h * 3600 + m * 60);
        assert_eq!(
            at(0, 0),
            Limit::Off,
            "yesterday's last entry holds past midnight"
        );
        assert_eq!(at(7, 59), Limit::Off);
        assert_eq!(at(8, 0), Limit::PerSecond(512 << 10));
        assert_eq!(at(12, 29), Limit::PerSecond(512 << 10));
        assert_eq!(at(12, 30), Limit::PerSecond(4 << 20));
        assert_eq!(at(23, 0), Limit::Off);
        assert_eq!(schedule.seconds_until_change(7 * 3600 + 59 * 60), Some(60));
        assert_eq!(schedule.seconds_until_change(23 * 3600), Some(9 * 3600));
        assert_eq!(schedule.to_string(), "08:00,512k 12:30,4M 23:00,off");
        assert_eq!(schedule.slowest(), Some(512 << 10));
        assert_eq!("off".parse::<Schedule>().unwrap().slowest(), None);
        assert_eq!(
            "4M".parse::<Schedule>().unwrap().seconds_until_change(5),
            None
        );
    }

    #[test]
    fn bad_timetables_name_the_entry() {
        let cases = [
            ("08:00,512k 23:00", "\"23:00\" is not a timetable entry"),
            (
                "8:00,512k",
                "\"8:00\" in \"8:00,512k\" is not a time of day",
            ),
            ("24:00,1M", "is not a time of day"),
            ("08:60,1M", "is not a time of day"),
            ("08:00,1M 08:00,off", "names 08:00 twice"),
            ("08:00,fast", "\"fast\" is not a rate"),
        ];
        for (text, expected) in cases {
            let message = text.parse::<Schedule>().unwrap_err().to_string();
            assert!(message.contains(expected), "{text:?}: {message}");
        }
    }
}
