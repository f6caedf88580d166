//! Crash-safe file replacement, the one way warden replaces a file: the new
//! content goes to a temp file in the same directory, which is fsynced,
//! renamed over the target, and then the directory is fsynced. A reader
//! sees the old content or the new, never a torn file, and once a call
//! returns the new content survives a power cut.
//!
//! A leaf: it imports nothing from the crate, so every layer may use it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A file operation that failed, naming the file it failed on (the temp
/// file, the target or the directory).
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct FileError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl FileError {
    fn at(path: &Path) -> impl FnOnce(io::Error) -> FileError + '_ {
        move |source| FileError {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Permissions of a replaced file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Exactly these permission bits, whatever the umask (private keys
    /// 0600, public material 0644).
    Exact(u32),
    /// The process default: 0666 less the umask.
    Default,
}

/// Whether a replaced file must be on stable storage when the call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync the file, rename, fsync the directory: the new content
    /// survives a power cut once the call returns. Every file unless a
    /// reason is written beside the call.
    Synced,
    /// Rename only: readers still never see a torn file, but after a power
    /// cut the file may be older, empty or missing. Only for a file
    /// rewritten at every commit whose loss is detected and harmless (the
    /// ledger head), where two more fsyncs per commit would cost latency.
    Unsynced,
}

/// Atomically replaces `path` with `bytes`. With [`Durability::Synced`]
/// file and directory entry are on stable storage when this returns. On
/// error the target is unchanged and no temp file is left behind.
pub fn write_atomic(
    path: &Path,
    bytes: &[u8],
    mode: Mode,
    durability: Durability,
) -> Result<(), FileError> {
    let tmp = write_temp(path, bytes, mode, durability)?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        FileError::at(path)(e)
    })?;
    match durability {
        Durability::Synced => sync_dir(parent(path)),
        Durability::Unsynced => Ok(()),
    }
}

/// Renames `from` (already written and fsynced by the caller) to `to` and
/// fsyncs the directory, so the rename survives a power cut. Both must be
/// in the same directory.
pub fn rename_durably(from: &Path, to: &Path) -> Result<(), FileError> {
    fs::rename(from, to).map_err(FileError::at(to))?;
    sync_dir(parent(to))
}

/// fsyncs a directory so that an entry created, renamed or removed in it
/// is durable. A no-op where directories cannot be opened (not Unix).
pub fn sync_dir(dir: &Path) -> Result<(), FileError> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(FileError::at(dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// The directory `path` is in (`.` for a bare file name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Creates a new temp file beside `path` with `mode`, writes `bytes` (and
/// fsyncs them if `durability` says so); returns its name. The name is hidden and carries the process
/// id and a counter; it is created with `create_new`, and a name left by
/// an earlier crashed process is skipped, so no two writers share a file.
fn write_temp(
    path: &Path,
    bytes: &[u8],
    mode: Mode,
    durability: Durability,
) -> Result<PathBuf, FileError> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| FileError {
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "no usable file name"),
        })?;
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    if let Mode::Exact(bits) = mode {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(bits);
    }
    let mut attempts = 0;
    let (tmp, mut f) = loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tmp = parent(path).join(format!(".{name}.tmp.{}.{n}", std::process::id()));
        match opts.open(&tmp) {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 100 => attempts += 1,
            Err(e) => return Err(FileError::at(&tmp)(e)),
        }
    };
    let written = fill(&mut f, bytes, mode, durability).map_err(FileError::at(&tmp));
    match written {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Sets `mode` exactly (the umask may have narrowed it), writes `bytes`
/// and fsyncs when `durability` asks for it.
fn fill(f: &mut File, bytes: &[u8], mode: Mode, durability: Durability) -> io::Result<()> {
    #[cfg(unix)]
    if let Mode::Exact(bits) = mode {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(fs::Permissions::from_mode(bits))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    f.write_all(bytes)?;
    match durability {
        Durability::Synced => f.sync_all(),
        Durability::Unsynced => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_replaced_file_holds_exactly_the_new_content_and_no_temp_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        write_atomic(&path, b"old", Mode::Default, Durability::Synced).unwrap();
        let new = vec![b'x'; 1 << 20];
        write_atomic(&path, &new, Mode::Default, Durability::Synced).unwrap();
        assert_eq!(fs::read(&path).unwrap(), new);
        assert_eq!(names(dir.path()), ["state"]);
        write_atomic(&path, b"head", Mode::Default, Durability::Unsynced).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"head");
        assert_eq!(names(dir.path()), ["state"]);
    }

    #[test]
    fn a_failed_replace_leaves_the_target_and_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        // A non-empty directory cannot be replaced by a file: the rename
        // fails after the temp file was written.
        let path = dir.path().join("taken");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), b"kept").unwrap();
        let e = write_atomic(&path, b"new", Mode::Default, Durability::Synced).unwrap_err();
        assert_eq!(e.path, path);
        assert_eq!(names(dir.path()), ["taken"]);
        assert_eq!(fs::read(path.join("inside")).unwrap(), b"kept");
    }

    #[test]
    fn a_file_in_a_missing_directory_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing/state");
        let e = write_atomic(&path, b"new", Mode::Default, Durability::Synced).unwrap_err();
        assert!(e.path.starts_with(dir.path().join("missing")), "{e}");
        assert_eq!(e.source.kind(), io::ErrorKind::NotFound);
    }

    #[cfg(unix)]
    #[test]
    fn the_mode_is_exact_whatever_the_umask_or_the_default_otherwise() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let secret = dir.path().join("secret");
        write_atomic(&secret, b"k", Mode::Exact(0o600), Durability::Synced).unwrap();
        assert_eq!(mode(&secret), 0o600);
        let public = dir.path().join("public");
        write_atomic(&public, b"p", Mode::Exact(0o644), Durability::Synced).unwrap();
        assert_eq!(mode(&public), 0o644);
        // Replacing a private file with a default one does not keep 0600.
        let plain = dir.path().join("plain");
        fs::write(&plain, b"").unwrap();
        let default = mode(&plain);
        write_atomic(&secret, b"k", Mode::Default, Durability::Synced).unwrap();
        assert_eq!(mode(&secret), default);
    }
}
