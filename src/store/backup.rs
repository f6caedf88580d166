//! Backup files: every tree warden keeps, key by key, in one file that
//! `warden restore` turns back into a data directory. Either engine writes
//! the same file.
//!
//! A backup is a copy of the stored bytes, nothing more: sealed personal
//! data stays sealed (it is encrypted at rest and copied as it is), ledger
//! entries, stored hashes and the last signed checkpoint are copied exactly,
//! so a restored store passes the same start-up check as the original. The
//! keys (ledger, licence, PII) are never in a backup; they must be backed up
//! separately, and without the PII key the sealed records do not open.
//!
//! Layout (integers big endian):
//!
//! ```text
//! "WARDENBK"  u32 format version (1)  u32 header length  header (JSON)
//! per tree:   0x01 u16 name length, name
//! per record: 0x02 u32 key length, key, u32 value length, value
//! end:        0x00 u64 record count
//! trailer:    SHA-256 of every byte before it (32), "WBKEND01"
//! ```
//!
//! A file that does not end with the trailer's marker is reported as
//! truncated; one whose checksum does not match as corrupted. Restore checks
//! both, and the whole structure, before it writes anything.

use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use std::ops::Bound;

use super::kv::keys::{t, META_CHECKPOINT, META_SIZE};
use super::kv::{Direction, Kv};
use super::StoreError;

const MAGIC: &[u8; 8] = b"WARDENBK";
const END_MARKER: &[u8; 8] = b"WBKEND01";
/// The format this warden writes and reads.
pub const FORMAT_VERSION: u32 = 1;
const TAG_END: u8 = 0x00;
const TAG_TREE: u8 = 0x01;
const TAG_RECORD: u8 = 0x02;
/// Checksum and end marker.
const TRAILER_LEN: u64 = 32 + 8;
/// Largest header, key or value a backup may hold; a larger length field
/// means the file is damaged. (Stored values are bounded far below this:
/// the largest is a sanctions list, limited by the request size.)
const MAX_FIELD: u32 = 1 << 30;
/// Records written to sled per batch while restoring.
const RESTORE_BATCH: usize = 10_000;

/// What a backup file says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupHeader {
    /// When the snapshot was taken (Unix milliseconds).
    pub created_at: i64,
    /// The warden version that wrote it.
    pub warden_version: String,
    /// Ledger entries in the snapshot.
    pub ledger_size: u64,
    /// The last persisted signed checkpoint (C2SP note), if any. It may be
    /// one batch behind `ledger_size`; warden signs the rest when it starts
    /// on the restored store, as after a crash between commit and signing.
    pub checkpoint: Option<String>,
    /// The trees in the file, in order.
    pub trees: Vec<String>,
}

/// A backup written or checked.
#[derive(Debug, Clone)]
pub struct BackupSummary {
    pub header: BackupHeader,
    /// Key/value records over all trees.
    pub records: u64,
    /// Size of the file.
    pub bytes: u64,
    /// How long commits were paused while the snapshot was read (zero when
    /// nothing was running).
    pub paused: std::time::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} is not a warden backup file (it does not start with the backup marker)")]
    NotABackup(PathBuf),
    #[error(
        "{path} is backup format version {found}; this warden reads version {FORMAT_VERSION}: \
         restore it with the warden version that wrote it"
    )]
    Version { path: PathBuf, found: u32 },
    #[error(
        "{path} is truncated: it ends after {bytes} bytes without the backup trailer, so \
         part of the backup is missing; take the backup again"
    )]
    Truncated { path: PathBuf, bytes: u64 },
    #[error(
        "{path} is corrupted: its SHA-256 checksum does not match its contents (stored \
         {stored}, computed {computed}); the file was damaged or altered after it was written"
    )]
    Checksum {
        path: PathBuf,
        stored: String,
        computed: String,
    },
    #[error("{path} is malformed at byte {offset}: {detail}")]
    Malformed {
        path: PathBuf,
        offset: u64,
        detail: String,
    },
    #[error(
        "{0} is not empty; restore into a new or empty directory, or pass --force to \
         replace the warden store in it"
    )]
    NotEmpty(PathBuf),
    #[error("{0} does not hold a warden store, so --force will not replace its contents")]
    NotAStore(PathBuf),
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    sha: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn len_u32(n: usize, what: &str) -> Result<u32, StoreError> {
    u32::try_from(n)
        .ok()
        .filter(|&n| n <= MAX_FIELD)
        .ok_or_else(|| {
            StoreError::Invariant(format!("{what} of {n} bytes is too large for a backup"))
        })
}

