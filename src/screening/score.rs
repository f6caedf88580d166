//! Token-based, order-insensitive Jaro-Winkler name scoring.

/// Winkler prefix scale.
const PREFIX_SCALE: f64 = 0.1;
/// Longest common prefix rewarded by Winkler.
const MAX_PREFIX: usize = 4;
/// Winkler boost only applies above this Jaro similarity.
const BOOST_THRESHOLD: f64 = 0.7;
/// Penalty for unmatched extra tokens (α in the formula).
pub(crate) const EXTRA_TOKEN_PENALTY: f64 = 0.15;
/// Token pairs less similar than this count as unmatched (contribute 0).
/// Every single edit of a token of 4+ characters stays above it
/// (worst case: first letter of a 4-letter token substituted, 0.833).
pub(crate) const TOKEN_MIN_JW: f64 = 0.80;
/// Token pairs whose lengths differ by more than this many characters and by
/// more than a quarter of the longer token count as unmatched (one edit
/// changes the length by at most 1).
pub(crate) const MAX_LEN_DIFF: usize = 2;
/// Pairs whose longer token has at most this many characters must be within
/// one edit: Jaro-Winkler cannot tell one edit from two on short tokens
/// (`bako`/`bank` = 0.87, `ivan`/`evan` = 0.83).
pub(crate) const SHORT_TOKEN_MAX: usize = 6;
/// Factor applied when a single-token query meets a multi-token list name.
pub(crate) const SINGLE_TOKEN_QUERY_FACTOR: f64 = 0.5;

/// Jaro-Winkler similarity of two strings (by Unicode scalar values).
///
/// Standard Jaro (match window `max(|a|,|b|)/2 - 1`, transpositions = half
/// the out-of-order matches rounded down, as in Winkler's `strcmp95`),
/// Winkler boost `p = 0.1` on a common prefix of up to 4 characters, applied
/// when Jaro exceeds 0.7. Returns a value in `[0, 1]`; 1 iff equal.
pub fn jaro_winkler(a: &str, b: &str) -> f64 {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    jw(&a, &b)
}

/// Jaro-Winkler on char slices (no allocation for tokens up to 64 chars).
pub(crate) fn jw(a: &[char], b: &[char]) -> f64 {
    if a.is_empty() || b.is_empty() {
        return if a.is_empty() && b.is_empty() {
            1.0
        } else {
            0.0
        };
    }
    if a == b {
        return 1.0;
    }
    let (s, l) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let window = (l.len() / 2).saturating_sub(1);
    let (m, half_t) = if l.len() <= 64 {
        jaro_counts_small(s, l, window)
    } else {
        jaro_counts_large(s, l, window)
    };
    if m == 0 {
        return 0.0;
    }
    let mf = m as f64;
    // Transpositions are half the out-of-order matches, rounded down, as in
    // Winkler's reference `strcmp95` (and `strsim`, `jellyfish`).
    let t = (half_t / 2) as f64;
    let jaro = (mf / s.len() as f64 + mf / l.len() as f64 + (mf - t) / mf) / 3.0;
    if jaro <= BOOST_THRESHOLD {
        return jaro;
    }
    let prefix = s
        .iter()
        .zip(l.iter())
        .take(MAX_PREFIX)
        .take_while(|(x, y)| x == y)
        .count();
    jaro + prefix as f64 * PREFIX_SCALE * (1.0 - jaro)
}

/// Matches and half-transpositions with bit-mask flags (`l.len() <= 64`).
fn jaro_counts_small(s: &[char], l: &[char], window: usize) -> (usize, usize) {
    let mut s_mask: u64 = 0;
    let mut l_mask: u64 = 0;
    let mut m = 0usize;
    for (i, &c) in s.iter().enumerate() {
        let lo = i.saturating_sub(window);
        let hi = (i + window + 1).min(l.len());
        for (j, &lc) in l.iter().enumerate().take(hi).skip(lo) {
            if l_mask & (1u64 << j) == 0 && lc == c {
                l_mask |= 1u64 << j;
                s_mask |= 1u64 << i;
                m += 1;
                break;
            }
        }
    }
    let mut half_t = 0usize;
    let mut rest = l_mask;
    for (i, &c) in s.iter().enumerate() {
        if s_mask & (1u64 << i) != 0 {
            let j = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            if l[j] != c {
                half_t += 1;
            }
        }
    }
    (m, half_t)
}

