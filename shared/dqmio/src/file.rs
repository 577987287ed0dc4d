//! The ROOT file container: file header, keys, directories and the StreamerInfo list.

use std::sync::Arc;

use bytes::Bytes;

use crate::compress::{self, Budget, Limits};
use crate::cursor::Cursor;
use crate::error::{Error, Result};
use crate::source::{read_checked, ByteSource};

/// Largest key header we accept (real ones are ~60–200 bytes; names are short).
const MAX_KEY_HEADER: u64 = 64 * 1024;

/// The fixed part of a ROOT file header.
#[derive(Debug, Clone)]
pub struct FileHeader {
    /// ROOT version that wrote the file (e.g. 64000 for 6.40/00).
    pub version: u32,
    /// Offset of the first record.
    pub begin: u64,
    /// Offset of the first free byte (the file's logical end).
    pub end: u64,
    /// Size of the TFile key's name part.
    pub nbytes_name: u32,
    /// Compression setting (algorithm × 100 + level).
    pub compress: i32,
    /// Offset of the StreamerInfo key.
    pub seek_info: u64,
    /// Size of the StreamerInfo record.
    pub nbytes_info: u32,
}

/// A key: the header in front of every record in a ROOT file.
#[derive(Debug, Clone)]
pub struct Key {
    /// Total record size on disk (header + possibly compressed payload).
    pub nbytes: u32,
    /// Key version (> 1000 means 64-bit offsets).
    pub version: i16,
    /// Uncompressed payload size.
    pub objlen: u32,
    /// Header size.
    pub keylen: u16,
    /// Cycle number.
    pub cycle: i16,
    /// Offset of this record.
    pub seek_key: u64,
    /// Offset of the directory holding it.
    pub seek_pdir: u64,
    /// Class of the stored object.
    pub class_name: String,
    /// Object name.
    pub name: String,
    /// Object title.
    pub title: String,
}

impl Key {
    /// Parses a key header from `c` (positioned at its first byte) and checks it describes a record.
    pub fn parse(c: &mut Cursor<'_>) -> Result<Self> {
        let at = c.at();
        let k = Self::parse_fields(c)?;
        if k.nbytes < u32::from(k.keylen) {
            return Err(Error::malformed(
                "key",
                at,
                format!(
                    "key '{}' is shorter ({}) than its header ({})",
                    k.name, k.nbytes, k.keylen
                ),
            ));
        }
        Ok(k)
    }

    /// Parses the key fields without requiring a stored record (embedded baskets have `fNbytes` 0).
    pub fn parse_fields(c: &mut Cursor<'_>) -> Result<Self> {
        let at = c.at();
        let nbytes = c.i32()?;
        let version = c.i16()?;
        let objlen = c.i32()?;
        let _datime = c.u32()?;
        let keylen = c.i16()?;
        let cycle = c.i16()?;
        let (seek_key, seek_pdir) = if version > 1000 {
            (c.i64()?, c.i64()?)
        } else {
            (i64::from(c.i32()?), i64::from(c.i32()?))
        };
        let class_name = c.tstring()?;
        let name = c.tstring()?;
        let title = c.tstring()?;
        if nbytes < 0 || objlen < 0 || keylen <= 0 || seek_key < 0 || seek_pdir < 0 {
            return Err(Error::malformed(
                "key",
                at,
                format!("negative size or offset in key '{name}'"),
            ));
        }
        Ok(Key {
            nbytes: nbytes as u32,
            version,
            objlen: objlen as u32,
            keylen: keylen as u16,
            cycle,
            seek_key: seek_key as u64,
            seek_pdir: seek_pdir as u64,
            class_name,
            name,
            title,
        })
    }

    /// True when the payload is stored compressed.
    pub fn is_compressed(&self) -> bool {
        self.nbytes - u32::from(self.keylen) != self.objlen
    }
}

/// An open ROOT file over any [`ByteSource`]. Cheap to share between threads.
pub struct RootFile {
    source: Arc<dyn ByteSource>,
    header: FileHeader,
    keys: Vec<Key>,
    limits: Limits,
}

impl std::fmt::Debug for RootFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootFile")
            .field("source", &self.source.name())
            .field("header", &self.header)
            .finish()
    }
}

