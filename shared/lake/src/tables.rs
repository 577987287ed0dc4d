//! Arrow schemas and row builders of the lake tables.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Array, Float64Builder, Int32Array, Int64Array, ListBuilder, RecordBatch,
    StringArray, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use dials_dqmio::{Axis, Histogram, MeKind, MeValue};

/// Columns shared by every data table (DIALS's names). `run_number` is the Hive partition, not a column.
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

/// The data tables: one per family of monitoring-element kinds, each with a per-run twin
/// ([`DataTable::run_name`]) of the same schema (docs/lake.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DataTable {
    /// TH1F/S/D/I.
    Th1,
    /// TH2F/S/D/I.
    Th2,
    /// TH3F.
    Th3,
    /// TProfile.
    Profile1d,
    /// TProfile2D.
    Profile2d,
    /// Int, Float and String elements.
    Scalar,
}

impl DataTable {
    /// Every data table, in the order an ingest commits them.
    pub const ALL: [DataTable; 6] = [
        DataTable::Th1,
        DataTable::Th2,
        DataTable::Th3,
        DataTable::Profile1d,
        DataTable::Profile2d,
        DataTable::Scalar,
    ];

    /// The table's folder name.
    pub fn name(self) -> &'static str {
        match self {
            DataTable::Th1 => "th1",
            DataTable::Th2 => "th2",
            DataTable::Th3 => "th3",
            DataTable::Profile1d => "profile1d",
            DataTable::Profile2d => "profile2d",
            DataTable::Scalar => "scalar",
        }
    }

    /// The table of a folder name.
    pub fn from_name(name: &str) -> Option<DataTable> {
        DataTable::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The table that keeps elements of `kind`.
    pub fn of(kind: MeKind) -> DataTable {
        match kind {
            MeKind::Int | MeKind::Float | MeKind::String => DataTable::Scalar,
            MeKind::TProfile => DataTable::Profile1d,
            MeKind::TProfile2D => DataTable::Profile2d,
            MeKind::TH3F => DataTable::Th3,
            k if k.dim() == 2 => DataTable::Th2,
            _ => DataTable::Th1,
        }
    }

    /// The folder name of the table's per-run twin (`th1_run`, ...): the elements a file stores
    /// once per run (lumisection 0 in DQMIO), with `ls_number` 0. Kept apart so that the
    /// per-lumisection tables keep DIALS's meaning for every reader of them.
    pub fn run_name(self) -> &'static str {
        match self {
            DataTable::Th1 => "th1_run",
            DataTable::Th2 => "th2_run",
            DataTable::Th3 => "th3_run",
            DataTable::Profile1d => "profile1d_run",
            DataTable::Profile2d => "profile2d_run",
            DataTable::Scalar => "scalar_run",
        }
    }

    /// The folder name of the per-lumisection table or (`per_run`) of its per-run twin.
    pub fn name_for(self, per_run: bool) -> &'static str {
        if per_run {
            self.run_name()
        } else {
            self.name()
        }
    }

    /// The table (and whether it is the per-run twin) of a folder name.
    pub fn parse(name: &str) -> Option<(DataTable, bool)> {
        DataTable::ALL.into_iter().find_map(|t| {
            if t.name() == name {
                Some((t, false))
            } else if t.run_name() == name {
                Some((t, true))
            } else {
                None
            }
        })
    }

    /// Every data table's folder name: the six per-lumisection tables, then their per-run twins.
    pub fn all_names() -> impl Iterator<Item = &'static str> {
        DataTable::ALL
            .into_iter()
            .map(DataTable::name)
            .chain(DataTable::ALL.into_iter().map(DataTable::run_name))
    }

    /// Position in [`DataTable::ALL`] (index of the per-table counters).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Histogram dimension of the table's rows (0 for scalars).
    pub fn dim(self) -> u8 {
        match self {
            DataTable::Th1 | DataTable::Profile1d => 1,
            DataTable::Th2 | DataTable::Profile2d => 2,
            DataTable::Th3 => 3,
            DataTable::Scalar => 0,
        }
    }

    /// The Arrow schema of the table's files (`run_number` is the Hive partition, not a column).
    pub fn schema(self) -> SchemaRef {
        match self {
            DataTable::Th1 => th1_schema(),
            DataTable::Th2 => th2_schema(),
            DataTable::Th3 => th3_schema(),
            DataTable::Profile1d => profile1d_schema(),
            DataTable::Profile2d => profile2d_schema(),
            DataTable::Scalar => scalar_schema(),
        }
    }
}

