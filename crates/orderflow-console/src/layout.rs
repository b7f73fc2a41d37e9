//! The page shell every page shares, the built-in stylesheet and script,
//! error pages, and the small formatting helpers pages have in common.

use crate::Console;
use crate::auth::Session;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};
use orderflow_core::OrderState;
use orderflow_core::state::Disposition;

const CSS: &str = include_str!("../assets/console.css");
const JS: &str = include_str!("../assets/console.js");

pub fn routes() -> Router<Console> {
    Router::new()
        .route(
            "/assets/console.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS) }),
        )
        .route(
            "/assets/console.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    JS,
                )
            }),
        )
}

/// A whole page: the navigation, who is acting, then `body`.
pub fn page(console: &Console, session: &Session, title: &str, body: Markup) -> Markup {
    let nav = [
        ("/", "Fleet"),
        ("/exceptions", "Exceptions"),
        ("/orders", "Orders"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · orderflow " (console.target().namespace()) }
                link rel="stylesheet" href="/assets/console.css";
            }
            body {
                header.top {
                    a.brand href="/" { "orderflow" }
                    span.muted { "namespace " code { (console.target().namespace()) } }
                    @for (href, name) in nav {
                        a href=(href) class=[(title == name).then_some("here")] { (name) }
                    }
                    span.who {
                        "acting as " strong #actor { (session.shown()) }
                        a href="/login" { "change" }
                        @if console.auth().required() {
                            form method="post" action="/logout" { button type="submit" { "sign out" } }
                        }
                    }
                }
                main { (body) }
                script src="/assets/console.js" {}
            }
        }
    }
}

/// A page that says what went wrong and what to do, with its status.
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub title: &'static str,
    pub message: String,
}

impl PageError {
    pub fn new(status: StatusCode, title: &'static str, message: String) -> PageError {
        PageError {
            status,
            title,
            message,
        }
    }

    /// The request is wrong: what the library calls invalid.
    pub fn bad_request(message: impl Into<String>) -> PageError {
        PageError::new(
            StatusCode::BAD_REQUEST,
            "Not done: check the request",
            message.into(),
        )
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let body = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    title { (self.title) " · orderflow" }
                    link rel="stylesheet" href="/assets/console.css";
                }
                body { main {
                    h1 { (self.title) }
                    p.flash.bad #error { (self.message) }
                    p { a href="javascript:history.back()" { "back" } " · " a href="/" { "fleet" } }
                } }
            }
        };
        (self.status, body).into_response()
    }
}

/// The library's errors, by what the operator does about them: the one
/// map from an operator error to an HTTP status and the page's title.
impl From<orderflow_ops::Error> for PageError {
    fn from(err: orderflow_ops::Error) -> PageError {
        use orderflow_ops::{Error, Kind};
        let (status, title) = match (&err, err.kind()) {
            (Error::FileInUse { .. }, _) => (StatusCode::CONFLICT, "An export is running"),
            (_, Kind::Invalid) => (StatusCode::BAD_REQUEST, "Not done: check the request"),
            (_, Kind::Refused) => (StatusCode::CONFLICT, "Refused as unsafe: nothing was done"),
            (_, Kind::Failed) => (StatusCode::BAD_GATEWAY, "Could not be done now"),
        };
        PageError::new(status, title, err.to_string())
    }
}

pub type PageResult = Result<Markup, PageError>;

/// An order state as a badge coloured by what it asks of people.
pub fn state_badge(state: OrderState) -> Markup {
    let class = match state.disposition() {
        Disposition::NeedsPerson => "badge needs-person",
        Disposition::Terminal => "badge terminal",
        Disposition::InFlight => "badge",
    };
    html! { span class=(class) { (state.as_str()) } }
}

/// `3m 12s` for an age in seconds.
pub fn age(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// Percent-encodes everything but unreserved characters, for a path
/// segment or a query value (reasons and ids come from message headers).
pub fn url_component(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A timestamp to the second, in UTC.
pub fn time(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_components_keep_only_unreserved_characters() {
        assert_eq!(url_component("payment_unresolved"), "payment_unresolved");
        assert_eq!(
            url_component("/exceptions?stage=payment&x=a b"),
            "%2Fexceptions%3Fstage%3Dpayment%26x%3Da%20b"
        );
    }

    #[test]
    fn ages_read_at_a_glance() {
        assert_eq!(age(0), "0s");
        assert_eq!(age(59), "59s");
        assert_eq!(age(192), "3m 12s");
        assert_eq!(age(7_380), "2h 3m");
        assert_eq!(age(90_000), "1d 1h");
    }
}
