"""Every kind of monitoring element through the lake and the API (issue 13): TH3F, TProfile,
TProfile2D, Int/Float/String scalars, per-run elements (the `_run` twin tables) and bin labels.

Every value is compared bit for bit (doubles by their IEEE bytes, so -0.0 is not 0.0) with what ROOT
itself reports for the fixture: `small_zlib.lake.expected.jsonl`, written by `dump_root.py
--profile-sums` (GetBinContent, GetBinEntries, TArrayD::GetAt for the profiles' sums, the scalars'
values, GetBinLowEdge, the axes' label lists)."""

import io
import json
import math
import struct
import urllib.error
import urllib.parse
import urllib.request

import duckdb
import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from conftest import FIXTURES

ZB = "/ZeroBias/Run2024C-PromptReco-v1/DQMIO"

TABLE_OF = {
    "TH1F": "th1", "TH1S": "th1", "TH1D": "th1", "TH1I": "th1",
    "TH2F": "th2", "TH2S": "th2", "TH2D": "th2", "TH2I": "th2",
    "TH3F": "th3", "TProfile": "profile1d", "TProfile2D": "profile2d",
    "Int": "scalar", "Float": "scalar", "String": "scalar",
}
NEW_TABLES = ["th3", "profile1d", "profile2d", "scalar"]
DIM = {"th1": 1, "th2": 2, "th3": 3, "profile1d": 1, "profile2d": 2, "scalar": 0}


def oracle():
    """(table name incl. `_run`, run, ls, me, kind) -> ROOT's record."""
    out = {}
    for line in (FIXTURES / "small_zlib.lake.expected.jsonl").read_text().splitlines():
        r = json.loads(line)
        table = TABLE_OF[r["kind"]] + ("_run" if r["ls_number"] == 0 else "")
        out[(table, r["run_number"], r["ls_number"], r["me"], r["kind"])] = r
    return out


def same(a, b):
    """Bit-for-bit equality of JSON-like values (ROOT's null = NaN/inf, which JSON cannot hold)."""
    if isinstance(a, float) or isinstance(b, float):
        if b is None:
            return a is None or (isinstance(a, float) and not math.isfinite(a))
        if a is None or isinstance(a, (str, list)) or isinstance(b, (str, list)):
            return False
        return struct.pack("<d", float(a)) == struct.pack("<d", float(b))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def labels(rec, axis, nbins):
    """ROOT's {"bin": label} as the lake's list (item i = bin i+1, null where unlabelled), or None."""
    got = rec.get(f"{axis}_labels")
    if not got:
        return None
    out = [None] * nbins
    for bin_, label in got.items():
        out[int(bin_) - 1] = label
    return out


def expected_columns(table, rec):
    """The lake's columns of `table` for ROOT's record (the ones the lake and the API share)."""
    base = table.removesuffix("_run")
    if base == "scalar":
        v = rec["value"]
        return {"kind": rec["kind"], "flags": rec["flags"],
                "value_int": v if rec["kind"] == "Int" else None,
                "value_float": v if rec["kind"] == "Float" else None,
                "value_string": v if rec["kind"] == "String" else None}
    dim = DIM[base]
    cols = {"kind": rec["kind"], "flags": rec["flags"], "entries": rec["entries"], "data": rec["data"]}
    for axis in "xyz"[:dim]:
        for k in ("min", "max", "bin"):
            cols[f"{axis}_{k}"] = rec[f"{axis}_{k}"]
        cols[f"{axis}_edges"] = rec.get(f"{axis}_edges")
        cols[f"{axis}_labels"] = labels(rec, axis, rec[f"{axis}_bin"])
    if dim == 1:
        cols["underflow"], cols["overflow"] = rec["underflow"], rec["overflow"]
    if base.startswith("profile"):
        cols["bin_entries"] = rec["bin_entries"]
        cols["bin_sums"] = rec["bin_sums"]
        cols["sumw2"] = rec.get("sumw2")
    return cols


def check_rows(table, rows, copies=2, api=False):
    """rows: dicts of one table (ZeroBias only); every ROOT record of that table `copies` times."""
    want = {k: v for k, v in oracle().items() if k[0] == table}
    assert want, f"the fixture has no {table} rows"
    seen = {}
    for r in rows:
        key = (table, int(r["run_number"]), int(r["ls_number"]), r["me"], r["kind"])
        assert key in want, f"unexpected row {key}"
        seen[key] = seen.get(key, 0) + 1
        for col, v in expected_columns(table, want[key]).items():
            if api and col == "flags" and table.removesuffix("_run") in ("th1", "th2"):
                continue  # th1/th2 responses keep DIALS's keys (flags is lake-only there)
            got = r[col]
            if hasattr(got, "tolist"):
                got = got.tolist()
            assert same(got, v), f"{key} {col}: lake {got!r} != ROOT {v!r}"
    assert set(seen) == set(want), f"{table}: missing {sorted(set(want) - set(seen))[:3]}"
    assert set(seen.values()) == {copies}


