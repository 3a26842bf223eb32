//! An off-site copy of a store in an S3-compatible object store, kept up to date while the
//! server runs ([`Replicator`]), and a store built again from it on a new machine ([`recover`]).
//!
//! The copy, under its prefix:
//! - `HOOVER-COPY`: `hoover-copy 1` and the store's id, so that two stores never mix in one
//!   prefix and a recovery knows it found a copy;
//! - `packs/NAME/OFFSET` (OFFSET in 16 hex digits): the pack's committed bytes from OFFSET on.
//!   Committed bytes never change, so each is uploaded once, in as many objects as the pack
//!   grew in between uploads (a pack written whole is one object), and once more when the
//!   pack is sealed, as one object that replaces its pieces;
//! - `log/TIME.db.zst` (TIME in nanoseconds, 20 digits): a consistent snapshot of the version
//!   log (SQLite's `VACUUM INTO`), zstd-compressed, uploaded only after every pack byte it
//!   names, so the newest snapshot always describes bytes the copy holds. The newest
//!   [`KEEP_SNAPSHOTS`] are kept.
//!
//! The packs are reached through the store's seam for where packs live: [`ObjectPacks`] is a
//! [`PackStore`] as the store's own directory is.
//!
//! Nothing is kept on the server about the copy: at start the replicator lists what the copy
//! holds, so a restart (or a crash mid-upload: an object store's put is all or nothing)
//! re-uploads nothing already there.

use std::collections::HashMap;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::TryStreamExt;
use hoover_store::{PackExtent, PackStore, Rebuild, Store, StoreError};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

mod objects;
mod recover;
mod replicator;
mod target;

pub use objects::ObjectPacks;
pub use recover::{recover, Recovered};
pub use replicator::{CopyStatus, Replicator};
pub use target::Target;

/// Snapshots of the version log kept in the copy (the newest).
pub const KEEP_SNAPSHOTS: usize = 3;
/// The most bytes of a pack in one object.
const SEGMENT_MAX: u64 = 64 << 20;
/// The parts a big object (a log snapshot) is uploaded in.
pub const PART_BYTES: usize = 8 << 20;
/// Pack bytes waiting for the copy that start an upload before the snapshot is due (a first
/// sync, a big batch): the copy keeps up with them instead of taking them all at once.
const EAGER_BYTES: u64 = 8 << 20;
const MARKER: &str = "HOOVER-COPY";
const MARKER_MAGIC: &str = "hoover-copy 1";
