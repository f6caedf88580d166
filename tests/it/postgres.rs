//! The real server on the PostgreSQL engine: what a scheduler and a KYC
//! system do end to end, across a restart, and what the database holds.
#![allow(clippy::unwrap_used)]

use crate::common;

use common::TestEnv;
use warden::proto;

/// The legal name of customer `id`, as the server reads it.
async fn legal_name(env: &TestEnv, server: &common::TestServer, id: &str) -> String {
    env.customers(server)
        .await
        .get_customer(proto::GetCustomerRequest {
            customer_id: id.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .legal_name
}

#[tokio::test]
async fn admission_is_allowed_and_replayed_across_a_restart_on_postgresql() {
    let mut env = TestEnv::new();
    env.on_postgres();
    let server = env.start().await;
    env.register(&server, "cust-1", proto::CustomerStatus::Verified)
        .await;
    let req = env.admit_request("cust-1", &env.sample_chain());
    let first = env.admit(&server, req.clone()).await;
    assert_eq!(first.decision, proto::Decision::Allow as i32, "{first:?}");
    let text = env.licence.open(&first.licence).unwrap();
    assert!(text.contains(&format!("deployment {}\n", first.deployment_id)));
    server.stop().await;

    // A new server on the same database answers the same request id with
    // the first decision, and has the customer.
    let server = env.start().await;
    let again = env.admit(&server, req).await;
    assert_eq!(
        (again.decision, &again.deployment_id),
        (first.decision, &first.deployment_id)
    );
    assert_eq!(legal_name(&env, &server, "cust-1").await, "cust-1 Ltd");
    server.stop().await;
}

#[tokio::test]
async fn personal_data_is_sealed_in_the_database() {
    let mut env = TestEnv::new();
    let name = env.on_postgres().connect.get_dbname().unwrap().to_string();
    let server = env.start().await;
    env.customers(&server)
        .await
        .register_customer(common::individual("cust-pii"))
        .await
        .unwrap();
    server.stop().await;
    let dump = common::postgres::cluster().dump(&name);
    // The customer is there, found the way the values are looked for
    // below: its id is kept in the clear (in bytea, dumped as hex)...
    assert!(
        dump.contains("ledger_entries"),
        "not a dump of warden's tables"
    );
    assert!(
        dump.contains(&hex::encode("cust-pii")),
        "the search finds nothing"
    );
    // ...but none of its personal details, in text or in bytea hex.
    for value in [
        "Orla Quenby",
        "1985-04-12",
        "Cork",
        "Beispielstrasse",
        "orla@example.org",
    ] {
        assert!(
            !dump.contains(value),
            "{value} is in the database in the clear"
        );
        let hex = hex::encode(value);
        assert!(!dump.contains(&hex), "{value} is in the database (hex)");
    }
}

/// `warden serve` as a process, from a config file with `[store]` and no
/// `data_dir`: it serves, and admits into the database.
#[tokio::test]
async fn warden_serve_runs_on_postgresql_from_a_config_file() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    let mut env = TestEnv::new();
    env.on_postgres();
    let [addr] = common::loopback_addrs();
    let config = warden::config::Config {
        listen: addr,
        data_dir: std::path::PathBuf::new(),
        ..env.config.clone()
    };
    let path = env.path().join("pg.toml");
    std::fs::write(&path, common::config_toml(&config)).unwrap();
    let loaded = warden::config::Config::load(&path).unwrap();
    assert_eq!(loaded.store.engine, warden::config::Engine::Postgres);
    let log = env.path().join("serve.log");
    let mut child = common::warden_command()
        .args(["serve", "--config"])
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let auditor = &env.clients["auditor"];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let serving = loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "warden serve exited ({status}):\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        let ch = common::connect(
            addr,
            &env.mtls.cert_pem(),
            Some((&auditor.cert_pem, &auditor.key_pem)),
        )
        .await;
        if let Ok(ch) = ch {
            let r = HealthClient::new(ch)
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await;
            if let Ok(r) = r {
                break r.into_inner().status();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "warden serve did not answer within 60 s:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        serving,
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(log.contains("database schema migrated"), "{log}");
}

/// A backup of a PostgreSQL store is one snapshot, taken while writers go
/// on: restored (here, into a sled directory) it opens, passes the start-up
/// check of its ledger, and holds exactly the entries of the database up to
/// its size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_writes_go_on_is_one_consistent_snapshot() {
    use std::sync::Arc;
    use warden::ledger::note::Signer;
    use warden::pii::Keyring;
    use warden::store::conformance::{admit, deployment, T0};
    use warden::store::{PgStore, SledStore, Store};

    let database = tokio::task::spawn_blocking(|| common::postgres::cluster().database())
        .await
        .unwrap();
    let signer = Signer::generate("warden.test/ledger").unwrap();
    let key_line = Keyring::new_key_line("test-1").unwrap();
    let keys = || Keyring::parse("test", &key_line).unwrap();
    let copy = || Signer::from_text(&signer.to_text()).unwrap();
    let store: Arc<dyn Store> =
        Arc::new(PgStore::connect(&database, copy(), keys()).await.unwrap());
    for i in 0..40 {
        admit(
            store.as_ref(),
            &deployment(&format!("dep-{i}"), "cust-1", "sha256:aa", T0 + i),
        )
        .await;
    }
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 40..240 {
                let d = deployment(&format!("dep-{i}"), "cust-2", "sha256:bb", T0 + i);
                admit(store.as_ref(), &d).await;
            }
        })
    };
    let tmp = tempfile::tempdir().unwrap();
    let file = std::fs::File::create(tmp.path().join("pg.backup")).unwrap();
    let (_, summary) = store.backup(file).await.unwrap();
    writer.await.unwrap();
    assert!(summary.header.ledger_size >= 40, "{:?}", summary.header);

    let dir = tmp.path().join("restored");
    warden::store::backup::restore(&tmp.path().join("pg.backup"), &dir, false).unwrap();
    let restored = SledStore::open(&dir, copy(), keys()).unwrap();
    let size = restored.checkpoint().await.unwrap().checkpoint.size;
    assert_eq!(size, summary.header.ledger_size);
    let from_backup = restored.entries(0, size).await.unwrap();
    let from_database = store.entries(0, size).await.unwrap();
    assert_eq!(from_backup.len() as u64, size);
    assert_eq!(from_backup, from_database);
    // Every write made meanwhile is in the database.
    assert_eq!(store.checkpoint().await.unwrap().checkpoint.size, 240);
}

