//! The store conformance suite (`warden::store::conformance`) run against
//! both engines. On sled each check gets a new data directory in a
//! temporary directory; on PostgreSQL a new database of the test cluster
//! (`common::postgres`). Reopening opens the same directory or database
//! again with the same ledger key and personal-data keys.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use warden::ledger::note::{Signer, Verifier};
use warden::pii::Keyring;
use warden::store::conformance::{Engine, Instance};
use warden::store::{PgStore, SledStore, Store};

use crate::common::postgres;

struct Sled;

/// One sled store: its directory and the keys it is opened with.
struct SledInstance {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    seed: [u8; 32],
    key_line: String,
}

const LEDGER_NAME: &str = "warden.test/ledger";

#[async_trait]
impl Engine for Sled {
    async fn fresh(&self) -> Box<dyn Instance> {
        let tmp = tempfile::tempdir().unwrap();
        let mut seed = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed).unwrap();
        Box::new(SledInstance {
            dir: tmp.path().join("data"),
            _tmp: tmp,
            seed,
            key_line: Keyring::new_key_line("test-1").unwrap(),
        })
    }
}

#[async_trait]
impl Instance for SledInstance {
    async fn open(&self) -> Arc<dyn Store> {
        let signer = Signer::from_seed(LEDGER_NAME, self.seed).unwrap();
        let keys = Keyring::parse("test", &self.key_line).unwrap();
        Arc::new(SledStore::open(&self.dir, signer, keys).unwrap())
    }

    fn ledger_verifier(&self) -> Verifier {
        Signer::from_seed(LEDGER_NAME, self.seed)
            .unwrap()
            .verifier()
    }
}

/// The keys an instance opens its store with.
struct Keys {
    seed: [u8; 32],
    key_line: String,
}

impl Keys {
    fn new() -> Self {
        let mut seed = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed).unwrap();
        Self {
            seed,
            key_line: Keyring::new_key_line("test-1").unwrap(),
        }
    }

    fn signer(&self) -> Signer {
        Signer::from_seed(LEDGER_NAME, self.seed).unwrap()
    }

    fn keyring(&self) -> Keyring {
        Keyring::parse("test", &self.key_line).unwrap()
    }
}

struct Postgres;

/// One database of the test cluster.
struct PgInstance {
    database: warden::config::Database,
    keys: Keys,
}

#[async_trait]
impl Engine for Postgres {
    async fn fresh(&self) -> Box<dyn Instance> {
        let database = tokio::task::spawn_blocking(|| postgres::cluster().database())
            .await
            .unwrap();
        Box::new(PgInstance {
            database,
            keys: Keys::new(),
        })
    }
}

#[async_trait]
impl Instance for PgInstance {
    async fn open(&self) -> Arc<dyn Store> {
        let store = PgStore::connect(&self.database, self.keys.signer(), self.keys.keyring())
            .await
            .unwrap();
        Arc::new(store)
    }

    fn ledger_verifier(&self) -> Verifier {
        self.keys.signer().verifier()
    }
}

mod sled {
    warden::store_conformance_tests!(super::Sled);
}

mod pg {
    warden::store_conformance_tests!(super::Postgres);
}
