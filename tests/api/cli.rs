//! The `wagate` binary: config errors, admin commands, first-run bootstrap.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use wagate::config::Backend;

use crate::common::fresh_database_url;

const BIN: &str = env!("CARGO_BIN_EXE_wagate");

fn wagate(dir: &std::path::Path, db: &str, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .env("WAGATE__DATABASE__URL", db)
        .env(
            "WAGATE__SECURITY__MASTER_KEY",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )
        .env("WAGATE__LOG__LEVEL", "warn")
        .output()
        .unwrap()
}

pub(crate) fn json_of(output: &std::process::Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn invalid_config_stops_startup_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &str)] = &[
        ("WAGATE__SERVER__LISTEN", "not-an-address", "server.listen"),
        ("WAGATE__DATABASE__URL", "mysql://x", "database.url"),
        (
            "WAGATE__SECURITY__MASTER_KEY",
            "dG9vc2hvcnQ=",
            "security.master_key",
        ),
        (
            "WAGATE__GRAPH__BASE_URL",
            "graph.facebook.com",
            "graph.base_url",
        ),
        ("WAGATE__GRAPH__TIMEOUT", "soon", "graph.timeout"),
        (
            "WAGATE__SERVER__JSON_BODY_LIMIT",
            "0",
            "server.json_body_limit",
        ),
        ("WAGATE__SERVER__LISTN", "127.0.0.1:1", "listn"),
        ("WAGATE__LOG__FORMAT", "xml", "log.format"),
        (
            "WAGATE__SECURITY__PREVIOUS_MASTER_KEYS",
            "[\"dG9vc2hvcnQ=\"]",
            "security.previous_master_keys[0]",
        ),
    ];
    for (var, value, key) in cases {
        let output = Command::new(BIN)
            .current_dir(dir.path())
            .arg("migrate")
            .env(var, value)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{var}={value} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(key), "{var}: {stderr}");
        assert!(
            !dir.path().join("data").exists(),
            "nothing is created on a config error"
        );
    }
    // PostgreSQL without a master key: refused, with what to do.
    let output = Command::new(BIN)
        .current_dir(dir.path())
        .env(
            "WAGATE__DATABASE__URL",
            "postgres://postgres@127.0.0.1:1/none",
        )
        .env("WAGATE__SERVER__LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let missing_file = Command::new(BIN)
        .current_dir(dir.path())
        .args(["--config", "nope.toml", "migrate"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&missing_file.stderr).contains("nope.toml"));
}

#[test]
fn config_file_is_read_and_env_overrides_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("custom.toml"),
        "[database]\nurl = \"sqlite://from-file/w.db\"\n[server]\nlisten = \"bad\"\n",
    )
    .unwrap();
    // The file's bad listen address is reported...
    let output = Command::new(BIN)
        .current_dir(dir.path())
        .args(["--config", "custom.toml", "migrate"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("server.listen"));
    // ...and the environment overrides it; the file's database path is used.
    let output = Command::new(BIN)
        .current_dir(dir.path())
        .args(["--config", "custom.toml", "migrate"])
        .env("WAGATE__SERVER__LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(dir.path().join("from-file/w.db").exists());
}

async fn admin_commands(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database_url(backend, dir.path()).await;
    let created = json_of(&wagate(
        dir.path(),
        &db,
        &["admin", "projects", "create", "--name", "Acme", "--json"],
    ));
    assert_eq!(created["name"], "Acme");
    assert!(created["api_key"].as_str().unwrap().starts_with("wag_"));
    let project = created["id"].as_str().unwrap();

    let key = json_of(&wagate(
        dir.path(),
        &db,
        &[
            "admin",
            "api-keys",
            "create",
            "--project",
            project,
            "--json",
        ],
    ));
    assert!(key["api_key"].as_str().unwrap().starts_with("wag_"));
    let listed = json_of(&wagate(
        dir.path(),
        &db,
        &["admin", "api-keys", "list", "--project", project, "--json"],
    ));
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let text = serde_json::to_string(&listed).unwrap();
    assert!(
        !text.contains(key["api_key"].as_str().unwrap()),
        "keys are never listed in full"
    );

    let key_id = key["id"].as_str().unwrap();
    let revoked = json_of(&wagate(
        dir.path(),
        &db,
        &["admin", "api-keys", "revoke", key_id, "--json"],
    ));
    assert!(revoked["revoked_at"].is_string());
    let listed = json_of(&wagate(
        dir.path(),
        &db,
        &["admin", "api-keys", "list", "--project", project, "--json"],
    ));
    assert_eq!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["revoked_at"].is_string())
            .count(),
        1
    );

    let unknown = wagate(
        dir.path(),
        &db,
        &[
            "admin",
            "api-keys",
            "create",
            "--project",
            &uuid::Uuid::now_v7().to_string(),
        ],
    );
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("does not exist"));
}

