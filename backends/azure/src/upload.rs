//! Azure's upload primitives for the archiver crate's one upload driver: one Put Blob for an
//! archive of one part, else blocks through object_store's multipart upload, committed by one
//! Put Block List that sets the tier and metadata.

use async_trait::async_trait;
use glacier_backup_archiver::keys::{index_key, indexed_by, key_for};
use glacier_backup_archiver::multipart::{
    MultipartStore, Opened, Resume, StoredPart, UploadLimits,
};
use glacier_backup_archiver::{shown, ArchiveMeta, ArchiveRef, Error, Part, Result, TreeHash};
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutMode, PutPayload};

use crate::settings::MAX_PARTS;
use crate::{errors, AzureArchiver, NAME};

/// An open block upload of this run.
pub struct BlockUpload {
    key: String,
    /// object_store numbers blocks in the order `put_part` is called, and the driver may start
    /// parts out of order: each part waits for its turn here.
    turn: tokio::sync::Mutex<Turn>,
    turn_changed: tokio::sync::Notify,
}

struct Turn {
    upload: Box<dyn MultipartUpload>,
    next: u64,
}

impl AzureArchiver {
    /// A key no blob has yet: `meta`'s, with `.1`, `.2`... appended if needed (a later upload
    /// of the same name never replaces an earlier archive). An index goes at its archive's key
    /// plus the index suffix, replacing any earlier index of that archive.
    async fn fresh_key(&self, meta: &ArchiveMeta) -> Result<String> {
        if let Some(archive) = &meta.index_of {
            return Ok(index_key(archive));
        }
        let base = format!("{}{}", self.settings.prefix, key_for(meta));
        let store = self.store()?;
        let mut key = base.clone();
        for n in 1..1000 {
            match store.head(&Self::path(&key)?).await {
                Ok(_) => key = format!("{base}.{n}"),
                Err(object_store::Error::NotFound { .. }) => return Ok(key),
                Err(e) => return Err(errors::map(&format!("checking key {key}"), e)),
            }
        }
        Err(Error::Remote {
            backend: NAME,
            message: format!("no free key near {base}"),
            temporary: false,
            source: None,
        })
    }

    /// The archives of `meta`'s source (the blobs beside where its next archive goes) without
    /// an index, older than [`UNINDEXED_GRACE`] by the run's clock (`meta.started_at`).
    pub(crate) async fn unindexed_of(&self, meta: &ArchiveMeta) -> Result<Vec<String>> {
        let key = format!("{}{}", self.settings.prefix, key_for(meta));
        let Some((folder, _)) = key.rsplit_once('/') else {
            return Ok(Vec::new());
        };
        let listed = match self
            .store()?
            .list_with_delimiter(Some(&Self::path(folder)?))
            .await
        {
            Ok(listed) => listed,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(errors::map(&format!("listing {folder}/"), e)),
        };
        let names: std::collections::HashSet<&str> =
            listed.objects.iter().map(|o| o.location.as_ref()).collect();
        let before = meta.started_at - UNINDEXED_GRACE;
        Ok(listed
            .objects
            .iter()
            .filter(|object| {
                let name = object.location.as_ref();
                let modified =
                    time::OffsetDateTime::from_unix_timestamp(object.last_modified.timestamp());
                indexed_by(name).is_none()
                    && !names.contains(index_key(name).as_str())
                    && modified.is_ok_and(|at| at <= before)
            })
            .map(|object| object.location.as_ref().to_owned())
            .collect())
    }
}

/// How old an archive without its index must be before a run deletes it as a killed run's.
pub(crate) const UNINDEXED_GRACE: time::Duration = time::Duration::hours(1);

#[async_trait]
impl MultipartStore for AzureArchiver {
    type Upload = BlockUpload;
    type Receipt = ();

