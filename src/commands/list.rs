//! `list`: the ledger as a table or JSON.

use glacier_backup::shown;
use std::io::Write;

use glacier_backup::config::Config;
use glacier_backup::ledger::{Ledger, Moved, UploadRecord};

use super::{Fatal, Outcome};

/// Prints the ledger, streaming its rows: memory stays flat whatever the ledger's size (the
/// table reads the rows twice, first for the column widths).
pub fn list(config: &Config, json: bool) -> Result<Outcome, Fatal> {
    let path = super::ledger_for(config)?;
    let ledger = Ledger::reader(&path)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = if json {
        write_json(&mut out, &ledger)?
    } else {
        write_table(&mut out, &ledger, &path)?
    };
    match written.and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Outcome::Success),
        Err(e) => Err(Fatal::Failure(e.into())),
        Ok(()) => Ok(Outcome::Success),
    }
}

/// A JSON array, one row at a time. The outer error is the ledger's, the inner one stdout's.
fn write_json(out: &mut dyn Write, ledger: &Ledger) -> Result<std::io::Result<()>, Fatal> {
    let mut written = out.write_all(b"[");
    let mut first = true;
    let pruned = ledger.pruned()?;
    ledger.each_upload_with_moves(&mut |upload, moved| {
        let separator: &[u8] = if first { b"\n  " } else { b",\n  " };
        first = false;
        let mut row = upload_json(&upload);
        row["moved"] = moved.map_or(serde_json::Value::Null, |m| moved_json(&m));
        // An increment names the upload (archive) it holds the changes since.
        row["increment_of"] = base_of(ledger, &upload).into();
        // Deleted by prune: the time the destination confirmed it ("deleting" until then).
        row["pruned_at"] = match pruned.get(&upload.archive_id) {
            None => serde_json::Value::Null,
            Some(mark) => pruned_text(mark).into(),
        };
        written = out
            .write_all(separator)
            .and_then(|()| serde_json::to_writer(&mut *out, &row).map_err(std::io::Error::from));
        written.is_ok()
    })?;
    Ok(written.and_then(|()| out.write_all(if first { b"]\n" } else { b"\n]\n" })))
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
        "compression": u.encoding.compression.as_str(),
        "level": u.encoding.compression.level(),
        "encryption": u.encoding.encrypted.then_some("age"),
        "recipients": u.encoding.recipients,
        "plain_size": u.plain_size,
    });
    super::set_path_json(&mut row, "path", &u.path);
    row
}

fn moved_json(m: &Moved) -> serde_json::Value {
    serde_json::json!({
        "to": m.destination,
        "key": m.key,
        "at": glacier_backup::display_time(m.moved_at),
        "source_deleted_at": m.source_deleted_at.map(glacier_backup::display_time),
    })
}

/// The base of an increment's chain, when `u` is one (a ledger that cannot say lists it as
/// a full).
fn base_of(ledger: &Ledger, u: &UploadRecord) -> Option<String> {
    ledger.catalog_base(&u.archive_id).ok().flatten().flatten()
}

/// When prune deleted an archive, as `list` shows it.
fn pruned_text(mark: &glacier_backup::ledger::PruneMark) -> String {
    match mark {
        Some(at) => glacier_backup::display_time(*at),
        None => "deleting".into(),
    }
}

/// The table's cells of one row: an archive moved elsewhere says where, an increment what it
/// is an increment of, a pruned one when it was deleted.
fn cells(
    u: &UploadRecord,
    moved: Option<Moved>,
    base: Option<String>,
    pruned: Option<&glacier_backup::ledger::PruneMark>,
) -> [String; 5] {
    let mut increment = base
        .map(|base| format!(" (increment of {base})"))
        .unwrap_or_default();
    if let Some(mark) = pruned {
        increment.push_str(&format!(" (pruned {})", pruned_text(mark)));
    }
    let id = match moved {
        None => format!("{}{increment}", u.archive_id),
        Some(m) => format!(
            "{}{increment} (moved to {} {}{})",
            u.archive_id,
            m.destination,
            m.key,
            if m.source_deleted_at.is_some() {
                ", deleted here"
            } else {
                ""
            }
        ),
    };
    [
        u.uploaded_at
            .map(glacier_backup::display_time)
            .unwrap_or_else(|| "-".into()),
        u.backend.clone(),
        u.size
            .map(glacier_backup::display_size)
            .unwrap_or_else(|| "-".into()),
        shown(&u.path),
        id,
    ]
}

fn write_table(
    out: &mut dyn Write,
    ledger: &Ledger,
    path: &std::path::Path,
) -> Result<std::io::Result<()>, Fatal> {
    let header = ["UPLOADED", "BACKEND", "SIZE", "PATH", "ARCHIVE ID"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    let mut rows = 0usize;
    let pruned = ledger.pruned()?;
    ledger.each_upload_with_moves(&mut |upload, moved| {
        rows += 1;
        let base = base_of(ledger, &upload);
        let mark = pruned.get(&upload.archive_id);
        for (w, cell) in widths.iter_mut().zip(cells(&upload, moved, base, mark)) {
            *w = (*w).max(cell.chars().count());
        }
        true
    })?;
    if rows == 0 {
        return Ok(writeln!(out, "no uploads recorded in {}", shown(path)));
    }
    let line = |row: &[String; 5]| {
        let text = format!(
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
        text.trim_end().to_owned()
    };
    let mut written = writeln!(out, "{}", line(&header));
    ledger.each_upload_with_moves(&mut |upload, moved| {
        let base = base_of(ledger, &upload);
        let mark = pruned.get(&upload.archive_id);
        written = writeln!(out, "{}", line(&cells(&upload, moved, base, mark)));
        written.is_ok()
    })?;
    Ok(written)
}
