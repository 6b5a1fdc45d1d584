//! Secrets at rest: sealed values bound to their column and row, the start-up pass that re-seals
//! values sealed before that, master-key rotation through the CLI, and the SQLite files' modes.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use reqwest::Method;
use secrecy::ExposeSecret as _;
use serde_json::{json, Value};
use uuid::Uuid;
use wagate::config::{Backend, Config};
use wagate::crypto::{SealedField, SecretBox};
use wagate::domain::number_directory::NumberDirectory;
use wagate::store::{DynStore, NewPhoneNumber, SealedSecret};

use crate::common::{fresh_database_url, test_config, TestApp};

const BIN: &str = env!("CARGO_BIN_EXE_wagate");

/// Runs one statement binding `value` then `id` against the app's database.
async fn execute(url: &str, sql: &str, value: &[u8], id: Uuid) {
    crate::with_connection!(url, conn => {
        sqlx::query(sql).bind(value).bind(id).execute(&mut conn).await.unwrap();
    })
}

/// A sealed column's raw bytes in one row.
async fn sealed_bytes(url: &str, field: SealedField, id: Uuid) -> Vec<u8> {
    let key = if field == SealedField::SetupLinkToken {
        "id"
    } else {
        "internal_id"
    };
    let sql = format!(
        "select {} from {} where {key} = $1",
        field.column(),
        field.table()
    );
    crate::with_connection!(url, conn => {
        sqlx::query_scalar(&sql).bind(id).fetch_one(&mut conn).await.unwrap()
    })
}

/// A value as wagate sealed it before values were bound to their row: `nonce || AES-GCM`.
fn seal_v1(master_key: &[u8; 32], plaintext: &str) -> Vec<u8> {
    let nonce: [u8; 12] = rand::random();
    let cipher = Aes256Gcm::new(master_key.into());
    let mut out = nonce.to_vec();
    out.extend(
        cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes())
            .unwrap(),
    );
    out
}

fn master_key(config: &Config) -> [u8; 32] {
    config.security.decoded_master_key().unwrap()
}

fn is_v2_under(sealed: &[u8], secrets: &SecretBox) -> bool {
    sealed[0] == 0x02 && hex::encode(&sealed[1..5]) == secrets.key_id()
}

/// A token copied from one number's row into another's opens in neither place but its own: the
/// number it was copied to is not served at all, never with the other number's token.
async fn a_token_copied_to_another_row_does_not_open(app: TestApp) {
    let a = app.connect(&app.api_key, "7001", "7900", None).await;
    let b = app.connect(&app.api_key, "7002", "7900", None).await;
    let url = app.config.database.url.expose_secret().to_owned();
    let a_token = sealed_bytes(&url, SealedField::AccessToken, a.internal_id).await;
    execute(
        &url,
        "update phone_numbers set access_token_sealed = $1 where internal_id = $2",
        &a_token,
        b.internal_id,
    )
    .await;
    // And the webhook secret into the token's column of its own row.
    let b_secret = sealed_bytes(&url, SealedField::WebhookSecret, b.internal_id).await;
    let directory = NumberDirectory::new(
        app.store.clone(),
        wagate::secret_box(&app.config).unwrap(),
        &app.config.cache,
    );
    let opened = directory
        .number("7001")
        .await
        .unwrap()
        .expect("a is intact");
    assert_eq!(opened.access_token.expose_secret(), "token-7001");
    assert!(
        directory.number("7002").await.unwrap().is_none(),
        "b is unusable, not served with a's token"
    );
    execute(
        &url,
        "update phone_numbers set access_token_sealed = $1 where internal_id = $2",
        &b_secret,
        a.internal_id,
    )
    .await;
    directory.invalidate();
    assert!(directory.number("7001").await.unwrap().is_none());

    // Through the proxy too, once this instance's cache has forgotten b: nothing reaches Graph
    // with a's token on b's behalf.
    tokio::time::sleep(app.config.cache.ttl + std::time::Duration::from_millis(200)).await;
    let before = app.graph.recorded().len();
    let response = app
        .request(Method::GET, "/meta/whatsapp/v24.0/7002/message_templates")
        .send()
        .await
        .unwrap();
    assert!(!response.status().is_success(), "{}", response.status());
    let leaked = app.graph.recorded()[before..].iter().any(|r| {
        r.headers
            .get("authorization")
            .is_some_and(|h| h.as_bytes() == b"Bearer token-7001")
    });
    assert!(!leaked, "b's request went out with a's token");
}

