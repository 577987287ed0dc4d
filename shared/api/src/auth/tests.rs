//! The verifier against a tiny issuer on loopback (discovery + JWKS), tokens signed here with ring.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::routing::get;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
};
use serde_json::{json, Value};

use super::*;

/// A 2048-bit RSA test key (PKCS#8 DER, base64), generated for these tests only.
const RSA_PKCS8: &str = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCSiF2YRfl1MUfBUArpi8RA0s1WoN7vTeY9SkPV51OuY10gy/BbHpwpaGDLMh7ocEyi10YMp7oVa3yyQtU24S/MYO0HOyCv3lYojTng1TmdbTEl4AYEE+pvnaDjUjTwGhOI7+ioYQ15l+eXSMg+Pc9VQfLwi5AEdjGxD68rrjN0lJLF72sYxgcIGmql1rIv5j9kX2ekgzO6Evu9dMsN3utjS4IRx2nJ4xrs82eKnq37Csl9+yAz30s8FIKizVWrYaS3xC/s8NFeF5WXq/Dl+prJAXFsuHJT/zUsbEnt90XTwO4tR8pl6zmlKR0UDO8J66Hq6RkFDsOzHeEo16QLnqWXAgMBAAECggEAE58/KUz1gsP+n9xgGbYlqaiQ5rDUKad81WhEfThk9E1KA0JMBWer8b+QdqVXjji7inLZZohvWr7yC8z3UEoHZI72Lqm0TtivIO8IeRsUhAhDNJczNwiTtC6fhNFVVXGofAXkWeflLgsxcAjHB86vHPOf3KZTusU5EkTPaEIDkfC/djQh79S3Nn38vgPW8HvYPyhtl/iMYgjdD7hWZZrokeKnGaXucmBXAUh6Kgo+2vjl3BaUK72hf00bSokzNhQMY2QBFG/1zcWUtfw0liqlmUOTOypBUqjONJOHFpPrEy/5QuiDY/FnuOqG7ZnqAva1WzK8tJKKGzhCnEdsGFqpAQKBgQDEeDjn9HKA0pAm6HG7Jk0z8Qt7R9NHkiu1A3DdAbkBLvlWZGS3viSYk2wKacb1kU8SX1W6f3DABONJZgrqoy9a1MegHLzwxCS9gjIaWI7hzeVGJ0zIzvX5deC289oT/SpWijfBQ5LX7ggQG/9uelabFDytjZJiCfBsfNvkoWUGsQKBgQC+7qEJ6RdYJJYSYiHYVzoLXOe8voVSwrQyLHB/ufdLnE6kM2xCuO95qvzg58X1ZvCqI6aOec4R9LlusCS63Qu2Lw07yhrXkPtn9xympMeO3IFRWKE0dgnoeoUqmh0lfvzow3LMVGDow+YDoXNCk8L9csqGylodlYGHrNuIWP4SxwKBgHP5e64AsC63HPy6rZgJ7fzBR0PIjEFtWXuKwm7Te3/lWK3UqVeFWFjwfRBQjG+dDQ4NVK+4VrgiqoBDSiJjnaqCfCxZinadcgqj9itzJzTHs5WL0VmgQba2DKYyoAK4qOtYv7zHxMDN89h+jnOKp+D3OzI/pa9VqqR/t9XoJ5ihAoGBAI0X7q1SMMwUDUp8diJXIy+uchmKeR+Vfm/tYx0gId0gHwU8cu5Dl8RDVSgmXqVgcsxoF/cFkAC45icjx6DHJJZ24sKiMX/HReGoPOXwsv+hd3bTlh0cdWn00F+RD6Tb2K1xcW4JlKutyFY6guBaLSf6IivFcR6XkubeGEUD7o2VAoGAPsxvMMqpG6TYqsOmOFE9FzHdclsX0VA2I5AvaBwvlJNPHv2h5nj1T1KCZlqdAWhtSUXe6N02RQrdtT+zevoYK9ndpJqI+l8sd9M0mdmSzL9bVfkJu7HurCO+CpSTv0yorpdO+GxXSK5kVThhU5zSkMqEgpoT+c/uPn6kl23FNxQ=";
/// Its modulus (base64url).
const RSA_N: &str = "kohdmEX5dTFHwVAK6YvEQNLNVqDe703mPUpD1edTrmNdIMvwWx6cKWhgyzIe6HBMotdGDKe6FWt8skLVNuEvzGDtBzsgr95WKI054NU5nW0xJeAGBBPqb52g41I08BoTiO_oqGENeZfnl0jIPj3PVUHy8IuQBHYxsQ-vK64zdJSSxe9rGMYHCBpqpdayL-Y_ZF9npIMzuhL7vXTLDd7rY0uCEcdpyeMa7PNnip6t-wrJffsgM99LPBSCos1Vq2Gkt8Qv7PDRXheVl6vw5fqayQFxbLhyU_81LGxJ7fdF08DuLUfKZes5pSkdFAzvCeuh6ukZBQ7Dsx3hKNekC56llw";
const AUD: &str = "dials-api";

