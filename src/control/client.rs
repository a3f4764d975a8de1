//! A blocking client of the rules API (what `sluice rules …` uses): one method per endpoint,
//! answers read as the API's own types ([`crate::control::view`]).

use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;

use crate::control::view::{ApiErrorBody, RuleChange, RuleErrors, RuleList, RuleView, TestAnswer};
use crate::engine::shadow::ShadowReport;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL cannot address the API.
    #[error("invalid --url {0}")]
    Url(String),
    /// The instance could not be reached.
    #[error("cannot reach {base}")]
    Unreachable {
        /// The instance's URL.
        base: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The instance refused the request.
    #[error("{} ({status})", .body.error)]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The API's error body.
        body: ApiErrorBody,
    },
    /// The answer is not what this client expects (another version of Sluice?).
    #[error("the instance's answer to `{what}` is not what this client expects")]
    Answer {
        /// The request.
        what: &'static str,
        /// Why it did not parse.
        #[source]
        source: serde_json::Error,
    },
}

/// A sample message for a rule test.
#[derive(Debug, serde::Serialize)]
pub struct Sample {
    /// The message's IoT topic.
    pub topic: String,
    /// The payload bytes, base64.
    pub payload_base64: String,
    /// The clock, ms since the epoch (default: now).
    pub now: Option<i64>,
}

/// The rules API of one instance.
pub struct RulesClient {
    base: Url,
    token: Option<String>,
    http: Client,
}

impl RulesClient {
    /// A client of the instance whose admin server is at `url`, authenticating with `token`.
    pub fn new(url: &str, token: Option<String>) -> Result<RulesClient, ClientError> {
        let base = Url::parse(url.trim_end_matches('/')).map_err(|_| ClientError::Url(url.to_string()))?;
        if base.cannot_be_a_base() {
            return Err(ClientError::Url(url.to_string()));
        }
        let http = Client::builder().timeout(Duration::from_secs(30)).build().map_err(|source| ClientError::Unreachable { base: url.to_string(), source })?;
        Ok(RulesClient { base, token, http })
    }

    /// `<url>/api/v1/<segments>`, each segment percent-encoded (a rule name is one segment).
    fn url(&self, segments: &[&str]) -> Url {
        let mut u = self.base.clone();
        if let Ok(mut s) = u.path_segments_mut() {
            s.pop_if_empty().extend(["api", "v1"]).extend(segments);
        }
        u
    }

    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let req = self.http.request(method, url);
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Sends a request; the answer's text on success.
    fn send(&self, req: RequestBuilder) -> Result<String, ClientError> {
        let unreachable = |source| ClientError::Unreachable { base: self.base.to_string(), source };
        let resp = req.send().map_err(unreachable)?;
        let status = resp.status();
        let text = resp.text().map_err(unreachable)?;
        if status.is_success() {
            return Ok(text);
        }
        let body = serde_json::from_str(&text).unwrap_or_else(|_| ApiErrorBody::new(if text.trim().is_empty() { "request failed" } else { text.trim() }));
        Err(ClientError::Refused { status: status.as_u16(), body })
    }

    fn typed<T: DeserializeOwned>(&self, what: &'static str, req: RequestBuilder) -> Result<T, ClientError> {
        let text = self.send(req)?;
        serde_json::from_str(&text).map_err(|source| ClientError::Answer { what, source })
    }

    /// Every rule file.
    pub fn list(&self) -> Result<RuleList, ClientError> {
        self.typed("rules list", self.request(Method::GET, self.url(&["rules"])))
    }

    /// One rule, with its file's text.
    pub fn get(&self, name: &str) -> Result<RuleView, ClientError> {
        self.typed("rules get", self.request(Method::GET, self.url(&["rules", name])))
    }

