//! Partial restores: the entries of a directory upload a restore asks for (paths inside it,
//! `--include` globs), fetched as only the stored spans that hold them. The catalog says where
//! each entry lies in the plain tar, the layout where that lies in the stored bytes; each
//! fetched MiB is checked against its tree hash leaf before anything is decoded, and the
//! entries are then extracted by the same safe extraction as a whole archive's.

mod fetch;
mod place;
mod read;

use std::ops::Range;
use std::path::PathBuf;

use crate::catalog::{each_source_entry, source_path, Entry, Layout, Pattern};
use crate::ledger::{Ledger, UploadRecord};

use super::{RestoreFailure, RestoreRequest};
use fetch::fetch_spans;
pub(super) use place::{request, restore};
use read::SelectedTar;

/// Stored spans closer than this are fetched as one: a gap of at most a MiB costs less than
/// another request's round trip (and, in a vault, another job).
const MERGE_GAP: u64 = 1 << 20;

/// Which entries of a directory upload a partial restore wants.
#[derive(Debug, Clone, Default)]
pub struct Subset {
    /// Source paths inside the upload's directory: each one and everything under it.
    pub inside: Vec<PathBuf>,
    /// Only entries matching this glob (`--include`).
    pub include: Option<Pattern>,
}

impl Subset {
    /// The subset of `row` that `request` asks for, or `None` for the whole upload: a path
    /// inside a backed-up directory, or `--include`, makes a directory's restore partial.
    pub fn of(row: &UploadRecord, request: &RestoreRequest) -> Option<Subset> {
        // A row of the Python tool (kind unknown) may be a directory: asked for in part, it is
        // refused for want of a catalog, never restored whole instead.
        let directory = match row.kind {
            Some(kind) => kind == glacier_backup_archiver::SourceKind::Directory,
            None => row.name.ends_with(".tar"),
        };
        if !directory {
            return None;
        }
        let whole = request.paths.iter().any(|p| row.path.starts_with(p))
            || request.archive_ids.contains(&row.archive_id);
        let inside: Vec<PathBuf> = request
            .paths
            .iter()
            .filter(|p| p.starts_with(&row.path) && **p != row.path)
            .cloned()
            .collect();
        match (&request.include, whole) {
            (None, true) => None,
            (None, false) if inside.is_empty() => None,
            (include, whole) => Some(Subset {
                inside: if whole { Vec::new() } else { inside },
                include: include.clone(),
            }),
        }
    }

    fn wants(&self, path: &std::path::Path) -> bool {
        let inside = self.inside.is_empty() || self.inside.iter().any(|p| path.starts_with(p));
        inside && self.include.as_ref().is_none_or(|glob| glob.matches(path))
    }
}

/// What a partial restore of one upload fetches and decodes.
#[derive(Debug)]
pub struct PartialPlan {
    /// Entries restored.
    pub entries: usize,
    /// Their data, in bytes.
    pub plain_bytes: u64,
    /// The stored spans fetched, merged and aligned to whole MiB.
    pub spans: Vec<Range<u64>>,
    /// The archive's stored size, for comparison.
    pub stored_size: u64,
    layout: Layout,
    runs: Vec<Run>,
}

impl PartialPlan {
    /// Bytes fetched.
    pub fn fetched(&self) -> u64 {
        self.spans.iter().map(|s| s.end - s.start).sum()
    }
}

/// Entries decoded in one pass: a span of the compressed stream (whole frames, one after
/// another), and the plain spans of the entries in it, in order.
#[derive(Debug)]
struct Run {
    inner: Range<u64>,
    /// The plain offset decoding from `inner.start` yields first.
    plain_start: u64,
    entries: Vec<Range<u64>>,
}

/// What restoring (part of) one upload fetches: a plan for each archive it needs, oldest
/// first. One archive, or for an increment the archives of its chain that hold the newest
/// version of an entry wanted.
#[derive(Debug)]
pub struct RowPlan {
    /// Each archive's row and plan.
    pub parts: Vec<(UploadRecord, PartialPlan)>,
    /// Whether only part of the upload is restored.
    pub partial: bool,
}

