//! TTree metadata (branches, leaves, basket locations) and basket reading.

use bytes::Bytes;

use crate::compress::{self, Budget};
use crate::cursor::{ArrayKind, Cursor};
use crate::error::{Error, Result};
use crate::file::{Key, RootFile};
use crate::source::read_checked;

/// How a branch stores its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BranchKind {
    /// `TBranch` with simple leaves (fixed-size numbers).
    Basic,
    /// `TBranchElement` (objects streamed member-wise by their StreamerInfo, or STL strings).
    Element {
        /// Class of the stored object (e.g. `TH1F`, `string`).
        class_name: String,
        /// Branch type (0 for a top-level object).
        btype: i32,
        /// Streamer element type (-1 for a whole object).
        streamer_type: i32,
    },
    /// `TBranchObject` (objects streamed by their own `Streamer`, prefixed by their class name).
    Object {
        /// Class of the stored object.
        class_name: String,
    },
}

/// A leaf: the element type of a basic branch.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// Leaf class (`TLeafI`, `TLeafL`, `TLeafD`, `TLeafElement`, `TLeafObject`, ...).
    pub class_name: String,
    /// Leaf name.
    pub name: String,
    /// Number of elements per entry.
    pub len: i32,
    /// Element size in bytes.
    pub len_type: i32,
    /// Unsigned integer leaf.
    pub unsigned: bool,
}

/// One basket's location.
#[derive(Debug, Clone, Copy)]
pub struct BasketLoc {
    /// Offset of the basket's key in the file.
    pub seek: u64,
    /// Size on disk (key + compressed data).
    pub bytes: u32,
    /// First entry stored in this basket.
    pub first_entry: u64,
    /// One past the last entry stored in this basket.
    pub end_entry: u64,
    /// Uncompressed bytes its branch declares for all its baskets, keys included (`fTotBytes`):
    /// no basket of the branch can claim more.
    pub branch_bytes: u64,
}

/// A branch's metadata.
#[derive(Debug, Clone)]
pub struct Branch {
    /// Branch name.
    pub name: String,
    /// Storage kind.
    pub kind: BranchKind,
    /// Leaves.
    pub leaves: Vec<Leaf>,
    /// Number of entries.
    pub entries: u64,
    /// Entry-offset length (0 for fixed-size entries).
    pub entry_offset_len: i32,
    /// Baskets written to the file.
    pub baskets: Vec<BasketLoc>,
    /// The basket still in memory when the tree was written, stored inside the TTree record
    /// (entries after the last written basket).
    pub embedded: Option<Basket>,
    /// Bytes stored on disk (compressed).
    pub zip_bytes: i64,
    /// Bytes before compression.
    pub tot_bytes: i64,
}

/// A TTree's metadata.
#[derive(Debug, Clone)]
pub struct Tree {
    /// Tree name.
    pub name: String,
    /// TTree class version.
    pub version: i16,
    /// Number of entries.
    pub entries: u64,
    /// Top-level branches.
    pub branches: Vec<Branch>,
}

impl Tree {
    /// Reads the TTree stored under `key`.
    pub fn read(file: &RootFile, key: &Key) -> Result<Tree> {
        if key.class_name != "TTree" {
            return Err(Error::malformed(
                "tree",
                key.seek_key,
                format!("'{}' is a {}, not a TTree", key.name, key.class_name),
            ));
        }
        let payload = file.read_key_payload(key)?;
        let mut c = Cursor::new(
            &payload,
            u64::from(key.keylen),
            key.seek_key + u64::from(key.keylen),
        );
        let tree = parse_tree(&mut c, file.source().len())?;
        Ok(tree)
    }

    /// The branch named `name`.
    pub fn branch(&self, name: &str) -> Option<&Branch> {
        self.branches.iter().find(|b| b.name == name)
    }
}

