//! Issue 12 through the router: with a verifier, `/api` needs a token, the token's roles decide the
//! workspace (header outside the set → 403, none → the caller's default), public paths stay public,
//! and no response of one workspace reaches a caller of another. ES256 tokens signed here with ring
//! against a loopback issuer; the lake is ingested from a ROOT-written fixture.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use dials_api::auth::{OidcConfig, Verifier};
use dials_api::{router_with_auth, App, Engine};
use dials_dqmio::LocalFile;
use dials_lake::{ingest, IngestRequest, Location, Workspaces};
use http_body_util::BodyExt;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use tower::ServiceExt;

fn b64(v: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

struct Issuer {
    url: String,
    key: EcdsaKeyPair,
}

impl Issuer {
    async fn start() -> Issuer {
        let rng = SystemRandom::new();
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref(), &rng)
            .expect("key");
        let p = key.public_key().as_ref().to_vec();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let jwks = json!({ "keys": [{ "kty": "EC", "kid": "k1", "crv": "P-256", "x": b64(&p[1..33]), "y": b64(&p[33..65]) }] });
        let disc = json!({ "issuer": url, "jwks_uri": format!("{url}/certs") });
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || std::future::ready(axum::Json(disc.clone()))),
            )
            .route(
                "/certs",
                get(move || std::future::ready(axum::Json(jwks.clone()))),
            );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Issuer { url, key }
    }

    fn token(&self, roles: &[&str]) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let claims = json!({ "iss": self.url, "aud": "dials-api", "sub": "u", "exp": now + 300, "cern_roles": roles });
        let msg = format!(
            "{}.{}",
            b64(br#"{"alg":"ES256","kid":"k1"}"#),
            b64(claims.to_string().as_bytes())
        );
        let sig = self
            .key
            .sign(&SystemRandom::new(), msg.as_bytes())
            .expect("sign");
        format!("{msg}.{}", b64(sig.as_ref()))
    }
}

async fn app(iss: &Issuer) -> axum::Router {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/data");
    let dir = std::env::temp_dir().join(format!("dials-api-auth-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let lake = Location::parse(dir.to_str().expect("utf8"), true).expect("lake");
    let ws = Workspaces::from_json(
        r#"{"default":"all","workspaces":[{"name":"all","roles":["admin"]},
            {"name":"tracker","me_prefixes":["PixelPhase1/"],"roles":["trk","admin"]},
            {"name":"hcal","me_prefixes":["Hcal/"],"roles":["hcal","admin"]}]}"#,
    )
    .expect("config");
    let lfn =
        "/store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/380/310/00000/a.root".to_string();
    let req = IngestRequest {
        logical_file_name: lfn,
        dataset: None,
        deadline: None,
    };
    ingest(
        &lake,
        &ws,
        &req,
        Arc::new(LocalFile::open(fixtures.join("small_zlib.root")).expect("fixture")),
        None,
    )
    .await
    .expect("ingest");
    let mut c = OidcConfig::new(&iss.url, "dials-api").expect("config");
    c.ui_client_id = Some("dials-ui".into());
    let verifier = Verifier::new(c).await.expect("verifier");
    router_with_auth(
        Arc::new(App {
            engine: Engine::new(&lake, ws).await.expect("engine"),
        }),
        Some(Arc::new(verifier)),
    )
}

