//! The seed's INI syntax, read as Python's configparser reads it: `key = value` or
//! `key: value`, keys case-insensitive, comments on their own lines, no escapes. Values wrapped in
//! matching quotes mean the text inside (the seed's own example writes `vault_name='myvault'`).

use std::collections::HashMap;
use std::path::Path;

use glacier_backup_archiver::settings::{Section, Value};
use ini::{Ini, ParseOption};

use super::ConfigError;

pub(super) fn sections(
    text: &str,
    file: Option<&Path>,
    display: &Path,
) -> Result<Vec<Section>, ConfigError> {
    let options = ParseOption {
        enabled_quote: false,
        enabled_escape: false,
        enabled_indented_mutiline_value: false,
        enabled_preserve_key_leading_whitespace: false,
    };
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with('[') && !line.contains(']') {
            return Err(ConfigError::Syntax {
                path: display.to_path_buf(),
                line: i + 1,
                message: format!("section header {line:?} is missing its closing ]"),
            });
        }
    }
    let parsed = Ini::load_from_str_opt(text, options).map_err(|e| ConfigError::Syntax {
        path: display.to_path_buf(),
        line: e.line,
        message: format!(
            "{} (INI syntax: [section] headers and key = value lines)",
            e.msg
        ),
    })?;
    let lines = LineIndex::new(text);
    let syntax = |line: usize, message: String| ConfigError::Syntax {
        path: display.to_path_buf(),
        line,
        message,
    };

    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut sections = Vec::new();
    for (name, properties) in parsed.iter() {
        let Some(name) = name else {
            if let Some((key, _)) = properties.iter().next() {
                let line = lines.key_line(None, key, 0).unwrap_or(1);
                return Err(syntax(
                    line,
                    format!("setting {key:?} is outside any section; move it under [main]"),
                ));
            }
            continue;
        };
        let occurrence = seen.entry(name.to_owned()).or_insert(0);
        *occurrence += 1;
        if *occurrence > 1 {
            let line = lines.section_line(name, *occurrence - 1).unwrap_or(1);
            return Err(syntax(
                line,
                format!("section [{name}] appears more than once; merge the two into one"),
            ));
        }
        let mut section = Section::new(file, name);
        let mut keys_seen: HashMap<String, usize> = HashMap::new();
        for (key, value) in properties.iter() {
            let key_lower = key.trim().to_lowercase();
            let count = keys_seen.entry(key_lower.clone()).or_insert(0);
            *count += 1;
            let line = lines.key_line(Some(name), &key_lower, *count - 1);
            if *count > 1 {
                return Err(syntax(
                    line.unwrap_or(1),
                    format!("[{name}] sets {key_lower:?} more than once; keep one"),
                ));
            }
            section.insert(
                key_lower,
                Value::String(unquote(value.trim()).to_owned()),
                line,
            );
        }
        sections.push(section);
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

/// Finds the line of a section header or key, for error messages (the INI parser keeps none).
struct LineIndex {
    /// (line, section name, key) for every header (key None) and setting, in file order.
    entries: Vec<(usize, Option<String>, Option<String>)>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut entries = Vec::new();
        let mut section: Option<String> = None;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                let name = rest.split(']').next().unwrap_or("").trim().to_owned();
                section = Some(name.clone());
                entries.push((i + 1, Some(name), None));
            } else if let Some(end) = line.find(['=', ':']) {
                let key = line[..end].trim().to_lowercase();
                entries.push((i + 1, section.clone(), Some(key)));
            }
        }
        LineIndex { entries }
    }

    fn section_line(&self, name: &str, nth: usize) -> Option<usize> {
        self.entries
            .iter()
            .filter(|(_, s, k)| k.is_none() && s.as_deref() == Some(name))
            .nth(nth)
            .map(|(line, _, _)| *line)
    }

    fn key_line(&self, section: Option<&str>, key: &str, nth: usize) -> Option<usize> {
        self.entries
            .iter()
            .filter(|(_, s, k)| s.as_deref() == section && k.as_deref() == Some(key))
            .nth(nth)
            .map(|(line, _, _)| *line)
    }
}
