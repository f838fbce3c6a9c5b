"""Starts/stops a real mxresolved for end-to-end tests (env MXRESOLVED_BIN, MXRESOLVED_TEST_ARGS)."""
from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import time
from typing import List, Optional


class Daemon:
    def __init__(self, binary: str, extra_args: str, workdir: str) -> None:
        self.binary = binary
        self.extra = shlex.split(extra_args)
        self.socket = os.path.join(workdir, "d.sock")
        self.state_dir = os.path.join(workdir, "state")
        self.log_path = os.path.join(workdir, "daemon.log")
        os.makedirs(self.state_dir, exist_ok=True)
        self.proc: Optional[subprocess.Popen] = None

    def argv(self) -> List[str]:
        return [self.binary, "--socket", self.socket, "--state-dir", self.state_dir] + self.extra

    def start(self, wait: float = 30.0) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}: {self.log()}")
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(2)
                s.connect(self.socket)
                s.sendall(b"ping\n")
                if s.recv(100).startswith(b"ok"):
                    s.close()
                    return
                s.close()
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"daemon did not answer ping within {wait}s: {self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-4000:].decode("utf-8", "replace")
        except OSError:
            return ""
