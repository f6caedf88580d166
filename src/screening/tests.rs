//! End-to-end tests on synthetic fixtures (invented names only).

#![allow(clippy::unwrap_used)]

use sha2::{Digest, Sha256};

use super::synth::{near_copy, one_edit_typo, synthetic_ofac_files, SynthRng};
use super::*;

const SDN: &[u8] = include_bytes!("fixtures/sdn.csv");
const ALT: &[u8] = include_bytes!("fixtures/alt.csv");
const GENERIC: &[u8] = include_bytes!("fixtures/generic.csv");
const T: f64 = DEFAULT_THRESHOLD;

fn src<'a>(file_name: &'a str, bytes: &'a [u8]) -> ListSource<'a> {
    ListSource { file_name, bytes }
}

fn ofac(sdn: &[u8], alt: Option<&[u8]>) -> Result<SanctionsList, ScreeningError> {
    SanctionsList::from_sources(
        ListFormat::OfacSdn,
        "SYN SDN",
        "2024-01-01",
        src("sdn.csv", sdn),
        alt.map(|a| src("alt.csv", a)),
    )
}

fn generic(bytes: &[u8]) -> Result<SanctionsList, ScreeningError> {
    SanctionsList::from_sources(ListFormat::Csv, "SYN", "v1", src("list.csv", bytes), None)
}

fn fixture_screener() -> Screener {
    Screener::new(&ofac(SDN, Some(ALT)).unwrap()).unwrap()
}

/// Ids of the entries hit by `name` at `threshold`.
fn hit_ids(s: &Screener, name: &str, threshold: f64) -> Vec<String> {
    s.screen(&[name], threshold)
        .into_iter()
        .map(|h| h.entry_id)
        .collect()
}

fn err_text(r: Result<SanctionsList, ScreeningError>) -> String {
    r.unwrap_err().to_string()
}

// ---------------------------------------------------------------- parsing

#[test]
fn ofac_fixture_parses() {
    let list = ofac(SDN, Some(ALT)).unwrap();
    assert_eq!(list.name, "SYN SDN");
    assert_eq!(list.version, "2024-01-01");
    assert_eq!(list.entries.len(), 10, "trailing 0x1A line must be ignored");
    let e = &list.entries[0];
    assert_eq!(e.id, "1001");
    assert_eq!(e.name, "ZELMAROV, Ostrik Vantel");
    assert_eq!(e.kind, "individual");
    assert_eq!(e.program, "SYN-A");
    assert_eq!(e.aliases, ["ZELMAROFF, Ostrik"]);
    let kinds: Vec<&str> = list.entries.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds[1], "entity");
    assert_eq!(kinds[3], "vessel");
    assert_eq!(kinds[6], "aircraft");
    assert_eq!(list.entries[2].name, "MÜLLERBACH, Jörgen Almar");
    assert_eq!(list.entries[1].aliases, ["KORVASH IMPEX"]);
    assert!(list.entries[5].aliases.is_empty());
}

#[test]
fn ofac_without_alt_and_null_marker_without_space() {
    let sdn = b"7,\"VOSKEL, Arnik\",\"individual\",-0-,-0-,-0-,-0-,-0-,-0-,-0-,-0-,-0-\n";
    let list = ofac(sdn, None).unwrap();
    assert_eq!(list.entries[0].program, "");
    assert_eq!(list.entries[0].kind, "individual");
}

#[test]
fn generic_fixture_parses() {
    let list = generic(GENERIC).unwrap();
    assert_eq!(list.entries.len(), 4);
    let e = &list.entries[0];
    assert_eq!(
        (e.id.as_str(), e.name.as_str(), e.kind.as_str()),
        ("G-1", "Halvard Osterniak", "individual")
    );
    assert_eq!(e.aliases, ["Halvard Ostern", "H. Osterniak"]);
    assert_eq!(list.entries[1].name, "Quorvane Logistics, S.A.");
    assert!(list.entries[2].aliases.is_empty());
    assert_eq!(list.entries[3].kind, "individual");
    assert_eq!(list.entries[3].program, "");
}

