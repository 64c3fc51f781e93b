//! The local stack's files, checked without a Docker engine: docker-compose.yml's services,
//! ports and mounts, the worker's compose config, Prometheus's target, and that every metric
//! the Grafana dashboard queries is one the worker exports.

use serde_json::Value;
use silentauth_worker::config::Config;
use silentauth_worker::silentauth::Limiter;
use silentauth_worker::telemetry::counters::WorkerCounters;
use silentauth_worker::telemetry::prometheus::{
    HttpMetrics, ProfileLimits, Telemetry, METRIC_NAMES,
};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn yaml(p: &str) -> serde_norway::Value {
    let text = std::fs::read_to_string(repo(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn strings(v: &serde_norway::Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn compose_file_has_the_stack_and_its_mounts_exist() {
    let c = yaml("docker-compose.yml");
    let services = c["services"].as_mapping().expect("services");
    let names: BTreeSet<&str> = services.keys().filter_map(|k| k.as_str()).collect();
    for s in [
        "kafka",
        "kafka-init",
        "simulator",
        "worker",
        "prometheus",
        "grafana",
    ] {
        assert!(names.contains(s), "service {s} missing: {names:?}");
    }
    let svc = |n: &str| &c["services"][n];

    // Kafka: the official image, single node in KRaft mode.
    assert!(svc("kafka")["image"]
        .as_str()
        .unwrap()
        .starts_with("apache/kafka:"));
    let env = &svc("kafka")["environment"];
    assert_eq!(
        env["KAFKA_PROCESS_ROLES"].as_str(),
        Some("broker,controller")
    );
    assert!(env["KAFKA_ADVERTISED_LISTENERS"]
        .as_str()
        .unwrap()
        .contains("kafka:9092"));
    // The init service creates the four topics with the image's tool.
    let init = serde_norway::to_string(&svc("kafka-init")["command"]).unwrap();
    assert!(init.contains("/opt/kafka/bin/kafka-topics.sh"), "{init}");
    let defaults = Config::default();
    for topic in [
        &defaults.topics.jobs,
        &defaults.topics.results,
        &defaults.topics.dead_letter,
        &defaults.topics.ledger,
    ] {
        assert!(init.contains(topic.as_str()), "topic {topic} not created");
    }

    // Worker and simulator are built from the repo's Dockerfile.
    for s in ["worker", "simulator"] {
        assert_eq!(svc(s)["build"].as_str(), Some("."), "{s}");
    }
    assert!(repo("Dockerfile").is_file());
    assert_eq!(
        strings(&svc("simulator")["command"]),
        [
            "simulate",
            "--listen",
            "0.0.0.0:8080",
            "--scenario",
            "/etc/silentauth/simulator.toml"
        ]
    );
    assert_eq!(
        strings(&svc("worker")["command"]),
        ["run", "--config", "/etc/silentauth/compose.toml"]
    );

    // Published ports.
    for (s, port) in [
        ("worker", "9464:9464"),
        ("simulator", "8080:8080"),
        ("prometheus", "9090:9090"),
        ("grafana", "3000:3000"),
    ] {
        assert!(
            strings(&svc(s)["ports"]).iter().any(|p| p == port),
            "{s} does not publish {port}"
        );
    }

    // Every bind mount points at a file or folder of the repo.
    let mut mounts = 0;
    for (name, s) in services {
        for m in strings(&s["volumes"]) {
            let host = m.split(':').next().unwrap();
            let path = repo(host.trim_start_matches("./"));
            assert!(
                path.exists(),
                "{name:?} mounts {host}, which is not in the repo"
            );
            mounts += 1;
        }
    }
    assert!(mounts >= 5, "{mounts}");
}

#[test]
fn compose_config_loads_and_points_at_the_stack() {
    let c = Config::load(Some(&repo("config/compose.toml"))).expect("config/compose.toml");
    c.validate().expect("valid");
    assert_eq!(c.kafka.brokers, "kafka:9092");
    assert_eq!(c.api.base_url, "http://simulator:8080/silent-auth/v1");
    assert_eq!(c.admin.listen, "0.0.0.0:9464");
    // The simulator accepts the worker's credentials.
    let sim = std::fs::read_to_string(repo("config/simulator.toml")).unwrap();
    let default = &c.clients["default"];
    assert!(sim.contains(&format!("\"{}\"", default.api_key.expose())));
    assert!(sim.contains(&format!("\"{}\"", default.client_secret.expose())));

    let p = yaml("config/prometheus.yml");
    let targets = strings(&p["scrape_configs"][0]["static_configs"][0]["targets"]);
    assert_eq!(targets, ["worker:9464"]);
    let ds = yaml("config/grafana/provisioning/datasources/prometheus.yml");
    assert_eq!(
        ds["datasources"][0]["url"].as_str(),
        Some("http://prometheus:9090")
    );
    let dashboards = yaml("config/grafana/provisioning/dashboards/dashboards.yml");
    assert_eq!(
        dashboards["providers"][0]["options"]["path"].as_str(),
        Some("/var/lib/grafana/dashboards")
    );
}

/// The metric families a fresh worker's `/metrics` shows.
fn exported_families() -> BTreeSet<String> {
    let http = HttpMetrics::default();
    let t = Telemetry::new(
        Arc::new(WorkerCounters::default()),
        &http,
        vec![ProfileLimits::rate_only(
            "default",
            Arc::new(Limiter::unlimited()),
        )],
    );
    t.render()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn dashboard_queries_only_exported_metrics() {
    let exported = exported_families();
    let listed: BTreeSet<String> = METRIC_NAMES.iter().map(|s| s.to_string()).collect();
    assert_eq!(exported, listed, "METRIC_NAMES is out of date");

    let text = std::fs::read_to_string(repo("config/grafana/dashboards/silentauth.json")).unwrap();
    let d: Value = serde_json::from_str(&text).expect("dashboard JSON");
    let panels = d["panels"].as_array().expect("panels");
    let mut used = BTreeSet::new();
    for p in panels {
        let title = p["title"].as_str().unwrap_or_default();
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}");
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            let names: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("silentauth_"))
                .collect();
            assert!(!names.is_empty(), "{title}: {expr}");
            for n in names {
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| n.strip_suffix(s).filter(|f| exported.contains(*f)))
                    .unwrap_or(n);
                assert!(exported.contains(family), "{title}: {n} is not exported");
                used.insert(family.to_owned());
            }
        }
    }
    // The panels the dashboard must have.
    for needed in [
        "silentauth_jobs_consumed_total",
        "silentauth_results_total",
        "silentauth_dead_letters_total",
        "silentauth_http_request_duration_seconds",
        "silentauth_consumer_lag",
        "silentauth_rate_limit_wait_seconds_total",
        "silentauth_breaker_open",
        "silentauth_breaker_trips_total",
    ] {
        assert!(used.contains(needed), "no panel shows {needed}");
    }
}