/// Writes every tree of `kv` (in [`t::NAMES`] order) to `out`. The caller
/// makes sure `kv` reads one point in time: nothing writes meanwhile
/// (sled), or one snapshot (PostgreSQL).
pub(crate) fn write_snapshot(
    kv: &impl Kv,
    out: &mut dyn Write,
    created_at: i64,
) -> Result<BackupSummary, StoreError> {
    let io = |e: std::io::Error| StoreError::Io(format!("writing the backup: {e}"));
    let ledger_size = match kv.get(t::META, META_SIZE)? {
        Some(v) => <[u8; 8]>::try_from(v.as_ref())
            .map(u64::from_be_bytes)
            .map_err(|_| StoreError::Corrupt {
                key: "ledger size".into(),
                detail: "malformed".into(),
            })?,
        None => 0,
    };
    let checkpoint = kv
        .get(t::META, META_CHECKPOINT)?
        .map(|v| String::from_utf8_lossy(&v).into_owned());
    let header = BackupHeader {
        created_at,
        warden_version: env!("CARGO_PKG_VERSION").to_string(),
        ledger_size,
        checkpoint,
        trees: t::NAMES.iter().map(|n| n.to_string()).collect(),
    };
    let header_json = serde_json::to_vec(&header)
        .map_err(|e| StoreError::Invariant(format!("encoding the backup header: {e}")))?;
    let mut w = Hashing {
        inner: BufWriter::with_capacity(1 << 20, out),
        sha: Sha256::new(),
        bytes: 0,
    };
    w.write_all(MAGIC).map_err(io)?;
    w.write_all(&FORMAT_VERSION.to_be_bytes()).map_err(io)?;
    w.write_all(&len_u32(header_json.len(), "header")?.to_be_bytes())
        .map_err(io)?;
    w.write_all(&header_json).map_err(io)?;
    let mut records = 0u64;
    for (tree, name) in t::NAMES.iter().enumerate() {
        w.write_all(&[TAG_TREE]).map_err(io)?;
        w.write_all(&(name.len() as u16).to_be_bytes())
            .map_err(io)?;
        w.write_all(name.as_bytes()).map_err(io)?;
        let all = kv.range(tree, Bound::Unbounded, Bound::Unbounded, Direction::Forward);
        for item in all {
            let (k, v) = item?;
            w.write_all(&[TAG_RECORD]).map_err(io)?;
            w.write_all(&len_u32(k.len(), "key")?.to_be_bytes())
                .map_err(io)?;
            w.write_all(&k).map_err(io)?;
            w.write_all(&len_u32(v.len(), "value")?.to_be_bytes())
                .map_err(io)?;
            w.write_all(&v).map_err(io)?;
            records += 1;
        }
    }
    w.write_all(&[TAG_END]).map_err(io)?;
    w.write_all(&records.to_be_bytes()).map_err(io)?;
    let sum = w.sha.finalize_reset();
    w.write_all(&sum).map_err(io)?;
    w.write_all(END_MARKER).map_err(io)?;
    w.flush().map_err(io)?;
    Ok(BackupSummary {
        header,
        records,
        bytes: w.bytes,
        paused: std::time::Duration::ZERO,
    })
}

/// What the parser hands to its visitor.
pub(crate) enum Item<'a> {
    Tree(&'a str),
    Record(Vec<u8>, Vec<u8>),
}

/// Reads a backup file (or its bytes held in memory).
struct Parser<'p, R> {
    path: &'p Path,
    input: R,
    offset: u64,
    /// Where the end record must be.
    data_end: u64,
}

