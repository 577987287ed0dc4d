"""Issue 12: `dials serve --auth oidc` against a local issuer (oidc_issuer.py): the real cmsdials
client with a bearer token reads its workspace and is refused another; an attack suite of broken
and forged tokens and headers gets 4xx only, never 5xx, and no body ever holds another
workspace's data; key rotation is picked up without a restart; schemathesis runs with a token."""

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cmsdials import Dials
from cmsdials.auth.client import AuthClient
from cmsdials.auth.client_credentials import Credentials as AppCredentials
from cmsdials.auth.device import Credentials
from cmsdials.filters import FileIndexFilters, LumisectionHistogram1DFilters

from conftest import dials_bin, free_port, serving
from oidc_issuer import AUDIENCE, Issuer, b64
from test_ui import browser  # noqa: F401  (the Chromium fixture)

TRACKER_ROLE = "cms-dqm-runregistry-offline-tracker-certifiers"
JETMET_ROLE = "cms-dqm-runregistry-offline-jme-certifiers"
ADMIN_ROLE = "cms-dqm-admins"
APP_GROUP = "dials-api-access-tracker"
# Only the jetmet workspace (and `all`) hold these: the JetMET0 dataset and the JetMET/ MEs.
JETMET_MARKERS = ("JetMET0", "JetMET/Jet/")
ROUTES = ["/api/v1/th1/", "/api/v1/th2/?page_size=3", "/api/v1/file-index/", "/api/v1/dataset-index/", "/api/v1/run/",
          "/api/v1/lumisection/", "/api/v1/mes/", "/api/v1/run/count/", "/api/v1/workspaces/", "/api/v1/workspaces/my-default/"]


@pytest.fixture(scope="module")
def issuer():
    with Issuer() as iss:
        yield iss


@pytest.fixture(scope="module")
def auth_server(lake, issuer, tmp_path_factory):
    """The session's lake served with token checks; the workspaces of conftest's config gain roles."""
    config = json.loads(Path(lake["config"]).read_text())
    roles = {"all": [ADMIN_ROLE], "tracker": [TRACKER_ROLE, APP_GROUP, ADMIN_ROLE], "jetmet": [JETMET_ROLE, ADMIN_ROLE]}
    for w in config["workspaces"]:
        w["roles"] = roles[w["name"]]
    path = tmp_path_factory.mktemp("auth") / "workspaces.json"
    path.write_text(json.dumps(config))
    env = dict(os.environ, DIALS_OIDC_JWKS_COOLDOWN_MS="300")
    with serving("--lake", lake["lake"], "--workspaces", path, "--auth", "oidc", "--issuer", issuer.url,
                 "--audience", AUDIENCE, "--ui-client-id", issuer.ui_client, env=env) as base:
        yield base


def raw(base, path, headers=()):
    """GET with exactly these header lines (duplicates and odd casing kept): (status, headers, text)."""
    u = urllib.parse.urlsplit(base)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    c.putrequest("GET", path, skip_accept_encoding=True)
    for k, v in headers:
        c.putheader(k, v)
    c.endheaders()
    r = c.getresponse()
    body = r.read().decode("utf-8", "replace")
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body


def bearer(tok):
    return [("Authorization", f"Bearer {tok}")]


def creds(token):
    """cmsdials's own device-flow credentials object holding a token (as after `Dials` login)."""
    now = datetime.now()
    return Credentials(token=token, expires_at=now + timedelta(minutes=5), expires_in=300,
                       refresh_expires_at=now + timedelta(minutes=30), refresh_expires_in=1800,
                       refresh_token="unused", token_type="Bearer", cache_dir=str(Path(os.environ.get("TMPDIR", "/tmp")) / "dials-creds"),
                       client=AuthClient())


