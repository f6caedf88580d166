//! `warden ledger …`: read the ledger and verify it as an outsider would,
//! trusting only the ledger's public key.
//!
//! `verify` keeps the last checkpoint it accepted in a state file. Each run
//! checks the new checkpoint's signature, that the log only grew since the
//! saved one (a consistency proof), and the inclusion of chosen entries. On
//! any inconsistency it prints both signed checkpoints — the evidence that
//! the log forked or was rolled back — and exits non-zero.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::Subcommand;
use tonic::transport::Channel;

use super::ClientArgs;
use crate::ledger::checkpoint::Checkpoint;
use crate::ledger::note::Verifier;
use crate::ledger::tree::{self, Hash};
use crate::proto;
use crate::proto::ledger_client::LedgerClient;

/// Exit status when the log is proven to have misbehaved.
pub const EXIT_INCONSISTENT: i32 = super::exit::INCONSISTENT;

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Print the latest signed checkpoint.
    Checkpoint,
    /// Print entries [start, start + count).
    Entries {
        #[arg(long, default_value_t = 0)]
        start: u64,
        #[arg(long, default_value_t = 10)]
        count: u32,
    },
    /// Print an inclusion proof for an entry.
    Prove {
        index: u64,
        /// Tree size to prove against (default: latest checkpoint).
        #[arg(long, default_value_t = 0)]
        tree_size: u64,
    },
    /// Verify the log against the checkpoint seen last time.
    Verify {
        /// Ledger verifier key (text `name+id+key`, or a file holding it).
        #[arg(long)]
        vkey: String,
        /// Where the last accepted checkpoint is kept.
        #[arg(long, default_value = "warden-ledger.checkpoint")]
        state: PathBuf,
        /// Entries whose inclusion to check.
        #[arg(long = "entry")]
        entries: Vec<u64>,
    },
}

fn hash_of(bytes: &[u8], what: &str) -> anyhow::Result<Hash> {
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("{what} is not a 32-byte hash"))
}

fn hashes_of(v: &[Vec<u8>], what: &str) -> anyhow::Result<Vec<Hash>> {
    v.iter().map(|h| hash_of(h, what)).collect()
}

/// A verifier key given as a file or as the key text itself; a mistyped
/// path is reported as the path it is, not as a malformed key.
pub fn read_vkey(vkey: &str) -> anyhow::Result<Verifier> {
    if Path::new(vkey).is_file() {
        let text = std::fs::read_to_string(vkey).with_context(|| format!("cannot read {vkey}"))?;
        return Verifier::from_text(&text).with_context(|| format!("{vkey} holds no verifier key"));
    }
    Verifier::from_text(vkey).map_err(|e| {
        anyhow::anyhow!("{vkey:?} is neither a readable file nor a verifier key (name+id+key): {e}")
    })
}

pub async fn run(c: &ClientArgs, cmd: LedgerCommand) -> anyhow::Result<i32> {
    let mut client = LedgerClient::new(c.connect("auditor").await?);
    match cmd {
        LedgerCommand::Checkpoint => {
            let r = client
                .get_checkpoint(proto::GetCheckpointRequest { first_size: 0 })
                .await?
                .into_inner();
            print!("{}", r.checkpoint);
            Ok(0)
        }
        LedgerCommand::Entries { start, count } => {
            let r = client
                .get_entries(proto::GetEntriesRequest { start, count })
                .await?
                .into_inner();
            for e in r.entries {
                println!("{} {}", e.index, String::from_utf8_lossy(&e.data));
            }
            Ok(0)
        }
        LedgerCommand::Prove { index, tree_size } => {
            let r = client
                .get_inclusion_proof(proto::GetInclusionProofRequest { index, tree_size })
                .await?
                .into_inner();
            println!("index      {}", r.index);
            println!("tree_size  {}", r.tree_size);
            println!("leaf_hash  {}", hex::encode(&r.leaf_hash));
            for (i, h) in r.proof.iter().enumerate() {
                println!("proof[{i}]   {}", hex::encode(h));
            }
            print!("checkpoint\n{}", r.checkpoint);
            Ok(0)
        }
        LedgerCommand::Verify {
            vkey,
            state,
            entries,
        } => verify(&mut client, &read_vkey(&vkey)?, &state, &entries).await,
    }
}

