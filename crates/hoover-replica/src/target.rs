//! Where a copy lives: an S3-compatible object store and a prefix in it, and what is read
//! and written there (the marker, the listings, a file uploaded in parts).

use super::*;
use crate::objects::Pieces;

/// Where a copy lives: an object store and a prefix in it.
#[derive(Clone)]
pub struct Target {
    pub(crate) objects: Arc<dyn ObjectStore>,
    pub(crate) prefix: String,
    pub(crate) url: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

impl Target {
    /// The copy at `url` (`s3://BUCKET/PREFIX`), through `endpoint` (or `AWS_ENDPOINT_URL`,
    /// else AWS itself), with the credentials and region of the standard `AWS_*` variables. A
    /// plain `http://` endpoint is refused unless `AWS_ALLOW_HTTP=true`.
    pub fn s3(url: &str, endpoint: Option<&str>) -> Result<Target, String> {
        Target::s3_with(url, endpoint, &[])
    }

    /// As [`Target::s3`], with `settings` (`AWS_*` names and values) taking the place of the
    /// environment's.
    pub fn s3_with(
        url: &str,
        endpoint: Option<&str>,
        settings: &[(&str, &str)],
    ) -> Result<Target, String> {
        let var = |name: &str| {
            settings
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
                .or_else(|| std::env::var(name).ok())
        };
        // One TLS provider for the process (ring, as request signing uses); already set is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let rest = url.strip_prefix("s3://").ok_or_else(|| {
            format!("{url:?} is not an S3 address: give s3://BUCKET or s3://BUCKET/PREFIX")
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("{url:?} names no bucket: give s3://BUCKET/PREFIX"));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|p| p == "." || p == "..") {
            return Err(format!("{url:?}: a prefix may not hold . or .. parts"));
        }
        let endpoint = endpoint
            .map(str::to_string)
            .or_else(|| var("AWS_ENDPOINT_URL"))
            .filter(|e| !e.is_empty());
        let allow_http = var("AWS_ALLOW_HTTP").is_some_and(|v| v == "true");
        let mut builder = AmazonS3Builder::from_env();
        for (name, value) in settings {
            let key = name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>();
            if let Ok(key) = key {
                builder = builder.with_config(key, *value);
            }
        }
        let mut builder = builder
            .with_bucket_name(bucket)
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(30),
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(10))
                    .with_timeout(Duration::from_secs(300)),
            );
        if var("AWS_REGION").is_none() && var("AWS_DEFAULT_REGION").is_none() {
            builder = builder.with_region("us-east-1");
        }
        if let Some(endpoint) = &endpoint {
            if endpoint.starts_with("http://") && !allow_http {
                return Err(format!(
                    "the endpoint {endpoint} is plain http: set AWS_ALLOW_HTTP=true to allow it (only for a test server on loopback), or use https"
                ));
            }
            builder = builder.with_endpoint(endpoint).with_allow_http(allow_http);
        }
        let objects = builder
            .build()
            .map_err(|e| format!("cannot use {url}: {e}"))?;
        Ok(Target {
            objects: Arc::new(objects),
            prefix: prefix.to_string(),
            url: url.to_string(),
        })
    }

    /// The address the copy was given by.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn path(&self, rel: &str) -> ObjPath {
        match self.prefix.is_empty() {
            true => ObjPath::from(rel),
            false => ObjPath::from(format!("{}/{rel}", self.prefix)),
        }
    }

    /// The part of `path` after the prefix and `dir/`.
    pub(crate) fn under<'p>(&self, path: &'p str, dir: &str) -> Option<&'p str> {
        let rest = match self.prefix.is_empty() {
            true => path,
            false => path.strip_prefix(&self.prefix)?.strip_prefix('/')?,
        };
        rest.strip_prefix(dir)?.strip_prefix('/')
    }

    /// Uploads the file at `file` as the object `rel` (under the prefix), in parts when it is
    /// big: at most a few parts of [`PART_BYTES`] are held in memory, whatever its size. A
    /// failed upload is aborted, so no half-written object or dangling parts are left.
    pub async fn put_file(&self, rel: &str, file: &Path) -> Result<(), String> {
        use std::io::Read;
        use tokio::io::AsyncWriteExt;
        let shown = file.display().to_string();
        let mut reader = std::fs::File::open(file).map_err(|e| format!("{shown}: {e}"))?;
        let mut writer = object_store::buffered::BufWriter::with_capacity(
            self.objects.clone(),
            self.path(rel),
            PART_BYTES,
        )
        .with_max_concurrency(2);
        let sent: Result<(), String> = async {
            loop {
                let (back, piece) = tokio::task::spawn_blocking(move || {
                    let mut piece = Vec::with_capacity(PART_BYTES);
                    let read = (&mut reader)
                        .take(PART_BYTES as u64)
                        .read_to_end(&mut piece);
                    read.map(|_| (reader, piece))
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("{shown}: {e}"))?;
                reader = back;
                if piece.is_empty() {
                    break;
                }
                writer
                    .write_all(&piece)
                    .await
                    .map_err(|e| format!("{}: {e}", self.url))?;
            }
            writer
                .shutdown()
                .await
                .map_err(|e| format!("{}: {e}", self.url))
        }
        .await;
        if sent.is_err() {
            let _ = writer.abort().await;
        }
        sent
    }

    /// The store id the copy's marker names, if it has one.
    pub(crate) async fn marker(&self) -> Result<Option<String>, String> {
        match self.objects.get(&self.path(MARKER)).await {
            Ok(got) => {
                let bytes = got.bytes().await.map_err(|e| self.says(e))?;
                let text = String::from_utf8_lossy(&bytes);
                let mut lines = text.lines();
                if lines.next() != Some(MARKER_MAGIC) {
                    return Err(format!(
                        "{} holds a {MARKER} this hoover does not understand; give another prefix",
                        self.url
                    ));
                }
                Ok(lines
                    .find_map(|l| l.strip_prefix("store "))
                    .map(str::to_string))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.says(e)),
        }
    }

    /// Makes the copy this store's: writes its marker, or checks the one there.
    pub(crate) async fn claim(&self, store_id: &str) -> Result<(), String> {
        match self.marker().await? {
            Some(id) if id == store_id => Ok(()),
            Some(id) => Err(format!(
                "{} holds the copy of another store (store {id}; this one is {store_id}); give --replicate-to another prefix",
                self.url
            )),
            None => {
                let text = format!("{MARKER_MAGIC}\nstore {store_id}\n");
                self.objects
                    .put(&self.path(MARKER), PutPayload::from(text.into_bytes()))
                    .await
                    .map_err(|e| self.says(e))?;
                Ok(())
            }
        }
    }

    /// Every object under `dir/`: its path after `dir/`, and its size.
    pub(crate) async fn list(&self, dir: &str) -> Result<Vec<(String, u64)>, String> {
        let prefix = self.path(dir);
        let metas: Vec<object_store::ObjectMeta> = self
            .objects
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| self.says(e))?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let rel = self.under(m.location.as_ref(), dir)?.to_string();
                Some((rel, m.size))
            })
            .collect())
    }

    /// Each pack's segments in the copy: (offset, size), by offset.
    pub(crate) async fn segments(&self) -> Result<Pieces, String> {
        let mut packs: HashMap<String, Vec<(u64, u64)>> = HashMap::new();
        for (rel, size) in self.list("packs").await? {
            let Some((name, offset)) = rel.split_once('/') else {
                continue;
            };
            let Ok(offset) = u64::from_str_radix(offset, 16) else {
                continue;
            };
            if hoover_store::is_pack_name(name) {
                packs
                    .entry(name.to_string())
                    .or_default()
                    .push((offset, size));
            }
        }
        for segs in packs.values_mut() {
            segs.sort_unstable();
        }
        Ok(packs)
    }

    /// The log snapshots in the copy, oldest first: (name, time taken).
    pub(crate) async fn snapshots(&self) -> Result<Vec<(String, i64)>, String> {
        let mut found: Vec<(String, i64)> = self
            .list("log")
            .await?
            .into_iter()
            .filter_map(|(rel, _)| {
                let ns = rel.strip_suffix(".db.zst")?.parse().ok()?;
                Some((rel, ns))
            })
            .collect();
        found.sort_by_key(|(_, ns)| *ns);
        Ok(found)
    }

    pub(crate) fn says(&self, e: object_store::Error) -> String {
        let bucket = self.url["s3://".len()..].split('/').next().unwrap_or("");
        match e {
            object_store::Error::NotFound { .. } => format!(
                "{}: not found (does the bucket {bucket} exist?): {e}",
                self.url
            ),
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => format!(
                "{}: the object store refused the credentials (check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and the bucket's permissions): {e}",
                self.url
            ),
            e if e.to_string().contains("NoSuchBucket") => {
                format!("{}: there is no bucket {bucket}; create it first: {e}", self.url)
            }
            e => format!("{}: {e}", self.url),
        }
    }
}
