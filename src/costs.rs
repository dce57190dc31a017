//! What cold storage will charge, estimated before paying: retrieval for a restore plan, storage
//! and requests for a backup's pending uploads. Prices are a built-in table of AWS us-east-1 and
//! Azure East US (LRS) list prices (dated below), overridable key by key in a `[prices]` config
//! section for other regions or newer prices. Estimates, in US dollars; the bill is what the
//! provider says.

use glacier_backup_archiver::settings::{Section, SettingsError};
use glacier_backup_archiver::RestoreTier;

/// When the built-in table was taken from aws.amazon.com/s3/pricing and /glacier/pricing
/// (us-east-1, first pricing tier) and azure.microsoft.com/pricing/details/storage/blobs (East
/// US, LRS).
pub const PRICES_AS_OF: &str = "2025-11";

/// Where an archive is stored, as prices tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriceClass {
    /// An S3 Glacier vault archive.
    Vault,
    /// S3 GLACIER (Flexible Retrieval).
    Glacier,
    /// S3 DEEP_ARCHIVE.
    DeepArchive,
    /// S3 GLACIER_IR (Instant Retrieval: no restore step, a per-GB read charge).
    GlacierIr,
    /// Azure Blob's Cool tier (online, a per-GB read charge, 30 days at least).
    AzureCool,
    /// Azure Blob's Cold tier (online, a per-GB read charge, 90 days at least).
    AzureCold,
}

impl PriceClass {
    /// The class of a backend's storage: `vault` for a Glacier vault, or an S3 storage class.
    /// `None` for what costs nothing to read (a local directory, S3 STANDARD and the like).
    pub fn of(storage_class: &str) -> Option<Self> {
        match storage_class.to_ascii_uppercase().as_str() {
            "VAULT" => Some(PriceClass::Vault),
            "GLACIER" => Some(PriceClass::Glacier),
            "DEEP_ARCHIVE" => Some(PriceClass::DeepArchive),
            "GLACIER_IR" => Some(PriceClass::GlacierIr),
            // Azure's access tiers, as the azure backend names them (`Cool`, `Cold`).
            "COOL" => Some(PriceClass::AzureCool),
            "COLD" => Some(PriceClass::AzureCold),
            _ => None,
        }
    }

    /// How the class is named in `[prices]` keys.
    fn key(self) -> &'static str {
        match self {
            PriceClass::Vault => "vault",
            PriceClass::Glacier => "glacier",
            PriceClass::DeepArchive => "deep_archive",
            PriceClass::GlacierIr => "glacier_ir",
            PriceClass::AzureCool => "azure_cool",
            PriceClass::AzureCold => "azure_cold",
        }
    }

    /// Days an archive is billed for at least (deleting or replacing it earlier is charged
    /// pro rata for the rest).
    pub fn minimum_days(self) -> u32 {
        match self {
            PriceClass::DeepArchive => 180,
            PriceClass::AzureCool => 30,
            _ => 90,
        }
    }

    /// Bytes billed per archive on top of its size (GLACIER_IR: the size billed at least).
    fn overhead(self) -> (u64, u64) {
        const KIB: u64 = 1024;
        match self {
            // 32 KiB of index at the class's rate, and 8 KiB at STANDARD's.
            PriceClass::Glacier | PriceClass::DeepArchive => (32 * KIB, 8 * KIB),
            PriceClass::Vault => (32 * KIB, 0),
            PriceClass::GlacierIr | PriceClass::AzureCool | PriceClass::AzureCold => (0, 0),
        }
    }

    /// Whose list prices the built-in table holds for this class, for messages.
    pub fn price_source(self) -> &'static str {
        match self {
            PriceClass::AzureCool | PriceClass::AzureCold => "Azure East US LRS",
            _ => "us-east-1",
        }
    }

    /// Whether archives are read directly, at one price whatever retrieval tier is asked for
    /// (no restore step).
    pub fn online(self) -> bool {
        matches!(
            self,
            PriceClass::GlacierIr | PriceClass::AzureCool | PriceClass::AzureCold
        )
    }

    /// The smallest size billed per archive.
    pub fn minimum_billable(self) -> u64 {
        match self {
            PriceClass::GlacierIr => 128 * 1024,
            _ => 0,
        }
    }
}

