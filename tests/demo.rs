//! temporary probe
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use silentauth_worker::config::Config;
use silentauth_worker::kafka::embedded::EmbeddedCluster;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn probe_produce_latency() {
    let cluster = EmbeddedCluster::start(1).unwrap();
    cluster.create_topic("r", 8).unwrap();
    let mut c = Config::default();
    c.kafka.brokers = cluster.bootstrap_servers();
    let p: FutureProducer = silentauth_worker::kafka::producer::producer_config(&c).create().unwrap();
    for i in 0..20 {
        let t = Instant::now();
        p.send(FutureRecord::to("r").key("k").payload(&format!("v{i}")), Timeout::Never).await.unwrap();
        eprintln!("single {i}: {:?}", t.elapsed());
    }
    for n in [100usize, 1000] {
        let t = Instant::now();
        let futs: Vec<_> = (0..n).map(|i| {
            let p = p.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                let k = format!("k{i}");
                p.send(FutureRecord::to("r").key(&k).payload("x".repeat(500).as_str()), Timeout::Never).await.unwrap();
                t.elapsed()
            })
        }).collect();
        let mut lat = Vec::new();
        for f in futs { lat.push(f.await.unwrap()); }
        lat.sort();
        eprintln!("concurrent {n}: total {:?}, p50 {:?}, max {:?}", t.elapsed(), lat[n/2], lat[n-1]);
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
}
