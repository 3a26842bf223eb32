//! Pack files: the chunks of one committed batch, back to back.
//!
//! A pack starts with [`PACK_MAGIC`]; then each chunk is a record of its 32-byte id, its
//! uncompressed and stored lengths (u32, little-endian), and its zstd frame. The version log
//! records each chunk's pack and the offset of its frame; the record headers make a pack
//! self-describing, so the chunk index could be rebuilt from the packs alone.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use hoover_types::ChunkId;

use crate::{Result, StoreError};

/// The first bytes of every pack file.
pub(crate) const PACK_MAGIC: &[u8; 14] = b"hoover-pack 1\n";
/// Bytes before each chunk's frame: id, raw length, stored length.
pub(crate) const RECORD_HEADER: u64 = 32 + 4 + 4;

/// A pack being written in `tmp/`.
pub(crate) struct PackWriter {
    pub(crate) name: String,
    pub(crate) tmp: PathBuf,
    file: BufWriter<File>,
    len: u64,
}

impl PackWriter {
    pub(crate) fn create(tmp_dir: &Path, name: String) -> Result<PackWriter> {
        let tmp = tmp_dir.join(format!("{name}.pack"));
        let file = File::create(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
        let mut w = PackWriter {
            name,
            tmp,
            file: BufWriter::with_capacity(1 << 20, file),
            len: 0,
        };
        w.write(PACK_MAGIC)?;
        Ok(w)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        crate::fsutil::injected_full_disk()
            .and_then(|()| self.file.write_all(bytes))
            .map_err(|e| StoreError::io(&self.tmp, e))?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Appends one chunk; returns the offset of its frame.
    pub(crate) fn append(&mut self, id: &ChunkId, raw_len: u32, frame: &[u8]) -> Result<u64> {
        let mut header = [0u8; RECORD_HEADER as usize];
        header[..32].copy_from_slice(&id.0);
        header[32..36].copy_from_slice(&raw_len.to_le_bytes());
        header[36..40].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        self.write(&header)?;
        let offset = self.len;
        self.write(frame)?;
        Ok(offset)
    }

    /// Pushes buffered bytes to the file, so they can be read back.
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.file.flush().map_err(|e| StoreError::io(&self.tmp, e))
    }

    /// Flushes and fsyncs; returns the temporary path, ready to be renamed into place.
    pub(crate) fn finish(mut self) -> Result<PathBuf> {
        self.flush()?;
        self.file
            .get_ref()
            .sync_all()
            .map_err(|e| StoreError::io(&self.tmp, e))?;
        Ok(self.tmp.clone())
    }
}

/// Reads `len` bytes at `offset` of a file.
pub(crate) fn read_at(path: &Path, offset: u64, len: u64) -> Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = File::open(path).map_err(|e| StoreError::io(path, e))?;
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| StoreError::io(path, e))?;
    let mut buf = vec![0u8; len as usize];
    file.read_exact(&mut buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            StoreError::Corrupt(format!(
                "{}: ends before offset {} + {len}",
                path.display(),
                offset
            ))
        } else {
            StoreError::io(path, e)
        }
    })?;
    Ok(buf)
}

/// Checks the record header in front of a chunk's frame.
pub(crate) fn check_header(
    path: &Path,
    id: &ChunkId,
    offset: u64,
    raw_len: u64,
    stored_len: u64,
) -> std::result::Result<(), String> {
    if offset < PACK_MAGIC.len() as u64 + RECORD_HEADER {
        return Err(format!("offset {offset} is inside the pack header"));
    }
    let header = read_at(path, offset - RECORD_HEADER, RECORD_HEADER).map_err(|e| e.to_string())?;
    let id_ok = header[..32] == id.0;
    let raw = u32::from_le_bytes(header[32..36].try_into().expect("4 bytes")) as u64;
    let stored = u32::from_le_bytes(header[36..40].try_into().expect("4 bytes")) as u64;
    if !id_ok || raw != raw_len || stored != stored_len {
        return Err(format!(
            "the record header at {} of {} does not match the chunk index",
            offset - RECORD_HEADER,
            path.display()
        ));
    }
    Ok(())
}
