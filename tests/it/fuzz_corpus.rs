//! Replays every committed fuzz corpus file (`fuzz/corpus/<target>/`)
//! through the same entry point its fuzz target calls
//! (`warden::fuzzing`), so a crash the fuzzer once found, and every input
//! that reached new code, is checked on each `cargo test` without a fuzzer.
//!
//! `regenerate_fixtures` (ignored) rebuilds the chain target's trust
//! material and the hand-made seeds; run it only when the certificate
//! profile or a file format changes, then minimise the corpora again.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use sha2::Digest as _;

use warden::fuzzing::TARGETS;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir(target))
        .unwrap_or_else(|e| panic!("corpus of {target}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

fn replay(target: &str) {
    let (_, run) = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("no fuzz target {target}"));
    let files = corpus(target);
    assert!(!files.is_empty(), "the corpus of {target} is empty");
    for (path, bytes) in files {
        let outcome = std::panic::catch_unwind(|| run(&bytes));
        assert!(outcome.is_ok(), "{target} panicked on {}", path.display());
    }
}

#[test]
fn every_target_has_a_corpus_and_a_fuzz_target() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let manifest = std::fs::read_to_string(fuzz.join("Cargo.toml")).unwrap();
    for (name, _) in TARGETS {
        assert!(corpus_dir(name).is_dir(), "no corpus for {name}");
        assert!(
            fuzz.join("fuzz_targets")
                .join(format!("{name}.rs"))
                .is_file(),
            "no fuzz target {name}"
        );
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "{name} is not a [[bin]] of fuzz/Cargo.toml"
        );
    }
}

#[test]
fn corpus_cert_extensions() {
    replay("cert_extensions");
}

#[test]
fn corpus_cert_chain() {
    replay("cert_chain");
}

#[test]
fn corpus_signed_note() {
    replay("signed_note");
}

#[test]
fn corpus_checkpoint() {
    replay("checkpoint");
}

#[test]
fn corpus_sanctions_ofac() {
    replay("sanctions_ofac");
}

#[test]
fn corpus_sanctions_generic() {
    replay("sanctions_generic");
}

#[test]
fn corpus_customer_json() {
    replay("customer_json");
}

#[test]
fn corpus_config_toml() {
    replay("config_toml");
}

#[test]
fn corpus_backup() {
    replay("backup");
}

/// The fixture chain verifies: without this the chain corpus would only
/// ever exercise rejections.
#[test]
fn fixture_chain_verifies() {
    let pem = std::fs::read_to_string(corpus_dir("cert_chain").join("seed-valid.pem")).unwrap();
    let check = warden::pki::Verifier::new(true).verify(
        warden::fuzzing::chain_bundle(),
        &pem,
        warden::pki::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            warden::fuzzing::CHAIN_NOW_UNIX,
        )),
        &warden::pki::Profile::default(),
    );
    assert!(check.is_valid(), "{:?}", check.problems);
    let der = std::fs::read(corpus_dir("cert_chain").join("seed-valid.der")).unwrap();
    assert_eq!(warden::fuzzing::split_der(&der).len(), 2);
}

/// The backup seeds reach the structure parser: a whole file verifies, and
/// so does a body once the target seals it.
#[test]
fn backup_seeds_verify() {
    use warden::store::backup::verify_bytes;
    let dir = corpus_dir("backup");
    let file = std::fs::read(dir.join("seed-new-store.wbk")).unwrap();
    let whole = verify_bytes(Path::new("seed"), &file).unwrap();
    assert_eq!(whole.bytes, file.len() as u64);
    let mut body = std::fs::read(dir.join("seed-one-record.body")).unwrap();
    body.extend_from_slice(&sha2::Sha256::digest(&body));
    body.extend_from_slice(b"WBKEND01");
    let sealed = verify_bytes(Path::new("seed"), &body).unwrap();
    assert_eq!(sealed.records, whole.records + 1);
}

// ---------------------------------------------------------------------------
// Fixture generation (run by hand: cargo test --test it -- --ignored fuzz_corpus::)

mod generate {
    use std::path::Path;

