//! Bulk loads: many points new to the index at once, identical vectors grouped on the
//! calling thread and the distinct ones inserted into usearch's graph from several threads
//! (usearch's inserts may run together, each in a thread context of its own).

use ipvec_protocol::manifest::Quantization;

use super::{backend, codes, dedup, HnswIndex, IndexError};

impl HnswIndex {
    /// Adds points in their stored form (little-endian f32 or f16 bits, or i8 codes, as the
    /// index's quantization stores them), `threads` at a time: a bulk load of keys new to the
    /// index. Identical vectors are grouped on this thread; the
    /// distinct ones then go into usearch's graph from `threads` threads at once (usearch's
    /// inserts may run together, each in a thread context of its own), and `added` is told
    /// how many points each thread has placed, a few at a time.
    pub fn add_stored(
        &mut self,
        points: Vec<(u64, Vec<u8>)>,
        threads: usize,
        added: &(dyn Fn(u64) + Sync),
    ) -> Result<(), IndexError> {
        let width = self.spec.dimension * self.spec.quantization.bytes_per_component();
        // The points that need a slot of their own, and where each is in that list.
        let mut fresh: Vec<(u64, Vec<u8>)> = Vec::with_capacity(points.len());
        let mut fresh_at: std::collections::HashMap<u64, usize> = Default::default();
        let mut grouped = 0u64;
        for (key, stored) in points {
            if stored.len() != width {
                return Err(IndexError::Dimension {
                    expected: self.spec.dimension,
                    actual: stored.len() / self.spec.quantization.bytes_per_component(),
                });
            }
            if self.contains(key) || fresh_at.contains_key(&key) {
                return Err(backend(format!(
                    "key {key} is added twice in one bulk load"
                )));
            }
            let hash = dedup::hash(&stored);
            let holder = self.groups.find(hash).map(|slot| {
                let same = match fresh_at.get(&slot) {
                    Some(&i) => fresh[i].1 == stored,
                    None => self.stored_at(slot).as_ref() == Some(&stored),
                };
                (slot, same)
            });
            match holder {
                Some((slot, true)) => {
                    self.groups.join(slot, key);
                    grouped += 1;
                    continue;
                }
                // Another vector with the same hash keeps its place in the map.
                Some((_, false)) => {}
                None => self.groups.remember(hash, key),
            }
            fresh_at.insert(key, fresh.len());
            fresh.push((key, stored));
        }
        added(grouped);
        self.fit_codes(fresh.iter().map(|(_, stored)| stored.as_slice()));
        self.reserve(self.index.size() + fresh.len())?;
        let next = std::sync::atomic::AtomicUsize::new(0);
        const STEP: usize = 64;
        let this = &*self;
        let work = || -> Result<(), IndexError> {
            loop {
                let from = next.fetch_add(STEP, std::sync::atomic::Ordering::Relaxed);
                let Some(run) = fresh.get(from..(from + STEP).min(fresh.len())) else {
                    return Ok(());
                };
                if run.is_empty() {
                    return Ok(());
                }
                let _context = this.contexts.acquire();
                for (key, stored) in run {
                    this.add_one(*key, stored)?;
                }
                added(run.len() as u64);
            }
        };
        std::thread::scope(|scope| {
            let helpers: Vec<_> = (1..threads.max(1)).map(|_| scope.spawn(work)).collect();
            let mut result = work();
            for helper in helpers {
                let joined = helper
                    .join()
                    .unwrap_or_else(|_| Err(backend("an index insert thread panicked")));
                result = result.and(joined);
            }
            result
        })?;
        if threads > 1 {
            self.unmended.extend(fresh.iter().map(|(key, _)| *key));
        }
        Ok(())
    }

