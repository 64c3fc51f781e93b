//! The worker's Prometheus metrics: HTTP requests recorded as they happen (through the domain's
//! [`HttpObserver`] hook), everything else read from the live [`WorkerCounters`] at scrape time,
//! so the job path pays nothing beyond the atomics it already updates.

use crate::contract::{ErrorClass, Stage};
use crate::silentauth::retry::HttpObserver;
use crate::silentauth::{Concurrency, Limiter};
use crate::telemetry::counters::WorkerCounters;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

/// Every metric family `/metrics` exports, as named in the text format (histograms add
/// `_bucket`, `_sum` and `_count` samples). Dashboards and alerts may query only these.
pub const METRIC_NAMES: &[&str] = &[
    "silentauth_jobs_consumed_total",
    "silentauth_results_total",
    "silentauth_dead_letters_total",
    "silentauth_http_requests_total",
    "silentauth_http_request_duration_seconds",
    "silentauth_http_retries_total",
    "silentauth_rate_limit_wait_seconds_total",
    "silentauth_concurrency_limit",
    "silentauth_jobs_in_flight",
    "silentauth_codes_at_risk",
    "silentauth_partitions_paused",
    "silentauth_consumer_lag",
    "silentauth_idempotency_hits_total",
    "silentauth_idempotency_cache_bytes",
    "silentauth_offset_commits_total",
    "silentauth_jobs_abandoned_total",
    "silentauth_jobs_interrupted_total",
    "silentauth_produce_errors_total",
    "silentauth_ready",
    "silentauth_breaker_open",
    "silentauth_breaker_trips_total",
    "silentauth_trace_spans_total",
];

/// The API endpoint of a request (the `endpoint` label).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /oauth2/token`.
    Token,
    /// `GET /oauth2/userinfo`.
    Userinfo,
    /// Network Signals `POST /sim-swap/check` and `/sim-swap/retrieve-date`.
    SimSwap,
    /// Network Signals `POST /device-swap/check` and `/device-swap/retrieve-date`.
    DeviceSwap,
    /// Network Signals `POST /call-forwarding/unconditional/check`.
    CallForwarding,
}

impl Endpoint {
    /// Every endpoint, each exported at zero from the first scrape on.
    pub const ALL: [Endpoint; 5] = [
        Endpoint::Token,
        Endpoint::Userinfo,
        Endpoint::SimSwap,
        Endpoint::DeviceSwap,
        Endpoint::CallForwarding,
    ];

    /// The endpoint the requests of `stage` go to; `None` for stages that send no request.
    pub fn of(stage: Stage) -> Option<Endpoint> {
        match stage {
            Stage::Token => Some(Endpoint::Token),
            Stage::Userinfo => Some(Endpoint::Userinfo),
            Stage::SimSwap => Some(Endpoint::SimSwap),
            Stage::DeviceSwap => Some(Endpoint::DeviceSwap),
            Stage::CallForwarding => Some(Endpoint::CallForwarding),
            Stage::Job | Stage::Authorize | Stage::Deadline => None,
        }
    }

    /// The label value: the stage's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Token => "token",
            Endpoint::Userinfo => "userinfo",
            Endpoint::SimSwap => "sim_swap",
            Endpoint::DeviceSwap => "device_swap",
            Endpoint::CallForwarding => "call_forwarding",
        }
    }
}

impl EncodeLabelValue for Endpoint {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// An HTTP status, or `transport` when no response came (the `status` label).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub struct HttpStatus(pub Option<u16>);

impl EncodeLabelValue for HttpStatus {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        match self.0 {
            Some(code) => write!(encoder, "{code}"),
            None => encoder.write_str("transport"),
        }
    }
}

/// Labels of `silentauth_http_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: Endpoint,
    status: HttpStatus,
}

/// Labels of `silentauth_http_request_duration_seconds`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: Endpoint,
}

