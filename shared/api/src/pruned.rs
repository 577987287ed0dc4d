//! Object pruning by the Delta log's per-object statistics, before DataFusion plans a scan.
//!
//! A run's partition collects one object per DQMIO file (PromptReco: ~100 per run) until it is
//! compacted, and an unpartitioned index table one per file. `ListingTable` prunes by partition
//! value only and would open every remaining object. [`PrunedTable`] wraps it: for a scan with
//! filters it evaluates them (DataFusion's `PruningPredicate`, the same logic it applies to row
//! groups) against each object's min/max of `run_number`, `ls_number`, `me_id`, `file_id` and
//! `dataset_id` as the Delta `Add`s record them, and lets the listing table see only the objects
//! that can hold matching rows (`DeltaFiles::scoped`). Objects without statistics are kept.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Int64Array, UInt64Array};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::{Column, DFSchema, Result, ScalarValue};
use datafusion::datasource::listing::ListingTable;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use datafusion::physical_plan::ExecutionPlan;
use object_store::path::Path;

use crate::delta_files::{Bounds, DeltaFiles, PRUNE_COLUMNS};

/// A lake table: a listing table whose objects are pruned by their Delta statistics per scan.
#[derive(Debug)]
pub struct PrunedTable {
    inner: Arc<ListingTable>,
    files: Arc<DeltaFiles>,
    /// The table's key in `files`.
    key: Path,
}

impl PrunedTable {
    /// Wraps `inner`, whose objects `files` lists under `key`.
    pub fn new(inner: Arc<ListingTable>, files: Arc<DeltaFiles>, key: Path) -> Self {
        PrunedTable { inner, files, key }
    }

    /// The objects the filters can match; `None` when pruning does not apply (no filters on the
    /// pruned columns, or no statistics): the scan then sees every object.
    fn keep(&self, state: &dyn Session, filters: &[Expr]) -> Result<Option<Vec<object_store::ObjectMeta>>> {
        let Some(expr) = conjunction(filters.iter().cloned()) else { return Ok(None) };
        let Some((objects, bounds)) = self.files.with_bounds(&self.key) else { return Ok(None) };
        if objects.len() < 2 {
            return Ok(None);
        }
        let schema = self.inner.schema();
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        let physical = state.create_physical_expr(expr, &df_schema)?;
        let Some(predicate) = PruningPredicateBuilder::new().with_file_schema(schema).build(physical) else { return Ok(None) };
        let keep = predicate.prune(&ObjectBounds(&bounds))?;
        Ok(Some(objects.iter().zip(keep).filter(|(_, k)| *k).map(|(o, _)| o.clone()).collect()))
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

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match self.keep(state, filters)? {
            Some(keep) => DeltaFiles::scoped(self.key.clone(), keep, self.inner.scan(state, projection, filters, limit)).await,
            None => self.inner.scan(state, projection, filters, limit).await,
        }
    }
}

/// The objects' bounds as DataFusion's pruning reads statistics (one container per object).
struct ObjectBounds<'a>(&'a [Bounds]);

impl ObjectBounds<'_> {
    fn column(&self, column: &Column, pick: impl Fn((i64, i64)) -> i64) -> Option<ArrayRef> {
        let i = PRUNE_COLUMNS.iter().position(|c| *c == column.name)?;
        Some(Arc::new(self.0.iter().map(|b| b[i].map(&pick)).collect::<Int64Array>()))
    }
}

impl PruningStatistics for ObjectBounds<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.column(column, |(lo, _)| lo)
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.column(column, |(_, hi)| hi)
    }

    fn num_containers(&self) -> usize {
        self.0.len()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        // The pruned columns are never null in the lake (non-nullable in every schema).
        PRUNE_COLUMNS.contains(&column.name.as_str()).then(|| Arc::new(UInt64Array::from(vec![0u64; self.0.len()])) as ArrayRef)
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        None
    }

    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}
