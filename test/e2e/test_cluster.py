"""tools/cluster: real Cassandra 0.7.0 rings on loopback, read back from Cassandra itself.

The ring's addresses follow tools/cluster's CASSMAIL_NET (default 127.0.0), so this file also runs
against a second ring beside the usual one, e.g.
  CASSMAIL_RUN=/tmp/r2 CASSMAIL_NET=127.0.1 CASSMAIL_JMX_BASE=7290 python3 -m pytest test/e2e/test_cluster.py
"""
import os
import re
from pathlib import Path

import pytest

from conftest import BUILD, CLUSTER, Mail, run, unique, write_conf

TOKENS = str(BUILD / "cassmail-tokens")
NET = os.environ.get("CASSMAIL_NET", "127.0.0")


def addr(i):
    return f"{NET}.{i}"


def conf_for(path):
    """A cassmail.conf that talks to node 1 of this ring."""
    return write_conf(path, cassandra={"endpoints": f"{addr(1)}:9160"})


def ring_tokens(ring, node=1):
    """{address: (status, token)} as nodetool (JMX, Cassandra's own view) reports the ring."""
    out = ring.cluster("nodetool", node, "ring").stdout
    rows = re.finditer(r"^(%s\.\d+)\s+(Up|Down)\s+\S+.*?(\d+)\s*$" % re.escape(NET), out, re.M)
    return {m.group(1): (m.group(2), int(m.group(3))) for m in rows}, out


def status_lines(ring):
    return ring.cluster("status").stdout.splitlines()


@pytest.mark.ring(3, rf=2)
def test_three_node_ring_has_the_balanced_tokens_and_survives_kill_and_restart(ring, tmp_path):
    ring.ensure(3)
    expected = [int(t) for t in run([TOKENS, "3"]).stdout.split()]
    # every node reports the same ring, with the tokens cassmail-tokens computed
    for node in (1, 2, 3):
        tokens, out = ring_tokens(ring, node)
        assert tokens == {addr(i + 1): ("Up", expected[i]) for i in range(3)}, out

    lines = status_lines(ring)
    assert len(lines) == 3, lines
    for i, line in enumerate(lines):
        assert re.fullmatch(r"node %d %s pid \d+ up token %d" % (i + 1, re.escape(addr(i + 1)), expected[i]), line)

    # each node's own log agrees: it took its token from the rendered configuration
    for i in (1, 2, 3):
        log = Path(ring.cluster("log", i).stdout.strip()).read_text()
        assert f"Using {expected[i - 1]} from configuration" in log

    # describe_ring over Thrift, after the schema exists at RF 2, shows exactly those tokens
    conf = conf_for(tmp_path / "c.conf")
    ring.schema(conf, rf=2)
    out = Mail(conf).admin("ring").stdout.decode()
    rows = [line.split() for line in out.splitlines()[1:]]
    assert sorted(int(r[1]) for r in rows) == expected
    for r in rows:
        assert len(r[2].split(",")) == 2, out          # two replicas per range at RF 2

    ring.cluster("kill", 2)
    status = ring.cluster("status").stdout
    assert re.search(r"^node 2 %s pid - down token %d$" % (re.escape(addr(2)), expected[1]), status, re.M), status
    assert status.count(" up ") == 2, status
    p = ring.cluster("kill", 2, check=False)
    assert p.returncode == 1 and "not running" in p.stderr

    ring.cluster("restart", 2)
    status = ring.cluster("status").stdout
    assert re.search(r"^node 2 %s pid \d+ up token %d$" % (re.escape(addr(2)), expected[1]), status, re.M), status
    tokens, out = ring_tokens(ring, node=2)
    assert tokens == {addr(i + 1): ("Up", expected[i]) for i in range(3)}, out
    # the restarted node kept its data: the schema created before the crash is still there
    assert Mail(write_conf(tmp_path / "n2.conf", cassandra={"endpoints": f"{addr(2)}:9160"})).admin("ring").stdout

    p = ring.cluster("restart", 2, check=False)
    assert p.returncode == 1 and "is running" in p.stderr


@pytest.mark.ring(3, rf=2)
def test_replicas_cassandra_reports_are_the_ones_cassmail_tokens_predicts(ring, tmp_path):
    ring.ensure(3)
    conf = conf_for(tmp_path / "c.conf")
    ring.schema(conf, rf=2)
    spec = ",".join(run([TOKENS, "3"]).stdout.split())
    out = Mail(conf).admin("ring").stdout.decode()
    ranges = [(int(a), int(b), set(eps.split(","))) for a, b, eps in
              (line.split() for line in out.splitlines()[1:])]
    for key in ["pete:inbox", "anne:outbox", unique(), unique(), unique()]:
        tok = int(run([TOKENS, "--key", key]).stdout.split()[1])
        lines = run([TOKENS, "--key", key, "--ring", spec, "--rf", "2"]).stdout.splitlines()[1:]
        predicted = {addr(re.search(r"node (\d+)", line).group(1)) for line in lines}
        # the range (start, end] holding the token; the one with start > end wraps around
        hold = [eps for start, end, eps in ranges
                if (start < tok <= end) or (start >= end and (tok > start or tok <= end))]
        assert hold == [predicted], (key, tok, ranges, predicted)


