//! Sanctions screening of KYC customers.
//!
//! warden loads one or more sanctions lists ([`SanctionsList`], parsed from the
//! OFAC SDN CSV files or from a generic CSV) and screens every customer name
//! (legal name, aliases, beneficial owners, key personnel) against them with a
//! [`Screener`]. A [`Hit`] whose score is at or above the configured threshold
//! (suggested default [`DEFAULT_THRESHOLD`]) makes the customer a potential
//! match.
//!
//! Pipeline:
//! 1. [`normalize_name`]: Unicode NFKD, strip combining marks and invisible
//!    characters (format characters, category Cf, and other default-ignorable
//!    code points: `Dra\u{200B}von` is `dravon`), lowercase, non-ASCII letters
//!    to Latin, punctuation to spaces (apostrophes are dropped), split into
//!    tokens, drop legal-form noise (`ltd`, `llc`, `gmbh`, `the`, `of`, ...)
//!    when other tokens remain, dedupe. Non-ASCII letters become Latin in two
//!    variants, and list and customer names are compared under both: by sound
//!    (transliteration: `Дравон Улмекк`, `Δράβον` → `dravon ulmekk`,
//!    `drabon`) and by sight (Unicode TS #39 confusable skeleton: Cyrillic
//!    `Сорех` → `copex`, where transliteration would give `sorekh`).
//!    List names of individuals keep noise-like tokens (`SA`, `Co` are also
//!    surnames); a query with noise tokens is scored with and without them.
//! 2. [`Screener::new`] indexes every distinct list token with a
//!    deletion-neighbourhood key index (see [`Screener`]), so a query only
//!    scores list names that share an exact or approximately equal token.
//! 3. [`score_names`] scores a query against each candidate with token-based,
//!    order-insensitive Jaro-Winkler (formula documented there).
//!
//! [`synth`] and [`bench`](mod@bench) hold a deterministic synthetic data generator
//! (invented names only) and the throughput / latency / recall benchmark.
//!
//! This module is self-contained: it refers to nothing else in warden.

mod error;
mod index;
mod normalize;
mod parse;
mod score;

pub mod bench;
pub mod synth;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use self::error::ScreeningError;
pub use self::index::Screener;
pub use self::normalize::normalize_name;
pub use self::parse::{parse_generic_csv, parse_ofac_sdn};
pub use self::score::{jaro_winkler, score_names};

/// Suggested default hit threshold for [`Screener::screen`].
pub const DEFAULT_THRESHOLD: f64 = 0.90;

/// Input format of a sanctions list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ListFormat {
    /// OFAC SDN legacy CSV: `sdn.csv` (no header, 12 columns) plus an optional
    /// `alt.csv` (no header, 5 columns) whose names become aliases.
    OfacSdn,
    /// Generic CSV with a header row `name,aliases,type,program,id`
    /// (aliases separated by `;`, `id` required and unique).
    Csv,
}

/// One file's bytes, with the name used in error messages.
#[derive(Debug, Clone, Copy)]
pub struct ListSource<'a> {
    /// Name shown in errors (usually the path or file name).
    pub file_name: &'a str,
    /// Raw bytes exactly as loaded.
    pub bytes: &'a [u8],
}

/// A parsed sanctions list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SanctionsList {
    /// Caller-chosen list name, e.g. `"OFAC SDN"`.
    pub name: String,
    /// Caller-chosen version, e.g. the publication date.
    pub version: String,
    /// Lowercase hex SHA-256 of the input bytes as loaded (for OFAC: the
    /// `sdn.csv` bytes followed by the `alt.csv` bytes).
    pub sha256: String,
    /// Entries in file order; never empty, ids unique.
    pub entries: Vec<ListEntry>,
}

/// One sanctioned party.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListEntry {
    /// Unique id within the list (OFAC: `ent_num`).
    pub id: String,
    /// Primary name as published.
    pub name: String,
    /// Alternative names as published.
    pub aliases: Vec<String>,
    /// `individual`, `entity`, `vessel`, `aircraft` (generic CSV: as given,
    /// lowercased; `unknown` when empty).
    pub kind: String,
    /// Sanctions program(s) as published; may be empty.
    pub program: String,
}

/// One screening hit: a customer name that matched a list entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// Id of the matched [`ListEntry`].
    pub entry_id: String,
    /// Primary name of the matched entry.
    pub entry_name: String,
    /// The entry's name or alias that produced the best score.
    pub list_name: String,
    /// The customer name (as passed to [`Screener::screen`]) that matched.
    pub query: String,
    /// Score in `[0, 1]`, at or above the threshold used.
    pub score: f64,
}

impl SanctionsList {
    /// Parses a list from in-memory bytes. `alt` is only valid for
    /// [`ListFormat::OfacSdn`].
    pub fn from_sources(
        format: ListFormat,
        name: &str,
        version: &str,
        primary: ListSource<'_>,
        alt: Option<ListSource<'_>>,
    ) -> Result<Self, ScreeningError> {
        match format {
            ListFormat::OfacSdn => parse_ofac_sdn(name, version, primary, alt),
            ListFormat::Csv => match alt {
                Some(a) => Err(ScreeningError::UnexpectedAltFile {
                    file: a.file_name.to_string(),
                }),
                None => parse_generic_csv(name, version, primary),
            },
        }
    }

    /// Reads and parses a list from files (see [`SanctionsList::from_sources`]).
    pub fn load(
        format: ListFormat,
        name: &str,
        version: &str,
        primary: &std::path::Path,
        alt: Option<&std::path::Path>,
    ) -> Result<Self, ScreeningError> {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|source| ScreeningError::Io {
                file: p.display().to_string(),
                source,
            })
        };
        let primary_bytes = read(primary)?;
        let alt_bytes = alt.map(read).transpose()?;
        let primary_name = primary.display().to_string();
        let alt_name = alt.map(|p| p.display().to_string());
        let alt_src = match (&alt_name, &alt_bytes) {
            (Some(n), Some(b)) => Some(ListSource {
                file_name: n,
                bytes: b,
            }),
            _ => None,
        };
        Self::from_sources(
            format,
            name,
            version,
            ListSource {
                file_name: &primary_name,
                bytes: &primary_bytes,
            },
            alt_src,
        )
    }
}
