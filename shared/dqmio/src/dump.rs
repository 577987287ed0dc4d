//! The JSON Lines form of monitoring elements used by `dials dump` and by the tests that compare
//! this reader with ROOT. Keys are a public format: `run_number`, `ls_number`, `me`, `kind`, then
//! `value` for scalars, or `x_min`/`x_max`/`x_bin`/`entries`/`data` (+ `y_*`, `z_*`) for histograms,
//! plus the richer fields DIALS dropped (`flags`, flow bins, edges, labels, `sumw2`, `bin_entries`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::dqmio::{MeValue, MonitorElement};
use crate::hist::{Axis, Histogram};

/// One output line.
#[derive(Serialize)]
#[allow(missing_docs)]
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
    #[serde(skip_serializing_if = "<[f64]>::is_empty")]
    z_edges: &'a [f64],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    x_labels: BTreeMap<String, &'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    y_labels: BTreeMap<String, &'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    z_labels: BTreeMap<String, &'a str>,
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
    a.labels
        .iter()
        .map(|(bin, s)| (bin.to_string(), s.as_str()))
        .collect()
}

impl<'a> HistFields<'a> {
    fn new(h: &'a Histogram) -> Self {
        let dim = h.kind.dim();
        let (uf, of) = if dim == 1 {
            (Some(h.flow_1d().0), Some(h.flow_1d().1))
        } else {
            (None, None)
        };
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
            z_edges: h.z.as_ref().map_or(&[], |a| &a.edges),
            x_labels: labels(&h.x),
            y_labels: h.y.as_ref().map(labels).unwrap_or_default(),
            z_labels: h.z.as_ref().map(labels).unwrap_or_default(),
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
        DumpLine {
            run_number: me.run,
            ls_number: me.lumi,
            me: &me.name,
            kind: me.kind.as_str(),
            flags: me.flags,
            value,
            hist,
        }
    }
}