fn parse_tree(c: &mut Cursor<'_>, file_len: u64) -> Result<Tree> {
    let h = c.header("TTree")?;
    if h.version < 16 {
        return Err(Error::Unsupported(format!(
            "TTree class version {} (ROOT 5 era)",
            h.version
        )));
    }
    let (name, _title) = c.tnamed()?;
    c.skip_object("TAttLine")?;
    c.skip_object("TAttFill")?;
    c.skip_object("TAttMarker")?;
    let entries = c.i64()?;
    let _tot = c.i64()?;
    let _zip = c.i64()?;
    let _saved = c.i64()?;
    if h.version >= 18 {
        let _flushed = c.i64()?;
    }
    let _weight = c.f64()?;
    let _timer = c.i32()?;
    let _scan = c.i32()?;
    let _update = c.i32()?;
    if h.version >= 18 {
        let _default_entry_offset_len = c.i32()?;
    }
    let n_cluster = if h.version >= 19 { c.i32()? } else { 0 };
    let _max_entries = c.i64()?;
    let _max_entry_loop = c.i64()?;
    let _max_virtual = c.i64()?;
    let _autosave = c.i64()?;
    if h.version >= 18 {
        let _autoflush = c.i64()?;
    }
    let _estimate = c.i64()?;
    if h.version >= 19 {
        let n = usize::try_from(n_cluster)
            .map_err(|_| Error::malformed("TTree", c.at(), "negative cluster count"))?;
        for _ in 0..2 {
            let _speedbump = c.u8()?;
            c.skip(
                n.checked_mul(8)
                    .ok_or_else(|| Error::malformed("TTree", c.at(), "cluster count"))?,
            )?;
        }
    }
    if h.version >= 20 {
        c.skip_object("TIOFeatures")?;
    }
    let branches = parse_branch_array(c, file_len)?;
    // fLeaves, fAliases, fIndexValues, ... are not needed: the byte count skips them.
    c.finish(&h, "TTree")?;
    let entries = u64::try_from(entries)
        .map_err(|_| Error::malformed("TTree", c.at(), "negative entry count"))?;
    Ok(Tree {
        name,
        version: h.version,
        entries,
        branches,
    })
}

fn parse_branch_array(c: &mut Cursor<'_>, file_len: u64) -> Result<Vec<Branch>> {
    parse_objarray(c, |class, c| match class {
        "TBranch" => parse_branch(c, file_len, |_| Ok(BranchKind::Basic)),
        "TBranchElement" => parse_branch_element(c, file_len),
        "TBranchObject" => {
            let h = c.header("TBranchObject")?;
            let mut b = parse_branch(c, file_len, |_| Ok(BranchKind::Basic))?;
            b.kind = BranchKind::Object {
                class_name: c.tstring()?,
            };
            c.finish(&h, "TBranchObject")?;
            Ok(b)
        }
        other => Err(Error::Unsupported(format!("branch class {other}"))),
    })
}

/// Reads a `TObjArray`, parsing each new element with `item`.
fn parse_objarray<T>(
    c: &mut Cursor<'_>,
    mut item: impl FnMut(&str, &mut Cursor<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let h = c.header("TObjArray")?;
    c.tobject()?;
    let _name = c.tstring()?;
    let n = c.count(4, "TObjArray")?;
    let _lower = c.i32()?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        if let Some(v) = c.object_any("TObjArray element", &mut item)? {
            out.push(v);
        }
    }
    c.finish(&h, "TObjArray")?;
    Ok(out)
}

fn parse_branch_element(c: &mut Cursor<'_>, file_len: u64) -> Result<Branch> {
    let h = c.header("TBranchElement")?;
    let mut b = parse_branch(c, file_len, |_| Ok(BranchKind::Basic))?;
    let class_name = c.tstring()?;
    let _parent = c.tstring()?;
    let _clones = c.tstring()?;
    let _checksum = c.u32()?;
    let _class_version = if h.version >= 10 {
        i32::from(c.i16()?)
    } else {
        c.i32()?
    };
    let _id = c.i32()?;
    let btype = c.i32()?;
    let streamer_type = c.i32()?;
    c.finish(&h, "TBranchElement")?;
    b.kind = BranchKind::Element {
        class_name,
        btype,
        streamer_type,
    };
    Ok(b)
}

