//! The README walkthrough, run through the real `warden` binary: `warden dev`
//! in a fresh directory, then the client commands a new user types, then
//! SIGTERM. Proves the commands, their exit statuses and their output.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const WARDEN: &str = env!("CARGO_BIN_EXE_warden");

struct Dev {
    child: Child,
    addr: String,
    /// host:port of the metrics endpoint.
    metrics: String,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Starts `warden dev` on a free port in `dir` and waits for the line that
/// says where it serves (printed after the listener is bound).
fn start_dev(dir: &Path) -> Dev {
    start_dev_on(dir, "127.0.0.1:0")
}

/// [`start_dev`] listening on `listen`.
fn start_dev_on(dir: &Path, listen: &str) -> Dev {
    let mut child = Command::new(WARDEN)
        .args(["dev", "--listen", listen, "--metrics-listen", "127.0.0.1:0"])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut addr = None;
    let metrics = loop {
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
            addr = Some(format!("https://localhost:{port}"));
        }
        if let Some(rest) = line.strip_prefix("warden dev metrics are at http://") {
            break rest.trim_end_matches("/metrics").to_string();
        }
    };
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Dev {
        child,
        addr: addr.expect("the serving line comes first"),
        metrics,
    }
}

/// The metrics endpoint's text, fetched over plain HTTP.
fn scrape(metrics: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(metrics).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: warden\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    text
}

fn warden(dir: &Path, addr: &str, args: &[&str]) -> Output {
    Command::new(WARDEN)
        .args(args)
        .args(["--addr", addr])
        .current_dir(dir)
        .output()
        .unwrap()
}

/// `warden … ARGS` with `input` on its stdin.
fn warden_stdin(dir: &Path, addr: &str, args: &[&str], input: &[u8]) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(WARDEN)
        .args(args)
        .args(["--addr", addr])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The repository's `examples/` (customer files, a sanctions list), copied
/// into the walkthrough's directory so its relative paths work as written.
fn copy_examples(dir: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for sub in ["customers", "sanctions"] {
        let to = dir.join("examples").join(sub);
        std::fs::create_dir_all(&to).unwrap();
        for e in std::fs::read_dir(src.join(sub)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// The value of a `label   value` line of readable output.
fn field<'a>(out: &'a str, label: &str) -> Option<&'a str> {
    out.lines().find_map(|l| {
        l.strip_prefix(label)
            .filter(|rest| rest.starts_with("  "))
            .map(str::trim)
    })
}

/// `warden order watch` running as a child process; its stdout lines
/// arrive on a channel as it prints them, its stderr goes to a file.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: PathBuf,
}

impl Watch {
    fn start(dir: &Path, addr: &str, args: &[&str]) -> Watch {
        let stderr = dir.join("order-watch.stderr");
        let mut child = Command::new(WARDEN)
            .args(["order", "watch"])
            .args(args)
            .args(["--addr", addr])
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watch {
            child,
            lines,
            stderr,
        }
    }

    /// The next line it prints, waiting at most a few seconds.
    fn next_line(&mut self) -> String {
        match self.lines.recv_timeout(Duration::from_secs(10)) {
            Ok(line) => line,
            Err(e) => panic!(
                "order watch printed no line ({e}); status {:?}; stderr: {}",
                self.child.try_wait(),
                std::fs::read_to_string(&self.stderr).unwrap_or_default()
            ),
        }
    }

    /// Ctrl-C: it must exit with status 0.
    fn interrupt(mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "order watch exited with {status} on SIGINT"
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "order watch did not exit on SIGINT"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `warden order watch | head -1`: once the reader of its output is gone,
/// the watch ends, quietly and with success, even while no event arrives.
fn watch_ends_when_its_reader_is_gone(dir: &Path, addr: &str) {
    let mut child = Command::new(WARDEN)
        .args(["order", "watch", "--since", "0", "--addr", addr])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("1  "), "{first}");
    // The reader was dropped: the pipe's read end is closed.
    let (tx, exited) = mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output().unwrap()));
    let o = match exited.recv_timeout(Duration::from_secs(30)) {
        Ok(o) => o,
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            panic!("order watch kept running after its reader went away");
        }
    };
    assert!(o.status.success(), "{o:?}");
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
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

