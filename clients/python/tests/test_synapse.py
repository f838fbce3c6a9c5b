"""The Synapse module in a real Synapse (PyPI, MXRESOLVED_SYNAPSE_PYTHON) inside the loopback
test world (MXRESOLVED_TEST_WORLD: its world.json) with a real daemon (MXRESOLVED_BIN): federation
requests reach the fake remote homeserver where the spec says, two homeservers share one daemon's
cache, and a stopped daemon costs nothing but the fallback to Synapse's own resolution."""
import json
import os
import pathlib
import signal
import statistics
import subprocess
import tempfile
import time

import pytest

from daemon import Daemon
from mxresolved_client import Client
from synapse_harness import Synapse

PYTHON = os.environ.get("MXRESOLVED_SYNAPSE_PYTHON")
WORLD = os.environ.get("MXRESOLVED_TEST_WORLD")
BIN = os.environ.get("MXRESOLVED_BIN")
pytestmark = pytest.mark.skipif(not (PYTHON and WORLD and BIN),
                                reason="MXRESOLVED_SYNAPSE_PYTHON, MXRESOLVED_TEST_WORLD or MXRESOLVED_BIN not set")

TESTWORLD = pathlib.Path(__file__).resolve().parents[3] / "scripts" / "testworld"
REMOTE = "@alice:hs.test"                 # hs.test: well-known -> hs-delegated.test, whose SRV -> hs-target.test:8450
PROFILE = {"displayname": "alice (testworld homeserver)", "avatar_url": "mxc://testworld.test/avatar"}
PROBE_INTERVAL = 1.0
TIMEOUT = 2.0       # the module's per-call timeout here; cold resolutions in the test world take milliseconds


class Stack:
    def __init__(self, workdir):
        self.world = json.loads(pathlib.Path(WORLD).read_text())
        self.daemon = Daemon(BIN, os.environ.get("MXRESOLVED_TEST_ARGS", ""), workdir)
        self.synapses = [Synapse(PYTHON, workdir, n, self.world, self.daemon.socket,
                                 {"probe_interval": PROBE_INTERVAL, "timeout": TIMEOUT})
                         for n in ("hs-one", "hs-two")]

    def counts(self):
        out = subprocess.run([str(TESTWORLD), "counts", "--dir", self.world["dir"]], capture_output=True, text=True,
                             check=True).stdout
        return json.loads(out)

    def reset_counts(self):
        subprocess.run([str(TESTWORLD), "reset-counts", "--dir", self.world["dir"]], check=True)

    def remote_requests(self):
        """The fake homeserver's log: one dict per request it received."""
        return [json.loads(ln) for ln in pathlib.Path(self.world["homeserver_log"]).read_text().splitlines() if ln]

    def daemon_stat(self, key):
        with Client(self.daemon.socket, timeout=5) as c:
            return c.statistics()[key]


@pytest.fixture(scope="module")
def stack():
    with tempfile.TemporaryDirectory(prefix="mxs-", dir="/tmp") as d:
        s = Stack(d)
        s.daemon.start()
        try:
            for hs in s.synapses:     # start-up is slow: both at once, once per suite
                hs.start()
            for hs in s.synapses:
                hs.wait_ready()
            yield s
        finally:
            for hs in s.synapses:
                hs.stop()
            s.daemon.stop()


# The module's two state lines; the first also says "until it is back", so the second is matched by its colon.
UNAVAILABLE = "is unavailable ("
BACK = "is back: "


def test_profile_reaches_the_srv_target_with_the_specs_host_and_sni(stack):
    one = stack.synapses[0]
    stack.reset_counts()
    before = len(stack.remote_requests())
    status, body, _ = one.profile(REMOTE)
    assert status == 200, f"{body}\n{one.output()}"   # a string: pytest shortens a tuple to one line
    assert body == PROFILE
    new = stack.remote_requests()[before:]
    assert [(r["uri"].split("?")[0], r["port"], r["sni"], r["host"]) for r in new] == [
        ("/_matrix/federation/v1/query/profile", 8450, "hs-delegated.test", "hs-delegated.test")]
    assert new[0]["authorization"].startswith("X-Matrix")   # Synapse signed it, as always
    assert stack.counts()["wellknown"] == {"hs.test": 1}    # fetched once, by the daemon
    assert one.metric("mxresolved_synapse_resolved_total") >= 1
    assert one.metric("mxresolved_synapse_fallbacks_total") == 0