    fn backend(&self) -> &'static str {
        NAME
    }

    fn limits(&self) -> UploadLimits {
        UploadLimits {
            max_parts: MAX_PARTS,
            concurrency: self.settings.concurrency,
            // Azure knows nothing of tree hashes: the parts' hashes are checked here.
            verify_part_hashes: true,
        }
    }

    /// One Put Blob that fails rather than replace a blob (If-None-Match), with the tree hash
    /// in its metadata.
    async fn put_whole(&self, meta: &ArchiveMeta, part: Part) -> Result<ArchiveRef> {
        let key = self.fresh_key(meta).await?;
        let mode = match meta.index_of {
            Some(_) => PutMode::Overwrite,
            None => PutMode::Create,
        };
        let options = object_store::PutOptions {
            mode,
            attributes: self.attributes(meta, Some(part.tree_hash)),
            ..Default::default()
        };
        let size = part.data.len() as u64;
        self.store()?
            .put_opts(&Self::path(&key)?, PutPayload::from(part.data), options)
            .await
            .map_err(|e| errors::map(&format!("uploading {key}"), e))?;
        Ok(ArchiveRef {
            archive_id: key,
            size,
            tree_hash: part.tree_hash,
            description: None,
        })
    }

    /// Always a new upload: object_store cannot continue one across runs here, so there is no
    /// token to report and nothing for the engine to record.
    async fn open(
        &self,
        meta: &ArchiveMeta,
        _part_size: u64,
        resume: Option<&Resume>,
    ) -> Result<Opened<BlockUpload>> {
        if resume.is_some() {
            tracing::info!(
                "{}: Azure uploads cannot be continued; starting over",
                shown(&meta.source_path)
            );
        }
        let key = self.fresh_key(meta).await?;
        let options = object_store::PutMultipartOptions {
            attributes: self.attributes(meta, None),
            ..Default::default()
        };
        let upload = self
            .store()?
            .put_multipart_opts(&Self::path(&key)?, options)
            .await
            .map_err(|e| errors::map(&format!("starting an upload of {key}"), e))?;
        Ok(Opened {
            upload: BlockUpload {
                key,
                turn: tokio::sync::Mutex::new(Turn { upload, next: 0 }),
                turn_changed: tokio::sync::Notify::new(),
            },
            newly_known: None,
        })
    }

    fn already_stored(&self, _upload: &BlockUpload, _part: &Part) -> Option<()> {
        None
    }

    async fn put_part(&self, upload: &BlockUpload, part: Part) -> Result<StoredPart<()>> {
        let number = part.index + 1;
        let mut payload = Some(PutPayload::from(part.data));
        let sending = loop {
            let changed = upload.turn_changed.notified();
            tokio::pin!(changed);
            // Registered before the turn is looked at, so a turn passed meanwhile wakes it.
            changed.as_mut().enable();
            {
                let mut turn = upload.turn.lock().await;
                if turn.next == part.index {
                    let payload = payload.take().expect("sent once");
                    let sending = turn.upload.put_part(payload);
                    turn.next += 1;
                    break sending;
                }
            }
            changed.await;
        };
        upload.turn_changed.notify_waiters();
        sending
            .await
            .map_err(|e| errors::map(&format!("uploading block {number} of {}", upload.key), e))?;
        Ok(StoredPart {
            receipt: (),
            note: None,
        })
    }

    /// Put Block List: the blob appears, in its tier and with its metadata, all at once.
    async fn complete(
        &self,
        upload: &BlockUpload,
        _receipts: Vec<()>,
        size: u64,
        tree_hash: TreeHash,
    ) -> Result<ArchiveRef> {
        upload
            .turn
            .lock()
            .await
            .upload
            .complete()
            .await
            .map_err(|e| errors::map(&format!("committing {}", upload.key), e))?;
        Ok(ArchiveRef {
            archive_id: upload.key.clone(),
            size,
            tree_hash,
            description: None,
        })
    }

    /// Nothing to free: Azure discards uncommitted blocks after 7 days.
    async fn abort(&self, upload: &BlockUpload) -> Result<()> {
        upload
            .turn
            .lock()
            .await
            .upload
            .abort()
            .await
            .map_err(|e| errors::map(&format!("giving up the upload of {}", upload.key), e))
    }
}