/// Values sealed before binding (v1) are re-sealed bound, under the current key, when an
/// instance starts; they open as before.
async fn unbound_values_are_resealed_at_start(app: TestApp) {
    let number = app.connect(&app.api_key, "7101", "7900", None).await;
    let customer = app.create_customer(app.project_id, "Acme").await;
    let (status, body) = app
        .call(
            Method::POST,
            &format!("/platform/v1/customers/{customer}/setup_links"),
            Some(json!({ "setup_link": {} })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let link_id: Uuid = body["data"]["id"].as_str().unwrap().parse().unwrap();
    let link_token = body["data"]["url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();

    // Rewrite them as an older wagate sealed them.
    let url = app.config.database.url.expose_secret().to_owned();
    let key = master_key(&app.config);
    let v1 = [
        (
            "update phone_numbers set access_token_sealed = $1 where internal_id = $2",
            seal_v1(&key, "token-7101"),
            number.internal_id,
        ),
        (
            "update phone_numbers set webhook_secret_sealed = $1 where internal_id = $2",
            seal_v1(&key, &number.secret),
            number.internal_id,
        ),
        (
            "update setup_links set token_sealed = $1 where id = $2",
            seal_v1(&key, &link_token),
            link_id,
        ),
    ];
    for (sql, value, id) in &v1 {
        execute(&url, sql, value, *id).await;
    }

    // A second instance starts on the same database: its start-up pass re-seals them.
    let mut config = (*app.config).clone();
    // Each instance locks its own spill file.
    config.writer.spill_path += ".second";
    let restarted = wagate::App::build(config).await.unwrap();
    let secrets = restarted.state.secrets.clone();
    for (field, id) in [
        (SealedField::AccessToken, number.internal_id),
        (SealedField::WebhookSecret, number.internal_id),
        (SealedField::SetupLinkToken, link_id),
    ] {
        let sealed = sealed_bytes(&url, field, id).await;
        assert!(is_v2_under(&sealed, &secrets), "{field} is bound now");
    }
    let config = restarted
        .state
        .numbers
        .number("7101")
        .await
        .unwrap()
        .expect("the number still opens");
    assert_eq!(config.access_token.expose_secret(), "token-7101");
    assert_eq!(
        config.webhook_secret.as_ref().unwrap().expose_secret(),
        number.secret
    );
    let row = restarted
        .store()
        .setup_link(customer, link_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        restarted.state.setup_links.token(&row).as_deref(),
        Some(link_token.as_str())
    );
    // Idempotent: another start finds nothing to do.
    let report = wagate::domain::reseal::reseal(
        &*restarted.store(),
        &secrets,
        wagate::domain::reseal::Scope::Unbound,
    )
    .await
    .unwrap();
    assert_eq!(report.total().resealed, 0);
}

crate::both_backends!(app: a_token_copied_to_another_row_does_not_open, unbound_values_are_resealed_at_start);

fn encoded(key: &[u8; 32]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// Runs the binary with `master` as security.master_key and `previous` as
/// security.previous_master_keys.
fn wagate(
    dir: &std::path::Path,
    db: &str,
    master: &[u8; 32],
    previous: &[[u8; 32]],
    args: &[&str],
) -> Value {
    let previous: Vec<String> = previous.iter().map(encoded).collect();
    let output = std::process::Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .env("WAGATE__DATABASE__URL", db)
        .env("WAGATE__SECURITY__MASTER_KEY", encoded(master))
        .env(
            "WAGATE__SECURITY__PREVIOUS_MASTER_KEYS",
            serde_json::to_string(&previous).unwrap(),
        )
        .env("WAGATE__LOG__LEVEL", "warn")
        .output()
        .unwrap();
    crate::cli::json_of(&output)
}

/// Inserts a number as wagate would under `secrets` (or, `v1`, as an older wagate did).
async fn insert_number(
    store: &DynStore,
    project: Uuid,
    pnid: &str,
    secrets: &SecretBox,
    v1: Option<[u8; 32]>,
) -> Uuid {
    let id = Uuid::now_v7();
    let token = format!("token-{pnid}");
    let (token_sealed, secret_sealed) = match v1 {
        Some(key) => (seal_v1(&key, &token), seal_v1(&key, "secret")),
        None => (
            secrets.seal(SealedField::AccessToken.at(id), &token),
            secrets.seal(SealedField::WebhookSecret.at(id), "secret"),
        ),
    };
    store
        .insert_phone_number(NewPhoneNumber {
            internal_id: id,
            project_id: project,
            customer_id: None,
            phone_number_id: pnid.into(),
            business_account_id: "7900".into(),
            kind: "production".into(),
            name: None,
            details: Default::default(),
            is_coexistence: false,
            inbound_processing_enabled: true,
            calls_enabled: false,
            access_token: SealedSecret {
                sealed: token_sealed,
                key_id: secrets.key_id().to_owned(),
            },
            access_token_sha256: wagate::crypto::sha256_hex(token.as_bytes()),
            webhook_destination_url: None,
            webhook_secret: Some(secret_sealed),
            webhook_verify_token: None,
        })
        .await
        .unwrap();
    id
}

/// Every number opens with `secrets`, with its own token.
async fn all_open(config: &Config, store: &DynStore, secrets: SecretBox, pnids: &[&str]) {
    let directory = NumberDirectory::new(store.clone(), secrets, &config.cache);
    for pnid in pnids {
        let number = directory
            .number(pnid)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{pnid} does not open"));
        assert_eq!(
            number.access_token.expose_secret(),
            &format!("token-{pnid}")
        );
        assert_eq!(
            number.webhook_secret.as_ref().unwrap().expose_secret(),
            "secret"
        );
    }
}

/// Numbers sealed under key A (one by an older wagate, one already moved to B by a rotation that
/// was interrupted) are rotated to B by the CLI; instances then work with B and A as previous,
/// and with B alone.
async fn master_key_rotation_through_the_cli(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database_url(backend, dir.path()).await;
    let (a, b): ([u8; 32], [u8; 32]) = (rand::random(), rand::random());
    let config = test_config(db.clone());
    let store = wagate::store::connect(&config.database).await.unwrap();
    let project = store.create_project("Acme").await.unwrap().id;
    let under_a = SecretBox::new(&a);
    let under_b = SecretBox::new(&b);
    insert_number(&store, project, "8001", &under_a, None).await;
    insert_number(&store, project, "8002", &under_a, Some(a)).await;
    // The interrupted rotation's work: this one is on B already.
    let done = insert_number(&store, project, "8003", &under_b, None).await;
    let pnids = ["8001", "8002", "8003"];
    // Mid-rotation, an instance with B and A as previous reads them all.
    all_open(&config, &store, SecretBox::with_previous(&b, &[a]), &pnids).await;

    std::fs::write(dir.path().join("new.key"), encoded(&b)).unwrap();
    // Still configured with A; B comes from a file, not the command line.
    let rotate = || {
        let args = [
            "admin",
            "secrets",
            "rotate-master-key",
            "--new-key-file",
            "new.key",
            "--json",
        ];
        wagate(dir.path(), &db, &a, &[], &args)
    };
    let rotated = rotate();
    assert_eq!(rotated["key_id"], under_b.key_id());
    let tokens = &rotated["fields"]["phone_numbers.access_token_sealed"];
    assert_eq!(tokens["scanned"], 3);
    assert_eq!(
        tokens["resealed"], 2,
        "the number already on B is skipped: {rotated}"
    );
    assert_eq!(rotated["total"]["resealed"], 4);
    assert_eq!(rotated["total"]["unreadable"], 0);
    let url = db.as_str();
    let untouched = sealed_bytes(url, SealedField::AccessToken, done).await;
    assert!(is_v2_under(&untouched, &under_b));

    // Run again (as after an interruption): nothing left to do.
    let again = rotate();
    assert_eq!(again["total"]["resealed"], 0);

    // Restarted with B, A as previous (the list read from the environment): nothing to re-seal.
    let resealed = wagate(
        dir.path(),
        &db,
        &b,
        &[a],
        &["admin", "secrets", "reseal", "--json"],
    );
    assert_eq!(resealed["total"]["resealed"], 0);
    assert_eq!(resealed["total"]["scanned"], 6);
    // And with B alone, every number works.
    all_open(&config, &store, SecretBox::new(&b), &pnids).await;
    let mut with_b = test_config(db.clone());
    with_b.security.master_key = encoded(&b).into();
    let app = wagate::App::build(with_b).await.unwrap();
    for pnid in pnids {
        assert!(
            app.state.numbers.number(pnid).await.unwrap().is_some(),
            "{pnid}"
        );
    }
    // The old key alone no longer opens anything.
    let directory = NumberDirectory::new(store.clone(), under_a, &config.cache);
    assert!(directory.number("8001").await.unwrap().is_none());
}

crate::both_backends!(backend: master_key_rotation_through_the_cli);

/// The pass's write is conditional: a value another writer changed after the pass read it (a
/// PATCH, another instance's pass) is left to that writer.
async fn a_reseal_never_overwrites_a_newer_value(store: DynStore) {
    let project = store.create_project("Acme").await.unwrap().id;
    let key: [u8; 32] = rand::random();
    let secrets = SecretBox::new(&key);
    let id = insert_number(&store, project, "8101", &secrets, Some(key)).await;
    let read = store
        .sealed_values(SealedField::AccessToken, Uuid::nil(), 10)
        .await
        .unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].row, id);
    let newer = secrets.seal(SealedField::AccessToken.at(id), "token-newer");
    let patch = wagate::store::PhoneNumberPatch {
        internal_id: Some(id),
        access_token: Some((
            SealedSecret {
                sealed: newer.clone(),
                key_id: secrets.key_id().to_owned(),
            },
            "newer-hash".into(),
        )),
        ..Default::default()
    };
    store
        .update_phone_number(project, "8101", patch)
        .await
        .unwrap();
    let stale = wagate::store::Resealed {
        row: id,
        old: read[0].sealed.clone(),
        new: secrets.seal(SealedField::AccessToken.at(id), "token-8101"),
        key_id: secrets.key_id().to_owned(),
    };
    let written = store
        .replace_sealed_values(SealedField::AccessToken, &[stale])
        .await
        .unwrap();
    assert_eq!(written, 0);
    let now = store.find_phone_number("8101").await.unwrap().unwrap();
    assert_eq!(now.access_token_sealed, newer);
    // A patch sealed for another row (the number deleted and connected again meanwhile) is
    // refused rather than stored where it would not open.
    let elsewhere = wagate::store::PhoneNumberPatch {
        internal_id: Some(Uuid::now_v7()),
        name: Some(Some("x".into())),
        ..Default::default()
    };
    assert!(matches!(
        store.update_phone_number(project, "8101", elsewhere).await,
        Err(wagate::store::StoreError::NotFound)
    ));
}

crate::both_backends!(store: a_reseal_never_overwrites_a_newer_value);

/// A fresh SQLite data folder: the folder 0700, the database, its WAL and shared-memory files and
/// the generated master key 0600, whatever the umask.
#[cfg(unix)]
#[tokio::test]
async fn sqlite_files_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut config = test_config(format!("sqlite://{}/wagate.db", data.display()));
    config.security.master_key = String::new().into();
    let app = wagate::App::build(config).await.unwrap();
    app.store().create_project("Write").await.unwrap();
    let mode = |name: &str| {
        std::fs::metadata(data.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(""), 0o700, "data folder");
    for file in ["wagate.db", "wagate.db-wal", "wagate.db-shm", "master.key"] {
        assert_eq!(mode(file), 0o600, "{file}");
    }
}
