//! The media vault's rows (`media_files`): which stored file holds a message's media, and the
//! durable download queue. Rows are written in the ingest transaction (`StoreTx::queue_media`),
//! claimed by media workers in one short statement (`for update skip locked` on PostgreSQL, so
//! instances never claim the same row), and finished under the claim's lease token, so a worker
//! whose lease ran out never overwrites a newer claim. Shared SQL for both backends.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::StoreResult;

pub(crate) const MEDIA_COLUMNS: &str = "id, project_id, phone_number_internal_id, \
    phone_number_id, wamid, \
    direction, media_id, source_url, expected_sha256, sha256, content_type, filename, byte_size, \
    state, attempts, next_attempt_at, lease_token, last_error, created_at, updated_at, stored_at";

/// Where a message's media stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaState {
    /// Not kept yet: queued, or being retried.
    Pending,
    /// Kept: `sha256` names the file.
    Stored,
    /// Will not be kept (`last_error` says why: hash mismatch, too large, gone at Meta).
    Failed,
    /// Was kept, removed by `media.retention`.
    Expired,
}

impl MediaState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Stored => "stored",
            Self::Failed => "failed",
            Self::Expired => "expired",
        }
    }

    pub fn parse(value: &str) -> Self {
        match value {
            "stored" => Self::Stored,
            "failed" => Self::Failed,
            "expired" => Self::Expired,
            _ => Self::Pending,
        }
    }
}

/// One message's media.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MediaFileRow {
    pub id: Uuid,
    pub project_id: Uuid,
    pub phone_number_internal_id: Uuid,
    pub phone_number_id: String,
    pub wamid: String,
    pub direction: String,
    pub media_id: Option<String>,
    pub source_url: Option<String>,
    pub expected_sha256: Option<String>,
    pub sha256: Option<String>,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub byte_size: Option<i64>,
    pub state: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub lease_token: Option<Uuid>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub stored_at: Option<DateTime<Utc>>,
}

impl MediaFileRow {
    pub fn state(&self) -> MediaState {
        MediaState::parse(&self.state)
    }
}

/// A file uploaded through `POST {pnid}/media` and kept while it streamed to Meta.
#[derive(Debug, Clone)]
pub struct KeptUpload {
    pub project_id: Uuid,
    pub phone_number_internal_id: Uuid,
    pub phone_number_id: String,
    /// Meta's id for it, from the upload's answer.
    pub media_id: String,
    pub sha256: String,
    pub byte_size: i64,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub at: DateTime<Utc>,
}

/// A claimed download's end, to record under its lease.
#[derive(Debug, Clone)]
pub struct FinishedDownload {
    pub id: Uuid,
    pub lease_token: Uuid,
    pub outcome: MediaOutcome,
}

/// How a claimed download ended.
#[derive(Debug, Clone)]
pub enum MediaOutcome {
    Stored {
        sha256: String,
        byte_size: i64,
        content_type: Option<String>,
    },
    /// Try again at `at` (Graph 5xx, a timeout, the store unavailable).
    Retry { at: DateTime<Utc>, error: String },
    /// Never (hash mismatch, too large, Meta no longer has it).
    Failed { error: String },
}

