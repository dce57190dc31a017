//! Stores archives as block blobs in an Azure Blob Storage container, in the Cool, Cold (or
//! Hot) access tier, through `object_store`.
//!
//! Keys are the S3 backend's: `<prefix><source path>/<UTC time>[.tar]`. The access tier and
//! the origin (metadata `gb_origin`, the line a Glacier description holds) are set when a blob
//! is committed, the only time object_store can set them. A blob stored in one request also
//! carries its tree hash (`gb_tree_hash`); a multipart blob's hash is known only once its last
//! block is sent, after its metadata is fixed, so it is kept with the archive's index
//! (`gb_indexed_tree_hash` on the index blob), which the engine writes beside every archive
//! here ([`Capabilities::needs_index`]).
//!
//! Uploads do not resume across runs: object_store commits a block list only with the blocks
//! its own upload sent, and its resumable low-level API cannot set a tier or metadata. A killed
//! upload's blocks stay uncommitted, invisible and unbilled as blobs, until Azure discards
//! them after 7 days; the next run sends the archive again.

#![warn(missing_docs)]

mod errors;
mod http;
mod settings;
mod upload;

use std::sync::Arc;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use glacier_backup_archiver::keys::indexed_by;
use glacier_backup_archiver::origin;
use glacier_backup_archiver::parts::verified_download;
use glacier_backup_archiver::settings::{Section, SettingsError};
use glacier_backup_archiver::Bandwidth;
use glacier_backup_archiver::{
    multipart, ArchiveMeta, ArchiveRef, Archiver, ByteRange, ByteStream, Capabilities, Error,
    InventoryState, ListedArchive, Listing, PartStream, PutOptions, RestoreState, Result, TreeHash,
};
use object_store::azure::{MicrosoftAzure, MicrosoftAzureBuilder};
use object_store::path::Path;
use object_store::{Attribute, Attributes, GetOptions, ObjectStore, ObjectStoreExt};

pub use settings::{AzureSettings, ACCESS_TIERS, SETTINGS};

/// Backend name.
pub const NAME: &str = "azure";
/// Metadata holding the origin line.
const ORIGIN_KEY: &str = "gb_origin";
/// Metadata holding the tree hash of a blob stored in one request.
const TREE_HASH_KEY: &str = "gb_tree_hash";
/// Metadata of an index blob holding its archive's tree hash.
const INDEXED_TREE_HASH_KEY: &str = "gb_indexed_tree_hash";

/// The Azure archiver.
pub struct AzureArchiver {
    settings: AzureSettings,
    store: tokio::sync::OnceCell<Arc<MicrosoftAzure>>,
    bandwidth: Bandwidth,
}

