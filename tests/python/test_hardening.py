"""Issue 15 through the real `cmsdials` client (2.4.1, unmodified) against `dials serve`: pages cut to
the response budget and pages over an ME repeated in one lumisection lose no row; bulk exports
paginate with a Link header. Lake: the ROOT-written th2_50x50.root and repeat_me.root."""

import json
import shutil
import subprocess
import urllib.request

import pytest
from cmsdials import Dials
from cmsdials.filters import LumisectionHistogram1DFilters, LumisectionHistogram2DFilters

from conftest import FIXTURES, LFN, dials_bin, serving
from test_cmsdials import NoLogin

LAMBDA_RESPONSE_LIMIT = 6_000_000


@pytest.fixture(scope="module")
def big_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("hardening")
    inbox = root / "inbox"
    for name, fx in [("big", "th2_50x50.root"), ("rep", "repeat_me.root")]:
        dst = inbox / LFN.format(primary="ZeroBias", name=name)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(FIXTURES / fx, dst)
    lake = root / "lake"
    subprocess.run([dials_bin(), "ingest", str(inbox), "--lake", str(lake)], check=True, capture_output=True)
    with serving("--lake", lake) as base:
        yield base


def summary():
    out = {}
    for line in (FIXTURES / "th2_50x50.summary.jsonl").read_text().splitlines():
        v = json.loads(line)
        out[(v["ls_number"], v["me"])] = v
    return out


def test_cmsdials_pages_of_large_th2_lose_no_row(big_server):
    want = summary()
    d = Dials(NoLogin(), base_url=big_server)
    df = d.h2d.list_all(LumisectionHistogram2DFilters(run_number=380310, page_size=500)).to_pandas()
    got = {(r.ls_number, r.me): r for r in df.itertuples()}
    assert len(df) == len(got) == len(want) == 600
    for k, v in want.items():
        assert got[k].entries == v["entries"]
        assert abs(sum(map(sum, got[k].data)) - v["data_sum"]) <= 1e-9 * max(1.0, abs(v["data_sum"]))
    # Each page the client received fits Lambda's response, and the first was cut (500 rows are ~6.3 MB).
    with urllib.request.urlopen(big_server + "/api/v1/th2/?run_number=380310&page_size=500") as r:
        body = r.read()
        assert len(body) + body.count(b'"') + body.count(b"\\") <= LAMBDA_RESPONSE_LIMIT
        assert r.headers["X-Dials-Truncated"]
        assert 0 < len(json.loads(body)["results"]) < 500


def test_cmsdials_pages_one_row_at_a_time_over_a_repeated_me(big_server):
    d = Dials(NoLogin(), base_url=big_server)
    rows = d.h1d.list_all(LumisectionHistogram1DFilters(
        me="PixelPhase1/Repeat/charge_repeated", run_number=380400, ls_number=1, page_size=1)).to_pandas()
    # ROOT reports 8 occurrences in that lumisection (repeat_me.expected.jsonl).
    want = sorted(json.loads(l)["entries"] for l in (FIXTURES / "repeat_me.expected.jsonl").read_text().splitlines()
                  if json.loads(l)["me"] == "PixelPhase1/Repeat/charge_repeated" and json.loads(l)["ls_number"] == 1)
    assert len(want) == 8
    assert sorted(rows["entries"]) == want


def test_bulk_export_pages_follow_link_next(big_server):
    pa = pytest.importorskip("pyarrow")
    url = big_server + "/api/v1/th2/?run_number=380310&format=arrow"
    keys, pages = [], 0
    while url:
        with urllib.request.urlopen(url) as r:
            body = r.read()
            link = r.headers.get("Link")
        assert (len(body) + 2) // 3 * 4 <= LAMBDA_RESPONSE_LIMIT  # base64 in the Lambda envelope
        t = pa.ipc.open_stream(body).read_all()
        keys += list(zip(t.column("ls_number").to_pylist(), t.column("me").to_pylist()))
        pages += 1
        url = link[1:link.index(">")] if link else None
    assert pages >= 3
    assert len(keys) == len(set(keys)) == 600