def test_second_homeserver_makes_no_wellknown_request(stack):
    one, two = stack.synapses
    status, _, _ = one.profile(REMOTE)     # cached in the daemon (whatever ran before)
    assert status == 200
    stack.reset_counts()
    before = len(stack.remote_requests())
    status, body, _ = two.profile(REMOTE)
    assert status == 200 and body == PROFILE, two.output()
    counts = stack.counts()
    assert counts["wellknown"] == {}, counts
    assert not [k for k in counts["dns"] if "hs" in k], counts          # nor any DNS lookup
    assert [(r["sni"], r["host"], r["port"]) for r in stack.remote_requests()[before:]] == [
        ("hs-delegated.test", "hs-delegated.test", 8450)]


def test_stopped_daemon_falls_back_at_once_and_comes_back(stack):
    one = stack.synapses[0]
    assert one.profile(REMOTE)[0] == 200
    through_daemon = statistics.median(one.profile(REMOTE)[2] for _ in range(5))
    stack.daemon.stop()
    try:
        stack.reset_counts()
        status, body, first = one.profile(REMOTE)
        assert status == 200 and body == PROFILE, one.output()
        fallback = statistics.median(one.profile(REMOTE)[2] for _ in range(5))
        print(f"\nprofile lookup through the daemon {through_daemon * 1000:.1f} ms; daemon stopped: first "
              f"{first * 1000:.1f} ms (Synapse's own well-known + SRV + connect), then {fallback * 1000:.1f} ms")
        # Synapse's own path found the same place: its own well-known fetch, at the test world's DNS
        assert stack.counts()["wellknown"] == {"hs.test": 1}, "\n".join(
            ln for ln in one.log().splitlines() if "mxresolved" in ln or "well" in ln.lower())
        assert stack.remote_requests()[-1]["host"] == "hs-delegated.test"
        assert first < through_daemon + 0.1 + 0.4, "the first fallback call waited for something"
        assert fallback < through_daemon + 0.1
        assert one.log().count(UNAVAILABLE) == 1
        assert one.metric("mxresolved_synapse_fallbacks_total", 'reason="unavailable"') == 1
        assert one.metric("mxresolved_synapse_fallbacks_total", 'reason="down"') >= 5
    finally:
        stack.daemon.start()
    wait_for_log(one, BACK, 1, PROBE_INTERVAL * 5 + 5)
    wait_until_every_synapse_uses_the_daemon(stack)
    requests = stack.daemon_stat("requests")
    assert one.profile(REMOTE)[0] == 200
    assert stack.daemon_stat("requests") > requests    # through the daemon again


def wait_for_log(hs, text, count, seconds):
    deadline = time.monotonic() + seconds
    while hs.log().count(text) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    assert hs.log().count(text) == count, hs.output()


def wait_until_every_synapse_uses_the_daemon(stack):
    """The next test starts with the daemon in use everywhere: a homeserver the outage test did not
    watch may have noticed it too (its ping probe) and still be falling back until its re-probe."""
    deadline = time.monotonic() + PROBE_INTERVAL * 5 + 5
    def down(hs):
        log = hs.log()
        return log.count(BACK) < log.count(UNAVAILABLE)
    while any(down(hs) for hs in stack.synapses) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(down(hs) for hs in stack.synapses), [hs.output() for hs in stack.synapses if down(hs)]


