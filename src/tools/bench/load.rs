//! The bench's workload and broker: codes minted through the simulator's authorize endpoint
//! (over HTTP, concurrently, before any timing starts), the job records, and topics on the
//! embedded cluster or, with `--brokers`, through the admin API.

use crate::tools::demo::plan::Record;
use anyhow::{bail, Context};
use futures::stream::{self, StreamExt, TryStreamExt};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::RDKafkaErrorCode;
use serde_json::json;
use silentauth_worker::harness::embedded::EmbeddedCluster;
use std::time::Duration;

/// The callback URL every bench job was issued for.
pub const REDIRECT_URI: &str = "https://client.example.com/callback";

/// Concurrent authorize requests while minting.
const MINT_CONCURRENCY: usize = 64;

/// The broker the bench runs on.
pub enum Broker {
    /// librdkafka's MockCluster in this process (the default).
    Embedded(EmbeddedCluster),
    /// A broker at `--brokers` (tansu, a real cluster); topics are created with the admin API.
    External(String),
}

impl Broker {
    /// The embedded cluster, or the broker at `brokers`.
    pub fn start(brokers: Option<&str>) -> anyhow::Result<Broker> {
        Ok(match brokers {
            Some(b) => Broker::External(b.to_owned()),
            None => Broker::Embedded(
                EmbeddedCluster::start(1).context("cannot start the embedded Kafka cluster")?,
            ),
        })
    }

    /// `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        match self {
            Broker::Embedded(c) => c.bootstrap_servers(),
            Broker::External(b) => b.clone(),
        }
    }

    /// `"embedded MockCluster"` or the external address.
    pub fn describe(&self) -> String {
        match self {
            Broker::Embedded(c) => format!("embedded MockCluster at {}", c.bootstrap_servers()),
            Broker::External(b) => format!("external broker at {b}"),
        }
    }

    /// Creates each `(topic, partitions)` (an existing topic is left as it is).
    pub async fn create_topics(&self, topics: &[(&str, i32)]) -> anyhow::Result<()> {
        match self {
            Broker::Embedded(c) => {
                for (t, n) in topics {
                    c.create_topic(t, *n)
                        .with_context(|| format!("cannot create topic {t}"))?;
                }
            }
            Broker::External(b) => {
                let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
                    .set("bootstrap.servers", b)
                    .create()
                    .context("cannot create the admin client")?;
                let new: Vec<NewTopic> = topics
                    .iter()
                    .map(|(t, n)| NewTopic::new(t, *n, TopicReplication::Fixed(1)))
                    .collect();
                let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
                for r in admin.create_topics(&new, &opts).await? {
                    match r {
                        Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                        Err((t, e)) => bail!("cannot create topic {t}: {e}"),
                    }
                }
            }
        }
        Ok(())
    }
}

/// An HTTP client that does not follow redirects (authorize answers 302 with the code).
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(256)
        .build()
        .context("cannot build the HTTP client")
}

/// The login_hint of job `i`: `381` and nine digits.
pub fn login_hint(i: usize) -> String {
    format!("381{:09}", i % 1_000_000_000)
}

/// Mints one code per hint through `GET /oauth2/authorize`, `MINT_CONCURRENCY` at a time.
pub async fn mint_codes(
    http: &reqwest::Client,
    base_url: &str,
    hints: &[String],
) -> anyhow::Result<Vec<String>> {
    let url = format!("{base_url}/oauth2/authorize");
    stream::iter(hints)
        .map(|hint| {
            let req = http.get(&url).query(&[
                ("response_type", "code"),
                ("client_id", "client"),
                ("scope", "openid tt:phone_verify"),
                ("redirect_uri", REDIRECT_URI),
                ("login_hint", hint.as_str()),
                ("state", "bench"),
            ]);
            async move {
                let r = req.send().await?;
                let location = r
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .context("authorize answered without a redirect")?;
                let url = url::Url::parse(location)?;
                url.query_pairs()
                    .find(|(k, _)| k == "code")
                    .map(|(_, v)| v.into_owned())
                    .with_context(|| format!("authorize redirected without a code: {location}"))
            }
        })
        .buffered(MINT_CONCURRENCY)
        .try_collect()
        .await
}

/// `n` verifiable jobs with codes minted by the simulator at `base_url`; keys `<prefix>-<i>`.
pub async fn jobs(
    http: &reqwest::Client,
    base_url: &str,
    prefix: &str,
    n: usize,
) -> anyhow::Result<Vec<Record>> {
    let hints: Vec<String> = (0..n).map(login_hint).collect();
    let codes = mint_codes(http, base_url, &hints).await?;
    Ok(hints
        .into_iter()
        .zip(codes)
        .enumerate()
        .map(|(i, (hint, code))| {
            let key = format!("{prefix}-{i}");
            let payload = json!({
                "job_id": key,
                "login_hint": hint,
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "state": "bench",
                "attributes": {"tenant": "bench"},
            });
            Record {
                key,
                payload: payload.to_string().into_bytes(),
                traceparent: None,
            }
        })
        .collect())
}
