//! Who may use the console, and who is audited for an action.

use crate::common::{Fleet, Options};

#[tokio::test]
async fn with_a_token_every_page_needs_it_and_sign_in_sets_it() {
    let fleet = Fleet::with(Options {
        token: Some("s3cret".into()),
        ..Options::default()
    })
    .await;
    let (status, _) = fleet.get("/").await;
    assert_eq!(status, 303, "a page without the token sends to sign-in");
    let (status, body) = fleet.get("/login?next=/exceptions").await;
    assert_eq!(status, 200);
    assert!(body.contains("Access token"), "{body}");
    let (status, _) = fleet.get("/healthz").await;
    assert_eq!(status, 200, "health needs no token");

    let (status, body) = fleet
        .post(
            "/login",
            &[("name", "bob"), ("token", "wrong"), ("next", "/")],
        )
        .await;
    assert_eq!(status, 401);
    assert!(body.contains("not the console"), "{body}");

    let response = fleet
        .http
        .post(format!("{}/login", fleet.url))
        .form(&[
            ("name", "bob"),
            ("token", "s3cret"),
            ("next", "/exceptions"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(response.headers()["location"], "/exceptions");
    let cookies: Vec<String> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect();
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    let page = fleet
        .http
        .get(format!("{}/", fleet.url))
        .header("cookie", cookies.join("; "))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("bob@console"));

    let bearer = fleet
        .http
        .get(format!("{}/", fleet.url))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status().as_u16(), 200, "a bearer token works too");
}

#[tokio::test]
async fn an_action_from_another_site_is_refused() {
    let fleet = Fleet::new().await;
    let response = fleet
        .http
        .post(format!("{}/logout", fleet.url))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let body = response.text().await.unwrap();
    assert!(body.contains("not from the console"), "{body}");
}

/// `GET path` with the given `Host`, as a browser sends it for the name in
/// its address bar.
async fn get_as(fleet: &Fleet, host: &str, path: &str) -> (u16, String) {
    let response = fleet
        .http
        .get(format!("{}{path}", fleet.url))
        .header("host", host)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path} as {host}: {e}"));
    (response.status().as_u16(), response.text().await.unwrap())
}

fn port(fleet: &Fleet) -> &str {
    fleet.url.rsplit_once(':').expect("a port").1
}

