//! Meta-aware pacing in the proxy (#22), against the emulator: a number over its rate is
//! answered locally (`130429` with `Retry-After`, never reaching Meta) within `max_wait`; the
//! pair rate per project mode; sends to one user in order; Meta's own `130429` and `131057`
//! adjusting the budget and pausing the number until the upgrade's webhook; and two instances on
//! one database sharing one number's rate.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use wagate::config::Backend;

use crate::cache_sync::Sibling;
use crate::common::eventually;
use crate::ingest::{Env, PNID};

const V: &str = "/meta/whatsapp/v24.0";

fn pacing_path() -> String {
    format!("/platform/v1/whatsapp/phone_numbers/{PNID}/pacing")
}

async fn set_rate(env: &Env, rate: Value) -> Value {
    let (status, body) = env
        .app
        .call(
            Method::PATCH,
            &pacing_path(),
            Some(json!({ "pacing_rate": rate })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

fn text_to(to: &str, body: &str) -> Value {
    json!({"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": body}})
}

/// A send through `base` (an instance), with its status, body and `Retry-After`.
async fn send_via(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    body: Value,
) -> (u16, Value, Option<String>) {
    let response = http
        .post(format!("{base}{V}/{PNID}/messages"))
        .header("x-api-key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, response.json().await.unwrap(), retry_after)
}

async fn send(env: &Env, body: Value) -> (u16, Value, Option<String>) {
    send_via(&env.http, &env.app.base, &env.app.api_key, body).await
}

async fn sent(env: &Env) -> Vec<Value> {
    let sent: Value = env
        .http
        .get(format!("{}/_sandbox/sent", env.sandbox_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    sent["data"].as_array().cloned().unwrap_or_default()
}

async fn over_the_rate_is_answered_locally(backend: Backend) {
    let env = Env::start_with(backend, |config| {
        config.pacing.max_wait = Duration::from_millis(300);
    })
    .await;
    // The tier's rate, then the number's own.
    let (status, body) = env.app.get(&pacing_path()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["rate"], 80);
    assert_eq!(body["data"]["rate_source"], "STANDARD");
    let pacing = set_rate(&env, json!(5)).await;
    assert_eq!(pacing["rate"], 5);
    assert_eq!(pacing["rate_source"], "override");
    assert_eq!(pacing["live_instances"], 1);

    // Twenty at once at 5/s with 300 ms of patience: the burst and a slot or two go, the rest
    // are answered here, within max_wait, and never reach Meta.
    let started = Instant::now();
    let answers = futures::future::join_all(
        (0..20).map(|i| send(&env, text_to(&format!("+1555060{i:04}"), "hi"))),
    )
    .await;
    let took = started.elapsed();
    let accepted = answers.iter().filter(|(s, _, _)| *s == 200).count();
    let refused: Vec<_> = answers.iter().filter(|(s, _, _)| *s != 200).collect();
    assert!(
        (1..=4).contains(&accepted),
        "{accepted} accepted: {answers:?}"
    );
    for (status, body, retry_after) in &refused {
        assert_eq!(*status, 400, "{body}");
        assert_eq!(body["error"]["code"], 130429, "{body}");
        assert_eq!(body["error"]["message"], "(#130429) Rate limit hit");
        let seconds: u64 = retry_after
            .as_deref()
            .expect("Retry-After")
            .parse()
            .unwrap();
        assert!((1..=5).contains(&seconds), "Retry-After {seconds}");
    }
    assert!(took < Duration::from_secs(3), "answers took {took:?}");
    assert_eq!(
        sent(&env).await.len(),
        accepted,
        "refused sends reached Meta"
    );
    let metrics = env.app.metrics().await;
    assert!(
        metrics.contains("wagate_pacing_local_answers_total{code=\"130429\"}"),
        "{metrics}"
    );

    let (status, body) = env
        .app
        .call(
            Method::PATCH,
            &pacing_path(),
            Some(json!({ "pacing_rate": 0 })),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("pacing_rate"), "{body}");
    let (status, _) = env
        .app
        .call(Method::PATCH, &pacing_path(), Some(json!({ "other": 1 })))
        .await;
    assert_eq!(status, 422);
    // Back to the tier's rate.
    let pacing = set_rate(&env, Value::Null).await;
    assert_eq!(pacing["rate"], 80);
    // Another project cannot see or set this number's pacing.
    let (_, other_key) = env.app.other_project().await;
    let (status, _) = env
        .app
        .call_with_key(&other_key, Method::GET, &pacing_path(), None)
        .await;
    assert_eq!(status, 404);
}

async fn pair_rate_modes(backend: Backend) {
    let env = Env::start(backend).await;
    let (status, body) = env.app.get("/platform/v1/pacing").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["pair_rate_mode"], "observe");
    assert_eq!(body["data"]["pair_rate_mode_source"], "default");

    // observe: the fourth message in a row to one user still goes (the emulator has no limits).
    for i in 0..4 {
        let (status, body, _) = send(&env, text_to("+15550700001", &format!("o{i}"))).await;
        assert_eq!(status, 200, "{body}");
    }
    assert!(env
        .app
        .metrics()
        .await
        .contains("wagate_pacing_pair_over_total{mode=\"observe\"}"));

    // enforce: the burst of three, then 131056 here, with Retry-After, and Meta never sees it.
    let (status, body) = env
        .app
        .call(
            Method::PATCH,
            "/platform/v1/pacing",
            Some(json!({"pair_rate_mode": "enforce"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["pair_rate_mode"], "enforce");
    assert_eq!(body["data"]["pair_rate_mode_source"], "project");
    for i in 0..3 {
        let (status, body, _) = send(&env, text_to("+15550700002", &format!("e{i}"))).await;
        assert_eq!(status, 200, "{body}");
    }
    let before = sent(&env).await.len();
    let (status, body, retry_after) = send(&env, text_to("+15550700002", "e3")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], 131056, "{body}");
    assert_eq!(retry_after.as_deref(), Some("6"));
    assert_eq!(sent(&env).await.len(), before);
    // Another user is not held back.
    let (status, _, _) = send(&env, text_to("+15550700003", "x")).await;
    assert_eq!(status, 200);

    // off: no accounting at all.
    let (status, _) = env
        .app
        .call(
            Method::PATCH,
            "/platform/v1/pacing",
            Some(json!({"pair_rate_mode": "off"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body, _) = send(&env, text_to("+15550700002", "f")).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = env
        .app
        .call(
            Method::PATCH,
            "/platform/v1/pacing",
            Some(json!({"pair_rate_mode": "strict"})),
        )
        .await;
    assert_eq!(status, 422);
}

async fn sends_to_one_user_keep_their_order(backend: Backend) {
    let env = Env::start_with(backend, |config| {
        config.pacing.max_wait = Duration::from_secs(5);
    })
    .await;
    set_rate(&env, json!(10)).await;
    // Issued 25 ms apart without waiting for answers: the budget (one per 100 ms) holds most of
    // them, and they must still reach Meta in the order they came. (At 5 ms apart a loaded
    // machine could deliver the second request to wagate before the first, each on its own new
    // connection: an arrival order the test did not mean.)
    let mut sends = Vec::new();
    for i in 0..12 {
        let (http, base, key) = (
            env.http.clone(),
            env.app.base.clone(),
            env.app.api_key.clone(),
        );
        sends.push(tokio::spawn(async move {
            send_via(
                &http,
                &base,
                &key,
                text_to("+15550800001", &format!("n{i:02}")),
            )
            .await
        }));
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for send in sends {
        let (status, body, _) = send.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let order: Vec<String> = sent(&env)
        .await
        .iter()
        .map(|m| m["request"]["text"]["body"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (0..12).map(|i| format!("n{i:02}")).collect();
    assert_eq!(order, expected);
}

async fn meta_answers_adjust_and_pause(backend: Backend) {
    let env = Env::start(backend).await;
    // Meta's throughput (4/s here) is below what wagate thinks (the number's own 100/s): Meta's
    // 130429 passes through unchanged and halves the rate wagate paces at.
    set_rate(&env, json!(100)).await;
    env.knobs(json!({"limits": {"enabled": true, "standard_mps": 4, "upgrade_ms": 1500}}))
        .await;
    let answers = futures::future::join_all(
        (0..10).map(|i| send(&env, text_to(&format!("+1555090{i:04}"), "hi"))),
    )
    .await;
    let meta_refused = answers
        .iter()
        .filter(|(_, body, _)| body["error"]["code"] == 130429)
        .count();
    assert!(meta_refused > 0, "{answers:?}");
    let metrics = env.app.metrics().await;
    assert!(
        metrics.contains("wagate_meta_rate_limits_total{code=\"130429\"}"),
        "{metrics}"
    );
    eventually(Duration::from_secs(10), "the paced rate halves", || async {
        let metrics = env.app.metrics().await;
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("wagate_pacing_rate{{phone_number_id=\"{PNID}\"}}")))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .filter(|rate| *rate < 100.0)
    })
    .await;

    // A throughput upgrade: Meta's 131057 pauses the number on the number itself, the next send
    // is held here (Meta never sees it), and the upgrade's webhook ends the pause.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let response = env
        .http
        .post(format!(
            "{}/_sandbox/numbers/{PNID}/throughput_upgrade",
            env.sandbox_url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (_, body, _) = send(&env, text_to("+15550910001", "during")).await;
    assert_eq!(body["error"]["code"], 131057, "{body}");
    let (status, number) = env
        .app
        .get(&format!("/platform/v1/whatsapp/phone_numbers/{PNID}"))
        .await;
    assert_eq!(status, 200);
    assert!(number["data"]["paused_until"].is_string(), "{number}");
    let before = sent(&env).await.len();
    let (status, body, retry_after) = send(&env, text_to("+15550910002", "held")).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"]["code"], 131057);
    assert!(
        body["error"]["error_data"]["details"]
            .as_str()
            .unwrap()
            .contains("wagate"),
        "{body}"
    );
    assert!(retry_after.is_some());
    assert_eq!(sent(&env).await.len(), before, "a paused send reached Meta");
    eventually(
        Duration::from_secs(15),
        "the upgrade ends the pause",
        || async {
            let (_, number) = env
                .app
                .get(&format!("/platform/v1/whatsapp/phone_numbers/{PNID}"))
                .await;
            (number["data"]["throughput_tier"] == "HIGH"
                && number["data"]["paused_until"].is_null())
            .then_some(())
        },
    )
    .await;
    eventually(Duration::from_secs(10), "sends go again", || async {
        (send(&env, text_to("+15550910003", "after")).await.0 == 200).then_some(())
    })
    .await;
}

async fn two_instances_share_one_budget(backend: Backend) {
    let env = Env::start_with(backend, |config| {
        config.pacing.max_wait = Duration::from_millis(1500);
        config.pacing.heartbeat = Duration::from_millis(200);
        config.pacing.instance_ttl = Duration::from_millis(1000);
    })
    .await;
    set_rate(&env, json!(10)).await;
    let sibling = Sibling::beside(&env.app).await;
    eventually(
        Duration::from_secs(10),
        "both instances count each other",
        || async {
            let (_, a) = env.app.get(&pacing_path()).await;
            let (_, b) = sibling
                .call(&env.app.api_key, Method::GET, &pacing_path())
                .await;
            (a["data"]["live_instances"] == 2 && b["data"]["live_instances"] == 2).then_some(())
        },
    )
    .await;
    let (_, pacing) = env.app.get(&pacing_path()).await;
    assert_eq!(pacing["data"]["instance_rate"], 5.0);
    // A joining instance sends nothing until the others have counted it and their slots
    // reserved at the larger share have passed (heartbeat + max_wait).
    tokio::time::sleep(Duration::from_millis(2_000)).await;

    // Forty sends at once, half through each instance: together they may send about 10/s over
    // the 1.5 s each waits (plus a burst each), not the 2 × 10/s two unaware instances would.
    let bases = [env.app.base.clone(), sibling.base.clone()];
    let answers = futures::future::join_all((0..40).map(|i| {
        send_via(
            &env.http,
            &bases[i % 2],
            &env.app.api_key,
            text_to(&format!("+1555100{i:04}"), "shared"),
        )
    }))
    .await;
    let accepted = answers.iter().filter(|(s, _, _)| *s == 200).count();
    assert!(
        (10..=24).contains(&accepted),
        "{accepted} sent by two instances at 10/s in 1.5 s"
    );
    assert_eq!(sent(&env).await.len(), accepted);

    // A stopped instance leaves the table: the other takes the whole rate again.
    drop(sibling);
    eventually(Duration::from_secs(10), "one instance left", || async {
        let (_, a) = env.app.get(&pacing_path()).await;
        (a["data"]["live_instances"] == 1).then_some(())
    })
    .await;
}

crate::both_backends!(backend:
    over_the_rate_is_answered_locally,
    pair_rate_modes,
    sends_to_one_user_keep_their_order,
    meta_answers_adjust_and_pause,
    two_instances_share_one_budget
);
