//! Crash safety through the real binary: `warden serve` under concurrent
//! admission, order (issue, approve, acknowledge) and customer (register,
//! update) writes is SIGKILLed again and again. Every decision it answered
//! must still be there after the restart, unchanged, with its ledger entry
//! provably included in the latest signed checkpoint; every order and
//! customer write it answered must be there as answered; and every
//! checkpoint seen before a crash must be a prefix of every checkpoint
//! after it.
//!
//! `WARDEN_CRASH_CYCLES` sets the number of kill/restart cycles (22 by
//! default; `.ci/crash-cycles` runs 100).
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{connect, TestEnv};
use futures_util::stream::{self, StreamExt as _};
use tonic::transport::Channel;
use warden::ledger::checkpoint::Checkpoint;
use warden::ledger::tree::{self, Hash};
use warden::proto;
use warden::proto::admission_client::AdmissionClient;
use warden::proto::customers_client::CustomersClient;
use warden::proto::ledger_client::LedgerClient;
use warden::proto::orders_client::OrdersClient;

const WARDEN: &str = env!("CARGO_BIN_EXE_warden");
const CUSTOMER: &str = "crash-co";
/// Kill/restart cycles unless `WARDEN_CRASH_CYCLES` says otherwise.
const DEFAULT_CYCLES: u64 = 22;
/// Concurrent admission loops per cycle.
const WORKERS: usize = 24;
/// Concurrent order loops (admit, issue, approve, acknowledge) per cycle.
const ORDER_WORKERS: usize = 3;
/// Concurrent customer loops (register, update, update) per cycle.
const CUSTOMER_WORKERS: usize = 3;
/// Acknowledged decisions, orders and customers re-checked after each
/// restart (the newest ones); all of them are checked after the last.
const SAMPLE: usize = 20;
/// Requests in flight at the kill, retried after the restart, per cycle.
const IN_FLIGHT_RETRIES: usize = 8;
/// Any single RPC.
const RPC_TIMEOUT: Duration = Duration::from_secs(15);
/// The whole test, per cycle; a safety net, the run normally takes a
/// fraction of it.
const DEADLINE_PER_CYCLE: Duration = Duration::from_secs(11);

fn cycles() -> u64 {
    match std::env::var("WARDEN_CRASH_CYCLES") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("WARDEN_CRASH_CYCLES={v:?} is not a number")),
        Err(_) => DEFAULT_CYCLES,
    }
}

/// An Admit the server answered OK: the request as sent and its answer.
#[derive(Clone, Debug)]
struct Ack {
    request: proto::AdmitRequest,
    decision_id: String,
    deployment_id: String,
    ledger_index: u64,
    decision: i32,
}

impl Ack {
    fn new(request: proto::AdmitRequest, r: proto::AdmitResponse) -> Self {
        Self {
            request,
            decision_id: r.decision_id,
            deployment_id: r.deployment_id,
            ledger_index: r.ledger_index,
            decision: r.decision,
        }
    }
}

#[derive(Clone)]
struct Clients {
    scheduler: AdmissionClient<Channel>,
    operator: AdmissionClient<Channel>,
    auditor: LedgerClient<Channel>,
    kyc: CustomersClient<Channel>,
    /// Orders as the operator (issues), the authority (approves: a second
    /// principal, as the terminate quorum of 2 needs) and the scheduler
    /// (acknowledges the deployments it admitted).
    issuer: OrdersClient<Channel>,
    approver: OrdersClient<Channel>,
    acker: OrdersClient<Channel>,
    /// Writes acknowledged since this server started.
    progress: Arc<Progress>,
}

/// Acknowledged writes of each kind in the current cycle: the kill waits
/// until there is at least one of each, so every cycle crashes with all
/// three kinds of write under way.
#[derive(Default)]
struct Progress {
    decisions: AtomicUsize,
    order_writes: AtomicUsize,
    customer_writes: AtomicUsize,
}

impl Progress {
    fn all_seen(&self) -> bool {
        [&self.decisions, &self.order_writes, &self.customer_writes]
            .iter()
            .all(|n| n.load(Ordering::SeqCst) > 0)
    }
}

