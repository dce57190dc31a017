//! One candidate streamed to the archiver: its layers, its part size, the upload it resumes,
//! and the ledger row to write once the archiver confirms it.

use std::sync::Arc;

use futures::StreamExt;
use glacier_backup_archiver::{ArchiveMeta, Archiver, PartStream, Resume};

use super::paced::Paced;
use super::record::SharedLedger;
use super::resume::{resumable_upload, PendingJournal};
use super::CandidateError;
use crate::candidate::{Candidate, Scan, SourceError};
use crate::catalog::Cataloged;
use crate::codec::{Layers, Seal};
use crate::ledger::{PendingUpload, UploadRecord};
use crate::progress::ItemProgress;
use crate::shown;
use crate::stream::{encoded_parts, PlainSize};
use crate::upload::{put_journaled, UploadJournal};

/// Streams one candidate to the archiver and returns the ledger row to write, with a directory
/// archive's catalog (written in the same pass as the archive). Multipart uploads
/// are recorded in `ledger` as soon as they start, so that an interrupted one is resumed by the
/// next run of the unchanged source.
pub(super) async fn put_candidate(
    candidate: Arc<dyn Candidate>,
    scan: Scan,
    base: Option<String>,
    archiver: &dyn Archiver,
    ledger: &SharedLedger<'_>,
    progress: &crate::progress::SharedProgress,
    options: &super::RunOptions,
) -> Result<(UploadRecord, Option<Cataloged>), CandidateError> {
    let format = &options.format;
    let path = candidate.source_path().to_path_buf();
    let item: Arc<dyn ItemProgress> = progress.item(&shown(&path), scan.size_estimate).into();
    let fingerprint = scan.fingerprint.to_string();
    let encoding = format.encoding();
    let resume = resumable_upload(&path, &fingerprint, &encoding, archiver, ledger).await?;
    let seal = seal_for(resume.as_ref(), format)?;
    // age adds 16 bytes per 64 KiB and a header: a part size chosen for the plain size must
    // still hold the stored one.
    let size_hint = match encoding.encrypted {
        true => scan.size_estimate + scan.size_estimate / 4096 + 4096,
        false => scan.size_estimate,
    };
    let seekable = candidate.kind() == glacier_backup_archiver::SourceKind::Directory;
    let layers = Layers::of(&encoding, seal.clone(), size_hint, seekable);
    let part_size = match &resume {
        Some(pending) => pending.part_size,
        None => archiver.part_size(size_hint),
    };
    let resume = match resume {
        Some(pending) => Some(Resume {
            receipts: ledger.with(|l| l.pending_parts(&path))?,
            token: pending.token,
            completing: pending.completing,
        }),
        None => None,
    };
    let started_at = crate::clock::now();
    let meta = ArchiveMeta {
        source_path: path.clone(),
        name: candidate.archive_name(),
        kind: candidate.kind(),
        fingerprint: fingerprint.clone(),
        size_hint,
        started_at,
        encoding: encoding.clone(),
        index_of: None,
        indexed_tree_hash: None,
    };
    if archiver.capabilities().needs_index {
        super::index::remove_unindexed(archiver, ledger, &meta).await?;
    }
    let part_bytes = usize::try_from(part_size).expect("part sizes fit in memory");
    let layered = layers.is_some();
    let (parts, plain_size, catalog) =
        encoded_parts(candidate.clone(), part_bytes, size_hint, layers);
    // An archive of several parts goes alone: the run's upload limit carries only its bytes.
    let paced = (options.upload_limit.is_limited() && part_size < size_hint)
        .then(|| Arc::new(Paced::new(&options.upload_limit, item.clone())));
    let parts = counted(
        parts,
        item,
        layered.then(|| plain_size.clone()),
        paced.as_ref(),
    );
    // A resumable backend's uploads are journaled as they go, so a failed one is kept for the
    // next run to continue; any other failed upload is aborted.
    let mut journal = PendingJournal {
        ledger,
        pending: PendingUpload {
            path: path.clone(),
            backend: archiver.name().to_owned(),
            token: String::new(),
            part_size,
            fingerprint: fingerprint.clone(),
            started_at,
            completing: None,
            encoding: encoding.clone(),
            seal: seal.as_ref().map(Seal::to_bytes),
        },
    };
    let journal = archiver
        .capabilities()
        .resumable_uploads
        .then_some(&mut journal as &mut dyn UploadJournal);
    let upload = put_journaled(archiver, &meta, resume, parts, journal);
    let stored = match &paced {
        Some(paced) => {
            let stored = paced.follow(upload).await?;
            paced.finish();
            stored
        }
        None => upload.await?,
    };
    let record = UploadRecord {
        path: meta.source_path,
        name: meta.name,
        archive_id: stored.archive_id,
        description: stored.description,
        backend: archiver.name().to_owned(),
        kind: Some(meta.kind),
        size: Some(stored.size),
        tree_hash: Some(stored.tree_hash),
        fingerprint: Some(meta.fingerprint),
        started_at: Some(started_at),
        uploaded_at: Some(crate::clock::now()),
        plain_size: (!meta.encoding.is_plain()).then(|| plain_size.get()),
        encoding: meta.encoding,
    };
    let age_header = seal.as_ref().map(|seal| seal.header().to_vec());
    let catalog = match catalog.take(record.size.unwrap_or(0), age_header) {
        Some(catalog) => Some(crate::catalog::Cataloged { base, ..catalog }),
        None if base.is_some() => return Err(CandidateError::NoIncrementCatalog),
        None => None,
    };
    let catalog = match catalog {
        catalog if archiver.capabilities().needs_index => {
            super::index::put_required_index(archiver, &record, catalog, format).await?
        }
        Some(catalog) => Some(super::index::put_index(archiver, &record, catalog, format).await),
        None => None,
    };
    Ok((record, catalog))
}

/// The seal an encrypted upload's bytes are made with: a resumed upload's own, so its bytes
/// come out again as they were sent, or a new one.
fn seal_for(
    resume: Option<&PendingUpload>,
    format: &crate::codec::Format,
) -> Result<Option<Seal>, CandidateError> {
    if !format.encoding().encrypted {
        return Ok(None);
    }
    match resume {
        Some(pending) => Ok(pending.seal.as_deref().and_then(Seal::from_bytes)),
        None => Seal::authenticated(&format.recipients, format.authentication.as_ref())
            .map(Some)
            .map_err(|e| CandidateError::Source(SourceError::Encode(e.to_string()))),
    }
}

/// `parts`, advancing `item` as the backend takes them: the bytes taken are (within the few
/// parts in flight) the bytes sent. Progress counts the source's bytes, which the item's total
/// is: for layered parts, what `plain` says was read so far, not the compressed bytes. Under
/// an upload limit (`paced`), what was taken is only noted: the item follows the limit.
fn counted(
    parts: PartStream,
    item: Arc<dyn ItemProgress>,
    plain: Option<PlainSize>,
    paced: Option<&Arc<Paced>>,
) -> PartStream {
    let paced = paced.cloned();
    let mut shown = 0;
    parts
        .inspect(move |part| {
            if let Ok(part) = part {
                let done = match &plain {
                    Some(plain) => plain.get(),
                    None => shown + part.data.len() as u64,
                };
                match &paced {
                    Some(paced) => paced.took(part.data.len() as u64, done),
                    None => item.advance(done.saturating_sub(shown)),
                }
                shown = shown.max(done);
            }
        })
        .boxed()
}
