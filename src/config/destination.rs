//! Where a configuration's archives and ledger are: the archiver it names and the ledger file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use glacier_backup_archiver::Archiver;

use crate::backends::{BackendError, BackendSettings};

use super::Config;

impl Config {
    /// What the configured backend is built from.
    pub fn backend_settings(&self) -> BackendSettings<'_> {
        BackendSettings {
            name: &self.backend,
            file: self.file.as_deref(),
            sections: &self.backend_sections,
            vault_name: self.vault_name.as_deref(),
            account_id: self.account_id.as_deref(),
            bandwidth: &self.bandwidth,
        }
    }

    /// Builds the configured backend's archiver. Cheap and side-effect free: nothing is created
    /// or contacted until [`Archiver::check`].
    pub fn open_archiver(&self) -> Result<Arc<dyn Archiver>, BackendError> {
        crate::backends::open_archiver(&self.backend_settings())
    }

    /// The ledger file for this config and an archiver's `target`: `[main] ledger` if set, else
    /// `<target>.sqlite3` beside the config file (the Python tool's `glacier.<vault>.sqlite3`).
    /// When that file does not exist but the Python tool's fixed location (`home_config_dir`)
    /// has one, that one is used, so users of the Python tool who passed `-c` keep their
    /// history.
    pub fn ledger_path(&self, target: &str, home_config_dir: Option<&Path>) -> PathBuf {
        if let Some(explicit) = &self.ledger {
            return explicit.clone();
        }
        let name = format!("{target}.sqlite3");
        let dir = self
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
}
