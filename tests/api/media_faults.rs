//! The media vault when things break: a `wagate serve` SIGKILLed mid-download finishes the file
//! after a restart and keeps it once (and what the killed write left is swept); a bucket that
//! goes down and comes back; a download cut by `media.download_timeout` or streamed past
//! `media.max_bytes` leaves nothing in the bucket. Media comes from a Graph double of this file
//! that serves a multi-MiB file, trickled when a test needs a download surely in flight.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use wagate::config::{Backend, Config};

use crate::common::meta::{self, sha256_hex};
use crate::common::process::{self, Instance};
use crate::common::s3::TestBucket;
use crate::common::tcp_switch::TcpSwitch;
use crate::common::{eventually, files_under, fresh_database_url, test_config, TestApp};

const V: &str = "/meta/whatsapp/v24.0";
const MEDIA_FIELDS: &str = "fields=kapso(has_media,media_url,media_data)";
const PNID: &str = "100000000000818";
const WABA: &str = "200000000000818";
const TOKEN: &str = "EAAG-media-faults";
/// object_store's multipart part (the vault's `CHUNK_BYTES`): a write past it has a part in the
/// store.
const PART: usize = 5 * 1024 * 1024;

/// How the double hands out the bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pace {
    /// All at once, every time.
    Whole,
    /// The first download: a part's worth and a bit at once, then a kilobyte every 100 ms (it
    /// never ends within a test); later downloads get everything at once.
    TrickleFirst,
}

/// A Graph double serving one file for every media id: `GET /{version}/{id}` answers Meta's
/// media node (url, mime type, sha256 and, unless left out, file_size), and the URL it names
/// gives the bytes to the number's token only.
struct MediaSource {
    url: String,
    state: Arc<SourceState>,
}

struct SourceState {
    base: OnceLock<String>,
    bytes: Bytes,
    pace: Pace,
    with_file_size: bool,
    downloads: AtomicUsize,
    /// Bytes the first (trickled) download has sent so far.
    trickled: AtomicUsize,
}

/// How much the trickled download sends at once before it slows to a crawl.
const BURST: usize = PART + PART / 10;

impl MediaSource {
    async fn start(bytes: Vec<u8>, pace: Pace, with_file_size: bool) -> Self {
        let state = Arc::new(SourceState {
            base: OnceLock::new(),
            bytes: Bytes::from(bytes),
            pace,
            with_file_size,
            downloads: AtomicUsize::new(0),
            trickled: AtomicUsize::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        state.base.set(url.clone()).unwrap();
        let app = axum::Router::new()
            .fallback(serve_media)
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, state }
    }

    fn sha256(&self) -> String {
        sha256_hex(&self.state.bytes)
    }

    fn downloads(&self) -> usize {
        self.state.downloads.load(Ordering::SeqCst)
    }

    fn trickled(&self) -> usize {
        self.state.trickled.load(Ordering::SeqCst)
    }
}

async fn serve_media(State(state): State<Arc<SourceState>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let authorized = request
        .headers()
        .get("authorization")
        .is_some_and(|v| v.as_bytes() == format!("Bearer {TOKEN}").as_bytes());
    if !authorized {
        return Response::builder().status(401).body(Body::empty()).unwrap();
    }
    if path.starts_with("/lookaside/") {
        let first = state.downloads.fetch_add(1, Ordering::SeqCst) == 0;
        let body = if first && state.pace == Pace::TrickleFirst {
            Body::from_stream(trickle(state.clone()))
        } else {
            Body::from(state.bytes.clone())
        };
        return Response::builder()
            .header("content-type", "image/jpeg")
            .body(body)
            .unwrap();
    }
    let Some(id) = path.strip_prefix("/v23.0/") else {
        return Response::builder().status(404).body(Body::empty()).unwrap();
    };
    let mut node = json!({
        "messaging_product": "whatsapp",
        "id": id,
        "url": format!("{}/lookaside/{id}", state.base.get().unwrap()),
        "mime_type": "image/jpeg",
        "sha256": sha256_hex(&state.bytes),
    });
    if state.with_file_size {
        node["file_size"] = json!(state.bytes.len().to_string());
    }
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from(node.to_string()))
        .unwrap()
}

/// The first download: [`BURST`] bytes in 64 KiB pieces, then a kilobyte every 100 ms.
fn trickle(state: Arc<SourceState>) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::unfold(0usize, move |sent| {
        let state = state.clone();
        async move {
            if sent >= state.bytes.len() {
                return None;
            }
            let piece = if sent < BURST {
                (64 * 1024).min(BURST - sent)
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                1024
            };
            let end = (sent + piece).min(state.bytes.len());
            state.trickled.store(end, Ordering::SeqCst);
            Some((Ok(state.bytes.slice(sent..end)), end))
        }
    })
}

