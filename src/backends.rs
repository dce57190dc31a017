//! Backend name -> archiver, for the backends compiled into this build.

use crate::shown;
use std::path::Path;
use std::sync::Arc;

use glacier_backup_archiver::settings::SettingsError;
use glacier_backup_archiver::Archiver;

use std::collections::BTreeMap;

use glacier_backup_archiver::settings::Section;

/// The configured backend cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Not compiled into this binary.
    #[error(
        "{file}: backend {name:?} is not compiled into this build of glacier-backup; rebuild \
         with `cargo build --release --features {name}`, or choose another backend with \
         [main] backend or --backend"
    )]
    NotCompiled {
        /// Config file, or a note that there is none.
        file: String,
        /// Backend name.
        name: String,
    },
    /// Its section is missing.
    #[error("{file}: backend {name:?} needs a [{name}] section: {hint}")]
    MissingSection {
        /// Config file, or a note that there is none.
        file: String,
        /// Backend name.
        name: String,
        /// What the section must contain.
        hint: &'static str,
    },
    /// Its settings are wrong.
    #[error(transparent)]
    Settings(#[from] SettingsError),
}

/// What a backend is built from: the config's backend sections and the `[main]` settings the
/// Python tool kept there. [`crate::config::Config::open_archiver`] hands over its own.
#[derive(Debug, Clone, Copy)]
pub struct BackendSettings<'a> {
    /// The backend to build (`[main] backend`).
    pub name: &'a str,
    /// The config file, for error messages.
    pub file: Option<&'a Path>,
    /// Backend sections by name.
    pub sections: &'a BTreeMap<String, Section>,
    /// `[main] vault_name`.
    pub vault_name: Option<&'a str>,
    /// `[main] account_id`.
    pub account_id: Option<&'a str>,
    /// The run's bandwidth limits, which every backend applies to its own traffic.
    pub bandwidth: &'a glacier_backup_archiver::Bandwidth,
}

/// Builds a backend's archiver from its settings.
type Build = fn(&BackendSettings) -> Result<Arc<dyn Archiver>, BackendError>;

/// One backend this program knows: the whole list is [`BACKENDS`]. Its name is also its config
/// section, its `--backend` value and the Cargo feature that compiles it in.
#[derive(Debug)]
pub struct BackendEntry {
    /// `[main] backend`, `--backend`, the section name and the Cargo feature.
    pub name: &'static str,
    /// One line for `--version` and error hints.
    pub summary: &'static str,
    /// What its section must hold, for the error when it is missing (`None`: no section
    /// needed).
    pub section_hint: Option<&'static str>,
    /// Its constructor, when compiled into this build.
    build: Option<Build>,
}

impl BackendEntry {
    /// Whether this build can use it.
    pub fn compiled(&self) -> bool {
        self.build.is_some()
    }
}

/// `Some(constructor)` when the backend's feature is on, else `None`.
macro_rules! cfg_build {
    ($feature:literal, $build:ident) => {{
        #[cfg(feature = $feature)]
        let build: Option<Build> = Some($build);
        #[cfg(not(feature = $feature))]
        let build: Option<Build> = None;
        build
    }};
}

/// Every backend, in the order help texts list them. Adding one: its crate, one entry here
/// (and a Cargo feature of its name), and its README section.
pub const BACKENDS: &[BackendEntry] = &[
    BackendEntry {
        name: "local",
        summary: "archives as files in a local directory (a second disk, a NAS mount)",
        section_hint: Some("add [local] with directory = /where/archives/go"),
        build: cfg_build!("local", local),
    },
    BackendEntry {
        name: "glacier",
        summary: "an AWS S3 Glacier vault (the Python tool's destination)",
        // Without a [glacier] section, vault_name and account_id come from [main].
        section_hint: None,
        build: cfg_build!("glacier", glacier),
    },
    BackendEntry {
        name: "s3",
        summary: "an S3 bucket in a cold storage class (GLACIER, DEEP_ARCHIVE, GLACIER_IR)",
        section_hint: Some("add [s3] with bucket = \"your-bucket\""),
        build: cfg_build!("s3", s3),
    },
    BackendEntry {
        name: "azure",
        summary: "an Azure Blob Storage container in the Cool or Cold access tier",
        section_hint: Some(
            "add [azure] with account = \"youraccount\" and container = \"your-container\"",
        ),
        build: cfg_build!("azure", azure),
    },
];

/// The registry entry named `name`.
pub fn backend(name: &str) -> Option<&'static BackendEntry> {
    BACKENDS.iter().find(|entry| entry.name == name)
}

/// Every backend name, for `--backend` and messages.
pub fn backend_names() -> Vec<&'static str> {
    BACKENDS.iter().map(|entry| entry.name).collect()
}

/// The backends as `--version` lists them: compiled in or not.
pub fn backends_summary() -> String {
    BACKENDS
        .iter()
        .map(|entry| {
            let state = if entry.compiled() {
                String::new()
            } else {
                format!(" (not in this build: enable feature {:?})", entry.name)
            };
            format!("  {:<8} {}{state}", entry.name, entry.summary)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Builds the archiver named by `settings.name`. Cheap and side-effect free: nothing is
/// created or contacted until [`Archiver::check`].
pub fn open_archiver(settings: &BackendSettings) -> Result<Arc<dyn Archiver>, BackendError> {
    let file = settings
        .file
        .map(shown)
        .unwrap_or_else(|| "no config file".into());
    let not_compiled = || BackendError::NotCompiled {
        file: file.clone(),
        name: settings.name.to_owned(),
    };
    let entry = backend(settings.name).ok_or_else(not_compiled)?;
    let build = entry.build.ok_or_else(not_compiled)?;
    if let Some(hint) = entry.section_hint {
        if !settings.sections.contains_key(entry.name) {
            return Err(BackendError::MissingSection {
                file,
                name: entry.name.into(),
                hint,
            });
        }
    }
    build(settings)
}

#[cfg(feature = "local")]
fn local(settings: &BackendSettings) -> Result<Arc<dyn Archiver>, BackendError> {
    let section = &settings.sections["local"];
    Ok(Arc::new(
        glacier_backup_local::LocalArchiver::from_settings(section)?
            .with_bandwidth(settings.bandwidth.clone()),
    ))
}

#[cfg(feature = "glacier")]
fn glacier(settings: &BackendSettings) -> Result<Arc<dyn Archiver>, BackendError> {
    // Without a [glacier] section, problems are about [main]'s vault_name and account_id.
    let main = Section::new(settings.file, "main");
    let section = settings.sections.get("glacier").unwrap_or(&main);
    Ok(Arc::new(
        glacier_backup_glacier::GlacierArchiver::from_config(
            Some(section),
            settings.vault_name,
            settings.account_id,
        )?
        .with_bandwidth(settings.bandwidth.clone()),
    ))
}

#[cfg(feature = "s3")]
fn s3(settings: &BackendSettings) -> Result<Arc<dyn Archiver>, BackendError> {
    let section = &settings.sections["s3"];
    Ok(Arc::new(
        glacier_backup_s3::S3Archiver::from_section(section)?
            .with_bandwidth(settings.bandwidth.clone()),
    ))
}

#[cfg(feature = "azure")]
fn azure(settings: &BackendSettings) -> Result<Arc<dyn Archiver>, BackendError> {
    let section = &settings.sections["azure"];
    Ok(Arc::new(
        glacier_backup_azure::AzureArchiver::from_section(section)?
            .with_bandwidth(settings.bandwidth.clone()),
    ))
}