/// A `warden serve` child process; killed and reaped on drop.
struct Server {
    child: Child,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_text(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let tail = text.len().saturating_sub(8_000);
    let start = (tail..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].to_string()
}

/// Awaits `f`, failing the test if it takes longer than `RPC_TIMEOUT`.
async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(RPC_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {RPC_TIMEOUT:?}"))
}

/// Writes a config for `env.config` listening on `addr`.
fn write_config(env: &TestEnv, addr: SocketAddr) -> PathBuf {
    let c = &env.config;
    let text = common::config_toml(&warden::config::Config {
        listen: addr,
        ..c.clone()
    });
    let path = env.path().join("crash.toml");
    std::fs::write(&path, text).unwrap();
    // The file must say what the harness config says.
    let loaded = warden::config::Config::load(&path).unwrap();
    assert_eq!(loaded.data_dir, c.data_dir);
    assert_eq!(loaded.listen, addr);
    path
}

async fn channel(env: &TestEnv, addr: SocketAddr, role: &str) -> Channel {
    let c = &env.clients[role];
    connect(addr, &env.mtls.cert_pem(), Some((&c.cert_pem, &c.key_pem)))
        .await
        .unwrap()
}

/// Starts `warden serve` and waits until it answers GetCheckpoint. Fails the
/// test, with the server's stderr, if it exits or does not come up.
async fn start_server(env: &TestEnv, tag: &str) -> (Server, Clients) {
    for attempt in 0..3 {
        let [addr] = common::loopback_addrs();
        let config = write_config(env, addr);
        let log = env.path().join(format!("server-{tag}-{attempt}.log"));
        let child = Command::new(WARDEN)
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut server = Server { child, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                let text = log_text(&server.log);
                if text.contains("cannot listen") {
                    // Someone took the port between our probe and the bind.
                    break;
                }
                panic!("warden serve ({tag}) exited with {status} before serving:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "warden serve ({tag}) did not answer within 30 s:\n{}",
                log_text(&server.log)
            );
            let probe = async {
                let ch = connect(
                    addr,
                    &env.mtls.cert_pem(),
                    Some((
                        &env.clients["auditor"].cert_pem,
                        &env.clients["auditor"].key_pem,
                    )),
                )
                .await
                .ok()?;
                let mut auditor = LedgerClient::new(ch);
                auditor
                    .get_checkpoint(proto::GetCheckpointRequest { first_size: 0 })
                    .await
                    .ok()
                    .map(|_| auditor)
            };
            if let Ok(Some(auditor)) = tokio::time::timeout(Duration::from_secs(5), probe).await {
                let clients = Clients {
                    scheduler: AdmissionClient::new(channel(env, addr, "scheduler").await),
                    operator: AdmissionClient::new(channel(env, addr, "operator").await),
                    kyc: CustomersClient::new(channel(env, addr, "kyc").await),
                    auditor,
                    issuer: OrdersClient::new(channel(env, addr, "operator").await),
                    approver: OrdersClient::new(channel(env, addr, "authority").await),
                    acker: OrdersClient::new(channel(env, addr, "scheduler").await),
                    progress: Arc::default(),
                };
                return (server, clients);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    panic!("warden serve ({tag}) could not bind a free port in 3 attempts");
}

/// Opens and checks a checkpoint response.
fn open_checkpoint(env: &TestEnv, r: &proto::GetCheckpointResponse) -> Checkpoint {
    let cp = Checkpoint::open(&r.checkpoint, &env.ledger)
        .unwrap_or_else(|e| panic!("checkpoint does not verify: {e}\n{}", r.checkpoint));
    assert_eq!(cp.size, r.size, "checkpoint size field disagrees with note");
    assert_eq!(
        cp.root.as_slice(),
        r.root_hash.as_slice(),
        "checkpoint root field disagrees with note"
    );
    cp
}

fn to_hashes(v: &[Vec<u8>]) -> Vec<Hash> {
    v.iter()
        .map(|h| h.as_slice().try_into().expect("proof hash is not 32 bytes"))
        .collect()
}

/// Every checkpoint seen, by size; one root per size or the log forked.
#[derive(Default)]
struct Seen(BTreeMap<u64, (Hash, String)>);

impl Seen {
    fn add(&mut self, cp: &Checkpoint, note: &str) {
        if let Some((root, first)) = self.0.get(&cp.size) {
            assert_eq!(
                root, &cp.root,
                "two different signed roots for size {}:\n{first}\n{note}",
                cp.size
            );
        } else {
            self.0.insert(cp.size, (cp.root, note.to_string()));
        }
    }

    fn max_size(&self) -> u64 {
        self.0.keys().next_back().copied().unwrap_or(0)
    }
}

/// The latest checkpoint must extend every checkpoint seen so far.
async fn check_consistency(env: &TestEnv, clients: &Clients, seen: &mut Seen) -> Checkpoint {
    let mut auditor = clients.auditor.clone();
    let r = within(
        "GetCheckpoint",
        auditor.get_checkpoint(proto::GetCheckpointRequest { first_size: 0 }),
    )
    .await
    .unwrap()
    .into_inner();
    let latest = open_checkpoint(env, &r);
    assert!(
        latest.size >= seen.max_size(),
        "the log shrank: latest size {} after having signed size {}",
        latest.size,
        seen.max_size()
    );
    let olds: Vec<(u64, Hash)> = seen.0.iter().map(|(s, (h, _))| (*s, *h)).collect();
    let latest_ref = &latest;
    stream::iter(olds)
        .map(|(old_size, old_root)| {
            let mut auditor = clients.auditor.clone();
            async move {
                let r = within(
                    "GetConsistencyProof",
                    auditor.get_consistency_proof(proto::GetConsistencyProofRequest {
                        first_size: old_size,
                        second_size: latest_ref.size,
                    }),
                )
                .await
                .unwrap_or_else(|e| panic!("consistency proof from {old_size}: {e}"))
                .into_inner();
                assert_eq!(r.first_size, old_size);
                assert_eq!(r.second_size, latest_ref.size);
                tree::check_tree(
                    &to_hashes(&r.proof),
                    latest_ref.size,
                    latest_ref.root,
                    old_size,
                    old_root,
                )
                .unwrap_or_else(|e| {
                    panic!(
                        "checkpoint of size {old_size} seen before a crash is not a prefix \
                         of the latest of size {}: {e}",
                        latest_ref.size
                    )
                });
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    seen.add(&latest, &r.checkpoint);
    latest
}

/// One acknowledged decision is still there, unchanged and in the ledger
/// under `latest`.
async fn check_ack(clients: &Clients, latest: &Checkpoint, ack: &Ack) {
    let id = &ack.request.request_id;
    // An idempotent retry returns the first answer.
    let mut scheduler = clients.scheduler.clone();
    let r = within("Admit retry", scheduler.admit(ack.request.clone()))
        .await
        .unwrap_or_else(|e| panic!("retry of acknowledged request {id}: {e}"))
        .into_inner();
    assert_eq!(
        r.decision_id, ack.decision_id,
        "request {id}: retry after crash made a new decision"
    );
    assert_eq!(r.deployment_id, ack.deployment_id, "request {id}");
    assert_eq!(r.ledger_index, ack.ledger_index, "request {id}");
    assert_eq!(r.decision, ack.decision, "request {id}");

    if ack.decision == proto::Decision::Allow as i32 {
        let mut operator = clients.operator.clone();
        let d = within(
            "GetDeployment",
            operator.get_deployment(proto::GetDeploymentRequest {
                deployment_id: ack.deployment_id.clone(),
            }),
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "deployment {} of acknowledged request {id} lost: {e}",
                ack.deployment_id
            )
        })
        .into_inner();
        assert_eq!(d.request_id, *id);
        assert_eq!(d.customer_id, CUSTOMER);
    } else {
        assert!(ack.deployment_id.is_empty());
    }

    let index = ack.ledger_index;
    assert!(
        index < latest.size,
        "request {id}: acknowledged ledger index {index} is not covered by the latest \
         checkpoint of size {}",
        latest.size
    );
    let mut auditor = clients.auditor.clone();
    let entries = within(
        "GetEntries",
        auditor.get_entries(proto::GetEntriesRequest {
            start: index,
            count: 1,
        }),
    )
    .await
    .unwrap_or_else(|e| panic!("ledger entry {index} of request {id}: {e}"))
    .into_inner()
    .entries;
    assert_eq!(entries.len(), 1, "ledger entry {index} missing");
    let entry = &entries[0];
    assert_eq!(entry.index, index);
    let json: serde_json::Value = serde_json::from_slice(&entry.data)
        .unwrap_or_else(|e| panic!("ledger entry {index} is not JSON: {e}"));
    assert!(
        json.to_string().contains(&ack.decision_id),
        "ledger entry {index} does not record decision {}: {json}",
        ack.decision_id
    );
    let leaf = tree::leaf_hash(&entry.data);
    let p = within(
        "GetInclusionProof",
        auditor.get_inclusion_proof(proto::GetInclusionProofRequest {
            index,
            tree_size: latest.size,
        }),
    )
    .await
    .unwrap_or_else(|e| panic!("inclusion proof of entry {index}: {e}"))
    .into_inner();
    assert_eq!(p.tree_size, latest.size);
    assert_eq!(p.leaf_hash.as_slice(), leaf.as_slice());
    tree::check_record(&to_hashes(&p.proof), latest.size, latest.root, index, leaf).unwrap_or_else(
        |e| {
            panic!(
                "entry {index} (decision {}) is not included in the checkpoint of size {}: {e}",
                ack.decision_id, latest.size
            )
        },
    );
}

async fn check_acks(clients: &Clients, latest: &Checkpoint, acks: &[Ack]) {
    stream::iter(acks)
        .map(|a| check_ack(clients, latest, a))
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
}

/// Requests cut off by a crash may or may not have been recorded; either way
/// a retry gets one answer, which is from then on acknowledged like any
/// other.
async fn retry_in_flight(
    clients: &Clients,
    requests: Vec<proto::AdmitRequest>,
    acks: &mut Vec<Ack>,
) {
    let answered: Vec<Ack> = stream::iter(requests)
        .map(|request| {
            let mut scheduler = clients.scheduler.clone();
            async move {
                let r = within(
                    "Admit retry of an in-flight request",
                    scheduler.admit(request.clone()),
                )
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "retry of request {} in flight at the crash: {e}",
                        request.request_id
                    )
                })
                .into_inner();
                Ack::new(request, r)
            }
        })
        .buffer_unordered(IN_FLIGHT_RETRIES)
        .collect()
        .await;
    acks.extend(answered);
}

/// What one load worker saw.
#[derive(Default)]
struct WorkerResult {
    acks: Vec<Ack>,
    /// The request that was in flight when the connection died, if any.
    in_flight: Option<proto::AdmitRequest>,
    /// A call that failed while the server was still supposed to be up.
    error_before_kill: Option<String>,
    /// Answers that broke the contract while the server was up.
    violations: Vec<String>,
}

/// What every load worker shares.
#[derive(Clone)]
struct Load {
    scheduler: AdmissionClient<Channel>,
    auditor: LedgerClient<Channel>,
    verifier: warden::ledger::note::Verifier,
    allow: proto::AdmitRequest,
    killed: Arc<AtomicBool>,
    progress: Arc<Progress>,
}

async fn admit_once(
    mut scheduler: AdmissionClient<Channel>,
    request: proto::AdmitRequest,
) -> Result<proto::AdmitResponse, String> {
    match tokio::time::timeout(RPC_TIMEOUT, scheduler.admit(request)).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(status)) => Err(format!("{status:?}")),
        Err(_) => Err(format!("no answer within {RPC_TIMEOUT:?}")),
    }
}