/// Same as [`jaro_counts_small`] for long strings.
fn jaro_counts_large(s: &[char], l: &[char], window: usize) -> (usize, usize) {
    let mut s_flags = vec![false; s.len()];
    let mut l_flags = vec![false; l.len()];
    let mut m = 0usize;
    for (i, &c) in s.iter().enumerate() {
        let lo = i.saturating_sub(window);
        let hi = (i + window + 1).min(l.len());
        for j in lo..hi {
            if !l_flags[j] && l[j] == c {
                l_flags[j] = true;
                s_flags[i] = true;
                m += 1;
                break;
            }
        }
    }
    let mut half_t = 0usize;
    let mut k = 0usize;
    for (i, &c) in s.iter().enumerate() {
        if s_flags[i] {
            while !l_flags[k] {
                k += 1;
            }
            if l[k] != c {
                half_t += 1;
            }
            k += 1;
        }
    }
    (m, half_t)
}

/// Scores a query name against a list name, both given as normalised tokens
/// (see [`normalize_name`](super::normalize_name)).
///
/// Let `Q` be the query tokens, `L` the list-name tokens, `S` the one with
/// fewer tokens (`n = |S|`), `T` the other (`m = |T|`), `jw` Jaro-Winkler.
///
/// 1. Token similarity `sim(s, t)`: Jaro-Winkler ([`jaro_winkler`]),
///    floored by `1 − osa/max_len` (optimal-string-alignment edit distance)
///    when that reaches 0.80, because Jaro's greedy matching misreads some
///    single edits near repeated letters (`gdkchanman`/`gakchanman`: JW 0.84,
///    floor 0.90). A pair *counts as unmatched* (`sim := 0`) when it is too
///    different to be a spelling variant:
///    - `sim < 0.80` (any single edit of a 4+ character token stays above
///      0.80: worst case first letter of a 4-letter token, 0.833); or
///    - the lengths differ by more than 2 characters *and* by more than a
///      quarter of the longer token (Jaro-Winkler is lenient with prefixes:
///      `gil`/`gialiam` = 0.85); or
///    - the longer token has at most 6 characters and the two are more than
///      one edit (insertion, deletion, substitution, adjacent transposition)
///      apart (`bako`/`bank` = 0.87 would otherwise count).
/// 2. Assignment: every token of `S` gets a distinct partner in `T`, chosen
///    greedily by descending `sim` over all `n·m` pairs (order-insensitive);
///    `base = Σ wₖ·simₖ / Σ wₖ` over the `n` assigned pairs, with weights
///    `wₖ = (len(sₖ) + len(tₖ)) / 2` in characters.
/// 3. If `n = 1` the comparison rests on one token pair, so
///    `base = base²` (single tokens must be strongly similar:
///    `jw 0.95 → 0.90`, `jw 0.93 → 0.86`).
/// 4. `score = base · (1 − α·(m − n)/m)` with `α = 0.15`: each unmatched
///    extra token costs a little (`"Ivan Petrov"` vs
///    `"Ivan Sergeyevich Petrov"` = 0.95; `"Ivan Petrov"` vs
///    `"Ivan Sergeyevich Petrov Jr"` = 0.925).
/// 5. If the query has one token and the list name more than one, the score
///    is multiplied by 0.5, so a lone given name or surname never reaches a
///    useful threshold. (A one-token list name inside a longer customer name
///    is still found: `"Zorvanex"` vs `"Zorvanex Shipping"` = 0.925.)
///
/// Returns 0 when either side has no tokens.
pub fn score_names(query: &[String], list: &[String]) -> f64 {
    let q: Vec<Vec<char>> = query.iter().map(|t| t.chars().collect()).collect();
    let l: Vec<Vec<char>> = list.iter().map(|t| t.chars().collect()).collect();
    let qs: Vec<&[char]> = q.iter().map(Vec::as_slice).collect();
    let ls: Vec<&[char]> = l.iter().map(Vec::as_slice).collect();
    score_tokens(&qs, &ls)
}

