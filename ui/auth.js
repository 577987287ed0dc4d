// Sign-in when the API wants bearer tokens (docs/auth.md): the OpenID Connect authorization-code flow
// with PKCE (S256) on a public client, as DIALS's UI does with Keycloak. The token lives in
// sessionStorage (this tab only) and goes out as `Authorization: Bearer` on every API call.
// With auth off (`/ui/auth-config.json` says so) nothing here runs.

const KEY = "dials.token";
const PENDING = "dials.signin";
let config = { enabled: false };
let token = null;

function b64url(bytes) {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function random(n) {
  const a = new Uint8Array(n);
  crypto.getRandomValues(a);
  return b64url(a);
}

async function s256(text) {
  return b64url(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text))));
}

/** The claims of a JWT (display only: the API verifies the token). */
function claims(jwt) {
  try {
    const p = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(decodeURIComponent(escape(atob(p))));
  } catch (_) {
    return {};
  }
}

async function discovery() {
  const r = await fetch(config.issuer.replace(/\/+$/, "") + "/.well-known/openid-configuration");
  if (!r.ok) throw new Error(`Sign-in: the identity provider answered ${r.status}`);
  return r.json();
}

const redirectUri = () => location.origin + "/";

/** The access token to send, if signed in and not about to expire. */
export function bearer() {
  return token && token.expires_at > Date.now() / 1000 + 5 ? token.access_token : null;
}

/** True when the API needs a token. */
export const enabled = () => config.enabled;

/** The signed-in person or application, for the header. */
export const user = () => (token ? token.user : null);

/** Starts the sign-in: to the provider's authorization endpoint, back to `/` with a code. */
export async function signIn() {
  const d = await discovery();
  const verifier = random(32);
  const state = random(16);
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state, back: location.pathname + location.search }));
  const q = new URLSearchParams({
    response_type: "code", client_id: config.client_id, redirect_uri: redirectUri(), scope: config.scope || "openid",
    state, code_challenge: await s256(verifier), code_challenge_method: "S256",
  });
  location.assign(d.authorization_endpoint + "?" + q);
}

/** Forgets the token (and ends the provider's session when it offers to). */
export async function signOut() {
  sessionStorage.removeItem(KEY);
  token = null;
  let end = null;
  try { end = (await discovery()).end_session_endpoint; } catch (_) { /* provider down: local sign-out only */ }
  location.assign(end ? end + "?" + new URLSearchParams({ client_id: config.client_id, post_logout_redirect_uri: redirectUri() }) : "/");
}

/** Finishes a sign-in (`?code=&state=` on the URL) or starts one. True when the page may render. */
export async function init() {
  try {
    config = await (await fetch("/ui/auth-config.json")).json();
  } catch (_) {
    config = { enabled: false };
  }
  if (!config.enabled) return true;
  if (!config.client_id) throw new Error("The API wants tokens but names no client for the web UI (--ui-client-id).");
  token = JSON.parse(sessionStorage.getItem(KEY) || "null");
  const q = new URLSearchParams(location.search);
  if (q.get("code") && q.get("state")) {
    const pending = JSON.parse(sessionStorage.getItem(PENDING) || "null");
    sessionStorage.removeItem(PENDING);
    if (!pending || pending.state !== q.get("state")) throw new Error("Sign-in failed: the answer does not match this tab's request (state).");
    const d = await discovery();
    const body = new URLSearchParams({
      grant_type: "authorization_code", code: q.get("code"), redirect_uri: redirectUri(),
      client_id: config.client_id, code_verifier: pending.verifier,
    });
    const r = await fetch(d.token_endpoint, { method: "POST", body });
    if (!r.ok) throw new Error(`Sign-in failed: the token endpoint answered ${r.status}`);
    const t = await r.json();
    const c = claims(t.access_token);
    token = {
      access_token: t.access_token,
      expires_at: c.exp || Date.now() / 1000 + (t.expires_in || 300),
      user: c.preferred_username || c.sub || "signed in",
    };
    sessionStorage.setItem(KEY, JSON.stringify(token));
    history.replaceState(null, "", pending.back);
    return true;
  }
  if (bearer()) return true;
  await signIn();
  return false;
}
