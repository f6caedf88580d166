//! The ledger: inclusion and consistency proofs at every size, one root
//! per size.

use super::*;

/// For a ledger of [`PROOF_SIZE`] entries, written one by one and then
/// concurrently (so batches hold several): every checkpoint seen for a
/// size has the root computed from the stored entries (one root per
/// size, before and after reopening); inclusion proofs verify for every
/// index in every size and consistency proofs between every two sizes.
pub async fn proofs_verify_at_every_size_and_one_size_has_one_root<E: Engine + ?Sized>(engine: &E) {
    let case = Case::new(engine).await;
    let mut roots: BTreeMap<u64, Vec<Hash>> = BTreeMap::new();
    let seen = |roots: &mut BTreeMap<u64, Vec<Hash>>, c: &Checkpoint| {
        roots.entry(c.size).or_default().push(c.root);
    };
    for n in 0..PROOF_SIZE / 2 {
        let (r, e) = attribution_request(&format!("attr-{n}"), MODEL);
        expect(
            "put_attribution_request",
            case.s().put_attribution_request(&r, e).await,
        );
        seen(
            &mut roots,
            &expect("checkpoint", case.s().checkpoint().await).checkpoint,
        );
    }
    let mut tasks = tokio::task::JoinSet::new();
    for n in PROOF_SIZE / 2..PROOF_SIZE {
        let store = case.store.clone();
        tasks.spawn(async move {
            let (r, e) = attribution_request(&format!("attr-{n}"), MODEL);
            expect(
                "put_attribution_request",
                store.put_attribution_request(&r, e).await,
            );
            expect("checkpoint", store.checkpoint().await).checkpoint
        });
    }
    while let Some(c) = tasks.join_next().await {
        seen(&mut roots, &c.expect("a writer panicked"));
    }
    let case = case.reopen().await;
    let store = case.s();
    seen(
        &mut roots,
        &expect("checkpoint", store.checkpoint().await).checkpoint,
    );
    let size = ledger_size(store).await;
    assert_eq!(
        size, PROOF_SIZE,
        "the ledger size after {PROOF_SIZE} writes"
    );
    let entries = all_entries(store, size).await;
    let tree = memory_tree(&entries);
    let root_at = |s: u64| {
        if s == 0 {
            tree::empty_root()
        } else {
            tree.root_at(s).expect("root_at")
        }
    };
    for (s, rs) in &roots {
        for r in rs {
            assert_eq!(
                *r,
                root_at(*s),
                "a checkpoint of size {s} has another root than its entries"
            );
        }
    }
    let past_end = expect("entries", store.entries(size, 5).await);
    assert!(past_end.is_empty(), "entries past the end exist");
    let at = expect(
        "entries_at",
        store.entries_at(&[size - 1, size, size + 7]).await,
    );
    assert_eq!(
        at.keys().copied().collect::<Vec<_>>(),
        vec![size - 1],
        "entries_at returns only the entries that exist"
    );
    for to in 1..=size {
        for i in 0..to {
            let proof = expect("inclusion_proof", store.inclusion_proof(i, to).await);
            let leaf = tree::leaf_hash(&entries[i as usize]);
            tree::check_record(&proof, to, root_at(to), i, leaf).unwrap_or_else(|e| {
                panic!("inclusion proof of entry {i} in the tree of size {to} does not verify: {e}")
            });
        }
    }
    for to in 0..=size {
        for from in 0..=to {
            let proof = expect("consistency_proof", store.consistency_proof(from, to).await);
            tree::check_tree(&proof, to, root_at(to), from, root_at(from)).unwrap_or_else(|e| {
                panic!("consistency proof from size {from} to {to} does not verify: {e}")
            });
        }
    }
}

/// The ledger size [`proofs_verify_at_every_size_and_one_size_has_one_root`]
/// builds: proofs of every shape (left and right subtrees, perfect and
/// ragged trees) occur below it.
pub const PROOF_SIZE: u64 = 20;