impl<R: Read> Parser<'_, R> {
    fn malformed(&self, detail: impl Into<String>) -> BackupError {
        BackupError::Malformed {
            path: self.path.to_path_buf(),
            offset: self.offset,
            detail: detail.into(),
        }
    }

    fn bytes(&mut self, n: u64) -> Result<Vec<u8>, BackupError> {
        if self.offset + n > self.data_end {
            return Err(self.malformed(format!("a field of {n} bytes runs past the end")));
        }
        let mut buf = Vec::new();
        (&mut self.input)
            .take(n)
            .read_to_end(&mut buf)
            .map_err(|source| BackupError::Io {
                path: self.path.to_path_buf(),
                source,
            })?;
        if buf.len() as u64 != n {
            return Err(self.malformed("the file changed while it was read"));
        }
        self.offset += n;
        Ok(buf)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], BackupError> {
        let v = self.bytes(N as u64)?;
        // `bytes` returned exactly N bytes.
        v.try_into()
            .map_err(|_| self.malformed("short read inside a field"))
    }

    fn u32(&mut self) -> Result<u32, BackupError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn field(&mut self, what: &str) -> Result<Vec<u8>, BackupError> {
        let n = self.u32()?;
        if n > MAX_FIELD {
            return Err(self.malformed(format!("{what} length {n} is beyond any stored value")));
        }
        self.bytes(u64::from(n))
    }
}

fn open(path: &Path) -> Result<(std::fs::File, u64), BackupError> {
    let io = |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    Ok((file, len))
}

/// Checks the markers and the checksum of the file at `path`, without
/// parsing it; returns its length.
fn check_integrity(path: &Path) -> Result<u64, BackupError> {
    let (file, len) = open(path)?;
    check_integrity_of(path, file, len)
}

/// [`check_integrity`] of `len` bytes read from `file`; `path` names them in
/// errors.
fn check_integrity_of<R: Read + Seek>(
    path: &Path,
    mut file: R,
    len: u64,
) -> Result<u64, BackupError> {
    let io = |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut magic = [0u8; 8];
    let got = (&mut file).take(8).read(&mut magic).map_err(io)?;
    if got < 8 || &magic != MAGIC {
        return Err(if got < 8 && MAGIC.starts_with(&magic[..got]) && got > 0 {
            BackupError::Truncated {
                path: path.into(),
                bytes: len,
            }
        } else {
            BackupError::NotABackup(path.into())
        });
    }
    let header_min = 8 + 4 + 4;
    if len < header_min + 1 + 8 + TRAILER_LEN {
        return Err(BackupError::Truncated {
            path: path.into(),
            bytes: len,
        });
    }
    let mut trailer = [0u8; TRAILER_LEN as usize];
    file.seek(SeekFrom::Start(len - TRAILER_LEN)).map_err(io)?;
    file.read_exact(&mut trailer).map_err(io)?;
    if &trailer[32..] != END_MARKER {
        return Err(BackupError::Truncated {
            path: path.into(),
            bytes: len,
        });
    }
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut sha = Sha256::new();
    let body_len = len - TRAILER_LEN;
    let mut body = file.take(body_len);
    // Reads of 1 MiB, or the whole body when it is smaller.
    let mut buf = vec![0u8; body_len.min(1 << 20) as usize];
    loop {
        let n = body.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
    }
    let computed = sha.finalize();
    if computed.as_slice() != &trailer[..32] {
        return Err(BackupError::Checksum {
            path: path.into(),
            stored: hex::encode(&trailer[..32]),
            computed: hex::encode(computed),
        });
    }
    Ok(len)
}

