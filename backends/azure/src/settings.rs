//! The `[azure]` section.

use glacier_backup_archiver::settings::{Section, SettingsError};

/// Keys of the `[azure]` section.
pub const SETTINGS: &[&str] = &[
    "account",
    "container",
    "prefix",
    "access_tier",
    "endpoint_url",
    "concurrency",
    "part_size",
];

/// Access tiers archives can go to: all online, so restores read at once.
pub const ACCESS_TIERS: &[&str] = &["Hot", "Cool", "Cold"];

const MIB: u64 = 1 << 20;
/// Smallest part: parts are powers of two MiB so their tree hashes combine.
pub const MIN_PART_SIZE: u64 = 8 * MIB;
/// Azure's largest block (4000 MiB), rounded down to a power of two.
pub const MAX_PART_SIZE: u64 = 2048 * MIB;
/// Azure's limit on blocks per blob.
pub const MAX_PARTS: u64 = 50_000;
/// Blocks sent at once when the section does not say.
const DEFAULT_CONCURRENCY: usize = 4;

/// Validated Azure settings. Credentials are not among them: they come from Azure's standard
/// environment (`AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_SAS_KEY`, `AZURE_CLIENT_ID`...),
/// never from the config file, and are never logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureSettings {
    /// Storage account; `None` takes `AZURE_STORAGE_ACCOUNT_NAME`.
    pub account: Option<String>,
    /// Container name.
    pub container: String,
    /// Blob name prefix, e.g. `backups/`.
    pub prefix: String,
    /// Access tier of new archives.
    pub access_tier: String,
    /// Blob service endpoint (an emulator, a sovereign cloud); `None` is the account's public
    /// endpoint.
    pub endpoint_url: Option<String>,
    /// Blocks sent at once.
    pub concurrency: usize,
    /// Fixed part size in bytes, or automatic.
    pub part_size: Option<u64>,
}

impl AzureSettings {
    /// Reads and checks `[azure]`.
    pub fn from_section(s: &Section) -> Result<Self, SettingsError> {
        s.reject_unknown(SETTINGS)?;
        let container = s
            .string("container")?
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                s.error(
                    None,
                    "missing setting \"container\": name the Azure blob container archives go to",
                )
            })?;
        let valid_container = (3..=63).contains(&container.len())
            && container
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !container.starts_with('-')
            && !container.contains("--");
        if !valid_container {
            return Err(s.error(
                Some("container"),
                format!(
                    "{container:?} is not a valid container name: 3 to 63 lower-case letters, \
                     digits or single '-', starting with a letter or digit"
                ),
            ));
        }
        let account = s.string("account")?.filter(|a| !a.is_empty());
        if let Some(account) = &account {
            let valid = (3..=24).contains(&account.len())
                && account
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
            if !valid {
                return Err(s.error(
                    Some("account"),
                    format!(
                        "{account:?} is not a valid storage account name: 3 to 24 lower-case \
                         letters or digits"
                    ),
                ));
            }
        }
        let prefix = s.string("prefix")?.unwrap_or_default();
        let prefix = prefix.trim_start_matches('/').to_owned();
        let access_tier = access_tier(s)?;
        let endpoint_url = s.string("endpoint_url")?.filter(|u| !u.is_empty());
        if let Some(url) = &endpoint_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(s.error(
                    Some("endpoint_url"),
                    format!("{url:?} is not an http(s) URL"),
                ));
            }
        }
        let concurrency = match s.u64("concurrency")? {
            None => DEFAULT_CONCURRENCY,
            Some(n @ 1..=64) => n as usize,
            Some(n) => {
                return Err(s.error(
                    Some("concurrency"),
                    format!("{n} is out of range: use 1 to 64 blocks at once"),
                ))
            }
        };
        let part_size = s.part_size(MIN_PART_SIZE / MIB, MAX_PART_SIZE / MIB)?;
        Ok(AzureSettings {
            account,
            container,
            prefix,
            access_tier,
            endpoint_url,
            concurrency,
            part_size,
        })
    }

    /// Configured part size, or the smallest power-of-two MiB of at least 8 MiB that keeps
    /// the archive, with headroom, under Azure's block limit.
    pub fn part_size_for(&self, size_hint: u64) -> u64 {
        self.part_size.unwrap_or_else(|| {
            glacier_backup_archiver::parts::automatic_part_size(
                size_hint,
                MIN_PART_SIZE,
                MAX_PART_SIZE,
                MAX_PARTS,
            )
        })
    }
}

/// `access_tier`, spelled as Azure does (`Cool`), default `Cold`. Archive is refused: a blob
/// there must be rehydrated before it can be read, and object_store cannot ask for that.
fn access_tier(s: &Section) -> Result<String, SettingsError> {
    let Some(asked) = s.string("access_tier")? else {
        return Ok("Cold".into());
    };
    let asked = asked.trim();
    if asked.eq_ignore_ascii_case("archive") {
        return Err(s.error(
            Some("access_tier"),
            "Archive is not supported: an Archive blob must be rehydrated (hours, through Set \
             Blob Tier) before it can be read, which this backend cannot ask for; use Cold (the \
             cheapest online tier, 90-day minimum), or an AWS vault or DEEP_ARCHIVE bucket for \
             deeper storage",
        ));
    }
    ACCESS_TIERS
        .iter()
        .find(|tier| tier.eq_ignore_ascii_case(asked))
        .map(|tier| (*tier).to_owned())
        .ok_or_else(|| {
            s.error(
                Some("access_tier"),
                format!(
                    "{asked:?} is not an access tier; use one of {}",
                    ACCESS_TIERS.join(", ")
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(entries: &[(&str, &str)]) -> Result<AzureSettings, SettingsError> {
        AzureSettings::from_section(&Section::from_strings("azure", entries))
    }

    #[test]
    fn defaults_to_the_cold_tier() {
        let s = settings(&[("container", "backups")]).unwrap();
        assert_eq!(s.access_tier, "Cold");
        assert_eq!(s.concurrency, DEFAULT_CONCURRENCY);
        assert_eq!(s.part_size_for(1 << 30), MIN_PART_SIZE);
        let cool = settings(&[("container", "backups"), ("access_tier", "cool")]).unwrap();
        assert_eq!(cool.access_tier, "Cool");
    }

    #[test]
    fn refuses_what_azure_or_this_backend_cannot_do() {
        let archive = settings(&[("container", "backups"), ("access_tier", "Archive")])
            .unwrap_err()
            .to_string();
        assert!(
            archive.contains("access_tier") && archive.contains("rehydrated"),
            "{archive}"
        );
        let unknown = settings(&[("container", "backups"), ("access_tier", "Frozen")])
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("Hot, Cool, Cold"), "{unknown}");
        assert!(settings(&[]).unwrap_err().to_string().contains("container"));
        for bad in ["Backups", "ab", "a--b", "-ab"] {
            assert!(settings(&[("container", bad)]).is_err(), "{bad}");
        }
        assert!(settings(&[("container", "abc"), ("account", "Bad_Name")]).is_err());
        assert!(settings(&[("container", "abc"), ("part_size", "12")]).is_err());
        assert!(settings(&[("container", "abc"), ("concurrency", "0")]).is_err());
        assert!(settings(&[("container", "abc"), ("endpoint_url", "ftp://x")]).is_err());
        let typo = settings(&[("container", "abc"), ("acess_tier", "Cool")])
            .unwrap_err()
            .to_string();
        assert!(typo.contains("acess_tier"), "{typo}");
    }
}