crate::both_backends!(backend: admin_commands);

/// Runs `wagate serve` until it logs that it listens, stops it, and returns what it printed on
/// stdout.
fn start_server(dir: &std::path::Path) -> Vec<String> {
    let mut child = Command::new(BIN)
        .current_dir(dir)
        .env("WAGATE__SERVER__LISTEN", "127.0.0.1:0")
        .env("WAGATE__LOG__LEVEL", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    for line in stderr.lines() {
        let line = line.unwrap();
        if line.contains("wagate listening") {
            break;
        }
    }
    // Everything the server prints on stdout comes before the listening line.
    std::thread::sleep(Duration::from_millis(100));
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn first_run_creates_default_project_and_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let first = start_server(dir.path());
    // stdout is a pipe, not a terminal: the key goes to a file only this user can read, and
    // the output (which ends up in logs) names the file, never the key.
    let key_file = dir.path().join("data/initial-api-key");
    let key = std::fs::read_to_string(&key_file).expect("key written to data/initial-api-key");
    let key = key.trim();
    assert!(key.starts_with("wag_"), "{key}");
    assert!(
        first.iter().all(|l| !l.contains("wag_")),
        "a key on a non-terminal stdout: {first:?}"
    );
    assert!(
        first
            .iter()
            .any(|l| l.contains("X-API-Key") && l.contains("data/initial-api-key")),
        "says where the key is and how to use it: {first:?}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "key file mode {mode:o}");
    }
    assert!(dir.path().join("data/wagate.db").exists());
    let master = std::fs::read_to_string(dir.path().join("data/master.key")).unwrap();
    assert_eq!(
        wagate::config::decode_master_key(&master).unwrap().len(),
        32
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("data/master.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "master key readable by others");
    }

    std::fs::remove_file(&key_file).unwrap();
    let second = start_server(dir.path());
    assert!(
        second.iter().all(|l| !l.contains("wag_")),
        "second start prints no key: {second:?}"
    );
    assert!(!key_file.exists(), "second start writes no key file");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("data/master.key")).unwrap(),
        master
    );
}

/// `serve --sandbox` turns off the SSRF guard and trusts a public webhook secret: it refuses a
/// PostgreSQL database and a configured real app secret before touching either.
#[test]
fn sandbox_mode_refuses_production_setups() {
    let dir = tempfile::tempdir().unwrap();
    let postgres = wagate(
        dir.path(),
        "postgres://postgres@127.0.0.1:1/nothing",
        &["serve", "--sandbox"],
    );
    assert!(!postgres.status.success());
    let stderr = String::from_utf8_lossy(&postgres.stderr);
    assert!(stderr.contains("SQLite only"), "{stderr}");

    let secret = Command::new(BIN)
        .current_dir(dir.path())
        .args(["serve", "--sandbox"])
        .env("WAGATE__DATABASE__URL", "sqlite://data/w.db")
        .env("WAGATE__META__APP_SECRET", "a-real-app-secret")
        .env("WAGATE__SERVER__LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!secret.status.success());
    let stderr = String::from_utf8_lossy(&secret.stderr);
    assert!(stderr.contains("meta.app_secret"), "{stderr}");
    assert!(
        !dir.path().join("data/w.db").exists(),
        "refused before creating the database"
    );
}
