//! Putting one archive through an archiver while journaling its progress: the one owner of the
//! loop between [`Archiver::put`]'s events and the ledger, for backups (journaled by source
//! path) and copies (journaled by the archive copied) alike.
//!
//! Events are recorded as they come, before the upload is polled again (a part the service
//! confirmed is in the journal before the next one is sent), and those still queued when the
//! upload ends are recorded too: a failed upload kept for resuming must not lose its last
//! receipts. The backend's account of the archive is then checked against what was sent.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use glacier_backup_archiver::parts::PartChecker;
use glacier_backup_archiver::{
    ArchiveMeta, ArchiveRef, Archiver, Error as ArchiverError, OnFailure, PartStream, PutOptions,
    Resume, TreeHash, UploadEvent,
};

use crate::ledger::LedgerError;

/// Where an upload's progress is written as it happens, so that a stopped run can resume it.
pub trait UploadJournal {
    /// The backend started (or adopted) an upload under `token`.
    fn started(&mut self, token: &str) -> Result<(), LedgerError>;
    /// The service confirmed part `number` (from 1), with the backend's `receipt` for it.
    fn part_stored(&mut self, number: u64, receipt: &str) -> Result<(), LedgerError>;
    /// The upload is about to be completed as an archive of this size and tree hash: a run
    /// stopped before the answer asks to complete it again instead of uploading it twice.
    fn completing(&mut self, size: u64, tree_hash: TreeHash) -> Result<(), LedgerError>;
}

/// Why a journaled upload did not give an archive.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The backend (or the part stream) failed.
    #[error(transparent)]
    Archiver(ArchiverError),
    /// The journal could not be written.
    #[error(transparent)]
    Journal(LedgerError),
    /// The backend's account of the archive differs from what was sent.
    #[error(transparent)]
    Mismatch(Mismatch),
}

/// The backend's account of an archive differs from what was sent.
#[derive(Debug, thiserror::Error)]
#[error("the backend reports {what} {reported} but {sent} was sent; nothing was recorded")]
pub struct Mismatch {
    /// `size` or `tree hash`.
    pub what: &'static str,
    /// What the backend said.
    pub reported: String,
    /// What was sent.
    pub sent: String,
}

/// Stores `parts` as the archive `meta` through `archiver`, continuing `resume`. With a
/// `journal`, every event is written to it (and a failed upload is kept for a later run to
/// resume); without one, a failed upload is aborted. The archive returned was checked against
/// the size and tree hash of what was sent; one that an earlier run was completing (see
/// [`Resume::completing`]) against what that run recorded as it asked, since compressed and
/// encrypted bytes need not come out the same twice.
pub async fn put_journaled(
    archiver: &dyn Archiver,
    meta: &ArchiveMeta,
    resume: Option<Resume>,
    parts: PartStream,
    mut journal: Option<&mut dyn UploadJournal>,
) -> Result<ArchiveRef, UploadError> {
    let completing = resume.as_ref().and_then(|r| r.completing);
    // Held parts (an earlier run's, without their bytes) count by their length and tree hash.
    let sent = Arc::new(Mutex::new(
        PartChecker::new("engine", false).allowing_held(),
    ));
    let tally = sent.clone();
    let parts = parts
        .inspect(move |part| {
            if let Ok(part) = part {
                // The stream is built in order by construction, so this cannot fail.
                let _ = tally.lock().expect("tally lock").accept(part);
            }
        })
        .boxed();
    let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
    let options = PutOptions {
        resume,
        events: journal.is_some().then_some(events),
        on_failure: match journal {
            Some(_) => OnFailure::Keep,
            None => OnFailure::Abort,
        },
    };
    let mut record = |event: UploadEvent| -> Result<(), LedgerError> {
        let Some(journal) = journal.as_deref_mut() else {
            return Ok(());
        };
        match event {
            UploadEvent::Started(token) => journal.started(&token),
            UploadEvent::PartStored { number, receipt } => journal.part_stored(number, &receipt),
            UploadEvent::Completing {
                size,
                tree_hash,
                recorded,
            } => {
                journal.completing(size, tree_hash)?;
                recorded.done();
                Ok(())
            }
        }
    };
    let put = archiver.put(meta, &options, parts);
    tokio::pin!(put);
    let result = loop {
        tokio::select! {
            biased;
            Some(event) = received.recv() => record(event).map_err(UploadError::Journal)?,
            result = &mut put => break result,
        }
    };
    // What was reported while the upload ended is kept too, for the next run.
    while let Ok(event) = received.try_recv() {
        record(event).map_err(UploadError::Journal)?;
    }
    let stored = result.map_err(UploadError::Archiver)?;
    let sent = sent.lock().expect("tally lock");
    check_stored(&stored, &sent, completing)?;
    Ok(stored)
}

