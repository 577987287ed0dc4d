//! The query engine: one DataFusion `SessionContext` with every lake table of every workspace
//! registered once (explicit schemas, so empty tables work), queried with parameterised SQL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use datafusion::common::TableReference;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::context::SessionContext;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::SessionConfig;
use datafusion::scalar::ScalarValue;
use dials_lake::{tables, Location, Workspaces};

use crate::delta_files::DeltaFiles;
use crate::error::ApiError;
use crate::guard::GuardedStore;

/// How a query scans its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// Large files split into byte ranges scanned in parallel (DataFusion's default): pays for the
    /// scans of many lumisections (ME × run: 32 → 21 ms).
    Wide,
    /// One range per file, for a query that reads a few rows of one place (one lumisection, one
    /// histogram): splitting would cost it ~0.15–0.2 ms of planning and start-up for nothing (one
    /// lumisection × all MEs 3.41 → 3.19 ms, A/B).
    Point,
}

/// Names of the lake tables (every data table, its per-run twin, the indexes).
pub const TABLES: [&str; 16] = dials_lake::delta::TABLES;

/// How long the tables' Delta snapshots are used before their logs are asked for new commits (one
/// log listing per workspace's `file_index`; the other tables only when one of those moved): new
/// ingests become visible within this time. `DIALS_LISTING_TTL_MS` overrides it. Views and the
/// committed-files lists are recomputed only when a snapshot moved, not on this clock.
const DEFAULT_LISTING_TTL: Duration = Duration::from_millis(250);

/// Query engine over a lake.
pub struct Engine {
    ctx: SessionContext,
    /// Workspaces served.
    pub workspaces: Workspaces,
    /// Per workspace: ids of FINISHED (or not FINISHED) files, and the lake's change count
    /// ([`DeltaFiles::changes`]) they were read at.
    finished: Mutex<HashMap<String, (u64, Arc<Vec<i64>>)>>,
    /// Materialised aggregate views (runs, lumisections) and the change count they were computed at.
    views: Mutex<HashMap<String, u64>>,
    /// Serialises view refreshes so concurrent requests do not recompute the same view.
    refresh: tokio::sync::Mutex<()>,
    /// The store every lake table is read through (quarantines unreadable objects, `guard.rs`).
    guard: Arc<GuardedStore>,
    /// Registered table name → its objects' prefix in `guard`'s key space (for probes).
    prefixes: Vec<(String, object_store::path::Path)>,
    /// Every table's committed objects, from its Delta log.
    files: Arc<DeltaFiles>,
    /// The lake served (the ML registry reads its model documents from it, `ml/`).
    pub lake: Location,
    /// Optimised logical plans by SQL text, placeholders unbound ([`Engine::query_as`]).
    plans: Mutex<HashMap<String, datafusion::logical_expr::LogicalPlan>>,
    /// The session's state and a task context of it, for [`Scan::Wide`] and [`Scan::Point`]
    /// queries: made once, not per query. Both share the session's catalog, so tables and views
    /// registered later are seen.
    states: [(
        datafusion::execution::SessionState,
        Arc<datafusion::execution::TaskContext>,
    ); 2],
}

/// Plans kept in [`Engine`]'s plan cache; it is emptied when full (the API's SQL texts are few:
/// one per resource and filter combination, values bound as parameters).
const PLAN_CACHE_ENTRIES: usize = 1024;

/// The longest SQL text whose plan is cached (the API's own texts are well under it).
const PLAN_CACHE_MAX_SQL: usize = 4096;

/// Failed attempts of one query, each after quarantining newly found unreadable objects.
const MAX_ATTEMPTS: usize = 3;