    /// Creates a rule from a rule file's text (named `name`, or by its `name` key).
    pub fn create(&self, name: Option<&str>, text: String) -> Result<RuleChange, ClientError> {
        let mut url = self.url(&["rules"]);
        if let Some(n) = name {
            url.query_pairs_mut().append_pair("name", n);
        }
        self.typed("rules create", self.request(Method::POST, url).body(text))
    }

    /// Replaces a rule's text.
    pub fn update(&self, name: &str, text: String) -> Result<RuleChange, ClientError> {
        self.typed("rules update", self.request(Method::PUT, self.url(&["rules", name])).body(text))
    }

    /// Deletes a rule (its file); the answer is the reload that followed.
    pub fn delete(&self, name: &str) -> Result<crate::control::view::Removed, ClientError> {
        self.typed("rules delete", self.request(Method::DELETE, self.url(&["rules", name])))
    }

    /// Enables or disables a rule.
    pub fn set_enabled(&self, name: &str, enabled: bool) -> Result<RuleChange, ClientError> {
        let verb = if enabled { "enable" } else { "disable" };
        self.typed("rules enable", self.request(Method::POST, self.url(&["rules", name, verb])))
    }

    /// Runs a saved rule on a sample message.
    pub fn test(&self, name: &str, sample: &Sample) -> Result<TestAnswer, ClientError> {
        self.typed("rules test", self.request(Method::POST, self.url(&["rules", name, "test"])).json(sample))
    }

    /// A rule's compile errors and recent evaluation failures.
    pub fn errors(&self, name: &str) -> Result<RuleErrors, ClientError> {
        self.typed("rules errors", self.request(Method::GET, self.url(&["rules", name, "errors"])))
    }

    /// A rule's saved versions.
    pub fn history(&self, name: &str) -> Result<crate::control::history::History, ClientError> {
        self.typed("rules history", self.request(Method::GET, self.url(&["rules", name, "history"])))
    }

    /// Restores a saved version of a rule.
    pub fn rollback(&self, name: &str, version: u64) -> Result<RuleChange, ClientError> {
        self.typed("rules rollback", self.request(Method::POST, self.url(&["rules", name, "rollback"])).json(&serde_json::json!({"version": version})))
    }

    /// Starts a shadow run of a candidate text beside a rule.
    pub fn shadow(&self, name: &str, text: String) -> Result<ShadowReport, ClientError> {
        self.typed("rules shadow", self.request(Method::POST, self.url(&["rules", name, "shadow"])).body(text))
    }

    /// A shadow run's report.
    pub fn shadow_status(&self, name: &str) -> Result<ShadowReport, ClientError> {
        self.typed("rules shadow-status", self.request(Method::GET, self.url(&["rules", name, "shadow"])))
    }

    /// Stops a shadow run; its last report.
    pub fn shadow_stop(&self, name: &str) -> Result<ShadowReport, ClientError> {
        self.typed("rules shadow-stop", self.request(Method::DELETE, self.url(&["rules", name, "shadow"])))
    }

    /// Promotes a shadow run's candidate.
    pub fn promote(&self, name: &str) -> Result<RuleChange, ClientError> {
        self.typed("rules promote", self.request(Method::POST, self.url(&["rules", name, "shadow", "promote"])))
    }

    /// Rescans the instance's rules folder now.
    pub fn reload(&self) -> Result<crate::control::view::ReloadReport, ClientError> {
        self.typed("rules reload", self.request(Method::POST, self.url(&["reload"])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_names_are_one_encoded_path_segment() {
        let c = RulesClient::new("http://127.0.0.1:9898/", None).unwrap();
        assert_eq!(c.url(&["rules", "a b/c?"]).as_str(), "http://127.0.0.1:9898/api/v1/rules/a%20b%2Fc%3F");
        let c = RulesClient::new("http://h/sluice", None).unwrap();
        assert_eq!(c.url(&["reload"]).as_str(), "http://h/sluice/api/v1/reload");
        assert!(matches!(RulesClient::new("not a url", None), Err(ClientError::Url(_))));
    }
}
