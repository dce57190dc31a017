//! `list`: the ledger as a table or JSON.

use glacier_backup::shown;
use std::io::Write;
use std::path::PathBuf;

use glacier_backup::backends::{ledger_path, open_archiver, BackendError};
use glacier_backup::config::Config;
use glacier_backup::ledger::{Ledger, SqliteLedger, UploadRecord};

use super::{home_config_dir, Fatal, Outcome};

fn ledger_for(config: &Config) -> Result<PathBuf, Fatal> {
    let target = match open_archiver(config) {
        Ok(archiver) => archiver.target(),
        // The Python tool's naming, known without the backend, so `list` works in any build.
        Err(BackendError::NotCompiled { .. }) if config.backend == "glacier" => format!(
            "glacier.{}",
            config.vault_name.as_deref().unwrap_or("default")
        ),
        Err(e) => return Err(Fatal::Config(e.into())),
    };
    Ok(ledger_path(config, &target, home_config_dir().as_deref()))
}

pub fn list(config: &Config, json: bool) -> Result<Outcome, Fatal> {
    let path = ledger_for(config)?;
    let ledger = SqliteLedger::snapshot(&path)?;
    let uploads = ledger.uploads()?;
    let mut out = std::io::stdout().lock();
    let written = if json {
        let rows: Vec<_> = uploads.iter().map(upload_json).collect();
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&rows).expect("JSON values serialize")
        )
    } else if uploads.is_empty() {
        writeln!(out, "no uploads recorded in {}", shown(&path))
    } else {
        write_table(&mut out, &uploads)
    };
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Outcome::Success),
        Err(e) => Err(Fatal::Failure(e.into())),
        Ok(()) => Ok(Outcome::Success),
    }
}

fn upload_json(u: &UploadRecord) -> serde_json::Value {
    let time = |t: Option<time::OffsetDateTime>| t.map(glacier_backup::display_time);
    let mut row = serde_json::json!({
        "path": u.path.to_string_lossy(),
        "name": u.name,
        "archive_id": u.archive_id,
        "description": u.description,
        "backend": u.backend,
        "kind": u.kind.map(|k| k.as_str()),
        "size": u.size,
        "tree_hash": u.tree_hash.map(|h| h.to_hex()),
        "fingerprint": u.fingerprint,
        "started_at": time(u.started_at),
        "uploaded_at": time(u.uploaded_at),
    });
    super::set_path_json(&mut row, "path", &u.path);
    row
}

fn write_table(out: &mut dyn Write, uploads: &[UploadRecord]) -> std::io::Result<()> {
    let rows: Vec<[String; 5]> = uploads
        .iter()
        .map(|u| {
            [
                u.uploaded_at
                    .map(glacier_backup::display_time)
                    .unwrap_or_else(|| "-".into()),
                u.backend.clone(),
                u.size
                    .map(glacier_backup::display_size)
                    .unwrap_or_else(|| "-".into()),
                shown(&u.path),
                u.archive_id.clone(),
            ]
        })
        .collect();
    let header = ["UPLOADED", "BACKEND", "SIZE", "PATH", "ARCHIVE ID"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line = format!(
            "{:<w0$}  {:<w1$}  {:>w2$}  {:<w3$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        );
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}