fn latency_histogram() -> Histogram {
    // 1 ms .. ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Counts HTTP requests by endpoint and status and times them; the [`HttpObserver`] the
/// worker gives its verifier. Label sets are small `Copy` values: no allocation per request.
#[derive(Debug)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<EndpointLabels, Histogram, fn() -> Histogram>,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        let m = HttpMetrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
        };
        // Every endpoint appears from the first scrape on, at zero.
        for endpoint in Endpoint::ALL {
            drop(m.requests.get_or_create(&RequestLabels {
                endpoint,
                status: HttpStatus(Some(200)),
            }));
            drop(m.latency.get_or_create(&EndpointLabels { endpoint }));
        }
        m
    }
}

impl HttpObserver for HttpMetrics {
    fn request(&self, stage: Stage, status: Option<u16>, elapsed: Duration) {
        let Some(endpoint) = Endpoint::of(stage) else {
            return;
        };
        self.requests
            .get_or_create(&RequestLabels {
                endpoint,
                status: HttpStatus(status),
            })
            .inc();
        self.latency
            .get_or_create(&EndpointLabels { endpoint })
            .observe(elapsed.as_secs_f64());
    }
}

/// The registry `/metrics` encodes.
#[derive(Debug)]
pub struct Telemetry {
    registry: Registry,
}

impl Telemetry {
    /// Metrics over `counters`, `http` and the rate limiters of each client profile.
    pub fn new(
        counters: Arc<WorkerCounters>,
        http: &HttpMetrics,
        limiters: Vec<ProfileLimits>,
    ) -> Telemetry {
        let mut registry = Registry::default();
        registry.register(
            "silentauth_http_requests",
            "HTTP requests sent to the Silent Auth and Network Signals APIs, by endpoint and status (transport = no response)",
            http.requests.clone(),
        );
        registry.register_with_unit(
            "silentauth_http_request_duration",
            "Time from sending an HTTP request to its response or transport error, by endpoint",
            Unit::Seconds,
            http.latency.clone(),
        );
        registry.register_collector(Box::new(CountersCollector { counters, limiters }));
        Telemetry { registry }
    }

    /// The metrics in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// The limits of one client profile, read on each scrape.
#[derive(Debug, Clone)]
pub struct ProfileLimits {
    /// The profile's name (the `client` label).
    pub client: String,
    /// Its rate limiter.
    pub limiter: Arc<Limiter>,
    /// Its concurrency limit.
    pub concurrency: Arc<Concurrency>,
}

impl ProfileLimits {
    /// `client`'s limits: `limiter` and no concurrency limit (tests).
    pub fn rate_only(client: &str, limiter: Arc<Limiter>) -> ProfileLimits {
        ProfileLimits {
            client: client.to_owned(),
            limiter,
            concurrency: Arc::new(Concurrency::unlimited()),
        }
    }
}

/// Reads [`WorkerCounters`] and the limiters on each scrape.
#[derive(Debug)]
struct CountersCollector {
    counters: Arc<WorkerCounters>,
    limiters: Vec<ProfileLimits>,
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    ConstCounter::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> std::fmt::Result {
    ConstGauge::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

impl Collector for CountersCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.encode_outcomes(&mut e)?;
        self.encode_limits(&mut e)?;
        self.encode_load(&mut e)?;
        self.encode_course(&mut e)?;
        self.encode_readiness(&mut e)
    }
}

impl CountersCollector {
    /// What came in and what went out: jobs consumed, results and dead letters, retries.
    fn encode_outcomes(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let s = &*self.counters;
        let get = WorkerCounters::get;
        counter(
            e,
            "silentauth_jobs_consumed",
            "Records taken from the jobs topic",
            get(&s.consumed),
        )?;
        {
            let mut m = e.encode_descriptor(
                "silentauth_results",
                "Results published, by status and error class (none = no error)",
                None,
                MetricType::Counter,
            )?;
            for ((status, class), n) in s.outcomes() {
                let labels = [
                    ("status", status.as_str()),
                    ("class", class.map_or("none", ErrorClass::as_str)),
                ];
                ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
            }
        }
        {
            let mut m = e.encode_descriptor(
                "silentauth_dead_letters",
                "Dead letters published, by error class",
                None,
                MetricType::Counter,
            )?;
            for (class, n) in s.dead_letters_by_class() {
                let labels = [("class", class.as_str())];
                ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
            }
        }
        {
            let mut m = e.encode_descriptor(
                "silentauth_trace_spans",
                "Finished sampled trace spans by fate: exported, failed (the export request failed or timed out), dropped (the export queue was full)",
                None,
                MetricType::Counter,
            )?;
            let c = &super::span_queue::SPAN_COUNTS;
            for (fate, n) in [
                ("exported", &c.exported),
                ("failed", &c.failed),
                ("dropped", &c.dropped),
            ] {
                let n = n.load(std::sync::atomic::Ordering::Relaxed);
                ConstCounter::new(n).encode(m.encode_family(&[("fate", fate)])?)?;
            }
        }
        counter(
            e,
            "silentauth_http_retries",
            "HTTP requests that were retries of an earlier attempt",
            get(&s.retries),
        )?;
        Ok(())
    }

