//! Kafka security settings that work but should not be used: a password sent in the clear
//! (`SASL_PLAINTEXT` with `PLAIN`) and a TLS connection that does not check the broker's host
//! name (`ssl.endpoint.identification.algorithm` = `none`). Each is a WARN naming the setting;
//! neither needs the brokers.

use super::check::Check;
use crate::config::Config;

/// The WARN checks for `config.kafka.properties`; empty when neither applies.
pub(super) fn warnings(config: &Config) -> Vec<Check> {
    let p = &config.kafka.properties;
    let get = |key: &str| p.get(key).map(|v| v.trim().to_ascii_lowercase());
    let protocol = get("security.protocol").unwrap_or_else(|| "plaintext".to_owned());
    let mut out = Vec::new();
    if protocol == "sasl_plaintext" && get("sasl.mechanism").as_deref() == Some("plain") {
        out.push(Check::warn(
            "kafka.properties \"security.protocol\"",
            "SASL_PLAINTEXT with sasl.mechanism PLAIN sends the password to the brokers unencrypted",
            "use security.protocol SASL_SSL (or SCRAM-SHA-512, which never sends the password)",
        ));
    }
    let tls = matches!(protocol.as_str(), "ssl" | "sasl_ssl");
    if tls && get("ssl.endpoint.identification.algorithm").as_deref() == Some("none") {
        out.push(Check::warn(
            "kafka.properties \"ssl.endpoint.identification.algorithm\"",
            "none: the brokers' certificates are not checked against their host names, so any \
             certificate the CA signed is accepted for any broker",
            "remove it (the default, https, checks the host name) and give the brokers \
             certificates that name them",
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Grade;

    fn with(props: &[(&str, &str)]) -> Vec<Check> {
        let mut c = Config::default();
        for (k, v) in props {
            c.kafka.properties.insert((*k).into(), (*v).into());
        }
        warnings(&c)
    }

    #[test]
    fn sasl_plaintext_with_plain_warns_naming_the_setting() {
        let w = with(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "PLAIN"),
        ]);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].status, Grade::Warn);
        assert!(w[0].check.contains("security.protocol"));
        assert!(w[0].detail.contains("unencrypted"));
        // Over TLS, or with SCRAM, the password is not sent in the clear.
        assert!(with(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "PLAIN")
        ])
        .is_empty());
        assert!(with(&[
            ("security.protocol", "sasl_plaintext"),
            ("sasl.mechanism", "SCRAM-SHA-512")
        ])
        .is_empty());
        assert!(with(&[]).is_empty());
    }

    #[test]
    fn endpoint_identification_none_warns_over_tls() {
        for protocol in ["SSL", "SASL_SSL"] {
            let w = with(&[
                ("security.protocol", protocol),
                ("ssl.endpoint.identification.algorithm", "none"),
            ]);
            assert_eq!(w.len(), 1, "{protocol}: {w:?}");
            assert_eq!(w[0].status, Grade::Warn);
            assert!(w[0].check.contains("ssl.endpoint.identification.algorithm"));
        }
        assert!(with(&[
            ("security.protocol", "SSL"),
            ("ssl.endpoint.identification.algorithm", "https")
        ])
        .is_empty());
        assert!(with(&[("security.protocol", "SSL")]).is_empty());
    }
}