def path(lake, table, ws="all"):
    return f"{lake['lake']}/{ws}/{table}"


ALL_TABLES = [t + s for t in ["th1", "th2", *NEW_TABLES] for s in ("", "_run")]


@pytest.mark.parametrize("table", ALL_TABLES)
def test_pyarrow(lake, table):
    dt = DeltaTable(path(lake, table))
    assert dt.metadata().partition_columns == ["run_number"]
    rows = [r for r in dt.to_pyarrow_table().to_pylist() if r["dataset"] == ZB]
    check_rows(table, rows)


@pytest.mark.parametrize("table", ALL_TABLES)
def test_polars(lake, table):
    df = pl.scan_delta(path(lake, table)).filter(pl.col("dataset") == ZB).collect()
    check_rows(table, df.to_dicts())


@pytest.mark.parametrize("table", ALL_TABLES)
def test_duckdb(lake, table):
    ds = DeltaTable(path(lake, table)).to_pyarrow_dataset()  # noqa: F841 (DuckDB scans it by name)
    rel = duckdb.sql(f"SELECT * FROM ds WHERE dataset = '{ZB}'")
    cols = rel.columns
    check_rows(table, [dict(zip(cols, row)) for row in rel.fetchall()])


def test_per_lumisection_tables_hold_no_per_run_rows(lake):
    for table in ["th1", "th2", *NEW_TABLES]:
        t = DeltaTable(path(lake, table)).to_pyarrow_table()
        assert min(t.column("ls_number").to_pylist()) >= 1
        r = DeltaTable(path(lake, table + "_run")).to_pyarrow_table()
        assert set(r.column("ls_number").to_pylist()) == {0}


def test_workspace_prefixes_select_every_kind(lake):
    """`tracker` keeps PixelPhase1/ only, in every table that has such MEs."""
    for table in ALL_TABLES:
        try:
            t = DeltaTable(path(lake, table, "tracker")).to_pyarrow_table()
        except Exception:  # noqa: BLE001 (no PixelPhase1 ME of that kind: no table)
            assert not any(k[0] == table and k[3].startswith("PixelPhase1/") for k in oracle())
            continue
        names = set(t.column("me").to_pylist())
        want = {k[3] for k in oracle() if k[0] == table and k[3].startswith("PixelPhase1/")}
        assert names == want, table


# --- the API ---------------------------------------------------------------------------------


def get(base, p, params=None, headers=None):
    url = f"{base}/api/v1/{p}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def list_all(base, table, **params):
    rows, params = [], {"dataset": ZB, "page_size": 7, **params}
    while True:
        status, _, body = get(base, f"{table}/", params)
        assert status == 200, body
        page = json.loads(body)
        rows += page["results"]
        if not page["next"]:
            return rows
        token = urllib.parse.parse_qs(urllib.parse.urlparse(page["next"]).query)["next_token"][0]
        params = {**params, "next_token": token}


@pytest.mark.parametrize("table", ["th1", "th2", *NEW_TABLES])
@pytest.mark.parametrize("scope", ["lumisection", "run"])
def test_api_lists_equal_root(server, table, scope):
    rows = list_all(server, table, scope=scope)
    check_rows(table + ("_run" if scope == "run" else ""), rows, api=True)


def test_api_default_scope_is_lumisection(server):
    assert list_all(server, "th3") == list_all(server, "th3", scope="lumisection")


@pytest.mark.parametrize("table", NEW_TABLES)
def test_api_get_one_and_per_run(server, table):
    for scope, ls in [("lumisection", None), ("run", 0)]:
        rows = list_all(server, table, scope=scope)
        r = rows[-1]
        if ls is not None:
            assert r["ls_number"] == ls
        status, _, body = get(server, f"{table}/{r['dataset_id']}/{r['run_number']}/{r['ls_number']}/{r['me_id']}/")
        assert status == 200, body
        one = json.loads(body)
        first = next(x for x in rows if (x["run_number"], x["ls_number"], x["me_id"]) == (r["run_number"], r["ls_number"], r["me_id"]))
        assert one == first


