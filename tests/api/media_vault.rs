//! The media vault end to end: an inbound media message injected through the Graph emulator
//! (which serves real bytes behind a token-checked download URL, like Meta's lookaside host) is
//! downloaded after the webhook is acknowledged, checked, kept, and served at the message's
//! `media_url`; failures are recorded on the message; other tenants see a 404.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use wagate::config::{Backend, Config};
use wagate::sandbox::Sandbox;

use crate::common::s3::{TestBucket, VaultPlace};
use crate::common::{emulator, eventually, files_under, TestApp, APP_SECRET};
use crate::ingest::wamid_of;

pub(crate) const V: &str = "/meta/whatsapp/v24.0";
pub(crate) const MEDIA_FIELDS: &str = "fields=kapso(has_media,media_url,media_data)";

pub(crate) struct Env {
    pub(crate) app: TestApp,
    /// Kept alive for the test (the emulator stops when dropped).
    _sandbox: Sandbox,
    pub(crate) sandbox_url: String,
    pub(crate) pnid: String,
    pub(crate) http: reqwest::Client,
}

fn fast_media(config: &mut Config) {
    config.media.poll_interval = Duration::from_millis(50);
    config.media.backoff_initial = Duration::from_millis(100);
    config.media.backoff_max = Duration::from_millis(400);
}

