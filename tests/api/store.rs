//! Store conformance: the same assertions against SQLite and PostgreSQL.

use wagate::store::{
    DynStore, NewApiKey, NewCustomer, NewPhoneNumber, PhoneNumberDetails, PhoneNumberPatch,
    SealedSecret, StoreError,
};

use crate::store_tests;

pub(crate) fn new_number(
    project_id: uuid::Uuid,
    pnid: &str,
    waba: &str,
    token_hash: &str,
) -> NewPhoneNumber {
    NewPhoneNumber {
        internal_id: uuid::Uuid::now_v7(),
        project_id,
        customer_id: None,
        phone_number_id: pnid.into(),
        business_account_id: waba.into(),
        kind: "production".into(),
        name: Some(format!("n{pnid}")),
        details: PhoneNumberDetails {
            display_phone_number: Some("+1 555".into()),
            ..Default::default()
        },
        is_coexistence: false,
        inbound_processing_enabled: true,
        calls_enabled: false,
        access_token: SealedSecret {
            sealed: vec![1, 2, 3],
            key_id: "k1".into(),
        },
        access_token_sha256: token_hash.into(),
        webhook_destination_url: None,
        webhook_secret: Some(vec![9, 9]),
        webhook_verify_token: None,
    }
}

async fn projects_and_keys(store: DynStore) {
    assert_eq!(store.count_projects().await.unwrap(), 0);
    let project = store.create_project("acme").await.unwrap();
    assert_eq!(store.get_project(project.id).await.unwrap(), project);
    assert_eq!(store.count_projects().await.unwrap(), 1);
    assert!(matches!(
        store.get_project(uuid::Uuid::now_v7()).await,
        Err(StoreError::NotFound)
    ));

    let key = store
        .create_api_key(NewApiKey {
            project_id: project.id,
            key_sha256: "h1".into(),
            display_prefix: "wag_abcd".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        store.find_api_key_by_hash("h1").await.unwrap(),
        Some(key.clone())
    );
    assert_eq!(store.find_api_key_by_hash("nope").await.unwrap(), None);
    // Hashes are unique: the same hash twice is a conflict.
    let dup = store
        .create_api_key(NewApiKey {
            project_id: project.id,
            key_sha256: "h1".into(),
            display_prefix: "x".into(),
        })
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict { .. })), "{dup:?}");

    let revoked = store.revoke_api_key(key.id).await.unwrap();
    assert!(revoked.is_revoked());
    let again = store.revoke_api_key(key.id).await.unwrap();
    assert_eq!(
        again.revoked_at, revoked.revoked_at,
        "first revocation time is kept"
    );
    assert!(matches!(
        store.revoke_api_key(uuid::Uuid::now_v7()).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.list_api_keys(project.id).await.unwrap(), vec![again]);
}

async fn customers_are_project_scoped(store: DynStore) {
    let a = store.create_project("a").await.unwrap();
    let b = store.create_project("b").await.unwrap();
    let customer = store
        .create_customer(NewCustomer {
            project_id: a.id,
            name: "Acme".into(),
            external_customer_id: Some("ext-1".into()),
        })
        .await
        .unwrap();
    assert_eq!(
        store.get_customer(a.id, customer.id).await.unwrap(),
        customer
    );
    assert!(matches!(
        store.get_customer(b.id, customer.id).await,
        Err(StoreError::NotFound)
    ));
    let dup = store
        .create_customer(NewCustomer {
            project_id: a.id,
            name: "Again".into(),
            external_customer_id: Some("ext-1".into()),
        })
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict { .. })));
}

