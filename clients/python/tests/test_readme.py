"""Executes the README's usage example against the fake server (and a live daemon if given)."""
import os
import pathlib
import re
import subprocess
import sys

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def usage_example() -> str:
    text = README.read_text()
    section = text.split("## Usage", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def run_example(sock, name_override=None):
    code = usage_example()
    assert 8 <= len(code.strip().splitlines()) <= 12
    if name_override:
        code = code.replace('"matrix.org"', repr(name_override))
    env = dict(os.environ, MXRESOLVED_SOCKET=sock, PYTHONPATH=str(README.parent))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)


def test_readme_example_fake(fake):
    p = run_example(fake.path)
    assert p.returncode == 0, p.stderr
    assert "fed.matrix.org 8443 ['2a01:4f8::10', '203.0.114.7']" in p.stdout
    assert "matrix.org matrix.org matrix.org" in p.stdout


@pytest.mark.skipif(not os.environ.get("MXRESOLVED_TEST_SOCKET"), reason="MXRESOLVED_TEST_SOCKET not set")
def test_readme_example_live():
    p = run_example(os.environ["MXRESOLVED_TEST_SOCKET"], "1.2.3.4")
    assert p.returncode == 0, p.stderr
    assert "1.2.3.4 8448 ['1.2.3.4']" in p.stdout and "1.2.3.4 1.2.3.4 None" in p.stdout
