//! Object pruning by the Delta log's per-object statistics, before DataFusion plans a scan.
//!
//! A run's partition collects one object per DQMIO file (PromptReco: ~100 per run) until it is
//! compacted, and an unpartitioned index table one per file. `ListingTable` prunes by partition
//! value only and would open every remaining object. [`PrunedTable`] wraps it: for a scan with
//! filters it evaluates them (DataFusion's `PruningPredicate`, the same logic it applies to row
//! groups) against each object's min/max of `run_number`, `ls_number`, `me_id`, `file_id` and
//! `dataset_id` as the Delta `Add`s record them, and lets the listing table see only the objects
//! that can hold matching rows (`DeltaFiles::scoped`). Objects without statistics are kept.
//!
//! `th1` and `th2` also have an ME-major copy (`dials_lake::me_major`): a scan whose filters pin
//! `me_id` (equality or `IN` list) but not `ls_number` reads, for each run whose copy covers
//! exactly the run's objects in the snapshot this scan holds, the copy (where the ME's rows are a
//! few contiguous pages) and for the other runs the table itself, the two scans in one union.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Int64Array, StringArray, UInt64Array};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::{Column, DFSchema, Result, ScalarValue};
use datafusion::datasource::listing::ListingTable;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_optimizer::pruning::{PruningPredicate, PruningPredicateBuilder};
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::ExecutionPlan;
use object_store::path::Path;
use object_store::ObjectMeta;

use crate::delta_files::{Bounds, DeltaFiles, TextBounds, PRUNE_COLUMNS, TEXT_PRUNE_COLUMNS};

/// Scans that read an ME-major copy (for tests and traces: whether the copy is used).
static COPY_SCANS: AtomicU64 = AtomicU64::new(0);

/// How many scans of this process read an ME-major copy so far.
pub fn copy_scans() -> u64 {
    COPY_SCANS.load(Ordering::Relaxed)
}

/// A lake table: a listing table whose objects are pruned by their Delta statistics per scan.
#[derive(Debug)]
pub struct PrunedTable {
    inner: Arc<ListingTable>,
    files: Arc<DeltaFiles>,
    /// The table's key in `files`.
    key: Path,
    /// The table's ME-major copy (same schema and partitioning) and its key in `files`.
    copy: Option<(Arc<ListingTable>, Path)>,
}

impl PrunedTable {
    /// Wraps `inner`, whose objects `files` lists under `key`.
    pub fn new(inner: Arc<ListingTable>, files: Arc<DeltaFiles>, key: Path) -> Self {
        PrunedTable {
            inner,
            files,
            key,
            copy: None,
        }
    }

    /// With the table's ME-major copy `copy`, whose objects `files` lists under `key`.
    pub fn with_copy(mut self, copy: Arc<ListingTable>, key: Path) -> Self {
        self.copy = Some((copy, key));
        self
    }

    /// The pruning predicate of the filters; `None` when they prune nothing.
    fn predicate(
        &self,
        state: &dyn Session,
        filters: &[Expr],
    ) -> Result<Option<Arc<PruningPredicate>>> {
        let Some(expr) = conjunction(filters.iter().cloned()) else {
            return Ok(None);
        };
        let schema = self.inner.schema();
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        let physical = state.create_physical_expr(expr, &df_schema)?;
        Ok(PruningPredicateBuilder::new()
            .with_file_schema(schema)
            .build(physical))
    }

    /// A scan reading the ME-major copy for the runs whose copy is current, the table for the
    /// others; `None` when no run has a current copy (or no copy applies).
    async fn scan_with_copy(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some((copy, copy_key)) = &self.copy else {
            return Ok(None);
        };
        if !pins(filters, "me_id") || pins(filters, "ls_number") {
            return Ok(None);
        }
        let Some(((objects, bounds), digests)) = self.files.with_runs(&self.key) else {
            return Ok(None);
        };
        let Some(((copies, copy_bounds), covers)) = self.files.with_runs(copy_key) else {
            return Ok(None);
        };
        let current: HashSet<i64> = covers
            .iter()
            .filter(|(run, c)| digests.get(run) == Some(*c))
            .map(|(run, _)| *run)
            .collect();
        if current.is_empty() {
            return Ok(None);
        }
        let predicate = self.predicate(state, filters)?;
        let run = |b: &Bounds| b[0].filter(|(lo, hi)| lo == hi).map(|(r, _)| r);
        let pick = |objects: &[ObjectMeta],
                    bounds: &[Bounds],
                    from_copy: bool|
         -> Result<Vec<ObjectMeta>> {
            let keep = match &predicate {
                Some(p) => p.prune(&ObjectBounds(bounds, &[]))?,
                None => vec![true; objects.len()],
            };
            Ok(objects
                .iter()
                .zip(bounds)
                .zip(keep)
                .filter(|((_, b), k)| {
                    *k && run(b).is_some_and(|r| current.contains(&r)) == from_copy
                })
                .map(|((o, _), _)| o.clone())
                .collect())
        };
        let main_keep = pick(&objects, &bounds, false)?;
        let copy_keep = pick(&copies, &copy_bounds, true)?;
        let mut plans = Vec::new();
        if !copy_keep.is_empty() {
            COPY_SCANS.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(table = %self.key, copies = copy_keep.len(), objects = main_keep.len(), "scan reads the ME-major copy");
            plans.push(
                DeltaFiles::scoped(
                    copy_key.clone(),
                    copy_keep,
                    copy.scan(state, projection, filters, limit),
                )
                .await?,
            );
        }
        if !main_keep.is_empty() || plans.is_empty() {
            plans.push(
                DeltaFiles::scoped(
                    self.key.clone(),
                    main_keep,
                    self.inner.scan(state, projection, filters, limit),
                )
                .await?,
            );
        }
        UnionExec::try_new(plans).map(Some)
    }

