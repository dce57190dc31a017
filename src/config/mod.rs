//! Loading the config file (the Python tool's INI format or the equivalent TOML) into one validated
//! [`Config`].

mod destination;
mod ini;
mod model;
mod retention;
mod toml;

use std::path::{Path, PathBuf};

use glacier_backup_archiver::settings::{Section, SettingsError};

pub use model::{
    reserved_sections, ChainPolicy, Config, LogFile, PathRule, DEFAULT_BACKEND,
    DEFAULT_PARALLEL_UPLOADS,
};
pub use retention::{Retention, Span, RETENTION_KEYS};

/// A config file that cannot be used, and where the problem is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file does not exist.
    #[error("config file {0} not found; create it (see the README's configuration reference) or pass paths with -p")]
    NotFound(PathBuf),
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not a regular file (a directory, a FIFO, a device).
    #[error("config file {0} is not a regular file; pass the path of a config file with -c")]
    NotAFile(PathBuf),
    /// Larger than any config needs to be.
    #[error("config file {0} is larger than 16 MiB, more than any config needs; pass the right file with -c")]
    TooLarge(PathBuf),
    /// The file is not UTF-8 text.
    #[error("{path}:{line}: config file is not valid UTF-8 text; save it as UTF-8")]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// First line with a bad byte.
        line: usize,
    },
    /// The file has no sections at all.
    #[error("config file {0} is empty; add a [main] section and one section per path to back up")]
    Empty(PathBuf),
    /// The text does not parse.
    #[error("{path}:{line}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A setting or section is wrong.
    #[error(transparent)]
    Setting(#[from] SettingsError),
}

/// Which syntax a config file is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Python tool's INI format.
    Ini,
    /// TOML.
    Toml,
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let bytes = read_config_file(path)?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        ConfigError::NotUtf8 {
            path: path.to_path_buf(),
            line: 1 + valid.iter().filter(|&&b| b == b'\n').count(),
        }
    })?;
    parse(&text, Some(path), format_of(path, &text))
}

/// Longest config file read: a generous bound for 100,000 path sections, and a guard against
/// `-c /dev/zero` reading until memory runs out.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Reads a config file, refusing anything that is not a regular file of sane size before
/// reading it (a FIFO would block forever, a device would never end).
fn read_config_file(path: &Path) -> Result<Vec<u8>, ConfigError> {
    use std::io::Read;
    let read_error = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ConfigError::NotFound(path.to_path_buf()))
        }
        Err(e) => return Err(read_error(e)),
    };
    if !meta.is_file() {
        return Err(ConfigError::NotAFile(path.to_path_buf()));
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge(path.to_path_buf()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut bytes))
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge(path.to_path_buf()));
    }
    Ok(bytes)
}

/// Chooses the syntax: `.toml` files are TOML; anything else is TOML when it parses as TOML
/// (the Python tool's INI files with path sections never do) and INI otherwise.
pub fn format_of(path: &Path, text: &str) -> Format {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"))
    {
        return Format::Toml;
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match ::toml::from_str::<::toml::Table>(text) {
        Ok(table) if !table.is_empty() => Format::Toml,
        _ => Format::Ini,
    }
}

/// Parses config text in the given format; `file` names the source in error messages.
pub fn parse(text: &str, file: Option<&Path>, format: Format) -> Result<Config, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let display = file
        .map(Path::to_path_buf)
        .unwrap_or_else(|| "<config>".into());
    let sections: Vec<Section> = match format {
        Format::Ini => ini::sections(text, file, &display)?,
        Format::Toml => toml::sections(text, file, &display)?,
    };
    if sections.is_empty() {
        return Err(ConfigError::Empty(display));
    }
    Ok(Config::from_sections(file, sections)?)
}

#[cfg(test)]
mod tests;
