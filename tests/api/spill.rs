//! The writer's spill file (issue #23): what Meta accepted while the database was down is fsynced
//! to a local file, applied once the database is back (or at the next start), exactly once; a
//! full file keeps recordings in memory and fails readiness.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use wagate::config::Backend;
use wagate::domain::recorder::Recording;
use wagate::domain::spill;

use crate::common::app::json_of;
use crate::ingest::{Env, PNID};
use crate::outage::Blocker;

const V: &str = "/meta/whatsapp/v24.0";
const RECIPIENTS: [&str; 3] = ["15551230001", "15551230002", "15551230003"];

async fn outage_env(backend: Backend, spill_max_bytes: u64) -> Env {
    Env::start_with(backend, move |c| {
        c.database.busy_timeout = Duration::from_millis(300);
        c.writer.retry_interval = Duration::from_millis(200);
        c.writer.spill_max_bytes = spill_max_bytes;
    })
    .await
}

fn spill_path(env: &Env) -> PathBuf {
    PathBuf::from(&env.app.config.writer.spill_path)
}

fn spilled_records(env: &Env) -> u64 {
    let stats = env.app.state.writer.spill_stats().expect("a spill file");
    stats.records.load(Ordering::Acquire)
}

async fn wait_drained(env: &Env) {
    crate::common::eventually(
        Duration::from_secs(30),
        "the spill file drained",
        || async {
            let empty = spilled_records(env) == 0
                && env.app.state.writer.memory_depth() == 0
                && std::fs::metadata(spill_path(env)).unwrap().len() == 0;
            empty.then_some(())
        },
    )
    .await
}