#[test]
fn generic_header_any_order_and_bom() {
    let bytes = "\u{feff}ID,Name\nX1,Orvel Danstrup\n".as_bytes();
    let list = generic(bytes).unwrap();
    assert_eq!(list.entries[0].id, "X1");
    assert_eq!(list.entries[0].kind, "unknown");
}

#[test]
fn latin1_fields_are_decoded() {
    let mut sdn = b"7,\"M".to_vec();
    sdn.push(0xdc); // 'Ü' in Latin-1, invalid as UTF-8
    sdn.extend_from_slice(
        b"LLERBACH, Arnik\",\"individual\",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- \n",
    );
    let list = ofac(&sdn, None).unwrap();
    assert_eq!(list.entries[0].name, "MÜLLERBACH, Arnik");
}

fn assert_names(msg: &str, file: &str, line: u64, field: &str) {
    assert!(msg.contains(file), "{msg}");
    assert!(msg.contains(&format!("line {line}")), "{msg}");
    assert!(msg.contains(field), "{msg}");
}

#[test]
fn malformed_sdn_rows_name_file_line_and_field() {
    let good = "1,\"ALPHA, Bet\",\"individual\",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- \r\n";
    let cases = [
        (
            "x1,\"ORVA\",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ",
            "ent_num",
        ),
        (
            "-0- ,\"ORVA\",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ",
            "ent_num",
        ),
        (
            "2,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ",
            "SDN_Name",
        ),
        (
            "2,\"ORVA\",\"company\",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ",
            "SDN_Type",
        ),
        (
            "2,\"ORVA\",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ",
            "expected 12 fields, found 11",
        ),
    ];
    for (bad, field) in cases {
        let bytes = format!("{good}{good}{bad}\r\n").replacen("1,", "9,", 1);
        let msg = err_text(ofac(bytes.as_bytes(), None));
        assert_names(&msg, "sdn.csv", 3, field);
    }
    // A 0x1A line that is not the last line is malformed.
    let bytes = format!("{good}\u{1a}\r\n{}", good.replacen("1,", "2,", 1));
    let msg = err_text(ofac(bytes.as_bytes(), None));
    assert_names(&msg, "sdn.csv", 2, "expected 12 fields, found 1");
}

#[test]
fn malformed_alt_rows_name_file_line_and_field() {
    let sdn = "1,\"ALPHA, Bet\",\"individual\",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- \r\n";
    let good = "1,10,\"aka\",\"ALFA, Bet\",-0- \r\n";
    let cases = [
        ("5,11,\"aka\",\"X\",-0- ", "ent_num"),
        ("1,1x,\"aka\",\"X\",-0- ", "alt_num"),
        ("1,11,\"aka\",-0- ,-0- ", "alt_name"),
        ("1,11,\"aka\",\"X\"", "expected 5 fields, found 4"),
    ];
    for (bad, field) in cases {
        let alt = format!("{good}{bad}\r\n");
        let msg = err_text(ofac(sdn.as_bytes(), Some(alt.as_bytes())));
        assert_names(&msg, "alt.csv", 2, field);
    }
}

#[test]
fn malformed_generic_rows_name_file_line_and_field() {
    let head = "name,aliases,type,program,id\nOrvel Danstrup,,individual,P,A1\n";
    let cases = [
        ("Tamsin Orlov,,individual,P,", 3, "`id`"),
        (",,individual,P,A2", 3, "`name`"),
        (
            "Tamsin Orlov,,individual,P",
            3,
            "expected 5 fields, found 4",
        ),
    ];
    for (bad, line, field) in cases {
        let msg = err_text(generic(format!("{head}{bad}\n").as_bytes()));
        assert_names(&msg, "list.csv", line, field);
    }
    let msg = err_text(generic(b"name,aliases,type,program\nA B,,,\n"));
    assert_names(&msg, "list.csv", 1, "`id`");
    assert!(matches!(
        generic(b"aliases,id\nx,1\n"),
        Err(ScreeningError::MissingColumn { ref column, .. }) if column == "name"
    ));
}

