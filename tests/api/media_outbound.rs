//! The media vault's outbound side and retention: media sent by `link` is fetched once through
//! the SSRF rules; an upload is kept while it streams to Meta, so sending it downloads nothing;
//! files past `media.retention` go (a file a newer message shares stays) and their messages say
//! `expired`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::Connection as _;
use wagate::config::Backend;

use crate::common::graph::Canned;
use crate::common::s3::{TestBucket, VaultPlace};
use crate::common::{eventually, TestApp};
use crate::media_vault::{env, Env, MEDIA_FIELDS, V};

/// A web server the test controls, standing in for the app's own file host: serves `bytes`
/// at every path with `content_type`, counting requests.
struct FileHost {
    url: String,
    hits: Arc<AtomicUsize>,
}

async fn file_host(bytes: &'static [u8], content_type: &'static str) -> FileHost {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let router = axum::Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            ([("content-type", content_type)], bytes)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    FileHost { url, hits }
}

impl Env {
    /// Sends an image by link through the proxy; returns its wamid.
    async fn send_link(&self, link: &str) -> String {
        let (status, sent) = self
            .app
            .call(
                Method::POST,
                &format!("{V}/{}/messages", self.pnid),
                Some(json!({"messaging_product": "whatsapp", "to": "15551234567",
                            "type": "image", "image": {"link": link}})),
            )
            .await;
        assert_eq!(status, 200, "{sent}");
        sent["messages"][0]["id"].as_str().unwrap().to_owned()
    }

    async fn kapso(&self, wamid: &str) -> Value {
        let path = format!("{V}/{}/messages/{wamid}?{MEDIA_FIELDS}", self.pnid);
        let (status, body) = self.app.get(&path).await;
        assert_eq!(status, 200, "{body}");
        body["kapso"].clone()
    }

    async fn fetch(&self, url: &str) -> (u16, Vec<u8>) {
        let response = self.http.get(url).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.bytes().await.unwrap().to_vec())
    }
}

const JPEG: &[u8] = b"\xff\xd8\xff\xe0 a photo the app hosts itself";

async fn media_sent_by_link_is_fetched_once_and_kept(backend: Backend) {
    link_journey(backend, VaultPlace::Folder).await;
}

async fn media_sent_by_link_is_kept_in_an_s3_bucket(backend: Backend) {
    if let Some(bucket) = TestBucket::open() {
        link_journey(backend, VaultPlace::Bucket(bucket)).await;
    }
}

async fn link_journey(backend: Backend, place: VaultPlace) {
    let env = env(backend, |config| place.configure(config)).await;
    let host = file_host(JPEG, "image/jpeg").await;
    let wamid = env.send_link(&format!("{}/photos/1.jpg", host.url)).await;
    let kapso = env.settled(&wamid).await;
    assert_eq!(kapso["media_data"]["status"], "stored", "{kapso}");
    assert_eq!(kapso["has_media"], true);
    assert_eq!(kapso["media_data"]["content_type"], "image/jpeg");
    assert_eq!(kapso["media_data"]["byte_size"], JPEG.len());
    let url = kapso["media_url"].as_str().unwrap();
    for _ in 0..2 {
        assert_eq!(env.fetch(url).await, (200, JPEG.to_vec()));
    }
    // Served from the vault: the app's host was asked once, by the download.
    assert_eq!(host.hits.load(Ordering::SeqCst), 1);
}

/// Off (the default), a link to this machine is never fetched, and the message says why: the
/// address on a standard port, the port otherwise.
async fn links_to_private_addresses_are_refused(backend: Backend) {
    let env = env(backend, |config| config.media.allow_private_links = false).await;
    let host = file_host(JPEG, "image/jpeg").await;
    for (link, reason) in [
        ("http://127.0.0.1/photos/1.jpg".to_owned(), "127.0.0.1"),
        (format!("{}/photos/1.jpg", host.url), "port"),
    ] {
        let wamid = env.send_link(&link).await;
        let kapso = env.settled(&wamid).await;
        assert_eq!(kapso["media_data"]["status"], "failed", "{kapso}");
        assert_eq!(kapso["has_media"], false);
        assert!(kapso["media_url"].is_null());
        let error = kapso["media_data"]["error"].as_str().unwrap();
        assert!(
            error.contains(reason) && error.contains("media.allow_private_links"),
            "{error}"
        );
    }
    assert_eq!(host.hits.load(Ordering::SeqCst), 0);
}