def test_public_paths_need_no_token(auth_server, issuer):
    status, _, body = raw(auth_server, "/ui/auth-config.json")
    assert (status, json.loads(body)) == (200, {"enabled": True, "issuer": issuer.url, "client_id": "dials-ui", "scope": "openid"})
    for path, ctype in [("/api/v1/openapi.json", "application/json"), ("/api/v1/health/", "application/json"),
                        ("/", "text/html"), ("/ui/app.js", "text/javascript"), ("/runs/1/2", "text/html")]:
        status, h, _ = raw(auth_server, path)
        assert status == 200 and h["content-type"].startswith(ctype), (path, status)


def test_no_token_is_a_401_with_a_bearer_challenge(auth_server):
    for path in ROUTES + ["/api/v1/nope/", "/api/v1/th1/1/2/3/4/", "/%61pi/v1/th1/", "//api/v1/th1/", "/API/v1/th1/"]:
        status, h, body = raw(auth_server, path)
        assert status == 401, (path, status, body)
        assert h["www-authenticate"].startswith("Bearer"), h
        assert json.loads(body) == {"detail": "Authorization header not found.", "code": "authorization_not_found"}


def test_cmsdials_reads_its_workspace_and_is_refused_another(auth_server, issuer):
    tok = issuer.mint(roles=[TRACKER_ROLE])
    d = Dials(creds(tok), workspace="tracker", base_url=auth_server)
    files = d.file_index.list_all(FileIndexFilters(page_size=2)).results
    assert files and all("ZeroBias" in f.logical_file_name for f in files)
    mes = {h.me for h in d.h1d.list_all(LumisectionHistogram1DFilters(page_size=50)).results}
    assert mes and all(m.startswith("PixelPhase1/") for m in mes), mes
    # No workspace named: the caller's default (their first workspace), not the server's `all`.
    d0 = Dials(creds(tok), base_url=auth_server)
    assert {f.logical_file_name for f in d0.file_index.list_all(FileIndexFilters(page_size=10)).results} == {f.logical_file_name for f in files}
    other = Dials(creds(tok), workspace="jetmet", base_url=auth_server)
    with pytest.raises(Exception) as e:
        other.file_index.list(FileIndexFilters())
    assert "403" in str(e.value), e.value


def test_cmsdials_device_flow_login_against_the_issuer(auth_server, issuer, tmp_path):
    """A person's path in cmsdials 2.4.1, unmodified: device authorization on the public client, token
    exchange to the API's audience, the token cached in .cache/creds, then a refresh."""
    issuer.login_roles, issuer.login_user = [TRACKER_ROLE], "bob"
    client = AuthClient(keycloak_url=issuer.keycloak_url, realm="cern", client_id="cms-dials-public-app", audience=AUDIENCE)
    cache = tmp_path / ".cache"
    creds = Credentials.from_creds_file(cache_dir=str(cache), client=client)  # no file yet: the device flow (one 5 s poll)
    assert (cache / "creds").exists()
    assert Dials(creds, workspace="tracker", base_url=auth_server).file_index.list_all(FileIndexFilters(page_size=10)).results
    with pytest.raises(Exception) as e:
        Dials(creds, workspace="jetmet", base_url=auth_server).file_index.list(FileIndexFilters())
    assert "403" in str(e.value), e.value
    first = creds.token
    creds.refresh()  # refresh grant on the public client, exchanged again
    assert creds.token != first
    assert Dials(creds, workspace="tracker", base_url=auth_server).file_index.list(FileIndexFilters()).results
    # The public client's own token (before the exchange) is not meant for the API.
    status, _, body = raw(auth_server, "/api/v1/run/", bearer(next(iter(issuer.public_tokens))))
    assert (status, json.loads(body)["code"]) == (401, "token_not_valid"), body
    assert {"urn:ietf:params:oauth:grant-type:device_code", "urn:ietf:params:oauth:grant-type:token-exchange", "refresh_token"} <= set(issuer.grants)


