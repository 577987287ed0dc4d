//! `dials serve` (the API over a lake) and `dials up` (the embedded default: watch an inbox folder,
//! ingest what lands there, serve the API) — no external service needed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use dials_api::auth::{OidcConfig, Verifier};
use dials_api::{router_with_auth, App, Engine};
use dials_lake::{Location, Workspaces};

use crate::CliError;

/// Token checks of `dials serve` / `dials up` (docs/auth.md). Off by default: local use on loopback.
#[derive(clap::Args, Debug, Clone)]
pub struct AuthArgs {
    /// Token checks: `none` (local use) or `oidc` (bearer tokens of --issuer for --audience).
    #[arg(long, env = "DIALS_AUTH", default_value = "none", value_parser = ["none", "oidc"])]
    pub auth: String,
    /// OIDC issuer URL (its /.well-known/openid-configuration names the signing keys).
    #[arg(long, env = "DIALS_OIDC_ISSUER")]
    pub issuer: Option<String>,
    /// Audience the tokens must carry (the API's client id).
    #[arg(long, env = "DIALS_OIDC_AUDIENCE")]
    pub audience: Option<String>,
    /// Token claim listing the caller's roles (dotted path into objects allowed).
    #[arg(long, env = "DIALS_OIDC_ROLES_CLAIM", default_value = dials_api::auth::DEFAULT_ROLES_CLAIM)]
    pub roles_claim: String,
    /// Public OIDC client the web UI signs in with (authorization code + PKCE).
    #[arg(long, env = "DIALS_OIDC_UI_CLIENT_ID")]
    pub ui_client_id: Option<String>,
}

impl AuthArgs {
    fn config(&self) -> Result<Option<OidcConfig>, CliError> {
        if self.auth != "oidc" {
            return Ok(None);
        }
        let (Some(issuer), Some(audience)) = (&self.issuer, &self.audience) else {
            return Err(CliError::Usage(
                "--auth oidc needs --issuer and --audience".into(),
            ));
        };
        let mut c =
            OidcConfig::new(issuer, audience).map_err(|e| CliError::Usage(e.to_string()))?;
        c.roles_claim = self.roles_claim.clone();
        c.ui_client_id = self.ui_client_id.clone();
        c.tuned_from_env()
            .map(Some)
            .map_err(|e| CliError::Usage(e.to_string()))
    }
}

async fn serve_api(
    lake: &Location,
    ws: Workspaces,
    listen: &str,
    auth: &AuthArgs,
) -> Result<(), CliError> {
    let oidc = auth.config()?;
    let engine = Engine::new(lake, ws)
        .await
        .map_err(|e| CliError::Usage(format!("lake {}: {e}", lake.url)))?;
    let addr: SocketAddr = listen
        .parse()
        .map_err(|e| CliError::Usage(format!("--listen {listen}: {e}")))?;
    let verifier = match oidc {
        Some(c) => {
            eprintln!(
                "dials: auth: bearer tokens of {} for audience {} (roles claim {})",
                c.issuer, c.audience, c.roles_claim
            );
            Some(Arc::new(
                Verifier::new(c)
                    .await
                    .map_err(|e| CliError::Usage(e.to_string()))?,
            ))
        }
        None if !addr.ip().is_loopback() => {
            eprintln!(
                "dials: WARNING: serving {addr} WITHOUT AUTHENTICATION: anyone who reaches this address reads every workspace.\n\
                 dials: WARNING: use --auth oidc --issuer URL --audience A (docs/auth.md), or listen on 127.0.0.1."
            );
            None
        }
        None => None,
    };
    let app = router_with_auth(Arc::new(App { engine }), verifier);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| CliError::Usage(format!("--listen {listen}: {e}")))?;
    eprintln!("dials: serving the DIALS API for {} on http://{addr}/api/v1/ and the web UI on http://{addr}/", lake.url);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(CliError::Output)
}

/// Runs `dials serve`.
pub fn serve(
    lake: &str,
    workspaces: Option<&str>,
    listen: &str,
    auth: &AuthArgs,
) -> Result<(), CliError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Output)?;
    rt.block_on(async {
        // Serving never creates a lake: a mistyped --lake is an error, not an empty lake.
        let lake = Location::parse(lake, false).map_err(|e| {
            CliError::Usage(format!(
                "--lake: {e} (no lake there; `dials ingest` or `dials up` creates one)"
            ))
        })?;
        let ws = crate::ingest::load_workspaces(workspaces).await?;
        check_lake(&lake, &ws).await?;
        serve_api(&lake, ws, listen, auth).await
    })
}

/// A lake to serve must be reachable (S3: the bucket answers a listing) and should hold at least one
/// of the configured workspaces; one that holds none is served (it may be new) with a warning.
async fn check_lake(lake: &Location, ws: &Workspaces) -> Result<(), CliError> {
    use futures::TryStreamExt;
    let mut found = Vec::new();
    for w in &ws.workspaces {
        let prefix = lake.child(&[w.name.as_str(), "file_index"]);
        let mut listing = lake.store.list(Some(&prefix));
        match listing.try_next().await {
            Ok(Some(_)) => found.push(w.name.as_str()),
            Ok(None) => {}
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => {
                return Err(CliError::Usage(format!(
                    "--lake {}: cannot list the lake: {e}",
                    lake.url
                )))
            }
        }
    }
    if found.is_empty() {
        let names: Vec<&str> = ws.workspaces.iter().map(|w| w.name.as_str()).collect();
        eprintln!(
            "dials: warning: {} holds no ingested file for workspace(s) {names:?}: the API will answer with empty lists until something is ingested",
            lake.url
        );
    }
    Ok(())
}

