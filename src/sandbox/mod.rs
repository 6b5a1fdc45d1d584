//! `wagate sandbox`: a local stand-in for Meta's Graph API (design.md §14).
//!
//! It answers the WhatsApp Cloud API routes the gateway forwards to (sends, media, templates,
//! business profile, registration, calls, usernames, `subscribed_apps`, OAuth code exchange)
//! with Meta's shapes and error codes, and it plays Meta's other half: signed webhooks for
//! message statuses, template reviews and anything injected through the control API under
//! `/_sandbox` (inbound messages of every type, BSUID-only users, calls, username and user-id
//! updates, batches, raw envelopes).
//!
//! Layout: `state` holds the world behind one mutex; `graph` parses `/{version}/{id}/{edge}`,
//! checks tokens and dispatches to one module per capability (`messages`, `media`, `templates`,
//! `numbers`, `calls`, `usernames`, `oauth`); `webhooks` builds envelopes and delivers them
//! signed; `control`, `inbound` and `events` are the test-facing API under `/_sandbox`.
//!
//! It also stands in for Twilio (`twilio`: the REST calls provisioning makes, signed inbound SMS
//! and calls) and for Meta's phone-number step of Embedded Signup (`signup`: the code sent to the
//! typed number, through the Twilio double when it owns it).

mod calls;
mod control;
mod events;
mod graph;
mod graph_errors;
mod inbound;
mod knobs;
mod limits;
mod lost_answers;
mod media;
mod messages;
mod numbers;
mod oauth;
mod platform_events;
mod request_log;
mod send_log;
mod signup;
mod state;
mod templates;
mod twilio;
mod usernames;
mod webhooks;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use self::request_log::RequestLog;
use self::state::World;
pub use self::twilio::TwilioAccount;
use self::webhooks::DeliveryLog;

/// The app ID the emulator claims to be (OAuth code exchange, `subscribed_apps`, `debug_token`).
pub const SANDBOX_APP_ID: &str = "900000000000001";

/// A phone number the emulator serves, with the WABA it belongs to and the token that opens it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxNumber {
    pub phone_number_id: String,
    pub business_account_id: String,
    pub access_token: String,
    pub display_phone_number: String,
    pub verified_name: String,
}

#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Where signed webhooks go (the gateway's `/webhooks/whatsapp`); `None` sends nothing.
    pub webhook_url: Option<String>,
    /// HMAC key for `X-Hub-Signature-256`, and the app secret for the OAuth code exchange.
    pub app_secret: String,
    /// Numbers served from the start (more can be added through `POST /_sandbox/numbers`).
    pub numbers: Vec<SandboxNumber>,
    /// Delay before each status webhook (`sent`, `delivered`, `read`) and template review.
    pub status_delay: Duration,
    /// Accounts the Twilio double knows (more through `POST /_sandbox/twilio/accounts`).
    pub twilio_accounts: Vec<TwilioAccount>,
}

impl SandboxConfig {
    /// One ready number, no webhook target, 200 ms between status webhooks.
    pub fn demo() -> Self {
        Self {
            webhook_url: None,
            app_secret: "sandbox-app-secret".into(),
            numbers: vec![SandboxNumber {
                phone_number_id: "100000000000001".into(),
                business_account_id: "200000000000001".into(),
                access_token: "sandbox-token-100000000000001".into(),
                display_phone_number: "+1 555-000-0001".into(),
                verified_name: "wagate sandbox".into(),
            }],
            status_delay: Duration::from_millis(200),
            twilio_accounts: vec![TwilioAccount::demo()],
        }
    }
}

/// The state every handler shares.
pub(crate) struct Shared {
    app_secret: String,
    status_delay: Duration,
    webhook_url: RwLock<Option<String>>,
    world: Mutex<World>,
    /// The Twilio double's accounts, numbers and deliveries.
    twilio: Mutex<twilio::TwilioWorld>,
    /// The accounts it started with (for `serve --sandbox` to register).
    twilio_accounts: Vec<TwilioAccount>,
    requests: RequestLog,
    deliveries: DeliveryLog,
    /// One client for every webhook delivery and callback verification, so connections pool.
    http: reqwest::Client,
}

impl Shared {
    /// The world, even if a panicking handler poisoned the lock: every mutation leaves it
    /// consistent, so the data is still good.
    fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn webhook_url(&self) -> Option<String> {
        self.webhook_url
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_webhook_url(&self, url: Option<String>) {
        *self
            .webhook_url
            .write()
            .unwrap_or_else(PoisonError::into_inner) = url;
    }
}

/// A running emulator; clones share one world.
#[derive(Clone)]
pub struct Sandbox {
    shared: Arc<Shared>,
}

impl Sandbox {
    pub fn new(config: SandboxConfig) -> Self {
        let mut world = World::default();
        for number in config.numbers {
            let id = number.phone_number_id.clone();
            if let Err(problem) = world.add_number(number, true) {
                tracing::warn!(phone_number_id = %id, %problem, "sandbox: skipping a configured number");
            }
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            // Meta's webhook requests carry this user agent; some receivers log or filter on it.
            .user_agent("facebookexternalua")
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self {
            shared: Arc::new(Shared {
                app_secret: config.app_secret,
                status_delay: config.status_delay,
                webhook_url: RwLock::new(config.webhook_url),
                world: Mutex::new(world),
                twilio: Mutex::new(twilio::TwilioWorld::new(&config.twilio_accounts)),
                twilio_accounts: config.twilio_accounts,
                requests: RequestLog::default(),
                deliveries: DeliveryLog::default(),
                http,
            }),
        }
    }

    /// Graph routes (`/{version}/…`) and the control API (`/_sandbox/…`), state applied.
    pub fn router(&self) -> Router {
        Router::new()
            .merge(control::router())
            .merge(twilio::routes())
            // Graph paths are parsed by hand: Meta's object IDs and edges are open-ended, and
            // one entry point lets every request be logged and authenticated the same way.
            .fallback(graph::handle)
            // Media uploads stream up to 100 MiB; the Graph handler enforces its own limits.
            .layer(DefaultBodyLimit::disable())
            .with_state(self.shared.clone())
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        // The peer address lets the control API refuse callers from other machines.
        let service = self
            .router()
            .into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, service)
            .with_graceful_shutdown(shutdown)
            .await
    }

    /// Binds `127.0.0.1:0` and serves in a background task until the runtime stops.
    pub async fn spawn(config: SandboxConfig) -> std::io::Result<(SocketAddr, Sandbox)> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let sandbox = Sandbox::new(config);
        let server = sandbox.clone();
        tokio::spawn(async move {
            if let Err(error) = server.serve(listener, std::future::pending()).await {
                tracing::error!(%error, "sandbox server stopped");
            }
        });
        Ok((addr, sandbox))
    }

    pub fn set_webhook_url(&self, url: Option<String>) {
        self.shared.set_webhook_url(url);
    }

    pub fn webhook_url(&self) -> Option<String> {
        self.shared.webhook_url()
    }

    /// The Twilio double's accounts from the configuration (the demo account by default).
    pub fn twilio_accounts(&self) -> Vec<TwilioAccount> {
        self.shared.twilio_accounts.clone()
    }

    /// Adds a number (and its WABA, if new) as `POST /_sandbox/numbers` does.
    pub fn add_number(&self, number: SandboxNumber) -> Result<(), String> {
        self.shared.world().add_number(number, true)
    }
}
