//! `dials compact` and `dials vacuum`: merge the small objects of the lake's Delta tables, delete
//! the objects no recent snapshot needs (see `dials_lake::compact`); the ML results table
//! (`ml_scores`) with the lake's tables.

use std::time::Duration;

use dials_lake::compact::{self, CompactOptions};
use dials_lake::Location;

use crate::migrate::workspace_names;
use crate::CliError;

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Output)
}

/// Compacts every table of the workspaces `names` (the ML results table too).
pub async fn compact_all(
    loc: &Location,
    names: &[String],
    opts: CompactOptions,
) -> Result<Vec<compact::TableCompaction>, CliError> {
    let lake = &loc.url;
    let mut done = compact::compact_lake(loc, names, opts)
        .await
        .map_err(|e| CliError::Usage(format!("{lake}: {e}")))?;
    // The ML results table of each workspace too.
    for ws in names {
        done.push(
            dials_ml::results::compact(loc, ws, opts)
                .await
                .map_err(|e| CliError::Usage(format!("{lake}: {e}")))?,
        );
    }
    Ok(done)
}

/// Vacuums every table of workspace `ws` (the ML results table too).
pub async fn vacuum_all(
    loc: &Location,
    ws: &str,
    retention: Duration,
) -> Result<Vec<compact::TableVacuum>, CliError> {
    let lake = &loc.url;
    let mut done = compact::vacuum(loc, ws, retention)
        .await
        .map_err(|e| CliError::Usage(format!("{lake}: {e}")))?;
    done.extend(
        dials_ml::results::vacuum(loc, ws, retention)
            .await
            .map_err(|e| CliError::Usage(format!("{lake}: {e}")))?,
    );
    Ok(done)
}

/// Compacts every table of the lake's workspaces; one JSON line per table.
pub fn compact(lake: &str, workspaces: Option<&str>, opts: CompactOptions) -> Result<(), CliError> {
    runtime()?.block_on(async move {
        let loc = Location::parse(lake, false).map_err(|e| CliError::Usage(e.to_string()))?;
        let names = workspace_names(&loc, lake, workspaces).await?;
        for t in compact_all(&loc, &names, opts).await? {
            crate::emit(&format!(
                "{}\n",
                serde_json::to_string(&t).unwrap_or_default()
            ))?;
        }
        Ok(())
    })
}

/// Vacuums every table of the lake's workspaces; one JSON line per table.
pub fn vacuum(lake: &str, workspaces: Option<&str>, retention: Duration) -> Result<(), CliError> {
    runtime()?.block_on(async move {
        let loc = Location::parse(lake, false).map_err(|e| CliError::Usage(e.to_string()))?;
        for ws in workspace_names(&loc, lake, workspaces).await? {
            for t in vacuum_all(&loc, &ws, retention).await? {
                crate::emit(&format!(
                    "{}\n",
                    serde_json::to_string(&t).unwrap_or_default()
                ))?;
            }
        }
        Ok(())
    })
}
