//! A copy's packs through the store's seam for where packs live ([`PackStore`]).

use super::*;

/// Each pack's pieces in a copy: (offset, size), by offset.
pub(crate) type Pieces = HashMap<String, Vec<(u64, u64)>>;

/// A copy's packs, through the store's seam for where packs live ([`PackStore`]): pack NAME's
/// bytes from OFFSET on are the object `packs/NAME/OFFSET`. A pack is read only from pieces as
/// the listing gave them, each at most 64 MiB, and a piece that holds more or
/// less than listed is refused: a damaged or hostile copy cannot make a reader hold more
/// than what it asked for. Its calls wait on the runtime it was made on: call them from a
/// blocking thread (`spawn_blocking`), never from a task.
#[derive(Clone)]
pub struct ObjectPacks {
    target: Target,
    runtime: tokio::runtime::Handle,
    /// Each pack's pieces, (offset, size) by offset: listed once, then kept up to date by
    /// this handle's puts.
    pieces: Arc<Mutex<Option<Pieces>>>,
}

impl ObjectPacks {
    /// The packs of the copy at `target`, on the current runtime.
    pub fn new(target: Target) -> ObjectPacks {
        ObjectPacks {
            target,
            runtime: tokio::runtime::Handle::current(),
            pieces: Arc::new(Mutex::new(None)),
        }
    }

    fn wait<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, String>>,
    ) -> hoover_store::Result<T> {
        self.runtime.block_on(f).map_err(StoreError::Packs)
    }

    /// Makes a sealed pack (one never appended to again) of `len` bytes one object: its
    /// `bytes` (all of them, from byte 0) put over its first piece, then its other pieces
    /// deleted, so that the copy holds the whole pack at every moment (a reader of the
    /// listing in between finds pieces that overlap, which reads as the same bytes). When the
    /// first piece already holds it all (a compaction cut short), only the deletes are left.
    /// Returns how many bytes were uploaded.
    pub fn compact(
        &self,
        name: &str,
        len: u64,
        bytes: impl FnOnce() -> hoover_store::Result<Vec<u8>>,
    ) -> hoover_store::Result<u64> {
        let pieces = self.pieces_of(name)?;
        if pieces.len() <= 1 {
            return Ok(0);
        }
        let mut uploaded = 0;
        if pieces[0] != (0, len) {
            let bytes = bytes()?;
            if bytes.len() as u64 != len {
                return Err(StoreError::Corrupt(format!(
                    "pack {name}: {} bytes to compact, not its {len}",
                    bytes.len()
                )));
            }
            self.put(name, 0, &bytes)?;
            uploaded = len;
        }
        for &(offset, _) in &pieces {
            if offset == 0 {
                continue;
            }
            let path = self.piece_path(name, offset);
            self.wait(async {
                match self.target.objects.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(self.target.says(e)),
                }
            })?;
        }
        if let Some(listed) = self.pieces.lock().expect("pieces lock").as_mut() {
            listed.insert(name.to_string(), vec![(0, len)]);
        }
        Ok(uploaded)
    }

    /// The object holding pack `name`'s bytes from `offset` on.
    fn piece_path(&self, name: &str, offset: u64) -> ObjPath {
        self.target.path(&format!("packs/{name}/{offset:016x}"))
    }

    /// How many bytes of pack `name` the copy holds from its start on, as last listed and
    /// put through this handle; `None` until the copy has been listed ([`PackStore::list`]).
    pub fn held(&self, name: &str) -> Option<u64> {
        let pieces = self.pieces.lock().expect("pieces lock");
        let listed = pieces.as_ref()?;
        Some(listed.get(name).map_or(0, |p| held_len(p)))
    }

    /// How many pieces pack `name` is held in.
    pub fn piece_count(&self, name: &str) -> hoover_store::Result<usize> {
        Ok(self.pieces_of(name)?.len())
    }

    /// The pieces of pack `name`, listing the copy if it was not yet.
    fn pieces_of(&self, name: &str) -> hoover_store::Result<Vec<(u64, u64)>> {
        let mut pieces = self.pieces.lock().expect("pieces lock");
        if pieces.is_none() {
            *pieces = Some(self.wait(self.target.segments())?);
        }
        let listed = pieces.as_ref().expect("listed");
        Ok(listed.get(name).cloned().unwrap_or_default())
    }
}

