//! What configuration output must hide: secret librdkafka properties and passwords in URLs.

/// True when a librdkafka property holds a secret and must be printed as `***`: its name
/// contains `password`, `secret`, `token`, `key` or `jaas`, or it is `sasl.oauthbearer.config`.
pub fn is_secret_property(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["password", "secret", "token", "key", "jaas"]
        .iter()
        .any(|w| name.contains(w))
        || name == "sasl.oauthbearer.config"
}

/// `base_url` with an embedded password replaced by `***` (unchanged when it has none).
pub fn mask_url_password(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => raw.to_owned(),
    }
}
