//! The issuer's signing keys: the discovery document (`<issuer>/.well-known/openid-configuration`)
//! names the JWKS; the keys are fetched once and cached. A token signed with a key we do not know
//! (rotation) triggers a refetch, at most once per cooldown, so a flood of tokens with made-up
//! `kid`s costs the issuer one request per cooldown, never one per request. A set older than
//! [`MAX_AGE`] is refetched too, so a key the issuer withdrew stops being accepted.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

/// Keys older than this are refetched on the next request that needs one.
pub const MAX_AGE: Duration = Duration::from_secs(3600);
/// Largest discovery document or JWKS read.
const MAX_DOC_BYTES: usize = 1 << 20;
/// Timeout of one request to the issuer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the keys could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The request failed (connection, timeout, TLS).
    #[error("GET {url}: {source}")]
    Http {
        /// What was fetched.
        url: String,
        /// Why it failed.
        source: reqwest::Error,
    },
    /// The issuer answered with an error status.
    #[error("GET {url}: HTTP {status}")]
    Status {
        /// What was fetched.
        url: String,
        /// The status.
        status: u16,
    },
    /// Not the JSON document expected, or too large.
    #[error("GET {url}: {message}")]
    Document {
        /// What was fetched.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// The discovery document names another issuer (OpenID Connect Discovery 1.0, section 4.3).
    #[error("discovery document of {expected} names issuer {found}")]
    IssuerMismatch {
        /// The configured issuer.
        expected: String,
        /// The document's.
        found: String,
    },
}

/// A verification key and the one algorithm it may verify.
#[derive(Clone)]
pub struct Key {
    /// RS256 for RSA keys, ES256 for P-256 keys.
    pub alg: Algorithm,
    /// The public key.
    pub key: DecodingKey,
}

#[derive(Default)]
struct State {
    by_kid: HashMap<String, Key>,
    /// Keys published without a `kid` (used only for tokens without one).
    anonymous: Vec<Key>,
    fetched: Option<Instant>,
    attempted: Option<Instant>,
    fetches: u64,
}

