//! Deterministic synthetic names, lists and customers for tests and the
//! benchmark. Every name is invented from syllables; none is a real party.

use super::normalize::is_noise;

/// Small deterministic PRNG (SplitMix64).
#[derive(Debug, Clone)]
pub struct SynthRng(u64);

impl SynthRng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`; returns 0 for `n == 0`).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// A random element of a non-empty slice (`""` for an empty one).
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items.get(self.below(items.len())).copied().unwrap_or("")
    }
}

const ONSETS: &[&str] = &[
    "b", "br", "ch", "d", "dr", "f", "g", "gr", "h", "k", "kr", "l", "m", "n", "p", "pr", "r", "s",
    "sh", "st", "t", "tr", "v", "vr", "z", "zh", "y", "kh", "j", "sv",
];
const VOWELS: &[&str] = &[
    "a", "e", "i", "o", "u", "a", "e", "o", "ai", "ia", "ei", "ou",
];
const CODAS: &[&str] = &["n", "r", "l", "s", "k", "v", "m", "t", "sh", "d", "z"];
const SURNAME_SUFFIX: &[&str] = &[
    "ov", "ova", "enko", "escu", "ić", "son", "man", "er", "ez", "ani", "ski", "berg", "idze",
    "yan", "ović", "stein", "aki", "oğlu",
];
const BUSINESS: &[&str] = &[
    "Trading",
    "Shipping",
    "Logistics",
    "Industries",
    "Petroleum",
    "Energy",
    "Bank",
    "Finance",
    "Investments",
    "Capital",
    "Technologies",
    "Systems",
    "Marine",
    "Aviation",
    "Metals",
    "Mining",
    "Chemicals",
    "Agro",
    "Textiles",
    "Construction",
    "Engineering",
    "Pharma",
    "Electronics",
    "Consulting",
    "Partners",
    "Ventures",
    "Export",
    "Commerce",
    "Resources",
    "Enterprises",
    "Global",
    "International",
    "Services",
    "Development",
    "Solutions",
    "Motors",
];
const LEGAL: &[&str] = &[
    "LLC",
    "Ltd",
    "Ltd.",
    "GmbH",
    "S.A.",
    "JSC",
    "FZE",
    "Co., Ltd.",
    "Inc.",
    "PLC",
    "",
];
const VESSEL_PREFIX: &[&str] = &["SEA", "OCEAN", "STAR", "NORTH", "BLUE", "GOLDEN", "SILVER"];
const PROGRAMS: &[&str] = &["SYN-A", "SYN-B", "SYN-C", "SYN-D] [SYN-E", "SYN-F"];

fn syllable(rng: &mut SynthRng, coda_p: f64) -> String {
    let mut s = String::new();
    s.push_str(rng.pick(ONSETS));
    s.push_str(rng.pick(VOWELS));
    if rng.chance(coda_p) {
        s.push_str(rng.pick(CODAS));
    }
    s
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// A coined word of `syllables` syllables, capitalised.
pub fn coined_word(rng: &mut SynthRng, syllables: usize) -> String {
    let mut w = String::new();
    for _ in 0..syllables {
        w.push_str(&syllable(rng, 0.4));
    }
    capitalise(&w)
}

/// A given name from a pool of `pool` stable names (index chosen by `rng`).
pub fn given_name(rng: &mut SynthRng, pool: usize) -> String {
    let idx = rng.below(pool.max(1)) as u64;
    let mut g = SynthRng::new(idx.wrapping_mul(0x5851_f42d_4c95_7f2d) ^ 0x1234_5678);
    let n = if g.chance(0.2) { 3 } else { 2 };
    let mut w = coined_word(&mut g, n);
    if g.chance(0.3) {
        w.push_str(g.pick(&["a", "o", "in", "ek", "ya"]));
    }
    w
}

/// A surname: 1–3 syllables plus, usually, a suffix.
pub fn surname(rng: &mut SynthRng) -> String {
    let n = 1 + rng.below(3);
    let mut w = coined_word(rng, n);
    if rng.chance(0.7) {
        w.push_str(rng.pick(SURNAME_SUFFIX));
    }
    w
}

/// A company-style name: coined word(s), a business word, maybe a legal form.
pub fn company_name(rng: &mut SynthRng) -> String {
    let n = 2 + rng.below(2);
    let mut parts = vec![coined_word(rng, n)];
    if rng.chance(0.25) {
        parts.push(coined_word(rng, 2));
    }
    parts.push(rng.pick(BUSINESS).to_string());
    if rng.chance(0.3) {
        parts.push(rng.pick(BUSINESS).to_string());
    }
    let legal = rng.pick(LEGAL);
    if !legal.is_empty() {
        parts.push(legal.to_string());
    }
    parts.join(" ")
}

/// A person as "Given Middle? Surname" (middle name in 30 % of cases).
pub fn person_name(rng: &mut SynthRng, given_pool: usize) -> String {
    let mut parts = vec![given_name(rng, given_pool)];
    if rng.chance(0.3) {
        parts.push(given_name(rng, given_pool));
    }
    parts.push(surname(rng));
    parts.join(" ")
}

/// Applies one random edit (substitution, deletion, insertion or adjacent
/// transposition) at a random position, including the first, of a word of
/// at least 4 characters; shorter words are returned unchanged.
pub fn one_edit_typo(word: &str, rng: &mut SynthRng) -> String {
    let mut c: Vec<char> = word.chars().collect();
    if c.len() < 4 {
        return word.to_string();
    }
    let letters: Vec<char> = "abcdefghijklmnopqrstuvwxyz".chars().collect();
    let random_letter = |rng: &mut SynthRng, not: char| loop {
        let l = letters[rng.below(letters.len())];
        if !l.eq_ignore_ascii_case(&not) {
            return l;
        }
    };
    let pos = rng.below(c.len());
    match rng.below(4) {
        0 => c[pos] = random_letter(rng, c[pos]),
        1 => {
            c.remove(pos);
        }
        2 => {
            let l = random_letter(rng, c[pos]);
            c.insert(pos, l);
        }
        _ => {
            let p = pos.min(c.len() - 2);
            if c[p] == c[p + 1] {
                c[p] = random_letter(rng, c[p]);
            } else {
                c.swap(p, p + 1);
            }
        }
    }
    c.into_iter().collect()
}

fn csv_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Synthetic OFAC-format files: `(sdn.csv bytes, alt.csv bytes)` with
/// `entries` entries (55 % individuals as "SURNAME, Given Middle", 35 %
/// entities, vessels, aircraft), about 30 % of them with 1–3 aliases, real
/// `-0- ` nulls, CRLF line ends and a trailing 0x1A line.
pub fn synthetic_ofac_files(entries: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut rng = SynthRng::new(seed);
    let mut sdn = String::new();
    let mut alt = String::new();
    let null = "-0- ";
    let mut alt_num = 10_000u64;
    for i in 0..entries {
        let ent_num = 1000 + i as u64 * 3;
        let roll = rng.below(100);
        let (name, kind, aliases) = if roll < 55 {
            let given = given_name(&mut rng, 3000);
            let middle = if rng.chance(0.3) {
                format!(" {}", given_name(&mut rng, 3000))
            } else {
                String::new()
            };
            let sur = surname(&mut rng);
            let name = format!("{}, {given}{middle}", sur.to_uppercase());
            let mut aliases = Vec::new();
            if rng.chance(0.3) {
                for _ in 0..1 + rng.below(3) {
                    let a = match rng.below(3) {
                        0 => format!("{}, {}", sur.to_uppercase(), given_name(&mut rng, 3000)),
                        1 => format!("{given} {}", surname(&mut rng)),
                        _ => person_name(&mut rng, 3000),
                    };
                    aliases.push(a);
                }
            }
            (name, "\"individual\"".to_string(), aliases)
        } else if roll < 90 {
            let name = company_name(&mut rng).to_uppercase();
            let mut aliases = Vec::new();
            if rng.chance(0.3) {
                for _ in 0..1 + rng.below(3) {
                    aliases.push(company_name(&mut rng).to_uppercase());
                }
            }
            (name, null.to_string(), aliases)
        } else if roll < 97 {
            let name = format!(
                "{} {}",
                rng.pick(VESSEL_PREFIX),
                coined_word(&mut rng, 2).to_uppercase()
            );
            (name, "\"vessel\"".to_string(), Vec::new())
        } else {
            let name = format!(
                "{}-{}{}{}",
                coined_word(&mut rng, 1).to_uppercase(),
                char::from(b'A' + rng.below(26) as u8),
                char::from(b'A' + rng.below(26) as u8),
                rng.below(1000)
            );
            (name, "\"aircraft\"".to_string(), Vec::new())
        };
        let program = rng.pick(PROGRAMS);
        sdn.push_str(&format!(
            "{ent_num},{},{kind},{},{null},{null},{null},{null},{null},{null},{null},{null}\r\n",
            csv_quote(&name),
            csv_quote(program),
        ));
        for a in aliases {
            alt.push_str(&format!(
                "{ent_num},{alt_num},\"aka\",{},{null}\r\n",
                csv_quote(&a)
            ));
            alt_num += 1;
        }
    }
    sdn.push('\u{1a}');
    alt.push('\u{1a}');
    (sdn.into_bytes(), alt.into_bytes())
}

/// A synthetic customer: legal name first, then owners / key personnel.
#[derive(Debug, Clone)]
pub struct SyntheticCustomer {
    /// Customer id.
    pub id: String,
    /// Names to screen.
    pub names: Vec<String>,
}

/// `count` customers: 60 % companies, 40 % individuals, each with 1–3
/// owner / personnel names.
pub fn synthetic_customers(count: usize, seed: u64) -> Vec<SyntheticCustomer> {
    let mut rng = SynthRng::new(seed ^ 0xc0ff_ee00);
    (0..count)
        .map(|i| {
            let legal = if rng.chance(0.6) {
                company_name(&mut rng)
            } else {
                person_name(&mut rng, 3000)
            };
            let mut names = vec![legal];
            for _ in 0..1 + rng.below(3) {
                names.push(person_name(&mut rng, 3000));
            }
            SyntheticCustomer {
                id: format!("C{i:06}"),
                names,
            }
        })
        .collect()
}

/// Derives a near-copy of a list name as a customer would write it: tokens
/// reordered (and the `SURNAME, Given` comma dropped), case changed, one
/// one-edit typo in a random token of 4+ letters, sometimes a legal form
/// appended. Returns `None` when the name has fewer than two tokens of 4+
/// letters (single-token names are matched strictly by design).
pub fn near_copy(list_name: &str, rng: &mut SynthRng) -> Option<String> {
    let mut tokens: Vec<String> = list_name
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .map(|t| {
            let lower = t.to_lowercase();
            capitalise(&lower)
        })
        .collect();
    let long: Vec<usize> = (0..tokens.len())
        .filter(|&i| {
            let t = &tokens[i];
            t.chars().count() >= 4
                && t.chars().all(char::is_alphabetic)
                && !is_noise(&t.to_lowercase())
        })
        .collect();
    if long.len() < 2 {
        return None;
    }
    let which = long[rng.below(long.len())];
    tokens[which] = one_edit_typo(&tokens[which], rng);
    if rng.chance(0.5) {
        tokens.rotate_left(1);
    }
    if rng.chance(0.3) {
        tokens.push("Ltd".to_string());
    }
    Some(tokens.join(" "))
}
