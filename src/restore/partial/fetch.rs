//! Fetching a partial restore's stored spans into a file of their own, one after another (not
//! a sparse copy of the archive: a file system without holes would fill the disk with the
//! archive's size), each MiB checked against its tree hash leaf before it is written: a span
//! that does not match places nothing.

use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;

use futures::StreamExt;
use glacier_backup_archiver::{ArchiveRef, Archiver};
use sha2::{Digest, Sha256};

use super::PartialPlan;
use crate::catalog::LEAF;
use crate::progress::ItemProgress;
use crate::restore::RestoreFailure;

/// The fetched spans, kept one after another in a file: read by their offsets in the stored
/// archive.
pub(crate) struct Spans {
    file: std::fs::File,
    /// Each span's stored range and where it starts in the file.
    spans: Vec<(std::ops::Range<u64>, u64)>,
}

impl Spans {
    /// Fills `buf` with the stored bytes at `offset`, which must have been fetched.
    pub(crate) fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
        while !buf.is_empty() {
            let Some((range, at)) = self.spans.iter().find(|(r, _)| r.contains(&offset)) else {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "a read outside the fetched spans",
                ));
            };
            let take = buf.len().min((range.end - offset) as usize);
            self.file
                .read_exact_at(&mut buf[..take], at + (offset - range.start))?;
            buf = &mut buf[take..];
            offset += take as u64;
        }
        Ok(())
    }
}

/// Fetches the plan's spans into `path` (created), each read from `archiver` by range and
/// checked MiB by MiB.
pub(crate) async fn fetch_spans(
    archiver: &dyn Archiver,
    archive: &ArchiveRef,
    plan: &PartialPlan,
    path: &Path,
    progress: &dyn ItemProgress,
) -> Result<Spans, RestoreFailure> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(RestoreFailure::io("create", path))?;
    let mut spans = Spans {
        file,
        spans: Vec::new(),
    };
    let mut at = 0;
    for span in &plan.spans {
        let written = Written {
            file: &spans.file,
            path,
            start: at,
        };
        fetch_span(archiver, archive, plan, span.clone(), &written, progress).await?;
        spans.spans.push((span.clone(), at));
        at += span.end - span.start;
    }
    Ok(spans)
}

/// Where a span's checked bytes go: the file, from `start`.
struct Written<'a> {
    file: &'a std::fs::File,
    path: &'a Path,
    start: u64,
}

async fn fetch_span(
    archiver: &dyn Archiver,
    archive: &ArchiveRef,
    plan: &PartialPlan,
    span: Range<u64>,
    out: &Written<'_>,
    progress: &dyn ItemProgress,
) -> Result<(), RestoreFailure> {
    let mut stream = archiver.get(archive, Some(span.clone())).await?;
    let mut leaf = Vec::with_capacity(LEAF as usize);
    let mut at = span.start;
    let mut received = 0u64;
    while let Some(chunk) = stream.next().await {
        let mut chunk = &chunk?[..];
        received += chunk.len() as u64;
        if received > span.end - span.start {
            return Err(damaged(archive, &span, "more bytes than asked for"));
        }
        while !chunk.is_empty() {
            let take = chunk.len().min(LEAF as usize - leaf.len());
            leaf.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if leaf.len() as u64 == LEAF {
                write_checked(plan, archive, &span, at, &leaf, out)?;
                progress.advance(LEAF);
                at += LEAF;
                leaf.clear();
            }
        }
    }
    if at + leaf.len() as u64 != span.end {
        return Err(damaged(archive, &span, "fewer bytes than asked for"));
    }
    if !leaf.is_empty() {
        write_checked(plan, archive, &span, at, &leaf, out)?;
        progress.advance(leaf.len() as u64);
    }
    Ok(())
}

/// Writes the MiB at `at` (of the stored archive) once its SHA-256 is the catalog's leaf for it.
fn write_checked(
    plan: &PartialPlan,
    archive: &ArchiveRef,
    span: &Range<u64>,
    at: u64,
    bytes: &[u8],
    out: &Written<'_>,
) -> Result<(), RestoreFailure> {
    let digest: [u8; 32] = Sha256::digest(bytes).into();
    if plan.layout.leaf_at(at) != Some(&digest) {
        return Err(damaged(
            archive,
            span,
            &format!("the MiB at {at} does not match its tree hash leaf"),
        ));
    }
    out.file
        .write_all_at(bytes, out.start + (at - span.start))
        .map_err(RestoreFailure::io("write", out.path))
}

fn damaged(archive: &ArchiveRef, span: &Range<u64>, detail: &str) -> RestoreFailure {
    RestoreFailure::Damaged {
        archive_id: archive.archive_id.clone(),
        detail: format!("bytes {}..{}: {detail}", span.start, span.end),
    }
}
