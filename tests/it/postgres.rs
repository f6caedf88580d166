//! The real server on the PostgreSQL engine: what a scheduler and a KYC
//! system do end to end, across a restart, and what the database holds.
#![allow(clippy::unwrap_used)]

use crate::common;

use common::TestEnv;
use warden::proto;

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
    let customer = env
        .customers(&server)
        .await
        .get_customer(proto::GetCustomerRequest {
            customer_id: "cust-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(customer.legal_name, "cust-1 Ltd");
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
