//! One downstream API over HTTP: send, time, classify, count. Every call,
//! whatever happens to it, comes back as an [`Answer`] with an [`Outcome`];
//! nothing here decides what to do about it.
//!
//! A 2xx is a success only when it is the contract's answer to the call
//! (docs/downstream-api.md): its body, read up to [`MAX_ANSWER_BYTES`],
//! parses as the call's response and names a status the contract has for
//! it. Anything else (an ingress's HTML page, an empty body, other JSON, a
//! status nobody agreed on) is [`OFF_CONTRACT`]: `infrastructure` /
//! `unknown`, so the stage asks by key and never proceeds on it.

use crate::breaker::{Breaker, Permit};
use crate::key::IdempotencyKey;
use crate::limit::InFlightLimit;
use orderflow_core::Stage;
use orderflow_core::decide::BreakerState;
use orderflow_core::outcome::{
    CallKind, Certainty, ClassifyRule, FailureClass, Outcome, Response, TransportFailure, classify,
};
use orderflow_core::policy::DownstreamPolicy;
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::error::Error as _;
use std::time::{Duration, Instant};
use tracing::warn;

/// The most of an answer's body the fleet reads. Every answer of the
/// contract is well under a kilobyte: a body past this is not one, and
/// reading it whole could take the worker's memory.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// The code of an outcome made from a 2xx that is not the contract's
/// answer to the call.
pub const OFF_CONTRACT: &str = "off_contract";

/// A success body of the contract: it names the state of what it is about,
/// and (a status query's answer) the order it is about.
pub trait Contract: DeserializeOwned {
    fn status(&self) -> &str;
    fn order_id(&self) -> Option<&str>;
}

/// The statuses the contract's success answer to one call may name
/// (`payment.charge`: `succeeded` or `processing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect(pub &'static [&'static str]);

/// A status query for this key must find nothing on a real API: the fleet
/// makes keys as `order:stage:operation`, never without a `:`.
const NO_SUCH_KEY: &str = "orderflow-contract-check";

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
    /// For an [`OFF_CONTRACT`] outcome: what came instead of the contract's
    /// answer (`200 text/html, 68 bytes: not JSON`).
    pub off_contract: Option<String>,
}

impl<T> Answer<T> {
    fn without_body(outcome: Outcome, latency: Duration) -> Answer<T> {
        Answer {
            outcome,
            body: None,
            latency,
            off_contract: None,
        }
    }
}

/// A response's body, read up to [`MAX_ANSWER_BYTES`].
struct Body {
    bytes: Vec<u8>,
    /// More was sent than was read.
    oversized: bool,
}

