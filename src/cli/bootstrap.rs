//! What a start tells its operator: the default project's key, once, on the start that created
//! it. On a terminal it is printed; anywhere else (a service manager, a container, a pipe) stdout
//! ends up in logs that many people and systems read, so it goes to a file only wagate's user can
//! read, and only the path is printed and logged.

use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::Context as _;

use crate::App;

/// Announces the project the first start created, and hands over its key.
pub fn announce_bootstrap(app: &App) -> anyhow::Result<()> {
    let Some((project, key)) = &app.bootstrap else {
        return Ok(());
    };
    println!(
        "Created the default project {} ({}).",
        project.name, project.id
    );
    hand_over_key(app, project.id, &key.plaintext)
}

/// Shows a new project's only copy of its key: printed on a terminal, else written to
/// `security.bootstrap_key_file` (0600) with only the path printed.
pub fn hand_over_key(app: &App, project_id: uuid::Uuid, plaintext: &str) -> anyhow::Result<()> {
    let addr = app.local_addr();
    if std::io::stdout().is_terminal() {
        println!("Its API key, shown only this once: {plaintext}");
        println!(
            "Use it as: curl -H 'X-API-Key: {plaintext}' http://{addr}/platform/v1/whatsapp/phone_numbers"
        );
        return Ok(());
    }
    let config = &app.state.config;
    let path = config.security.bootstrap_key_path(&config.database);
    write_private(&path, plaintext).with_context(|| {
        format!(
            "writing the API key to {} (set security.bootstrap_key_file to a writable path; to get a key now, run `wagate admin api-keys create --project {project_id}`)",
            path.display(),
        )
    })?;
    println!(
        "Its API key was written to {} (readable by this user only); read it once, keep it in your secret store, then delete the file.",
        path.display()
    );
    println!(
        "Use it as: curl -H \"X-API-Key: $(cat {})\" http://{addr}/platform/v1/whatsapp/phone_numbers",
        path.display()
    );
    tracing::info!(path = %path.display(), project = %project_id, "API key written to a file");
    Ok(())
}

/// Creates or replaces `path` with mode 0600 from the start (never briefly readable by others).
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    // A file left by an earlier database may be readable by others: replace it, not reuse it.
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    writeln!(file, "{contents}")?;
    file.sync_all()
}
