//! Who may use the console and who is acting.
//!
//! Without a token the console listens on loopback only, and anyone there
//! may use it (as with `orderctl` on the same machine). With a token,
//! every request carries it — as `Authorization: Bearer …` or the cookie
//! the sign-in page sets. Either way the operator names themself at
//! sign-in (else the console's default actor), and every action is audited
//! as `operator:<name>@console`.
//!
//! Sign-in gives the browser a session: a random id in a cookie, kept by
//! this process until sign-out or [`SESSION_HOURS`]. The cookie never holds
//! the token, so a cookie read off a browser, a log or a proxy does not
//! give the token away, and signing out ends the session for good.
//!
//! Every request but `/healthz` must name the console as its host: the
//! listen address, `localhost` or a name given with `--allowed-host`.
//! Without it, a page of another site whose name is re-pointed at
//! 127.0.0.1 (DNS rebinding) would be same-origin with the console in the
//! browser, and could read it and act on it, token or not.
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
use rand::TryRng;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

const SESSION_COOKIE: &str = "orderflow_console_session";
const ACTOR_COOKIE: &str = "orderflow_console_actor";
/// An operator's name: what `orderctl --actor` accepts, kept short.
const MAX_NAME: usize = 64;
/// How long a sign-in lasts: a working day, then the token again.
pub const SESSION_HOURS: u64 = 12;

/// The access token, kept as its digest, and the sessions signed in with
/// it, kept as the digests of their ids with when each ends.
pub struct Auth {
    digest: Option<[u8; 32]>,
    sessions: Mutex<HashMap<[u8; 32], Instant>>,
}

