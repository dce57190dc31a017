//! `stats`: what a destination holds and what keeping it costs, from the ledger alone.

use std::collections::HashMap;
use std::path::PathBuf;

use time::OffsetDateTime;

use crate::costs::{PriceClass, Prices};
use crate::ledger::{Ledger, LedgerError};

/// How many paths [`Stats::largest_paths`] names.
pub const LARGEST_PATHS: usize = 10;

/// What a destination holds, as its ledger tells it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Stats {
    /// The storage class archives are kept in (`vault`, `DEEP_ARCHIVE`, `Cool`...), `None`
    /// for a local directory.
    pub storage_class: Option<String>,
    /// Archives stored here now: not pruned, not moved away and deleted here.
    pub archives: u64,
    /// Their bytes.
    pub bytes: u64,
    /// What storing them costs a month, where the class is priced.
    pub monthly_usd: Option<f64>,
    /// Archives still inside the class's minimum storage duration.
    pub young_archives: u64,
    /// Their bytes.
    pub young_bytes: u64,
    /// What deleting all of them now would be charged, where the class is priced.
    pub early_deletion_usd: Option<f64>,
    /// The class's minimum storage duration, in days, where the class is priced.
    pub minimum_days: Option<u32>,
    /// The paths holding the most bytes, largest first (at most [`LARGEST_PATHS`]).
    pub largest_paths: Vec<PathStats>,
    /// The oldest upload's time.
    pub oldest: Option<String>,
    /// The newest upload's time.
    pub newest: Option<String>,
    /// Archive retrievals asked for and not yet read.
    pub pending_retrievals: u64,
    /// Whether a vault inventory job is under way.
    pub pending_inventory: bool,
    /// Uploads interrupted and waiting to be continued.
    pub pending_uploads: u64,
    /// Archives copied to another destination (`migrate`), and of those, deleted here.
    pub moved: u64,
    /// Of the moved archives, those deleted here.
    pub moved_and_deleted: u64,
    /// Archives prune deleted (or is deleting).
    pub pruned: u64,
}

/// One path's share.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PathStats {
    /// The source path.
    pub path: PathBuf,
    /// Its archives stored here.
    pub archives: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// The figures of `ledger`'s destination, stored in `storage_class` and priced by `prices`,
/// with minimum durations counted to `now`.
pub fn stats(
    ledger: &Ledger,
    storage_class: Option<&str>,
    prices: &Prices,
    now: OffsetDateTime,
) -> Result<Stats, LedgerError> {
    let class = storage_class.and_then(PriceClass::of);
    let minimum = class.map(|c| time::Duration::days(i64::from(c.minimum_days())));
    let moved = ledger.moved()?;
    let pruned = ledger.pruned()?;
    let mut report = Stats {
        storage_class: storage_class.map(str::to_owned),
        minimum_days: class.map(PriceClass::minimum_days),
        moved: moved.len() as u64,
        moved_and_deleted: moved
            .values()
            .filter(|m| m.source_deleted_at.is_some())
            .count() as u64,
        pruned: pruned.len() as u64,
        ..Stats::default()
    };
    let mut sizes = Vec::new();
    let mut young = Vec::new();
    let mut by_path: HashMap<PathBuf, (u64, u64)> = HashMap::new();
    let (mut oldest, mut newest) = (None::<OffsetDateTime>, None::<OffsetDateTime>);
    ledger.each_brief(&mut |brief| {
        let gone = moved
            .get(&brief.archive_id)
            .is_some_and(|m| m.source_deleted_at.is_some());
        if gone {
            return;
        }
        let size = brief.size.unwrap_or(0);
        report.archives += 1;
        report.bytes += size;
        sizes.push(size);
        let share = by_path.entry(brief.path).or_default();
        share.0 += 1;
        share.1 += size;
        if let Some(at) = brief.stored_at {
            oldest = Some(oldest.map_or(at, |o| o.min(at)));
            newest = Some(newest.map_or(at, |n| n.max(at)));
            if minimum.is_some_and(|minimum| now - at < minimum) {
                report.young_archives += 1;
                report.young_bytes += size;
                young.push((size, (now - at).as_seconds_f64() / 86_400.0));
            }
        }
    })?;
    if let Some(class) = class {
        report.monthly_usd = Some(prices.storage(class, &sizes, 0).monthly);
        report.early_deletion_usd = Some(prices.early_deletion(class, &young));
    }
    let mut paths: Vec<PathStats> = by_path
        .into_iter()
        .map(|(path, (archives, bytes))| PathStats {
            path,
            archives,
            bytes,
        })
        .collect();
    paths.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.path.cmp(&b.path)));
    paths.truncate(LARGEST_PATHS);
    report.largest_paths = paths;
    report.oldest = oldest.map(crate::display_time);
    report.newest = newest.map(crate::display_time);
    let (retrievals, inventory) = ledger.retrievals_pending()?;
    report.pending_retrievals = retrievals;
    report.pending_inventory = inventory;
    report.pending_uploads = ledger.pending_uploads_count()?;
    Ok(report)
}
