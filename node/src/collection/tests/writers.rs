use ipvec_protocol::head::public_key_bytes;

use super::*;
use crate::collection::writers::WriterChange;

/// The owner adds and removes writers as signed versions that keep the shards and pending
/// writes; a replica follows them and then accepts heads only from the listed keys.
#[tokio::test(flavor = "multi_thread")]
async fn the_owner_changes_the_writer_list_as_signed_versions() {
    let (dir, store, cdir, mut owner) = fresh(2).await;
    let data = clustered(100, 24, 5);
    owner.upsert(points(&data, 0)).await.unwrap();
    owner.checkpoint().await.unwrap();
    let mut replica = Collection::adopt(store.clone(), &dir.path().join("r"), owner.head().clone())
        .await
        .unwrap();
    let own_key = owner.writer().unwrap();
    assert_eq!(owner.writers(), vec![own_key]);

    // A write still in the log when the list changes stays pending, then commits.
    owner.upsert(points(&data[..1], 500)).await.unwrap();
    let (before, shards) = (owner.head().clone(), owner.manifest().shards.clone());
    let other = Keypair::generate_ed25519();
    let other_key = public_key_bytes(&other).unwrap();
    assert!(owner
        .change_writers(WriterChange::Add(other_key))
        .await
        .unwrap());
    assert_eq!(owner.writers(), vec![own_key, other_key]);
    assert_eq!(owner.head().seq, before.seq + 1);
    assert_eq!(owner.manifest().prev, Some(before.manifest));
    assert_eq!(owner.manifest().shards, shards, "the shards stay");
    assert_eq!(owner.pending_count(), 1);
    owner.head().verify(&[&own_key]).unwrap();
    // Adding it again makes no version.
    assert!(!owner
        .change_writers(WriterChange::Add(other_key))
        .await
        .unwrap());
    assert_eq!(owner.head().seq, before.seq + 1);

    // The replica takes the new version; a head the new writer signs is then allowed.
    replica.advance(owner.head().clone()).await.unwrap();
    assert_eq!(replica.writers(), vec![own_key, other_key]);
    let by_other = HeadRecord::sign(
        public_key_bytes(owner.owner().unwrap()).unwrap(),
        replica.head().seq + 1,
        owner.head().manifest,
        &other,
    )
    .unwrap();
    by_other
        .verify(&[own_key.as_slice(), other_key.as_slice()])
        .unwrap();

    // The owner's key stays; removing the other makes a version a replica follows, after
    // which that writer's heads are refused.
    let e = owner
        .change_writers(WriterChange::Remove(own_key))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot be removed"), "{e}");
    assert!(owner
        .change_writers(WriterChange::Remove(other_key))
        .await
        .unwrap());
    assert!(!owner
        .change_writers(WriterChange::Remove(other_key))
        .await
        .unwrap());
    replica.advance(owner.head().clone()).await.unwrap();
    assert_eq!(replica.writers(), vec![own_key]);
    let late = HeadRecord::sign(
        public_key_bytes(owner.owner().unwrap()).unwrap(),
        replica.head().seq + 1,
        owner.head().manifest,
        &other,
    )
    .unwrap();
    let e = replica.advance(late).await.unwrap_err().to_string();
    assert!(e.contains("does not list as a writer"), "{e}");
    assert_eq!(
        replica.head(),
        owner.head(),
        "a refused head changes nothing"
    );

    // The pending write commits into the next version, which keeps the list; reopening
    // reads it back.
    owner.checkpoint().await.unwrap();
    assert_eq!(owner.pending_count(), 0);
    assert_eq!(owner.points(), 101);
    drop(owner);
    let owner = Collection::open(store.clone(), &cdir).await.unwrap();
    assert_eq!(owner.writers(), vec![own_key]);
    assert_eq!(owner.points(), 101);

    // A replica cannot change the list.
    let e = replica
        .change_writers(WriterChange::Add(other_key))
        .await
        .unwrap_err();
    assert!(matches!(e, CollectionError::ReadOnly(_)), "{e}");
}