fn evidence(old: &str, new: &str, why: &str) -> i32 {
    eprintln!("LEDGER INCONSISTENT: {why}");
    eprintln!("--- checkpoint seen before ---\n{old}--- checkpoint served now ---\n{new}");
    EXIT_INCONSISTENT
}

// The audit protocol in order: the checkpoint seen before, the new one
// with its consistency proof, each inclusion proof, and only then the new
// checkpoint persisted. In one function the rule "nothing is remembered
// until everything verified" can be seen to hold.
async fn verify(
    client: &mut LedgerClient<Channel>,
    vkey: &Verifier,
    state: &Path,
    entries: &[u64],
) -> anyhow::Result<i32> {
    let previous = match std::fs::read_to_string(state) {
        Ok(note) => Some(note),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => bail!("cannot read {}: {e}", state.display()),
    };
    let old = previous
        .as_deref()
        .map(|note| Checkpoint::open(note, vkey).map(|cp| (note, cp)))
        .transpose()
        .with_context(|| {
            format!(
                "the checkpoint saved in {} does not verify",
                state.display()
            )
        })?;

    let first_size = old.as_ref().map_or(0, |(_, cp)| cp.size);
    let r = match client
        .get_checkpoint(proto::GetCheckpointRequest { first_size })
        .await
    {
        Ok(r) => r.into_inner(),
        Err(s) if s.code() == tonic::Code::InvalidArgument => {
            let Some((old_note, _)) = &old else {
                return Err(s.into());
            };
            // The log claims to be smaller than a size it signed before.
            let latest = client
                .get_checkpoint(proto::GetCheckpointRequest { first_size: 0 })
                .await?
                .into_inner();
            return Ok(evidence(
                old_note,
                &latest.checkpoint,
                "the log is smaller than a checkpoint it signed before (rolled back)",
            ));
        }
        Err(s) => return Err(s.into()),
    };
    let new =
        Checkpoint::open(&r.checkpoint, vkey).context("the served checkpoint does not verify")?;
    if let Some((old_note, old_cp)) = &old {
        let proof = hashes_of(&r.consistency_proof, "consistency proof")?;
        if new.size < old_cp.size {
            return Ok(evidence(old_note, &r.checkpoint, "the log shrank"));
        }
        if let Err(e) = tree::check_tree(&proof, new.size, new.root, old_cp.size, old_cp.root) {
            return Ok(evidence(
                old_note,
                &r.checkpoint,
                &format!("the new checkpoint is not an extension of the old one ({e})"),
            ));
        }
        println!("consistent: size {} -> {}", old_cp.size, new.size);
    } else {
        println!("first checkpoint seen: size {}", new.size);
    }
    for &index in entries {
        let p = client
            .get_inclusion_proof(proto::GetInclusionProofRequest {
                index,
                tree_size: new.size,
            })
            .await?
            .into_inner();
        let data = client
            .get_entries(proto::GetEntriesRequest {
                start: index,
                count: 1,
            })
            .await?
            .into_inner()
            .entries
            .pop()
            .with_context(|| format!("entry {index} was not served"))?;
        let leaf = tree::leaf_hash(&data.data);
        let proof = hashes_of(&p.proof, "inclusion proof")?;
        if let Err(e) = tree::check_record(&proof, new.size, new.root, index, leaf) {
            let old_note = old.as_ref().map_or(r.checkpoint.as_str(), |(n, _)| *n);
            return Ok(evidence(
                old_note,
                &r.checkpoint,
                &format!("entry {index} is not in the signed tree ({e})"),
            ));
        }
        println!("included: entry {index} at size {}", new.size);
    }
    // Only now remember the new checkpoint: it verified in every respect.
    // Durably: a checkpoint forgotten after a power cut would let a log
    // rolled back in between pass the next check.
    crate::fsutil::write_atomic(
        state,
        r.checkpoint.as_bytes(),
        crate::fsutil::Mode::Default,
        crate::fsutil::Durability::Synced,
    )
    .with_context(|| format!("cannot replace {}", state.display()))?;
    print!("{}", r.checkpoint);
    Ok(0)
}
