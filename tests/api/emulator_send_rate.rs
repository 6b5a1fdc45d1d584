//! The emulator's fault and measurement knobs for queued sends and benchmarks, over real HTTP
//! straight to the emulator (no wagate in between, so what is checked is the emulator itself):
//!
//! - `lose_answers`: an accepted send whose answer never arrives in time (the client times out)
//!   though the message went out, with its status webhooks; refused sends do not use it up;
//! - `GET|DELETE /_sandbox/numbers/{pnid}/send_rate`: accepted sends, refusals by Meta's limit
//!   codes and the busiest sliding second, recorded with the `limits` knob off or on.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wagate::sandbox::{Sandbox, SandboxNumber};

use crate::common::emulator;
use crate::common::receiver::Hook;

struct Emu {
    /// Held so the emulator keeps running.
    sandbox: Sandbox,
    url: String,
    number: SandboxNumber,
    http: reqwest::Client,
}

impl Emu {
    async fn start() -> Self {
        let mut number = None;
        let (sandbox, url) = emulator(|config| {
            config.status_delay = Duration::from_millis(10);
            number = Some(config.numbers[0].clone());
        })
        .await;
        Self {
            sandbox,
            url,
            number: number.unwrap(),
            http: reqwest::Client::new(),
        }
    }

    fn messages_url(&self) -> String {
        format!(
            "{}/v24.0/{}/messages",
            self.url, self.number.phone_number_id
        )
    }

    fn send_rate_url(&self, pnid: &str) -> String {
        format!("{}/_sandbox/numbers/{pnid}/send_rate", self.url)
    }

    /// A text send to `to` through `client`, as a Meta client would make it.
    async fn send_with(
        &self,
        client: &reqwest::Client,
        to: &str,
        tag: &str,
    ) -> reqwest::Result<(u16, Value)> {
        let response = client
            .post(self.messages_url())
            .bearer_auth(&self.number.access_token)
            .json(
                &json!({"messaging_product": "whatsapp", "to": to, "type": "text",
                "text": {"body": "hi"}, "biz_opaque_callback_data": tag}),
            )
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await?))
    }

    async fn send(&self, to: &str) -> (u16, Value) {
        self.send_with(&self.http, to, "").await.unwrap()
    }

    /// `POST /_sandbox/knobs`, answering the status and all knobs (or the error).
    async fn knobs(&self, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/_sandbox/knobs", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn knobs_now(&self) -> Value {
        let url = format!("{}/_sandbox/knobs", self.url);
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Accepted messages the emulator stored, oldest first.
    async fn sent(&self) -> Vec<Value> {
        let url = format!("{}/_sandbox/sent", self.url);
        let body: Value = self
            .http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["data"].as_array().unwrap().clone()
    }

    async fn rate(&self) -> Value {
        let response = self
            .http
            .get(self.send_rate_url(&self.number.phone_number_id))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    async fn clear_rate(&self) {
        let response = self
            .http
            .delete(self.send_rate_url(&self.number.phone_number_id))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.json::<Value>().await.unwrap(),
            json!({"success": true})
        );
    }

    /// `n` sends at once to distinct users; the answers and how long the burst took.
    async fn burst(&self, prefix: &str, n: usize) -> (Vec<(u16, Value)>, Duration) {
        let recipients: Vec<String> = (0..n).map(|i| format!("{prefix}{i:03}")).collect();
        let started = Instant::now();
        let answers = futures::future::join_all(recipients.iter().map(|to| self.send(to))).await;
        (answers, started.elapsed())
    }
}