impl Engine {
    /// Registers every table of every workspace. Cheap: no file is read until a query runs.
    pub async fn new(lake: &Location, workspaces: Workspaces) -> Result<Self, ApiError> {
        // DATAFUSION_* environment variables tune the engine (e.g. DATAFUSION_EXECUTION_TARGET_PARTITIONS);
        // the settings below are ours and win.
        let config = SessionConfig::from_env()?
            .with_target_partitions(2)
            .set_bool("datafusion.execution.parquet.pushdown_filters", true)
            .set_bool("datafusion.execution.parquet.reorder_filters", true);
        let ttl = std::env::var("DIALS_LISTING_TTL_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(DEFAULT_LISTING_TTL, Duration::from_millis);
        let s3 = lake.url.starts_with("s3://");
        let base = if s3 {
            lake.url.trim_end_matches('/').to_string()
        } else {
            format!("file://{}", lake.url.trim_end_matches('/'))
        };
        // Every table's files come from its Delta log (`delta_files.rs`); the list-files cache is
        // where DataFusion's listing tables ask for them.
        let mut urls = Vec::new();
        let mut logs = Vec::new();
        for ws in &workspaces.workspaces {
            for table in TABLES {
                let url = ListingTableUrl::parse(format!("{base}/{}/{table}/", ws.name))?;
                let log = dials_lake::delta::log_store(lake, &[&ws.name, table], None)
                    .map_err(|e| ApiError::Internal(e.to_string()))?;
                logs.push((url.prefix().clone(), log, table == "file_index"));
                urls.push((ws.name.clone(), table, url));
            }
            // The ME-major copies of `th1`/`th2` (written by compaction): sources of their
            // table's scans (`pruned.rs`), not tables of their own.
            for (_, copy) in dials_lake::delta::ME_MAJOR {
                let url = ListingTableUrl::parse(format!("{base}/{}/{copy}/", ws.name))?;
                let log = dials_lake::delta::log_store(lake, &[&ws.name, copy], None)
                    .map_err(|e| ApiError::Internal(e.to_string()))?;
                logs.push((url.prefix().clone(), log, false));
            }
            // The ML results (`ml/`): a Delta table too, followed every interval like a
            // `file_index` (its commits, scoring and backfills, move no `file_index`).
            let table = dials_ml::results::TABLE;
            let url = ListingTableUrl::parse(format!("{base}/{}/{table}/", ws.name))?;
            let log = dials_lake::delta::log_store(lake, &[&ws.name, table], None)
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            logs.push((url.prefix().clone(), log, true));
            urls.push((ws.name.clone(), table, url));
        }
        let (guard, store_url) = if s3 {
            let bucket = lake
                .url
                .trim_start_matches("s3://")
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string();
            let url = url::Url::parse(&format!("s3://{bucket}"))
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            // Warm functions keep the Parquet bytes they read (objects are immutable).
            let store: Arc<dyn object_store::ObjectStore> =
                match crate::cache::CachedStore::budget_from_env() {
                    0 => lake.store.clone(),
                    budget => Arc::new(crate::cache::CachedStore::new(lake.store.clone(), budget)),
                };
            (Arc::new(GuardedStore::new(store)), url)
        } else {
            // DataFusion's own local store, behind the same guard as an S3 lake's.
            let url = url::Url::parse("file://").map_err(|e| ApiError::Internal(e.to_string()))?;
            (
                Arc::new(GuardedStore::new(Arc::new(
                    object_store::local::LocalFileSystem::new(),
                ))),
                url,
            )
        };
        let files = Arc::new(DeltaFiles::new(logs, ttl, guard.clone()));
        // Parquet footers/page indexes are cached and revalidated by size and mtime (objects are
        // never rewritten in place: every ingest attempt names its own).
        let runtime = RuntimeEnvBuilder::new()
            .with_cache_manager(
                CacheManagerConfig::default().with_list_files_cache(Some(files.clone())),
            )
            .build_arc()?;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        ctx.register_object_store(&store_url, guard.clone());
        let mut prefixes = Vec::new();
        for (ws, table, url) in urls {
            let (schema, partitions) = match table {
                "file_index" => (tables::file_schema(), vec![]),
                "dataset_index" => (tables::dataset_schema(), vec![]),
                "lumisection_index" => (tables::lumisection_schema(), vec![]),
                dials_ml::results::TABLE => (
                    dials_ml::results::schema(),
                    vec![("run_number".to_string(), DataType::Int64)],
                ),
                "me_index" => (tables::me_schema(), vec![]),
                data => match tables::DataTable::parse(data) {
                    Some((t, _)) => (
                        t.schema(),
                        vec![("run_number".to_string(), DataType::Int64)],
                    ),
                    None => {
                        return Err(ApiError::Internal(format!(
                            "no schema for lake table {data}"
                        )))
                    }
                },
            };
            let prefix = url.prefix().clone();
            let listing = |url: ListingTableUrl| -> Result<Arc<ListingTable>, ApiError> {
                let opts = ListingOptions::new(Arc::new(ParquetFormat::default()))
                    .with_file_extension(".parquet")
                    .with_table_partition_cols(partitions.clone());
                let cfg = ListingTableConfig::new(url)
                    .with_listing_options(opts)
                    .with_schema(schema.clone());
                // Per-file statistics are kept in the session's cache (validated by size and mtime):
                // without it every query re-derives them from each file's footer.
                let stats_cache = ctx.runtime_env().cache_manager.get_file_statistic_cache();
                Ok(Arc::new(
                    ListingTable::try_new(cfg)?.with_cache(stats_cache),
                ))
            };
            let mut table_provider =
                crate::pruned::PrunedTable::new(listing(url)?, files.clone(), prefix.clone());
            if let Some(copy) = dials_lake::me_major::copy_table(table) {
                let copy_url = ListingTableUrl::parse(format!("{base}/{ws}/{copy}/"))?;
                let copy_prefix = copy_url.prefix().clone();
                table_provider = table_provider.with_copy(listing(copy_url)?, copy_prefix.clone());
                // Probed with the table when a query of it fails (`recovering`).
                prefixes.push((Self::name(&ws, table), copy_prefix));
            }
            ctx.register_table(
                TableReference::bare(Self::name(&ws, table)),
                Arc::new(table_provider),
            )?;
            prefixes.push((Self::name(&ws, table), prefix));
        }
        let state = |scan: Scan| {
            let mut state = ctx.state();
            if scan == Scan::Point {
                state
                    .config_mut()
                    .options_mut()
                    .optimizer
                    .repartition_file_scans = false;
            }
            let task = Arc::new(datafusion::execution::TaskContext::from(&state));
            (state, task)
        };
        let states = [state(Scan::Wide), state(Scan::Point)];
        Ok(Engine {
            states,
            ctx,
            workspaces,
            finished: Mutex::new(HashMap::new()),
            views: Mutex::new(HashMap::new()),
            refresh: tokio::sync::Mutex::new(()),
            guard,
            prefixes,
            files,
            lake: lake.clone(),
            plans: Mutex::new(HashMap::new()),
        })
    }

    /// Runs `attempt` (a query over the lake); when it fails, probes the objects of the tables `sql`
    /// reads, quarantines those that cannot be read (logged) and tries again. A store that fails as
    /// a whole is a 503; a failure no unreadable object explains keeps its own error.
    async fn recovering<T, F, Fut>(&self, sql: &str, attempt: F) -> Result<T, ApiError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = datafusion::error::Result<T>>,
    {
        let mut tries = 1;
        let mut refreshed = false;
        loop {
            let err = match attempt().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            // First, a snapshot older than the lake: a table other than file_index that moved
            // (compaction commits only to the tables it merges) is followed only every minute,
            // and a vacuum with a short retention may have deleted objects it still names.
            if !refreshed {
                refreshed = true;
                if self.files.invalidate_and_follow().await.unwrap_or(false) {
                    tracing::info!(error = %err, "query failed on a snapshot older than the lake; retried on the latest");
                    continue;
                }
            }
            if tries >= MAX_ATTEMPTS || self.quarantine_unreadable(sql).await? == 0 {
                return Err(err.into());
            }
            tries += 1;
        }
    }

    /// Probes the objects of the tables `sql` reads; quarantines the unreadable ones not yet
    /// quarantined and returns how many. An outage (every object of a table failing, or the store
    /// failing as such) is an error: nothing is quarantined for it.
    async fn quarantine_unreadable(&self, sql: &str) -> Result<usize, ApiError> {
        let mut found = 0;
        for (name, prefix) in self
            .prefixes
            .iter()
            .filter(|(n, _)| sql.contains(n.as_str()))
        {
            let (ok, bad) = crate::guard::probe(self.guard.inner(), prefix)
                .await
                .map_err(|e| ApiError::Unavailable(format!("listing {prefix}: {e}")))?;
            if let Some(b) = bad.iter().find(|b| b.outage || (ok == 0 && bad.len() > 1)) {
                return Err(ApiError::Unavailable(format!(
                    "{}: {}",
                    b.meta.location, b.error
                )));
            }
            for b in bad.into_iter().filter(|b| !self.guard.holds(&b.meta)) {
                tracing::warn!(table = %name, object = %b.meta.location, error = %b.error,
                    "unreadable lake object quarantined: left out of queries until it is rewritten");
                self.guard.quarantine(b.meta);
                found += 1;
            }
        }
        if found > 0 {
            // The cached listings still name the quarantined objects; views were computed with them.
            if let Some(cache) = self.ctx.runtime_env().cache_manager.get_list_files_cache() {
                cache.clear();
            }
            self.files.changed();
        }
        Ok(found)
    }

    /// Brings the tables' Delta snapshots up to date (at most once per listing interval).
    pub async fn follow(&self) -> Result<(), ApiError> {
        self.files
            .follow()
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))
    }

    /// Brings the snapshots of the tables `sql` reads up to date (`DeltaFiles::follow_tables`).
    async fn follow_sql(&self, sql: &str) -> Result<(), ApiError> {
        let keys: Vec<object_store::path::Path> = self
            .prefixes
            .iter()
            .filter(|(n, _)| sql.contains(n.as_str()))
            .map(|(_, p)| p.clone())
            .collect();
        self.files
            .follow_tables(&keys)
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))
    }

    /// The DataFusion session (the ML module registers its results table here, `ml/tables.rs`).
    pub fn session(&self) -> &SessionContext {
        &self.ctx
    }

    /// Objects left out of queries because they could not be read (see `guard.rs`).
    pub fn quarantined(&self) -> Vec<String> {
        self.guard
            .quarantined()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// A small aggregate over the index tables (runs, lumisections), materialised in memory and
    /// recomputed when a table's snapshot moved. Returns the quoted table name to query.
    pub async fn view(&self, ws: &str, name: &str, sql: &str) -> Result<String, ApiError> {
        let key = format!("{ws}__view_{name}");
        self.follow_sql(sql).await?;
        let changes = self.files.changes();
        let fresh = |views: &HashMap<String, u64>| views.get(&key) == Some(&changes);
        if self.views.lock().map(|v| fresh(&v)).unwrap_or(false) {
            return Ok(quote_ident(&key));
        }
        let _guard = self.refresh.lock().await;
        if self.views.lock().map(|v| fresh(&v)).unwrap_or(false) {
            return Ok(quote_ident(&key));
        }
        let (schema, batches) = self
            .recovering(sql, || async {
                let df = self.ctx.sql(sql).await?;
                let schema = Arc::new(df.schema().as_arrow().clone());
                Ok((schema, df.collect().await?))
            })
            .await?;
        let table = datafusion::datasource::MemTable::try_new(schema, vec![batches])?;
        let _ = self
            .ctx
            .deregister_table(TableReference::bare(key.as_str()))?;
        self.ctx
            .register_table(TableReference::bare(key.as_str()), Arc::new(table))?;
        if let Ok(mut v) = self.views.lock() {
            v.insert(key.clone(), changes);
        }
        Ok(quote_ident(&key))
    }

    /// Ids of the files whose ingestion FINISHED in `ws` (cached until a snapshot moves).
    pub async fn finished_files(&self, ws: &str) -> Result<Arc<Vec<i64>>, ApiError> {
        self.file_ids(ws, true).await
    }

    /// Ids of the files of `ws` whose record says anything but FINISHED (cached until a snapshot moves).
    pub async fn unfinished_files(&self, ws: &str) -> Result<Arc<Vec<i64>>, ApiError> {
        self.file_ids(ws, false).await
    }

    async fn file_ids(&self, ws: &str, finished: bool) -> Result<Arc<Vec<i64>>, ApiError> {
        let key = format!("{ws}\u{0}{finished}");
        let op = if finished { "=" } else { "<>" };
        let sql = format!(
            "SELECT DISTINCT file_id FROM {} WHERE status {op} 'FINISHED'",
            self.table(ws, "file_index")
        );
        self.follow_sql(&sql).await?;
        let changes = self.files.changes();
        if let Ok(cache) = self.finished.lock() {
            if let Some((at, ids)) = cache.get(&key) {
                if *at == changes {
                    return Ok(ids.clone());
                }
            }
        }
        let mut ids = Vec::new();
        for b in self.query(&sql, vec![]).await? {
            if let Some(col) = b
                .column(0)
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
            {
                ids.extend(col.iter().flatten());
            }
        }
        ids.sort_unstable();
        let ids = Arc::new(ids);
        if let Ok(mut cache) = self.finished.lock() {
            cache.insert(key, (changes, ids.clone()));
        }
        Ok(ids)
    }

    /// Registered name of a workspace's table: the workspace name as it is (never rewritten, so
    /// `trk-a` and `trk_a` stay two tables), registered verbatim and quoted in SQL.
    pub fn name(ws: &str, table: &str) -> String {
        format!("{ws}__{table}")
    }

    /// Quoted table reference for SQL.
    pub fn table(&self, ws: &str, table: &str) -> String {
        quote_ident(&Self::name(ws, table))
    }

    /// Runs parameterised SQL (`$1`, `$2`, ...).
    pub async fn query(
        &self,
        sql: &str,
        params: Vec<ScalarValue>,
    ) -> Result<Vec<RecordBatch>, ApiError> {
        self.query_as(sql, params, Scan::Wide).await
    }

    /// As [`Engine::query`], scanning as `scan` says.
    pub async fn query_as(
        &self,
        sql: &str,
        params: Vec<ScalarValue>,
        scan: Scan,
    ) -> Result<Vec<RecordBatch>, ApiError> {
        use crate::timing::{timed, Part};
        tracing::debug!(sql, ?params, ?scan, "query");
        timed(Part::Follow, self.follow_sql(sql)).await?;
        self.recovering(sql, || async {
            // What `SessionContext::sql` does for a query, with the session's settings for `scan`.
            let t0 = std::time::Instant::now();
            let (state, task) = &self.states[usize::from(scan == Scan::Point)];
            let plan = self.optimized_plan(state, sql).await?;
            let plan = if params.is_empty() {
                plan
            } else {
                plan.with_param_values(params.clone())?
            };
            // Optimised already: straight to physical planning (which prunes objects by the
            // bound values, `pruned.rs`).
            let physical = state
                .query_planner()
                .create_physical_plan(&plan, state)
                .await?;
            crate::timing::add(Part::Plan, t0.elapsed());
            timed(
                Part::Exec,
                datafusion::physical_plan::collect(physical, task.clone()),
            )
            .await
        })
        .await
    }
}

