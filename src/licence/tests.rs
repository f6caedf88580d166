use super::*;
use crate::ledger::checkpoint::Checkpoint;

const EXPIRES: UnixMillis = 1_777_636_800_250; // 2026-05-01T12:00:00.25Z
const FINGERPRINT: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn digest() -> String {
    format!("sha256:{}", "ab".repeat(32))
}

fn licence() -> Licence {
    Licence {
        deployment_id: "dep-1".into(),
        model_digest: digest(),
        customer_id: "acme-ai".into(),
        expires_at: EXPIRES,
        region: "eu-west-1".into(),
        accelerators: 4,
        certificate_fingerprint: FINGERPRINT.into(),
    }
}

fn body() -> String {
    format!(
        "warden-licence/v2\ndeployment dep-1\nmodel {}\ncustomer acme-ai\n\
         expires 2026-05-01T12:00:00.25Z\nregion eu-west-1\naccelerators 4\n\
         certificate {FINGERPRINT}\n",
        digest()
    )
}

fn signer() -> Signer {
    Signer::generate("warden.test/licence").unwrap()
}

const NO_SKEW: Duration = Duration::ZERO;

fn nothing() -> Expectations<'static> {
    Expectations::default()
}

#[test]
fn a_licence_is_built_as_documented_and_reads_back() {
    assert_eq!(licence().body().unwrap(), body());
    assert_eq!(parse(&body()).unwrap(), licence());
    let s = signer();
    let note = licence().sign(&s).unwrap();
    assert_eq!(
        verify(&note, &s.verifier(), EXPIRES - 1, NO_SKEW, &nothing()),
        Ok(licence())
    );
}

#[test]
fn an_expired_licence_is_refused_once_the_skew_has_passed() {
    let s = signer();
    let note = licence().sign(&s).unwrap();
    let v = s.verifier();
    let skew = Duration::from_secs(60);
    assert!(verify(&note, &v, EXPIRES + 59_999, skew, &nothing()).is_ok());
    assert_eq!(
        verify(&note, &v, EXPIRES + 60_000, skew, &nothing()),
        Err(LicenceError::Expired {
            expires_at: EXPIRES,
            now: EXPIRES + 60_000,
            skew_ms: 60_000
        })
    );
    assert!(verify(&note, &v, EXPIRES - 1, NO_SKEW, &nothing()).is_ok());
    assert!(matches!(
        verify(&note, &v, EXPIRES, NO_SKEW, &nothing()),
        Err(LicenceError::Expired { .. })
    ));
    // A skew too large for the clock does not wrap around into the past.
    assert!(verify(&note, &v, EXPIRES, Duration::MAX, &nothing()).is_ok());
}

#[test]
fn a_licence_signed_by_another_key_is_refused() {
    let note = licence().sign(&signer()).unwrap();
    let other = signer().verifier();
    assert_eq!(
        verify(&note, &other, EXPIRES - 1, NO_SKEW, &nothing()),
        Err(LicenceError::Signature(NoteError::NotSigned(
            "warden.test/licence".into()
        )))
    );
}

#[test]
fn a_checkpoint_signed_with_the_ledger_key_is_not_a_licence() {
    let ledger = Signer::generate("warden.test/ledger").unwrap();
    let checkpoint = Checkpoint {
        origin: "warden.test/ledger".into(),
        size: 3,
        root: [7u8; 32],
    }
    .sign(&ledger)
    .unwrap();
    assert_eq!(
        verify(
            &checkpoint,
            &ledger.verifier(),
            EXPIRES - 1,
            NO_SKEW,
            &nothing()
        ),
        Err(LicenceError::NotALicence("warden.test/ledger".into()))
    );
}

#[test]
fn a_version_1_licence_is_refused() {
    let s = signer();
    let v1 = format!(
        "warden-licence/v1\ndeployment dep-1\nmodel {}\ncustomer acme-ai\n\
         expires 2026-05-01T12:00:00.25Z\n",
        digest()
    );
    let note = s.sign(&v1).unwrap();
    let e = verify(&note, &s.verifier(), EXPIRES - 1, NO_SKEW, &nothing()).unwrap_err();
    assert_eq!(e, LicenceError::UnsupportedVersion(VERSION_1.into()));
    assert!(e.to_string().contains("renew the lease"), "{e}");
    assert_eq!(
        parse("warden-licence/v3\n"),
        Err(LicenceError::UnsupportedVersion("warden-licence/v3".into()))
    );
}

#[test]
fn a_licence_for_another_model_or_deployment_is_refused() {
    let s = signer();
    let note = licence().sign(&s).unwrap();
    let v = s.verifier();
    let check = |e: Expectations<'_>| verify(&note, &v, EXPIRES - 1, NO_SKEW, &e);
    let other_model = format!("sha256:{}", "cd".repeat(32));
    assert_eq!(
        check(Expectations {
            model_digest: Some(&other_model),
            ..nothing()
        }),
        Err(LicenceError::Mismatch {
            term: Term::Model,
            licensed: digest(),
            expected: other_model.clone()
        })
    );
    assert_eq!(
        check(Expectations {
            deployment_id: Some("dep-2"),
            ..nothing()
        }),
        Err(LicenceError::Mismatch {
            term: Term::Deployment,
            licensed: "dep-1".into(),
            expected: "dep-2".into()
        })
    );
    assert!(matches!(
        check(Expectations {
            region: Some("us-east-1"),
            ..nothing()
        }),
        Err(LicenceError::Mismatch {
            term: Term::Region,
            ..
        })
    ));
    assert!(matches!(
        check(Expectations {
            certificate_fingerprint: Some(&"f".repeat(64)),
            ..nothing()
        }),
        Err(LicenceError::Mismatch {
            term: Term::Certificate,
            ..
        })
    ));
    assert_eq!(
        check(Expectations {
            accelerators: Some(5),
            ..nothing()
        }),
        Err(LicenceError::TooManyAccelerators {
            granted: 4,
            wanted: 5
        })
    );
    let d = digest();
    assert_eq!(
        check(Expectations {
            deployment_id: Some("dep-1"),
            model_digest: Some(&d),
            region: Some("eu-west-1"),
            accelerators: Some(4),
            certificate_fingerprint: Some(FINGERPRINT),
        }),
        Ok(licence())
    );
}