    /// Makes every point inserted from several threads since the last call reachable, and
    /// answers how many were not. usearch's concurrent inserts can leave points that no other
    /// point links to, or a few linked only to each other: a search never finds them, whatever
    /// its `ef`. A walk of the base layer from the graph's main part, through every link,
    /// finds the ones it does not reach, and they are inserted again from this thread
    /// (an insert from one thread links a point from its new neighbours). One walk of the
    /// whole graph: call it once after a bulk load's last chunk, not after each.
    pub fn mend(&mut self) -> Result<usize, IndexError> {
        let unmended = std::mem::take(&mut self.unmended);
        let mut again = 0;
        // One pass mends what the concurrent inserts left: a point inserted again is linked
        // from its new neighbours, and when one of those was reached, so is the point. A
        // point not so linked has the graph walked again.
        for _ in 0..3 {
            let (lost, seen) = self.unreached(&unmended);
            if lost.is_empty() {
                break;
            }
            // A removed point keeps its slot until the index is compacted.
            self.reserve(self.index.capacity() + lost.len())?;
            let _context = self.contexts.acquire();
            for key in &lost {
                let stored = self.stored_at(*key).ok_or_else(|| {
                    backend(format!(
                        "slot {key} of the index lost its vector while the build mended \
                             its graph; reopen the collection to build its index again"
                    ))
                })?;
                self.index.remove(*key).map_err(backend)?;
                self.add_one(*key, &stored)?;
                again += 1;
            }
            let (mut out, mut back) = (Vec::new(), Vec::new());
            let reached = |key: u64, out: &mut Vec<u64>, back: &mut Vec<u64>| {
                self.links(key, out);
                out.iter().any(|next| {
                    seen.contains(next) && {
                        self.links(*next, back);
                        back.contains(&key)
                    }
                })
            };
            if lost.iter().all(|key| reached(*key, &mut out, &mut back)) {
                break;
            }
        }
        Ok(again)
    }

    /// Of `keys`, points just inserted from several threads at once, the ones a walk from the
    /// rest of the graph would not reach: a key is reached when a point that is not one of
    /// `keys` links to it (looked for among the points it links to, as HNSW links are nearly
    /// all both ways), or when a reached key does. The points outside `keys` are taken to be
    /// reached, which the inserts of `keys` do not change for more than a few: so this looks
    /// at `keys` and their neighbours only, not the whole graph as [`HnswIndex::mend`] does,
    /// and a writer can check each small batch of inserts. When every point of the graph
    /// is one of `keys`, the walk starts at the one most linked to (see `unreached`).
    pub fn cut_off(&self, keys: &[u64]) -> Vec<u64> {
        let batch: std::collections::HashSet<u64> = keys.iter().copied().collect();
        let (mut out, mut back) = (Vec::new(), Vec::new());
        let mut reached = std::collections::HashSet::new();
        let mut queue = Vec::new();
        for &key in keys {
            self.links(key, &mut out);
            let anchored = out.iter().any(|next| {
                !batch.contains(next) && {
                    self.links(*next, &mut back);
                    back.contains(&key)
                }
            });
            if anchored && reached.insert(key) {
                queue.push(key);
            }
        }
        if queue.is_empty() && self.index.size() <= batch.len() {
            let (lost, _) = self.unreached(keys);
            return lost;
        }
        while let Some(key) = queue.pop() {
            self.links(key, &mut out);
            for next in &out {
                if batch.contains(next) && reached.insert(*next) {
                    queue.push(*next);
                }
            }
        }
        keys.iter()
            .copied()
            .filter(|key| !reached.contains(key))
            .collect()
    }

    /// `key`'s base-layer links, into `out`.
    pub(super) fn links(&self, key: u64, out: &mut Vec<u64>) {
        self.links_at(key, 0, out);
    }

    /// `key`'s links at graph `level` (0 is the base layer), into `out`.
    pub(super) fn links_at(&self, key: u64, level: usize, out: &mut Vec<u64>) {
        let mut cursor = self.index.neighbors(key, level);
        out.resize(cursor.total(), 0);
        let got = cursor.drain_into(out);
        out.truncate(got);
    }

