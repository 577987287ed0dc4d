//! Authentication and workspace isolation (issue 12, docs/auth.md): OIDC bearer tokens checked
//! against the issuer's keys, the token's roles mapped to the workspaces it may read.
//!
//! One middleware ([`require`]) stands in front of every `/api/` route except the OpenAPI document
//! and the health check: no valid token → 401 with `WWW-Authenticate: Bearer`. It then settles
//! the request's workspace *before* any handler runs: a `Workspace` header outside the caller's
//! set is a 403, an absent one becomes the caller's default, and the header the handlers read is
//! replaced by the authorised, canonical name. Handlers therefore cannot read a workspace the
//! caller may not, whichever way they resolve it. Off (no issuer configured), nothing changes.

pub mod jwks;
mod ring_jwt;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dials_lake::Workspaces;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use crate::error::ApiError;

/// `DIALS_AUTH`: `oidc` turns token checks on, `none` (default) leaves the API open.
pub const ENV_MODE: &str = "DIALS_AUTH";
/// `DIALS_OIDC_ISSUER`: the issuer URL (`iss` of the tokens; its discovery document names the keys).
pub const ENV_ISSUER: &str = "DIALS_OIDC_ISSUER";
/// `DIALS_OIDC_AUDIENCE`: the `aud` tokens must carry (the confidential client of DIALS).
pub const ENV_AUDIENCE: &str = "DIALS_OIDC_AUDIENCE";
/// `DIALS_OIDC_ROLES_CLAIM`: the claim listing the caller's roles (default [`DEFAULT_ROLES_CLAIM`]);
/// a dotted path reaches into objects (`resource_access.dials.roles`).
pub const ENV_ROLES_CLAIM: &str = "DIALS_OIDC_ROLES_CLAIM";
/// `DIALS_OIDC_UI_CLIENT_ID`: the public client the web UI signs in with (authorization code + PKCE).
pub const ENV_UI_CLIENT: &str = "DIALS_OIDC_UI_CLIENT_ID";
/// `DIALS_OIDC_LEEWAY_SECS`: clock skew tolerated on `exp`/`nbf` (default [`DEFAULT_LEEWAY_SECS`]).
pub const ENV_LEEWAY: &str = "DIALS_OIDC_LEEWAY_SECS";
/// `DIALS_OIDC_JWKS_COOLDOWN_MS`: least time between two key fetches (default [`DEFAULT_COOLDOWN`]).
pub const ENV_COOLDOWN: &str = "DIALS_OIDC_JWKS_COOLDOWN_MS";

/// CERN's claim: the application roles linked to e-groups.
pub const DEFAULT_ROLES_CLAIM: &str = "cern_roles";
/// Seconds of clock skew accepted on `exp` and `nbf`.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;
/// Least time between two fetches of the issuer's keys.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(10);
/// Longest token accepted (bytes); Keycloak's access tokens are 1–3 KiB.
pub const MAX_TOKEN_BYTES: usize = 8192;
/// Most roles read from one token.
const MAX_ROLES: usize = 1000;

/// How the API checks tokens.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// Issuer URL, as in the tokens' `iss`.
    pub issuer: String,
    /// Required audience.
    pub audience: String,
    /// Claim (dotted path) holding the roles.
    pub roles_claim: String,
    /// Clock skew tolerated, seconds.
    pub leeway_secs: u64,
    /// Least time between key fetches.
    pub jwks_cooldown: Duration,
    /// Public OIDC client of the web UI (None: the UI cannot sign in; the API still works with tokens).
    pub ui_client_id: Option<String>,
}

/// A bad auth configuration (start-up error).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required setting is missing or malformed.
    #[error("auth: {0}")]
    Invalid(String),
    /// The key set could not be set up.
    #[error("auth: {0}")]
    Keys(#[from] jwks::FetchError),
}

