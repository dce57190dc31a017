//! The validated configuration, independent of the file syntax it came from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use glacier_backup_archiver::settings::{closest, Section, SettingsError};

/// Backend used when `[main] backend` is not set: vaults, as the Python tool did.
pub const DEFAULT_BACKEND: &str = "glacier";

/// Candidates sent at once when the configuration does not say (`[main] parallel_uploads`).
/// The count matters for small files, whose time is round trips (16 hide a 100 ms one for a
/// few hundred files a second); larger ones are held to the backend's memory budget, which is
/// what its uplink carries anyway.
pub const DEFAULT_PARALLEL_UPLOADS: usize = 16;

/// Section names that are not paths: `[main]`, `[prices]`, `[archive]`, `[encryption]` and one
/// per backend.
pub fn reserved_sections() -> Vec<&'static str> {
    ["main", "prices", "archive", "encryption", "retention"]
        .into_iter()
        .chain(crate::backends::backend_names())
        .collect()
}

const MAIN_SETTINGS: &[&str] = &[
    "account_id",
    "vault_name",
    "logfile",
    "backend",
    "ledger",
    "parallel_uploads",
    "limit_upload",
    "limit_download",
];

/// The most candidates `[main] parallel_uploads` sends at once.
pub const MAX_PARALLEL_UPLOADS: u64 = 64;

const ARCHIVE_SETTINGS: &[&str] = &["compression", "level"];
const ENCRYPTION_SETTINGS: &[&str] = &[
    "recipients",
    "recipients_file",
    "identity_file",
    "authentication_key_file",
];

const PATH_SETTINGS: &[&str] = &[
    "upload_single_dir",
    "upload_dirs",
    "upload_files",
    "upload_if_changed",
    "exclude",
    "exclude_prefix",
    "incremental",
    "full_after_days",
    "full_when_changed_percent",
    "verify_content",
];

/// Where log lines are appended, besides stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogFile {
    /// Not configured: the default location.
    Default,
    /// Set to an empty value: no log file.
    Disabled,
    /// This file.
    Path(PathBuf),
}

/// What to back up from one configured path, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRule {
    /// Absolute path, without a trailing slash (the form the ledger records).
    pub path: PathBuf,
    /// A directory is one candidate (overrides the two below).
    pub upload_single_dir: bool,
    /// Each direct child directory is a candidate.
    pub upload_dirs: bool,
    /// Each direct child file is a candidate.
    pub upload_files: bool,
    /// Upload again when the candidate changed since its last upload.
    pub upload_if_changed: bool,
    /// Children whose name starts with this are skipped.
    pub exclude: Option<String>,
    /// A changed directory uploads what changed since its last upload, in a chain.
    pub chain: Option<ChainPolicy>,
    /// The `keep_*` keys this section sets, over `[retention]`'s.
    pub retention: super::Retention,
}

/// When an incremental directory's chain ends and a full upload starts a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainPolicy {
    /// A full once the chain's full is this many days old.
    pub full_after_days: u64,
    /// A full once the chain's increments add up to this share of the full's size.
    pub full_when_changed_percent: u64,
    /// Each file's SHA-256 kept, and a file whose metadata did not change read again and
    /// stored again if its bytes did.
    pub verify_content: bool,
}

impl ChainPolicy {
    /// A year: a new full can retire the old chain only after the old one's minimum storage
    /// duration (180 days in DEEP_ARCHIVE), and each full is paid for again in storage.
    pub const FULL_AFTER_DAYS: u64 = 365;
    /// Half the full's size: past it, a restore fetches about as much from increments as a
    /// new full would store.
    pub const FULL_WHEN_CHANGED_PERCENT: u64 = 50;
}

impl PathRule {
    /// A rule that backs `path` up as one candidate, as `-p` does.
    pub fn single(path: PathBuf) -> Self {
        PathRule {
            path,
            upload_single_dir: true,
            upload_dirs: false,
            upload_files: false,
            upload_if_changed: false,
            exclude: None,
            chain: None,
            retention: super::Retention::default(),
        }
    }
}