/// Parses the (integrity-checked) file, handing every tree and record to
/// `visit`; returns the header and the record count.
pub(crate) fn parse(
    path: &Path,
    len: u64,
    visit: impl FnMut(Item<'_>) -> Result<(), BackupError>,
) -> Result<(BackupHeader, u64), BackupError> {
    let (file, _) = open(path)?;
    parse_from(path, BufReader::with_capacity(1 << 20, file), len, visit)
}

/// [`parse`] of `len` bytes read from `input`; `path` names them in errors.
fn parse_from<R: Read>(
    path: &Path,
    input: R,
    len: u64,
    mut visit: impl FnMut(Item<'_>) -> Result<(), BackupError>,
) -> Result<(BackupHeader, u64), BackupError> {
    let mut p = Parser {
        path,
        input,
        offset: 0,
        data_end: len - TRAILER_LEN,
    };
    p.bytes(8)?;
    let version = p.u32()?;
    if version != FORMAT_VERSION {
        return Err(BackupError::Version {
            path: path.into(),
            found: version,
        });
    }
    let header_json = p.field("header")?;
    let header: BackupHeader = serde_json::from_slice(&header_json)
        .map_err(|e| p.malformed(format!("the header is not valid: {e}")))?;
    let mut records = 0u64;
    let mut in_tree = false;
    loop {
        let [tag] = p.array::<1>()?;
        match tag {
            TAG_TREE => {
                let n = u16::from_be_bytes(p.array()?);
                let name = p.bytes(u64::from(n))?;
                let name =
                    String::from_utf8(name).map_err(|_| p.malformed("a tree name is not UTF-8"))?;
                if !t::NAMES.contains(&name.as_str()) {
                    return Err(p.malformed(format!(
                        "it holds tree {name:?}, which this warden does not know; restore it \
                         with warden {} or later",
                        header.warden_version
                    )));
                }
                in_tree = true;
                visit(Item::Tree(&name))?;
            }
            TAG_RECORD if in_tree => {
                let k = p.field("key")?;
                let v = p.field("value")?;
                records += 1;
                visit(Item::Record(k, v))?;
            }
            TAG_END => {
                let count = u64::from_be_bytes(p.array()?);
                if count != records {
                    return Err(p.malformed(format!(
                        "the end record counts {count} records, the file holds {records}"
                    )));
                }
                if p.offset != p.data_end {
                    return Err(p.malformed("data follows the end record"));
                }
                return Ok((header, records));
            }
            other => return Err(p.malformed(format!("unexpected record tag 0x{other:02x}"))),
        }
    }
}

/// Checks a backup file completely (markers, checksum, structure) and
/// returns what it holds. Writes nothing.
/// The records of a backup file, as a count and a SHA-256 over every tree
/// name and record in file order: two backups of the same contents have
/// the same digest, whenever and from whichever engine they were taken.
pub fn content_digest(path: &Path) -> Result<(u64, [u8; 32]), BackupError> {
    let len = check_integrity(path)?;
    let mut sha = Sha256::new();
    let (_, records) = parse(path, len, |item| {
        match item {
            Item::Tree(name) => {
                sha.update([TAG_TREE]);
                sha.update((name.len() as u64).to_be_bytes());
                sha.update(name.as_bytes());
            }
            Item::Record(k, v) => {
                sha.update([TAG_RECORD]);
                sha.update((k.len() as u64).to_be_bytes());
                sha.update(&k);
                sha.update((v.len() as u64).to_be_bytes());
                sha.update(&v);
            }
        }
        Ok(())
    })?;
    Ok((records, sha.finalize().into()))
}

pub fn verify_file(path: &Path) -> Result<BackupSummary, BackupError> {
    let len = check_integrity(path)?;
    let (header, records) = parse(path, len, |_| Ok(()))?;
    Ok(BackupSummary {
        header,
        records,
        bytes: len,
        paused: std::time::Duration::ZERO,
    })
}

/// [`verify_file`] of a backup held in memory; `name` names it in errors.
pub fn verify_bytes(name: &Path, bytes: &[u8]) -> Result<BackupSummary, BackupError> {
    let len = bytes.len() as u64;
    check_integrity_of(name, std::io::Cursor::new(bytes), len)?;
    let (header, records) = parse_from(name, bytes, len, |_| Ok(()))?;
    Ok(BackupSummary {
        header,
        records,
        bytes: len,
        paused: std::time::Duration::ZERO,
    })
}

/// Whether `dir` holds a sled database (a warden data directory).
pub(crate) fn is_store(dir: &Path) -> bool {
    dir.join("conf").is_file() && dir.join("db").is_file()
}

/// Takes a backup of the data directory `dir` while no warden runs on it
/// (it holds the directory's lock meanwhile, so none can start).
pub fn backup_offline(dir: &Path, out: &mut dyn Write) -> Result<BackupSummary, BackupError> {
    if !is_store(dir) {
        return Err(BackupError::NotAStore(dir.to_path_buf()));
    }
    let taken = super::sled::engine::engine(|| {
        let db = super::sled::open_db(dir)?;
        let trees = super::sled::open_trees(&db)?;
        write_snapshot(&trees, out, crate::clock::now_millis())
    });
    if !matches!(taken, Err(StoreError::Locked(_))) {
        super::sled::commit::wait_for_release(dir);
    }
    Ok(taken?)
}

/// Restores the backup at `from` into the data directory `dir`, which must
/// not exist or be empty; with `force`, a warden store already there is
/// replaced, even one too damaged for sled to open. The file is checked
/// completely first, and the directory is locked (as a running warden locks
/// it) for the whole restore, so a directory a warden is serving from is
/// refused.
pub fn restore(from: &Path, dir: &Path, force: bool) -> Result<BackupSummary, BackupError> {
    let checked = verify_file(from)?;
    let dir_io = |source| BackupError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let existed = dir.exists();
    let empty = !existed || std::fs::read_dir(dir).map_err(dir_io)?.next().is_none();
    if !empty {
        if !force {
            return Err(BackupError::NotEmpty(dir.to_path_buf()));
        }
        if !is_store(dir) {
            return Err(BackupError::NotAStore(dir.to_path_buf()));
        }
    }
    let result = (|| {
        let db = match super::sled::engine::engine(|| super::sled::open_db(dir)) {
            Err(e) if !empty && e.is_corruption() => {
                remove_damaged_store(dir, &e)?;
                super::sled::open_db(dir)?
            }
            opened => opened?,
        };
        // Under the lock: the head of the store being replaced would make
        // the restored, older one look as if it had lost writes.
        super::head::remove(dir).map_err(dir_io)?;
        if !empty {
            // Held under the directory's lock: no warden can be using it.
            for name in db.tree_names() {
                if db.drop_tree(&name).is_err() {
                    // The default tree cannot be dropped; empty it.
                    db.clear().map_err(StoreError::from)?;
                }
            }
        }
        import(from, checked.bytes, &db)?;
        db.flush().map_err(StoreError::from)?;
        Ok(())
    })();
    // sled lets go of the directory a moment after its handles are
    // dropped: return once it has, so a warden can open it at once.
    if !matches!(result, Err(BackupError::Store(StoreError::Locked(_)))) {
        super::sled::commit::wait_for_release(dir);
    }
    if result.is_err() && empty {
        // Leave no half-restored store behind where there was none.
        if existed {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    let _ = std::fs::remove_dir_all(e.path())
                        .or_else(|_| std::fs::remove_file(e.path()));
                }
            }
        } else {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    result.map(|()| checked)
}

/// Removes the files of a store sled cannot open (`why`), holding the lock a
/// warden holds on it while it runs, so a directory in use is refused.
fn remove_damaged_store(dir: &Path, why: &StoreError) -> Result<(), BackupError> {
    use fs2::FileExt as _;
    let io = |path: PathBuf| move |source| BackupError::Io { path, source };
    let db_file = dir.join("db");
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&db_file)
        .map_err(io(db_file.clone()))?;
    lock.try_lock_exclusive()
        .map_err(|_| StoreError::Locked(dir.display().to_string()))?;
    tracing::warn!(dir = %dir.display(), damage = %why, "replacing a store sled cannot open");
    for e in std::fs::read_dir(dir).map_err(io(dir.to_path_buf()))? {
        let e = e.map_err(io(dir.to_path_buf()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if name == "blobs" {
            std::fs::remove_dir_all(&path).map_err(io(path))?;
        } else if ["db", "conf", super::head::FILE].contains(&name.as_str())
            || name.starts_with("snap.")
        {
            std::fs::remove_file(&path).map_err(io(path))?;
        }
    }
    drop(lock);
    Ok(())
}

fn import(from: &Path, len: u64, db: &sled::Db) -> Result<(), BackupError> {
    let sled_err = |e: sled::Error| BackupError::Store(StoreError::from(e));
    let mut tree: Option<sled::Tree> = None;
    let mut batch = sled::Batch::default();
    let mut pending = 0usize;
    parse(from, len, |item| {
        match item {
            Item::Tree(name) => {
                if let Some(t) = &tree {
                    t.apply_batch(std::mem::take(&mut batch))
                        .map_err(sled_err)?;
                    pending = 0;
                }
                tree = Some(db.open_tree(name).map_err(sled_err)?);
            }
            Item::Record(k, v) => {
                batch.insert(k, v);
                pending += 1;
                if pending >= RESTORE_BATCH {
                    if let Some(t) = &tree {
                        t.apply_batch(std::mem::take(&mut batch))
                            .map_err(sled_err)?;
                    }
                    pending = 0;
                }
            }
        }
        Ok(())
    })?;
    if let Some(t) = &tree {
        t.apply_batch(batch).map_err(sled_err)?;
    }
    // Trees the backup did not hold (none today) exist empty, as in a new store.
    super::sled::open_trees(db)?;
    Ok(())
}