/// A sled store's backup, restored into an empty PostgreSQL database with
/// `warden restore --config` (checked there as `serve` checks at start),
/// serves the same ledger and customers; a second restore into the now
/// full database is refused and changes nothing.
#[tokio::test]
async fn a_sled_backup_restores_into_postgresql_and_serves_the_same_ledger() {
    let mut env = TestEnv::new();
    let server = env.start().await;
    env.register(&server, "cust-1", proto::CustomerStatus::Verified)
        .await;
    let first = env
        .admit_chain(&server, "cust-1", &env.sample_chain())
        .await;
    assert_eq!(first.decision, proto::Decision::Allow as i32);
    server.stop().await;
    let file = env.path().join("sled.backup");
    let out = common::warden_command()
        .args(["backup", "--data-dir"])
        .arg(&env.config.data_dir)
        .arg("--out")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sled_size = warden::store::backup::verify_file(&file)
        .unwrap()
        .header
        .ledger_size;

    env.on_postgres();
    let config = warden::config::Config {
        data_dir: std::path::PathBuf::new(),
        ..env.config.clone()
    };
    let config_path = env.path().join("pg.toml");
    std::fs::write(&config_path, common::config_toml(&config)).unwrap();
    let restore = || {
        common::warden_command()
            .args(["restore"])
            .arg(&file)
            .arg("--config")
            .arg(&config_path)
            .output()
            .unwrap()
    };
    let out = restore();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("the ledger verifies"), "{stdout}");

    let again = restore();
    assert!(!again.status.success());
    let why = String::from_utf8_lossy(&again.stderr);
    assert!(why.contains("restore into a new database"), "{why}");

    env.config = config;
    let server = env.start().await;
    assert_eq!(legal_name(&env, &server, "cust-1").await, "cust-1 Ltd");
    let next = env
        .admit_chain(&server, "cust-1", &env.sample_chain())
        .await;
    assert_eq!(next.decision, proto::Decision::Allow as i32);
    assert_eq!(
        next.ledger_index, sled_size,
        "the ledger goes on where sled's ended"
    );
    server.stop().await;
}

