//! The validated configuration, independent of the file syntax it came from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use glacier_backup_archiver::settings::{closest, Section, SettingsError};

/// Backend used when `[main] backend` is not set: vaults, as the Python tool did.
pub const DEFAULT_BACKEND: &str = "glacier";

/// Section names that are not paths: `[main]`, `[prices]` and one per backend.
pub fn reserved_sections() -> Vec<&'static str> {
    ["main", "prices"]
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
];

/// The most candidates `[main] parallel_uploads` sends at once.
pub const MAX_PARALLEL_UPLOADS: u64 = 64;

const PATH_SETTINGS: &[&str] = &[
    "upload_single_dir",
    "upload_dirs",
    "upload_files",
    "upload_if_changed",
    "exclude",
    "exclude_prefix",
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
            parallel_uploads: crate::backup::DEFAULT_PARALLEL_UPLOADS,
            backend_sections: BTreeMap::new(),
            paths: Vec::new(),
            prices: crate::costs::Prices::builtin(),
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
        Ok(config)
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
        main.reject_unknown(MAIN_SETTINGS)
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
    };
    section.reject_unknown(PATH_SETTINGS)?;
    Ok(rule)
}
