"""Shared fixtures for CassMail's end-to-end tests.

Every test here talks to a real Cassandra 0.7.0 started by tools/cluster (never an imitation).
The `ring` fixture owns the one local ring of the test session: `ring.ensure(n)` gives an n-node
ring (restarting with fresh data when the size changes), and the ring is stopped when the session
ends, even after failures.
"""
import os
import random
import string
import subprocess
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
# The programs under test: build/, or another build of the same tree (`make test-asan` points
# CASSMAIL_BUILD at build/asan, made with AddressSanitizer and UBSan).
BUILD = Path(os.environ.get("CASSMAIL_BUILD") or TOP / "build")
# Where sanitizer reports go under `make test-asan` (ASAN_OPTIONS/UBSAN_OPTIONS log_path): a
# report from any process, forked session children included, fails the test that was running.
SANITIZER_LOGS = os.environ.get("CASSMAIL_SANITIZER_LOGS")
CLUSTER = TOP / "tools" / "cluster"
# tools/cluster's address prefix: a second ring (CASSMAIL_NET=127.0.1, its own CASSMAIL_RUN and
# CASSMAIL_JMX_BASE) lets two test runs share the machine.
NET = os.environ.get("CASSMAIL_NET", "127.0.0")


def node(i, port=9160):
    """Node I's Thrift endpoint (host:port) on the test ring."""
    return f"{NET}.{i}:{port}"


def run(cmd, check=True, timeout=300, **kw):
    """Run a command (list), capture text output; raise with its output when it fails."""
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


def unique(prefix="u"):
    """A fresh lower-case name, so tests never see each other's users."""
    return prefix + "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(10))


ADMIN = BUILD / "cassmail-admin"


def write_conf(path, **sections):
    """A cassmail.conf at PATH: sections given as dicts, e.g. cassandra={"retry_ms": 2000}."""
    base = {"cassandra": {"endpoints": node(1), "retry_ms": "15000", "timeout_ms": "12000"},
            "smtp": {"domains": "example.com", "hostname": "mx.example.com"}}
    if os.geteuid() == 0:
        # Started as root, the servers refuse to serve clients unless they can become [server]
        # user (src/util/privs.h); they read this file and any TLS key before they switch.
        base["server"] = {"user": "nobody", "group": "nogroup"}
    for name, values in sections.items():
        base.setdefault(name, {}).update({k: str(v) for k, v in values.items()})
    text = "".join(f"[{g}]\n" + "".join(f"{k}={v}\n" for k, v in kv.items()) + "\n"
                   for g, kv in base.items())
    Path(path).write_text(text)
    return Path(path)


class Mail:
    """CassMail's administration view of the current ring, through cassmail-admin."""

    def __init__(self, conf):
        self.conf = Path(conf)

    def admin(self, *args, input=None, check=True, timeout=120):
        p = subprocess.run([str(ADMIN), "-c", str(self.conf), *map(str, args)], input=input,
                           capture_output=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"cassmail-admin {args} exited {p.returncode}: {p.stderr.decode()}")
        return p

    def useradd(self, name=None, password=None):
        name = name or unique()
        if password is None:
            self.admin("useradd", name)
        else:
            self.admin("useradd", "--password-stdin", name, input=(password + "\n").encode())
        return name

    def list(self, user, box="inbox"):
        """[(TimeUUID text, size)] in arrival order."""
        out = self.admin("list", user, box).stdout.decode().split("\n")
        return [(line.split()[0], int(line.split()[1])) for line in out if line.strip()]

    def fetch(self, user, box, msgid):
        return self.admin("fetch", user, box, msgid).stdout


class Ring:
    def __init__(self):
        self.size = 0
        self.schema_rf = None

    def ensure(self, n):
        """An n-node ring that answers Thrift, with the Mail schema at RF 1 unless asked otherwise."""
        if self.size == n and self.alive():
            return self
        self.stop()
        run([str(CLUSTER), "start", str(n), "--fresh"], timeout=600)
        self.size = n
        self.schema_rf = None
        return self

    def schema(self, conf, rf=1):
        """The Mail keyspace at replication factor RF on this ring (created once per ring)."""
        if self.schema_rf != rf:
            Mail(conf).admin("schema", "--rf", rf)
            self.schema_rf = rf

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
def mail(ring, tmp_path):
    """A 1-node ring with the Mail schema, and a Mail view configured for it."""
    ring.ensure(1)
    conf = write_conf(tmp_path / "cassmail.conf")
    ring.schema(conf)
    return Mail(conf)


@pytest.fixture(autouse=True)
def no_sanitizer_reports():
    """Under `make test-asan`: fail the test if a sanitizer wrote a report while it ran."""
    if not SANITIZER_LOGS:
        yield
        return
    logs = Path(SANITIZER_LOGS)
    before = set(logs.iterdir()) if logs.is_dir() else set()
    yield
    new = sorted(set(logs.iterdir()) - before) if logs.is_dir() else []
    if new:
        text = "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[:20000]}" for p in new)
        pytest.fail(f"sanitizer reports written during this test:\n{text}", pytrace=False)
