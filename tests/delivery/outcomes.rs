//! Outcome batches: one outcome the database refuses does not hold back the others recorded with
//! it; it is quarantined (logged, counted) and the rest of its batch is recorded at once.

use secrecy::ExposeSecret as _;
use sqlx::Connection as _;
use wagate::config::Backend;

use crate::support::*;

const PNID: &str = "100000000000001";
const WABA: &str = "200000000000001";

/// Makes the database refuse to record a delivery of `wamid.BAD…` as succeeded, the way a
/// constraint or a trigger added by an operator would.
async fn refuse_bad_outcomes(app: &TestApp) {
    let url = app.config.database.url.expose_secret().to_owned();
    if url.starts_with("sqlite") {
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query(
            "create trigger refuse_bad before update on webhook_deliveries \
             when new.status = 'succeeded' and new.message_wamids like '%wamid.BAD%' \
             begin select raise(abort, 'refused by the test'); end",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        for statement in [
            "create function refuse_bad() returns trigger language plpgsql as $$ begin \
             if new.status = 'succeeded' and new.message_wamids like '%wamid.BAD%' then \
             raise exception 'refused by the test'; end if; return new; end $$",
            "create trigger refuse_bad before update on webhook_deliveries \
             for each row execute function refuse_bad()",
        ] {
            sqlx::query(statement).execute(&mut conn).await.unwrap();
        }
    }
}

async fn a_refused_outcome_is_quarantined_and_its_batch_recorded(backend: Backend) {
    let app = spawn(backend, |config| {
        // Far beyond the test: a good outcome held back with the bad one would stay unrecorded.
        config.delivery.lease = ms(60_000);
    })
    .await;
    let hook = Hook::start().await;
    // Answers held a little, so the attempts finish together and their outcomes share a batch.
    hook.always(Reply::ok().after(ms(300)));
    let number = app.connect(&app.api_key, PNID, WABA, Some(&hook.url)).await;
    refuse_bad_outcomes(&app).await;

    let wamids = ["wamid.GOOD1", "wamid.BAD", "wamid.GOOD2", "wamid.GOOD3"];
    let posts = wamids.map(|wamid| {
        let body = number.inbound(wamid, "hello");
        let app = &app;
        async move { app.post_webhook_ok(&body).await }
    });
    futures::future::join_all(posts).await;
    hook.wait_for(wamids.len(), ms(5000)).await;

    for wamid in ["wamid.GOOD1", "wamid.GOOD2", "wamid.GOOD3"] {
        wait_processing_status(&app, &number, wamid, "completed").await;
    }
    eventually(ms(5000), "the refused outcome counted", || async {
        let metrics = app.metrics().await;
        metrics
            .lines()
            .any(|l| {
                l.starts_with("wagate_delivery_outcomes_quarantined_total") && !l.ends_with(" 0")
            })
            .then_some(())
    })
    .await;
    // The bad one is still claimed (its lease brings it back later), never recorded as done.
    assert_eq!(
        processing_status(&app, &number, "wamid.BAD").await,
        "pending"
    );
    let listed = deliveries_of(&app, &number).await;
    let succeeded = listed.iter().filter(|d| d["status"] == "succeeded").count();
    assert_eq!(succeeded, 3, "{listed:?}");
}

crate::both_backends!(backend: a_refused_outcome_is_quarantined_and_its_batch_recorded);
