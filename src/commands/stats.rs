//! `stats`: the destination's holdings and their monthly bill, from the ledger alone.

use std::io::Write;

use glacier_backup::config::Config;
use glacier_backup::costs::{dollars, PriceClass, PRICES_AS_OF};
use glacier_backup::ledger::Ledger;
use glacier_backup::stats::Stats;
use glacier_backup::{display_size, shown};

use super::{Fatal, Outcome};

/// Prints the stats of `config`'s destination; nothing is contacted.
pub fn stats(config: &Config, json: bool) -> Result<Outcome, Fatal> {
    let path = super::ledger_for(config)?;
    let archiver = config
        .open_archiver()
        .map_err(|e| Fatal::Config(e.into()))?;
    let ledger = Ledger::reader(&path)?;
    let class = archiver.storage_class();
    let report = glacier_backup::stats::stats(
        &ledger,
        class.as_deref(),
        &config.prices,
        glacier_backup::clock::now(),
    )?;
    let mut out = std::io::stdout().lock();
    let written = match json {
        true => serde_json::to_writer_pretty(&mut out, &report)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out)),
        false => write_text(&mut out, &archiver.target(), &report),
    };
    match written {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Fatal::Failure(e.into())),
        _ => Ok(Outcome::Success),
    }
}

fn write_text(out: &mut dyn Write, target: &str, s: &Stats) -> std::io::Result<()> {
    let class = s.storage_class.as_deref();
    writeln!(
        out,
        "{target}{}: {} archive(s), {} ({} bytes)",
        class.map(|c| format!(" ({c})")).unwrap_or_default(),
        s.archives,
        display_size(s.bytes),
        s.bytes
    )?;
    if let (Some(monthly), Some(class)) = (s.monthly_usd, class.and_then(PriceClass::of)) {
        writeln!(
            out,
            "storage: about {} a month ({} list prices of {PRICES_AS_OF}; see [prices])",
            dollars(monthly),
            class.price_source()
        )?;
    }
    if let (Some(days), Some(fee)) = (s.minimum_days, s.early_deletion_usd) {
        writeln!(
            out,
            "inside their {days}-day minimum: {} archive(s), {}; deleting them now would cost {}",
            s.young_archives,
            display_size(s.young_bytes),
            dollars(fee)
        )?;
    }
    if !s.largest_paths.is_empty() {
        writeln!(out, "largest paths:")?;
        for path in &s.largest_paths {
            writeln!(
                out,
                "  {:>10}  {:>5} archive(s)  {}",
                display_size(path.bytes),
                path.archives,
                shown(&path.path)
            )?;
        }
    }
    if let (Some(oldest), Some(newest)) = (&s.oldest, &s.newest) {
        writeln!(out, "oldest upload {oldest}, newest {newest}")?;
    }
    writeln!(
        out,
        "pending: {} retrieval(s), {} inventory, {} interrupted upload(s)",
        s.pending_retrievals,
        if s.pending_inventory { "an" } else { "no" },
        s.pending_uploads
    )?;
    writeln!(
        out,
        "moved to another destination: {} ({} deleted here); pruned: {}",
        s.moved, s.moved_and_deleted, s.pruned
    )
}
