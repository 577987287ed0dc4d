#!/usr/bin/env python3
"""What token checks cost (issue 12), auth off vs on in the same run, same lake, same binary:

- warm: p50/p90 of `workspaces/` (no query, so the token check is most of it), one small request
  (`run/?page_size=1`) and one lumisection of TH1s over a
  keep-alive connection, requests of the two servers interleaved (RS256 and ES256 tokens);
- cold: process start -> first 200, which with auth includes fetching the issuer's discovery
  document and JWKS (local issuer on loopback: the network round trips to a real Keycloak add to it).

    python3 bench/auth_bench.py [--requests 400] [--starts 7]

The issuer is tests/python/oidc_issuer.py. DIALS_BENCH_BIN picks the binary (default target/release/dials,
else target/ci/dials).
"""

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "python"))
from oidc_issuer import AUDIENCE, Issuer  # noqa: E402

LFN = "store/data/Run2024C/ZeroBias/DQMIO/PromptReco-v1/000/380/310/00000/{}.root"
ROLE = "cms-dqm-runregistry-offline-tracker-certifiers"


def binary():
    for cand in [os.environ.get("DIALS_BENCH_BIN"), os.path.join(REPO, "target/release/dials"), os.path.join(REPO, "target/ci/dials")]:
        if cand and os.path.exists(cand):
            return cand
    sys.exit("build dials first")


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(dials, lake, config, issuer, auth):
    port = free_port()
    args = [dials, "serve", "--lake", lake, "--workspaces", config, "--listen", f"127.0.0.1:{port}"]
    if auth:
        args += ["--auth", "oidc", "--issuer", issuer.url, "--audience", AUDIENCE]
    t0 = time.perf_counter()
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    headers = {"Authorization": "Bearer " + issuer.mint(roles=[ROLE], exp=int(time.time()) + 3600)} if auth else {}
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/api/v1/run/?page_size=1", headers=headers)
            r = c.getresponse()
            r.read()
            c.close()
            if r.status == 200:
                return p, port, (time.perf_counter() - t0) * 1e3
            raise RuntimeError(f"HTTP {r.status}")
        except (ConnectionError, OSError):
            if p.poll() is not None:
                sys.exit("dials serve exited")
            time.sleep(0.002)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--starts", type=int, default=7)
    a = ap.parse_args()
    dials = binary()
    tmp = tempfile.mkdtemp(prefix="dials-auth-bench-")
    inbox, lake, config = os.path.join(tmp, "inbox"), os.path.join(tmp, "lake"), os.path.join(tmp, "ws.json")
    for name, fx in [("a", "small_zlib.root"), ("b", "small_lz4.root")]:
        dst = os.path.join(inbox, LFN.format(name))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(os.path.join(REPO, "tests/fixtures/data", fx), "rb") as f, open(dst, "wb") as g:
            g.write(f.read())
    with open(config, "w") as f:
        json.dump({"default": "tracker", "workspaces": [{"name": "tracker", "me_prefixes": ["PixelPhase1/"], "roles": [ROLE]}]}, f)
    subprocess.run([dials, "ingest", inbox, "--lake", lake, "--workspaces", config], check=True, capture_output=True)

    with Issuer() as iss:
        cold = {False: [], True: []}
        for _ in range(a.starts):
            for auth in (False, True):
                p, _, ms = start(dials, lake, config, iss, auth)
                cold[auth].append(ms)
                p.terminate()
                p.wait()
        servers = {auth: start(dials, lake, config, iss, auth) for auth in (False, True)}
        tokens = {"RS256": iss.mint(roles=[ROLE], exp=int(time.time()) + 3600),
                  "ES256": iss.mint(roles=[ROLE], alg="ES256", exp=int(time.time()) + 3600)}
        paths = {"workspaces/ (no query: auth dominates)": "/api/v1/workspaces/",
                 "run/?page_size=1": "/api/v1/run/?page_size=1",
                 "th1 one lumisection": "/api/v1/th1/?run_number=380310&ls_number=1&page_size=500"}
        cases = [("off", False, None)] + [(f"on ({alg})", True, tok) for alg, tok in tokens.items()]
        conns = {name: http.client.HTTPConnection("127.0.0.1", servers[auth][1], timeout=30) for name, auth, _ in cases}
        times = {(name, label): [] for name, _, _ in cases for label in paths}
        for i in range(a.requests + 20):
            for label, path in paths.items():
                for name, auth, tok in cases:
                    h = {"Authorization": "Bearer " + tok} if tok else {}
                    t0 = time.perf_counter()
                    conns[name].request("GET", path, headers=h)
                    r = conns[name].getresponse()
                    r.read()
                    dt = (time.perf_counter() - t0) * 1e3
                    assert r.status == 200, (name, path, r.status)
                    if i >= 20:  # warm-up
                        times[(name, label)].append(dt)
        for p, _, _ in servers.values():
            p.terminate()
            p.wait()

    q = lambda xs, f: statistics.quantiles(xs, n=100)[f - 1]
    print(f"binary: {dials}; {a.requests} requests per case, interleaved; {a.starts} cold starts per mode\n")
    print("| request | auth | p50 ms | p90 ms | added p50 ms |")
    print("|---|---|---|---|---|")
    for label in paths:
        base = statistics.median(times[("off", label)])
        for name, _, _ in cases:
            xs = times[(name, label)]
            print(f"| {label} | {name} | {statistics.median(xs):.3f} | {q(xs, 90):.3f} | {statistics.median(xs) - base:+.3f} |")
    print("\n| cold start -> first 200 | median ms | min ms | max ms |")
    print("|---|---|---|---|")
    for auth in (False, True):
        xs = cold[auth]
        print(f"| auth {'on (incl. discovery + JWKS fetch)' if auth else 'off'} | {statistics.median(xs):.1f} | {min(xs):.1f} | {max(xs):.1f} |")


if __name__ == "__main__":
    main()
