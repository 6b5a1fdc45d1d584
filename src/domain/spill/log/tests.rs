use std::io::Write as _;

use super::*;

fn payloads(spill_pending: &Pending) -> Vec<String> {
    spill_pending
        .records
        .iter()
        .map(|(_, p)| String::from_utf8(p.clone()).unwrap())
        .collect()
}

fn records(spill: &Spill) -> u64 {
    spill.stats.records.load(Ordering::Acquire)
}

#[tokio::test]
async fn appended_records_survive_a_reopen_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spill").join("writer.spill");
    {
        let spill = Spill::open(&path, 1 << 20).unwrap();
        spill
            .append(vec![b"one".to_vec(), b"two".to_vec()])
            .await
            .unwrap();
        spill.append(vec![b"three".to_vec()]).await.unwrap();
        assert_eq!(records(&spill), 3);
        // Dropping the handle ends the thread and releases the lock.
    }
    std::thread::sleep(std::time::Duration::from_millis(50));
    let spill = Spill::open(&path, 1 << 20).unwrap();
    assert_eq!(records(&spill), 3);
    let pending = spill.pending(1 << 20).await.unwrap();
    assert_eq!(payloads(&pending), ["one", "two", "three"]);
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_appends_continue_after_the_valid_part() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("writer.spill");
    {
        let spill = Spill::open(&path, 1 << 20).unwrap();
        spill.append(vec![b"kept".to_vec()]).await.unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(50));
    // A crash mid-write: half a header and some payload.
    let valid = std::fs::metadata(&path).unwrap().len();
    let mut file = OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(&frame::encode(b"never acknowledged")[..13])
        .unwrap();
    drop(file);
    let spill = Spill::open(&path, 1 << 20).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), valid);
    spill.append(vec![b"after".to_vec()]).await.unwrap();
    let pending = spill.pending(1 << 20).await.unwrap();
    assert_eq!(payloads(&pending), ["kept", "after"]);
}

#[tokio::test]
async fn drained_records_are_not_replayed_and_a_full_drain_empties_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("writer.spill");
    let first_end;
    {
        let spill = Spill::open(&path, 1 << 20).unwrap();
        spill
            .append(vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()])
            .await
            .unwrap();
        // A small read returns whole records only.
        let pending = spill.pending(1).await.unwrap();
        assert_eq!(payloads(&pending), ["a"]);
        first_end = pending.records[0].0;
        spill.drained(first_end, 1).await.unwrap();
        assert_eq!(records(&spill), 2);
    }
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(read_marker(&marker_path(&path)), first_end);
    let spill = Spill::open(&path, 1 << 20).unwrap();
    assert_eq!(records(&spill), 2);
    let pending = spill.pending(1 << 20).await.unwrap();
    assert_eq!(payloads(&pending), ["b", "c"]);
    let end = pending.records.last().unwrap().0;
    spill.drained(end, 2).await.unwrap();
    assert_eq!(records(&spill), 0);
    assert_eq!(spill.stats.bytes.load(Ordering::Acquire), 0);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    assert_eq!(read_marker(&marker_path(&path)), 0);
    assert!(spill.pending(1 << 20).await.unwrap().records.is_empty());
}

#[tokio::test]
async fn a_marker_past_the_end_replays_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("writer.spill");
    {
        let spill = Spill::open(&path, 1 << 20).unwrap();
        spill.append(vec![b"x".to_vec()]).await.unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(50));
    // As if the file had been truncated after a full drain and refilled, marker stale.
    write_marker(&marker_path(&path), 4096).unwrap();
    let spill = Spill::open(&path, 1 << 20).unwrap();
    assert_eq!(payloads(&spill.pending(1 << 20).await.unwrap()), ["x"]);
}

#[tokio::test]
async fn a_full_file_refuses_and_a_drain_makes_room() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("writer.spill");
    let spill = Spill::open(&path, 40).unwrap();
    spill.append(vec![vec![b'x'; 20]]).await.unwrap();
    let refused = spill.append(vec![vec![b'y'; 20]]).await;
    assert!(matches!(refused, Err(SpillError::Full(40))), "{refused:?}");
    assert!(spill.stats.full.load(Ordering::Acquire));
    assert_eq!(records(&spill), 1);
    let pending = spill.pending(1 << 20).await.unwrap();
    spill.drained(pending.records[0].0, 1).await.unwrap();
    assert!(!spill.stats.full.load(Ordering::Acquire));
    spill.append(vec![vec![b'y'; 20]]).await.unwrap();
}

#[tokio::test]
async fn a_second_instance_cannot_open_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("writer.spill");
    let _first = Spill::open(&path, 1 << 20).unwrap();
    let error = Spill::open(&path, 1 << 20).err().expect("locked");
    assert!(error.to_string().contains("in use"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("writer.spill");
    let spill = Spill::open(&path, 1 << 24).unwrap();
    let waits: Vec<_> = (0..500)
        .map(|i| spill.append(vec![format!("record {i}").into_bytes()]))
        .collect();
    for result in futures::future::join_all(waits).await {
        result.unwrap();
    }
    assert_eq!(records(&spill), 500);
    let fsyncs = spill.stats.fsyncs.load(Ordering::Relaxed);
    assert!(
        fsyncs < 500,
        "500 appends queued together took {fsyncs} fsyncs"
    );
    let pending = spill.pending(1 << 24).await.unwrap();
    assert_eq!(pending.records.len(), 500);
    assert_eq!(payloads(&pending)[499], "record 499");
}
