//! Planned basket reads: fetch and decompress ahead of the decoder, on another thread.
//!
//! Before a pass over a tree the reader knows exactly which baskets it will need and in which order
//! (names first to decide what is wanted, then the flag and value baskets of wanted entries only).
//! A [`Feed`] hands that plan to a fetcher thread that gets the baskets in chunks through
//! [`ByteSource::read_ranges`] (an object store fetches a chunk's ranges concurrently), one chunk
//! ahead of a second thread that decompresses them, while the caller decodes what came before.
//! Memory stays bounded: two chunks of at most [`CHUNK_BYTES`] compressed, and at most
//! [`DECODED_BYTES`] of decompressed baskets waiting (or one larger basket).
//!
//! The plan is an optimisation, never a source of truth: a basket asked for out of plan order, or
//! one the producer could not fetch or decode, is read directly, so errors are exactly those of a
//! plain read.

use std::ops::Range;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::{Arc, Condvar, Mutex};

use bytes::Bytes;

use crate::compress::Budget;
use crate::error::Result;
use crate::file::RootFile;
use crate::source::ByteSource;
use crate::tree::{decode_basket, read_basket_in, Basket, BasketLoc, Branch};

/// Compressed bytes fetched per chunk (one `read_ranges` call). A chunk spans many lumisections of
/// every selected tree, so when most of a file is wanted its ranges merge into a few large requests.
pub const CHUNK_BYTES: u64 = 16 << 20;
/// Baskets per chunk at most.
pub const CHUNK_BASKETS: usize = 512;
/// Decompressed baskets handed over and not yet taken, in bytes (the producer waits above this).
pub const DECODED_BYTES: u64 = 8 << 20;

/// One basket the reader will ask for.
#[derive(Debug, Clone, Copy)]
pub struct Planned {
    /// Where it is.
    pub loc: BasketLoc,
    /// Fixed entry size of its branch (numeric branches).
    pub fixed: Option<usize>,
}

/// The order in which baskets will be read, with consecutive repeats per branch removed (the
/// reader keeps the current basket of each branch).
#[derive(Debug, Default)]
pub struct Plan {
    items: Vec<Planned>,
    last: Vec<usize>,
}

impl Plan {
    /// Records that basket `idx` of `branch` is read next; `slot` identifies the branch's cache.
    pub fn push(&mut self, slot: usize, branch: &Branch, idx: usize) {
        if self.last.len() <= slot {
            self.last.resize(slot + 1, usize::MAX);
        }
        if self.last[slot] == idx {
            return;
        }
        self.last[slot] = idx;
        // Embedded baskets are already in memory.
        if let Some(loc) = branch.baskets.get(idx) {
            self.items.push(Planned {
                loc: *loc,
                fixed: branch.fixed_entry_size(),
            });
        }
    }

    /// True when nothing is planned.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Decompressed bytes handed over and not yet taken by the reader, and whether it stopped.
#[derive(Debug, Default)]
struct Handover {
    outstanding: u64,
    closed: bool,
}

type Shared = Arc<(Mutex<Handover>, Condvar)>;

/// The consumer side: baskets in plan order, or direct reads when the plan does not match.
pub struct Feed<'a> {
    file: &'a RootFile,
    rx: Option<Receiver<(u64, Option<Basket>)>>,
    next: Option<(u64, Option<Basket>)>,
    shared: Shared,
    /// What this read may decompress (shared with the producer).
    budget: Arc<Budget>,
}

impl<'a> Feed<'a> {
    /// A feed that reads everything directly (no plan), decompressing within `budget`.
    pub fn direct(file: &'a RootFile, budget: Arc<Budget>) -> Self {
        Feed {
            file,
            rx: None,
            next: None,
            shared: Shared::default(),
            budget,
        }
    }