    /// The slots of `keys` that a walk of the base layer does not reach, in order, and the
    /// slots it reached. The walk starts at the point most linked to from `keys`, which is
    /// in the graph's main part: a group the inserts cut off has no links from outside it,
    /// so none of its points is linked to more often than its size. (Starting at the highest
    /// points instead missed a cut-off group that held one of them.)
    fn unreached(&self, keys: &[u64]) -> (Vec<u64>, std::collections::HashSet<u64>) {
        let mut out = Vec::new();
        let mut linked: std::collections::HashMap<u64, u32> = Default::default();
        for key in keys {
            self.links(*key, &mut out);
            for next in &out {
                *linked.entry(*next).or_default() += 1;
            }
        }
        let Some(start) = linked
            .iter()
            .max_by_key(|(key, n)| (**n, std::cmp::Reverse(**key)))
            .map(|(key, _)| *key)
        else {
            return (Vec::new(), Default::default());
        };
        drop(linked);
        let mut queue = vec![start];
        let mut seen: std::collections::HashSet<u64> = queue.iter().copied().collect();
        while let Some(key) = queue.pop() {
            self.links(key, &mut out);
            for next in &out {
                if seen.insert(*next) {
                    queue.push(*next);
                }
            }
        }
        let lost = keys
            .iter()
            .copied()
            .filter(|key| !seen.contains(key))
            .collect();
        (lost, seen)
    }

    /// Fits the codes of an index that walks on them to the stored forms (f32 bits) of
    /// `sample`, unless they are fitted already: call it with the first vectors the index
    /// takes, as many as there are (an insert fits them to its vector alone).
    pub fn fit_codes<'a>(&self, sample: impl IntoIterator<Item = &'a [u8]>) {
        if let Some(codes) = self.codes.as_ref().filter(|c| c.fitted().is_none()) {
            // A sample of deletes alone fits nothing: the next vectors will.
            let sample: Vec<&[u8]> = sample.into_iter().collect();
            let values = sample.iter().flat_map(|stored| f32s(stored));
            if let Some(fitted) = codes::Coder::fit(values, sample.len()) {
                codes.coder(|| fitted);
            }
        }
    }

    /// Adds one stored vector under `key` to usearch's graph (the caller holds a context).
    pub(super) fn add_one(&self, key: u64, stored: &[u8]) -> Result<(), IndexError> {
        let added = self.add_to_graph(key, stored);
        // A prepared insert changes the filtered walk's graph when it is placed.
        if key < super::PREPARED_KEYS {
            self.adjacency.changed();
        }
        added
    }

    fn add_to_graph(&self, key: u64, stored: &[u8]) -> Result<(), IndexError> {
        if let Some(codes) = &self.codes {
            let vector: Vec<f32> = f32s(stored).collect();
            // Vectors have at least one component: the fit has values.
            let coder = codes.coder(|| {
                codes::Coder::fit(vector.iter().copied(), 1)
                    .unwrap_or(codes::Coder::Affine { lo: 0.0, step: 1.0 })
            });
            let coded = coder.encode(&vector);
            // The vector is there before the graph can lead a search to its slot.
            codes.rows_mut().insert(key, &vector);
            let added = match coder {
                codes::Coder::Unit => self.index.add(key, &super::as_i8(&coded)),
                codes::Coder::Affine { .. } => self.index.add(key, &coded),
            };
            if added.is_err() {
                codes.rows_mut().remove(key);
            }
            return added.map_err(backend);
        }
        match self.spec.quantization {
            Quantization::I8 => {
                let codes: Vec<i8> = stored.iter().map(|b| *b as i8).collect();
                self.index.add(key, &codes)
            }
            Quantization::F16 => {
                let vector: Vec<f32> = stored
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect();
                self.index.add(key, &vector)
            }
            Quantization::F32 => self.index.add(key, &f32s(stored).collect::<Vec<_>>()),
        }
        .map_err(backend)
    }
}

/// The f32 values of a stored form of f32 bits.
fn f32s(stored: &[u8]) -> impl Iterator<Item = f32> + '_ {
    stored
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
}