/// `warden store copy` moves a store from sled to PostgreSQL and back:
/// each copy is checked by reading the target back, the round trip ends
/// with the records it started with and a store that opens on them, and
/// a target that is not empty is refused.
#[tokio::test]
async fn store_copy_round_trips_between_the_engines() {
    let env = TestEnv::new();
    let server = env.start().await;
    env.register(&server, "cust-1", proto::CustomerStatus::Verified)
        .await;
    env.admit_chain(&server, "cust-1", &env.sample_chain())
        .await;
    server.stop().await;
    let database = tokio::task::spawn_blocking(|| common::postgres::cluster().database())
        .await
        .unwrap();
    let c = &database.connect;
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/{}?sslmode=disable",
        c.get_ports()[0],
        c.get_dbname().unwrap()
    );
    let copy = |from: String, to: String| {
        common::warden_command()
            .args(["store", "copy", "--json", "--from", &from, "--to", &to])
            .output()
            .unwrap()
    };
    let sled = |dir: &std::path::Path| format!("sled:{}", dir.display());
    let out = copy(sled(&env.config.data_dir), url.clone());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let there: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let back = env.path().join("back");
    let out = copy(url.clone(), sled(&back));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        there["sha256"], again["sha256"],
        "the round trip changed the records"
    );
    assert_eq!(there["records"], again["records"]);
    assert!(there["ledger_size"].as_u64().unwrap() >= 2);

    let refused = copy(sled(&env.config.data_dir), url);
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("restore into a new database"), "{why}");

    // The copy back opens as a store, with the ledger it started with.
    let mut env = env;
    env.config.data_dir = back;
    let server = env.start().await;
    assert_eq!(legal_name(&env, &server, "cust-1").await, "cust-1 Ltd");
    server.stop().await;
}

/// TLS to the database: with the database's CA, warden connects with
/// sslmode=verify-full and works; with another CA it is refused at the
/// handshake, and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_certificate_is_checked_against_store_ca() {
    use warden::ledger::note::Signer;
    use warden::pii::Keyring;
    use warden::store::conformance::{admit, deployment, T0};
    use warden::store::{PgStore, Store};

    let (cluster, ca_pem) = tokio::task::spawn_blocking(|| {
        let (cluster, ca) = common::postgres::tls_cluster();
        (cluster.database(), ca.clone())
    })
    .await
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let good_ca = tmp.path().join("db-ca.pem");
    std::fs::write(&good_ca, &ca_pem).unwrap();
    let other = warden::pki::dev::TestCa::mtls_ca("some other CA").unwrap();
    let wrong_ca = tmp.path().join("other-ca.pem");
    std::fs::write(&wrong_ca, other.cert_pem()).unwrap();
    let c = &cluster.connect;
    let with_ca = |ca: &std::path::Path| {
        warden::config::StoreConfig {
            engine: warden::config::Engine::Postgres,
            url: Some(format!(
                "postgresql://postgres@127.0.0.1:{}/{}?sslmode=verify-full",
                c.get_ports()[0],
                c.get_dbname().unwrap()
            )),
            ca: Some(ca.to_path_buf()),
            ..Default::default()
        }
        .database()
        .unwrap()
    };
    let signer = Signer::generate("warden.test/ledger").unwrap();
    let key_line = Keyring::new_key_line("test-1").unwrap();
    let keys = || Keyring::parse("test", &key_line).unwrap();
    let copy = || Signer::from_text(&signer.to_text()).unwrap();

    let store = PgStore::connect(&with_ca(&good_ca), copy(), keys())
        .await
        .unwrap();
    admit(&store, &deployment("dep-1", "cust-1", "sha256:aa", T0)).await;
    assert_eq!(store.checkpoint().await.unwrap().checkpoint.size, 1);
    drop(store);

    let refused = PgStore::connect(&with_ca(&wrong_ca), copy(), keys()).await;
    let why = match refused {
        Ok(_) => panic!("connected with a CA that did not issue the database's certificate"),
        Err(e) => e.to_string(),
    };
    assert!(why.contains("certificate"), "{why}");
}

