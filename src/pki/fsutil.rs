//! The PKI's file writes: certificates, keys and CRLs are replaced with
//! the crate's one crash-safe write ([`crate::fsutil`]), errors reported
//! as [`PkiError`].

use std::path::Path;

use crate::fsutil::{Durability, FileError, Mode};
use crate::pki::PkiError;

/// Permissions for private key files.
pub(crate) const MODE_SECRET: u32 = 0o600;
/// Permissions for certificates, CRLs and other public material.
pub(crate) const MODE_PUBLIC: u32 = 0o644;

impl From<FileError> for PkiError {
    fn from(e: FileError) -> Self {
        PkiError::io(e.path, e.source)
    }
}

/// Atomically replace `path` with `bytes`, created with permissions `mode`.
///
/// A reader sees either the old or the new content, never a torn file; after
/// return the new content and the directory entry are on stable storage.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    Ok(crate::fsutil::write_atomic(
        path,
        bytes,
        Mode::Exact(mode),
        Durability::Synced,
    )?)
}

/// fsync a directory so a rename inside it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), PkiError> {
    Ok(crate::fsutil::sync_dir(dir)?)
}

/// `mkdir -p`, then fsync the parent so the new directory entry is durable.
pub(crate) fn create_dir_all(dir: &Path) -> Result<(), PkiError> {
    std::fs::create_dir_all(dir).map_err(|e| PkiError::io(dir, e))?;
    if let Some(parent) = dir.parent() {
        if !parent.as_os_str().is_empty() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}