/// DNS rebinding: a page of evil.example, its name re-pointed at
/// 127.0.0.1, reaches a console without a token on loopback; the browser
/// sends `Host: evil.example:PORT` (and an `Origin` that matches it). The
/// console answers only to its own names, on every page, not only actions.
#[tokio::test]
async fn a_host_name_that_is_not_the_consoles_is_refused_on_every_request() {
    let fleet = Fleet::new().await;
    let evil = format!("evil.example:{}", port(&fleet));
    for path in [
        "/",
        "/login",
        "/exceptions",
        "/orders",
        "/assets/console.css",
    ] {
        let (status, body) = get_as(&fleet, &evil, path).await;
        assert_eq!(status, 421, "GET {path} as {evil}: {body}");
        assert!(body.contains("evil.example"), "says which name: {body}");
    }
    let response = fleet
        .http
        .post(format!("{}/exceptions/payment/export", fleet.url))
        .header("host", &evil)
        .header("origin", format!("http://{evil}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 421, "an action as {evil}");

    let (status, _) = get_as(&fleet, &evil, "/healthz").await;
    assert_eq!(status, 200, "health says nothing and answers any name");
    for host in [
        format!("127.0.0.1:{}", port(&fleet)),
        format!("localhost:{}", port(&fleet)),
        format!("LOCALHOST:{}", port(&fleet)),
        // A port forward (ssh -L, kubectl port-forward) changes the port.
        "localhost:9999".to_owned(),
    ] {
        let (status, body) = get_as(&fleet, &host, "/").await;
        assert_eq!(status, 200, "GET / as {host}: {body}");
    }
    for host in [
        "127.0.0.1.evil.example".to_owned(),
        "localhost.evil.example".to_owned(),
        format!("localhost.:{}", port(&fleet)),
        "10.0.0.1".to_owned(),
    ] {
        let (status, body) = get_as(&fleet, &host, "/").await;
        assert_eq!(status, 421, "GET / as {host}: {body}");
    }
}

/// After sign-in the console sends the browser to `next`: only ever a path
/// of its own, whatever the spelling (a browser reads `/\` as `//`, and
/// drops tabs and newlines).
#[tokio::test]
async fn sign_in_sends_back_only_to_a_path_of_the_console() {
    let fleet = Fleet::new().await;
    for next in [
        "/\\evil.example",
        "//evil.example",
        "/\\/evil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "https://evil.example/",
        "http:evil.example",
        "javascript:alert(1)",
        "evil.example",
    ] {
        let response = fleet
            .http
            .post(format!("{}/login", fleet.url))
            .form(&[("name", "bob"), ("next", next)])
            .send()
            .await
            .unwrap_or_else(|e| panic!("sign in with next={next:?}: {e}"));
        assert_eq!(response.status().as_u16(), 303, "{next:?}");
        assert_eq!(response.headers()["location"], "/", "{next:?}");
    }
    for encoded in [
        "%2F%5Cevil.example",
        "%2F%2Fevil.example",
        "%2F%09%2Fevil.example",
    ] {
        let (status, page) = fleet.get(&format!("/login?next={encoded}")).await;
        assert_eq!(status, 200, "{encoded}: {page}");
        assert!(
            page.contains("name=\"next\" value=\"/\""),
            "{encoded}: {page}"
        );
    }
    for next in [
        "/orders/o-1",
        "/exceptions/payment?reason=payment_unresolved",
    ] {
        let response = fleet
            .http
            .post(format!("{}/login", fleet.url))
            .form(&[("name", "bob"), ("next", next)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["location"], next);
    }
}

/// The names and values of the cookies a response sets.
fn set_cookies(response: &reqwest::Response) -> Vec<(String, String)> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| {
            let pair = v.to_str().unwrap().split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

/// The sign-in cookie names a session, never the token: a cookie read off
/// a browser (or a log, or a proxy) does not give the token away, and
/// signing out ends the session for good.
#[tokio::test]
async fn the_session_cookie_is_not_the_token_and_signing_out_ends_it() {
    const TOKEN: &str = "s3cret-Token-7f1c";
    let fleet = Fleet::with(Options {
        token: Some(TOKEN.into()),
        ..Options::default()
    })
    .await;
    let response = fleet
        .http
        .post(format!("{}/login", fleet.url))
        .form(&[("name", "bob"), ("token", TOKEN), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 303);
    let cookies = set_cookies(&response);
    for (name, value) in &cookies {
        assert!(
            !value.contains(TOKEN) && !value.contains("s3cret"),
            "the cookie {name} holds the token: {value}"
        );
    }
    let jar: Vec<String> = cookies.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let jar = jar.join("; ");
    let page = fleet
        .http
        .get(format!("{}/", fleet.url))
        .header("cookie", &jar)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200, "the session signs in");

    let forged = fleet
        .http
        .get(format!("{}/", fleet.url))
        .header("cookie", format!("orderflow_console_token={TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 303, "the token is not a session");

    let out = fleet
        .http
        .post(format!("{}/logout", fleet.url))
        .header("cookie", &jar)
        .header("origin", &fleet.url)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status().as_u16(), 303);
    let again = fleet
        .http
        .get(format!("{}/", fleet.url))
        .header("cookie", &jar)
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.status().as_u16(),
        303,
        "a signed-out session's cookie, kept, does not sign in again"
    );
}

/// Behind a proxy or an Ingress the browser uses its name: the console
/// answers to the names it is given (`--allowed-host`), and only those.
#[tokio::test]
async fn a_name_given_with_allowed_host_is_served() {
    let fleet = Fleet::with(Options {
        default_actor: Some("alice".into()),
        allowed_hosts: vec!["Console.Internal".into()],
        ..Options::default()
    })
    .await;
    for host in ["console.internal", "console.internal:8443"] {
        let (status, body) = get_as(&fleet, host, "/").await;
        assert_eq!(status, 200, "GET / as {host}: {body}");
    }
    let response = fleet
        .http
        .post(format!("{}/logout", fleet.url))
        .header("host", "console.internal")
        .header("origin", "https://console.internal")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 303, "an action by that name");
    let (status, _) = get_as(&fleet, "other.internal", "/").await;
    assert_eq!(status, 421);
}
