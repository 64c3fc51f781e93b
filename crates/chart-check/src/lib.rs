//! Checks the manifests `helm template` renders from `deploy/helm/silentauth-worker` without a
//! cluster:
//!
//! - each built-in object deserializes into its kind's Kubernetes API type (`k8s-openapi`) and
//!   serializes back to the same JSON: a field the type does not have (a misspelling, a field
//!   of another version) is lost on the way and reported with its path;
//! - each custom resource (KEDA's `ScaledObject` and `TriggerAuthentication`) validates against
//!   the `openAPIV3Schema` of its CRD, made strict the way the API server prunes: an object
//!   schema with `properties` accepts no other field unless it says
//!   `x-kubernetes-preserve-unknown-fields`; its `metadata` round-trips through `ObjectMeta`;
//! - a `kafka` trigger's metadata keys and a `TriggerAuthentication`'s parameters are ones KEDA's
//!   kafka scaler reads (its `keda:"name=..."` struct tags);
//! - no pod of another object (the `doctor` test Pod, a Job) carries labels a Deployment's
//!   selector matches: its ReplicaSet would adopt an orphan pod, and the Service and the
//!   PodDisruptionBudget would count it;
//! - the worker's configuration, as each Deployment, Job or Pod hands it over (the ConfigMap
//!   mounted where `--config` points, the environment with each Secret reference as a
//!   placeholder), passes `silentauth-worker check-config`.

use anyhow::{anyhow, bail, Context, Result};
use k8s_openapi::Resource;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The YAML documents of a multi-document stream, as JSON values; empty documents (a template
/// that rendered nothing) are skipped.
pub fn documents(yaml: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for (i, doc) in serde_norway::Deserializer::from_str(yaml).enumerate() {
        let value = Value::deserialize(doc).with_context(|| format!("YAML document {}", i + 1))?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}

/// `value` without its `null` members: the API server treats a null field as absent.
pub fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// Where `after` differs from `before`, one line per path: a field lost, changed or added.
pub fn differences(before: &Value, after: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff_into(before, after, String::new(), &mut out);
    out
}

fn diff_into(before: &Value, after: &Value, path: String, out: &mut Vec<String>) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            for (k, bv) in b {
                let p = format!("{path}.{k}");
                match a.get(k) {
                    Some(av) => diff_into(bv, av, p, out),
                    None => out.push(format!("{p}: lost (no such field in the API type)")),
                }
            }
            for k in a.keys().filter(|k| !b.contains_key(*k)) {
                out.push(format!("{path}.{k}: added by the API type"));
            }
        }
        (Value::Array(b), Value::Array(a)) if b.len() == a.len() => {
            for (i, (bv, av)) in b.iter().zip(a).enumerate() {
                diff_into(bv, av, format!("{path}[{i}]"), out);
            }
        }
        (b, a) if b == a => {}
        (b, a) => out.push(format!("{path}: {b} became {a}")),
    }
}

/// Deserializes `object` into `K` and serializes it back; the fields that did not survive.
pub fn round_trip<K: DeserializeOwned + Serialize>(object: &Value) -> Result<Vec<String>> {
    let input = without_nulls(object);
    let typed: K = serde_json::from_value(input.clone()).map_err(|e| {
        anyhow!(
            "does not deserialize into {}: {e}",
            std::any::type_name::<K>()
        )
    })?;
    let output = serde_json::to_value(&typed)?;
    Ok(differences(&input, &output))
}