impl OidcConfig {
    /// Issuer and audience with the default roles claim, leeway and cooldown.
    pub fn new(issuer: &str, audience: &str) -> Result<Self, ConfigError> {
        let issuer = issuer.trim().trim_end_matches('/').to_string();
        if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
            return Err(ConfigError::Invalid(format!(
                "issuer {issuer:?} must be an http(s) URL"
            )));
        }
        if audience.trim().is_empty() {
            return Err(ConfigError::Invalid(
                "the audience must not be empty".into(),
            ));
        }
        Ok(OidcConfig {
            issuer,
            audience: audience.trim().to_string(),
            roles_claim: DEFAULT_ROLES_CLAIM.into(),
            leeway_secs: DEFAULT_LEEWAY_SECS,
            jwks_cooldown: DEFAULT_COOLDOWN,
            ui_client_id: None,
        })
    }

    /// The configuration the environment asks for: `None` unless `DIALS_AUTH=oidc`.
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        let var = |k: &str| {
            std::env::var(k)
                .ok()
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        match var(ENV_MODE).as_deref() {
            None | Some("none") => return Ok(None),
            Some("oidc") => {}
            Some(other) => {
                return Err(ConfigError::Invalid(format!(
                    "{ENV_MODE}={other}: use oidc or none"
                )))
            }
        }
        let need = |k: &str| {
            var(k).ok_or_else(|| ConfigError::Invalid(format!("{ENV_MODE}=oidc needs {k}")))
        };
        let mut c = OidcConfig::new(&need(ENV_ISSUER)?, &need(ENV_AUDIENCE)?)?;
        if let Some(r) = var(ENV_ROLES_CLAIM) {
            c.roles_claim = r;
        }
        c.ui_client_id = var(ENV_UI_CLIENT);
        Ok(Some(c.tuned_from_env()?))
    }

    /// Leeway and key-fetch cooldown from `DIALS_OIDC_LEEWAY_SECS` / `DIALS_OIDC_JWKS_COOLDOWN_MS` if set.
    pub fn tuned_from_env(mut self) -> Result<Self, ConfigError> {
        let var = |k: &str| {
            std::env::var(k)
                .ok()
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        if let Some(l) = var(ENV_LEEWAY) {
            self.leeway_secs = l.parse().map_err(|_| {
                ConfigError::Invalid(format!("{ENV_LEEWAY}={l}: not a number of seconds"))
            })?;
        }
        if let Some(ms) = var(ENV_COOLDOWN) {
            let ms: u64 = ms.parse().map_err(|_| {
                ConfigError::Invalid(format!("{ENV_COOLDOWN}={ms}: not a number of milliseconds"))
            })?;
            self.jwks_cooldown = Duration::from_millis(ms);
        }
        Ok(self)
    }
}

/// Who is calling, from a verified token.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `sub` (or `azp` for an application token without one), for logs.
    pub subject: String,
    /// The roles claim's strings.
    pub roles: Vec<String>,
}

/// Why a token was refused: DIALS's error codes (docs/auth.md).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("Authorization header not found.")]
    Missing,
    /// Not a JWT we can read, an algorithm we do not accept, or too long.
    #[error("{0}")]
    Malformed(String),
    /// The signature does not verify, or no key of the issuer matches the token's `kid`.
    #[error("{0}")]
    Signature(String),
    /// `exp` has passed.
    #[error("The access token has expired.")]
    Expired,
    /// `nbf` is in the future.
    #[error("The access token is not valid yet.")]
    NotYetValid,
    /// Wrong issuer or audience, or a required claim is missing.
    #[error("{0}")]
    Claims(String),
    /// The issuer's keys were never fetched (issuer unreachable since start-up).
    #[error("the issuer's keys are not available: {0}")]
    KeysUnavailable(String),
}

impl AuthError {
    /// DIALS's `code` for this error.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "authorization_not_found",
            AuthError::Malformed(_) => "bad_access_token",
            AuthError::Signature(_) => "access_token_invalid_jws_signature",
            AuthError::Expired => "access_token_expired",
            AuthError::NotYetValid => "access_token_not_yet_valid",
            AuthError::Claims(_) => "token_not_valid",
            AuthError::KeysUnavailable(_) => "access_token_unexpected_error",
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            // Our side cannot check tokens right now: a retryable outage, not the caller's fault.
            AuthError::KeysUnavailable(_) => ApiError::Unavailable(e.to_string()),
            AuthError::Missing => ApiError::Unauthorized {
                code: e.code(),
                detail: e.to_string(),
                invalid: false,
            },
            _ => ApiError::Unauthorized {
                code: e.code(),
                detail: e.to_string(),
                invalid: true,
            },
        }
    }
}

/// Checks tokens of one issuer.
pub struct Verifier {
    config: OidcConfig,
    keys: jwks::KeySet,
}

impl Verifier {
    /// A verifier; fetches the issuer's keys once now. An issuer that does not answer is not fatal
    /// (logged): the first request that needs a key tries again.
    pub async fn new(config: OidcConfig) -> Result<Self, ConfigError> {
        ring_jwt::install();
        let keys = jwks::KeySet::new(&config.issuer, config.jwks_cooldown)?;
        match keys.refresh().await {
            Ok(0) => {
                tracing::warn!(issuer = %config.issuer, "the issuer publishes no RS256/ES256 signing key: every token will be refused")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(issuer = %config.issuer, error = %e, "could not fetch the issuer's keys at start-up; retrying on the first request")
            }
        }
        Ok(Verifier { config, keys })
    }

