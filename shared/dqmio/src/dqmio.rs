//! The DQMIO layer: the `Indices` tree and one tree per monitoring-element kind.
//!
//! `Indices` rows say which entries of which kind's tree belong to a (run, lumisection); rows with
//! `Lumi == 0` hold per-run elements and rows of type 1000 only record that a lumisection was seen.
//! Kinds are resolved by tree name, never by trusting a type number alone: a type number must name a
//! tree that exists and whose `Value` branch stores the matching class.

use std::collections::BTreeMap;
use std::sync::Arc;

use regex::Regex;
use serde::Serialize;

use crate::compress::{Budget, Limits};
use crate::error::{Error, Result};
use crate::file::RootFile;
use crate::hist::{self, Framing, Histogram, MeKind};
use crate::prefetch::{Feed, Plan};
use crate::source::ByteSource;
use crate::tree::{read_basket_in, Basket, Branch, BranchKind, Tree};

/// Type numbers of the writer's enum (CMSSW DQMServices/FwkIO format.h), in order. Files written
/// before TH1I/TH2I existed have only the first twelve trees.
const TYPE_ORDER: [MeKind; 14] = [
    MeKind::Int,
    MeKind::Float,
    MeKind::String,
    MeKind::TH1F,
    MeKind::TH1S,
    MeKind::TH1D,
    MeKind::TH2F,
    MeKind::TH2S,
    MeKind::TH2D,
    MeKind::TH3F,
    MeKind::TProfile,
    MeKind::TProfile2D,
    MeKind::TH1I,
    MeKind::TH2I,
];

/// `Type` value of rows that only record a lumisection without elements.
pub const TYPE_NOTHING: u32 = 1000;

/// One row of the `Indices` tree.
#[derive(Debug, Clone, Serialize)]
pub struct IndexEntry {
    /// Run number.
    pub run: u32,
    /// Lumisection number (0 for per-run elements).
    pub lumi: u32,
    /// Process history index.
    pub process_history: u32,
    /// Begin time (ns since epoch, as CMSSW writes it).
    pub begin_time: u64,
    /// End time.
    pub end_time: u64,
    /// Writer's type number.
    pub type_code: u32,
    /// Kind resolved from the type number (None for type 1000).
    pub kind: Option<MeKind>,
    /// First entry (inclusive) of the kind's tree.
    pub first: u64,
    /// Last entry (inclusive).
    pub last: u64,
}

impl IndexEntry {
    /// Number of elements this row covers.
    pub fn count(&self) -> u64 {
        if self.kind.is_some() {
            self.last - self.first + 1
        } else {
            0
        }
    }
}

/// A kind's tree with its three branches.
#[derive(Debug, Clone)]
pub struct MeTree {
    /// Kind stored.
    pub kind: MeKind,
    /// The TTree.
    pub tree: Tree,
    framing: Framing,
}

impl MeTree {
    fn branch(&self, name: &str) -> Result<&Branch> {
        self.tree
            .branch(name)
            .ok_or_else(|| Error::NotDqmio(format!("tree {} has no branch {name}", self.tree.name)))
    }
}

/// The value of one monitoring element.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum MeValue {
    /// Int scalar.
    Int(i64),
    /// Float scalar.
    Float(f64),
    /// String.
    String(String),
    /// Any histogram.
    Hist(Histogram),
}

/// One monitoring element of one (run, lumisection).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonitorElement {
    /// Run number.
    pub run: u32,
    /// Lumisection (0 for per-run elements).
    pub lumi: u32,
    /// Full name (`Folder/Sub/name`).
    pub name: String,
    /// Kind.
    pub kind: MeKind,
    /// DQM flags.
    pub flags: u32,
    /// Value.
    pub value: MeValue,
}

