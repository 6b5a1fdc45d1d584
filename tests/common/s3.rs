//! The S3-compatible test server (moto, pinned, started by `tests/s3/start.sh`, which
//! `scripts/test.sh` sources): where it is, and what a bucket prefix holds.

use futures::TryStreamExt as _;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::ObjectStore as _;

/// The bucket `tests/s3/start.sh` creates.
pub const BUCKET: &str = "wagate-test";

/// The S3 endpoint tests use, or `None` (skipped, said aloud) when there is none; with
/// `WAGATE_REQUIRE_S3=1` (the test script) a missing one fails instead.
pub fn endpoint() -> Option<String> {
    match std::env::var("WAGATE_TEST_S3_ENDPOINT") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("WAGATE_REQUIRE_S3").as_deref() == Ok("1") => {
            panic!("WAGATE_REQUIRE_S3=1 but WAGATE_TEST_S3_ENDPOINT is not set")
        }
        _ => {
            eprintln!("SKIPPED: no WAGATE_TEST_S3_ENDPOINT (scripts/test.sh starts one)");
            None
        }
    }
}

/// One test's part of the test bucket: a prefix no other test uses.
#[derive(Debug, Clone)]
pub struct TestBucket {
    pub endpoint: String,
    pub prefix: String,
}

impl TestBucket {
    /// A fresh prefix on the test server; `None` when the test is skipped (see [`endpoint`]).
    pub fn open() -> Option<Self> {
        Some(Self::at(endpoint()?))
    }

    /// A fresh prefix on the server at `endpoint`.
    pub fn at(endpoint: String) -> Self {
        Self {
            endpoint,
            prefix: format!("run-{}", uuid::Uuid::now_v7()),
        }
    }

    /// Points the media vault at this prefix, through `endpoint` (the server's own, or a
    /// forwarder in front of it).
    pub fn configure(&self, config: &mut wagate::config::Config, endpoint: &str) {
        config.media.store = format!("s3://{BUCKET}/{}", self.prefix);
        config.media.s3_endpoint = endpoint.to_owned();
    }

    /// The keys of the objects under the prefix, below it, sorted.
    pub async fn objects(&self) -> Vec<String> {
        let bucket = AmazonS3Builder::from_env()
            .with_bucket_name(BUCKET)
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .build()
            .unwrap();
        let below = self.prefix.len() + 1;
        let mut keys: Vec<String> = bucket
            .list(Some(&Path::from(self.prefix.as_str())))
            .map_ok(|meta| meta.location.to_string()[below..].to_owned())
            .try_collect()
            .await
            .unwrap();
        keys.sort();
        keys
    }

    /// The keys (below the prefix) of multipart uploads that were neither completed nor
    /// aborted: invisible as objects, they would stay in a real bucket, billed. object_store
    /// cannot list them; this asks S3's `ListMultipartUploads` directly (unsigned: the test
    /// server does not check signatures).
    pub async fn unfinished_uploads(&self) -> Vec<String> {
        let xml = reqwest::Client::new()
            .get(format!(
                "{}/{BUCKET}?uploads&prefix={}/",
                self.endpoint, self.prefix
            ))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .text()
            .await
            .unwrap();
        let below = format!("{}/", self.prefix);
        xml.split("<Upload>")
            .skip(1)
            .filter_map(|upload| {
                let key = upload.split("<Key>").nth(1)?.split("</Key>").next()?;
                Some(key.strip_prefix(&below).unwrap_or(key).to_owned())
            })
            .collect()
    }

    /// Everything the prefix holds, finished or not: objects, then unfinished uploads (marked).
    pub async fn leftovers(&self) -> Vec<String> {
        let mut all = self.objects().await;
        all.extend(
            self.unfinished_uploads()
                .await
                .into_iter()
                .map(|key| format!("{key} (unfinished upload)")),
        );
        all
    }
}

/// Where a test's media vault keeps its files: the folder its configuration names, or a prefix
/// of the test bucket.
pub enum VaultPlace {
    Folder,
    Bucket(TestBucket),
}

impl VaultPlace {
    /// Points the vault at the bucket (a folder is the test app's own already).
    pub fn configure(&self, config: &mut wagate::config::Config) {
        if let VaultPlace::Bucket(bucket) = self {
            bucket.configure(config, &bucket.endpoint);
        }
    }

    /// Everything the store of `config` holds (on S3, unfinished uploads too), sorted.
    pub async fn contents(&self, config: &wagate::config::Config) -> Vec<String> {
        match self {
            VaultPlace::Folder => {
                let root = std::path::Path::new(&config.media.store);
                let mut files: Vec<String> = super::files_under(root)
                    .iter()
                    .map(|p| p.strip_prefix(root).unwrap().display().to_string())
                    .collect();
                files.sort();
                files
            }
            VaultPlace::Bucket(bucket) => bucket.leftovers().await,
        }
    }
}
