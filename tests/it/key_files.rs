//! Secret key files others could read refuse start: the licence key, the
//! ledger key, the PII key file and the TLS server key, each named with the
//! command that fixes it. A key file owned by root may be readable by its
//! group (how Kubernetes secrets and root-managed files reach the warden
//! user); any other must be private to its owner.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;

use common::{warden_command, TestEnv};

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn key_files(env: &TestEnv) -> Vec<(&'static str, std::path::PathBuf)> {
    let c = &env.config;
    vec![
        ("licence key", c.licence.key.clone()),
        ("ledger key", c.ledger.key.clone()),
        ("PII key file", c.kyc.pii_key_file.clone()),
        ("TLS server key", c.tls.key.clone()),
    ]
}

#[tokio::test]
async fn a_key_file_others_can_read_refuses_start_naming_it_and_the_fix() {
    let env = TestEnv::new();
    for (what, path) in key_files(&env) {
        chmod(&path, 0o644);
        let err = warden::server::build_app(&env.config)
            .await
            .err()
            .unwrap_or_else(|| panic!("started with a world-readable {what}"))
            .to_string();
        let shown = path.display().to_string();
        assert!(err.contains(&format!("{what} {shown} is open to")), "{err}");
        assert!(err.contains("others (mode 0644)"), "{err}");
        assert!(err.contains(&format!("chmod 600 {shown}")), "{err}");
        chmod(&path, 0o600);
    }
    // Nothing was created: the check comes before the store is opened.
    assert!(!env.config.data_dir.exists());

    // Group-readable: accepted when root owns the file, refused otherwise.
    let licence = &env.config.licence.key;
    chmod(licence, 0o640);
    let by_root = std::fs::metadata(licence).unwrap().uid() == 0;
    match warden::server::build_app(&env.config).await {
        Ok(app) if by_root => {
            let closed = app.store.closed();
            drop(app);
            closed.cancelled().await;
        }
        Err(e) if !by_root => assert!(e.to_string().contains("its group"), "{e}"),
        Ok(_) => panic!("started with a group-readable key its owner could keep private"),
        Err(e) => panic!("refused a root-owned key readable by its group: {e}"),
    }
    // Group-writable is refused whoever owns it.
    chmod(licence, 0o660);
    let err = warden::server::build_app(&env.config).await.err().unwrap();
    assert!(err.to_string().contains("its group"), "{err}");
    chmod(licence, 0o600);
    let app = warden::server::build_app(&env.config).await.unwrap();
    let closed = app.store.closed();
    drop(app);
    closed.cancelled().await;
}

#[test]
fn warden_serve_refuses_a_world_readable_ledger_key_and_exits_1() {
    let env = TestEnv::new();
    let config = env.path().join("warden.toml");
    std::fs::write(&config, common::config_toml(&env.config)).unwrap();
    chmod(&env.config.ledger.key, 0o644);
    let log = env.path().join("serve.log");
    let mut child = warden_command()
        .args(["serve", "--config"])
        .arg(&config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // It must stop by itself; one that is still up when its data directory
    // exists has started serving.
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if env.config.data_dir.exists() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("warden serve opened its store with a world-readable ledger key");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    let shown = env.config.ledger.key.display().to_string();
    assert!(stderr.contains(&format!("chmod 600 {shown}")), "{stderr}");
    assert!(!env.config.data_dir.exists());
}