/// What to read. The default reads everything.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only elements whose name matches (unanchored search).
    pub name: Option<Regex>,
    /// Only elements whose name starts with one of these prefixes (empty = no prefix filter).
    pub prefixes: Vec<String>,
    /// Only these kinds (None = all).
    pub kinds: Option<Vec<MeKind>>,
    /// Skip per-run elements (lumi 0).
    pub skip_per_run: bool,
    /// Visiting order (see [`Order`]).
    pub order: Order,
}

/// The order in which elements are visited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    /// `Indices` order: run, lumisection, kind as written.
    #[default]
    Index,
    /// Tree by tree: all selected rows of one kind, then the next kind. Memory then holds the
    /// baskets of one kind at a time, which matters for large files: ROOT grows basket buffers up to
    /// ~25 MB per branch once a tree passes its auto-flush size, and in `Indices` order every kind
    /// keeps its current basket alive.
    Tree,
    /// [`Order::Bounded`] with [`AUTO_LIVE_BASKET_BYTES`].
    Auto,
    /// `Indices` order while every kind's current `Value` basket is small, tree by tree for the rest,
    /// so that the estimated decompressed baskets alive at once stay under this many bytes.
    ///
    /// ROOT writes a tree's first baskets small and grows them once the tree passes its auto-flush
    /// size, so a large file starts with thousands of small baskets of all kinds interleaved (read
    /// in `Indices` order they are contiguous: few, large requests) and ends with multi-MB ones
    /// (read one kind at a time: one kind's basket alive). A file whose largest baskets fit the
    /// budget together is read in `Indices` order throughout.
    Bounded(u64),
}

/// Default budget of [`Order::Auto`]: estimated decompressed `Value` baskets alive at once.
pub const AUTO_LIVE_BASKET_BYTES: u64 = 64 << 20;

impl Selection {
    /// True if an element with this name passes the name filters.
    pub fn wants_name(&self, name: &str) -> bool {
        (self.prefixes.is_empty() || self.prefixes.iter().any(|p| name.starts_with(p.as_str())))
            && self.name.as_ref().is_none_or(|r| r.is_match(name))
    }

    /// True if this kind is selected.
    pub fn wants_kind(&self, kind: MeKind) -> bool {
        self.kinds.as_ref().is_none_or(|k| k.contains(&kind))
    }
}

/// An open DQMIO file.
#[derive(Debug)]
pub struct DqmioFile {
    file: RootFile,
    indices: Vec<IndexEntry>,
    trees: BTreeMap<MeKind, MeTree>,
    /// Uncompressed bytes the file's trees declare (Σ of their branches' `fTotBytes`).
    declared: u64,
}

/// How many times one read may decompress what the file declares: names are decoded in both
/// passes of a filtered read, and a basket at the boundary of the two orders of [`Order::Bounded`]
/// (or one the prefetcher could not decode) is read again.
pub const READ_PASSES: u64 = 3;

impl DqmioFile {
    /// Opens a DQMIO file from any byte source and reads its index.
    pub fn open(source: Arc<dyn ByteSource>) -> Result<Self> {
        Self::open_with(source, Limits::default())
    }

    /// [`open`](Self::open) with explicit decompression limits.
    pub fn open_with(source: Arc<dyn ByteSource>, limits: Limits) -> Result<Self> {
        let file = RootFile::open_with(source, limits)?;
        let idx_key = file
            .key("Indices")
            .ok_or_else(|| Error::NotDqmio("no 'Indices' tree".into()))?
            .clone();
        let idx_tree = Tree::read(&file, &idx_key)?;
        check_entries(&idx_tree, idx_key.seek_key)?;
        let mut declared = declared_bytes(&idx_tree);
        let mut trees = BTreeMap::new();
        for kind in MeKind::ALL {
            let Some(key) = file.key(kind.tree_name()).cloned() else {
                continue;
            };
            let tree = Tree::read(&file, &key)?;
            let framing = check_tree(&tree, kind)?;
            check_entries(&tree, key.seek_key)?;
            declared = declared.saturating_add(declared_bytes(&tree));
            trees.insert(
                kind,
                MeTree {
                    kind,
                    tree,
                    framing,
                },
            );
        }
        if trees.is_empty() {
            return Err(Error::NotDqmio(
                "no monitoring-element trees (TH1Fs, Ints, ...)".into(),
            ));
        }
        let indices = read_indices(&file, &idx_tree, &trees)?;
        Ok(DqmioFile {
            file,
            indices,
            trees,
            declared,
        })
    }

