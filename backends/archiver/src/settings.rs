//! One config section as read from INI or TOML, with typed getters whose errors name the file,
//! section and key. INI gives every value as a string; TOML gives typed values; the getters
//! accept both so that the two formats mean the same thing.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// A setting's value as the config file gave it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Text (every INI value).
    String(String),
    /// A TOML boolean.
    Bool(bool),
    /// A TOML integer.
    Integer(i64),
    /// A TOML float.
    Float(f64),
    /// A TOML array of strings.
    List(Vec<String>),
    /// Any other TOML type, by its name (`float`, `array`, `table`, `datetime`).
    Other(&'static str),
}

/// A wrong setting: where it is and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct SettingsError {
    /// `file: [section] key` (whatever is known).
    pub location: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// One section of settings; remembers which keys were read so leftovers can be reported.
#[derive(Debug)]
pub struct Section {
    file: Option<PathBuf>,
    name: String,
    entries: BTreeMap<String, (Value, Option<usize>)>,
    used: RefCell<BTreeSet<String>>,
}

impl Section {
    /// A section named `name` from `file` (if any).
    pub fn new(file: Option<&Path>, name: impl Into<String>) -> Self {
        Section {
            file: file.map(Path::to_path_buf),
            name: name.into(),
            entries: BTreeMap::new(),
            used: RefCell::default(),
        }
    }

    /// A section of text settings not read from a file, as INI would give them (library use,
    /// tests).
    pub fn from_strings(name: impl Into<String>, entries: &[(&str, &str)]) -> Self {
        let mut section = Section::new(None, name);
        for (key, value) in entries {
            section.insert(*key, Value::String((*value).to_owned()), None);
        }
        section
    }

    /// Adds a setting; `line` is its 1-based line in the file when the parser knows it.
    pub fn insert(&mut self, key: impl Into<String>, value: Value, line: Option<usize>) {
        self.entries.insert(key.into(), (value, line));
    }

    /// The section's name as written in the file.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The config file this section came from.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// True when the section has no settings.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// An error located at this section (and `key`, when given).
    pub fn error(&self, key: Option<&str>, message: impl Into<String>) -> SettingsError {
        let name = crate::shown(&self.name);
        let file = self.file.as_deref().map(crate::shown);
        let mut location = match &file {
            Some(file) => format!("{file}: "),
            None => String::new(),
        };
        location.push_str(&format!("[{name}]"));
        if let Some(key) = key {
            location.push_str(&format!(" {key}"));
            if let Some((_, Some(line))) = self.entries.get(key) {
                location = match &file {
                    Some(file) => format!("{file}:{line}: [{name}] {key}"),
                    None => format!("line {line}: [{name}] {key}"),
                };
            }
        }
        // A value or section name can be megabytes long; the message names it, not all of it.
        SettingsError {
            location: crate::shown::shorten(location),
            message: crate::shown::shorten(message.into()),
        }
    }

    fn raw(&self, key: &str) -> Option<&Value> {
        self.used.borrow_mut().insert(key.to_owned());
        self.entries.get(key).map(|(v, _)| v)
    }

