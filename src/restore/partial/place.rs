//! One partial restore from start to end: the plan, the archive made readable, its spans
//! fetched and checked, the selected entries extracted like a whole archive's.

use glacier_backup_archiver::{Archiver, RestoreOptions, RestoreState};

use super::{RowPlan, SelectedTar};
use crate::ledger::{Ledger, UploadRecord};
use crate::restore::extract::{extract_tar, ExtractOptions};
use crate::restore::retrieval::{ask, retrieval_key, wait_readable, Wait};
use crate::restore::{archive_ref, Outcome, Placement, RestoreFailure, RestoreRequest};
use crate::shown;

/// Restores the directory upload `row` by entries as `plan` says, fetching only the spans that
/// hold them, archive by archive (an increment's chain oldest first).
pub(crate) async fn restore(
    archiver: &dyn Archiver,
    ledger: &mut Ledger,
    row: &UploadRecord,
    plan: RowPlan,
    request: &RestoreRequest,
    known: Option<RestoreState>,
) -> Result<Outcome, RestoreFailure> {
    let Placement { dir, target, .. } = Placement::of(row, &request.destination)?;
    for (part_row, _) in &plan.parts {
        crate::restore::decode::check_identity(part_row, request)?;
    }
    let mut all_readable = true;
    for (part_row, part) in &plan.parts {
        let archive = archive_ref(part_row)?;
        all_readable &= readable(archiver, ledger, &archive, part, request, known.clone()).await?;
    }
    if !all_readable {
        return Ok(Outcome::Pending);
    }
    std::fs::create_dir_all(&dir).map_err(RestoreFailure::io("create", &dir))?;
    let entries = plan.entries();
    let (mut rejected, mut kept) = (0, Vec::new());
    for (part_row, part) in plan.parts {
        let extracted = restore_part(archiver, ledger, row, &part_row, part, &dir, request).await?;
        rejected += extracted.rejected.len();
        kept.extend(extracted.kept);
    }
    for name in &kept {
        tracing::warn!(
            "{}: kept, newer than the archived one (--force replaces it)",
            shown(dir.join(name))
        );
    }
    Ok(Outcome::Restored {
        path: target,
        rejected,
        kept: kept.len(),
        partial: plan.partial.then_some(entries),
    })
}

/// Fetches one archive's spans of a plan and extracts its entries under `row`'s name, then
/// forgets the retrievals it used.
async fn restore_part(
    archiver: &dyn Archiver,
    ledger: &mut Ledger,
    row: &UploadRecord,
    part_row: &UploadRecord,
    plan: super::PartialPlan,
    dir: &std::path::Path,
    request: &RestoreRequest,
) -> Result<crate::restore::extract::Extracted, RestoreFailure> {
    let archive = archive_ref(part_row)?;
    let file_key = match (&plan.layout.age_header, &request.identities) {
        (Some(header), Some(identities)) => Some(
            identities
                .file_key(header)
                .map_err(RestoreFailure::Decode)?,
        ),
        _ => None,
    };
    let retrieved = retrievals(archiver, &plan, request);
    let progress = crate::progress::or_none(&request.progress);
    let item = progress.item(&shown(&row.path), plan.fetched());
    let mut spans_file =
        crate::restore::download::partial_path(dir, &part_row.archive_id).into_os_string();
    spans_file.push(".spans");
    let spans_file = std::path::PathBuf::from(spans_file);
    let fetched = super::fetch_spans(archiver, &archive, &plan, &spans_file, &*item).await;
    let extracted = match fetched {
        Ok(spans) => extract(row, part_row, plan, spans, file_key, dir, request).await,
        Err(failure) => Err(failure),
    };
    let _ = std::fs::remove_file(&spans_file);
    let extracted = extracted?;
    for options in retrieved {
        let key = retrieval_key(&archive, &options);
        ledger.clear_retrieval(Some(&key))?;
    }
    Ok(extracted)
}

