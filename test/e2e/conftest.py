"""Shared fixtures for CassMail's end-to-end tests.

Every test here talks to a real Cassandra 0.7.0 started by tools/cluster (never an imitation).
The `ring` fixture owns the one local ring of the test session: `ring.ensure(n)` gives an n-node
ring (restarting with fresh data when the size changes), and the ring is stopped when the session
ends, even after failures.

Starting a ring is the slowest thing the suite does, so the session runs its tests grouped by the
ring they need (pytest_collection_modifyitems): first the tests marked `ring(1, first=True)`,
which start a 1-node ring of their own that the others then use; then every test that needs one
node or none, in file order; then the tests marked `ring(3)` (ordered by the replication factor
they give the Mail keyspace); last the tests marked `ring(..., last=True)`, which leave a node
dead. A test that needs another ring than the one running still gets it from ring.ensure; the
marks only decide how often that happens.
"""
import configparser
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


def keyspace_of(conf):
    """The [cassandra] keyspace a cassmail.conf names (Mail unless it names one)."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(conf)
    return parser.get("cassandra", "keyspace", fallback="Mail")


class Ring:
    def __init__(self):
        self.size = 0
        self.rf = {}   # keyspace -> the replication factor schema() created it with

    def ensure(self, n):
        """An n-node ring that answers Thrift, with the Mail schema at RF 1 unless asked otherwise."""
        if self.size == n and self.alive():
            return self
        self.stop()
        run([str(CLUSTER), "start", str(n), "--fresh"], timeout=600)
        self.adopt(n, fresh=True)
        return self

    def adopt(self, n, fresh):
        """The n-node ring tools/cluster runs now, started by a test itself (FRESH: with its data
        wiped, so no keyspace exists yet), as the ring of the following tests."""
        self.size = n
        if fresh:
            self.rf = {}

    def schema(self, conf, rf=1):
        """CONF's keyspace (Mail unless it names another) at replication factor RF on this ring.

        `cassmail-admin schema` leaves an existing keyspace at its replication factor, so a
        keyspace this ring holds at another RF is dropped first: a test that asks for RF 3 gets
        the keyspace a fresh ring would give it, whatever ran before on the ring."""
        ks = keyspace_of(conf)
        if self.rf.get(ks) == rf:
            return
        dropped = ks in self.rf
        if dropped:
            self.cluster("cli", input=f"drop keyspace {ks};\n")
            del self.rf[ks]
        Mail(conf).admin("schema", "--rf", rf)
        if dropped:   # the CLI exits 0 whatever it says: the new keyspace shows it was dropped
            out = self.cluster("cli", input=f"describe keyspace {ks};\n").stdout
            assert f"Replication Factor: {rf}\n" in out, out
        self.rf[ks] = rf

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


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "ring(nodes, rf=1, first=False, last=False): the test needs a ring of NODES "
        "nodes, with the Mail keyspace at RF (it ensures both itself; the mark only groups tests "
        "by ring). FIRST: it starts a ring of its own and leaves it to the others, so it runs "
        "before every other test that needs a ring. LAST: it leaves a node dead, so it runs after "
        "them.")


# Tests of files that carry no `ring` mark themselves: {file name or file::test name: (nodes, rf)}.
RINGS = {
    "test_imap_store.py::test_on_three_nodes_at_rf3": (3, 3),
    "test_imap_uids.py": (3, 3),   # a keyspace of its own, at RF 3
}


def ring_of(item):
    """(group, nodes, rf) of the ring ITEM needs, group 0 first, 1 the others, 2 last: its
    `ring` mark, else RINGS, else one node."""
    mark = item.get_closest_marker("ring")
    if mark:
        nodes = mark.args[0] if mark.args else mark.kwargs["nodes"]
        rf = mark.args[1] if len(mark.args) > 1 else mark.kwargs.get("rf", 1)
        group = 0 if mark.kwargs.get("first") else 2 if mark.kwargs.get("last") else 1
        return (group, nodes, rf)
    name = Path(str(item.fspath)).name
    nodes, rf = RINGS.get(f"{name}::{getattr(item, 'originalname', item.name)}",
                          RINGS.get(name, (1, 1)))
    return (1, nodes, rf)


def pytest_collection_modifyitems(session, config, items):
    """Tests grouped by the ring they need (see the module's docstring); a stable sort, so each
    group keeps the files' order."""
    items.sort(key=ring_of)


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