    /// The configuration.
    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// The key set (fetch counts, for tests and logs).
    pub fn keys(&self) -> &jwks::KeySet {
        &self.keys
    }

    /// The caller of a request: its `Authorization: Bearer` token, verified.
    pub async fn caller(&self, headers: &HeaderMap) -> Result<Caller, AuthError> {
        self.verify(bearer(headers)?).await
    }

    /// Verifies a compact JWS: size, algorithm (RS256/ES256, and the one of the issuer's key),
    /// signature, `iss`, `aud`, `exp`, `nbf` (with leeway); then reads the roles.
    pub async fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed(format!(
                "The access token is longer than {MAX_TOKEN_BYTES} bytes."
            )));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::Malformed(format!("The access token is not a JWT: {e}.")))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(AuthError::Malformed(format!(
                "Algorithm {:?} is not accepted (RS256 and ES256 are).",
                header.alg
            )));
        }
        let Some(key) = self.keys.find(header.kid.as_deref()).await else {
            if !self.keys.loaded() {
                return Err(AuthError::KeysUnavailable(self.config.issuer.clone()));
            }
            return Err(AuthError::Signature(match header.kid {
                Some(kid) => format!("No key of the issuer has kid {kid:?}."),
                None => "The access token names no key (kid) and the issuer has several.".into(),
            }));
        };
        // The key decides the algorithm: a token may not pick another one for the same key.
        if key.alg != header.alg {
            let kid = header.kid.as_deref().unwrap_or("(none)");
            return Err(AuthError::Signature(format!(
                "Key {kid:?} signs with {:?}, not {:?}.",
                key.alg, header.alg
            )));
        }
        let mut v = Validation::new(key.alg);
        v.leeway = self.config.leeway_secs;
        v.validate_nbf = true;
        v.set_issuer(&[&self.config.issuer]);
        v.set_audience(&[&self.config.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &v).map_err(|e| match e
                .kind()
            {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => {
                    AuthError::Signature("The access token's signature does not verify.".into())
                }
                ErrorKind::InvalidIssuer => {
                    AuthError::Claims("The access token was issued by another issuer.".into())
                }
                ErrorKind::InvalidAudience => AuthError::Claims(
                    "The access token is not meant for this API (audience).".into(),
                ),
                ErrorKind::MissingRequiredClaim(c) => {
                    AuthError::Claims(format!("The access token has no {c} claim."))
                }
                ErrorKind::InvalidClaimFormat(c) => {
                    AuthError::Claims(format!("The access token's {c} claim is malformed."))
                }
                _ => AuthError::Malformed(format!("The access token cannot be read: {e}.")),
            })?;
        let claims = data.claims;
        // Defence in depth on the time claims (jsonwebtoken < 10.3 skipped ones of the wrong type).
        if !claims.get("exp").is_some_and(Value::is_number)
            || claims.get("nbf").is_some_and(|n| !n.is_number())
        {
            return Err(AuthError::Claims(
                "The access token's exp/nbf claims must be numbers.".into(),
            ));
        }
        let subject = ["sub", "azp", "client_id"]
            .iter()
            .find_map(|k| claims.get(*k).and_then(Value::as_str))
            .unwrap_or("?")
            .to_string();
        Ok(Caller {
            subject,
            roles: roles(&claims, &self.config.roles_claim),
        })
    }
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive; exactly one header).
pub fn bearer(headers: &HeaderMap) -> Result<&str, AuthError> {
    let mut all = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = all.next() else {
        return Err(AuthError::Missing);
    };
    if all.next().is_some() {
        return Err(AuthError::Malformed(
            "More than one Authorization header.".into(),
        ));
    }
    let value = value
        .to_str()
        .map_err(|_| AuthError::Malformed("The Authorization header is not ASCII.".into()))?;
    let (scheme, token) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed(
            "The Authorization header is not a Bearer token.".into(),
        ));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::Malformed("The Bearer token is empty.".into()));
    }
    Ok(token)
}

