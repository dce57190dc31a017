//! `find`: entries matching a glob across the catalogs of the ledger's directory uploads, read
//! from the ledger alone (no network, nothing retrieved).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use glacier_backup_archiver::SourceKind;
use time::OffsetDateTime;

use super::{each_source_entry, DamagedCatalog, Entry};
use crate::ledger::{Ledger, LedgerError, UploadRecord};

/// Which uploads `find` searches.
#[derive(Debug, Clone, Copy)]
pub enum Versions {
    /// Each directory's latest upload, or the one current at this time.
    Latest(Option<OffsetDateTime>),
    /// Every upload.
    All,
}

/// What `find` went through.
#[derive(Debug, Default)]
pub struct FindReport {
    /// Uploads whose catalog was searched.
    pub searched: usize,
    /// Uploads without a catalog (the Python tool's, earlier ones): their contents are unknown.
    pub without_catalog: Vec<UploadRecord>,
    /// Paths whose upload current at the time asked for was pruned: not searched (an older
    /// kept upload would answer for it otherwise).
    pub pruned: Vec<crate::prune::PrunedUpload>,
}

/// A search that cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    /// The pattern is not a glob.
    #[error("pattern {pattern:?}: {message}")]
    Pattern {
        /// The pattern given.
        pattern: String,
        /// What is wrong with it.
        message: String,
    },
    /// The ledger cannot be read.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A catalog is damaged.
    #[error(transparent)]
    Catalog(#[from] DamagedCatalog),
    /// An increment's chain cannot be followed, or one of its catalogs is damaged.
    #[error(transparent)]
    Chain(#[from] crate::chain::EntriesError),
}

/// A glob for `find`: without a `/` it matches an entry's name, with one its whole source path
/// (`*` stops at `/`, `**` does not).
#[derive(Debug, Clone)]
pub struct Pattern {
    matcher: globset::GlobMatcher,
    whole_path: bool,
}

impl Pattern {
    /// Compiles `pattern`.
    pub fn new(pattern: &str) -> Result<Self, FindError> {
        let glob = globset::GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| FindError::Pattern {
                pattern: pattern.to_owned(),
                message: e.kind().to_string(),
            })?;
        Ok(Pattern {
            matcher: glob.compile_matcher(),
            whole_path: pattern.contains('/'),
        })
    }

    /// The glob as given.
    pub fn text(&self) -> &str {
        self.matcher.glob().glob()
    }

    /// Whether `path` (a source path) matches.
    pub fn matches(&self, path: &Path) -> bool {
        use std::os::unix::ffi::OsStrExt;
        if self.whole_path {
            return self.matcher.is_match(path);
        }
        // The name as bytes after the last `/`: path components cost more than the match.
        let bytes = path.as_os_str().as_bytes();
        let name = bytes.rsplit(|&b| b == b'/').find(|part| !part.is_empty());
        name.is_some_and(|name| self.matcher.is_match(std::ffi::OsStr::from_bytes(name)))
    }
}

/// Calls `each` with every entry matching `pattern` (its path a source path) and the upload
/// holding it, upload by upload: the latest ones by path, all versions oldest first.
pub fn find(
    ledger: &Ledger,
    pattern: &Pattern,
    versions: Versions,
    each: &mut dyn FnMut(&UploadRecord, Entry),
) -> Result<FindReport, FindError> {
    let mut report = FindReport::default();
    let (uploads, pruned) = uploads(ledger, versions)?;
    for path in pruned {
        let at = match versions {
            Versions::Latest(at) => at,
            Versions::All => None,
        };
        report
            .pruned
            .extend(crate::prune::pruned_at(ledger, &path, at)?);
    }
    for upload in uploads {
        let mut matching = |entry: Entry| {
            if pattern.matches(&entry.path) {
                each(&upload, entry);
            }
        };
        // Every version: each entry where it is stored. As of a time: each upload's tree, an
        // increment's composed with its chain.
        let cataloged = match versions {
            Versions::All => match ledger.catalog(&upload.archive_id)? {
                Some(bytes) => {
                    each_source_entry(&upload, &bytes, &mut matching)?;
                    true
                }
                None => false,
            },
            Versions::Latest(_) => crate::chain::each_entry_of(ledger, &upload, &mut matching)?,
        };
        match cataloged {
            true => report.searched += 1,
            false => report.without_catalog.push(upload),
        }
    }
    Ok(report)
}

/// The directory uploads to search, oldest first, and the paths whose upload current at the
/// time asked for was pruned (those are not searched: an older kept upload would answer for
/// them). Rows of unknown kind (the Python tool's) are included, to be reported as without a
/// catalog.
fn uploads(
    ledger: &Ledger,
    versions: Versions,
) -> Result<(Vec<UploadRecord>, Vec<PathBuf>), LedgerError> {
    let mut all = Vec::new();
    let mut latest: BTreeMap<PathBuf, UploadRecord> = BTreeMap::new();
    let mut each = |row: UploadRecord| {
        if row.kind == Some(SourceKind::File) {
            return true;
        }
        match versions {
            Versions::All => all.push(row),
            Versions::Latest(at) => {
                if at.is_none_or(|at| row.stored_at().is_some_and(|t| t <= at)) {
                    latest.insert(row.path.clone(), row);
                }
            }
        }
        true
    };
    // As of a time, pruned uploads count in choosing each path's current one.
    let pruned = match versions {
        Versions::Latest(Some(_)) => {
            ledger.each_upload_with_moves(&mut |row, _| each(row))?;
            ledger.pruned()?
        }
        _ => {
            ledger.each_upload(&mut each)?;
            Default::default()
        }
    };
    Ok(match versions {
        Versions::All => (all, Vec::new()),
        Versions::Latest(_) => {
            let (gone, kept): (Vec<UploadRecord>, Vec<UploadRecord>) = latest
                .into_values()
                .partition(|row| pruned.contains_key(&row.archive_id));
            (kept, gone.into_iter().map(|row| row.path).collect())
        }
    })
}