impl Load {
    /// Right after an answer, the latest checkpoint must already cover its
    /// entry: warden answers only once the entry is signed. Says nothing
    /// when the server is gone.
    async fn check_covered(&self, r: &proto::AdmitResponse, out: &mut WorkerResult) {
        let mut auditor = self.auditor.clone();
        let Ok(Ok(c)) = tokio::time::timeout(
            RPC_TIMEOUT,
            auditor.get_checkpoint(proto::GetCheckpointRequest { first_size: 0 }),
        )
        .await
        else {
            return;
        };
        let c = c.into_inner();
        let cp = Checkpoint::open(&c.checkpoint, &self.verifier).unwrap();
        if cp.size <= r.ledger_index {
            out.violations.push(format!(
                "decision {} was answered with ledger index {} while the latest signed \
                 checkpoint has size {}",
                r.decision_id, r.ledger_index, cp.size
            ));
        }
    }

    async fn run(self, worker: usize) -> WorkerResult {
        let mut out = WorkerResult::default();
        let deny_digest = format!("sha256:{}", "0".repeat(64));
        for n in 0usize.. {
            let mut request = self.allow.clone();
            request.request_id = uuid::Uuid::new_v4().to_string();
            if (n + worker) % 4 == 0 {
                // DIGEST_MISMATCH: a deny, recorded like any decision.
                request.model_digest = deny_digest.clone();
            }
            let want = if request.model_digest == deny_digest {
                proto::Decision::Deny
            } else {
                proto::Decision::Allow
            } as i32;
            let first = Box::pin(admit_once(self.scheduler.clone(), request.clone()));
            let mut answers = Vec::new();
            if n % 6 == 3 {
                // The same request twice at once: one decision, and whichever
                // answer comes first is already covered by a checkpoint.
                let twin = Box::pin(admit_once(self.scheduler.clone(), request.clone()));
                let (r, other) = match futures_util::future::select(first, twin).await {
                    futures_util::future::Either::Left(x) => x,
                    futures_util::future::Either::Right(x) => x,
                };
                if let Ok(r) = &r {
                    self.check_covered(r, &mut out).await;
                }
                answers.push(r);
                answers.push(other.await);
            } else {
                let r = first.await;
                if let Ok(r) = &r {
                    self.check_covered(r, &mut out).await;
                }
                answers.push(r);
            }
            let mut acked: Option<Ack> = None;
            let mut failed = None;
            for a in answers {
                match a {
                    Ok(r) => {
                        if r.decision != want {
                            out.violations
                                .push(format!("request {}: {r:?}", request.request_id));
                        }
                        match &acked {
                            Some(first) if first.decision_id != r.decision_id => {
                                out.violations.push(format!(
                                    "request {} sent twice at once got two decisions: {} and {}",
                                    request.request_id, first.decision_id, r.decision_id
                                ));
                            }
                            Some(_) => {}
                            None => acked = Some(Ack::new(request.clone(), r)),
                        }
                    }
                    Err(e) => failed = Some(e),
                }
            }
            let stop = failed.is_some();
            if let Some(e) = failed {
                if !self.killed.load(Ordering::SeqCst) {
                    out.error_before_kill = Some(e);
                }
                if acked.is_none() {
                    out.in_flight = Some(request);
                }
            }
            if acked.is_some() {
                self.progress.decisions.fetch_add(1, Ordering::SeqCst);
            }
            out.acks.extend(acked);
            if stop {
                break;
            }
        }
        out
    }
}