    use time::macros::datetime;
    use warden::fuzzing::{note_signer, NOTE_KEY_NAME};
    use warden::ledger::checkpoint::Checkpoint;
    use warden::pki::dev::{sample_claims, CrlSpec, LeafSpec, TestCa};
    use warden::pki::{Field, Profile};

    fn put(dir: &Path, name: &str, bytes: &[u8]) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }

    pub fn chain(root_dir: &Path, src: &Path) {
        let profile = Profile::default();
        let (nb, na) = (
            datetime!(2026-01-01 0:00 UTC),
            datetime!(2036-01-01 0:00 UTC),
        );
        let root =
            TestCa::root_with_validity("Fuzz Regulator Root", nb, datetime!(2046-01-01 0:00 UTC))
                .unwrap();
        let evaluator = root
            .evaluator_with_validity("Fuzz Evaluator CA", &profile, true, nb, na)
            .unwrap();
        let spec =
            LeafSpec::new(&profile, sample_claims()).validity(nb, datetime!(2031-01-01 0:00 UTC));
        let leaf = evaluator.issue_leaf(&spec).unwrap();
        let revoked = evaluator.issue_leaf(&spec).unwrap();
        let crl_times = (
            datetime!(2026-06-01 0:00 UTC),
            datetime!(2030-01-01 0:00 UTC),
        );
        put(src, "root.pem", root.cert_pem().as_bytes());
        put(
            src,
            "root.crl.der",
            &root
                .crl(&CrlSpec::empty(1).times(crl_times.0, crl_times.1))
                .unwrap(),
        );
        put(
            src,
            "evaluator.crl.der",
            &evaluator
                .crl(
                    &CrlSpec::empty(1)
                        .revoking(&revoked.serial)
                        .times(crl_times.0, crl_times.1),
                )
                .unwrap(),
        );

        let chains = root_dir.join("fuzz/corpus/cert_chain");
        let ev_pem = evaluator.cert_pem();
        put(
            &chains,
            "seed-valid.pem",
            format!("{}{ev_pem}", leaf.cert_pem).as_bytes(),
        );
        put(
            &chains,
            "seed-with-root.pem",
            format!("{}{ev_pem}{}", leaf.cert_pem, root.cert_pem()).as_bytes(),
        );
        let der = |parts: &[&[u8]]| parts.concat();
        let ev_der = evaluator.cert_der();
        put(&chains, "seed-valid.der", &der(&[&leaf.cert_der, &ev_der]));
        put(
            &chains,
            "seed-revoked.der",
            &der(&[&revoked.cert_der, &ev_der]),
        );
        put(&chains, "seed-leaf-only.der", &leaf.cert_der);

        let exts = root_dir.join("fuzz/corpus/cert_extensions");
        put(&exts, "seed-valid.der", &leaf.cert_der);
        let variants: Vec<(&str, LeafSpec)> = vec![
            ("seed-no-digest.der", spec.clone().omit(Field::ModelDigest)),
            (
                "seed-bad-flop.der",
                spec.clone().text(Field::TrainingComputeFlop, "1e999"),
            ),
            (
                "seed-bad-regions.der",
                spec.clone().text(Field::ScopeRegions, "eu,,us"),
            ),
            (
                "seed-raw-int.der",
                spec.clone().raw(Field::RiskTier, vec![0x02, 0x01, 0x03]),
            ),
            (
                "seed-any-region.der",
                spec.clone().text(Field::ScopeRegions, "*"),
            ),
        ];
        for (name, s) in variants {
            let l = evaluator.issue_leaf(&s).unwrap();
            put(&exts, name, &l.cert_der);
            put(&chains, name, &der(&[&l.cert_der, &ev_der]));
        }
    }

    pub fn notes(root_dir: &Path) {
        let signer = note_signer();
        let notes = root_dir.join("fuzz/corpus/signed_note");
        let cps = root_dir.join("fuzz/corpus/checkpoint");
        let cp = Checkpoint {
            origin: NOTE_KEY_NAME.into(),
            size: 42,
            root: [7u8; 32],
        };
        let signed_cp = cp.sign(&signer).unwrap();
        put(&cps, "seed-signed", signed_cp.as_bytes());
        put(&cps, "seed-body", cp.body().as_bytes());
        put(
            &cps,
            "seed-body-ext",
            format!("{}extension line\n", cp.body()).as_bytes(),
        );
        let note = signer
            .sign("licence for deployment d-1\nmodel sha256:00\n")
            .unwrap();
        put(&notes, "seed-note", note.as_bytes());
        put(&notes, "seed-checkpoint", signed_cp.as_bytes());
        put(&notes, "seed-vkey", signer.verifier().to_text().as_bytes());
        put(&notes, "seed-skey", signer.to_text().as_bytes());
        let other = warden::ledger::note::Signer::from_seed("other.example/log", [9; 32]).unwrap();
        let two = format!(
            "{}{}",
            signer.sign("two signers\n").unwrap(),
            other
                .sign("two signers\n")
                .unwrap()
                .split_once("\n\n")
                .unwrap()
                .1
        );
        put(&notes, "seed-two-signers", two.as_bytes());
    }

    pub fn copies(root_dir: &Path) {
        let fixtures = root_dir.join("src/screening/fixtures");
        let read = |p: &Path| std::fs::read(p).unwrap();
        let ofac = root_dir.join("fuzz/corpus/sanctions_ofac");
        put(&ofac, "seed-sdn", &read(&fixtures.join("sdn.csv")));
        let mut both = read(&fixtures.join("sdn.csv"));
        both.push(0);
        both.extend(read(&fixtures.join("alt.csv")));
        put(&ofac, "seed-sdn-alt", &both);
        let generic = root_dir.join("fuzz/corpus/sanctions_generic");
        put(
            &generic,
            "seed-generic",
            &read(&fixtures.join("generic.csv")),
        );
        put(
            &generic,
            "seed-sample",
            &read(&root_dir.join("examples/sanctions/sample.csv")),
        );
        let customers = root_dir.join("fuzz/corpus/customer_json");
        for f in ["beta-labs.json", "beta-labs.update.json", "individual.json"] {
            put(
                &customers,
                &format!("seed-{f}"),
                &read(&root_dir.join("examples/customers").join(f)),
            );
        }
        put(
            &root_dir.join("fuzz/corpus/config_toml"),
            "seed-example.toml",
            &read(&root_dir.join("deploy/warden.example.toml")),
        );
    }

    /// A backup of a new store, written by warden itself, and its body
    /// without the trailer (which the fuzz target seals itself).
    pub fn backups(root_dir: &Path) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let key_file = tmp.path().join("pii.keys");
        warden::pii::Keyring::generate(&key_file, "fuzz-1").unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let keys = warden::pii::Keyring::load(&key_file).unwrap();
            let store = warden::store::SledStore::open(&dir, note_signer(), keys).unwrap();
            drop(store);
        });
        drop(rt);
        let mut out = Vec::new();
        warden::store::backup::backup_offline(&dir, &mut out).unwrap();
        let backups = root_dir.join("fuzz/corpus/backup");
        put(&backups, "seed-new-store.wbk", &out);
        let body = &out[..out.len() - 40];
        put(&backups, "seed-new-store.body", body);
        // The same with one more record in the last tree: tag, key, value.
        let at_end = body.len() - 9;
        assert_eq!(body[at_end], 0x00, "end record");
        let count = u64::from_be_bytes(body[at_end + 1..].try_into().unwrap());
        let mut with_record = body[..at_end].to_vec();
        with_record.extend_from_slice(&[0x02, 0, 0, 0, 1, b'k', 0, 0, 0, 2, b'v', b'1']);
        with_record.push(0x00);
        with_record.extend_from_slice(&(count + 1).to_be_bytes());
        put(&backups, "seed-one-record.body", &with_record);
    }
}

#[test]
#[ignore = "rewrites the fuzz fixtures and seeds; run by hand"]
fn regenerate_fixtures() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    generate::chain(root, &root.join("src/fuzzing"));
    generate::notes(root);
    generate::copies(root);
    generate::backups(root);
}
