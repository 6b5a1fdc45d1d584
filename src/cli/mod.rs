//! Command line: `serve` (default), `migrate`, `admin …` (projects, API keys, webhook events,
//! secrets), `sandbox`.

mod bootstrap;
mod output;
mod sandbox_mode;
mod secrets;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use uuid::Uuid;

use crate::config::Config;
use crate::domain::projects;
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::store::{self, StoreError};
use crate::telemetry::logs as telemetry;
use crate::time::iso;
use crate::App;
use bootstrap::announce_bootstrap;
pub use output::Output;

#[derive(Debug, Parser)]
#[command(
    name = "wagate",
    version,
    about = "Self-hosted gateway for Meta's WhatsApp Cloud API"
)]
pub struct Cli {
    /// Config file (default: config/wagate.toml when present). Env WAGATE__SECTION__KEY overrides it.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server and background workers (the default).
    Serve(ServeArgs),
    /// Run the local Graph emulator (a stand-in for Meta) on its own port.
    Sandbox(SandboxArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Manage projects and API keys directly in the database.
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// Also start the Graph emulator in-process and point the gateway at it, with a connected
    /// demo number: try everything without a Meta account.
    #[arg(long)]
    pub sandbox: bool,
}

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Address the emulator listens on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: std::net::SocketAddr,
    /// Where it delivers signed webhooks (e.g. http://127.0.0.1:8080/webhooks/whatsapp).
    #[arg(long)]
    pub webhook_url: Option<String>,
    /// The app secret it signs webhooks with (X-Hub-Signature-256); match meta.app_secret.
    #[arg(long, default_value = "sandbox-app-secret")]
    pub app_secret: String,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Projects (tenants).
    #[command(subcommand)]
    Projects(ProjectsCommand),
    /// Project API keys.
    #[command(subcommand, name = "api-keys")]
    ApiKeys(ApiKeysCommand),
    /// Raw webhook events as Meta delivered them (failed and unrouted ones included).
    #[command(subcommand, name = "webhook-events")]
    WebhookEvents(WebhookEventsCommand),
    /// Stored secrets: re-seal them, rotate the master key.
    #[command(subcommand)]
    Secrets(secrets::SecretsCommand),
    /// The media vault's downloads.
    #[command(subcommand)]
    Media(MediaCommand),
}

#[derive(Debug, Subcommand)]
pub enum MediaCommand {
    /// Puts failed downloads back in the queue (after fixing what made them fail: a bucket's
    /// permissions, media.max_bytes); running servers pick them up within media.poll_interval.
    #[command(name = "requeue-failed")]
    RequeueFailed {
        /// Only this project's.
        #[arg(long)]
        project: Option<Uuid>,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum WebhookEventsCommand {
    /// Newest events first.
    List {
        /// Only this state: processed, invalid_json or unrouted.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProjectsCommand {
    /// Create a project and print its first API key (shown only once).
    Create {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApiKeysCommand {
    /// Issue a new API key for a project (shown only once).
    Create {
        #[arg(long)]
        project: Uuid,
        #[command(flatten)]
        output: Output,
    },
    /// List a project's keys (prefixes only; keys are stored hashed).
    List {
        #[arg(long)]
        project: Uuid,
        #[command(flatten)]
        output: Output,
    },
    /// Revoke a key by its id; running servers on this database refuse it within a second
    /// (they hear of the change through the database's change feed).
    Revoke {
        key_id: Uuid,
        #[command(flatten)]
        output: Output,
    },
}

/// The configuration `cli` names (file, then environment).
pub fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    Ok(Config::load(cli.config.as_deref())?)
}

/// The runtime the command runs on. In the thread-per-core shape the HTTP threads bring their
/// own runtimes and this one keeps only the background work (deliveries, sweeps, the writer's
/// commits), so one worker unless `TOKIO_WORKER_THREADS` says otherwise: a worker per core
/// beside the HTTP threads only added context switches (README "Benchmarks").
pub fn main_runtime(config: &Config) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if config.server.runtime == crate::config::RuntimeShape::ThreadPerCore
        && std::env::var_os("TOKIO_WORKER_THREADS").is_none()
    {
        builder.worker_threads(1);
    }
    builder.enable_all().build()
}

pub async fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    telemetry::init(&config.log);
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) if args.sandbox => sandbox_mode::serve_with_sandbox(config).await,
        Command::Serve(_) => serve(config).await,
        Command::Sandbox(args) => sandbox(args).await,
        Command::Migrate => {
            store::connect(&config.database).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Admin(command) => admin(config, command).await,
    }
}

async fn sandbox(args: SandboxArgs) -> anyhow::Result<()> {
    let mut config = SandboxConfig::demo();
    config.webhook_url = args.webhook_url;
    config.app_secret = args.app_secret;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding --listen {}", args.listen))?;
    let number = &config.numbers[0];
    println!("Graph emulator on http://{}", listener.local_addr()?);
    println!(
        "Demo number: phone_number_id {} (WABA {}), access token {}",
        number.phone_number_id, number.business_account_id, number.access_token
    );
    println!(
        "Point wagate at it with WAGATE__GRAPH__BASE_URL=http://{}",
        listener.local_addr()?
    );
    Sandbox::new(config)
        .serve(listener, crate::http::server::shutdown_signal())
        .await?;
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = App::build(config).await?;
    announce_bootstrap(&app)?;
    tracing::info!(addr = %app.local_addr(), backend = ?app.state.store.backend(), "wagate listening");
    app.run(crate::http::server::shutdown_signal()).await
}

fn not_found(what: &str, id: Uuid) -> impl FnOnce(StoreError) -> anyhow::Error + '_ {
    move |e| match e {
        StoreError::NotFound => anyhow::anyhow!("{what} {id} does not exist"),
        other => anyhow::Error::new(other),
    }
}

