//! Backend name -> archiver, for the backends compiled into this build.

use crate::shown;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use glacier_backup_archiver::settings::SettingsError;
use glacier_backup_archiver::Archiver;

use crate::config::Config;

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

/// Builds the archiver named by `config.backend`. Cheap and side-effect free: nothing is
/// created or contacted until [`Archiver::check`].
pub fn open_archiver(config: &Config) -> Result<Arc<dyn Archiver>, BackendError> {
    let file = config
        .file
        .as_deref()
        .map(shown)
        .unwrap_or_else(|| "no config file".into());
    match config.backend.as_str() {
        "local" => {
            let Some(section) = config.backend_sections.get("local") else {
                return Err(BackendError::MissingSection {
                    file,
                    name: "local".into(),
                    hint: "add [local] with directory = /where/archives/go",
                });
            };
            local(section, file)
        }
        "glacier" => glacier(config, file),
        "s3" => {
            let Some(section) = config.backend_sections.get("s3") else {
                return Err(BackendError::MissingSection {
                    file,
                    name: "s3".into(),
                    hint: "add [s3] with bucket = \"your-bucket\"",
                });
            };
            s3(section, file)
        }
        other => Err(BackendError::NotCompiled {
            file,
            name: other.into(),
        }),
    }
}

#[cfg(feature = "s3")]
fn s3(
    section: &glacier_backup_archiver::settings::Section,
    _file: String,
) -> Result<Arc<dyn Archiver>, BackendError> {
    Ok(Arc::new(glacier_backup_s3::S3Archiver::from_section(
        section,
    )?))
}

#[cfg(not(feature = "s3"))]
fn s3(
    _: &glacier_backup_archiver::settings::Section,
    file: String,
) -> Result<Arc<dyn Archiver>, BackendError> {
    Err(BackendError::NotCompiled {
        file,
        name: "s3".into(),
    })
}

#[cfg(feature = "glacier")]
fn glacier(config: &Config, _file: String) -> Result<Arc<dyn Archiver>, BackendError> {
    // Without a [glacier] section, problems are about [main]'s vault_name and account_id.
    let main = glacier_backup_archiver::settings::Section::new(config.file.as_deref(), "main");
    let section = config.backend_sections.get("glacier").unwrap_or(&main);
    Ok(Arc::new(
        glacier_backup_glacier::GlacierArchiver::from_config(
            Some(section),
            config.vault_name.as_deref(),
            config.account_id.as_deref(),
        )?,
    ))
}

#[cfg(not(feature = "glacier"))]
fn glacier(_: &Config, file: String) -> Result<Arc<dyn Archiver>, BackendError> {
    Err(BackendError::NotCompiled {
        file,
        name: "glacier".into(),
    })
}

#[cfg(feature = "local")]
fn local(
    section: &glacier_backup_archiver::settings::Section,
    _file: String,
) -> Result<Arc<dyn Archiver>, BackendError> {
    Ok(Arc::new(
        glacier_backup_local::LocalArchiver::from_settings(section)?,
    ))
}

#[cfg(not(feature = "local"))]
fn local(
    _: &glacier_backup_archiver::settings::Section,
    file: String,
) -> Result<Arc<dyn Archiver>, BackendError> {
    Err(BackendError::NotCompiled {
        file,
        name: "local".into(),
    })
}

/// The ledger file for this config and archiver: `[main] ledger` if set, else
/// `<target>.sqlite3` beside the config file (the Python tool's `glacier.<vault>.sqlite3`). When that
/// file does not exist but the Python tool's fixed location has one, that one is used, so users of the Python tool
/// who passed `-c` keep their history.
pub fn ledger_path(config: &Config, target: &str, home_config_dir: Option<&Path>) -> PathBuf {
    if let Some(explicit) = &config.ledger {
        return explicit.clone();
    }
    let name = format!("{target}.sqlite3");
    let dir = config
        .file
        .as_deref()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .or_else(|| home_config_dir.map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    let beside_config = dir.join(&name);
    if !beside_config.exists() {
        if let Some(old) = home_config_dir.map(|d| d.join(&name)) {
            if old.exists() {
                return old;
            }
        }
    }
    beside_config
}
