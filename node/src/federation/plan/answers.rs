//! What the planner makes of an answer or a failure: the shards' answers kept, their errors
//! judged, the holder's health recorded in the book, and the failed shards sent on.

use std::{collections::BTreeSet, fmt::Debug, hash::Hash, time::Duration};

use ipvec_protocol::search::{ErrorCode, SearchAnswer, ShardAnswer, ShardError};

use super::{Action, Planner, State, Why};
use crate::{
    cluster::Millis,
    federation::{
        outcome::{Answered, Kept},
        Holder, PeerBook, RequestId,
    },
};

impl<P: Clone + Eq + Hash + Ord + Debug> Planner<P> {
    /// Request `id` answered at `now`: keeps its shards' answers, fails over its failed
    /// shards, and records its holder's latency (or, for an answer showing trouble, a
    /// failure) in the book. A late answer counts too.
    pub(super) fn answered(
        &mut self,
        id: RequestId,
        answer: SearchAnswer,
        book: &mut PeerBook<P>,
        now: Millis,
        out: &mut Vec<Action<P>>,
    ) {
        let Some((to, asked, sent, hedge)) = self.close(id) else {
            return;
        };
        let latency = now.since(sent);
        let who = to.describe();
        // Whether the answer shows its holder in trouble or misbehaving.
        let mut trouble = false;
        let mut retry = Vec::new();
        if let Some(error) = answer.refused {
            for s in &asked {
                trouble |= self.shard_error(*s, &who, &error, &mut retry);
            }
        } else {
            let mut seen = BTreeSet::new();
            for part in answer.shards {
                if !asked.contains(&part.shard) || !seen.insert(part.shard) {
                    trouble = true;
                    continue;
                }
                match &part.error {
                    Some(error) => trouble |= self.shard_error(part.shard, &who, error, &mut retry),
                    None => self.keep(part, &to, latency, hedge),
                }
            }
            for s in asked.iter().filter(|s| !seen.contains(*s)) {
                trouble = true;
                if let Some(st) = self.shards.get_mut(s) {
                    st.errors
                        .push(format!("{who}: the answer left the shard out"));
                }
                retry.push(*s);
            }
        }
        match &to {
            Holder::Peer(p) if trouble => book.failed(p, now),
            Holder::Peer(p) => book.answered(p, latency, now),
            Holder::Local if !trouble => book.answered_local(latency),
            Holder::Local => {}
        }
        self.failover(&retry, book, now, out);
    }

    /// Request `id` failed at `now`: a failure of its peer, and its shards fail over. A
    /// request already cancelled is let go without blame.
    pub(super) fn failed(
        &mut self,
        id: RequestId,
        reason: &str,
        book: &mut PeerBook<P>,
        now: Millis,
        out: &mut Vec<Action<P>>,
    ) {
        let was_live = self
            .requests
            .get(&id)
            .is_some_and(|r| r.state == State::Live);
        let Some((to, asked, _, _)) = self.close(id) else {
            return;
        };
        if !was_live {
            return;
        }
        if let Holder::Peer(p) = &to {
            book.failed(p, now);
        }
        let who = to.describe();
        for s in &asked {
            if let Some(st) = self.shards.get_mut(s) {
                st.errors.push(format!("{who}: {reason}"));
            }
        }
        self.failover(&asked, book, now, out);
    }

    /// Marks request `id` done and off its shards' live lists; answers its holder, shards,
    /// send time and hedge flag, or `None` if it is unknown or was done already.
    fn close(&mut self, id: RequestId) -> Option<(Holder<P>, Vec<u32>, Millis, bool)> {
        let r = self.requests.get_mut(&id)?;
        if r.state == State::Done {
            return None;
        }
        r.state = State::Done;
        r.hedge_at = None;
        r.silent_at = None;
        for s in &r.shards {
            if let Some(st) = self.shards.get_mut(s) {
                st.live.retain(|l| *l != id);
            }
        }
        Some((r.to.clone(), r.shards.clone(), r.sent, r.hedge))
    }

    /// A shard answered with `error` by `who`: `bad_request` makes it missing, anything else
    /// is retried elsewhere. Answers whether the error shows the holder in trouble (`busy`,
    /// `rate_limited`, `internal`, a code we do not know).
    fn shard_error(&mut self, s: u32, who: &str, error: &ShardError, retry: &mut Vec<u32>) -> bool {
        let Some(st) = self.shards.get_mut(&s) else {
            return false;
        };
        let code = error.code();
        if code == Some(ErrorCode::BadRequest) {
            if st.is_open() {
                st.missing = Some(format!("bad_request from {who}: {}", error.message));
            }
            return false;
        }
        st.errors
            .push(format!("{who}: {}: {}", error.code, error.message));
        retry.push(s);
        matches!(
            code,
            None | Some(ErrorCode::Busy | ErrorCode::RateLimited | ErrorCode::Internal)
        )
    }

    /// Keeps a shard's answer if it is the first, or from a newer head than the one kept.
    fn keep(&mut self, part: ShardAnswer, by: &Holder<P>, latency: Duration, hedged: bool) {
        let Some(st) = self.shards.get_mut(&part.shard) else {
            return;
        };
        if st.missing.is_some() || st.kept.as_ref().is_some_and(|k| part.seq <= k.answered.seq) {
            return;
        }
        st.kept = Some(Kept {
            answered: Answered {
                by: by.clone(),
                root: part.root,
                seq: part.seq,
                latency_ms: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
                hedged,
            },
            hits: part.hits,
        });
    }

    /// Asks the next untried holder for each of `shards` still open with no request out; a
    /// shard with none left is missing. Nothing is sent at or after the deadline.
    fn failover(
        &mut self,
        shards: &[u32],
        book: &mut PeerBook<P>,
        now: Millis,
        out: &mut Vec<Action<P>>,
    ) {
        let shards: BTreeSet<u32> = shards
            .iter()
            .copied()
            .filter(|s| {
                self.shards
                    .get(s)
                    .is_some_and(|st| st.is_open() && st.live.is_empty())
            })
            .collect();
        if shards.is_empty() || now >= self.deadline {
            return;
        }
        let shards: Vec<u32> = shards.into_iter().collect();
        let (groups, none) = self.assign(&shards, book, now, false);
        for s in none {
            if let Some(st) = self.shards.get_mut(&s) {
                st.missing = Some(format!("every holder failed: {}", st.errors.join("; ")));
            }
        }
        for (to, shards) in groups {
            self.send(to, shards, Why::Failover, book, now, out);
        }
    }
}
