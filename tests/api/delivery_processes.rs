//! Webhook forwarding across real `wagate` processes: a SIGKILL while deliveries are leased and in
//! flight loses none of them, and two instances on one PostgreSQL share the queue without
//! delivering an event twice.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use wagate::config::Backend;

use crate::common::fresh_database_url;
use crate::common::meta::{self, sha256_hex};
use crate::common::process::{self, Instance};
use crate::common::receiver::{Hook, Reply};

const PNID: &str = "100000000000777";
const WABA: &str = "200000000000777";
const WEBHOOK_SECRET: &str = "process-test-webhook-secret";

/// What the receiver saw of one POST.
#[derive(Debug, Clone)]
struct Seen {
    wamid: String,
    idempotency_key: String,
    body_sha256: String,
    /// Answered 200 at once (not held back by a hanging receiver).
    answered: bool,
}

/// A receiver that hangs (accepts and never answers within the test) or answers 200.
async fn receiver(hang: bool) -> Hook {
    let hook = Hook::start().await;
    hang_up(&hook, hang);
    hook
}

fn hang_up(hook: &Hook, hang: bool) {
    hook.always(if hang {
        Reply::ok().after(Duration::from_secs(60))
    } else {
        Reply::ok()
    });
}

fn seen(hook: &Hook) -> Vec<Seen> {
    hook.hits()
        .iter()
        .map(|hit| Seen {
            wamid: hit.json()["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
            idempotency_key: hit.header("x-idempotency-key").to_owned(),
            body_sha256: sha256_hex(&hit.body),
            answered: hit.delay.is_zero(),
        })
        .collect()
}

/// Requests held back by a hanging receiver.
fn hanging(hook: &Hook) -> usize {
    hook.hits()
        .iter()
        .filter(|hit| !hit.delay.is_zero())
        .count()
}

/// Distinct wamids answered 200.
fn delivered(hook: &Hook) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for s in seen(hook).into_iter().filter(|s| s.answered) {
        *counts.entry(s.wamid).or_insert(0) += 1;
    }
    counts
}

/// Starts the binary on `db` with this suite's delivery settings and waits until it listens.
fn spawn(dir: &std::path::Path, db: &str) -> Instance {
    process::spawn(
        dir,
        db,
        &[
            ("WAGATE__DELIVERY__REQUEST_TIMEOUT", "2s".into()),
            (
                "WAGATE__DELIVERY__LEASE",
                format!("{}ms", LEASE.as_millis()),
            ),
            ("WAGATE__DELIVERY__BACKOFF_INITIAL", "100ms".into()),
            (
                "WAGATE__DELIVERY__BACKOFF_MAX",
                format!("{}ms", BACKOFF_MAX.as_millis()),
            ),
            (
                "WAGATE__DELIVERY__POLL_INTERVAL",
                format!("{}ms", POLL.as_millis()),
            ),
        ],
    )
}

fn envelope(wamid: &str) -> Vec<u8> {
    meta::envelope(WABA, "messages", json!({
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550000777", "phone_number_id": PNID},
        "contacts": [{"profile": {"name": "Crash"}, "wa_id": "15557770000"}],
        "messages": [{"from": "15557770000", "id": wamid, "timestamp": "1750000000", "type": "text", "text": {"body": "hi"}}]
    }))
    .to_string()
    .into_bytes()
}

async fn post_webhook(http: &reqwest::Client, base: &str, wamid: &str) {
    let response = meta::post_webhook(http, base, &envelope(wamid)).await;
    assert_eq!(response.status(), 200, "webhook {wamid} acknowledged");
}

