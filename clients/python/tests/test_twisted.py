"""The Twisted adapter inside a running reactor (a subprocess, since a reactor cannot be
restarted): against the fake server always, against a live daemon when one is given."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("twisted")

HERE = pathlib.Path(__file__).resolve().parent
SCRIPT = HERE / "twisted_script.py"


def run_script(path, mode):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE)]))
    p = subprocess.run([sys.executable, str(SCRIPT), path, mode], capture_output=True, text=True, timeout=60,
                       env=env)
    assert p.returncode == 0, p.stderr + p.stdout
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_twisted_against_fake(fake):
    out = run_script(fake.path, "fake")
    assert out["ip"] == ["1.2.3.4", "1", None, 8448, ["1.2.3.4"]]
    assert out["concurrent_ok"] is True
    assert out["denied"] == "address_denied"
    assert out["order"] == ["fast.example", "slow.example"]
    assert out["timeout"] == "RequestTimeout"
    assert out["after_timeout"] == "9.9.9.9"
    assert out["cache"] == 2
    assert fake.connections == 1


@pytest.mark.skipif(not os.environ.get("MXRESOLVED_TEST_SOCKET"), reason="MXRESOLVED_TEST_SOCKET not set")
def test_twisted_against_live_daemon():
    out = run_script(os.environ["MXRESOLVED_TEST_SOCKET"], "live")
    assert out["ip"] == ["1.2.3.4", "1", None, 8448, ["1.2.3.4"]]
    assert out["concurrent_ok"] is True
    assert out["denied"] == "address_denied"
