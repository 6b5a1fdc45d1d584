//! A slow receiver holds at most `per_destination` attempts and never delays a healthy one.

use std::time::{Duration, Instant};

use wagate::config::Backend;

use crate::support::*;

const EVENTS: usize = 8;

/// How long wagate waits for the slow receiver: long enough that, on a loaded machine, the
/// healthy deliveries all finish while the slow receiver still holds its first attempts.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The slow receiver answers long after wagate stopped waiting: an attempt that did not time out
/// would last this long.
const SLOW: Duration = Duration::from_secs(60);

async fn slow_receiver_is_isolated(backend: Backend) {
    let app = spawn(backend, |c| {
        c.delivery.request_timeout = TIMEOUT;
        c.delivery.per_destination = 2;
        c.delivery.give_up_after = Duration::from_secs(120);
        // Longer than an attempt, so no claim comes due again while its request is held.
        c.delivery.lease = TIMEOUT * 2;
    })
    .await;
    let (slow, healthy) = (Hook::start().await, Hook::start().await);
    slow.always(Reply::ok().after(SLOW));
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

    let started = Instant::now();
    for n in 0..EVENTS {
        app.post_webhook_ok(&a.inbound(&format!("wamid.A{n}"), "slow"))
            .await;
        app.post_webhook_ok(&b.inbound(&format!("wamid.B{n}"), "fast"))
            .await;
    }

    // Every healthy delivery succeeds while the slow receiver still holds wagate's first
    // attempts: none of A's attempts has ended (they end only at the timeout), so nothing of B
    // waited behind them.
    for d in wait_deliveries(&app, &b, EVENTS).await {
        wait_status(&app, d["id"].as_str().unwrap(), "succeeded", ms(20_000)).await;
    }
    let a_ended: i64 = deliveries_of(&app, &a)
        .await
        .iter()
        .map(|d| d["attempt_count"].as_i64().unwrap())
        .sum();
    assert_eq!(
        a_ended,
        0,
        "B finished only after A's attempts timed out ({:?} after the first webhook)",
        started.elapsed()
    );
    assert!(slow.in_flight() >= 1, "the slow receiver is held");
    assert_eq!(healthy.hits().len(), EVENTS);

    // A's attempts time out (and will be tried again), never more than per_destination at once.
    let retried = eventually(TIMEOUT * 6, "a timed-out attempt", || async {
        let all = deliveries_of(&app, &a).await;
        all.iter()
            .find(|d| d["attempt_count"].as_i64().unwrap() >= 1)
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
        // Not before the timeout, and ended by it: the receiver would have answered at SLOW.
        let took = attempt["duration_ms"].as_u64().unwrap();
        assert!(
            (TIMEOUT.as_millis() as u64 - 50..SLOW.as_millis() as u64).contains(&took),
            "{attempt}"
        );
    }
    // A third request to the slow receiver: the two first slots were given back at the timeout.
    slow.wait_for(3, TIMEOUT * 6).await;
    let all_a = deliveries_of(&app, &a).await;
    assert_eq!(all_a.len(), EVENTS);
    assert!(all_a.iter().all(|d| d["status"] != "succeeded"));
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
    past_any_duplicate(&app).await;
    assert_eq!(healthy.hits().len(), EVENTS, "each healthy delivery once");
}

crate::both_backends!(backend: slow_receiver_is_isolated);
