//! The checks catch what they are for: a misspelled field of a built-in kind, a field a CRD's
//! schema does not have, a trigger key KEDA does not read, a config file the Deployment does
//! not mount. `scripts/chart-check.sh` sets `KEDA_MODULE_DIR` (KEDA's Go module) so that the
//! last test runs against KEDA's own CRD.

use chart_check::{
    documents, round_trip, selector_overlaps, worker_configs, ScalerParams, Schemas,
};
use k8s_openapi::api::apps::v1::Deployment;

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: worker
  labels: {app: worker}
spec:
  replicas: 2
  selector:
    matchLabels: {app: worker}
  template:
    metadata:
      labels: {app: worker}
    spec:
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: 45
      containers:
        - name: worker
          image: silentauth-worker:0.1.0
          args: ["run", "--config", "/etc/silentauth/config/worker.toml"]
          env:
            - name: RUST_LOG
              value: info
            - name: SILENTAUTH__CLIENTS__DEFAULT__API_KEY
              valueFrom:
                secretKeyRef: {name: api, key: api-key}
          readinessProbe:
            httpGet: {path: /readyz, port: admin}
          volumeMounts:
            - name: config
              mountPath: /etc/silentauth/config
      volumes:
        - name: config
          configMap:
            name: worker-config
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: worker-config
data:
  worker.toml: |
    [kafka]
    brokers = "kafka:9092"
"#;

fn deployment() -> serde_json::Value {
    documents(DEPLOYMENT).unwrap().remove(0)
}

#[test]
fn a_valid_deployment_round_trips_with_no_field_lost() {
    assert_eq!(
        round_trip::<Deployment>(&deployment()).unwrap(),
        Vec::<String>::new()
    );
    let schemas = Schemas::default();
    for object in documents(DEPLOYMENT).unwrap() {
        assert_eq!(schemas.check(&object).unwrap(), Vec::<String>::new());
    }
}

#[test]
fn a_misspelled_field_is_lost_and_named_with_its_path() {
    let broken = DEPLOYMENT
        .replacen(
            "terminationGracePeriodSeconds",
            "terminationGracePeriodSecond",
            1,
        )
        .replacen("readinessProbe", "readinesProbe", 1);
    let object = documents(&broken).unwrap().remove(0);
    let problems = Schemas::default().check(&object).unwrap();
    assert_eq!(
        problems,
        [
            ".spec.template.spec.containers[0].readinesProbe: lost (no such field in the API type)",
            ".spec.template.spec.terminationGracePeriodSecond: lost (no such field in the API type)",
        ],
        "{problems:#?}"
    );
}

#[test]
fn a_value_of_the_wrong_type_does_not_deserialize() {
    // YAML 1.1 reads 0440 as an octal number, YAML 1.2 as a string: the API type says which.
    let broken = DEPLOYMENT.replacen(
        "name: worker-config",
        "name: worker-config\n            defaultMode: 0440",
        1,
    );
    let object = documents(&broken).unwrap().remove(0);
    let err = Schemas::default().check(&object).unwrap_err().to_string();
    assert!(err.contains("expected i32"), "{err}");
}

#[test]
fn an_unknown_kind_is_an_error_not_a_pass() {
    let object = documents("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n")
        .unwrap()
        .remove(0);
    let err = Schemas::default().check(&object).unwrap_err().to_string();
    assert!(err.contains("Widget"), "{err}");
}

/// A CRD in the shape controller-gen writes: no `additionalProperties` anywhere.
const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: scalers.example.com}
spec:
  group: example.com
  names: {kind: Scaler, plural: scalers}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            apiVersion: {type: string}
            kind: {type: string}
            metadata: {type: object}
            spec:
              type: object
              required: [target]
              properties:
                target: {type: string}
                max: {type: integer, format: int32}
                labels:
                  type: object
                  additionalProperties: {type: string}
                free:
                  type: object
                  x-kubernetes-preserve-unknown-fields: true
