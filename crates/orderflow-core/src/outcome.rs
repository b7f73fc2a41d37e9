//! The failure taxonomy: what a downstream call's result means.
//!
//! Every observation (an HTTP status with its body code, or a transport
//! failure) becomes an [`Outcome`]: a [`FailureClass`] and a [`Certainty`].
//! Transport failures have fixed meanings; HTTP statuses and body codes are
//! mapped by [`ClassifyRule`]s from the policy, so an operator can follow a
//! provider's error codes without a code change.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// What kind of result a downstream call produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    Success,
    Transient,
    Overloaded,
    RateLimited,
    Timeout,
    BusinessRejection,
    Infrastructure,
    Malformed,
}

/// Whether the downstream operation took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Certainty {
    Applied,
    NotApplied,
    Unknown,
}

macro_rules! named_enum {
    ($ty:ident, $what:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $ty::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| {
                    let names: Vec<_> = $ty::ALL.iter().map(|v| v.as_str()).collect();
                    format!("unknown {} `{s}`; expected one of: {}", $what, names.join(", "))
                })
            }
        }
    };
}

named_enum!(FailureClass, "failure class", {
    Success => "success",
    Transient => "transient",
    Overloaded => "overloaded",
    RateLimited => "rate_limited",
    Timeout => "timeout",
    BusinessRejection => "business_rejection",
    Infrastructure => "infrastructure",
    Malformed => "malformed",
});

named_enum!(Certainty, "certainty", {
    Applied => "applied",
    NotApplied => "not_applied",
    Unknown => "unknown",
});

impl FailureClass {
    /// Deterministic failures: the same request fails the same way again.
    pub fn is_deterministic(self) -> bool {
        matches!(
            self,
            FailureClass::BusinessRejection
                | FailureClass::Malformed
                | FailureClass::Infrastructure
        )
    }
}

/// What a downstream call's result means, plus what the decision needs from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub class: FailureClass,
    pub certainty: Certainty,
    /// The provider's code (`card_declined`) or body status (`processing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The downstream's `Retry-After`, if it sent one.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "humantime_serde"
    )]
    pub retry_after: Option<Duration>,
}

impl Outcome {
    pub fn new(class: FailureClass, certainty: Certainty) -> Outcome {
        Outcome {
            class,
            certainty,
            code: None,
            retry_after: None,
        }
    }

    pub fn is_confirmed_success(&self) -> bool {
        self.class == FailureClass::Success && self.certainty == Certainty::Applied
    }

    /// What a status query that went unanswered — refused, rate limited,
    /// failed, cut off or never sent — says of the operation it asked
    /// about: nothing. Its "not applied" is the query's, not the
    /// operation's; taken for the operation's it would have a charge of
    /// unknown outcome sent again, or a cancelled order's stock released
    /// while its charge stands. The class stays (the breaker and the
    /// in-flight limit read it); the certainty becomes unknown.
    fn of_query(self, call: CallKind, answered: bool) -> Outcome {
        if call == CallKind::Status && !answered {
            Outcome {
                certainty: Certainty::Unknown,
                ..self
            }
        } else {
            self
        }
    }
}

/// A transport-level failure: no HTTP response to classify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransportFailure {
    /// Could not connect: the request never left.
    Connect,
    /// Timed out before the request was written.
    TimeoutBeforeSend,
    /// Timed out after the request was written: it may have been applied.
    TimeoutAfterSend,
    /// The connection dropped after the request was written.
    ResetAfterSend,
    /// The circuit breaker refused the call: it was never sent.
    BreakerOpen,
}

impl TransportFailure {
    /// The fixed meaning of a transport failure of a `call`. Anything after
    /// the request left is `unknown`: the downstream may have acted on it;
    /// so is any failure of a status query, which leaves the operation it
    /// asked about as unknown as it was.
    pub fn outcome(self, call: CallKind) -> Outcome {
        use {Certainty::*, FailureClass::*};
        let (class, certainty) = match self {
            TransportFailure::Connect => (Transient, NotApplied),
            TransportFailure::TimeoutBeforeSend => (Timeout, NotApplied),
            TransportFailure::TimeoutAfterSend => (Timeout, Unknown),
            TransportFailure::ResetAfterSend => (Transient, Unknown),
            TransportFailure::BreakerOpen => (Overloaded, NotApplied),
        };
        Outcome::new(class, certainty).of_query(call, false)
    }
}

