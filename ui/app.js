// The DIALS single-page app: router (DIALS v1.12's paths), navigation, workspace switcher.
import * as api from "./api.js";
import * as auth from "./auth.js";
import { h, errorBox, href, setNavigate, setWs, getWs } from "./dom.js";
import * as pages from "./pages.js";
import * as views from "./views.js";

const N = "(\\d+)";
/** [path pattern, page(main, match, ctx)] — DIALS's paths, so links people kept still work. */
const ROUTES = [
  [/^\/$/, pages.home],
  [/^\/overview$/, pages.overview],
  [/^\/file-index$/, pages.fileIndex],
  [/^\/runs$/, pages.runs],
  [new RegExp(`^/runs/${N}/${N}$`), views.run],
  [new RegExp(`^/runs/${N}/${N}/me/${N}$`), views.runView],
  [/^\/lumisections$/, pages.lumisections],
  [new RegExp(`^/lumisections/${N}/${N}/${N}$`), views.lumisection],
  [/^\/histograms-([12])d$/, pages.histograms],
  [new RegExp(`^/histograms-([12])d/${N}/${N}/${N}/${N}$`), views.histogram],
  [/^\/browser$/, views.browser],
  [/^\/predictions$/, pages.predictions],
];

const NAV = [
  ["/overview", "Overview"],
  ["/browser", "Browser"],
  ["/file-index", "Files"],
  ["/runs", "Runs"],
  ["/lumisections", "Lumisections"],
  ["/histograms-1d", "Histograms 1D"],
  ["/histograms-2d", "Histograms 2D"],
  ["/predictions", "Predictions"],
];

const main = document.getElementById("main");
const wsSelect = document.getElementById("ws");
let controller = null;
let serial = 0;

function drawNav() {
  const nav = document.getElementById("nav");
  nav.replaceChildren(...NAV.map(([p, t]) => h("a", { href: href(p), class: location.pathname === p || location.pathname.startsWith(p + "/") ? "on" : null }, t)));
}

/** Renders the page of the current URL. */
async function render() {
  controller?.abort();
  controller = new AbortController();
  api.setSignal(controller.signal);
  const id = ++serial;
  const params = new URLSearchParams(location.search);
  const ws = params.get("ws") || "";
  setWs(ws);
  api.setWorkspace(ws);
  if (ws && wsSelect.value !== ws) wsSelect.value = ws;
  drawNav();
  const path = location.pathname.replace(/\/+$/, "") || "/";
  const ctx = { params, alive: () => id === serial };
  main.replaceChildren();
  main.dataset.state = "loading";
  for (const [re, page] of ROUTES) {
    const m = path.match(re);
    if (!m) continue;
    try {
      await page(main, m.slice(1), ctx);
    } catch (e) {
      if (e.name === "AbortError" || !ctx.alive()) return;
      console.error(e);
      main.append(errorBox(e));
    }
    if (ctx.alive()) main.dataset.state = "ready";
    return;
  }
  main.append(h("h1", {}, "Page not found"), errorBox({ status: 404, message: `No page at ${path}. Use the menu above.` }));
  main.dataset.state = "ready";
}

function navigate(url, replace) {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  window.scrollTo(0, 0);
  render();
}
setNavigate(navigate);

// In-app links: same origin, not the API, no modifier keys → no reload.
document.addEventListener("click", (e) => {
  const a = e.target.closest("a");
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || a.target || a.hasAttribute("download")) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith("/api/") || url.pathname.startsWith("/ui/")) return;
  e.preventDefault();
  navigate(url.pathname + url.search);
});
window.addEventListener("popstate", render);

// ← / → step to the previous / next lumisection on pages that have them.
document.addEventListener("keydown", (e) => {
  if (e.altKey || e.ctrlKey || e.metaKey || /^(INPUT|SELECT|TEXTAREA)$/.test(document.activeElement?.tagName)) return;
  const dir = { ArrowLeft: "←", ArrowRight: "→" }[e.key];
  const a = dir && [...document.querySelectorAll(".prevnext a")].find((x) => x.textContent.includes(dir));
  if (a) { e.preventDefault(); a.click(); }
});

wsSelect.addEventListener("change", () => {
  const q = new URLSearchParams(location.search);
  q.set("ws", wsSelect.value);
  q.delete("next_token");
  navigate(location.pathname + "?" + q);
});

/** Who is signed in, and a way out (auth on only). */
function drawUser() {
  const box = document.getElementById("user");
  if (!auth.enabled()) return;
  const out = h("a", { href: "#", id: "signout" }, "Sign out");
  out.addEventListener("click", (e) => { e.preventDefault(); auth.signOut(); });
  box.replaceChildren(h("span", { id: "username" }, auth.user() || ""), " ", out);
}

async function boot() {
  try {
    if (!(await auth.init())) return; // on the way to the identity provider
  } catch (e) {
    main.replaceChildren(h("h1", {}, "Sign-in"), errorBox(e));
    main.dataset.state = "ready";
    return;
  }
  drawUser();
  try {
    const w = await api.get("workspaces/");
    const current = new URLSearchParams(location.search).get("ws") || w.default;
    const names = w.workspaces.includes(current) ? w.workspaces : [...w.workspaces, current];
    wsSelect.replaceChildren(...names.map((n) => h("option", { value: n, selected: n === current }, n + (n === w.default ? " (default)" : ""))));
    // The workspace is always in the URL, so a copied link opens the same data.
    if (!new URLSearchParams(location.search).get("ws")) {
      const q = new URLSearchParams(location.search);
      q.set("ws", current);
      history.replaceState(null, "", location.pathname + "?" + q);
    }
  } catch (e) {
    wsSelect.replaceChildren(h("option", {}, getWs() || "?"));
  }
  render();
}
boot();
