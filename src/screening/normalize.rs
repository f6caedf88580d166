//! Name normalisation.
//!
//! List names and customer names go through the same functions, so a
//! difference folded away here can never separate the two. Folded are the
//! differences a reader cannot see or that only the script makes:
//! compatibility forms (NFKD: fullwidth letters, ligatures), accents,
//! letter case, invisible characters (format characters, Unicode category
//! Cf, and the other default-ignorable code points), and the script itself:
//! every non-ASCII letter becomes Latin, by sound (transliteration, so
//! `Дравон` and `Dravon` meet) and, in a second variant, by sight (the
//! Unicode TS #39 confusable skeleton, so a Cyrillic `р` inside a Latin
//! name reads as `p`, not `r`). The Unicode data comes from maintained
//! crates (`unicode-normalization`, `unicode-security`,
//! `unicode-properties`, `deunicode`), never from a table kept here.

use deunicode::deunicode_char;
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
use unicode_security::skeleton;

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

/// How a non-ASCII letter or digit becomes Latin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fold {
    /// Transliterated (`д`→`d`, `β`→`b`, `ß`→`ss`, `ø`→`o`): another
    /// script's spelling of a name.
    Sound,
    /// Replaced by the ASCII letters its TS #39 confusable prototype
    /// consists of (`р`→`p`, `с`→`c`, `ѕ`→`s`), transliterated when that
    /// prototype is not ASCII: look-alike letters passed off as Latin ones.
    Sight,
}

/// Characters that render as nothing: format characters (category Cf:
/// zero-width space and joiners, soft hyphen, word joiner, bidirectional
/// controls, byte-order mark) and the other default-ignorable code points
/// (Hangul fillers, variation selectors), which the TS #39 skeleton drops.
pub(crate) fn is_invisible(c: char) -> bool {
    !c.is_ascii()
        && (c.general_category() == GeneralCategory::Format
            || skeleton(c.encode_utf8(&mut [0u8; 4])).next().is_none())
}

/// Appends the Latin form of a non-ASCII letter or digit `c` (lower case).
fn push_latin(c: char, fold: Fold, out: &mut String) {
    if fold == Fold::Sight && push_look_alike(c, out) {
        return;
    }
    match deunicode_char(c) {
        Some(latin) => out.extend(
            latin
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .map(|l| l.to_ascii_lowercase()),
        ),
        // No transliteration known: the character stands for itself.
        None => out.push(c),
    }
}

/// Appends the ASCII letters and digits `c` is confusable with, if its
/// skeleton (accents aside) consists of nothing else.
fn push_look_alike(c: char, out: &mut String) -> bool {
    let start = out.len();
    for p in skeleton(c.encode_utf8(&mut [0u8; 4]))
        .filter(|p| !is_combining_mark(*p))
        .flat_map(char::to_lowercase)
    {
        if !p.is_ascii_alphanumeric() {
            out.truncate(start);
            return false;
        }
        out.push(p);
    }
    out.len() > start
}

fn is_apostrophe(c: char) -> bool {
    matches!(
        c,
        '\'' | '`' | '\u{2018}' | '\u{2019}' | '\u{02bc}' | '\u{00b4}'
    )
}

/// Normalises a name into match tokens (the [`Fold::Sound`] variant).
///
/// NFKD, combining marks stripped (`"José Müller"` → `jose muller`),
/// invisible characters dropped without a trace (`"Dra\u{200B}von"` →
/// `dravon`: see [`is_invisible`]), lowercase, non-ASCII letters and digits
/// transliterated (`ß`→`ss`, `ø`→`o`, `ł`→`l`, `"Дравон"` → `dravon`),
/// apostrophes removed (`O'Neil` → `oneil`), every other non-alphanumeric
/// character becomes a space, then split on whitespace.
/// Runs of single letters that spell a legal form (`S.A.`, `G.m.b.H.`) are
/// joined. Legal-form/filler tokens (`ltd`, `llc`, `inc`, `gmbh`, `co`, `sa`,
/// `the`, `of`, `and`, `holdings`, `group`, ...) are dropped unless nothing
/// else would remain. Duplicate tokens are removed (first occurrence kept).
pub fn normalize_name(name: &str) -> Vec<String> {
    strip_noise(tokenize(name, Fold::Sound))
}

/// The token lists (noise tokens kept) a name is compared under: folded by
/// sound, and by sight when that differs, which only a name with non-ASCII
/// letters can.
pub(crate) fn token_variants(name: &str) -> Vec<Vec<String>> {
    let sound = tokenize(name, Fold::Sound);
    if name.is_ascii() {
        return vec![sound];
    }
    let sight = tokenize(name, Fold::Sight);
    if sight == sound {
        vec![sound]
    } else {
        vec![sound, sight]
    }
}

/// Drops noise tokens unless nothing else would remain.
pub(crate) fn strip_noise(tokens: Vec<String>) -> Vec<String> {
    if tokens.iter().all(|t| is_noise(t)) {
        return tokens;
    }
    tokens.into_iter().filter(|t| !is_noise(t)).collect()
}

/// [`normalize_name`] under `fold`, without dropping noise tokens.
///
/// ASCII letters are kept as they are in both folds: TS #39 would turn `m`
/// into `rn` and `0` into `o`, which only distorts Latin names; a one-letter
/// ASCII look-alike is within the scorer's reach anyway.
pub(crate) fn tokenize(name: &str, fold: Fold) -> Vec<String> {
    let mut cleaned = String::with_capacity(name.len());
    for c in name.nfkd() {
        if is_combining_mark(c) || is_invisible(c) {
            continue;
        }
        for l in c.to_lowercase() {
            if is_combining_mark(l) || is_apostrophe(l) {
                continue;
            }
            if l.is_ascii_alphanumeric() {
                cleaned.push(l);
            } else if l.is_alphanumeric() {
                push_latin(l, fold, &mut cleaned);
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
        assert_eq!(tokenize("SA, Jorrei", Fold::Sound), ["sa", "jorrei"]);
        assert_eq!(normalize_name("SA, Jorrei"), ["jorrei"]);
    }
}