impl RowPlan {
    /// Entries restored.
    pub fn entries(&self) -> usize {
        self.parts.iter().map(|(_, p)| p.entries).sum()
    }

    /// Their data, in bytes.
    pub fn plain_bytes(&self) -> u64 {
        self.parts.iter().map(|(_, p)| p.plain_bytes).sum()
    }

    /// Bytes fetched.
    pub fn fetched(&self) -> u64 {
        self.parts.iter().map(|(_, p)| p.fetched()).sum()
    }

    /// The stored sizes of the archives read from.
    pub fn stored_size(&self) -> u64 {
        self.parts.iter().map(|(_, p)| p.stored_size).sum()
    }

    /// The spans fetched, over every archive.
    pub fn span_count(&self) -> usize {
        self.parts.iter().map(|(_, p)| p.spans.len()).sum()
    }
}

/// How `request` restores `row` by entries: a partial restore (paths inside the directory,
/// `--include`), or any restore of an increment, which needs its chain. `None` when the
/// archive is restored whole, as it is.
pub fn plan_row(
    ledger: &Ledger,
    row: &UploadRecord,
    request: &RestoreRequest,
) -> Option<Result<RowPlan, RestoreFailure>> {
    let subset = Subset::of(row, request);
    let increment = match row.kind {
        Some(glacier_backup_archiver::SourceKind::Directory) => {
            match ledger.catalog_base(&row.archive_id) {
                Ok(base) => base.flatten().is_some(),
                Err(e) => return Some(Err(e.into())),
            }
        }
        _ => false,
    };
    match (subset, increment) {
        (None, false) => None,
        (Some(subset), false) => Some(plan(ledger, row, &subset).map(|plan| RowPlan {
            parts: vec![(row.clone(), plan)],
            partial: true,
        })),
        (subset, true) => Some(chain_plan(ledger, row, subset.as_ref())),
    }
}

/// The plan for `subset` (all of it when `None`) of the increment `row`: its chain's state,
/// each entry fetched from the archive holding its newest version.
fn chain_plan(
    ledger: &Ledger,
    row: &UploadRecord,
    subset: Option<&Subset>,
) -> Result<RowPlan, RestoreFailure> {
    let chain = crate::chain::Chain::ending_at(ledger, row)
        .map_err(|source| RestoreFailure::Chain {
            path: row.path.clone(),
            source: Box::new(source),
        })?
        .ok_or_else(|| RestoreFailure::NoCatalog {
            path: row.path.clone(),
        })?;
    let damaged = |detail: String| RestoreFailure::DamagedCatalog {
        archive_id: row.archive_id.clone(),
        detail,
    };
    let mut wanted: Vec<Vec<Entry>> = vec![Vec::new(); chain.uploads.len()];
    for held in chain.state().map_err(|e| damaged(e.to_string()))? {
        let held = held.map_err(|e| damaged(e.to_string()))?;
        let source = source_path(row, &held.entry.path);
        if subset.is_none_or(|subset| subset.wants(&source)) {
            wanted[held.layer].push(held.entry);
        }
    }
    if let (Some(subset), true) = (subset, wanted.iter().all(Vec::is_empty)) {
        return Err(RestoreFailure::NotInUpload {
            path: row.path.clone(),
            wanted: describe(subset),
        });
    }
    let mut parts = Vec::new();
    for ((upload, cataloged), entries) in chain.uploads.iter().zip(wanted) {
        if entries.is_empty() {
            continue;
        }
        let layout = layout_of(upload, cataloged.layout.as_deref())?;
        parts.push((upload.clone(), plan_entries(upload, layout, entries)?));
    }
    Ok(RowPlan {
        parts,
        partial: subset.is_some(),
    })
}