fn axis_fields(axes: &[&str]) -> Vec<Field> {
    let mut f = Vec::new();
    for a in axes {
        f.push(Field::new(format!("{a}_min"), DataType::Float64, false));
        f.push(Field::new(format!("{a}_max"), DataType::Float64, false));
        f.push(Field::new(format!("{a}_bin"), DataType::Int32, false));
    }
    f
}

fn nullable_lists(names: &[&str], item: DataType) -> Vec<Field> {
    names
        .iter()
        .map(|n| Field::new(*n, list_of(item.clone()), true))
        .collect()
}

/// Bin labels of an axis: one item per bin (bin 1 first), null for a bin without a label; the
/// column is null when the axis has no labels. Appended last (lakes written before they existed
/// read them as null).
fn label_fields(axes: &[&str]) -> Vec<Field> {
    axes.iter()
        .map(|a| Field::new(format!("{a}_labels"), list_of(DataType::Utf8), true))
        .collect()
}

/// Schema of `th1` (TH1F/S/D/I).
pub fn th1_schema() -> SchemaRef {
    let mut f = key_fields();
    f.extend(axis_fields(&["x"]));
    f.extend([
        Field::new("entries", DataType::Int64, false),
        Field::new("data", list_of(DataType::Float64), false),
        Field::new("underflow", DataType::Float64, false),
        Field::new("overflow", DataType::Float64, false),
    ]);
    f.extend(nullable_lists(&["x_edges", "sumw2"], DataType::Float64));
    f.push(seq_field());
    f.extend(label_fields(&["x"]));
    Arc::new(Schema::new(f))
}

/// Schema of `th2` (TH2F/S/D/I); `data` is rows `data[y][x]`.
pub fn th2_schema() -> SchemaRef {
    let mut f = key_fields();
    f.extend(axis_fields(&["x", "y"]));
    f.extend([
        Field::new("entries", DataType::Int64, false),
        Field::new("data", list_of(list_of(DataType::Float64)), false),
    ]);
    f.extend(nullable_lists(
        &["x_edges", "y_edges", "sumw2"],
        DataType::Float64,
    ));
    f.push(seq_field());
    f.extend(label_fields(&["x", "y"]));
    Arc::new(Schema::new(f))
}

/// Schema of `th3` (TH3F); `data` is `data[z][y][x]`.
pub fn th3_schema() -> SchemaRef {
    let mut f = key_fields();
    f.extend(axis_fields(&["x", "y", "z"]));
    f.extend([
        Field::new("entries", DataType::Int64, false),
        Field::new("data", list_of(list_of(list_of(DataType::Float64))), false),
    ]);
    f.extend(nullable_lists(
        &["x_edges", "y_edges", "z_edges", "sumw2"],
        DataType::Float64,
    ));
    f.push(seq_field());
    f.extend(label_fields(&["x", "y", "z"]));
    Arc::new(Schema::new(f))
}

/// Schema of `profile1d` (TProfile): `data` is what ROOT's `GetBinContent` reports (the bin mean,
/// 0 for an empty bin); `bin_entries` (`GetBinEntries`) and `bin_sums` (the stored sum of weight ×
/// value) are the full arrays, flow bins included, as `sumw2` (sum of weight × value²).
pub fn profile1d_schema() -> SchemaRef {
    let mut f = key_fields();
    f.extend(axis_fields(&["x"]));
    f.extend([
        Field::new("entries", DataType::Int64, false),
        Field::new("data", list_of(DataType::Float64), false),
        Field::new("underflow", DataType::Float64, false),
        Field::new("overflow", DataType::Float64, false),
    ]);
    f.extend(nullable_lists(
        &["x_edges", "bin_entries", "bin_sums", "sumw2"],
        DataType::Float64,
    ));
    f.push(seq_field());
    f.extend(label_fields(&["x"]));
    Arc::new(Schema::new(f))
}

/// Schema of `profile2d` (TProfile2D): as `profile1d`, `data` rows `data[y][x]`.
pub fn profile2d_schema() -> SchemaRef {
    let mut f = key_fields();
    f.extend(axis_fields(&["x", "y"]));
    f.extend([
        Field::new("entries", DataType::Int64, false),
        Field::new("data", list_of(list_of(DataType::Float64)), false),
    ]);
    f.extend(nullable_lists(
        &["x_edges", "y_edges", "bin_entries", "bin_sums", "sumw2"],
        DataType::Float64,
    ));
    f.push(seq_field());
    f.extend(label_fields(&["x", "y"]));
    Arc::new(Schema::new(f))
}

