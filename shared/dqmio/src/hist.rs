//! Histogram decoding: TH1/TH2/TH3 and profiles, from their streamed form to plain numbers.

use serde::Serialize;

use crate::cursor::{ArrayKind, Cursor};
use crate::error::{Error, Result};
use crate::file::read_tlist;

/// The kinds of monitoring elements a DQMIO file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum MeKind {
    /// 64-bit integer scalar.
    Int,
    /// Double scalar.
    Float,
    /// String.
    String,
    /// TH1F.
    TH1F,
    /// TH1S.
    TH1S,
    /// TH1D.
    TH1D,
    /// TH1I.
    TH1I,
    /// TH2F.
    TH2F,
    /// TH2S.
    TH2S,
    /// TH2D.
    TH2D,
    /// TH2I.
    TH2I,
    /// TH3F.
    TH3F,
    /// TProfile.
    TProfile,
    /// TProfile2D.
    TProfile2D,
}

impl MeKind {
    /// All kinds.
    pub const ALL: [MeKind; 14] = [
        MeKind::Int,
        MeKind::Float,
        MeKind::String,
        MeKind::TH1F,
        MeKind::TH1S,
        MeKind::TH1D,
        MeKind::TH1I,
        MeKind::TH2F,
        MeKind::TH2S,
        MeKind::TH2D,
        MeKind::TH2I,
        MeKind::TH3F,
        MeKind::TProfile,
        MeKind::TProfile2D,
    ];

    /// The kinds DIALS stores per lumisection (TH1F/S/D/I and TH2F/S/D/I).
    pub const DIALS_HISTOGRAMS: [MeKind; 8] = [
        MeKind::TH1F,
        MeKind::TH1S,
        MeKind::TH1D,
        MeKind::TH1I,
        MeKind::TH2F,
        MeKind::TH2S,
        MeKind::TH2D,
        MeKind::TH2I,
    ];

    /// Name as used in `dials dump` (`"TH1F"`, `"Int"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            MeKind::Int => "Int",
            MeKind::Float => "Float",
            MeKind::String => "String",
            MeKind::TH1F => "TH1F",
            MeKind::TH1S => "TH1S",
            MeKind::TH1D => "TH1D",
            MeKind::TH1I => "TH1I",
            MeKind::TH2F => "TH2F",
            MeKind::TH2S => "TH2S",
            MeKind::TH2D => "TH2D",
            MeKind::TH2I => "TH2I",
            MeKind::TH3F => "TH3F",
            MeKind::TProfile => "TProfile",
            MeKind::TProfile2D => "TProfile2D",
        }
    }

    /// The DQMIO tree holding this kind (`"TH1Fs"`, `"Ints"`, ...).
    pub fn tree_name(self) -> &'static str {
        match self {
            MeKind::Int => "Ints",
            MeKind::Float => "Floats",
            MeKind::String => "Strings",
            MeKind::TH1F => "TH1Fs",
            MeKind::TH1S => "TH1Ss",
            MeKind::TH1D => "TH1Ds",
            MeKind::TH1I => "TH1Is",
            MeKind::TH2F => "TH2Fs",
            MeKind::TH2S => "TH2Ss",
            MeKind::TH2D => "TH2Ds",
            MeKind::TH2I => "TH2Is",
            MeKind::TH3F => "TH3Fs",
            MeKind::TProfile => "TProfiles",
            MeKind::TProfile2D => "TProfile2Ds",
        }
    }

    /// Kind stored in the tree named `name`.
    pub fn from_tree_name(name: &str) -> Option<MeKind> {
        MeKind::ALL.into_iter().find(|k| k.tree_name() == name)
    }

    /// Histogram dimension (0 for scalars).
    pub fn dim(self) -> u8 {
        match self {
            MeKind::Int | MeKind::Float | MeKind::String => 0,
            MeKind::TH1F | MeKind::TH1S | MeKind::TH1D | MeKind::TH1I | MeKind::TProfile => 1,
            MeKind::TH2F | MeKind::TH2S | MeKind::TH2D | MeKind::TH2I | MeKind::TProfile2D => 2,
            MeKind::TH3F => 3,
        }
    }

    /// True for TProfile/TProfile2D.
    pub fn is_profile(self) -> bool {
        matches!(self, MeKind::TProfile | MeKind::TProfile2D)
    }

    /// The ROOT class of histogram kinds.
    pub fn class_name(self) -> &'static str {
        self.as_str()
    }

    fn array_kind(self) -> ArrayKind {
        match self {
            MeKind::TH1S | MeKind::TH2S => ArrayKind::S,
            MeKind::TH1I | MeKind::TH2I => ArrayKind::I,
            MeKind::TH1F | MeKind::TH2F | MeKind::TH3F => ArrayKind::F,
            _ => ArrayKind::D,
        }
    }
}