#[test]
fn empty_lists_are_rejected() {
    for sdn in [&b""[..], b"\x1a", b"\r\n\x1a"] {
        assert!(matches!(
            ofac(sdn, None),
            Err(ScreeningError::EmptyList { ref file }) if file == "sdn.csv"
        ));
    }
    assert!(matches!(
        generic(b"name,aliases,type,program,id\n"),
        Err(ScreeningError::EmptyList { .. })
    ));
    assert!(matches!(
        generic(b""),
        Err(ScreeningError::MissingColumn { .. })
    ));
    // A list whose names have no tokens cannot be screened against.
    let list = generic(b"name,id\n\"...\",1\n").unwrap();
    assert!(matches!(
        Screener::new(&list),
        Err(ScreeningError::NothingToIndex { .. })
    ));
}

#[test]
fn duplicate_ids_are_rejected() {
    let row =
        |n: u32| format!("{n},\"ORVA\",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- \r\n");
    let sdn = format!("{}{}{}", row(1), row(2), row(1));
    match ofac(sdn.as_bytes(), None) {
        Err(ScreeningError::DuplicateId {
            line,
            first_line,
            id,
            ..
        }) => assert_eq!((line, first_line, id.as_str()), (3, 1, "1")),
        other => panic!("{other:?}"),
    }
    let msg = err_text(generic(b"name,id\nA B,k1\nC D,k2\nE F,k1\n"));
    assert_names(&msg, "list.csv", 4, "duplicate id `k1`");
    assert!(msg.contains("first on line 2"), "{msg}");
}

#[test]
fn alt_file_rejected_for_generic_format() {
    let r = SanctionsList::from_sources(
        ListFormat::Csv,
        "x",
        "v",
        src("list.csv", GENERIC),
        Some(src("alt.csv", ALT)),
    );
    assert!(matches!(r, Err(ScreeningError::UnexpectedAltFile { .. })));
}

