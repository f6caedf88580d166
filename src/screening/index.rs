//! The screening index.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::normalize::{is_noise, strip_noise, token_variants};
use super::score::{
    pair_counts, score_tokens, token_sim, EXTRA_TOKEN_PENALTY, SINGLE_TOKEN_QUERY_FACTOR,
};
use super::{Hit, SanctionsList, ScreeningError};

/// A list token found in more than `max(MIN_COMMON_CAP, names / COMMON_DIVISOR)`
/// list names is "common" (e.g. `trading`, `bank`).
const MIN_COMMON_CAP: usize = 32;
const COMMON_DIVISOR: usize = 400;

/// The longest token the key index finds by approximate match; a longer one
/// is found only as it is. Two deletions make a neighbourhood that grows
/// with the square of the length, each key hashed in full, so a list or
/// query holding one token of thousands of characters (no name has one)
/// would take minutes to index or screen.
const MAX_FUZZY_TOKEN: usize = 40;

/// How many deletions the key index applies to a token of `len` characters.
fn max_deletes(len: usize) -> usize {
    match len {
        0..=3 => 0,
        4..=8 => 1,
        9..=MAX_FUZZY_TOKEN => 2,
        _ => 0,
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over the chars, skipping up to two positions, with a final
/// avalanche so the value can be used directly as a hash-table hash.
fn hash_skipping(chars: &[char], skip_a: usize, skip_b: usize) -> u64 {
    let mut h = FNV_OFFSET;
    for (i, &c) in chars.iter().enumerate() {
        if i != skip_a && i != skip_b {
            h ^= u64::from(u32::from(c));
            h = h.wrapping_mul(FNV_PRIME);
        }
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// Hasher for keys that are already well-mixed 64-bit hashes.
#[derive(Default)]
struct PremixedHasher(u64);

impl Hasher for PremixedHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(FNV_PRIME);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type KeyMap = HashMap<u64, (u32, u32), BuildHasherDefault<PremixedHasher>>;

/// Hashes of the token and of every string obtained by deleting up to
/// `max_deletes(len)` characters (sorted, deduplicated) into `out`.
fn deletion_keys(chars: &[char], out: &mut Vec<u64>) {
    out.clear();
    let none = usize::MAX;
    out.push(hash_skipping(chars, none, none));
    let d = max_deletes(chars.len());
    if d >= 1 {
        for i in 0..chars.len() {
            out.push(hash_skipping(chars, i, none));
            if d >= 2 {
                for j in (i + 1)..chars.len() {
                    out.push(hash_skipping(chars, i, j));
                }
            }
        }
    }
    out.sort_unstable();
    out.dedup();
}

/// Token lists indexed for a list name, one per fold variant (see
/// [`token_variants`]): individuals keep legal-form-like tokens (they are
/// surnames there), other kinds drop them.
fn list_tokens(kind: &str, display: &str) -> Vec<Vec<String>> {
    let person = kind.eq_ignore_ascii_case("individual") || kind.eq_ignore_ascii_case("person");
    token_variants(display)
        .into_iter()
        .map(|full| if person { full } else { strip_noise(full) })
        .collect()
}

#[derive(Debug)]
struct EntryInfo {
    id: String,
    name: String,
}

#[derive(Debug)]
struct NameRec {
    entry: u32,
    display: String,
    tok_start: u32,
    tok_len: u32,
}

/// A sanctions list indexed for screening. Build once, share freely
/// (`Send + Sync`; [`Screener::screen`] takes `&self`).
///
/// Index: every entry name and alias is indexed under each of its fold
/// variants (by sound and, when it differs, by sight: see
/// [`normalize_name`](super::normalize_name)), and a query is looked up under
/// each of its own, so a look-alike or other-script spelling on either side
/// meets the other. Every distinct normalised token is stored once (the
/// vocabulary) with a posting list of the names that contain it. Each vocabulary token is also filed under the hashes of its
/// *deletion neighbourhood*: the token itself and every string obtained by
/// deleting one character (tokens of 4–8 chars) or up to two characters
/// (tokens of 9+ chars); tokens of 1–3 chars are filed as themselves only.
/// A query token generates the same keys; any shared key links the two
/// tokens. This finds every list token within one insertion, deletion,
/// substitution or adjacent transposition of a query token of length ≥ 4, in
/// any position including the first letter, and most two-edit variants of
/// long tokens. Linked tokens that would count as unmatched in scoring
/// (Jaro-Winkler below 0.80, or lengths too different) are dropped.
///
/// A list name is a *candidate*, and only candidates are scored with
/// [`score_names`](super::score_names), when it contains a linked token that
/// is *distinctive* (found in at most `max(32, names/400)` list names), or
/// when at least `min(2, query tokens, name tokens)` different query tokens
/// link to it. So a list name related to the query only through one common
/// word (`Trading`, `Bank`) is never scored, nor is one sharing no exact or
/// approximately equal token with the query; neither can hit.
#[derive(Debug)]
pub struct Screener {
    list_name: String,
    list_version: String,
    list_sha256: String,
    entries: Vec<EntryInfo>,
    names: Vec<NameRec>,
    name_tokens: Vec<u32>,
    vocab_chars: Vec<char>,
    vocab_off: Vec<u32>,
    post_off: Vec<u32>,
    post_names: Vec<u32>,
    /// Deletion key -> range of `key_vocab`.
    key_map: KeyMap,
    key_vocab: Vec<u32>,
    common_cap: usize,
}

fn to_u32(v: usize, list: &str) -> Result<u32, ScreeningError> {
    u32::try_from(v).map_err(|_| ScreeningError::ListTooLarge {
        list: list.to_string(),
    })
}

impl Screener {
    /// Builds the index. Names that normalise to no tokens (e.g. only
    /// punctuation) are skipped; fails if no entry has a usable name.
    // Builds the index in one pass over the list, then lays out the vocabulary
    // arena and the posting lists (CSR) from what that pass collected; the
    // stages share the token ids they assign.
    pub fn new(list: &SanctionsList) -> Result<Self, ScreeningError> {
        let mut entries = Vec::with_capacity(list.entries.len());
        let mut names = Vec::new();
        let mut name_tokens: Vec<u32> = Vec::new();
        let mut vocab: HashMap<String, u32> = HashMap::new();
        let mut vocab_list: Vec<String> = Vec::new();

        for e in &list.entries {
            let entry = to_u32(entries.len(), &list.name)?;
            entries.push(EntryInfo {
                id: e.id.clone(),
                name: e.name.clone(),
            });
            let mut seen: Vec<Vec<String>> = Vec::new();
            let names_of_entry = std::iter::once(&e.name).chain(e.aliases.iter());
            for (display, toks) in names_of_entry
                .flat_map(|d| list_tokens(&e.kind, d).into_iter().map(move |t| (d, t)))
            {
                if toks.is_empty() || seen.contains(&toks) {
                    continue;
                }
                let tok_start = to_u32(name_tokens.len(), &list.name)?;
                for t in &toks {
                    let id = match vocab.get(t) {
                        Some(&id) => id,
                        None => {
                            let id = to_u32(vocab_list.len(), &list.name)?;
                            vocab.insert(t.clone(), id);
                            vocab_list.push(t.clone());
                            id
                        }
                    };
                    name_tokens.push(id);
                }
                names.push(NameRec {
                    entry,
                    display: display.clone(),
                    tok_start,
                    tok_len: to_u32(toks.len(), &list.name)?,
                });
                seen.push(toks);
            }
        }
        if names.is_empty() {
            return Err(ScreeningError::NothingToIndex {
                list: list.name.clone(),
            });
        }

        // Vocabulary as one char arena.
        let mut vocab_chars = Vec::new();
        let mut vocab_off = Vec::with_capacity(vocab_list.len() + 1);
        vocab_off.push(0);
        for t in &vocab_list {
            vocab_chars.extend(t.chars());
            vocab_off.push(to_u32(vocab_chars.len(), &list.name)?);
        }

        // Posting lists (CSR): token -> names containing it.
        let mut counts = vec![0u32; vocab_list.len() + 1];
        for &t in &name_tokens {
            counts[t as usize + 1] += 1;
        }
        for i in 1..counts.len() {
            counts[i] += counts[i - 1];
        }
        let post_off = counts.clone();
        let mut fill = counts;
        let mut post_names = vec![0u32; name_tokens.len()];
        for (ni, n) in names.iter().enumerate() {
            let start = n.tok_start as usize;
            for &t in &name_tokens[start..start + n.tok_len as usize] {
                let slot = &mut fill[t as usize];
                post_names[*slot as usize] = to_u32(ni, &list.name)?;
                *slot += 1;
            }
        }

        // Deletion-neighbourhood keys.
        let mut keys: Vec<(u64, u32)> = Vec::new();
        let mut buf = Vec::new();
        for v in 0..vocab_list.len() {
            let chars = &vocab_chars[vocab_off[v] as usize..vocab_off[v + 1] as usize];
            deletion_keys(chars, &mut buf);
            let v = to_u32(v, &list.name)?;
            keys.extend(buf.iter().map(|&k| (k, v)));
        }
        keys.sort_unstable();
        keys.dedup();
        let names_len = names.len();
        let mut key_map = KeyMap::default();
        let mut key_vocab = Vec::with_capacity(keys.len());
        let mut i = 0;
        while i < keys.len() {
            let h = keys[i].0;
            let start = to_u32(key_vocab.len(), &list.name)?;
            while i < keys.len() && keys[i].0 == h {
                key_vocab.push(keys[i].1);
                i += 1;
            }
            let len = to_u32(key_vocab.len(), &list.name)? - start;
            key_map.insert(h, (start, len));
        }
        key_map.shrink_to_fit();
        drop(keys);

        Ok(Self {
            list_name: list.name.clone(),
            list_version: list.version.clone(),
            list_sha256: list.sha256.clone(),
            entries,
            names,
            name_tokens,
            vocab_chars,
            vocab_off,
            post_off,
            post_names,
            key_map,
            key_vocab,
            common_cap: MIN_COMMON_CAP.max(names_len / COMMON_DIVISOR),
        })
    }

    /// Name of the indexed list.
    pub fn list_name(&self) -> &str {
        &self.list_name
    }

    /// Version of the indexed list.
    pub fn list_version(&self) -> &str {
        &self.list_version
    }

    /// SHA-256 (hex) of the indexed list's input bytes.
    pub fn list_sha256(&self) -> &str {
        &self.list_sha256
    }

    /// Number of indexed entries.
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    fn vocab(&self, v: u32) -> &[char] {
        let v = v as usize;
        &self.vocab_chars[self.vocab_off[v] as usize..self.vocab_off[v + 1] as usize]
    }

    fn name_toks(&self, n: &NameRec) -> &[u32] {
        let s = n.tok_start as usize;
        &self.name_tokens[s..s + n.tok_len as usize]
    }

    /// Token lists to score for a query, for each fold variant (see
    /// [`token_variants`]): without noise tokens, plus the full token list
    /// when it differs and one of its noise tokens occurs (exactly or
    /// approximately) in an indexed name. Empty when the name has no tokens.
    fn query_variants(&self, query: &str) -> Vec<Vec<Vec<char>>> {
        let to_chars =
            |v: &[String]| -> Vec<Vec<char>> { v.iter().map(|t| t.chars().collect()).collect() };
        let mut out: Vec<Vec<Vec<char>>> = Vec::with_capacity(2);
        for full in token_variants(query) {
            let stripped = strip_noise(full.clone());
            let mut variants = Vec::with_capacity(2);
            if !stripped.is_empty() {
                variants.push(to_chars(&stripped));
            }
            if stripped.len() != full.len() {
                let mut keys = Vec::new();
                let noise_linked = full.iter().filter(|t| is_noise(t)).any(|t| {
                    let chars: Vec<char> = t.chars().collect();
                    deletion_keys(&chars, &mut keys);
                    keys.iter().any(|k| self.key_map.contains_key(k))
                });
                if noise_linked || variants.is_empty() {
                    variants.push(to_chars(&full));
                }
            }
            for v in variants {
                if !out.contains(&v) {
                    out.push(v);
                }
            }
        }
        out
    }

    /// Candidate name indices for a tokenised query (sorted, unique).
    fn candidates(&self, query: &[Vec<char>], out: &mut Vec<u32>) {
        out.clear();
        let mut qkeys = Vec::new();
        let mut linked: Vec<u32> = Vec::new();
        // (name << 32) | (query token << 1) | distinctive
        let mut links: Vec<u64> = Vec::new();
        for (qi, q) in query.iter().enumerate() {
            deletion_keys(q, &mut qkeys);
            linked.clear();
            for k in &qkeys {
                if let Some(&(start, len)) = self.key_map.get(k) {
                    let start = start as usize;
                    linked.extend_from_slice(&self.key_vocab[start..start + len as usize]);
                }
            }
            linked.sort_unstable();
            linked.dedup();
            let tag = ((qi as u64) & 0x7fff_ffff) << 1;
            for &v in &linked {
                let lt = self.vocab(v);
                if !pair_counts(token_sim(q, lt), q, lt) {
                    continue;
                }
                let (a, b) = (
                    self.post_off[v as usize] as usize,
                    self.post_off[v as usize + 1] as usize,
                );
                let distinctive = u64::from(b - a <= self.common_cap);
                links.extend(
                    self.post_names[a..b]
                        .iter()
                        .map(|&n| (u64::from(n) << 32) | tag | distinctive),
                );
            }
        }
        links.sort_unstable();
        let mut i = 0;
        while i < links.len() {
            let name = (links[i] >> 32) as u32;
            let mut distinctive = false;
            let mut distinct_q = 0usize;
            let mut last_q = u64::MAX;
            while i < links.len() && (links[i] >> 32) as u32 == name {
                let q = (links[i] >> 1) & 0x7fff_ffff;
                if q != last_q {
                    distinct_q += 1;
                    last_q = q;
                }
                distinctive |= links[i] & 1 == 1;
                i += 1;
            }
            let need = 2
                .min(query.len())
                .min(self.names[name as usize].tok_len as usize);
            if distinctive || distinct_q >= need {
                out.push(name);
            }
        }
    }

    /// Screens one customer's names (legal name, aliases, owners, key
    /// personnel) and returns every hit with `score >= threshold`: the best
    /// score per (list entry, customer name), sorted by score descending
    /// (ties: entry id, then query). Identical query strings are screened
    /// once. Names that normalise to no tokens produce no hits.
    ///
    /// A query containing legal-form tokens is scored both without them (as
    /// [`normalize_name`](super::normalize_name) gives it) and with them,
    /// keeping the better score, because list names of individuals keep
    /// such tokens (`SA` and `Co` are also surnames).
    pub fn screen(&self, names: &[&str], threshold: f64) -> Vec<Hit> {
        let mut hits = Vec::new();
        let mut cand = Vec::new();
        let mut ltoks: Vec<&[char]> = Vec::new();
        let mut best: HashMap<u32, (f64, u32)> = HashMap::new();
        for (qi, &query) in names.iter().enumerate() {
            if names[..qi].contains(&query) {
                continue;
            }
            best.clear();
            for qtokens in self.query_variants(query) {
                let qs: Vec<&[char]> = qtokens.iter().map(Vec::as_slice).collect();
                self.candidates(&qtokens, &mut cand);
                for &ni in &cand {
                    let rec = &self.names[ni as usize];
                    // Upper bound from the token counts alone.
                    let (n, m) = (
                        qs.len().min(rec.tok_len as usize),
                        qs.len().max(rec.tok_len as usize),
                    );
                    let mut bound = 1.0 - EXTRA_TOKEN_PENALTY * (m - n) as f64 / m as f64;
                    if qs.len() == 1 && rec.tok_len > 1 {
                        bound *= SINGLE_TOKEN_QUERY_FACTOR;
                    }
                    if bound < threshold {
                        continue;
                    }
                    ltoks.clear();
                    ltoks.extend(self.name_toks(rec).iter().map(|&v| self.vocab(v)));
                    let score = score_tokens(&qs, &ltoks);
                    if score >= threshold {
                        let slot = best.entry(rec.entry).or_insert((score, ni));
                        if score > slot.0 {
                            *slot = (score, ni);
                        }
                    }
                }
            }
            for (&entry, &(score, ni)) in &best {
                let e = &self.entries[entry as usize];
                hits.push(Hit {
                    entry_id: e.id.clone(),
                    entry_name: e.name.clone(),
                    list_name: self.names[ni as usize].display.clone(),
                    query: query.to_string(),
                    score,
                });
            }
        }
        hits.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.entry_id.cmp(&b.entry_id))
                .then_with(|| a.query.cmp(&b.query))
        });
        hits
    }

    /// Number of distinct list names the index would score for `query` (for
    /// tests and diagnostics).
    pub fn candidate_count(&self, query: &str) -> usize {
        let mut all = Vec::new();
        let mut out = Vec::new();
        for q in self.query_variants(query) {
            self.candidates(&q, &mut out);
            all.extend_from_slice(&out);
        }
        all.sort_unstable();
        all.dedup();
        all.len()
    }

    /// Total number of indexed names (entry names plus distinct aliases).
    pub fn name_count(&self) -> usize {
        self.names.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_of(token: &str) -> usize {
        let chars: Vec<char> = token.chars().collect();
        let mut keys = Vec::new();
        deletion_keys(&chars, &mut keys);
        keys.len()
    }

    #[test]
    fn key_neighbourhood_of_a_long_token_is_bounded() {
        // Names: the token itself, each single and each pair of deletions.
        assert_eq!(keys_of("abcdefghij"), 1 + 10 + 45);
        assert_eq!(keys_of(&"abcdefghij".repeat(4)), 1 + 40 + 40 * 39 / 2);
        // Longer is not a name (a 2,000-character token once took half a
        // minute to index): the token alone.
        assert_eq!(keys_of(&"ab".repeat(1000)), 1);
        assert_eq!(keys_of(&"x".repeat(41)), 1);
    }
}
