"""The real `cmsdials` client (PyPI 2.4.1), unmodified, against `dials serve`: every client call,
values compared with what ROOT reports for the fixtures."""

import pytest
from cmsdials import Dials
from cmsdials.auth._base import BaseCredentials
from cmsdials.filters import (
    FileIndexFilters,
    LumisectionFilters,
    LumisectionHistogram1DFilters,
    LumisectionHistogram2DFilters,
    MEFilters,
    RunFilters,
)

from conftest import expected_rows

ZB = "/ZeroBias/Run2024C-PromptReco-v1/DQMIO"


class NoLogin(BaseCredentials):
    def __init__(self):
        super().__init__()
        self.token, self.token_type = "t", "Bearer"

    def apply(self, headers):
        headers["Authorization"] = f"{self.token_type} {self.token}"

    def refresh(self):
        pass


def client(base, workspace=None):
    return Dials(NoLogin(), workspace=workspace, base_url=base)


def test_dataset_and_file_index(server):
    d = client(server)
    ds = d.dataset_index.list().results
    assert sorted(x.dataset for x in ds) == ["/JetMET0/Run2024C-PromptReco-v1/DQMIO", ZB]
    zb = next(x for x in ds if x.dataset == ZB)
    assert (zb.era, zb.primary_ds_name, zb.processed_ds_name, zb.data_tier, zb.processing_version) == (
        "Run2024C", "ZeroBias", "Run2024C-PromptReco-v1", "DQMIO", 1)
    files = d.file_index.list_all(FileIndexFilters(page_size=1)).results
    assert len(files) == 4
    statuses = sorted(f.status for f in files)
    assert statuses == ["FINISHED", "FINISHED", "FINISHED", "ROOTFILE_ERROR"]
    bad = next(f for f in files if f.status != "FINISHED")
    assert "truncated" in bad.err_trace
    one = d.file_index.get(dataset_id=files[0].dataset_id, file_id=files[0].file_id)
    assert one.logical_file_name == files[0].logical_file_name
    assert d.dataset_index.get(dataset_id=zb.dataset_id, file_id=files[0].file_id).dataset == ZB
    assert len(d.file_index.list(FileIndexFilters(status="FINISHED", dataset=ZB)).results) == 2


def test_runs_and_lumisections(server):
    d = client(server)
    runs = d.run.list_all(RunFilters(dataset=ZB, page_size=1)).results
    assert [(r.run_number, r.ls_count) for r in runs] == [(380310, 3), (380311, 3)]
    assert runs[0].ls_completeness is None
    r = d.run.get(dataset_id=runs[0].dataset_id, run_number=380311)
    assert r.run_number == 380311
    lumis = d.lumi.list_all(LumisectionFilters(dataset=ZB, page_size=4)).results
    assert len(lumis) == 6
    # Two ZeroBias files carry the same lumisections: counts add up (2 files x 8 TH1 per lumi).
    ls1 = next(x for x in lumis if (x.run_number, x.ls_number) == (380310, 1))
    exp = expected_rows()
    th1_per_ls = sum(1 for (run, ls, _), v in exp.items() if (run, ls) == (380310, 1) and v["kind"].startswith("TH1"))
    assert ls1.th1_count == 2 * th1_per_ls
    # Lumisection 2 of run 380311 was recorded without elements: listed, with zero counts.
    empty = next(x for x in lumis if (x.run_number, x.ls_number) == (380311, 2))
    assert (empty.th1_count, empty.th2_count) == (0, 0)
    got = d.lumi.get(dataset_id=ls1.dataset_id, run_number=380310, ls_number=1)
    assert got.th1_count == ls1.th1_count


def test_th1_every_value_equals_root(server):
    d = client(server)
    exp = expected_rows()
    res = d.h1d.list_all(LumisectionHistogram1DFilters(dataset=ZB, page_size=7))
    rows = res.results
    want = {k: v for k, v in exp.items() if v["kind"].startswith("TH1")}
    assert len(rows) == 2 * len(want)  # two ZeroBias files
    for h in rows:
        w = want[(h.run_number, h.ls_number, h.me)]
        assert (h.x_min, h.x_max, int(h.x_bin), h.entries) == (w["x_min"], w["x_max"], w["x_bin"], w["entries"])
        assert h.data == w["data"]
    df = res.to_pandas()
    assert len(df) == len(rows) and {"me", "data", "x_min"} <= set(df.columns)
    one = d.h1d.get(dataset_id=rows[0].dataset_id, run_number=rows[0].run_number, ls_number=rows[0].ls_number, me_id=rows[0].me_id)
    assert one.data == rows[0].data


def test_th2_filters_and_values(server):
    d = client(server)
    exp = expected_rows()
    f = LumisectionHistogram2DFilters(dataset=ZB, me__regex="Occupancy", ls_numbet__lte=2, run_number=380310, page_size=3)
    rows = d.h2d.list_all(f).results
    want = {k: v for k, v in exp.items() if v["kind"].startswith("TH2") and "Occupancy" in k[2] and k[1] <= 2 and k[0] == 380310}
    assert rows and len(rows) == 2 * len(want)
    for h in rows:
        w = want[(h.run_number, h.ls_number, h.me)]
        assert h.data == w["data"]
        assert (h.y_min, h.y_max, int(h.y_bin)) == (w["y_min"], w["y_max"], w["y_bin"])
    name = rows[0].me
    by_name = d.h2d.list(LumisectionHistogram2DFilters(me=name, ls_number=rows[0].ls_number, run_number=380310)).results
    assert {h.me for h in by_name} == {name}


def test_mes_and_workspaces(server):
    d = client(server)
    mes = d.mes.list()
    assert mes and all(m.dim in (1, 2) for m in mes)
    pix = d.mes.list(MEFilters(me__regex="^PixelPhase1/"))
    assert pix and all(m.me.startswith("PixelPhase1/") for m in pix)
    assert d.mes.get(id=pix[0].me_id).me == pix[0].me
    t = client(server, workspace="tracker")
    rows = t.h2d.list_all(LumisectionHistogram2DFilters(page_size=500)).results
    assert rows and all(h.me.startswith("PixelPhase1/") for h in rows)
    j = client(server, workspace="jetmet")
    assert all(h.dataset.startswith("/JetMET0/") for h in j.h2d.list_all(LumisectionHistogram2DFilters()).results)
    with pytest.raises(Exception):
        client(server, workspace="nosuch").run.list()
