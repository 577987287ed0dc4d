"""The web UI in a real browser: headless Chromium (Debian package) driven by Playwright against
`dials serve` on the lake ingested from the ROOT-written fixtures. Walks the pages as a user does and
checks what is shown against the API (and so ROOT): table rows, plotted bin contents, axis ranges."""

import json
import os
import shutil
import urllib.request

import pytest
from playwright.sync_api import expect, sync_playwright

from conftest import expected_rows

ZB = "/ZeroBias/Run2024C-PromptReco-v1/DQMIO"
VAR_EDGES = "PixelPhase1/Tracks/PXBarrel/charge_PXLayer_2"  # TH1F with variable bin edges in the fixtures
CHROMIUM = os.environ.get("DIALS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def api(base, path, ws="all"):
    req = urllib.request.Request(base + "/api/v1/" + path, headers={"Workspace": ws})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


@pytest.fixture(scope="module")
def browser():
    assert os.path.exists(CHROMIUM), "install Chromium (apt-get install chromium; tests/run.sh does) or set DIALS_CHROMIUM"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = ctx.new_page()
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    ctx.close()
    assert not errors, f"JavaScript errors: {errors}"


def ready(page):
    page.wait_for_selector("main[data-state=ready]")


def table_rows(page, selector="table.grid"):
    return page.eval_on_selector(selector, "t => [...t.tBodies[0].rows].map(r => [...r.cells].map(c => c.textContent.trim()))")


def test_ui_is_served_at_root_and_spa_paths(server):
    for path in ["/", "/runs", "/runs/1/2", "/histograms-1d/1/2/3/4"]:
        with urllib.request.urlopen(server + path) as r:
            assert r.headers["Content-Type"].startswith("text/html")
            assert b'<script type="module" src="/ui/app.js">' in r.read()
    with urllib.request.urlopen(server + "/ui/plot.js") as r:
        assert r.headers["Content-Type"].startswith("text/javascript")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(server + "/api/v1/nope/")
    assert e.value.code == 404 and json.load(e.value) == {"detail": "Not found."}


def test_walk_runs_to_run_to_lumisection_to_histogram(server, page):
    page.goto(server + "/runs?ws=all")
    ready(page)
    want = api(server, "run/?page_size=20")["results"]
    assert table_rows(page) == [[r["dataset"], str(r["run_number"]), str(r["ls_count"])] for r in want]

    zb = next(r for r in want if r["dataset"] == ZB and r["run_number"] == 380310)
    page.click(f"a[href^='/runs/{zb['dataset_id']}/380310']")
    ready(page)
    assert page.url.startswith(f"{server}/runs/{zb['dataset_id']}/380310?ws=all")
    lumis = api(server, f"lumisection/?dataset_id={zb['dataset_id']}&run_number=380310&page_size=500")["results"]
    assert table_rows(page) == [[str(x["ls_number"]), str(x["th1_count"]), str(x["th2_count"])] for x in lumis]

    page.click("table.grid a >> text='1'")
    ready(page)
    assert "/lumisections/" in page.url
    th1 = api(server, f"th1/?dataset_id={zb['dataset_id']}&run_number=380310&ls_number=1&page_size=500")["results"]
    th2 = api(server, f"th2/?dataset_id={zb['dataset_id']}&run_number=380310&ls_number=1&page_size=500")["results"]
    # One card per histogram row (two ZeroBias files carry this lumisection), each drawn on screen.
    assert page.locator(".thumbs").nth(0).locator(".card").count() == len(th1)
    assert page.locator(".thumbs").nth(1).locator(".card").count() == len(th2)
    cards = page.eval_on_selector_all(".thumbs >> nth=0 >> .card", "cs => cs.map(c => c.dataset.me)")
    assert sorted(cards) == sorted(r["me"] for r in th1)
    expect(page.locator(".card .slot canvas").first).to_be_visible()
    assert page.get_by_text("LS 2 →").is_visible()
    page.keyboard.press("ArrowRight")  # next lumisection, and back
    page.wait_for_url("**/380310/2?**")
    ready(page)
    page.keyboard.press("ArrowLeft")
    page.wait_for_url("**/380310/1?**")
    ready(page)

    page.locator(f".card[data-me='{VAR_EDGES}']").first.click()
    ready(page)
    h = next(r for r in th1 if r["me"] == VAR_EDGES)
    root = expected_rows()[(380310, 1, VAR_EDGES)]
    expect(page.locator("h1")).to_have_text(f"{VAR_EDGES} – {h['entries']} entries")
    plotted = page.evaluate("document.getElementById('plot').plot")
    s = plotted["series"][0]
    # Plotted values = API values = ROOT's; the axis is the histogram's own, with its variable edges.
    assert s["values"] == h["data"] == root["data"]
    assert s["edges"] == root["x_edges"] == h["x_edges"]
    assert (s["underflow"], s["overflow"]) == (root["underflow"], root["overflow"])
    expect(page.locator("#stats")).to_contain_text(f"underflow {root['underflow']:g}")
    assert float(page.get_attribute("#plot", "data-x-min")) == h["x_min"] == root["x_min"]
    assert float(page.get_attribute("#plot", "data-x-max")) == h["x_max"] == root["x_max"]
    bins = table_rows(page, "#bins")
    assert [float(r[3]) for r in bins[1:-1]] == h["data"]
    assert [float(r[1]) for r in bins[1:-1]] == root["x_edges"][:-1]


def test_histogram_hover_shows_bin_range_and_content(server, page):
    h = api(server, "th1/?me=Hcal/DigiTask/SOI/depth/depth1&run_number=380310&ls_number=2")["results"][0]
    page.goto(f"{server}/histograms-1d/{h['dataset_id']}/380310/2/{h['me_id']}?ws=all")
    ready(page)
    box = page.locator("#plot canvas").bounding_box()
    left, right = 64 + 26, box["width"] - 12 - 26  # plot area inside the flow-bin strips
    k = 4  # the 5th bin: hover its centre
    width = (h["x_max"] - h["x_min"]) / h["x_bin"]
    x = left + (k + 0.5) / h["x_bin"] * (right - left)
    page.mouse.move(box["x"] + x, box["y"] + box["height"] / 2)
    tip = page.locator("#plot .tip")
    expect(tip).to_be_visible()
    text = tip.inner_text()
    # The bin's range on the real axis and its content, as JavaScript prints the plotted numbers.
    lo, hi, content = page.evaluate(f"(() => {{ const s = document.getElementById('plot').plot.series[0]; return [String(s.edges[{k}]), String(s.edges[{k + 1}]), String(s.values[{k}])]; }})()")
    assert f"bin {k + 1}: [{lo}, {hi})" in text
    assert f"content {content}" in text
    assert float(content) == h["data"][k]
    assert float(lo) == pytest.approx(h["x_min"] + k * width) and float(hi) == pytest.approx(h["x_min"] + (k + 1) * width)


def test_histogram_2d_page_and_log_toggle(server, page):
    h = api(server, "th2/?me=Hcal/DigiTask/Occupancy/depth/depth1&run_number=380310&ls_number=1")["results"][0]
    page.goto(f"{server}/histograms-2d/{h['dataset_id']}/380310/1/{h['me_id']}?ws=all")
    ready(page)
    p = page.evaluate("(() => { const p = document.getElementById('plot').plot; return {data: p.data, xe: p.xe, ye: p.ye}; })()")
    assert p["data"] == h["data"]
    assert (p["xe"][0], p["xe"][-1], len(p["xe"]) - 1) == (h["x_min"], h["x_max"], h["x_bin"])
    assert (p["ye"][0], p["ye"][-1], len(p["ye"]) - 1) == (h["y_min"], h["y_max"], h["y_bin"])
    page.check("input[name=log]")
    assert "log=1" in page.url
    page.reload()
    ready(page)
    assert page.is_checked("input[name=log]")


def test_overlay_and_run_view(server, page):
    h = api(server, f"th1/?me={VAR_EDGES}&run_number=380310&ls_number=1")["results"][0]
    page.goto(f"{server}/histograms-1d/{h['dataset_id']}/380310/1/{h['me_id']}?ws=all&cmp=380310:2,380311:*")
    ready(page)
    page.wait_for_function("document.getElementById('plot').plot.series.length === 3")
    s = page.evaluate("document.getElementById('plot').plot.series")
    ls2 = api(server, f"th1/{h['dataset_id']}/380310/2/{h['me_id']}/")
    assert s[1]["values"] == ls2["data"]
    run = api(server, f"th1/?dataset_id={h['dataset_id']}&run_number=380311&me_id={h['me_id']}&file_id={h['file_id']}&page_size=500")["results"]
    assert s[2]["values"] == [sum(r["data"][i] for r in run) for i in range(h["x_bin"])]

    page.click("text=run view of this ME")
    ready(page)
    heat = page.evaluate("(() => { const p = document.getElementById('heat').plot; return {data: p.data, ye: p.ye}; })()")
    rows = api(server, f"th1/?dataset_id={h['dataset_id']}&run_number=380310&me_id={h['me_id']}&file_id={h['file_id']}&page_size=500")["results"]
    assert heat["data"] == [r["data"] for r in sorted(rows, key=lambda r: r["ls_number"])]
    trend = page.evaluate("document.getElementById('trend').plot.series[0].values")
    assert trend == [r["entries"] for r in sorted(rows, key=lambda r: r["ls_number"])]
    means = page.evaluate("document.getElementById('mean').plot.series[0].values")
    for r, mean in zip(sorted(rows, key=lambda r: r["ls_number"]), means):
        edges = r["x_edges"]
        centres = [(a + b) / 2 for a, b in zip(edges, edges[1:])]
        assert mean == pytest.approx(sum(w * c for w, c in zip(r["data"], centres)) / sum(r["data"]))


def test_filters_match_api_rows(server, page):
    page.goto(server + "/histograms-1d?ws=all")
    ready(page)
    page.fill("input[name=me__regex]", "Tracks")
    page.fill("input[name=run_number]", "380311")
    page.fill("input[name=entries__gte]", "1")
    page.click("form.filters button[type=submit]")
    ready(page)
    assert "me__regex=Tracks" in page.url and "run_number=380311" in page.url
    want = api(server, "th1/?me__regex=Tracks&run_number=380311&entries__gte=1&page_size=20")["results"]
    assert want
    rows = table_rows(page)
    assert [(r[1], r[2], r[3], r[4], r[5]) for r in rows] == [(w["dataset"], str(w["run_number"]), str(w["ls_number"]), w["me"], str(w["entries"])) for w in want]

    page.goto(server + "/file-index?ws=all&status=ROOTFILE_ERROR")
    ready(page)
    rows = table_rows(page)
    assert len(rows) == 1 and rows[0][5] == "ROOTFILE_ERROR" and "truncated" in rows[0][6]


def test_workspace_switch_and_deep_link_reload(server, page):
    page.goto(server + "/runs")
    ready(page)
    assert "ws=all" in page.url  # the default workspace is written into the URL
    page.select_option("#ws", "jetmet")
    page.wait_for_url("**ws=jetmet**")
    ready(page)
    want = api(server, "run/?page_size=20", ws="jetmet")["results"]
    assert table_rows(page) == [[r["dataset"], str(r["run_number"]), str(r["ls_count"])] for r in want]
    assert all(r["dataset"].startswith("/JetMET0/") for r in want)

    h = api(server, "th1/?run_number=380311&ls_number=3", ws="tracker")["results"][0]
    url = f"{server}/histograms-1d/{h['dataset_id']}/380311/3/{h['me_id']}?ws=tracker"
    page.goto(url)
    ready(page)
    page.reload()
    ready(page)
    expect(page.locator("h1")).to_have_text(f"{h['me']} – {h['entries']} entries")
    assert page.evaluate("document.getElementById('plot').plot.series[0].values") == h["data"]


def test_errors_are_messages(server, page):
    page.goto(server + "/runs/1/999?ws=all")
    ready(page)
    expect(page.locator(".error")).to_contain_text("Run 999")
    page.goto(server + "/runs?ws=nosuch")
    ready(page)
    expect(page.locator(".error")).to_contain_text("nosuch")
    page.goto(server + "/runs?ws=all&run_number=1")
    ready(page)
    expect(page.locator(".note")).to_contain_text("No runs match")
    page.goto(server + "/no/such/page")
    ready(page)
    expect(page.locator(".error")).to_contain_text("No page")
    page.route("**/api/v1/**", lambda route: route.abort())
    page.goto(server + "/overview?ws=all")
    ready(page)
    expect(page.locator(".error")).to_contain_text("Cannot reach the API")


def test_overview_and_browser(server, page):
    page.goto(server + "/overview?ws=all")
    ready(page)
    assert page.inner_text("[data-count=files]") == str(api(server, "file-index/count/")["count"])
    assert page.inner_text("[data-count=runs]") == str(api(server, "run/count/")["count"])
    assert page.get_attribute(".bar[data-label=ROOTFILE_ERROR]", "data-n") == "1"

    ds = api(server, f"dataset-index/?dataset={ZB}")["results"][0]["dataset_id"]
    page.goto(f"{server}/browser?ws=all&dataset_id={ds}&run=380310&ls=1")
    ready(page)
    page.click(".folders a >> text=PixelPhase1")
    ready(page)
    assert "path=PixelPhase1" in page.url
    page.click(".folders a >> text=Tracks")
    page.click(".folders a >> text=PXBarrel")
    ready(page)
    expect(page.locator(f".card[data-me='{VAR_EDGES}']")).to_be_visible()


def test_arrow_reader_equals_json(server, page):
    page.goto(server + "/?ws=all")
    ready(page)
    for kind in ("th1", "th2"):
        got = page.evaluate(
            "k => import('/ui/api.js').then(m => m.bulk(k + '/', {run_number: 380310, ls_number: 2})).then(rs => rs.map(r =>"
            " Object.fromEntries(Object.entries(r).map(([n, v]) => [n, ArrayBuffer.isView(v) ? Array.from(v)"
            " : Array.isArray(v) ? v.map(x => x !== null && typeof x === 'object' ? Array.from(x) : x) : v]))))", kind)
        want = api(server, f"{kind}/?run_number=380310&ls_number=2&page_size=500")["results"]
        assert got == want
