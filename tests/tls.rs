//! TLS and SASL reach librdkafka through `kafka.properties`: the build has OpenSSL and
//! cyrus-sasl, so SASL_SSL configurations (SCRAM, PLAIN, GSSAPI) create clients, and
//! `check-config` masks the password.

use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::BaseProducer;
use silentauth_worker::config::Config;
use silentauth_worker::kafka::{consumer::group_consumer_config, producer::producer_config};

fn sasl_ssl(mechanism: &str) -> Config {
    let mut c = Config::default();
    c.kafka.brokers = "broker-1.example.com:9093".into();
    for (k, v) in [
        ("security.protocol", "SASL_SSL"),
        ("sasl.mechanism", mechanism),
        ("sasl.username", "silentauth"),
        ("sasl.password", "distinctive-kafka-password"),
        ("ssl.endpoint.identification.algorithm", "https"),
    ] {
        c.kafka.properties.insert(k.into(), v.into());
    }
    c
}

#[test]
fn sasl_ssl_clients_can_be_created() {
    for mechanism in ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] {
        let c = sasl_ssl(mechanism);
        let producer: Result<BaseProducer, _> = producer_config(&c).create();
        assert!(producer.is_ok(), "{mechanism}: {:?}", producer.err());
        let consumer: Result<BaseConsumer, _> = group_consumer_config(&c, false).create();
        assert!(consumer.is_ok(), "{mechanism}: {:?}", consumer.err());
    }
}

#[test]
fn kerberos_is_built_in() {
    let mut c = sasl_ssl("GSSAPI");
    c.kafka.properties.remove("sasl.password");
    for (k, v) in [
        ("sasl.kerberos.service.name", "kafka"),
        ("sasl.kerberos.principal", "silentauth@EXAMPLE.COM"),
        ("sasl.kerberos.keytab", "/etc/security/silentauth.keytab"),
    ] {
        c.kafka.properties.insert(k.into(), v.into());
    }
    let producer: Result<BaseProducer, _> = producer_config(&c).create();
    assert!(producer.is_ok(), "{:?}", producer.err());
}

#[test]
fn mutual_tls_properties_are_understood() {
    let mut c = Config::default();
    c.kafka.brokers = "broker-1.example.com:9093".into();
    c.kafka
        .properties
        .insert("security.protocol".into(), "SSL".into());
    c.kafka
        .properties
        .insert("ssl.key.password".into(), "distinctive-key-password".into());
    let producer: Result<BaseProducer, _> = producer_config(&c).create();
    assert!(producer.is_ok(), "{:?}", producer.err());
    // A property librdkafka does not know is refused, so the checks above mean something.
    c.kafka
        .properties
        .insert("ssl.no.such.property".into(), "x".into());
    let refused: Result<BaseProducer, _> = producer_config(&c).create();
    assert!(refused.is_err());
}

#[test]
fn check_config_masks_kafka_secrets() {
    let c = sasl_ssl("SCRAM-SHA-512");
    let shown = c.render_masked();
    assert!(!shown.contains("distinctive-kafka-password"), "{shown}");
    assert!(shown.contains("SASL_SSL"), "{shown}");
    assert!(!format!("{c:?}").contains("distinctive-kafka-password"));
}