/// The client is left out: its configuration holds the credentials.
impl std::fmt::Debug for AzureArchiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureArchiver")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl AzureArchiver {
    /// An archiver for these settings. Nothing is contacted until it is used.
    pub fn new(settings: AzureSettings) -> Self {
        AzureArchiver {
            settings,
            store: tokio::sync::OnceCell::new(),
            bandwidth: Bandwidth::default(),
        }
    }

    /// Sends and receives within `bandwidth`'s limits.
    pub fn with_bandwidth(mut self, bandwidth: Bandwidth) -> Self {
        self.bandwidth = bandwidth;
        self
    }

    /// Builds the archiver from the `[azure]` section.
    pub fn from_section(section: &Section) -> Result<Self, SettingsError> {
        AzureSettings::from_section(section).map(Self::new)
    }

    /// The settings in use.
    pub fn settings(&self) -> &AzureSettings {
        &self.settings
    }

    /// The client, built on first use from the settings and Azure's standard environment.
    pub(crate) fn store(&self) -> Result<&Arc<MicrosoftAzure>> {
        if let Some(store) = self.store.get() {
            return Ok(store);
        }
        let settings = &self.settings;
        let mut builder =
            MicrosoftAzureBuilder::from_env().with_container_name(&settings.container);
        if let Some(account) = &settings.account {
            builder = builder.with_account(account);
        }
        if let Some(url) = &settings.endpoint_url {
            builder = builder
                .with_endpoint(url.clone())
                .with_allow_http(url.starts_with("http://"));
        }
        // Ours, not object_store's: see the http module.
        builder = builder.with_http_connector(http::Connector(self.bandwidth.clone()));
        let store = builder.build().map_err(|e| Error::Config {
            backend: NAME,
            message: format!(
                "cannot set up the Azure client ({e}); name the storage account in [azure] \
                 account or AZURE_STORAGE_ACCOUNT_NAME, and give credentials in \
                 AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_KEY or AZURE_CLIENT_ID / \
                 AZURE_CLIENT_SECRET / AZURE_TENANT_ID"
            ),
        })?;
        // Another task may have built one meanwhile; either serves.
        let _ = self.store.set(Arc::new(store));
        Ok(self.store.get().expect("set above"))
    }

    /// The blob path of a key.
    pub(crate) fn path(key: &str) -> Result<Path> {
        Path::parse(key).map_err(|e| Error::Remote {
            backend: NAME,
            message: format!("{key:?} cannot name a blob: {e}"),
            temporary: false,
            source: None,
        })
    }

    /// The tier a blob is stored in: the configured one, but Hot for an index, which is small
    /// and read whenever a lost ledger is rebuilt (a cooler tier would charge a retrieval fee
    /// and a minimum duration for a few KB).
    fn tier_for(&self, meta: &ArchiveMeta) -> &str {
        match meta.index_of {
            Some(_) => "Hot",
            None => &self.settings.access_tier,
        }
    }

    /// Tier and metadata for a new blob: its origin, and the tree hashes known when it starts.
    pub(crate) fn attributes(&self, meta: &ArchiveMeta, tree_hash: Option<TreeHash>) -> Attributes {
        let mut attributes = Attributes::new();
        attributes.insert(
            Attribute::StorageClass,
            self.tier_for(meta).to_owned().into(),
        );
        attributes.insert(
            Attribute::ContentType,
            "application/octet-stream".to_owned().into(),
        );
        let line = match &meta.index_of {
            Some(archive) => origin::index_description(archive),
            None => {
                let (line, shortfall) = origin::encode(meta);
                if shortfall == origin::Shortfall::Origin {
                    tracing::warn!(
                        "{}: the source path is too long to store with the blob; this archive \
                         is in the ledger, but a ledger rebuilt from the container will not \
                         know it",
                        glacier_backup_archiver::shown(&meta.source_path)
                    );
                }
                line
            }
        };
        let mut metadata = vec![(ORIGIN_KEY, line)];
        if let Some(hash) = tree_hash {
            metadata.push((TREE_HASH_KEY, hash.to_hex()));
        }
        if let Some(hash) = meta.indexed_tree_hash.filter(|_| meta.index_of.is_some()) {
            metadata.push((INDEXED_TREE_HASH_KEY, hash.to_hex()));
        }
        for (key, value) in metadata {
            attributes.insert(Attribute::Metadata(key.into()), value.into());
        }
        attributes
    }

    /// Size, origin and tree hashes of one blob, from its properties (a HEAD).
    async fn properties(&self, archive: ListedArchive) -> Result<Described> {
        let key = archive.archive_id.clone();
        let head = GetOptions {
            head: true,
            ..Default::default()
        };
        let result = self
            .store()?
            .get_opts(&Self::path(&key)?, head)
            .await
            .map_err(|e| {
                errors::map_missing(&format!("reading the properties of {key}"), &key, e)
            })?;
        let metadata = |name: &str| {
            result
                .attributes
                .get(&Attribute::Metadata(name.to_owned().into()))
                .map(|value| value.as_ref().to_owned())
        };
        let hash = |name: &str| metadata(name).and_then(|hex| hex.parse::<TreeHash>().ok());
        let description = metadata(ORIGIN_KEY);
        let listed = ListedArchive {
            size: result.meta.size,
            origin: description.as_deref().and_then(origin::decode),
            tree_hash: hash(TREE_HASH_KEY),
            description,
            ..archive
        };
        Ok(Described {
            indexed_tree_hash: hash(INDEXED_TREE_HASH_KEY),
            listed,
        })
    }

    /// An archive, its index included, as one listing entry with the index's id.
    fn listed(meta: object_store::ObjectMeta) -> ListedArchive {
        let key = meta.location.as_ref().to_owned();
        ListedArchive {
            created_at: time::OffsetDateTime::from_unix_timestamp(meta.last_modified.timestamp())
                .ok(),
            index_of: indexed_by(&key).map(str::to_owned),
            ..ListedArchive::new(key, meta.size)
        }
    }
}