    /// The decompression budget of one read: [`READ_PASSES`] × what the file's trees declare, and
    /// the per-object limit.
    fn read_budget(&self) -> Arc<Budget> {
        let total = self.declared.saturating_mul(READ_PASSES);
        Arc::new(Budget::new(
            self.file.limits(),
            total,
            "3 times the uncompressed bytes the file's trees declare",
        ))
    }

    /// Opens a local file.
    pub fn open_path(path: impl AsRef<std::path::Path>) -> Result<Self> {
        Self::open(Arc::new(crate::source::LocalFile::open(path)?))
    }

    /// The underlying ROOT file.
    pub fn root(&self) -> &RootFile {
        &self.file
    }

    /// Rows of the `Indices` tree, in file order.
    pub fn indices(&self) -> &[IndexEntry] {
        &self.indices
    }

    /// The element trees present, by kind.
    pub fn trees(&self) -> &BTreeMap<MeKind, MeTree> {
        &self.trees
    }

    /// Old (12-tree) or current (14-tree) layout.
    pub fn layout(&self) -> usize {
        if self.trees.contains_key(&MeKind::TH1I) || self.trees.contains_key(&MeKind::TH2I) {
            14
        } else {
            12
        }
    }

    /// Visits every selected element, in `Indices` order (run, lumisection, kind as written).
    pub fn for_each(
        &self,
        sel: &Selection,
        f: impl FnMut(MonitorElement) -> Result<()>,
    ) -> Result<()> {
        self.for_each_filtered(sel, None, f)
    }