/// Token similarity: Jaro-Winkler, floored by the normalised edit similarity
/// `1 − osa(a, b) / max(|a|, |b|)` whenever that floor reaches 0.80.
///
/// Jaro's greedy matching misreads a single edit near a repeated letter
/// (`gdkchanman`/`gakchanman` = 0.84, `siaya`/`asiaya` = 0.81); the floor
/// gives such one-edit pairs at least `1 − 1/len` (0.90 for 10 letters).
pub(crate) fn token_sim(a: &[char], b: &[char]) -> f64 {
    let j = jw(a, b);
    let long = a.len().max(b.len());
    // Only edit distances d <= (1 - TOKEN_MIN_JW)·long can lift the floor to
    // TOKEN_MIN_JW; below that the pair does not count either way.
    let max_d = ((1.0 - TOKEN_MIN_JW) * long as f64 + 1e-9).floor() as usize;
    if max_d == 0 || j >= 1.0 - 1.0 / long as f64 {
        return j;
    }
    match osa_within(a, b, max_d) {
        Some(d) => j.max(1.0 - d as f64 / long as f64),
        None => j,
    }
}

/// Optimal-string-alignment distance (Levenshtein plus adjacent
/// transposition) if it is at most `max_d`, else `None`.
fn osa_within(a: &[char], b: &[char], max_d: usize) -> Option<usize> {
    if a.len().abs_diff(b.len()) > max_d {
        return None;
    }
    let w = b.len() + 1;
    if w <= 65 {
        let mut rows = [[0usize; 65]; 3];
        osa_rows(a, b, max_d, &mut rows)
    } else {
        let mut rows = [vec![0usize; w], vec![0usize; w], vec![0usize; w]];
        osa_rows(a, b, max_d, &mut rows)
    }
}

