//! The TOML form of the config: the same sections, with path sections written as quoted table
//! names (`["/home/me/docs"]`).

use std::path::Path;

use glacier_backup_archiver::settings::{Section, Value};

use super::ConfigError;

pub(super) fn sections(
    text: &str,
    file: Option<&Path>,
    display: &Path,
) -> Result<Vec<Section>, ConfigError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|span| 1 + text[..span.start.min(text.len())].matches('\n').count())
            .unwrap_or(1);
        ConfigError::Syntax {
            path: display.to_path_buf(),
            line,
            message: format!("TOML: {}", e.message()),
        }
    })?;
    let mut sections = Vec::new();
    for (name, value) in table {
        let toml::Value::Table(entries) = value else {
            return Err(ConfigError::Syntax {
                path: display.to_path_buf(),
                line: 1,
                message: format!(
                    "setting {name:?} is outside any section; move it under [main] \
                     (path sections are written [\"/the/path\"])"
                ),
            });
        };
        let mut section = Section::new(file, name);
        for (key, value) in entries {
            section.insert(key, convert(value), None);
        }
        sections.push(section);
    }
    Ok(sections)
}

fn convert(value: toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Integer(i) => Value::Integer(i),
        toml::Value::Float(f) => Value::Float(f),
        toml::Value::Datetime(_) => Value::Other("a date"),
        toml::Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                toml::Value::String(s) => Some(s),
                _ => None,
            })
            .collect::<Option<Vec<String>>>()
            .map_or(
                Value::Other("an array of values other than text"),
                Value::List,
            ),
        toml::Value::Table(_) => Value::Other("a table"),
    }
}
