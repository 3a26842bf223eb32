//! The one helper for durable writes, and small filesystem utilities.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::{Result, StoreError};

/// The fault-injection seam for a full disk, used by the tests of the real binary: while the
/// file named by `HOOVER_FAULT_DISK_FULL` exists, every write of chunk data fails with ENOSPC,
/// as on a full disk. Unset (always, outside tests) it costs one environment read per process.
pub(crate) fn injected_full_disk() -> std::io::Result<()> {
    static FLAG: OnceLock<Option<PathBuf>> = OnceLock::new();
    let flag = FLAG.get_or_init(|| std::env::var_os("HOOVER_FAULT_DISK_FULL").map(PathBuf::from));
    match flag {
        Some(path) if path.exists() => Err(std::io::Error::from_raw_os_error(28)),
        _ => Ok(()),
    }
}

pub(crate) fn create_dir_all(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| StoreError::io(path, e))
}

/// Makes the store's directory owner-only, whatever the umask it was made under: the packs
/// hold every chat, and no other local user may read them. Stores made by earlier versions
/// with 0755 are closed this way on their next open. Only bits for others are taken away (a
/// read-only store stays read-only); where that fails (a read-only mount), the checks after
/// it say what is wrong.
pub(crate) fn make_private(root: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(root) {
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                let _ =
                    std::fs::set_permissions(root, std::fs::Permissions::from_mode(mode & 0o7700));
            }
        }
    }
}

/// Fails fast when `place` (a directory, or an existing file) of the store at `root` cannot
/// be written: a read-only mount, the wrong owner.
pub(crate) fn check_writable(root: &Path, place: &Path) -> Result<()> {
    let checked = if place.is_dir() {
        let probe = place.join(".write-probe");
        File::create(&probe).and_then(|_| std::fs::remove_file(&probe))
    } else if place.exists() {
        std::fs::OpenOptions::new()
            .write(true)
            .open(place)
            .map(drop)
    } else {
        Ok(())
    };
    checked.map_err(|cause| StoreError::NotWritable {
        dir: root.to_path_buf(),
        path: place.to_path_buf(),
        cause,
    })
}

/// Writes `name` in `dir` durably: a temp file in the same dir, write, fsync, rename, fsync dir.
pub(crate) fn write_durable(dir: &Path, name: &str, data: &[u8]) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = File::create(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
    injected_full_disk()
        .and_then(|()| file.write_all(data))
        .map_err(|e| StoreError::io(&tmp, e))?;
    file.sync_all().map_err(|e| StoreError::io(&tmp, e))?;
    let dest = dir.join(name);
    std::fs::rename(&tmp, &dest).map_err(|e| StoreError::io(&dest, e))?;
    sync_dir(dir)
}

/// Makes a directory's entries (new names, renames) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, e))
}