    /// The objects the filters can match; `None` when pruning does not apply (no filters on the
    /// pruned columns, or no statistics): the scan then sees every object.
    fn keep(
        &self,
        state: &dyn Session,
        filters: &[Expr],
    ) -> Result<Option<Vec<object_store::ObjectMeta>>> {
        if filters.is_empty() {
            return Ok(None);
        }
        let Some(((objects, bounds), texts)) = self.files.with_text_bounds(&self.key) else {
            return Ok(None);
        };
        if objects.len() < 2 {
            return Ok(None);
        }
        let Some(predicate) = self.predicate(state, filters)? else {
            return Ok(None);
        };
        let keep = predicate.prune(&ObjectBounds(&bounds, &texts))?;
        Ok(Some(
            objects
                .iter()
                .zip(keep)
                .filter(|(_, k)| *k)
                .map(|(o, _)| o.clone())
                .collect(),
        ))
    }
}

#[async_trait]
impl TableProvider for PrunedTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if let Some(plan) = self
            .scan_with_copy(state, projection, filters, limit)
            .await?
        {
            return Ok(plan);
        }
        match self.keep(state, filters)? {
            Some(keep) => {
                DeltaFiles::scoped(
                    self.key.clone(),
                    keep,
                    self.inner.scan(state, projection, filters, limit),
                )
                .await
            }
            None => self.inner.scan(state, projection, filters, limit).await,
        }
    }
}

/// True when `filters` pin column `col` to literals: `col = v` or `col IN (v, …)` in one of
/// their conjuncts.
fn pins(filters: &[Expr], col: &str) -> bool {
    let is_col = |e: &Expr| matches!(e, Expr::Column(c) if c.name == col);
    let is_lit = |e: &Expr| matches!(e, Expr::Literal(..));
    filters.iter().flat_map(split_conjunction).any(|e| match e {
        Expr::BinaryExpr(b) if b.op == Operator::Eq => {
            (is_col(&b.left) && is_lit(&b.right)) || (is_col(&b.right) && is_lit(&b.left))
        }
        Expr::InList(l) => !l.negated && is_col(&l.expr) && l.list.iter().all(is_lit),
        _ => false,
    })
}

/// The objects' bounds as DataFusion's pruning reads statistics (one container per object): the
/// integer columns', and the string columns' when known (empty otherwise).
struct ObjectBounds<'a>(&'a [Bounds], &'a [TextBounds]);

impl ObjectBounds<'_> {
    fn column(&self, column: &Column, max: bool) -> Option<ArrayRef> {
        if let Some(i) = PRUNE_COLUMNS.iter().position(|c| *c == column.name) {
            return Some(Arc::new(
                self.0
                    .iter()
                    .map(|b| b[i].map(|(lo, hi)| if max { hi } else { lo }))
                    .collect::<Int64Array>(),
            ));
        }
        let i = TEXT_PRUNE_COLUMNS.iter().position(|c| *c == column.name)?;
        if self.1.len() != self.0.len() {
            return None;
        }
        Some(Arc::new(
            self.1
                .iter()
                .map(|b| {
                    b[i].as_ref()
                        .map(|(lo, hi)| if max { hi.as_str() } else { lo.as_str() })
                })
                .collect::<StringArray>(),
        ))
    }
}

impl PruningStatistics for ObjectBounds<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.column(column, false)
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.column(column, true)
    }

    fn num_containers(&self) -> usize {
        self.0.len()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        // The pruned columns are never null in the lake (non-nullable in every schema).
        PRUNE_COLUMNS
            .contains(&column.name.as_str())
            .then(|| Arc::new(UInt64Array::from(vec![0u64; self.0.len()])) as ArrayRef)
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        None
    }

    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}
