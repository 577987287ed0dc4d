"""LocalStack for the benchmarks: started from the venv `localstack/install.sh` made, with the bucket,
queue and notification `localstack/init.py` creates (as the end-to-end tests do)."""

import json
import os
import socket
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class LocalStack:
    """`with LocalStack(visibility_timeout=30) as ls:` → ls.env (AWS_* for subprocesses), ls.info
    (raw_bucket, lake_bucket, queue_url, ...), ls.s3 (a boto3 client)."""

    def __init__(self, visibility_timeout=30):
        self.visibility_timeout = visibility_timeout
        self.port = free_port()
        self.script_env = dict(os.environ, LOCALSTACK_PORT=str(self.port))

    def __enter__(self):
        subprocess.run(["bash", str(REPO / "localstack/start-localstack.sh")], check=True, env=self.script_env, capture_output=True)
        self.endpoint = f"http://127.0.0.1:{self.port}"
        aws = {"AWS_ENDPOINT_URL": self.endpoint, "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_ALLOW_HTTP": "true"}
        self.env = dict(os.environ, **aws)
        emu_home = Path(os.environ.get("DIALS_EMU_HOME", Path.home() / ".cache/dials-emulators"))
        out = subprocess.run([str(emu_home / "moto-venv/bin/python"), str(REPO / "localstack/init.py"), "--endpoint", self.endpoint,
                              "--visibility-timeout", str(self.visibility_timeout)], check=True, capture_output=True, text=True, env=self.env)
        self.info = json.loads(out.stdout.strip().splitlines()[-1])
        import boto3
        self.s3 = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id="test",
                               aws_secret_access_key="test")
        self.raw = self.info.get("raw_bucket", "dials-raw")
        self.lake = f"s3://{self.info.get('lake_bucket', 'dials-lake')}/lake"
        return self

    def __exit__(self, *exc):
        subprocess.run(["bash", str(REPO / "localstack/stop.sh"), "localstack"], env=self.script_env, capture_output=True)
        return False


def stop(procs):
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