async fn readiness(env: &Env) -> (u16, Value) {
    json_of(
        env.app
            .client
            .get(env.app.url("/readyz"))
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Waits for each message (a recording taken from memory may still be on its way to the
/// database after the buffers look empty), then checks none is stored twice.
async fn assert_stored_once(env: &Env, wamids: &[String]) {
    for wamid in wamids {
        env.wait_message(wamid, |_| true).await;
    }
    let stored = env.messages().await;
    for wamid in wamids {
        let copies = stored.iter().filter(|m| &m.wamid == wamid).count();
        assert_eq!(copies, 1, "{wamid} stored {copies} times");
    }
}

async fn conversation_counts(env: &Env, wamids: &[String]) -> Vec<i32> {
    let mut counts = Vec::new();
    for wamid in wamids {
        let message = env.wait_message(wamid, |_| true).await;
        let conversation = env
            .app
            .store
            .find_conversation(message.conversation_id.expect("a conversation"))
            .await
            .unwrap()
            .unwrap();
        counts.push(conversation.messages_count);
    }
    counts
}

/// Sends and a username claim during the outage are answered with Meta's 200 after their
/// fsync, drained in order once the database is back, and the file is emptied; replaying the
/// same records again (as after a crash between applying and marking them drained) changes
/// nothing, and a second instance replays a file it finds at start.
async fn spilled_recordings_reach_the_database_once(backend: Backend) {
    let env = outage_env(backend, 1 << 20).await;
    let warm = env.send_text("15551234567").await;
    env.wait_message(&warm, |_| true).await;

    let blocker = Blocker::hold(&env).await;
    let mut wamids = Vec::new();
    for to in RECIPIENTS {
        wamids.push(env.send_text(to).await);
    }
    let (status, answer) = json_of(
        env.app
            .request(Method::POST, &format!("{V}/{PNID}/username"))
            .json(&json!({"username": "acme_support"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    // Answered after the fsync: the records are in the file now.
    assert_eq!(spilled_records(&env), 4);
    let snapshot = std::fs::read(spill_path(&env)).unwrap();
    let payloads = spill::records_in(&snapshot);
    assert_eq!(payloads.len(), 4);
    let kinds: Vec<Value> = payloads
        .iter()
        .map(|p| serde_json::from_slice::<Value>(p).unwrap()["kind"].clone())
        .collect();
    assert_eq!(kinds, ["send", "send", "send", "username"]);
    // Never the number's webhook secrets.
    assert!(!String::from_utf8_lossy(&snapshot).contains("secret"));
    blocker.release().await;

    wait_drained(&env).await;
    let counts = conversation_counts(&env, &wamids).await;
    let number = env
        .app
        .store
        .find_phone_number(PNID)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(number.username.as_deref(), Some("acme_support"));
    let metrics = env.app.metrics().await;
    for name in [
        "wagate_recordings_spilled_total",
        "wagate_recordings_drained_total",
        "wagate_spill_records",
        "wagate_spill_bytes",
    ] {
        assert!(metrics.contains(name), "{name} missing");
    }

    // The same records applied again: nothing new, no counter moves.
    for payload in &payloads {
        let recording: Recording = serde_json::from_slice(payload).unwrap();
        env.app.state.writer.replay(recording).await.unwrap();
    }
    assert_eq!(conversation_counts(&env, &wamids).await, counts);
    assert_stored_once(&env, &wamids).await;

    // A restart finding the file (here: one message lost from the database since) applies it
    // at start: the missing message is back, the others are not doubled.
    let url = secrecy::ExposeSecret::expose_secret(&env.app.config.database.url).to_owned();
    crate::with_connection!(&url, conn => {
        sqlx::query("delete from messages where wamid = $1")
            .bind(&wamids[0])
            .execute(&mut conn)
            .await
            .unwrap();
    });
    let restart_spill = spill_path(&env).with_extension("restart");
    std::fs::write(&restart_spill, &snapshot).unwrap();
    let mut config = (*env.app.config).clone();
    config.writer.spill_path = restart_spill.display().to_string();
    let restarted = wagate::App::build(config).await.unwrap();
    env.wait_message(&wamids[0], |_| true).await;
    crate::common::eventually(
        Duration::from_secs(30),
        "the restart's spill drained",
        || async { (std::fs::metadata(&restart_spill).unwrap().len() == 0).then_some(()) },
    )
    .await;
    let after = conversation_counts(&env, &wamids).await;
    assert_eq!(
        after[0],
        counts[0] + 1,
        "the re-inserted message counts once"
    );
    assert_eq!(after[1..], counts[1..]);
    assert_stored_once(&env, &wamids).await;
    drop(restarted);
}

/// A spill file without room: the sends still get Meta's answer, the rest wait in memory
/// (counted), readiness fails until the file has room again, and everything is stored once.
async fn a_full_spill_file_keeps_recordings_in_memory(backend: Backend) {
    let env = outage_env(backend, 4096).await;
    let warm = env.send_text("15551234567").await;
    env.wait_message(&warm, |_| true).await;

    // Counted from here: on a loaded machine the warm-up's own recording may already have met a
    // busy database (300 ms busy timeout) and been spilled and drained.
    let writer_stats = &env.app.state.writer.stats;
    let spilled_before = writer_stats.spilled_recordings.load(Ordering::Relaxed);
    let in_memory_before = writer_stats.not_durable_recordings.load(Ordering::Relaxed);

    let blocker = Blocker::hold(&env).await;
    let mut wamids = Vec::new();
    for i in 0..10 {
        wamids.push(env.send_text(&format!("1555124{i:04}")).await);
    }
    // Let the drain retry the memory buffer a few times against the blocked database and the
    // full file: a retry that finds no place must not count its recording again, and while a
    // round has them out of the buffer they are still reported as held in memory.
    // Sampled every millisecond: a round is short, and the depth must never read 0 inside one.
    let retries_before = writer_stats.buffer_retries.load(Ordering::Relaxed);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while writer_stats.buffer_retries.load(Ordering::Relaxed) < retries_before + 3 {
        assert!(
            env.app.state.writer.memory_depth() > 0,
            "held recordings unreported"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for the drain to retry the memory buffer three times"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let stats = env.app.state.writer.spill_stats().unwrap();
    assert!(stats.full.load(Ordering::Acquire));
    assert!(stats.bytes.load(Ordering::Acquire) <= 4096);
    assert!(env.app.state.writer.memory_depth() > 0);
    let spilled = writer_stats.spilled_recordings.load(Ordering::Relaxed) - spilled_before;
    let in_memory = writer_stats.not_durable_recordings.load(Ordering::Relaxed) - in_memory_before;
    assert!(
        spilled > 0 && in_memory > 0,
        "{spilled} spilled, {in_memory} in memory"
    );
    assert_eq!(spilled + in_memory, 10);
    let (status, ready) = readiness(&env).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["spill"]["full"], true, "{ready}");
    assert!(env
        .app
        .metrics()
        .await
        .contains("wagate_recordings_not_durable_total"));
    blocker.release().await;

    wait_drained(&env).await;
    assert_stored_once(&env, &wamids).await;
    let (status, ready) = readiness(&env).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["spill"]["records"], 0);
}

/// A call placed through the proxy, applied twice (as a spilled record replayed after a crash
/// between applying it and marking it drained), keeps one event.
async fn a_replayed_call_is_recorded_once(backend: Backend) {
    let env = Env::start(backend).await;
    let recording: Recording = serde_json::from_value(json!({
        "kind": "call",
        "number": {
            "internal_id": env.number,
            "phone_number_id": PNID,
            "project_id": env.app.project_id,
            "forwarding": false,
        },
        "request": {"messaging_product": "whatsapp", "to": "15551230009", "action": "connect",
                    "session": {"sdp_type": "offer", "sdp": "v=0"}},
        "response": {"messaging_product": "whatsapp", "calls": [{"id": "wacid.SPILLED1"}]},
        "at": "2026-01-01T00:00:00Z",
    }))
    .unwrap();
    for _ in 0..2 {
        env.app
            .state
            .writer
            .replay(recording.clone())
            .await
            .unwrap();
    }
    let call = env
        .app
        .store
        .find_call(env.number, "wacid.SPILLED1")
        .await
        .unwrap()
        .expect("the call is recorded");
    let events: Vec<Value> = serde_json::from_str(&call.events).unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(call.to_number.as_deref(), Some("15551230009"));
}

crate::both_backends!(
    backend: spilled_recordings_reach_the_database_once,
    a_full_spill_file_keeps_recordings_in_memory,
    a_replayed_call_is_recorded_once,
);
