//! Model-directory digest: the identity warden licenses a deployment against.
//!
//! A model is a directory of files. Its digest must be exactly the root
//! digest that the OpenSSF Model Signing (OMS) v1.0 `files` serialization
//! with SHA-256 produces, as implemented by the `model-signing` Python package
//! 1.1.1, so that a digest warden prints can be compared byte for byte with the
//! subject digest of an OMS signature made by that tool:
//!
//! * every regular file under the root, recursively, is an entry, except
//!   anything under the root-level names `.git`, `.gitattributes`, `.github`
//!   and `.gitignore` (model-signing's default `ignore_git_paths`); the same
//!   names deeper in the tree are *not* ignored;
//! * an entry's name is its path relative to the root, joined with `/`;
//! * an entry's digest is SHA-256 of the whole file;
//! * entries are ordered by path compared component by component (Python
//!   `PurePosixPath` ordering), so `a/b` sorts before `a-b`, unlike plain
//!   string order;
//! * the root digest is SHA-256 over the concatenated raw 32-byte entry
//!   digests (names do not enter the root; they are only in the manifest);
//! * it is printed as `sha256:<64 lowercase hex>`.
//!
//! Directories (including empty ones) contribute nothing. A directory with no
//! files digests to SHA-256 of the empty string.
//!
//! What this module must never do:
//! * follow a symlink or read a special file (FIFO, socket, device): these
//!   are errors, as they are for model-signing, even inside ignored
//!   directories, because model-signing checks every path before filtering;
//! * load a whole file into memory: models are many gigabytes, files are
//!   streamed through a fixed-size buffer;
//! * depend on traversal order, thread scheduling or the root's own name: the
//!   same tree must always give the same digest wherever it is mounted;
//! * print anything except the optional progress bar, which the caller asks
//!   for only when stderr is a terminal.

use std::cmp::Ordering;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

/// Prefix of the textual form; the only algorithm the contract allows.
const PREFIX: &str = "sha256:";

/// Read buffer per file being hashed. Big enough that syscall overhead is
/// negligible next to SHA-256, small enough that N threads stay cheap.
const CHUNK: usize = 1 << 20;

/// Root-level names model-signing 1.1.1 skips by default
/// (`model_signing.hashing.Config.hash`, `ignore_git_paths=True`). A match
/// skips the path itself and everything beneath it, file or directory.
pub const IGNORED_ROOT_NAMES: [&str; 4] = [".git", ".gitattributes", ".github", ".gitignore"];

/// The root digest of a model directory.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelDigest([u8; 32]);

impl ModelDigest {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        ModelDigest(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for ModelDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", hex::encode(self.0))
    }
}

impl fmt::Debug for ModelDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ModelDigest({self})")
    }
}

impl FromStr for ModelDigest {
    type Err = DigestError;

    /// Accepts only the canonical form `sha256:<64 lowercase hex>`, so that a
    /// digest has exactly one spelling and string comparison is meaningful.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex_part = s.strip_prefix(PREFIX).ok_or_else(|| {
            DigestError::Parse(format!("digest {s:?} does not start with \"{PREFIX}\""))
        })?;
        if hex_part.len() != 64 {
            return Err(DigestError::Parse(format!(
                "digest {s:?} has {} characters after \"{PREFIX}\", expected 64",
                hex_part.len()
            )));
        }
        if let Some(bad) = hex_part
            .chars()
            .find(|c| !matches!(c, '0'..='9' | 'a'..='f'))
        {
            return Err(DigestError::Parse(format!(
                "digest {s:?} contains {bad:?}; only lowercase hex (0-9, a-f) is allowed"
            )));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out)
            .map_err(|e| DigestError::Parse(format!("digest {s:?}: {e}")))?;
        Ok(ModelDigest(out))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is a symlink; model directories must not contain symlinks")]
    Symlink { path: PathBuf },
    #[error("{path} is not a regular file or directory (FIFO, socket or device?)")]
    SpecialFile { path: PathBuf },
    #[error("{path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("{path} is not valid UTF-8; entry names must be UTF-8")]
    NonUtf8Path { path: PathBuf },
    #[error("could not start hashing threads: {0}")]
    ThreadPool(String),
    #[error("invalid model digest: {0}")]
    Parse(String),
}