    /// Like [`for_each`](Self::for_each), with an extra name predicate checked before any value is
    /// decoded or its basket fetched (e.g. "does any workspace keep this ME?"). `None` keeps all.
    ///
    /// Two passes, each over a read plan fetched and decompressed ahead on a second thread (see
    /// [`crate::prefetch`]): first the `FullName` baskets, to decide which entries are wanted; then
    /// the name, flag and value baskets of wanted entries only. Baskets holding no wanted entry are
    /// never fetched.
    pub fn for_each_filtered(
        &self,
        sel: &Selection,
        keep: Option<&dyn Fn(&str) -> bool>,
        mut f: impl FnMut(MonitorElement) -> Result<()>,
    ) -> Result<()> {
        let filtering = keep.is_some() || sel.name.is_some() || !sel.prefixes.is_empty();
        // Selected rows, each with the slot of its kind (one reader per kind).
        let mut kinds: Vec<MeKind> = Vec::new();
        let mut rows: Vec<(usize, &IndexEntry)> = Vec::new();
        for row in &self.indices {
            let Some(kind) = row.kind else { continue };
            if !sel.wants_kind(kind) || (sel.skip_per_run && row.lumi == 0) {
                continue;
            }
            let slot = kinds.iter().position(|k| *k == kind).unwrap_or_else(|| {
                kinds.push(kind);
                kinds.len() - 1
            });
            rows.push((slot, row));
        }
        // Rows before each kind's split entry are visited in `Indices` order, the rest after them,
        // tree by tree (see `Order`). `by_tree` is where that second part starts.
        let split = self.split_entries(&kinds, sel.order);
        let (mut rows, mut later): (Vec<_>, Vec<_>) = rows
            .into_iter()
            .partition(|(slot, row)| row.last < split[*slot]);
        let by_tree = rows.len();
        later.sort_by_key(|(slot, row)| (kinds[*slot], row.first));
        rows.append(&mut later);
        let trees: Vec<&MeTree> = kinds
            .iter()
            .map(|k| {
                self.trees
                    .get(k)
                    .ok_or_else(|| Error::NotDqmio(format!("no {} tree", k.tree_name())))
            })
            .collect::<Result<_>>()?;
        let source: &dyn ByteSource = self.file.source().as_ref();
        let budget = self.read_budget();
        std::thread::scope(|scope| -> Result<()> {
            // Pass 1: names decide which entries are wanted (skipped when nothing filters names).
            // One bit per entry of each selected row, grown as its names are decoded: the bits
            // never take more memory than the names really read, whatever entry counts claim.
            let mut wanted: Vec<Vec<u64>> = Vec::new();
            if filtering {
                let mut plan = Plan::default();
                for (slot, row) in &rows {
                    plan_row(&mut plan, &[(*slot, trees[*slot].branch("FullName")?)], row);
                }
                let mut feed = Feed::start(scope, &self.file, source, plan, budget.clone());
                let mut names: Vec<BasketCache<'_>> = trees
                    .iter()
                    .map(|t| Ok(BasketCache::new(t.branch("FullName")?)))
                    .collect::<Result<_>>()?;
                let mut prev = usize::MAX;
                for (n, (slot, row)) in rows.iter().enumerate() {
                    if n > by_tree && prev != *slot {
                        names[prev].current = None;
                    }
                    prev = *slot;
                    let mut bits: Vec<u64> = Vec::new();
                    for (k, entry) in (row.first..=row.last).enumerate() {
                        let (b, i) = names[*slot].get(&mut feed, entry)?;
                        let name = decode_string(entry_bytes(b, i)?, b.seek)?;
                        if k % 64 == 0 {
                            bits.push(0);
                        }
                        if sel.wants_name(&name) && keep.is_none_or(|k| k(&name)) {
                            if let Some(w) = bits.last_mut() {
                                *w |= 1 << (k % 64);
                            }
                        }
                    }
                    wanted.push(bits);
                }
            }
            // Entry `k` of row `n` (counted from the row's first entry).
            let is_wanted = |n: usize, k: usize| {
                !filtering
                    || wanted
                        .get(n)
                        .and_then(|b| b.get(k / 64))
                        .is_some_and(|w| w & (1 << (k % 64)) != 0)
            };
            // Pass 2: the baskets of wanted entries, in the order the readers will ask for them.
            let mut plan = Plan::default();
            for (n, (slot, row)) in rows.iter().enumerate() {
                let t = trees[*slot];
                let branches = [
                    (slot * 3, t.branch("FullName")?),
                    (slot * 3 + 1, t.branch("Flags")?),
                    (slot * 3 + 2, t.branch("Value")?),
                ];
                if !filtering {
                    plan_row(&mut plan, &branches, row);
                    continue;
                }
                // Filtering: pass 1 decoded every entry of this row, so walking them is bounded.
                for (_, entry) in (row.first..=row.last)
                    .enumerate()
                    .filter(|(k, _)| is_wanted(n, *k))
                {
                    for (j, b) in &branches {
                        if let Some(idx) = b.basket_of(entry) {
                            plan.push(*j, b, idx);
                        }
                    }
                }
            }
            let mut feed = Feed::start(scope, &self.file, source, plan, budget.clone());
            let mut readers: Vec<EntryReader<'_>> = kinds
                .iter()
                .map(|k| self.reader(*k))
                .collect::<Result<_>>()?;
            let mut prev = usize::MAX;
            for (n, (slot, row)) in rows.iter().enumerate() {
                if n > by_tree && prev != *slot {
                    // That kind is done: free its baskets before the next kind's arrive.
                    readers[prev] = self.reader(kinds[prev])?;
                }
                prev = *slot;
                for (_, entry) in (row.first..=row.last)
                    .enumerate()
                    .filter(|(k, _)| is_wanted(n, *k))
                {
                    // Names were tested in pass 1: every entry left here is wanted.
                    if let Some(me) = readers[*slot].read(&mut feed, entry, row, None)? {
                        f(me)?;
                    }
                }
            }
            Ok(())
        })
    }