impl RootFile {
    /// Opens a ROOT file: reads the header, the top directory and its key list.
    pub fn open(source: Arc<dyn ByteSource>) -> Result<Self> {
        Self::open_with(source, Limits::default())
    }

    /// [`open`](Self::open) with explicit decompression limits.
    pub fn open_with(source: Arc<dyn ByteSource>, limits: Limits) -> Result<Self> {
        let len = source.len();
        if len == 0 {
            return Err(Error::NotRoot("empty file".into()));
        }
        let head = source.read_at(0, len.min(128) as usize)?;
        if !head.starts_with(b"root") {
            let shown: String = head
                .iter()
                .take(8)
                .map(|b| {
                    if b.is_ascii_graphic() {
                        *b as char
                    } else {
                        '.'
                    }
                })
                .collect();
            return Err(Error::NotRoot(shown));
        }
        let header = parse_header(&head)?;
        if header.begin >= len || header.end > len {
            // fEND is where the writer stopped: a shorter file lost its tail (keys, StreamerInfo).
            return Err(Error::Truncated {
                what: "file",
                at: len,
                needed: header.end.saturating_sub(len).max(1),
                available: 0,
            });
        }
        // The TFile key at `begin` is followed by the top directory record.
        let dir_at = header.begin + u64::from(header.nbytes_name);
        let dir = read_checked(
            source.as_ref(),
            dir_at,
            60.min(len.saturating_sub(dir_at)),
            "top directory",
        )?;
        let seek_keys = parse_directory(&dir, dir_at)?;
        let keys = read_key_list(source.as_ref(), seek_keys)?;
        Ok(RootFile {
            source,
            header,
            keys,
            limits,
        })
    }

    /// The file header.
    pub fn header(&self) -> &FileHeader {
        &self.header
    }

    /// The decompression limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The byte source.
    pub fn source(&self) -> &Arc<dyn ByteSource> {
        &self.source
    }

    /// Keys of the top directory (all cycles).
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// The highest cycle of the top-level key named `name`.
    pub fn key(&self, name: &str) -> Option<&Key> {
        self.keys
            .iter()
            .filter(|k| k.name == name)
            .max_by_key(|k| k.cycle)
    }

    /// Keys of a subdirectory given its key.
    pub fn dir_keys(&self, dir: &Key) -> Result<Vec<Key>> {
        let payload = self.read_key_payload(dir)?;
        let seek_keys = parse_directory(&payload, dir.seek_key)?;
        read_key_list(self.source.as_ref(), seek_keys)
    }

    /// Reads a key's header from the file at `seek`.
    pub fn read_key(&self, seek: u64) -> Result<Key> {
        read_key_at(self.source.as_ref(), seek)
    }

    /// Reads and decompresses a key's payload (`objlen` bytes).
    pub fn read_key_payload(&self, key: &Key) -> Result<Bytes> {
        let data_at = key.seek_key + u64::from(key.keylen);
        let stored = u64::from(key.nbytes - u32::from(key.keylen));
        let raw = read_checked(self.source.as_ref(), data_at, stored, "key payload")?;
        if key.is_compressed() {
            let budget = Budget::per_object(self.limits);
            Ok(Bytes::from(compress::decompress(
                &raw,
                key.objlen as usize,
                data_at,
                &budget,
            )?))
        } else {
            Ok(raw)
        }
    }

    /// The class names and versions recorded in the file's StreamerInfo list.
    pub fn streamer_infos(&self) -> Result<Vec<(String, i32)>> {
        if self.header.seek_info == 0 {
            return Ok(Vec::new());
        }
        let key = self.read_key(self.header.seek_info)?;
        let payload = self.read_key_payload(&key)?;
        let mut c = Cursor::new(&payload, u64::from(key.keylen), key.seek_key);
        read_tlist(&mut c, |class, c| {
            if class != "TStreamerInfo" {
                return Ok(None);
            }
            let h = c.header("TStreamerInfo")?;
            let (name, _) = c.tnamed()?;
            let _checksum = c.u32()?;
            let version = c.i32()?;
            c.finish(&h, "TStreamerInfo")?;
            Ok(Some((name, version)))
        })
        .map(|v| v.into_iter().flatten().collect())
    }
}

