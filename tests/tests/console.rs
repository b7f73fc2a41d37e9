//! Issue 8's "done when", in a real browser: with the console alone an
//! operator finds a blocked shipment, an escalated payment and a malformed
//! message, resolves each with an audited action, while the real workers
//! run. Headless Chromium (Debian's) is driven over WebDriver; a
//! screenshot of each page is saved under `target/console-screenshots/`.

use orderflow_testkit::binaries::{self, CTL};
use orderflow_testkit::process::Proc;
use orderflow_testkit::{Browser, Fleet, FleetOptions, Order, OrderState, PaymentState};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

/// `orderctl console` for the fleet, on a loopback port of its own.
struct Console {
    proc: Proc,
    url: String,
}

impl Console {
    async fn start(fleet: &Fleet) -> Console {
        let env: Vec<(String, String)> = [
            ("ORDERFLOW_NAMESPACE", fleet.namespace().to_owned()),
            (
                "ORDERFLOW_POLICY",
                fleet.policy_path().display().to_string(),
            ),
            ("ORDERFLOW_AMQP_URL", orderflow_testkit::amqp_url()),
            ("ORDERFLOW_REDIS_URL", orderflow_testkit::redis_url()),
            ("ORDERFLOW_INVENTORY_URL", fleet.sim_url().to_owned()),
            ("ORDERFLOW_PAYMENT_URL", fleet.sim_url().to_owned()),
            ("ORDERFLOW_SHIPPING_URL", fleet.sim_url().to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let args: Vec<String> = ["console", "--listen", "127.0.0.1:0", "--refresh", "2"]
            .map(str::to_owned)
            .to_vec();
        let args = [
            args,
            vec![
                "--export-dir".into(),
                fleet.dir().join("exports").display().to_string(),
            ],
        ]
        .concat();
        let proc = Proc::spawn(
            "orderctl-console",
            &binaries::path(CTL),
            &args,
            &env,
            &fleet.dir().join("console.log"),
        );
        let started = Instant::now();
        let address = loop {
            if let Some(address) = proc.listen_address() {
                break address;
            }
            assert!(
                started.elapsed() < WAIT,
                "the console did not start:\n{}",
                proc.tail(40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Console {
            proc,
            url: format!("http://{address}"),
        }
    }
}

/// The audit entries of `order_id` made by `actor`, as `(reason, to)`.
async fn audited_by(fleet: &Fleet, order_id: &str, actor: &str) -> Vec<(String, OrderState)> {
    let order_id = orderflow_core::message::OrderId::parse(order_id).unwrap();
    fleet
        .store()
        .order_audit(&order_id)
        .await
        .expect("the audit reads")
        .into_iter()
        .filter(|entry| entry.actor == actor)
        .map(|entry| (entry.reason.unwrap_or_default(), entry.to))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_resolves_a_blocked_shipment_an_escalated_payment_and_a_malformed_message_in_the_browser()
 {
    // As in operators.rs: payment status answers are lost, so a slow
    // payment is escalated after the short ambiguity window; ZZ cannot be
    // shipped to; one order arrives malformed.
    let profile = "[payment]\nprocessing_ms = 500\n\
                   [shipping]\nunsupported_countries = [\"ZZ\"]\nfulfilment_step_ms = 100\n\
                   [faults.\"payment.status\"]\nerror_500 = 1.0\n";
    let fleet = Fleet::start(
        FleetOptions::new()
            .policy_fixture("payment-short-ambiguity")
            .profile(profile),
    )
    .await;
    let slow = fleet
        .place(&Order::new("web-slow").token("tok_processing"))
        .await;
    let far = fleet.place(&Order::new("web-far").country("ZZ")).await;
    let bad = Order::new("web-bad").country("").to_json();
    fleet
        .publish_raw(
            "order.placed",
            bad.to_string().into_bytes(),
            Some("placed.web-bad".into()),
        )
        .await;
    fleet
        .wait_state(&slow, &[OrderState::Escalated], WAIT)
        .await;
    fleet.wait_state(&far, &[OrderState::Blocked], WAIT).await;

    let console = Console::start(&fleet).await;
    let browser = Browser::start().await;
    let actor = "operator:carol@console";

    // Sign in with a name: every action is audited with it.
    browser.open(&format!("{}/login", console.url)).await;
    browser.fill("#name", "carol").await;
    browser.click("#sign-in").await;
    browser.wait_for_text("#actor", "carol@console").await;

    // The fleet page shows what is stuck.
    browser.wait_for("#stages").await;
    let stages = browser
        .wait_for_text("#stages", "unsupported_destination")
        .await;
    assert!(stages.contains("payment_unresolved"), "{stages}");
    browser.wait_for_text("#stages", "malformed").await;
    browser.screenshot("fleet").await;

    // The exceptions page groups them with the recommended action.
    browser.open(&format!("{}/exceptions", console.url)).await;
    for reason in ["payment_unresolved", "unsupported_destination", "malformed"] {
        browser
            .wait_for(&format!("tr.group[data-reason='{reason}']"))
            .await;
    }
    browser.screenshot("exceptions").await;

    // The blocked shipment: found from the orders page, refunded.
    browser.open(&format!("{}/orders", console.url)).await;
    browser.click(&format!("a[href='/orders/{far}']")).await;
    browser.wait_for("#timeline tr.entry").await;
    browser.screenshot("order-blocked").await;
    browser
        .click("#unblock-form input[name='decision'][value='refund']")
        .await;
    browser
        .fill("#unblock-form input[name='reason']", "we do not ship to ZZ")
        .await;
    browser.click("#unblock").await;
    browser.wait_for_text("#result", "cancelled").await;
    browser.screenshot("order-unblocked").await;
    assert!(
        audited_by(&fleet, &far, actor)
            .await
            .contains(&("we do not ship to ZZ".to_owned(), OrderState::Cancelled)),
        "the unblock is audited with the operator and the reason"
    );

    // The escalated payment: the provider says it succeeded.
    let ledger = fleet.ledger().await;
    let payment = ledger.payments.iter().find(|p| p.order_id == slow).unwrap();
    assert_eq!(payment.state, PaymentState::Succeeded);
    browser
        .open(&format!("{}/orders/{slow}", console.url))
        .await;
    browser
        .click("#resolve-form input[name='outcome'][value='succeeded']")
        .await;
    browser
        .fill("#resolve-form input[name='payment_id']", &payment.id)
        .await;
    browser
        .fill(
            "#resolve-form input[name='reason']",
            "provider dashboard shows it succeeded",
        )
        .await;
    browser.click("#resolve").await;
    browser.wait_for_text("#result", "paid").await;
    assert!(
        audited_by(&fleet, &slow, actor)
            .await
            .iter()
            .any(|(reason, _)| reason == "provider dashboard shows it succeeded"),
        "the resolution is audited with the operator and the reason"
    );

    // Their exception messages are done with: discarded, with a reason.
    for (stage, reason) in [
        ("payment", "payment_unresolved"),
        ("shipping", "unsupported_destination"),
    ] {
        browser
            .open(&format!(
                "{}/exceptions/{stage}?reason={reason}",
                console.url
            ))
            .await;
        browser.wait_for("tr.message").await;
        browser.click("input[data-select-all]").await;
        browser
            .fill(
                "#discard-form input[name='reason']",
                "resolved in the console",
            )
            .await;
        browser.click("#discard-form button[type='submit']").await;
        browser.wait_for_text("#result", "discarded").await;
    }

    // The malformed message: fixed in the browser and sent again.
    browser
        .open(&format!(
            "{}/exceptions/inventory?reason=malformed",
            console.url
        ))
        .await;
    browser.click("tr.message a.edit").await;
    let body = browser.text("#edit-body").await;
    assert!(
        body.contains("\"country\": \"\""),
        "the body to fix: {body}"
    );
    browser
        .fill(
            "#edit-body",
            &body.replace("\"country\": \"\"", "\"country\": \"DE\""),
        )
        .await;
    browser.screenshot("exception-edit").await;
    browser.click("#edit-send").await;
    browser.wait_for_text("#result", "sent").await;

    fleet
        .wait_state(&slow, &[OrderState::Delivered], WAIT)
        .await;
    fleet.wait_state(&far, &[OrderState::Cancelled], WAIT).await;
    fleet
        .wait_state("web-bad", &[OrderState::Delivered], WAIT)
        .await;

    // Nothing is left for a person, and the fleet page says so.
    browser.open(&format!("{}/exceptions", console.url)).await;
    browser.wait_for_text("main", "No exception messages").await;
    browser.open(&format!("{}/", console.url)).await;
    browser.wait_for("#stages").await;
    browser.screenshot("fleet-after").await;
    browser.close().await;
    drop(console.proc);
    fleet.assert_invariants().await;
}
