//! Fetching a partial restore's stored spans into a sparse copy of the archive, each MiB
//! checked against its tree hash leaf before it is written: a span that does not match places
//! nothing.

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

/// Creates `sparse` as a file of the archive's size holding only the plan's spans, each read
/// from `archiver` by range and checked MiB by MiB.
pub(crate) async fn fetch_spans(
    archiver: &dyn Archiver,
    archive: &ArchiveRef,
    plan: &PartialPlan,
    sparse: &Path,
    progress: &dyn ItemProgress,
) -> Result<std::fs::File, RestoreFailure> {
    let io = |what| RestoreFailure::io(what, sparse);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(sparse)
        .map_err(io("create"))?;
    file.set_len(plan.stored_size).map_err(io("create"))?;
    for span in &plan.spans {
        fetch_span(
            archiver,
            archive,
            plan,
            span.clone(),
            &file,
            sparse,
            progress,
        )
        .await?;
    }
    Ok(file)
}

async fn fetch_span(
    archiver: &dyn Archiver,
    archive: &ArchiveRef,
    plan: &PartialPlan,
    span: Range<u64>,
    file: &std::fs::File,
    sparse: &Path,
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
                write_checked(plan, archive, &span, at, &leaf, file, sparse)?;
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
        write_checked(plan, archive, &span, at, &leaf, file, sparse)?;
        progress.advance(leaf.len() as u64);
    }
    Ok(())
}

/// Writes the MiB at `at` once its SHA-256 is the catalog's leaf for it.
fn write_checked(
    plan: &PartialPlan,
    archive: &ArchiveRef,
    span: &Range<u64>,
    at: u64,
    bytes: &[u8],
    file: &std::fs::File,
    sparse: &Path,
) -> Result<(), RestoreFailure> {
    let digest: [u8; 32] = Sha256::digest(bytes).into();
    if plan.layout.leaf_at(at) != Some(&digest) {
        return Err(damaged(
            archive,
            span,
            &format!("the MiB at {at} does not match its tree hash leaf"),
        ));
    }
    file.write_all_at(bytes, at)
        .map_err(RestoreFailure::io("write", sparse))
}

fn damaged(archive: &ArchiveRef, span: &Range<u64>, detail: &str) -> RestoreFailure {
    RestoreFailure::Damaged {
        archive_id: archive.archive_id.clone(),
        detail: format!("bytes {}..{}: {detail}", span.start, span.end),
    }
}
