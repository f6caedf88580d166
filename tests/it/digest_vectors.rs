#![allow(clippy::unwrap_used)] // a panic in a test is a failed test
//! The model digest must equal model-signing 1.1.1's OMS `files`/SHA-256 root
//! digest. The expected values in tests/fixtures/digest/{vectors,manifests}.json
//! come from model-signing itself (scripts/digest_vectors.py); nothing here
//! recomputes them.

use warden::digest;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use digest::{digest_dir, manifest, DigestError, DigestOptions, ModelDigest};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/digest")
}

fn read_json<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = fixtures().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn opts() -> DigestOptions {
    DigestOptions {
        progress: false,
        threads: Some(2),
    }
}

#[derive(serde::Deserialize)]
struct RuntimeCase {
    files: BTreeMap<String, String>,
    dirs: Vec<String>,
}

/// Cases git cannot hold, built the same way scripts/digest_vectors.py builds them.
fn runtime_cases() -> BTreeMap<String, RuntimeCase> {
    let raw: BTreeMap<String, serde_json::Value> = read_json("runtime_cases.json");
    raw.into_iter()
        .filter(|(name, _)| !name.starts_with('_'))
        .map(|(name, v)| (name, serde_json::from_value(v).expect("runtime case shape")))
        .collect()
}

fn build(root: &Path, case: &RuntimeCase) {
    for d in &case.dirs {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for (rel, content) in &case.files {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
}

/// Runs `check(name, model_dir)` over every committed fixture and runtime case.
fn for_each_model(mut check: impl FnMut(&str, &Path)) -> usize {
    let mut n = 0;
    let mut dirs: Vec<_> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        check(dir.file_name().unwrap().to_str().unwrap(), &dir);
        n += 1;
    }
    for (name, case) in runtime_cases() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join(&name);
        std::fs::create_dir(&root).unwrap();
        build(&root, &case);
        check(&name, &root);
        n += 1;
    }
    n
}

#[test]
fn every_vector_matches_model_signing() {
    let vectors: BTreeMap<String, String> = read_json("vectors.json");
    let mut seen = Vec::new();
    let n = for_each_model(|name, dir| {
        let want = vectors
            .get(name)
            .unwrap_or_else(|| panic!("no vector for {name}; rerun scripts/digest_vectors.py"));
        let got = digest_dir(dir, &opts()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&got.to_string(), want, "fixture {name}");
        assert_eq!(got, want.parse::<ModelDigest>().unwrap());
        seen.push(name.to_string());
    });
    assert_eq!(
        n,
        vectors.len(),
        "vectors.json and fixtures disagree: saw {seen:?}"
    );
}

#[test]
fn manifests_match_model_signing_names_digests_and_order() {
    let manifests: BTreeMap<String, Vec<(String, String)>> = read_json("manifests.json");
    for_each_model(|name, dir| {
        let got: Vec<(String, String)> = manifest(dir, &opts())
            .unwrap()
            .into_iter()
            .map(|(n, d)| (n, hex::encode(d)))
            .collect();
        assert_eq!(got, manifests[name], "fixture {name}");
    });
}

#[test]
fn thread_count_and_progress_do_not_change_the_digest() {
    let dir = fixtures().join("nested");
    let one = digest_dir(
        &dir,
        &DigestOptions {
            progress: false,
            threads: Some(1),
        },
    )
    .unwrap();
    let many = digest_dir(
        &dir,
        &DigestOptions {
            progress: true,
            threads: None,
        },
    )
    .unwrap();
    assert_eq!(one, many);
}

#[test]
fn order_is_component_wise_not_string_order() {
    let names: Vec<String> = manifest(&fixtures().join("nested"), &opts())
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            "a/b/c.bin",
            "a/b.bin",
            "a-b.txt",
            "a.txt",
            "config.json",
            "tokenizer/vocab.txt",
            "tokenizer.json"
        ]
    );
    let mut string_order = names.clone();
    string_order.sort();
    assert_ne!(
        names, string_order,
        "fixture no longer distinguishes the two orders"
    );
}

#[cfg(unix)]
#[test]
fn symlinks_are_errors_naming_the_path() {
    use std::os::unix::fs::symlink;

    let cases: [(&str, &str, &str); 4] = [
        ("file link", "link.bin", "model.bin"),
        ("dir link", "linkdir", "sub"),
        ("dangling link", "dangling", "nowhere"),
        // model-signing checks paths before applying its ignore list.
        ("link under ignored .git", ".git/link", "../model.bin"),
    ];
    for (what, link, target) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::write(root.join("model.bin"), "w").unwrap();
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        symlink(target, root.join(link)).unwrap();
        match digest_dir(root, &opts()) {
            Err(DigestError::Symlink { path }) => {
                assert_eq!(path, root.join(link), "{what}");
                let msg = DigestError::Symlink { path }.to_string();
                assert!(
                    msg.contains(link) && msg.contains("symlink"),
                    "{what}: {msg}"
                );
            }
            other => panic!("{what}: expected Symlink error, got {other:?}"),
        }
    }

    // The root itself may not be a symlink either.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("real")).unwrap();
    symlink("real", tmp.path().join("model")).unwrap();
    assert!(matches!(
        digest_dir(&tmp.path().join("model"), &opts()),
        Err(DigestError::Symlink { .. })
    ));
}

#[test]
fn root_must_be_a_directory() {
    let file = fixtures().join("single_file/model.bin");
    assert!(matches!(
        digest_dir(&file, &opts()),
        Err(DigestError::NotADirectory { .. })
    ));
    let missing = fixtures().join("does-not-exist");
    assert!(matches!(
        digest_dir(&missing, &opts()),
        Err(DigestError::Io { .. })
    ));
}

#[test]
fn from_str_rejects_bad_forms() {
    let hex = "a932e47e98eeec223bc8fe5dab68072d828c7950a969e9dc17cef84c15cafd07";
    assert!(format!("sha256:{hex}").parse::<ModelDigest>().is_ok());
    let bad = [
        format!("sha256:{}", hex.to_uppercase()), // uppercase
        format!("sha256:{}", &hex[..62]),         // too short
        format!("sha256:{hex}00"),                // too long
        hex.to_string(),                          // missing prefix
        format!("sha-256:{hex}"),                 // wrong prefix
        format!("sha256:{hex}\n"),                // trailing whitespace
        format!("sha256:{}z", &hex[..63]),        // not hex
    ];
    for s in bad {
        match s.parse::<ModelDigest>() {
            Err(DigestError::Parse(msg)) => assert!(!msg.is_empty()),
            other => panic!("{s:?} should not parse: {other:?}"),
        }
    }
}

#[cfg(unix)]
#[test]
fn special_files_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("pipe");
    let status = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !matches!(status, Ok(s) if s.success()) {
        eprintln!("mkfifo unavailable; skipping");
        return;
    }
    match digest_dir(tmp.path(), &opts()) {
        Err(DigestError::SpecialFile { path }) => assert_eq!(path, fifo),
        other => panic!("expected SpecialFile, got {other:?}"),
    }
}