const CLASSES: [PriceClass; 6] = [
    PriceClass::Vault,
    PriceClass::Glacier,
    PriceClass::DeepArchive,
    PriceClass::GlacierIr,
    PriceClass::AzureCool,
    PriceClass::AzureCold,
];
const TIERS: [RestoreTier; 3] = [
    RestoreTier::Expedited,
    RestoreTier::Standard,
    RestoreTier::Bulk,
];

/// Prices in US dollars.
#[derive(Debug, Clone, PartialEq)]
pub struct Prices {
    values: std::collections::BTreeMap<String, f64>,
}

impl Prices {
    /// AWS us-east-1 list prices as of [`PRICES_AS_OF`].
    pub fn builtin() -> Self {
        let mut values = std::collections::BTreeMap::new();
        let mut set = |key: String, value: f64| {
            values.insert(key, value);
        };
        // Storage, per GB-month.
        set("storage_vault".into(), 0.0036);
        set("storage_glacier".into(), 0.0036);
        set("storage_deep_archive".into(), 0.00099);
        set("storage_glacier_ir".into(), 0.004);
        set("storage_standard".into(), 0.023);
        // Azure Blob, East US, LRS (azure.microsoft.com/pricing/details/storage/blobs).
        set("storage_azure_cool".into(), 0.0152);
        set("storage_azure_cold".into(), 0.0036);
        // Uploads (PUT, UploadArchive, each multipart request), per 1,000 requests.
        set("upload_requests_vault".into(), 0.05);
        set("upload_requests_glacier".into(), 0.03);
        set("upload_requests_deep_archive".into(), 0.05);
        set("upload_requests_glacier_ir".into(), 0.02);
        // Azure's write operations (Put Blob, Put Block, Put Block List), per 1,000.
        set("upload_requests_azure_cool".into(), 0.01);
        set("upload_requests_azure_cold".into(), 0.018);
        // Retrieval per GB, and per 1,000 retrieval requests, by tier.
        for (class, tier, per_gb, per_1000) in [
            ("vault", "expedited", 0.03, 10.0),
            ("vault", "standard", 0.01, 0.05),
            ("vault", "bulk", 0.0025, 0.025),
            ("glacier", "expedited", 0.03, 10.0),
            ("glacier", "standard", 0.01, 0.05),
            ("glacier", "bulk", 0.0, 0.0),
            ("deep_archive", "standard", 0.02, 0.10),
            ("deep_archive", "bulk", 0.0025, 0.025),
            // No restore step: each read is charged, whatever the tier asked.
            ("glacier_ir", "expedited", 0.03, 0.01),
            ("glacier_ir", "standard", 0.03, 0.01),
            ("glacier_ir", "bulk", 0.03, 0.01),
            // Online tiers: each read is charged, whatever the tier asked.
            ("azure_cool", "expedited", 0.01, 0.001),
            ("azure_cool", "standard", 0.01, 0.001),
            ("azure_cool", "bulk", 0.01, 0.001),
            ("azure_cold", "expedited", 0.03, 0.01),
            ("azure_cold", "standard", 0.03, 0.01),
            ("azure_cold", "bulk", 0.03, 0.01),
        ] {
            set(format!("retrieval_{class}_{tier}"), per_gb);
            set(format!("retrieval_requests_{class}_{tier}"), per_1000);
        }
        // Data transfer out to the internet, per GB.
        set("transfer_out".into(), 0.09);
        Prices { values }
    }

    /// The built-in prices with the keys of `[prices]` replacing theirs. Every key must be one
    /// of the table's, and every value a number of dollars.
    pub fn with_overrides(section: Option<&Section>) -> Result<Self, SettingsError> {
        let mut prices = Self::builtin();
        let Some(section) = section else {
            return Ok(prices);
        };
        let known: Vec<&str> = prices.values.keys().map(String::as_str).collect();
        section.reject_unknown(&known)?;
        let keys: Vec<String> = prices.values.keys().cloned().collect();
        for key in keys {
            if let Some(value) = section.non_negative(&key)? {
                prices.values.insert(key, value);
            }
        }
        Ok(prices)
    }

