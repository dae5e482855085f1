"""Shared fixtures for CassMail's end-to-end tests.

Every test here talks to a real Cassandra 0.7.0 started by tools/cluster (never an imitation).
The `ring` fixture owns the one local ring of the test session: `ring.ensure(n)` gives an n-node
ring (restarting with fresh data when the size changes), and the ring is stopped when the session
ends, even after failures.
"""
import os
import random
import shutil
import string
import subprocess
import time
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
BUILD = TOP / "build"
CLUSTER = TOP / "tools" / "cluster"


def run(cmd, check=True, timeout=300, **kw):
    """Run a command (list), capture text output; raise with its output when it fails."""
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


def unique(prefix="u"):
    """A fresh lower-case name, so tests never see each other's users."""
    return prefix + "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(10))


class Ring:
    def __init__(self):
        self.size = 0

    def ensure(self, n):
        """An n-node ring that answers Thrift, with the Mail schema at RF 1 unless asked otherwise."""
        if self.size == n and self.alive():
            return self
        self.stop()
        run([str(CLUSTER), "start", str(n), "--fresh"], timeout=600)
        self.size = n
        return self

    def alive(self):
        p = run([str(CLUSTER), "status"], check=False)
        return p.returncode == 0 and p.stdout.count(" up ") == self.size

    def cluster(self, *args, check=True, timeout=300, input=None):
        return run([str(CLUSTER), *map(str, args)], check=check, timeout=timeout, input=input)

    def stop(self):
        run([str(CLUSTER), "stop"], check=False, timeout=300)
        self.size = 0


@pytest.fixture(scope="session")
def ring():
    r = Ring()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def tmp(tmp_path):
    return tmp_path
