"""Schema-driven fuzzing of the API from its own OpenAPI document (schemathesis): zero 5xx."""

import shutil
import subprocess
import sys
from pathlib import Path


def test_openapi_fuzz_no_server_errors(server):
    st = shutil.which("st") or str(Path(sys.executable).parent / "st")
    r = subprocess.run(
        [st, "run", f"{server}/api/v1/openapi.json", "--url", server, "--checks", "not_a_server_error",
         "--max-examples", "60", "--phases", "examples,fuzzing", "--seed", "20261129"],
        capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "No issues found" in r.stdout, r.stdout[-2000:]
