//! The Azure backend against Azurite on 127.0.0.1: the conformance suite every backend passes,
//! and what Azure's own client library reads of the blobs it stores.

use azurite::Azurite;
use glacier_backup_archiver::conformance;
use glacier_backup_archiver::settings::Section;
use glacier_backup_archiver::Archiver;
use glacier_backup_azure::AzureArchiver;

fn archiver(azurite: &Azurite, container: &str, tier: &str) -> AzureArchiver {
    // Credentials come from Azure's standard environment only.
    std::env::set_var("AZURE_STORAGE_ACCOUNT_KEY", azurite::KEY);
    let section = Section::from_strings(
        "azure",
        &[
            ("account", azurite::ACCOUNT),
            ("container", container),
            ("prefix", "backups/"),
            ("access_tier", tier),
            ("endpoint_url", &azurite.endpoint),
        ],
    );
    AzureArchiver::from_section(&section).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn passes_the_conformance_suite_in_the_cool_and_cold_tiers() {
    let azurite = Azurite::start();
    for (container, tier) in [("cool-archives", "Cool"), ("cold-archives", "Cold")] {
        azurite.create_container(container);
        let azure = archiver(&azurite, container, tier);
        conformance::run_all(&azure).await;
        // Every archive the suite stored is in the tier asked for; indexes are Hot.
        let blobs = azurite.blobs(container);
        assert!(blobs.len() > 5, "{blobs:?}");
        for (name, properties) in blobs {
            let expected = if name.ends_with(glacier_backup_archiver::keys::INDEX_SUFFIX) {
                "Hot"
            } else {
                tier
            };
            assert_eq!(properties.tier, expected, "{name}");
            assert!(
                properties.metadata.contains_key("gb_origin"),
                "{name}: {properties:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_container_is_a_config_error_that_names_it() {
    let azurite = Azurite::start();
    let azure = archiver(&azurite, "never-made", "Cold");
    let err = azure.check().await.unwrap_err();
    assert!(
        matches!(err, glacier_backup_archiver::Error::Config { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("[azure] container"), "{err}");
}

/// With a bandwidth limit, requests go through the backend's own paced client instead of
/// object_store's: every call the suite makes (blocks, lists, ranged reads, refusals) works
/// there too, and every body, both ways, passed through the limits.
#[tokio::test(flavor = "multi_thread")]
async fn passes_the_conformance_suite_through_the_limited_client() {
    use glacier_backup_archiver::bandwidth::Throttle;
    let azurite = Azurite::start();
    azurite.create_container("limited");
    let throttle = || Throttle::per_second(512 << 20);
    let bandwidth = glacier_backup_archiver::Bandwidth {
        upload: throttle(),
        download: throttle(),
    };
    let azure = archiver(&azurite, "limited", "Cool").with_bandwidth(bandwidth.clone());
    conformance::run_all(&azure).await;
    let stored: u64 = azurite.blobs("limited").values().map(|b| b.size).sum();
    assert!(
        bandwidth.upload.bytes_through() >= stored,
        "sent {} through the limit, {stored} stored",
        bandwidth.upload.bytes_through()
    );
    assert!(
        bandwidth.download.bytes_through() > 0,
        "reads went through the limit"
    );
}
