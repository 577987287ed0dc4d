//! Arrow schemas and row builders of the lake tables.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Builder, Int32Builder, Int64Builder, ListBuilder, RecordBatch, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use dials_dqmio::Histogram;

/// Columns shared by `th1` and `th2` (DIALS's names). `run_number` is the Hive partition, not a column.
fn key_fields() -> Vec<Field> {
    vec![
        Field::new("dataset_id", DataType::Int64, false),
        Field::new("dataset", DataType::Utf8, false),
        Field::new("file_id", DataType::Int64, false),
        Field::new("ls_number", DataType::Int64, false),
        Field::new("me_id", DataType::Int64, false),
        Field::new("me", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("flags", DataType::Int64, false),
    ]
}

fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, true)))
}

/// The tie-breaker column of `th1`/`th2`: the row's position among the histograms of its lumisection
/// that the ingest kept from this file (0, 1, ...), in the order it read them. A file may hold the same
/// ME more than once in a lumisection (two `Indices` rows, two process histories, two kinds), so
/// (run, lumisection, ME, file) alone is not unique; with `seq` it is. Nullable only so that lakes
/// written before it existed stay readable (their rows read as null).
pub const SEQ: &str = "seq";

fn seq_field() -> Field {
    Field::new(SEQ, DataType::Int64, true)
}

/// Schema of `th1` (TH1F/S/D/I per lumisection).
pub fn th1_schema() -> SchemaRef {
    let mut f = key_fields();
    f.extend([
        Field::new("x_min", DataType::Float64, false),
        Field::new("x_max", DataType::Float64, false),
        Field::new("x_bin", DataType::Int32, false),
        Field::new("entries", DataType::Int64, false),
        Field::new("data", list_of(DataType::Float64), false),
        Field::new("underflow", DataType::Float64, false),
        Field::new("overflow", DataType::Float64, false),
        Field::new("x_edges", list_of(DataType::Float64), true),
        Field::new("sumw2", list_of(DataType::Float64), true),
        seq_field(),
    ]);
    Arc::new(Schema::new(f))
}

/// Schema of `th2` (TH2F/S/D/I per lumisection); `data` is rows `data[y][x]`.
pub fn th2_schema() -> SchemaRef {
    let mut f = key_fields();
    f.extend([
        Field::new("x_min", DataType::Float64, false),
        Field::new("x_max", DataType::Float64, false),
        Field::new("x_bin", DataType::Int32, false),
        Field::new("y_min", DataType::Float64, false),
        Field::new("y_max", DataType::Float64, false),
        Field::new("y_bin", DataType::Int32, false),
        Field::new("entries", DataType::Int64, false),
        Field::new("data", list_of(list_of(DataType::Float64)), false),
        Field::new("x_edges", list_of(DataType::Float64), true),
        Field::new("y_edges", list_of(DataType::Float64), true),
        Field::new("sumw2", list_of(DataType::Float64), true),
        seq_field(),
    ]);
    Arc::new(Schema::new(f))
}

/// One histogram row before it is columnised.
#[derive(Debug, Clone)]
pub struct HistRow {
    /// Dataset id.
    pub dataset_id: i64,
    /// File id.
    pub file_id: i64,
    /// Lumisection.
    pub ls_number: i64,
    /// ME id.
    pub me_id: i64,
    /// Position among the kept histograms of this lumisection in the file ([`SEQ`]).
    pub seq: i64,
    /// ME name.
    pub me: String,
    /// DQM flags.
    pub flags: u32,
    /// The histogram.
    pub hist: Histogram,
}

fn opt_list(b: &mut ListBuilder<Float64Builder>, v: &[f64]) {
    if v.is_empty() {
        b.append_null();
    } else {
        b.values().append_slice(v);
        b.append(true);
    }
}