impl Auth {
    pub fn new(token: Option<String>) -> Auth {
        Auth {
            digest: token.map(|t| digest(&t)),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn sessions(&self) -> MutexGuard<'_, HashMap<[u8; 32], Instant>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new session: 256 bits from the operating system's generator, as
    /// hex for the cookie.
    fn open_session(&self) -> Result<String, PageError> {
        let mut id = [0u8; 32];
        rand::rngs::SysRng.try_fill_bytes(&mut id).map_err(|err| {
            PageError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Could not be done now",
                format!("cannot draw a session id from the operating system: {err}"),
            )
        })?;
        let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut sessions = self.sessions();
        sessions.retain(|_, ends| *ends > now);
        sessions.insert(digest(&id), now + Duration::from_secs(SESSION_HOURS * 3600));
        Ok(id)
    }

    /// Looked up by digest: the lookup's timing says nothing about an id.
    fn in_session(&self, id: &str) -> bool {
        self.sessions()
            .get(&digest(id))
            .is_some_and(|ends| *ends > Instant::now())
    }

    fn close_session(&self, id: &str) {
        self.sessions().remove(&digest(id));
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

    /// The token as `Authorization: Bearer …` (clients that are not
    /// browsers), or a live session's cookie.
    fn signed_in(&self, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match bearer {
            Some(token) => self.accepts(token),
            None => CookieJar::from_headers(headers)
                .get(SESSION_COOKIE)
                .is_some_and(|c| self.in_session(c.value())),
        }
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

/// Every request: the console's own host name; the token when one is
/// configured (but for sign-in); a same-origin check on anything that is
/// not a read.
pub async fn guard(State(console): State<Console>, request: Request, next: Next) -> Response {
    // An absolute request target names the host itself (RFC 9112 3.2.2);
    // HTTP/2 has no `Host` header, only this.
    let host = match request.uri().authority() {
        Some(authority) => Some(authority.as_str()),
        None => request
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok()),
    };
    if let Err(why) = console.config().hosts.check(host) {
        return PageError::new(StatusCode::MISDIRECTED_REQUEST, "Not this console", why)
            .into_response();
    }
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    if !reads && let Err(why) = same_origin(request.headers()) {
        return PageError::new(StatusCode::FORBIDDEN, "Refused", why).into_response();
    }
    let path = request.uri().path().to_owned();
    if console.auth().required() && !is_open(&path) && !console.auth().signed_in(request.headers())
    {
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

/// The host names this console answers to. A DNS-rebinding page reaches
/// it under a name of the attacker's; an IP address or `localhost` cannot
/// be re-pointed, and the names an operator gives are theirs. The port is
/// not checked: a port forward (`ssh -L`, `kubectl port-forward`) changes
/// it, and a rebinding page cannot choose a name by it.
#[derive(Debug, Clone)]
pub struct Hosts {
    listen: IpAddr,
    names: Vec<String>,
}

/// A name given to `--allowed-host` that is not a host name.
#[derive(Debug, thiserror::Error)]
#[error(
    "--allowed-host `{0}` is not a host name: give a name as it appears in the browser's address bar, without scheme, port or path (letters, digits, `.` and `-`)"
)]
pub struct BadHostName(pub String);

impl Hosts {
    /// `listen` is the address the console listens on: that address is
    /// its name, or on `0.0.0.0`/`::` any address of the machine.
    pub fn new(listen: IpAddr, names: &[String]) -> Result<Hosts, BadHostName> {
        let names = names
            .iter()
            .map(|name| {
                let name = name.trim();
                let valid = !name.is_empty()
                    && name.len() <= 253
                    && !name.starts_with(['.', '-'])
                    && !name.ends_with(['.', '-'])
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'));
                if valid {
                    Ok(name.to_ascii_lowercase())
                } else {
                    Err(BadHostName(name.to_owned()))
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Hosts { listen, names })
    }

    /// The request's host (`name`, `name:port`, `[v6]`, `[v6]:port`) is
    /// this console's, or why not.
    fn check(&self, host: Option<&str>) -> Result<(), String> {
        let Some(host) = host else {
            return Err(
                "the request names no host (`Host`); open the console by its address".into(),
            );
        };
        if host_name(host).is_some_and(|name| self.admits(name)) {
            return Ok(());
        }
        let address = match self.listen {
            ip if ip.is_unspecified() => "an IP address of this machine".to_owned(),
            IpAddr::V6(ip) => format!("http://[{ip}]/"),
            IpAddr::V4(ip) => format!("http://{ip}/"),
        };
        Err(format!(
            "this console does not answer to the name `{host}`: open it as {address} or http://localhost/ (with its port), or start it with --allowed-host NAME for a name of yours (a proxy's or an Ingress's)"
        ))
    }

    fn admits(&self, name: &str) -> bool {
        if name.eq_ignore_ascii_case("localhost") {
            return true;
        }
        match name.parse::<IpAddr>() {
            Ok(ip) => self.listen.is_unspecified() || ip == self.listen,
            Err(_) => self.names.iter().any(|n| n.eq_ignore_ascii_case(name)),
        }
    }
}

/// The name of a `Host` value, without its port (an IPv6 address without
/// its brackets); `None` when the value is not of that form.
fn host_name(host: &str) -> Option<&str> {
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => {
            let (ip, after) = rest.split_once(']')?;
            ip.parse::<std::net::Ipv6Addr>().ok()?;
            let port = match after {
                "" => None,
                after => Some(after.strip_prefix(':')?),
            };
            (ip, port)
        }
        None => match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        },
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    (!name.is_empty() && port_ok).then_some(name)
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
        Some(next) if local_path(next) => next.to_owned(),
        _ => "/".to_owned(),
    }
}

/// `/` and then not a second `/` or `\` (a browser reads `//host` and
/// `/\host` alike, as another site), with no `\` anywhere and visible
/// ASCII only: a browser drops tabs and newlines from a URL, which would
/// join the slashes again, and a `Location` holds nothing else. An
/// absolute URL or a scheme never starts with `/`.
fn local_path(next: &str) -> bool {
    let bytes = next.as_bytes();
    bytes.first() == Some(&b'/')
        && !matches!(bytes.get(1), Some(b'/'))
        && bytes.iter().all(|&b| b.is_ascii_graphic() && b != b'\\')
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
        if let Some(earlier) = jar.get(SESSION_COOKIE) {
            console.auth().close_session(earlier.value());
        }
        let id = match console.auth().open_session() {
            Ok(id) => id,
            Err(err) => return err.into_response(),
        };
        jar = jar.add(cookie(SESSION_COOKIE, id));
    }
    (jar, Redirect::to(&safe_next(form.next.as_deref()))).into_response()
}

/// Ends the session here, not only in the browser: its cookie, kept
/// anywhere, signs in no more.
async fn logout(State(console): State<Console>, jar: CookieJar) -> Response {
    if let Some(session) = jar.get(SESSION_COOKIE) {
        console.auth().close_session(session.value());
    }
    let jar = jar
        .remove(Cookie::build(SESSION_COOKIE).path("/"))
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
        assert_eq!(
            safe_next(Some("/exceptions/payment?reason=a%20b")),
            "/exceptions/payment?reason=a%20b"
        );
        for bad in [
            "//evil.example/",
            "/\\evil.example",
            "/\\/evil.example",
            "\\\\evil.example",
            "/x\\y",
            "/\t/evil.example",
            "/ /evil.example",
            "/\u{2215}/evil.example",
            "https://evil.example/",
            "javascript:alert(1)",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn only_the_consoles_own_host_names_are_served() {
        let local = Hosts::new("127.0.0.1".parse().unwrap(), &[]).unwrap();
        for ok in [
            "127.0.0.1:8080",
            "127.0.0.1",
            "localhost:8080",
            "LocalHost",
            "localhost:1",
        ] {
            assert!(local.check(Some(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "localhost.:8080",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "10.0.0.1:8080",
            "[::1]:8080",
            "127.0.0.1:80x",
            "127.0.0.1:",
            ":8080",
            "",
        ] {
            assert!(local.check(Some(bad)).is_err(), "{bad}");
        }
        assert!(local.check(None).is_err(), "no Host at all");

        let open = Hosts::new(
            "0.0.0.0".parse().unwrap(),
            &["Console.Example.com".to_owned()],
        )
        .unwrap();
        for ok in [
            "10.1.2.3:8080",
            "[fd00::1]:8080",
            "[::1]",
            "console.example.com",
            "CONSOLE.example.com:443",
        ] {
            assert!(open.check(Some(ok)).is_ok(), "{ok}");
        }
        for bad in ["evil.example", "example.com", "[evil.example]:80", "[::1"] {
            assert!(open.check(Some(bad)).is_err(), "{bad}");
        }
        let v6 = Hosts::new("::1".parse().unwrap(), &[]).unwrap();
        assert!(v6.check(Some("[::1]:8080")).is_ok());
        assert!(v6.check(Some("127.0.0.1:8080")).is_err());
    }

    #[test]
    fn allowed_host_names_are_names() {
        let listen: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(Hosts::new(listen, &["console.internal".into(), "a-b.c".into()]).is_ok());
        for bad in [
            "",
            "https://console.internal",
            "console.internal:8443",
            "console.internal/",
            ".internal",
            "a b",
        ] {
            assert!(Hosts::new(listen, &[bad.to_owned()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_session_is_a_random_id_that_signing_out_ends() {
        let auth = Auth::new(Some("s3cret".into()));
        let first = auth.open_session().unwrap();
        let second = auth.open_session().unwrap();
        assert_ne!(first, second);
        assert_eq!(first.len(), 64);
        assert!(!first.contains("s3cret"));
        assert!(auth.in_session(&first) && auth.in_session(&second));
        assert!(!auth.in_session("s3cret"), "the token is not a session");
        auth.close_session(&first);
        assert!(!auth.in_session(&first));
        assert!(auth.in_session(&second));
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