"#;

fn scaler(spec: &str) -> serde_json::Value {
    documents(&format!(
        "apiVersion: example.com/v1\nkind: Scaler\nmetadata: {{name: s}}\nspec:\n{spec}"
    ))
    .unwrap()
    .remove(0)
}

#[test]
fn a_custom_resource_is_checked_against_its_crd_made_strict() {
    let mut schemas = Schemas::default();
    schemas.add_crd(CRD).unwrap();
    let ok = scaler("  target: t\n  max: 3\n  labels: {a: b}\n  free: {anything: 1}\n");
    assert_eq!(schemas.check(&ok).unwrap(), Vec::<String>::new());

    let misspelled = schemas.check(&scaler("  target: t\n  maxx: 3\n")).unwrap();
    assert_eq!(misspelled.len(), 1, "{misspelled:?}");
    assert!(misspelled[0].contains("maxx"), "{misspelled:?}");

    let wrong_type = schemas
        .check(&scaler("  target: t\n  max: three\n"))
        .unwrap();
    assert!(wrong_type[0].starts_with(".spec.max"), "{wrong_type:?}");

    let missing = schemas.check(&scaler("  max: 3\n")).unwrap();
    assert!(missing[0].contains("target"), "{missing:?}");

    let bad_metadata = documents("apiVersion: example.com/v1\nkind: Scaler\nmetadata: {name: s, label: {a: b}}\nspec: {target: t}\n")
        .unwrap()
        .remove(0);
    let problems = schemas.check(&bad_metadata).unwrap();
    assert_eq!(
        problems,
        [".metadata.label: lost (no such field in the API type)"]
    );
}

const SCALER_GO: &str = r#"
type kafkaMetadata struct {
	BootstrapServers []string `keda:"name=bootstrapServers,order=triggerMetadata;resolvedEnv"`
	LagThreshold int64 `keda:"name=lagThreshold,order=triggerMetadata,default=10"`
	Sasl string `keda:"name=sasl,order=triggerMetadata;authParams,optional"`
	Password string `keda:"name=password,order=authParams,optional"`
}
"#;

#[test]
fn kafka_trigger_keys_and_auth_parameters_are_ones_the_scaler_reads() {
    let params = ScalerParams::from_go_source(SCALER_GO).unwrap();
    assert!(params.metadata.contains("sasl") && params.auth.contains("sasl"));
    assert!(!params.metadata.contains("password"));
    let mut schemas = Schemas::default();
    schemas.add_crd(&CRD.replace("Scaler", "ScaledObject").replace("example.com", "keda.sh").replace("required: [target]", "")
        .replace("target: {type: string}", "triggers: {type: array, items: {type: object, x-kubernetes-preserve-unknown-fields: true}}")).unwrap();
    schemas.set_kafka_scaler(params);
    let object = documents(
        "apiVersion: keda.sh/v1\nkind: ScaledObject\nmetadata: {name: s}\nspec:\n  triggers:\n    - type: kafka\n      metadata: {bootstrapServers: k, lagTreshold: '5', sasl: scram_sha512}\n",
    )
    .unwrap()
    .remove(0);
    assert_eq!(
        schemas.check(&object).unwrap(),
        [".spec.triggers[0].metadata.lagTreshold: not a metadata key of KEDA's kafka scaler"]
    );
    assert!(ScalerParams::from_go_source("package x").is_err());
}