/// Builds one `th1` or `th2` batch from rows (all of the same table).
pub fn hist_batch(dim: u8, dataset: &str, rows: &[HistRow]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let n = rows.len();
    let mut dataset_id = Int64Builder::with_capacity(n);
    let mut dataset_col = StringBuilder::with_capacity(n, n * dataset.len());
    let mut file_id = Int64Builder::with_capacity(n);
    let mut ls = Int64Builder::with_capacity(n);
    let mut me_id = Int64Builder::with_capacity(n);
    let mut me = StringBuilder::new();
    let mut kind = StringBuilder::new();
    let mut flags = Int64Builder::with_capacity(n);
    let (mut x_min, mut x_max, mut x_bin) = (Float64Builder::new(), Float64Builder::new(), Int32Builder::new());
    let (mut y_min, mut y_max, mut y_bin) = (Float64Builder::new(), Float64Builder::new(), Int32Builder::new());
    let mut entries = Int64Builder::with_capacity(n);
    let mut data1 = ListBuilder::new(Float64Builder::new());
    let mut data2 = ListBuilder::new(ListBuilder::new(Float64Builder::new()));
    let (mut under, mut over) = (Float64Builder::new(), Float64Builder::new());
    let mut x_edges = ListBuilder::new(Float64Builder::new());
    let mut y_edges = ListBuilder::new(Float64Builder::new());
    let mut sumw2 = ListBuilder::new(Float64Builder::new());
    let mut seq = Int64Builder::with_capacity(n);
    for r in rows {
        let h = &r.hist;
        dataset_id.append_value(r.dataset_id);
        dataset_col.append_value(dataset);
        file_id.append_value(r.file_id);
        ls.append_value(r.ls_number);
        me_id.append_value(r.me_id);
        me.append_value(&r.me);
        kind.append_value(h.kind.as_str());
        flags.append_value(i64::from(r.flags));
        x_min.append_value(h.x.low_edge(1));
        x_max.append_value(h.x.low_edge(h.x.nbins + 1));
        x_bin.append_value(h.x.nbins as i32);
        entries.append_value(h.entries as i64);
        seq.append_value(r.seq);
        opt_list(&mut x_edges, &h.x.edges);
        opt_list(&mut sumw2, &h.sumw2);
        if dim == 1 {
            data1.values().append_slice(h.data_1d());
            data1.append(true);
            let (u, o) = h.flow_1d();
            under.append_value(u);
            over.append_value(o);
        } else {
            let y = h.y.as_ref();
            y_min.append_value(y.map_or(0.0, |a| a.low_edge(1)));
            y_max.append_value(y.map_or(0.0, |a| a.low_edge(a.nbins + 1)));
            y_bin.append_value(y.map_or(0, |a| a.nbins as i32));
            opt_list(&mut y_edges, y.map_or(&[], |a| &a.edges));
            for row in h.data_2d() {
                data2.values().values().append_slice(row);
                data2.values().append(true);
            }
            data2.append(true);
        }
    }
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(dataset_id.finish()),
        Arc::new(dataset_col.finish()),
        Arc::new(file_id.finish()),
        Arc::new(ls.finish()),
        Arc::new(me_id.finish()),
        Arc::new(me.finish()),
        Arc::new(kind.finish()),
        Arc::new(flags.finish()),
        Arc::new(x_min.finish()),
        Arc::new(x_max.finish()),
        Arc::new(x_bin.finish()),
    ];
    let schema = if dim == 1 {
        cols.extend([
            Arc::new(entries.finish()) as ArrayRef,
            Arc::new(data1.finish()),
            Arc::new(under.finish()),
            Arc::new(over.finish()),
            Arc::new(x_edges.finish()),
            Arc::new(sumw2.finish()),
            Arc::new(seq.finish()),
        ]);
        th1_schema()
    } else {
        cols.extend([
            Arc::new(y_min.finish()) as ArrayRef,
            Arc::new(y_max.finish()),
            Arc::new(y_bin.finish()),
            Arc::new(entries.finish()),
            Arc::new(data2.finish()),
            Arc::new(x_edges.finish()),
            Arc::new(y_edges.finish()),
            Arc::new(sumw2.finish()),
            Arc::new(seq.finish()),
        ]);
        th2_schema()
    };
    // Builders produce nullable list items; the schema declares the same, so this only checks lengths.
    RecordBatch::try_new(schema, cols)
}

