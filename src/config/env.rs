//! The environment overlay: `SILENTAUTH__SECTION__KEY` variables applied to the parsed TOML
//! table, each converted to the type of the key it sets.

use super::error::ConfigError;
use super::origin::{EMBEDDED_DEFAULT_TOML, ENV_PREFIX};
use super::sections::Config;
use toml::{Table, Value};

/// The `SILENTAUTH__*` variables of the process; any other variable, even one that is not
/// UTF-8, is skipped.
pub(super) fn process_env() -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Ok(name) = name.into_string() else {
            continue;
        };
        if env_segments(&name).is_none() && !super::telemetry::is_otel_var(&name) {
            continue;
        }
        let value = value.into_string().map_err(|_| ConfigError::Env {
            var: name.clone(),
            problem: "not valid UTF-8".into(),
        })?;
        out.push((name, value));
    }
    Ok(out)
}

/// The segments after `SILENTAUTH__`, or `None` when the variable is not an override.
pub(super) fn env_segments(name: &str) -> Option<Vec<&str>> {
    let mut parts = name.split("__");
    let prefix = parts.next()?;
    if !prefix.eq_ignore_ascii_case(ENV_PREFIX) || name.len() == prefix.len() {
        return None;
    }
    Some(parts.collect())
}

/// The type an environment value is converted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Str,
    Integer,
    Float,
    Boolean,
    Section,
}

pub(super) fn kind_of_value(v: &Value) -> Kind {
    match v {
        Value::Integer(_) => Kind::Integer,
        Value::Float(_) => Kind::Float,
        Value::Boolean(_) => Kind::Boolean,
        Value::Table(_) => Kind::Section,
        Value::String(_) | Value::Datetime(_) | Value::Array(_) => Kind::Str,
    }
}

pub(super) fn lookup<'a>(table: &'a Table, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let v = table.get(first)?;
    match (rest.is_empty(), v) {
        (true, v) => Some(v),
        (false, Value::Table(t)) => lookup(t, rest),
        _ => None,
    }
}

/// Where the type of each overridable key comes from.
pub(super) struct Schema {
    defaults: Table,
    embedded: Table,
}

impl Schema {
    pub(super) fn new() -> Schema {
        let defaults = match Value::try_from(Config::default()) {
            Ok(Value::Table(t)) => t,
            _ => Table::new(),
        };
        let embedded = EMBEDDED_DEFAULT_TOML.parse().unwrap_or_default();
        Schema { defaults, embedded }
    }

    pub(super) fn kind(&self, path: &[String]) -> Kind {
        if path.len() >= 2 && path[0] == "clients" {
            return match (path.len(), path.get(2).map(String::as_str)) {
                (2, _) => Kind::Section,
                (3, Some("burst")) => Kind::Integer,
                (3, Some("requests_per_second" | "signals_requests_per_second")) => Kind::Float,
                _ => Kind::Str,
            };
        }
        lookup(&self.defaults, path)
            .or_else(|| lookup(&self.embedded, path))
            .map_or(Kind::Str, kind_of_value)
    }
}

/// The key of `table` equal to `seg` ignoring case, else `seg` itself.
pub(super) fn existing_key(table: &Table, seg: &str) -> String {
    table
        .keys()
        .find(|k| k.eq_ignore_ascii_case(seg))
        .cloned()
        .unwrap_or_else(|| seg.to_owned())
}

/// Applies the `SILENTAUTH__*` variables to `root`; returns which variable set which key path.
pub(super) fn overlay_env(
    root: &mut Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let schema = Schema::new();
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| env_segments(name).is_some())
        .collect();
    vars.sort();
    let mut sources = Vec::new();
    for (var, raw) in vars {
        let err = |problem: &str| ConfigError::Env {
            var: var.clone(),
            problem: problem.to_owned(),
        };
        let segs: Vec<String> = env_segments(&var)
            .unwrap_or_default()
            .into_iter()
            .map(str::to_ascii_lowercase)
            .collect();
        if segs.iter().any(String::is_empty) {
            return Err(err("empty name segment (use `__` only between levels)"));
        }
        let path = canonical_path(root, &segs);
        let kind = schema.kind(&path);
        let value = match kind {
            Kind::Section => return Err(err("names a section, not a key")),
            Kind::Str => Value::String(raw),
            Kind::Integer => raw
                .trim()
                .parse::<i64>()
                .map(Value::Integer)
                .map_err(|_| err("not an integer"))?,
            Kind::Float => raw
                .trim()
                .parse::<f64>()
                .map(Value::Float)
                .map_err(|_| err("not a number"))?,
            Kind::Boolean => match raw.trim().to_ascii_lowercase().as_str() {
                "true" => Value::Boolean(true),
                "false" => Value::Boolean(false),
                _ => return Err(err("not a boolean (true or false)")),
            },
        };
        insert(root, &path, value).map_err(|section| {
            err(&format!(
                "{section} is a value, not a section, so it has no keys"
            ))
        })?;
        sources.push((path.join("."), var));
    }
    Ok(sources)
}

/// Turns lower-cased env segments into the key path to set (see the module docs).
pub(super) fn canonical_path(root: &Table, segs: &[String]) -> Vec<String> {
    if segs.len() >= 3 && segs[0] == "kafka" && segs[1] == "properties" {
        let name = segs[2..].join(".").replace('_', ".");
        let normalize = |k: &str| k.to_ascii_lowercase().replace('_', ".");
        let existing = lookup(root, &["kafka".into(), "properties".into()])
            .and_then(Value::as_table)
            .and_then(|t| t.keys().find(|k| normalize(k) == name).cloned());
        return vec![
            "kafka".into(),
            "properties".into(),
            existing.unwrap_or(name),
        ];
    }
    let mut path = Vec::with_capacity(segs.len());
    let mut table = Some(root);
    for seg in segs {
        let key = table.map_or_else(|| seg.clone(), |t| existing_key(t, seg));
        table = table.and_then(|t| t.get(&key)).and_then(Value::as_table);
        path.push(key);
    }
    path
}

/// Sets `path` to `value`, creating tables; `Err(prefix)` when a prefix holds a non-table.
pub(super) fn insert(root: &mut Table, path: &[String], value: Value) -> Result<(), String> {
    let (last, parents) = path.split_last().expect("env paths have a segment");
    let mut table = root;
    for (i, seg) in parents.iter().enumerate() {
        let entry = table
            .entry(seg.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        table = match entry {
            Value::Table(t) => t,
            _ => return Err(path[..=i].join(".")),
        };
    }
    table.insert(last.clone(), value);
    Ok(())
}

/// librdkafka properties are strings; bare numbers and booleans in the file are accepted.
pub(super) fn stringify_properties(root: &mut Table) {
    let Some(Value::Table(kafka)) = root.get_mut("kafka") else {
        return;
    };
    let Some(Value::Table(props)) = kafka.get_mut("properties") else {
        return;
    };
    for (_, v) in props.iter_mut() {
        let s = match v {
            Value::Integer(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Boolean(b) => b.to_string(),
            _ => continue,
        };
        *v = Value::String(s);
    }
}