/// `len` bytes that compress to nothing and repeat nowhere a part boundary could hide.
fn file_of(len: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len + 32);
    let mut block = Sha256::digest(b"media faults").to_vec();
    while bytes.len() < len {
        bytes.extend_from_slice(&block);
        block = Sha256::digest(&block).to_vec();
    }
    bytes.truncate(len);
    bytes
}

/// One inbound image from Meta for [`PNID`]; `sha256` as Meta's webhook carries it, or left out.
fn image_webhook(wamid: &str, media_id: &str, sha256: Option<&str>) -> Vec<u8> {
    let mut image = json!({"id": media_id, "mime_type": "image/jpeg", "caption": "a big one"});
    if let Some(sha256) = sha256 {
        image["sha256"] = json!(sha256);
    }
    meta::envelope(WABA, "messages", json!({
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550000818", "phone_number_id": PNID},
        "contacts": [{"profile": {"name": "Faulty"}, "wa_id": "15558180000"}],
        "messages": [{"from": "15558180000", "id": wamid, "timestamp": "1750000000", "type": "image", "image": image}]
    }))
    .to_string()
    .into_bytes()
}

/// The message's `kapso` block (media fields), read through `base` with `key`.
async fn kapso_of(http: &reqwest::Client, base: &str, key: &str, wamid: &str) -> Option<Value> {
    let response = http
        .get(format!("{base}{V}/{PNID}/messages/{wamid}?{MEDIA_FIELDS}"))
        .header("x-api-key", key)
        .send()
        .await
        .ok()?;
    if response.status() != 200 {
        return None;
    }
    Some(response.json::<Value>().await.ok()?["kapso"].clone())
}

/// The `kapso` block once `media_data.status` is `stored` (within 20 s).
async fn stored(http: &reqwest::Client, base: &str, key: &str, wamid: &str) -> Value {
    eventually(
        Duration::from_secs(20),
        "the media to be stored",
        || async {
            kapso_of(http, base, key, wamid)
                .await
                .filter(|kapso| kapso["media_data"]["status"] == "stored")
        },
    )
    .await
}

/// The bytes `media_url` serves (signed, no credential).
async fn served(http: &reqwest::Client, kapso: &Value) -> Vec<u8> {
    let url = kapso["media_url"].as_str().expect("a media_url");
    let response = http.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.bytes().await.unwrap().to_vec()
}

/// The files below `dir`, as paths relative to it, sorted.
fn relative_files(dir: &std::path::Path) -> Vec<String> {
    let mut files: Vec<String> = files_under(dir)
        .iter()
        .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
        .collect();
    files.sort();
    files
}

/// The media settings of the process tests: a short lease (it must exceed the download
/// timeout, as the configuration says) and quick retries.
const LEASE: Duration = Duration::from_secs(4);
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(3);

fn spawn_serving(
    dir: &std::path::Path,
    db: &str,
    graph: &str,
    media: &std::path::Path,
) -> Instance {
    process::spawn(
        dir,
        db,
        &[
            ("WAGATE__GRAPH__BASE_URL", graph.to_owned()),
            ("WAGATE__MEDIA__STORE", media.display().to_string()),
            ("WAGATE__MEDIA__LEASE", format!("{}ms", LEASE.as_millis())),
            (
                "WAGATE__MEDIA__DOWNLOAD_TIMEOUT",
                format!("{}ms", DOWNLOAD_TIMEOUT.as_millis()),
            ),
            ("WAGATE__MEDIA__POLL_INTERVAL", "100ms".into()),
            ("WAGATE__MEDIA__BACKOFF_INITIAL", "100ms".into()),
            ("WAGATE__MEDIA__BACKOFF_MAX", "400ms".into()),
        ],
    )
}