/// Row-by-row OSA DP over three caller-provided rows of length `> b.len()`.
fn osa_rows<R: AsMut<[usize]>>(
    a: &[char],
    b: &[char],
    max_d: usize,
    rows: &mut [R; 3],
) -> Option<usize> {
    let w = b.len() + 1;
    let [r0, r1, r2] = rows;
    let (mut prev2, mut prev, mut cur) = (
        &mut r0.as_mut()[..w],
        &mut r1.as_mut()[..w],
        &mut r2.as_mut()[..w],
    );
    for (j, v) in prev.iter_mut().enumerate() {
        *v = j;
    }
    for i in 1..=a.len() {
        cur[0] = i;
        let mut row_min = cur[0];
        for j in 1..w {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(prev2[j - 2] + 1);
            }
            cur[j] = v;
            row_min = row_min.min(v);
        }
        if row_min > max_d {
            return None;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    let d = prev[b.len()];
    (d <= max_d).then_some(d)
}

/// Whether a token pair with similarity `sim` counts as matched (step 1 of
/// [`score_names`]).
pub(crate) fn pair_counts(sim: f64, a: &[char], b: &[char]) -> bool {
    if sim < TOKEN_MIN_JW {
        return false;
    }
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let diff = long.len() - short.len();
    if diff > MAX_LEN_DIFF && diff * 4 > long.len() {
        return false;
    }
    long.len() > SHORT_TOKEN_MAX || within_one_edit(short, long)
}

/// Optimal-string-alignment distance <= 1 (`s.len() <= l.len()`).
fn within_one_edit(s: &[char], l: &[char]) -> bool {
    let Some(i) = s.iter().zip(l.iter()).position(|(x, y)| x != y) else {
        return l.len() - s.len() <= 1;
    };
    match l.len() - s.len() {
        0 => {
            s[i + 1..] == l[i + 1..]
                || (i + 1 < s.len()
                    && s[i] == l[i + 1]
                    && s[i + 1] == l[i]
                    && s[i + 2..] == l[i + 2..])
        }
        1 => s[i..] == l[i + 1..],
        _ => false,
    }
}

/// [`score_names`] on char-slice tokens.
pub(crate) fn score_tokens(query: &[&[char]], list: &[&[char]]) -> f64 {
    if query.is_empty() || list.is_empty() {
        return 0.0;
    }
    let (s, t) = if query.len() <= list.len() {
        (query, list)
    } else {
        (list, query)
    };
    let (n, m) = (s.len(), t.len());

    // Pair similarities, row-major over (s, t).
    let mut stack = [0.0f64; 64];
    let mut heap;
    let sims: &mut [f64] = if n * m <= 64 {
        &mut stack[..n * m]
    } else {
        heap = vec![0.0f64; n * m];
        &mut heap[..]
    };
    for (i, si) in s.iter().enumerate() {
        for (j, tj) in t.iter().enumerate() {
            let sim = token_sim(si, tj);
            sims[i * m + j] = if pair_counts(sim, si, tj) { sim } else { 0.0 };
        }
    }

    // Greedy assignment by descending similarity; n <= m so every row is used.
    let mut row_used: u64 = 0;
    let mut col_used_small: u64 = 0;
    let mut col_used_big = if m > 64 { vec![false; m] } else { Vec::new() };
    let mut row_used_big = if n > 64 { vec![false; n] } else { Vec::new() };
    let mut num = 0.0;
    let mut den = 0.0;
    for _ in 0..n {
        let mut best = (-1.0f64, 0usize, 0usize);
        for i in 0..n {
            let used = if n > 64 {
                row_used_big[i]
            } else {
                row_used & (1 << i) != 0
            };
            if used {
                continue;
            }
            for j in 0..m {
                let used = if m > 64 {
                    col_used_big[j]
                } else {
                    col_used_small & (1 << j) != 0
                };
                if !used && sims[i * m + j] > best.0 {
                    best = (sims[i * m + j], i, j);
                }
            }
        }
        let (sim, i, j) = best;
        if n > 64 {
            row_used_big[i] = true;
        } else {
            row_used |= 1 << i;
        }
        if m > 64 {
            col_used_big[j] = true;
        } else {
            col_used_small |= 1 << j;
        }
        let w = (s[i].len() + t[j].len()) as f64 / 2.0;
        num += w * sim;
        den += w;
    }
    let mut base = if den > 0.0 { num / den } else { 0.0 };
    if n == 1 {
        base *= base;
    }
    let mut score = base * (1.0 - EXTRA_TOKEN_PENALTY * (m - n) as f64 / m as f64);
    if query.len() == 1 && list.len() > 1 {
        score *= SINGLE_TOKEN_QUERY_FACTOR;
    }
    score.clamp(0.0, 1.0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::normalize_name;
    use super::*;

    fn s(q: &str, l: &str) -> f64 {
        score_names(&normalize_name(q), &normalize_name(l))
    }

    #[test]
    fn jw_reference_values() {
        // Classic values from Winkler's paper / common implementations.
        assert!((jaro_winkler("martha", "marhta") - 0.9611).abs() < 1e-3);
        assert!((jaro_winkler("dwayne", "duane") - 0.84).abs() < 1e-3);
        assert!((jaro_winkler("dixon", "dicksonx") - 0.8133).abs() < 1e-3);
        assert_eq!(jaro_winkler("abc", "abc"), 1.0);
        assert_eq!(jaro_winkler("abc", "xyz"), 0.0);
        assert_eq!(jaro_winkler("", "x"), 0.0);
        // Long strings take the heap path and agree with themselves.
        let a = "a".repeat(70) + "b";
        let b = "a".repeat(70) + "c";
        let v = jaro_winkler(&a, &b);
        assert!(v > 0.98 && v < 1.0, "{v}");
        assert_eq!(jaro_winkler(&a, &b), jaro_winkler(&b, &a));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]
        /// Agrees with the independent `strsim` implementation on random
        /// Unicode strings: a small mixed-script alphabet (so letters repeat
        /// and transpose), lengths across the 64-character bit-mask limit,
        /// and arbitrary scalar values.
        #[test]
        fn jaro_winkler_agrees_with_strsim(
            a in "[aábcßдεо\u{0430}\u{200b}]{0,80}",
            b in "[aábcßдεо\u{0430}\u{200b}]{0,80}",
            x in proptest::prelude::any::<String>(),
            y in proptest::prelude::any::<String>(),
        ) {
            for (p, q) in [(&a, &b), (&b, &a), (&a, &x), (&x, &y)] {
                let ours = jaro_winkler(p, q);
                let theirs = strsim::jaro_winkler(p, q);
                proptest::prop_assert!((ours - theirs).abs() < 1e-12, "{p:?} {q:?}: {ours} vs {theirs}");
            }
        }
    }

    #[test]
    fn formula_examples_from_spec() {
        let v = s("Ivan Sergeyevich Petrov", "Ivan Petrov");
        assert!((v - 0.95).abs() < 1e-9, "{v}");
        let v = s("Ivan Sergeyevich Petrov Jr", "Ivan Petrov");
        assert!((v - 0.925).abs() < 1e-9, "{v}");
        assert!(s("Jane Smythe Holdings", "John Smith") < 0.6);
        assert!(s("Jane Smythe Trading", "John Smith") < 0.6);
        // A token without a similar partner counts as unmatched.
        assert!(s("Japu Construction Finance", "Kazo Finance Construction") < 0.85);
        // A long token pair below 0.80 is unmatched.
        let v = jaro_winkler("kelmarovic", "kalmurevoch");
        assert!(v > 0.72 && v < 0.8, "{v}");
        assert!(s("Ilmar Kalmurevoch", "KELMAROVIC, Ilmar") < 0.5);
        // Prefix leniency of Jaro-Winkler is cut by the length rule.
        assert!(jaro_winkler("gil", "gialiam") > 0.8);
        assert!(s("Meibe Gil", "GIALIAM, Meibe") < 0.6);
        assert!(s("Vostrakovich Tanel", "VOSTRAKOVIC, Tanel") > 0.95);
        // Short tokens must be within one edit.
        assert!(jaro_winkler("bako", "bank") > 0.85);
        assert!(s("Bako Ventures", "Bank Ventures") < 0.7);
        assert!(s("Vobo Ventures", "Vofo Ventures") > 0.9);
        assert!(s("Tavi Ventures", "Tvai Ventures") > 0.9);
        assert_eq!(s("Petrov Ivan", "Ivan Petrov"), 1.0);
    }

    #[test]
    fn token_sim_floor_fixes_greedy_jaro() {
        let c = |a: &str, b: &str| {
            let a: Vec<char> = a.chars().collect();
            let b: Vec<char> = b.chars().collect();
            token_sim(&a, &b)
        };
        // Greedy matching pairs the early 'a' with a later one.
        assert!(jaro_winkler("gdkchanman", "gakchanman") < 0.85);
        assert!((c("gdkchanman", "gakchanman") - 0.9).abs() < 1e-9);
        assert!(jaro_winkler("siaya", "asiaya") < 0.82);
        assert!((c("siaya", "asiaya") - (1.0 - 1.0 / 6.0)).abs() < 1e-9);
        // Unrelated tokens are not lifted.
        assert_eq!(c("petrov", "kozlov"), jaro_winkler("petrov", "kozlov"));
        let osa = |a: &str, b: &str, m: usize| {
            let a: Vec<char> = a.chars().collect();
            let b: Vec<char> = b.chars().collect();
            osa_within(&a, &b, m)
        };
        assert_eq!(osa("abcdef", "abcdef", 2), Some(0));
        assert_eq!(osa("abcdef", "abdcef", 2), Some(1));
        assert_eq!(osa("abcdef", "xbcdey", 2), Some(2));
        assert_eq!(osa("abcdef", "xbcdyz", 2), None);
        assert_eq!(osa("ab", "abcdef", 2), None);
    }

    #[test]
    fn one_edit_check() {
        let c = |a: &str, b: &str| {
            let a: Vec<char> = a.chars().collect();
            let b: Vec<char> = b.chars().collect();
            let (s, l) = if a.len() <= b.len() { (a, b) } else { (b, a) };
            within_one_edit(&s, &l)
        };
        assert!(c("ivan", "ivan"));
        assert!(c("ivan", "evan"));
        assert!(c("ivan", "van"));
        assert!(c("ivan", "ivanx"));
        assert!(c("ivan", "vian"));
        assert!(c("ivan", "ivna"));
        assert!(!c("ivan", "vina"));
        assert!(!c("bako", "bank"));
        assert!(!c("ivan", "iv"));
        assert!(!c("abcd", "badc"));
    }

    #[test]
    fn single_token_rules() {
        // A lone query token never reaches a useful threshold against a
        // multi-token name, even if it is exact.
        assert!(s("Petrov", "Ivan Petrov") <= 0.5);
        // One token vs one token: squared, so near-misses fall below 0.90.
        assert!(s("Zorvan", "Zorvon") < 0.90);
        assert!(s("Rosvantegaz", "Rosvantegas") >= 0.90);
        assert_eq!(s("Zorvan", "ZORVAN"), 1.0);
        // One-token list name inside a longer customer name is found.
        let v = s("Zorvanex Shipping", "ZORVANEX");
        assert!((v - 0.925).abs() < 1e-9, "{v}");
    }

    #[test]
    fn many_tokens_heap_paths() {
        let q: Vec<String> = (0..70).map(|i| format!("tok{i}")).collect();
        let l: Vec<String> = (0..80).map(|i| format!("tok{i}")).collect();
        let v = score_names(&q, &l);
        assert!((v - (1.0 - 0.15 * 10.0 / 80.0)).abs() < 1e-9, "{v}");
        assert_eq!(score_names(&[], &l), 0.0);
    }
}