def test_cmsdials_client_credentials_application(auth_server, issuer):
    """An application's path in cmsdials 2.4.1: client credentials at the api-access endpoint; DIALS
    accepts it only through the API access group (a role on the workspaces it may read)."""
    issuer.apps.update({"dqm-bot": ("s3cret", [APP_GROUP]), "other-bot": ("pw", [])})
    client = AuthClient(keycloak_url=issuer.keycloak_url, realm="cern", audience=AUDIENCE)
    bot = AppCredentials("dqm-bot", "s3cret", client=client)
    files = Dials(bot, workspace="tracker", base_url=auth_server).file_index.list_all(FileIndexFilters(page_size=10)).results
    assert files and all("ZeroBias" in f.logical_file_name for f in files)
    with pytest.raises(Exception) as e:
        Dials(bot, workspace="jetmet", base_url=auth_server).file_index.list(FileIndexFilters())
    assert "403" in str(e.value), e.value
    with pytest.raises(Exception) as e:
        Dials(AppCredentials("other-bot", "pw", client=client), base_url=auth_server).file_index.list(FileIndexFilters())
    assert "403" in str(e.value), e.value
    with pytest.raises(Exception):
        AppCredentials("dqm-bot", "wrong-secret", client=client)


def test_workspaces_endpoints_reflect_the_caller(auth_server, issuer):
    def ws(roles):
        _, _, a = raw(auth_server, "/api/v1/workspaces/", bearer(issuer.mint(roles=roles)))
        s, _, b = raw(auth_server, "/api/v1/workspaces/my-default/", bearer(issuer.mint(roles=roles)))
        return json.loads(a), s, json.loads(b)
    assert ws([TRACKER_ROLE]) == ({"workspaces": ["tracker"], "default": "tracker"}, 200, {"workspace": "tracker"})
    assert ws([JETMET_ROLE, "x"]) == ({"workspaces": ["jetmet"], "default": "jetmet"}, 200, {"workspace": "jetmet"})
    assert ws([ADMIN_ROLE])[0] == {"workspaces": ["all", "tracker", "jetmet"], "default": "all"}
    a, s, b = ws([])
    assert a == {"workspaces": [], "default": None} and s == 403 and b["code"] == "no_workspace"
    # A valid token without workspaces reads nothing.
    status, _, body = raw(auth_server, "/api/v1/file-index/", bearer(issuer.mint(roles=["unrelated"])))
    assert status == 403 and json.loads(body)["code"] == "no_workspace"


def test_application_tokens_need_the_api_access_group(auth_server, issuer):
    """Client-credentials tokens (no user): allowed through a role/group of the roles claim."""
    app = dict(sub="service-account-dqm-bot", azp="dqm-bot", preferred_username=None)
    status, _, body = raw(auth_server, "/api/v1/file-index/", bearer(issuer.mint(roles=[APP_GROUP], **app)))
    assert status == 200 and "ZeroBias" in body and "JetMET0" not in body
    status, _, body = raw(auth_server, "/api/v1/file-index/", bearer(issuer.mint(roles=[], **app)))
    assert status == 403
    status, _, _ = raw(auth_server, "/api/v1/file-index/", bearer(issuer.mint(**app)))  # no roles claim at all
    assert status == 403


