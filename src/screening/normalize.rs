//! Name normalisation.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// Legal-form and filler tokens dropped when other tokens remain.
const NOISE_TOKENS: &[&str] = &[
    "ab",
    "ag",
    "and",
    "bhd",
    "bv",
    "cjsc",
    "co",
    "company",
    "corp",
    "corporation",
    "fzco",
    "fze",
    "gmbh",
    "group",
    "holding",
    "holdings",
    "inc",
    "incorporated",
    "jsc",
    "kft",
    "kg",
    "limited",
    "llc",
    "llp",
    "lp",
    "ltd",
    "nv",
    "oao",
    "of",
    "ojsc",
    "ooo",
    "oy",
    "pjsc",
    "plc",
    "pte",
    "pty",
    "sa",
    "sarl",
    "sas",
    "spa",
    "srl",
    "the",
    "zao",
];

pub(crate) fn is_noise(token: &str) -> bool {
    NOISE_TOKENS.binary_search(&token).is_ok()
}

/// Letters that NFKD does not decompose but that are commonly written
/// without the stroke/ligature.
fn fold(c: char, out: &mut String) {
    match c {
        'ß' => out.push_str("ss"),
        'æ' => out.push_str("ae"),
        'œ' => out.push_str("oe"),
        'ø' => out.push('o'),
        'ł' => out.push('l'),
        'đ' | 'ð' => out.push('d'),
        'þ' => out.push_str("th"),
        'ı' => out.push('i'),
        'ħ' => out.push('h'),
        _ => out.push(c),
    }
}

fn is_apostrophe(c: char) -> bool {
    matches!(
        c,
        '\'' | '`' | '\u{2018}' | '\u{2019}' | '\u{02bc}' | '\u{00b4}'
    )
}

/// Normalises a name into match tokens.
///
/// NFKD, combining marks stripped (`"José Müller"` → `jose muller`), a few
/// non-decomposing letters folded (`ß`→`ss`, `ø`→`o`, `ł`→`l`, ...),
/// lowercase, apostrophes removed (`O'Neil` → `oneil`), every other
/// non-alphanumeric character becomes a space, then split on whitespace.
/// Runs of single letters that spell a legal form (`S.A.`, `G.m.b.H.`) are
/// joined. Legal-form/filler tokens (`ltd`, `llc`, `inc`, `gmbh`, `co`, `sa`,
/// `the`, `of`, `and`, `holdings`, `group`, ...) are dropped unless nothing
/// else would remain. Duplicate tokens are removed (first occurrence kept).
pub fn normalize_name(name: &str) -> Vec<String> {
    strip_noise(tokenize(name))
}

/// Drops noise tokens unless nothing else would remain.
pub(crate) fn strip_noise(tokens: Vec<String>) -> Vec<String> {
    if tokens.iter().all(|t| is_noise(t)) {
        return tokens;
    }
    tokens.into_iter().filter(|t| !is_noise(t)).collect()
}

/// [`normalize_name`] without dropping noise tokens.
pub(crate) fn tokenize(name: &str) -> Vec<String> {
    let mut cleaned = String::with_capacity(name.len());
    for c in name.nfkd() {
        if is_combining_mark(c) {
            continue;
        }
        for l in c.to_lowercase() {
            if is_combining_mark(l) || is_apostrophe(l) {
                continue;
            }
            if l.is_alphanumeric() {
                fold(l, &mut cleaned);
            } else {
                cleaned.push(' ');
            }
        }
    }
    let raw: Vec<&str> = cleaned.split_whitespace().collect();

    // Join runs of single characters when they spell a legal form.
    let mut tokens: Vec<String> = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let mut j = i;
        while j < raw.len() && raw[j].chars().count() == 1 {
            j += 1;
        }
        if j - i >= 2 {
            let joined: String = raw[i..j].concat();
            if is_noise(&joined) {
                tokens.push(joined);
            } else {
                tokens.extend(raw[i..j].iter().map(|s| (*s).to_string()));
            }
            i = j;
        } else {
            tokens.push(raw[i].to_string());
            i += 1;
        }
    }

    let mut out: Vec<String> = Vec::with_capacity(tokens.len());
    for t in tokens {
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn noise_table_sorted() {
        let mut v = NOISE_TOKENS.to_vec();
        v.sort_unstable();
        v.dedup();
        assert_eq!(v, NOISE_TOKENS);
    }

    #[test]
    fn basics() {
        assert_eq!(
            normalize_name("José  MÜLLER-Straße"),
            ["jose", "muller", "strasse"]
        );
        assert_eq!(normalize_name("O'Neil, Ørjan"), ["oneil", "orjan"]);
        assert_eq!(
            normalize_name("Acme Trading Co., Ltd."),
            ["acme", "trading"]
        );
        assert_eq!(normalize_name("Velkor S.A."), ["velkor"]);
        assert_eq!(normalize_name("Velkor G.m.b.H."), ["velkor"]);
        assert_eq!(normalize_name("J. R. Velkor"), ["j", "r", "velkor"]);
        assert_eq!(normalize_name("The Company Ltd"), ["the", "company", "ltd"]);
        assert_eq!(normalize_name("Ann ann ANN"), ["ann"]);
        assert!(normalize_name(" ,.;- ").is_empty());
        assert_eq!(normalize_name("İzmir"), ["izmir"]);
        assert_eq!(tokenize("SA, Jorrei"), ["sa", "jorrei"]);
        assert_eq!(normalize_name("SA, Jorrei"), ["jorrei"]);
    }
}
