//! `dials migrate`: a lake written before the Delta format (plain Hive-partitioned Parquet) becomes
//! Delta tables in place; see `dials_lake::delta::migrate`.

use dials_lake::Location;
use object_store::ObjectStore;

use crate::CliError;

/// Migrates `lake`'s workspaces (those of `workspaces` if given, else every top-level folder that
/// has a `file_index/`) and prints one JSON line per table.
pub fn run(lake: &str, workspaces: Option<&str>) -> Result<(), CliError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Output)?;
    rt.block_on(async move {
        let loc = Location::parse(lake, false).map_err(|e| CliError::Usage(e.to_string()))?;
        let names = workspace_names(&loc, lake, workspaces).await?;
        let done = dials_lake::delta::migrate(&loc, &names)
            .await
            .map_err(|e| CliError::Usage(format!("{lake}: {e}")))?;
        for t in done {
            crate::emit(&format!(
                "{}\n",
                serde_json::to_string(&t).unwrap_or_default()
            ))?;
        }
        Ok(())
    })
}

/// The workspaces of `lake`: those of the `workspaces` config if given, else every top-level folder
/// that has a `file_index/`. None found is a usage error.
pub(crate) async fn workspace_names(
    loc: &Location,
    lake: &str,
    workspaces: Option<&str>,
) -> Result<Vec<String>, CliError> {
    let names: Vec<String> = match workspaces {
        Some(spec) => dials_lake::config::load(spec)
            .await
            .map_err(|e| CliError::Usage(e.to_string()))?
            .workspaces
            .iter()
            .map(|w| w.name.clone())
            .collect(),
        None => {
            let top = loc
                .store
                .list_with_delimiter(Some(&loc.path))
                .await
                .map_err(|e| CliError::Usage(format!("{lake}: {e}")))?;
            let mut names = Vec::new();
            for dir in top.common_prefixes {
                let Some(name) = dir.filename().map(str::to_string) else {
                    continue;
                };
                let inner = loc
                    .store
                    .list_with_delimiter(Some(&dir))
                    .await
                    .map_err(|e| CliError::Usage(format!("{lake}: {e}")))?;
                if inner
                    .common_prefixes
                    .iter()
                    .any(|p| p.filename() == Some("file_index"))
                {
                    names.push(name);
                }
            }
            names
        }
    };
    if names.is_empty() {
        return Err(CliError::Usage(format!(
            "{lake}: no workspace folder with a file_index/ found"
        )));
    }
    Ok(names)
}