impl std::fmt::Display for MeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One histogram axis.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Axis {
    /// Number of bins (without under/overflow).
    pub nbins: usize,
    /// Lower limit.
    pub min: f64,
    /// Upper limit.
    pub max: f64,
    /// Bin edges (nbins + 1) for variable-width axes; empty for uniform ones.
    pub edges: Vec<f64>,
    /// Bin labels as (bin number, label).
    pub labels: Vec<(i32, String)>,
    /// Axis title.
    pub title: String,
}

impl Axis {
    /// Low edge of `bin` (1-based), with the exact arithmetic of ROOT's `TAxis::GetBinLowEdge`.
    /// Like ROOT, the stored edges serve bins 1..=nbins only: the low edge of the overflow bin
    /// (DIALS's `x_max`) comes from the uniform formula even on variable-width axes.
    pub fn low_edge(&self, bin: usize) -> f64 {
        if !self.edges.is_empty() && bin > 0 && bin <= self.nbins {
            if let Some(e) = self.edges.get(bin - 1) {
                return *e;
            }
        }
        let width = (self.max - self.min) / self.nbins as f64;
        self.min + (bin as f64 - 1.0) * width
    }
}

/// A decoded histogram. Bin arrays include under/overflow bins, x fastest, as ROOT stores them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Histogram {
    /// Kind.
    pub kind: MeKind,
    /// X axis.
    pub x: Axis,
    /// Y axis (2D/3D).
    pub y: Option<Axis>,
    /// Z axis (3D).
    pub z: Option<Axis>,
    /// `fEntries`.
    pub entries: f64,
    /// Bin contents as ROOT's `GetBinContent` reports them (profiles: sum / entries).
    pub contents: Vec<f64>,
    /// Sum of squared weights per bin, when stored.
    pub sumw2: Vec<f64>,
    /// Profiles: entries (sum of weights) per bin.
    pub bin_entries: Vec<f64>,
    /// Profiles: the stored sum of weight × value per bin (`fArray`, of which `contents` is the
    /// mean); empty for other kinds.
    pub bin_sums: Vec<f64>,
    /// `fTsumw`, `fTsumw2`, `fTsumwx`, `fTsumwx2`.
    pub stats: [f64; 4],
}

impl Histogram {
    /// Bins per axis including flow bins.
    fn strides(&self) -> (usize, usize) {
        let nx = self.x.nbins + 2;
        let ny = self.y.as_ref().map_or(1, |a| a.nbins + 2);
        (nx, ny)
    }

    /// Contents without flow bins, 1D.
    pub fn data_1d(&self) -> &[f64] {
        let n = self.x.nbins;
        self.contents.get(1..n + 1).unwrap_or(&[])
    }

    /// Contents without flow bins as rows `data[y][x]` (2D).
    pub fn data_2d(&self) -> Vec<&[f64]> {
        let (nx, _) = self.strides();
        let ny = self.y.as_ref().map_or(0, |a| a.nbins);
        (1..=ny)
            .filter_map(|iy| self.contents.get(iy * nx + 1..iy * nx + 1 + self.x.nbins))
            .collect()
    }

    /// Contents without flow bins as `data[z][y][x]` (3D).
    pub fn data_3d(&self) -> Vec<Vec<&[f64]>> {
        let (nx, nyf) = self.strides();
        let ny = self.y.as_ref().map_or(0, |a| a.nbins);
        let nz = self.z.as_ref().map_or(0, |a| a.nbins);
        (1..=nz)
            .map(|iz| {
                (1..=ny)
                    .filter_map(|iy| {
                        let base = (iz * nyf + iy) * nx + 1;
                        self.contents.get(base..base + self.x.nbins)
                    })
                    .collect()
            })
            .collect()
    }

    /// Underflow and overflow of a 1D histogram.
    pub fn flow_1d(&self) -> (f64, f64) {
        let n = self.x.nbins;
        (
            self.contents.first().copied().unwrap_or(0.0),
            self.contents.get(n + 1).copied().unwrap_or(0.0),
        )
    }
}

