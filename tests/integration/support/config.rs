//! The one writer of test configs, for every destination: a local directory, a Glacier vault
//! (the fake or moto) and an S3 bucket on moto. A test states only what it is about (an extra
//! `[main]` key, a backend setting, its path sections); the rest is the harness's defaults.
//!
//! The file's extension picks the syntax, as the binary does: `.toml` gets TOML's quoting and
//! `["path"]` headers, anything else the Python tool's INI with raw values and `[path]` headers.

use std::fmt::Display;
use std::fs;
use std::path::{Path, PathBuf};

/// A config being put together; [`TestConfig::write`] writes it.
#[derive(Clone)]
pub struct TestConfig {
    main: Vec<(String, String)>,
    /// The backend's section name and settings, if the destination has one.
    backend: Option<(String, Vec<(String, String)>)>,
    /// Sections after the backend's: `(header, settings text)`, the header a path or a name.
    sections: Vec<(Header, String)>,
    /// Text written as it is after everything else, for path sections a test spells itself.
    raw: String,
}

#[derive(Clone)]
enum Header {
    /// `[name]` in either syntax.
    Name(String),
    /// A path section: `["path"]` in TOML, `[path]` in INI.
    Path(PathBuf),
}

impl TestConfig {
    /// The local backend storing into `directory`, created on first use; no log file.
    pub fn local(directory: &Path) -> Self {
        TestConfig::bare()
            .main("backend", "local")
            .with_backend("local")
            .backend("directory", directory.display())
            .backend("create_directory", true)
    }

    /// The Glacier vault `vault` at `endpoint`: 1 MiB parts one at a time (so small test trees
    /// go up in several), three attempts per request.
    pub fn vault(endpoint: &str, vault: &str) -> Self {
        TestConfig::bare()
            .main("vault_name", vault)
            .with_backend("glacier")
            .backend("region", "us-east-1")
            .backend("endpoint_url", endpoint)
            .backend("part_size", 1)
            .backend("concurrency", 1)
            .backend("max_attempts", 3)
    }

    /// The S3 bucket `bucket` on moto at `endpoint`, in GLACIER_IR (read at once), 8 MiB parts
    /// one at a time.
    pub fn bucket(endpoint: &str, bucket: &str) -> Self {
        TestConfig::bare()
            .main("backend", "s3")
            .with_backend("s3")
            .backend("bucket", bucket)
            .backend("storage_class", "GLACIER_IR")
            .backend("endpoint_url", endpoint)
            .backend("region", "us-east-1")
            .backend("force_path_style", true)
            .backend("part_size", 8)
            .backend("concurrency", 1)
    }

    /// Azurite's container `container` at `endpoint`, in access tier `tier`, 8 MiB parts two at
    /// a time (the key comes from the sandbox's AZURE_STORAGE_ACCOUNT_KEY).
    pub fn container(endpoint: &str, container: &str, tier: &str) -> Self {
        TestConfig::bare()
            .main("backend", "azure")
            .with_backend("azure")
            .backend("account", "devstoreaccount1")
            .backend("container", container)
            .backend("access_tier", tier)
            .backend("endpoint_url", endpoint)
            .backend("part_size", 8)
            .backend("concurrency", 2)
    }

    /// Only `[main]` with no log file: the base of the above, and of a config with no
    /// destination section at all.
    pub fn bare() -> Self {
        TestConfig {
            main: vec![("logfile".into(), String::new())],
            backend: None,
            sections: Vec::new(),
            raw: String::new(),
        }
    }

    /// Sets `key` in `[main]` (replacing the harness's value).
    pub fn main(mut self, key: &str, value: impl Display) -> Self {
        set(&mut self.main, key, value);
        self
    }

    /// Sets `key` in the backend's section (replacing the harness's value).
    pub fn backend(mut self, key: &str, value: impl Display) -> Self {
        let (_, settings) = self
            .backend
            .as_mut()
            .expect("a destination with a backend section");
        set(settings, key, value);
        self
    }

    /// Leaves `key` out of `[main]` and the backend's section (the binary's default then).
    pub fn without(mut self, key: &str) -> Self {
        self.main.retain(|(k, _)| k != key);
        if let Some((_, settings)) = self.backend.as_mut() {
            settings.retain(|(k, _)| k != key);
        }
        self
    }

    /// Adds the section `[name]` with `settings` (`key = value` lines).
    pub fn section(mut self, name: &str, settings: &str) -> Self {
        self.sections
            .push((Header::Name(name.to_owned()), settings.to_owned()));
        self
    }

    /// Adds a path section for `path` with `settings` (`key = value` lines, may be empty).
    pub fn path(mut self, path: &Path, settings: &str) -> Self {
        self.sections
            .push((Header::Path(path.to_owned()), settings.to_owned()));
        self
    }

    /// Appends `text` as it is: sections the test writes in the file's own syntax.
    pub fn raw(mut self, text: &str) -> Self {
        self.raw.push_str(text);
        self
    }

    /// The config's text in TOML (`toml`) or INI.
    pub fn text(&self, toml: bool) -> String {
        let mut text = String::from("[main]\n");
        push_settings(&mut text, &self.main, toml);
        if let Some((name, settings)) = &self.backend {
            text.push_str(&format!("\n[{name}]\n"));
            push_settings(&mut text, settings, toml);
        }
        for (header, settings) in &self.sections {
            let header = match header {
                Header::Name(name) => name.clone(),
                Header::Path(path) if toml => quoted(&path.display().to_string()),
                Header::Path(path) => path.display().to_string(),
            };
            text.push_str(&format!("\n[{header}]\n{settings}"));
            if !settings.is_empty() && !settings.ends_with('\n') {
                text.push('\n');
            }
        }
        if !self.raw.is_empty() {
            text.push('\n');
            text.push_str(&self.raw);
        }
        text
    }

    /// Writes the config to `file` (its parent created), in the syntax its extension says.
    pub fn write(&self, file: &Path) -> PathBuf {
        let toml = file.extension().is_some_and(|e| e == "toml");
        if let Some(parent) = file.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(file, self.text(toml)).unwrap();
        file.to_owned()
    }

    fn with_backend(mut self, name: &str) -> Self {
        self.backend = Some((name.to_owned(), Vec::new()));
        self
    }
}

fn set(settings: &mut Vec<(String, String)>, key: &str, value: impl Display) {
    let value = value.to_string();
    match settings.iter_mut().find(|(k, _)| k == key) {
        Some((_, old)) => *old = value,
        None => settings.push((key.to_owned(), value)),
    }
}

fn push_settings(text: &mut String, settings: &[(String, String)], toml: bool) {
    for (key, value) in settings {
        // Numbers and booleans are bare in TOML; INI takes every value raw.
        let bare = value.parse::<i64>().is_ok() || value == "true" || value == "false";
        let value = if toml && !bare {
            quoted(value)
        } else {
            value.clone()
        };
        text.push_str(&format!("{key} = {value}\n"));
    }
}

/// A TOML basic string, escaped as TOML wants.
fn quoted(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}
