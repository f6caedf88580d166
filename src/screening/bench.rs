//! Synthetic end-to-end benchmark (run it in release mode; see
//! `examples/screen_bench.rs`).

use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use super::synth::{near_copy, synthetic_customers, synthetic_ofac_files, SynthRng};
use super::{parse_ofac_sdn, Hit, ListSource, Screener, ScreeningError};

const SAMPLE_HITS: usize = 12;

/// Benchmark parameters.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Synthetic list entries.
    pub list_entries: usize,
    /// Synthetic customers (each: legal name + 1–3 people).
    pub customers: usize,
    /// Customers replaced by deliberate near-copies of list names.
    pub planted: usize,
    /// Single-threaded single-customer screenings timed for latency.
    pub latency_samples: usize,
    /// Hit threshold.
    pub threshold: f64,
    /// RNG seed.
    pub seed: u64,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            list_entries: 20_000,
            customers: 100_000,
            planted: 100,
            latency_samples: 2_000,
            threshold: super::DEFAULT_THRESHOLD,
            seed: 42,
        }
    }
}

/// Benchmark results.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// Entries in the list.
    pub list_entries: usize,
    /// Indexed names (entry names + aliases).
    pub list_names: usize,
    /// Seconds to generate + parse the OFAC-format files.
    pub parse_secs: f64,
    /// Seconds to build the index.
    pub build_secs: f64,
    /// Customers screened.
    pub customers: usize,
    /// Customer names screened.
    pub customer_names: usize,
    /// Rayon threads used.
    pub threads: usize,
    /// Wall-clock seconds to screen all customers in parallel.
    pub total_secs: f64,
    /// Customers with at least one hit.
    pub customers_hit: usize,
    /// Of those, customers that were not planted.
    pub unplanted_customers_hit: usize,
    /// Planted near-copies.
    pub planted: usize,
    /// Planted near-copies whose source entry was hit.
    pub planted_found: usize,
    /// Planted names that were missed, with their source entry id.
    pub planted_missed: Vec<(String, String)>,
    /// Single-customer latency percentiles (single-threaded).
    pub latency_p50: Duration,
    /// 99th percentile.
    pub latency_p99: Duration,
    /// Maximum.
    pub latency_max: Duration,
    /// Mean list names scored per customer name (latency sample).
    pub mean_candidates: f64,
    /// `(threshold, unplanted customers hit, planted found)` at the run's
    /// threshold and at 0.92 / 0.95 when those are higher.
    pub by_threshold: Vec<(f64, usize, usize)>,
    /// A few hits on unplanted customers, for eyeballing.
    pub sample_unplanted_hits: Vec<Hit>,
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "list: {} entries, {} names; generate+parse {:.2}s, index build {:.2}s",
            self.list_entries, self.list_names, self.parse_secs, self.build_secs
        )?;
        writeln!(
            f,
            "screened {} customers / {} names in {:.2}s on {} threads ({:.0} customers/s)",
            self.customers,
            self.customer_names,
            self.total_secs,
            self.threads,
            self.customers as f64 / self.total_secs.max(1e-9)
        )?;
        writeln!(
            f,
            "customers hit: {} (unplanted: {}); planted recall: {}/{}",
            self.customers_hit, self.unplanted_customers_hit, self.planted_found, self.planted
        )?;
        writeln!(
            f,
            "single-customer latency: p50 {:?}, p99 {:?}, max {:?}; mean candidates per name {:.1}",
            self.latency_p50, self.latency_p99, self.latency_max, self.mean_candidates
        )?;
        for (t, fp, found) in &self.by_threshold {
            writeln!(
                f,
                "  at threshold {t:.2}: unplanted customers hit {fp}, planted found {found}/{}",
                self.planted
            )?;
        }
        for (q, id) in &self.planted_missed {
            writeln!(f, "  MISSED planted {q:?} (entry {id})")?;
        }
        for h in &self.sample_unplanted_hits {
            writeln!(
                f,
                "  unplanted hit {:.3}: {:?} ~ {:?} (entry {})",
                h.score, h.query, h.list_name, h.entry_id
            )?;
        }
        Ok(())
    }
}

