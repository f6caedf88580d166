//! The README walkthrough, run through the real `warden` binary: `warden dev`
//! in a fresh directory, then the client commands a new user types, then
//! SIGTERM. Proves the commands, their exit statuses and their output.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const WARDEN: &str = env!("CARGO_BIN_EXE_warden");

struct Dev {
    child: Child,
    addr: String,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Starts `warden dev` on a free port in `dir` and waits for the line that
/// says where it serves (printed after the listener is bound).
fn start_dev(dir: &Path) -> Dev {
    let mut child = Command::new(WARDEN)
        .args(["dev", "--listen", "127.0.0.1:0"])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("warden dev exited before serving")
            .unwrap();
        if let Some(rest) = line.strip_prefix("warden dev is serving on ") {
            let port = rest
                .split_whitespace()
                .next()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .to_string();
            break format!("https://localhost:{port}");
        }
    };
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Dev { child, addr }
}

fn warden(dir: &Path, addr: &str, args: &[&str]) -> Output {
    Command::new(WARDEN)
        .args(args)
        .args(["--addr", addr])
        .current_dir(dir)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn admit_sample<'a>(customer: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "admit",
        "--customer",
        customer,
        "--chain",
        "certs/dev/sample-model.chain.pem",
    ];
    v.extend_from_slice(extra);
    v
}

#[test]
fn readme_walkthrough_works_through_the_binary_and_sigterm_drains() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut dev = start_dev(dir);
    let addr = dev.addr.clone();

    // ALLOW, with a licence that verifies offline.
    let o = warden(
        dir,
        &addr,
        &admit_sample(
            "acme-ai",
            &[
                "--model-dir",
                "certs/dev/sample-model",
                "--region",
                "eu-west-1",
                "--accelerators",
                "4",
                "--licence-out",
                "certs/dev/licence.txt",
            ],
        ),
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(stdout(&o).starts_with("ALLOW  deployment dep-"));
    let o = warden(
        dir,
        &addr,
        &[
            "verify-licence",
            "certs/dev/licence.txt",
            "--vkey",
            "certs/dev/licence.vkey",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(stdout(&o).contains("warden-licence/v1"));

    // DENY with every reason, exit status 3.
    let zeros = format!("sha256:{}", "0".repeat(64));
    let o = warden(
        dir,
        &addr,
        &admit_sample(
            "acme-ai",
            &[
                "--model-digest",
                &zeros,
                "--region",
                "ap-south-1",
                "--accelerators",
                "16",
            ],
        ),
    );
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    let out = stdout(&o);
    for code in [
        "DIGEST_MISMATCH",
        "REGION_OUT_OF_SCOPE",
        "ACCELERATORS_OUT_OF_SCOPE",
    ] {
        assert!(out.contains(code), "{code} missing from {out}");
    }

    // A customer is refused until KYC verifies it.
    let o = warden(
        dir,
        &addr,
        &[
            "customer",
            "add",
            "--id",
            "beta-labs",
            "--kind",
            "organisation",
            "--name",
            "Beta Labs GmbH",
            "--country",
            "DE",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let beta = admit_sample(
        "beta-labs",
        &[
            "--model-dir",
            "certs/dev/sample-model",
            "--region",
            "eu-west-1",
        ],
    );
    let o = warden(dir, &addr, &beta);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(stdout(&o).contains("CUSTOMER_NOT_VERIFIED"));
    let o = warden(
        dir,
        &addr,
        &[
            "customer",
            "status",
            "beta-labs",
            "verified",
            "--reason",
            "documents checked",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(warden(dir, &addr, &beta).status.code(), Some(0));

    // Renew, revoke via CRL, renew fails.
    let o = warden(
        dir,
        &addr,
        &admit_sample(
            "acme-ai",
            &[
                "--quiet",
                "--model-dir",
                "certs/dev/sample-model",
                "--region",
                "eu-west-1",
            ],
        ),
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let dep = stdout(&o).trim().to_string();
    assert!(dep.starts_with("dep-"), "{dep}");
    assert_eq!(warden(dir, &addr, &["renew", &dep]).status.code(), Some(0));
    let o = warden(
        dir,
        &addr,
        &[
            "certs",
            "revoke",
            "--ca",
            "certs/dev/evaluator/ca.pem",
            "--ca-key",
            "certs/dev/evaluator/ca.key",
            "--revoke",
            "certs/dev/sample-model.chain.pem",
            "--out",
            "certs/dev/revoked.crl.pem",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let o = warden(
        dir,
        &addr,
        &["trust", "put-crl", "certs/dev/revoked.crl.pem"],
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let o = warden(dir, &addr, &["renew", &dep]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(stdout(&o).contains("CERT_REVOKED"));

    let o = warden(dir, &addr, &["deployment", "list"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(stdout(&o).contains(&dep));
    let o = warden(dir, &addr, &["--json", "deployment", "get", &dep]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["deployment_id"], dep.as_str());
    assert_eq!(v["customer_id"], "acme-ai");

    // The auditor's check from the README: twice, the second proving the
    // log only grew since the first.
    let verify = [
        "ledger",
        "verify",
        "--vkey",
        "certs/dev/ledger.vkey",
        "--state",
        "certs/dev/audit.checkpoint",
        "--entry",
        "0",
    ];
    let o = warden(dir, &addr, &verify);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(stdout(&o).contains("included: entry 0"), "{}", stdout(&o));
    assert_eq!(warden(dir, &addr, &["renew", &dep]).status.code(), Some(3));
    let o = warden(dir, &addr, &verify);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(stdout(&o).contains("consistent: size"), "{}", stdout(&o));
    let o = warden(
        dir,
        &addr,
        &["ledger", "entries", "--start", "0", "--count", "5"],
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(stdout(&o).lines().count(), 5);

    // SIGTERM drains and exits cleanly within the grace period.
    let pid = dev.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = dev.child.try_wait().unwrap() {
            assert!(status.success(), "warden dev exited with {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "warden dev did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