def attacks(iss):
    """(name, header lines) a tracker-only caller (or nobody) might send, all aimed at jetmet."""
    good = iss.mint(roles=[TRACKER_ROLE])
    h, p, s = good.split(".")
    ws = ("Workspace", "jetmet")
    jet = [JETMET_ROLE]
    other = Issuer()  # same claims, keys this server does not trust
    try:
        forged_other_key = other.mint(roles=jet, kid="rsa-1", iss=iss.url)
    finally:
        other.close()
    tampered = ".".join([h, b64(json.dumps(iss.claims(jet)).encode()), s])
    return [
        ("no token", [ws]),
        ("empty bearer", [("Authorization", "Bearer "), ws]),
        ("basic scheme", [("Authorization", "Basic YTpi"), ws]),
        ("garbage", [("Authorization", "Bearer not.a.jwt"), ws]),
        ("two parts", [("Authorization", "Bearer " + h + "." + p), ws]),
        ("bad base64", [("Authorization", "Bearer %%%.%%%.%%%"), ws]),
        ("wrong signature (other issuer's key)", [("Authorization", "Bearer " + forged_other_key), ws]),
        ("tampered roles", [("Authorization", "Bearer " + tampered), ws]),
        ("expired", bearer(iss.mint(roles=jet, exp=int(time.time()) - 3600)) + [ws]),
        ("not yet valid", bearer(iss.mint(roles=jet, nbf=int(time.time()) + 3600)) + [ws]),
        ("nbf as a string", bearer(iss.mint(roles=jet, nbf=str(int(time.time()) + 3600))) + [ws]),
        ("exp as a string", bearer(iss.mint(roles=jet, exp="never")) + [ws]),
        ("no exp", bearer(iss.mint(roles=jet, exp=None)) + [ws]),
        ("wrong aud", bearer(iss.mint(roles=jet, aud="another-app")) + [ws]),
        ("no aud", bearer(iss.mint(roles=jet, aud=None)) + [ws]),
        ("wrong iss", bearer(iss.mint(roles=jet, iss="https://auth.cern.ch/auth/realms/cern")) + [ws]),
        ("alg none", bearer(iss.mint(roles=jet, alg="none")) + [ws]),
        ("alg none, kid kept", bearer(iss.mint(roles=jet, alg="none", kid="rsa-1")) + [ws]),
        ("HS256 keyed with the public key", bearer(iss.hs256_with_public_key(jet)) + [ws]),
        ("ES256 header on the RSA kid", bearer(iss.mint(roles=jet, alg="ES256", kid=next(iter(iss.rsa)))) + [ws]),
        ("embedded jwk header", bearer(iss.mint(roles=jet, header={"jwk": {"kty": "oct", "k": "AAAA"}})[:-8] + "AAAAAAAA") + [ws]),
        ("unknown kid", bearer(iss.mint(roles=jet, kid="kid-that-does-not-exist")) + [ws]),
        ("oversized", bearer(iss.mint(roles=jet, pad="x" * 20000)) + [ws]),
        ("huge header", [("Authorization", "Bearer " + "a" * 200_000), ws]),
        ("valid token, other workspace", bearer(good) + [ws]),
        ("valid token, other workspace in capitals", bearer(good) + [("WORKSPACE", "JETMET")]),
        ("valid token, two Workspace headers", bearer(good) + [("Workspace", "tracker"), ("workspace", "jetmet")]),
        ("valid token, workspace list", bearer(good) + [("Workspace", "tracker,jetmet")]),
        ("valid token, path-like workspace", bearer(good) + [("Workspace", "../jetmet")]),
        ("two Authorization headers", bearer(good) + [("authorization", "Bearer " + iss.mint(roles=jet)), ws]),
        ("lower-case header and scheme", [("authorization", "bearer " + good), ws]),
        ("valid token, tab in scheme", [("Authorization", "Bearer\t" + good), ws]),
    ]


def test_attack_suite_zero_5xx_and_no_data_of_another_workspace(auth_server, issuer):
    seen = {}
    for name, headers in attacks(issuer):
        for path in ROUTES:
            status, h, body = raw(auth_server, path, headers)
            seen.setdefault(name, set()).add(status)
            assert status < 500, (name, path, status, body[:300])
            assert status != 200 or path.startswith("/api/v1/workspaces/"), (name, path, status, body[:300])
            for m in JETMET_MARKERS:
                assert m not in body, (name, path, status, body[:300])
            if status == 401:
                assert h["www-authenticate"].startswith("Bearer") and set(json.loads(body)) == {"detail", "code"}, (name, body)
    # The expected refusals, by kind.
    codes = lambda name: seen[name]
    assert codes("no token") == {401}
    assert codes("expired") == {401} and codes("alg none") == {401} and codes("HS256 keyed with the public key") == {401}
    assert codes("valid token, other workspace")  >= {403}
    assert codes("valid token, two Workspace headers") >= {400}
    assert codes("huge header") <= {400, 401, 431}