/// A validated configuration.
#[derive(Debug)]
pub struct Config {
    /// The file it was read from, if any.
    pub file: Option<PathBuf>,
    /// Backend name (`[main] backend`).
    pub backend: String,
    /// `[main] vault_name`.
    pub vault_name: Option<String>,
    /// `[main] account_id`.
    pub account_id: Option<String>,
    /// `[main] logfile`.
    pub logfile: LogFile,
    /// `[main] ledger`: explicit ledger file.
    pub ledger: Option<PathBuf>,
    /// `[main] parallel_uploads`: candidates uploaded at once.
    pub parallel_uploads: usize,
    /// Backend sections by name (`local`, `glacier`, `s3`), handed to the backend unread.
    pub backend_sections: BTreeMap<String, Section>,
    /// Path sections, in file order.
    pub paths: Vec<PathRule>,
    /// Prices for cost estimates: the built-in table, with `[prices]` on top.
    pub prices: crate::costs::Prices,
    /// How new archives are compressed and encrypted (`[archive]`, `[encryption]`).
    pub format: crate::codec::Format,
    /// `[encryption] identity_file`: the key that opens encrypted archives, for restores.
    pub identity_file: Option<PathBuf>,
    /// `[retention]`: what `prune` keeps of every path (a path section's keys go over it).
    pub retention: super::Retention,
    /// `[main] limit_upload` and `limit_download` (or `--limit-upload`, `--limit-download`):
    /// what every archiver this config opens shares.
    pub bandwidth: glacier_backup_archiver::Bandwidth,
}

impl Config {
    /// An empty configuration (no file): everything from defaults and the command line.
    pub fn empty() -> Self {
        Config {
            file: None,
            backend: DEFAULT_BACKEND.into(),
            vault_name: None,
            account_id: None,
            logfile: LogFile::Default,
            ledger: None,
            parallel_uploads: DEFAULT_PARALLEL_UPLOADS,
            backend_sections: BTreeMap::new(),
            paths: Vec::new(),
            prices: crate::costs::Prices::builtin(),
            format: crate::codec::Format::default(),
            identity_file: None,
            retention: super::Retention::default(),
            bandwidth: Default::default(),
        }
    }

    /// Validates parsed sections.
    pub fn from_sections(
        file: Option<&Path>,
        sections: Vec<Section>,
    ) -> Result<Self, SettingsError> {
        let mut config = Config::empty();
        config.file = file.map(Path::to_path_buf);
        let mut seen_paths: std::collections::HashMap<PathBuf, String> = Default::default();
        for section in sections {
            match section.name() {
                "main" => config.read_main(&section)?,
                "prices" => config.prices = crate::costs::Prices::with_overrides(Some(&section))?,
                "archive" => config.read_archive(&section)?,
                "encryption" => config.read_encryption(&section)?,
                "retention" => {
                    config.retention = super::Retention::read(&section)?;
                    section.reject_unknown(super::retention::RETENTION_KEYS)?;
                }
                name if crate::backends::backend(name).is_some() => {
                    config.backend_sections.insert(name.to_owned(), section);
                }
                name => {
                    let rule = path_rule(&section)?;
                    if let Some(first) = seen_paths.insert(rule.path.clone(), name.to_owned()) {
                        return Err(section.error(
                            None,
                            format!("names the same path as section [{first}]; merge the two"),
                        ));
                    }
                    config.paths.push(rule);
                }
            }
        }
        config.check_layers_are_recorded()?;
        Ok(config)
    }

    /// A vault described the Python tool's way keeps only the archive name: a ledger rebuilt
    /// from it would take compressed or encrypted bytes for the archive itself.
    fn check_layers_are_recorded(&self) -> Result<(), SettingsError> {
        let Some(glacier) = self.backend_sections.get("glacier") else {
            return Ok(());
        };
        if !self.format.is_plain() && glacier.bool("plain_description")? == Some(true) {
            return Err(glacier.error(
                Some("plain_description"),
                "cannot be used with [archive] compression or [encryption]: the bare name would \
                 not say that archives are compressed or encrypted, and a ledger rebuilt from \
                 the vault would restore their stored bytes as the files; remove one of them",
            ));
        }
        Ok(())
    }