    /// Visits the selected elements of one kind only (one tree), in entry order. Lets callers
    /// decode different kinds on different threads.
    pub fn for_each_of_kind(
        &self,
        kind: MeKind,
        sel: &Selection,
        mut f: impl FnMut(MonitorElement) -> Result<()>,
    ) -> Result<()> {
        if !self.trees.contains_key(&kind) || !sel.wants_kind(kind) {
            return Ok(());
        }
        let mut rows: Vec<&IndexEntry> = self
            .indices
            .iter()
            .filter(|r| r.kind == Some(kind))
            .collect();
        rows.sort_by_key(|r| r.first);
        let mut reader = self.reader(kind)?;
        let mut feed = Feed::direct(&self.file, self.read_budget());
        for row in rows {
            if sel.skip_per_run && row.lumi == 0 {
                continue;
            }
            for entry in row.first..=row.last {
                if let Some(me) = reader.read(&mut feed, entry, row, Some(sel))? {
                    f(me)?;
                }
            }
        }
        Ok(())
    }

    /// All `FullName` entries of a kind's tree, in entry order (values are not read).
    pub fn names(&self, kind: MeKind) -> Result<Vec<String>> {
        let t = self
            .trees
            .get(&kind)
            .ok_or_else(|| Error::NotDqmio(format!("no {} tree", kind.tree_name())))?;
        let branch = t.branch("FullName")?;
        let budget = self.read_budget();
        // Grows with the names really decoded, never with the declared entry count.
        let mut out = Vec::new();
        for i in 0..branch.basket_count() {
            let b = read_basket_in(&self.file, branch, i, &budget)?;
            out.try_reserve(b.len())
                .map_err(|e| Error::malformed("branch", b.seek, e.to_string()))?;
            for e in 0..b.len() {
                out.push(decode_string(entry_bytes(&b, e)?, b.seek)?);
            }
        }
        Ok(out)
    }

    /// Estimated decompressed bytes held when every kind in `kinds` keeps its largest `Value`
    /// basket in memory (largest on-disk basket × the branch's compression ratio).
    pub fn live_basket_bytes(&self, kinds: &[MeKind]) -> u64 {
        kinds
            .iter()
            .filter_map(|k| self.trees.get(k)?.tree.branch("Value"))
            .map(|b| b.baskets.iter().map(|l| inflated(b, l)).max().unwrap_or(0))
            .sum()
    }

    /// Per kind in `kinds`, the first entry visited tree by tree under `order` (`u64::MAX`: none;
    /// 0: all). Under a budget, that is the first entry of the kind's first `Value` basket larger
    /// than an equal share of the budget, unless the kinds' largest baskets fit the budget together.
    pub fn split_entries(&self, kinds: &[MeKind], order: Order) -> Vec<u64> {
        let budget = match order {
            Order::Index => return vec![u64::MAX; kinds.len()],
            Order::Tree => return vec![0; kinds.len()],
            Order::Auto => AUTO_LIVE_BASKET_BYTES,
            Order::Bounded(b) => b,
        };
        if self.live_basket_bytes(kinds) <= budget {
            return vec![u64::MAX; kinds.len()];
        }
        let share = budget / kinds.len().max(1) as u64;
        kinds
            .iter()
            .map(|k| {
                let Some(b) = self.trees.get(k).and_then(|t| t.tree.branch("Value")) else {
                    return u64::MAX;
                };
                b.baskets
                    .iter()
                    .find(|l| inflated(b, l) > share)
                    .map_or(u64::MAX, |l| l.first_entry)
            })
            .collect()
    }

