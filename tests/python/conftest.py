"""Shared fixtures: the `dials` binary, a lake ingested from the committed ROOT fixtures, a server."""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "data"
LFN = "store/data/Run2024C/{primary}/DQMIO/PromptReco-v1/000/380/310/00000/{name}.root"


def dials_bin() -> str:
    for cand in [os.environ.get("DIALS_BIN"), REPO / "target/ci/dials", REPO / "target/release/dials", REPO / "target/debug/dials"]:
        if cand and Path(cand).exists():
            return str(cand)
    raise RuntimeError("build the dials binary first (cargo build --profile ci -p dials-cli)")


def expected_rows():
    """(run, ls, me) -> ROOT's values, for TH1x/TH2x per lumisection (what the lake keeps)."""
    out = {}
    for line in (FIXTURES / "small_zlib.expected.jsonl").read_text().splitlines():
        v = json.loads(line)
        if v["ls_number"] == 0 or v["kind"] not in ("TH1F", "TH1S", "TH1D", "TH1I", "TH2F", "TH2S", "TH2D", "TH2I"):
            continue
        out[(v["run_number"], v["ls_number"], v["me"])] = v
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


EMULATORS = {"localstack": ("start-localstack.sh", "LOCALSTACK_PORT"), "moto": ("start-moto.sh", "MOTO_PORT")}


@contextlib.contextmanager
def emulator_running(name):
    """LocalStack or moto started from the venvs localstack/install.sh made, on a free port; yields
    (endpoint, environment with test credentials for it); stopped afterwards."""
    port = free_port()
    script, port_var = EMULATORS[name]
    env = dict(os.environ, **{port_var: str(port)})
    subprocess.run(["bash", str(REPO / "localstack" / script)], check=True, env=env, capture_output=True)
    endpoint = f"http://127.0.0.1:{port}"
    aws = {"AWS_ENDPOINT_URL": endpoint, "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_ALLOW_HTTP": "true"}
    try:
        yield endpoint, dict(os.environ, **aws)
    finally:
        subprocess.run(["bash", str(REPO / "localstack/stop.sh"), name], env=env, capture_output=True)


@pytest.fixture(scope="session")
def lake(tmp_path_factory):
    """Three files (two ZeroBias, one JetMET0) ingested with the real `dials ingest`."""
    root = tmp_path_factory.mktemp("dials")
    inbox = root / "inbox"
    files = [("ZeroBias", "a", "small_zlib.root"), ("ZeroBias", "b", "small_lz4.root"), ("JetMET0", "c", "small_zstd.root")]
    for primary, name, fx in files:
        dst = inbox / LFN.format(primary=primary, name=name)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(FIXTURES / fx, dst)
    (root / "bad").mkdir()
    bad = root / "bad" / LFN.format(primary="ZeroBias", name="corrupt")
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes((FIXTURES / "small_zlib.root").read_bytes()[:20000])
    config = root / "workspaces.json"
    config.write_text(json.dumps({
        "default": "all",
        "workspaces": [
            {"name": "all"},
            {"name": "tracker", "datasets": ["/ZeroBias/*Run202*/DQMIO"], "me_prefixes": ["PixelPhase1/"]},
            {"name": "jetmet", "datasets": ["/JetMET0/*Run202*/DQMIO"], "me_prefixes": ["JetMET/"]},
        ],
    }))
    lake = root / "lake"
    subprocess.run([dials_bin(), "ingest", str(inbox), "--lake", str(lake), "--workspaces", str(config)], check=True, capture_output=True)
    r = subprocess.run([dials_bin(), "ingest", str(root / "bad"), "--lake", str(lake), "--workspaces", str(config)], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    return {"lake": lake, "config": config, "root": root}


@contextlib.contextmanager
def serving(*args, env=None):
    """`dials serve ARGS` on a free loopback port; yields its base URL once the API answers, and stops it."""
    port = free_port()
    # The server's log goes to a file, never to a pipe nobody reads: a full pipe would block it.
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([dials_bin(), "serve", *map(str, args), "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=log, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/api/v1/workspaces/", timeout=1)
                break
            except urllib.error.HTTPError:
                break  # it answers (401 with auth on)
            except Exception:
                if proc.poll() is not None:
                    break
                time.sleep(0.1)
        else:
            raise RuntimeError("dials serve did not answer within 10 s")
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError("dials serve did not start: " + log.read().decode(errors="replace"))
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="session")
def server(lake):
    with serving("--lake", lake["lake"], "--workspaces", lake["config"]) as base:
        yield base