/// A database whose schema a newer warden wrote is refused at start, and
/// the refusal names both versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_newer_than_this_warden_is_refused_naming_both_versions() {
    use warden::ledger::note::Signer;
    use warden::pii::Keyring;
    use warden::store::PgStore;

    let database = tokio::task::spawn_blocking(|| common::postgres::cluster().database())
        .await
        .unwrap();
    let signer = Signer::generate("warden.test/ledger").unwrap();
    let key_line = Keyring::new_key_line("test-1").unwrap();
    let keys = || Keyring::parse("test", &key_line).unwrap();
    let copy = || Signer::from_text(&signer.to_text()).unwrap();
    let store = PgStore::connect(&database, copy(), keys()).await.unwrap();
    drop(store);
    let name = database.connect.get_dbname().unwrap().to_string();
    tokio::task::spawn_blocking(move || {
        common::postgres::cluster().sql(&name, "UPDATE warden_schema SET version = 99")
    })
    .await
    .unwrap();
    let why = match PgStore::connect(&database, copy(), keys()).await {
        Ok(_) => panic!("a warden started on a schema it does not know"),
        Err(e) => e.to_string(),
    };
    let known = warden::store::postgres::schema::known_version();
    assert!(why.contains("version 99"), "{why}");
    assert!(why.contains(&format!("version {known}")), "{why}");
}

/// The database goes away under load and comes back: calls meanwhile are
/// refused UNAVAILABLE (never allowed without a record), health turns
/// NOT_SERVING, and once the database is back warden serves again by
/// itself with every decision it acknowledged before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_unavailable_then_recovers_by_itself() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    let cluster = tokio::task::spawn_blocking(common::postgres::Cluster::own)
        .await
        .unwrap();
    let cluster = std::sync::Arc::new(cluster);
    let database = {
        let c = cluster.clone();
        tokio::task::spawn_blocking(move || c.database())
            .await
            .unwrap()
    };
    let mut env = TestEnv::new();
    env.use_database(database);
    let server = env.start().await;
    env.register(&server, "cust-1", proto::CustomerStatus::Verified)
        .await;
    let before = env.admit_request("cust-1", &env.sample_chain());
    let first = env.admit(&server, before.clone()).await;
    assert_eq!(first.decision, proto::Decision::Allow as i32);
    let health = || async {
        let ch = env.channel(&server, "auditor").await;
        HealthClient::new(ch)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(|r| r.into_inner().status())
            .unwrap_or(ServingStatus::Unknown)
    };
    // Polls for what a probe would see, within a bound.
    let until = |want: ServingStatus| async move {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while health().await != want {
            assert!(
                std::time::Instant::now() < deadline,
                "health never became {want:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    until(ServingStatus::Serving).await;

    {
        let c = cluster.clone();
        tokio::task::spawn_blocking(move || c.stop_server())
            .await
            .unwrap();
    }
    let during = env
        .admission(&server)
        .await
        .admit(env.admit_request("cust-1", &env.sample_chain()))
        .await;
    match during {
        Err(status) => assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}"),
        Ok(r) => panic!("answered with the database down: {:?}", r.into_inner()),
    }
    until(ServingStatus::NotServing).await;

    {
        let c = cluster.clone();
        tokio::task::spawn_blocking(move || c.start_server())
            .await
            .unwrap();
    }
    until(ServingStatus::Serving).await;
    let again = env.admit(&server, before).await;
    assert_eq!(
        again.deployment_id, first.deployment_id,
        "an acknowledged decision was lost"
    );
    let next = env
        .admit_chain(&server, "cust-1", &env.sample_chain())
        .await;
    assert_eq!(next.decision, proto::Decision::Allow as i32, "{next:?}");
    server.stop().await;
}
