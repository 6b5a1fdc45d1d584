//! Test harness: a real wagate on an ephemeral port, on SQLite or PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Client, Method, RequestBuilder};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use wagate::config::{Backend, Config};
use wagate::store::{DynStore, NewCustomer};
use wagate::App;

use crate::graph_mock::GraphMock;

/// Base URL of the PostgreSQL server tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("WAGATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A fresh, empty database URL for one test.
pub async fn fresh_database_url(backend: Backend, dir: &std::path::Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}/wagate.db", dir.display()),
        Backend::Postgres => {
            use sqlx::Connection as _;
            let admin = postgres_admin_url();
            let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
                panic!("PostgreSQL tests need a server at {admin} (set WAGATE_TEST_POSTGRES_URL): {e}")
            });
            let name = format!("wagate_test_{}", uuid::Uuid::new_v4().simple());
            sqlx::query(&format!("create database {name}"))
                .execute(&mut conn)
                .await
                .expect("create test database");
            let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
            format!("{base}/{name}")
        }
    }
}

/// The Meta app secret test apps verify webhooks with (the emulator's default).
pub const APP_SECRET: &str = "sandbox-app-secret";
pub const VERIFY_TOKEN: &str = "test-verify-token";

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
    shutdown: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let graph = GraphMock::start().await;
        let mut config = test_config(fresh_database_url(backend, dir.path()).await);
        config.graph.base_url = graph.url.clone();
        adjust(&mut config);
        let app = App::build(config).await.expect("app builds");
        let (project, key) = app.bootstrap.as_ref().expect("fresh database bootstraps");
        let (project_id, api_key) = (project.id, key.plaintext.clone());
        let addr = app.local_addr();
        let store = app.store();
        let config = app.state.config.clone();
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
            shutdown: Some(tx),
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
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
        let (project, key) = wagate::domain::projects::create_project(&*self.store, "other")
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

    /// Connects a number through the Platform API with `key`; returns the response data.
    pub async fn connect_number(
        &self,
        key: &str,
        phone_number_id: &str,
        waba: &str,
        token: &str,
    ) -> Value {
        let response = self
            .request_with_key(Method::POST, "/platform/v1/whatsapp/phone_numbers", key)
            .json(&json!({"whatsapp_phone_number": {
                "phone_number_id": phone_number_id,
                "business_account_id": waba,
                "access_token": token,
                "name": format!("Line {phone_number_id}"),
                "display_phone_number": "+1 555-000-0001",
            }}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "connect {phone_number_id}");
        response.json::<Value>().await.unwrap()["data"].clone()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Runs an async test body once per backend: `backend_tests!(name, ...)` expects
/// `async fn name(app: TestApp)` in scope and generates `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let app = $crate::helpers::TestApp::spawn(wagate::config::Backend::Sqlite).await;
                    super::$name(app).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let app = $crate::helpers::TestApp::spawn(wagate::config::Backend::Postgres).await;
                    super::$name(app).await;
                }
            }
        )*
    };
}

/// `backend_tests_with!(adjust; name, ...)`: like `backend_tests!`, with `fn adjust(&mut Config)`
/// applied to the configuration first.
#[macro_export]
macro_rules! backend_tests_with {
    ($adjust:path; $($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let app = $crate::helpers::TestApp::spawn_with(wagate::config::Backend::Sqlite, $adjust).await;
                    super::$name(app).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let app = $crate::helpers::TestApp::spawn_with(wagate::config::Backend::Postgres, $adjust).await;
                    super::$name(app).await;
                }
            }
        )*
    };
}

/// `backend_fns!(name, ...)`: for `async fn name(backend: Backend)` tests that build their own
/// environment; generates `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! backend_fns {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(wagate::config::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(wagate::config::Backend::Postgres).await
            }
        }
    )*};
}

/// Same as `backend_tests!` for store-level tests: `async fn name(store: DynStore)`.
#[macro_export]
macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                async fn open(backend: wagate::config::Backend) -> (wagate::store::DynStore, tempfile::TempDir) {
                    let dir = tempfile::tempdir().unwrap();
                    let url = $crate::helpers::fresh_database_url(backend, dir.path()).await;
                    let config = $crate::helpers::test_config(url);
                    (wagate::store::connect(&config.database).await.unwrap(), dir)
                }
                #[tokio::test]
                async fn sqlite() {
                    let (store, _dir) = open(wagate::config::Backend::Sqlite).await;
                    super::$name(store).await;
                }
                #[tokio::test]
                async fn postgres() {
                    let (store, _dir) = open(wagate::config::Backend::Postgres).await;
                    super::$name(store).await;
                }
            }
        )*
    };
}