#[test]
fn a_tampered_licence_fails_its_signature() {
    let s = signer();
    let note = licence().sign(&s).unwrap();
    for edited in [
        note.replace("eu-west-1", "us-east-1"),
        note.replace("accelerators 4", "accelerators 8"),
        note.replace("12:00:00.25Z", "13:00:00.25Z"),
    ] {
        assert!(matches!(
            verify(&edited, &s.verifier(), EXPIRES - 1, NO_SKEW, &nothing()),
            Err(LicenceError::Signature(NoteError::NotSigned(_)))
        ));
    }
}

#[test]
fn parsing_is_strict() {
    let good = body();
    let line = |n: usize| good.split('\n').nth(n).unwrap().to_string();
    let lines: Vec<String> = (0..8).map(line).collect();
    let join = |ls: &[String]| ls.iter().map(|l| format!("{l}\n")).collect::<String>();
    let mut swapped = lines.clone();
    swapped.swap(1, 2);
    let mut duplicate = lines.clone();
    duplicate.insert(2, lines[1].clone());
    let cases: Vec<(String, usize)> = vec![
        (good.trim_end().to_string(), 8),
        (join(&lines[..7]), 8),
        (join(&swapped), 2),
        (join(&duplicate), 3),
        (format!("{good}note added\n"), 9),
        (format!("{good}\n"), 9),
        (good.replace("deployment dep-1", "deployment  dep-1"), 2),
        (good.replace("deployment dep-1", "deployment dep 1"), 2),
        (good.replace("deployment dep-1", "deployment"), 2),
        (good.replace("customer acme-ai", "customer acme/ai"), 4),
        (good.replace("ab", "AB"), 3),
        (good.replace(".25Z", ".250Z"), 5),
        (good.replace(".25Z", ".25+00:00"), 5),
        (good.replace("12:00:00.25Z", "14:00:00.25+02:00"), 5),
        (good.replace(".25Z", ".2500001Z"), 5),
        (good.replace("accelerators 4", "accelerators 04"), 7),
        (good.replace("accelerators 4", "accelerators +4"), 7),
        (good.replace("accelerators 4", "accelerators 4294967296"), 7),
        (good.replace("region eu-west-1", "zone eu-west-1"), 6),
        (good.replace(FINGERPRINT, &FINGERPRINT[1..]), 8),
        (good.replace('\n', "\r\n").replacen("\r\n", "\n", 1), 2),
    ];
    for (text, line) in cases {
        match parse(&text) {
            Err(LicenceError::Malformed { line: l, .. }) if l == line => {}
            other => panic!("{text:?}: expected malformed at line {line}, got {other:?}"),
        }
    }
    for (text, first) in [("", ""), ("\n", ""), ("hello\n", "hello")] {
        assert_eq!(parse(text), Err(LicenceError::NotALicence(first.into())));
    }
}

#[test]
fn a_licence_that_would_not_read_back_is_not_built() {
    let s = signer();
    for l in [
        Licence {
            customer_id: "acme ai".into(),
            ..licence()
        },
        Licence {
            region: "eu west".into(),
            ..licence()
        },
        Licence {
            model_digest: "sha256:AB".into(),
            ..licence()
        },
        Licence {
            deployment_id: "dep-1\ncustomer other".into(),
            ..licence()
        },
        Licence {
            expires_at: i64::MAX,
            ..licence()
        },
    ] {
        assert!(
            matches!(l.sign(&s), Err(LicenceError::Malformed { .. })),
            "{l:?}"
        );
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Any text gives a licence or an error, never a panic; and whatever
    /// parses is written back exactly as it was read (one spelling per
    /// licence).
    #[test]
    fn parsing_any_text_is_total_and_canonical(text in "[\\PC\n]{0,300}") {
        if let Ok(l) = parse(&text) {
            proptest::prop_assert_eq!(l.body().unwrap(), text);
        }
    }

    /// Small edits of a valid body: still total and canonical.
    #[test]
    fn edited_licences_are_refused_or_read_exactly(
        at in 0usize..400,
        insert in "[ -~\n]{0,3}",
        remove in 0usize..3,
    ) {
        let good = body();
        let at = at.min(good.len());
        let end = (at + remove).min(good.len());
        let text = format!("{}{insert}{}", &good[..at], &good[end..]);
        if let Ok(l) = parse(&text) {
            proptest::prop_assert_eq!(l.body().unwrap(), text);
        }
    }

    /// Every licence admission can build reads back as built.
    #[test]
    fn licences_round_trip(
        deployment in "[A-Za-z0-9._:-]{1,128}",
        customer in "[A-Za-z0-9._:-]{1,128}",
        digest in "[0-9a-f]{64}",
        expires in 0i64..253_402_300_799_999,
        region in "[!-~]{1,253}",
        accelerators in proptest::prelude::any::<u32>(),
        fingerprint in "[0-9a-f]{64}",
    ) {
        let l = Licence {
            deployment_id: deployment,
            model_digest: format!("sha256:{digest}"),
            customer_id: customer,
            expires_at: expires,
            region,
            accelerators,
            certificate_fingerprint: fingerprint,
        };
        proptest::prop_assert_eq!(parse(&l.body().unwrap()).unwrap(), l);
    }
}
