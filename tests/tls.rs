//! What the secured-Kafka tests (`tests/secured.rs`, real SASL_SSL and mutual-TLS brokers)
//! cannot show here: a Kerberos (GSSAPI) client can be created, since the build has cyrus-sasl
//! (there is no KDC to connect to); librdkafka refuses a property it does not know, so a TLS
//! setting that is accepted is understood; and `check-config` and `Debug` mask Kafka secrets.

use rdkafka::producer::BaseProducer;
use silentauth_worker::config::Config;
use silentauth_worker::kafka::producer::producer_config;

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
fn an_unknown_tls_property_is_refused() {
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
    c.kafka
        .properties
        .insert("ssl.no.such.property".into(), "x".into());
    let refused: Result<BaseProducer, _> = producer_config(&c).create();
    assert!(refused.is_err());
}

#[test]
fn check_config_masks_kafka_secrets() {
    let mut c = sasl_ssl("SCRAM-SHA-512");
    c.kafka
        .properties
        .insert("ssl.key.password".into(), "distinctive-key-password".into());
    let shown = c.render_masked();
    for secret in ["distinctive-kafka-password", "distinctive-key-password"] {
        assert!(!shown.contains(secret), "{shown}");
        assert!(!format!("{c:?}").contains(secret));
    }
    assert!(shown.contains("SASL_SSL"), "{shown}");
}
