//! The write-ahead log: acknowledged writes that are not yet in the shard trees.
//!
//! Each record is `len: u32 LE | check: first 4 bytes of BLAKE3(body) | body`, the body being
//! the DAG-CBOR of `{seq, entries}` (entries already stamped with their clock and writer, so
//! replay is deterministic). A write returns only after its record is fsynced. Concurrent
//! writers share fsyncs (group commit): each appends under a short lock, then one of them syncs
//! everything appended so far while the others wait for that sync and return with it.
//!
//! Appending and syncing are separate steps ([`Wal::write`], [`Wal::sync_to`]) so that a
//! collection can append under its lock and wait for the fsync without holding it.
//!
//! On open the log is read up to the first torn or corrupt record (a write cut short by a
//! crash, never acknowledged) and truncated there. After the records are committed to the trees
//! and the head names the last sequence number they hold, the log drops them
//! ([`Wal::drop_through`]): it empties when nothing was appended since, and otherwise keeps the
//! later records.

use std::{
    fs::{File, OpenOptions},
    io::{Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Condvar, Mutex,
    },
};

use ipvec_protocol::{dagcbor, entry::Entry};
use serde::{Deserialize, Serialize};

use super::{io_at, CollectionError};

/// Largest record accepted when reading the log back.
const MAX_RECORD_BYTES: usize = 256 << 20;

/// fsyncs that made appended records durable, by every log of this process.
static FSYNCS: AtomicU64 = AtomicU64::new(0);

/// fsyncs that made appended records durable since the process started, over every log (one
/// fsync covers every record appended before it: concurrent writers share it).
pub fn fsyncs_total() -> u64 {
    FSYNCS.load(Ordering::Relaxed)
}

/// One logged write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalRecord {
    /// Sequence number, increasing by one per record.
    pub seq: u64,
    /// The entries written (puts and tombstones).
    pub entries: Vec<Entry>,
}

/// An open log.
#[derive(Debug)]
pub struct Wal {
    path: PathBuf,
    state: Mutex<WalState>,
    synced: Condvar,
    /// fsyncs of this log's appended records.
    fsyncs: AtomicU64,
    /// Test hook: a sync stops before its fsync until the test lets it go.
    #[cfg(test)]
    pub(crate) pause: Mutex<Option<crate::collection::tests::pause::Pause>>,
}

#[derive(Debug)]
struct WalState {
    file: File,
    /// Last sequence number appended.
    appended: u64,
    /// Last sequence number known durable.
    synced: u64,
    /// A writer is running fsync now.
    syncing: bool,
    /// Bytes in the log.
    bytes: u64,
}

impl Wal {
    /// Opens (creating if needed) the log at `path`; returns it and the intact records. New
    /// records are numbered after both the last one in the file and `after` (the last one a
    /// checkpoint took, which an emptied log no longer shows).
    pub fn open(path: &Path, after: u64) -> Result<(Wal, Vec<WalRecord>), CollectionError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_at(path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_at(path))?;
        let (records, good) = parse(&bytes);
        if good < bytes.len() {
            tracing::warn!(path = %path.display(), kept = good, dropped = bytes.len() - good, "truncating a torn write-ahead log tail");
            file.set_len(good as u64).map_err(io_at(path))?;
            file.sync_all().map_err(io_at(path))?;
        }
        file.seek(SeekFrom::End(0)).map_err(io_at(path))?;
        let last = records.last().map_or(0, |r| r.seq).max(after);
        let state = WalState {
            file,
            appended: last,
            synced: last,
            syncing: false,
            bytes: good as u64,
        };
        Ok((
            Wal {
                path: path.to_path_buf(),
                state: Mutex::new(state),
                synced: Condvar::new(),
                fsyncs: AtomicU64::new(0),
                #[cfg(test)]
                pause: Mutex::new(None),
            },
            records,
        ))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WalState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes in the log.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// Last sequence number appended.
    pub fn last_seq(&self) -> u64 {
        self.lock().appended
    }

    /// Last sequence number known durable.
    pub fn synced_seq(&self) -> u64 {
        self.lock().synced
    }