#[derive(Debug, Clone, Default)]
pub struct DigestOptions {
    /// Draw a byte-based progress bar on stderr.
    pub progress: bool,
    /// Hashing threads; `None` means one per CPU.
    pub threads: Option<usize>,
}

/// Computes the OMS `files`/SHA-256 root digest of the model directory `root`.
pub fn digest_dir(root: &Path, opts: &DigestOptions) -> Result<ModelDigest, DigestError> {
    Ok(root_digest(&manifest(root, opts)?))
}

/// Returns the ordered `(name, sha256)` entries whose concatenated digests
/// form the root digest; the same list model-signing records as the
/// `resources` of its in-toto predicate.
pub fn manifest(root: &Path, opts: &DigestOptions) -> Result<Vec<(String, [u8; 32])>, DigestError> {
    let mut files = collect_files(root)?;
    files.sort_by(|a, b| cmp_components(&a.name, &b.name));

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads.unwrap_or(0))
        .build()
        .map_err(|e| DigestError::ThreadPool(e.to_string()))?;

    let progress = opts.progress.then(|| {
        let total = files.iter().map(|f| f.len).sum();
        new_progress_bar(total)
    });

    // Schedule the biggest files first so that one huge file picked up last
    // does not leave the other threads idle; results go back in name order.
    let mut schedule: Vec<usize> = (0..files.len()).collect();
    schedule.sort_by(|&a, &b| files[b].len.cmp(&files[a].len));

    let hashed: Vec<(usize, [u8; 32])> = pool.install(|| {
        schedule
            .par_iter()
            .with_max_len(1)
            .map(|&i| hash_file(&files[i].path, progress.as_ref()).map(|d| (i, d)))
            .collect::<Result<_, _>>()
    })?;

    if let Some(pb) = progress {
        pb.finish_and_clear();
    }

    let mut digests = vec![[0u8; 32]; files.len()];
    for (i, d) in hashed {
        digests[i] = d;
    }
    Ok(files
        .into_iter()
        .zip(digests)
        .map(|(f, d)| (f.name, d))
        .collect())
}

/// SHA-256 over the raw entry digests in manifest order (model-signing's
/// `Payload.__init__`): entry names do not contribute.
fn root_digest(entries: &[(String, [u8; 32])]) -> ModelDigest {
    let mut h = Sha256::new();
    for (_, d) in entries {
        h.update(d);
    }
    ModelDigest(h.finalize().into())
}

/// Python `PurePosixPath` ordering: compare the lists of components, each
/// component as a string. For UTF-8, byte order equals code point order, so
/// Rust `str` comparison matches Python's.
fn cmp_components(a: &str, b: &str) -> Ordering {
    a.split('/').cmp(b.split('/'))
}

fn is_ignored(name: &str) -> bool {
    let first = name.split('/').next().unwrap_or(name);
    IGNORED_ROOT_NAMES.contains(&first)
}

struct FileEntry {
    name: String,
    path: PathBuf,
    len: u64,
}

fn collect_files(root: &Path) -> Result<Vec<FileEntry>, DigestError> {
    let io_err = |path: &Path, source| DigestError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::symlink_metadata(root).map_err(|e| io_err(root, e))?;
    if meta.file_type().is_symlink() {
        return Err(DigestError::Symlink {
            path: root.to_path_buf(),
        });
    }
    if !meta.is_dir() {
        return Err(DigestError::NotADirectory {
            path: root.to_path_buf(),
        });
    }

    let mut files = Vec::new();
    // Ignored directories are still walked: model-signing rejects a symlink or
    // special file anywhere under the root before it applies the ignore list,
    // and a model it refuses must not get a warden digest either.
    for entry in walkdir::WalkDir::new(root).follow_links(false).min_depth(1) {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(root).to_path_buf();
            let source = e
                .into_io_error()
                .unwrap_or_else(|| io::Error::other("directory walk failed"));
            DigestError::Io { path, source }
        })?;
        let ft = entry.file_type();
        if ft.is_symlink() {
            return Err(DigestError::Symlink {
                path: entry.into_path(),
            });
        }
        if ft.is_dir() {
            continue;
        }
        if !ft.is_file() {
            return Err(DigestError::SpecialFile {
                path: entry.into_path(),
            });
        }
        let name = entry_name(root, entry.path())?;
        if is_ignored(&name) {
            continue;
        }
        let len = entry
            .metadata()
            .map_err(|e| {
                let source = e
                    .into_io_error()
                    .unwrap_or_else(|| io::Error::other("stat failed"));
                io_err(entry.path(), source)
            })?
            .len();
        files.push(FileEntry {
            name,
            path: entry.into_path(),
            len,
        });
    }
    Ok(files)
}