/// How an entry of a histogram branch begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `TBranchElement`: the class's members follow directly (no header of the class itself).
    Members,
    /// `TBranchObject`: `[u8 n][class name\0]` and then the object's own `Streamer` output.
    Object,
}

/// Decodes one histogram entry of `kind` from `buf`. `origin` is the logical position of
/// `buf[0]` in its ROOT buffer (for object references inside the entry).
pub fn decode(
    kind: MeKind,
    buf: &[u8],
    origin: u64,
    at: u64,
    framing: Framing,
) -> Result<Histogram> {
    let mut c = Cursor::new(buf, origin, at);
    let outer = match framing {
        Framing::Members => None,
        Framing::Object => {
            let n = c.u8()? as usize;
            let name = c.bytes(n + 1)?;
            if &name[..n] != kind.class_name().as_bytes() {
                return Err(Error::malformed(
                    "histogram",
                    at,
                    format!(
                        "entry holds a {}, tree holds {kind}",
                        String::from_utf8_lossy(&name[..n])
                    ),
                ));
            }
            Some(c.header(kind.class_name())?)
        }
    };
    let h = match kind.dim() {
        1 if kind.is_profile() => read_profile(&mut c, kind)?,
        1 => {
            let core = read_th1(&mut c)?;
            let contents = c.array_f64(kind.array_kind())?;
            core.into_hist(kind, contents, Vec::new())?
        }
        2 if kind.is_profile() => read_profile(&mut c, kind)?,
        2 => {
            let core = read_th2(&mut c)?;
            let contents = c.array_f64(kind.array_kind())?;
            core.into_hist(kind, contents, Vec::new())?
        }
        3 => {
            let core = read_th3(&mut c)?;
            let contents = c.array_f64(kind.array_kind())?;
            core.into_hist(kind, contents, Vec::new())?
        }
        _ => {
            return Err(Error::malformed(
                "histogram",
                at,
                format!("{kind} is not a histogram kind"),
            ))
        }
    };
    if let Some(outer) = outer {
        c.finish(&outer, kind.class_name())?;
    }
    if c.remaining() != 0 {
        return Err(Error::malformed(
            "histogram",
            at,
            format!("{} unread bytes after the {kind}", c.remaining()),
        ));
    }
    Ok(h)
}

/// The TH1 members that matter.
struct Th1Core {
    x: Axis,
    y: Axis,
    z: Axis,
    entries: f64,
    stats: [f64; 4],
    sumw2: Vec<f64>,
}

impl Th1Core {
    fn into_hist(
        self,
        kind: MeKind,
        contents: Vec<f64>,
        bin_entries: Vec<f64>,
    ) -> Result<Histogram> {
        let ncells = match kind.dim() {
            1 => self.x.nbins + 2,
            2 => (self.x.nbins + 2) * (self.y.nbins + 2),
            _ => (self.x.nbins + 2) * (self.y.nbins + 2) * (self.z.nbins + 2),
        };
        if contents.len() != ncells {
            return Err(Error::malformed(
                "histogram",
                0,
                format!("{kind} has {} cells, axes need {ncells}", contents.len()),
            ));
        }
        if !self.sumw2.is_empty() && self.sumw2.len() != ncells {
            return Err(Error::malformed(
                "histogram",
                0,
                format!("sumw2 has {} cells, axes need {ncells}", self.sumw2.len()),
            ));
        }
        let (contents, bin_sums) = if kind.is_profile() {
            if bin_entries.len() != ncells {
                return Err(Error::malformed(
                    "profile",
                    0,
                    format!("{} bin entries for {ncells} cells", bin_entries.len()),
                ));
            }
            let means = contents
                .iter()
                .zip(&bin_entries)
                .map(|(s, n)| if *n > 0.0 { s / n } else { 0.0 })
                .collect();
            (means, contents)
        } else {
            (contents, Vec::new())
        };
        let dim = kind.dim();
        Ok(Histogram {
            kind,
            x: self.x,
            y: (dim >= 2).then_some(self.y),
            z: (dim >= 3).then_some(self.z),
            entries: self.entries,
            contents,
            sumw2: self.sumw2,
            bin_entries,
            bin_sums,
            stats: self.stats,
        })
    }
}