    /// fsyncs this log ran to make appended records durable.
    pub fn fsyncs(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    /// Appends a record of `entries` and returns once it is durable; returns its sequence number.
    pub fn append(&self, entries: &[Entry]) -> Result<u64, CollectionError> {
        let seq = self.write(entries)?;
        self.sync_to(seq)?;
        Ok(seq)
    }

    /// Appends a record of `entries` without waiting for it to be durable ([`Wal::sync_to`]
    /// does); returns its sequence number.
    pub fn write(&self, entries: &[Entry]) -> Result<u64, CollectionError> {
        let mut state = self.lock();
        let seq = state.appended + 1;
        let mut out = std::io::BufWriter::with_capacity(WRITE_BUFFER, &state.file);
        let written = write_frame(seq, entries, MAX_RECORD_BYTES, &mut out)
            .and_then(|len| out.flush().map(|()| len).map_err(FrameError::Write));
        drop(out);
        match written {
            Ok(len) => {
                state.appended = seq;
                state.bytes += len;
                Ok(seq)
            }
            Err(e) => {
                // A partly written frame would hide every later record from replay: cut it off.
                let keep = state.bytes;
                let _ = state.file.set_len(keep);
                let _ = state.file.seek(SeekFrom::Start(keep));
                Err(match e {
                    FrameError::Refused(e) => e,
                    FrameError::Write(e) => io_at(&self.path)(e),
                })
            }
        }
    }

    /// Waits until `seq` is durable, running the fsync if no other writer is: the fsync covers
    /// every record appended before it started, so concurrent writers share it.
    pub fn sync_to(&self, seq: u64) -> Result<(), CollectionError> {
        let mut state = self.lock();
        loop {
            if state.synced >= seq {
                return Ok(());
            }
            if !state.syncing {
                break;
            }
            state = self.synced.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        // This writer syncs everything appended so far, for itself and whoever follows.
        state.syncing = true;
        let target = state.appended;
        let file = state.file.try_clone().map_err(io_at(&self.path));
        drop(state);
        #[cfg(test)]
        crate::collection::tests::pause::reached(&self.pause);
        let result = file.and_then(|f| f.sync_data().map_err(io_at(&self.path)));
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        FSYNCS.fetch_add(1, Ordering::Relaxed);
        let mut state = self.lock();
        state.syncing = false;
        if result.is_ok() {
            state.synced = state.synced.max(target);
        }
        self.synced.notify_all();
        result
    }

    /// Empties the log once everything in it is committed to the trees.
    pub fn clear(&self) -> Result<(), CollectionError> {
        let mut state = self.lock();
        state.file.set_len(0).map_err(io_at(&self.path))?;
        state
            .file
            .seek(SeekFrom::Start(0))
            .map_err(io_at(&self.path))?;
        state.file.sync_all().map_err(io_at(&self.path))?;
        state.bytes = 0;
        Ok(())
    }

    /// Drops the records up to `seq` once the trees hold them: empties the log when nothing
    /// was appended after `seq`, and otherwise rewrites it with the later records (written to
    /// a temporary file, synced, renamed over the log), which are durable afterwards.
    pub fn drop_through(&self, seq: u64) -> Result<(), CollectionError> {
        let mut state = self.lock();
        if state.appended <= seq {
            drop(state);
            return self.clear();
        }
        let mut bytes = Vec::new();
        state
            .file
            .seek(SeekFrom::Start(0))
            .and_then(|_| state.file.read_to_end(&mut bytes))
            .map_err(io_at(&self.path))?;
        let (records, _) = parse(&bytes);
        let mut at = 0;
        for _ in records.iter().take_while(|r| r.seq <= seq) {
            let len = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
            at += 8 + len as usize;
        }
        let tail = &bytes[at..];
        let temporary = self.path.with_extension("compacting");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temporary)
            .map_err(io_at(&temporary))?;
        file.write_all(tail)
            .and_then(|_| file.sync_all())
            .map_err(io_at(&temporary))?;
        std::fs::rename(&temporary, &self.path).map_err(io_at(&self.path))?;
        if let Some(parent) = self.path.parent() {
            File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(io_at(parent))?;
        }
        file.seek(SeekFrom::End(0)).map_err(io_at(&self.path))?;
        state.file = file;
        state.bytes = tail.len() as u64;
        // Everything appended is in the synced file now.
        state.synced = state.appended;
        self.synced.notify_all();
        Ok(())
    }
}

/// The buffer between a record's encoding and the log file.
const WRITE_BUFFER: usize = 1 << 20;

/// Why a frame was not written.
enum FrameError {
    /// It does not encode or is too large; nothing was written.
    Refused(CollectionError),
    /// Writing it failed, perhaps part way.
    Write(std::io::Error),
}

impl From<ipvec_protocol::ProtocolError> for FrameError {
    fn from(e: ipvec_protocol::ProtocolError) -> Self {
        Self::Refused(e.into())
    }
}

/// Writes the frame of record `seq` to `out` and returns its length: the header (body length,
/// check) and the body, the DAG-CBOR of `WalRecord { seq, entries }`. The body is encoded
/// twice, a piece at a time: once to count and hash it, once to write it. Encoding the record
/// as one value would hold the entries' bytes three more times at the peak (the encoder
/// collects each value of a map in a buffer of its own before it sorts the keys, then copies
/// it), and a frame built whole in memory once more: for a batch of 10,000 vectors of 784
/// floats, about 130 MB at the peak of a write.
fn write_frame(
    seq: u64,
    entries: &[Entry],
    limit: usize,
    out: &mut impl Write,
) -> Result<u64, FrameError> {
    let mut len = 0usize;
    let mut check = blake3::Hasher::new();
    for_each_piece(seq, entries, |piece| {
        len += piece.len();
        check.update(piece);
        Ok(())
    })?;
    if len > limit {
        return Err(FrameError::Refused(CollectionError::Invalid(format!(
            "a write of {} entries is {len} bytes in the write-ahead log, more than its limit of \
             {limit}: write them in smaller batches",
            entries.len()
        ))));
    }
    let mut header = [0u8; 8];
    header[..4].copy_from_slice(&(len as u32).to_le_bytes());
    header[4..].copy_from_slice(&check.finalize().as_bytes()[..4]);
    out.write_all(&header).map_err(FrameError::Write)?;
    for_each_piece(seq, entries, |piece| {
        out.write_all(piece).map_err(FrameError::Write)
    })?;
    Ok((header.len() + len) as u64)
}

/// The DAG-CBOR of `WalRecord { seq, entries }` in pieces, each given to `piece`: the record's
/// head, then one entry at a time.
fn for_each_piece(
    seq: u64,
    entries: &[Entry],
    mut piece: impl FnMut(&[u8]) -> Result<(), FrameError>,
) -> Result<(), FrameError> {
    use dagcbor::{major, write_head};
    let mut buffer = Vec::new();
    // The keys in canonical order: "seq" is shorter than "entries".
    write_head(major::MAP, 2, &mut buffer);
    dagcbor::encode_into(&"seq", &mut buffer)?;
    dagcbor::encode_into(&seq, &mut buffer)?;
    dagcbor::encode_into(&"entries", &mut buffer)?;
    write_head(major::ARRAY, entries.len() as u64, &mut buffer);
    piece(&buffer)?;
    for entry in entries {
        buffer.clear();
        dagcbor::encode_into(entry, &mut buffer)?;
        piece(&buffer)?;
    }
    Ok(())
}

/// The intact records at the start of `bytes`, and how many bytes they take.
fn parse(bytes: &[u8]) -> (Vec<WalRecord>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while bytes.len() >= at + 8 {
        let len =
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        if len > MAX_RECORD_BYTES || bytes.len() < at + 8 + len {
            break;
        }
        let body = &bytes[at + 8..at + 8 + len];
        if blake3::hash(body).as_bytes()[..4] != bytes[at + 4..at + 8] {
            break;
        }
        let Ok(record) = dagcbor::decode_trusted::<WalRecord>(body) else {
            break;
        };
        if records
            .last()
            .is_some_and(|r: &WalRecord| r.seq + 1 != record.seq)
        {
            break;
        }
        records.push(record);
        at += 8 + len;
    }
    (records, at)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ipvec_protocol::{entry::EntryId, hlc::Hlc, Ipld};

    use super::*;

    fn entry(n: u64) -> Entry {
        Entry::put(
            EntryId::Int(n).to_key().unwrap(),
            vec![n as u8; 8],
            None,
            Hlc(n),
            [1; 32],
        )
    }

    #[test]
    fn frames_hold_the_record_encoded_as_one_value() {
        let with_metadata = |n: u64| {
            let mut e = entry(n);
            e.meta = Some(Ipld::Map(
                [("label".to_string(), Ipld::Integer(n.into()))].into(),
            ));
            e
        };
        for (seq, n) in [(1u64, 0u64), (23, 1), (24, 24), (70_000, 300)] {
            let entries: Vec<Entry> = (0..n)
                .map(|i| match i % 2 {
                    0 => entry(i),
                    _ => with_metadata(i),
                })
                .collect();
            let mut frame = Vec::new();
            let len = write_frame(seq, &entries, MAX_RECORD_BYTES, &mut frame)
                .map_err(|_| "refused")
                .unwrap();
            assert_eq!(len, frame.len() as u64);
            let body = dagcbor::encode(&WalRecord {
                seq,
                entries: entries.clone(),
            })
            .unwrap();
            assert_eq!(&frame[8..], &body[..], "record {seq} of {n} entries");
            assert_eq!(frame[..4], (body.len() as u32).to_le_bytes());
            let (records, used) = parse(&frame);
            assert_eq!((records.len(), used), (1, frame.len()));
            assert_eq!(records[0].entries, entries);
        }
        let entries: Vec<Entry> = (0..10).map(entry).collect();
        let mut frame = Vec::new();
        match write_frame(1, &entries, 100, &mut frame) {
            Err(FrameError::Refused(e)) => {
                assert!(e.to_string().contains("smaller batches"), "{e}");
                assert!(frame.is_empty(), "nothing written");
            }
            _ => panic!("a record over the limit is refused"),
        }
    }

    #[test]
    fn records_survive_reopen_and_torn_tails_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        let (wal, records) = Wal::open(&path, 0).unwrap();
        assert!(records.is_empty());
        assert_eq!(wal.append(&[entry(1), entry(2)]).unwrap(), 1);
        assert_eq!(wal.append(&[entry(3)]).unwrap(), 2);
        drop(wal);
        let full = std::fs::read(&path).unwrap();
        // Every cut inside the second record keeps exactly the first.
        let first_len = 8 + u32::from_le_bytes(full[..4].try_into().unwrap()) as usize;
        for cut in [first_len + 1, first_len + 7, full.len() - 1] {
            std::fs::write(&path, &full[..cut]).unwrap();
            let (wal, records) = Wal::open(&path, 0).unwrap();
            assert_eq!(records.len(), 1, "cut at {cut}");
            assert_eq!(records[0].entries, vec![entry(1), entry(2)]);
            assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, first_len);
            assert_eq!(
                wal.append(&[entry(9)]).unwrap(),
                2,
                "appending continues after the cut"
            );
        }
        // A flipped byte in a body is caught by the check.
        let mut bad = full.clone();
        bad[first_len + 12] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert_eq!(Wal::open(&path, 0).unwrap().1.len(), 1);
        std::fs::write(&path, &full).unwrap();
        let (wal, records) = Wal::open(&path, 0).unwrap();
        assert_eq!(records.len(), 2);
        wal.clear().unwrap();
        assert!(Wal::open(&path, 0).unwrap().1.is_empty());
    }

    #[test]
    fn concurrent_writers_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        let wal = Arc::new(Wal::open(&path, 0).unwrap().0);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let wal = wal.clone();
                std::thread::spawn(move || {
                    (0..25)
                        .map(|i| wal.append(&[entry(t * 100 + i)]).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seqs: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        seqs.sort();
        assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
        let (_, records) = Wal::open(&path, 0).unwrap();
        assert_eq!(records.len(), 200);
    }

    #[test]
    fn writers_that_append_during_an_fsync_share_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Arc::new(Wal::open(&dir.path().join("wal"), 0).unwrap().0);
        let held = crate::collection::tests::pause::arm(&wal.pause);
        let first = {
            let wal = wal.clone();
            std::thread::spawn(move || wal.append(&[entry(0)]).unwrap())
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let held = runtime.block_on(held.wait());
        // Seven more writers append while the first one's fsync is held.
        let seqs: Vec<u64> = (1..8).map(|n| wal.write(&[entry(n)]).unwrap()).collect();
        let waiters: Vec<_> = seqs
            .iter()
            .map(|&seq| {
                let wal = wal.clone();
                std::thread::spawn(move || wal.sync_to(seq).unwrap())
            })
            .collect();
        held.release();
        assert_eq!(first.join().unwrap(), 1);
        waiters.into_iter().for_each(|w| w.join().unwrap());
        assert_eq!(wal.synced_seq(), 8);
        assert_eq!(wal.fsyncs(), 2, "the seven share one fsync");
        assert!(fsyncs_total() >= 2);
    }

    #[test]
    fn dropping_committed_records_keeps_the_later_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        let (wal, _) = Wal::open(&path, 0).unwrap();
        for n in 1..=4 {
            wal.append(&[entry(n)]).unwrap();
        }
        wal.drop_through(2).unwrap();
        assert_eq!(wal.append(&[entry(5)]).unwrap(), 5);
        let (_, records) = Wal::open(&path, 2).unwrap();
        let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![3, 4, 5]);
        assert_eq!(records[0].entries, vec![entry(3)]);
        wal.drop_through(5).unwrap();
        assert_eq!(wal.bytes(), 0);
        assert!(Wal::open(&path, 5).unwrap().1.is_empty());
    }
}
