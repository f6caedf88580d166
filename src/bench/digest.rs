//! `warden bench digest`: `warden digest` against `sha256sum` on the same
//! model directory, both reading from the page cache.
//!
//! The directory is shaped like a published checkpoint: four big weight
//! shards (7/8 of the bytes), a handful of 10-50 MiB files in a
//! subdirectory, and small config and tokenizer files. Content is
//! pseudo-random (it is written fast, and nothing can skip or compress it).
//! Everything is read once before timing, so every run measures hashing,
//! not the disk. Three measures, each run `--runs` times:
//!
//! - `warden digest` as its own process (the headline: what a user or a
//!   scheduler's hook pays, process start included);
//! - [`digest_dir`](crate::digest::digest_dir) called in-process;
//! - `sha256sum` over the same files, one process (`find | xargs`), and the
//!   same split over every core (`xargs -P`), which is the fair parallel
//!   baseline.
//!
//! Every `sha256sum` line is checked against warden's manifest, and the
//! subprocess's output against the in-process digest.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;

use crate::digest::{digest_dir, manifest, DigestOptions};

const MIB: u64 = 1 << 20;

#[derive(Debug, Clone, Args)]
pub struct DigestBenchArgs {
    /// Size of the synthetic model directory, in MiB.
    #[arg(long, default_value_t = 2048)]
    pub size_mib: u64,
    /// Timed runs of each measure (best and median are reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Where to create the model directory (default: the system temp dir);
    /// it is removed afterwards either way.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Results file (Markdown); a .json beside it holds the raw numbers.
    #[arg(long, default_value = "bench/results/digest.md")]
    pub out: PathBuf,
}

/// Relative path and size of every file in a synthetic model of `total`
/// bytes. The sizes add up to `total` exactly.
pub(crate) fn layout(total: u64) -> Vec<(String, u64)> {
    // Small files as a real checkpoint has them; tokenizer.json only when
    // there is room for it.
    let mut small: Vec<(String, u64)> = [
        ("config.json", 1_200),
        ("generation_config.json", 180),
        ("tokenizer_config.json", 50_000),
        ("special_tokens_map.json", 550),
        ("model.safetensors.index.json", 24_000),
        ("README.md", 9_000),
    ]
    .iter()
    .map(|(n, l)| (n.to_string(), *l))
    .collect();
    if total >= 64 * MIB {
        small.push(("tokenizer.json".into(), 9 * MIB));
    }
    let small_total: u64 = small.iter().map(|(_, l)| l).sum();
    if small_total >= total {
        // Too small for the full shape: one file of exactly `total` bytes.
        return vec![("model.safetensors".into(), total)];
    }
    let rest = total - small_total;
    let shard = rest * 7 / 32;
    let mut files: Vec<(String, u64)> = (1..=4)
        .map(|i| (format!("model-{i:05}-of-00004.safetensors"), shard))
        .collect();
    // The remaining eighth, in files of 50, 40, 30, 20 and 10 MiB (scaled
    // to the total), the last one taking what is left.
    let mut medium = rest - 4 * shard;
    let scale = |mib: u64| (mib * MIB * total / (2048 * MIB)).max(1);
    let mut i = 0;
    while medium > 0 {
        let want = scale([50, 40, 30, 20, 10][i % 5]);
        let len = if medium < 2 * want { medium } else { want };
        files.push((format!("extra/part-{i:02}.bin"), len));
        medium -= len;
        i += 1;
    }
    files.extend(small);
    files
}

/// Writes the files of [`layout`] under `root` with pseudo-random content.
fn create_model(root: &Path, total: u64) -> anyhow::Result<Vec<(String, u64)>> {
    let files = layout(total);
    let mut state: u64 = 0x5741_5244_454E; // "WARDEN"
    let mut buf = vec![0u8; MIB as usize];
    for (name, len) in &files {
        let path = root.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut f = std::io::BufWriter::with_capacity(
            MIB as usize,
            std::fs::File::create(&path).with_context(|| format!("cannot create {name}"))?,
        );
        let mut left = *len;
        while left > 0 {
            for word in buf.chunks_exact_mut(8) {
                // xorshift64: fast, and nothing downstream can skip it.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                word.copy_from_slice(&state.to_le_bytes());
            }
            let n = left.min(MIB) as usize;
            f.write_all(&buf[..n])?;
            left -= n as u64;
        }
        f.flush()?;
    }
    Ok(files)
}