impl Engine {
    /// `sql` parsed, planned and optimised with its placeholders unbound; cached by text, so a
    /// repeated query (a page of the same resource and filters, other values) skips the parser
    /// and the optimiser. Queries of the materialised views are planned afresh: a view is
    /// registered again whenever it is recomputed.
    async fn optimized_plan(
        &self,
        state: &datafusion::execution::SessionState,
        sql: &str,
    ) -> datafusion::error::Result<datafusion::logical_expr::LogicalPlan> {
        // Texts with long literal lists (e.g. the file ids an ML query names) are not kept: each
        // new list would be an entry of its own, each holding the list twice.
        let cacheable = !sql.contains("__view_") && sql.len() <= PLAN_CACHE_MAX_SQL;
        if cacheable {
            if let Some(p) = self.plans.lock().ok().and_then(|c| c.get(sql).cloned()) {
                return Ok(p);
            }
        }
        let plan = state.create_logical_plan(sql).await?;
        let plan = state.optimize(&plan)?;
        if cacheable {
            if let Ok(mut c) = self.plans.lock() {
                if c.len() >= PLAN_CACHE_ENTRIES {
                    c.clear();
                }
                c.insert(sql.to_string(), plan.clone());
            }
        }
        Ok(plan)
    }
}

/// A SQL identifier in double quotes (embedded quotes doubled): taken verbatim, case kept.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