/// Schema of `lumisection_index` (one row per lumisection of a file).
pub fn lumisection_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("dataset_id", DataType::Int64, false),
        Field::new("file_id", DataType::Int64, false),
        Field::new("run_number", DataType::Int64, false),
        Field::new("ls_number", DataType::Int64, false),
        Field::new("th1_count", DataType::Int64, false),
        Field::new("th2_count", DataType::Int64, false),
    ]))
}

/// Schema of `me_index` (one row per ME of a file).
pub fn me_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("me_id", DataType::Int64, false),
        Field::new("me", DataType::Utf8, false),
        Field::new("dim", DataType::Int64, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("count", DataType::Int64, false),
        Field::new("file_id", DataType::Int64, false),
    ]))
}

/// Schema of `dataset_index`.
pub fn dataset_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("dataset_id", DataType::Int64, false),
        Field::new("dataset", DataType::Utf8, false),
        Field::new("era", DataType::Utf8, false),
        Field::new("data_tier", DataType::Utf8, false),
        Field::new("primary_ds_name", DataType::Utf8, false),
        Field::new("processed_ds_name", DataType::Utf8, false),
        Field::new("processing_version", DataType::Int64, false),
        Field::new("last_modification_date", DataType::Utf8, false),
    ]))
}

/// Schema of `file_index` (one row per file; `objects` lists what its ingest wrote).
pub fn file_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("dataset_id", DataType::Int64, false),
        Field::new("dataset", DataType::Utf8, false),
        Field::new("file_id", DataType::Int64, false),
        Field::new("file_size", DataType::Int64, false),
        Field::new("creation_date", DataType::Utf8, false),
        Field::new("last_modification_date", DataType::Utf8, false),
        Field::new("logical_file_name", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("err_trace", DataType::Utf8, true),
        Field::new("objects", list_of(DataType::Utf8), false),
    ]))
}

/// What `file_index` records about one file.
#[derive(Debug, Clone, Copy)]
pub struct FileRecord<'a> {
    /// Dataset id (0 when unknown).
    pub dataset_id: i64,
    /// Dataset name (empty when unknown).
    pub dataset: &'a str,
    /// File id.
    pub file_id: i64,
    /// Size in bytes.
    pub file_size: u64,
    /// Logical file name.
    pub logical_file_name: &'a str,
    /// Status (`STARTED`, `FINISHED`, or an error status).
    pub status: &'a str,
    /// Error text.
    pub err_trace: Option<&'a str>,
    /// Lake keys this ingest wrote (or, while `STARTED`, what the previous one wrote).
    pub objects: &'a [String],
}

/// The one-row `file_index` batch of a file.
pub fn file_batch(r: &FileRecord<'_>) -> Result<RecordBatch, arrow::error::ArrowError> {
    let now = now_rfc3339();
    let s = |v: &str| Arc::new(StringBuilder::new().tap_one(v)) as ArrayRef;
    let i = |v: i64| Arc::new(arrow::array::Int64Array::from(vec![v])) as ArrayRef;
    let mut e = StringBuilder::new();
    e.append_option(r.err_trace);
    let mut objs = ListBuilder::new(StringBuilder::new());
    for o in r.objects {
        objs.values().append_value(o);
    }
    objs.append(true);
    RecordBatch::try_new(
        file_schema(),
        vec![
            i(r.dataset_id),
            s(r.dataset),
            i(r.file_id),
            i(r.file_size as i64),
            s(&now),
            s(&now),
            s(r.logical_file_name),
            s(r.status),
            Arc::new(e.finish()),
            Arc::new(objs.finish()),
        ],
    )
}

trait TapOne {
    fn tap_one(self, v: &str) -> arrow::array::StringArray;
}

impl TapOne for StringBuilder {
    fn tap_one(mut self, v: &str) -> arrow::array::StringArray {
        self.append_value(v);
        self.finish()
    }
}

/// Current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's days_from_civil inverse).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, (rem / 60) % 60, rem % 60)
}