fn read_th1(c: &mut Cursor<'_>) -> Result<Th1Core> {
    let h = c.header("TH1")?;
    if h.version < 5 {
        return Err(Error::Unsupported(format!(
            "TH1 class version {}",
            h.version
        )));
    }
    c.tnamed()?;
    c.skip_object("TAttLine")?;
    c.skip_object("TAttFill")?;
    c.skip_object("TAttMarker")?;
    let _ncells = c.i32()?;
    let x = read_axis(c)?;
    let y = read_axis(c)?;
    let z = read_axis(c)?;
    let _bar_offset = c.i16()?;
    let _bar_width = c.i16()?;
    let entries = c.f64()?;
    let stats = [c.f64()?, c.f64()?, c.f64()?, c.f64()?];
    let _maximum = c.f64()?;
    let _minimum = c.f64()?;
    let _norm = c.f64()?;
    c.skip_array(ArrayKind::D)?; // fContour
    let sumw2 = c.array_f64(ArrayKind::D)?;
    // fOption, fFunctions, fBuffer, fBinStatErrOpt, fStatOverflows: skipped by the byte count.
    c.finish(&h, "TH1")?;
    Ok(Th1Core {
        x,
        y,
        z,
        entries,
        stats,
        sumw2,
    })
}

fn read_th2(c: &mut Cursor<'_>) -> Result<Th1Core> {
    let h = c.header("TH2")?;
    let core = read_th1(c)?;
    c.finish(&h, "TH2")?;
    Ok(core)
}

fn read_th3(c: &mut Cursor<'_>) -> Result<Th1Core> {
    let h = c.header("TH3")?;
    let core = read_th1(c)?;
    c.finish(&h, "TH3")?;
    Ok(core)
}

/// TProfile = [TH1D][fBinEntries][fErrorMode, limits, sums][fBinSumw2];
/// TProfile2D = [TH2D][fBinEntries][...]. The TH1D/TH2D part has its own header.
fn read_profile(c: &mut Cursor<'_>, kind: MeKind) -> Result<Histogram> {
    let hd = c.header("profile base")?;
    let core = if kind == MeKind::TProfile {
        read_th1(c)?
    } else {
        read_th2(c)?
    };
    let sums = c.array_f64(ArrayKind::D)?;
    c.finish(&hd, "profile base")?;
    let bin_entries = c.array_f64(ArrayKind::D)?;
    let _error_mode = c.i32()?;
    let _lo = c.f64()?;
    let _hi = c.f64()?;
    let _tsum = c.f64()?;
    let _tsum2 = c.f64()?;
    let _bin_sumw2 = c.array_f64(ArrayKind::D)?;
    core.into_hist(kind, sums, bin_entries)
}

fn read_axis(c: &mut Cursor<'_>) -> Result<Axis> {
    let h = c.header("TAxis")?;
    let (_name, title) = c.tnamed()?;
    c.skip_object("TAttAxis")?;
    let at = c.at();
    let nbins = c.i32()?;
    let nbins = usize::try_from(nbins)
        .ok()
        .filter(|n| *n > 0 && *n < (1 << 28))
        .ok_or_else(|| Error::malformed("TAxis", at, format!("{nbins} bins")))?;
    let min = c.f64()?;
    let max = c.f64()?;
    let edges = c.array_f64(ArrayKind::D)?;
    if !edges.is_empty() && edges.len() != nbins + 1 {
        return Err(Error::malformed(
            "TAxis",
            at,
            format!("{} edges for {nbins} bins", edges.len()),
        ));
    }
    let _first = c.i32()?;
    let _last = c.i32()?;
    let _bits2 = c.u16()?;
    let _time_display = c.u8()?;
    let _time_format = c.tstring()?;
    let labels = c
        .object_any("axis labels", |class, c| {
            if class != "THashList" && class != "TList" {
                return Err(Error::malformed(
                    "TAxis",
                    c.at(),
                    format!("labels stored as {class}"),
                ));
            }
            read_tlist(c, |class, c| {
                if class != "TObjString" {
                    return Err(Error::malformed(
                        "TAxis",
                        c.at(),
                        format!("label of class {class}"),
                    ));
                }
                let h = c.header("TObjString")?;
                let bin = c.tobject()?;
                let s = c.tstring()?;
                c.finish(&h, "TObjString")?;
                Ok((bin as i32, s))
            })
        })?
        .unwrap_or_default();
    // fModLabs (label modifications) is skipped by the TAxis byte count.
    c.finish(&h, "TAxis")?;
    Ok(Axis {
        nbins,
        min,
        max,
        edges,
        labels,
        title,
    })
}