fn multipart(boundary: &str, file: &[u8]) -> Vec<u8> {
    crate::common::media_upload(boundary, "report.pdf", "application/pdf", file)
}

fn canned(status: u16, body: Value) -> Canned {
    Canned {
        status,
        content_type: "application/json",
        body: body.to_string().into_bytes(),
        delay: Duration::ZERO,
    }
}

async fn upload(app: &TestApp, pnid: &str, file: &[u8]) -> reqwest::Response {
    let boundary = "keep-as-it-streams";
    app.request(Method::POST, &format!("{V}/{pnid}/media"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(multipart(boundary, file))
        .send()
        .await
        .unwrap()
}

/// A 3 MiB document uploaded through wagate is kept on its way to Meta (Meta gets the exact
/// bytes); the message that sends it is stored from that copy without asking Graph for it.
async fn an_upload_is_kept_as_it_streams_and_sending_it_downloads_nothing(backend: Backend) {
    upload_journey(backend, VaultPlace::Folder).await;
}

async fn an_upload_is_kept_in_an_s3_bucket_as_it_streams(backend: Backend) {
    if let Some(bucket) = TestBucket::open() {
        upload_journey(backend, VaultPlace::Bucket(bucket)).await;
    }
}

async fn upload_journey(backend: Backend, place: VaultPlace) {
    let app = TestApp::spawn_with(backend, |config| place.configure(config)).await;
    let number = app.connect(&app.api_key, "1301", "2301", None).await;
    let file: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let sha256 = hex::encode(Sha256::digest(&file));

    app.graph
        .respond(canned(200, json!({"id": "4490709327384033"})));
    let answer = upload(&app, "1301", &file).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.json::<Value>().await.unwrap(),
        json!({"id": "4490709327384033"})
    );
    let forwarded = app.graph.last();
    assert_eq!(
        forwarded.body_sha256,
        hex::encode(Sha256::digest(multipart("keep-as-it-streams", &file)))
    );
    let store = app.store.clone();
    let kept = eventually(Duration::from_secs(10), "the upload to be kept", || {
        let store = store.clone();
        async move {
            store
                .kept_upload(number.internal_id, "4490709327384033")
                .await
                .unwrap()
        }
    })
    .await;
    assert_eq!(kept.sha256.as_deref(), Some(sha256.as_str()));
    assert_eq!(kept.byte_size, Some(file.len() as i64));
    assert_eq!(kept.filename.as_deref(), Some("report.pdf"));
    assert_eq!(kept.content_type.as_deref(), Some("application/pdf"));

    app.graph.respond(canned(
        200,
        json!({"messaging_product": "whatsapp", "contacts": [{"input": "15551234567", "wa_id": "15551234567"}],
               "messages": [{"id": "wamid.SENT-KEPT-UPLOAD"}]}),
    ));
    let (status, sent) = app
        .call(
            Method::POST,
            &format!("{V}/1301/messages"),
            Some(
                json!({"messaging_product": "whatsapp", "to": "15551234567", "type": "document",
                        "document": {"id": "4490709327384033", "filename": "report.pdf"}}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{sent}");
    let path = format!("{V}/1301/messages/wamid.SENT-KEPT-UPLOAD?{MEDIA_FIELDS}");
    let kapso = eventually(
        Duration::from_secs(10),
        "the sent document's media",
        || async {
            let (_, body) = app.get(&path).await;
            (body["kapso"]["media_data"]["status"] == "stored").then(|| body["kapso"].clone())
        },
    )
    .await;
    assert_eq!(kapso["media_data"]["byte_size"], file.len());
    let served = reqwest::get(kapso["media_url"].as_str().unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(
        served.as_ref() == file.as_slice(),
        "the kept upload is served"
    );
    // Graph was asked for nothing after the send: no media lookup, no download.
    let asked: Vec<String> = app
        .graph
        .recorded()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path_and_query))
        .collect();
    assert!(
        !asked.iter().any(|r| r.contains("4490709327384033")),
        "{asked:?}"
    );
}

/// Meta refused the upload: there is no media id to keep it under, and the copy goes.
async fn a_refused_upload_leaves_nothing_behind(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.connect(&app.api_key, "1302", "2302", None).await;
    app.graph.respond(canned(
        400,
        json!({"error": {"message": "(#100) Param file must be a file with one of the following types", "type": "OAuthException", "code": 100}}),
    ));
    let answer = upload(&app, "1302", b"not really a pdf").await;
    assert_eq!(answer.status(), 400);
    until_no_kept_files(&VaultPlace::Folder, &app, "the refused upload's copy to go").await;
}

/// Waits until the vault holds no kept file (in-progress writes aside).
async fn until_no_kept_files(place: &VaultPlace, app: &TestApp, what: &str) {
    eventually(Duration::from_secs(10), what, || async {
        let contents = place.contents(&app.config).await;
        contents.iter().all(|f| !f.contains("sha256")).then_some(())
    })
    .await;
}

/// Moves a message's `stored_at` into the past, as if it had been kept long ago.
async fn backdate(env: &Env, wamid: &str) {
    let url = secrecy::ExposeSecret::expose_secret(&env.app.config.database.url).to_owned();
    let sql = "update media_files set stored_at = '2020-01-01T00:00:00+00:00' where wamid = $1";
    if url.starts_with("sqlite") {
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query(sql)
            .bind(wamid)
            .execute(&mut conn)
            .await
            .unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query(sql)
            .bind(wamid)
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

async fn until_expired(env: &Env, wamid: &str) -> Value {
    eventually(Duration::from_secs(10), "the file to expire", || async {
        let kapso = env.kapso(wamid).await;
        (kapso["media_data"]["status"] == "expired").then_some(kapso)
    })
    .await
}

async fn files_past_retention_go_and_shared_ones_stay(backend: Backend) {
    retention(backend, VaultPlace::Folder).await;
}

async fn retention_removes_files_from_an_s3_bucket(backend: Backend) {
    if let Some(bucket) = TestBucket::open() {
        retention(backend, VaultPlace::Bucket(bucket)).await;
    }
}

async fn retention(backend: Backend, place: VaultPlace) {
    let env = env(backend, |config| {
        place.configure(config);
        config.media.retention = Some(Duration::from_secs(3600));
        config.media.sweep_interval = Duration::from_millis(100);
    })
    .await;
    let host = file_host(JPEG, "image/jpeg").await;
    let old = env.send_link(&format!("{}/a.jpg", host.url)).await;
    let new = env.send_link(&format!("{}/b.jpg", host.url)).await;
    let old_url = env.settled(&old).await["media_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let new_url = env.settled(&new).await["media_url"]
        .as_str()
        .unwrap()
        .to_owned();

    backdate(&env, &old).await;
    let kapso = until_expired(&env, &old).await;
    assert_eq!(kapso["has_media"], false, "{kapso}");
    assert!(kapso["media_url"].is_null() && kapso["media_data"]["url"].is_null());
    assert_eq!(env.fetch(&old_url).await.0, 404);
    // The newer message shares the file: it stays, served.
    assert_eq!(env.kapso(&new).await["media_data"]["status"], "stored");
    assert_eq!(env.fetch(&new_url).await, (200, JPEG.to_vec()));

    backdate(&env, &new).await;
    until_expired(&env, &new).await;
    until_no_kept_files(&place, &env.app, "the file to be removed").await;
    assert_eq!(env.fetch(&new_url).await.0, 404);
}

crate::both_backends!(backend:
    media_sent_by_link_is_fetched_once_and_kept,
    links_to_private_addresses_are_refused,
    an_upload_is_kept_as_it_streams_and_sending_it_downloads_nothing,
    a_refused_upload_leaves_nothing_behind,
    files_past_retention_go_and_shared_ones_stay,
    media_sent_by_link_is_kept_in_an_s3_bucket,
    an_upload_is_kept_in_an_s3_bucket_as_it_streams,
    retention_removes_files_from_an_s3_bucket,
);