impl PackStore for ObjectPacks {
    fn get(&self, name: &str, offset: u64, len: u64) -> hoover_store::Result<Vec<u8>> {
        let Some(end) = offset.checked_add(len) else {
            return Err(StoreError::NotFound(format!(
                "pack {name} has no bytes {offset}..{offset}+{len}"
            )));
        };
        let mut out = Vec::with_capacity(len.min(SEGMENT_MAX) as usize);
        let mut at = offset;
        for (start, size) in self.pieces_of(name)? {
            if at >= end || start > at {
                break;
            }
            // A listing is the copy's word: offsets near the top of u64 must not wrap.
            let piece_end = start.saturating_add(size);
            if piece_end <= at {
                continue;
            }
            if size > SEGMENT_MAX {
                return Err(StoreError::Corrupt(format!(
                    "{}: pack {name} has a piece of {size} bytes at {start}, more than hoover writes ({SEGMENT_MAX}); this is not a copy hoover made",
                    self.target.url()
                )));
            }
            let to = end.min(piece_end);
            let path = self.piece_path(name, start);
            let range = (at - start)..(to - start);
            let bytes = self.wait(async {
                self.target
                    .objects
                    .get_range(&path, range)
                    .await
                    .map_err(|e| self.target.says(e))
            })?;
            if bytes.len() as u64 != to - at {
                return Err(StoreError::Corrupt(format!(
                    "{}: pack {name} piece at {start} was listed with {size} bytes but gave {} of bytes {}..{}; this copy is damaged",
                    self.target.url(),
                    bytes.len(),
                    at - start,
                    to - start
                )));
            }
            out.extend_from_slice(&bytes);
            at = to;
        }
        if at < end {
            return Err(StoreError::Corrupt(format!(
                "the copy holds pack {name} only up to byte {at}, not {end}: it is incomplete (was its server stopped before it caught up?)"
            )));
        }
        Ok(out)
    }

    fn put(&self, name: &str, offset: u64, bytes: &[u8]) -> hoover_store::Result<()> {
        let path = self.piece_path(name, offset);
        let payload = PutPayload::from(bytes.to_vec());
        self.wait(async {
            self.target
                .objects
                .put(&path, payload)
                .await
                .map_err(|e| self.target.says(e))
        })?;
        if let Some(listed) = self.pieces.lock().expect("pieces lock").as_mut() {
            let pieces = listed.entry(name.to_string()).or_default();
            pieces.retain(|&(o, _)| o != offset);
            pieces.push((offset, bytes.len() as u64));
            pieces.sort_unstable();
        }
        Ok(())
    }

    fn list(&self) -> hoover_store::Result<Vec<PackExtent>> {
        let listed = self.wait(self.target.segments())?;
        *self.pieces.lock().expect("pieces lock") = Some(listed.clone());
        let mut out: Vec<PackExtent> = listed
            .into_iter()
            .map(|(name, pieces)| {
                let len = held_len(&pieces);
                PackExtent { name, len }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn describe(&self, name: &str) -> String {
        format!("{}/packs/{name}", self.target.url().trim_end_matches('/'))
    }
}

/// The bytes `pieces` (by offset) hold from the start on, without a gap.
fn held_len(pieces: &[(u64, u64)]) -> u64 {
    let mut len = 0;
    for &(offset, size) in pieces {
        if offset <= len {
            len = len.max(offset.saturating_add(size));
        }
    }
    len
}