#[test]
fn sha256_is_stable_and_covers_sdn_then_alt() {
    assert_eq!(
        parse::sha256_hex(&[b"abc"]),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let a = ofac(SDN, Some(ALT)).unwrap();
    let b = ofac(SDN, Some(ALT)).unwrap();
    assert_eq!(a.sha256, b.sha256);
    let mut h = Sha256::new();
    h.update(SDN);
    h.update(ALT);
    let expected: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(a.sha256, expected);
    // Any byte change (even in an unused column) changes the digest.
    let mut changed = SDN.to_vec();
    let pos = changed.windows(7).position(|w| w == b"Invente").unwrap();
    changed[pos] = b'i';
    assert_ne!(ofac(&changed, Some(ALT)).unwrap().sha256, a.sha256);
    assert_ne!(ofac(SDN, None).unwrap().sha256, a.sha256);
    let g = generic(GENERIC).unwrap();
    assert_eq!(g.sha256, parse::sha256_hex(&[GENERIC]));
    assert_eq!(fixture_screener().list_sha256(), a.sha256);
}

#[test]
fn load_from_files() {
    let dir = std::env::temp_dir().join(format!("screening-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (s, a) = (dir.join("sdn.csv"), dir.join("alt.csv"));
    std::fs::write(&s, SDN).unwrap();
    std::fs::write(&a, ALT).unwrap();
    let list = SanctionsList::load(ListFormat::OfacSdn, "n", "v", &s, Some(&a)).unwrap();
    assert_eq!(
        list,
        ofac(SDN, Some(ALT)).unwrap().clone_with_name("n", "v")
    );
    let missing = dir.join("nope.csv");
    let msg = SanctionsList::load(ListFormat::Csv, "n", "v", &missing, None)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("nope.csv"), "{msg}");
    std::fs::remove_dir_all(&dir).unwrap();
}

impl SanctionsList {
    fn clone_with_name(mut self, name: &str, version: &str) -> Self {
        self.name = name.to_string();
        self.version = version.to_string();
        self
    }
}

// -------------------------------------------------------------- screening

#[test]
fn screener_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Screener>();
}

#[test]
fn exact_names_hit() {
    let s = fixture_screener();
    let hits = s.screen(&["ZELMAROV, Ostrik Vantel"], T);
    assert_eq!(hits.len(), 1);
    let h = &hits[0];
    assert_eq!(h.entry_id, "1001");
    assert_eq!(h.entry_name, "ZELMAROV, Ostrik Vantel");
    assert_eq!(h.list_name, "ZELMAROV, Ostrik Vantel");
    assert_eq!(h.query, "ZELMAROV, Ostrik Vantel");
    assert_eq!(h.score, 1.0);
    assert_eq!(hit_ids(&s, "Sea Vashkorian", T), ["1004"]);
    assert_eq!(hit_ids(&s, "Teskovran Aviation Industries", T), ["1006"]);
    assert_eq!(hit_ids(&s, "EP-VXK", T), ["1007"]);
}

#[test]
fn reordered_tokens_hit() {
    let s = fixture_screener();
    assert_eq!(hit_ids(&s, "Ilsena Veldrova", T), ["1008"]);
    assert_eq!(hit_ids(&s, "Ostrik Vantel Zelmarov", T), ["1001"]);
    let h = &s.screen(&["Ilsena Veldrova"], T)[0];
    assert_eq!(h.score, 1.0);
    // Fewer tokens than the list name: mild penalty, still a hit.
    let h = &s.screen(&["Ostrik Zelmarov"], T)[0];
    assert!(h.score >= T && h.score < 1.0, "{h:?}");
}

#[test]
fn accented_and_unaccented_hit() {
    let s = fixture_screener();
    // List accented, query plain.
    let h = &s.screen(&["Jorgen Almar Mullerbach"], T)[0];
    assert_eq!((h.entry_id.as_str(), h.score), ("1003", 1.0));
    // List plain, query accented.
    let h = &s.screen(&["José Anselm Varguelo"], T)[0];
    assert_eq!((h.entry_id.as_str(), h.score), ("1009", 1.0));
    assert_eq!(hit_ids(&s, "JÖRGEN MÜLLERBACH", T), ["1003"]);
}

#[test]
fn one_letter_misspellings_hit_including_first_letter() {
    let s = fixture_screener();
    for q in [
        "Ostrik Kelmarov",   // first letter substituted
        "Ostrik Elmarov",    // first letter deleted
        "Ostrik Zzelmarov",  // letter inserted at the front
        "Ostrik Ezlmarov",   // first two letters transposed
        "Ostrik Zelmarv",    // deletion inside
        "Vstrik Zelmarov",   // first letter of the other token
        "Lucrezia Bravanyi", // substitution inside
    ] {
        let hits = s.screen(&[q], T);
        assert!(
            hits.iter()
                .any(|h| h.entry_id == "1001" || h.entry_id == "1005"),
            "{q}: {hits:?}"
        );
    }
    assert_eq!(hit_ids(&s, "Korvash Tradimg Co Ltd", T), ["1002"]);
    assert_eq!(hit_ids(&s, "Qorvash Trading", T), ["1002"]);
}

#[test]
fn every_single_edit_of_fixture_names_hits() {
    // Exhaustive: every substitution, deletion, insertion and adjacent
    // transposition at every position of every 4+ letter token of every
    // multi-token fixture name must still hit its entry.
    let list = ofac(SDN, Some(ALT)).unwrap();
    let s = Screener::new(&list).unwrap();
    let mut checked = 0;
    for e in &list.entries {
        for name in std::iter::once(&e.name).chain(&e.aliases) {
            let toks = normalize_name(name);
            if toks.len() < 2 {
                continue;
            }
            for (ti, tok) in toks.iter().enumerate() {
                let c: Vec<char> = tok.chars().collect();
                if c.len() < 4 {
                    continue;
                }
                let mut variants: Vec<Vec<char>> = Vec::new();
                for p in 0..c.len() {
                    let mut v = c.clone();
                    v[p] = if c[p] == 'q' { 'x' } else { 'q' };
                    variants.push(v);
                    let mut v = c.clone();
                    v.remove(p);
                    variants.push(v);
                    let mut v = c.clone();
                    v.insert(p, 'q');
                    variants.push(v);
                    if p + 1 < c.len() && c[p] != c[p + 1] {
                        let mut v = c.clone();
                        v.swap(p, p + 1);
                        variants.push(v);
                    }
                }
                for v in variants {
                    let mut q = toks.clone();
                    q[ti] = v.into_iter().collect();
                    let query = q.join(" ");
                    let hits = s.screen(&[query.as_str()], T);
                    assert!(
                        hits.iter().any(|h| h.entry_id == e.id),
                        "{query:?} missed {name:?}: {hits:?}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 500, "{checked}");
}

#[test]
fn planted_near_copies_of_a_synthetic_list_all_hit() {
    // Recall on a 3,000-entry synthetic list: a one-edit, reordered,
    // re-cased copy of every multi-token name (and some aliases) must hit.
    let (sdn, alt) = synthetic_ofac_files(3_000, 7);
    let list = ofac(&sdn, Some(&alt)).unwrap();
    let s = Screener::new(&list).unwrap();
    let mut rng = SynthRng::new(99);
    let mut tried = 0;
    let mut missed = Vec::new();
    for e in &list.entries {
        for name in std::iter::once(&e.name).chain(e.aliases.iter().take(1)) {
            let Some(copy) = near_copy(name, &mut rng) else {
                continue;
            };
            tried += 1;
            if !s
                .screen(&[copy.as_str()], T)
                .iter()
                .any(|h| h.entry_id == e.id)
            {
                missed.push((copy, name.clone()));
            }
        }
    }
    assert!(tried > 2_000, "{tried}");
    assert!(
        missed.is_empty(),
        "{} of {tried} missed: {missed:?}",
        missed.len()
    );
}

#[test]
fn index_finds_one_edit_tokens_in_any_position() {
    // Candidate generation alone (no scoring shortcut): each one-edit variant
    // of a distinctive token must reach the entry's names.
    let s = fixture_screener();
    let mut rng = SynthRng::new(5);
    for _ in 0..300 {
        let t = one_edit_typo("Teskovran", &mut rng);
        assert!(s.candidate_count(&format!("{t} Aviation")) >= 1, "{t}");
        let t = one_edit_typo("Dreshnavi", &mut rng);
        assert!(s.candidate_count(&t) >= 1, "{t}");
    }
}

#[test]
fn alias_from_alt_file_hits() {
    let s = fixture_screener();
    let hits = s.screen(&["Korvash Impex"], T);
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].entry_id, "1002");
    assert_eq!(hits[0].list_name, "KORVASH IMPEX");
    assert_eq!(hits[0].entry_name, "KORVASH TRADING CO., LTD.");
    let hits = s.screen(&["Ostrik Zelmaroff"], T);
    assert_eq!(hits[0].entry_id, "1001");
    assert_eq!(hits[0].list_name, "ZELMAROFF, Ostrik");
    assert_eq!(hits[0].score, 1.0);
    assert_eq!(hit_ids(&s, "Lucia Bravante", T), ["1005"]);
}

#[test]
fn unrelated_names_do_not_hit() {
    let s = fixture_screener();
    for q in [
        "Hannelore Vinterberg",
        "Quillon Aerospace Partners LLC",
        "Mateus Okonkwo-Lind",
        "Ostrik",               // a lone given name
        "Zelmarov",             // a lone surname
        "Vantel Trading Ltd",   // shares only a common word
        "Jane Smythe Holdings", // vs nothing similar
        "Ilse Veldt",           // short look-alikes of Ilsena Veldrova
        "Dorvena Trading Co., Ltd.",
        "Sea Breeze Marine",
        "Vashkor Aviation",
        "",
        "---",
    ] {
        let hits = s.screen(&[q], T);
        assert!(hits.is_empty(), "{q:?}: {hits:?}");
    }
}

#[test]
fn legal_form_noise_is_ignored() {
    let s = fixture_screener();
    for q in [
        "Korvash Trading",
        "KORVASH TRADING LIMITED",
        "Korvash Trading GmbH",
        "The Korvash Trading Company",
        "Korvash Trading S.A.",
        "Korvash Trading Co. Ltd",
    ] {
        let hits = s.screen(&[q], T);
        assert_eq!(hits.len(), 1, "{q}: {hits:?}");
        assert_eq!(
            (hits[0].entry_id.as_str(), hits[0].score),
            ("1002", 1.0),
            "{q}"
        );
    }
    // "Holdings" is noise on both sides.
    assert_eq!(
        s.screen(&["Dreshnavi Petrochemical Group"], T)[0].score,
        1.0
    );
}

#[test]
fn legal_form_words_that_are_surnames_still_count() {
    let list =
        generic(b"name,type,id\n\"SA, Jorrei\",individual,1\nSa Ventures,entity,2\n").unwrap();
    let s = Screener::new(&list).unwrap();
    assert_eq!(hit_ids(&s, "Jorrei Sa", T), ["1"]);
    assert!(hit_ids(&s, "Jorrei Liaani", T).is_empty());
    assert!(hit_ids(&s, "Jorrei", T).is_empty());
    assert_eq!(hit_ids(&s, "Sa Ventures", T), ["2"]);
}

#[test]
fn threshold_is_respected() {
    let s = fixture_screener();
    let q = "Ilsena Marit Veldrova"; // one extra token: 1 - 0.15/3 = 0.95
    let score = s.screen(&[q], 0.5)[0].score;
    assert!((score - 0.95).abs() < 1e-9, "{score}");
    assert_eq!(hit_ids(&s, q, score - 1e-9), ["1008"]);
    assert_eq!(hit_ids(&s, q, score), ["1008"]);
    assert!(hit_ids(&s, q, score + 1e-9).is_empty());
    assert!(hit_ids(&s, q, 1.0).is_empty());
    assert!(hit_ids(&s, q, f64::NAN).is_empty());
    for t in [0.6, 0.8, 0.9, 0.97] {
        for h in s.screen(&["Ostrik Kelmarov", "Korvash Tradin", "Lucrezia"], t) {
            assert!(h.score >= t, "{h:?} below {t}");
        }
    }
}

#[test]
fn hits_are_best_per_entry_and_query_sorted_by_score() {
    let s = fixture_screener();
    let hits = s.screen(
        &[
            "Korvash Impex",
            "Ostrik Zelmarov",
            "Korvash Trading",
            "Korvash Trading",
            "Ilsena Veldrova",
        ],
        T,
    );
    let keys: Vec<(&str, &str)> = hits
        .iter()
        .map(|h| (h.entry_id.as_str(), h.query.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            ("1002", "Korvash Impex"),
            ("1002", "Korvash Trading"),
            ("1008", "Ilsena Veldrova"),
            ("1001", "Ostrik Zelmarov"),
        ]
    );
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    // The best of the entry's names is reported.
    let h = &s.screen(&["Ostrik Zelmaroff"], T)[0];
    assert_eq!((h.list_name.as_str(), h.score), ("ZELMAROFF, Ostrik", 1.0));
    let h = &s.screen(&["Ostrik Vantel Zelmaroff"], T)[0];
    assert_eq!(h.list_name, "ZELMAROV, Ostrik Vantel");
    assert!(h.score < 1.0);
}

#[test]
fn index_does_not_score_every_name() {
    let (sdn, alt) = synthetic_ofac_files(3_000, 11);
    let list = ofac(&sdn, Some(&alt)).unwrap();
    let s = Screener::new(&list).unwrap();
    assert_eq!(s.entry_count(), 3_000);
    let names = s.name_count();
    assert!(names > 3_000);
    assert_eq!(s.candidate_count("Hannelore Vinterberg"), 0);
    let e = &list.entries[10];
    let c = s.candidate_count(&e.name);
    assert!(c >= 1 && c * 20 < names, "{c} of {names}");
    // A common word alone does not make the names containing it candidates;
    // two linked query tokens do.
    let common = list
        .entries
        .iter()
        .filter(|e| normalize_name(&e.name).contains(&"trading".to_string()))
        .count();
    assert!(common > 40, "{common}");
    assert_eq!(s.candidate_count("Zzyqx Trading"), 0);
    let both = list
        .entries
        .iter()
        .filter(|e| {
            let t = normalize_name(&e.name);
            t.contains(&"trading".to_string()) && t.contains(&"shipping".to_string())
        })
        .count();
    assert!(s.candidate_count("Zzyqx Trading Shipping") >= both);
}

// ------------------------------------------------------- look-alike dodges

/// A list with a Latin, a Cyrillic and a look-alike-friendly name, and one
/// published with invisible characters inside its words.
fn lookalike_screener() -> Screener {
    let csv = "name,aliases,type,program,id\n\
               Dravon Ulmekk,,individual,SYN-L,L-1\n\
               Велимир Ставрак,,individual,SYN-L,L-2\n\
               Copex Sayapek,,individual,SYN-L,L-3\n\
               Orsk\u{ad}ander Vell\u{200b}ic,,individual,SYN-L,L-4\n";
    Screener::new(&generic(csv.as_bytes()).unwrap()).unwrap()
}

/// The entry ids `name` hits, with their scores.
fn hits_with_scores(s: &Screener, name: &str) -> Vec<(String, f64)> {
    s.screen(&[name], T)
        .into_iter()
        .map(|h| (h.entry_id, h.score))
        .collect()
}

#[test]
fn invisible_characters_inside_a_word_are_stripped_not_split() {
    let s = lookalike_screener();
    for c in [
        '\u{200b}', '\u{200d}', '\u{ad}', '\u{2060}', '\u{feff}', '\u{3164}',
    ] {
        for q in [format!("Dra{c}von Ulmekk"), format!("Dravon Ulm{c}e{c}kk")] {
            assert_eq!(
                hits_with_scores(&s, &q),
                [("L-1".to_string(), 1.0)],
                "{q:?}"
            );
        }
    }
    assert_eq!(
        normalize_name("Dra\u{200b}von Ul\u{ad}mekk"),
        ["dravon", "ulmekk"]
    );
}

#[test]
fn list_names_published_with_invisible_characters_still_hit() {
    let s = lookalike_screener();
    assert_eq!(
        hits_with_scores(&s, "Orskander Vellic"),
        [("L-4".to_string(), 1.0)]
    );
}

#[test]
fn cyrillic_look_alike_letters_hit() {
    let s = lookalike_screener();
    // Cyrillic а and о in place of Latin a and o.
    for q in ["Dr\u{430}v\u{43e}n Ulmekk", "DR\u{410}V\u{41e}N ULMEKK"] {
        assert_eq!(hits_with_scores(&s, q), [("L-1".to_string(), 1.0)], "{q}");
    }
    // Every letter a Cyrillic look-alike, including ones whose sound differs
    // (р is "r", с is "s", х is "kh"): only the confusable skeleton meets.
    let q = "\u{421}\u{43e}\u{440}\u{435}\u{445} \u{405}\u{430}\u{443}\u{430}\u{440}\u{435}\u{43a}";
    assert_eq!(q, "Сорех Ѕауарек");
    assert_eq!(hits_with_scores(&s, q), [("L-3".to_string(), 1.0)]);
}

#[test]
fn cyrillic_and_greek_spellings_of_a_latin_name_hit() {
    let s = lookalike_screener();
    assert_eq!(
        hits_with_scores(&s, "Дравон Улмекк"),
        [("L-1".to_string(), 1.0)]
    );
    let greek = hits_with_scores(&s, "Δράβον Ουλμέκκ");
    assert_eq!(greek.len(), 1, "{greek:?}");
    assert_eq!(greek[0].0, "L-1");
    assert_eq!(normalize_name("Дравон Улмекк"), ["dravon", "ulmekk"]);
}

#[test]
fn latin_spelling_of_a_cyrillic_list_name_hits() {
    let s = lookalike_screener();
    assert_eq!(
        hits_with_scores(&s, "Velimir Stavrak"),
        [("L-2".to_string(), 1.0)]
    );
    assert_eq!(
        hits_with_scores(&s, "СТАВРАК, Велимир"),
        [("L-2".to_string(), 1.0)]
    );
}

#[test]
fn other_script_names_that_are_not_listed_stay_clear() {
    let s = lookalike_screener();
    for q in [
        "Анна Смирнова",
        "Γιώργος Παπαδόπουλος",
        "Дмитрий Улмасов",
        "Drago Ulvik",
        "王 伟",
    ] {
        assert!(hits_with_scores(&s, q).is_empty(), "{q}");
    }
    let f = fixture_screener();
    for q in ["Анна Смирнова", "Γιώργος Παπαδόπουλος", "Ιβάν Πετρόφ"]
    {
        assert!(f.screen(&[q], T).is_empty(), "{q}");
    }
}
