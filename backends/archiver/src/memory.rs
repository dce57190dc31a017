//! An archiver that keeps archives in memory: for engine tests and as the reference the
//! conformance suite is checked against.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use crate::keys::archive_key;
use crate::parts::PartChecker;
use crate::{
    ArchiveMeta, ArchiveRef, Archiver, ByteRange, ByteStream, Capabilities, Error, ListedArchive,
    Listing, PartStream, RestoreState, Result,
};

const NAME: &str = "memory";

/// Archives held in a map; lost when dropped.
#[derive(Debug, Default)]
pub struct MemoryArchiver {
    archives: Mutex<BTreeMap<String, (Bytes, crate::TreeHash)>>,
}

impl MemoryArchiver {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lookup(&self, id: &str) -> Result<Bytes> {
        let archives = self.archives.lock().expect("memory archiver lock poisoned");
        archives
            .get(id)
            .map(|(data, _)| data.clone())
            .ok_or_else(|| Error::NotFound {
                backend: NAME,
                archive_id: id.to_owned(),
            })
    }
}

#[async_trait]
impl Archiver for MemoryArchiver {
    fn name(&self) -> &'static str {
        NAME
    }

    fn target(&self) -> String {
        "memory".into()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            needs_restore: false,
            resumable_uploads: false,
            listable: true,
            ranged_reads: true,
            ranged_retrievals: false,
            stores_empty_archives: true,
            batched_durability: false,
            needs_index: false,
        }
    }

    async fn check(&self) -> Result<()> {
        Ok(())
    }

    async fn put(
        &self,
        meta: &ArchiveMeta,
        _options: &crate::PutOptions,
        mut parts: PartStream,
    ) -> Result<ArchiveRef> {
        let mut checker = PartChecker::new(NAME, true);
        let mut data = BytesMut::new();
        while let Some(part) = parts.next().await {
            let part = part?;
            checker.accept(&part)?;
            data.extend_from_slice(&part.data);
        }
        let tree_hash = checker.tree_hash();
        let base = match &meta.index_of {
            Some(archive) => crate::keys::index_key(archive),
            None => archive_key(
                &meta.source_path,
                meta.started_at,
                meta.kind == crate::SourceKind::Directory,
            ),
        };
        let mut archives = self.archives.lock().expect("memory archiver lock poisoned");
        let mut id = base.clone();
        let mut n = 1;
        while archives.contains_key(&id) {
            id = format!("{base}.{n}");
            n += 1;
        }
        archives.insert(id.clone(), (data.freeze(), tree_hash));
        Ok(ArchiveRef {
            archive_id: id,
            size: checker.size(),
            tree_hash,
            description: None,
        })
    }

    async fn restore_state(
        &self,
        archive: &ArchiveRef,
        _request: Option<&str>,
    ) -> Result<RestoreState> {
        self.lookup(&archive.archive_id)?;
        Ok(RestoreState::Ready)
    }

    async fn get(&self, archive: &ArchiveRef, range: Option<ByteRange>) -> Result<ByteStream> {
        let data = self.lookup(&archive.archive_id)?;
        let len = data.len() as u64;
        let range = Error::check_range(NAME, &archive.archive_id, range, len)?;
        let slice = data.slice(range.start as usize..range.end as usize);
        Ok(futures::stream::iter([Ok(slice)]).boxed())
    }

    async fn delete(&self, archive: &ArchiveRef) -> Result<()> {
        let mut archives = self.archives.lock().expect("memory archiver lock poisoned");
        match archives.remove(&archive.archive_id) {
            Some(_) => Ok(()),
            None => Err(Error::NotFound {
                backend: NAME,
                archive_id: archive.archive_id.clone(),
            }),
        }
    }

    async fn list(&self) -> Result<Listing> {
        let archives = self.archives.lock().expect("memory archiver lock poisoned");
        Ok(Listing {
            archives: archives
                .iter()
                .map(|(id, (data, hash))| ListedArchive {
                    tree_hash: Some(*hash),
                    origin: crate::origin::from_key(id),
                    index_of: crate::keys::indexed_by(id).map(str::to_owned),
                    ..ListedArchive::new(id.clone(), data.len() as u64)
                })
                .collect(),
            taken_at: None,
            incomplete: Vec::new(),
            indexes: Vec::new(),
        }
        .split_indexes())
    }
}

#[cfg(all(test, feature = "conformance"))]
mod tests {
    #[tokio::test]
    async fn memory_archiver_passes_the_conformance_suite() {
        crate::conformance::run_all(&super::MemoryArchiver::new()).await;
    }
}