async fn connect(http: &reqwest::Client, instance: &Instance, destination: &str) {
    let key = instance.api_key();
    let response = http
        .post(format!("{}/platform/v1/whatsapp/phone_numbers", instance.base))
        .header("x-api-key", key)
        .json(&json!({"whatsapp_phone_number": {
            "phone_number_id": PNID, "business_account_id": WABA, "access_token": "EAAG-process-test",
            "webhook_destination_url": destination, "webhook_secret": WEBHOOK_SECRET,
        }}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
}

/// The instances' delivery lease, longest backoff and poll interval.
const LEASE: Duration = Duration::from_secs(3);
const BACKOFF_MAX: Duration = Duration::from_millis(500);
const POLL: Duration = Duration::from_millis(200);

/// Waits until no duplicate can still be on its way: past the lease (an unfinished claim comes
/// due again after it), a poll and the longest backoff, with a margin for a loaded machine.
async fn past_any_duplicate() {
    tokio::time::sleep(LEASE + POLL + BACKOFF_MAX + Duration::from_secs(1)).await;
}

async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn sigkill_with_leased_deliveries(backend: Backend) {
    const EVENTS: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database_url(backend, dir.path()).await;
    let http = reqwest::Client::new();
    let receiver = receiver(true).await;
    let url = receiver.url.clone();

    let first = spawn(dir.path(), &db);
    connect(&http, &first, &url).await;
    for i in 0..EVENTS {
        post_webhook(&http, &first.base, &format!("wamid.crash.{i}")).await;
    }
    // Attempts hang in flight (up to per_destination), holding leases; the rest are queued.
    wait_until("attempts in flight", Duration::from_secs(10), || {
        hanging(&receiver) >= 8
    })
    .await;
    let in_flight: Vec<Seen> = seen(&receiver);
    drop(first); // SIGKILL

    hang_up(&receiver, false);
    let _second = spawn(dir.path(), &db);
    wait_until("every event delivered", Duration::from_secs(30), || {
        delivered(&receiver).len() == EVENTS
    })
    .await;

    past_any_duplicate().await;
    let seen = seen(&receiver);
    let mut keys: HashMap<&str, &str> = HashMap::new();
    for s in &seen {
        assert_eq!(
            s.idempotency_key, s.body_sha256,
            "key is the body's SHA-256"
        );
        let key = keys.entry(&s.wamid).or_insert(&s.idempotency_key);
        assert_eq!(
            *key, s.idempotency_key,
            "{} kept its idempotency key",
            s.wamid
        );
    }
    for s in &in_flight {
        assert!(
            delivered(&receiver).contains_key(&s.wamid),
            "{} was in flight at the kill and was delivered after the restart",
            s.wamid
        );
    }
    let duplicates: usize = delivered(&receiver).values().map(|n| n - 1).sum();
    assert_eq!(duplicates, 0, "no event answered 200 twice");
}

crate::both_backends!(backend: sigkill_with_leased_deliveries);

/// SIGTERM with attempts hanging past `server.shutdown_grace`: the instance exits within the
/// grace and hands its claims back, so the next instance delivers them at once instead of after
/// the lease (60 s here).
async fn sigterm_hands_claimed_deliveries_back(backend: Backend) {
    const EVENTS: usize = 12;
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database_url(backend, dir.path()).await;
    let http = reqwest::Client::new();
    let receiver = receiver(true).await;
    let stopping = [
        ("WAGATE__DELIVERY__REQUEST_TIMEOUT", "50s".to_owned()),
        ("WAGATE__DELIVERY__LEASE", "60s".to_owned()),
        ("WAGATE__DELIVERY__POLL_INTERVAL", "200ms".to_owned()),
        ("WAGATE__SERVER__SHUTDOWN_GRACE", "1s".to_owned()),
    ];
    let mut first = process::spawn(dir.path(), &db, &stopping);
    connect(&http, &first, &receiver.url).await;
    for i in 0..EVENTS {
        post_webhook(&http, &first.base, &format!("wamid.term.{i}")).await;
    }
    // Every attempt hangs at the receiver, its delivery claimed for 60 s.
    wait_until("attempts in flight", Duration::from_secs(10), || {
        hanging(&receiver) >= 8
    })
    .await;
    let stopped_at = Instant::now();
    first.terminate();
    assert!(
        first.exited_within(Duration::from_secs(10)),
        "exited after SIGTERM"
    );
    let took = stopped_at.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "stopped within the grace: {took:?}"
    );

    hang_up(&receiver, false);
    let _second = process::spawn(dir.path(), &db, &stopping);
    // Well inside the 60 s lease: only a hand-back makes them due this early.
    wait_until("every event delivered", Duration::from_secs(20), || {
        delivered(&receiver).len() == EVENTS
    })
    .await;
}

crate::both_backends!(backend: sigterm_hands_claimed_deliveries_back);

fn delivered_metric(text: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with("wagate_deliveries_total") && l.contains("outcome=\"succeeded\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Two instances on one PostgreSQL: every event delivered exactly once, the work shared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_queue_on_postgres() {
    if !crate::common::postgres::available().await {
        return;
    }
    const EVENTS: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database_url(Backend::Postgres, dir.path()).await;
    let http = reqwest::Client::new();
    let receiver = receiver(false).await;
    let url = receiver.url.clone();
    let a = spawn(dir.path(), &db);
    let b = spawn(dir.path(), &db);
    connect(&http, &a, &url).await;
    // B learns of the number through its cache TTL; post to it only once it routes the number.
    for i in 0..EVENTS {
        let target = if i % 2 == 0 { &a } else { &b };
        post_webhook(&http, &target.base, &format!("wamid.shared.{i}")).await;
    }
    wait_until("every event delivered", Duration::from_secs(30), || {
        delivered(&receiver).len() == EVENTS
    })
    .await;
    past_any_duplicate().await;
    let delivered = delivered(&receiver);
    assert!(
        delivered.values().all(|&n| n == 1),
        "an event was delivered twice: {:?}",
        delivered.iter().filter(|(_, &n)| n > 1).collect::<Vec<_>>()
    );
    let mut per_instance = Vec::new();
    for instance in [&a, &b] {
        let text = http
            .get(format!("{}/metrics", instance.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        per_instance.push(delivered_metric(&text));
    }
    assert_eq!(
        per_instance.iter().sum::<f64>() as usize,
        EVENTS,
        "{per_instance:?}"
    );
    assert!(
        per_instance.iter().all(|&n| n > 0.0),
        "both instances delivered: {per_instance:?}"
    );
}