    fn reader(&self, kind: MeKind) -> Result<EntryReader<'_>> {
        let t = self
            .trees
            .get(&kind)
            .ok_or_else(|| Error::NotDqmio(format!("no {} tree", kind.tree_name())))?;
        Ok(EntryReader {
            tree: t,
            names: BasketCache::new(t.branch("FullName")?),
            flags: BasketCache::new(t.branch("Flags")?),
            values: BasketCache::new(t.branch("Value")?),
        })
    }
}

/// Plans the baskets of `branches` (each with its plan slot) that hold entries `row.first..=row.last`,
/// in the order a reader visiting the entries one by one asks for them. Steps from basket boundary
/// to basket boundary, never entry by entry: a row's entry count is only a claim until its baskets
/// are decoded. Stops at an entry no basket holds (the reader then reports it).
fn plan_row(plan: &mut Plan, branches: &[(usize, &Branch)], row: &IndexEntry) {
    let mut e = row.first;
    while e <= row.last {
        let mut next = u64::MAX;
        for (slot, b) in branches {
            let Some(idx) = b.basket_of(e) else { return };
            plan.push(*slot, b, idx);
            next = next.min(basket_end(b, idx));
        }
        if next <= e {
            return;
        }
        e = next;
    }
}

/// Every branch of a DQMIO tree is filled once per entry: a tree whose branches disagree with its
/// entry count (or with each other) is forged or corrupt.
fn check_entries(tree: &Tree, at: u64) -> Result<()> {
    match tree.branches.iter().find(|b| b.entries != tree.entries) {
        Some(b) => Err(Error::malformed(
            "TTree",
            at,
            format!(
                "'{}' declares {} entries, its branch '{}' holds {}",
                tree.name, tree.entries, b.name, b.entries
            ),
        )),
        None => Ok(()),
    }
}

/// Uncompressed bytes a tree's branches declare (`fTotBytes`).
fn declared_bytes(tree: &Tree) -> u64 {
    tree.branches.iter().fold(0u64, |s, b| {
        s.saturating_add(u64::try_from(b.tot_bytes).unwrap_or(0))
    })
}

/// Estimated decompressed size of a basket: its size on disk × the branch's compression ratio.
fn inflated(b: &Branch, l: &crate::tree::BasketLoc) -> u64 {
    let ratio = if b.zip_bytes > 0 {
        (b.tot_bytes as f64 / b.zip_bytes as f64).clamp(1.0, 100.0)
    } else {
        1.0
    };
    (f64::from(l.bytes) * ratio) as u64
}

/// Checks a kind's tree has the DQMIO branches and returns how its `Value` entries are framed.
fn check_tree(tree: &Tree, kind: MeKind) -> Result<Framing> {
    for b in ["FullName", "Flags", "Value"] {
        if tree.branch(b).is_none() {
            return Err(Error::NotDqmio(format!(
                "tree {} has no branch {b}",
                tree.name
            )));
        }
    }
    let value = tree
        .branch("Value")
        .ok_or_else(|| Error::NotDqmio("no Value".into()))?;
    let mismatch = |found: &str| {
        Error::NotDqmio(format!(
            "tree {} stores {found} in Value, expected {}",
            tree.name,
            kind.class_name()
        ))
    };
    match (&value.kind, kind.dim()) {
        (BranchKind::Basic, 0) if kind != MeKind::String => Ok(Framing::Members),
        (BranchKind::Element { class_name, .. }, 0) if kind == MeKind::String => {
            if class_name == "string" || class_name.contains("basic_string") {
                Ok(Framing::Members)
            } else {
                Err(mismatch(class_name))
            }
        }
        (BranchKind::Element { class_name, .. }, d) if d > 0 => {
            if class_name == kind.class_name() {
                Ok(Framing::Members)
            } else {
                Err(mismatch(class_name))
            }
        }
        (BranchKind::Object { class_name }, d) if d > 0 => {
            if class_name == kind.class_name() {
                Ok(Framing::Object)
            } else {
                Err(mismatch(class_name))
            }
        }
        (other, _) => Err(mismatch(&format!("{other:?}"))),
    }
}