    fn read_main(&mut self, main: &Section) -> Result<(), SettingsError> {
        self.account_id = main.string("account_id")?;
        self.vault_name = main.string("vault_name")?;
        self.logfile = match main.string("logfile")? {
            None => LogFile::Default,
            Some(s) if s.is_empty() => LogFile::Disabled,
            Some(_) => LogFile::Path(main.path("logfile")?.expect("present and non-empty")),
        };
        self.ledger = main.path("ledger")?;
        if let Some(n) = main.u64("parallel_uploads")? {
            if !(1..=MAX_PARALLEL_UPLOADS).contains(&n) {
                return Err(main.error(
                    Some("parallel_uploads"),
                    format!("use a number of uploads from 1 to {MAX_PARALLEL_UPLOADS}"),
                ));
            }
            self.parallel_uploads = n as usize;
        }
        if let Some(ledger) = self.ledger.as_ref().filter(|l| l.is_dir()) {
            return Err(main.error(
                Some("ledger"),
                format!(
                    "{} is a directory; name the ledger file, e.g. {}",
                    glacier_backup_archiver::shown(ledger),
                    glacier_backup_archiver::shown(ledger.join("backup.sqlite3"))
                ),
            ));
        }
        if let Some(backend) = main.string("backend")? {
            let backend = backend.trim().to_ascii_lowercase();
            if crate::backends::backend(&backend).is_none() {
                return Err(main.error(
                    Some("backend"),
                    format!(
                        "unknown backend {backend:?}; choose one of {}",
                        crate::backends::backend_names().join(", ")
                    ),
                ));
            }
            self.backend = backend;
        }
        if let Some(schedule) = main_schedule(main, "limit_upload")? {
            self.bandwidth.upload = crate::clock::throttle(schedule);
        }
        if let Some(schedule) = main_schedule(main, "limit_download")? {
            self.bandwidth.download = crate::clock::throttle(schedule);
        }
        main.reject_unknown(MAIN_SETTINGS)
    }
}

/// A `[main]` bandwidth setting, parsed.
fn main_schedule(
    main: &Section,
    key: &str,
) -> Result<Option<glacier_backup_archiver::bandwidth::Schedule>, SettingsError> {
    main.string(key)?
        .map(|text| {
            text.parse()
                .map_err(|e| main.error(Some(key), format!("{e}")))
        })
        .transpose()
}

impl Config {
    fn read_archive(&mut self, archive: &Section) -> Result<(), SettingsError> {
        use glacier_backup_archiver::Compression;
        let level = match archive.u64("level")? {
            Some(level) => {
                let level = i32::try_from(level)
                    .ok()
                    .filter(|l| crate::codec::LEVELS.contains(l))
                    .ok_or_else(|| {
                        archive.error(
                            Some("level"),
                            format!(
                                "{level} is not a zstd level; use 1 (fastest) to 19 (smallest), \
                                 3 is the default"
                            ),
                        )
                    })?;
                Some(level)
            }
            None => None,
        };
        let compression = archive
            .string("compression")?
            .map(|c| c.trim().to_ascii_lowercase());
        self.format.compression = match compression.as_deref() {
            None | Some("none") => {
                if level.is_some() {
                    return Err(archive.error(
                        Some("level"),
                        "is set but nothing is compressed; add compression = \"zstd\" or \
                         remove level",
                    ));
                }
                Compression::None
            }
            Some("zstd") => Compression::Zstd(Some(level.unwrap_or(crate::codec::DEFAULT_LEVEL))),
            Some(other) => {
                return Err(archive.error(
                    Some("compression"),
                    format!("unknown compression {other:?}; use \"zstd\" or \"none\""),
                ))
            }
        };
        archive.reject_unknown(ARCHIVE_SETTINGS)
    }