/// Generates a synthetic OFAC-format list and customers, plants near-copies,
/// screens every customer in parallel (rayon) and measures single-customer
/// latency single-threaded.
// A benchmark script (generate, plant, screen, time), in the order it runs
// and reports.
pub fn run_bench(cfg: &BenchConfig) -> Result<BenchReport, ScreeningError> {
    let t = Instant::now();
    let (sdn, alt) = synthetic_ofac_files(cfg.list_entries, cfg.seed);
    let list = parse_ofac_sdn(
        "SYNTHETIC SDN",
        "bench",
        ListSource {
            file_name: "synthetic-sdn.csv",
            bytes: &sdn,
        },
        Some(ListSource {
            file_name: "synthetic-alt.csv",
            bytes: &alt,
        }),
    )?;
    let parse_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let screener = Screener::new(&list)?;
    let build_secs = t.elapsed().as_secs_f64();

    let mut customers = synthetic_customers(cfg.customers, cfg.seed);
    let mut rng = SynthRng::new(cfg.seed ^ 0x00be_ef00);
    let mut planted: Vec<(usize, String, String)> = Vec::new();
    let stride = (customers.len() / cfg.planted.max(1)).max(1);
    let mut attempts = 0;
    while planted.len() < cfg.planted.min(customers.len()) && attempts < cfg.planted * 100 {
        attempts += 1;
        let Some(e) = list.entries.get(rng.below(list.entries.len())) else {
            break;
        };
        let source = if !e.aliases.is_empty() && rng.chance(0.3) {
            &e.aliases[rng.below(e.aliases.len())]
        } else {
            &e.name
        };
        let Some(copy) = near_copy(source, &mut rng) else {
            continue;
        };
        let ci = (planted.len() * stride + rng.below(stride)) % customers.len();
        let slot = if e.kind == "individual" && customers[ci].names.len() > 1 {
            1 + rng.below(customers[ci].names.len() - 1)
        } else {
            0
        };
        customers[ci].names[slot] = copy.clone();
        planted.push((ci, e.id.clone(), copy));
    }

    let customer_names = customers.iter().map(|c| c.names.len()).sum();
    let t = Instant::now();
    let results: Vec<Vec<Hit>> = customers
        .par_iter()
        .map(|c| {
            let refs: Vec<&str> = c.names.iter().map(String::as_str).collect();
            screener.screen(&refs, cfg.threshold)
        })
        .collect();
    let total_secs = t.elapsed().as_secs_f64();

    let planted_idx: HashSet<usize> = planted.iter().map(|p| p.0).collect();
    let customers_hit = results.iter().filter(|h| !h.is_empty()).count();
    let unplanted: Vec<&Hit> = results
        .iter()
        .enumerate()
        .filter(|(i, _)| !planted_idx.contains(i))
        .flat_map(|(_, h)| h.iter())
        .collect();
    let unplanted_customers_hit = results
        .iter()
        .enumerate()
        .filter(|(i, h)| !h.is_empty() && !planted_idx.contains(i))
        .count();
    let mut planted_missed = Vec::new();
    for (ci, id, copy) in &planted {
        let found = results[*ci]
            .iter()
            .any(|h| &h.entry_id == id && &h.query == copy);
        if !found {
            planted_missed.push((copy.clone(), id.clone()));
        }
    }

    let mut by_threshold = Vec::new();
    for t in [cfg.threshold, 0.92, 0.95] {
        if t < cfg.threshold || by_threshold.iter().any(|&(x, _, _)| x == t) {
            continue;
        }
        let fp = results
            .iter()
            .enumerate()
            .filter(|(i, h)| !planted_idx.contains(i) && h.iter().any(|h| h.score >= t))
            .count();
        let found = planted
            .iter()
            .filter(|(ci, id, copy)| {
                results[*ci]
                    .iter()
                    .any(|h| &h.entry_id == id && &h.query == copy && h.score >= t)
            })
            .count();
        by_threshold.push((t, fp, found));
    }

    let mut lat = Vec::with_capacity(cfg.latency_samples);
    let mut cand_total = 0usize;
    let mut cand_names = 0usize;
    let lstride = (customers.len() / cfg.latency_samples.max(1)).max(1);
    for i in 0..cfg.latency_samples.min(customers.len()) {
        let c = &customers[(i * lstride + 7) % customers.len()];
        let refs: Vec<&str> = c.names.iter().map(String::as_str).collect();
        let t = Instant::now();
        let h = screener.screen(&refs, cfg.threshold);
        lat.push(t.elapsed());
        std::hint::black_box(h);
        for n in &refs {
            cand_total += screener.candidate_count(n);
            cand_names += 1;
        }
    }
    lat.sort_unstable();
    let pct = |p: usize| {
        lat.get((lat.len() * p / 100).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };

    Ok(BenchReport {
        list_entries: list.entries.len(),
        list_names: screener.name_count(),
        parse_secs,
        build_secs,
        customers: customers.len(),
        customer_names,
        threads: rayon::current_num_threads(),
        total_secs,
        customers_hit,
        unplanted_customers_hit,
        planted: planted.len(),
        planted_found: planted.len() - planted_missed.len(),
        planted_missed,
        latency_p50: pct(50),
        latency_p99: pct(99),
        latency_max: lat.last().copied().unwrap_or_default(),
        by_threshold,
        mean_candidates: cand_total as f64 / cand_names.max(1) as f64,
        sample_unplanted_hits: unplanted.into_iter().take(SAMPLE_HITS).cloned().collect(),
    })
}
