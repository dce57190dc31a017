//! The `[s3]` section.

use glacier_backup_archiver::settings::{Section, SettingsError};
use glacier_backup_aws::{Connection, CONNECTION_SETTINGS};

/// Keys of the `[s3]` section besides the connection settings.
pub const SETTINGS: &[&str] = &[
    "bucket",
    "prefix",
    "storage_class",
    "force_path_style",
    "sse",
    "sse_kms_key_id",
    "part_size",
];

/// Storage classes we write to: the cold ones, and two warm ones for users who want them.
pub const STORAGE_CLASSES: &[&str] = &[
    "GLACIER",
    "DEEP_ARCHIVE",
    "GLACIER_IR",
    "STANDARD_IA",
    "STANDARD",
];

const MIB: u64 = 1 << 20;
/// Smallest part we use: S3 wants at least 5 MiB, and parts are powers of two MiB so that their
/// tree hashes combine.
pub const MIN_PART_SIZE: u64 = 8 * MIB;
/// S3's largest part.
pub const MAX_PART_SIZE: u64 = 4096 * MIB;
/// S3's limit on parts per upload.
pub const MAX_PARTS: u64 = 10_000;

/// Server-side encryption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encryption {
    /// S3-managed keys.
    Aes256,
    /// KMS, with this key (or the bucket's default KMS key).
    Kms(Option<String>),
}

/// Validated S3 settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix, e.g. `backups/`.
    pub prefix: String,
    /// Storage class for new objects.
    pub storage_class: String,
    /// Region, endpoint, retries, timeouts, concurrency.
    pub connection: Connection,
    /// Path-style addressing (needed by most local S3 servers).
    pub force_path_style: bool,
    /// Server-side encryption, if asked for.
    pub encryption: Option<Encryption>,
    /// Fixed part size in bytes, or automatic.
    pub part_size: Option<u64>,
    /// Parts allowed in one upload: S3's 10,000, lowered only by tests.
    #[doc(hidden)]
    pub max_parts: u64,
}

impl S3Settings {
    /// Reads and checks `[s3]`.
    pub fn from_section(s: &Section) -> Result<Self, SettingsError> {
        s.reject_unknown(&[SETTINGS, CONNECTION_SETTINGS].concat())?;
        let bucket = s
            .string("bucket")?
            .filter(|b| !b.is_empty())
            .ok_or_else(|| {
                s.error(
                    None,
                    "missing setting \"bucket\": name the S3 bucket archives go to",
                )
            })?;
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_bucket {
            return Err(s.error(
                Some("bucket"),
                format!("{bucket:?} is not a valid bucket name: 3 to 63 lower-case letters, digits, '-' or '.'"),
            ));
        }
        let prefix = s.string("prefix")?.unwrap_or_default();
        let prefix = prefix.trim_start_matches('/').to_owned();
        let storage_class = s
            .string("storage_class")?
            .map(|c| c.trim().to_ascii_uppercase())
            .unwrap_or_else(|| "GLACIER".into());
        if !STORAGE_CLASSES.contains(&storage_class.as_str()) {
            return Err(s.error(
                Some("storage_class"),
                format!(
                    "{storage_class:?} is not supported; use one of {}",
                    STORAGE_CLASSES.join(", ")
                ),
            ));
        }
        let key_id = s.string("sse_kms_key_id")?.filter(|k| !k.is_empty());
        let encryption =
            match s.string("sse")?.as_deref() {
                None | Some("") => {
                    if key_id.is_some() {
                        return Err(s.error(
                            Some("sse_kms_key_id"),
                            "set sse = \"aws:kms\" to use a KMS key",
                        ));
                    }
                    None
                }
                Some("AES256") if key_id.is_some() => return Err(s.error(
                    Some("sse_kms_key_id"),
                    "a KMS key needs sse = \"aws:kms\"; with sse = \"AES256\" S3 manages the key: \
                     remove sse_kms_key_id or change sse",
                )),
                Some("AES256") => Some(Encryption::Aes256),
                Some("aws:kms") => Some(Encryption::Kms(key_id)),
                Some(other) => {
                    return Err(s.error(
                        Some("sse"),
                        format!("{other:?} is not supported; use AES256 or aws:kms"),
                    ))
                }
            };
        let part_size = s.part_size(MIN_PART_SIZE / MIB, MAX_PART_SIZE / MIB)?;
        Ok(S3Settings {
            bucket,
            prefix,
            storage_class,
            connection: Connection::from_section(s)?,
            force_path_style: s.bool("force_path_style")?.unwrap_or(false),
            encryption,
            part_size,
            max_parts: MAX_PARTS,
        })
    }

    /// Configured part size, or the smallest power-of-two MiB of at least 8 MiB that keeps
    /// the archive, with headroom, under 10,000 parts.
    pub fn part_size_for(&self, size_hint: u64) -> u64 {
        if let Some(fixed) = self.part_size {
            return fixed;
        }
        let with_headroom = size_hint
            .saturating_add(size_hint / 8)
            .saturating_add(64 * MIB);
        let mut size = MIN_PART_SIZE;
        while with_headroom.div_ceil(size) > MAX_PARTS && size < MAX_PART_SIZE {
            size *= 2;
        }
        size
    }

    /// Whether objects of the configured class must be restored before reading.
    pub fn cold(&self) -> bool {
        is_cold(&self.storage_class)
    }
}

/// Classes whose objects must be restored before they can be read.
pub fn is_cold(storage_class: &str) -> bool {
    matches!(storage_class, "GLACIER" | "DEEP_ARCHIVE")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(entries: &[(&str, &str)]) -> Section {
        Section::from_strings("s3", entries)
    }

    #[test]
    fn defaults_and_validation() {
        let s = S3Settings::from_section(&section(&[("bucket", "my-backups")])).unwrap();
        assert_eq!(s.storage_class, "GLACIER");
        assert!(s.cold());
        let err =
            S3Settings::from_section(&section(&[("bucket", "b-1"), ("storage_class", "ICE")]))
                .unwrap_err();
        assert!(
            err.message
                .contains("GLACIER, DEEP_ARCHIVE, GLACIER_IR, STANDARD_IA, STANDARD"),
            "{err}"
        );
        assert!(S3Settings::from_section(&section(&[])).is_err());
        assert!(S3Settings::from_section(&section(&[("bucket", "Bad_Bucket")])).is_err());
        assert!(
            S3Settings::from_section(&section(&[("bucket", "bkt"), ("part_size", "4")])).is_err()
        );
        assert!(
            S3Settings::from_section(&section(&[("bucket", "bkt"), ("sse", "rot13")])).is_err()
        );
        let kms = S3Settings::from_section(&section(&[
            ("bucket", "bkt"),
            ("sse", "aws:kms"),
            ("sse_kms_key_id", "k"),
        ]))
        .unwrap();
        assert_eq!(kms.encryption, Some(Encryption::Kms(Some("k".into()))));
        let ir = S3Settings::from_section(&section(&[
            ("bucket", "bkt"),
            ("storage_class", "glacier_ir"),
        ]))
        .unwrap();
        assert!(!ir.cold());
    }
}
