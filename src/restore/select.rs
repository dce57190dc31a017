//! Which uploads a restore brings back: each path's latest (or the one current at a time), and
//! those named by archive id.

use super::*;

/// Reads a `--at` time: RFC 3339, `YYYY-MM-DD HH:MM[:SS]` (UTC), or `YYYY-MM-DD` (the end of
/// that day, UTC, so "as of the 20th" includes everything uploaded on the 20th).
pub fn parse_time(text: &str) -> Option<OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;
    let text = text.trim();
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(t);
    }
    let with_seconds = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let with_minutes = format_description!("[year]-[month]-[day] [hour]:[minute]");
    for format in [with_seconds, with_minutes] {
        if let Ok(t) = time::PrimitiveDateTime::parse(&text.replacen('T', " ", 1), format) {
            return Some(t.assume_utc());
        }
    }
    let day = time::Date::parse(text, format_description!("[year]-[month]-[day]")).ok()?;
    Some(
        day.with_hms_nano(23, 59, 59, 999_999_999)
            .ok()?
            .assume_utc(),
    )
}

/// The latest upload (or the one current at `request.at`) of each selected source path, plus
/// the uploads named by id.
pub fn select(
    ledger: &Ledger,
    request: &RestoreRequest,
) -> Result<Vec<UploadRecord>, RestoreError> {
    let all = ledger.uploads()?;
    let mut latest: std::collections::BTreeMap<PathBuf, UploadRecord> = Default::default();
    for row in &all {
        let wanted = request
            .paths
            .iter()
            .any(|p| row.path == *p || row.path.starts_with(p));
        let current = match request.at {
            Some(at) => row.stored_at().is_some_and(|t| t <= at),
            None => true,
        };
        if wanted && current {
            latest.insert(row.path.clone(), row.clone());
        }
    }
    // A path inside a backed-up directory: that directory's upload, restored in part.
    for wanted in &request.paths {
        let held = |row: &&UploadRecord| row.path == *wanted || row.path.starts_with(wanted);
        if latest.values().any(|row| held(&row)) {
            continue;
        }
        if let Some(row) = holding_directory(&all, wanted, request.at) {
            latest.insert(row.path.clone(), row.clone());
        }
    }
    let mut chosen: Vec<UploadRecord> = latest.into_values().collect();
    let mut looked_at: Vec<PathBuf> = chosen.iter().map(|row| row.path.clone()).collect();
    looked_at.extend(request.paths.iter().cloned());
    for path in looked_at {
        not_pruned(ledger, &path, request.at)?;
    }
    for id in &request.archive_ids {
        match all.iter().find(|r| &r.archive_id == id) {
            Some(row) if !chosen.contains(row) => chosen.push(row.clone()),
            Some(_) => {}
            None => {
                if ledger.pruned()?.contains_key(id) {
                    return Err(RestoreError::PrunedArchive {
                        archive_id: id.clone(),
                    });
                }
                return Err(RestoreError::NothingMatches(format!("archive id {id:?}")));
            }
        }
    }
    if chosen.is_empty() {
        let named: Vec<String> = request.paths.iter().map(shown).collect();
        let mut named = named.join(", ");
        if let Some(at) = request.at {
            named += &format!(" (uploaded at or before {})", crate::display_time(at));
        }
        return Err(RestoreError::NothingMatches(named));
    }
    Ok(chosen)
}

/// Refuses a restore of `path` as of `at` when the upload current then was pruned (a kept
/// older one would otherwise come back in its place, silently).
fn not_pruned(
    ledger: &Ledger,
    path: &Path,
    at: Option<OffsetDateTime>,
) -> Result<(), RestoreError> {
    match crate::prune::pruned_at(ledger, path, at)? {
        Some(pruned) => Err(RestoreError::Pruned(pruned)),
        None => Ok(()),
    }
}

/// The upload (latest, or current at `at`) of the deepest backed-up directory that holds
/// `path`: the one a partial restore of `path` reads.
fn holding_directory<'a>(
    all: &'a [UploadRecord],
    path: &Path,
    at: Option<OffsetDateTime>,
) -> Option<&'a UploadRecord> {
    let holds = |row: &&UploadRecord| {
        row.kind != Some(SourceKind::File)
            && path.starts_with(&row.path)
            && row.path != path
            && at.is_none_or(|at| row.stored_at().is_some_and(|t| t <= at))
    };
    let deepest = all
        .iter()
        .filter(holds)
        .map(|row| row.path.components().count())
        .max()?;
    // Rows come oldest first: the last is the latest.
    all.iter()
        .filter(holds)
        .rfind(|row| row.path.components().count() == deepest)
}
