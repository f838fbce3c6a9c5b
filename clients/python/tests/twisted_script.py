"""Run inside a fresh process: resolves through the Twisted adapter in a running reactor.
usage: twisted_script.py SOCKET MODE   (MODE: fake | live)"""
import json
import sys

from twisted.internet import defer, task

from mxresolved_client import AddressDenied, RequestTimeout
from mxresolved_client.twisted import TwistedClient


@defer.inlineCallbacks
def main(reactor, path, mode):
    out = {}
    c = TwistedClient(reactor, path, timeout=10)
    r = yield c.resolve("1.2.3.4")
    out["ip"] = [r.server_name, r.step, r.sni, r.targets[0].port, r.targets[0].addresses]
    # concurrent, pipelined on one connection
    names = [f"1.2.3.{i}" for i in range(1, 30)]
    rs = yield defer.gatherResults([c.resolve(n) for n in names], consumeErrors=True)
    out["concurrent_ok"] = [x.server_name for x in rs] == names
    try:
        yield c.resolve("10.1.2.3")
        out["denied"] = "no error"
    except AddressDenied as e:
        out["denied"] = e.code
    yield c.ping()
    if mode == "fake":
        names = ["slow.example", "fast.example"]
        order = []
        ds = [c.resolve(n).addCallback(lambda r: order.append(r.server_name)) for n in names]
        yield defer.gatherResults(ds)
        out["order"] = order
        try:
            yield c.resolve("hang.example", timeout=0.3)
            out["timeout"] = "no error"
        except RequestTimeout:
            out["timeout"] = "RequestTimeout"
        out["after_timeout"] = (yield c.resolve("9.9.9.9")).server_name
        out["cache"] = len((yield c.show_cache()))
    c.close()
    print(json.dumps(out))


if __name__ == "__main__":
    task.react(main, sys.argv[1:3])
