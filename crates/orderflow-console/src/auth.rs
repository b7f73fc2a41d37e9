//! Who may use the console and who is acting.
//!
//! Without a token the console listens on loopback only, and anyone there
//! may use it (as with `orderctl` on the same machine). With a token,
//! every request carries it — as `Authorization: Bearer …` or the cookie
//! the sign-in page sets. Either way the operator names themself at
//! sign-in (else the console's default actor), and every action is audited
//! as `operator:<name>@console`.
//!
//! Actions are POSTs and are refused when the browser says they come from
//! another site (`Origin`, `Sec-Fetch-Site`), so a page elsewhere cannot
//! make a signed-in browser act on the fleet.

use crate::Console;
use crate::layout::{self, PageError};
use axum::extract::{FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use maud::html;
use serde::Deserialize;
use sha2::{Digest, Sha256};

const TOKEN_COOKIE: &str = "orderflow_console_token";
const ACTOR_COOKIE: &str = "orderflow_console_actor";
/// An operator's name: what `orderctl --actor` accepts, kept short.
const MAX_NAME: usize = 64;

/// The access token, kept as its digest.
#[derive(Clone)]
pub struct Auth {
    digest: Option<[u8; 32]>,
}

impl Auth {
    pub fn new(token: Option<String>) -> Auth {
        Auth {
            digest: token.map(|t| digest(&t)),
        }
    }

    pub fn required(&self) -> bool {
        self.digest.is_some()
    }

    /// Digests compared byte by byte without stopping early, so the time
    /// taken says nothing about how much of a guess was right.
    fn accepts(&self, presented: &str) -> bool {
        match &self.digest {
            None => true,
            Some(expected) => {
                let got = digest(presented);
                expected
                    .iter()
                    .zip(got)
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
            }
        }
    }

    fn presented(headers: &HeaderMap, jar: &CookieJar) -> Option<String> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        bearer.or_else(|| jar.get(TOKEN_COOKIE).map(|c| c.value().to_owned()))
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The operator acting in this request; `name` is empty until they sign
/// in, when the console was started without a default actor.
#[derive(Debug, Clone)]
pub struct Session {
    pub name: String,
}

impl Session {
    /// The operator as `orderflow-ops` audits them: `<name>@console`; an
    /// action without a name is refused before anything is done.
    pub fn operator(&self) -> Result<String, PageError> {
        if self.name.is_empty() {
            return Err(PageError::new(
                StatusCode::UNAUTHORIZED,
                "Who is acting?",
                "sign in with your name first (at /login): every action is audited with it"
                    .to_owned(),
            ));
        }
        Ok(format!("{}@console", self.name))
    }

    /// The name shown in the page header.
    pub fn shown(&self) -> String {
        self.operator()
            .unwrap_or_else(|_| "nobody yet: sign in".to_owned())
    }
}

impl FromRequestParts<Console> for Session {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Console,
    ) -> Result<Session, Self::Rejection> {
        let jar = CookieJar::from_headers(&parts.headers);
        let name = jar
            .get(ACTOR_COOKIE)
            .map(|c| c.value().to_owned())
            .filter(|name| valid_name(name))
            .unwrap_or_else(|| {
                let default = console.config().default_actor.trim();
                if valid_name(default) {
                    default.to_owned()
                } else {
                    String::new()
                }
            });
        Ok(Session { name })
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Pages that work before signing in.
fn is_open(path: &str) -> bool {
    path == "/login" || path.starts_with("/assets/")
}

/// Every request but sign-in: the token when one is configured, and a
/// same-origin check on anything that is not a read.
pub async fn guard(State(console): State<Console>, request: Request, next: Next) -> Response {
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    if !reads && let Err(why) = same_origin(request.headers()) {
        return PageError::new(StatusCode::FORBIDDEN, "Refused", why).into_response();
    }
    let path = request.uri().path().to_owned();
    if console.auth().required() && !is_open(&path) {
        let jar = CookieJar::from_headers(request.headers());
        let signed_in =
            Auth::presented(request.headers(), &jar).is_some_and(|t| console.auth().accepts(&t));
        if !signed_in {
            if reads {
                let next = request
                    .uri()
                    .path_and_query()
                    .map_or("/".to_owned(), |p| p.as_str().to_owned());
                return Redirect::to(&format!("/login?next={}", layout::url_component(&next)))
                    .into_response();
            }
            return PageError::new(
                StatusCode::UNAUTHORIZED,
                "Sign in first",
                "this console needs its access token: sign in at /login".to_owned(),
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// A browser says where a form came from; another site is refused.
/// Clients that are not browsers send neither header and cannot be
/// tricked into acting.
fn same_origin(headers: &HeaderMap) -> Result<(), String> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if get("sec-fetch-site") == Some("cross-site") {
        return Err("this action came from another site; act from the console's own pages".into());
    }
    if let Some(origin) = get("origin") {
        let host = get("host").unwrap_or_default();
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        if origin == "null" || origin_host != host {
            return Err(format!(
                "this action came from `{origin}`, not from the console at `{host}`; act from the console's own pages"
            ));
        }
    }
    Ok(())
}

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
}

#[derive(Debug, Deserialize)]
struct NextQuery {
    next: Option<String>,
}

/// Only the console's own paths: never a redirect off-site.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(next) if next.starts_with('/') && !next.starts_with("//") => next.to_owned(),
        _ => "/".to_owned(),
    }
}

async fn login_form(
    State(console): State<Console>,
    session: Session,
    Query(query): Query<NextQuery>,
) -> Response {
    login_page(
        &console,
        &session,
        query.next.as_deref(),
        None,
        StatusCode::OK,
    )
}

fn login_page(
    console: &Console,
    session: &Session,
    next: Option<&str>,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let body = html! {
        h1 { "Sign in" }
        @if let Some(error) = error { p.flash.bad { (error) } }
        form.card method="post" action="/login" {
            input type="hidden" name="next" value=(safe_next(next));
            label { "Your name (audited as " code { "operator:<name>@console" } ")"
                input #name name="name" required pattern="[A-Za-z0-9._-]{1,64}" value=(session.name);
            }
            @if console.auth().required() {
                label { "Access token"
                    input #token name="token" type="password" required autocomplete="current-password";
                }
            }
            button #sign-in type="submit" { "Sign in" }
        }
    };
    (status, layout::page(console, session, "Sign in", body)).into_response()
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    name: String,
    token: Option<String>,
    next: Option<String>,
}

async fn login(
    State(console): State<Console>,
    session: Session,
    jar: CookieJar,
    Form(form): Form<LoginForm>,
) -> Response {
    let name = form.name.trim();
    if !valid_name(name) {
        return login_page(
            &console,
            &session,
            form.next.as_deref(),
            Some("a name is 1-64 characters of A-Z, a-z, 0-9, `.`, `_` and `-`"),
            StatusCode::BAD_REQUEST,
        );
    }
    let mut jar = jar.add(cookie(ACTOR_COOKIE, name.to_owned()));
    if console.auth().required() {
        let token = form.token.unwrap_or_default();
        if !console.auth().accepts(&token) {
            return login_page(
                &console,
                &session,
                form.next.as_deref(),
                Some("that is not the console's access token"),
                StatusCode::UNAUTHORIZED,
            );
        }
        jar = jar.add(cookie(TOKEN_COOKIE, token));
    }
    (jar, Redirect::to(&safe_next(form.next.as_deref()))).into_response()
}

async fn logout(jar: CookieJar) -> Response {
    let jar = jar
        .remove(Cookie::build(TOKEN_COOKIE).path("/"))
        .remove(Cookie::build(ACTOR_COOKIE).path("/"));
    (jar, Redirect::to("/login")).into_response()
}

fn cookie(name: &'static str, value: String) -> Cookie<'static> {
    Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_token_is_checked_whole() {
        let auth = Auth::new(Some("s3cret".into()));
        assert!(auth.required());
        assert!(auth.accepts("s3cret"));
        assert!(!auth.accepts("s3cre"));
        assert!(!auth.accepts(""));
        assert!(Auth::new(None).accepts("anything"));
    }

    #[test]
    fn actions_from_another_site_are_refused() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("127.0.0.1:8080"));
        assert!(same_origin(&headers).is_ok(), "no Origin: not a browser");
        headers.insert("origin", HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(same_origin(&headers).is_ok());
        headers.insert("origin", HeaderValue::from_static("https://evil.example"));
        assert!(same_origin(&headers).is_err());
        headers.insert("origin", HeaderValue::from_static("null"));
        assert!(same_origin(&headers).is_err());
        let mut cross = HeaderMap::new();
        cross.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(same_origin(&cross).is_err());
    }

    #[test]
    fn sign_in_only_sends_back_to_the_console() {
        assert_eq!(safe_next(Some("/orders/o-1")), "/orders/o-1");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn names_are_what_orderctl_accepts() {
        assert!(valid_name("alice"));
        assert!(valid_name("a.b-c_d"));
        assert!(!valid_name(""));
        assert!(!valid_name("alice smith"));
        assert!(!valid_name("<script>"));
        assert!(!valid_name(&"x".repeat(65)));
    }
}