/// Schema of `scalar` (Int, Float and String elements): the one value column of the row's kind
/// is set, the others are null.
pub fn scalar_schema() -> SchemaRef {
    let mut f = key_fields();
    f.extend([
        Field::new("value_int", DataType::Int64, true),
        Field::new("value_float", DataType::Float64, true),
        Field::new("value_string", DataType::Utf8, true),
    ]);
    f.push(seq_field());
    Arc::new(Schema::new(f))
}

/// One monitoring-element row before it is columnised.
#[derive(Debug, Clone)]
pub struct MeRow {
    /// Dataset id.
    pub dataset_id: i64,
    /// File id.
    pub file_id: i64,
    /// Lumisection (0: a per-run element).
    pub ls_number: i64,
    /// ME id.
    pub me_id: i64,
    /// Position among the kept rows of this lumisection and table family in the file ([`SEQ`]).
    pub seq: i64,
    /// ME name.
    pub me: String,
    /// Kind.
    pub kind: MeKind,
    /// DQM flags.
    pub flags: u32,
    /// The value (a histogram or a scalar).
    pub value: MeValue,
}

impl MeRow {
    fn hist(&self) -> Option<&Histogram> {
        match &self.value {
            MeValue::Hist(h) => Some(h),
            _ => None,
        }
    }
}

fn axis_of(h: &Histogram, axis: u8) -> Option<&Axis> {
    match axis {
        b'x' => Some(&h.x),
        b'y' => h.y.as_ref(),
        _ => h.z.as_ref(),
    }
}

fn f64_col(rows: &[MeRow], f: impl Fn(&MeRow) -> f64) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values(rows.iter().map(f)))
}

fn i64_col(rows: &[MeRow], f: impl Fn(&MeRow) -> i64) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(rows.iter().map(f)))
}

fn opt_list_col(rows: &[MeRow], f: impl Fn(&Histogram) -> &[f64]) -> ArrayRef {
    let mut b = ListBuilder::new(Float64Builder::new());
    for r in rows {
        opt_list(&mut b, r.hist().map_or(&[], &f));
    }
    Arc::new(b.finish())
}

fn labels_col(rows: &[MeRow], axis: u8) -> ArrayRef {
    let mut b = ListBuilder::new(StringBuilder::new());
    for r in rows {
        match r
            .hist()
            .and_then(|h| axis_of(h, axis))
            .filter(|a| !a.labels.is_empty())
        {
            None => b.append_null(),
            Some(a) => {
                let mut by_bin: Vec<Option<&str>> = vec![None; a.nbins];
                for (bin, label) in &a.labels {
                    match usize::try_from(*bin)
                        .ok()
                        .and_then(|i| i.checked_sub(1))
                        .and_then(|i| by_bin.get_mut(i))
                    {
                        Some(slot) => *slot = Some(label),
                        None => {
                            tracing::debug!(me = %r.me, bin, "bin label outside the axis; not kept")
                        }
                    }
                }
                for l in by_bin {
                    b.values().append_option(l);
                }
                b.append(true);
            }
        }
    }
    Arc::new(b.finish())
}

fn data_col(rows: &[MeRow], dim: u8) -> ArrayRef {
    match dim {
        1 => {
            let mut b = ListBuilder::new(Float64Builder::new());
            for r in rows {
                b.values()
                    .append_slice(r.hist().map_or(&[], |h| h.data_1d()));
                b.append(true);
            }
            Arc::new(b.finish())
        }
        2 => {
            let mut b = ListBuilder::new(ListBuilder::new(Float64Builder::new()));
            for r in rows {
                for row in r.hist().map(|h| h.data_2d()).unwrap_or_default() {
                    b.values().values().append_slice(row);
                    b.values().append(true);
                }
                b.append(true);
            }
            Arc::new(b.finish())
        }
        _ => {
            let mut b = ListBuilder::new(ListBuilder::new(ListBuilder::new(Float64Builder::new())));
            for r in rows {
                for plane in r.hist().map(|h| h.data_3d()).unwrap_or_default() {
                    for row in plane {
                        b.values().values().values().append_slice(row);
                        b.values().values().append(true);
                    }
                    b.values().append(true);
                }
                b.append(true);
            }
            Arc::new(b.finish())
        }
    }
}

