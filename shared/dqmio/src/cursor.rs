//! A bounds-checked big-endian reader over a byte slice, with ROOT's object-header conventions.
//!
//! ROOT streams objects as `[bytecount | 0x40000000][version]members...`. [`Cursor::header`] reads
//! that header and [`Cursor::finish`] jumps to the end the byte count announced, so members a newer
//! class version adds are skipped instead of derailing everything after them.

use std::collections::HashMap;

use crate::error::{Error, Result};

const BYTECOUNT_MASK: u32 = 0x4000_0000;
const CLASS_MASK: u32 = 0x8000_0000;
const NEW_CLASS_TAG: u32 = 0xFFFF_FFFF;
const MAP_OFFSET: u64 = 2;
/// Bit of a version number saying the object was streamed member-wise (not supported here).
const STREAMED_MEMBERWISE: u16 = 0x4000;

/// A ROOT object header: version and, when present, where the object ends.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    /// Class version of the streamed object.
    pub version: i16,
    /// Position right after the byte count (where the object's data starts).
    pub start: usize,
    /// Position just past the object, if a byte count was written.
    pub end: Option<usize>,
}

/// Reading position inside one buffer, plus the class-tag map ROOT uses for object references.
pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf[0]` in the logical ROOT buffer (a key's length, for data read via a key);
    /// object references are positions in that logical buffer.
    origin: u64,
    /// File offset of `buf[0]` when known, for error messages only.
    file_offset: u64,
    classes: HashMap<u64, String>,
}

impl<'a> Cursor<'a> {
    /// A cursor over `buf`, whose first byte is at logical position `origin` of its ROOT buffer.
    pub fn new(buf: &'a [u8], origin: u64, file_offset: u64) -> Self {
        Self {
            buf,
            pos: 0,
            origin,
            file_offset,
            classes: HashMap::new(),
        }
    }

    /// Current position in `buf`.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// File offset of the current position (approximate for decompressed data).
    pub fn at(&self) -> u64 {
        self.file_offset + self.pos as u64
    }

    /// Moves to absolute position `pos` (must lie within the buffer).
    pub fn seek(&mut self, pos: usize) -> Result<()> {
        if pos > self.buf.len() {
            return Err(Error::Truncated {
                what: "object",
                at: self.file_offset + pos as u64,
                needed: (pos - self.buf.len()) as u64,
                available: 0,
            });
        }
        self.pos = pos;
        Ok(())
    }

    /// Takes the next `n` bytes.
    #[inline]
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(Error::Truncated {
                what: "object data",
                at: self.at(),
                needed: n as u64,
                available: self.remaining() as u64,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Skips `n` bytes.
    pub fn skip(&mut self, n: usize) -> Result<()> {
        self.bytes(n).map(|_| ())
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.bytes(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// Reads a `u8`.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }
    /// Reads a big-endian `u16`.
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    /// Reads a big-endian `i16`.
    pub fn i16(&mut self) -> Result<i16> {
        Ok(i16::from_be_bytes(self.array()?))
    }
    /// Reads a big-endian `u32`.
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    /// Reads a big-endian `i32`.
    pub fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.array()?))
    }
    /// Reads a big-endian `u64`.
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    /// Reads a big-endian `i64`.
    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(self.array()?))
    }
    /// Reads a big-endian `f64`.
    pub fn f64(&mut self) -> Result<f64> {
        Ok(f64::from_be_bytes(self.array()?))
    }

    /// Reads a count that must be non-negative and fit `max_elem_size`-byte elements in what is left.
    pub fn count(&mut self, elem_size: usize, what: &'static str) -> Result<usize> {
        let at = self.at();
        let n = self.i32()?;
        let n = usize::try_from(n)
            .map_err(|_| Error::malformed(what, at, format!("negative length {n}")))?;
        if n.saturating_mul(elem_size) > self.remaining() {
            return Err(Error::malformed(
                what,
                at,
                format!(
                    "length {n} needs {} bytes, {} left",
                    n.saturating_mul(elem_size),
                    self.remaining()
                ),
            ));
        }
        Ok(n)
    }

    /// Reads a ROOT `TString` (1-byte length, or 255 followed by a 4-byte length).
    pub fn tstring(&mut self) -> Result<String> {
        let n = self.u8()?;
        let n = if n == 255 {
            self.count(1, "string")?
        } else {
            n as usize
        };
        Ok(String::from_utf8_lossy(self.bytes(n)?).into_owned())
    }

    /// Reads a NUL-terminated string (class names in object tags).
    pub fn cstring(&mut self) -> Result<String> {
        let rest = &self.buf[self.pos..];
        let n = rest
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| Error::malformed("class name", self.at(), "unterminated string"))?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }

    /// Reads an object header: optional byte count, then the version.
    pub fn header(&mut self, what: &'static str) -> Result<Header> {
        let at = self.at();
        let begin = self.pos;
        let first = if self.remaining() >= 4 {
            self.u32()?
        } else {
            u32::from(self.u16()?) << 16
        };
        let (end, version) = if first & BYTECOUNT_MASK != 0 {
            let count = (first & !BYTECOUNT_MASK) as usize;
            let end = self
                .pos
                .checked_add(count)
                .filter(|e| *e <= self.buf.len())
                .ok_or_else(|| {
                    Error::malformed(
                        what,
                        at,
                        format!(
                            "byte count {count} runs past the buffer ({} left)",
                            self.remaining()
                        ),
                    )
                })?;
            if count < 2 {
                return Err(Error::malformed(
                    what,
                    at,
                    format!("byte count {count} too small"),
                ));
            }
            (Some(end), self.u16()?)
        } else {
            // No byte count: the first two bytes were the version.
            self.pos = begin + 2;
            (None, (first >> 16) as u16)
        };
        if version & STREAMED_MEMBERWISE != 0 {
            return Err(Error::Unsupported(format!(
                "member-wise streamed {what} at offset {at}"
            )));
        }
        Ok(Header {
            version: version as i16,
            start: self.pos,
            end,
        })
    }

    /// Ends an object: jumps to the end its byte count announced (skipping unknown trailing members)
    /// and fails if the members read so far already went past it.
    pub fn finish(&mut self, h: &Header, what: &'static str) -> Result<()> {
        if let Some(end) = h.end {
            if self.pos > end {
                return Err(Error::malformed(
                    what,
                    self.at(),
                    format!("read {} bytes past its byte count", self.pos - end),
                ));
            }
            self.pos = end;
        }
        Ok(())
    }

    /// Skips a whole object that has a byte count.
    pub fn skip_object(&mut self, what: &'static str) -> Result<()> {
        let h = self.header(what)?;
        match h.end {
            Some(_) => self.finish(&h, what),
            None => Err(Error::malformed(
                what,
                self.at(),
                "no byte count to skip by",
            )),
        }
    }

    /// Reads a `TObject` base: version, unique id, bits (and the process id if referenced).
    /// Returns the unique id (TAxis labels keep their bin number there).
    pub fn tobject(&mut self) -> Result<u32> {
        let h = self.header("TObject")?;
        let unique_id = self.u32()?;
        let bits = self.u32()?;
        if bits & (1 << 4) != 0 {
            self.skip(2)?; // process id of a referenced object
        }
        self.finish(&h, "TObject")?;
        Ok(unique_id)
    }

    /// Reads a `TNamed` base and returns (name, title).
    pub fn tnamed(&mut self) -> Result<(String, String)> {
        let h = self.header("TNamed")?;
        self.tobject()?;
        let name = self.tstring()?;
        let title = self.tstring()?;
        self.finish(&h, "TNamed")?;
        Ok((name, title))
    }

    /// Reads an object through a pointer (`ReadObjectAny`): null, a reference to an object read
    /// before (returned as `None`), or a new object whose class name is passed to `parse`.
    /// `parse` reads the object's own streamer output; the byte count then positions the cursor.
    pub fn object_any<T>(
        &mut self,
        what: &'static str,
        parse: impl FnOnce(&str, &mut Self) -> Result<T>,
    ) -> Result<Option<T>> {
        let at = self.at();
        let beg = self.pos;
        let first = self.u32()?;
        let (tag, end, tag_pos) = if first & BYTECOUNT_MASK == 0 || first == NEW_CLASS_TAG {
            (first, None, beg)
        } else {
            let count = (first & !BYTECOUNT_MASK) as usize;
            let end = (beg + 4)
                .checked_add(count)
                .filter(|e| *e <= self.buf.len())
                .ok_or_else(|| {
                    Error::malformed(
                        what,
                        at,
                        format!("object byte count {count} runs past the buffer"),
                    )
                })?;
            let tag_pos = self.pos;
            (self.u32()?, Some(end), tag_pos)
        };
        if tag & CLASS_MASK == 0 {
            // Null pointer or a reference to an object already read: nothing new to parse.
            if let Some(end) = end {
                self.pos = end;
            }
            return Ok(None);
        }
        let class = if tag == NEW_CLASS_TAG {
            let name = self.cstring()?;
            self.classes
                .insert(self.origin + tag_pos as u64 + MAP_OFFSET, name.clone());
            name
        } else {
            let key = u64::from(tag & !CLASS_MASK);
            self.classes.get(&key).cloned().ok_or_else(|| {
                Error::malformed(what, at, format!("reference to unknown class tag {key}"))
            })?
        };
        let value = parse(&class, self)?;
        if let Some(end) = end {
            if self.pos > end {
                return Err(Error::malformed(
                    what,
                    at,
                    format!("{class} read past its byte count"),
                ));
            }
            self.pos = end;
        }
        Ok(Some(value))
    }

    /// Reads a `TArrayD`-style array body (`i32 n`, then `n` elements) converting to `f64`.
    pub fn array_f64(&mut self, kind: ArrayKind) -> Result<Vec<f64>> {
        let size = kind.size();
        let n = self.count(size, "array")?;
        let raw = self.bytes(n * size)?;
        Ok(kind.decode(raw))
    }

    /// Skips a `TArray` body.
    pub fn skip_array(&mut self, kind: ArrayKind) -> Result<()> {
        let n = self.count(kind.size(), "array")?;
        self.skip(n * kind.size())
    }
}

/// Element types of ROOT's `TArray` classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrayKind {
    /// `TArrayS` (i16).
    S,
    /// `TArrayI` (i32).
    I,
    /// `TArrayF` (f32).
    F,
    /// `TArrayD` (f64).
    D,
}

impl ArrayKind {
    /// Element size in bytes.
    pub fn size(self) -> usize {
        match self {
            ArrayKind::S => 2,
            ArrayKind::I | ArrayKind::F => 4,
            ArrayKind::D => 8,
        }
    }

    /// Converts big-endian elements to `f64` (exact for every source type).
    pub fn decode(self, raw: &[u8]) -> Vec<f64> {
        match self {
            ArrayKind::S => raw
                .chunks_exact(2)
                .map(|c| f64::from(i16::from_be_bytes([c[0], c[1]])))
                .collect(),
            ArrayKind::I => raw
                .chunks_exact(4)
                .map(|c| f64::from(i32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
            ArrayKind::F => raw
                .chunks_exact(4)
                .map(|c| f64::from(f32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
            ArrayKind::D => raw
                .chunks_exact(8)
                .map(|c| f64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_with_and_without_bytecount() {
        let buf = [0x40, 0, 0, 4, 0, 3, 0xAA, 0xBB, 0, 7];
        let mut c = Cursor::new(&buf, 0, 0);
        let h = c.header("x").unwrap();
        assert_eq!(h.version, 3);
        assert_eq!(h.end, Some(8));
        c.finish(&h, "x").unwrap();
        let h2 = c.header("y").unwrap();
        assert_eq!(h2.version, 7);
        assert!(h2.end.is_none());
    }

    #[test]
    fn bytecount_past_end_is_an_error() {
        let buf = [0x40, 0, 0, 40, 0, 3];
        assert!(Cursor::new(&buf, 0, 0).header("x").is_err());
    }

    #[test]
    fn absurd_array_length_is_an_error() {
        let buf = [0x7f, 0xff, 0xff, 0xff, 0, 0];
        assert!(Cursor::new(&buf, 0, 0).array_f64(ArrayKind::D).is_err());
        let buf = [0xff, 0xff, 0xff, 0xff];
        assert!(Cursor::new(&buf, 0, 0).array_f64(ArrayKind::D).is_err());
    }

    #[test]
    fn tstring_long_form() {
        let mut buf = vec![255, 0, 0, 1, 0];
        buf.extend(std::iter::repeat(b'a').take(256));
        assert_eq!(Cursor::new(&buf, 0, 0).tstring().unwrap().len(), 256);
    }
}
