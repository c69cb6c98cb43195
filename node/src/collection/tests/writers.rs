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

/// Two writers write different and overlapping ids; replicas that merge their heads in
/// either order hold the same trees, the writers converge on them by merging each other's
/// versions, each overlapping id holds its last-writer-wins winner, and a removed writer's
/// later heads are refused.
#[tokio::test(flavor = "multi_thread")]
async fn writers_merge_to_the_same_trees_in_any_order() {
    let (dir, store, _cdir, mut owner) = fresh(2).await;
    let base = clustered(100, 24, 21);
    owner.upsert(points(&base, 0)).await.unwrap();
    owner.checkpoint().await.unwrap();
    let key = Keypair::generate_ed25519();
    let key_bytes = public_key_bytes(&key).unwrap();
    owner
        .change_writers(WriterChange::Add(key_bytes))
        .await
        .unwrap();
    let start = owner.head().clone();
    let mut second = Collection::adopt(store.clone(), &dir.path().join("w2"), start.clone())
        .await
        .unwrap();
    assert!(second.take_writer_key(&key).unwrap());
    assert!(second.writable());

    // A writer's node stopped with writes in its log reopens (its key comes after opening):
    // the writes are replayed, and commit once it writes again.
    second.upsert(points(&base[..2], 900)).await.unwrap();
    drop(second);
    let mut second = Collection::open(store.clone(), &dir.path().join("w2"))
        .await
        .unwrap();
    assert!(second.get(&EntryId::Int(901)).await.unwrap().is_some());
    assert!(second.take_writer_key(&key).unwrap());
    second.checkpoint().await.unwrap();
    assert_eq!(second.pending_count(), 0);
    second
        .delete(&[EntryId::Int(900), EntryId::Int(901)])
        .await
        .unwrap();
    second.checkpoint().await.unwrap();

    // Owner: ids 0..50 anew and 200..250; second: ids 25..75 anew and 300..350.
    let (a, b) = (clustered(100, 24, 22), clustered(100, 24, 23));
    owner.upsert(points(&a[..50], 0)).await.unwrap();
    owner.upsert(points(&a[50..], 200)).await.unwrap();
    owner.checkpoint().await.unwrap();
    second.upsert(points(&b[..50], 25)).await.unwrap();
    second.upsert(points(&b[50..], 300)).await.unwrap();
    second.delete(&[EntryId::Int(99)]).await.unwrap();
    second.checkpoint().await.unwrap();
    assert_eq!(second.head().writer, key_bytes.to_vec());
    assert_eq!(second.head().collection, owner.manifest().owner);
    // Each one's entry of an overlapping id, to name the winner by the rule.
    let mut winners = Vec::new();
    for id in 25..50u64 {
        let (mine, _) = owner.get(&EntryId::Int(id)).await.unwrap().unwrap();
        let (theirs, _) = second.get(&EntryId::Int(id)).await.unwrap().unwrap();
        let winner = match mine.lww_cmp(&theirs) {
            std::cmp::Ordering::Less => theirs,
            _ => mine,
        };
        winners.push(winner);
    }

    // Replicas merging the two heads in either order.
    let mut one = Collection::adopt(store.clone(), &dir.path().join("r1"), start.clone())
        .await
        .unwrap();
    let mut two = Collection::adopt(store.clone(), &dir.path().join("r2"), start.clone())
        .await
        .unwrap();
    assert!(one.advance(owner.head().clone()).await.unwrap());
    assert!(one.advance(second.head().clone()).await.unwrap());
    assert!(two.advance(second.head().clone()).await.unwrap());
    assert!(two.advance(owner.head().clone()).await.unwrap());
    assert_eq!(one.merged_root().unwrap(), two.merged_root().unwrap());
    // Ids 0..100 but 99, 200..250, 300..350.
    assert_eq!(one.points(), 199);
    assert_eq!(two.points(), 199);
    // A head already merged changes nothing.
    assert!(!one.advance(owner.head().clone()).await.unwrap());
    for replica in [&one, &two] {
        for (id, winner) in (25..50u64).zip(&winners) {
            let (entry, _) = replica.get(&EntryId::Int(id)).await.unwrap().unwrap();
            assert_eq!(&entry, winner, "id {id}");
        }
        assert!(replica.get(&EntryId::Int(99)).await.unwrap().is_none());
        // Searches see the merged points.
        let hit = replica
            .search(
                &b[60],
                SearchOptions {
                    k: 1,
                    ef: None,
                    exact: true,
                },
                None,
            )
            .await
            .unwrap();
        assert_eq!(hit[0].id, EntryId::Int(310));
    }

    // The writers merge each other's versions, each signing the merge as its next version.
    let before = owner.head().seq;
    assert!(owner.advance(second.head().clone()).await.unwrap());
    assert!(owner.head().seq > before);
    owner.head().verify(&[&owner.manifest().owner]).unwrap();
    assert!(second.advance(owner.head().clone()).await.unwrap());
    assert_eq!(owner.merged_root().unwrap(), one.merged_root().unwrap());
    assert_eq!(second.merged_root().unwrap(), one.merged_root().unwrap());
    assert_eq!(owner.points(), 199);
    // A version that brings nothing new makes none: writers do not answer merges forever.
    let seq = owner.head().seq;
    assert!(!owner.advance(second.head().clone()).await.unwrap());
    assert_eq!(owner.head().seq, seq);
    // A writer's later writes win over what it merged.
    second.upsert(points(&a[..1], 0)).await.unwrap();
    second.checkpoint().await.unwrap();
    assert!(one.advance(second.head().clone()).await.unwrap());
    let (entry, _) = one.get(&EntryId::Int(0)).await.unwrap().unwrap();
    assert_eq!(entry.writer, key_bytes.to_vec());

    // Reopened, a replica is at the same merge.
    let (root, points_before) = (one.merged_root().unwrap(), one.points());
    drop(one);
    let mut one = Collection::open(store.clone(), &dir.path().join("r1"))
        .await
        .unwrap();
    assert_eq!(
        (one.merged_root().unwrap(), one.points()),
        (root, points_before)
    );
    assert_eq!(one.writer_heads().len(), 2);

    // The owner removes the second writer: its later heads are refused, and what it wrote
    // before stays.
    owner
        .change_writers(WriterChange::Remove(key_bytes))
        .await
        .unwrap();
    assert!(one.advance(owner.head().clone()).await.unwrap());
    let root = one.merged_root().unwrap();
    second.upsert(points(&a[..5], 500)).await.unwrap();
    second.checkpoint().await.unwrap();
    let e = one
        .advance(second.head().clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not list as a writer"), "{e}");
    assert_eq!(one.merged_root().unwrap(), root);
    assert!(one.get(&EntryId::Int(310)).await.unwrap().is_some());
    assert!(one.get(&EntryId::Int(500)).await.unwrap().is_none());
    // The removed writer follows its removal: it signs no version of the merge, stops
    // writing, and its writes are refused.
    let seq = second.head().seq;
    assert!(second.advance(owner.head().clone()).await.unwrap());
    assert!(!(second.head().writer == key_bytes.to_vec() && second.head().seq > seq));
    assert!(second.take_writer_key(&key).unwrap());
    assert!(!second.writable());
    let e = second.upsert(points(&a[..1], 600)).await.unwrap_err();
    assert!(matches!(e, CollectionError::ReadOnly(_)), "{e}");
    // It reopens at the same merge, though a head it merged is now of a removed writer.
    drop(one);
    let one = Collection::open(store.clone(), &dir.path().join("r1"))
        .await
        .unwrap();
    assert_eq!(one.merged_root().unwrap(), root);
    assert_eq!(one.writers(), vec![owner.writer().unwrap()]);
}