/// What a response was, in words for a log line or a readiness reason.
fn describe(status: StatusCode, content_type: Option<&str>, body: &Body) -> String {
    let size = if body.oversized {
        format!("over {MAX_ANSWER_BYTES} bytes")
    } else {
        format!("{} bytes", body.bytes.len())
    };
    let content_type = content_type.unwrap_or("no content type");
    format!("{} {content_type}, {size}", status.as_u16())
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
    /// `expect` is what its success answer may say.
    pub async fn action<T: Contract>(
        &self,
        endpoint: &'static str,
        path: &str,
        key: &IdempotencyKey,
        body: Option<&Value>,
        expect: Expect,
    ) -> Answer<T> {
        let call = Call {
            endpoint,
            kind: CallKind::Action,
            expect,
            about: None,
        };
        self.call(call, Method::POST, path, Some(key.as_str()), body)
            .await
    }

    /// A status query by key: GET `{prefix}{key}`. Its answer counts only
    /// if it is about the key's order.
    pub async fn status<T: Contract>(
        &self,
        endpoint: &'static str,
        prefix: &str,
        key: &IdempotencyKey,
        expect: Expect,
    ) -> Answer<T> {
        let call = Call {
            endpoint,
            kind: CallKind::Status,
            expect,
            about: Some(key.order_id()),
        };
        let path = format!("{prefix}{key}");
        self.call(call, Method::GET, &path, None, None).await
    }

    /// Whether the base URL is this API: a status query for a key that
    /// cannot exist (`status_path` + the key) must get the contract's JSON
    /// `404 {"code": "not_found"}` (or `501 not_implemented` from an API
    /// without status queries). A contract error (`500 internal_error`,
    /// `503 unavailable`, ...) is the API having a bad moment, which the
    /// stages ride out as always. Anything else — no answer, a page, a 2xx
    /// — says what it was, for the worker's readiness and log.
    pub async fn check_contract(&self, status_path: &str) -> Result<(), String> {
        let url = self
            .base
            .join(&format!("{status_path}{NO_SUCH_KEY}"))
            .expect("API paths are relative and valid");
        let wanted = "the contract's 404 {\"code\": \"not_found\"}";
        let response = match self.http.get(url.clone()).send().await {
            Ok(response) => response,
            Err(err) => {
                return Err(format!(
                    "GET {url} got no answer ({}); wanted {wanted}",
                    chain(&err)
                ));
            }
        };
        let status = response.status();
        let content_type = content_type(&response);
        let body = read_capped(response).await.map_err(|err| {
            format!("GET {url} answered {status}, then the body broke off ({err}); wanted {wanted}")
        })?;
        let code = serde_json::from_slice::<Value>(&body.bytes)
            .ok()
            .and_then(|v| v.get("code").and_then(Value::as_str).map(str::to_owned));
        let contract_error = matches!(
            (status.as_u16(), code.as_deref()),
            (404, Some("not_found"))
                | (501, Some("not_implemented"))
                | (500, Some("internal_error"))
                | (503, Some("unavailable" | "over_capacity"))
                | (504, Some("timeout"))
                | (429, Some("rate_limited"))
        );
        if contract_error && !body.oversized {
            return Ok(());
        }
        Err(format!(
            "GET {url} answered {}; wanted {wanted}",
            describe(status, content_type.as_deref(), &body)
        ))
    }

    /// Sends one request and classifies what came back.
    async fn call<T: Contract>(
        &self,
        call: Call<'_>,
        method: Method,
        path: &str,
        idempotency_key: Option<&str>,
        body: Option<&Value>,
    ) -> Answer<T> {
        let Call { endpoint, kind, .. } = call;
        if self.breaker.acquire() == Permit::Refused {
            let answer =
                Answer::without_body(TransportFailure::BreakerOpen.outcome(kind), Duration::ZERO);
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
                (self.read(call, response, started).await, client_error)
            }
            Err(err) => (
                Answer::without_body(transport_failure(&err).outcome(kind), started.elapsed()),
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

    async fn read<T: Contract>(
        &self,
        call: Call<'_>,
        response: reqwest::Response,
        started: Instant,
    ) -> Answer<T> {
        let status = response.status();
        let retry_after = retry_after(&response);
        let content_type = content_type(&response);
        let url = response.url().clone();
        // The status line arrived, so the request was processed; losing the
        // body now still leaves the outcome unknown.
        let Ok(body) = read_capped(response).await else {
            return Answer::without_body(
                TransportFailure::ResetAfterSend.outcome(call.kind),
                started.elapsed(),
            );
        };
        let json: Option<Value> = if body.oversized {
            None
        } else {
            serde_json::from_slice(&body.bytes).ok()
        };
        if status.is_success() {
            return match contract_answer::<T>(json, call.expect, call.about) {
                Ok(parsed) => {
                    let outcome = classify(
                        &self.rules,
                        call.kind,
                        &Response {
                            status: status.as_u16(),
                            code: Some(parsed.status()),
                            retry_after,
                        },
                    );
                    Answer {
                        outcome,
                        body: Some(parsed),
                        latency: started.elapsed(),
                        off_contract: None,
                    }
                }
                Err(why) => {
                    let what = format!(
                        "{}: {why}",
                        describe(status, content_type.as_deref(), &body)
                    );
                    warn!(
                        downstream = self.stage.as_str(),
                        endpoint = call.endpoint,
                        %url,
                        answer = %what,
                        "a 2xx that is not the contract's answer: its outcome is unknown"
                    );
                    let mut outcome =
                        Outcome::new(FailureClass::Infrastructure, Certainty::Unknown);
                    outcome.code = Some(OFF_CONTRACT.to_owned());
                    Answer {
                        outcome,
                        body: None,
                        latency: started.elapsed(),
                        off_contract: Some(what),
                    }
                }
            };
        }
        let code = json
            .as_ref()
            .and_then(|v| v.get("code"))
            .and_then(Value::as_str);
        let outcome = classify(
            &self.rules,
            call.kind,
            &Response {
                status: status.as_u16(),
                code,
                retry_after,
            },
        );
        Answer::without_body(outcome, started.elapsed())
    }
}

/// One call as the contract sees it.
#[derive(Debug, Clone, Copy)]
struct Call<'a> {
    /// Names the call in metrics and logs (`payment.charge`).
    endpoint: &'static str,
    kind: CallKind,
    expect: Expect,
    /// The order a status query asks about: its answer must name it.
    about: Option<&'a str>,
}

/// The success body, if it is the contract's answer to the call; else why
/// not. A status query's answer about another order (a cache or proxy that
/// ignores the key) is not the answer to this query: taken for it, another
/// order's charge would let this one ship unpaid.
fn contract_answer<T: Contract>(
    json: Option<Value>,
    expect: Expect,
    about: Option<&str>,
) -> Result<T, String> {
    let json = json.ok_or("not JSON")?;
    let parsed: T =
        serde_json::from_value(json).map_err(|e| format!("not the call's response ({e})"))?;
    if !expect.0.contains(&parsed.status()) {
        return Err(format!(
            "status `{}` is not one the contract has for this call ({})",
            parsed.status(),
            expect.0.join(", ")
        ));
    }
    match about {
        Some(order) if parsed.order_id() != Some(order) => Err(format!(
            "it is about order {}, not {order}",
            parsed.order_id().unwrap_or("(none named)")
        )),
        _ => Ok(parsed),
    }
}

/// Reads the body up to [`MAX_ANSWER_BYTES`]: a `Content-Length` past it
/// is not read at all, a body that runs past it is cut off there.
async fn read_capped(mut response: reqwest::Response) -> Result<Body, reqwest::Error> {
    let limit = MAX_ANSWER_BYTES as u64;
    if response.content_length().is_some_and(|n| n > limit) {
        return Ok(Body {
            bytes: Vec::new(),
            oversized: true,
        });
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Ok(Body {
                bytes,
                oversized: true,
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Body {
        bytes,
        oversized: false,
    })
}

fn content_type(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// An error with its causes, for one line of text.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{PAYMENT_STATES, Payment, PaymentStatus};
    use serde_json::json;

    #[test]
    fn a_status_answer_counts_only_for_the_order_it_names() {
        let about = |order: &str| {
            Some(json!({"payment_id": "pay_1", "order_id": order, "status": "succeeded"}))
        };
        let answer = contract_answer::<Payment>(about("ord-1"), PAYMENT_STATES, Some("ord-1"));
        assert_eq!(answer.map(|p| p.status), Ok(PaymentStatus::Succeeded));
        let other = contract_answer::<Payment>(about("ord-2"), PAYMENT_STATES, Some("ord-1"));
        assert_eq!(
            other.map(|p| p.status),
            Err("it is about order ord-2, not ord-1".to_owned())
        );
        let unnamed = json!({"payment_id": "pay_1", "status": "succeeded"});
        assert!(
            contract_answer::<Payment>(Some(unnamed.clone()), PAYMENT_STATES, Some("ord-1"))
                .is_err()
        );
        // An action's answer names no order: nothing to compare.
        assert!(contract_answer::<Payment>(Some(unnamed), PAYMENT_STATES, None).is_ok());
    }
}
