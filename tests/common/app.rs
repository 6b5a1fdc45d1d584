//! A real wagate on an ephemeral port, on SQLite or PostgreSQL, and what tests do with it:
//! Platform API calls, connected numbers, signed Meta webhooks.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Client, Method, RequestBuilder};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use wagate::config::{Backend, Config};
use wagate::store::{DynStore, NewCustomer};
use wagate::App;

use super::graph::GraphMock;
use super::meta::{self, APP_SECRET, VERIFY_TOKEN};

pub const NUMBERS: &str = "/platform/v1/whatsapp/phone_numbers";

/// A fresh, empty database URL for one test: a file in `dir`, or a new PostgreSQL database.
pub async fn fresh_database_url(backend: Backend, dir: &std::path::Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}/wagate.db", dir.display()),
        Backend::Postgres => super::postgres::fresh_database().await,
    }
}

/// wagate's warnings and errors go to stderr, which nextest shows only for a failing test: what
/// the server saw when a test failed, without a rerun. `WAGATE_TEST_LOG` sets another filter
/// (e.g. `wagate=debug`).
fn log_to_stderr() {
    let filter = std::env::var("WAGATE_TEST_LOG").unwrap_or_else(|_| "wagate=warn".into());
    // Fails harmlessly after the first app of a process: the subscriber is already set.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

/// A fresh, migrated store without a server; the directory holds the SQLite file.
pub async fn open_store(backend: Backend) -> (DynStore, tempfile::TempDir) {
    log_to_stderr();
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(backend, dir.path()).await;
    let config = test_config(url);
    (wagate::store::connect(&config.database).await.unwrap(), dir)
}

pub fn test_config(database_url: String) -> Config {
    let mut config = Config::defaults();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.database.url = database_url.into();
    config.security.master_key = wagate::crypto::new_master_key().into();
    config.log.level = "warn".into();
    config.meta.app_secret = APP_SECRET.to_owned().into();
    config.meta.verify_token = VERIFY_TOKEN.to_owned().into();
    // Short enough to keep the suite fast; the defaults (10 s, 5 s) are checked in unit tests.
    config.server.header_read_timeout = Duration::from_secs(2);
    config.server.body_idle_timeout = Duration::from_secs(2);
    config.cache.ttl = Duration::from_secs(2);
    // Test receivers listen on loopback over http; the SSRF tests switch these back off.
    config.delivery.allow_http = true;
    config.delivery.allow_private_networks = true;
    // Media sent by link comes from loopback test servers too.
    config.media.allow_private_links = true;
    // Never the working folder (PostgreSQL's default): apps built straight from this config
    // share one scratch folder; `TestApp` gives each app its own.
    config.media.store = std::env::temp_dir()
        .join("wagate-test-media")
        .display()
        .to_string();
    // A spill file is locked by its instance: each config gets its own (`TestApp` puts it in
    // the app's folder).
    config.writer.spill_path = std::env::temp_dir()
        .join(format!("wagate-test-spill-{}", uuid::Uuid::new_v4()))
        .display()
        .to_string();
    config
}

pub struct TestApp {
    /// The recording Graph stand-in `graph.base_url` points at.
    pub graph: GraphMock,
    pub addr: std::net::SocketAddr,
    pub base: String,
    pub client: Client,
    /// The default project's key, created by the first-run bootstrap.
    pub api_key: String,
    pub project_id: uuid::Uuid,
    pub store: DynStore,
    pub config: Arc<Config>,
    /// The services the server runs with (the authenticator's legacy-key set, for one).
    pub state: wagate::http::state::AppState,
    /// This app's API-key checksum (from its master key): mints keys it accepts.
    pub checksum: wagate::crypto::ApiKeyChecksum,
    shutdown: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, |_| {}).await
    }

    /// An app whose `graph.base_url` is `graph_url` (the emulator's, usually), then `adjust`.
    pub async fn spawn_against(
        backend: Backend,
        graph_url: &str,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let graph_url = graph_url.to_owned();
        Self::spawn_with(backend, move |config| {
            config.graph.base_url = graph_url;
            adjust(config);
        })
        .await
    }

    pub async fn spawn_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Self {
        log_to_stderr();
        let dir = tempfile::tempdir().unwrap();
        let graph = GraphMock::start().await;
        let mut config = test_config(fresh_database_url(backend, dir.path()).await);
        config.graph.base_url = graph.url.clone();
        // Each app keeps its media in its own folder (on PostgreSQL the default is the working
        // folder, which every test would share).
        config.media.store = dir.path().join("media").display().to_string();
        config.writer.spill_path = dir.path().join("wagate.spill").display().to_string();
        adjust(&mut config);
        let app = App::build(config).await.expect("app builds");
        let (project, key) = app.bootstrap.as_ref().expect("fresh database bootstraps");
        let (project_id, api_key) = (project.id, key.plaintext.clone());
        let addr = app.local_addr();
        let store = app.store();
        let config = app.state.config.clone();
        let state = app.state.clone();
        let checksum =
            wagate::crypto::ApiKeyChecksum::new(&config.security.decoded_master_key().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(app.run(async move {
            let _ = rx.await;
        }));
        Self {
            graph,
            addr,
            base: format!("http://{addr}"),
            client: Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            api_key,
            project_id,
            store,
            config,
            state,
            checksum,
            shutdown: Some(tx),
            _dir: dir,
        }
    }

    /// The `wagate` binary with `args`, on this app's database and master key (the CLI an
    /// operator would run beside the server), logging warnings only.
    pub fn wagate_command(&self, args: &[&str]) -> tokio::process::Command {
        use secrecy::ExposeSecret as _;
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_wagate"));
        command
            .args(args)
            .env(
                "WAGATE__DATABASE__URL",
                self.config.database.url.expose_secret(),
            )
            .env(
                "WAGATE__SECURITY__MASTER_KEY",
                self.config.security.master_key.expose_secret(),
            )
            .env("WAGATE__LOG__LEVEL", "warn")
            .kill_on_drop(true);
        command
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET /metrics`: the Prometheus text.
    pub async fn metrics(&self) -> String {
        let response = self.client.get(self.url("/metrics")).send().await.unwrap();
        response.text().await.unwrap()
    }

    /// A request with this app's default API key.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header("x-api-key", &self.api_key)
    }

    pub fn request_with_key(&self, method: Method, path: &str, key: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header("x-api-key", key)
    }

    /// Creates a second project (another tenant) and returns its key.
    pub async fn other_project(&self) -> (uuid::Uuid, String) {
        let (project, key) =
            wagate::domain::projects::create_project(&*self.store, &self.checksum, "other")
                .await
                .unwrap();
        (project.id, key.plaintext)
    }

    pub async fn create_customer(&self, project_id: uuid::Uuid, name: &str) -> uuid::Uuid {
        self.store
            .create_customer(NewCustomer {
                project_id,
                name: name.into(),
                external_customer_id: None,
            })
            .await
            .unwrap()
            .id
    }

    /// A Platform API call with this app's key; returns the status and the JSON body (the text
    /// as a JSON string when it is not JSON).
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_with_key(&self.api_key, method, path, body).await
    }

    /// [`call`](Self::call) with `key`.
    pub async fn call_with_key(
        &self,
        key: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.request_with_key(method, path, key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        json_of(request.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None).await
    }

    /// POSTs `body` to the Meta webhook endpoint, signed with the app secret as Meta signs.
    pub async fn post_webhook(&self, body: &[u8]) -> reqwest::Response {
        meta::post_webhook(&self.client, &self.base, body).await
    }

    /// [`post_webhook`](Self::post_webhook), asserting it was acknowledged (stored).
    pub async fn post_webhook_ok(&self, body: &[u8]) {
        let response = self.post_webhook(body).await;
        assert_eq!(response.status(), 200, "webhook refused");
    }

    /// Connects a number through the Platform API with `key`: `input` is the
    /// `whatsapp_phone_number` object. Its `access_token` is first registered with the Graph
    /// double as the token Meta issued for the number and WABA ([`GraphMock::own`]), so
    /// verification succeeds as it would with Meta. Asserts 201; returns the response data.
    pub async fn connect_number_with(&self, key: &str, input: Value) -> Value {
        let pnid = input["phone_number_id"].clone();
        if let (Some(token), Some(id), Some(waba)) = (
            input["access_token"].as_str(),
            pnid.as_str(),
            input["business_account_id"].as_str(),
        ) {
            self.graph.own(token, id, waba);
        }
        let (status, body) = self
            .call_with_key(
                key,
                Method::POST,
                NUMBERS,
                Some(json!({ "whatsapp_phone_number": input })),
            )
            .await;
        assert_eq!(status, 201, "connect {pnid}: {body}");
        body["data"].clone()
    }

    /// Connects a number through the Platform API with `key`; returns the response data.
    pub async fn connect_number(
        &self,
        key: &str,
        phone_number_id: &str,
        waba: &str,
        token: &str,
    ) -> Value {
        self.connect_number_with(
            key,
            json!({
                "phone_number_id": phone_number_id,
                "business_account_id": waba,
                "access_token": token,
                "name": format!("Line {phone_number_id}"),
                "display_phone_number": "+1 555-000-0001",
            }),
        )
        .await
    }

    /// Connects one of the Graph emulator's numbers with this app's key; returns the data.
    pub async fn connect_emulator_number(&self, number: &wagate::sandbox::SandboxNumber) -> Value {
        self.connect_number(
            &self.api_key,
            &number.phone_number_id,
            &number.business_account_id,
            &number.access_token,
        )
        .await
    }

    /// Connects `pnid` (WABA `waba`, token `token-{pnid}`) with `key`, forwarding its webhooks
    /// to `url` when given; checks the destination and the generated secret come back.
    pub async fn connect(&self, key: &str, pnid: &str, waba: &str, url: Option<&str>) -> Number {
        let mut input = json!({
            "phone_number_id": pnid,
            "business_account_id": waba,
            "access_token": format!("token-{pnid}"),
            "name": format!("Line {pnid}"),
        });
        if let Some(url) = url {
            input["webhook_destination_url"] = json!(url);
        }
        let data = self.connect_number_with(key, input).await;
        assert_eq!(data["webhook_destination_url"], json!(url));
        Number {
            pnid: pnid.to_owned(),
            waba: waba.to_owned(),
            internal_id: data["internal_id"].as_str().unwrap().parse().unwrap(),
            secret: data["webhook_secret"]
                .as_str()
                .expect("a generated webhook secret is returned once")
                .to_owned(),
        }
    }

    /// `wagate_http_connections_parked`, read over a connection of its own that closes after
    /// (so it is not counted itself).
    pub async fn parked_connections(&self) -> usize {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix("wagate_http_connections_parked "))
            .map_or(0, |value| value.trim().parse::<f64>().unwrap() as usize)
    }

    /// The parked count once it holds still for longer than a connection takes to park
    /// (`park_after`) and is at least `at_least`: connections the test client pooled while the
    /// app started park too, so a test counts its own from there. Fails after 30 s.
    pub async fn parked_settled(&self, at_least: usize, park_after: Duration) -> usize {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut settled = self.parked_connections().await;
        loop {
            tokio::time::sleep(park_after * 2).await;
            let now = self.parked_connections().await;
            if now >= at_least && now == settled {
                return now;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the parked count never settled: {now} parked, at least {at_least} expected"
            );
            settled = now;
        }
    }

    /// Waits (up to 30 s) until `wagate_http_connections_parked` reads `expected`.
    pub async fn parked_reaches(&self, expected: usize, what: &str) {
        super::eventually(Duration::from_secs(30), what, || async {
            (self.parked_connections().await == expected).then_some(())
        })
        .await;
    }
}

/// A connected number: Meta's id, wagate's internal id, the secret its webhooks are signed with.
#[derive(Debug, Clone)]
pub struct Number {
    pub pnid: String,
    pub waba: String,
    pub internal_id: uuid::Uuid,
    pub secret: String,
}

impl Number {
    /// One inbound text message to this number, as Meta sends it (pretty-printed, so any
    /// re-encoding on the way would show).
    pub fn inbound(&self, wamid: &str, text: &str) -> Vec<u8> {
        serde_json::to_vec_pretty(&meta::envelope(
            &self.waba,
            "messages",
            self.text_value(wamid, text),
        ))
        .unwrap()
    }

    /// The `value` of a `messages` change carrying one inbound text to this number.
    pub fn text_value(&self, wamid: &str, text: &str) -> Value {
        meta::text_value(&self.pnid, wamid, text)
    }
}

/// The status and the JSON body of `response` (the text as a JSON string when it is not JSON).
pub async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
