//! The emulator enforces Meta's send limits when asked (`limits` knob): throughput per number
//! (`130429`), the business–user pair rate (`131056`) and the minute of a throughput upgrade
//! (`131057`, then `THROUGHPUT_UPGRADE`). Through wagate's proxy, Meta's answers come back
//! unchanged, and the upgrade's webhook moves the number's `throughput_tier`.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use wagate::config::Backend;

use crate::common::eventually;
use crate::ingest::{Env, PNID};

async fn send_to(env: &Env, to: &str) -> (u16, Value) {
    crate::meta_state::send(
        env,
        json!({"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": "hi"}}),
    )
    .await
}

async fn meta_limits_come_back_unchanged(backend: Backend) {
    let env = Env::start(backend).await;
    env.knobs(json!({"limits": {"enabled": true, "standard_mps": 4, "pair_burst": 2, "pair_interval_ms": 60000}}),
    )
    .await;

    // The pair rate: a burst of two to one user, then 131056.
    assert_eq!(send_to(&env, "+15550100001").await.0, 200);
    assert_eq!(send_to(&env, "+15550100001").await.0, 200);
    let (status, body) = send_to(&env, "+15550100001").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], 131056);

    // Throughput: four a second for this number; a fifth within the second is 130429. Sent at
    // once, so a slow machine cannot spread them over two windows. (The refused pair send above
    // took no slot.)
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let recipients: Vec<String> = (0..5).map(|i| format!("+1555020000{i}")).collect();
    let answers = futures::future::join_all(recipients.iter().map(|to| send_to(&env, to))).await;
    let accepted = answers.iter().filter(|(status, _)| *status == 200).count();
    let refused: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status != 200)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(accepted, 4, "{answers:?}");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["error"]["code"], 130429);
    assert_eq!(refused[0]["error"]["message"], "(#130429) Rate limit hit");

    // A throughput upgrade: 131057 while it runs, then HIGH (the webhook reaches wagate) and a
    // higher limit.
    env.knobs(json!({"limits": {"upgrade_ms": 400}})).await;
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
    let (status, body) = send_to(&env, "+15550300001").await;
    assert_eq!(body["error"]["code"], 131057, "{body}");
    assert_eq!(status, 500);
    eventually(Duration::from_secs(10), "the upgraded tier", || async {
        let (_, number) = env
            .app
            .call(
                Method::GET,
                &format!("/platform/v1/whatsapp/phone_numbers/{PNID}"),
                None,
            )
            .await;
        (number["data"]["throughput_tier"] == "HIGH").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    for i in 0..6 {
        let (status, body) = send_to(&env, &format!("+1555040000{i}")).await;
        assert_eq!(
            status, 200,
            "a HIGH number takes more than four a second: {body}"
        );
    }

    // Off again (the default): no limits at all.
    env.knobs(json!({"limits": {"enabled": false}})).await;
    for _ in 0..5 {
        assert_eq!(send_to(&env, "+15550100001").await.0, 200);
    }
    // Bad knob values are refused.
    let response = env
        .http
        .post(format!("{}/_sandbox/knobs", env.sandbox_url))
        .json(&json!({"limits": {"standard_mps": 0}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

crate::both_backends!(backend: meta_limits_come_back_unchanged);
