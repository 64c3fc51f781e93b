//! The ceilings a worker run is compared with, measured in the same run: a bare
//! consume-then-produce passthrough on the same broker (no HTTP, no JSON), and what a bare
//! reqwest client making the same token + userinfo pairs gets from the simulator at its best
//! concurrency (no Kafka).

use super::load::REDIRECT_URI;
use crate::tools::demo::plan::Record;
use anyhow::{bail, Context};
use futures::stream::{self, FuturesUnordered, StreamExt, TryStreamExt};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::{Duration, Instant};

/// The ceilings measured in this run: the broker passthrough and the pairs of calls the
/// simulator can answer, in jobs per second.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Jobs per second the broker carries through with no work.
    pub passthrough: f64,
    /// Token and userinfo pairs per second a bare client gets from the simulator, at its best
    /// concurrency.
    pub capacity_pairs: f64,
    /// That best concurrency (one of [`CAPACITY_CONCURRENCIES`]).
    pub capacity_concurrency: usize,
    /// CPU seconds per 1,000 pairs the bench process spent at that concurrency: the bare
    /// client's own cost of the two calls (the embedded broker idles meanwhile).
    pub capacity_cpu_per_1000: f64,
}

impl Limits {
    /// The lower of the two: what the worker could reach at best.
    pub fn jobs_per_second(&self) -> f64 {
        self.passthrough.min(self.capacity_pairs)
    }
}

/// Concurrent token + userinfo pairs tried in the capacity run; the best one is the ceiling.
pub const CAPACITY_CONCURRENCIES: [usize; 3] = [64, 256, 1024];

/// Records per second a bare consume-then-produce loop moves from `from` to `to`, once `records`
/// are on `from` (the caller published them). Timed from the first record read to the last
/// acknowledgement.
pub async fn passthrough(
    bootstrap: &str,
    from: &str,
    to: &str,
    records: usize,
) -> anyhow::Result<f64> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set(
            "group.id",
            format!("bench-passthrough-{}", uuid::Uuid::new_v4()),
        )
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .create()
        .context("cannot create the passthrough consumer")?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .create()
        .context("cannot create the passthrough producer")?;
    consumer.subscribe(&[from])?;
    let mut pending = FuturesUnordered::new();
    let mut first: Option<Instant> = None;
    let (mut read, mut acked) = (0usize, 0usize);
    let deadline = Instant::now() + Duration::from_secs(300);
    while acked < records {
        if Instant::now() > deadline {
            bail!("passthrough: {acked}/{records} records after 300 s");
        }
        tokio::select! {
            biased;
            Some(d) = pending.next(), if !pending.is_empty() => {
                match d {
                    Ok(Ok(_)) => acked += 1,
                    Ok(Err((e, _))) => bail!("passthrough produce failed: {e}"),
                    Err(_) => bail!("passthrough producer stopped"),
                }
            }
            m = consumer.recv(), if read < records => {
                let m = m?;
                first.get_or_insert_with(Instant::now);
                read += 1;
                let key = m.key().map(<[u8]>::to_vec);
                let payload = m.payload().map(<[u8]>::to_vec);
                let mut record = FutureRecord::<Vec<u8>, Vec<u8>>::to(to);
                if let Some(k) = &key {
                    record = record.key(k);
                }
                if let Some(p) = &payload {
                    record = record.payload(p);
                }
                loop {
                    match producer.send_result(record) {
                        Ok(d) => {
                            pending.push(d);
                            break;
                        }
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                            record = back;
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        Err((e, _)) => bail!("passthrough produce failed: {e}"),
                    }
                }
            }
        }
    }
    let took = first.map_or(Duration::ZERO, |f| f.elapsed());
    Ok(records as f64 / took.as_secs_f64().max(1e-9))
}

/// Synthetic records of about a job's size, to feed [`passthrough`].
pub fn filler(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let key = format!("pass-{i}");
            let payload = format!(
                "{{\"job_id\":\"{key}\",\"login_hint\":\"381{i:09}\",\"code\":\"{:0>32}\",\
                 \"redirect_uri\":\"{REDIRECT_URI}\",\"state\":\"bench\",\
                 \"attributes\":{{\"tenant\":\"bench\"}}}}",
                i
            );
            Record {
                key,
                payload: payload.into_bytes(),
                traceparent: None,
            }
        })
        .collect()
}

/// Token + userinfo pairs per second a bare reqwest client gets from the simulator with
/// `concurrency` pairs in flight, spending `codes` (minted beforehand).
pub async fn capacity(
    http: &reqwest::Client,
    base_url: &str,
    codes: Vec<String>,
    concurrency: usize,
) -> anyhow::Result<f64> {
    // Parsed once, as the worker's client does.
    let token_url = reqwest::Url::parse(&format!("{base_url}/oauth2/token"))?;
    let userinfo_url = reqwest::Url::parse(&format!("{base_url}/oauth2/userinfo"))?;
    let n = codes.len();
    let started = Instant::now();
    stream::iter(codes)
        .map(|code| {
            let (token_url, userinfo_url) = (&token_url, &userinfo_url);
            async move {
                let token: serde_json::Value = http
                    .post(token_url.clone())
                    .header("apiKey", "sim-api-key")
                    .form(&[
                        ("grant_type", "authorization_code"),
                        ("code", code.as_str()),
                        ("redirect_uri", REDIRECT_URI),
                        ("client_id", "client"),
                        ("client_secret", "12345"),
                    ])
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                let access = token["access_token"]
                    .as_str()
                    .context("token answer without access_token")?;
                http.get(userinfo_url.clone())
                    .bearer_auth(access)
                    .send()
                    .await?
                    .error_for_status()?
                    .bytes()
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(n as f64 / started.elapsed().as_secs_f64().max(1e-9))
}
