//! The Python tool's INI syntax, read as Python's configparser reads it: `[section]` headers,
//! `key = value` or `key: value` (split at the first `=` or `:`), keys case-insensitive, comments
//! on their own lines starting with `#` or `;`, no escapes. Values wrapped in matching quotes
//! mean the text inside (the Python tool's own example writes `vault_name='myvault'`).
//!
//! Parsed here in one pass, line by line, so every error names its line and a file with 100,000
//! path sections reads in linear time. configparser's indented continuation lines are refused:
//! no setting takes more than one line, and a stray indent is likelier a mistake.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use glacier_backup_archiver::settings::{Section, Value};
use glacier_backup_archiver::shown;

use super::ConfigError;

pub(super) fn sections(
    text: &str,
    file: Option<&Path>,
    display: &Path,
) -> Result<Vec<Section>, ConfigError> {
    let syntax = |line: usize, message: String| ConfigError::Syntax {
        path: display.to_path_buf(),
        line,
        message,
    };
    let mut sections: Vec<Section> = Vec::new();
    let mut section_lines: HashMap<String, usize> = HashMap::new();
    let mut keys: HashSet<String> = HashSet::new();
    // The key set on the previous line, for a useful message about an indented line after it.
    let mut previous_key: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let number = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            previous_key = None;
            continue;
        }
        let indented = raw.starts_with([' ', '\t']);
        if let (true, Some(key)) = (indented, &previous_key) {
            return Err(syntax(
                number,
                format!(
                    "indented line continues the value of {key:?}; settings take one line: \
                     remove the indentation or join the lines"
                ),
            ));
        }
        if let Some(rest) = line.strip_prefix('[') {
            let Some(end) = rest.rfind(']') else {
                return Err(syntax(
                    number,
                    format!(
                        "section header \"{}\" is missing its closing ]",
                        shown(line)
                    ),
                ));
            };
            let name = &rest[..end];
            if name.is_empty() {
                return Err(syntax(
                    number,
                    "empty section header []: name a section, e.g. [main]".into(),
                ));
            }
            if let Some(first) = section_lines.insert(name.to_owned(), number) {
                return Err(syntax(
                    number,
                    format!(
                        "section [{}] appears more than once (first on line {first}); merge the \
                         two into one",
                        shown(name)
                    ),
                ));
            }
            sections.push(Section::new(file, name));
            keys.clear();
            previous_key = None;
            continue;
        }
        let Some(split) = line.find(['=', ':']) else {
            return Err(syntax(
                number,
                format!(
                    "\"{}\" is not a setting: write key = value, or [section] to start a section",
                    shown(line)
                ),
            ));
        };
        let key = line[..split].trim().to_lowercase();
        if key.is_empty() {
            return Err(syntax(
                number,
                "a setting without a name: write key = value".into(),
            ));
        }
        let Some(section) = sections.last_mut() else {
            return Err(syntax(
                number,
                format!(
                    "setting \"{}\" is outside any section; move it under [main]",
                    shown(&key)
                ),
            ));
        };
        if !keys.insert(key.clone()) {
            return Err(syntax(
                number,
                format!(
                    "[{}] sets \"{}\" more than once; keep one",
                    shown(section.name()),
                    shown(&key)
                ),
            ));
        }
        let value = unquote(line[split + 1..].trim()).to_owned();
        section.insert(key.clone(), Value::String(value), Some(number));
        previous_key = Some(key);
    }
    Ok(sections)
}

fn unquote(value: &str) -> &str {
    for quote in ['\'', '"'] {
        if value.len() >= 2 && value.starts_with(quote) && value.ends_with(quote) {
            return &value[1..value.len() - 1];
        }
    }
    value
}
