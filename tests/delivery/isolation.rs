//! A slow receiver holds at most `per_destination` attempts and never delays a healthy one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use wagate::config::Backend;

use crate::support::*;

const EVENTS: usize = 8;

async fn slow_receiver_is_isolated(backend: Backend) {
    let app = spawn(backend, |c| {
        c.delivery.request_timeout = ms(500);
        c.delivery.per_destination = 2;
        c.delivery.give_up_after = Duration::from_secs(60);
    })
    .await;
    let (slow, healthy) = (Hook::start().await, Hook::start().await);
    slow.always(Reply::ok().after(ms(1500)));
    let a = app
        .connect(
            &app.api_key,
            "100000000000001",
            "200000000000001",
            Some(&slow.url),
        )
        .await;
    let b = app
        .connect(
            &app.api_key,
            "100000000000002",
            "200000000000002",
            Some(&healthy.url),
        )
        .await;

    let mut sent_b = HashMap::new();
    for n in 0..EVENTS {
        app.post_webhook_ok(&a.inbound(&format!("wamid.A{n}"), "slow"))
            .await;
        let wamid = format!("wamid.B{n}");
        app.post_webhook_ok(&b.inbound(&wamid, "fast")).await;
        sent_b.insert(wamid, Instant::now());
    }

    let hits = healthy.wait_for(EVENTS, ms(4000)).await;
    for hit in &hits {
        let wamid = hit.json()["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let waited = hit.at - sent_b[&wamid];
        assert!(
            waited < ms(2000),
            "{wamid} took {waited:?} behind a slow receiver"
        );
    }
    for d in wait_deliveries(&app, &b, EVENTS).await {
        wait_status(&app, d["id"].as_str().unwrap(), "succeeded", ms(3000)).await;
    }

    // A's attempts time out and are retried, never more than per_destination at once.
    let retried = eventually(ms(6000), "a timed-out delivery retried", || async {
        let all = deliveries_of(&app, &a).await;
        all.iter()
            .find(|d| d["attempt_count"].as_i64().unwrap() >= 2)
            .cloned()
    })
    .await;
    let retried = delivery(&app, retried["id"].as_str().unwrap()).await;
    assert_eq!(retried["status"], "failed", "{retried:#}");
    for attempt in retried["attempts"].as_array().unwrap() {
        assert_eq!(
            attempt["error"], "timed out waiting for the answer (delivery.request_timeout)",
            "{attempt}"
        );
        assert_eq!(attempt["status_code"], serde_json::Value::Null);
        let took = attempt["duration_ms"].as_i64().unwrap();
        assert!((450..1400).contains(&took), "{attempt}");
    }
    let all_a = deliveries_of(&app, &a).await;
    assert_eq!(all_a.len(), EVENTS);
    assert!(all_a.iter().all(|d| d["status"] != "succeeded"));
    assert!(slow.hits().len() >= 3, "{} requests", slow.hits().len());
    // At most per_destination attempts at once, as wagate ran them (from the attempt log). The
    // receiver's own count can briefly exceed it: it keeps sleeping on a request wagate has
    // already abandoned at its timeout.
    let mut edges = Vec::new();
    for d in &all_a {
        let full = delivery(&app, d["id"].as_str().unwrap()).await;
        for attempt in full["attempts"].as_array().unwrap() {
            let start =
                chrono::DateTime::parse_from_rfc3339(attempt["started_at"].as_str().unwrap())
                    .unwrap();
            let end =
                start + chrono::Duration::milliseconds(attempt["duration_ms"].as_i64().unwrap());
            edges.push((start, 1i32));
            edges.push((end, -1i32));
        }
    }
    edges.sort();
    let (mut running, mut most) = (0, 0);
    for (_, step) in edges {
        running += step;
        most = most.max(running);
    }
    assert!(
        (1..=2).contains(&most),
        "{most} attempts at once to the slow receiver (per_destination = 2)"
    );
    assert!(slow.max_in_flight() >= 2, "the slow receiver was kept busy");
    assert_eq!(healthy.hits().len(), EVENTS, "each healthy delivery once");
}

crate::both_backends!(backend: slow_receiver_is_isolated);