    fn get(&self, key: &str) -> f64 {
        self.values.get(key).copied().unwrap_or(0.0)
    }

    /// Whether `class` offers `tier` (DEEP_ARCHIVE has no expedited retrievals).
    pub fn offers(&self, class: PriceClass, tier: RestoreTier) -> bool {
        self.values
            .contains_key(&format!("retrieval_{}_{}", class.key(), tier.as_str()))
    }

    /// Retrieving `archives` archives of `bytes` in all at `tier`, and transferring them out.
    pub fn retrieval(
        &self,
        class: PriceClass,
        tier: RestoreTier,
        archives: u64,
        bytes: u64,
    ) -> Option<Retrieval> {
        if !self.offers(class, tier) {
            return None;
        }
        let gb = gigabytes(bytes);
        let (class, tier) = (class.key(), tier.as_str());
        Some(Retrieval {
            retrieval: gb * self.get(&format!("retrieval_{class}_{tier}")),
            requests: archives as f64 / 1000.0
                * self.get(&format!("retrieval_requests_{class}_{tier}")),
            transfer: gb * self.get("transfer_out"),
        })
    }

    /// Transferring `bytes` out to this machine (reading from a class with no retrieval
    /// charge, such as S3 STANDARD).
    pub fn transfer_out(&self, bytes: u64) -> f64 {
        gigabytes(bytes) * self.get("transfer_out")
    }

    /// What storing archives of these sizes adds to the monthly bill, and the upload requests
    /// they take (`requests`: one per single-part archive, parts + 2 per multipart one).
    pub fn storage(&self, class: PriceClass, sizes: &[u64], requests: u64) -> Storage {
        let (own, standard) = class.overhead();
        let mut billed = 0u64;
        let mut billed_standard = 0u64;
        for &size in sizes {
            billed += size.max(class.minimum_billable()) + own;
            billed_standard += standard;
        }
        Storage {
            monthly: gigabytes(billed) * self.get(&format!("storage_{}", class.key()))
                + gigabytes(billed_standard) * self.get("storage_standard"),
            requests: requests as f64 / 1000.0
                * self.get(&format!("upload_requests_{}", class.key())),
        }
    }

    /// What deleting archives before `class`'s minimum duration costs: the storage of the days
    /// left, charged at once (AWS's pro-rated early deletion fee). `archives`: each one's size
    /// and age in days; those past the minimum cost nothing.
    pub fn early_deletion(&self, class: PriceClass, archives: &[(u64, f64)]) -> f64 {
        let (own, _) = class.overhead();
        let rate = self.get(&format!("storage_{}", class.key()));
        let minimum = f64::from(class.minimum_days());
        archives
            .iter()
            .map(|&(size, age_days)| {
                let days_left = (minimum - age_days.max(0.0)).max(0.0);
                let billed = size.max(class.minimum_billable()) + own;
                gigabytes(billed) * rate * days_left / 30.0
            })
            .sum()
    }

    /// Every class and tier the table prices, for comparison lines.
    pub fn tiers() -> &'static [RestoreTier] {
        &TIERS
    }

    /// Every class the table prices.
    pub fn classes() -> &'static [PriceClass] {
        &CLASSES
    }
}

/// An estimated retrieval, in US dollars.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retrieval {
    /// Per-GB retrieval charge.
    pub retrieval: f64,
    /// Per-request charge.
    pub requests: f64,
    /// Data transfer out to the internet.
    pub transfer: f64,
}

impl Retrieval {
    /// All of it.
    pub fn total(&self) -> f64 {
        self.retrieval + self.requests + self.transfer
    }
}

/// An estimated storage addition, in US dollars.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Storage {
    /// Added to every month's storage bill.
    pub monthly: f64,
    /// Once, for the upload requests.
    pub requests: f64,
}

