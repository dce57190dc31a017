//! `ls`: a backed-up directory's contents from the ledger's catalog.

use std::io::Write;

use glacier_backup::catalog::{list, Entry, EntryKind, LsError};
use glacier_backup::config::Config;
use glacier_backup::{display_time, shown};

use super::{
    catalog_entry_json, command_line_path, print_json, set_path_json, Fatal, Outcome, Session,
};
use crate::cli::LsArgs;

pub fn ls(config: &Config, args: &LsArgs, json: bool) -> Result<Outcome, Fatal> {
    let session = Session::open(config)?;
    // Read in place: catalogs can be large, and nothing is written.
    let ledger = glacier_backup::ledger::Ledger::reader(&session.ledger_file)?;
    let path = command_line_path(&args.path)?;
    let listing = list(&ledger, &path, args.at).map_err(|e| match e {
        LsError::Ledger(e) => e.into(),
        e => Fatal::Failure(e.into()),
    })?;
    if json {
        let entries: Vec<_> = listing.entries.iter().map(catalog_entry_json).collect();
        let mut document = serde_json::json!({
            "command": "ls",
            "archive_id": listing.upload.archive_id,
            "uploaded_at": listing.upload.stored_at().map(display_time),
            "entries": entries,
        });
        set_path_json(&mut document, "path", &listing.path);
        print_json(&document)?;
        return Ok(Outcome::Success);
    }
    tracing::info!(
        "{} as uploaded {} ({})",
        shown(&listing.path),
        listing
            .upload
            .stored_at()
            .map(display_time)
            .unwrap_or_else(|| "at an unknown time".into()),
        listing.upload.archive_id
    );
    let mut out = std::io::stdout().lock();
    for entry in &listing.entries {
        if let Err(e) = writeln!(out, "{}", line(entry)) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                break;
            }
            return Err(Fatal::Failure(e.into()));
        }
    }
    Ok(Outcome::Success)
}

/// One entry as `ls -l` shows it: kind and permissions, owner, size, time, name.
fn line(entry: &Entry) -> String {
    let name = entry
        .path
        .file_name()
        .map(|n| shown(std::path::Path::new(n)))
        .unwrap_or_default();
    let time = time::OffsetDateTime::from_unix_timestamp(entry.mtime)
        .map(display_time)
        .unwrap_or_else(|_| entry.mtime.to_string());
    let name = match (&entry.link, entry.kind) {
        (Some(target), _) => format!("{name} -> {}", shown(target)),
        (None, EntryKind::Directory) => format!("{name}/"),
        (None, _) => name,
    };
    format!(
        "{} {:>5} {:>5} {:>12} {time} {name}",
        mode_text(entry),
        entry.uid,
        entry.gid,
        entry.size
    )
}

/// `drwxr-xr-x`, as `ls -l` writes modes (setuid, setgid and sticky bits included).
fn mode_text(entry: &Entry) -> String {
    let kind = match entry.kind {
        EntryKind::Directory => 'd',
        EntryKind::Symlink => 'l',
        EntryKind::File => '-',
    };
    let m = entry.mode;
    let bit = |mask: u32, c: char| if m & mask != 0 { c } else { '-' };
    let exec = |x: u32, special: u32, set: char, unset: char| match (m & x != 0, m & special != 0) {
        (true, true) => set,
        (false, true) => unset,
        (true, false) => 'x',
        (false, false) => '-',
    };
    [
        kind,
        bit(0o400, 'r'),
        bit(0o200, 'w'),
        exec(0o100, 0o4000, 's', 'S'),
        bit(0o040, 'r'),
        bit(0o020, 'w'),
        exec(0o010, 0o2000, 's', 'S'),
        bit(0o004, 'r'),
        bit(0o002, 'w'),
        exec(0o001, 0o1000, 't', 'T'),
    ]
    .iter()
    .collect()
}
