//! What a migration will move, and what it costs: shown (and, for a dry run, all that is done)
//! before anything is retrieved.

use std::collections::HashMap;

use glacier_backup_archiver::{Archiver, RestoreTier};

use super::moved_for;
use crate::costs::{PriceClass, Prices};
use crate::ledger::{Moved, UploadRecord};
use crate::restore::expected_wait;

/// What a run will move, and what it costs.
#[derive(Debug)]
pub struct Plan<'a> {
    /// The rows whose archives will be copied.
    pub to_move: Vec<&'a UploadRecord>,
    /// Rows an earlier run moved already.
    pub already: usize,
    /// Rows without the size and tree hash a copy is checked against (the Python tool's).
    pub unverifiable: usize,
    /// Bytes to copy.
    pub bytes: u64,
    /// `source.target()`.
    pub from: String,
    /// `destination.target()`.
    pub to: String,
    /// The source's retrieval tier.
    pub tier: RestoreTier,
    /// How long the source's retrievals usually take.
    pub expected_wait: &'static str,
    /// Each source archive is deleted once its copy is verified.
    pub delete_source: bool,
    /// The destination's storage class, where storage is billed.
    pub class: String,
    /// `None` where neither side is billed (a local directory, a warm class).
    pub cost: Option<Cost>,
}

/// What a plan is made of besides its rows.
#[derive(Debug, Clone, Copy)]
pub struct PlanOf<'a> {
    /// The source's archives as the source's ledger marks them moved.
    pub moved: &'a HashMap<String, Moved>,
    /// `[prices]`.
    pub prices: &'a Prices,
    /// The source's retrieval tier.
    pub tier: RestoreTier,
    /// `--delete-source`.
    pub delete_source: bool,
    /// Where the archives are.
    pub source: &'a dyn Archiver,
    /// Where they go.
    pub destination: &'a dyn Archiver,
}

impl<'a> Plan<'a> {
    /// The plan for `rows`: which to copy (not moved already, with a size and tree hash to
    /// check against), how many bytes and requests, and their cost.
    pub fn of(rows: &'a [UploadRecord], of: PlanOf<'_>) -> Self {
        let destination = of.destination;
        let mut to_move = Vec::new();
        let (mut already, mut unverifiable, mut bytes) = (0, 0, 0);
        // Upload requests in the destination: one per single-part archive, parts + 2 otherwise.
        let mut requests = 0;
        for row in rows {
            if moved_for(of.moved, row, destination).is_some() {
                already += 1;
                continue;
            }
            let Some(size) = row.size.filter(|_| row.tree_hash.is_some()) else {
                unverifiable += 1;
                continue;
            };
            let parts = size.div_ceil(destination.part_size(size).max(1)).max(1);
            requests += if parts == 1 { 1 } else { parts + 2 };
            bytes += size;
            to_move.push(row);
        }
        let cost = Cost::of(&to_move, bytes, requests, &of);
        Plan {
            to_move,
            already,
            unverifiable,
            bytes,
            from: of.source.target(),
            to: destination.target(),
            tier: of.tier,
            expected_wait: expected_wait(of.source, of.tier),
            delete_source: of.delete_source,
            class: destination.storage_class().unwrap_or_default(),
            cost,
        }
    }
}

/// A migration's estimated cost, in US dollars.
#[derive(Debug, Clone, PartialEq)]
pub struct Cost {
    /// Retrieving the source's archives.
    pub retrieval: f64,
    /// The retrieval requests.
    pub retrieval_requests: f64,
    /// Data transfer out of the source.
    pub transfer: f64,
    /// The destination's upload requests.
    pub upload_requests: f64,
    /// Storing the copies, per month.
    pub monthly: f64,
    /// With `--delete-source`: what deleting archives younger than the minimum costs.
    pub early_deletion: Option<f64>,
}

impl Cost {
    /// The estimate for moving `to_move` (`bytes` in all, `requests` upload requests); `None`
    /// where neither side is billed.
    fn of(to_move: &[&UploadRecord], bytes: u64, requests: u64, of: &PlanOf<'_>) -> Option<Self> {
        let prices = of.prices;
        let class_of = |archiver: &dyn Archiver| {
            archiver
                .storage_class()
                .and_then(|class| PriceClass::of(&class))
        };
        let source_class = class_of(of.source);
        let count = to_move.len() as u64;
        let retrieval =
            source_class.and_then(|class| prices.retrieval(class, of.tier, count, bytes));
        let storage = class_of(of.destination).map(|class| {
            let sizes: Vec<u64> = to_move.iter().filter_map(|r| r.size).collect();
            prices.storage(class, &sizes, requests)
        });
        if retrieval.is_none() && storage.is_none() {
            return None;
        }
        let early_deletion = of.delete_source.then(|| {
            source_class.map_or(0.0, |class| prices.early_deletion(class, &ages(to_move)))
        });
        Some(Cost {
            retrieval: retrieval.map_or(0.0, |r| r.retrieval),
            retrieval_requests: retrieval.map_or(0.0, |r| r.requests),
            transfer: retrieval.map_or(0.0, |r| r.transfer),
            upload_requests: storage.map_or(0.0, |s| s.requests),
            monthly: storage.map_or(0.0, |s| s.monthly),
            early_deletion,
        })
    }

    /// What the move costs once, storage aside.
    pub fn once(&self) -> f64 {
        self.retrieval
            + self.retrieval_requests
            + self.transfer
            + self.upload_requests
            + self.early_deletion.unwrap_or(0.0)
    }
}

/// Each archive's size and age in days, for the early-deletion fee.
fn ages(to_move: &[&UploadRecord]) -> Vec<(u64, f64)> {
    let now = time::OffsetDateTime::now_utc();
    to_move
        .iter()
        .map(|row| {
            let age = row
                .stored_at()
                .map_or(0.0, |at| (now - at).as_seconds_f64() / 86_400.0);
            (row.size.unwrap_or(0), age)
        })
        .collect()
}