async fn phone_numbers_lifecycle(store: DynStore) {
    let a = store.create_project("a").await.unwrap();
    let b = store.create_project("b").await.unwrap();
    let first = store
        .insert_phone_number(new_number(a.id, "111", "900", "t1"))
        .await
        .unwrap();
    assert_eq!(first.webhook_secret_sealed.as_deref(), Some(&[9u8, 9][..]));
    assert_eq!(first.secrets_key_id.as_deref(), Some("k1"));
    let second = store
        .insert_phone_number(new_number(a.id, "222", "900", "t1"))
        .await
        .unwrap();
    store
        .insert_phone_number(new_number(b.id, "333", "900", "t2"))
        .await
        .unwrap();

    // One phone_number_id is connected once, across all projects.
    let dup = store
        .insert_phone_number(new_number(b.id, "111", "901", "t3"))
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict { .. })), "{dup:?}");

    assert_eq!(
        store.find_phone_number("111").await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(store.find_phone_number("999").await.unwrap(), None);
    let waba = store.find_phone_numbers_by_waba(a.id, "900").await.unwrap();
    assert_eq!(
        waba.iter()
            .map(|n| n.phone_number_id.as_str())
            .collect::<Vec<_>>(),
        ["111", "222"]
    );
    assert_eq!(
        store
            .find_phone_numbers_by_token_hash("t1")
            .await
            .unwrap()
            .len(),
        2
    );

    let page = store.list_phone_numbers(a.id, None, 1, 1).await.unwrap();
    assert_eq!(page.total_count, 2);
    assert_eq!(page.items[0].phone_number_id, "222", "newest first");
    let page2 = store.list_phone_numbers(a.id, None, 2, 1).await.unwrap();
    assert_eq!(page2.items[0].phone_number_id, "111");
    assert!(store
        .list_phone_numbers(a.id, None, 3, 1)
        .await
        .unwrap()
        .items
        .is_empty());

    let updated = store
        .update_phone_number(
            a.id,
            "222",
            PhoneNumberPatch {
                name: Some(None),
                webhook_destination_url: Some(Some("https://example.com/hook".into())),
                calls_enabled: Some(true),
                access_token: Some((
                    SealedSecret {
                        sealed: vec![7],
                        key_id: "k2".into(),
                    },
                    "t9".into(),
                )),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.name, None);
    assert!(updated.calls_enabled);
    assert_eq!(updated.access_token_sha256, "t9");
    assert_eq!(
        updated.webhook_destination_url.as_deref(),
        Some("https://example.com/hook")
    );
    assert!(updated.updated_at >= second.updated_at);
    assert_eq!(updated.created_at, second.created_at);

    // Another project's number cannot be updated or deleted.
    assert!(matches!(
        store
            .update_phone_number(b.id, "222", PhoneNumberPatch::default())
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.delete_phone_number(b.id, "111").await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store.delete_phone_number(a.id, "111").await.unwrap(),
        Vec::<String>::new(),
        "no media, no files to remove"
    );
    assert_eq!(store.find_phone_number("111").await.unwrap(), None);
    assert!(matches!(
        store.delete_phone_number(a.id, "111").await,
        Err(StoreError::NotFound)
    ));
}

async fn closed_store_reports_unavailable(store: DynStore) {
    store.ping().await.unwrap();
    store.close().await;
    assert!(matches!(
        store.ping().await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.count_projects().await,
        Err(StoreError::Unavailable(_))
    ));
}

/// Instances starting together on an empty database bootstrap one default project, not one each.
async fn concurrent_bootstraps_make_one_project(store: DynStore) {
    let checksum = wagate::crypto::ApiKeyChecksum::new(&[9u8; 32]);
    let attempts: Vec<_> = (0..8)
        .map(|_| {
            let (store, checksum) = (store.clone(), checksum.clone());
            tokio::spawn(async move {
                wagate::domain::projects::bootstrap_default_project(&*store, &checksum)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut created = 0;
    for attempt in attempts {
        created += usize::from(attempt.await.unwrap().is_some());
    }
    assert_eq!(created, 1);
    assert_eq!(store.count_projects().await.unwrap(), 1);
    assert!(
        wagate::domain::projects::bootstrap_default_project(&*store, &checksum)
            .await
            .unwrap()
            .is_none()
    );
}

store_tests!(
    concurrent_bootstraps_make_one_project,
    projects_and_keys,
    customers_are_project_scoped,
    phone_numbers_lifecycle,
    closed_store_reports_unavailable
);