/// The strings of the roles claim (a dotted path; a list of strings, or one string).
fn roles(claims: &Map<String, Value>, path: &str) -> Vec<String> {
    let mut parts = path.split('.');
    let mut cur = parts.next().and_then(|p| claims.get(p));
    for p in parts {
        cur = cur.and_then(|v| v.get(p));
    }
    match cur {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .take(MAX_ROLES)
            .map(str::to_string)
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// What the middleware needs: the verifier and the workspaces (names and roles).
pub struct Gate {
    /// Token checks.
    pub verifier: Arc<Verifier>,
    /// The served workspaces.
    pub workspaces: Workspaces,
}

/// The caller's workspaces, attached to each authenticated request (read by `workspaces/`).
#[derive(Debug, Clone)]
pub struct Access {
    /// Names the caller may read, in configuration order (the first is the default).
    pub workspaces: Vec<String>,
}

/// How a request path is treated.
#[derive(Debug, PartialEq, Eq)]
enum Class {
    /// No token needed: the web UI's files and pages, the OpenAPI document, the health check.
    Public,
    /// A token, no workspace: `workspaces/` and `workspaces/my-default/`.
    Token,
    /// A token and an authorised workspace: every other `/api/` path (unknown ones too).
    Data,
}

fn class(path: &str) -> Class {
    // Decide on the decoded, lower-cased path: a spelling the router might route elsewhere must not
    // slip past as "public".
    let decoded = percent_decode(path).to_ascii_lowercase();
    match decoded.as_str() {
        "/api/v1/openapi.json" | "/api/v1/health/" | "/api/v1/health" => Class::Public,
        "/api/v1/workspaces/" | "/api/v1/workspaces/my-default/" => Class::Token,
        p if p.trim_start_matches('/').starts_with("api") => Class::Data,
        _ => Class::Public,
    }
}

/// `%XX` sequences decoded (invalid ones kept as they are).
fn percent_decode(path: &str) -> String {
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the web UI needs to sign in (`GET /ui/auth-config.json`, public: outside `/api`, so API
/// Gateway's authorizer does not guard it either): whether tokens are
/// required, and the issuer and public client of the authorization-code flow.
pub fn ui_config(verifier: Option<&Verifier>) -> Value {
    match verifier {
        None => serde_json::json!({ "enabled": false }),
        Some(v) => serde_json::json!({
            "enabled": true,
            "issuer": v.config.issuer,
            "client_id": v.config.ui_client_id,
            "scope": "openid",
        }),
    }
}

/// The middleware (see the module docs).
pub async fn require(State(gate): State<Arc<Gate>>, mut req: Request, next: Next) -> Response {
    let class = class(req.uri().path());
    if class == Class::Public {
        return next.run(req).await;
    }
    let caller = match gate.verifier.caller(req.headers()).await {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(path = req.uri().path(), code = e.code(), error = %e, "request refused (token)");
            return ApiError::from(e).into_response();
        }
    };
    let readable: Vec<String> = gate
        .workspaces
        .readable_by(&caller.roles)
        .map(|w| w.name.clone())
        .collect();
    if class == Class::Data {
        match authorised_workspace(&gate.workspaces, &readable, req.headers()) {
            Ok(ws) => {
                let h = req.headers_mut();
                h.remove("workspace");
                match HeaderValue::from_str(&ws) {
                    Ok(v) => {
                        h.insert("workspace", v);
                    }
                    Err(_) => {
                        return ApiError::Internal("workspace name is not a header value".into())
                            .into_response()
                    }
                }
            }
            Err(e) => {
                tracing::info!(subject = %caller.subject, path = req.uri().path(), error = %e, "request refused (workspace)");
                return e.into_response();
            }
        }
    }
    req.extensions_mut().insert(Access {
        workspaces: readable,
    });
    next.run(req).await
}

/// The workspace a request may read: its `Workspace` header if the caller may read it (unknown →
/// 404, not theirs → 403), else the caller's default; several different headers are a 400.
fn authorised_workspace(
    all: &Workspaces,
    readable: &[String],
    headers: &HeaderMap,
) -> Result<String, ApiError> {
    let mut named: Option<String> = None;
    for v in headers.get_all("workspace") {
        let v = std::str::from_utf8(v.as_bytes())
            .map_err(|_| ApiError::bad("Workspace", "The Workspace header is not valid UTF-8."))?
            .trim();
        if v.is_empty() {
            continue;
        }
        match &named {
            Some(n) if !n.eq_ignore_ascii_case(v) => {
                return Err(ApiError::bad(
                    "Workspace",
                    "More than one Workspace header.",
                ))
            }
            _ => named = Some(v.to_string()),
        }
    }
    match named {
        None => readable
            .first()
            .cloned()
            .ok_or_else(|| ApiError::Forbidden {
                code: "no_workspace",
                detail: "Your roles give access to no workspace.".into(),
            }),
        Some(w) => {
            let ws = all
                .get(&w)
                .ok_or_else(|| ApiError::NotFound(format!("Workspace '{w}' not found")))?;
            if readable.iter().any(|r| r == &ws.name) {
                Ok(ws.name.clone())
            } else {
                Err(ApiError::Forbidden {
                    code: "workspace_forbidden",
                    detail: format!("Your roles do not give access to workspace '{}'.", ws.name),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests;
