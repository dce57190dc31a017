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
    let mut parser = Parser {
        file,
        sections: Vec::new(),
        section_lines: HashMap::new(),
        keys: HashSet::new(),
        previous_key: None,
    };
    for (i, raw) in text.lines().enumerate() {
        parser
            .line(i + 1, raw)
            .map_err(|message| ConfigError::Syntax {
                path: display.to_path_buf(),
                line: i + 1,
                message,
            })?;
    }
    Ok(parser.sections)
}

/// The sections read so far, and what the next line is checked against.
struct Parser<'a> {
    file: Option<&'a Path>,
    sections: Vec<Section>,
    /// Each section's header line, to name the first one when a header repeats.
    section_lines: HashMap<String, usize>,
    /// The keys set in the current section.
    keys: HashSet<String>,
    /// The key set on the previous line, for a useful message about an indented line after it.
    previous_key: Option<String>,
}

impl Parser<'_> {
    /// Reads one line; the error is the message for that line.
    fn line(&mut self, number: usize, raw: &str) -> Result<(), String> {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            self.previous_key = None;
            return Ok(());
        }
        let indented = raw.starts_with([' ', '\t']);
        if let (true, Some(key)) = (indented, &self.previous_key) {
            return Err(format!(
                "indented line continues the value of {key:?}; settings take one line: \
                 remove the indentation or join the lines"
            ));
        }
        match line.strip_prefix('[') {
            Some(rest) => self.header(number, line, rest),
            None => self.setting(number, line),
        }
    }

    /// `[name]`: starts a section, once per name.
    fn header(&mut self, number: usize, line: &str, rest: &str) -> Result<(), String> {
        let Some(end) = rest.rfind(']') else {
            return Err(format!(
                "section header \"{}\" is missing its closing ]",
                shown(line)
            ));
        };
        let name = &rest[..end];
        if name.is_empty() {
            return Err("empty section header []: name a section, e.g. [main]".into());
        }
        if let Some(first) = self.section_lines.insert(name.to_owned(), number) {
            return Err(format!(
                "section [{}] appears more than once (first on line {first}); merge the two \
                 into one",
                shown(name)
            ));
        }
        self.sections.push(Section::new(self.file, name));
        self.keys.clear();
        self.previous_key = None;
        Ok(())
    }

    /// `key = value` or `key: value`, once per key in a section.
    fn setting(&mut self, number: usize, line: &str) -> Result<(), String> {
        let Some(split) = line.find(['=', ':']) else {
            return Err(format!(
                "\"{}\" is not a setting: write key = value, or [section] to start a section",
                shown(line)
            ));
        };
        let key = line[..split].trim().to_lowercase();
        if key.is_empty() {
            return Err("a setting without a name: write key = value".into());
        }
        let Some(section) = self.sections.last_mut() else {
            return Err(format!(
                "setting \"{}\" is outside any section; move it under [main]",
                shown(&key)
            ));
        };
        if !self.keys.insert(key.clone()) {
            return Err(format!(
                "[{}] sets \"{}\" more than once; keep one",
                shown(section.name()),
                shown(&key)
            ));
        }
        let value = unquote(line[split + 1..].trim()).to_owned();
        section.insert(key.clone(), Value::String(value), Some(number));
        self.previous_key = Some(key);
        Ok(())
    }
}

fn unquote(value: &str) -> &str {
    for quote in ['\'', '"'] {
        if value.len() >= 2 && value.starts_with(quote) && value.ends_with(quote) {
            return &value[1..value.len() - 1];
        }
    }
    value
}