/// One column of a data table, by name.
fn column(
    name: &str,
    table: DataTable,
    dataset: &str,
    rows: &[MeRow],
) -> Result<ArrayRef, arrow::error::ArrowError> {
    let n = rows.len();
    let axis_num = |r: &MeRow, axis: u8, what: u8| -> f64 {
        let Some(a) = r.hist().and_then(|h| axis_of(h, axis)) else {
            return 0.0;
        };
        match what {
            b'n' => a.low_edge(1),
            _ => a.low_edge(a.nbins + 1),
        }
    };
    Ok(match name {
        "dataset_id" => i64_col(rows, |r| r.dataset_id),
        "dataset" => {
            let mut b = StringBuilder::with_capacity(n, n * dataset.len());
            (0..n).for_each(|_| b.append_value(dataset));
            Arc::new(b.finish())
        }
        "file_id" => i64_col(rows, |r| r.file_id),
        "ls_number" => i64_col(rows, |r| r.ls_number),
        "me_id" => i64_col(rows, |r| r.me_id),
        "seq" => i64_col(rows, |r| r.seq),
        "flags" => i64_col(rows, |r| i64::from(r.flags)),
        "me" => Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.me.as_str()),
        )),
        "kind" => Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.kind.as_str()),
        )),
        "x_min" | "y_min" | "z_min" => f64_col(rows, |r| axis_num(r, name.as_bytes()[0], b'n')),
        "x_max" | "y_max" | "z_max" => f64_col(rows, |r| axis_num(r, name.as_bytes()[0], b'x')),
        "x_bin" | "y_bin" | "z_bin" => {
            let axis = name.as_bytes()[0];
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| {
                r.hist()
                    .and_then(|h| axis_of(h, axis))
                    .map_or(0, |a| a.nbins as i32)
            })))
        }
        "entries" => i64_col(rows, |r| r.hist().map_or(0, |h| h.entries as i64)),
        "data" => data_col(rows, table.dim()),
        "underflow" => f64_col(rows, |r| r.hist().map_or(0.0, |h| h.flow_1d().0)),
        "overflow" => f64_col(rows, |r| r.hist().map_or(0.0, |h| h.flow_1d().1)),
        "x_edges" | "y_edges" | "z_edges" => {
            let axis = name.as_bytes()[0];
            opt_list_col(rows, |h| axis_of(h, axis).map_or(&[], |a| &a.edges))
        }
        "sumw2" => opt_list_col(rows, |h| &h.sumw2),
        "bin_entries" => opt_list_col(rows, |h| &h.bin_entries),
        "bin_sums" => opt_list_col(rows, |h| &h.bin_sums),
        "x_labels" | "y_labels" | "z_labels" => labels_col(rows, name.as_bytes()[0]),
        "value_int" => Arc::new(Int64Array::from_iter(rows.iter().map(|r| match r.value {
            MeValue::Int(v) => Some(v),
            _ => None,
        }))),
        "value_float" => Arc::new(Float64Array::from_iter(rows.iter().map(
            |r| match r.value {
                MeValue::Float(v) => Some(v),
                _ => None,
            },
        ))),
        "value_string" => Arc::new(StringArray::from_iter(rows.iter().map(
            |r| match &r.value {
                MeValue::String(v) => Some(v.as_str()),
                _ => None,
            },
        ))),
        other => {
            return Err(arrow::error::ArrowError::SchemaError(format!(
                "no builder for column {other} of {}",
                table.name()
            )))
        }
    })
}

fn opt_list(b: &mut ListBuilder<Float64Builder>, v: &[f64]) {
    if v.is_empty() {
        b.append_null();
    } else {
        b.values().append_slice(v);
        b.append(true);
    }
}

/// Builds one batch of `table` from rows (all of that table).
pub fn rows_batch(
    table: DataTable,
    dataset: &str,
    rows: &[MeRow],
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let schema = table.schema();
    let cols = schema
        .fields()
        .iter()
        .map(|f| column(f.name(), table, dataset, rows))
        .collect::<Result<Vec<_>, _>>()?;
    // Builders produce nullable list items; the schema declares the same, so this only checks lengths.
    RecordBatch::try_new(schema, cols)
}

/// Schema of `lumisection_index` (one row per lumisection of a file; `ls_number` 0 counts the
/// file's per-run elements of a run).
pub fn lumisection_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("dataset_id", DataType::Int64, false),
        Field::new("file_id", DataType::Int64, false),
        Field::new("run_number", DataType::Int64, false),
        Field::new("ls_number", DataType::Int64, false),
        Field::new("th1_count", DataType::Int64, false),
        Field::new("th2_count", DataType::Int64, false),
        // Counts of the other tables (nullable: lakes written before them read null).
        Field::new("th3_count", DataType::Int64, true),
        Field::new("profile1d_count", DataType::Int64, true),
        Field::new("profile2d_count", DataType::Int64, true),
        Field::new("scalar_count", DataType::Int64, true),
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
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}
