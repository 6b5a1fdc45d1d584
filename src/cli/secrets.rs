//! `wagate admin secrets …`: re-sealing stored secrets and rotating the master key.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::json;

use super::output::Output;
use crate::config::{self, Config};
use crate::crypto::SecretBox;
use crate::domain::reseal::{self, Report, Scope};
use crate::store;

/// Where the new master key comes from, when it is not in a file.
pub const NEW_KEY_ENV: &str = "WAGATE_NEW_MASTER_KEY";

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Seal again, with the current master key and bound to their row, every stored secret that
    /// is not yet (sealed before wagate bound them, or with a key in
    /// security.previous_master_keys). Resumable; safe while instances run.
    Reseal {
        #[command(flatten)]
        output: Output,
    },
    /// Seal every stored secret with a new master key (read from --new-key-file or
    /// WAGATE_NEW_MASTER_KEY, never from the command line, where `ps` would show it). Values the
    /// new key already sealed are skipped, so an interrupted rotation resumes where it stopped.
    #[command(name = "rotate-master-key")]
    RotateMasterKey(RotateArgs),
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// File holding the new key (base64 of 32 bytes, as `openssl rand -base64 32` prints).
    #[arg(long, value_name = "PATH")]
    pub new_key_file: Option<PathBuf>,
    #[command(flatten)]
    pub output: Output,
}

pub async fn run(config: Config, command: SecretsCommand) -> anyhow::Result<()> {
    match command {
        SecretsCommand::Reseal { output } => {
            let secrets = crate::secret_box(&config)?;
            let store = store::connect(&config.database).await?;
            let report = reseal::reseal(&*store, &secrets, Scope::NotCurrentKey).await?;
            print_report(&report, &secrets, output);
            let total = report.total();
            if !output.json && total.unreadable == 0 && total.changed_meanwhile == 0 {
                println!(
                    "every stored secret is sealed with master key {}; security.previous_master_keys can be emptied",
                    secrets.key_id()
                );
            }
            Ok(())
        }
        SecretsCommand::RotateMasterKey(args) => rotate(config, args).await,
    }
}

async fn rotate(config: Config, args: RotateArgs) -> anyhow::Result<()> {
    let encoded = match &args.new_key_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the new master key from {}", path.display()))?,
        None => std::env::var(NEW_KEY_ENV).map_err(|_| {
            anyhow::anyhow!("give the new master key with --new-key-file PATH or {NEW_KEY_ENV}")
        })?,
    };
    let new_key = config::decode_master_key(&encoded)
        .map_err(|e| anyhow::anyhow!("{}", e.0.replace("security.master_key", "the new key")))?;
    let current = crate::load_master_key(&config)?;
    anyhow::ensure!(
        new_key != current,
        "the new key is the current security.master_key"
    );
    // The current key and every previous one open; the new one seals.
    let mut readable = vec![current];
    readable.extend(config.security.decoded_previous_master_keys()?);
    let secrets = SecretBox::with_previous(&new_key, &readable);
    let old_id = SecretBox::new(&current).key_id().to_owned();
    let store = store::connect(&config.database).await?;
    if !args.output.json {
        println!(
            "re-sealing stored secrets from master key {old_id} to {}…",
            secrets.key_id()
        );
    }
    let report = reseal::reseal(&*store, &secrets, Scope::NotCurrentKey).await?;
    print_report(&report, &secrets, args.output);
    if !args.output.json {
        println!(
            "\nnext:\n  1. set security.master_key to the new key (WAGATE__SECURITY__MASTER_KEY{}), and\n     security.previous_master_keys to [the old key] on every instance, then restart them;\n  2. run `wagate admin secrets reseal` once they all run with the new key (it re-seals what\n     instances still on the old key wrote meanwhile);\n  3. remove the old key from security.previous_master_keys and restart.\n  Signed media links issued before the switch stop working (they are signed with a key derived\n  from the master key); clients fetch new ones.",
            if config.database.sqlite_data_dir().is_some() && config.security.master_key_is_empty() {
                ", or replace the data folder's master.key"
            } else {
                ""
            }
        );
    }
    Ok(())
}

fn print_report(report: &Report, secrets: &SecretBox, output: Output) {
    let total = report.total();
    if output.json {
        let fields: serde_json::Map<String, serde_json::Value> = report
            .fields
            .iter()
            .map(|(field, counts)| (field.to_string(), json!(counts)))
            .collect();
        println!(
            "{}",
            json!({"key_id": secrets.key_id(), "fields": fields, "total": total})
        );
        return;
    }
    for (field, counts) in &report.fields {
        println!(
            "{field}: {} re-sealed, {} already current, {} changed meanwhile, {} unreadable",
            counts.resealed,
            counts.scanned - counts.resealed - counts.changed_meanwhile - counts.unreadable,
            counts.changed_meanwhile,
            counts.unreadable
        );
    }
    if total.unreadable > 0 {
        println!(
            "warning: {} stored secrets open with none of the configured keys and were left as they are (see the log); \
             their numbers need a new token (PATCH access_token)",
            total.unreadable
        );
    }
}