fn status_of(hit: &crate::common::receiver::Hit) -> Value {
    hit.json()["entry"][0]["changes"][0]["value"]["statuses"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_times_out_though_the_message_went_out() {
    let emu = Emu::start().await;
    let hook = Hook::start().await;
    emu.sandbox.set_webhook_url(Some(hook.url.clone()));

    let (status, knobs) = emu
        .knobs(json!({"lose_answers": {"count": 1, "hold_ms": 3000}}))
        .await;
    assert_eq!(status, 200, "{knobs}");
    assert_eq!(knobs["lose_answers"], json!({"count": 1, "hold_ms": 3000}));

    // A client that waits less than the hold sees a timeout...
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(600))
        .build()
        .unwrap();
    let error = emu
        .send_with(&impatient, "+15550700001", "lost-1")
        .await
        .expect_err("the answer is held past the client's timeout");
    assert!(error.is_timeout(), "{error}");

    // ...but Meta took the message: it is stored, and its statuses (with the callback data) are
    // delivered while the answer is still held.
    let stored = emu.sent().await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["request"]["biz_opaque_callback_data"], "lost-1");
    let wamid = stored[0]["id"].as_str().unwrap().to_owned();
    let hits = hook.wait_for(3, Duration::from_secs(10)).await;
    let statuses: Vec<Value> = hits.iter().map(status_of).collect();
    assert!(
        statuses
            .iter()
            .any(|s| s["status"] == "sent" && s["id"] == wamid.as_str()),
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|s| s["biz_opaque_callback_data"] == "lost-1"),
        "{statuses:?}"
    );
    assert_eq!(emu.knobs_now().await["lose_answers"]["count"], 0);

    // The count is used up: the next send answers at once, even to the impatient client.
    let (status, body) = emu
        .send_with(&impatient, "+15550700002", "kept")
        .await
        .expect("an answer");
    assert_eq!(status, 200, "{body}");
    assert!(body["messages"][0]["id"]
        .as_str()
        .unwrap()
        .starts_with("wamid."));

    // A patient client gets Meta's transient error once the hold ends; an omitted hold_ms is
    // the 30 s default, not the last value.
    let (_, knobs) = emu.knobs(json!({"lose_answers": {"count": 1}})).await;
    assert_eq!(knobs["lose_answers"], json!({"count": 1, "hold_ms": 30000}));
    emu.knobs(json!({"lose_answers": {"count": 1, "hold_ms": 300}}))
        .await;
    let started = Instant::now();
    let (status, body) = emu.send("+15550700003").await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"]["code"], 2);
    assert_eq!(
        body["error"]["message"],
        "(#2) Service temporarily unavailable"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(emu.sent().await.len(), 3);

    // Refused sends (Meta's limits, a bad request) do not use a lost answer up.
    emu.knobs(json!({"limits": {"enabled": true, "pair_burst": 1, "pair_interval_ms": 60000}}))
        .await;
    assert_eq!(emu.send("+15550700004").await.0, 200);
    emu.knobs(json!({"lose_answers": {"count": 1, "hold_ms": 200}}))
        .await;
    let (status, body) = emu.send("+15550700004").await;
    assert_eq!(body["error"]["code"], 131056, "{body}");
    assert_eq!(status, 400);
    let response = emu
        .http
        .post(emu.messages_url())
        .bearer_auth(&emu.number.access_token)
        .json(&json!({"messaging_product": "whatsapp", "to": "+15550700005", "type": "text"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(emu.knobs_now().await["lose_answers"]["count"], 1);
    assert_eq!(emu.send("+15550700006").await.0, 500);
    assert_eq!(emu.knobs_now().await["lose_answers"]["count"], 0);

    // Bad settings are refused and change nothing.
    for bad in [
        json!({"lose_answers": {"hold_ms": 10}}),
        json!({"lose_answers": {"count": -1}}),
        json!({"lose_answers": {"count": 1, "hold": 10}}),
    ] {
        let (status, body) = emu.knobs(bad.clone()).await;
        assert_eq!(status, 400, "{bad} → {body}");
    }
    assert_eq!(
        emu.knobs_now().await["lose_answers"],
        json!({"count": 0, "hold_ms": 200})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_send_rate_counts_sends_refusals_and_the_busiest_second() {
    let emu = Emu::start().await;
    let http = &emu.http;

    // An unknown number is a 404, as on the other number routes.
    for request in [
        http.get(emu.send_rate_url("999999")),
        http.delete(emu.send_rate_url("999999")),
    ] {
        assert_eq!(request.send().await.unwrap().status(), 404);
    }
    let empty = json!({"accepted": 0, "refused": {"130429": 0, "131056": 0, "131057": 0},
        "max_in_any_second": 0, "per_second": []});
    assert_eq!(emu.rate().await, empty);

    // Limits off (the default): a burst of 30, then, well over a second later, 10 more. The
    // busiest sliding second holds the first burst only.
    let (answers, took) = emu.burst("+155508000", 30).await;
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (answers, _) = emu.burst("+155508100", 10).await;
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    let rate = emu.rate().await;
    assert_eq!(rate["accepted"], 40, "{rate}");
    assert_eq!(rate["refused"], empty["refused"]);
    let busiest = rate["max_in_any_second"].as_u64().unwrap();
    if took < Duration::from_millis(900) {
        assert_eq!(busiest, 30, "a burst that took {took:?}: {rate}");
    } else {
        assert!((10..=30).contains(&busiest), "{rate}");
    }
    let buckets = rate["per_second"].as_array().unwrap();
    let now = chrono::Utc::now().timestamp();
    let mut total = 0;
    let mut last = 0;
    for bucket in buckets {
        let (second, count) = (
            bucket["second"].as_i64().unwrap(),
            bucket["count"].as_u64().unwrap(),
        );
        assert!(
            second > last && (now - 60..=now).contains(&second),
            "{rate}"
        );
        assert!(
            count <= busiest,
            "a calendar second never beats the busiest window: {rate}"
        );
        last = second;
        total += count;
    }
    assert_eq!(total, 40, "{rate}");
    assert!(buckets.len() >= 2, "the bursts are 1.5 s apart: {rate}");

    emu.clear_rate().await;
    assert_eq!(emu.rate().await, empty);

    // Limits on: refusals are counted by code and the number's limit shows as the busiest second.
    emu.knobs(
        json!({"limits": {"enabled": true, "standard_mps": 5, "pair_burst": 2,
        "pair_interval_ms": 60000, "upgrade_ms": 60000}}),
    )
    .await;
    assert_eq!(emu.send("+15550900001").await.0, 200);
    assert_eq!(emu.send("+15550900001").await.0, 200);
    assert_eq!(emu.send("+15550900001").await.1["error"]["code"], 131056);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (answers, _) = emu.burst("+155509100", 8).await;
    let accepted = answers.iter().filter(|(s, _)| *s == 200).count();
    let throttled = answers
        .iter()
        .filter(|(_, b)| b["error"]["code"] == 130429)
        .count();
    assert_eq!((accepted, throttled), (5, 3), "{answers:?}");
    // A refusal for another reason (a bad request) is not a limit and is not counted.
    let response = http
        .post(emu.messages_url())
        .bearer_auth(&emu.number.access_token)
        .json(&json!({"messaging_product": "whatsapp", "to": "+15550900002", "type": "text"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let upgrade = http
        .post(format!(
            "{}/_sandbox/numbers/{}/throughput_upgrade",
            emu.url, emu.number.phone_number_id
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(upgrade.status(), 200);
    assert_eq!(emu.send("+15550900003").await.1["error"]["code"], 131057);

    let rate = emu.rate().await;
    assert_eq!(rate["accepted"], 7, "{rate}");
    assert_eq!(
        rate["refused"],
        json!({"130429": 3, "131056": 1, "131057": 1}),
        "{rate}"
    );
    assert_eq!(rate["max_in_any_second"], 5, "{rate}");

    emu.clear_rate().await;
    assert_eq!(emu.rate().await, empty);
    // Cleared, not switched off: the next accepted send is recorded again.
    emu.knobs(json!({"limits": {"enabled": false}})).await;
    assert_eq!(emu.send("+15550900004").await.0, 200);
    assert_eq!(emu.rate().await["accepted"], 1);
}
