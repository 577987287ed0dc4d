//! `dials dump`: JSON Lines, one line per element per (run, lumisection).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use dials_dqmio::{Axis, Histogram, MeValue, MonitorElement, Selection};
use serde::Serialize;

use crate::CliError;

/// One output line. Field names are a public format (see docs/cli.md).
#[derive(Serialize)]
pub struct DumpLine<'a> {
    run_number: u32,
    ls_number: u32,
    me: &'a str,
    kind: &'static str,
    flags: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<Scalar<'a>>,
    #[serde(flatten)]
    hist: Option<HistFields<'a>>,
}

#[derive(Serialize)]
struct HistFields<'a> {
    x_min: f64,
    x_max: f64,
    x_bin: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    y_min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    y_max: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    y_bin: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    z_min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    z_max: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    z_bin: Option<usize>,
    entries: i64,
    data: Data<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    underflow: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    overflow: Option<f64>,
    #[serde(skip_serializing_if = "<[f64]>::is_empty")]
    x_edges: &'a [f64],
    #[serde(skip_serializing_if = "<[f64]>::is_empty")]
    y_edges: &'a [f64],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    x_labels: BTreeMap<String, &'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    y_labels: BTreeMap<String, &'a str>,
    #[serde(skip_serializing_if = "<[f64]>::is_empty")]
    sumw2: &'a [f64],
    #[serde(skip_serializing_if = "<[f64]>::is_empty")]
    bin_entries: &'a [f64],
}

/// A scalar element's value as plain JSON.
#[derive(Serialize)]
#[serde(untagged)]
enum Scalar<'a> {
    Int(i64),
    Float(f64),
    Str(&'a str),
}

#[derive(Serialize)]
#[serde(untagged)]
enum Data<'a> {
    D1(&'a [f64]),
    D2(Vec<&'a [f64]>),
    D3(Vec<Vec<&'a [f64]>>),
}

fn labels(a: &Axis) -> BTreeMap<String, &str> {
    a.labels.iter().map(|(bin, s)| (bin.to_string(), s.as_str())).collect()
}

impl<'a> HistFields<'a> {
    fn new(h: &'a Histogram) -> Self {
        let dim = h.kind.dim();
        let (uf, of) = if dim == 1 { (Some(h.flow_1d().0), Some(h.flow_1d().1)) } else { (None, None) };
        HistFields {
            x_min: h.x.low_edge(1),
            x_max: h.x.low_edge(h.x.nbins + 1),
            x_bin: h.x.nbins,
            y_min: h.y.as_ref().map(|a| a.low_edge(1)),
            y_max: h.y.as_ref().map(|a| a.low_edge(a.nbins + 1)),
            y_bin: h.y.as_ref().map(|a| a.nbins),
            z_min: h.z.as_ref().map(|a| a.low_edge(1)),
            z_max: h.z.as_ref().map(|a| a.low_edge(a.nbins + 1)),
            z_bin: h.z.as_ref().map(|a| a.nbins),
            entries: h.entries as i64,
            data: match dim {
                1 => Data::D1(h.data_1d()),
                2 => Data::D2(h.data_2d()),
                _ => Data::D3(h.data_3d()),
            },
            underflow: uf,
            overflow: of,
            x_edges: &h.x.edges,
            y_edges: h.y.as_ref().map_or(&[], |a| &a.edges),
            x_labels: labels(&h.x),
            y_labels: h.y.as_ref().map(labels).unwrap_or_default(),
            sumw2: &h.sumw2,
            bin_entries: &h.bin_entries,
        }
    }
}

impl<'a> DumpLine<'a> {
    /// The line for one element.
    pub fn new(me: &'a MonitorElement) -> Self {
        let (value, hist) = match &me.value {
            MeValue::Hist(h) => (None, Some(HistFields::new(h))),
            MeValue::Int(v) => (Some(Scalar::Int(*v)), None),
            MeValue::Float(v) => (Some(Scalar::Float(*v)), None),
            MeValue::String(v) => (Some(Scalar::Str(v)), None),
        };
        DumpLine { run_number: me.run, ls_number: me.lumi, me: &me.name, kind: me.kind.as_str(), flags: me.flags, value, hist }
    }
}

/// Runs `dials dump`.
pub fn run(path: &Path, me_regex: Option<&str>) -> Result<(), CliError> {
    let file = crate::open(path)?;
    let mut sel = Selection::default();
    if let Some(r) = me_regex {
        sel.name = Some(regex::Regex::new(r).map_err(|e| CliError::Usage(format!("--me-regex: {e}")))?);
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut io_err = None;
    file.for_each(&sel, |me| {
        let line = DumpLine::new(&me);
        let res = serde_json::to_writer(&mut out, &line).map_err(std::io::Error::from).and_then(|_| out.write_all(b"\n"));
        if let Err(e) = res {
            io_err = Some(e);
            return Err(dials_dqmio::Error::Unsupported("output closed".into()));
        }
        Ok(())
    })
    .map_err(|source| match io_err.take() {
        Some(e) => CliError::Output(e),
        None => CliError::Read { path: path.display().to_string(), source },
    })?;
    out.flush()?;
    Ok(())
}