fn entry_name(root: &Path, path: &Path) -> Result<String, DigestError> {
    let non_utf8 = || DigestError::NonUtf8Path {
        path: path.to_path_buf(),
    };
    let rel = path.strip_prefix(root).map_err(|_| DigestError::Io {
        path: path.to_path_buf(),
        source: io::Error::other("walked outside the model root"),
    })?;
    let parts = rel
        .components()
        .map(|c| c.as_os_str().to_str().ok_or_else(non_utf8))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(parts.join("/"))
}

fn hash_file(path: &Path, progress: Option<&ProgressBar>) -> Result<[u8; 32], DigestError> {
    let io_err = |source| DigestError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(e)),
        };
        hasher.update(&buf[..n]);
        if let Some(pb) = progress {
            pb.inc(n as u64);
        }
    }
    Ok(hasher.finalize().into())
}

fn new_progress_bar(total: u64) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "hashing {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    pb.set_style(style);
    pb
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn display_and_parse_round_trip() {
        let s = format!("sha256:{EMPTY_SHA256}");
        let d: ModelDigest = s.parse().unwrap();
        assert_eq!(d.to_string(), s);
        assert_eq!(hex::encode(d.as_bytes()), EMPTY_SHA256);
    }

    #[test]
    fn parse_rejects_non_canonical_forms() {
        let upper = format!("sha256:{}", EMPTY_SHA256.to_uppercase());
        let short = format!("sha256:{}", &EMPTY_SHA256[..63]);
        let long = format!("sha256:{EMPTY_SHA256}0");
        let cases = [
            (EMPTY_SHA256.to_string(), "does not start with"),
            (format!("SHA256:{EMPTY_SHA256}"), "does not start with"),
            (format!("sha512:{EMPTY_SHA256}"), "does not start with"),
            (format!(" sha256:{EMPTY_SHA256}"), "does not start with"),
            (upper, "only lowercase hex"),
            (short, "expected 64"),
            (long, "expected 64"),
            (
                format!("sha256:{}g", &EMPTY_SHA256[..63]),
                "only lowercase hex",
            ),
            ("sha256:".to_string(), "expected 64"),
            (String::new(), "does not start with"),
        ];
        for (input, why) in cases {
            let err = input.parse::<ModelDigest>().unwrap_err();
            assert!(matches!(err, DigestError::Parse(_)), "{input:?}: {err}");
            assert!(err.to_string().contains(why), "{input:?}: {err}");
        }
    }

    #[test]
    fn ordering_is_component_wise() {
        let mut names = vec![
            "tokenizer.json",
            "tokenizer/vocab.txt",
            "a.txt",
            "a-b.txt",
            "a/b/c.bin",
            "a/b.bin",
            "B.bin",
        ];
        names.sort_by(|a, b| cmp_components(a, b));
        // Python: sorted(PurePosixPath(n) for n in names)
        assert_eq!(
            names,
            [
                "B.bin",
                "a/b/c.bin",
                "a/b.bin",
                "a-b.txt",
                "a.txt",
                "tokenizer/vocab.txt",
                "tokenizer.json",
            ]
        );
        // ...which plain string order would not give.
        assert_eq!("tokenizer.json".cmp("tokenizer/vocab.txt"), Ordering::Less);
    }

    #[test]
    fn only_root_level_git_names_are_ignored() {
        assert!(is_ignored(".git"));
        assert!(is_ignored(".git/config"));
        assert!(is_ignored(".github/workflows/ci.yml"));
        assert!(is_ignored(".gitignore"));
        assert!(is_ignored(".gitattributes"));
        assert!(!is_ignored("sub/.gitignore"));
        assert!(!is_ignored(".gitmodules"));
        assert!(!is_ignored(".git-lfs"));
        assert!(!is_ignored(".gitkeep"));
    }

    #[test]
    fn root_of_no_entries_is_sha256_of_nothing() {
        assert_eq!(hex::encode(root_digest(&[]).as_bytes()), EMPTY_SHA256);
    }
}