struct Issuer {
    url: String,
    jwks: Arc<Mutex<Value>>,
    hits: Arc<AtomicU64>,
    rsa: RsaKeyPair,
    ec: EcdsaKeyPair,
}

fn b64(v: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

impl Issuer {
    async fn start() -> Issuer {
        let rng = SystemRandom::new();
        let ec_doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("ec key");
        let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, ec_doc.as_ref(), &rng)
            .expect("ec key");
        let rsa =
            RsaKeyPair::from_pkcs8(&STANDARD.decode(RSA_PKCS8).expect("b64")).expect("rsa key");
        let point = ec.public_key().as_ref();
        let jwks = Arc::new(Mutex::new(json!({ "keys": [
            { "kty": "RSA", "kid": "rsa-1", "alg": "RS256", "use": "sig", "n": RSA_N, "e": "AQAB" },
            { "kty": "EC", "kid": "ec-1", "crv": "P-256", "use": "sig", "x": b64(&point[1..33]), "y": b64(&point[33..65]) },
            { "kty": "RSA", "kid": "enc-1", "use": "enc", "n": RSA_N, "e": "AQAB" },
        ] })));
        let hits = Arc::new(AtomicU64::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (j, h, u) = (jwks.clone(), hits.clone(), url.clone());
        let app =
            axum::Router::new()
                .route(
                    "/.well-known/openid-configuration",
                    get(move || {
                        let u = u.clone();
                        async move {
                            axum::Json(json!({ "issuer": u, "jwks_uri": format!("{u}/certs") }))
                        }
                    }),
                )
                .route(
                    "/certs",
                    get(move || {
                        let (j, h) = (j.clone(), h.clone());
                        async move {
                            h.fetch_add(1, Ordering::SeqCst);
                            axum::Json(j.lock().expect("jwks").clone())
                        }
                    }),
                );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Issuer {
            url,
            jwks,
            hits,
            rsa,
            ec,
        }
    }

    fn claims(&self) -> Value {
        json!({ "iss": self.url, "aud": AUD, "sub": "alice", "exp": now() + 300, "iat": now(), "cern_roles": ["trk"] })
    }

    fn sign(&self, header: Value, claims: &Value) -> String {
        let msg = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let rng = SystemRandom::new();
        let sig = match header["alg"].as_str() {
            Some("RS256") => {
                let mut sig = vec![0; self.rsa.public().modulus_len()];
                self.rsa
                    .sign(&RSA_PKCS1_SHA256, &rng, msg.as_bytes(), &mut sig)
                    .expect("sign");
                sig
            }
            Some("ES256") => self
                .ec
                .sign(&rng, msg.as_bytes())
                .expect("sign")
                .as_ref()
                .to_vec(),
            _ => Vec::new(),
        };
        format!("{msg}.{}", b64(&sig))
    }

    fn rs(&self, claims: &Value) -> String {
        self.sign(
            json!({ "alg": "RS256", "kid": "rsa-1", "typ": "JWT" }),
            claims,
        )
    }

    fn es(&self, claims: &Value) -> String {
        self.sign(
            json!({ "alg": "ES256", "kid": "ec-1", "typ": "JWT" }),
            claims,
        )
    }

    async fn verifier(&self, cooldown_ms: u64) -> Verifier {
        let mut c = OidcConfig::new(&self.url, AUD).expect("config");
        c.jwks_cooldown = Duration::from_millis(cooldown_ms);
        Verifier::new(c).await.expect("verifier")
    }
}

fn with(mut v: Value, k: &str, x: Value) -> Value {
    v[k] = x;
    v
}

fn code(r: Result<Caller, AuthError>) -> &'static str {
    match r {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => e.code(),
    }
}

