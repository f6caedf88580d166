//! Backup and restore end to end: a backup taken through the real server
//! while schedulers keep admitting, restored with the real binary into a
//! fresh directory, and a server started on it. The restored ledger must
//! verify and extend everything signed before the backup, every write
//! acknowledged before the backup began must be there, and the store must
//! be consistent with its own ledger. Damaged files, occupied directories
//! and non-admin callers are refused.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{write, TestEnv, TestServer};
use tonic::transport::Channel;
use warden::ledger::checkpoint::Checkpoint;
use warden::ledger::entry::{Entry, Event};
use warden::ledger::tree::{self, Hash};
use warden::proto;
use warden::proto::admission_client::AdmissionClient;
use warden::proto::attribution_client::AttributionClient;
use warden::proto::ledger_client::LedgerClient;
use warden::proto::operations_client::OperationsClient;
use warden::proto::orders_client::OrdersClient;

/// Concurrent admission loops while the backup is taken.
const WRITERS: usize = 4;

// ---------------------------------------------------------------------------
// Helpers

/// The `warden` binary with a client identity from the test's PKI.
struct Cli {
    dir: PathBuf,
}

impl Cli {
    fn new(env: &TestEnv) -> Self {
        let dir = env.path().join("cli");
        for (role, c) in &env.clients {
            write(&dir.join(format!("{role}.pem")), &c.cert_pem);
            write(&dir.join(format!("{role}.key")), &c.key_pem);
        }
        write(&dir.join("ca.pem"), env.mtls.cert_pem());
        Self { dir }
    }

    /// Runs `warden` as `role` against `server` (if any), on the blocking
    /// pool so the in-process server keeps answering.
    async fn run(&self, role: &str, server: Option<&TestServer>, args: &[&str]) -> Output {
        let mut all: Vec<String> = Vec::new();
        if let Some(s) = server {
            all.extend([
                "--addr".into(),
                format!("https://localhost:{}", s.addr.port()),
            ]);
        }
        for (flag, file) in [
            ("--cert", format!("{role}.pem")),
            ("--key", format!("{role}.key")),
            ("--ca", "ca.pem".into()),
        ] {
            all.push(flag.into());
            all.push(self.dir.join(file).display().to_string());
        }
        all.extend(args.iter().map(|a| a.to_string()));
        tokio::task::spawn_blocking(move || common::warden_command().args(&all).output().unwrap())
            .await
            .unwrap()
    }
}

impl Cli {
    /// `warden restore FILE --data-dir DIR [--force]`.
    async fn restore(&self, file: &Path, dir: &Path, force: bool) -> Output {
        let (file, dir) = (file.display().to_string(), dir.display().to_string());
        let mut args = vec!["restore", file.as_str(), "--data-dir", dir.as_str()];
        if force {
            args.push("--force");
        }
        self.run("admin", None, &args).await
    }