/// Runs `dials up`: ingest loop over `inbox` + API, until Ctrl-C.
pub fn up(
    inbox: &str,
    lake: &str,
    workspaces: Option<&str>,
    dataset: Option<String>,
    listen: &str,
    auth: &AuthArgs,
) -> Result<(), CliError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Output)?;
    rt.block_on(async {
        std::fs::create_dir_all(inbox)
            .map_err(|e| CliError::Usage(format!("--inbox {inbox}: {e}")))?;
        let lake =
            Location::parse(lake, true).map_err(|e| CliError::Usage(format!("--lake: {e}")))?;
        let ws = crate::ingest::load_workspaces(workspaces).await?;
        eprintln!(
            "dials: watching {inbox}/ for DQMIO files (*.root); lake in {}",
            lake.url
        );
        let (lake2, ws2, inbox) = (lake.clone(), ws.clone(), PathBuf::from(inbox));
        tokio::spawn(async move { watch(&inbox, &lake2, &ws2, dataset).await });
        serve_api(&lake, ws, listen, auth).await
    })
}

/// Files ingested by `dials up` after which the lake is compacted once the inbox is quiet
/// (`DIALS_UP_COMPACT_AFTER`; 0: never).
const UP_COMPACT_AFTER: usize = 100;
/// Any file ingested: compacted at the latest this long after the last compaction, once quiet.
const UP_COMPACT_EVERY: Duration = Duration::from_secs(15 * 60);
/// Vacuumed at most this often (with [`UP_RETENTION`]).
const UP_VACUUM_EVERY: Duration = Duration::from_secs(3600);
/// What a vacuum keeps: every object a snapshot of the last day needs (as `dials vacuum`).
const UP_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// The embedded default's lake maintenance, what the scheduled function does when deployed: the
/// runs' small objects (one per DQMIO file) are merged when the inbox is quiet, after
/// [`UP_COMPACT_AFTER`] files or [`UP_COMPACT_EVERY`]; without it, a folder of thousands of files
/// leaves queries reading thousands of objects (docs/benchmarks.md).
struct UpMaintenance {
    after: usize,
    ingested: usize,
    last_compact: Instant,
    last_vacuum: Option<Instant>,
}

impl UpMaintenance {
    fn new() -> Self {
        let after = std::env::var("DIALS_UP_COMPACT_AFTER")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(UP_COMPACT_AFTER);
        UpMaintenance {
            after,
            ingested: 0,
            last_compact: Instant::now(),
            last_vacuum: None,
        }
    }

    fn due(&self) -> bool {
        self.after > 0
            && self.ingested > 0
            && (self.ingested >= self.after || self.last_compact.elapsed() >= UP_COMPACT_EVERY)
    }

    async fn run(&mut self, lake: &Location, ws: &Workspaces) {
        let names: Vec<String> = ws.workspaces.iter().map(|w| w.name.clone()).collect();
        let t0 = Instant::now();
        match crate::compact::compact_all(lake, &names, Default::default()).await {
            Ok(done) => eprintln!(
                "dials: compacted the lake after {} files: {} objects merged into {} in {:.1} s",
                self.ingested,
                done.iter().map(|t| t.inputs).sum::<usize>(),
                done.iter().map(|t| t.merged).sum::<usize>(),
                t0.elapsed().as_secs_f64()
            ),
            Err(e) => eprintln!("dials: compaction failed (tried again later): {e}"),
        }
        self.ingested = 0;
        self.last_compact = Instant::now();
        if self
            .last_vacuum
            .is_none_or(|v| v.elapsed() >= UP_VACUUM_EVERY)
        {
            for name in &names {
                if let Err(e) = crate::compact::vacuum_all(lake, name, UP_RETENTION).await {
                    eprintln!("dials: vacuum of {name} failed (tried again later): {e}");
                }
            }
            self.last_vacuum = Some(Instant::now());
        }
        // What compaction and vacuum allocated goes back to the system instead of staying in
        // glibc's arenas while `up` goes on serving and ingesting (docs/benchmarks.md, stop 30).
        dials_malloc::release_free();
    }
}

/// Polls the inbox; a file is ingested once its size and mtime held still for one poll, and again
/// whenever it changes. Ingest is idempotent, so a restart simply re-ingests (same rows). A quiet
/// poll may compact the lake ([`UpMaintenance`]).
async fn watch(inbox: &PathBuf, lake: &Location, ws: &Workspaces, dataset: Option<String>) {
    let mut seen: HashMap<PathBuf, (u64, SystemTime)> = HashMap::new();
    let mut done: HashMap<PathBuf, (u64, SystemTime)> = HashMap::new();
    let mut maintenance = UpMaintenance::new();
    loop {
        let mut busy = false;
        for p in crate::ingest::root_files(inbox).unwrap_or_default() {
            let Ok(meta) = std::fs::metadata(&p) else {
                continue;
            };
            let sig = (
                meta.len(),
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            );
            if done.get(&p) == Some(&sig) {
                continue;
            }
            if seen.insert(p.clone(), sig) != Some(sig) {
                busy = true;
                continue; // still changing (or new): look again next poll
            }
            busy = true;
            maintenance.ingested += 1;
            let input = p.display().to_string();
            let rel = p
                .strip_prefix(inbox)
                .map(|r| r.display().to_string())
                .unwrap_or_else(|_| input.clone());
            match crate::ingest::ingest_one(lake, ws, &input, &rel, dataset.clone(), None).await {
                Ok(rep) => eprintln!(
                    "dials: ingested {rel}: {} histograms, runs {:?}, {:.2} s",
                    rep.histograms, rep.runs, rep.seconds
                ),
                Err(e) => eprintln!("dials: {} {rel}: {e}", e.status()),
            }
            done.insert(p, sig);
        }
        if !busy && maintenance.due() {
            maintenance.run(lake, ws).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