#[tokio::test]
async fn good_rs256_and_es256_tokens_give_the_roles() {
    let iss = Issuer::start().await;
    let v = iss.verifier(10_000).await;
    let c = v.verify(&iss.rs(&iss.claims())).await.expect("rs256");
    assert_eq!(
        (c.subject.as_str(), c.roles.clone()),
        ("alice", vec!["trk".to_string()])
    );
    assert!(v.verify(&iss.es(&iss.claims())).await.is_ok());
    // aud as a list, roles as one string, no roles at all (no roles, not an error).
    let cl = with(
        with(iss.claims(), "aud", json!(["account", AUD])),
        "cern_roles",
        json!("one"),
    );
    assert_eq!(
        v.verify(&iss.es(&cl)).await.expect("list aud").roles,
        ["one"]
    );
    let mut cl = iss.claims();
    cl.as_object_mut().expect("obj").remove("cern_roles");
    assert!(v
        .verify(&iss.rs(&cl))
        .await
        .expect("no roles")
        .roles
        .is_empty());
    // Within the leeway.
    assert!(v
        .verify(&iss.rs(&with(iss.claims(), "exp", json!(now() - 5))))
        .await
        .is_ok());
    assert_eq!(iss.hits.load(Ordering::SeqCst), 1, "keys fetched once");
}