fn read_indices(
    file: &RootFile,
    tree: &Tree,
    trees: &BTreeMap<MeKind, MeTree>,
) -> Result<Vec<IndexEntry>> {
    let col = |name: &str| -> Result<Vec<i128>> {
        tree.branch(name)
            .ok_or_else(|| Error::NotDqmio(format!("Indices has no branch {name}")))?
            .read_integers(file)
    };
    let run = col("Run")?;
    let lumi = col("Lumi")?;
    let ty = col("Type")?;
    let first = col("FirstIndex")?;
    let last = col("LastIndex")?;
    let optional = |name: &str| -> Result<Vec<i128>> {
        match tree.branch(name) {
            Some(b) => b.read_integers(file),
            None => Ok(vec![0; run.len()]),
        }
    };
    let ph = optional("ProcessHistoryIndex")?;
    let bt = optional("BeginTime")?;
    let et = optional("EndTime")?;
    let n = run.len();
    if [
        lumi.len(),
        ty.len(),
        first.len(),
        last.len(),
        ph.len(),
        bt.len(),
        et.len(),
    ]
    .iter()
    .any(|l| *l != n)
    {
        return Err(Error::NotDqmio(
            "Indices branches have different lengths".into(),
        ));
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let bad = |what: &str| Error::NotDqmio(format!("Indices row {i}: {what}"));
        let type_code = u32::try_from(ty[i]).map_err(|_| bad("bad type"))?;
        let (kind, f, l) = if type_code == TYPE_NOTHING {
            (None, 0, 0)
        } else {
            let kind = *TYPE_ORDER
                .get(type_code as usize)
                .ok_or_else(|| bad(&format!("unknown type {type_code}")))?;
            let t = trees.get(&kind).ok_or_else(|| {
                bad(&format!(
                    "type {type_code} means {} but the file has no such tree",
                    kind.tree_name()
                ))
            })?;
            let f = u64::try_from(first[i]).map_err(|_| bad("negative FirstIndex"))?;
            let l = u64::try_from(last[i]).map_err(|_| bad("negative LastIndex"))?;
            if f > l || l >= t.tree.entries {
                return Err(bad(&format!(
                    "entries {f}..={l} outside {} ({} entries)",
                    kind.tree_name(),
                    t.tree.entries
                )));
            }
            (Some(kind), f, l)
        };
        out.push(IndexEntry {
            run: u32::try_from(run[i]).map_err(|_| bad("bad run"))?,
            lumi: u32::try_from(lumi[i]).map_err(|_| bad("bad lumi"))?,
            process_history: u32::try_from(ph[i]).unwrap_or(0),
            begin_time: u64::try_from(bt[i]).unwrap_or(0),
            end_time: u64::try_from(et[i]).unwrap_or(0),
            type_code,
            kind,
            first: f,
            last: l,
        });
    }
    Ok(out)
}

/// Keeps the last basket read from one branch, so sequential entries decompress each basket once.
struct BasketCache<'a> {
    branch: &'a Branch,
    current: Option<(usize, Basket)>,
}

impl<'a> BasketCache<'a> {
    fn new(branch: &'a Branch) -> Self {
        Self {
            branch,
            current: None,
        }
    }

    /// The basket holding `entry` and the entry's index inside it.
    fn get(&mut self, feed: &mut Feed<'_>, entry: u64) -> Result<(&Basket, usize)> {
        let idx = self.branch.basket_of(entry).ok_or_else(|| {
            Error::malformed(
                "branch",
                0,
                format!("entry {entry} of '{}' is in no basket", self.branch.name),
            )
        })?;
        if self.current.as_ref().is_none_or(|(i, _)| *i != idx) {
            self.current = Some((idx, feed.take(self.branch, idx)?));
        }
        let (_, b) = self
            .current
            .as_ref()
            .ok_or_else(|| Error::malformed("branch", 0, "basket cache"))?;
        Ok((b, (entry - b.first_entry) as usize))
    }
}