/// Keeps reading the latest checkpoint until the server dies.
async fn watcher(
    env_ledger: warden::ledger::note::Verifier,
    mut auditor: LedgerClient<Channel>,
    killed: Arc<AtomicBool>,
) -> (Vec<(Checkpoint, String)>, Option<String>) {
    let mut out: Vec<(Checkpoint, String)> = Vec::new();
    loop {
        let r = tokio::time::timeout(
            RPC_TIMEOUT,
            auditor.get_checkpoint(proto::GetCheckpointRequest { first_size: 0 }),
        )
        .await;
        match r {
            Ok(Ok(r)) => {
                let r = r.into_inner();
                let cp = Checkpoint::open(&r.checkpoint, &env_ledger).unwrap();
                assert_eq!(cp.size, r.size);
                if let Some((prev, _)) = out.last() {
                    assert!(
                        cp.size >= prev.size,
                        "checkpoint size went from {} to {}",
                        prev.size,
                        cp.size
                    );
                }
                out.push((cp, r.checkpoint));
            }
            Ok(Err(status)) => {
                let err = (!killed.load(Ordering::SeqCst)).then(|| format!("{status:?}"));
                return (out, err);
            }
            Err(_) => return (out, Some("GetCheckpoint timed out".into())),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------
// Orders: admit, issue a TERMINATE order for that deployment, approve it as a
// second principal (quorum 2), acknowledge the stop as the scheduler.

/// An order this test drove, with each answer the server acknowledged.
#[derive(Clone, Debug)]
struct OrderTrack {
    deployment_id: String,
    issued: proto::Order,
    approved: Option<proto::Order>,
    acked: Option<proto::Order>,
}

impl OrderTrack {
    fn writes(&self) -> usize {
        1 + usize::from(self.approved.is_some()) + usize::from(self.acked.is_some())
    }
}

#[derive(Default)]
struct OrderWorkerResult {
    admitted: Vec<Ack>,
    orders: Vec<OrderTrack>,
    error_before_kill: Option<String>,
    violations: Vec<String>,
}

async fn rpc<T>(
    f: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, String> {
    match tokio::time::timeout(RPC_TIMEOUT, f).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(status)) => Err(format!("{status:?}")),
        Err(_) => Err(format!("no answer within {RPC_TIMEOUT:?}")),
    }
}

/// What the scheduler reports for each stopped deployment.
const ACK_OUTCOME: &str = "stopped";

fn deployment_target(id: &str) -> Option<proto::OrderTarget> {
    Some(proto::OrderTarget {
        kind: proto::OrderTargetKind::Deployment as i32,
        value: id.into(),
    })
}

/// Takes `track` as far as it goes: approval, then acknowledgement.
async fn advance_order(
    clients: &Clients,
    track: &mut OrderTrack,
    violations: &mut Vec<String>,
) -> Result<(), String> {
    let order_id = track.issued.order_id.clone();
    let deployment_id = track.deployment_id.clone();
    if track.approved.is_none() {
        let approved = rpc(clients
            .approver
            .clone()
            .approve_order(proto::ApproveOrderRequest {
                order_id: order_id.clone(),
            }))
        .await?;
        if approved.state != proto::OrderState::Active as i32
            || approved.matched_deployments != [deployment_id.clone()]
        {
            violations.push(format!(
                "the approval completing quorum did not activate: {approved:?}"
            ));
        }
        track.approved = Some(approved);
        clients.progress.order_writes.fetch_add(1, Ordering::SeqCst);
    }
    if track.acked.is_none() {
        let acked = rpc(clients.acker.clone().ack_order(proto::AckOrderRequest {
            order_id,
            deployment_id: deployment_id.clone(),
            stopped_at: Some(prost_types::Timestamp {
                seconds: time::OffsetDateTime::now_utc().unix_timestamp(),
                nanos: 0,
            }),
            outcome: ACK_OUTCOME.into(),
        }))
        .await?;
        if acked.acks.len() != 1 || acked.acks[0].deployment_id != deployment_id {
            violations.push(format!(
                "the acknowledgement is not on the order: {acked:?}"
            ));
        }
        track.acked = Some(acked);
        clients.progress.order_writes.fetch_add(1, Ordering::SeqCst);
    }
    Ok(())
}

/// Finishes the orders earlier cycles left open, then drives new ones.
async fn order_loop(
    clients: Clients,
    allow: proto::AdmitRequest,
    out: &mut OrderWorkerResult,
) -> Result<(), String> {
    for i in 0..out.orders.len() {
        advance_order(&clients, &mut out.orders[i], &mut out.violations).await?;
    }
    loop {
        let mut request = allow.clone();
        request.request_id = uuid::Uuid::new_v4().to_string();
        let r = admit_once(clients.scheduler.clone(), request.clone()).await?;
        if r.decision != proto::Decision::Allow as i32 {
            out.violations
                .push(format!("order loop admission denied: {r:?}"));
            return Ok(());
        }
        let deployment_id = r.deployment_id.clone();
        out.admitted.push(Ack::new(request, r));

        let issued = rpc(clients
            .issuer
            .clone()
            .issue_order(proto::IssueOrderRequest {
                target: deployment_target(&deployment_id),
                action: proto::OrderAction::Terminate as i32,
                reason: format!("crash test order for {deployment_id}"),
                legal_basis: String::new(),
                expires_at: None,
            }))
        .await?;
        if issued.state != proto::OrderState::Pending as i32 || issued.quorum != 2 {
            out.violations.push(format!(
                "a new TERMINATE order should wait for a second approval: {issued:?}"
            ));
        }
        clients.progress.order_writes.fetch_add(1, Ordering::SeqCst);
        out.orders.push(OrderTrack {
            deployment_id,
            issued,
            approved: None,
            acked: None,
        });
        let track = out.orders.last_mut().unwrap();
        advance_order(&clients, track, &mut out.violations).await?;
    }
}

async fn order_worker(
    clients: Clients,
    allow: proto::AdmitRequest,
    open: Vec<OrderTrack>,
    killed: Arc<AtomicBool>,
) -> OrderWorkerResult {
    let mut out = OrderWorkerResult {
        orders: open,
        ..OrderWorkerResult::default()
    };
    if let Err(e) = order_loop(clients, allow, &mut out).await {
        if !killed.load(Ordering::SeqCst) {
            out.error_before_kill = Some(e);
        }
    }
    out
}

async fn get_order(clients: &Clients, id: &str) -> proto::Order {
    within(
        "GetOrder",
        clients.issuer.clone().get_order(proto::GetOrderRequest {
            order_id: id.into(),
        }),
    )
    .await
    .unwrap_or_else(|e| panic!("acknowledged order {id} lost: {e}"))
    .into_inner()
}

/// An approval or acknowledgement cut off by the kill either took effect or
/// not; what is stored now counts as acknowledged from here on.
async fn resolve_order(clients: &Clients, track: &mut OrderTrack) {
    if track.acked.is_some() {
        return;
    }
    let o = get_order(clients, &track.issued.order_id).await;
    if track.approved.is_none() && o.state == proto::OrderState::Active as i32 {
        track.approved = Some(o.clone());
    }
    if o.acks
        .iter()
        .any(|a| a.deployment_id == track.deployment_id)
    {
        track.acked = Some(o);
    }
}

/// Every acknowledged write of `track` is in the stored order, as answered.
async fn check_order(clients: &Clients, track: &OrderTrack) {
    let id = &track.issued.order_id;
    let o = get_order(clients, id).await;
    let i = &track.issued;
    assert_eq!(
        (
            &o.target,
            o.action,
            &o.reason,
            &o.issued_by,
            &o.issued_at,
            o.quorum
        ),
        (
            &i.target,
            i.action,
            &i.reason,
            &i.issued_by,
            &i.issued_at,
            i.quorum
        ),
        "order {id} is not as issued"
    );
    assert_eq!(
        o.approvals.first(),
        i.approvals.first(),
        "order {id}: the issuer's approval"
    );
    if let Some(a) = &track.approved {
        assert_eq!(
            o.approvals, a.approvals,
            "order {id}: approvals as acknowledged"
        );
        assert_eq!(o.state, proto::OrderState::Active as i32, "order {id}");
        assert_eq!(o.activated_at, a.activated_at, "order {id}");
        assert_eq!(o.matched_deployments, a.matched_deployments, "order {id}");
    }
    if let Some(k) = &track.acked {
        // The scheduler's answer leaves out free text (the outcome it
        // wrote); the operator reading here sees it.
        let answered: Vec<proto::Acknowledgement> = k
            .acks
            .iter()
            .map(|a| proto::Acknowledgement {
                outcome: ACK_OUTCOME.into(),
                ..a.clone()
            })
            .collect();
        assert_eq!(o.acks, answered, "order {id}: acknowledgements as answered");
        assert!(
            o.unacknowledged.is_empty(),
            "order {id}: {:?}",
            o.unacknowledged
        );
        let d = within(
            "GetDeployment",
            clients
                .operator
                .clone()
                .get_deployment(proto::GetDeploymentRequest {
                    deployment_id: track.deployment_id.clone(),
                }),
        )
        .await
        .unwrap()
        .into_inner();
        assert_eq!(
            d.state,
            proto::DeploymentState::Terminated as i32,
            "deployment {} of active TERMINATE order {id}",
            track.deployment_id
        );
    }
}

async fn check_orders(clients: &Clients, tracks: &[OrderTrack]) {
    stream::iter(tracks)
        .map(|t| check_order(clients, t))
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
}

// ---------------------------------------------------------------------------
// Customers: register, then update twice against the version last answered.

/// A write cut off by the kill: it may or may not have been stored.
#[derive(Clone, Debug)]
enum CustomerWrite {
    Register(proto::RegisterCustomerRequest),
    Update(proto::UpdateCustomerRequest),
}

/// A customer this test wrote, as the server last answered.
#[derive(Clone, Debug)]
struct CustomerTrack {
    latest: proto::Customer,
    /// Acknowledged writes (the registration and each update).
    writes: usize,
}

#[derive(Default)]
struct CustomerWorkerResult {
    customers: Vec<CustomerTrack>,
    in_flight: Option<CustomerWrite>,
    error_before_kill: Option<String>,
    violations: Vec<String>,
}

async fn customer_worker(
    mut kyc: CustomersClient<Channel>,
    prefix: String,
    killed: Arc<AtomicBool>,
    progress: Arc<Progress>,
) -> CustomerWorkerResult {
    let mut out = CustomerWorkerResult::default();
    'customers: for n in 0usize.. {
        let register = common::organisation_named(
            &format!("{prefix}-{n}"),
            &format!("Crash Customer {prefix} {n} Ltd"),
            proto::CustomerStatus::Verified,
        );
        let mut write = CustomerWrite::Register(register.clone());
        let mut result = rpc(kyc.register_customer(register)).await;
        for step in 1..=2 {
            let c = match result {
                Ok(c) => {
                    progress.customer_writes.fetch_add(1, Ordering::SeqCst);
                    c
                }
                Err(e) => {
                    if !killed.load(Ordering::SeqCst) {
                        out.error_before_kill = Some(e);
                    }
                    out.in_flight = Some(write);
                    break 'customers;
                }
            };
            if step == 1 {
                out.customers.push(CustomerTrack {
                    latest: c.clone(),
                    writes: 1,
                });
            } else {
                let t = out.customers.last_mut().unwrap();
                if c.version != t.latest.version + 1 {
                    out.violations.push(format!(
                        "update of {} answered version {} after version {}",
                        c.customer_id, c.version, t.latest.version
                    ));
                }
                t.latest = c.clone();
                t.writes += 1;
            }
            let update = proto::UpdateCustomerRequest {
                customer_id: c.customer_id.clone(),
                expected_version: c.version,
                legal_name: format!("Crash Customer {prefix} {n} Ltd v{}", c.version + 1),
                country: "DE".into(),
                details: Some(common::org_details()),
            };
            write = CustomerWrite::Update(update.clone());
            result = rpc(kyc.update_customer(update)).await;
        }
        match result {
            Ok(c) => {
                progress.customer_writes.fetch_add(1, Ordering::SeqCst);
                let t = out.customers.last_mut().unwrap();
                t.latest = c;
                t.writes += 1;
            }
            Err(e) => {
                if !killed.load(Ordering::SeqCst) {
                    out.error_before_kill = Some(e);
                }
                out.in_flight = Some(write);
                break;
            }
        }
    }
    out
}

/// A stored customer, as compared: the screening result is not versioned.
fn stored_form(c: &proto::Customer) -> proto::Customer {
    proto::Customer {
        screening: None,
        ..c.clone()
    }
}

async fn get_customer(clients: &Clients, id: &str) -> Result<proto::Customer, tonic::Status> {
    within(
        "GetCustomer",
        clients.kyc.clone().get_customer(proto::GetCustomerRequest {
            customer_id: id.into(),
            as_of: None,
        }),
    )
    .await
    .map(tonic::Response::into_inner)
}

/// The customer's newest version is the one last acknowledged, unchanged.
async fn check_customer(clients: &Clients, track: &CustomerTrack) {
    let id = &track.latest.customer_id;
    let c = get_customer(clients, id)
        .await
        .unwrap_or_else(|e| panic!("acknowledged customer {id} lost: {e}"));
    assert_eq!(
        stored_form(&c),
        stored_form(&track.latest),
        "customer {id} is not as last acknowledged"
    );
}

async fn check_customers(clients: &Clients, tracks: &[CustomerTrack]) {
    stream::iter(tracks)
        .map(|t| check_customer(clients, t))
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
}

/// A customer write cut off by the kill either took effect whole or not at
/// all; what is stored now counts as acknowledged from here on.
async fn resolve_customer_write(
    clients: &Clients,
    write: CustomerWrite,
    tracks: &mut [CustomerTrack],
) -> Option<CustomerTrack> {
    match write {
        CustomerWrite::Register(r) => match get_customer(clients, &r.customer_id).await {
            Err(e) if e.code() == tonic::Code::NotFound => None,
            Err(e) => panic!("customer {} registered at the kill: {e}", r.customer_id),
            Ok(c) => {
                assert_eq!(
                    (c.version, &c.legal_name),
                    (1, &r.legal_name),
                    "customer {} registered at the kill",
                    r.customer_id
                );
                Some(CustomerTrack {
                    latest: c,
                    writes: 1,
                })
            }
        },
        CustomerWrite::Update(u) => {
            let c = get_customer(clients, &u.customer_id)
                .await
                .unwrap_or_else(|e| panic!("acknowledged customer {} lost: {e}", u.customer_id));
            let t = tracks
                .iter_mut()
                .find(|t| t.latest.customer_id == u.customer_id)
                .unwrap();
            if c.version == t.latest.version {
                assert_eq!(
                    stored_form(&c),
                    stored_form(&t.latest),
                    "customer {}",
                    u.customer_id
                );
            } else {
                assert_eq!(
                    (c.version, &c.legal_name),
                    (u.expected_version + 1, &u.legal_name),
                    "customer {} updated at the kill",
                    u.customer_id
                );
                t.latest = c;
                t.writes += 1;
            }
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_repeated_sigkill_under_load() {
    let started = Instant::now();
    let cycles = cycles();
    let deadline = DEADLINE_PER_CYCLE * u32::try_from(cycles.max(DEFAULT_CYCLES)).unwrap();
    let env = TestEnv::new();
    let leaf = env.leaf();
    let chain = env.chain(&leaf);
    let allow = env.admit_request(CUSTOMER, &chain);

    let mut acks: Vec<Ack> = Vec::new();
    let mut orders: Vec<OrderTrack> = Vec::new();
    let mut customers: Vec<CustomerTrack> = Vec::new();
    let mut seen = Seen::default();
    let mut per_cycle: Vec<(usize, usize, usize)> = Vec::new();
    let mut pending: Vec<proto::AdmitRequest> = Vec::new();
    let mut pending_customers: Vec<CustomerWrite> = Vec::new();
    let mut consistency_checks = 0usize;

    for iteration in 0..cycles {
        assert!(started.elapsed() < deadline, "test ran past its deadline");
        let cycle_start = Instant::now();
        let (mut server, clients) = start_server(&env, &iteration.to_string()).await;
        let up = cycle_start.elapsed();
        if iteration == 0 {
            let mut kyc = clients.kyc.clone();
            let c = within(
                "RegisterCustomer",
                kyc.register_customer(common::organisation_named(
                    CUSTOMER,
                    "Crash Co Ltd",
                    proto::CustomerStatus::Verified,
                )),
            )
            .await
            .unwrap()
            .into_inner();
            assert_eq!(c.status, proto::CustomerStatus::Verified as i32);
        }

        // After a restart: the checkpoints seen before are prefixes of the
        // latest, and the newest acknowledged writes are all there.
        consistency_checks += seen.0.len();
        let latest = check_consistency(&env, &clients, &mut seen).await;
        check_acks(
            &clients,
            &latest,
            &acks[acks.len().saturating_sub(SAMPLE)..],
        )
        .await;
        // Writes cut off by the kill are resolved first: the newest
        // version of a customer or an order may be theirs.
        let retried = pending.len() + pending_customers.len();
        for o in orders.iter_mut() {
            resolve_order(&clients, o).await;
        }
        check_orders(&clients, &orders[orders.len().saturating_sub(SAMPLE)..]).await;
        for w in std::mem::take(&mut pending_customers) {
            let resolved = resolve_customer_write(&clients, w, &mut customers).await;
            customers.extend(resolved);
        }
        check_customers(
            &clients,
            &customers[customers.len().saturating_sub(SAMPLE)..],
        )
        .await;
        retry_in_flight(&clients, std::mem::take(&mut pending), &mut acks).await;
        let checked = cycle_start.elapsed();

        // Load, then SIGKILL while calls are in flight.
        let killed = Arc::new(AtomicBool::new(false));
        let load = Load {
            scheduler: clients.scheduler.clone(),
            auditor: clients.auditor.clone(),
            verifier: env.ledger.clone(),
            allow: allow.clone(),
            killed: killed.clone(),
            progress: clients.progress.clone(),
        };
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| tokio::spawn(load.clone().run(w)))
            .collect();
        // Orders earlier cycles left open are finished first.
        let (done, open): (Vec<OrderTrack>, Vec<OrderTrack>) =
            orders.into_iter().partition(|o| o.acked.is_some());
        orders = done;
        let open_writes: usize = open.iter().map(OrderTrack::writes).sum();
        let mut shares: Vec<Vec<OrderTrack>> = vec![Vec::new(); ORDER_WORKERS];
        for (i, o) in open.into_iter().enumerate() {
            shares[i % ORDER_WORKERS].push(o);
        }
        let order_workers: Vec<_> = shares
            .into_iter()
            .map(|share| {
                tokio::spawn(order_worker(
                    clients.clone(),
                    allow.clone(),
                    share,
                    killed.clone(),
                ))
            })
            .collect();
        let customer_workers: Vec<_> = (0..CUSTOMER_WORKERS)
            .map(|w| {
                tokio::spawn(customer_worker(
                    clients.kyc.clone(),
                    format!("cc-{iteration}-{w}"),
                    killed.clone(),
                    clients.progress.clone(),
                ))
            })
            .collect();
        let watch = tokio::spawn(watcher(
            env.ledger.clone(),
            clients.auditor.clone(),
            killed.clone(),
        ));
        // The kill comes at a varying moment, once writes of every kind
        // have been acknowledged in this cycle.
        let delay = 50 + (iteration * 97) % 251;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        within("a write of each kind", async {
            while !clients.progress.all_seen() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        let killed_after = cycle_start.elapsed() - checked;
        killed.store(true, Ordering::SeqCst);
        server.child.kill().unwrap();
        let status = within("child exit", async {
            loop {
                if let Some(s) = server.child.try_wait().unwrap() {
                    break s;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(!status.success(), "killed server exited with {status}");

        let mut cycle_acks = 0;
        let mut in_flight = Vec::new();
        for w in workers {
            let r = within("load worker", w).await.unwrap();
            if let Some(e) = r.error_before_kill {
                panic!(
                    "Admit failed before the kill: {e}\n{}",
                    log_text(&server.log)
                );
            }
            assert!(
                r.violations.is_empty(),
                "contract broken under load:\n{}",
                r.violations.join("\n")
            );
            cycle_acks += r.acks.len();
            acks.extend(r.acks);
            in_flight.extend(r.in_flight);
        }
        let mut cycle_order_writes = 0;
        for w in order_workers {
            let r = within("order worker", w).await.unwrap();
            if let Some(e) = r.error_before_kill {
                panic!(
                    "an order write failed before the kill: {e}\n{}",
                    log_text(&server.log)
                );
            }
            assert!(
                r.violations.is_empty(),
                "orders:\n{}",
                r.violations.join("\n")
            );
            cycle_acks += r.admitted.len();
            acks.extend(r.admitted);
            cycle_order_writes += r.orders.iter().map(OrderTrack::writes).sum::<usize>();
            orders.extend(r.orders);
        }
        cycle_order_writes -= open_writes;
        let mut cycle_customer_writes = 0;
        for w in customer_workers {
            let r = within("customer worker", w).await.unwrap();
            if let Some(e) = r.error_before_kill {
                panic!(
                    "a customer write failed before the kill: {e}\n{}",
                    log_text(&server.log)
                );
            }
            assert!(
                r.violations.is_empty(),
                "customers:\n{}",
                r.violations.join("\n")
            );
            cycle_customer_writes += r.customers.iter().map(|c| c.writes).sum::<usize>();
            customers.extend(r.customers);
            pending_customers.extend(r.in_flight);
        }
        let (checkpoints, err) = within("checkpoint watcher", watch).await.unwrap();
        if let Some(e) = err {
            panic!("GetCheckpoint failed before the kill: {e}");
        }
        for (cp, note) in &checkpoints {
            seen.add(cp, note);
        }
        per_cycle.push((cycle_acks, cycle_order_writes, cycle_customer_writes));
        drop(server);

        let cut_off = in_flight.len();
        pending = in_flight.into_iter().take(IN_FLIGHT_RETRIES).collect();
        eprintln!(
            "cycle {iteration}: up in {} ms, checked in {} ms ({retried} in-flight resolved), \
             killed after {} ms, {cycle_acks} decisions, {cycle_order_writes} order writes, \
             {cycle_customer_writes} customer writes acknowledged, {cut_off} admissions cut off, \
             {} checkpoints read, largest signed size {}",
            up.as_millis(),
            (checked - up).as_millis(),
            killed_after.as_millis(),
            checkpoints.len(),
            seen.max_size()
        );
    }

    // Final restart: everything ever acknowledged is there.
    let (server, clients) = start_server(&env, "final").await;
    retry_in_flight(&clients, std::mem::take(&mut pending), &mut acks).await;
    for o in orders.iter_mut() {
        resolve_order(&clients, o).await;
    }
    for w in std::mem::take(&mut pending_customers) {
        let resolved = resolve_customer_write(&clients, w, &mut customers).await;
        customers.extend(resolved);
    }
    consistency_checks += seen.0.len();
    let latest = check_consistency(&env, &clients, &mut seen).await;
    let mut by_index: HashMap<u64, &str> = HashMap::new();
    for a in &acks {
        if let Some(other) = by_index.insert(a.ledger_index, &a.decision_id) {
            assert_eq!(
                other, a.decision_id,
                "two decisions acknowledged at ledger index {}",
                a.ledger_index
            );
        }
    }
    let ids: HashSet<&str> = acks.iter().map(|a| a.request.request_id.as_str()).collect();
    assert_eq!(ids.len(), acks.len(), "a request id was acknowledged twice");
    check_acks(&clients, &latest, &acks).await;
    check_orders(&clients, &orders).await;
    check_customers(&clients, &customers).await;
    // The retries above appended nothing.
    consistency_checks += seen.0.len();
    let after = check_consistency(&env, &clients, &mut seen).await;
    assert_eq!(after.size, latest.size, "an idempotent retry appended");
    drop(server);

    let allowed = acks
        .iter()
        .filter(|a| a.decision == proto::Decision::Allow as i32)
        .count();
    let order_writes: usize = orders.iter().map(OrderTrack::writes).sum();
    let customer_writes: usize = customers.iter().map(|c| c.writes).sum();
    eprintln!(
        "{cycles} crashes in {:.1} s: {} decisions acknowledged ({allowed} allowed), \
         {order_writes} order writes on {} orders ({} approved, {} acknowledged), \
         {customer_writes} customer writes on {} customers, all checked after the last restart; \
         {} distinct checkpoints, {consistency_checks} consistency proofs checked, final size {}; \
         per cycle (decisions, order writes, customer writes) {per_cycle:?}",
        started.elapsed().as_secs_f64(),
        acks.len(),
        orders.len(),
        orders.iter().filter(|o| o.approved.is_some()).count(),
        orders.iter().filter(|o| o.acked.is_some()).count(),
        customers.len(),
        seen.0.len(),
        latest.size,
    );
    assert!(
        per_cycle.iter().all(|&(d, o, c)| d > 0 && o > 0 && c > 0),
        "a cycle was killed before writes of every kind were acknowledged: {per_cycle:?}"
    );
    assert!(
        orders.iter().any(|o| o.acked.is_some()),
        "no order went through issue, approval and acknowledgement"
    );
}