/// Reads every file once, so that timed runs hash from the page cache.
fn warm(root: &Path, files: &[(String, u64)]) -> anyhow::Result<()> {
    use std::io::Read as _;
    let mut buf = vec![0u8; MIB as usize];
    for (name, _) in files {
        let mut f = std::fs::File::open(root.join(name))?;
        while f.read(&mut buf)? > 0 {}
    }
    Ok(())
}

#[derive(Debug, Serialize)]
struct Measure {
    what: String,
    command: String,
    seconds: Vec<f64>,
    best_seconds: f64,
    median_seconds: f64,
    best_gib_per_second: f64,
    median_gib_per_second: f64,
}

fn measure(
    what: &str,
    command: String,
    bytes: u64,
    runs: usize,
    mut once: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Measure> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        once()?;
        times.push(started.elapsed());
    }
    let seconds: Vec<f64> = times.iter().map(Duration::as_secs_f64).collect();
    let mut sorted = seconds.clone();
    sorted.sort_by(f64::total_cmp);
    let (best, median) = (sorted[0], sorted[sorted.len() / 2]);
    let gib = bytes as f64 / (1u64 << 30) as f64;
    let m = Measure {
        what: what.to_string(),
        command,
        seconds,
        best_seconds: best,
        median_seconds: median,
        best_gib_per_second: gib / best,
        median_gib_per_second: gib / median,
    };
    eprintln!(
        "{:<28} best {:.3} s ({:.2} GiB/s), median {:.3} s ({:.2} GiB/s)",
        m.what, best, m.best_gib_per_second, median, m.median_gib_per_second
    );
    Ok(m)
}

/// Runs `sh -c script` and checks that every `sha256sum` line it prints
/// agrees with warden's manifest and that it covered every file.
fn sha256sum(script: &str, root: &Path, expected: &HashMap<String, String>) -> anyhow::Result<()> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run sh")?;
    anyhow::ensure!(out.status.success(), "`{script}` failed: {}", out.status);
    let text = String::from_utf8(out.stdout).context("sha256sum printed non-UTF-8")?;
    let prefix = format!("{}/", root.display());
    let mut seen = 0;
    for line in text.lines() {
        let (hash, path) = line
            .split_once("  ")
            .with_context(|| format!("unexpected sha256sum line {line:?}"))?;
        let name = path.strip_prefix(&prefix).unwrap_or(path);
        anyhow::ensure!(
            expected.get(name).map(String::as_str) == Some(hash),
            "sha256sum and warden disagree on {name}"
        );
        seen += 1;
    }
    anyhow::ensure!(
        seen == expected.len(),
        "sha256sum hashed {seen} files, warden {}",
        expected.len()
    );
    Ok(())
}

pub fn run(args: &DigestBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.size_mib > 0, "--size-mib must be at least 1");
    let base = match &args.dir {
        Some(d) => d.join(format!("warden-digest-{}", uuid::Uuid::new_v4().simple())),
        None => super::tempfile_dir()?,
    };
    let root = base.join("model");
    std::fs::create_dir_all(&root)?;
    let result = run_in(args, &root);
    let _ = std::fs::remove_dir_all(&base);
    result
}