    /// A text setting.
    pub fn string(&self, key: &str) -> Result<Option<String>, SettingsError> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.contains('\0') => Err(self.error(
                Some(key),
                "contains a NUL character, which no name or path can hold; remove it",
            )),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.error(
                Some(key),
                format!(
                    "expected text, found {}; put the value in quotes",
                    type_name(other)
                ),
            )),
        }
    }

    /// A path setting; relative paths are taken from the config file's directory.
    pub fn path(&self, key: &str) -> Result<Option<PathBuf>, SettingsError> {
        let Some(text) = self.string(key)? else {
            return Ok(None);
        };
        if text.is_empty() {
            return Err(self.error(Some(key), "is empty; give a path"));
        }
        let path = PathBuf::from(text);
        Ok(Some(match (&self.file, path.is_relative()) {
            (Some(file), true) => file.parent().unwrap_or(Path::new(".")).join(path),
            _ => path,
        }))
    }

    /// A boolean: TOML `true`/`false`, or the words Python's configparser accepts
    /// (1/yes/true/on, 0/no/false/off, any case).
    pub fn bool(&self, key: &str) -> Result<Option<bool>, SettingsError> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) => parse_bool(s).map(Some).ok_or_else(|| {
                self.error(
                    Some(key),
                    format!("{s:?} is not a boolean; use true or false (also yes/no, on/off, 1/0)"),
                )
            }),
            Some(other) => Err(self.error(
                Some(key),
                format!("expected true or false, found {}", type_name(other)),
            )),
        }
    }

    /// A non-negative whole number, as a TOML integer or a string of digits.
    pub fn u64(&self, key: &str) -> Result<Option<u64>, SettingsError> {
        let bad = |shown: String| {
            self.error(
                Some(key),
                format!("{shown} is not a whole number of 0 or more"),
            )
        };
        match self.raw(key) {
            None => Ok(None),
            Some(Value::Integer(i)) => u64::try_from(*i).map(Some).map_err(|_| bad(i.to_string())),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| bad(format!("{s:?}"))),
            Some(other) => Err(bad(type_name(other).to_owned())),
        }
    }

    /// `part_size`, in MiB: a power of two from `min_mib` to `max_mib` (so part tree hashes
    /// combine), returned in bytes.
    pub fn part_size(&self, min_mib: u64, max_mib: u64) -> Result<Option<u64>, SettingsError> {
        match self.u64("part_size")? {
            None => Ok(None),
            Some(mib) if mib.is_power_of_two() && (min_mib..=max_mib).contains(&mib) => {
                Ok(Some(mib << 20))
            }
            Some(mib) => Err(self.error(
                Some("part_size"),
                format!(
                    "{mib} MiB is not a usable part size: use a power of two from {min_mib} to \
                     {max_mib} (MiB)"
                ),
            )),
        }
    }

    /// A list of words: a TOML array of strings, or text with the items separated by commas or
    /// spaces (INI). Empty items are dropped.
    pub fn list(&self, key: &str) -> Result<Option<Vec<String>>, SettingsError> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::List(items)) => Ok(Some(
                items
                    .iter()
                    .map(|item| item.trim().to_owned())
                    .filter(|item| !item.is_empty())
                    .collect(),
            )),
            Some(Value::String(_)) => Ok(Some(
                self.string(key)?
                    .unwrap_or_default()
                    .split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|item| !item.is_empty())
                    .map(str::to_owned)
                    .collect(),
            )),
            Some(other) => Err(self.error(
                Some(key),
                format!(
                    "expected a list of text, found {}; write [\"a\", \"b\"] (or a, b in INI)",
                    type_name(other)
                ),
            )),
        }
    }

    /// A number of 0 or more, whole or decimal: a TOML number or a string of one.
    pub fn non_negative(&self, key: &str) -> Result<Option<f64>, SettingsError> {
        let value = match self.raw(key) {
            None => return Ok(None),
            Some(Value::Integer(i)) => Some(*i as f64),
            Some(Value::Float(f)) => Some(*f),
            Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
            Some(_) => None,
        };
        value
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(Some)
            .ok_or_else(|| self.error(Some(key), "is not a number of 0 or more, e.g. 0.0036"))
    }

    /// Fails on the first key that no getter asked for, suggesting the nearest known key.
    pub fn reject_unknown(&self, known: &[&str]) -> Result<(), SettingsError> {
        let used = self.used.borrow();
        for key in self.entries.keys() {
            if used.contains(key) || known.contains(&key.as_str()) {
                continue;
            }
            let mut message = format!("unknown setting {key:?}");
            if let Some(best) = closest(key, known) {
                message.push_str(&format!("; did you mean {best:?}?"));
            } else {
                message.push_str(&format!("; valid settings here: {}", known.join(", ")));
            }
            return Err(self.error(Some(key), message));
        }
        Ok(())
    }
}

/// Python configparser's boolean words.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// The candidate most like `word`, if any is close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(word, c), *c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "text",
        Value::Bool(_) => "a boolean",
        Value::Integer(_) => "a number",
        Value::Float(_) => "a decimal number",
        Value::List(_) => "a list",
        Value::Other(name) => name,
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::String(s) => write!(f, "{s:?}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Integer(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::List(items) => write!(f, "{items:?}"),
            Value::Other(name) => f.write_str(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(entries: &[(&str, Value)]) -> Section {
        let mut s = Section::new(Some(Path::new("/etc/gb.conf")), "local");
        for (i, (k, v)) in entries.iter().enumerate() {
            s.insert(*k, v.clone(), Some(i + 2));
        }
        s
    }

    #[test]
    fn booleans_follow_configparser() {
        for (word, expected) in [
            ("YES", true),
            ("on", true),
            ("1", true),
            ("Off", false),
            ("0", false),
        ] {
            let s = section(&[("flag", Value::String(word.into()))]);
            assert_eq!(s.bool("flag").unwrap(), Some(expected), "{word}");
        }
        let s = section(&[("flag", Value::String("maybe".into()))]);
        let err = s.bool("flag").unwrap_err().to_string();
        assert!(err.starts_with("/etc/gb.conf:2: [local] flag:"), "{err}");
        assert!(err.contains("\"maybe\" is not a boolean"), "{err}");
    }

    #[test]
    fn unknown_keys_get_a_suggestion() {
        let s = section(&[("directry", Value::String("/x".into()))]);
        let err = s
            .reject_unknown(&["directory", "create_directory"])
            .unwrap_err();
        assert!(err.message.contains("did you mean \"directory\""), "{err}");
    }

    #[test]
    fn relative_paths_are_taken_from_the_config_directory() {
        let s = section(&[("directory", Value::String("archives".into()))]);
        assert_eq!(
            s.path("directory").unwrap(),
            Some(PathBuf::from("/etc/archives"))
        );
    }
}
