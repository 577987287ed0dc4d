"""A local OpenID Connect issuer for the tests: keys generated per run (RSA 2048 + EC P-256), the
discovery document and JWKS served on loopback, tokens minted here with any claims (and any flaw).
No external identity provider, no JWT library: signing is `cryptography`, encoding by hand, so a
test can also build what a library would refuse to (alg none, HS256 keyed with a public key).

    with Issuer() as iss:
        tok = iss.mint(roles=["trk"])                 # RS256, kid rsa-1, valid 5 min
        tok = iss.mint(roles=["trk"], alg="ES256")    # EC key
        iss.rotate()                                  # new RSA key (new kid), old one withdrawn

For a browser: an authorization endpoint that signs in `login_roles` at once (no login form) and a
token endpoint that checks the PKCE verifier (S256) before it hands out a token; both answer CORS.
For cmsdials's `AuthClient` (keycloak_url = `iss.keycloak_url`, realm `cern`), Keycloak's endpoints as
that client calls them: the device authorization grant (approved at once, as `login_roles`), token
exchange to the API audience, refresh, and client credentials at `api-access/token` (`apps`).
"""

import base64
import hashlib
import hmac
import json
import threading
import secrets
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

AUDIENCE = "dials-api"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int(i: int, size: int | None = None) -> str:
    return b64(i.to_bytes(size or (i.bit_length() + 7) // 8, "big"))


class Issuer:
    """The issuer; `url` is its `iss`. Counts JWKS fetches in `jwks_hits`."""

    def __init__(self, audience: str = AUDIENCE):
        self.audience = audience
        self.jwks_hits = 0
        self._n = 1
        # Browser sign-in: who "logs in" at the authorization endpoint, the codes given out, the
        # token requests whose PKCE verifier matched.
        self.ui_client = "dials-ui"
        self.login_roles = []
        self.login_user = "alice"
        self.codes = {}
        self.pkce_ok = 0
        # cmsdials: device codes, public-client tokens we issued (exchangeable), applications.
        self.devices = {}
        self.public_tokens = set()
        self.refresh_tokens = {}
        self.apps = {}  # client_id -> (secret, roles)
        self.grants = []
        self.rsa = {"rsa-1": rsa.generate_private_key(public_exponent=65537, key_size=2048)}
        self.ec = {"ec-1": ec.generate_private_key(ec.SECP256R1())}
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, status, body=None, headers=()):
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Access-Control-Allow-Origin", "*")
                if body is not None:
                    self.send_header("Content-Type", "application/json")
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_OPTIONS(self):
                self._send(204, headers=[("Access-Control-Allow-Methods", "GET, POST"), ("Access-Control-Allow-Headers", "Content-Type")])

            def do_GET(self):
                path, _, query = self.path.partition("?")
                if path == "/.well-known/openid-configuration":
                    p = issuer.url + "/protocol/openid-connect"
                    self._send(200, {"issuer": issuer.url, "jwks_uri": p + "/certs", "authorization_endpoint": p + "/auth",
                                     "token_endpoint": p + "/token", "code_challenge_methods_supported": ["S256"]})
                elif path == "/protocol/openid-connect/certs":
                    issuer.jwks_hits += 1
                    self._send(200, issuer.jwks())
                elif path == "/protocol/openid-connect/auth":
                    q = dict(urllib.parse.parse_qsl(query))
                    ok = (q.get("response_type") == "code" and q.get("client_id") == issuer.ui_client
                          and q.get("code_challenge_method") == "S256" and q.get("code_challenge") and q.get("redirect_uri"))
                    if not ok:
                        self._send(400, {"error": "invalid_request"})
                        return
                    code = secrets.token_urlsafe(16)
                    issuer.codes[code] = q
                    back = q["redirect_uri"] + "?" + urllib.parse.urlencode({"code": code, "state": q.get("state", "")})
                    self._send(302, headers=[("Location", back)])
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self):
                form = dict(urllib.parse.parse_qsl(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()))
                if self.path == "/protocol/openid-connect/auth/device":
                    code = secrets.token_urlsafe(16)
                    issuer.devices[code] = (list(issuer.login_roles), issuer.login_user)  # approved at once
                    self._send(200, {"device_code": code, "verification_uri_complete": issuer.url + "/device?code=" + code, "expires_in": 600})
                elif self.path == "/api-access/token":
                    app = issuer.apps.get(form.get("client_id"))
                    if form.get("grant_type") != "client_credentials" or app is None or app[0] != form.get("client_secret"):
                        self._send(401, {"error": "unauthorized_client"})
                        return
                    issuer.grants.append("client_credentials")
                    tok = issuer.mint(roles=app[1], sub="service-account-" + form["client_id"], azp=form["client_id"],
                                      preferred_username=None, aud=form.get("audience") or issuer.audience)
                    self._send(200, {"access_token": tok, "token_type": "Bearer", "expires_in": 300})
                elif self.path == "/protocol/openid-connect/token":
                    self._token(form)
                else:
                    self._send(404, {"error": "not found"})

            def _public(self, client_id, roles, user):
                """A token of the public client (its own audience, not the API's), with a refresh token."""
                tok = issuer.mint(roles=roles, sub=user, preferred_username=user, azp=client_id, aud=client_id)
                issuer.public_tokens.add(tok)
                refresh = secrets.token_urlsafe(16)
                issuer.refresh_tokens[refresh] = (roles, user)
                self._send(200, {"access_token": tok, "token_type": "Bearer", "expires_in": 300,
                                 "refresh_token": refresh, "refresh_expires_in": 1800})

            def _token(self, form):
                grant = form.get("grant_type")
                issuer.grants.append(grant)
                if grant == "authorization_code":
                    req = issuer.codes.pop(form.get("code", ""), None)  # a code is good once
                    verifier = form.get("code_verifier", "")
                    if (req is None or form.get("client_id") != req["client_id"] or form.get("redirect_uri") != req["redirect_uri"]
                            or b64(hashlib.sha256(verifier.encode()).digest()) != req["code_challenge"]):
                        self._send(400, {"error": "invalid_grant"})
                        return
                    issuer.pkce_ok += 1
                    tok = issuer.mint(roles=issuer.login_roles, sub=issuer.login_user, preferred_username=issuer.login_user, azp=req["client_id"])
                    self._send(200, {"access_token": tok, "token_type": "Bearer", "expires_in": 300})
                elif grant == "urn:ietf:params:oauth:grant-type:device_code":
                    dev = issuer.devices.pop(form.get("device_code", ""), None)
                    if dev is None:
                        self._send(400, {"error": "invalid_grant"})
                        return
                    self._public(form.get("client_id"), *dev)
                elif grant == "refresh_token":
                    r = issuer.refresh_tokens.pop(form.get("refresh_token", ""), None)
                    if r is None:
                        self._send(400, {"error": "invalid_grant"})
                        return
                    self._public(form.get("client_id"), *r)
                elif grant == "urn:ietf:params:oauth:grant-type:token-exchange":
                    sub = form.get("subject_token", "")
                    if sub not in issuer.public_tokens:
                        self._send(400, {"error": "invalid_grant"})
                        return
                    claims = json.loads(base64.urlsafe_b64decode(sub.split(".")[1] + "=="))
                    tok = issuer.mint(claims=dict(claims, aud=form.get("audience"), iat=int(time.time()), exp=int(time.time()) + 300))
                    self._send(200, {"access_token": tok, "token_type": "Bearer", "expires_in": 300})
                else:
                    self._send(400, {"error": "unsupported_grant_type"})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.keycloak_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.url = self.keycloak_url + "realms/cern"
        # The realm path is part of the issuer, as on Keycloak.
        for m in ("do_GET", "do_POST", "do_OPTIONS"):
            setattr(Handler, m, _strip_prefix(getattr(Handler, m), "/realms/cern"))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def jwks(self) -> dict:
        keys = []
        for kid, k in self.rsa.items():
            n = k.public_key().public_numbers()
            keys.append({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": _int(n.n), "e": _int(n.e)})
        for kid, k in self.ec.items():
            n = k.public_key().public_numbers()
            keys.append({"kty": "EC", "kid": kid, "use": "sig", "crv": "P-256", "x": _int(n.x, 32), "y": _int(n.y, 32)})
        return {"keys": keys}

    def rotate(self) -> str:
        """A new RSA signing key replaces the current ones; returns its kid."""
        self._n += 1
        kid = f"rsa-{self._n}"
        self.rsa = {kid: rsa.generate_private_key(public_exponent=65537, key_size=2048)}
        return kid

    def claims(self, roles=None, **over) -> dict:
        now = int(time.time())
        c = {"iss": self.url, "aud": self.audience, "sub": "alice", "azp": "cms-dials-public-app", "typ": "Bearer",
             "iat": now, "exp": now + 300, "preferred_username": "alice", "jti": secrets.token_hex(8)}
        if roles is not None:
            c["cern_roles"] = roles
        c.update(over)
        return {k: v for k, v in c.items() if v is not None}

    def mint(self, roles=None, *, alg="RS256", kid=None, claims=None, header=None, **over) -> str:
        """A compact JWS. `claims` replaces the default claims; `over` edits them (None removes one)."""
        body = claims if claims is not None else self.claims(roles, **over)
        if kid is None:
            kid = next(iter(self.rsa)) if alg == "RS256" else next(iter(self.ec)) if alg == "ES256" else None
        head = {"alg": alg, "typ": "JWT", **({"kid": kid} if kid else {}), **(header or {})}
        msg = f"{b64(json.dumps(head).encode())}.{b64(json.dumps(body).encode())}".encode()
        return msg.decode() + "." + b64(self.sign(alg, kid, msg))

    def sign(self, alg: str, kid: str | None, msg: bytes) -> bytes:
        if alg == "RS256":
            key = self.rsa.get(kid) or next(iter(self.rsa.values()))
            return key.sign(msg, padding.PKCS1v15(), hashes.SHA256())
        if alg == "ES256":
            key = self.ec.get(kid) or next(iter(self.ec.values()))
            r, s = decode_dss_signature(key.sign(msg, ec.ECDSA(hashes.SHA256())))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        if alg == "none":
            return b""
        raise ValueError(alg)

    def hs256_with_public_key(self, roles) -> str:
        """The algorithm-confusion forgery: HS256 keyed with the RSA key's public JWK modulus and with its PEM."""
        from cryptography.hazmat.primitives import serialization

        kid = next(iter(self.rsa))
        pem = self.rsa[kid].public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        head = {"alg": "HS256", "typ": "JWT", "kid": kid}
        msg = f"{b64(json.dumps(head).encode())}.{b64(json.dumps(self.claims(roles)).encode())}".encode()
        return msg.decode() + "." + b64(hmac.new(pem, msg, hashlib.sha256).digest())


def _strip_prefix(handler, prefix):
    def wrapped(self):
        if self.path.startswith(prefix):
            self.path = self.path[len(prefix):]
            return handler(self)
        self.send_error(404)
    return wrapped