async fn admin(config: Config, command: AdminCommand) -> anyhow::Result<()> {
    if let AdminCommand::Secrets(command) = command {
        return secrets::run(config, command).await;
    }
    let store = store::connect(&config.database).await?;
    // Keys are issued with the checksum keyed by the master key, as the server would.
    let checksum = || -> anyhow::Result<_> {
        Ok(crate::crypto::ApiKeyChecksum::with_previous(
            &crate::load_master_key(&config)?,
            &config.security.decoded_previous_master_keys()?,
        ))
    };
    match command {
        AdminCommand::Secrets(_) => unreachable!("handled above"),
        AdminCommand::Projects(ProjectsCommand::Create { name, output }) => {
            let name = name.trim();
            anyhow::ensure!(!name.is_empty(), "--name must not be empty");
            let (project, key) = projects::create_project(&*store, &checksum()?, name).await?;
            if output.json {
                println!(
                    "{}",
                    json!({"id": project.id, "name": project.name, "api_key": key.plaintext})
                );
            } else {
                println!("project {} ({})", project.name, project.id);
                println!("api key (shown only once): {}", key.plaintext);
            }
        }
        AdminCommand::ApiKeys(ApiKeysCommand::Create { project, output }) => {
            let key = projects::issue_api_key(&*store, &checksum()?, project)
                .await
                .map_err(not_found("project", project))?;
            if output.json {
                println!(
                    "{}",
                    json!({"id": key.record.id, "project_id": project, "api_key": key.plaintext})
                );
            } else {
                println!("key {} for project {project}", key.record.id);
                println!("api key (shown only once): {}", key.plaintext);
            }
        }
        AdminCommand::ApiKeys(ApiKeysCommand::List { project, output }) => {
            store
                .get_project(project)
                .await
                .map_err(not_found("project", project))?;
            let keys = store.list_api_keys(project).await?;
            if output.json {
                let keys: Vec<_> = keys
                    .iter()
                    .map(|k| {
                        json!({"id": k.id, "prefix": k.display_prefix, "created_at": iso(k.created_at),
                               "revoked_at": k.revoked_at.map(iso)})
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(keys));
            } else {
                for k in keys {
                    let state = k
                        .revoked_at
                        .map(|t| format!("revoked {}", iso(t)))
                        .unwrap_or_else(|| "active".into());
                    println!(
                        "{}  {}…  created {}  {state}",
                        k.id,
                        k.display_prefix,
                        iso(k.created_at)
                    );
                }
            }
        }
        AdminCommand::WebhookEvents(WebhookEventsCommand::List {
            state,
            limit,
            output,
        }) => {
            let events = store
                .webhook_events(state.as_deref(), limit.clamp(1, 1000))
                .await?;
            for event in events {
                let body = String::from_utf8_lossy(&event.body);
                if output.json {
                    println!(
                        "{}",
                        json!({"id": event.id, "received_at": iso(event.received_at), "state": event.state,
                               "error": event.error, "body": body})
                    );
                } else {
                    let preview: String = body.chars().take(120).collect();
                    let error = event.error.map(|e| format!(" ({e})")).unwrap_or_default();
                    println!(
                        "{}  {}  {}{error}  {preview}",
                        iso(event.received_at),
                        event.id,
                        event.state
                    );
                }
            }
        }
        AdminCommand::Media(MediaCommand::RequeueFailed { project, output }) => {
            let requeued = store
                .requeue_failed_media(project, crate::store::now())
                .await?;
            if output.json {
                println!("{}", json!({ "requeued": requeued }));
            } else {
                println!("requeued {requeued} failed media download(s)");
            }
        }
        AdminCommand::ApiKeys(ApiKeysCommand::Revoke { key_id, output }) => {
            let key = store
                .revoke_api_key(key_id)
                .await
                .map_err(not_found("API key", key_id))
                .context("revoking the key")?;
            if output.json {
                println!(
                    "{}",
                    json!({"id": key.id, "revoked_at": key.revoked_at.map(iso)})
                );
            } else {
                println!("revoked key {} ({}…)", key.id, key.display_prefix);
            }
        }
    }
    Ok(())
}