/// Which kind of call an observation came from: status queries map codes
/// differently (a 404 there means "not applied", not "no such endpoint").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    /// The stage's mutating call (reserve, charge, create shipment).
    Action,
    /// The by-key status query.
    Status,
}

/// An HTTP response, reduced to what classification reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response<'a> {
    pub status: u16,
    /// The body's `code` on errors, or its `status` on success.
    pub code: Option<&'a str>,
    pub retry_after: Option<Duration>,
}

/// A status pattern in a classify rule: an exact status (`"409"`) or a
/// class of statuses (`"4xx"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum StatusPattern {
    Exact(u16),
    Hundreds(u16),
}

impl StatusPattern {
    pub fn matches(&self, status: u16) -> bool {
        match *self {
            StatusPattern::Exact(s) => s == status,
            StatusPattern::Hundreds(h) => status / 100 == h,
        }
    }
}

impl TryFrom<String> for StatusPattern {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        let bad =
            || format!("status `{s}` must be an HTTP status like \"409\" or a class like \"5xx\"");
        match s.as_bytes() {
            [d @ b'1'..=b'5', b'x', b'x'] => Ok(StatusPattern::Hundreds(u16::from(d - b'0'))),
            _ => match s.parse::<u16>() {
                Ok(n) if (100..600).contains(&n) => Ok(StatusPattern::Exact(n)),
                _ => Err(bad()),
            },
        }
    }
}

impl From<StatusPattern> for String {
    fn from(p: StatusPattern) -> String {
        match p {
            StatusPattern::Exact(s) => s.to_string(),
            StatusPattern::Hundreds(h) => format!("{h}xx"),
        }
    }
}

/// One row of a downstream's classification table. Rules are tried in
/// order; the first that matches decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifyRule {
    /// Limits the rule to actions or status queries; absent = both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<CallKind>,
    pub status: StatusPattern,
    /// Limits the rule to one body code or body status; absent = any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub class: FailureClass,
    pub certainty: Certainty,
}

impl ClassifyRule {
    fn matches(&self, call: CallKind, response: &Response<'_>) -> bool {
        self.call.is_none_or(|c| c == call)
            && self.status.matches(response.status)
            && self
                .code
                .as_deref()
                .is_none_or(|code| response.code == Some(code))
    }
}