/// `apiVersion` and `kind` of an object.
pub fn type_of(object: &Value) -> (String, String) {
    let field = |name: &str| {
        object
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    (field("apiVersion"), field("kind"))
}

/// `Kind/name` of an object, for messages.
pub fn describe(object: &Value) -> String {
    let (_, kind) = type_of(object);
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("<no name>");
    format!("{kind}/{name}")
}

macro_rules! built_in {
    ($api_version:expr, $kind:expr, $object:expr, $($t:ty),+ $(,)?) => {{
        $(
            if $api_version == <$t as Resource>::API_VERSION && $kind == <$t as Resource>::KIND {
                return Some(round_trip::<$t>($object));
            }
        )+
        None
    }};
}

/// The round trip of a built-in kind; `None` for a kind this check does not know.
fn built_in_round_trip(object: &Value) -> Option<Result<Vec<String>>> {
    use k8s_openapi::api::{apps, autoscaling, batch, core, policy};
    let (api_version, kind) = type_of(object);
    built_in!(
        api_version,
        kind,
        object,
        core::v1::ConfigMap,
        core::v1::Secret,
        core::v1::Service,
        core::v1::ServiceAccount,
        core::v1::Pod,
        apps::v1::Deployment,
        batch::v1::Job,
        policy::v1::PodDisruptionBudget,
        autoscaling::v2::HorizontalPodAutoscaler,
    )
}

/// The schemas of custom resources, by `(apiVersion, kind)`, and what KEDA's kafka scaler reads.
#[derive(Debug, Default)]
pub struct Schemas {
    crds: BTreeMap<(String, String), Value>,
    kafka_scaler: Option<ScalerParams>,
}

/// The names KEDA's kafka scaler reads: from the trigger's metadata and from its
/// authentication parameters.
#[derive(Debug, Default, Clone)]
pub struct ScalerParams {
    /// Keys of a `kafka` trigger's `metadata`.
    pub metadata: BTreeSet<String>,
    /// `parameter`s of a `TriggerAuthentication`.
    pub auth: BTreeSet<String>,
}

impl ScalerParams {
    /// Reads the `keda:"name=...,order=..."` struct tags of a scaler's Go source
    /// (`pkg/scalers/kafka_scaler.go`).
    pub fn from_go_source(source: &str) -> Result<ScalerParams> {
        let mut params = ScalerParams::default();
        for tag in source.split("keda:\"").skip(1) {
            let tag = tag.split('"').next().unwrap_or("");
            let mut name = None;
            let mut order = "";
            for part in tag.split(',') {
                if let Some(n) = part.strip_prefix("name=") {
                    name = Some(n);
                } else if let Some(o) = part.strip_prefix("order=") {
                    order = o;
                }
            }
            let Some(name) = name else { continue };
            for source in order.split(';') {
                match source {
                    "triggerMetadata" => params.metadata.insert(name.to_owned()),
                    "authParams" => params.auth.insert(name.to_owned()),
                    _ => false,
                };
            }
        }
        if params.metadata.is_empty() || params.auth.is_empty() {
            bail!("no keda:\"name=...,order=...\" struct tags found");
        }
        Ok(params)
    }
}

impl Schemas {
    /// Adds every served version of a CustomResourceDefinition (YAML), its schema made strict.
    pub fn add_crd(&mut self, yaml: &str) -> Result<()> {
        for crd in documents(yaml)? {
            let group = crd
                .pointer("/spec/group")
                .and_then(Value::as_str)
                .ok_or_else(|| anyhow!("not a CustomResourceDefinition: no spec.group"))?;
            let kind = crd
                .pointer("/spec/names/kind")
                .and_then(Value::as_str)
                .ok_or_else(|| anyhow!("no spec.names.kind"))?;
            let versions = crd
                .pointer("/spec/versions")
                .and_then(Value::as_array)
                .ok_or_else(|| anyhow!("{kind}: no spec.versions"))?;
            for version in versions {
                let name = version.get("name").and_then(Value::as_str).unwrap_or("");
                let mut schema = version
                    .pointer("/schema/openAPIV3Schema")
                    .cloned()
                    .ok_or_else(|| anyhow!("{kind} {name}: no schema.openAPIV3Schema"))?;
                make_strict(&mut schema);
                self.crds
                    .insert((format!("{group}/{name}"), kind.to_owned()), schema);
            }
        }
        Ok(())
    }

    /// Reads what KEDA's kafka scaler accepts from its Go source.
    pub fn set_kafka_scaler(&mut self, params: ScalerParams) {
        self.kafka_scaler = Some(params);
    }

    /// The `(apiVersion, kind)` pairs with a schema.
    pub fn kinds(&self) -> impl Iterator<Item = &(String, String)> {
        self.crds.keys()
    }

    /// Every problem of one object; empty when it passes.
    pub fn check(&self, object: &Value) -> Result<Vec<String>> {
        if let Some(round_trip) = built_in_round_trip(object) {
            return round_trip;
        }
        let key = type_of(object);
        let Some(schema) = self.crds.get(&key) else {
            bail!(
                "{} {}: neither a built-in kind this check knows nor one of the CRDs given",
                key.0,
                key.1
            );
        };
        let instance = without_nulls(object);
        let validator = jsonschema::validator_for(schema)
            .map_err(|e| anyhow!("{} schema does not compile: {e}", key.1))?;
        let mut problems: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| format!("{}: {e}", pointer_to_path(&e.instance_path.to_string())))
            .collect();
        if let Some(metadata) = instance.get("metadata") {
            let round_trip =
                round_trip::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>(metadata)?;
            problems.extend(round_trip.into_iter().map(|p| format!(".metadata{p}")));
        }
        if let Some(params) = &self.kafka_scaler {
            problems.extend(keda_kafka_params(&key.1, &instance, params));
        }
        Ok(problems)
    }
}

