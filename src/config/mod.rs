//! Configuration: the TOML file (`file`), its validation into the model (`validate`, every error
//! with its field path, all errors at once) and the validated model itself (`model`).

pub mod file;
pub mod model;
pub mod units;
pub mod validate;

#[cfg(test)]
mod tests;

use std::path::Path;

/// One problem in the config, at a dotted field path (`routes[2].permission`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    /// An error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Every problem found in a config, displayed one per line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", display_lines(.0))]
pub struct ConfigErrors(pub Vec<ConfigError>);

fn display_lines(errors: &[ConfigError]) -> String {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

/// Parses and validates config text; `env` reads the `TOLLGATE_*` overrides and the upstream
/// credential variable.
pub fn parse(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<model::Config, ConfigErrors> {
    parse_source(text, None, env)
}

/// Reads, parses and validates the config file at `path` with the process environment. An
/// unreadable file is a single error whose path is the file name.
pub fn load(path: &Path) -> Result<model::Config, ConfigErrors> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors(vec![ConfigError::new(&name, format!("cannot read: {e}"))]))?;
    parse_source(&text, Some(&name), &|var| std::env::var(var).ok())
}

/// Parses `text`; a syntax error is reported at `source:LINE:COLUMN` (or `line L, column C`).
fn parse_source(
    text: &str,
    source: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<model::Config, ConfigErrors> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let (line, column) = e
            .span()
            .map_or((1, 1), |span| line_column(text, span.start));
        let at = match source {
            Some(source) => format!("{source}:{line}:{column}"),
            None => format!("line {line}, column {column}"),
        };
        let message = e.message().trim().replace('\n', "; ");
        ConfigErrors(vec![ConfigError::new(at, message)])
    })?;
    let mut errors = Vec::new();
    let (file, failed) = file::read(table, &mut errors);
    match validate::validate_partial(&file, &failed, env, &mut errors) {
        Some(config) if errors.is_empty() => Ok(config),
        _ => Err(ConfigErrors(errors)),
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}
