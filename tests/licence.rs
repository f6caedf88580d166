//! The licence as a node receives it: admitted and renewed through the real
//! server, then verified offline with `warden::licence::verify`, the
//! function `warden verify-licence` and the node agent use.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::TestEnv;
use sha2::{Digest as _, Sha256};
use warden::licence::{verify, Expectations, LicenceError, Term};
use warden::proto;
use warden::proto::ledger_client::LedgerClient;

fn millis(ts: &prost_types::Timestamp) -> i64 {
    ts.seconds * 1000 + i64::from(ts.nanos) / 1_000_000
}

#[tokio::test]
async fn an_admitted_deployment_gets_a_licence_for_its_model_deployment_and_scope() {
    let env = TestEnv::new();
    let server = env.start().await;
    env.register(&server, "cust-1", proto::CustomerStatus::Verified)
        .await;
    let leaf = env.leaf();
    let mut admission = env.admission(&server).await;
    let r = admission
        .admit(env.admit_request("cust-1", &env.chain(&leaf)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.decision, proto::Decision::Allow as i32, "{:?}", r.reasons);
    let expires = millis(r.lease_expires_at.as_ref().unwrap());
    let fingerprint = hex::encode(Sha256::digest(&leaf.cert_der));
    let digest = env.sample_digest();
    let expect = Expectations {
        deployment_id: Some(&r.deployment_id),
        model_digest: Some(&digest),
        region: Some("eu-west"),
        accelerators: Some(8),
        certificate_fingerprint: Some(&fingerprint),
    };
    let licence = verify(
        &r.licence,
        &env.licence,
        expires - 1,
        Duration::ZERO,
        &expect,
    )
    .unwrap();
    assert_eq!(licence.customer_id, "cust-1");
    assert_eq!(licence.expires_at, expires);
    assert_eq!(licence.region, "eu-west");
    assert_eq!(licence.accelerators, 8);

    // The same licence, checked by a node elsewhere or too late.
    let elsewhere = Expectations {
        region: Some("us-east"),
        ..expect
    };
    assert!(matches!(
        verify(
            &r.licence,
            &env.licence,
            expires - 1,
            Duration::ZERO,
            &elsewhere
        ),
        Err(LicenceError::Mismatch {
            term: Term::Region,
            ..
        })
    ));
    assert!(matches!(
        verify(&r.licence, &env.licence, expires, Duration::ZERO, &expect),
        Err(LicenceError::Expired { .. })
    ));

    // A renewal hands out a licence for the same grant, running to the new
    // end of the lease.
    let renewed = admission
        .renew(proto::RenewRequest {
            deployment_id: r.deployment_id.clone(),
            endpoints: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renewed.decision, proto::Decision::Allow as i32);
    let renewed_expires = millis(renewed.lease_expires_at.as_ref().unwrap());
    let l = verify(
        &renewed.licence,
        &env.licence,
        renewed_expires - 1,
        Duration::ZERO,
        &expect,
    )
    .unwrap();
    assert_eq!(l.expires_at, renewed_expires);
    server.stop().await;
}

#[tokio::test]
async fn a_ledger_checkpoint_from_the_server_is_not_a_licence() {
    let env = TestEnv::new();
    let server = env.start().await;
    env.register(&server, "cust-1", proto::CustomerStatus::Verified)
        .await;
    let mut ledger = LedgerClient::new(env.channel(&server, "auditor").await);
    let checkpoint = ledger
        .get_checkpoint(proto::GetCheckpointRequest { first_size: 0 })
        .await
        .unwrap()
        .into_inner()
        .checkpoint;
    // Genuinely signed by the ledger key, so only the body can tell.
    assert!(env.ledger.open(&checkpoint).is_ok());
    let e = verify(
        &checkpoint,
        &env.ledger,
        0,
        Duration::ZERO,
        &Expectations::default(),
    )
    .unwrap_err();
    assert!(matches!(e, LicenceError::NotALicence(_)), "{e}");
    // And the licence key does not sign checkpoints.
    assert!(matches!(
        verify(
            &checkpoint,
            &env.licence,
            0,
            Duration::ZERO,
            &Expectations::default()
        ),
        Err(LicenceError::Signature(_))
    ));
    server.stop().await;
}

/// `warden verify-licence` run as a user runs it, on licences built and
/// signed here with the library, dated against the real clock the binary
/// reads (by minutes, so no test waits for time to pass).
mod verify_licence_command {
    use std::path::Path;
    use std::process::{Command, Output};

    use warden::ledger::checkpoint::Checkpoint;
    use warden::ledger::note::Signer;
    use warden::licence::Licence;

    const WARDEN: &str = env!("CARGO_BIN_EXE_warden");
    const FINGERPRINT: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn now() -> i64 {
        warden::clock::now_millis()
    }

    fn digest(byte: &str) -> String {
        format!("sha256:{}", byte.repeat(32))
    }

    fn licence(expires_at: i64) -> Licence {
        Licence {
            deployment_id: "dep-1".into(),
            model_digest: digest("ab"),
            customer_id: "acme-ai".into(),
            expires_at,
            region: "eu-west-1".into(),
            accelerators: 4,
            certificate_fingerprint: FINGERPRINT.into(),
        }
    }

    struct Files {
        dir: tempfile::TempDir,
        signer: Signer,
    }

    impl Files {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let signer = Signer::generate("warden.test/licence").unwrap();
            std::fs::write(
                dir.path().join("licence.vkey"),
                signer.verifier().to_text() + "\n",
            )
            .unwrap();
            Files { dir, signer }
        }

        fn write(&self, name: &str, text: &str) -> String {
            std::fs::write(self.dir.path().join(name), text).unwrap();
            name.to_string()
        }

        fn signed(&self, name: &str, l: &Licence) -> String {
            self.write(name, &l.sign(&self.signer).unwrap())
        }

        fn verify(&self, file: &str, extra: &[&str]) -> Output {
            run(self.dir.path(), file, "licence.vkey", extra)
        }
    }

    fn run(dir: &Path, file: &str, vkey: &str, extra: &[&str]) -> Output {
        Command::new(WARDEN)
            .args(["verify-licence", file, "--vkey", vkey])
            .args(extra)
            .current_dir(dir)
            .output()
            .unwrap()
    }

    /// Refused with exit status 3 and a message that says why.
    fn refused(o: &Output, why: &str) {
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(3), "{o:?}");
        assert!(err.contains("refused: ") && err.contains(why), "{err}");
        assert!(o.stdout.is_empty(), "{o:?}");
    }

    #[test]
    fn a_valid_licence_is_printed_and_every_check_passes() {
        let f = Files::new();
        let file = f.signed("licence.txt", &licence(now() + 300_000));
        let d = digest("ab");
        let o = f.verify(
            &file,
            &[
                "--deployment",
                "dep-1",
                "--model-digest",
                &d,
                "--region",
                "eu-west-1",
                "--accelerators",
                "4",
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{o:?}");
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.starts_with("valid licence signed by warden.test/licence\n"));
        for line in [
            "version       warden-licence/v2\n",
            "deployment    dep-1\n",
            "customer      acme-ai\n",
            "region        eu-west-1\n",
            "accelerators  4\n",
        ] {
            assert!(out.contains(line), "{line} missing from {out}");
        }
    }

    #[test]
    fn an_expired_licence_is_refused_after_the_skew() {
        let f = Files::new();
        // Expired two minutes ago: beyond the default minute of skew.
        let file = f.signed("licence.txt", &licence(now() - 120_000));
        refused(&f.verify(&file, &[]), "the licence expired at ");
        assert_eq!(f.verify(&file, &["--skew", "600"]).status.code(), Some(0));
    }

    #[test]
    fn a_licence_for_something_else_is_refused() {
        let f = Files::new();
        let file = f.signed("licence.txt", &licence(now() + 300_000));
        let other = digest("cd");
        refused(
            &f.verify(&file, &["--model-digest", &other]),
            &format!(
                "the licence is for model \"{}\", not \"{other}\"",
                digest("ab")
            ),
        );
        refused(
            &f.verify(&file, &["--deployment", "dep-2"]),
            "the licence is for deployment \"dep-1\", not \"dep-2\"",
        );
        refused(
            &f.verify(&file, &["--region", "us-east-1"]),
            "the licence is for region \"eu-west-1\", not \"us-east-1\"",
        );
        refused(
            &f.verify(&file, &["--accelerators", "8"]),
            "the licence grants 4 accelerator(s), not 8",
        );
    }

    #[test]
    fn notes_that_are_not_licences_by_this_key_are_refused() {
        let f = Files::new();
        let later = now() + 300_000;
        // Signed by another key.
        let stranger = Signer::generate("warden.test/licence").unwrap();
        let file = f.write("other.txt", &licence(later).sign(&stranger).unwrap());
        refused(
            &f.verify(&file, &[]),
            "no valid signature by warden.test/licence",
        );
        // Edited after signing.
        let note = licence(later).sign(&f.signer).unwrap();
        let file = f.write("edited.txt", &note.replace("eu-west-1", "us-east-1"));
        refused(&f.verify(&file, &[]), "no valid signature");
        // The old version, without scope.
        let v1 = f.signer.sign(
            &licence(later)
                .body()
                .unwrap()
                .replace("warden-licence/v2", "warden-licence/v1"),
        );
        let file = f.write("v1.txt", &v1.unwrap());
        refused(
            &f.verify(&file, &[]),
            "\"warden-licence/v1\" licences are not accepted",
        );
        // A ledger checkpoint, checked with the ledger's own key: the
        // signature holds, the body is no licence.
        let ledger = Signer::generate("warden.test/ledger").unwrap();
        let checkpoint = Checkpoint {
            origin: "warden.test/ledger".into(),
            size: 1,
            root: [1u8; 32],
        }
        .sign(&ledger)
        .unwrap();
        let file = f.write("checkpoint.txt", &checkpoint);
        let vkey = f.write("ledger.vkey", &ledger.verifier().to_text());
        refused(
            &run(f.dir.path(), &file, &vkey, &[]),
            "the signed text is not a warden licence",
        );
    }

    #[test]
    fn files_that_cannot_be_used_are_named() {
        let f = Files::new();
        let file = f.signed("licence.txt", &licence(now() + 300_000));
        let fails = |o: Output, text: &str| {
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(1), "{o:?}");
            assert!(err.contains(text), "{text} missing from {err}");
        };
        fails(
            f.verify("missing.txt", &[]),
            "cannot read licence missing.txt",
        );
        fails(
            run(f.dir.path(), &file, "licnce.vkey", &[]),
            "\"licnce.vkey\" is neither a readable file nor a verifier key",
        );
        let junk = f.write("junk.vkey", "not a key\n");
        fails(
            run(f.dir.path(), &file, &junk, &[]),
            "junk.vkey holds no verifier key",
        );
        fails(
            f.verify(&file, &["--model-digest", "sha256:AB"]),
            "--model-digest",
        );
    }
}