def test_refusal_codes_are_dials(auth_server, issuer):
    jet = [JETMET_ROLE]
    cases = [
        (iss_tok, code) for iss_tok, code in [
            (issuer.mint(roles=jet, exp=int(time.time()) - 3600), "access_token_expired"),
            (issuer.mint(roles=jet, nbf=int(time.time()) + 3600), "access_token_not_yet_valid"),
            (issuer.mint(roles=jet, aud="x"), "token_not_valid"),
            (issuer.mint(roles=jet, iss="http://x"), "token_not_valid"),
            (issuer.mint(roles=jet, kid="nope"), "access_token_invalid_jws_signature"),
            (issuer.mint(roles=jet, alg="none"), "bad_access_token"),
            (issuer.hs256_with_public_key(jet), "bad_access_token"),
            ("x.y.z", "bad_access_token"),
        ]
    ]
    for tok, code in cases:
        status, h, body = raw(auth_server, "/api/v1/run/", bearer(tok))
        assert (status, json.loads(body)["code"]) == (401, code), body
        assert 'error="invalid_token"' in h["www-authenticate"]
    status, _, body = raw(auth_server, "/api/v1/run/", bearer(issuer.mint(roles=[TRACKER_ROLE])) + [("Workspace", "jetmet")])
    assert (status, json.loads(body)["code"]) == (403, "workspace_forbidden")
    status, _, body = raw(auth_server, "/api/v1/run/", bearer(issuer.mint(roles=[TRACKER_ROLE])) + [("Workspace", "nope")])
    assert status == 404


def test_tokens_of_both_key_types_and_header_spellings_work(auth_server, issuer):
    for headers in [bearer(issuer.mint(roles=[JETMET_ROLE])), bearer(issuer.mint(roles=[JETMET_ROLE], alg="ES256")),
                    [("authorization", "bearer " + issuer.mint(roles=[JETMET_ROLE]))],
                    [("AUTHORIZATION", "BEARER " + issuer.mint(roles=[JETMET_ROLE])), ("WORKSPACE", "JetMET")]]:
        status, h, body = raw(auth_server, "/api/v1/file-index/", headers)
        assert status == 200 and "JetMET0" in body and "ZeroBias" not in body, (status, body[:200])
        assert "authorization" in h["vary"].lower()


def test_etags_never_cross_workspaces(auth_server, issuer):
    """A tracker caller replaying jetmet's ETag gets a 403, not a 304 (nothing is revealed)."""
    jet = bearer(issuer.mint(roles=[JETMET_ROLE]))
    status, h, _ = raw(auth_server, "/api/v1/file-index/", jet)
    assert status == 200
    etag = h["etag"]
    status, _, _ = raw(auth_server, "/api/v1/file-index/", jet + [("If-None-Match", etag)])
    assert status == 304
    trk = bearer(issuer.mint(roles=[TRACKER_ROLE]))
    status, _, _ = raw(auth_server, "/api/v1/file-index/", trk + [("Workspace", "jetmet"), ("If-None-Match", etag)])
    assert status == 403
    status, h2, _ = raw(auth_server, "/api/v1/file-index/", trk + [("If-None-Match", etag)])
    assert status == 200 and h2["etag"] != etag