/// The cached key set of one issuer.
pub struct KeySet {
    issuer: String,
    http: reqwest::Client,
    cooldown: Duration,
    state: RwLock<State>,
    /// One fetch at a time; others wait for it and use its result.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

impl KeySet {
    /// A key set of `issuer` (nothing fetched yet); refetches on unknown keys at most once per `cooldown`.
    pub fn new(issuer: &str, cooldown: Duration) -> Result<Self, FetchError> {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|source| FetchError::Http {
                url: issuer.to_string(),
                source,
            })?;
        Ok(KeySet {
            issuer: issuer.trim_end_matches('/').to_string(),
            http,
            cooldown,
            state: RwLock::default(),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// Fetches discovery document and keys now; returns how many usable keys the set holds.
    pub async fn refresh(&self) -> Result<usize, FetchError> {
        let _one = self.fetching.lock().await;
        self.fetch().await
    }

    /// Number of fetches made so far (attempts, failed or not).
    pub fn fetches(&self) -> u64 {
        self.state.read().map(|s| s.fetches).unwrap_or(0)
    }

    /// True once a fetch has succeeded.
    pub fn loaded(&self) -> bool {
        self.state
            .read()
            .map(|s| s.fetched.is_some())
            .unwrap_or(false)
    }

    /// The key for a token's `kid` (or the only key, for a token without one), refetching the set
    /// when the key is unknown or the set is old and the cooldown allows it.
    pub async fn find(&self, kid: Option<&str>) -> Option<Key> {
        if let Some(k) = self.lookup(kid) {
            if !self.stale() {
                return Some(k);
            }
        }
        if !self.may_fetch() {
            return self.lookup(kid);
        }
        let _one = self.fetching.lock().await;
        // Another request may have fetched while this one waited.
        if let Some(k) = self.lookup(kid) {
            if !self.stale() {
                return Some(k);
            }
        }
        if self.may_fetch() {
            if let Err(e) = self.fetch().await {
                tracing::warn!(issuer = %self.issuer, error = %e, "could not refresh the issuer's keys; keeping the ones we have");
            }
        }
        self.lookup(kid)
    }

    fn lookup(&self, kid: Option<&str>) -> Option<Key> {
        let s = self.state.read().ok()?;
        match kid {
            Some(kid) => s.by_kid.get(kid).cloned(),
            None if s.anonymous.len() + s.by_kid.len() == 1 => s
                .anonymous
                .first()
                .or_else(|| s.by_kid.values().next())
                .cloned(),
            None => None,
        }
    }

    fn stale(&self) -> bool {
        self.state
            .read()
            .map(|s| s.fetched.is_none_or(|t| t.elapsed() > MAX_AGE))
            .unwrap_or(true)
    }

    fn may_fetch(&self) -> bool {
        self.state
            .read()
            .map(|s| s.attempted.is_none_or(|t| t.elapsed() >= self.cooldown))
            .unwrap_or(false)
    }

    async fn fetch(&self) -> Result<usize, FetchError> {
        if let Ok(mut s) = self.state.write() {
            s.attempted = Some(Instant::now());
            s.fetches += 1;
        }
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let disc: Discovery = self.get_json(&url).await?;
        if disc.issuer.trim_end_matches('/') != self.issuer {
            return Err(FetchError::IssuerMismatch {
                expected: self.issuer.clone(),
                found: disc.issuer,
            });
        }
        if !(disc.jwks_uri.starts_with("https://") || disc.jwks_uri.starts_with("http://")) {
            return Err(FetchError::Document {
                url,
                message: format!("jwks_uri {:?} is not an http(s) URL", disc.jwks_uri),
            });
        }
        let jwks: Jwks = self.get_json(&disc.jwks_uri).await?;
        let (mut by_kid, mut anonymous) = (HashMap::new(), Vec::new());
        for jwk in &jwks.keys {
            match usable(jwk) {
                Some(key) => match &jwk.kid {
                    Some(kid) => {
                        by_kid.insert(kid.clone(), key);
                    }
                    None => anonymous.push(key),
                },
                None => {
                    tracing::debug!(kid = ?jwk.kid, kty = %jwk.kty, "JWKS key skipped (not an RS256/ES256 signing key)")
                }
            }
        }
        let n = by_kid.len() + anonymous.len();
        if let Ok(mut s) = self.state.write() {
            s.by_kid = by_kid;
            s.anonymous = anonymous;
            s.fetched = Some(Instant::now());
        }
        tracing::info!(issuer = %self.issuer, keys = n, "fetched the issuer's signing keys");
        Ok(n)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, FetchError> {
        let http = |source| FetchError::Http {
            url: url.to_string(),
            source,
        };
        let resp = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(http)?;
        if !resp.status().is_success() {
            return Err(FetchError::Status {
                url: url.to_string(),
                status: resp.status().as_u16(),
            });
        }
        let too_large = || FetchError::Document {
            url: url.to_string(),
            message: format!("larger than {MAX_DOC_BYTES} bytes"),
        };
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_DOC_BYTES as u64)
        {
            return Err(too_large());
        }
        let body = resp.bytes().await.map_err(http)?;
        if body.len() > MAX_DOC_BYTES {
            return Err(too_large());
        }
        serde_json::from_slice(&body).map_err(|e| FetchError::Document {
            url: url.to_string(),
            message: e.to_string(),
        })
    }
}

/// The verification key of a JWKS entry, if it is an RS256 or ES256 signing key.
fn usable(jwk: &Jwk) -> Option<Key> {
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    match (jwk.kty.as_str(), jwk.alg.as_deref()) {
        ("RSA", None | Some("RS256")) => {
            let key =
                DecodingKey::from_rsa_components(jwk.n.as_deref()?, jwk.e.as_deref()?).ok()?;
            Some(Key {
                alg: Algorithm::RS256,
                key,
            })
        }
        ("EC", None | Some("ES256")) if jwk.crv.as_deref() == Some("P-256") => {
            let (x, y) = (jwk.x.as_deref()?, jwk.y.as_deref()?);
            // 32-byte coordinates (43 base64url characters, unpadded).
            if x.len() != 43 || y.len() != 43 {
                return None;
            }
            let key = DecodingKey::from_ec_components(x, y).ok()?;
            Some(Key {
                alg: Algorithm::ES256,
                key,
            })
        }
        _ => None,
    }
}