/// Checks the backend's account of an archive against what was sent, or, for an archive an
/// earlier run was completing, against what that run recorded.
fn check_stored(
    stored: &ArchiveRef,
    sent: &PartChecker,
    completing: Option<(u64, TreeHash)>,
) -> Result<(), UploadError> {
    let (size, tree_hash) = match completing {
        Some(recorded) if recorded == (stored.size, stored.tree_hash) => recorded,
        _ => (sent.size(), sent.tree_hash()),
    };
    if stored.size != size {
        return Err(UploadError::Mismatch(Mismatch {
            what: "size",
            reported: stored.size.to_string(),
            sent: size.to_string(),
        }));
    }
    if stored.tree_hash != tree_hash {
        return Err(UploadError::Mismatch(Mismatch {
            what: "tree hash",
            reported: stored.tree_hash.to_hex(),
            sent: tree_hash.to_hex(),
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use glacier_backup_archiver::{
        ByteRange, ByteStream, Capabilities, Listing, MemoryArchiver, RestoreState,
    };

    /// An archiver whose upload reports many stored parts at once and then fails, as a
    /// connection lost right after the service confirmed them would.
    #[derive(Debug)]
    struct FailsAfterParts {
        inner: MemoryArchiver,
        parts: u64,
    }

    #[async_trait]
    impl Archiver for FailsAfterParts {
        fn name(&self) -> &'static str {
            "chatty"
        }
        fn target(&self) -> String {
            "chatty".into()
        }
        fn capabilities(&self) -> Capabilities {
            self.inner.capabilities()
        }
        async fn check(&self) -> glacier_backup_archiver::Result<()> {
            Ok(())
        }
        async fn put(
            &self,
            _meta: &ArchiveMeta,
            options: &PutOptions,
            _parts: PartStream,
        ) -> glacier_backup_archiver::Result<ArchiveRef> {
            let events = options.events.as_ref().expect("a journaled upload");
            events
                .send(UploadEvent::Started("upload-1".into()))
                .unwrap();
            for number in 1..=self.parts {
                let receipt = format!("receipt-{number}");
                events
                    .send(UploadEvent::PartStored { number, receipt })
                    .unwrap();
            }
            assert_eq!(options.on_failure, OnFailure::Keep);
            Err(ArchiverError::Remote {
                backend: "chatty",
                message: "connection reset".into(),
                temporary: true,
                source: None,
            })
        }
        async fn restore_state(
            &self,
            archive: &ArchiveRef,
            request: Option<&str>,
        ) -> glacier_backup_archiver::Result<RestoreState> {
            self.inner.restore_state(archive, request).await
        }
        async fn get(
            &self,
            archive: &ArchiveRef,
            range: Option<ByteRange>,
        ) -> glacier_backup_archiver::Result<ByteStream> {
            self.inner.get(archive, range).await
        }
        async fn list(&self) -> glacier_backup_archiver::Result<Listing> {
            self.inner.list().await
        }
    }

    #[derive(Default)]
    struct Recorded {
        token: Option<String>,
        parts: Vec<(u64, String)>,
    }

    impl UploadJournal for Recorded {
        fn started(&mut self, token: &str) -> Result<(), LedgerError> {
            self.token = Some(token.to_owned());
            Ok(())
        }
        fn part_stored(&mut self, number: u64, receipt: &str) -> Result<(), LedgerError> {
            self.parts.push((number, receipt.to_owned()));
            Ok(())
        }
        fn completing(&mut self, _size: u64, _tree_hash: TreeHash) -> Result<(), LedgerError> {
            Ok(())
        }
    }

    /// Every event the upload sent before it failed is journaled, however many were still
    /// queued when it returned: the next run resumes from all of them.
    #[tokio::test]
    async fn events_still_queued_when_an_upload_fails_are_journaled() {
        let archiver = FailsAfterParts {
            inner: MemoryArchiver::new(),
            parts: 64,
        };
        let meta = glacier_backup_archiver::conformance::meta("f", 0);
        let mut journal = Recorded::default();
        let result = put_journaled(
            &archiver,
            &meta,
            None,
            futures::stream::empty().boxed(),
            Some(&mut journal),
        )
        .await;
        assert!(
            matches!(result, Err(UploadError::Archiver(_))),
            "{result:?}"
        );
        assert_eq!(journal.token.as_deref(), Some("upload-1"));
        let numbers: Vec<u64> = journal.parts.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, (1..=64).collect::<Vec<_>>());
    }
}
