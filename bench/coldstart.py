#!/usr/bin/env python3
"""First answer after start: starts `dials serve --lake LAKE` with each binary in turn (5 rounds,
alternating), polls one lumisection's th1 page every 5 ms until it answers, stops it.

    python3 bench/coldstart.py LAKE BIN [BIN ...]
"""
import subprocess, time, urllib.request, socket, statistics, sys
def port():
    s=socket.socket(); s.bind(("127.0.0.1",0)); p=s.getsockname()[1]; s.close(); return p
lake=sys.argv[1]; bins=sys.argv[2:]
res={b:[] for b in bins}
for r in range(5):
    for b in bins:
        p=port(); t0=time.perf_counter()
        pr=subprocess.Popen([b,"serve","--lake",lake,"--listen",f"127.0.0.1:{p}"],stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL)
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{p}/api/v1/th1/?run_number=380000&ls_number=1&page_size=10",timeout=30) as x:
                    x.read(); break
            except Exception:
                time.sleep(0.005)
        res[b].append((time.perf_counter()-t0)*1000)
        pr.terminate(); pr.wait()
for b,xs in res.items(): print(b, "first answer ms median", round(statistics.median(xs)), "all", [round(x) for x in xs])