fn run_in(args: &DigestBenchArgs, root: &Path) -> anyhow::Result<()> {
    // Other work on the machine takes cores from both sides; say how much.
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_default();
    let total = args.size_mib * MIB;
    let started = Instant::now();
    let files = create_model(root, total)?;
    let created = started.elapsed();
    eprintln!(
        "created {} files, {} MiB, in {:.1} s",
        files.len(),
        args.size_mib,
        created.as_secs_f64()
    );
    warm(root, &files)?;

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let opts = DigestOptions::default();
    let entries = manifest(root, &opts)?;
    let expected: HashMap<String, String> = entries
        .iter()
        .map(|(n, d)| (n.clone(), hex::encode(d)))
        .collect();
    let digest = digest_dir(root, &opts)?.to_string();

    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let dir = root.display().to_string();
    // Commands as reported: the temp dir's name is noise, so it is `DIR`.
    let shown = |cmd: &str| cmd.replace(&dir, "DIR");
    let mut rows = Vec::new();
    rows.push(measure(
        "warden digest (process)",
        shown(&format!("{} digest {dir}", exe.display())),
        total,
        args.runs,
        || {
            let out = Command::new(&exe)
                .arg("digest")
                .arg(root)
                .stdin(Stdio::null())
                .stderr(Stdio::inherit())
                .output()?;
            anyhow::ensure!(out.status.success(), "warden digest failed: {}", out.status);
            let printed = String::from_utf8_lossy(&out.stdout);
            anyhow::ensure!(
                printed.trim() == digest,
                "warden digest printed {printed:?}, in-process gave {digest}"
            );
            Ok(())
        },
    )?);
    rows.push(measure(
        "digest_dir (in-process)",
        "warden::digest::digest_dir(DIR, default options)".into(),
        total,
        args.runs,
        || {
            anyhow::ensure!(digest_dir(root, &opts)?.to_string() == digest);
            Ok(())
        },
    )?);
    let one = format!("find {dir} -type f -print0 | xargs -0 sha256sum");
    rows.push(measure(
        "sha256sum (one process)",
        shown(&one),
        total,
        args.runs,
        || sha256sum(&one, root, &expected),
    )?);
    let par = format!("find {dir} -type f -print0 | xargs -0 -P {cores} -n 1 sha256sum");
    rows.push(measure(
        "sha256sum (xargs -P, per file)",
        shown(&par),
        total,
        args.runs,
        || sha256sum(&par, root, &expected),
    )?);

    let ceiling = sha256_per_core();
    eprintln!("SHA-256 in memory, one thread: {ceiling:.2} GiB/s");
    write(args, &files, &digest, created, ceiling, &load, &rows)
}

/// SHA-256 throughput of one thread over a buffer already in memory, in
/// GiB/s (best of three): the most any reader can reach per core.
fn sha256_per_core() -> f64 {
    use sha2::{Digest as _, Sha256};
    let buf = vec![0x5a_u8; 128 * MIB as usize];
    (0..3)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(Sha256::digest(std::hint::black_box(&buf)));
            0.125 / started.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

/// Whether the CPU has the SHA extensions (`sha_ni`) that the `sha2` crate
/// detects at run time and uses for SHA-256.
fn sha_ni() -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| s.split_whitespace().any(|w| w == "sha_ni"))
        .unwrap_or(false)
}

