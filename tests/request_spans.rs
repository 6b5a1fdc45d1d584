//! What the proxy logs from the task that finishes a send names the request it belongs to: the
//! `wagate` binary runs with JSON logs, a send fails against a Graph that refuses connections, and
//! the warning that failure logs (from the spawned send task) must carry the request's
//! `request_id`, `project_id` and `phone_number_id`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

#[path = "common/ports.rs"]
mod ports;
use ports::{free_port, refusing_port};

const PNID: &str = "106540352242922";
const WABA: &str = "102290129340398";

struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn warnings_from_the_send_task_carry_the_request_span() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let graph = refusing_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wagate"))
        .arg("serve")
        .current_dir(dir.path())
        .env("WAGATE__DATABASE__URL", "sqlite://data/w.db")
        .env("WAGATE__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "WAGATE__GRAPH__BASE_URL",
            format!("http://127.0.0.1:{graph}"),
        )
        .env("WAGATE__GRAPH__VERIFY_NUMBERS", "false")
        .env("WAGATE__LOG__FORMAT", "json")
        .env("WAGATE__LOG__LEVEL", "info")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let _gateway = Gateway(child);
    // Drained so the child never blocks on a full pipe; the key is not there (not a terminal).
    std::thread::spawn(move || stdout.lines().map_while(Result::ok).for_each(drop));
    let (log_tx, log_rx) = mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if let Ok(value) = serde_json::from_str::<Value>(&line) {
                let _ = log_tx.send(value);
            }
        }
    });
    let next_log = |what: &str, matches: &dyn Fn(&Value) -> bool| loop {
        let line = log_rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no log line for {what}"));
        if matches(&line) {
            return line;
        }
    };
    next_log("listening", &|l| l["message"] == "wagate listening");
    // stdout is a pipe: the first start wrote its key to a 0600 file instead of printing it.
    let key = std::fs::read_to_string(dir.path().join("data/initial-api-key"))
        .expect("the first start writes its API key to data/initial-api-key");
    let key = key.trim().to_owned();

    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let connect = http
        .post(format!("{base}/platform/v1/whatsapp/phone_numbers"))
        .header("X-API-Key", &key)
        .json(&serde_json::json!({ "whatsapp_phone_number": {
            "phone_number_id": PNID, "business_account_id": WABA, "access_token": "token-1" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(connect.status(), 201, "{}", connect.text().await.unwrap());
    let project_id = connect.json::<Value>().await.unwrap()["data"]["project_id"].clone();

    let send = http
        .post(format!("{base}/meta/whatsapp/v23.0/{PNID}/messages"))
        .header("X-API-Key", &key)
        .header("x-request-id", "span-test-1")
        .json(&serde_json::json!({
            "messaging_product": "whatsapp", "to": "15551234567", "type": "text",
            "text": { "body": "hi" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(send.status(), 502, "Graph refuses connections");

    let warning = next_log("the unreachable Graph", &|l| {
        l["message"] == "Graph unreachable"
    });
    let span = &warning["span"];
    assert_eq!(span["name"], "request", "{warning}");
    assert_eq!(span["request_id"], "span-test-1", "{warning}");
    assert_eq!(span["phone_number_id"], PNID, "{warning}");
    if !project_id.is_null() {
        assert_eq!(span["project_id"], project_id, "{warning}");
    } else {
        assert!(span["project_id"].is_string(), "{warning}");
    }
}