fn pointer_to_path(pointer: &str) -> String {
    pointer.replace('/', ".")
}

/// Marks every object schema that lists `properties` as closed (`additionalProperties: false`)
/// unless it preserves unknown fields or says otherwise: the API server drops a field its
/// structural schema does not have, so such a field is lost.
pub fn make_strict(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let preserves = map
                .get("x-kubernetes-preserve-unknown-fields")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if map.contains_key("properties")
                && !map.contains_key("additionalProperties")
                && !preserves
            {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            for v in map.values_mut() {
                make_strict(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(make_strict),
        _ => {}
    }
}

fn keda_kafka_params(kind: &str, object: &Value, params: &ScalerParams) -> Vec<String> {
    let mut problems = Vec::new();
    match kind {
        "ScaledObject" => {
            let triggers = object
                .pointer("/spec/triggers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (i, trigger) in triggers.iter().enumerate() {
                if trigger.get("type").and_then(Value::as_str) != Some("kafka") {
                    continue;
                }
                let metadata = trigger
                    .get("metadata")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                for key in metadata.keys().filter(|k| !params.metadata.contains(*k)) {
                    problems.push(format!(
                        ".spec.triggers[{i}].metadata.{key}: not a metadata key of KEDA's kafka scaler"
                    ));
                }
            }
        }
        "TriggerAuthentication" => {
            let refs = object
                .pointer("/spec/secretTargetRef")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (i, r) in refs.iter().enumerate() {
                let parameter = r.get("parameter").and_then(Value::as_str).unwrap_or("");
                if !params.auth.contains(parameter) {
                    problems.push(format!(
                        ".spec.secretTargetRef[{i}].parameter: {parameter:?} is not an authentication parameter of KEDA's kafka scaler"
                    ));
                }
            }
        }
        _ => {}
    }
    problems
}

/// The worker's configuration as one Deployment (or Job, or Pod) hands it over: the file `--config` names,
/// taken from the ConfigMap mounted there, and the container's environment, each value from a
/// Secret replaced by a placeholder.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerConfig {
    /// The object's `Kind/name`.
    pub deployment: String,
    /// The path `--config` names inside the container.
    pub path: String,
    /// The file's text.
    pub toml: String,
    /// The container's environment.
    pub env: Vec<(String, String)>,
}

/// The worker configuration of every container of a Deployment, Job or Pod among `objects` that
/// runs with `--config FILE`.
pub fn worker_configs(objects: &[Value]) -> Result<Vec<WorkerConfig>> {
    let mut out = Vec::new();
    for deployment in objects {
        let pod_spec = match type_of(deployment) {
            (v, k) if v == "apps/v1" && k == "Deployment" => "/spec/template/spec",
            (v, k) if v == "batch/v1" && k == "Job" => "/spec/template/spec",
            (v, k) if v == "v1" && k == "Pod" => "/spec",
            _ => continue,
        };
        let spec = deployment
            .pointer(pod_spec)
            .ok_or_else(|| anyhow!("{}: no pod spec", describe(deployment)))?;
        let containers = spec
            .get("containers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for container in &containers {
            let args: Vec<&str> = container
                .get("args")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let Some(at) = args.iter().position(|a| *a == "--config") else {
                continue;
            };
            let path = args
                .get(at + 1)
                .ok_or_else(|| anyhow!("{}: --config without a file", describe(deployment)))?;
            let toml = mounted_config_map_file(objects, spec, container, path)
                .with_context(|| format!("{}: --config {path}", describe(deployment)))?;
            let env = container_env(container)?;
            out.push(WorkerConfig {
                deployment: describe(deployment),
                path: (*path).to_owned(),
                toml,
                env,
            });
        }
    }
    Ok(out)
}

/// The text of the ConfigMap key that the container sees at `path`.
fn mounted_config_map_file(
    objects: &[Value],
    pod: &Value,
    container: &Value,
    path: &str,
) -> Result<String> {
    let path = Path::new(path);
    let dir = path
        .parent()
        .and_then(Path::to_str)
        .ok_or_else(|| anyhow!("not a file path"))?;
    let file = path
        .file_name()
        .and_then(|f| f.to_str())
        .ok_or_else(|| anyhow!("not a file path"))?;
    let mount = container
        .get("volumeMounts")
        .and_then(Value::as_array)
        .and_then(|m| {
            m.iter()
                .find(|m| m.get("mountPath").and_then(Value::as_str) == Some(dir))
        })
        .ok_or_else(|| anyhow!("no volume is mounted at {dir}"))?;
    let volume_name = mount.get("name").and_then(Value::as_str).unwrap_or("");
    let volume = pod
        .get("volumes")
        .and_then(Value::as_array)
        .and_then(|v| {
            v.iter()
                .find(|v| v.get("name").and_then(Value::as_str) == Some(volume_name))
        })
        .ok_or_else(|| anyhow!("volume {volume_name} is mounted but not defined"))?;
    let map_name = volume
        .pointer("/configMap/name")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("volume {volume_name} is not a ConfigMap"))?;
    let map = objects
        .iter()
        .find(|o| {
            type_of(o) == ("v1".to_owned(), "ConfigMap".to_owned())
                && o.pointer("/metadata/name").and_then(Value::as_str) == Some(map_name)
        })
        .ok_or_else(|| anyhow!("ConfigMap {map_name} is not among the rendered objects"))?;
    map.pointer(&format!(
        "/data/{}",
        file.replace('~', "~0").replace('/', "~1")
    ))
    .and_then(Value::as_str)
    .map(str::to_owned)
    .ok_or_else(|| anyhow!("ConfigMap {map_name} has no key {file}"))
}