pub(crate) async fn env(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Env {
    let mut number = None;
    let (sandbox, sandbox_url) = emulator(|config| {
        config.app_secret = APP_SECRET.into();
        config.status_delay = Duration::from_millis(10);
        number = Some(config.numbers[0].clone());
    })
    .await;
    let number = number.unwrap();
    let app = TestApp::spawn_against(backend, &sandbox_url, |config| {
        fast_media(config);
        adjust(config);
    })
    .await;
    app.connect_emulator_number(&number).await;
    sandbox.set_webhook_url(Some(app.url("/webhooks/whatsapp")));
    Env {
        app,
        _sandbox: sandbox,
        sandbox_url,
        pnid: number.phone_number_id,
        http: reqwest::Client::new(),
    }
}

impl Env {
    async fn control(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}{path}", self.sandbox_url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    /// Injects an inbound media message; returns its wamid.
    pub(crate) async fn inbound(&self, kind: &str, given: Value) -> String {
        let answer = self
            .control(
                "/_sandbox/inbound",
                json!({"phone_number_id": self.pnid, "type": kind, kind: given}),
            )
            .await;
        wamid_of(&answer["envelope"])
    }

    /// The message's `kapso` block once its media is no longer pending.
    pub(crate) async fn settled(&self, wamid: &str) -> Value {
        let path = format!("{V}/{}/messages/{wamid}?{MEDIA_FIELDS}", self.pnid);
        eventually(
            Duration::from_secs(20),
            "the media download to settle",
            || async {
                let (status, body) = self.app.get(&path).await;
                let kapso = body["kapso"].clone();
                (status == 200
                    && kapso["media_data"]["status"] != "pending"
                    && !kapso["media_data"]["status"].is_null())
                .then_some(kapso)
            },
        )
        .await
    }
}

/// The emulator's bytes for a media id, fetched as Meta's lookaside URL wants (Bearer token).
async fn original_bytes(env: &Env, media_id: &str) -> Vec<u8> {
    env.http
        .get(format!(
            "{}/_sandbox/media/{media_id}/download",
            env.sandbox_url
        ))
        .bearer_auth("sandbox-token-100000000000001")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

async fn an_inbound_image_is_kept_and_served_by_its_stable_url(backend: Backend) {
    journey(backend, |_| {}).await;
}

/// The media workers sleep until the writer commits a batch that queued a download (batches of
/// text wake nobody): with an hour between polls, only that wake-up can fetch the image now.
async fn the_batch_that_queues_a_download_wakes_the_media_workers(backend: Backend) {
    let env = env(backend, |config| {
        config.media.poll_interval = Duration::from_secs(3600);
    })
    .await;
    for _ in 0..3 {
        env.control(
            "/_sandbox/inbound",
            json!({"phone_number_id": env.pnid, "type": "text", "text": {"body": "hi"}}),
        )
        .await;
    }
    let wamid = env.inbound("image", json!({"caption": "a pixel"})).await;
    let kapso = env.settled(&wamid).await;
    assert_eq!(kapso["media_data"]["status"], "stored", "{kapso}");
}

/// The same journey with the files in an S3-compatible bucket: a real server process (moto,
/// started by `scripts/test.sh`), at `WAGATE_TEST_S3_ENDPOINT`, bucket `wagate-test`.
async fn the_journey_works_on_an_s3_bucket(backend: Backend) {
    let Some(bucket) = TestBucket::open() else {
        return;
    };
    journey(backend, move |config| {
        bucket.configure(config, &bucket.endpoint);
    })
    .await;
}

async fn journey(backend: Backend, adjust: impl FnOnce(&mut Config) + Send + 'static) {
    let env = env(backend, adjust).await;
    let answer = env
        .control(
            "/_sandbox/inbound",
            json!({"phone_number_id": env.pnid, "type": "image", "image": {"caption": "a pixel"}}),
        )
        .await;
    let wamid = wamid_of(&answer["envelope"]);
    let media_id = answer["envelope"]["entry"][0]["changes"][0]["value"]["messages"][0]["image"]
        ["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let kapso = env.settled(&wamid).await;
    assert_eq!(kapso["media_data"]["status"], "stored", "{kapso}");
    assert_eq!(kapso["has_media"], true);
    let url = kapso["media_url"].as_str().expect("a media_url").to_owned();
    assert_eq!(kapso["media_data"]["url"], kapso["media_url"]);
    assert_eq!(kapso["media_data"]["content_type"], "image/png");
    let original = original_bytes(&env, &media_id).await;
    assert_eq!(kapso["media_data"]["byte_size"], json!(original.len()));
    assert!(url.starts_with(&env.app.base), "{url}");

    // The signed link works with no credential at all, as an <img> would use it.
    let response = env.http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("sandbox"));
    assert!(headers["cache-control"]
        .to_str()
        .unwrap()
        .contains("private"));
    assert!(headers["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("inline; filename="));
    let etag = headers["etag"].to_str().unwrap().to_owned();
    assert_eq!(response.bytes().await.unwrap().to_vec(), original);

    // The stable path works with the project's key, forever.
    let stable = url.split('?').next().unwrap().to_owned();
    let path = stable.trim_start_matches(&env.app.base).to_owned();
    let with_key = env.app.request(Method::GET, &path).send().await.unwrap();
    assert_eq!(with_key.status(), 200);
    assert_eq!(with_key.bytes().await.unwrap().to_vec(), original);

    // Range (players) and ETag (caches).
    let part = env
        .app
        .request(Method::GET, &path)
        .header("range", "bytes=1-4")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 1-4/{}", original.len()).as_str()
    );
    assert_eq!(
        part.bytes().await.unwrap().to_vec(),
        original[1..5].to_vec()
    );
    let outside = env
        .app
        .request(Method::GET, &path)
        .header("range", format!("bytes={}-", original.len() + 10))
        .send()
        .await
        .unwrap();
    assert_eq!(outside.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let cached = env
        .app
        .request(Method::GET, &path)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);

    // Everyone else: the same 404 as an id that does not exist, and no path or bucket in it.
    let (_, other_key) = env.app.other_project().await;
    let unknown = format!("/media/{}", uuid::Uuid::now_v7());
    let mut answers = Vec::new();
    for (path, key) in [
        (path.clone(), Some(other_key.as_str())),
        (unknown.clone(), Some(other_key.as_str())),
        (path.clone(), None),
        (format!("{path}?expires=99999999999&signature=AAAA"), None),
        (unknown.clone(), None),
    ] {
        let mut request = env.http.get(env.app.url(&path));
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 404, "{path}: {body}");
        let text = body.to_string();
        assert!(
            !text.contains("sha256/") && !text.contains("/tmp"),
            "{text}"
        );
        answers.push(body["error"]["code"].clone());
    }
    assert!(answers.iter().all(|c| c == &json!(100)), "{answers:?}");

    // The list filter means what Kapso says: a kept file exists.
    let (_, listed) = env
        .app
        .get(&format!(
            "{V}/{}/messages?has_media=true&{MEDIA_FIELDS}",
            env.pnid
        ))
        .await;
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [wamid.as_str()]);
}

/// The failure tests again with the files in the test bucket (skipped like the journey).
fn on_s3() -> Option<VaultPlace> {
    TestBucket::open().map(VaultPlace::Bucket)
}

async fn bad_media_is_recorded_as_failed_and_never_served(backend: Backend) {
    bad_media(backend, VaultPlace::Folder).await;
}

async fn bad_media_fails_on_s3_and_leaves_nothing_in_the_bucket(backend: Backend) {
    if let Some(place) = on_s3() {
        bad_media(backend, place).await;
    }
}

async fn bad_media(backend: Backend, place: VaultPlace) {
    let env = env(backend, |config| place.configure(config)).await;
    // Bytes that do not match Meta's checksum.
    let mismatch = env
        .inbound(
            "image",
            json!({"sha256": "0000000000000000000000000000000000000000000000000000000000000000"}),
        )
        .await;
    // A media id Meta no longer has (injected raw, as the emulator refuses unknown ids).
    let built = env
        .control(
            "/_sandbox/inbound",
            json!({"phone_number_id": env.pnid, "type": "document", "deliver": false}),
        )
        .await;
    let mut envelope = built["envelope"].clone();
    let document = &mut envelope["entry"][0]["changes"][0]["value"]["messages"][0]["document"];
    document["id"] = json!("998877665544");
    // Without Meta's checksum, so no file kept earlier can stand in for it.
    document.as_object_mut().unwrap().remove("sha256");
    let gone = wamid_of(&envelope);
    env.control("/_sandbox/raw", json!({"envelope": envelope}))
        .await;
    for (wamid, reason) in [(&mismatch, "sha256"), (&gone, "no longer has")] {
        let kapso = env.settled(wamid).await;
        assert_eq!(kapso["media_data"]["status"], "failed", "{kapso}");
        assert!(
            kapso["media_data"]["error"]
                .as_str()
                .unwrap()
                .contains(reason),
            "{kapso}"
        );
        assert_eq!(kapso["has_media"], false);
        assert!(kapso["media_url"].is_null());
        assert!(kapso["media_data"]["url"].is_null());
    }
    // The mismatching bytes were written and then aborted: nothing of them is left.
    assert_eq!(place.contents(&env.app.config).await, Vec::<String>::new());
}

async fn oversized_media_fails_without_being_kept(backend: Backend) {
    oversized_media(backend, VaultPlace::Folder).await;
}

async fn oversized_media_fails_on_s3_and_leaves_nothing_in_the_bucket(backend: Backend) {
    if let Some(place) = on_s3() {
        oversized_media(backend, place).await;
    }
}

async fn oversized_media(backend: Backend, place: VaultPlace) {
    let env = env(backend, |config| {
        config.media.max_bytes = 16;
        place.configure(config);
    })
    .await;
    // Known from Meta's file_size before any byte moves (streaming past the limit is in
    // media_faults, with a Graph double that leaves file_size out).
    let wamid = env.inbound("document", json!({})).await;
    let kapso = env.settled(&wamid).await;
    assert_eq!(kapso["media_data"]["status"], "failed", "{kapso}");
    assert!(
        kapso["media_data"]["error"]
            .as_str()
            .unwrap()
            .contains("media.max_bytes"),
        "{kapso}"
    );
    assert!(kapso["media_url"].is_null());
    assert_eq!(place.contents(&env.app.config).await, Vec::<String>::new());
}

async fn the_same_file_twice_is_kept_once_and_goes_with_its_number(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_path_buf();
    let env = env(backend, move |config| {
        config.media.store = store.display().to_string();
    })
    .await;
    let first = env
        .control(
            "/_sandbox/inbound",
            json!({"phone_number_id": env.pnid, "type": "image", "image": {}}),
        )
        .await;
    let media_id = first["envelope"]["entry"][0]["changes"][0]["value"]["messages"][0]["image"]
        ["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = env.inbound("image", json!({"id": media_id})).await;
    for wamid in [wamid_of(&first["envelope"]), second] {
        assert_eq!(env.settled(&wamid).await["media_data"]["status"], "stored");
    }
    let files = files_under(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");

    // Disconnecting the number removes its media: rows, and the file no message uses any more.
    let (status, body) = env
        .app
        .call(
            Method::DELETE,
            &format!("/platform/v1/whatsapp/phone_numbers/{}", env.pnid),
            None,
        )
        .await;
    assert!(status < 300, "{status} {body}");
    assert_eq!(files_under(dir.path()), Vec::<std::path::PathBuf>::new());
}

/// Outbound: a file uploaded through wagate and sent by its id is kept as well, and the recorded
/// outbound message carries the same fields.
async fn uploaded_and_sent_media_is_kept_for_the_outbound_message(backend: Backend) {
    let env = env(backend, |_| {}).await;
    let boundary = "vaultb0undary";
    let png: &[u8] = b"\x89PNG\r\n\x1a\noutbound bytes";
    let body = crate::common::media_upload(boundary, "out.png", "image/png", png);
    let uploaded: Value = env
        .app
        .request(Method::POST, &format!("{V}/{}/media", env.pnid))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let media_id = uploaded["id"].as_str().expect("an uploaded media id");
    let (status, sent) = env
        .app
        .call(
            Method::POST,
            &format!("{V}/{}/messages", env.pnid),
            Some(
                json!({"messaging_product": "whatsapp", "to": "15551234567", "type": "image",
                        "image": {"id": media_id, "caption": "from us"}}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{sent}");
    let wamid = sent["messages"][0]["id"].as_str().unwrap().to_owned();
    let kapso = env.settled(&wamid).await;
    assert_eq!(kapso["media_data"]["status"], "stored", "{kapso}");
    let url = kapso["media_url"].as_str().unwrap();
    let bytes = env
        .http
        .get(url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(bytes.to_vec(), png.to_vec());
}

crate::both_backends!(backend:
    the_journey_works_on_an_s3_bucket,
    bad_media_fails_on_s3_and_leaves_nothing_in_the_bucket,
    oversized_media_fails_on_s3_and_leaves_nothing_in_the_bucket,
    uploaded_and_sent_media_is_kept_for_the_outbound_message,
    an_inbound_image_is_kept_and_served_by_its_stable_url,
    the_batch_that_queues_a_download_wakes_the_media_workers,
    bad_media_is_recorded_as_failed_and_never_served,
    oversized_media_fails_without_being_kept,
    the_same_file_twice_is_kept_once_and_goes_with_its_number,
);

/// The operator's way back after fixing a cause (`media.max_bytes` here): failed downloads go
/// back in the queue and the running server tries them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_downloads_are_requeued_by_the_admin_command() {
    let env = env(Backend::Sqlite, |config| config.media.max_bytes = 16).await;
    let wamid = env.inbound("document", json!({})).await;
    assert_eq!(env.settled(&wamid).await["media_data"]["status"], "failed");
    let number = uuid::Uuid::parse_str(
        env.app
            .get(&format!("/platform/v1/whatsapp/phone_numbers/{}", env.pnid))
            .await
            .1["data"]["internal_id"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let row = |store: wagate::store::DynStore, wamid: String| async move {
        store
            .media_files_of(number, &[wamid])
            .await
            .unwrap()
            .remove(0)
    };
    let failed = row(env.app.store.clone(), wamid.clone()).await;

    let output = env
        .app
        .wagate_command(&["admin", "media", "requeue-failed", "--json"])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["requeued"], 1);
    // The server tried again (and, the cause unchanged, failed again, later).
    let store = env.app.store.clone();
    eventually(
        Duration::from_secs(20),
        "the requeued download to run again",
        || {
            let (store, wamid, before) = (store.clone(), wamid.clone(), failed.updated_at);
            async move {
                let again = row(store, wamid).await;
                (again.state == "failed" && again.updated_at > before).then_some(())
            }
        },
    )
    .await;
}
