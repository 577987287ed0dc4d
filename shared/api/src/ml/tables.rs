//! The `ml_scores` table of a workspace, registered with the engine on first use.

use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::TableReference;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};

use crate::engine::Engine;
use crate::error::ApiError;

/// The quoted name of `ws`'s `ml_scores` table, registering it first if needed (an empty or
/// missing folder is an empty table).
pub fn scores_table(engine: &Engine, ws: &str) -> Result<String, ApiError> {
    let table = dials_ml::results::TABLE;
    let name = Engine::name(ws, table);
    let ctx = engine.session();
    if ctx.table_exist(TableReference::bare(name.as_str()))? {
        return Ok(engine.table(ws, table));
    }
    let lake = &engine.lake;
    let root = lake.url.trim_end_matches('/');
    let base = if root.starts_with("s3://") {
        root.to_string()
    } else {
        // A listing of a missing folder fails; an empty one is an empty table.
        let _ = std::fs::create_dir_all(format!("{root}/{ws}/{table}"));
        format!("file://{root}")
    };
    let url = ListingTableUrl::parse(format!("{base}/{ws}/{table}/"))?;
    let opts = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(vec![("run_number".to_string(), DataType::Int64)]);
    let cfg = ListingTableConfig::new(url).with_listing_options(opts).with_schema(dials_ml::results::schema());
    ctx.register_table(TableReference::bare(name.as_str()), Arc::new(ListingTable::try_new(cfg)?))?;
    Ok(engine.table(ws, table))
}

/// `(id, id, ...)` of the files whose ingestion FINISHED in `ws` (our own integers, never user input).
pub async fn finished(engine: &Engine, ws: &str) -> Result<String, ApiError> {
    let ids = engine.finished_files(ws).await?;
    if ids.is_empty() {
        return Ok("(NULL)".to_string());
    }
    let parts: Vec<String> = ids.iter().map(i64::to_string).collect();
    Ok(format!("({})", parts.join(", ")))
}