#[tokio::test]
async fn every_bad_token_is_refused_with_dials_codes() {
    let iss = Issuer::start().await;
    let v = iss.verifier(10_000).await;
    let good = iss.rs(&iss.claims());
    assert_eq!(
        code(
            v.verify(&with(iss.claims(), "exp", json!(now() - 120)).to_string())
                .await
        ),
        "bad_access_token"
    );
    assert_eq!(
        code(
            v.verify(&iss.rs(&with(iss.claims(), "exp", json!(now() - 120))))
                .await
        ),
        "access_token_expired"
    );
    assert_eq!(
        code(
            v.verify(&iss.es(&with(iss.claims(), "nbf", json!(now() + 120))))
                .await
        ),
        "access_token_not_yet_valid"
    );
    // A time claim of the wrong type is never skipped (CVE-2026-25537).
    assert_eq!(
        code(
            v.verify(&iss.es(&with(
                iss.claims(),
                "nbf",
                json!((now() + 9999).to_string())
            )))
            .await
        ),
        "token_not_valid"
    );
    assert_eq!(
        code(
            v.verify(&iss.es(&with(iss.claims(), "exp", json!("never"))))
                .await
        ),
        "token_not_valid"
    );
    let mut no_exp = iss.claims();
    no_exp.as_object_mut().expect("obj").remove("exp");
    assert_eq!(code(v.verify(&iss.rs(&no_exp)).await), "token_not_valid");
    assert_eq!(
        code(
            v.verify(&iss.rs(&with(iss.claims(), "aud", json!("other"))))
                .await
        ),
        "token_not_valid"
    );
    assert_eq!(
        code(
            v.verify(&iss.rs(&with(iss.claims(), "iss", json!("http://evil.example"))))
                .await
        ),
        "token_not_valid"
    );
    // Tampered payload, signature of another key, truncated signature.
    let (head, rest) = good.split_once('.').expect("jwt");
    let (_, sig) = rest.split_once('.').expect("jwt");
    let forged = format!(
        "{head}.{}.{sig}",
        b64(with(iss.claims(), "cern_roles", json!(["admins"]))
            .to_string()
            .as_bytes())
    );
    assert_eq!(
        code(v.verify(&forged).await),
        "access_token_invalid_jws_signature"
    );
    let ec_sig_on_rsa_kid = iss.sign(json!({ "alg": "ES256", "kid": "rsa-1" }), &iss.claims());
    assert_eq!(
        code(v.verify(&ec_sig_on_rsa_kid).await),
        "access_token_invalid_jws_signature"
    );
    assert_eq!(
        code(v.verify(&good[..good.len() - 10]).await),
        "access_token_invalid_jws_signature"
    );
    // alg none, HS256 keyed with the public key (the classic confusion), unknown algorithms.
    let unsigned = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(iss.claims().to_string().as_bytes())
    );
    assert_eq!(code(v.verify(&unsigned).await), "bad_access_token");
    let hs = {
        let msg = format!(
            "{}.{}",
            b64(br#"{"alg":"HS256","kid":"rsa-1"}"#),
            b64(iss.claims().to_string().as_bytes())
        );
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, RSA_N.as_bytes());
        format!(
            "{msg}.{}",
            b64(ring::hmac::sign(&key, msg.as_bytes()).as_ref())
        )
    };
    assert_eq!(code(v.verify(&hs).await), "bad_access_token");
    for alg in ["PS256", "RS512", "EdDSA", "ES384"] {
        let t = format!(
            "{}.{}.{}",
            b64(json!({ "alg": alg, "kid": "rsa-1" }).to_string().as_bytes()),
            b64(b"{}"),
            b64(b"x")
        );
        assert_eq!(code(v.verify(&t).await), "bad_access_token", "{alg}");
    }
    // A key published for encryption never verifies; an unknown kid; no kid with two keys.
    assert_eq!(
        code(
            v.verify(&iss.sign(json!({ "alg": "RS256", "kid": "enc-1" }), &iss.claims()))
                .await
        ),
        "access_token_invalid_jws_signature"
    );
    assert_eq!(
        code(
            v.verify(&iss.sign(json!({ "alg": "RS256", "kid": "nope" }), &iss.claims()))
                .await
        ),
        "access_token_invalid_jws_signature"
    );
    assert_eq!(
        code(
            v.verify(&iss.sign(json!({ "alg": "RS256" }), &iss.claims()))
                .await
        ),
        "access_token_invalid_jws_signature"
    );
    // Garbage and size.
    for t in [
        "",
        "a",
        "a.b",
        "a.b.c",
        "a.b.c.d",
        "....",
        "\u{e9}.\u{e9}.\u{e9}",
    ] {
        assert_eq!(code(v.verify(t).await), "bad_access_token", "{t:?}");
    }
    let big = iss.rs(&with(
        iss.claims(),
        "pad",
        json!("x".repeat(MAX_TOKEN_BYTES)),
    ));
    assert_eq!(code(v.verify(&big).await), "bad_access_token");
}

#[tokio::test]
async fn unknown_kids_refetch_at_most_once_per_cooldown_and_rotation_is_picked_up() {
    let iss = Issuer::start().await;
    let v = iss.verifier(300).await;
    assert_eq!(iss.hits.load(Ordering::SeqCst), 1);
    for i in 0..50 {
        let t = iss.sign(
            json!({ "alg": "RS256", "kid": format!("made-up-{i}") }),
            &iss.claims(),
        );
        assert_eq!(
            code(v.verify(&t).await),
            "access_token_invalid_jws_signature"
        );
    }
    assert!(
        iss.hits.load(Ordering::SeqCst) <= 2,
        "{} fetches for 50 unknown kids",
        iss.hits.load(Ordering::SeqCst)
    );
    // Rotation: the issuer publishes the RSA key under a new kid and drops the old one.
    {
        let mut j = iss.jwks.lock().expect("jwks");
        j["keys"][0]["kid"] = json!("rsa-2");
    }
    tokio::time::sleep(Duration::from_millis(350)).await;
    let t = iss.sign(json!({ "alg": "RS256", "kid": "rsa-2" }), &iss.claims());
    assert!(
        v.verify(&t).await.is_ok(),
        "new key picked up without restart"
    );
    assert_eq!(
        code(v.verify(&iss.rs(&iss.claims())).await),
        "access_token_invalid_jws_signature",
        "withdrawn kid"
    );
}

