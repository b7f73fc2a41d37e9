//! One downstream API over HTTP: send, time, classify, count. Every call,
//! whatever happens to it, comes back as an [`Answer`] with an [`Outcome`];
//! nothing here decides what to do about it.

use crate::breaker::{Breaker, Permit};
use crate::key::IdempotencyKey;
use crate::limit::InFlightLimit;
use orderflow_core::Stage;
use orderflow_core::decide::BreakerState;
use orderflow_core::outcome::{
    CallKind, ClassifyRule, FailureClass, Outcome, Response, TransportFailure, classify,
};
use orderflow_core::policy::DownstreamPolicy;
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::error::Error as _;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{stage} API base URL `{url}` is not a valid http(s) URL: {why}")]
    BadUrl {
        stage: Stage,
        url: String,
        why: String,
    },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// What one call produced: its classified outcome and, on success, the body.
#[derive(Debug, Clone)]
pub struct Answer<T> {
    pub outcome: Outcome,
    pub body: Option<T>,
    pub latency: Duration,
}

impl<T> Answer<T> {
    fn without_body(outcome: Outcome, latency: Duration) -> Answer<T> {
        Answer {
            outcome,
            body: None,
            latency,
        }
    }
}

/// A downstream API: base URL, HTTP client with the policy's timeouts, the
/// policy's classification rules, and this process's breaker and in-flight
/// limit for it.
#[derive(Debug)]
pub struct Downstream {
    stage: Stage,
    base: Url,
    http: reqwest::Client,
    rules: Vec<ClassifyRule>,
    breaker: Breaker,
    in_flight: InFlightLimit,
}

impl Downstream {
    pub fn new(
        stage: Stage,
        base_url: &str,
        policy: &DownstreamPolicy,
    ) -> Result<Downstream, Error> {
        let bad = |why: String| Error::BadUrl {
            stage,
            url: base_url.to_owned(),
            why,
        };
        let mut base = Url::parse(base_url).map_err(|e| bad(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(bad(format!(
                "scheme `{}` is not http or https",
                base.scheme()
            )));
        }
        // Paths are joined onto the base: make sure it reads as a directory.
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(policy.connect_timeout)
            .timeout(policy.connect_timeout + policy.request_timeout)
            .build()?;
        Ok(Downstream {
            stage,
            base,
            http,
            rules: policy.classify.clone(),
            breaker: Breaker::new(policy.breaker.clone()),
            in_flight: InFlightLimit::new(policy.max_in_flight),
        })
    }

    pub fn stage(&self) -> Stage {
        self.stage
    }

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// A mutating call: POST, carrying the idempotency key. `endpoint` names
    /// the call in metrics (`payment.charge`).
    pub async fn action<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        path: &str,
        key: &IdempotencyKey,
        body: Option<&Value>,
    ) -> Answer<T> {
        self.call(
            endpoint,
            CallKind::Action,
            Method::POST,
            path,
            Some(key.as_str()),
            body,
        )
        .await
    }

    /// A status query by key: GET.
    pub async fn status<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        path: &str,
    ) -> Answer<T> {
        self.call(endpoint, CallKind::Status, Method::GET, path, None, None)
            .await
    }

    /// Sends one request and classifies what came back.
    async fn call<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        kind: CallKind,
        method: Method,
        path: &str,
        idempotency_key: Option<&str>,
        body: Option<&Value>,
    ) -> Answer<T> {
        if self.breaker.acquire() == Permit::Refused {
            let answer =
                Answer::without_body(TransportFailure::BreakerOpen.outcome(), Duration::ZERO);
            record_metrics(self.stage, endpoint, &answer.outcome, answer.latency);
            return answer;
        }
        let in_flight = self.in_flight.acquire().await;
        let url = self
            .base
            .join(path)
            .expect("API paths are relative and valid");
        let mut request = self.http.request(method, url);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }

        let started = Instant::now();
        let (answer, client_error) = match request.send().await {
            Ok(response) => {
                let client_error = response.status().is_client_error();
                (self.read(kind, response, started).await, client_error)
            }
            Err(err) => (
                Answer::without_body(transport_failure(&err).outcome(), started.elapsed()),
                false,
            ),
        };
        // A status query answered "not found" is a healthy downstream saying
        // the request never landed: counted as a failure, it would keep the
        // breaker tripping after an outage, when such answers are common.
        let health = if kind == CallKind::Status && client_error {
            FailureClass::Success
        } else {
            answer.outcome.class
        };
        self.breaker.record(health, answer.latency);
        in_flight.finish(matches!(
            answer.outcome.class,
            FailureClass::Overloaded | FailureClass::RateLimited
        ));
        metrics::gauge!("orderflow_in_flight_limit", "downstream" => self.stage.as_str())
            .set(f64::from(self.in_flight.current()));
        record_metrics(self.stage, endpoint, &answer.outcome, answer.latency);
        // 0 closed, 1 half-open, 2 open: one gauge a dashboard can colour.
        let breaker = match self.breaker.state() {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        };
        metrics::gauge!("orderflow_breaker_state", "downstream" => self.stage.as_str())
            .set(breaker);
        answer
    }

    async fn read<T: DeserializeOwned>(
        &self,
        kind: CallKind,
        response: reqwest::Response,
        started: Instant,
    ) -> Answer<T> {
        let status = response.status();
        let retry_after = retry_after(&response);
        // The status line arrived, so the request was processed; losing the
        // body now still leaves the outcome unknown.
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(_) => {
                return Answer::without_body(
                    TransportFailure::ResetAfterSend.outcome(),
                    started.elapsed(),
                );
            }
        };
        let json: Option<Value> = serde_json::from_slice(&bytes).ok();
        let code = json
            .as_ref()
            .and_then(|v| v.get("code").or_else(|| v.get("status")))
            .and_then(Value::as_str);
        let outcome = classify(
            &self.rules,
            kind,
            &Response {
                status: status.as_u16(),
                code,
                retry_after,
            },
        );
        let body = if status.is_success() {
            json.and_then(|v| serde_json::from_value(v).ok())
        } else {
            None
        };
        Answer {
            outcome,
            body,
            latency: started.elapsed(),
        }
    }
}

/// Whether the request can have reached the downstream decides the
/// certainty: a connect failure cannot, a timeout after connecting can.
fn transport_failure(err: &reqwest::Error) -> TransportFailure {
    if err.is_connect() {
        return if err.is_timeout() {
            TransportFailure::TimeoutBeforeSend
        } else {
            TransportFailure::Connect
        };
    }
    if err.is_timeout() || is_timeout_in_chain(err) {
        TransportFailure::TimeoutAfterSend
    } else {
        TransportFailure::ResetAfterSend
    }
}

fn is_timeout_in_chain(err: &reqwest::Error) -> bool {
    let mut source = err.source();
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// `Retry-After` in seconds (the HTTP-date form is not used by the APIs
/// orderflow talks to; it is ignored rather than guessed).
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    if response.status() != StatusCode::TOO_MANY_REQUESTS
        && response.status() != StatusCode::SERVICE_UNAVAILABLE
    {
        return None;
    }
    let value = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn record_metrics(stage: Stage, endpoint: &'static str, outcome: &Outcome, latency: Duration) {
    let labels = [
        ("downstream", stage.as_str()),
        ("endpoint", endpoint),
        ("class", outcome.class.as_str()),
        ("certainty", outcome.certainty.as_str()),
    ];
    metrics::counter!("orderflow_downstream_calls_total", &labels).increment(1);
    metrics::histogram!("orderflow_downstream_call_seconds", &labels[..3])
        .record(latency.as_secs_f64());
}
