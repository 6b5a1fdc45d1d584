//! `[media]`: the media vault's settings and the rules serde cannot check.

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// The media vault: every media file kept in an object store and served by stable URLs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    /// Keep media at all; off, messages carry Meta's ids only (as before the vault).
    pub vault: bool,
    /// Where: empty (a `media` folder beside the SQLite database, else in the working folder),
    /// a path or `file:///path`, or `s3://bucket/prefix`.
    pub store: String,
    /// S3-compatible endpoint for MinIO, R2 and friends (empty: AWS).
    pub s3_endpoint: String,
    /// Largest file kept, in bytes (Meta's largest, documents: 100 MiB).
    pub max_bytes: u64,
    /// Downloads from Graph running at once on this instance.
    pub max_in_flight: usize,
    /// Whole time one download may take.
    #[serde(with = "humantime_serde")]
    pub download_timeout: Duration,
    /// A claimed download is this instance's for this long; after it (a crash) any instance
    /// takes it. Must exceed download_timeout.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// New downloads wake the workers at once on this instance; this is the fallback poll.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Retryable failures stop being retried this long after the message arrived (Meta's
    /// webhook media ids expire after 7 days).
    #[serde(with = "humantime_serde")]
    pub give_up_after: Duration,
    /// How long the signed `media_url` works without an API key.
    #[serde(with = "humantime_serde")]
    pub link_lifetime: Duration,
    /// Files kept longer than this are removed and their messages say `expired`; unset keeps
    /// everything.
    #[serde(default, with = "humantime_serde")]
    pub retention: Option<Duration>,
    /// How often this instance looks for files past `retention`.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// Media sent by `link` may be fetched from private, loopback and link-local addresses (and
    /// any port). Off, links are fetched like webhooks are delivered: public addresses only.
    pub allow_private_links: bool,
    /// Uploads through `POST {pnid}/media` are copied into the vault while they stream to Meta,
    /// so the message that sends them needs no download.
    pub keep_uploads: bool,
}

impl MediaConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("media.max_bytes", self.max_bytes),
            ("media.max_in_flight", self.max_in_flight as u64),
        ] {
            if value == 0 {
                return Err(ConfigError(format!("{key}: must be at least 1")));
            }
        }
        for (key, value) in [
            ("media.download_timeout", self.download_timeout),
            ("media.lease", self.lease),
            ("media.poll_interval", self.poll_interval),
            ("media.backoff_initial", self.backoff_initial),
            ("media.backoff_max", self.backoff_max),
            ("media.give_up_after", self.give_up_after),
            ("media.link_lifetime", self.link_lifetime),
            ("media.sweep_interval", self.sweep_interval),
        ] {
            if value.is_zero() {
                return Err(ConfigError(format!("{key}: must be greater than 0s")));
            }
        }
        if self.retention.is_some_and(|r| r.is_zero()) {
            return Err(ConfigError(
                "media.retention: must be greater than 0s (leave it unset to keep files forever)"
                    .into(),
            ));
        }
        // A lease that runs out while its download still may run lets a second instance start
        // the same download: twice the traffic, and two writers of one object.
        if self.lease <= self.download_timeout {
            return Err(ConfigError(format!(
                "media.lease ({:?}) must exceed media.download_timeout ({:?}); raise the lease",
                self.lease, self.download_timeout
            )));
        }
        Ok(())
    }
}
