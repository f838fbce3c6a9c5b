import json
import os
import pathlib
import sys
import tempfile

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # use the source tree even when not pip-installed

VECTORS = pathlib.Path(os.environ.get("MXRESOLVED_VECTORS", HERE.parents[2] / "proto" / "vectors.json"))


@pytest.fixture(scope="session")
def vectors():
    return json.loads(VECTORS.read_text())


@pytest.fixture
def sockdir():
    # Short path: AF_UNIX paths are limited to ~107 bytes.
    with tempfile.TemporaryDirectory(prefix="mxr-", dir="/tmp") as d:
        yield d


@pytest.fixture
def fake(sockdir):
    from fakeserver import FakeServer
    srv = FakeServer(os.path.join(sockdir, "fake.sock"))
    yield srv
    srv.stop()