// A report formatter: one block per section of the report it writes.
fn write(
    args: &DigestBenchArgs,
    files: &[(String, u64)],
    digest: &str,
    created: Duration,
    ceiling: f64,
    load: &str,
    rows: &[Measure],
) -> anyhow::Result<()> {
    let info = super::RunInfo::now();
    let (cores, when, command) = (info.cores, &info.when, &info.command);
    let sha_ni = if sha_ni() { "yes" } else { "no" };
    let sha256sum_version = Command::new("sha256sum")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_default();
    // coreutils uses OpenSSL's SHA-256 (which has SHA-NI code) only when
    // built against libcrypto; otherwise gnulib's portable C.
    let sha256sum_openssl = Command::new("sh")
        .arg("-c")
        .arg("ldd \"$(command -v sha256sum)\"")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("libcrypto"))
        .unwrap_or(false);
    let sha256sum_impl = if sha256sum_openssl {
        "linked against OpenSSL's libcrypto"
    } else {
        "not linked against OpenSSL (gnulib's portable C SHA-256, no SHA extensions)"
    };
    let shape = {
        let big = files
            .iter()
            .filter(|(n, _)| n.starts_with("model-"))
            .count();
        let extra = files
            .iter()
            .filter(|(n, _)| n.starts_with("extra/"))
            .count();
        let small = files.len() - big - extra;
        let mib = |l: u64| l as f64 / MIB as f64;
        let shard = files.first().map_or(0, |(_, l)| *l);
        format!(
            "{} files: {big} weight shards of {:.0} MiB, {extra} files of 10-50 MiB under \
             `extra/`, {small} config and tokenizer files",
            files.len(),
            mib(shard)
        )
    };
    let mut md = format!(
        "# Model digest benchmark\n\n\
         `warden digest` against `sha256sum` on the same {size} MiB model directory \
         ({shape}), pseudo-random content, every file read once before timing so that all \
         runs hash from the page cache. Each measure runs {runs} times; best and median \
         wall time are reported, and GiB/s is the directory's size over that time. \
         `warden digest` hashes files in parallel (biggest first, one thread per core, \
         1 MiB reads) with the `sha2` crate, which uses the CPU's SHA extensions when \
         present. The process row is the headline: it includes starting the process and \
         walking the directory. Every `sha256sum` line is checked against warden's \
         manifest.\n\n\
         - machine: {cores} cores, SHA extensions (sha_ni): {sha_ni}; 1-minute load \
         average before the run: {load}\n\
         - SHA-256 in memory, one thread: {ceiling:.2} GiB/s, so about {:.2} GiB/s on all \
         cores is the ceiling\n\
         - sha256sum: {sha256sum_version}, {sha256sum_impl}\n- run: {when}\n\
         - command: `{command}`\n- digest: `{digest}`\n- directory written in {:.1} s \
         (DIR below is its path)\n\n\
         | measure | best s | best GiB/s | median s | median GiB/s | command |\n\
         |---|---:|---:|---:|---:|---|\n",
        ceiling * cores as f64,
        created.as_secs_f64(),
        size = args.size_mib,
        runs = args.runs,
    );
    for r in rows {
        md.push_str(&format!(
            "| {} | {:.3} | {:.2} | {:.3} | {:.2} | `{}` |\n",
            r.what,
            r.best_seconds,
            r.best_gib_per_second,
            r.median_seconds,
            r.median_gib_per_second,
            r.command
        ));
    }
    if let (Some(w), Some(s)) = (rows.first(), rows.get(2)) {
        md.push_str(&format!(
            "\n`warden digest` against one `sha256sum` process (median): {:.2}x.\n",
            s.median_seconds / w.median_seconds
        ));
    }
    let json = serde_json::json!({
        "size_mib": args.size_mib,
        "files": files.len(),
        "runs": args.runs,
        "digest": digest,
        "sha_ni": sha_ni == "yes",
        "sha256sum_version": sha256sum_version,
        "sha256sum_openssl": sha256sum_openssl,
        "sha256_one_thread_gib_per_second": ceiling,
        "load_average_1m": load,
        "create_seconds": created.as_secs_f64(),
        "rows": rows,
    });
    super::write_results_pair(&args.out, &md, json, &info)?;
    println!("results written to {}", args.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_adds_up_and_has_the_checkpoint_shape() {
        for mib in [1, 7, 63, 64, 100, 512, 2048] {
            let files = layout(mib * MIB);
            let sum: u64 = files.iter().map(|(_, l)| l).sum();
            assert_eq!(sum, mib * MIB, "{mib} MiB");
            assert!(files.iter().all(|(_, l)| *l > 0), "{mib} MiB: empty file");
            let mut names: Vec<_> = files.iter().map(|(n, _)| n).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), files.len(), "{mib} MiB: duplicate names");
        }
        let files = layout(2048 * MIB);
        let shards: Vec<u64> = files
            .iter()
            .filter(|(n, _)| n.starts_with("model-"))
            .map(|(_, l)| *l)
            .collect();
        assert_eq!(shards.len(), 4);
        assert!(shards.iter().all(|l| (440 * MIB..=448 * MIB).contains(l)));
        let extra: Vec<u64> = files
            .iter()
            .filter(|(n, _)| n.starts_with("extra/"))
            .map(|(_, l)| *l)
            .collect();
        assert!(extra.len() >= 3);
        assert!(extra.iter().all(|l| (10 * MIB..100 * MIB).contains(l)));
    }
}