fn parse_branch(
    c: &mut Cursor<'_>,
    file_len: u64,
    kind: impl FnOnce(&mut Cursor<'_>) -> Result<BranchKind>,
) -> Result<Branch> {
    let h = c.header("TBranch")?;
    if h.version < 12 {
        return Err(Error::Unsupported(format!(
            "TBranch class version {}",
            h.version
        )));
    }
    let (name, _title) = c.tnamed()?;
    c.skip_object("TAttFill")?;
    let _compress = c.i32()?;
    let _basket_size = c.i32()?;
    let entry_offset_len = c.i32()?;
    let write_basket = c.i32()?;
    let _entry_number = c.i64()?;
    if h.version >= 13 {
        c.skip_object("TIOFeatures")?;
    }
    let _offset = c.i32()?;
    let max_baskets = c.i32()?;
    let _split = c.i32()?;
    let entries = c.i64()?;
    let _first = c.i64()?;
    let tot_bytes = c.i64()?;
    let zip_bytes = c.i64()?;
    let sub = parse_branch_array(c, file_len)?;
    if !sub.is_empty() {
        return Err(Error::Unsupported(format!(
            "split branch '{name}' with {} sub-branches",
            sub.len()
        )));
    }
    let leaves = parse_objarray(c, parse_leaf)?;
    // Baskets still in memory when the tree was written are stored inside the branch record.
    let mut embedded = parse_objarray(c, |class, c| {
        if class != "TBasket" {
            return Err(Error::malformed(
                "TBranch",
                c.at(),
                format!("{class} in basket list"),
            ));
        }
        parse_embedded_basket(c)
    })?;
    if embedded.len() > 1 {
        return Err(Error::Unsupported(format!(
            "branch '{name}' keeps {} baskets inside the TTree record",
            embedded.len()
        )));
    }
    let mut embedded = embedded.pop();
    let max_baskets = usize::try_from(max_baskets)
        .map_err(|_| Error::malformed("TBranch", c.at(), "negative basket count"))?;
    let write_basket = usize::try_from(write_basket)
        .map_err(|_| Error::malformed("TBranch", c.at(), "negative basket index"))?;
    if write_basket > max_baskets {
        return Err(Error::malformed(
            "TBranch",
            c.at(),
            format!("{write_basket} baskets written but room for {max_baskets}"),
        ));
    }
    let _ = c.u8()?;
    let bytes_raw = c.bytes(
        max_baskets
            .checked_mul(4)
            .ok_or_else(|| Error::malformed("TBranch", c.at(), "basket count"))?,
    )?;
    let _ = c.u8()?;
    let entry_raw = c.bytes(max_baskets * 8)?;
    let _ = c.u8()?;
    let seek_raw = c.bytes(max_baskets * 8)?;
    let _file_name = c.tstring()?;
    c.finish(&h, "TBranch")?;

    let entries = u64::try_from(entries)
        .map_err(|_| Error::malformed("TBranch", c.at(), "negative entry count"))?;
    // Every basket's key and payload are counted in fTotBytes, and every entry takes at least one
    // byte: a basket cannot claim more entries (or, when read, more bytes) than the branch holds.
    let branch_bytes = u64::try_from(tot_bytes).unwrap_or(0);
    if write_basket > 0 && branch_bytes == 0 {
        return Err(Error::malformed(
            "TBranch",
            c.at(),
            format!("'{name}' has {write_basket} baskets but declares {tot_bytes} bytes"),
        ));
    }
    let mut baskets = Vec::with_capacity(write_basket);
    for i in 0..write_basket {
        let bytes = i32::from_be_bytes(bytes_raw[i * 4..i * 4 + 4].try_into().unwrap_or_default());
        let first = i64::from_be_bytes(entry_raw[i * 8..i * 8 + 8].try_into().unwrap_or_default());
        let seek = i64::from_be_bytes(seek_raw[i * 8..i * 8 + 8].try_into().unwrap_or_default());
        let end = if i + 1 < write_basket {
            i64::from_be_bytes(
                entry_raw[(i + 1) * 8..(i + 2) * 8]
                    .try_into()
                    .unwrap_or_default(),
            )
        } else {
            entries as i64
        };
        if bytes <= 0
            || first < 0
            || end < first
            || seek <= 0
            || (seek as u64).saturating_add(bytes as u64) > file_len
        {
            return Err(Error::malformed(
                "TBranch",
                c.at(),
                format!("basket {i} of '{name}': seek {seek}, {bytes} bytes, entries {first}..{end} (file has {file_len} bytes)"),
            ));
        }
        if (end - first) as u64 > branch_bytes {
            return Err(Error::malformed(
                "TBranch",
                c.at(),
                format!("basket {i} of '{name}' claims entries {first}..{end}, more than the {branch_bytes} bytes its branch holds"),
            ));
        }
        baskets.push(BasketLoc {
            seek: seek as u64,
            bytes: bytes as u32,
            first_entry: first as u64,
            end_entry: end as u64,
            branch_bytes,
        });
    }
    if let Some(e) = embedded.as_mut() {
        // The in-memory basket holds the entries after the last written one.
        let first = if write_basket < max_baskets {
            i64::from_be_bytes(
                entry_raw[write_basket * 8..write_basket * 8 + 8]
                    .try_into()
                    .unwrap_or_default(),
            )
        } else {
            -1
        };
        let first = u64::try_from(first).map_err(|_| {
            Error::malformed("TBranch", c.at(), "embedded basket without first entry")
        })?;
        if first + e.len() as u64 != entries {
            return Err(Error::malformed(
                "TBranch",
                c.at(),
                format!("embedded basket of '{name}' holds {} entries from {first}, branch has {entries}", e.len()),
            ));
        }
        e.first_entry = first;
    } else if write_basket == 0 && entries > 0 {
        return Err(Error::malformed(
            "TBranch",
            c.at(),
            format!("'{name}' claims {entries} entries in no basket"),
        ));
    }
    let mut b = Branch {
        name,
        kind: BranchKind::Basic,
        leaves,
        entries,
        entry_offset_len,
        baskets,
        embedded,
        zip_bytes,
        tot_bytes,
    };
    b.kind = kind(c)?;
    Ok(b)
}

/// A `TBasket` streamed inside its branch: `[TKey fields][version][fBufferSize][fNevBufSize][fNevBuf]
/// [fLast][flag]`, optional entry offsets, then the raw (uncompressed) buffer of `fLast` bytes whose first
/// `fKeylen` bytes are a copy of the key.
fn parse_embedded_basket(c: &mut Cursor<'_>) -> Result<Basket> {
    let at = c.at();
    let key = Key::parse_fields(c)?;
    let _version = c.header("TBasket")?;
    let _buffer_size = c.i32()?;
    let nev_buf_size = c.i32()?;
    if nev_buf_size < 0 {
        let _io_bits = c.u8()?;
    }
    let nev_buf = usize::try_from(c.i32()?)
        .map_err(|_| Error::malformed("embedded basket", at, "negative entry count"))?;
    let last = usize::try_from(c.i32()?)
        .map_err(|_| Error::malformed("embedded basket", at, "negative fLast"))?;
    let mut flag = c.u8()?;
    let generated = flag >= 80;
    if generated {
        flag -= 80;
    }
    let mut offsets: Option<Vec<i64>> = None;
    if !generated && flag != 0 && flag % 10 != 2 {
        if nev_buf > 0 {
            let n = c.count(4, "embedded basket offsets")?;
            let raw = c.bytes(n * 4)?;
            offsets = Some(
                raw.chunks_exact(4)
                    .map(|w| {
                        i64::from(i32::from_be_bytes([w[0], w[1], w[2], w[3]]) & !(0xFF << 24))
                    })
                    .collect(),
            );
        }
        if flag > 40 {
            c.skip_array(ArrayKind::I)?; // displacements
        }
    }
    if !(flag == 1 || flag > 10) {
        return Err(Error::malformed(
            "embedded basket",
            at,
            format!("flag {flag}: no buffer stored"),
        ));
    }
    let buf = c.bytes(last)?;
    let keylen = usize::from(key.keylen);
    let data = buf
        .get(keylen..)
        .ok_or_else(|| Error::malformed("embedded basket", at, "buffer shorter than its key"))?;
    let border = data.len();
    let offsets: Vec<u32> = match offsets {
        Some(offs) => {
            let mut v = Vec::with_capacity(nev_buf + 1);
            for o in offs.iter().take(nev_buf) {
                let o = u32::try_from(o - keylen as i64)
                    .ok()
                    .filter(|o| (*o as usize) <= border)
                    .ok_or_else(|| {
                        Error::malformed(
                            "embedded basket",
                            at,
                            format!("entry offset {o} outside {border} bytes"),
                        )
                    })?;
                v.push(o);
            }
            v.push(border as u32);
            v
        }
        None => {
            let size = if nev_buf == 0 { 0 } else { border / nev_buf };
            if size * nev_buf != border {
                return Err(Error::malformed(
                    "embedded basket",
                    at,
                    format!("{border} bytes are not {nev_buf} equal entries"),
                ));
            }
            (0..=nev_buf).map(|i| (i * size) as u32).collect()
        }
    };
    Ok(Basket {
        data: Bytes::copy_from_slice(data),
        offsets,
        keylen: key.keylen,
        first_entry: 0,
        seek: at,
    })
}

fn parse_leaf(class: &str, c: &mut Cursor<'_>) -> Result<Leaf> {
    let outer = c.header("leaf")?;
    let h = c.header("TLeaf")?;
    let (name, _) = c.tnamed()?;
    let len = c.i32()?;
    let len_type = c.i32()?;
    let _offset = c.i32()?;
    let _is_range = c.u8()?;
    let unsigned = c.u8()? != 0;
    c.finish(&h, "TLeaf")?;
    // Subclass members (min/max, element ids, fVirtual) are not needed.
    c.finish(&outer, "leaf")?;
    Ok(Leaf {
        class_name: class.to_string(),
        name,
        len,
        len_type,
        unsigned,
    })
}

/// A decompressed basket: entry data plus the entry boundaries.
#[derive(Debug, Clone)]
pub struct Basket {
    /// Entry data (without the key header and without the offset table).
    pub data: Bytes,
    /// Entry boundaries: entry `i` of the basket is `data[offsets[i]..offsets[i+1]]`.
    pub offsets: Vec<u32>,
    /// Key length (the logical origin of `data` for object references).
    pub keylen: u16,
    /// First entry number in this basket.
    pub first_entry: u64,
    /// File offset of the basket (for messages).
    pub seek: u64,
}

impl Basket {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// True when the basket holds no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes of entry `i` (relative to the basket).
    pub fn entry(&self, i: usize) -> Option<&[u8]> {
        let (a, b) = (
            *self.offsets.get(i)? as usize,
            *self.offsets.get(i + 1)? as usize,
        );
        self.data.get(a..b)
    }
}

/// Reads and decompresses one basket given the raw bytes of its record. Its claimed size is checked
/// against what its branch holds and charged to `budget` before anything is decompressed.
pub fn decode_basket(
    raw: &[u8],
    loc: &BasketLoc,
    fixed_entry_size: Option<usize>,
    budget: &Budget,
) -> Result<Basket> {
    let mut c = Cursor::new(raw, 0, loc.seek);
    let key = Key::parse(&mut c)?;
    let _basket_version = c.i16()?;
    let _buffer_size = c.i32()?;
    let nev_buf_size = c.i32()?;
    let nev_buf = c.i32()?;
    let last = c.i32()?;
    let _flag = c.u8()?;
    let keylen = usize::from(key.keylen);
    if key.nbytes != loc.bytes || keylen > raw.len() {
        return Err(Error::malformed(
            "basket",
            loc.seek,
            format!("key says {} bytes, branch says {}", key.nbytes, loc.bytes),
        ));
    }
    let n = u64::try_from(nev_buf)
        .map_err(|_| Error::malformed("basket", loc.seek, "negative entry count"))?;
    if n != loc.end_entry - loc.first_entry {
        return Err(Error::malformed(
            "basket",
            loc.seek,
            format!(
                "holds {n} entries, branch expects {}",
                loc.end_entry - loc.first_entry
            ),
        ));
    }
    let payload = &raw[keylen..];
    let objlen = key.objlen as usize;
    // Cheap checks first: the entries and the data end (fLast) must fit the claimed size, and the
    // claimed size must fit what the branch declares for all its baskets.
    if n > objlen as u64 {
        return Err(Error::malformed(
            "basket",
            loc.seek,
            format!("{n} entries in {objlen} bytes"),
        ));
    }
    if i64::from(last) - keylen as i64 > objlen as i64 {
        return Err(Error::malformed(
            "basket",
            loc.seek,
            format!("fLast {last} outside the {objlen}-byte payload"),
        ));
    }
    if key.is_compressed() && loc.branch_bytes > 0 && (keylen + objlen) as u64 > loc.branch_bytes {
        return Err(Error::TooLarge {
            what: "basket",
            at: loc.seek,
            claimed: objlen as u64,
            limit: loc.branch_bytes.saturating_sub(keylen as u64),
            bound: "the uncompressed bytes its branch declares for all its baskets (fTotBytes)"
                .into(),
        });
    }
    let data: Bytes = if key.is_compressed() {
        Bytes::from(compress::decompress(
            payload,
            objlen,
            loc.seek + keylen as u64,
            budget,
        )?)
    } else {
        Bytes::copy_from_slice(
            payload
                .get(..objlen)
                .ok_or_else(|| Error::malformed("basket", loc.seek, "short payload"))?,
        )
    };
    let border = usize::try_from(i64::from(last) - keylen as i64)
        .ok()
        .filter(|b| *b <= data.len())
        .ok_or_else(|| {
            Error::malformed(
                "basket",
                loc.seek,
                format!("fLast {last} outside the {}-byte payload", data.len()),
            )
        })?;
    let n = n as usize;
    let offsets = if border < data.len() {
        // Entry offsets follow the data: [count][off_0 .. off_{n-1}][..], relative to the key start.
        let mut oc = Cursor::new(&data[border..], 0, loc.seek);
        let count = oc.count(4, "entry offsets")?;
        if count < n {
            return Err(Error::malformed(
                "basket",
                loc.seek,
                format!("{count} entry offsets for {n} entries"),
            ));
        }
        let mut offs = Vec::with_capacity(n + 1);
        for _ in 0..n {
            let o = i64::from(oc.i32()?) - keylen as i64;
            let o = u32::try_from(o)
                .ok()
                .filter(|o| (*o as usize) <= border)
                .ok_or_else(|| {
                    Error::malformed(
                        "basket",
                        loc.seek,
                        format!("entry offset {o} outside data of {border} bytes"),
                    )
                })?;
            if offs.last().is_some_and(|p| *p > o) {
                return Err(Error::malformed(
                    "basket",
                    loc.seek,
                    "entry offsets decrease",
                ));
            }
            offs.push(o);
        }
        offs.push(border as u32);
        offs
    } else {
        let size = fixed_entry_size.filter(|s| *s > 0).or_else(|| {
            usize::try_from(nev_buf_size)
                .ok()
                .filter(|s| *s > 0 && n > 0 && s * n == border)
        });
        let size = match (size, n) {
            (_, 0) => 0,
            (Some(s), _) => s,
            (None, _) => border / n,
        };
        if size.checked_mul(n) != Some(border) {
            return Err(Error::malformed(
                "basket",
                loc.seek,
                format!("{border} bytes are not {n} entries of {size} bytes"),
            ));
        }
        (0..=n).map(|i| (i * size) as u32).collect()
    };
    Ok(Basket {
        data: data.slice(..border),
        offsets,
        keylen: key.keylen,
        first_entry: loc.first_entry,
        seek: loc.seek,
    })
}

/// Reads basket `index` of `branch` from `file` (only the per-object limit applies).
pub fn read_basket(file: &RootFile, branch: &Branch, index: usize) -> Result<Basket> {
    read_basket_in(file, branch, index, &Budget::per_object(file.limits()))
}

/// Reads basket `index` of `branch` from `file`, charging what it decompresses to `budget`.
pub fn read_basket_in(
    file: &RootFile,
    branch: &Branch,
    index: usize,
    budget: &Budget,
) -> Result<Basket> {
    if index == branch.baskets.len() {
        if let Some(e) = &branch.embedded {
            return Ok(e.clone());
        }
    }
    let loc = branch.baskets.get(index).ok_or_else(|| {
        Error::malformed(
            "branch",
            0,
            format!("no basket {index} in '{}'", branch.name),
        )
    })?;
    let raw = read_checked(
        file.source().as_ref(),
        loc.seek,
        u64::from(loc.bytes),
        "basket",
    )?;
    decode_basket(&raw, loc, branch.fixed_entry_size(), budget)
}

impl Branch {
    /// Size of one entry for fixed-size basic branches.
    pub fn fixed_entry_size(&self) -> Option<usize> {
        if self.kind != BranchKind::Basic || self.entry_offset_len != 0 {
            return None;
        }
        let total: i64 = self
            .leaves
            .iter()
            .map(|l| i64::from(l.len.max(1)) * i64::from(l.len_type))
            .sum();
        usize::try_from(total).ok().filter(|s| *s > 0)
    }

    /// Index of the basket holding `entry` (`baskets.len()` for the embedded basket).
    pub fn basket_of(&self, entry: u64) -> Option<usize> {
        let i = self.baskets.partition_point(|b| b.end_entry <= entry);
        if i < self.baskets.len() && self.baskets[i].first_entry <= entry {
            return Some(i);
        }
        let e = self.embedded.as_ref()?;
        (e.first_entry <= entry && entry < e.first_entry + e.len() as u64)
            .then_some(self.baskets.len())
    }

    /// Number of baskets including the embedded one.
    pub fn basket_count(&self) -> usize {
        self.baskets.len() + usize::from(self.embedded.is_some())
    }

    /// Reads all entries of a fixed-size numeric branch as `u64`/`i64` bit patterns widened to i128.
    pub fn read_integers(&self, file: &RootFile) -> Result<Vec<i128>> {
        let leaf = self
            .leaves
            .first()
            .ok_or_else(|| Error::malformed("branch", 0, format!("'{}' has no leaf", self.name)))?;
        let size = usize::try_from(leaf.len_type)
            .ok()
            .filter(|s| matches!(s, 1 | 2 | 4 | 8))
            .ok_or_else(|| {
                Error::malformed(
                    "leaf",
                    0,
                    format!("'{}' has element size {}", leaf.name, leaf.len_type),
                )
            })?;
        // Capacity grows with what the baskets really hold, never with the declared count.
        let mut out: Vec<i128> = Vec::new();
        for i in 0..self.basket_count() {
            let b = read_basket(file, self, i)?;
            if (out.len() + b.len()) as u64 > self.entries {
                return Err(Error::malformed(
                    "branch",
                    b.seek,
                    format!(
                        "'{}' has more entries in baskets than its {} declared",
                        self.name, self.entries
                    ),
                ));
            }
            out.try_reserve(b.len())
                .map_err(|e| Error::malformed("branch", b.seek, e.to_string()))?;
            for e in 0..b.len() {
                let raw = b.entry(e).unwrap_or_default();
                if raw.len() != size {
                    return Err(Error::malformed(
                        "basket",
                        b.seek,
                        format!("entry of {} bytes in a {size}-byte branch", raw.len()),
                    ));
                }
                let mut v: i128 = 0;
                for byte in raw {
                    v = (v << 8) | i128::from(*byte);
                }
                if !leaf.unsigned && raw[0] & 0x80 != 0 {
                    v -= 1i128 << (8 * size);
                }
                out.push(v);
            }
        }
        if out.len() as u64 != self.entries {
            return Err(Error::malformed(
                "branch",
                0,
                format!(
                    "'{}' has {} entries in baskets, {} declared",
                    self.name,
                    out.len(),
                    self.entries
                ),
            ));
        }
        Ok(out)
    }
}

/// Reads the `f64` content of a `TArray` of `kind` from a cursor (re-exported helper).
pub fn read_array(c: &mut Cursor<'_>, kind: ArrayKind) -> Result<Vec<f64>> {
    c.array_f64(kind)
}