/// The plan for restoring `subset` of `row` from its catalog. Fails when the upload has no
/// catalog with a layout (the Python tool's and earlier uploads restore whole), or holds
/// nothing the subset names.
pub fn plan(
    ledger: &Ledger,
    row: &UploadRecord,
    subset: &Subset,
) -> Result<PartialPlan, RestoreFailure> {
    let no_catalog = || RestoreFailure::NoCatalog {
        path: row.path.clone(),
    };
    let cataloged = ledger.cataloged(&row.archive_id)?.ok_or_else(no_catalog)?;
    let layout = layout_of(row, cataloged.layout.as_deref())?;
    let mut wanted = Vec::new();
    each_source_entry(row, &cataloged.entries, &mut |entry| {
        if subset.wants(&entry.path) {
            wanted.push(entry);
        }
    })
    .map_err(|e| RestoreFailure::DamagedCatalog {
        archive_id: row.archive_id.clone(),
        detail: e.source.to_string(),
    })?;
    if wanted.is_empty() {
        return Err(RestoreFailure::NotInUpload {
            path: row.path.clone(),
            wanted: describe(subset),
        });
    }
    plan_entries(row, layout, wanted)
}

/// `row`'s layout, checked against its size.
fn layout_of(row: &UploadRecord, layout: Option<&[u8]>) -> Result<Layout, RestoreFailure> {
    let damaged = |detail: String| RestoreFailure::DamagedCatalog {
        archive_id: row.archive_id.clone(),
        detail,
    };
    let layout = layout.ok_or_else(|| RestoreFailure::NoCatalog {
        path: row.path.clone(),
    })?;
    let layout = Layout::decode(layout).map_err(|e| damaged(e.to_string()))?;
    if row.size.is_some_and(|size| size != layout.stored_size) {
        return Err(damaged(
            "its layout is of an archive of another size".into(),
        ));
    }
    Ok(layout)
}

/// The runs decoded and spans fetched to read `wanted` (in tar order) from `row`'s archive.
fn plan_entries(
    row: &UploadRecord,
    layout: Layout,
    wanted: Vec<Entry>,
) -> Result<PartialPlan, RestoreFailure> {
    let damaged = |detail: String| RestoreFailure::DamagedCatalog {
        archive_id: row.archive_id.clone(),
        detail,
    };
    let mut runs: Vec<Run> = Vec::new();
    let mut spans: Vec<Range<u64>> = Vec::new();
    for entry in &wanted {
        let plain = entry.header_offset..entry.end_offset();
        let located = layout
            .locate(plain.clone())
            .ok_or_else(|| damaged("an entry lies past the archive's end".into()))?;
        match runs.last_mut() {
            Some(run) if located.inner.start <= run.inner.end && plain.start >= run.plain_end() => {
                run.inner.end = run.inner.end.max(located.inner.end);
                run.entries.push(plain);
            }
            _ => runs.push(Run {
                inner: located.inner.clone(),
                plain_start: located.plain_start,
                entries: vec![plain],
            }),
        }
        match spans.last_mut() {
            Some(last) if located.stored.start <= last.end + MERGE_GAP => {
                last.end = last.end.max(located.stored.end);
            }
            _ => spans.push(located.stored),
        }
    }
    Ok(PartialPlan {
        entries: wanted.len(),
        plain_bytes: wanted.iter().map(|e| e.size).sum(),
        spans,
        stored_size: layout.stored_size,
        layout,
        runs,
    })
}

impl Run {
    fn plain_end(&self) -> u64 {
        self.entries.last().map_or(self.plain_start, |e| e.end)
    }
}

/// The subset in words, for messages.
fn describe(subset: &Subset) -> String {
    let mut parts: Vec<String> = subset.inside.iter().map(crate::shown).collect();
    if let Some(glob) = &subset.include {
        parts.push(format!("--include {}", glob.text()));
    }
    parts.join(", ")
}