    fn read_encryption(&mut self, section: &Section) -> Result<(), SettingsError> {
        let mut recipients = Vec::new();
        for text in section.list("recipients")?.unwrap_or_default() {
            let recipient = crate::codec::keys::parse_recipient(&text)
                .map_err(|e| section.error(Some("recipients"), e))?;
            recipients.push(recipient);
        }
        if let Some(file) = home_path(section, "recipients_file")? {
            let text = crate::codec::key_file::read_key_file(&file).map_err(|e| {
                section.error(
                    Some("recipients_file"),
                    format!(
                        "cannot read {}: {e}; give a file of age1... lines",
                        glacier_backup_archiver::shown(&file)
                    ),
                )
            })?;
            let listed = crate::codec::keys::parse_recipients_file(&text).map_err(|e| {
                section.error(
                    Some("recipients_file"),
                    format!("{}: {e}", glacier_backup_archiver::shown(&file)),
                )
            })?;
            if listed.is_empty() {
                return Err(section.error(
                    Some("recipients_file"),
                    format!(
                        "{} lists no recipient; add an age1... line",
                        glacier_backup_archiver::shown(&file)
                    ),
                ));
            }
            recipients.extend(listed);
        }
        if section.contains("recipients") && recipients.is_empty() {
            return Err(section.error(
                Some("recipients"),
                "is empty; give at least one age1... recipient, or remove the setting",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        recipients.retain(|r| seen.insert(r.to_string()));
        self.format.recipients = recipients;
        self.identity_file = home_path(section, "identity_file")?;
        if let Some(file) = home_path(section, "authentication_key_file")? {
            if self.format.recipients.is_empty() {
                return Err(section.error(
                    Some("authentication_key_file"),
                    "only encrypted archives carry it; set recipients too, or remove it",
                ));
            }
            let key = crate::codec::auth::AuthKey::load(&file)
                .map_err(|e| section.error(Some("authentication_key_file"), e.to_string()))?;
            self.format.authentication = Some(key);
        }
        section.reject_unknown(ENCRYPTION_SETTINGS)
    }
}

/// A path setting where `~/` means the home directory, as in a shell (keys live there).
fn home_path(section: &Section, key: &str) -> Result<Option<PathBuf>, SettingsError> {
    let Some(text) = section.string(key)? else {
        return Ok(None);
    };
    match text.strip_prefix("~/") {
        Some(rest) => match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            Some(home) => Ok(Some(PathBuf::from(home).join(rest))),
            None => Err(section.error(
                Some(key),
                "starts with ~/ but HOME is not set; give an absolute path",
            )),
        },
        None => section.path(key),
    }
}

fn path_rule(section: &Section) -> Result<PathRule, SettingsError> {
    let name = section.name();
    if name.contains('\0') {
        return Err(section.error(
            None,
            "the section name holds a NUL character, which no path can; remove it",
        ));
    }
    if !name.starts_with('/') {
        let mut message = format!(
            "section [{name}] is not an absolute path; path sections name what to back up, \
             e.g. [/home/me/documents]"
        );
        if let Some(reserved) = closest(&name.to_ascii_lowercase(), &reserved_sections()) {
            message.push_str(&format!(" (did you mean [{reserved}]?)"));
        }
        return Err(section.error(None, message));
    }
    let trimmed = name.trim_end_matches('/');
    let path = PathBuf::from(if trimmed.is_empty() { "/" } else { trimmed });
    let exclude = match (
        section.string("exclude")?,
        section.string("exclude_prefix")?,
    ) {
        (Some(_), Some(_)) => {
            return Err(section.error(
                Some("exclude_prefix"),
                "both exclude and exclude_prefix are set; they mean the same, keep one",
            ))
        }
        (a, b) => a.or(b).filter(|s| !s.is_empty()),
    };
    let rule = PathRule {
        path,
        upload_single_dir: section.bool("upload_single_dir")?.unwrap_or(false),
        upload_dirs: section.bool("upload_dirs")?.unwrap_or(false),
        upload_files: section.bool("upload_files")?.unwrap_or(false),
        upload_if_changed: section.bool("upload_if_changed")?.unwrap_or(false),
        exclude,
        chain: None,
        retention: super::Retention::read(section)?,
    };
    let rule = PathRule {
        chain: chain_policy(section, &rule)?,
        ..rule
    };
    section.reject_unknown(&[PATH_SETTINGS, super::RETENTION_KEYS].concat())?;
    Ok(rule)
}

/// A path section's `incremental` and when its chains end, checked against the rest of it.
fn chain_policy(section: &Section, rule: &PathRule) -> Result<Option<ChainPolicy>, SettingsError> {
    let days = section.u64("full_after_days")?;
    let percent = section.u64("full_when_changed_percent")?;
    let verify_content = section.bool("verify_content")?;
    if !section.bool("incremental")?.unwrap_or(false) {
        if let Some(key) = [
            ("full_after_days", days.is_some()),
            ("full_when_changed_percent", percent.is_some()),
            ("verify_content", verify_content.is_some()),
        ]
        .iter()
        .find_map(|(key, set)| set.then_some(*key))
        {
            return Err(section.error(
                Some(key),
                "applies to incremental uploads only; add incremental = true or remove it",
            ));
        }
        return Ok(None);
    }
    if !rule.upload_if_changed {
        return Err(section.error(
            Some("incremental"),
            "needs upload_if_changed = true: an increment is what changed since the last upload",
        ));
    }
    if !(rule.upload_single_dir || rule.upload_dirs) {
        return Err(section.error(
            Some("incremental"),
            "applies to directories; add upload_single_dir = true or upload_dirs = true",
        ));
    }
    for (key, value) in [
        ("full_after_days", days),
        ("full_when_changed_percent", percent),
    ] {
        if value == Some(0) {
            return Err(section.error(
                Some(key),
                "must be at least 1 (to upload every change whole, remove incremental)",
            ));
        }
    }
    Ok(Some(ChainPolicy {
        full_after_days: days.unwrap_or(ChainPolicy::FULL_AFTER_DAYS),
        full_when_changed_percent: percent.unwrap_or(ChainPolicy::FULL_WHEN_CHANGED_PERCENT),
        verify_content: verify_content.unwrap_or(false),
    }))
}