    /// Each client profile's rate-limit wait and concurrency limit.
    fn encode_limits(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        {
            let mut m = e.encode_descriptor(
                "silentauth_rate_limit_wait",
                "Time requests waited for a rate-limit permit, by client profile",
                Some(&Unit::Seconds),
                MetricType::Counter,
            )?;
            for p in &self.limiters {
                let labels = [("client", p.client.as_str())];
                ConstCounter::new(p.limiter.total_wait().as_secs_f64())
                    .encode(m.encode_family(&labels)?)?;
            }
        }
        {
            let mut m = e.encode_descriptor(
                "silentauth_concurrency_limit",
                "Jobs of a client profile that may call the Silent Auth API at once (worker.concurrency: adaptive or fixed), by client profile",
                None,
                MetricType::Gauge,
            )?;
            for p in &self.limiters {
                let labels = [("client", p.client.as_str())];
                ConstGauge::new(p.concurrency.limit() as i64).encode(m.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }

    /// What the worker holds now: jobs in flight, codes at risk, cache bytes, paused
    /// partitions, lag.
    fn encode_load(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let s = &*self.counters;
        let get = WorkerCounters::get;
        gauge(
            e,
            "silentauth_jobs_in_flight",
            "Jobs being verified or published now",
            get(&s.in_flight) as i64,
        )?;
        gauge(
            e,
            "silentauth_codes_at_risk",
            "Jobs whose single-use code is spent and whose result is not acknowledged yet (what a crash now would cost)",
            get(&s.codes_at_risk) as i64,
        )?;
        gauge(
            e,
            "silentauth_idempotency_cache_bytes",
            "Bytes counted for the results the idempotency cache holds (job_id, JSON and a fixed overhead each)",
            get(&s.idempotency_cache_bytes) as i64,
        )?;
        gauge(
            e,
            "silentauth_partitions_paused",
            "Jobs partitions paused (the in-flight window stayed full, or the circuit breaker is open)",
            get(&s.paused_partitions) as i64,
        )?;
        {
            let mut m = e.encode_descriptor(
                "silentauth_consumer_lag",
                "Records behind the end of each assigned jobs partition (librdkafka statistics)",
                None,
                MetricType::Gauge,
            )?;
            for (partition, lag) in s.lag() {
                let labels = [("partition", partition.to_string())];
                ConstGauge::new(lag).encode(m.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }

    /// How jobs went: duplicates, commits, jobs let go, produce errors.
    fn encode_course(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let s = &*self.counters;
        let get = WorkerCounters::get;
        counter(
            e,
            "silentauth_idempotency_hits",
            "Redelivered jobs answered from the idempotency cache (duplicates)",
            get(&s.duplicates),
        )?;
        counter(
            e,
            "silentauth_offset_commits",
            "Offset commits that succeeded",
            get(&s.commits),
        )?;
        counter(
            e,
            "silentauth_jobs_abandoned",
            "Jobs let go on a revoke or at shutdown before their code was presented (the next owner redoes them)",
            get(&s.abandoned),
        )?;
        counter(
            e,
            "silentauth_jobs_interrupted",
            "Jobs let go on a revoke or at shutdown after their code was presented: concluded interrupted",
            get(&s.interrupted),
        )?;
        counter(
            e,
            "silentauth_produce_errors",
            "Failed attempts to produce a result or dead letter (retried)",
            get(&s.produce_errors),
        )?;
        Ok(())
    }

    /// Readiness and the circuit breaker.
    fn encode_readiness(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let s = &*self.counters;
        gauge(
            e,
            "silentauth_ready",
            "1 while partitions are assigned and results can be produced (/readyz)",
            i64::from(s.ready()),
        )?;
        gauge(
            e,
            "silentauth_breaker_open",
            "1 while the circuit breaker is open: no new job starts, one probe per probe_interval",
            i64::from(s.breaker_open.load(std::sync::atomic::Ordering::Relaxed)),
        )?;
        {
            let mut m = e.encode_descriptor(
                "silentauth_breaker_trips",
                "Times the circuit breaker opened, by trigger (consecutive, dead_letter_ratio)",
                None,
                MetricType::Counter,
            )?;
            for (reason, n) in s.breaker_trips() {
                let labels = [("reason", reason)];
                ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Status;
    use std::collections::BTreeSet;

    fn families(text: &str) -> BTreeSet<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn exports_every_listed_family_and_counts() {
        let counters = Arc::new(WorkerCounters::default());
        let http = HttpMetrics::default();
        let t = Telemetry::new(
            counters.clone(),
            &http,
            vec![ProfileLimits::rate_only(
                "default",
                Arc::new(Limiter::unlimited()),
            )],
        );
        counters.result(Status::Failed, Some(ErrorClass::CodeRejected));
        counters.dead_letter(ErrorClass::InvalidJob);
        http.request(Stage::Token, Some(200), Duration::from_millis(3));
        http.request(Stage::Userinfo, None, Duration::from_millis(3));
        http.request(Stage::SimSwap, Some(200), Duration::from_millis(3));
        http.request(Stage::DeviceSwap, Some(404), Duration::from_millis(3));
        http.request(Stage::CallForwarding, Some(503), Duration::from_millis(3));
        counters.set_lag([(0, 7)].into());
        counters
            .codes_at_risk
            .fetch_add(2, std::sync::atomic::Ordering::Relaxed);
        counters.breaker_tripped(
            "dead_letter_ratio",
            "6 of the last 10 jobs were dead-lettered",
        );
        let text = t.render();
        let names = families(&text);
        let listed: BTreeSet<String> = METRIC_NAMES.iter().map(|s| s.to_string()).collect();
        assert_eq!(names, listed, "{text}");
        for line in [
            "silentauth_results_total{status=\"failed\",class=\"code_rejected\"} 1",
            "silentauth_dead_letters_total{class=\"invalid_job\"} 1",
            "silentauth_http_requests_total{endpoint=\"token\",status=\"200\"} 1",
            "silentauth_http_requests_total{endpoint=\"userinfo\",status=\"transport\"} 1",
            "silentauth_http_request_duration_seconds_count{endpoint=\"token\"} 1",
            "silentauth_http_requests_total{endpoint=\"sim_swap\",status=\"200\"} 1",
            "silentauth_http_requests_total{endpoint=\"device_swap\",status=\"404\"} 1",
            "silentauth_http_requests_total{endpoint=\"call_forwarding\",status=\"503\"} 1",
            "silentauth_http_request_duration_seconds_count{endpoint=\"call_forwarding\"} 1",
            "silentauth_consumer_lag{partition=\"0\"} 7",
            "silentauth_rate_limit_wait_seconds_total{client=\"default\"} 0",
            "silentauth_ready 0",
            "silentauth_breaker_open 1",
            "silentauth_codes_at_risk 2",
            "silentauth_breaker_trips_total{reason=\"consecutive\"} 0",
            "silentauth_breaker_trips_total{reason=\"dead_letter_ratio\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
