//! Cross-instance cache invalidation: two servers on one database, caches that would hold for ten
//! minutes, and a change made on one (or by the admin CLI in another process) that the other
//! obeys within seconds. With `cache.ttl` that long, only the change feed can explain it.

use std::time::Duration;

use reqwest::{Client, Method};
use serde_json::Value;
use tokio::sync::oneshot;
use wagate::config::{Backend, Config};

use crate::common::app::NUMBERS;
use crate::common::{eventually, TestApp};

const KEYS: &str = "/platform/v1/api_keys";
const LONG_TTL: Duration = Duration::from_secs(600);
/// Generous for a loaded 2-core machine; the feed itself answers in milliseconds (PostgreSQL)
/// or one poll interval (SQLite).
const WITHIN: Duration = Duration::from_secs(10);

fn long_ttl(config: &mut Config) {
    config.cache.ttl = LONG_TTL;
    config.cache.change_poll_interval = Duration::from_millis(100);
}

/// A second server on the first one's database (same master key), as behind a load balancer.
pub(crate) struct Sibling {
    pub base: String,
    client: Client,
    _stop: oneshot::Sender<()>,
}

impl Sibling {
    pub async fn beside(first: &TestApp) -> Self {
        let mut config: Config = (*first.config).clone();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        // Each instance locks its own spill file.
        config.writer.spill_path += &format!(".{}", uuid::Uuid::new_v4());
        let app = wagate::App::build(config)
            .await
            .expect("second instance builds");
        assert!(
            app.bootstrap.is_none(),
            "the database already has a project"
        );
        let base = format!("http://{}", app.local_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(app.run(async move {
            let _ = stopped.await;
        }));
        Self {
            base,
            client: Client::new(),
            _stop: stop,
        }
    }

    pub(crate) async fn call(&self, key: &str, method: Method, path: &str) -> (u16, Value) {
        let response = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("x-api-key", key)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

async fn a_key_revoked_on_one_instance_stops_on_the_other(app: TestApp) {
    let other = Sibling::beside(&app).await;
    let (_, issued) = app.call(Method::POST, KEYS, None).await;
    let key = issued["data"]["key"].as_str().unwrap().to_owned();
    let id = issued["data"]["id"].as_str().unwrap().to_owned();
    // Warm the other instance's cache with the live key.
    assert_eq!(other.call(&key, Method::GET, NUMBERS).await.0, 200);
    assert_eq!(other.call(&key, Method::GET, NUMBERS).await.0, 200);

    let (status, _) = app
        .call(Method::DELETE, &format!("{KEYS}/{id}"), None)
        .await;
    assert_eq!(status, 200);
    eventually(
        WITHIN,
        "the other instance refuses the revoked key",
        || async { (other.call(&key, Method::GET, NUMBERS).await.0 == 401).then_some(()) },
    )
    .await;
    // The key that revoked it is untouched there.
    assert_eq!(other.call(&app.api_key, Method::GET, NUMBERS).await.0, 200);
}

async fn a_number_changed_on_one_instance_is_seen_by_the_other(app: TestApp) {
    let other = Sibling::beside(&app).await;
    let pnid = "4400001";
    let number_path = format!("/meta/whatsapp/v24.0/{pnid}");
    // Not connected yet: the other instance caches "no such number".
    let (status, _) = other.call(&app.api_key, Method::GET, &number_path).await;
    assert_ne!(status, 200);

    app.connect(&app.api_key, pnid, "4400900", None).await;
    eventually(
        WITHIN,
        "the other instance serves the new number",
        || async {
            (other.call(&app.api_key, Method::GET, &number_path).await.0 == 200).then_some(())
        },
    )
    .await;

    let (status, body) = app
        .call(Method::DELETE, &format!("{NUMBERS}/{pnid}"), None)
        .await;
    assert!(status < 300, "{status} {body}");
    eventually(
        WITHIN,
        "the other instance forgets the deleted number",
        || async {
            (other.call(&app.api_key, Method::GET, &number_path).await.0 != 200).then_some(())
        },
    )
    .await;
    let forwarded_after = app.graph.recorded().len();
    let (status, _) = other.call(&app.api_key, Method::GET, &number_path).await;
    assert_ne!(status, 200);
    assert_eq!(
        app.graph.recorded().len(),
        forwarded_after,
        "a deleted number must not be forwarded to Graph"
    );
}

/// The admin CLI is another process on the SQLite file: its revocation reaches the running
/// server through the change log, not after `cache.ttl`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_revocation_reaches_a_running_sqlite_server() {
    let app = TestApp::spawn_with(Backend::Sqlite, long_ttl).await;
    let (_, issued) = app.call(Method::POST, KEYS, None).await;
    let key = issued["data"]["key"].as_str().unwrap().to_owned();
    let id = issued["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.call_with_key(&key, Method::GET, NUMBERS, None).await.0,
        200
    );

    let output = app
        .wagate_command(&["admin", "api-keys", "revoke", &id])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    eventually(
        WITHIN,
        "the server refuses the key the CLI revoked",
        || async {
            (app.call_with_key(&key, Method::GET, NUMBERS, None).await.0 == 401).then_some(())
        },
    )
    .await;
}

crate::both_backends!(app with long_ttl:
    a_key_revoked_on_one_instance_stops_on_the_other,
    a_number_changed_on_one_instance_is_seen_by_the_other,
);