#[tokio::test]
async fn an_unreachable_issuer_is_a_503_not_a_401_and_recovers() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let mut c = OidcConfig::new(&url, AUD).expect("config");
    c.jwks_cooldown = Duration::from_millis(0);
    let v = Verifier::new(c).await.expect("starts anyway");
    let t = format!(
        "{}.{}.{}",
        b64(br#"{"alg":"RS256","kid":"k"}"#),
        b64(b"{}"),
        b64(b"x")
    );
    let e = v.verify(&t).await.expect_err("no keys");
    assert!(matches!(e, AuthError::KeysUnavailable(_)), "{e:?}");
    assert_eq!(
        ApiError::from(e).status(),
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    );
}

#[test]
fn bearer_header_forms() {
    let h = |vals: &[&str]| {
        let mut m = HeaderMap::new();
        for v in vals {
            m.append(
                header::AUTHORIZATION,
                HeaderValue::from_str(v).expect("value"),
            );
        }
        m
    };
    assert_eq!(bearer(&h(&["Bearer abc"])).ok(), Some("abc"));
    assert_eq!(bearer(&h(&["bearer   abc "])).ok(), Some("abc"));
    assert_eq!(bearer(&h(&["BEARER abc"])).ok(), Some("abc"));
    assert_eq!(
        bearer(&h(&[])).map_err(|e| e.code()).err(),
        Some("authorization_not_found")
    );
    for bad in [
        &["Basic abc"][..],
        &["Bearer"],
        &["Bearer "],
        &["abc"],
        &["Bearer a", "Bearer b"],
    ] {
        assert_eq!(
            bearer(&h(bad)).map_err(|e| e.code()).err(),
            Some("bad_access_token"),
            "{bad:?}"
        );
    }
}

#[test]
fn roles_claim_paths() {
    let c: Map<String, Value> = serde_json::from_value(json!({
        "cern_roles": ["a", 3, "b"], "resource_access": { "dials": { "roles": ["r"] } }, "groups": "g"
    }))
    .expect("claims");
    assert_eq!(roles(&c, "cern_roles"), ["a", "b"]);
    assert_eq!(roles(&c, "resource_access.dials.roles"), ["r"]);
    assert_eq!(roles(&c, "groups"), ["g"]);
    assert!(roles(&c, "missing.path").is_empty());
}

#[test]
fn paths_are_classified_on_their_decoded_form() {
    assert_eq!(class("/"), Class::Public);
    assert_eq!(class("/ui/app.js"), Class::Public);
    assert_eq!(class("/runs/1/2"), Class::Public);
    assert_eq!(class("/api/v1/openapi.json"), Class::Public);
    assert_eq!(class("/api/v1/health/"), Class::Public);
    assert_eq!(class("/api/v1/workspaces/"), Class::Token);
    assert_eq!(class("/api/v1/workspaces/my-default/"), Class::Token);
    assert_eq!(class("/ui/api.js"), Class::Public);
    assert_eq!(class("/x/api/v1/th1/"), Class::Public);
    for p in [
        "/api/v1/th1/",
        "/api/v1/nope/",
        "/%61pi/v1/th1/",
        "/API/v1/run/",
        "/api/v1/openapi.json/",
        "//api/v1/th1/",
        "/api",
    ] {
        assert_eq!(class(p), Class::Data, "{p}");
    }
}

