//! The secured Apache Kafka nodes of `scripts/kafka.sh` (`--security sasl_ssl|mtls`): one node
//! per mode, started once per machine with `ensure` (a file lock makes parallel test processes
//! share it; `.ci/run` stops them at the end), and the ACLs of the worker's principal.

use super::broker::{announce, env_nonempty, kafka_script, on_path, repo_root};
use super::TestBroker;
use std::path::PathBuf;
use std::sync::Mutex;

/// A secured mode of `scripts/kafka.sh`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// SASL_SSL with SCRAM-SHA-512 users `worker` and `admin`.
    SaslSsl,
    /// SSL with client certificates required (principals `worker` and `admin`).
    Mtls,
}

impl Mode {
    /// The script's name for the mode.
    pub fn arg(self) -> &'static str {
        match self {
            Mode::SaslSsl => "sasl_ssl",
            Mode::Mtls => "mtls",
        }
    }
}

/// The worker's principal on both secured nodes.
pub const WORKER: &str = "User:worker";

/// A running secured node and its directory (DIR/client.toml, DIR/admin.toml, ...).
pub struct Secured {
    /// The mode.
    pub mode: Mode,
    /// The node's directory.
    pub dir: PathBuf,
    /// `kafka.brokers` of the node.
    pub bootstrap: String,
}

/// Bootstrap servers of the nodes this process has ensured, by mode.
static ENSURED: Mutex<Vec<(Mode, String)>> = Mutex::new(Vec::new());

impl Secured {
    /// The node of `mode` (target/kafka/<mode>), started when it does not run. A node that
    /// fails to start fails the test: where `java` is present nothing is skipped. `None`, with
    /// a loud SKIPPED line, only without `java` and without `TEST_BROKER=kafka`.
    pub async fn ensure(mode: Mode) -> Option<Secured> {
        let forced = env_nonempty("TEST_BROKER").as_deref() == Some("kafka");
        let java = on_path("java");
        if !java && !forced {
            announce(&format!(
                "SKIPPED: the secured Apache Kafka node ({}) needs java, which is not installed",
                mode.arg()
            ));
            return None;
        }
        let dir = repo_root().join("target/kafka").join(mode.arg());
        let known = ENSURED
            .lock()
            .unwrap()
            .iter()
            .find(|(m, _)| *m == mode)
            .map(|(_, b)| b.clone());
        let bootstrap = match known {
            Some(b) => b,
            None => {
                let dir_arg = dir.to_string_lossy().into_owned();
                let b = kafka_script(&["ensure", "--security", mode.arg(), "--dir", &dir_arg])
                    .unwrap_or_else(|err| {
                        panic!(
                            "the secured Apache Kafka node ({}) did not start: {err}",
                            mode.arg()
                        )
                    });
                ENSURED.lock().unwrap().push((mode, b.clone()));
                b
            }
        };
        announce(&format!(
            "broker: secured apache kafka ({}) at {bootstrap}",
            mode.arg()
        ));
        Some(Secured {
            mode,
            dir,
            bootstrap,
        })
    }

    /// A [`TestBroker`] acting as the node's admin (a super user), for topics and records.
    pub async fn admin(&self) -> TestBroker {
        TestBroker::secured(
            self.bootstrap.clone(),
            properties(&self.dir.join("admin.toml")),
        )
        .await
    }

    /// DIR/client.toml: the worker's connection settings.
    pub fn client_toml(&self) -> PathBuf {
        self.dir.join("client.toml")
    }

    /// The worker's `kafka.properties` from DIR/client.toml.
    pub fn worker_properties(&self) -> Vec<(String, String)> {
        properties(&self.client_toml())
    }

    /// The worker's secret (SASL password, or the password of its certificate's key).
    pub fn worker_secret(&self) -> String {
        std::fs::read_to_string(self.dir.join(".worker-password"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// Adds ACLs (`TYPE:PATTERN:NAME:OPERATION`) for `principal`; returns once the broker has them.
    pub fn grant(&self, principal: &str, acls: &[String]) {
        self.acl("add", principal, acls);
    }

    /// Removes ACLs of `principal`; returns once the broker no longer has them.
    pub fn revoke(&self, principal: &str, acls: &[String]) {
        self.acl("remove", principal, acls);
    }

    fn acl(&self, action: &str, principal: &str, acls: &[String]) {
        let dir = self.dir.to_string_lossy().into_owned();
        let mut args: Vec<&str> = vec!["acl", "--dir", &dir, action, principal];
        args.extend(acls.iter().map(String::as_str));
        kafka_script(&args).unwrap_or_else(|err| panic!("acl {action} {acls:?}: {err}"));
    }
}

/// The `[kafka.properties]` of a config fragment written by the script.
pub fn properties(path: &std::path::Path) -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let table: toml::Table = text.parse().unwrap();
    table["kafka"]["properties"]
        .as_table()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}