def test_hung_daemon_costs_one_timeout_then_falls_back(stack):
    two = stack.synapses[1]
    assert two.profile(REMOTE)[0] == 200
    unavailable, back = two.log().count(UNAVAILABLE), two.log().count(BACK)
    stack.daemon.proc.send_signal(signal.SIGSTOP)     # up, but answering nothing
    try:
        status, body, took = two.profile(REMOTE)
        assert status == 200 and body == PROFILE, two.output()
        assert TIMEOUT <= took < TIMEOUT + 2, took
        assert two.metric("mxresolved_synapse_fallbacks_total", 'reason="timeout"') == 1
        wait_for_log(two, UNAVAILABLE, unavailable + 1, 5)   # its ping probe got no answer either
        status, _, took = two.profile(REMOTE)
        assert status == 200 and took < TIMEOUT / 2, took          # no more waiting for the daemon
        assert two.metric("mxresolved_synapse_fallbacks_total", 'reason="down"') >= 1
    finally:
        stack.daemon.proc.send_signal(signal.SIGCONT)
    wait_for_log(two, BACK, back + 1, PROBE_INTERVAL * 5 + 5)
    wait_until_every_synapse_uses_the_daemon(stack)


def test_every_target_refusing_makes_the_module_ask_for_a_reresolution(stack):
    one = stack.synapses[0]
    status, _, _ = one.profile("@bob:hs-refused.test")     # its one SRV target refuses connections
    assert status >= 500
    deadline = time.monotonic() + 20
    while one.metric("mxresolved_synapse_reresolves_total") < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert one.metric("mxresolved_synapse_reresolves_total", 'started="yes"') == 1, "\n".join(
        ln for ln in one.log().splitlines() if "mxresolved" in ln or "hs-refused" in ln)
    assert "no target of hs-refused.test accepted a connection; re-resolution started" in one.log()
    declined = one.metric("mxresolved_synapse_reresolves_total", 'started="no"')   # Synapse's own retries
    status, _, _ = one.profile("@bob:hs-refused.test")     # within the minute: the daemon declines
    deadline = time.monotonic() + 20
    while one.metric("mxresolved_synapse_reresolves_total", 'started="no"') == declined and time.monotonic() < deadline:
        time.sleep(0.1)
    assert one.metric("mxresolved_synapse_reresolves_total", 'started="no"') > declined
    assert one.metric("mxresolved_synapse_reresolves_total", 'started="yes"') == 1


CONFIG_CHECKS = r"""
import json
from synapse.module_api.errors import ConfigError
from mxresolved_client.synapse import MxresolvedResolver
from mxresolved_client.synapse._internals import IncompatibleSynapse, federation_parts
out = {"defaults": MxresolvedResolver.parse_config({"socket": "/s"})}
for bad in ({"timeout": 0}, {"timeout": "10"}, {"probe_interval": -1}, {"socket": ""}, {"sockett": "/s"}, [1]):
    try:
        MxresolvedResolver.parse_config(bad)
        out[repr(bad)] = "accepted"
    except ConfigError as e:
        out[repr(bad)] = "ConfigError"
class NoHomeserver:
    pass
try:
    federation_parts(NoHomeserver())
except IncompatibleSynapse as e:
    out["incompatible"] = str(e)
print(json.dumps(out))
"""


def test_config_and_synapse_shape_are_checked_at_start_up():
    env = dict(os.environ, PYTHONPATH=str(pathlib.Path(__file__).resolve().parents[1]))
    p = subprocess.run([PYTHON, "-c", CONFIG_CHECKS], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out.pop("defaults") == {"socket": "/s", "timeout": 10.0, "probe_interval": 5.0}
    assert out.pop("incompatible") == "ModuleApi has no attribute '_hs'"
    assert set(out.values()) == {"ConfigError"}, out


def test_no_logging_context_was_lost_or_leaked(stack):
    """Synapse's log-context checks (synapse.logging.context warnings) stayed quiet through
    every path above: daemon answers, fallbacks, timeouts, probes and reresolves."""
    for hs in stack.synapses:
        complaints = [ln for ln in hs.log().splitlines()
                      if " synapse.logging.context " in ln and (" WARNING " in ln or " ERROR " in ln)]
        assert not complaints, "\n".join(complaints)
        assert " ERROR mxresolved_client" not in hs.log(), hs.output()