@pytest.mark.ring(3, rf=2)
def test_cli_runs_statements_from_stdin(ring):
    ring.ensure(3)
    out = ring.cluster("cli", input="show api version;\n").stdout
    assert "19.4.0" in out
    out = ring.cluster("cli", 3, input="show api version;\n").stdout
    assert f"on {addr(3)}/9160" in out and "19.4.0" in out


def test_log_names_each_nodes_system_log(ring):
    ring.ensure(ring.size or 1)
    path = Path(ring.cluster("log", 1).stdout.strip())
    assert path.name == "system.log" and "Listening for thrift clients" in path.read_text()


def test_bad_ring_sizes_and_node_numbers_are_refused(ring):
    for bad in ["0", "9", "x", "-1", ""]:
        p = ring.cluster("start", bad, check=False)
        assert p.returncode == 64 and "node count from 1 to 8" in p.stderr, (bad, p.stderr)
    p = ring.cluster("start", check=False)
    assert p.returncode == 64 and "node count from 1 to 8" in p.stderr
    for cmd in ("kill", "restart", "log", "cli"):
        p = ring.cluster(cmd, "7", check=False)
        assert p.returncode == 64 and 'no node "7"' in p.stderr, (cmd, p.stderr)
    p = ring.cluster("frobnicate", check=False)
    assert p.returncode == 64 and "unknown command" in p.stderr
    p = ring.cluster(check=False)
    assert p.returncode == 64


def test_help_describes_every_command(ring):
    out = ring.cluster("--help").stdout
    for word in ["start N [--fresh]", "stop", "kill I", "restart I", "status", "cli [I]",
                 "nodetool I", "log I", "CASSMAIL_HEAP", "Exit status"]:
        assert word in out


def test_starting_over_a_running_ring_is_refused(ring):
    ring.ensure(ring.size or 1)
    p = ring.cluster("start", "1", check=False)
    assert p.returncode == 1 and "stop it first" in p.stderr


def test_a_node_that_cannot_start_is_reported_with_its_log(tmp_path):
    # a ring of its own (run folder, addresses, JMX ports) beside the session's ring
    env = dict(os.environ, CASSMAIL_RUN=str(tmp_path), CASSMAIL_NET="127.0.254",
               CASSMAIL_JMX_BASE="7390", CASSMAIL_HEAP="1M")
    p = run([str(CLUSTER), "start", "1"], check=False, env=env, timeout=120)
    assert p.returncode == 1, p
    assert "node 1 (127.0.254.1)" in p.stderr and "stdout.log" in p.stderr
    assert "Too small" in p.stderr           # the JVM's own complaint, from the log tail


@pytest.mark.ring(3, rf=2)
def test_stop_ends_every_node_and_start_without_fresh_keeps_the_data(ring, tmp_path):
    n = 3
    ring.ensure(n)
    conf = conf_for(tmp_path / "c.conf")
    ring.schema(conf, rf=2)
    pids = [int(line.split()[4]) for line in status_lines(ring)]
    ring.stop()
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists()
    lines = status_lines(ring)
    assert len(lines) == n and all(" pid - down " in line for line in lines), lines
    assert "stopped" not in ring.cluster("stop").stdout      # a second stop has nothing to do

    ring.cluster("start", n)                                  # no --fresh: the same ring again
    ring.adopt(n, fresh=False)                                # the following tests' ring
    lines = status_lines(ring)
    assert len(lines) == n and all(" up " in line for line in lines), lines
    assert "Keyspace: Mail" in ring.cluster("cli", input="describe keyspace Mail;\n").stdout
    assert "Using saved token" in Path(ring.cluster("log", 1).stdout.strip()).read_text()


def test_a_write_acknowledged_just_before_a_sigkill_survives_the_restart(ring, tmp_path):
    """The default commit log mode (batch) makes an acknowledged write durable at once: a user added
    and the node SIGKILLed right after is still there when the node restarts. (In 0.7.0's periodic
    mode this fails: the write sits in the JVM's log buffer for up to 10 s.)"""
    ring.ensure(1)
    conf = conf_for(tmp_path / "cassmail.conf")
    mail = Mail(conf)
    ring.schema(conf)
    yaml = (Path(ring.cluster("log", 1).stdout.strip()).parents[1] / "conf" / "cassandra.yaml").read_text()
    assert re.search(r"^commitlog_sync: batch$", yaml, re.M), "the rendered node configuration is not in batch mode"
    names = [mail.useradd() for _ in range(3)]
    ring.cluster("kill", 1)
    ring.cluster("restart", 1)
    for name in names:
        assert mail.admin("mailboxes", name).stdout.split() == [b"inbox", b"outbox"], name