/// Bytes in GB as AWS bills them (2^30 bytes).
fn gigabytes(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

/// Dollars as people read them: cents, or fractions of a cent when that small.
pub fn dollars(amount: f64) -> String {
    if amount == 0.0 {
        "$0.00".into()
    } else if amount < 0.01 {
        format!("${amount:.4}")
    } else {
        format!("${amount:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn a_standard_vault_retrieval_is_priced_per_gb_per_request_and_out() {
        let prices = Prices::builtin();
        let r = prices
            .retrieval(PriceClass::Vault, RestoreTier::Standard, 2000, 100 * GIB)
            .unwrap();
        // 100 GB x $0.01, 2,000 requests x $0.05 / 1,000, 100 GB x $0.09 out.
        assert!((r.retrieval - 1.0).abs() < 1e-9, "{r:?}");
        assert!((r.requests - 0.1).abs() < 1e-9, "{r:?}");
        assert!((r.transfer - 9.0).abs() < 1e-9, "{r:?}");
        assert!((r.total() - 10.1).abs() < 1e-9);
    }

    /// A vault archive deleted at 30 days pays the 60 days left of its 90 (a month is 30
    /// days); one past 90 days, or DEEP_ARCHIVE's 180, pays nothing.
    #[test]
    fn early_deletion_charges_the_days_left_of_the_minimum() {
        let prices = Prices::builtin();
        let kib = 1.0 / (1024.0 * 1024.0);
        let young = prices.early_deletion(PriceClass::Vault, &[(GIB, 30.0)]);
        let expected = (1.0 + 32.0 * kib) * 0.0036 * 2.0;
        assert!((young - expected).abs() < 1e-12, "{young}");
        assert_eq!(
            prices.early_deletion(PriceClass::Vault, &[(GIB, 91.0)]),
            0.0
        );
        let deep = prices.early_deletion(PriceClass::DeepArchive, &[(GIB, 120.0), (GIB, 200.0)]);
        let expected = (1.0 + 32.0 * kib) * 0.00099 * 2.0;
        assert!((deep - expected).abs() < 1e-12, "{deep}");
    }

    #[test]
    fn deep_archive_has_no_expedited_tier() {
        let prices = Prices::builtin();
        assert!(prices
            .retrieval(PriceClass::DeepArchive, RestoreTier::Expedited, 1, GIB)
            .is_none());
        assert!(prices.offers(PriceClass::DeepArchive, RestoreTier::Bulk));
    }

    #[test]
    fn storage_counts_per_archive_overhead_and_minimum_sizes() {
        let prices = Prices::builtin();
        // One 1 KiB object in GLACIER_IR is billed as 128 KiB.
        let ir = prices.storage(PriceClass::GlacierIr, &[1024], 1);
        let expected = 128.0 / (1024.0 * 1024.0) * 0.004;
        assert!((ir.monthly - expected).abs() < 1e-12, "{ir:?}");
        assert!((ir.requests - 0.00002).abs() < 1e-12);
        // GLACIER: 32 KiB at the class's rate and 8 KiB at STANDARD's on top.
        let g = prices.storage(PriceClass::Glacier, &[GIB], 3);
        let kib = 1.0 / (1024.0 * 1024.0);
        let expected = (1.0 + 32.0 * kib) * 0.0036 + 8.0 * kib * 0.023;
        assert!((g.monthly - expected).abs() < 1e-12, "{g:?}");
    }

    #[test]
    fn a_prices_section_overrides_keys_and_refuses_unknown_or_bad_ones() {
        let section = Section::from_strings("prices", &[("storage_vault", "0.005")]);
        let prices = Prices::with_overrides(Some(&section)).unwrap();
        let s = prices.storage(PriceClass::Vault, &[GIB - 32 * 1024], 0);
        assert!((s.monthly - 0.005).abs() < 1e-9, "{s:?}");

        let typo = Section::from_strings("prices", &[("storage_valt", "1")]);
        let err = Prices::with_overrides(Some(&typo)).unwrap_err().to_string();
        assert!(err.contains("storage_valt"), "{err}");
        let bad = Section::from_strings("prices", &[("transfer_out", "cheap")]);
        let err = Prices::with_overrides(Some(&bad)).unwrap_err().to_string();
        assert!(
            err.contains("transfer_out") && err.contains("0 or more"),
            "{err}"
        );
    }

    #[test]
    fn dollars_read_as_cents_or_fractions() {
        assert_eq!(dollars(0.0), "$0.00");
        assert_eq!(dollars(0.00123), "$0.0012");
        assert_eq!(dollars(10.1), "$10.10");
    }
}
