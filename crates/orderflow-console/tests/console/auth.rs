//! Who may use the console, and who is audited for an action.

use crate::common::{Fleet, Options};

#[tokio::test]
async fn with_a_token_every_page_needs_it_and_sign_in_sets_it() {
    let fleet = Fleet::with(Options {
        token: Some("s3cret".into()),
        default_actor: None,
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
