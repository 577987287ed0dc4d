//! The query engine: one DataFusion `SessionContext` with every lake table of every workspace
//! registered once (explicit schemas, so empty tables work), queried with parameterised SQL.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::execution::context::SessionContext;
use datafusion::prelude::SessionConfig;
use datafusion::scalar::ScalarValue;
use dials_lake::{tables, Location, Workspaces};

use crate::error::ApiError;

/// Names of the lake tables and their schemas.
pub const TABLES: [&str; 6] = ["th1", "th2", "file_index", "dataset_index", "lumisection_index", "me_index"];

/// Query engine over a lake.
pub struct Engine {
    ctx: SessionContext,
    /// Workspaces served.
    pub workspaces: Workspaces,
}

impl Engine {
    /// Registers every table of every workspace. Cheap: no file is read until a query runs.
    pub async fn new(lake: &Location, workspaces: Workspaces) -> Result<Self, ApiError> {
        let config = SessionConfig::new()
            .with_target_partitions(2)
            .set_bool("datafusion.execution.parquet.pushdown_filters", true)
            .set_bool("datafusion.execution.parquet.reorder_filters", true);
        let ctx = SessionContext::new_with_config(config);
        let base = if lake.url.starts_with("s3://") {
            let bucket = lake.url.trim_start_matches("s3://").split('/').next().unwrap_or_default().to_string();
            let url = url::Url::parse(&format!("s3://{bucket}")).map_err(|e| ApiError::Internal(e.to_string()))?;
            ctx.register_object_store(&url, lake.store.clone());
            lake.url.trim_end_matches('/').to_string()
        } else {
            format!("file://{}", lake.url.trim_end_matches('/'))
        };
        for ws in &workspaces.workspaces {
            for table in TABLES {
                if !base.starts_with("s3://") {
                    // A listing of a missing folder fails; an empty one is an empty table.
                    let dir = format!("{}/{}/{}", lake.url.trim_end_matches('/'), ws.name, table);
                    let _ = std::fs::create_dir_all(&dir);
                }
                let url = ListingTableUrl::parse(format!("{base}/{}/{table}/", ws.name))?;
                let (schema, partitions) = match table {
                    "th1" => (tables::th1_schema(), vec![("run_number".to_string(), DataType::Int64)]),
                    "th2" => (tables::th2_schema(), vec![("run_number".to_string(), DataType::Int64)]),
                    "file_index" => (tables::file_schema(), vec![]),
                    "dataset_index" => (tables::dataset_schema(), vec![]),
                    "lumisection_index" => (tables::lumisection_schema(), vec![]),
                    _ => (tables::me_schema(), vec![]),
                };
                let opts = ListingOptions::new(Arc::new(ParquetFormat::default()))
                    .with_file_extension(".parquet")
                    .with_table_partition_cols(partitions);
                let cfg = ListingTableConfig::new(url).with_listing_options(opts).with_schema(schema);
                ctx.register_table(Self::name(&ws.name, table), Arc::new(ListingTable::try_new(cfg)?))?;
            }
        }
        Ok(Engine { ctx, workspaces })
    }

    /// Registered name of a workspace's table.
    pub fn name(ws: &str, table: &str) -> String {
        format!("{}__{}", ws.replace('-', "_"), table)
    }

    /// Quoted table reference for SQL.
    pub fn table(&self, ws: &str, table: &str) -> String {
        format!("\"{}\"", Self::name(ws, table))
    }

    /// Runs parameterised SQL (`$1`, `$2`, ...).
    pub async fn query(&self, sql: &str, params: Vec<ScalarValue>) -> Result<Vec<RecordBatch>, ApiError> {
        tracing::debug!(sql, ?params, "query");
        let df = self.ctx.sql(sql).await?;
        let df = if params.is_empty() { df } else { df.with_param_values(params)? };
        Ok(df.collect().await?)
    }
}
