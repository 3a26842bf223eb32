//! A store built again from the copy on a new machine.

use std::io::Read;

use super::*;

/// What a recovery found in the copy and wrote.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Recovered {
    pub store: PathBuf,
    /// When the snapshot of the version log it used was taken (ns since the epoch).
    pub snapshot_ns: i64,
    pub packs: u64,
    pub pack_bytes: u64,
}

/// Builds a store in `root` (missing or empty) from the copy at `target`: its newest snapshot
/// of the version log and every pack byte that snapshot names. `progress` is told each pack as
/// it is written (packs done, packs in all). Check the result with `Store::verify`.
pub async fn recover(
    target: &Target,
    root: &Path,
    mut progress: impl FnMut(u64, u64),
) -> Result<Recovered, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    if target.marker().await?.is_none() {
        return Err(format!(
            "{} holds no hoover copy (no {MARKER}); check the bucket and prefix",
            target.url()
        ));
    }
    let Some((name, snapshot_ns)) = target.snapshots().await?.pop() else {
        return Err(format!(
            "{} holds no snapshot of a version log yet (a server uploads one within a minute of its first commit)",
            target.url()
        ));
    };
    let parent = root
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    let temp = || {
        tempfile::NamedTempFile::new_in(parent)
            .map_err(|e| format!("cannot write beside {}: {e}", root.display()))
    };
    // The snapshot goes to disk as it arrives and is decompressed from there: memory stays
    // bounded whatever size the copy says it is.
    let mut compressed = temp()?;
    let mut body = target
        .objects
        .get(&target.path(&format!("log/{name}")))
        .await
        .map_err(|e| target.says(e))?
        .into_stream();
    while let Some(part) = body.try_next().await.map_err(|e| target.says(e))? {
        compressed
            .write_all(&part)
            .map_err(|e| format!("{}: {e}", compressed.path().display()))?;
    }
    compressed
        .rewind()
        .map_err(|e| format!("{}: {e}", compressed.path().display()))?;
    let mut log = temp()?;
    // A log this hoover wrote compresses about 2:1 (hashes do not compress); a snapshot that
    // inflates far past that is not one, and is not allowed to fill the disk.
    let compressed_len = compressed
        .as_file()
        .metadata()
        .map_err(|e| format!("{}: {e}", compressed.path().display()))?
        .len();
    let limit = compressed_len
        .saturating_mul(LOG_INFLATION_MAX)
        .saturating_add(1 << 20);
    // One byte past the limit tells a snapshot over it from one exactly at it.
    let mut inflated = zstd::stream::read::Decoder::new(compressed.as_file())
        .map_err(|e| format!("{}: {e}", compressed.path().display()))?
        .take(limit.saturating_add(1));
    let written = std::io::copy(&mut inflated, &mut log)
        .map_err(|e| format!("the copy's snapshot {name} does not decompress: {e}"))?;
    if written > limit {
        return Err(format!(
            "the copy's snapshot {name} decompresses to more than {limit} bytes, {LOG_INFLATION_MAX} times its {compressed_len}: not a version log hoover wrote; recovery stopped before it filled the disk"
        ));
    }
    drop(compressed);
    log.flush().map_err(|e| e.to_string())?;
    let rebuild = Arc::new(Rebuild::begin(root, log.path()).map_err(|e| e.to_string())?);
    let copy = ObjectPacks::new(target.clone());
    let lister = copy.clone();
    let held: HashMap<String, u64> = tokio::task::spawn_blocking(move || lister.list())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|e| (e.name, e.len))
        .collect();
    let total = rebuild.packs().len() as u64;
    let mut pack_bytes = 0;
    for (n, pack) in rebuild.packs().to_vec().into_iter().enumerate() {
        // A pack of format 4 or older: the log gives no length; all the copy holds of it.
        let len = match pack.len {
            u64::MAX => held.get(&pack.name).copied().unwrap_or(0),
            len => len,
        };
        let (copy, rebuild) = (copy.clone(), rebuild.clone());
        tokio::task::spawn_blocking(move || {
            let mut at = 0;
            while at < len {
                let n = (len - at).min(SEGMENT_MAX);
                let bytes = copy.get(&pack.name, at, n)?;
                rebuild.put(&pack.name, at, &bytes)?;
                at += n;
            }
            Ok::<_, StoreError>(())
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        pack_bytes += len;
        progress(n as u64 + 1, total);
    }
    let rebuild = Arc::into_inner(rebuild).expect("every copy of the rebuild is done");
    let store = rebuild.finish().map_err(|e| e.to_string())?;
    Ok(Recovered {
        store,
        snapshot_ns,
        packs: total,
        pack_bytes,
    })
}

/// How many times its compressed size a snapshot of the version log may decompress to (a log
/// compresses about 2:1 at zstd -3).
const LOG_INFLATION_MAX: u64 = 64;
