//! The spill file itself: one append-only file per instance, owned by one thread.
//!
//! Appends that arrive while a group is being written share its single `fsync` (group commit);
//! each caller is answered once its record is on disk. Draining reads the records past the
//! "drained up to" offset, which a marker file beside the log (`<path>.drained`, replaced by
//! rename) remembers; once everything is drained the marker is reset to 0 *before* the file is
//! truncated, so a crash in between only replays records again (applying one is idempotent),
//! never skips one. The file is locked exclusively, so two instances can never share it.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::{mpsc, oneshot};

use super::frame::{self, HEADER};

/// Why a record could not be spilled.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SpillError {
    #[error("the spill file is full (writer.spill_max_bytes = {0})")]
    Full(u64),
    #[error("the spill file failed: {0}")]
    Io(String),
    #[error("the spill file is closed")]
    Closed,
}

/// What the spill holds now (exported as metrics and on `/readyz`).
#[derive(Debug, Default)]
pub struct SpillStats {
    /// Records not yet drained to the database.
    pub records: AtomicU64,
    /// Bytes of those records.
    pub bytes: AtomicU64,
    /// Appends sent to the file thread and not yet answered.
    pub in_flight: AtomicU64,
    /// The last append was refused for lack of room (cleared by a drain).
    pub full: AtomicBool,
    /// fsyncs of appended groups (one per group, however many records it held).
    pub fsyncs: AtomicU64,
}

impl SpillStats {
    /// Records on their way or waiting: new recordings queue behind them to keep their order.
    pub fn holds_records(&self) -> bool {
        self.records.load(Ordering::Acquire) + self.in_flight.load(Ordering::Acquire) > 0
    }
}

/// Undrained records read back in order, each with the file offset just past it.
#[derive(Debug, Default)]
pub struct Pending {
    pub records: Vec<(u64, Vec<u8>)>,
}

type Reply<T> = oneshot::Sender<Result<T, SpillError>>;

enum Command {
    Append(Vec<Vec<u8>>, Reply<()>),
    Pending(usize, Reply<Pending>),
    Drained(u64, u64, Reply<()>),
}

/// A handle on this instance's spill file.
#[derive(Clone)]
pub struct Spill {
    commands: mpsc::UnboundedSender<Command>,
    pub stats: Arc<SpillStats>,
    path: Arc<PathBuf>,
}

struct Log {
    file: File,
    path: PathBuf,
    marker: PathBuf,
    /// Bytes of valid records in the file.
    len: u64,
    /// Records before this offset are in the database.
    drained: u64,
    /// Bytes known to be on disk (`len` minus a group written but not yet fsynced).
    synced: u64,
    max_bytes: u64,
    stats: Arc<SpillStats>,
}