#[test]
fn workspace_header_is_settled_against_the_callers_set() {
    let all = Workspaces::from_json(r#"{"default":"a","workspaces":[{"name":"a","roles":["x"]},{"name":"Trk","roles":["t"]},{"name":"c","roles":["t"]}]}"#)
        .expect("config");
    let readable = vec!["Trk".to_string(), "c".to_string()];
    let h = |vals: &[&str]| {
        let mut m = HeaderMap::new();
        for v in vals {
            m.append("workspace", HeaderValue::from_str(v).expect("value"));
        }
        m
    };
    let st = |r: Result<String, ApiError>| r.map_err(|e| e.status().as_u16());
    assert_eq!(
        st(authorised_workspace(&all, &readable, &h(&[]))),
        Ok("Trk".into())
    );
    assert_eq!(
        st(authorised_workspace(&all, &readable, &h(&["trk"]))),
        Ok("Trk".into())
    );
    assert_eq!(
        st(authorised_workspace(&all, &readable, &h(&[" c "]))),
        Ok("c".into())
    );
    assert_eq!(
        st(authorised_workspace(&all, &readable, &h(&["c", "C"]))),
        Ok("c".into())
    );
    assert_eq!(
        st(authorised_workspace(&all, &readable, &h(&["a"]))),
        Err(403)
    );
    assert_eq!(
        st(authorised_workspace(&all, &readable, &h(&["c", "a"]))),
        Err(400)
    );
    assert_eq!(
        st(authorised_workspace(&all, &readable, &h(&["zzz"]))),
        Err(404)
    );
    assert_eq!(st(authorised_workspace(&all, &[], &h(&[]))), Err(403));
}

/// The cost of one verification (keys cached), printed: `cargo test ... verify_cost -- --ignored --nocapture`.
#[tokio::test]
#[ignore]
async fn verify_cost() {
    let iss = Issuer::start().await;
    let v = iss.verifier(10_000).await;
    for (name, tok) in [
        ("RS256", iss.rs(&iss.claims())),
        ("ES256", iss.es(&iss.claims())),
    ] {
        let mut t = Vec::new();
        for _ in 0..2000 {
            let s = std::time::Instant::now();
            v.verify(&tok).await.expect("valid");
            t.push(s.elapsed().as_secs_f64() * 1e6);
        }
        t.sort_by(f64::total_cmp);
        println!(
            "verify {name}: p50 {:.1} us, p90 {:.1} us",
            t[t.len() / 2],
            t[t.len() * 9 / 10]
        );
    }
}

#[test]
fn config_from_the_environment() {
    // The only test that touches these variables.
    let all = [
        ENV_MODE,
        ENV_ISSUER,
        ENV_AUDIENCE,
        ENV_ROLES_CLAIM,
        ENV_UI_CLIENT,
        ENV_LEEWAY,
        ENV_COOLDOWN,
    ];
    let clear = || all.iter().for_each(|k| std::env::remove_var(k));
    clear();
    assert!(OidcConfig::from_env().expect("off").is_none());
    std::env::set_var(ENV_MODE, "none");
    assert!(OidcConfig::from_env().expect("off").is_none());
    std::env::set_var(ENV_MODE, "oidc");
    assert!(OidcConfig::from_env().is_err(), "oidc without an issuer");
    std::env::set_var(ENV_ISSUER, "https://auth.cern.ch/auth/realms/cern/");
    assert!(OidcConfig::from_env().is_err(), "oidc without an audience");
    std::env::set_var(ENV_AUDIENCE, "cms-dials");
    let c = OidcConfig::from_env().expect("valid").expect("on");
    assert_eq!(
        (
            c.issuer.as_str(),
            c.audience.as_str(),
            c.roles_claim.as_str()
        ),
        (
            "https://auth.cern.ch/auth/realms/cern",
            "cms-dials",
            "cern_roles"
        )
    );
    assert_eq!(
        (c.leeway_secs, c.jwks_cooldown, c.ui_client_id.clone()),
        (DEFAULT_LEEWAY_SECS, DEFAULT_COOLDOWN, None)
    );
    std::env::set_var(ENV_ROLES_CLAIM, "resource_access.dials.roles");
    std::env::set_var(ENV_UI_CLIENT, "dials-ui");
    std::env::set_var(ENV_LEEWAY, "5");
    std::env::set_var(ENV_COOLDOWN, "250");
    let c = OidcConfig::from_env().expect("valid").expect("on");
    assert_eq!(
        (
            c.roles_claim.as_str(),
            c.ui_client_id.as_deref(),
            c.leeway_secs
        ),
        ("resource_access.dials.roles", Some("dials-ui"), 5)
    );
    assert_eq!(c.jwks_cooldown, Duration::from_millis(250));
    std::env::set_var(ENV_LEEWAY, "soon");
    assert!(OidcConfig::from_env().is_err());
    std::env::set_var(ENV_MODE, "maybe");
    assert!(OidcConfig::from_env().is_err());
    std::env::set_var(ENV_MODE, "oidc");
    std::env::set_var(ENV_LEEWAY, "5");
    std::env::set_var(ENV_ISSUER, "ftp://x");
    assert!(OidcConfig::from_env().is_err(), "issuer must be http(s)");
    clear();
}