/// Connects [`PNID`] through the Platform API; returns its internal id.
async fn connect(http: &reqwest::Client, instance: &Instance, key: &str) -> uuid::Uuid {
    let response = http
        .post(format!(
            "{}/platform/v1/whatsapp/phone_numbers",
            instance.base
        ))
        .header("x-api-key", key)
        .json(&json!({"whatsapp_phone_number": {
            "phone_number_id": PNID, "business_account_id": WABA, "access_token": TOKEN,
        }}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    body["data"]["internal_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// A process SIGKILLed while it streams a 6 MiB file into the vault: the file is there after a
/// restart, complete and once, the message has one media row, and the staged write the kill
/// left in `incoming/` (a file per crash, forever, without the sweep) is gone.
async fn a_download_killed_mid_way_is_finished_after_a_restart_and_kept_once(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database_url(backend, dir.path()).await;
    let media = dir.path().join("media");
    let incoming = media.join("incoming");
    let original = file_of(6 * 1024 * 1024);
    let source = MediaSource::start(original.clone(), Pace::TrickleFirst, true).await;
    let http = reqwest::Client::new();

    let first = spawn_serving(dir.path(), &db, &source.url, &media);
    let key = first.api_key();
    let number = connect(&http, &first, &key).await;
    let wamid = "wamid.media-faults.killed";
    let response = meta::post_webhook(
        &http,
        &first.base,
        &image_webhook(wamid, "818000000001", Some(&source.sha256())),
    )
    .await;
    assert_eq!(response.status(), 200);

    // In flight: the double is crawling through the tail, and the first part is on disk.
    let staged = eventually(Duration::from_secs(15), "the download in flight", || {
        let files = files_under(&incoming);
        let on_disk = files.first().and_then(|f| std::fs::metadata(f).ok());
        let ready = source.trickled() >= BURST
            && files.len() == 1
            && on_disk.is_some_and(|m| m.len() >= PART as u64);
        std::future::ready(ready.then(|| files[0].clone()))
    })
    .await;
    first.kill();
    assert_eq!(source.downloads(), 1);
    assert!(
        staged.exists(),
        "a killed write leaves its staged file: {staged:?}"
    );

    // The killed claim is the process's until its lease runs out, and the sweep takes only
    // writes older than the lease: start again once the staged file is that old.
    eventually(
        LEASE * 3,
        "the killed write to be older than the lease",
        || {
            let age = std::fs::metadata(&staged)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok());
            std::future::ready(age.filter(|age| *age > LEASE + Duration::from_millis(250)))
        },
    )
    .await;
    let second = spawn_serving(dir.path(), &db, &source.url, &media);
    let kapso = stored(&http, &second.base, &key, wamid).await;
    assert_eq!(served(&http, &kapso).await, original);
    assert_eq!(kapso["media_data"]["byte_size"], json!(original.len()));
    assert_eq!(
        source.downloads(),
        2,
        "downloaded again once, after the restart"
    );

    let hash = source.sha256();
    assert_eq!(
        relative_files(&media),
        [format!("sha256/{}/{hash}", &hash[..2])],
        "one file, nothing staged"
    );
    let store = wagate::store::connect(&test_config(db).database)
        .await
        .unwrap();
    let rows = store
        .media_files_of(number, &[wamid.to_owned()])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].sha256.as_deref(), Some(hash.as_str()));
    assert_eq!(rows[0].state, "stored");
}

/// The media settings of the in-process tests: quick polls and retries.
fn fast_media(config: &mut Config, graph: &str) {
    config.graph.base_url = graph.to_owned();
    config.graph.verify_numbers = false;
    config.media.poll_interval = Duration::from_millis(50);
    config.media.backoff_initial = Duration::from_millis(100);
    config.media.backoff_max = Duration::from_millis(400);
}

/// An app on `backend` taking media from `source`, with the vault in `bucket` reached at
/// `endpoint`, and [`PNID`] connected; returns it with the number's internal id.
async fn app_on_bucket(
    backend: Backend,
    source: &MediaSource,
    bucket: &TestBucket,
    endpoint: &str,
    adjust: impl FnOnce(&mut Config),
) -> (TestApp, uuid::Uuid) {
    let app = TestApp::spawn_with(backend, |config| {
        fast_media(config, &source.url);
        bucket.configure(config, endpoint);
        adjust(config);
    })
    .await;
    let data = app.connect_number(&app.api_key, PNID, WABA, TOKEN).await;
    let number = data["internal_id"].as_str().unwrap().parse().unwrap();
    (app, number)
}

/// The S3 server goes away (a forwarder in front of it resets every connection): inbound images
/// stay pending, retried, with no URL to break; the server comes back and the file is kept and
/// served, once for two messages. One message names Meta's sha256 (the worker first asks the
/// store whether the file is kept), the other does not (it goes straight to writing).
async fn a_bucket_outage_is_retried_until_the_bucket_is_back(backend: Backend) {
    let Some(bucket) = TestBucket::open() else {
        return;
    };
    let target = bucket
        .endpoint
        .trim_start_matches("http://")
        .parse()
        .expect("the S3 endpoint is http://ip:port");
    let switch = TcpSwitch::start(target, false).await;
    let original = file_of(300 * 1024);
    let source = MediaSource::start(original.clone(), Pace::Whole, true).await;
    let (app, number) = app_on_bucket(backend, &source, &bucket, &switch.url(), |_| {}).await;
    let hash = source.sha256();
    let messages = [
        ("wamid.media-faults.outage.1", Some(hash.as_str())),
        ("wamid.media-faults.outage.2", None),
    ];
    for (i, (wamid, sha256)) in messages.iter().enumerate() {
        let id = format!("81800000010{i}");
        app.post_webhook_ok(&image_webhook(wamid, &id, *sha256))
            .await;
    }
    let wamids: Vec<String> = messages.iter().map(|(w, _)| w.to_string()).collect();

    // Retried: attempts grow, each says the store is unavailable, and it stays pending.
    let store = app.store.clone();
    let rows = eventually(
        Duration::from_secs(20),
        "retries while the bucket is down",
        || {
            let (store, wamids) = (store.clone(), wamids.clone());
            async move {
                let rows = store.media_files_of(number, &wamids).await.unwrap();
                (rows.len() == 2 && rows.iter().all(|r| r.attempts >= 3)).then_some(rows)
            }
        },
    )
    .await;
    for row in &rows {
        assert_eq!(row.state, "pending", "{row:?}");
        assert_eq!(
            row.last_error.as_deref(),
            Some("the media store is unavailable"),
            "{row:?}"
        );
        assert!(row.sha256.is_none());
    }
    for wamid in &wamids {
        let kapso = kapso_of(&app.client, &app.base, &app.api_key, wamid)
            .await
            .unwrap();
        assert_eq!(kapso["media_data"]["status"], "pending", "{kapso}");
        assert!(kapso["media_url"].is_null(), "{kapso}");
        assert!(kapso["media_data"]["url"].is_null(), "{kapso}");
        assert_eq!(kapso["has_media"], false);
    }

    switch.up();
    for wamid in &wamids {
        let kapso = stored(&app.client, &app.base, &app.api_key, wamid).await;
        assert_eq!(served(&app.client, &kapso).await, original);
    }
    assert_eq!(
        bucket.leftovers().await,
        [format!("sha256/{}/{hash}", &hash[..2])]
    );
}

/// A download cut off by `media.download_timeout` after a part reached the bucket: retried and
/// kept, and the cut write was aborted, not left as an unfinished multipart upload.
async fn a_timed_out_download_leaves_no_unfinished_upload(backend: Backend) {
    let Some(bucket) = TestBucket::open() else {
        return;
    };
    let original = file_of(6 * 1024 * 1024);
    let source = MediaSource::start(original.clone(), Pace::TrickleFirst, true).await;
    let endpoint = bucket.endpoint.clone();
    let (app, _) = app_on_bucket(backend, &source, &bucket, &endpoint, |config| {
        config.media.download_timeout = Duration::from_secs(2);
        config.media.lease = Duration::from_secs(3);
    })
    .await;
    let wamid = "wamid.media-faults.timeout";
    app.post_webhook_ok(&image_webhook(wamid, "818000000201", None))
        .await;
    let kapso = stored(&app.client, &app.base, &app.api_key, wamid).await;
    assert_eq!(served(&app.client, &kapso).await, original);
    assert_eq!(source.downloads(), 2, "timed out once, then kept");
    let hash = source.sha256();
    eventually(
        Duration::from_secs(10),
        "only the kept file in the bucket",
        || async {
            (bucket.leftovers().await == [format!("sha256/{}/{hash}", &hash[..2])]).then_some(())
        },
    )
    .await;
}

/// A file larger than `media.max_bytes` that Meta's node does not size: streamed until it
/// passes the limit (a part already in the bucket), then aborted; it fails, and the bucket
/// holds nothing.
async fn media_streamed_past_max_bytes_leaves_nothing_in_the_bucket(backend: Backend) {
    let Some(bucket) = TestBucket::open() else {
        return;
    };
    let source = MediaSource::start(file_of(7 * 1024 * 1024), Pace::Whole, false).await;
    let endpoint = bucket.endpoint.clone();
    let (app, _) = app_on_bucket(backend, &source, &bucket, &endpoint, |config| {
        config.media.max_bytes = 6 * 1024 * 1024;
    })
    .await;
    let wamid = "wamid.media-faults.oversize";
    app.post_webhook_ok(&image_webhook(wamid, "818000000301", None))
        .await;
    let kapso = eventually(Duration::from_secs(20), "the download to fail", || async {
        kapso_of(&app.client, &app.base, &app.api_key, wamid)
            .await
            .filter(|kapso| kapso["media_data"]["status"] == "failed")
    })
    .await;
    let error = kapso["media_data"]["error"].as_str().unwrap();
    assert!(error.contains("media.max_bytes"), "{kapso}");
    assert!(kapso["media_url"].is_null());
    assert_eq!(source.downloads(), 1, "failed for good, not retried");
    assert_eq!(bucket.leftovers().await, Vec::<String>::new());
}

crate::both_backends!(backend:
    a_download_killed_mid_way_is_finished_after_a_restart_and_kept_once,
    a_bucket_outage_is_retried_until_the_bucket_is_back,
    a_timed_out_download_leaves_no_unfinished_upload,
    media_streamed_past_max_bytes_leaves_nothing_in_the_bucket,
);