def test_key_rotation_is_picked_up_without_restart_and_unknown_kids_do_not_flood_the_issuer(auth_server, issuer):
    before = issuer.jwks_hits
    for i in range(30):
        status, _, _ = raw(auth_server, "/api/v1/run/", bearer(issuer.mint(roles=[TRACKER_ROLE], kid=f"made-up-{i}")))
        assert status == 401
    assert issuer.jwks_hits - before <= 2, f"{issuer.jwks_hits - before} JWKS fetches for 30 unknown kids"
    old = issuer.mint(roles=[TRACKER_ROLE])
    kid = issuer.rotate()
    time.sleep(0.4)  # the server's refetch cooldown in this test (DIALS_OIDC_JWKS_COOLDOWN_MS=300)
    status, _, body = raw(auth_server, "/api/v1/run/", bearer(issuer.mint(roles=[TRACKER_ROLE])))
    assert status == 200, body
    assert issuer.mint(roles=[TRACKER_ROLE]).count(".") == 2 and kid == next(iter(issuer.rsa))
    # The withdrawn key's tokens stop working once the new set is in.
    status, _, body = raw(auth_server, "/api/v1/run/", bearer(old))
    assert status == 401, body


def test_schemathesis_with_a_token_no_server_errors(auth_server, issuer):
    st = shutil.which("st") or str(Path(sys.executable).parent / "st")
    tok = issuer.mint(roles=[ADMIN_ROLE], exp=int(time.time()) + 3600)
    r = subprocess.run(
        [st, "run", f"{auth_server}/api/v1/openapi.json", "--url", auth_server, "--checks", "not_a_server_error",
         "-H", f"Authorization: Bearer {tok}", "--max-examples", "30", "--phases", "examples,fuzzing", "--seed", "20261203"],
        capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "No issues found" in r.stdout, r.stdout[-2000:]


def test_non_loopback_without_auth_warns_loudly(lake):
    port = free_port()
    p = subprocess.Popen([dials_bin(), "serve", "--lake", str(lake["lake"]), "--workspaces", str(lake["config"]),
                          "--listen", f"0.0.0.0:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
    finally:
        p.terminate()
        err = p.communicate(timeout=10)[1]
    assert "WITHOUT AUTHENTICATION" in err, err


def test_auth_oidc_needs_issuer_and_audience(lake):
    r = subprocess.run([dials_bin(), "serve", "--lake", str(lake["lake"]), "--auth", "oidc", "--listen", "127.0.0.1:0"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "--issuer" in r.stderr, r.stderr


def test_ui_signs_in_with_pkce_and_refuses_another_roles_workspace(auth_server, issuer, browser):  # noqa: F811
    issuer.login_roles, issuer.login_user = [TRACKER_ROLE], "trk-user"
    before = issuer.pkce_ok
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = ctx.new_page()
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    try:
        pg.goto(auth_server + "/runs")  # -> issuer's authorization endpoint -> back with a code -> token
        pg.wait_for_selector("main[data-state=ready]")
        assert issuer.pkce_ok == before + 1, "the token endpoint saw a matching PKCE verifier"
        assert pg.url == auth_server + "/runs?ws=tracker"
        assert pg.eval_on_selector_all("#ws option", "os => os.map(o => o.value)") == ["tracker"]
        assert pg.inner_text("#username") == "trk-user"
        rows = pg.inner_text("main")
        assert "ZeroBias" in rows and "JetMET0" not in rows
        # Another role's workspace, asked for in the URL: refused by the API, said so in the page.
        pg.goto(auth_server + "/runs?ws=jetmet")
        pg.wait_for_selector("main[data-state=ready]")
        text = pg.inner_text("main")
        assert "403" in text and "do not give access to workspace 'jetmet'" in text, text
        assert "JetMET0" not in pg.content()
        assert issuer.pkce_ok == before + 1, "the token was kept for the tab: no second sign-in"
        # Signing out forgets the token: the next page load signs in again.
        # Sign-out is asynchronous (it asks the provider for its end-session endpoint first), so the
        # old document stays "ready" for a while: wait for a new document that is ready.
        pg.evaluate("window.__before_signout = true")
        pg.click("#signout")
        pg.wait_for_function(
            "!window.__before_signout && document.querySelector('main[data-state=ready]') !== null"
        )
        assert issuer.pkce_ok == before + 2
    finally:
        ctx.close()
    assert not errors, errors