/// A container's `env`: literal values as they are, values from a Secret as a placeholder.
fn container_env(container: &Value) -> Result<Vec<(String, String)>> {
    let mut env = Vec::new();
    for var in container
        .get("env")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let name = var
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("an env entry without a name"))?
            .to_owned();
        let value = if let Some(v) = var.get("value").and_then(Value::as_str) {
            v.to_owned()
        } else if let Some(r) = var.pointer("/valueFrom/secretKeyRef") {
            let field = |f: &str| r.get(f).and_then(Value::as_str).unwrap_or("").to_owned();
            format!("placeholder-from-secret-{}-{}", field("name"), field("key"))
        } else {
            bail!("env {name}: neither a value nor a secretKeyRef");
        };
        env.push((name, value));
    }
    Ok(env)
}

/// What `check-config` said about one worker configuration.
#[derive(Debug)]
pub struct ConfigVerdict {
    /// Exit code (0: the configuration loads and validates).
    pub code: i32,
    /// stdout then stderr.
    pub output: String,
}

/// Runs `binary check-config --config FILE` on `config`, written into `dir`, with only the
/// container's environment.
pub fn check_config(binary: &Path, config: &WorkerConfig, dir: &Path) -> Result<ConfigVerdict> {
    let name = config
        .deployment
        .replace(|c: char| !c.is_ascii_alphanumeric(), "-");
    let file: PathBuf = dir.join(format!("{name}.toml"));
    std::fs::write(&file, &config.toml).with_context(|| format!("writing {}", file.display()))?;
    let out = Command::new(binary)
        .arg("check-config")
        .arg("--config")
        .arg(&file)
        .env_clear()
        .envs(config.env.iter().map(|(k, v)| (k, v)))
        .output()
        .with_context(|| format!("running {}", binary.display()))?;
    Ok(ConfigVerdict {
        code: out.status.code().unwrap_or(-1),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    })
}

/// The pods of other objects that a Deployment's `matchLabels` selects, one line each.
pub fn selector_overlaps(objects: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    for deployment in objects
        .iter()
        .filter(|o| type_of(o) == ("apps/v1".to_owned(), "Deployment".to_owned()))
    {
        let Some(selector) = deployment
            .pointer("/spec/selector/matchLabels")
            .and_then(Value::as_object)
        else {
            continue;
        };
        for other in objects.iter().filter(|o| !std::ptr::eq(*o, deployment)) {
            let labels = match type_of(other) {
                (v, k) if v == "v1" && k == "Pod" => other.pointer("/metadata/labels"),
                (v, k) if v == "batch/v1" && k == "Job" => {
                    other.pointer("/spec/template/metadata/labels")
                }
                (v, k) if v == "apps/v1" && k == "Deployment" => {
                    other.pointer("/spec/template/metadata/labels")
                }
                _ => None,
            };
            let Some(labels) = labels.and_then(Value::as_object) else {
                continue;
            };
            if selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                out.push(format!(
                    "{}: its pods match the selector of {}",
                    describe(other),
                    describe(deployment)
                ));
            }
        }
    }
    out
}
