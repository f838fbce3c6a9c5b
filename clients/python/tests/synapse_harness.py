"""A real Synapse homeserver (PyPI, in its own venv) started for the module's tests: sqlite,
a client listener and a metrics listener on loopback, the mxresolved module configured."""
from __future__ import annotations

import json
import os
import pathlib
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from typing import Dict, Optional, Tuple

HERE = pathlib.Path(__file__).resolve().parent
CLIENT_SRC = HERE.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LOG_CONFIG = """version: 1
formatters:
  f: {format: '%(asctime)s %(levelname)s %(name)s %(request)s %(message)s'}
filters:
  context: {(): synapse.logging.context.LoggingContextFilter}
handlers:
  file: {class: logging.FileHandler, filename: LOGFILE, formatter: f, filters: [context]}
loggers:
  mxresolved_client: {level: DEBUG}
root: {level: INFO, handlers: [file]}
disable_existing_loggers: false
"""


class Synapse:
    def __init__(self, python: str, workdir: str, name: str, world: Dict[str, object], daemon_socket: str,
                 module_config: Dict[str, object]) -> None:
        self.python = python
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.server_name = f"{name}.local"
        self.port = free_port()
        self.metrics_port = free_port()
        self.log_path = os.path.join(self.dir, "homeserver.log")
        self.dns = str(world["dns_server"])
        config = {
            "server_name": self.server_name,
            "pid_file": os.path.join(self.dir, "homeserver.pid"),
            "listeners": [
                {"port": self.port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False,
                 "x_forwarded": False, "resources": [{"names": ["client", "federation"], "compress": False}]},
                {"port": self.metrics_port, "bind_addresses": ["127.0.0.1"], "type": "metrics"},
            ],
            "database": {"name": "sqlite3", "args": {"database": os.path.join(self.dir, "homeserver.db")}},
            "log_config": os.path.join(self.dir, "log.yaml"),
            "media_store_path": os.path.join(self.dir, "media"),
            "signing_key_path": os.path.join(self.dir, "signing.key"),
            "report_stats": False,
            "enable_metrics": True,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "macaroon_secret_key": "mxresolved-test-" + name,
            "form_secret": "mxresolved-test-" + name,
            # the test world's HTTPS servers: its CA, its loopback addresses
            "federation_custom_ca_list": [str(world["ca_file"])],
            "ip_range_whitelist": ["127.0.0.0/8"],
            "modules": [{"module": "mxresolved_client.synapse.MxresolvedResolver",
                         "config": dict(module_config, socket=daemon_socket)}],
        }
        with open(os.path.join(self.dir, "homeserver.yaml"), "w") as f:
            json.dump(config, f, indent=1)  # JSON is YAML
        with open(config["log_config"], "w") as f:
            f.write(LOG_CONFIG.replace("LOGFILE", self.log_path))
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(CLIENT_SRC))
        env.pop("MXRESOLVED_SOCKET", None)
        out = open(os.path.join(self.dir, "stdout.log"), "ab")
        self.proc = subprocess.Popen(
            [self.python, str(HERE / "synapse_launcher.py"), self.dns, os.path.join(self.dir, "signing.key"),
             os.path.join(self.dir, "homeserver.yaml")],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=self.dir)
        out.close()

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"Synapse {self.server_name} exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"Synapse {self.server_name} not ready after {timeout}s:\n{self.output()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def output(self) -> str:
        text = ""
        for n in ("stdout.log", "homeserver.log"):
            try:
                text += f"--- {n}\n" + pathlib.Path(self.dir, n).read_text(errors="replace")[-3000:]
            except OSError:
                pass
        return text

    def log(self) -> str:
        try:
            return pathlib.Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""

    def profile(self, user_id: str) -> Tuple[int, Dict[str, object], float]:
        """GET the profile through the client API: (status, body, seconds taken)."""
        url = f"http://127.0.0.1:{self.port}/_matrix/client/v3/profile/{urllib.request.quote(user_id)}"
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=90) as r:
                status, body = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read()
        return status, json.loads(body or b"{}"), time.monotonic() - t0

    def metric(self, name: str, labels: str = "") -> float:
        """The sum of a Prometheus sample from Synapse's metrics listener (0 when absent)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/_synapse/metrics", timeout=10) as r:
            text = r.read().decode()
        pat = re.compile(r"^" + re.escape(name) + r"(\{[^}]*\})? ([0-9.e+-]+)$", re.M)
        return sum(float(m.group(2)) for m in pat.finditer(text) if labels in (m.group(1) or ""))