impl Spill {
    /// Opens (creating) the file, cuts a torn tail, and starts its thread. Fails when another
    /// process holds the file.
    pub fn open(path: &Path, max_bytes: u64) -> anyhow::Result<Self> {
        let log = Log::open(path, max_bytes)?;
        let stats = log.stats.clone();
        let (commands, rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("wagate-spill".into())
            .spawn(move || log.run(rx))
            .context("starting the spill thread")?;
        Ok(Self {
            commands,
            stats,
            path: Arc::new(path.to_path_buf()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues `payloads` (in order, as one group) and returns the wait for their fsync. The
    /// queueing is synchronous, so callers keep their order.
    pub fn append(
        &self,
        payloads: Vec<Vec<u8>>,
    ) -> impl std::future::Future<Output = Result<(), SpillError>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        self.stats.in_flight.fetch_add(1, Ordering::AcqRel);
        let sent = self.commands.send(Command::Append(payloads, reply)).is_ok();
        let stats = self.stats.clone();
        async move {
            let result = if sent {
                answer.await.unwrap_or(Err(SpillError::Closed))
            } else {
                Err(SpillError::Closed)
            };
            stats.in_flight.fetch_sub(1, Ordering::AcqRel);
            result
        }
    }

    /// Up to about `max_bytes` of undrained records (at least one when any is left).
    pub async fn pending(&self, max_bytes: usize) -> Result<Pending, SpillError> {
        self.ask(|reply| Command::Pending(max_bytes, reply)).await
    }

    /// Marks the records up to `end` (and `count` of them) as in the database.
    pub async fn drained(&self, end: u64, count: u64) -> Result<(), SpillError> {
        self.ask(|reply| Command::Drained(end, count, reply)).await
    }

    async fn ask<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, SpillError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .map_err(|_| SpillError::Closed)?;
        answer.await.unwrap_or(Err(SpillError::Closed))
    }
}

fn io(error: std::io::Error) -> SpillError {
    SpillError::Io(error.to_string())
}

impl Log {
    fn open(path: &Path, max_bytes: u64) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the spill folder {}", dir.display()))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("opening the spill file {}", path.display()))?;
        let lock = rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive);
        if let Err(error) = lock {
            anyhow::bail!(
                "the spill file {} is in use ({error}): another wagate instance has it; give \
                 each instance its own writer.spill_path",
                path.display()
            );
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .with_context(|| format!("reading the spill file {}", path.display()))?;
        let scan = frame::scan(&bytes);
        if scan.torn > 0 {
            tracing::warn!(
                path = %path.display(),
                valid_bytes = scan.valid_len,
                torn_bytes = scan.torn,
                "spill file ends in a torn or corrupt record (a crash mid-write, never \
                 acknowledged); cut it off"
            );
            metrics::counter!("wagate_spill_torn_bytes_total").increment(scan.torn);
            file.set_len(scan.valid_len)?;
            file.sync_all()?;
        }
        let marker = marker_path(path);
        let mut drained = read_marker(&marker);
        // A marker past the end (the file was truncated after a full drain) or between records
        // (damaged) means nothing trustworthy is drained: replay is idempotent, so start over.
        if drained != 0 && !scan.records.iter().any(|(end, _)| *end == drained) {
            drained = 0;
        }
        let undrained: Vec<_> = scan
            .records
            .iter()
            .filter(|(end, _)| *end > drained)
            .collect();
        let stats = Arc::new(SpillStats::default());
        stats
            .records
            .store(undrained.len() as u64, Ordering::Release);
        stats
            .bytes
            .store(scan.valid_len - drained, Ordering::Release);
        if !undrained.is_empty() {
            tracing::warn!(
                path = %path.display(),
                records = undrained.len(),
                "spill file holds recordings from before the restart; they go to the database \
                 as soon as it answers"
            );
        }
        let log = Self {
            file,
            path: path.to_path_buf(),
            marker,
            len: scan.valid_len,
            drained,
            synced: scan.valid_len,
            max_bytes,
            stats,
        };
        log.publish();
        Ok(log)
    }

    fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        while let Some(first) = rx.blocking_recv() {
            let mut commands = vec![first];
            while let Ok(next) = rx.try_recv() {
                commands.push(next);
            }
            // Consecutive appends are written, then share one fsync.
            let mut group: Vec<(Reply<()>, u64)> = Vec::new();
            for command in commands {
                match command {
                    Command::Append(payloads, reply) => match self.write(&payloads) {
                        Ok(()) => group.push((reply, payloads.len() as u64)),
                        Err(error) => {
                            let _ = reply.send(Err(error));
                        }
                    },
                    Command::Pending(max, reply) => {
                        self.sync_group(&mut group);
                        let _ = reply.send(self.read_pending(max));
                    }
                    Command::Drained(end, count, reply) => {
                        self.sync_group(&mut group);
                        let _ = reply.send(self.mark_drained(end, count));
                    }
                }
            }
            self.sync_group(&mut group);
        }
    }

    fn write(&mut self, payloads: &[Vec<u8>]) -> Result<(), SpillError> {
        let bytes: Vec<u8> = payloads.iter().flat_map(|p| frame::encode(p)).collect();
        if self.len + bytes.len() as u64 > self.max_bytes {
            self.stats.full.store(true, Ordering::Release);
            return Err(SpillError::Full(self.max_bytes));
        }
        if let Err(error) = self.file.write_all_at(&bytes, self.len) {
            // Whatever part was written is cut again (or skipped as a torn tail at start).
            let _ = self.file.set_len(self.len);
            return Err(io(error));
        }
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// One fsync for every append written since the last; answers them.
    fn sync_group(&mut self, group: &mut Vec<(Reply<()>, u64)>) {
        if group.is_empty() {
            return;
        }
        let synced = self.file.sync_data();
        self.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("wagate_spill_fsyncs_total").increment(1);
        metrics::histogram!("wagate_spill_group_size").record(group.len() as f64);
        let result = match synced {
            Ok(()) => {
                let records: u64 = group.iter().map(|(_, n)| n).sum();
                self.stats.records.fetch_add(records, Ordering::AcqRel);
                self.synced = self.len;
                self.publish();
                Ok(())
            }
            Err(error) => {
                tracing::error!(%error, path = %self.path.display(), "spill fsync failed");
                // Not durable: those callers keep their recordings in memory instead.
                self.len = self.synced;
                let _ = self.file.set_len(self.len);
                Err(io(error))
            }
        };
        for (reply, _) in group.drain(..) {
            let _ = reply.send(result.clone());
        }
    }

    fn read_pending(&self, max: usize) -> Result<Pending, SpillError> {
        let available = (self.len - self.drained) as usize;
        let mut want = available.min(max.max(HEADER));
        // `want` grows at most once: a scan of the first record's full length finds it.
        loop {
            let mut bytes = vec![0; want];
            self.file
                .read_exact_at(&mut bytes, self.drained)
                .map_err(io)?;
            let scan = frame::scan(&bytes);
            if scan.records.is_empty() && want < available {
                // The first record is larger than `max`: read just that one, whole.
                let len = u32::from_le_bytes(bytes[..4].try_into().expect("a header")) as usize;
                want = available.min(HEADER + len.min(frame::MAX_PAYLOAD));
                continue;
            }
            let records = scan
                .records
                .into_iter()
                .map(|(end, payload)| (self.drained + end, payload))
                .collect();
            return Ok(Pending { records });
        }
    }

    fn mark_drained(&mut self, end: u64, count: u64) -> Result<(), SpillError> {
        if end <= self.drained || end > self.len {
            return Ok(());
        }
        if end == self.len {
            // Everything is in the database: forget it, marker first (a crash before the
            // truncation replays what is already applied, which changes nothing).
            write_marker(&self.marker, 0).map_err(io)?;
            self.file.set_len(0).map_err(io)?;
            self.file.sync_all().map_err(io)?;
            self.len = 0;
            self.synced = 0;
            self.drained = 0;
            self.stats.records.store(0, Ordering::Release);
        } else {
            write_marker(&self.marker, end).map_err(io)?;
            self.drained = end;
            let left = self
                .stats
                .records
                .load(Ordering::Acquire)
                .saturating_sub(count);
            self.stats.records.store(left, Ordering::Release);
        }
        self.stats.full.store(false, Ordering::Release);
        self.publish();
        Ok(())
    }

    fn publish(&self) {
        let bytes = self.len - self.drained;
        self.stats.bytes.store(bytes, Ordering::Release);
        let records = self.stats.records.load(Ordering::Acquire);
        metrics::gauge!("wagate_spill_records").set(records as f64);
        metrics::gauge!("wagate_spill_bytes").set(bytes as f64);
        metrics::gauge!("wagate_spill_file_bytes").set(self.len as f64);
    }
}

fn marker_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".drained");
    path.with_file_name(name)
}

fn read_marker(marker: &Path) -> u64 {
    std::fs::read_to_string(marker)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0)
}

/// Replaces the marker atomically: a temporary file, fsynced, renamed over it, folder fsynced.
fn write_marker(marker: &Path, offset: u64) -> std::io::Result<()> {
    let mut temporary = marker.as_os_str().to_os_string();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    {
        let file = File::create(&temporary)?;
        file.write_all_at(format!("{offset}\n").as_bytes(), 0)?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, marker)?;
    if let Some(dir) = marker.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