/// Reads a `TList` (or `THashList`) whose elements are parsed by `item` (given their class name).
pub fn read_tlist<T>(
    c: &mut Cursor<'_>,
    mut item: impl FnMut(&str, &mut Cursor<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let h = c.header("TList")?;
    c.tobject()?;
    let _name = c.tstring()?;
    let n = c.count(5, "TList")?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        if let Some(v) = c.object_any("TList element", &mut item)? {
            out.push(v);
        }
        let nch = c.u8()?;
        let nch = if nch == 255 && h.version > 4 {
            c.count(1, "TList option")?
        } else {
            nch as usize
        };
        c.skip(nch)?;
    }
    c.finish(&h, "TList")?;
    Ok(out)
}

fn parse_header(b: &[u8]) -> Result<FileHeader> {
    let mut c = Cursor::new(b, 0, 0);
    c.skip(4)?;
    let version = c.i32()?;
    let begin = c.i32()?;
    let large = version >= 1_000_000;
    let (end, _seek_free) = if large {
        (c.i64()?, c.i64()?)
    } else {
        (i64::from(c.i32()?), i64::from(c.i32()?))
    };
    let _nbytes_free = c.i32()?;
    let _nfree = c.i32()?;
    let nbytes_name = c.i32()?;
    let _units = c.u8()?;
    let compress = c.i32()?;
    let seek_info = if large { c.i64()? } else { i64::from(c.i32()?) };
    let nbytes_info = c.i32()?;
    if begin <= 0 || end < 0 || nbytes_name < 0 || seek_info < 0 || nbytes_info < 0 {
        return Err(Error::malformed(
            "file header",
            0,
            "negative offset or size",
        ));
    }
    Ok(FileHeader {
        version: (version % 1_000_000) as u32,
        begin: begin as u64,
        end: end as u64,
        nbytes_name: nbytes_name as u32,
        compress,
        seek_info: seek_info as u64,
        nbytes_info: nbytes_info as u32,
    })
}

/// Parses a TDirectory record and returns the offset of its key list.
fn parse_directory(b: &[u8], at: u64) -> Result<u64> {
    let mut c = Cursor::new(b, 0, at);
    let version = c.i16()?;
    let _ctime = c.u32()?;
    let _mtime = c.u32()?;
    let _nbytes_keys = c.i32()?;
    let _nbytes_name = c.i32()?;
    let seek_keys = if version > 1000 {
        let _seek_dir = c.i64()?;
        let _seek_parent = c.i64()?;
        c.i64()?
    } else {
        let _seek_dir = c.i32()?;
        let _seek_parent = c.i32()?;
        i64::from(c.i32()?)
    };
    u64::try_from(seek_keys)
        .map_err(|_| Error::malformed("directory", at, "negative key-list offset"))
}

fn read_key_at(src: &dyn ByteSource, seek: u64) -> Result<Key> {
    let len = MAX_KEY_HEADER.min(src.len().saturating_sub(seek));
    // Key headers are small: read a bounded window, then parse.
    let window = read_checked(src, seek, len.min(1024), "key header")?;
    let mut c = Cursor::new(&window, 0, seek);
    match Key::parse(&mut c) {
        Err(Error::Truncated { .. }) if len > 1024 => {
            let window = read_checked(src, seek, len, "key header")?;
            Key::parse(&mut Cursor::new(&window, 0, seek))
        }
        other => other,
    }
}

fn read_key_list(src: &dyn ByteSource, seek_keys: u64) -> Result<Vec<Key>> {
    let key = read_key_at(src, seek_keys)?;
    let payload_at = seek_keys + u64::from(key.keylen);
    let stored = u64::from(key.nbytes - u32::from(key.keylen));
    let raw = read_checked(src, payload_at, stored, "key list")?;
    let mut c = Cursor::new(&raw, 0, payload_at);
    let n = c.count(20, "key list")?;
    let mut keys = Vec::with_capacity(n);
    for _ in 0..n {
        keys.push(Key::parse(&mut c)?);
    }
    Ok(keys)
}