/// Reads entries of one kind's tree.
struct EntryReader<'a> {
    tree: &'a MeTree,
    names: BasketCache<'a>,
    flags: BasketCache<'a>,
    values: BasketCache<'a>,
}

impl EntryReader<'_> {
    fn read(
        &mut self,
        feed: &mut Feed<'_>,
        entry: u64,
        row: &IndexEntry,
        name_filter: Option<&Selection>,
    ) -> Result<Option<MonitorElement>> {
        let (b, i) = self.names.get(feed, entry)?;
        let name = decode_string(entry_bytes(b, i)?, b.seek)?;
        if name_filter.is_some_and(|sel| !sel.wants_name(&name)) {
            return Ok(None);
        }
        let (b, i) = self.flags.get(feed, entry)?;
        let raw = entry_bytes(b, i)?;
        let flags = u32::from_be_bytes(
            raw.try_into()
                .map_err(|_| Error::malformed("Flags", b.seek, "entry is not 4 bytes"))?,
        );
        let kind = self.tree.kind;
        let (b, i) = self.values.get(feed, entry)?;
        let raw = entry_bytes(b, i)?;
        let origin = u64::from(b.keylen) + u64::from(b.offsets[i]);
        let value = match kind {
            MeKind::Int => {
                MeValue::Int(i64::from_be_bytes(raw.try_into().map_err(|_| {
                    Error::malformed("Ints", b.seek, "entry is not 8 bytes")
                })?))
            }
            MeKind::Float => {
                MeValue::Float(f64::from_be_bytes(raw.try_into().map_err(|_| {
                    Error::malformed("Floats", b.seek, "entry is not 8 bytes")
                })?))
            }
            MeKind::String => MeValue::String(decode_string(raw, b.seek)?),
            _ => MeValue::Hist(
                hist::decode(kind, raw, origin, b.seek, self.tree.framing)
                    .map_err(|e| with_context(e, &name, row))?,
            ),
        };
        Ok(Some(MonitorElement {
            run: row.run,
            lumi: row.lumi,
            name,
            kind,
            flags,
            value,
        }))
    }
}

fn with_context(e: Error, name: &str, row: &IndexEntry) -> Error {
    match e {
        Error::Malformed { what, at, detail } => Error::Malformed {
            what,
            at,
            detail: format!(
                "{detail} (element '{name}', run {} lumi {})",
                row.run, row.lumi
            ),
        },
        other => other,
    }
}

/// One past the last entry of basket `idx` (the embedded basket is `baskets.len()`).
fn basket_end(b: &Branch, idx: usize) -> u64 {
    match b.baskets.get(idx) {
        Some(loc) => loc.end_entry,
        None => b
            .embedded
            .as_ref()
            .map_or(0, |e| e.first_entry + e.len() as u64),
    }
}

fn entry_bytes(b: &Basket, i: usize) -> Result<&[u8]> {
    b.entry(i)
        .ok_or_else(|| Error::malformed("basket", b.seek, format!("no entry {i}")))
}

/// Decodes a `std::string` entry: optionally a `[bytecount][version]` header, then a length-prefixed string.
fn decode_string(raw: &[u8], at: u64) -> Result<String> {
    let body = if raw.len() >= 6 {
        let first = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
        if first & 0x4000_0000 != 0 && (first & !0x4000_0000) as usize == raw.len() - 4 {
            &raw[6..]
        } else {
            raw
        }
    } else {
        raw
    };
    let mut c = crate::cursor::Cursor::new(body, 0, at);
    let s = c.tstring()?;
    if c.remaining() != 0 {
        return Err(Error::malformed(
            "string",
            at,
            format!("{} bytes after the string", c.remaining()),
        ));
    }
    Ok(s)
}
