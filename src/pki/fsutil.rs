//! Crash-safe file writes: temp file in the same directory, fsync, rename,
//! fsync of the directory.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::pki::PkiError;

/// Permissions for private key files.
pub(crate) const MODE_SECRET: u32 = 0o600;
/// Permissions for certificates, CRLs and other public material.
pub(crate) const MODE_PUBLIC: u32 = 0o644;

/// Atomically replace `path` with `bytes`, created with permissions `mode`.
///
/// A reader sees either the old or the new content, never a torn file; after
/// return the new content and the directory entry are on stable storage.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file_name =
        path.file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| PkiError::TrustDir {
                path: path.to_path_buf(),
                reason: "path has no usable file name".into(),
            })?;
    let mut nonce = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce).map_err(|_| {
        PkiError::io(
            path,
            std::io::Error::other("system random number generator failed"),
        )
    })?;
    let tmp = dir.join(format!(".{file_name}.tmp.{}", hex::encode(nonce)));

    let result = (|| {
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(mode);
        }
        let mut f = opts.open(&tmp).map_err(|e| PkiError::io(&tmp, e))?;
        // The umask may have narrowed the mode; set it exactly.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(|e| PkiError::io(&tmp, e))?;
        }
        #[cfg(not(unix))]
        let _ = mode;
        f.write_all(bytes).map_err(|e| PkiError::io(&tmp, e))?;
        f.sync_all().map_err(|e| PkiError::io(&tmp, e))?;
        drop(f);
        fs::rename(&tmp, path).map_err(|e| PkiError::io(path, e))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// fsync a directory so a rename inside it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), PkiError> {
    #[cfg(unix)]
    {
        let d = File::open(dir).map_err(|e| PkiError::io(dir, e))?;
        d.sync_all().map_err(|e| PkiError::io(dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// `mkdir -p`, then fsync the parent so the new directory entry is durable.
pub(crate) fn create_dir_all(dir: &Path) -> Result<(), PkiError> {
    fs::create_dir_all(dir).map_err(|e| PkiError::io(dir, e))?;
    if let Some(parent) = dir.parent() {
        if !parent.as_os_str().is_empty() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}