#[test]
fn the_worker_config_is_the_mounted_config_map_key_with_the_container_env() {
    let objects = documents(DEPLOYMENT).unwrap();
    let configs = worker_configs(&objects).unwrap();
    assert_eq!(configs.len(), 1);
    assert_eq!(configs[0].path, "/etc/silentauth/config/worker.toml");
    assert_eq!(configs[0].toml, "[kafka]\nbrokers = \"kafka:9092\"\n");
    assert_eq!(
        configs[0].env,
        [
            ("RUST_LOG".to_owned(), "info".to_owned()),
            (
                "SILENTAUTH__CLIENTS__DEFAULT__API_KEY".to_owned(),
                "placeholder-from-secret-api-api-key".to_owned()
            ),
        ]
    );

    let elsewhere = DEPLOYMENT.replacen(
        "/etc/silentauth/config/worker.toml",
        "/etc/other/worker.toml",
        1,
    );
    let err = worker_configs(&documents(&elsewhere).unwrap()).unwrap_err();
    assert!(
        format!("{err:#}").contains("no volume is mounted at /etc/other"),
        "{err:#}"
    );

    let other_key = DEPLOYMENT.replacen("  worker.toml: |", "  config.toml: |", 1);
    let err = worker_configs(&documents(&other_key).unwrap()).unwrap_err();
    assert!(
        format!("{err:#}").contains("has no key worker.toml"),
        "{err:#}"
    );
}

/// KEDA's own CRD, from its Go module: the directory `go mod download -json` printed.
#[test]
fn keda_scaled_object_crd_rejects_a_misspelled_field() {
    let Some(dir) = std::env::var_os("KEDA_MODULE_DIR") else {
        eprintln!("SKIPPED keda_scaled_object_crd_rejects_a_misspelled_field: KEDA_MODULE_DIR is not set (scripts/chart-check.sh sets it)");
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let crd =
        std::fs::read_to_string(dir.join("config/crd/bases/keda.sh_scaledobjects.yaml")).unwrap();
    let mut schemas = Schemas::default();
    schemas.add_crd(&crd).unwrap();
    let good = "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: s}\nspec:\n  scaleTargetRef: {name: worker}\n  maxReplicaCount: 6\n  triggers:\n    - type: kafka\n      metadata: {topic: t}\n";
    assert_eq!(
        schemas.check(&documents(good).unwrap()[0]).unwrap(),
        Vec::<String>::new()
    );
    let bad = good.replace("maxReplicaCount", "maxReplicaCounts");
    let problems = schemas.check(&documents(&bad).unwrap()[0]).unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("maxReplicaCounts"), "{problems:?}");
}

#[test]
fn pods_and_jobs_with_a_config_are_checked_too() {
    let pod = r#"
apiVersion: v1
kind: Pod
metadata: {name: doctor}
spec:
  restartPolicy: Never
  containers:
    - name: doctor
      image: silentauth-worker:0.1.0
      args: ["doctor", "--config", "/etc/silentauth/config/worker.toml"]
      volumeMounts:
        - {name: config, mountPath: /etc/silentauth/config}
  volumes:
    - name: config
      configMap: {name: worker-config}
"#;
    let job = format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: replay}}\nspec:\n  template:\n    spec:\n{}",
        pod.split_once("spec:\n")
            .unwrap()
            .1
            .lines()
            .map(|l| format!("      {l}\n"))
            .collect::<String>()
    );
    let text = format!("{DEPLOYMENT}---{pod}---\n{job}");
    let objects = documents(&text).unwrap();
    let schemas = Schemas::default();
    for object in &objects {
        assert_eq!(schemas.check(object).unwrap(), Vec::<String>::new());
    }
    let configs = worker_configs(&objects).unwrap();
    let names: Vec<&str> = configs.iter().map(|c| c.deployment.as_str()).collect();
    assert_eq!(names, ["Deployment/worker", "Pod/doctor", "Job/replay"]);
    assert!(configs.iter().all(|c| c.toml == configs[0].toml));
    assert_eq!(selector_overlaps(&objects), Vec::<String>::new());

    // A one-off pod labelled like the worker's pods would be adopted by its ReplicaSet.
    let labelled = text.replacen(
        "metadata: {name: doctor}",
        "metadata: {name: doctor, labels: {app: worker}}",
        1,
    );
    assert_eq!(
        selector_overlaps(&documents(&labelled).unwrap()),
        ["Pod/doctor: its pods match the selector of Deployment/worker"]
    );
}