    /// `warden backup --data-dir DIR --out FILE`.
    async fn offline_backup(&self, dir: &Path, out: &Path) -> Output {
        let (dir, out) = (dir.display().to_string(), out.display().to_string());
        self.run(
            "admin",
            None,
            &["backup", "--data-dir", &dir, "--out", &out],
        )
        .await
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A config file for `env`'s keys and certificates with `data_dir`.
fn write_config(env: &TestEnv, data_dir: &Path, name: &str) -> PathBuf {
    let path = env.path().join(name);
    write(
        &path,
        common::config_toml(&warden::config::Config {
            data_dir: data_dir.to_path_buf(),
            ..env.config.clone()
        }),
    );
    path
}

/// Takes a backup through the Backup RPC as `role`, returning the file's
/// bytes.
async fn backup_bytes(
    env: &TestEnv,
    server: &TestServer,
    role: &str,
) -> Result<Vec<u8>, tonic::Status> {
    let mut ops = OperationsClient::new(env.channel(server, role).await);
    let mut stream = ops.backup(proto::BackupRequest {}).await?.into_inner();
    let mut bytes = Vec::new();
    while let Some(m) = stream.message().await? {
        bytes.extend_from_slice(&m.chunk);
    }
    Ok(bytes)
}

async fn checkpoint(env: &TestEnv, server: &TestServer) -> (Checkpoint, String) {
    let mut ledger = LedgerClient::new(env.channel(server, "auditor").await);
    let r = ledger
        .get_checkpoint(proto::GetCheckpointRequest { first_size: 0 })
        .await
        .unwrap()
        .into_inner();
    (
        Checkpoint::open(&r.checkpoint, &env.ledger).unwrap(),
        r.checkpoint,
    )
}

/// Every ledger entry up to `size`.
async fn all_entries(ledger: &mut LedgerClient<Channel>, size: u64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while (out.len() as u64) < size {
        let start = out.len() as u64;
        let r = ledger
            .get_entries(proto::GetEntriesRequest {
                start,
                count: (size - start).min(1000) as u32,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!r.entries.is_empty(), "entries stop at {start} of {size}");
        for e in r.entries {
            assert_eq!(e.index, out.len() as u64);
            out.push(e.data);
        }
    }
    out
}

/// Every deployment, as an operator sees them.
async fn all_deployments(env: &TestEnv, server: &TestServer) -> Vec<proto::Deployment> {
    let mut admission = AdmissionClient::new(env.channel(server, "operator").await);
    let mut out = Vec::new();
    let mut page_token = String::new();
    loop {
        let r = admission
            .list_deployments(proto::ListDeploymentsRequest {
                page_size: 1000,
                page_token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        out.extend(r.deployments);
        if r.next_page_token.is_empty() {
            return out;
        }
        page_token = r.next_page_token;
    }
}

async fn deployment(env: &TestEnv, server: &TestServer, id: &str) -> proto::Deployment {
    AdmissionClient::new(env.channel(server, "operator").await)
        .get_deployment(proto::GetDeploymentRequest {
            deployment_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

fn admit_at(env: &TestEnv, customer: &str, chain: &str, endpoint: &str) -> proto::AdmitRequest {
    let mut r = env.admit_request(customer, chain);
    if let Some(w) = r.workload.as_mut() {
        w.endpoints = vec![endpoint.into()];
    }
    r
}

fn now_ts() -> prost_types::Timestamp {
    let ms = warden::clock::now_millis();
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// An admission acknowledged by the server, and when the answer arrived.
struct Acked {
    at: Instant,
    deployment_id: String,
    ledger_index: u64,
}

// ---------------------------------------------------------------------------
// 1. A backup under load restores to a verified, complete, consistent store

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_taken_under_load_restores_to_a_store_that_verifies_and_holds_every_acknowledged_write(
) {
    let env = TestEnv::new();
    let cli = Cli::new(&env);
    let server = env.start().await;

    // Customers, one with a second version.
    for i in 0..3 {
        env.register(&server, &format!("bk-{i}"), proto::CustomerStatus::Verified)
            .await;
    }
    let mut kyc = env.customers(&server).await;
    kyc.update_customer(proto::UpdateCustomerRequest {
        customer_id: "bk-0".into(),
        expected_version: 1,
        legal_name: "Renamed Backup Holdings Ltd".into(),
        country: "DE".into(),
        details: Some(common::org_details()),
    })
    .await
    .unwrap();

    // Deployments: admitted, renewed, released, and one suspended by an order.
    let chain = env.chain(&env.leaf());
    let mut admission = env.admission(&server).await;
    let mut named = Vec::new();
    for i in 0..5 {
        let r = admission
            .admit(admit_at(&env, "bk-0", &chain, &format!("10.1.0.{i}:8000")))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.decision, proto::Decision::Allow as i32, "{r:?}");
        named.push(r.deployment_id);
    }
    for id in &named[..2] {
        admission
            .renew(proto::RenewRequest {
                deployment_id: id.clone(),
                endpoints: Vec::new(),
            })
            .await
            .unwrap();
    }
    admission
        .release(proto::ReleaseRequest {
            deployment_id: named[3].clone(),
        })
        .await
        .unwrap();
    let mut orders = OrdersClient::new(env.channel(&server, "operator").await);
    let order = orders
        .issue_order(proto::IssueOrderRequest {
            target: Some(proto::OrderTarget {
                kind: proto::OrderTargetKind::Deployment as i32,
                value: named[4].clone(),
            }),
            action: proto::OrderAction::Suspend as i32,
            reason: "misuse reported".into(),
            legal_basis: String::new(),
            expires_at: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(order.state, proto::OrderState::Active as i32);
    let mut before = Vec::new();
    for id in &named {
        before.push(deployment(&env, &server, id).await);
    }

    // An auditor's view of the log before the backup.
    let state = env.path().join("auditor.checkpoint");
    let state_arg = state.display().to_string();
    let vkey = env.ledger.to_text();
    let verify = ["ledger", "verify", "--vkey", &vkey, "--state", &state_arg];
    let o = cli.run("auditor", Some(&server), &verify).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let (signed_before, _) = checkpoint(&env, &server).await;

    // Schedulers keep admitting while the backup is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let mut admission = env.admission(&server).await;
        let (stop, acked, chain) = (stop.clone(), acked.clone(), chain.clone());
        let request = admit_at(&env, "bk-1", &chain, &format!("10.2.{w}.1:8000"));
        writers.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let mut r = request.clone();
                r.request_id = uuid::Uuid::new_v4().to_string();
                let a = admission.admit(r).await.unwrap().into_inner();
                assert_eq!(a.decision, proto::Decision::Allow as i32, "{a:?}");
                acked.lock().unwrap().push(Acked {
                    at: Instant::now(),
                    deployment_id: a.deployment_id,
                    ledger_index: a.ledger_index,
                });
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < 50 {
        assert!(Instant::now() < deadline, "the load did not get going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let file = env.path().join("warden.backup");
    let file_arg = file.display().to_string();
    let backup_began = Instant::now();
    let o = cli
        .run(
            "admin",
            Some(&server),
            &["--json", "backup", "--out", &file_arg],
        )
        .await;
    let backup_ended = Instant::now();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let taken: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let backup_size = taken["ledger_size"].as_u64().unwrap();
    // Let the writers run on past the backup, then stop them.
    let after = acked.lock().unwrap().len();
    while acked.lock().unwrap().len() < after + 20 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        acked.iter().any(|a| a.at > backup_began),
        "writes went on while the backup was taken"
    );
    server.stop().await;

    // The backup copies sealed records: no personal data in the clear.
    let bytes = std::fs::read(&file).unwrap();
    for clear in [
        "Renamed Backup Holdings",
        "Beispielstrasse",
        "kyc@example.com",
    ] {
        assert!(
            !bytes.windows(clear.len()).any(|w| w == clear.as_bytes()),
            "{clear:?} is in the backup in the clear"
        );
    }

    // Restore into a fresh directory, checked against the keys.
    let restored_dir = env.path().join("restored");
    let config_file = write_config(&env, &restored_dir, "restored.toml");
    let config_arg = config_file.display().to_string();
    let o = cli
        .run(
            "admin",
            None,
            &["--json", "restore", &file_arg, "--config", &config_arg],
        )
        .await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let restored: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(restored["ledger_size"].as_u64(), Some(backup_size));
    assert!(restored["verified_checkpoint"].is_string(), "{restored}");

    let mut config = env.config.clone();
    config.data_dir = restored_dir;
    let server = TestServer::start(&config).await;

    // The ledger: signed, of the backup's size, extending what was signed
    // before, and `warden ledger verify` agrees with the auditor's state.
    let (signed, _) = checkpoint(&env, &server).await;
    assert_eq!(signed.size, backup_size);
    let mut ledger = LedgerClient::new(env.channel(&server, "auditor").await);
    let proof = ledger
        .get_consistency_proof(proto::GetConsistencyProofRequest {
            first_size: signed_before.size,
            second_size: signed.size,
        })
        .await
        .unwrap()
        .into_inner()
        .proof
        .iter()
        .map(|h| Hash::try_from(h.as_slice()).unwrap())
        .collect::<Vec<_>>();
    tree::check_tree(
        &proof,
        signed.size,
        signed.root,
        signed_before.size,
        signed_before.root,
    )
    .unwrap();
    let o = cli.run("auditor", Some(&server), &verify).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!(
            "consistent: size {} -> {}",
            signed_before.size, signed.size
        )),
        "{}",
        stdout(&o)
    );

    // Every write acknowledged before the backup began is there.
    let before_backup: Vec<&Acked> = acked.iter().filter(|a| a.at < backup_began).collect();
    assert!(before_backup.len() >= 50);
    for a in &before_backup {
        assert!(
            a.ledger_index < signed.size,
            "entry {} missing",
            a.ledger_index
        );
        assert_eq!(
            deployment(&env, &server, &a.deployment_id)
                .await
                .customer_id,
            "bk-1"
        );
    }
    for (id, was) in named.iter().zip(&before) {
        assert_eq!(&deployment(&env, &server, id).await, was);
    }
    assert_eq!(before[0].renewals, 1);
    assert_eq!(before[4].state, proto::DeploymentState::Suspended as i32);

    // The store agrees with its ledger: exactly the deployments the ledger
    // admitted exist, and every deployment an entry names exists.
    let entries = all_entries(&mut ledger, signed.size).await;
    assert_eq!(entries.len() as u64, signed.size);
    let mut admitted = BTreeSet::new();
    let mut named_by_entries = BTreeSet::new();
    for bytes in &entries {
        match Entry::from_bytes(bytes).unwrap().event {
            Event::Admission {
                allowed: true,
                deployment_id: Some(id),
                ..
            } => {
                admitted.insert(id);
            }
            Event::Renewal { deployment_id, .. } | Event::Release { deployment_id, .. } => {
                named_by_entries.insert(deployment_id);
            }
            Event::Order { deployment_ids, .. } => named_by_entries.extend(deployment_ids),
            _ => {}
        }
    }
    let stored: BTreeSet<String> = all_deployments(&env, &server)
        .await
        .into_iter()
        .map(|d| d.deployment_id)
        .collect();
    assert_eq!(stored, admitted);
    assert!(named_by_entries.is_subset(&stored));
    // Acknowledged after the backup ended: present only if the backup's
    // ledger holds its entry.
    for a in acked.iter().filter(|a| a.at > backup_ended) {
        assert_eq!(
            stored.contains(&a.deployment_id),
            a.ledger_index < signed.size,
            "deployment {} and its entry {} disagree",
            a.deployment_id,
            a.ledger_index
        );
    }

    // Customers, sealed records opened with the same PII key.
    let c = env
        .customers(&server)
        .await
        .get_customer(proto::GetCustomerRequest {
            customer_id: "bk-0".into(),
            as_of: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (c.version, c.legal_name.as_str()),
        (2, "Renamed Backup Holdings Ltd")
    );
    assert_eq!(c.details.unwrap().email, "kyc@example.com");

    // The order, and the attribution indices.
    let o = OrdersClient::new(env.channel(&server, "operator").await)
        .get_order(proto::GetOrderRequest {
            order_id: order.order_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(o.state, proto::OrderState::Active as i32);
    assert_eq!(o.matched_deployments, vec![named[4].clone()]);
    let r = AttributionClient::new(env.channel(&server, "authority").await)
        .attribute(proto::AttributeRequest {
            legal_process: Some(proto::LegalProcess {
                case_reference: "CASE-BK-1".into(),
                requesting_authority: "Example Cyber Unit".into(),
                jurisdiction: "DE-BE".into(),
                instrument: proto::Instrument::Warrant as i32,
                document_sha256: "c0".repeat(32),
            }),
            selector: Some(proto::attribute_request::Selector::Endpoint(
                proto::EndpointSelector {
                    endpoint: "10.1.0.2:8000".into(),
                    at: Some(now_ts()),
                },
            )),
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.deployments.len(), 1, "{r:?}");
    assert_eq!(r.deployments[0].deployment_id, named[2]);
    assert!(r.deployments[0].held_endpoint);
    server.stop().await;
}

// ---------------------------------------------------------------------------
// 2. Damaged files are refused before anything is written

#[tokio::test]
async fn truncated_corrupted_and_foreign_files_are_refused_naming_the_problem() {
    let env = TestEnv::new();
    let cli = Cli::new(&env);
    let server = env.start().await;
    env.register(&server, "dmg-1", proto::CustomerStatus::Verified)
        .await;
    let good = backup_bytes(&env, &server, "admin").await.unwrap();
    server.stop().await;

    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "truncated",
            good[..good.len() - 100].to_vec(),
            "is truncated",
        ),
        ("cut-in-header", good[..20].to_vec(), "is truncated"),
        (
            "corrupted",
            {
                let mut b = good.clone();
                let mid = b.len() / 2;
                b[mid] ^= 0x20;
                b
            },
            "is corrupted: its SHA-256 checksum does not match",
        ),
        (
            "foreign",
            b"name,aliases\nnot a backup\n".to_vec(),
            "is not a warden backup file",
        ),
    ];
    for (name, bytes, expected) in cases {
        let file = env.path().join(format!("{name}.backup"));
        write(&file, &bytes);
        let target = env.path().join(format!("{name}-data"));
        let o = cli.restore(&file, &target, false).await;
        assert_eq!(o.status.code(), Some(1), "{name}: {}", stdout(&o));
        assert!(stderr(&o).contains(expected), "{name}: {}", stderr(&o));
        assert!(
            !target.exists(),
            "{name}: restore wrote {}",
            target.display()
        );
    }

    // The intact file restores, and a server starts on it.
    let file = env.path().join("good.backup");
    write(&file, &good);
    let target = env.path().join("good-data");
    let o = cli.restore(&file, &target, false).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut config = env.config.clone();
    config.data_dir = target;
    let server = TestServer::start(&config).await;
    let c = env
        .customers(&server)
        .await
        .get_customer(proto::GetCustomerRequest {
            customer_id: "dmg-1".into(),
            as_of: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(c.legal_name, "dmg-1 Ltd");
    server.stop().await;
}

// ---------------------------------------------------------------------------
// 3. Occupied directories, running servers, and the offline path

#[tokio::test]
async fn restore_refuses_occupied_directories_and_a_running_warden_and_force_replaces_a_stopped_store(
) {
    let env = TestEnv::new();
    let cli = Cli::new(&env);
    let server = env.start().await;
    env.register(&server, "dir-1", proto::CustomerStatus::Verified)
        .await;
    let file = env.path().join("dir.backup");
    write(&file, backup_bytes(&env, &server, "admin").await.unwrap());

    // A directory with something in it.
    let occupied = env.path().join("occupied");
    write(&occupied.join("notes.txt"), "keep me");
    let o = cli.restore(&file, &occupied, false).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("is not empty"), "{}", stderr(&o));
    let o = cli.restore(&file, &occupied, true).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("does not hold a warden store"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read_to_string(occupied.join("notes.txt")).unwrap(),
        "keep me"
    );

    // The directory a warden is serving from, even with --force; and the
    // offline backup of it.
    let o = cli.restore(&file, &env.config.data_dir, true).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("a warden is running on"),
        "{}",
        stderr(&o)
    );
    let offline = env.path().join("offline.backup");
    let o = cli.offline_backup(&env.config.data_dir, &offline).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("a warden is running on"),
        "{}",
        stderr(&o)
    );
    assert!(!offline.exists());

    // More writes, then stop: --force puts the store back as it was at the
    // backup, and the offline backup of the stopped store restores too.
    env.register(&server, "dir-2", proto::CustomerStatus::Verified)
        .await;
    let (at_stop, _) = checkpoint(&env, &server).await;
    server.stop().await;
    let o = cli.offline_backup(&env.config.data_dir, &offline).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = cli.restore(&file, &env.config.data_dir, true).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let server = env.start().await;
    let mut kyc = env.customers(&server).await;
    let get = |id: &str| proto::GetCustomerRequest {
        customer_id: id.into(),
        as_of: None,
    };
    kyc.get_customer(get("dir-1")).await.unwrap();
    assert_eq!(
        kyc.get_customer(get("dir-2")).await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    server.stop().await;

    let fresh = env.path().join("from-offline");
    let o = cli.restore(&offline, &fresh, false).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut config = env.config.clone();
    config.data_dir = fresh;
    let server = TestServer::start(&config).await;
    let (restored, _) = checkpoint(&env, &server).await;
    assert_eq!(restored, at_stop);
    env.customers(&server)
        .await
        .get_customer(get("dir-2"))
        .await
        .unwrap();
    server.stop().await;
}

// ---------------------------------------------------------------------------
// 4. Only admins may take a backup

#[tokio::test]
async fn only_admin_principals_may_take_a_backup() {
    let env = TestEnv::new();
    let server = env.start().await;
    for role in common::ROLES.into_iter().filter(|r| *r != "admin") {
        let e = backup_bytes(&env, &server, role).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{role}: {e:?}");
    }
    let bytes = backup_bytes(&env, &server, "admin").await.unwrap();
    assert!(bytes.starts_with(b"WARDENBK"));
    server.stop().await;
}
