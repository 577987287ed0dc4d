//! The `ml_scores` table of a workspace (registered with the engine with the other lake tables).

use datafusion::common::TableReference;

use crate::engine::Engine;
use crate::error::ApiError;

/// The quoted name of `ws`'s `ml_scores` table: a Delta table registered with the engine like
/// every lake table (its objects come from its log, `delta_files.rs`; no commit yet = empty).
pub fn scores_table(engine: &Engine, ws: &str) -> Result<String, ApiError> {
    let table = dials_ml::results::TABLE;
    let ctx = engine.session();
    if !ctx.table_exist(TableReference::bare(Engine::name(ws, table).as_str()))? {
        return Err(ApiError::NotFound(format!(
            "workspace '{ws}' has no {table} table"
        )));
    }
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