/// Asks for the retrievals restoring `row` as `plan` says needs, without waiting (see
/// [`crate::restore::request_retrieval`]): each span's alone where the destination retrieves
/// ranges, else each archive's whole.
pub(crate) async fn request(
    archiver: &dyn Archiver,
    ledger: &mut Ledger,
    plan: &RowPlan,
    request: &RestoreRequest,
) -> Result<RestoreState, RestoreFailure> {
    if !archiver.capabilities().needs_restore {
        return Ok(RestoreState::Ready);
    }
    let mut all_ready = true;
    for (part_row, part) in &plan.parts {
        let archive = archive_ref(part_row)?;
        for options in retrievals(archiver, part, request) {
            let state = ask(archiver, ledger, &archive, &options).await?;
            all_ready &= state == RestoreState::Ready;
        }
    }
    Ok(match all_ready {
        true => RestoreState::Ready,
        false => RestoreState::InProgress { request_id: None },
    })
}

/// The retrievals a partial restore asks for: one per span where the destination retrieves
/// ranges (billed by the range), else the whole archive's.
fn retrievals(
    archiver: &dyn Archiver,
    plan: &super::PartialPlan,
    request: &RestoreRequest,
) -> Vec<RestoreOptions> {
    let whole = vec![RestoreOptions {
        range: None,
        ..request.options.clone()
    }];
    if !archiver.capabilities().ranged_retrievals {
        return whole;
    }
    plan.spans
        .iter()
        .map(|span| RestoreOptions {
            range: Some(span.clone()),
            ..request.options.clone()
        })
        .collect()
}

/// Whether every retrieval the plan needs is done, waiting for them under `--wait`; `known`
/// is the state the request step found, which spares a check when it was ready already.
async fn readable(
    archiver: &dyn Archiver,
    ledger: &mut Ledger,
    archive: &glacier_backup_archiver::ArchiveRef,
    plan: &super::PartialPlan,
    request: &RestoreRequest,
    known: Option<RestoreState>,
) -> Result<bool, RestoreFailure> {
    if !archiver.capabilities().needs_restore || known == Some(RestoreState::Ready) {
        return Ok(true);
    }
    let mut all_ready = true;
    for options in retrievals(archiver, plan, request) {
        let wait = Wait {
            options: &options,
            deadline: request.deadline,
            progress: crate::progress::or_none(&request.progress),
        };
        all_ready &= wait_readable(archiver, ledger, archive, &wait, None).await?;
    }
    Ok(all_ready)
}

async fn extract(
    row: &UploadRecord,
    part_row: &UploadRecord,
    plan: super::PartialPlan,
    spans: super::fetch::Spans,
    file_key: Option<[u8; 16]>,
    dir: &std::path::Path,
    request: &RestoreRequest,
) -> Result<crate::restore::extract::Extracted, RestoreFailure> {
    let options = ExtractOptions {
        preserve_owners: crate::restore::is_root(),
        force: request.force,
        devices: request.devices && crate::restore::is_root(),
    };
    let top = crate::restore::place::final_name(row).into_os_string();
    let (row, dir) = (part_row.clone(), dir.to_path_buf());
    let work = move || {
        let tar = SelectedTar::new(plan, spans, file_key).map_err(|e| damaged(&row, e))?;
        extract_tar(std::io::BufReader::new(tar), &dir, &top, options).map_err(|e| {
            // age's authentication and zstd's checks fail as invalid or missing data.
            match e.source.kind() {
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof => {
                    damaged(&row, e.source)
                }
                _ => RestoreFailure::Extract(e),
            }
        })
    };
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        RestoreFailure::io("extract into", "the restore directory")(std::io::Error::other(e))
    })?
}

fn damaged(row: &UploadRecord, error: std::io::Error) -> RestoreFailure {
    crate::restore::decode::damaged(row, error)
}