/// Classifies an HTTP response by the first matching rule. A response no
/// rule covers is `infrastructure`/`unknown`: the fleet never guesses that an
/// unrecognised answer means "not applied". On a status query only the
/// rules written for status queries (`call = "status"`) speak of the
/// operation asked about; an answer that falls to a shared rule (a 503, a
/// 429, a 500) is the query going unanswered, and its certainty is unknown.
pub fn classify(rules: &[ClassifyRule], call: CallKind, response: &Response<'_>) -> Outcome {
    let rule = rules.iter().find(|rule| rule.matches(call, response));
    let (class, certainty) = rule
        .map_or((FailureClass::Infrastructure, Certainty::Unknown), |rule| {
            (rule.class, rule.certainty)
        });
    let answered = rule.is_some_and(|rule| rule.call == Some(CallKind::Status));
    Outcome {
        class,
        certainty,
        code: response.code.map(str::to_owned),
        retry_after: response.retry_after,
    }
    .of_query(call, answered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use FailureClass::*;

    fn rule(
        status: &str,
        code: Option<&str>,
        class: FailureClass,
        certainty: Certainty,
    ) -> ClassifyRule {
        ClassifyRule {
            call: None,
            status: StatusPattern::try_from(status.to_owned()).unwrap(),
            code: code.map(str::to_owned),
            class,
            certainty,
        }
    }

    fn response(status: u16, code: Option<&str>) -> Response<'_> {
        Response {
            status,
            code,
            retry_after: None,
        }
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let rules = [
            rule(
                "409",
                Some("insufficient_stock"),
                BusinessRejection,
                Certainty::NotApplied,
            ),
            rule("4xx", None, Infrastructure, Certainty::NotApplied),
        ];
        let stock = classify(
            &rules,
            CallKind::Action,
            &response(409, Some("insufficient_stock")),
        );
        assert_eq!(
            (stock.class, stock.certainty),
            (BusinessRejection, Certainty::NotApplied)
        );
        assert_eq!(stock.code.as_deref(), Some("insufficient_stock"));
        let other = classify(
            &rules,
            CallKind::Action,
            &response(409, Some("request_in_progress")),
        );
        assert_eq!(other.class, Infrastructure);
    }

    #[test]
    fn an_unmapped_response_is_never_assumed_not_applied() {
        let outcome = classify(&[], CallKind::Action, &response(418, None));
        assert_eq!(
            (outcome.class, outcome.certainty),
            (Infrastructure, Certainty::Unknown)
        );
    }

    #[test]
    fn rules_can_be_limited_to_status_queries() {
        let mut not_found = rule("404", None, Transient, Certainty::NotApplied);
        not_found.call = Some(CallKind::Status);
        let rules = [not_found];
        assert_eq!(
            classify(&rules, CallKind::Status, &response(404, None)).certainty,
            Certainty::NotApplied
        );
        assert_eq!(
            classify(&rules, CallKind::Action, &response(404, None)).certainty,
            Certainty::Unknown
        );
    }

    #[test]
    fn anything_after_the_request_left_is_unknown() {
        let action = |failure: TransportFailure| failure.outcome(CallKind::Action);
        assert_eq!(
            action(TransportFailure::Connect).certainty,
            Certainty::NotApplied
        );
        assert_eq!(
            action(TransportFailure::TimeoutBeforeSend).certainty,
            Certainty::NotApplied
        );
        assert_eq!(
            action(TransportFailure::TimeoutAfterSend).certainty,
            Certainty::Unknown
        );
        assert_eq!(
            action(TransportFailure::ResetAfterSend).certainty,
            Certainty::Unknown
        );
        assert_eq!(action(TransportFailure::BreakerOpen).class, Overloaded);
    }

    #[test]
    fn a_status_query_that_goes_unanswered_leaves_the_operation_unknown() {
        for failure in [
            TransportFailure::Connect,
            TransportFailure::TimeoutBeforeSend,
            TransportFailure::BreakerOpen,
        ] {
            let outcome = failure.outcome(CallKind::Status);
            assert_eq!(outcome.certainty, Certainty::Unknown, "{failure:?}");
            assert_eq!(outcome.class, failure.outcome(CallKind::Action).class);
        }
        let mut not_found = rule("404", Some("not_found"), Transient, Certainty::NotApplied);
        not_found.call = Some(CallKind::Status);
        let rules = [
            not_found,
            rule("503", None, Overloaded, Certainty::NotApplied),
            rule("429", None, RateLimited, Certainty::NotApplied),
        ];
        let status = |code, body| classify(&rules, CallKind::Status, &response(code, body));
        assert_eq!(
            status(404, Some("not_found")).certainty,
            Certainty::NotApplied,
            "the contract's answer: nothing was done"
        );
        for code in [503, 429, 418] {
            assert_eq!(status(code, None).certainty, Certainty::Unknown, "{code}");
        }
        assert_eq!(status(503, None).class, Overloaded);
        assert_eq!(
            classify(&rules, CallKind::Action, &response(503, None)).certainty,
            Certainty::NotApplied,
            "an action refused with 503 was not applied"
        );
    }

    #[test]
    fn status_patterns_parse_and_refuse() {
        assert_eq!(
            StatusPattern::try_from("5xx".to_owned()),
            Ok(StatusPattern::Hundreds(5))
        );
        assert_eq!(
            StatusPattern::try_from("429".to_owned()),
            Ok(StatusPattern::Exact(429))
        );
        assert!(StatusPattern::try_from("6xx".to_owned()).is_err());
        assert!(StatusPattern::try_from("42".to_owned()).is_err());
        assert!(StatusPattern::Hundreds(5).matches(503));
    }

    #[test]
    fn class_and_certainty_names_round_trip() {
        for class in FailureClass::ALL {
            assert_eq!(class.as_str().parse::<FailureClass>().as_ref(), Ok(class));
        }
        for certainty in Certainty::ALL {
            assert_eq!(
                certainty.as_str().parse::<Certainty>().as_ref(),
                Ok(certainty)
            );
        }
        assert!("maybe".parse::<Certainty>().is_err());
    }
}