/// ALLOW, with a licence that verifies offline; the deployment's id.
fn admit_allow_and_verify_the_licence(dir: &Path, addr: &str) -> String {
    // ALLOW, with a licence that verifies offline.
    let o = warden(
        dir,
        addr,
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
    let first_dep = stdout(&o)
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("ALLOW  deployment ")
        .to_string();
    let o = warden(
        dir,
        addr,
        &[
            "verify-licence",
            "certs/dev/licence.txt",
            "--vkey",
            "certs/dev/licence.vkey",
            "--deployment",
            &first_dep,
            "--region",
            "eu-west-1",
            "--accelerators",
            "4",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = stdout(&o);
    assert_eq!(field(&out, "version"), Some("warden-licence/v2"), "{out}");
    assert_eq!(field(&out, "customer"), Some("acme-ai"), "{out}");
    assert_eq!(field(&out, "accelerators"), Some("4"), "{out}");

    first_dep
}

/// DENY with every reason, exit status 3.
fn deny_with_every_reason(dir: &Path, addr: &str) {
    let zeros = format!("sha256:{}", "0".repeat(64));
    let o = warden(
        dir,
        addr,
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
}

/// The dev server's metrics show the two decisions.
fn metrics_show_the_decisions(metrics: &str) {
    let m = scrape(metrics);
    for line in [
        "warden_admission_decisions_total{call=\"admit\",decision=\"allow\",reason=\"none\"} 1\n",
        "warden_admission_decisions_total{call=\"admit\",decision=\"deny\",reason=\"DIGEST_MISMATCH\"} 1\n",
        "warden_admission_deny_reasons_total{call=\"admit\",reason=\"REGION_OUT_OF_SCOPE\"} 1\n",
        "warden_deployments{state=\"active\"} 1\n",
    ] {
        assert!(m.contains(line), "{line} missing from {m}");
    }
}

/// KYC: a customer registered from its JSON file is refused until it is
/// verified; its first version stays readable. The time of that version.
fn customer_refused_until_verified(dir: &Path, addr: &str) -> String {
    copy_examples(dir);
    let o = warden(
        dir,
        addr,
        &[
            "--json",
            "customer",
            "add",
            "examples/customers/beta-labs.json",
        ],
    );
    let v1 = json(&o);
    assert_eq!(v1["customer_id"], "beta-labs");
    assert_eq!(v1["kind"], "organisation");
    assert_eq!(v1["status"], "pending");
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["screening"]["status"], "not_screened");
    assert_eq!(v1["details"]["addresses"][0]["city"], "Berlin");
    assert_eq!(
        v1["details"]["beneficial_owners"][1]["ownership_percent"],
        30.0
    );
    assert!(v1["details"]["verification"].is_null());
    let beta = admit_sample(
        "beta-labs",
        &[
            "--model-dir",
            "certs/dev/sample-model",
            "--region",
            "eu-west-1",
        ],
    );
    let o = warden(dir, addr, &beta);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(stdout(&o).contains("CUSTOMER_NOT_VERIFIED"));

    // The verification is recorded as a new version, then the status set.
    let update = [
        "customer",
        "update",
        "beta-labs",
        "examples/customers/beta-labs.update.json",
        "--expected-version",
        "1",
    ];
    let o = warden(dir, addr, &update);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = stdout(&o);
    assert!(out.contains("\nversion      2\n"), "{out}");
    assert!(out.contains("registry-extract"), "{out}");
    // The same update again is stale: the record is at version 2 now.
    let o = warden(dir, addr, &update);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(stderr(&o).contains("at version 2, not 1"), "{}", stderr(&o));
    let o = warden(
        dir,
        addr,
        &[
            "customer",
            "status",
            "beta-labs",
            "verified",
            "--reason",
            "registry extract checked",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(stdout(&o).contains("registry extract checked"));
    assert_eq!(warden(dir, addr, &beta).status.code(), Some(0));
    // History: the version in force when it was registered.
    let v1_at = v1["updated_at"].as_str().unwrap();
    let old = json(&warden(
        dir,
        addr,
        &["--json", "customer", "get", "beta-labs", "--as-of", v1_at],
    ));
    assert_eq!(old["version"], 1);
    assert_eq!(old["status"], "pending");
    assert!(old["details"]["verification"].is_null());
    let now = json(&warden(
        dir,
        addr,
        &["--json", "customer", "get", "beta-labs"],
    ));
    assert_eq!(now["version"], 3);
    assert_eq!(now["status"], "verified");
    assert_eq!(
        now["details"]["verification"]["verified_at"],
        "2026-10-01T09:30:00Z"
    );

    v1_at.to_string()
}

/// Customer files with bad fields are refused and store nothing.
fn bad_customer_files_are_refused(dir: &Path, addr: &str) {
    // A file with a misspelt field is refused before anything is sent,
    // naming the field; one the server finds invalid is refused naming
    // every bad field (here read from stdin). Neither is stored.
    let good = std::fs::read_to_string(dir.join("examples/customers/beta-labs.json")).unwrap();
    let gamma = good.replace("\"beta-labs\"", "\"gamma-labs\"");
    std::fs::write(
        dir.join("misspelt.json"),
        gamma.replace("\"email\"", "\"emial\""),
    )
    .unwrap();
    let o = warden(dir, addr, &["customer", "add", "misspelt.json"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        stderr(&o).contains("misspelt.json: unknown field `emial`"),
        "{}",
        stderr(&o)
    );
    let bad = gamma
        .replace("kyc@beta-labs.example", "kyc at beta-labs")
        .replace("+4930123456", "030 123456");
    let o = warden_stdin(dir, addr, &["customer", "add", "-"], bad.as_bytes());
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = stderr(&o);
    assert!(err.contains("INVALID_ARGUMENT"), "{err}");
    assert!(err.contains("\n  details.email: "), "{err}");
    assert!(err.contains("\n  details.phone: "), "{err}");
    let o = warden(dir, addr, &["customer", "get", "gamma-labs"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(stderr(&o).contains("NotFound"), "{}", stderr(&o));
}

/// Sanctions screening denies a potential match until it is resolved.
fn screening_denies_until_resolved(dir: &Path, addr: &str) {
    // Sanctions screening: an individual, verified by the onboarding
    // system, is admitted; the admin loads a list on which a similar name
    // appears; admission is denied until a kyc principal resolves it.
    let o = warden(
        dir,
        addr,
        &["customer", "add", "examples/customers/individual.json"],
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let orla = admit_sample(
        "cust-1042",
        &[
            "--model-dir",
            "certs/dev/sample-model",
            "--region",
            "eu-west-1",
        ],
    );
    assert_eq!(warden(dir, addr, &orla).status.code(), Some(0));
    let o = warden(
        dir,
        addr,
        &[
            "sanctions",
            "load",
            "examples/sanctions/sample.csv",
            "--format",
            "csv",
            "--name",
            "Sample list",
            "--list-version",
            "2026-11",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = stdout(&o);
    assert!(out.contains("5 entries"), "{out}");
    // acme-ai, beta-labs and cust-1042: the refused files stored nothing.
    assert!(
        out.contains("screened 3 customer(s): 1 potential match"),
        "{out}"
    );
    let o = warden(dir, addr, &["customer", "list"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = stdout(&o);
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(rows.len(), 3, "{out}");
    assert!(
        rows[0].starts_with("acme-ai") && rows[0].contains("clear"),
        "{out}"
    );
    assert!(
        rows[1].starts_with("beta-labs") && rows[1].contains("clear"),
        "{out}"
    );
    assert!(
        rows[2].starts_with("cust-1042") && rows[2].contains("potential_match"),
        "{out}"
    );
    let o = warden(dir, addr, &orla);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(
        stdout(&o).contains("SCREENING_UNRESOLVED"),
        "{}",
        stdout(&o)
    );
    let o = warden(
        dir,
        addr,
        &[
            "customer",
            "resolve",
            "cust-1042",
            "false-positive",
            "--note",
            "date of birth differs from the listed person's",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let c = json(&warden(
        dir,
        addr,
        &["--json", "customer", "get", "cust-1042"],
    ));
    assert_eq!(c["screening"]["status"], "false_positive");
    assert_eq!(c["screening"]["hits"][0]["entry_id"], "SMP-0001");
    assert_eq!(c["screening"]["hits"][0]["matched_field"], "legal_name");
    assert_eq!(
        c["screening"]["resolution_note"],
        "date of birth differs from the listed person's"
    );
    assert_eq!(warden(dir, addr, &orla).status.code(), Some(0));
}

/// A suspend order stops the sample customer; the order's id.
fn suspend_order_stops_the_customer(dir: &Path, addr: &str, first_dep: &str) -> String {
    // Stopping a deployment. An operator suspends the sample customer: the
    // order is ACTIVE at once (suspend quorum 1) and suspends the
    // deployment admitted at the start, and new admissions are denied.
    let acme = acme_sample();
    let o = warden(
        dir,
        addr,
        &[
            "order",
            "issue",
            "--quiet",
            "--target",
            "customer=acme-ai",
            "--action",
            "suspend",
            "--reason",
            "abuse report 1142",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let order = stdout(&o).trim().to_string();
    assert!(order.starts_with("ord-"), "{order}");
    let o = warden(dir, addr, &["order", "get", &order]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = stdout(&o);
    assert_eq!(field(&out, "state"), Some("ACTIVE"), "{out}");
    assert_eq!(field(&out, "target"), Some("customer acme-ai"), "{out}");
    assert_eq!(field(&out, "approvals"), Some("1 of 1"), "{out}");
    assert_eq!(field(&out, "matched"), Some("1 deployment"), "{out}");
    assert!(out.contains(&format!("\n{:18}{first_dep}\n", "")), "{out}");
    assert_eq!(field(&out, "unacknowledged"), Some("1"), "{out}");
    assert!(out.contains(&format!("{first_dep}  waiting ")), "{out}");
    let o = warden(dir, addr, &acme);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    let out = stdout(&o);
    assert!(
        out.contains("ORDER_ACTIVE") && out.contains(&order),
        "{out}"
    );
    let d = json(&warden(
        dir,
        addr,
        &["--json", "deployment", "get", first_dep],
    ));
    assert_eq!(d["state"], "SUSPENDED");

    order
}

/// The scheduler's watch replays the order's events, then follows live.
fn watch_replays_then_follows(dir: &Path, addr: &str, order: &str, first_dep: &str) {
    let mut watch = Watch::start(dir, addr, &["--since", "0"]);
    let issued = watch.next_line();
    assert!(
        issued.starts_with("1  ") && issued.contains(" ISSUED ") && issued.contains(order),
        "{issued}"
    );
    assert!(issued.contains("SUSPEND    customer acme-ai"), "{issued}");
    let activated = watch.next_line();
    assert!(
        activated.starts_with("2  ") && activated.contains(" ACTIVATED "),
        "{activated}"
    );
    assert!(
        activated.ends_with(&format!("deployments: {first_dep}")),
        "{activated}"
    );
    // It stops the workload and acknowledges; the watch sees that live.
    let o = warden(dir, addr, &["order", "ack", order, first_dep]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = stdout(&o);
    assert_eq!(field(&out, "acknowledged"), Some("1"), "{out}");
    assert!(field(&out, "unacknowledged").is_none(), "{out}");
    let acked = watch.next_line();
    assert!(
        acked.starts_with("3  ") && acked.contains(" ACKNOWLEDGED "),
        "{acked}"
    );
    watch.interrupt();
    watch_ends_when_its_reader_is_gone(dir, addr);
}

/// Lifting takes two principals; a new deployment once lifted, its id.
fn lift_takes_two_principals(dir: &Path, addr: &str, order: &str, first_dep: &str) -> String {
    let acme = acme_sample();
    // Lifting takes two principals: after the operator the order is still
    // ACTIVE and admission still denied; the authority's approval lifts it.
    let o = warden(
        dir,
        addr,
        &[
            "order",
            "lift",
            order,
            "--reason",
            "account holder identified",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = stdout(&o);
    assert_eq!(field(&out, "state"), Some("ACTIVE"), "{out}");
    assert!(
        field(&out, "lift").is_some_and(|l| l.starts_with("1 of 2 approvals")),
        "{out}"
    );
    assert_eq!(warden(dir, addr, &acme).status.code(), Some(3));
    // The same principal again does not count twice.
    let o = warden(dir, addr, &["order", "lift", order]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(stderr(&o).contains("already approved"), "{}", stderr(&o));
    let o = warden(dir, addr, &["--role", "authority", "order", "lift", order]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = stdout(&o);
    assert_eq!(field(&out, "state"), Some("LIFTED"), "{out}");
    assert_eq!(field(&out, "lift"), Some("2 of 2 approvals"), "{out}");
    let d = json(&warden(
        dir,
        addr,
        &["--json", "deployment", "get", first_dep],
    ));
    assert_eq!(d["state"], "ACTIVE");
    let mut quiet = acme.clone();
    quiet.push("--quiet");
    let o = warden(dir, addr, &quiet);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let dep = stdout(&o).trim().to_string();

    dep
}

/// Terminating a deployment takes two; the terminate order's id.
fn terminate_takes_two(dir: &Path, addr: &str, dep: &str) -> String {
    // Terminating a deployment needs two: the operator issues, the
    // authority approves; then the deployment cannot renew.
    let o = warden(
        dir,
        addr,
        &[
            "order",
            "issue",
            "--quiet",
            "--target",
            &format!("deployment={dep}"),
            "--action",
            "terminate",
            "--reason",
            "serving prohibited content",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let terminate = stdout(&o).trim().to_string();
    let o = warden(dir, addr, &["order", "list", "--state", "pending"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = stdout(&o);
    assert!(
        out.starts_with(&terminate) && out.contains("approvals 1/2") && out.lines().count() == 1,
        "{out}"
    );
    let o = warden(
        dir,
        addr,
        &["--role", "authority", "order", "approve", &terminate],
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = stdout(&o);
    assert_eq!(field(&out, "state"), Some("ACTIVE"), "{out}");
    assert_eq!(field(&out, "approvals"), Some("2 of 2"), "{out}");
    assert!(out.contains(&format!("\n{:18}{dep}\n", "")), "{out}");
    let o = warden(dir, addr, &["renew", dep]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(stdout(&o).contains("ORDER_ACTIVE"), "{}", stdout(&o));

    terminate
}

/// Renew, revoke via CRL, renew fails; the revoked deployment's id.
fn revoked_certificate_cannot_renew(dir: &Path, addr: &str) -> String {
    let o = warden(
        dir,
        addr,
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
    assert_eq!(warden(dir, addr, &["renew", &dep]).status.code(), Some(0));
    let o = warden(
        dir,
        addr,
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
        addr,
        &["trust", "put-crl", "certs/dev/revoked.crl.pem"],
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let o = warden(dir, addr, &["renew", &dep]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(stdout(&o).contains("CERT_REVOKED"));

    let o = warden(dir, addr, &["deployment", "list"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(stdout(&o).contains(&dep));
    let o = warden(dir, addr, &["--json", "deployment", "get", &dep]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["deployment_id"], dep.as_str());
    assert_eq!(v["customer_id"], "acme-ai");

    dep
}

/// The auditor's check from the README: twice, the second proving the
/// log only grew since the first.
fn auditor_verifies_the_ledger(dir: &Path, addr: &str, dep: &str) {
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
    let o = warden(dir, addr, &verify);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(stdout(&o).contains("included: entry 0"), "{}", stdout(&o));
    assert_eq!(warden(dir, addr, &["renew", dep]).status.code(), Some(3));
    let o = warden(dir, addr, &verify);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(stdout(&o).contains("consistent: size"), "{}", stdout(&o));
    let o = warden(
        dir,
        addr,
        &["ledger", "entries", "--start", "0", "--count", "5"],
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(stdout(&o).lines().count(), 5);
}

/// A watch that will outlive a restart replays every order event.
fn watch_replays_every_event(dir: &Path, addr: &str) -> Watch {
    let mut watch = Watch::start(dir, addr, &["--json", "--since", "0"]);
    let kinds: Vec<String> = (1..=8)
        .map(|revision| {
            let v: serde_json::Value = serde_json::from_str(&watch.next_line()).unwrap();
            assert_eq!(v["revision"], revision, "{v}");
            v["kind"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "ISSUED",
            "ACTIVATED",
            "ACKNOWLEDGED",
            "LIFT_REQUESTED",
            "LIFTED",
            "ISSUED",
            "APPROVED",
            "ACTIVATED"
        ]
    );

    watch
}

/// SIGTERM drains and exits cleanly within the grace period.
fn sigterm_drains(dev: &mut Dev) {
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

/// Rotating the PII key while warden is stopped.
fn pii_key_rotates_while_stopped(dir: &Path, addr: &str) {
    let o = warden(
        dir,
        addr,
        &[
            "pii",
            "rotate",
            "--key-file",
            "certs/dev/pii.keys",
            "--id",
            "dev-2",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(stdout(&o).contains("appended PII key \"dev-2\""), "{o:?}");
    let keys = std::fs::read_to_string(dir.join("certs/dev/pii.keys")).unwrap();
    let ids: Vec<&str> = keys
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(ids, ["dev-1", "dev-2"]);
    let o = warden(
        dir,
        addr,
        &[
            "pii",
            "rotate",
            "--key-file",
            "certs/dev/pii.keys",
            "--id",
            "dev-2",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(stderr(&o).contains("already in the file"), "{o:?}");
}

/// Back on the same port, where the watch keeps trying: it resumes after
/// the last event it printed. The restarted server.
fn restarted_watch_resumes(dir: &Path, addr: &str, mut watch: Watch, terminate: &str) -> Dev {
    let port = addr.rsplit(':').next().unwrap().to_string();
    let dev = start_dev_on(dir, &format!("127.0.0.1:{port}"));
    assert_eq!(dev.addr, addr);
    let o = warden(
        dir,
        addr,
        &["order", "lift", terminate, "--reason", "appeal upheld"],
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let v: serde_json::Value = serde_json::from_str(&watch.next_line()).unwrap();
    assert_eq!(v["revision"], 9, "{v}");
    assert_eq!(v["kind"], "LIFT_REQUESTED", "{v}");
    assert_eq!(v["order_id"], terminate, "{v}");
    // Schedulers read orders without their free text.
    assert_eq!(v["order"]["lift_reason"], "", "{v}");
    assert_eq!(
        v["order"]["lift_approvals"].as_array().unwrap().len(),
        1,
        "{v}"
    );
    let err = std::fs::read_to_string(&watch.stderr).unwrap();
    assert!(
        err.contains("reconnecting") && err.contains("resuming after revision 8"),
        "{err}"
    );
    watch.interrupt();
    dev
}

/// Records sealed under the old PII key still open after the restart, and
/// new versions are sealed under the new one.
fn records_open_under_the_rotated_key(dir: &Path, addr: &str, v1_at: &str) {
    let before = json(&warden(
        dir,
        addr,
        &["--json", "customer", "get", "beta-labs"],
    ));
    assert_eq!(before["details"]["email"], "kyc@beta-labs.example");
    let o = warden(
        dir,
        addr,
        &[
            "customer",
            "update",
            "beta-labs",
            "examples/customers/beta-labs.update.json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let after = json(&warden(
        dir,
        addr,
        &["--json", "customer", "get", "beta-labs"],
    ));
    assert_eq!(after["version"], 4);
    assert_eq!(after["details"], before["details"]);
    let old = json(&warden(
        dir,
        addr,
        &["--json", "customer", "get", "beta-labs", "--as-of", v1_at],
    ));
    assert_eq!(old["details"]["email"], "kyc@beta-labs.example");
}

/// Runs one step of a walkthrough; if it fails, says which.
fn step<T>(name: &str, f: impl FnOnce() -> T) -> T {
    struct Named<'a>(&'a str);
    impl Drop for Named<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                eprintln!("walkthrough step failed: {}", self.0);
            }
        }
    }
    let _named = Named(name);
    f()
}

/// The sample model admitted for acme-ai in eu-west-1.
fn acme_sample() -> Vec<&'static str> {
    admit_sample(
        "acme-ai",
        &[
            "--model-dir",
            "certs/dev/sample-model",
            "--region",
            "eu-west-1",
        ],
    )
}

#[test]
fn readme_walkthrough_works_through_the_binary_and_sigterm_drains() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut dev = start_dev(dir);
    let addr = dev.addr.clone();
    let addr = addr.as_str();
    let first_dep = step("admit, allow, verify the licence", || {
        admit_allow_and_verify_the_licence(dir, addr)
    });
    step("deny with every reason", || {
        deny_with_every_reason(dir, addr)
    });
    step("metrics show the decisions", || {
        metrics_show_the_decisions(&dev.metrics)
    });
    let v1_at = step("customer refused until verified", || {
        customer_refused_until_verified(dir, addr)
    });
    step("bad customer files are refused", || {
        bad_customer_files_are_refused(dir, addr)
    });
    step("screening denies until resolved", || {
        screening_denies_until_resolved(dir, addr)
    });
    let order = step("suspend order stops the customer", || {
        suspend_order_stops_the_customer(dir, addr, &first_dep)
    });
    step("watch replays, then follows", || {
        watch_replays_then_follows(dir, addr, &order, &first_dep)
    });
    let dep = step("lift takes two principals", || {
        lift_takes_two_principals(dir, addr, &order, &first_dep)
    });
    let terminate = step("terminate takes two", || {
        terminate_takes_two(dir, addr, &dep)
    });
    let dep = step("revoked certificate cannot renew", || {
        revoked_certificate_cannot_renew(dir, addr)
    });
    step("auditor verifies the ledger", || {
        auditor_verifies_the_ledger(dir, addr, &dep)
    });
    let watch = step("watch replays every event", || {
        watch_replays_every_event(dir, addr)
    });
    step("SIGTERM drains", || sigterm_drains(&mut dev));
    step("PII key rotates while stopped", || {
        pii_key_rotates_while_stopped(dir, addr)
    });
    let _dev = step("restarted watch resumes", || {
        restarted_watch_resumes(dir, addr, watch, &terminate)
    });
    step("records open under the rotated key", || {
        records_open_under_the_rotated_key(dir, addr, &v1_at)
    });
}

/// RFC 3339 of Unix milliseconds, as `--at` takes it.
fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// The README's attribution walkthrough: an authority asks by deployment
/// and saves the report, asks by endpoint at two times, the saved report
/// verifies offline with the ledger key alone and fails after a one-byte
/// edit, and the auditor's list shows every request.
#[test]
fn attribution_reports_verify_offline_and_every_request_is_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let dev = start_dev(dir);
    let addr = dev.addr.clone();

    // A deployment that serves 10.0.0.5:443, then moves to 10.0.0.6:443.
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
                "--endpoint",
                "10.0.0.5:443",
            ],
        ),
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let dep = stdout(&o).trim().to_string();
    let o = warden(dir, &addr, &["renew", &dep, "--endpoint", "10.0.0.6:443"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    std::fs::write(
        dir.join("court-order.txt"),
        "Order of the court, case 2026/117\n",
    )
    .unwrap();
    let legal = |instrument: &'static str| {
        vec![
            "--case-ref",
            "CASE-2026-117",
            "--authority",
            "Example Cyber Unit",
            "--jurisdiction",
            "DE-BE",
            "--instrument",
            instrument,
            "--document",
            "court-order.txt",
        ]
    };

    // Malformed legal process is refused naming the flags, before anything
    // is sent (so nothing is recorded: the list below has two requests).
    let mut bad = vec!["attribute", "--deployment", dep.as_str()];
    bad.extend(legal("court-order"));
    let jurisdiction = bad.iter().position(|a| *a == "DE-BE").unwrap();
    bad[jurisdiction] = "Germany";
    let o = warden(dir, &addr, &bad);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(
        stderr(&o).contains("\n  --jurisdiction: an ISO 3166-1"),
        "{}",
        stderr(&o)
    );

    // By deployment, as JSON, saved to a file: the same JSON.
    let mut ask = vec!["--json", "attribute", "--deployment", dep.as_str()];
    ask.extend(legal("court-order"));
    ask.extend(["--out", "report.json"]);
    let o = warden(dir, &addr, &ask);
    let report = json(&o);
    let saved = std::fs::read_to_string(dir.join("report.json")).unwrap();
    assert_eq!(saved, stdout(&o));
    assert!(!report["flagged_for_review"].as_bool().unwrap());
    let d = &report["deployments"][0];
    assert_eq!(d["deployment_id"], dep.as_str());
    assert_eq!(d["customer_id"], "acme-ai");
    assert_eq!(
        d["identity_at_admission"]["record"]["legal_name"],
        "Acme AI Ltd"
    );
    assert_eq!(d["lifecycle"][0]["kind"], "ADMITTED");
    assert_eq!(d["lifecycle"][1]["kind"], "ENDPOINTS_CHANGED");
    assert_eq!(d["lifecycle"][1]["endpoints"][0], "10.0.0.6:443");
    let admitted_at = d["lifecycle"][0]["at"].as_i64().unwrap();
    let moved_at = d["lifecycle"][1]["at"].as_i64().unwrap();

    // It verifies offline with the ledger's public key alone.
    let verify = [
        "attribute",
        "--verify",
        "report.json",
        "--vkey",
        "certs/dev/ledger.vkey",
    ];
    let o = warden(dir, &addr, &verify);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(
        stdout(&o).starts_with("verified: 1 deployment(s), "),
        "{}",
        stdout(&o)
    );
    // One byte changed in the legal name, or in an entry, and it does not.
    for (what, from, to) in [
        ("the legal name", "\"Acme AI Ltd\"", "\"Acme AI Ltc\""),
        (
            "an entry",
            "{\\\"v\\\":1,\\\"at\\\":1",
            "{\\\"v\\\":1,\\\"at\\\":2",
        ),
    ] {
        assert!(saved.contains(from), "{what}: {from} not in the report");
        std::fs::write(dir.join("report.json"), saved.replacen(from, to, 1)).unwrap();
        let o = warden(dir, &addr, &verify);
        assert_eq!(o.status.code(), Some(1), "{what}: {o:?}");
        assert!(
            stderr(&o).starts_with("NOT VERIFIED: "),
            "{what}: {}",
            stderr(&o)
        );
        assert!(stdout(&o).is_empty(), "{what}: {}", stdout(&o));
    }

    // By endpoint: at admission the deployment held 10.0.0.5:443; once it
    // moved, it is still the last to have claimed it, but no longer held it.
    // An emergency request is answered and flagged.
    for (at, held, instrument) in [
        (admitted_at, "yes", "warrant"),
        (moved_at, "no", "emergency"),
    ] {
        let at = rfc3339_ms(at);
        let mut ask = vec![
            "attribute",
            "--endpoint",
            "10.0.0.5:443",
            "--at",
            at.as_str(),
        ];
        ask.extend(legal(instrument));
        let o = warden(dir, &addr, &ask);
        assert_eq!(o.status.code(), Some(0), "{o:?}");
        let out = stdout(&o);
        assert!(out.contains(&format!("\ndeployment {dep}\n")), "{out}");
        assert!(
            out.contains(&format!("\n  held endpoint at the time asked: {held}\n")),
            "{out}"
        );
        assert_eq!(
            out.contains("\nFLAGGED FOR REVIEW (emergency)\n"),
            instrument == "emergency",
            "{out}"
        );
        assert!(
            out.contains("    legal name            Acme AI Ltd\n"),
            "{out}"
        );
        assert!(out.contains("  ENDPOINTS_CHANGED  10.0.0.6:443  "), "{out}");
        assert!(
            out.contains("\nevidence: ")
                && out.contains(" ledger entries proved against checkpoint size "),
            "{out}"
        );
    }
    // An endpoint no deployment claimed.
    let mut ask = vec![
        "attribute",
        "--endpoint",
        "10.9.9.9",
        "--at",
        "2026-01-01T00:00:00Z",
    ];
    ask.extend(legal("subpoena"));
    let o = warden(dir, &addr, &ask);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(
        stdout(&o).contains("\nno deployment matched: endpoint 10.9.9.9 at 2026-01-01T00:00:00Z\n"),
        "{}",
        stdout(&o)
    );

    // The auditor sees every request, newest first, with what it disclosed;
    // identities only as commitments.
    let o = warden(dir, &addr, &["attribute", "requests"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = stdout(&o);
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(rows.len(), 4, "{out}");
    assert!(
        rows[0].contains("  SUBPOENA     \"CASE-2026-117\"  endpoint 10.9.9.9 at "),
        "{out}"
    );
    assert!(rows[0].ends_with("  disclosed 0"), "{out}");
    assert!(
        rows[1].contains("  EMERGENCY  ") && rows[1].ends_with("  disclosed 1  FLAGGED"),
        "{out}"
    );
    let request_id = report["request_id"].as_str().unwrap();
    assert!(
        rows[3].contains(&format!(
            "  {request_id}  spiffe://warden.dev/authority/dev  COURT_ORDER  "
        )) && rows[3].contains(&format!("  deployment {dep}  disclosed 1")),
        "{out}"
    );
    let o = warden(dir, &addr, &["--json", "attribute", "requests"]);
    let list = json(&o);
    let first = &list["requests"][3];
    assert_eq!(first["request_id"], request_id);
    assert_eq!(first["requesting_authority"], "Example Cyber Unit");
    assert_eq!(first["identities_disclosed"][0]["customer_id"], "acme-ai");
    assert!(first["identities_disclosed"][0]["commitment"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert!(!stdout(&o).contains("Acme AI Ltd"));
    drop(dev);
}

/// A file the CLI cannot use is named in the error, each cause once, and
/// before any connection is attempted.
#[test]
fn errors_name_the_file_that_could_not_be_used() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let digest = format!("sha256:{}", "a".repeat(64));
    let nowhere = "https://localhost:1";
    let not_found = "No such file or directory";
    for (args, named) in [
        (vec!["digest", "nodir"], "nodir"),
        (vec!["serve", "--config", "nocfg.toml"], "nocfg.toml"),
        (
            vec![
                "evaluator",
                "issue",
                "--ca",
                "noca.pem",
                "--ca-key",
                "nokey.pem",
                "--model-dir",
                "nodir",
                "--results",
                "nores.toml",
                "--out",
                "out.pem",
            ],
            "noca.pem",
        ),
        (
            vec!["restore", "nobackup.bin", "--data-dir", "d"],
            "nobackup.bin",
        ),
        (
            vec!["pii", "rotate", "--key-file", "nodir/keys", "--id", "k2"],
            "nodir/keys",
        ),
        (
            vec![
                "admit",
                "--customer",
                "c",
                "--chain",
                "nochain.pem",
                "--model-digest",
                &digest,
                "--region",
                "r",
                "--addr",
                nowhere,
            ],
            "nochain.pem",
        ),
        (
            vec!["customer", "add", "nocust.json", "--addr", nowhere],
            "nocust.json",
        ),
        (
            vec!["trust", "put-crl", "nocrl.pem", "--addr", nowhere],
            "nocrl.pem",
        ),
        (
            vec!["verify-licence", "nolicence.txt", "--vkey", "novkey"],
            "nolicence.txt",
        ),
    ] {
        let o = Command::new(WARDEN)
            .args(&args)
            .current_dir(dir)
            .output()
            .unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {o:?}");
        assert!(err.contains(named), "{args:?}: {named} missing from {err}");
        assert_eq!(err.matches(not_found).count(), 1, "{args:?}: {err}");
    }
}
