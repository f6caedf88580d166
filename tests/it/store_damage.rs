//! Damage to a data directory, through the real binary. A populated store
//! is copied and the copy damaged: a record whose checksum no longer
//! matches, a flipped byte or a cut in sled's `db` file, a file that kept
//! only its newest segment. `warden serve` is then started on the copy. It
//! must either refuse to start, exit 1 with a message that names the
//! directory and says to restore from a backup (never a panic or a
//! backtrace), or serve and answer a read of a damaged record with
//! DATA_LOSS naming it — never UNAVAILABLE ("retry"), never NOT_FOUND — and
//! report NOT_SERVING from then on. `warden store check` finds what the
//! server found, and passes an intact copy.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::BTreeMap;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use common::{connect, warden_command, TestEnv};
use warden::proto;
use warden::proto::admission_client::AdmissionClient;

const CUSTOMER: &str = "damage-co";
/// sled's segment size (its default; warden does not change it).
const SEGMENT: u64 = 512 * 1024;

/// Deployments as the intact server returned them, by id.
type Expected = BTreeMap<String, proto::Deployment>;

/// A test environment whose leases outlast the test, so every deployment
/// reads back the same throughout.
fn env() -> TestEnv {
    TestEnv::with_lease(3600)
}

/// Registers a VERIFIED customer and admits `n` deployments (8 at a time)
/// on the in-process server, then stops it. Returns what it answered for
/// each deployment afterwards.
async fn populate(env: &TestEnv, n: usize) -> Expected {
    let server = env.start().await;
    env.register(&server, CUSTOMER, proto::CustomerStatus::Verified)
        .await;
    let chain = env.sample_chain();
    let admission = env.admission(&server).await;
    let ids: Vec<String> = stream::iter(0..n)
        .map(|_| {
            let mut a = admission.clone();
            let req = env.admit_request(CUSTOMER, &chain);
            async move {
                let r = a.admit(req).await.unwrap().into_inner();
                assert!(!r.deployment_id.is_empty(), "{r:?}");
                r.deployment_id
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut operator = AdmissionClient::new(env.channel(&server, "operator").await);
    let mut out = Expected::new();
    for id in ids {
        let d = operator
            .get_deployment(proto::GetDeploymentRequest {
                deployment_id: id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        out.insert(id, d);
    }
    server.stop().await;
    out
}

/// Admits one more deployment on its own (the last write of the store) and
/// stops; returns its id.
async fn admit_last(env: &TestEnv) -> String {
    let server = env.start().await;
    let req = env.admit_request(CUSTOMER, &env.sample_chain());
    let id = env.admit(&server, req).await.deployment_id;
    server.stop().await;
    id
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// A copy of the environment's data directory, named `name`.
fn copy_of(env: &TestEnv, name: &str) -> PathBuf {
    let to = env.path().join(name);
    copy_dir(&env.config.data_dir, &to);
    to
}

fn db(dir: &Path) -> PathBuf {
    dir.join("db")
}

fn flip(file: &Path, at: u64) {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .unwrap();
    let mut b = [0u8];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 0xff]).unwrap();
}

/// One kind of damage to sled's file.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// Every bit of the byte at this offset flipped.
    Flip(u64),
    /// The file cut to this length.
    Cut(u64),
}

impl Damage {
    fn tag(self) -> String {
        match self {
            Damage::Flip(at) => format!("flip-{at}"),
            Damage::Cut(len) => format!("cut-{len}"),
        }
    }

    fn apply(self, file: &Path) {
        match self {
            Damage::Flip(at) => flip(file, at),
            Damage::Cut(len) => cut(file, len),
        }
    }
}

fn cut(file: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// Where `needle` last occurs in `file`: the newest copy sled wrote.
fn last_offset(file: &Path, needle: &[u8]) -> u64 {
    let bytes = std::fs::read(file).unwrap();
    let at = bytes
        .windows(needle.len())
        .rposition(|w| w == needle)
        .unwrap_or_else(|| {
            panic!(
                "{} not in {}",
                String::from_utf8_lossy(needle),
                file.display()
            )
        });
    at as u64
}

/// A `warden serve` child process; killed and reaped on drop.
struct Serving {
    child: Child,
    addr: SocketAddr,
    metrics: SocketAddr,
    log: PathBuf,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serving {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

enum Outcome {
    Refused { status: ExitStatus, stderr: String },
    Serving(Serving),
}

/// The server's health status for `service` ("" for the whole server), if
/// it answers.
async fn health(env: &TestEnv, addr: SocketAddr, service: &str) -> Option<ServingStatus> {
    let c = &env.clients["auditor"];
    let ch = connect(addr, &env.mtls.cert_pem(), Some((&c.cert_pem, &c.key_pem)))
        .await
        .ok()?;
    let r = HealthClient::new(ch)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .ok()?;
    Some(r.into_inner().status())
}

/// Starts `warden serve` on `data_dir` (with a backtrace asked for, should
/// anything panic) and waits until it exits or answers a health check.
async fn serve(env: &TestEnv, data_dir: &Path, tag: &str) -> Outcome {
    for attempt in 0..3 {
        let [addr, metrics] = common::loopback_addrs();
        let config = warden::config::Config {
            listen: addr,
            data_dir: data_dir.to_path_buf(),
            ..env.config.clone()
        };
        let text = format!(
            "metrics_listen = \"{metrics}\"\n{}",
            common::config_toml(&config)
        );
        let path = env.path().join(format!("{tag}-{attempt}.toml"));
        std::fs::write(&path, text).unwrap();
        let log = env.path().join(format!("{tag}-{attempt}.log"));
        let child = warden_command()
            .args(["serve", "--config"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut s = Serving {
            child,
            addr,
            metrics,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = s.child.try_wait().unwrap() {
                let stderr = s.log();
                if stderr.contains("cannot listen") {
                    break;
                }
                return Outcome::Refused { status, stderr };
            }
            assert!(
                Instant::now() < deadline,
                "warden serve ({tag}) neither served nor exited:\n{}",
                s.log()
            );
            if health(env, addr, "").await.is_some() {
                return Outcome::Serving(s);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    panic!("warden serve ({tag}) found no free port in 3 attempts");
}

/// A refusal as an operator should see it: exit status 1, the directory
/// named, what to do said, and nothing of a panic.
fn assert_clear_refusal(status: ExitStatus, stderr: &str, dir: &Path) {
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&dir.display().to_string()), "{stderr}");
    assert!(stderr.contains("is damaged"), "{stderr}");
    assert!(stderr.contains("warden restore"), "{stderr}");
    assert!(stderr.contains("warden store check"), "{stderr}");
    assert_no_panic(stderr);
}

fn assert_no_panic(stderr: &str) {
    for sign in ["panicked", "stack backtrace", "RUST_BACKTRACE"] {
        assert!(!stderr.contains(sign), "{sign}:\n{stderr}");
    }
}

/// Reads every expected deployment: each must come back exactly as the
/// intact server answered, or be DATA_LOSS naming it. Returns the ids that
/// were DATA_LOSS.
async fn read_back(env: &TestEnv, s: &Serving, expected: &Expected) -> Vec<String> {
    let c = &env.clients["operator"];
    let ch = connect(
        s.addr,
        &env.mtls.cert_pem(),
        Some((&c.cert_pem, &c.key_pem)),
    )
    .await
    .unwrap();
    let mut operator = AdmissionClient::new(ch);
    let mut lost = Vec::new();
    for (id, want) in expected {
        match operator
            .get_deployment(proto::GetDeploymentRequest {
                deployment_id: id.clone(),
            })
            .await
        {
            Ok(r) => assert_eq!(&r.into_inner(), want, "{id}"),
            Err(e) if e.code() == Code::DataLoss => {
                assert!(e.message().contains(id.as_str()), "{e:?}");
                assert!(!e.message().contains("retry"), "{e:?}");
                lost.push(id.clone());
            }
            Err(e) => panic!("{id}: {e:?}\n{}", s.log()),
        }
    }
    lost
}

/// Waits until the server reports `status` for itself and for the
/// Admission service.
async fn await_health(env: &TestEnv, s: &Serving, status: ServingStatus) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let whole = health(env, s.addr, "").await;
        let admission = health(env, s.addr, "warden.v1.Admission").await;
        if whole == Some(status) && admission == Some(status) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "health is {whole:?} / {admission:?}, not {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `warden_store_corruption_total` from the metrics endpoint.
async fn corruption_metric(s: &Serving) -> u64 {
    let mut c = tokio::net::TcpStream::connect(s.metrics).await.unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: warden\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    c.read_to_string(&mut body).await.unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix("warden_store_corruption_total "))
        .unwrap_or_else(|| panic!("no corruption metric:\n{body}"))
        .parse()
        .unwrap()
}

/// `warden store check --data-dir DIR --vkey KEY`: exit code and stdout.
fn store_check(env: &TestEnv, dir: &Path) -> (Option<i32>, String) {
    let o = warden_command()
        .args(["store", "check", "--data-dir"])
        .arg(dir)
        .args(["--vkey", &env.ledger.to_text()])
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_no_panic(&stderr);
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    (o.status.code(), format!("{stdout}{stderr}"))
}

#[tokio::test]
async fn a_record_failing_its_checksum_is_data_loss_and_the_server_stops_reporting_serving() {
    let env = env();
    let expected = populate(&env, 6).await;
    let victim = expected.keys().next().unwrap().clone();
    let damaged = copy_of(&env, "damaged");
    {
        // One byte of the stored record changes under its checksum.
        let db = sled::open(&damaged).unwrap();
        let tree = db.open_tree("deployments").unwrap();
        let mut value = tree.get(&victim).unwrap().unwrap().to_vec();
        value[20] ^= 0x01;
        tree.insert(victim.as_bytes(), value).unwrap();
        db.flush().unwrap();
    }

    let (code, out) = store_check(&env, &env.config.data_dir);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("no damage found"), "{out}");
    let (code, out) = store_check(&env, &damaged);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!("deployments/{victim}: checksum mismatch")),
        "{out}"
    );

    let Outcome::Serving(s) = serve(&env, &damaged, "checksum").await else {
        panic!("warden refused a store whose damage nothing reads at start");
    };
    await_health(&env, &s, ServingStatus::Serving).await;
    assert_eq!(corruption_metric(&s).await, 0);
    let lost = read_back(&env, &s, &expected).await;
    assert_eq!(lost, vec![victim.clone()]);
    await_health(&env, &s, ServingStatus::NotServing).await;
    assert!(corruption_metric(&s).await >= 1);
    let log = s.log();
    assert!(log.contains(&format!("deployments/{victim}")), "{log}");
    assert_no_panic(&log);
}

#[tokio::test]
async fn a_store_that_lost_acknowledged_writes_refuses_to_start() {
    let env = env();
    populate(&env, 6).await;
    let last = admit_last(&env).await;
    // The last stored copy of the last deployment is in the last commit:
    // sled takes damage there for a torn write and drops that commit.
    let flipped = copy_of(&env, "flipped");
    let at = last_offset(&db(&flipped), last.as_bytes());
    flip(&db(&flipped), at + 3);
    let truncated = copy_of(&env, "truncated");
    cut(&db(&truncated), at);

    for dir in [&flipped, &truncated] {
        let (code, out) = store_check(&env, dir);
        assert_eq!(code, Some(1), "{out}");
        assert!(out.contains("ledger: the store holds"), "{out}");
        assert!(out.contains("are missing"), "{out}");
        let Outcome::Refused { status, stderr } = serve(&env, dir, "lost").await else {
            panic!("warden served a store that lost an acknowledged write");
        };
        assert_clear_refusal(status, &stderr, dir);
        assert!(
            stderr.contains("writes acknowledged after entry"),
            "{stderr}"
        );
    }
}

/// A store of several sled segments that was opened again after its last
/// write, so sled keeps a snapshot of where every page is.
async fn populate_segments(env: &TestEnv) -> Expected {
    let expected = populate(env, 100).await;
    env.start().await.stop().await;
    let len = std::fs::metadata(db(&env.config.data_dir)).unwrap().len();
    assert!(len > SEGMENT, "only {len} bytes");
    expected
}

#[tokio::test]
async fn a_panic_inside_sled_at_start_is_a_clear_refusal_and_a_restore_over_it_works() {
    let env = env();
    let expected = populate_segments(&env).await;
    let backup = env.path().join("store.backup");
    let o = warden_command()
        .args(["backup", "--data-dir"])
        .arg(&env.config.data_dir)
        .arg("--out")
        .arg(&backup)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    // The file keeps only its newest segment, at its start: sled finds its
    // log's tip, then pages its snapshot places in segments that are gone,
    // and panics (index out of bounds) instead of returning an error.
    let damaged = copy_of(&env, "damaged");
    let bytes = std::fs::read(db(&damaged)).unwrap();
    let newest = ((bytes.len() as u64 - 1) / SEGMENT) * SEGMENT;
    std::fs::write(db(&damaged), &bytes[newest as usize..]).unwrap();
    let checked = copy_of(&env, "checked");
    std::fs::copy(db(&damaged), db(&checked)).unwrap();

    let Outcome::Refused { status, stderr } = serve(&env, &damaged, "panic").await else {
        panic!("warden served a store sled cannot read");
    };
    assert_clear_refusal(status, &stderr, &damaged);
    assert!(stderr.contains("sled failed reading its files"), "{stderr}");

    let (code, out) = store_check(&env, &checked);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("sled failed reading its files"), "{out}");

    // What the refusal says to do works on this very directory: a backup
    // restored over it with --force, and warden serves everything again.
    let o = warden_command()
        .args(["restore"])
        .arg(&backup)
        .arg("--data-dir")
        .arg(&damaged)
        .arg("--force")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let Outcome::Serving(s) = serve(&env, &damaged, "restored").await else {
        panic!("warden refused the restored store");
    };
    assert!(read_back(&env, &s, &expected).await.is_empty());
    await_health(&env, &s, ServingStatus::Serving).await;
}

#[tokio::test]
async fn damage_anywhere_in_the_storage_file_is_refused_or_reported_never_retried() {
    let env = env();
    let expected = populate_segments(&env).await;
    let len = std::fs::metadata(db(&env.config.data_dir)).unwrap().len();
    let mut damages = Vec::new();
    for tenth in [1, 3, 5, 7, 9] {
        damages.push(Damage::Flip(len * tenth / 10));
    }
    damages.push(Damage::Flip(len - 64));
    for tenth in [3, 8] {
        damages.push(Damage::Cut(len * tenth / 10));
    }
    for damage in damages {
        let tag = damage.tag();
        let dir = copy_of(&env, &tag);
        damage.apply(&db(&dir));
        let checked = env.path().join(format!("{tag}-checked"));
        copy_dir(&dir, &checked);
        let (check_code, check_out) = store_check(&env, &checked);
        let found = match serve(&env, &dir, &tag).await {
            Outcome::Refused { status, stderr } => {
                assert_clear_refusal(status, &stderr, &dir);
                true
            }
            Outcome::Serving(s) => {
                let lost = read_back(&env, &s, &expected).await;
                if !lost.is_empty() {
                    await_health(&env, &s, ServingStatus::NotServing).await;
                }
                assert_no_panic(&s.log());
                !lost.is_empty()
            }
        };
        // What the server found, the check finds.
        if found {
            assert_eq!(check_code, Some(1), "{tag}: {check_out}");
        }
    }
}