#[async_trait]
pub trait MediaFiles: Send + Sync {
    /// Leases up to `limit` due downloads for `lease`; returns them oldest first.
    async fn claim_media_downloads(
        &self,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> StoreResult<Vec<MediaFileRow>>;
    /// Records claimed downloads' ends in one transaction: for each, `false` when its lease was
    /// lost meanwhile (a newer claim decides).
    async fn finish_media_downloads(
        &self,
        finished: &[FinishedDownload],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<bool>>;
    /// The media rows of these messages of one number.
    async fn media_files_of(
        &self,
        phone_number_internal_id: Uuid,
        wamids: &[String],
    ) -> StoreResult<Vec<MediaFileRow>>;
    async fn find_media_file(&self, id: Uuid) -> StoreResult<Option<MediaFileRow>>;
    /// Whether any stored media row (a message's, or a kept upload's) names this file.
    async fn media_file_in_use(&self, sha256: &str) -> StoreResult<bool>;
    /// Marks up to `limit` files stored before `before` as `expired` (`media.retention`);
    /// returns the files they named, for the caller to remove those no stored row still uses.
    async fn expire_stored_media(
        &self,
        before: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<String>>;
    /// Puts a row whose file vanished from the store (removed by a concurrent sweep) back in
    /// the queue; `false` when it was no longer stored.
    async fn requeue_media_file(&self, id: Uuid, now: DateTime<Utc>) -> StoreResult<bool>;
    /// Records an upload kept while it streamed to Meta (a stored row keyed by
    /// [`upload_key`]), replacing an earlier one of the same media id.
    async fn record_kept_upload(&self, upload: &KeptUpload) -> StoreResult<()>;
    /// The kept upload of this media id on this number, if any.
    async fn kept_upload(
        &self,
        phone_number_internal_id: Uuid,
        media_id: &str,
    ) -> StoreResult<Option<MediaFileRow>>;
    /// Due downloads and the age of the oldest (metrics).
    async fn media_queue_depth(
        &self,
        now: DateTime<Utc>,
    ) -> StoreResult<(i64, Option<DateTime<Utc>>)>;
    /// Puts failed downloads back in the queue (all projects, or one); returns how many.
    async fn requeue_failed_media(
        &self,
        project_id: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> StoreResult<u64>;
}

/// The `wamid` column of a kept upload's row: uploads have no message, and the prefix can never
/// be a wamid (those start `wamid.`), so lists and `has_media` never see them.
pub fn upload_key(media_id: &str) -> String {
    format!("upload:{media_id}")
}

/// Implements [`MediaFiles`] for a store type with a `pool` field, over its `Dialect`.
macro_rules! impl_media_files {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::media::MediaFiles for $store {
            async fn claim_media_downloads(
                &self,
                now: chrono::DateTime<chrono::Utc>,
                lease: std::time::Duration,
                limit: u32,
            ) -> $crate::store::StoreResult<Vec<$crate::store::media::MediaFileRow>> {
                use $crate::store::media::MEDIA_COLUMNS;
                let until = now
                    + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(300));
                let sql = format!(
                    "update media_files set next_attempt_at = $1, lease_token = $2, \
                     updated_at = $3 where id in (select id from media_files \
                     where state = 'pending' and next_attempt_at <= $3 \
                     order by next_attempt_at, id limit $4{}) returning {MEDIA_COLUMNS}",
                    <Self as $crate::store::dialect::Dialect>::SKIP_LOCKED
                );
                let mut rows: Vec<$crate::store::media::MediaFileRow> = sqlx::query_as(&sql)
                    .bind(until)
                    .bind(uuid::Uuid::now_v7())
                    .bind(now)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                rows.sort_by(|a, b| (a.created_at, a.id).cmp(&(b.created_at, b.id)));
                Ok(rows)
            }

            async fn finish_media_downloads(
                &self,
                finished: &[$crate::store::media::FinishedDownload],
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Vec<bool>> {
                use $crate::store::media::MediaOutcome;
                let mut tx = self.pool.begin().await?;
                let mut recorded = Vec::with_capacity(finished.len());
                for done in finished {
                    let (id, lease_token) = (done.id, done.lease_token);
                    let query = match &done.outcome {
                        MediaOutcome::Stored {
                            sha256,
                            byte_size,
                            content_type,
                        } => sqlx::query(
                            "update media_files set state = 'stored', sha256 = $3, byte_size = $4, \
                             content_type = coalesce($5, content_type), attempts = attempts + 1, \
                             lease_token = null, last_error = null, stored_at = $6, updated_at = $6 \
                             where id = $1 and lease_token = $2",
                        )
                        .bind(id)
                        .bind(lease_token)
                        .bind(sha256)
                        .bind(byte_size)
                        .bind(content_type)
                        .bind(now),
                        MediaOutcome::Retry { at, error } => sqlx::query(
                            "update media_files set next_attempt_at = $3, last_error = $4, \
                             attempts = attempts + 1, lease_token = null, updated_at = $5 \
                             where id = $1 and lease_token = $2",
                        )
                        .bind(id)
                        .bind(lease_token)
                        .bind(at)
                        .bind(error)
                        .bind(now),
                        MediaOutcome::Failed { error } => sqlx::query(
                            "update media_files set state = 'failed', last_error = $3, \
                             attempts = attempts + 1, lease_token = null, updated_at = $4 \
                             where id = $1 and lease_token = $2",
                        )
                        .bind(id)
                        .bind(lease_token)
                        .bind(error)
                        .bind(now),
                    };
                    recorded.push(query.execute(&mut *tx).await?.rows_affected() == 1);
                }
                tx.commit().await?;
                Ok(recorded)
            }

            async fn media_files_of(
                &self,
                phone_number_internal_id: uuid::Uuid,
                wamids: &[String],
            ) -> $crate::store::StoreResult<Vec<$crate::store::media::MediaFileRow>> {
                use $crate::store::media::MEDIA_COLUMNS;
                if wamids.is_empty() {
                    return Ok(Vec::new());
                }
                let placeholders = (2..=wamids.len() + 1)
                    .map(|i| format!("${i}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let sql = format!(
                    "select {MEDIA_COLUMNS} from media_files where phone_number_internal_id = $1 \
                     and wamid in ({placeholders})"
                );
                let mut query = sqlx::query_as(&sql).bind(phone_number_internal_id);
                for wamid in wamids {
                    query = query.bind(wamid);
                }
                Ok(query.fetch_all(&self.pool).await?)
            }

            async fn find_media_file(
                &self,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::store::media::MediaFileRow>> {
                use $crate::store::media::MEDIA_COLUMNS;
                let sql = format!("select {MEDIA_COLUMNS} from media_files where id = $1");
                Ok(sqlx::query_as(&sql)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn media_file_in_use(
                &self,
                sha256: &str,
            ) -> $crate::store::StoreResult<bool> {
                let used: Option<(i32,)> = sqlx::query_as(
                    "select 1 from media_files where sha256 = $1 and state = 'stored' limit 1",
                )
                .bind(sha256)
                .fetch_optional(&self.pool)
                .await?;
                Ok(used.is_some())
            }

            async fn expire_stored_media(
                &self,
                before: chrono::DateTime<chrono::Utc>,
                now: chrono::DateTime<chrono::Utc>,
                limit: u32,
            ) -> $crate::store::StoreResult<Vec<String>> {
                let sql = format!(
                    "update media_files set state = 'expired', updated_at = $2 \
                     where id in (select id from media_files where state = 'stored' \
                     and stored_at < $1 order by stored_at limit $3{}) returning sha256",
                    <Self as $crate::store::dialect::Dialect>::SKIP_LOCKED
                );
                let rows: Vec<(Option<String>,)> = sqlx::query_as(&sql)
                    .bind(before)
                    .bind(now)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                let mut files: Vec<String> = rows.into_iter().filter_map(|(s,)| s).collect();
                files.sort();
                files.dedup();
                Ok(files)
            }

            async fn requeue_media_file(
                &self,
                id: uuid::Uuid,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query(
                    "update media_files set state = 'pending', sha256 = null, stored_at = null, \
                     next_attempt_at = $2, updated_at = $2 where id = $1 and state = 'stored'",
                )
                .bind(id)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn record_kept_upload(
                &self,
                upload: &$crate::store::media::KeptUpload,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "insert into media_files (id, project_id, phone_number_internal_id, \
                     phone_number_id, wamid, direction, media_id, sha256, content_type, filename, \
                     byte_size, state, next_attempt_at, created_at, updated_at, stored_at) \
                     values ($1, $2, $3, $4, $5, 'upload', $6, $7, $8, $9, $10, 'stored', $11, \
                     $11, $11, $11) on conflict (phone_number_internal_id, wamid) do update set \
                     sha256 = excluded.sha256, byte_size = excluded.byte_size, \
                     content_type = excluded.content_type, filename = excluded.filename, \
                     state = 'stored', stored_at = excluded.stored_at, \
                     updated_at = excluded.updated_at",
                )
                .bind(uuid::Uuid::now_v7())
                .bind(upload.project_id)
                .bind(upload.phone_number_internal_id)
                .bind(&upload.phone_number_id)
                .bind($crate::store::media::upload_key(&upload.media_id))
                .bind(&upload.media_id)
                .bind(&upload.sha256)
                .bind(&upload.content_type)
                .bind(&upload.filename)
                .bind(upload.byte_size)
                .bind(upload.at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn kept_upload(
                &self,
                phone_number_internal_id: uuid::Uuid,
                media_id: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::media::MediaFileRow>> {
                use $crate::store::media::MEDIA_COLUMNS;
                let sql = format!(
                    "select {MEDIA_COLUMNS} from media_files where phone_number_internal_id = $1 \
                     and wamid = $2 and state = 'stored'"
                );
                Ok(sqlx::query_as(&sql)
                    .bind(phone_number_internal_id)
                    .bind($crate::store::media::upload_key(media_id))
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn media_queue_depth(
                &self,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<(i64, Option<chrono::DateTime<chrono::Utc>>)> {
                let (count,): (i64,) = sqlx::query_as(
                    "select count(*) from media_files where state = 'pending' \
                     and next_attempt_at <= $1",
                )
                .bind(now)
                .fetch_one(&self.pool)
                .await?;
                let oldest: Option<(chrono::DateTime<chrono::Utc>,)> = sqlx::query_as(
                    "select created_at from media_files where state = 'pending' \
                     and next_attempt_at <= $1 order by next_attempt_at, id limit 1",
                )
                .bind(now)
                .fetch_optional(&self.pool)
                .await?;
                Ok((count, oldest.map(|(t,)| t)))
            }

            async fn requeue_failed_media(
                &self,
                project_id: Option<uuid::Uuid>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<u64> {
                let done = sqlx::query(
                    "update media_files set state = 'pending', next_attempt_at = $1, \
                     attempts = 0, updated_at = $1 where state = 'failed' \
                     and ($2 is null or project_id = $2)",
                )
                .bind(now)
                .bind(project_id)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected())
            }
        }
    };
}

pub(crate) use impl_media_files;