/// A blob's listing entry with its properties, and, for an index, the tree hash it keeps for
/// its archive.
struct Described {
    listed: ListedArchive,
    indexed_tree_hash: Option<TreeHash>,
}

#[async_trait]
impl Archiver for AzureArchiver {
    fn name(&self) -> &'static str {
        NAME
    }

    /// `azure.<account>.<container>`, plus the prefix (encoded) when there is one.
    fn target(&self) -> String {
        let account = self.settings.account.clone().unwrap_or_else(|| {
            std::env::var("AZURE_STORAGE_ACCOUNT_NAME").unwrap_or_else(|_| "account".into())
        });
        let mut target = format!("azure.{account}.{}", self.settings.container);
        let prefix = self.settings.prefix.trim_end_matches('/');
        if !prefix.is_empty() {
            target.push('.');
            target.push_str(&glacier_backup_archiver::keys::encode_component(
                prefix.as_bytes(),
            ));
        }
        target
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
            needs_index: true,
        }
    }

    fn part_size(&self, size_hint: u64) -> u64 {
        self.settings.part_size_for(size_hint)
    }

    fn upload_concurrency(&self) -> usize {
        self.settings.concurrency
    }

    fn storage_class(&self) -> Option<String> {
        Some(self.settings.access_tier.clone())
    }

    async fn check(&self) -> Result<()> {
        let prefix = Self::path(&self.settings.prefix)?;
        self.store()?
            .list_with_delimiter(Some(&prefix))
            .await
            .map(drop)
            .map_err(|e| {
                errors::map(
                    &format!("checking container {:?}", self.settings.container),
                    e,
                )
            })
    }

    async fn put(
        &self,
        meta: &ArchiveMeta,
        options: &PutOptions,
        parts: PartStream,
    ) -> Result<ArchiveRef> {
        multipart::put(self, meta, options, parts).await
    }

    /// Also deletes the archive's index: its key is the archive's plus a suffix, so an index
    /// never outlives its archive, whoever deletes it. An index that cannot be deleted is
    /// warned about; the archive asked for is gone all the same.
    async fn delete(&self, archive: &ArchiveRef) -> Result<()> {
        let key = &archive.archive_id;
        let store = self.store()?;
        // An archive already gone may still have its index: a run stopped between the two.
        let deleted = store
            .delete(&Self::path(key)?)
            .await
            .map_err(|e| errors::map_missing(&format!("deleting {key}"), key, e));
        if matches!(deleted, Err(ref e) if !matches!(e, Error::NotFound { .. })) {
            return deleted;
        }
        if indexed_by(key).is_none() {
            let index = glacier_backup_archiver::keys::index_key(key);
            match store.delete(&Self::path(&index)?).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => tracing::warn!(
                    "{}; delete it by hand",
                    errors::map(&format!("deleted {key}, but not its index {index}"), e)
                ),
            }
        }
        deleted
    }

    /// A blob is committed before its index is stored; an hour is far more than the one
    /// request between the two.
    async fn unindexed(&self, meta: &ArchiveMeta) -> Result<Vec<String>> {
        self.unindexed_of(meta).await
    }

    async fn describe(&self, archive_id: &str) -> Result<ListedArchive> {
        let mut described = self
            .properties(ListedArchive::new(archive_id, 0))
            .await?
            .listed;
        if described.tree_hash.is_none() {
            let index = glacier_backup_archiver::keys::index_key(archive_id);
            described.tree_hash = match self.properties(ListedArchive::new(index, 0)).await {
                Ok(index) => index.indexed_tree_hash,
                Err(Error::NotFound { .. }) => None,
                Err(e) => return Err(e),
            };
        }
        Ok(described)
    }

    /// Every tier here is online: a blob reads at once.
    async fn restore_state(
        &self,
        archive: &ArchiveRef,
        _request: Option<&str>,
    ) -> Result<RestoreState> {
        self.store()?
            .head(&Self::path(&archive.archive_id)?)
            .await
            .map(|_| RestoreState::Ready)
            .map_err(|e| {
                errors::map_missing(
                    &format!("checking {}", archive.archive_id),
                    &archive.archive_id,
                    e,
                )
            })
    }

    async fn get(&self, archive: &ArchiveRef, range: Option<ByteRange>) -> Result<ByteStream> {
        let key = &archive.archive_id;
        let range = Error::check_range(NAME, key, range, archive.size)?;
        if range.is_empty() {
            return Ok(futures::stream::empty().boxed());
        }
        let whole = range.start == 0 && range.end == archive.size;
        let options = GetOptions {
            range: Some(range.clone().into()),
            ..Default::default()
        };
        let result = self
            .store()?
            .get_opts(&Self::path(key)?, options)
            .await
            .map_err(|e| errors::map_missing(&format!("downloading {key}"), key, e))?;
        let body = result
            .into_stream()
            .map_err(|e| errors::map("downloading", e))
            .boxed();
        Ok(verified_download(
            NAME,
            key.clone(),
            body,
            range.end - range.start,
            whole.then_some(archive.tree_hash),
        ))
    }

    /// Taken when the listing starts: a blob committed later is missing from it, and its row
    /// is newer than the listing. Tree hashes and origins come with [`Archiver::inventory`].
    async fn list(&self) -> Result<Listing> {
        let taken_at = time::OffsetDateTime::now_utc();
        let prefix = Self::path(&self.settings.prefix)?;
        let mut archives: Vec<ListedArchive> = self
            .store()?
            .list(Some(&prefix))
            .map_ok(Self::listed)
            .try_collect()
            .await
            .map_err(|e| errors::map("listing the container", e))?;
        // object_store lists whole path segments under the prefix; a prefix that ends inside a
        // segment (`backups-`) keeps only its own.
        archives.retain(|archive| archive.archive_id.starts_with(&self.settings.prefix));
        Ok(Listing::taken(archives, taken_at))
    }

    /// The listing, with each blob's origin and tree hash from its properties (a few HEADs in
    /// flight at once), a multipart archive's tree hash from its index's.
    async fn inventory(&self, _request: Option<&str>) -> Result<InventoryState> {
        let listing = self.list().await?;
        let describe_all = |entries: Vec<ListedArchive>| async move {
            futures::stream::iter(entries)
                .map(|entry| self.properties(entry))
                .buffered(8)
                .try_collect::<Vec<_>>()
                .await
        };
        let indexes = describe_all(listing.indexes).await?;
        let mut archives: Vec<ListedArchive> = describe_all(listing.archives)
            .await?
            .into_iter()
            .map(|described| described.listed)
            .collect();
        let kept_by_index: std::collections::HashMap<&str, TreeHash> = indexes
            .iter()
            .filter_map(|index| Some((index.listed.index_of.as_deref()?, index.indexed_tree_hash?)))
            .collect();
        for archive in archives.iter_mut().filter(|a| a.tree_hash.is_none()) {
            archive.tree_hash = kept_by_index.get(archive.archive_id.as_str()).copied();
        }
        Ok(InventoryState::Ready(Listing {
            archives,
            taken_at: listing.taken_at,
            incomplete: Vec::new(),
            indexes: indexes.into_iter().map(|index| index.listed).collect(),
        }))
    }
}
