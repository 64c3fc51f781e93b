//! What configuration output must hide: secret librdkafka properties and credentials in URLs.

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

/// `raw` as `doctor` prints it: the user and password replaced by one `***`
/// (`https://user:secret@host/v1` → `https://***@host/v1`), the value of every query parameter
/// and a fragment by `***` (an api key passed as `?apikey=…`). A string that does not parse as a
/// URL keeps only what comes after its last `@`, if it has one.
pub fn mask_url_credentials(raw: &str) -> String {
    let Ok(mut u) = url::Url::parse(raw) else {
        return match raw.rsplit_once('@') {
            Some((_, host)) => format!("***@{host}"),
            None => raw.to_owned(),
        };
    };
    if !u.username().is_empty() || u.password().is_some() {
        let _ = u.set_password(None);
        let _ = u.set_username("***");
    }
    if u.query().is_some() {
        let names: Vec<String> = u.query_pairs().map(|(k, _)| k.into_owned()).collect();
        u.query_pairs_mut()
            .clear()
            .extend_pairs(names.iter().map(|k| (k.as_str(), "***")));
    }
    if u.fragment().is_some() {
        u.set_fragment(Some("***"));
    }
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_credentials_query_values_and_fragments_are_masked() {
        assert_eq!(
            mask_url_credentials("https://user:s3cret@api.example.com/silent-auth/v1"),
            "https://***@api.example.com/silent-auth/v1"
        );
        assert_eq!(
            mask_url_credentials("https://token-only@api.example.com/v1"),
            "https://***@api.example.com/v1"
        );
        let masked =
            mask_url_credentials("https://api.example.com/v1?apikey=K3y-123&region=eu#t=abc");
        assert_eq!(
            masked,
            "https://api.example.com/v1?apikey=***&region=***#***"
        );
        assert_eq!(
            mask_url_credentials("http://127.0.0.1:8080/silent-auth/v1"),
            "http://127.0.0.1:8080/silent-auth/v1"
        );
        assert_eq!(mask_url_credentials("//user:pw@host/v1"), "***@host/v1");
        assert_eq!(mask_url_credentials("not a url"), "not a url");
    }
}