    /// Starts the producer for `plan` on `scope`; the feed must be dropped before the scope ends
    /// (dropping it stops the producer).
    pub fn start<'scope, 'env: 'scope>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        file: &'a RootFile,
        source: &'env dyn ByteSource,
        plan: Plan,
        budget: Arc<Budget>,
    ) -> Self {
        if plan.is_empty() {
            return Feed::direct(file, budget);
        }
        let (tx, rx) = channel();
        let shared = Shared::default();
        let producer_shared = shared.clone();
        // Two stages: the fetcher runs one chunk ahead of the decompressor, so network time and
        // decompression overlap (memory: one more raw chunk).
        let plan: Arc<[Planned]> = plan.items.into();
        let fetch_plan = plan.clone();
        let (raw_tx, raw_rx) = sync_channel::<RawChunk>(1);
        scope.spawn(move || fetch(source, &fetch_plan, &raw_tx));
        let len = source.len();
        let producer_budget = budget.clone();
        scope.spawn(move || produce(len, &plan, raw_rx, &tx, &producer_shared, &producer_budget));
        Feed {
            file,
            rx: Some(rx),
            next: None,
            shared,
            budget,
        }
    }

    /// Basket `idx` of `branch`: the next planned one if it matches, else a direct read.
    pub fn take(&mut self, branch: &Branch, idx: usize) -> Result<Basket> {
        let Some(loc) = branch.baskets.get(idx) else {
            return read_basket_in(self.file, branch, idx, &self.budget);
        };
        if self.next.is_none() {
            if let Some(rx) = &self.rx {
                match rx.recv() {
                    Ok(item) => self.next = Some(item),
                    Err(_) => self.rx = None,
                }
            }
        }
        if self
            .next
            .as_ref()
            .is_some_and(|(seek, _)| *seek == loc.seek)
        {
            // A basket the producer could not fetch or decode (None) is read directly below.
            if let Some((_, Some(b))) = self.next.take() {
                self.release(size_of(&b));
                return Ok(b);
            }
        }
        read_basket_in(self.file, branch, idx, &self.budget)
    }

    fn release(&self, bytes: u64) {
        let (lock, cv) = &*self.shared;
        if let Ok(mut b) = lock.lock() {
            b.outstanding = b.outstanding.saturating_sub(bytes);
            cv.notify_all();
        }
    }
}

impl Drop for Feed<'_> {
    fn drop(&mut self) {
        let (lock, cv) = &*self.shared;
        if let Ok(mut b) = lock.lock() {
            b.closed = true;
            cv.notify_all();
        }
    }
}

fn size_of(b: &Basket) -> u64 {
    (b.data.len() + 4 * b.offsets.len()) as u64
}

/// One fetched chunk: positions in the plan and the raw bytes (None when the fetch failed).
type RawChunk = (Range<usize>, Option<Vec<Bytes>>);

/// Fetches chunk after chunk, one ahead of the decompressor.
fn fetch(source: &dyn ByteSource, plan: &[Planned], tx: &SyncSender<RawChunk>) {
    let len = source.len();
    let mut i = 0;
    while i < plan.len() {
        let mut j = i;
        let mut bytes = 0u64;
        while j < plan.len()
            && j - i < CHUNK_BASKETS
            && (j == i || bytes + u64::from(plan[j].loc.bytes) <= CHUNK_BYTES)
        {
            bytes += u64::from(plan[j].loc.bytes);
            j += 1;
        }
        let chunk = &plan[i..j];
        let ranges: Vec<Range<u64>> = chunk
            .iter()
            .filter(|p| in_bounds(p, len))
            .map(|p| p.loc.seek..p.loc.seek + u64::from(p.loc.bytes))
            .collect();
        let positions = i..j;
        i = j;
        if tx
            .send((positions, source.read_ranges(&ranges).ok()))
            .is_err()
        {
            return;
        }
    }
}

fn in_bounds(p: &Planned, len: u64) -> bool {
    p.loc
        .seek
        .checked_add(u64::from(p.loc.bytes))
        .is_some_and(|e| e <= len)
}

/// Decompresses fetched chunks and hands the baskets over within the budget.
fn produce(
    len: u64,
    plan: &[Planned],
    rx: Receiver<RawChunk>,
    tx: &Sender<(u64, Option<Basket>)>,
    shared: &Shared,
    budget: &Budget,
) {
    for (positions, fetched) in rx {
        let mut raw = fetched.into_iter().flatten();
        for p in plan.get(positions).unwrap_or_default() {
            let basket = if in_bounds(p, len) {
                raw.next()
                    .and_then(|r| decode_basket(&r, &p.loc, p.fixed, budget).ok())
            } else {
                None
            };
            // Wait until the reader has taken enough of what was handed over.
            let size = basket.as_ref().map_or(0, size_of);
            let (lock, cv) = &**shared;
            let Ok(mut b) = lock.lock() else { return };
            while !b.closed && b.outstanding > 0 && b.outstanding + size > DECODED_BYTES {
                b = match cv.wait(b) {
                    Ok(b) => b,
                    Err(_) => return,
                };
            }
            if b.closed {
                return;
            }
            b.outstanding += size;
            drop(b);
            if tx.send((p.loc.seek, basket)).is_err() {
                return;
            }
        }
    }
}
