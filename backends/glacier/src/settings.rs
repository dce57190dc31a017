//! The `[glacier]` section (plus `vault_name` / `account_id` from `[main]`, as the Python tool had
//! them).

use glacier_backup_archiver::settings::{Section, SettingsError};
use glacier_backup_aws::{Connection, CONNECTION_SETTINGS};

/// Keys of the `[glacier]` section besides the connection settings.
pub const SETTINGS: &[&str] = &["vault_name", "account_id", "part_size", "plain_description"];

const MIB: u64 = 1 << 20;
/// Glacier's largest part.
pub const MAX_PART_SIZE: u64 = 4096 * MIB;

/// Validated Glacier settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlacierSettings {
    /// Vault name.
    pub vault_name: String,
    /// Account id; `-` means the credentials' own account.
    pub account_id: String,
    /// Region, endpoint, retries, timeouts, concurrency.
    pub connection: Connection,
    /// Part size in bytes, if fixed by the user; otherwise chosen per archive.
    pub part_size: Option<u64>,
    /// Descriptions hold only the archive name, as the Python tool wrote them.
    pub plain_description: bool,
    /// Parts allowed in one upload: Glacier's 10,000, lowered only by tests.
    #[doc(hidden)]
    pub max_parts: u64,
}

impl GlacierSettings {
    /// Settings from `[glacier]` (if present) and the `[main]`/command-line vault and account,
    /// which win over `[glacier]`'s.
    pub fn from_config(
        section: Option<&Section>,
        main_vault: Option<&str>,
        main_account: Option<&str>,
    ) -> Result<Self, SettingsError> {
        let empty = Section::new(None, "glacier");
        let s = section.unwrap_or(&empty);
        s.reject_unknown(&[SETTINGS, CONNECTION_SETTINGS].concat())?;
        let vault_name = match (main_vault, s.string("vault_name")?) {
            (Some(v), _) => v.to_owned(),
            (None, Some(v)) => v,
            (None, None) => {
                return Err(s.error(
                    None,
                    "no vault: set vault_name in [main] (or [glacier]), or pass -v VAULT",
                ))
            }
        };
        check_vault_name(&vault_name).map_err(|m| s.error(Some("vault_name"), m))?;
        let account_id = match (main_account, s.string("account_id")?) {
            (Some(a), _) => a.to_owned(),
            (None, Some(a)) => a,
            (None, None) => "-".to_owned(),
        };
        if account_id != "-"
            && !(account_id.len() == 12 && account_id.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(s.error(
                Some("account_id"),
                format!("{account_id:?} is not an AWS account id: use 12 digits, or - for your own account"),
            ));
        }
        let part_size = match s.u64("part_size")? {
            None => None,
            Some(mib) if mib.is_power_of_two() && mib * MIB <= MAX_PART_SIZE => Some(mib * MIB),
            Some(mib) => {
                return Err(s.error(
                    Some("part_size"),
                    format!("{mib} MiB is not a valid Glacier part size: use a power of two from 1 to 4096 (MiB)"),
                ))
            }
        };
        Ok(GlacierSettings {
            vault_name,
            account_id,
            connection: Connection::from_section(s)?,
            part_size,
            plain_description: s.bool("plain_description")?.unwrap_or(false),
            max_parts: crate::MAX_PARTS,
        })
    }

    /// The part size for an archive of about `size_hint` bytes: the configured one, or the
    /// smallest power-of-two MiB of at least 8 MiB that keeps the archive, with headroom for
    /// a stream a little larger than estimated, under Glacier's 10,000 parts.
    pub fn part_size_for(&self, size_hint: u64) -> u64 {
        if let Some(fixed) = self.part_size {
            return fixed;
        }
        let with_headroom = size_hint
            .saturating_add(size_hint / 8)
            .saturating_add(64 * MIB);
        let mut size = 8 * MIB;
        while with_headroom.div_ceil(size) > crate::MAX_PARTS && size < MAX_PART_SIZE {
            size *= 2;
        }
        size
    }
}

/// Glacier's vault naming rule.
pub fn check_vault_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid vault name: use 1 to 255 letters, digits, '_', '-' or '.'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(entries: &[(&str, &str)]) -> Section {
        Section::from_strings("glacier", entries)
    }

    #[test]
    fn vault_from_main_wins_and_is_required() {
        let s = section(&[("vault_name", "inner")]);
        assert_eq!(
            GlacierSettings::from_config(Some(&s), Some("outer"), None)
                .unwrap()
                .vault_name,
            "outer"
        );
        assert_eq!(
            GlacierSettings::from_config(Some(&s), None, None)
                .unwrap()
                .vault_name,
            "inner"
        );
        let err = GlacierSettings::from_config(None, None, None).unwrap_err();
        assert!(err.message.contains("-v VAULT"), "{err}");
        let err = GlacierSettings::from_config(None, Some("bad name!"), None).unwrap_err();
        assert!(err.message.contains("not a valid vault name"), "{err}");
    }

    #[test]
    fn part_sizes_must_be_powers_of_two_mib() {
        for bad in ["3", "0", "8192", "big"] {
            let s = section(&[("part_size", bad)]);
            assert!(
                GlacierSettings::from_config(Some(&s), Some("v"), None).is_err(),
                "{bad}"
            );
        }
        let s = section(&[("part_size", "16")]);
        let settings = GlacierSettings::from_config(Some(&s), Some("v"), None).unwrap();
        assert_eq!(settings.part_size_for(1 << 40), 16 * MIB);
    }

    #[test]
    fn automatic_part_size_keeps_under_ten_thousand_parts() {
        let settings = GlacierSettings::from_config(None, Some("v"), None).unwrap();
        assert_eq!(settings.part_size_for(0), 8 * MIB);
        assert_eq!(settings.part_size_for(50 << 30), 8 * MIB);
        for size in [100u64 << 30, 1 << 40, 30 << 40] {
            let part = settings.part_size_for(size);
            assert!(part.is_power_of_two() && part >= 8 * MIB);
            assert!((size + size / 8).div_ceil(part) <= 10_000, "{size}: {part}");
            assert!(
                part == 8 * MIB || (size + size / 8).div_ceil(part / 2) > 10_000,
                "{size}: {part} is not the smallest"
            );
        }
    }
}
