//! Making cold archives readable: asking for a retrieval once (recorded in the ledger, so a
//! later run checks on it), and waiting for it.

use super::*;

/// Asks for a cold archive (or, with `options.range`, that range of it) to be made readable,
/// unless a retrieval is already under way: checks on a retrieval recorded in the ledger by an
/// earlier run first, and records a new one. Returns the archive's state.
pub(crate) async fn ask(
    archiver: &dyn Archiver,
    ledger: &mut Ledger,
    archive: &ArchiveRef,
    options: &RestoreOptions,
) -> Result<RestoreState, RestoreFailure> {
    let key = retrieval_key(archive, options);
    let id = key.as_str();
    let recorded = ledger.retrieval(Some(id))?;
    let earlier = recorded.as_ref().and_then(|r| r.request_id.as_deref());
    let state = state_now(archiver, archive, options, earlier).await?;
    match (&state, &recorded) {
        (RestoreState::NotRequested, earlier) => {
            if let Some(earlier) = earlier {
                tracing::info!(
                    "{id}: the retrieval asked for at {} is no longer available; asking again",
                    crate::display_time(earlier.requested_at)
                );
            }
            let state = archiver.request_restore(archive, options).await?;
            tracing::info!("{id}: retrieval requested ({} tier)", options.tier.as_str());
            record(ledger, id, &state, options.tier.as_str())?;
            return Ok(state);
        }
        (RestoreState::InProgress { .. }, Some(earlier)) => tracing::info!(
            "{id}: the retrieval asked for at {} ({} tier) is still in progress",
            crate::display_time(earlier.requested_at),
            earlier.tier
        ),
        (RestoreState::InProgress { .. }, None) => {
            tracing::info!("{id}: a retrieval is already in progress");
            record(ledger, id, &state, "unknown")?;
        }
        (RestoreState::Ready, _) => {}
    }
    Ok(state)
}

/// Makes the archive readable: `known` is its state from this run's request step (then nothing
/// is asked again); without it, a retrieval is asked for if none is under way. With a
/// deadline, polls (with backoff) until it is done or the time is up.
pub(super) async fn readable(
    archiver: &dyn Archiver,
    ledger: &mut Ledger,
    archive: &ArchiveRef,
    request: &RestoreRequest,
    known: Option<RestoreState>,
) -> Result<bool, RestoreFailure> {
    let wait = Wait {
        options: &request.options,
        deadline: request.deadline,
        progress: crate::progress::or_none(&request.progress),
    };
    wait_readable(archiver, ledger, archive, &wait, known).await
}

/// How to make an archive readable: the retrieval asked for, and how long to wait for it.
pub(crate) struct Wait<'a> {
    /// Tier and days.
    pub options: &'a RestoreOptions,
    /// Poll until then; `None`: ask and return.
    pub deadline: Option<Instant>,
    /// Where waiting is shown.
    pub progress: crate::progress::SharedProgress,
}

/// [`readable`], for any caller that reads cold archives (restore, migrate).
pub(crate) async fn wait_readable(
    archiver: &dyn Archiver,
    ledger: &mut Ledger,
    archive: &ArchiveRef,
    wait: &Wait<'_>,
    known: Option<RestoreState>,
) -> Result<bool, RestoreFailure> {
    if !archiver.capabilities().needs_restore {
        return Ok(true);
    }
    let state = match known {
        Some(state) => state,
        None => ask(archiver, ledger, archive, wait.options).await?,
    };
    if state == RestoreState::Ready {
        return Ok(true);
    }
    let Some(deadline) = wait.deadline else {
        return Ok(false);
    };
    let request_id = match &state {
        RestoreState::InProgress { request_id } => request_id.clone(),
        _ => None,
    };
    let limit = deadline.saturating_duration_since(std::time::Instant::now());
    let what = format!("{}: retrieval in progress", archive.archive_id);
    let report = |pause| wait.progress.waiting(&what, pause);
    let ready = crate::poll::with_backoff(limit, report, || async {
        let state = state_now(archiver, archive, wait.options, request_id.as_deref()).await?;
        Ok::<_, glacier_backup_archiver::Error>((state == RestoreState::Ready).then_some(()))
    })
    .await?;
    Ok(ready.is_some())
}

/// How the ledger knows a retrieval: by its archive id, and its range when only a range was
/// asked for (a partial restore from a vault); [`Ledger::clear_retrieval`] takes the same.
pub(crate) fn retrieval_key(archive: &ArchiveRef, options: &RestoreOptions) -> String {
    match &options.range {
        None => archive.archive_id.clone(),
        Some(range) => format!("{} bytes={}-{}", archive.archive_id, range.start, range.end),
    }
}

/// The archive's (or the asked range's) state, `earlier` the request an earlier run made.
async fn state_now(
    archiver: &dyn Archiver,
    archive: &ArchiveRef,
    options: &RestoreOptions,
    earlier: Option<&str>,
) -> Result<RestoreState, glacier_backup_archiver::Error> {
    match &options.range {
        None => archiver.restore_state(archive, earlier).await,
        Some(range) => archiver.range_state(archive, range, earlier).await,
    }
}

pub(super) fn record(
    ledger: &mut Ledger,
    archive_id: &str,
    state: &RestoreState,
    tier: &str,
) -> Result<(), RestoreFailure> {
    let request_id = match state {
        RestoreState::InProgress { request_id } => request_id.clone(),
        _ => None,
    };
    ledger
        .record_retrieval(&Retrieval {
            archive_id: Some(archive_id.to_owned()),
            request_id,
            tier: tier.to_owned(),
            requested_at: OffsetDateTime::now_utc(),
        })
        .map_err(RestoreFailure::from)
}
