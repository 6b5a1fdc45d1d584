//! `wagate serve --sandbox`: the gateway and the Graph emulator in one process, wired together,
//! with a demo number connected, so a newcomer can try every endpoint without a Meta account.

use secrecy::ExposeSecret;

use crate::config::{Backend, Config};
use crate::domain::phone_numbers;
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::App;

/// Sandbox mode turns off the SSRF guard, hands every number's token to the emulator and accepts
/// webhooks signed with a secret printed in this repository: never on a production setup.
fn refuse_real_setups(config: &Config) -> anyhow::Result<()> {
    if config.database.backend()? == Backend::Postgres {
        anyhow::bail!(
            "serve --sandbox runs on SQLite only: on PostgreSQL it would share a production database (it turns off the SSRF guard and sends tokens to the emulator); point WAGATE__DATABASE__URL at a sqlite:// file, or run `wagate serve` without --sandbox"
        );
    }
    if !config.meta.app_secret.expose_secret().is_empty() {
        anyhow::bail!(
            "serve --sandbox signs webhooks with a public secret and cannot be combined with a real meta.app_secret; unset it (WAGATE__META__APP_SECRET) for the sandbox, or run `wagate serve` without --sandbox"
        );
    }
    Ok(())
}

/// The emulator would receive the real access token of any number connected outside sandbox mode
/// (it stands in for Graph), so a database holding one is refused before anything is served.
async fn refuse_real_numbers(config: &Config) -> anyhow::Result<()> {
    let store = crate::store::connect(&config.database).await?;
    let real = store.count_phone_numbers_not_of_kind("sandbox").await;
    store.close().await;
    match real? {
        0 => Ok(()),
        n => anyhow::bail!(
            "serve --sandbox refuses this database: it holds {n} phone number(s) connected outside sandbox mode, whose real access tokens the sandbox would send to its emulator; give the sandbox its own database (WAGATE__DATABASE__URL=sqlite://sandbox-data/wagate.db), or run `wagate serve` without --sandbox"
        ),
    }
}

pub async fn serve_with_sandbox(mut config: Config) -> anyhow::Result<()> {
    refuse_real_setups(&config)?;
    refuse_real_numbers(&config).await?;
    config.sandbox_mode = true;
    let sandbox_config = SandboxConfig::demo();
    // The emulator signs webhooks with its own (public) app secret, and ingest verifies them
    // with it, as it would Meta's with the real one.
    config.meta.app_secret = sandbox_config.app_secret.clone().into();
    // Everything runs on this machine: the newcomer's webhook receiver is a local http:// URL.
    config.delivery.allow_http = true;
    config.delivery.allow_private_networks = true;
    config.onboarding.simulated_signup = true;
    config.meta.app_id = crate::sandbox::SANDBOX_APP_ID.into();
    let demo = sandbox_config.numbers[0].clone();
    let (sandbox_addr, sandbox) = Sandbox::spawn(sandbox_config).await?;
    config.graph.base_url = format!("http://{sandbox_addr}");
    // Provisioned setup links buy numbers from the emulator's Twilio double.
    config.provisioning.twilio_api_base = format!("http://{sandbox_addr}/twilio");

    let app = App::build(config).await?;
    let addr = app.local_addr();
    sandbox.set_webhook_url(Some(format!("http://{addr}/webhooks/whatsapp")));
    super::bootstrap::announce_bootstrap(&app)?;

    let store = app.store();
    if store
        .find_phone_number(&demo.phone_number_id)
        .await?
        .is_none()
    {
        // On a fresh database the demo number joins the default project just created; on an
        // existing one it gets a project of its own, so it never mixes with real numbers.
        let project_id = match &app.bootstrap {
            Some((project, _)) => project.id,
            None => {
                let (project, key) = app.state.api_keys.create_project("sandbox").await?;
                println!("Created project sandbox for the demo number.");
                super::bootstrap::hand_over_key(&app, project.id, &key.plaintext)?;
                project.id
            }
        };
        let input: phone_numbers::ConnectInput = serde_json::from_value(serde_json::json!({
            "phone_number_id": demo.phone_number_id,
            "business_account_id": demo.business_account_id,
            "access_token": demo.access_token,
            "name": "Sandbox demo",
            "kind": "sandbox",
            "display_phone_number": demo.display_phone_number,
            "verified_name": demo.verified_name,
        }))?;
        app.state
            .phone_numbers
            .connect(project_id, None, input)
            .await?;
        println!("Connected the demo number {}.", demo.phone_number_id);
    }
    if let Some(number) = store.find_phone_number(&demo.phone_number_id).await? {
        register_twilio_double(&app, &sandbox, number.project_id).await?;
    }
    println!("Graph emulator on http://{sandbox_addr} (control API under /_sandbox)");
    println!(
        "Try: curl -X POST http://{addr}/meta/whatsapp/v24.0/{}/messages -H 'X-API-Key: <the key above>' \\\n  -H 'content-type: application/json' -d '{{\"messaging_product\":\"whatsapp\",\"to\":\"15551234567\",\"type\":\"text\",\"text\":{{\"body\":\"hello\"}}}}'",
        demo.phone_number_id
    );
    tracing::info!(%addr, sandbox = %sandbox_addr, "wagate listening (sandbox mode)");
    app.run(crate::http::server::shutdown_signal()).await
}

/// Gives the demo number's project the Twilio double's demo account, so a
/// `provision_phone_number` setup link works out of the box (numbers are bought from the double,
/// Meta's code is texted to them). A project that registered an account of its own keeps it.
async fn register_twilio_double(
    app: &App,
    sandbox: &Sandbox,
    project_id: uuid::Uuid,
) -> anyhow::Result<()> {
    let Some(account) = sandbox.twilio_accounts().into_iter().next() else {
        return Ok(());
    };
    if app.store().provider(project_id, "twilio").await?.is_some() {
        return Ok(());
    }
    let input = crate::domain::provisioning::TwilioInput {
        account_sid: Some(account.account_sid),
        auth_token: Some(account.auth_token.into()),
    };
    app.state
        .provisioning
        .register_twilio(project_id, input)
        .await
        .map_err(|e| anyhow::anyhow!("could not register the Twilio double: {e}"))?;
    println!("Registered the emulator's Twilio double for provisioned setup links.");
    Ok(())
}
