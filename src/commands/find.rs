//! `find`: entries matching a glob across the ledger's catalogs.

use std::io::Write;

use glacier_backup::catalog::{find as search, Entry, EntryKind, FindError, Pattern, Versions};
use glacier_backup::config::Config;
use glacier_backup::ledger::{Ledger, UploadRecord};
use glacier_backup::{display_time, shown};

use super::{catalog_entry_json, print_json, with_path, Fatal, Outcome, Session};
use crate::cli::FindArgs;

pub fn find(config: &Config, args: &FindArgs, json: bool) -> Result<Outcome, Fatal> {
    let session = Session::open(config)?;
    // Read in place: catalogs can be large, and nothing is written.
    let ledger = Ledger::reader(&session.ledger_file)?;
    let pattern = Pattern::new(&args.pattern).map_err(|e| Fatal::Config(e.into()))?;
    let versions = match args.all_versions {
        true => Versions::All,
        false => Versions::Latest(args.at),
    };
    let mut matches = Vec::new();
    let mut out = std::io::stdout().lock();
    let mut write_error = None;
    let report = search(&ledger, &pattern, versions, &mut |upload, entry| {
        if json {
            matches.push(match_json(upload, &entry));
        } else if write_error.is_none() {
            if let Err(e) = writeln!(out, "{}", line(upload, &entry)) {
                write_error = Some(e);
            }
        }
    })
    .map_err(|e| match e {
        FindError::Ledger(e) => e.into(),
        FindError::Pattern { .. } => Fatal::Config(e.into()),
        e => Fatal::Failure(e.into()),
    })?;
    match write_error {
        Some(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            return Err(Fatal::Failure(e.into()))
        }
        _ => {}
    }
    drop(out);
    if !report.without_catalog.is_empty() {
        tracing::warn!(
            "{} upload(s) have no catalog (made by the Python tool or an earlier version), so \
             what they hold is unknown: {}",
            report.without_catalog.len(),
            report
                .without_catalog
                .iter()
                .map(|u| format!("{} ({})", shown(&u.path), u.archive_id))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for pruned in &report.pruned {
        tracing::warn!("not searched: {pruned}");
    }
    if json {
        let unknown: Vec<_> = report
            .without_catalog
            .iter()
            .map(|u| with_path(&u.path, serde_json::json!({ "archive_id": u.archive_id })))
            .collect();
        print_json(&serde_json::json!({
            "command": "find",
            "pattern": args.pattern,
            "searched": report.searched,
            "matches": matches,
            "without_catalog": unknown,
            "pruned": report.pruned.iter().map(|p| {
                with_path(&p.path, serde_json::json!({ "archive_id": p.archive_id }))
            }).collect::<Vec<_>>(),
        }))?;
    }
    Ok(Outcome::Success)
}

/// A match: its source path (a directory with `/`, a link with its target), then when the
/// upload holding it was made and its archive.
fn line(upload: &UploadRecord, entry: &Entry) -> String {
    let name = match (&entry.link, entry.kind) {
        (Some(target), _) => format!("{} -> {}", shown(&entry.path), shown(target)),
        (None, EntryKind::Directory) => format!("{}/", shown(&entry.path)),
        (None, _) => shown(&entry.path),
    };
    let uploaded = upload
        .stored_at()
        .map(display_time)
        .unwrap_or_else(|| "unknown time".into());
    format!("{name}  (uploaded {uploaded}, {})", upload.archive_id)
}

/// A match in the `--json` document: the entry, and the upload holding it.
fn match_json(upload: &UploadRecord, entry: &Entry) -> serde_json::Value {
    let mut value = catalog_entry_json(entry);
    value["archive_id"] = upload.archive_id.clone().into();
    value["uploaded_at"] = upload.stored_at().map(display_time).into();
    value
}
