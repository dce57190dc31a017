//! One `Setup` for every test that needs more than a sandbox: the fake Glacier with a vault
//! `photos`, moto with a bucket `cold`, Azurite with a container `cold`, each with the config
//! that reaches it.

use std::path::PathBuf;
use std::sync::OnceLock;

use fake_glacier::FakeGlacier;

use super::config::TestConfig;
use super::moto::Moto;
use super::sandbox::Sandbox;

/// The vault the fake starts with.
pub const VAULT: &str = "photos";
/// The bucket moto starts with.
pub const BUCKET: &str = "cold";
/// The container Azurite starts with.
#[cfg(feature = "azure")]
pub const CONTAINER: &str = "cold";

pub struct Setup {
    pub sb: Sandbox,
    fake: Option<FakeGlacier>,
    moto: Option<Moto>,
    #[cfg(feature = "azure")]
    azurite: Option<azurite::Azurite>,
    /// Made on first use only: a test running on its own runtime never drops this one inside it.
    runtime: OnceLock<tokio::runtime::Runtime>,
    #[cfg(feature = "s3")]
    s3: OnceLock<aws_sdk_s3::Client>,
}

impl std::ops::Deref for Setup {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.sb
    }
}

impl Setup {
    /// A sandbox and the fake Glacier with the vault [`VAULT`].
    pub fn with_fake() -> Self {
        let fake = FakeGlacier::start();
        fake.create_vault(VAULT);
        Setup {
            fake: Some(fake),
            ..Self::bare()
        }
    }

    fn bare() -> Self {
        Setup {
            sb: Sandbox::new(),
            fake: None,
            moto: None,
            #[cfg(feature = "azure")]
            azurite: None,
            runtime: OnceLock::new(),
            #[cfg(feature = "s3")]
            s3: OnceLock::new(),
        }
    }

    /// A sandbox and Azurite with the container [`CONTAINER`].
    #[cfg(feature = "azure")]
    pub fn with_azurite() -> Self {
        let azurite = azurite::Azurite::start();
        azurite.create_container(CONTAINER);
        Setup {
            azurite: Some(azurite),
            ..Self::bare()
        }
    }

    #[cfg(feature = "azure")]
    pub fn azurite(&self) -> &azurite::Azurite {
        self.azurite.as_ref().expect("a Setup with Azurite")
    }

    /// The config for Azurite's container, in `tier`, reached at `endpoint` (Azurite's own, or
    /// a proxy's in front of it).
    #[cfg(feature = "azure")]
    pub fn container(&self, tier: &str) -> TestConfig {
        TestConfig::container(&self.azurite().endpoint, CONTAINER, tier)
    }

    /// Every blob in Azurite's container, by name, as Azure's own client reads it.
    #[cfg(feature = "azure")]
    pub fn blobs(&self) -> std::collections::BTreeMap<String, azurite::BlobProperties> {
        self.azurite().blobs(CONTAINER)
    }

    /// The ledger of runs against Azurite's container.
    #[cfg(feature = "azure")]
    pub fn container_ledger(&self, config: &std::path::Path) -> rusqlite::Connection {
        let ledger =
            config.with_file_name(format!("azure.{}.{CONTAINER}.sqlite3", azurite::ACCOUNT));
        rusqlite::Connection::open(ledger).unwrap()
    }

    /// Adds moto with the bucket [`BUCKET`].
    #[cfg(feature = "s3")]
    pub fn and_moto(mut self) -> Self {
        let moto = Moto::start();
        self.moto = Some(moto);
        self.block_on(self.s3().create_bucket().bucket(BUCKET).send())
            .unwrap();
        self
    }

    pub fn fake(&self) -> &FakeGlacier {
        self.fake.as_ref().expect("a Setup with the fake Glacier")
    }

    pub fn moto(&self) -> &Moto {
        self.moto.as_ref().expect("a Setup with moto")
    }

    /// The config for the fake's vault.
    pub fn vault(&self) -> TestConfig {
        TestConfig::vault(&self.fake().endpoint, VAULT)
    }

    /// The config for moto's bucket.
    pub fn bucket(&self) -> TestConfig {
        TestConfig::bucket(&self.moto().endpoint, BUCKET)
    }

    /// Writes `config/vault.toml`: the fake's vault, then `paths` (path sections in TOML).
    pub fn vault_config(&self, paths: &str) -> PathBuf {
        self.vault()
            .raw(paths)
            .write(&self.path("config/vault.toml"))
    }

    /// Writes `config/s3.toml`: moto's bucket, then `paths` (path sections in TOML).
    pub fn bucket_config(&self, paths: &str) -> PathBuf {
        self.bucket().raw(paths).write(&self.path("config/s3.toml"))
    }

    /// The ledger of [`Setup::vault_config`]'s runs.
    pub fn vault_ledger(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.path("config/glacier.photos.sqlite3")).unwrap()
    }

    /// The ledger of [`Setup::bucket_config`]'s runs.
    pub fn bucket_ledger(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.path("config/s3.cold.sqlite3")).unwrap()
    }

    /// Runs `future` to its end on this setup's runtime.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime
            .get_or_init(|| tokio::runtime::Runtime::new().unwrap())
            .block_on(future)
    }

    /// An S3 client for moto.
    #[cfg(feature = "s3")]
    pub fn s3(&self) -> &aws_sdk_s3::Client {
        self.s3
            .get_or_init(|| self.block_on(super::moto::s3_client(&self.moto().endpoint)))
    }

    /// Every archive in the bucket (its objects but the indexes beside directory archives):
    /// key and size.
    #[cfg(feature = "s3")]
    pub fn objects(&self) -> Vec<(String, u64)> {
        let mut objects = self.all_objects();
        objects.retain(|(key, _)| !key.ends_with(".gbindex"));
        objects
    }

    /// The indexes in the bucket (keys ending `.gbindex`): key and size.
    #[cfg(feature = "s3")]
    pub fn indexes(&self) -> Vec<(String, u64)> {
        let mut objects = self.all_objects();
        objects.retain(|(key, _)| key.ends_with(".gbindex"));
        objects
    }

    #[cfg(feature = "s3")]
    fn all_objects(&self) -> Vec<(String, u64)> {
        self.block_on(async {
            let listed = self
                .s3()
                .list_objects_v2()
                .bucket(BUCKET)
                .send()
                .await
                .unwrap();
            listed
                .contents()
                .iter()
                .map(|o| (o.key().unwrap().to_owned(), o.size().unwrap() as u64))
                .collect()
        })
    }

    /// Sets an object's tree-hash tag, as someone with write access to the bucket could.
    #[cfg(feature = "s3")]
    pub fn tag_tree_hash(&self, key: &str, value: &str) {
        let tag = aws_sdk_s3::types::Tag::builder()
            .key("gb-tree-hash")
            .value(value)
            .build()
            .unwrap();
        let tagging = aws_sdk_s3::types::Tagging::builder()
            .tag_set(tag)
            .build()
            .unwrap();
        self.block_on(async {
            self.s3()
                .put_object_tagging()
                .bucket(BUCKET)
                .key(key)
                .tagging(tagging)
                .send()
                .await
                .unwrap();
        });
    }

    #[cfg(feature = "s3")]
    pub fn object(&self, key: &str) -> Vec<u8> {
        self.block_on(async {
            let got = self
                .s3()
                .get_object()
                .bucket(BUCKET)
                .key(key)
                .send()
                .await
                .unwrap();
            got.body.collect().await.unwrap().into_bytes().to_vec()
        })
    }
}