async fn get_(
    app: &axum::Router,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Value, String) {
    let mut req = Request::builder().uri(uri).header("host", "dials.test");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).expect("req"))
        .await
        .expect("call");
    let status = resp.status();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
        challenge,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_roles_decide_what_a_caller_reads() {
    let iss = Issuer::start().await;
    let app = app(&iss).await;
    let (trk, hcal, none) = (
        iss.token(&["trk"]),
        iss.token(&["hcal"]),
        iss.token(&["other"]),
    );
    let auth = |t: &str| format!("Bearer {t}");

    // Public: OpenAPI, health, the UI and its sign-in config.
    for p in [
        "/api/v1/openapi.json",
        "/api/v1/health/",
        "/api/v1/health",
        "/ui/auth-config.json",
    ] {
        assert_eq!(get_(&app, p, &[]).await.0, StatusCode::OK, "{p}");
    }
    assert_eq!(
        get_(&app, "/ui/auth-config.json", &[]).await.1["client_id"],
        "dials-ui"
    );
    // Everything else under /api: 401 with a challenge and DIALS's body.
    for p in [
        "/api/v1/mes/",
        "/api/v1/workspaces/",
        "/api/v1/nope/",
        "/%61pi/v1/mes/",
    ] {
        let (s, body, challenge) = get_(&app, p, &[]).await;
        assert_eq!(
            (s, body["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("authorization_not_found")),
            "{p}"
        );
        assert!(challenge.starts_with("Bearer"), "{p}: {challenge}");
    }
    // The caller's default and their own workspace; another is a 403, an unknown one a 404.
    let mes = |v: &Value| {
        v.as_array()
            .expect("mes")
            .iter()
            .map(|m| m["me"].as_str().expect("me").to_string())
            .collect::<Vec<_>>()
    };
    let (s, body, _) = get_(&app, "/api/v1/mes/", &[("authorization", &auth(&trk))]).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        !mes(&body).is_empty() && mes(&body).iter().all(|m| m.starts_with("PixelPhase1/")),
        "{body}"
    );
    let (s, body, _) = get_(
        &app,
        "/api/v1/mes/",
        &[("authorization", &auth(&hcal)), ("workspace", "HCAL")],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(mes(&body).iter().all(|m| m.starts_with("Hcal/")), "{body}");
    let (s, body, _) = get_(
        &app,
        "/api/v1/mes/",
        &[("authorization", &auth(&trk)), ("workspace", "hcal")],
    )
    .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("workspace_forbidden"))
    );
    assert!(!body.to_string().contains("Hcal/"));
    assert_eq!(
        get_(
            &app,
            "/api/v1/mes/",
            &[("authorization", &auth(&trk)), ("workspace", "all")]
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get_(
            &app,
            "/api/v1/mes/",
            &[("authorization", &auth(&trk)), ("workspace", "nope")]
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    let (s, body, _) = get_(&app, "/api/v1/mes/", &[("authorization", &auth(&none))]).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("no_workspace"))
    );
    // workspaces/ and my-default/ are the caller's.
    let (_, body, _) = get_(
        &app,
        "/api/v1/workspaces/",
        &[("authorization", &auth(&hcal))],
    )
    .await;
    assert_eq!(body, json!({ "workspaces": ["hcal"], "default": "hcal" }));
    let (_, body, _) = get_(
        &app,
        "/api/v1/workspaces/",
        &[("authorization", &auth(&iss.token(&["admin"])))],
    )
    .await;
    assert_eq!(
        body,
        json!({ "workspaces": ["all", "tracker", "hcal"], "default": "all" })
    );
    let (_, body, _) = get_(
        &app,
        "/api/v1/workspaces/my-default/",
        &[("authorization", &auth(&trk))],
    )
    .await;
    assert_eq!(body, json!({ "workspace": "tracker" }));
    // A refused token: 401 invalid_token.
    let dot = trk.rfind('.').expect("jws") + 1;
    let flipped = if trk.as_bytes()[dot] == b'A' {
        "B"
    } else {
        "A"
    };
    let forged = format!("{}{flipped}{}", &trk[..dot], &trk[dot + 1..]);
    let (s, body, challenge) =
        get_(&app, "/api/v1/mes/", &[("authorization", &auth(&forged))]).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (
            StatusCode::UNAUTHORIZED,
            Some("access_token_invalid_jws_signature")
        )
    );
    assert!(challenge.contains("invalid_token"), "{challenge}");
}