@pytest.mark.parametrize("table", NEW_TABLES)
@pytest.mark.parametrize("fmt", ["arrow", "parquet"])
def test_api_bulk(server, table, fmt):
    for scope in ["lumisection", "run"]:
        status, headers, body = get(server, f"{table}/", {"dataset": ZB, "format": fmt, "scope": scope})
        assert status == 200, body
        if fmt == "arrow":
            t = pa.ipc.open_stream(io.BytesIO(body)).read_all()
        else:
            import pyarrow.parquet as pq
            t = pq.read_table(io.BytesIO(body))
        assert "Link" not in headers
        check_rows(table + ("_run" if scope == "run" else ""), t.to_pylist(), api=True)


def test_api_filters(server):
    rows = list_all(server, "scalar", kind="Float", run_number=380311, ls_number__lte=1)
    assert rows and all(r["kind"] == "Float" and r["run_number"] == 380311 and r["ls_number"] <= 1 for r in rows)
    assert all(r["value_int"] is None and r["value_string"] is None for r in rows)
    name = rows[0]["me"]
    by_name = list_all(server, "scalar", me=name)
    assert {r["me"] for r in by_name} == {name}
    prof = list_all(server, "profile1d", me__regex="^SiStrip/", entries__gte=1)
    assert prof and all(r["me"].startswith("SiStrip/") and r["entries"] >= 1 for r in prof)
    assert list_all(server, "profile1d", me__regex="^PixelPhase1/") == []
    tracker = json.loads(get(server, "profile2d/", {"page_size": 500}, {"Workspace": "tracker"})[2])["results"]
    assert all(r["me"].startswith("PixelPhase1/") for r in tracker)


def test_api_lumisection_counts(server):
    want = {}
    for (table, run, ls, _me, _kind) in oracle():
        if ls:
            c = want.setdefault((run, ls), {t: 0 for t in ["th1", "th2", *NEW_TABLES]})
            c[table] += 2  # two ZeroBias files
    status, _, body = get(server, "lumisection/", {"dataset": ZB, "page_size": 100})
    assert status == 200
    for r in json.loads(body)["results"]:
        c = want.get((r["run_number"], r["ls_number"]), {t: 0 for t in ["th1", "th2", *NEW_TABLES]})
        assert {t: r[f"{t}_count"] for t in c} == c


def test_api_mes_kind_and_dim(server):
    every = json.loads(get(server, "mes/", {"kind": "all"})[2])
    kinds = {m["me"]: (m["kind"], m["dim"]) for m in every}
    for (_t, _run, _ls, me, kind) in oracle():
        assert me in kinds
        assert kinds[me][1] == {"Int": 0, "Float": 0, "String": 0, "TH3F": 3}.get(kind, 2 if "2" in kind else 1)
    default = json.loads(get(server, "mes/")[2])
    assert default and {m["kind"][:3] for m in default} == {"TH1", "TH2"}
    prof = json.loads(get(server, "mes/", {"kind": "TProfile"})[2])
    assert prof and all(m["kind"] == "TProfile" and m["dim"] == 1 for m in prof)
    scalars = json.loads(get(server, "mes/", {"dim": 0})[2])
    assert scalars and all(m["kind"] in ("Int", "Float", "String") for m in scalars)


@pytest.mark.parametrize("p,params", [
    ("th3/", {"scope": "lumi"}),
    ("scalar/", {"ls_number": "one"}),
    ("profile1d/", {"run_number__in": ""}),
    ("profile2d/", {"me__regex": "("}),
    ("scalar/", {"next_token": "!!"}),
    ("th1/", {"scope": "sometimes"}),
    ("profile1d/", {"format": "csv"}),
])
def test_api_bad_input_is_4xx_json(server, p, params):
    status, _, body = get(server, p, params)
    assert status == 400, (status, body)
    assert isinstance(json.loads(body), dict)


def test_api_unknown_item_is_404(server):
    for p in ["th3/1/2/3/4/", "scalar/x/1/1/1/", "profile2d/1/1/0/1/"]:
        status, _, body = get(server, p)
        assert status == 404, (p, status, body)
        assert "detail" in json.loads(body)


def test_openapi_lists_the_new_tables(server):
    doc = json.loads(get(server, "openapi.json")[2])
    for t in NEW_TABLES:
        op = doc["paths"][f"/api/v1/{t}/"]["get"]
        assert any(p["name"] == "scope" for p in op["parameters"])
