//! Merging the answers of several shards into one top-k.
//!
//! A point lives in exactly one shard (the shard of its id's hash), so the shards' answers
//! never name the same point and merging is a sort by score. A collection search merges the
//! answers of the shards held here; a federated search merges those of shards held by peers
//! with the same function, so both give the answer one whole index would.

use super::SearchHit;

/// The `k` best hits of all `answers`, best first. Equal scores keep the order of the
/// answers, and each answer's own order (so one shard's answer comes back unchanged).
pub fn merge(answers: impl IntoIterator<Item = Vec<SearchHit>>, k: usize) -> Vec<SearchHit> {
    let mut answers = answers.into_iter();
    let Some(first) = answers.next() else {
        return Vec::new();
    };
    let mut hits = first;
    for answer in answers {
        hits.extend(answer);
    }
    // Stable: ties stay in answer order.
    hits.sort_by(|a, b| b.score.total_cmp(&a.score));
    hits.truncate(k);
    hits
}

#[cfg(test)]
mod tests {
    use ipvec_protocol::entry::EntryId;
    use proptest::prelude::*;

    use super::*;

    fn hit(id: u64, score: f32) -> SearchHit {
        SearchHit {
            id: EntryId::Int(id),
            score,
            metadata: None,
            leaf: None,
        }
    }

    #[test]
    fn one_answer_comes_back_as_it_was() {
        let answer = vec![hit(3, 0.9), hit(1, 0.5), hit(2, 0.5), hit(7, -1.0)];
        assert_eq!(merge([answer.clone()], 10), answer);
        assert_eq!(merge([answer.clone()], 2), answer[..2]);
        assert!(merge(Vec::<Vec<SearchHit>>::new(), 3).is_empty());
    }

    proptest! {
        /// Merging the shards' top-k gives the top-k of all their points together.
        #[test]
        fn merged_top_k_is_the_top_k_of_the_union(
            scores in proptest::collection::vec(
                proptest::collection::vec(-1000i32..1000, 0..40), 1..6),
            k in 0usize..50,
        ) {
            let mut next = 0u64;
            let mut answers = Vec::new();
            let mut all = Vec::new();
            for shard in &scores {
                let mut answer: Vec<SearchHit> = shard
                    .iter()
                    .map(|s| {
                        next += 1;
                        hit(next, *s as f32)
                    })
                    .collect();
                all.extend(answer.iter().map(|h| h.score));
                answer.sort_by(|a, b| b.score.total_cmp(&a.score));
                answer.truncate(k);
                answers.push(answer);
            }
            let merged = merge(answers, k);
            all.sort_by(|a, b| b.total_cmp(a));
            all.truncate(k);
            let got: Vec<f32> = merged.iter().map(|h| h.score).collect();
            prop_assert_eq!(got, all);
            let mut ids: Vec<_> = merged.iter().map(|h| h.id.clone()).collect();
            ids.sort_by_key(|id| format!("{id:?}"));
            ids.dedup();
            prop_assert_eq!(ids.len(), merged.len());
        }
    }
}
