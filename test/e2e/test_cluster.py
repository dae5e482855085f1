"""tools/cluster: real Cassandra 0.7.0 rings on loopback, read back from Cassandra itself."""
import re

from conftest import BUILD, Mail, run, unique, write_conf

TOKENS = str(BUILD / "cassmail-tokens")


def ring_tokens(ring, node=1):
    """{address: token} as nodetool (JMX, Cassandra's own view) reports the ring."""
    out = ring.cluster("nodetool", node, "ring").stdout
    return {m.group(1): int(m.group(3)) for m in
            re.finditer(r"^(127\.0\.0\.\d+)\s+(Up|Down)\s+\S+.*?(\d+)\s*$", out, re.M)}, out


def test_three_node_ring_has_the_balanced_tokens_and_survives_kill_and_restart(ring, tmp_path):
    ring.ensure(3)
    expected = [int(t) for t in run([TOKENS, "3"]).stdout.split()]
    tokens, out = ring_tokens(ring)
    assert tokens == {f"127.0.0.{i + 1}": expected[i] for i in range(3)}, out

    status = ring.cluster("status").stdout.splitlines()
    assert len(status) == 3 and all(" up token " in line for line in status), status

    # describe_ring over Thrift, after the schema exists at RF 2, shows exactly those tokens
    conf = write_conf(tmp_path / "c.conf")
    ring.schema(conf, rf=2)
    out = Mail(conf).admin("ring").stdout.decode()
    rows = [line.split() for line in out.splitlines()[1:]]
    assert sorted(int(r[1]) for r in rows) == expected
    for r in rows:
        assert len(r[2].split(",")) == 2, out          # two replicas per range at RF 2

    ring.cluster("kill", 2)
    status = ring.cluster("status").stdout
    assert re.search(r"^node 2 127\.0\.0\.2 pid - down", status, re.M), status
    ring.cluster("restart", 2)
    status = ring.cluster("status").stdout
    assert re.search(r"^node 2 127\.0\.0\.2 pid \d+ up token", status, re.M), status
    tokens, out = ring_tokens(ring, node=2)
    assert len(tokens) == 3 and "Down" not in out


def test_replicas_cassandra_reports_are_the_ones_cassmail_tokens_predicts(ring, tmp_path):
    ring.ensure(3)
    conf = write_conf(tmp_path / "c.conf")
    ring.schema(conf, rf=2)
    spec = ",".join(run([TOKENS, "3"]).stdout.split())
    out = Mail(conf).admin("ring").stdout.decode()
    ranges = [(int(a), int(b), set(eps.split(","))) for a, b, eps in
              (line.split() for line in out.splitlines()[1:])]
    for key in ["pete:inbox", "anne:outbox", unique(), unique(), unique()]:
        tok = int(run([TOKENS, "--key", key]).stdout.split()[1])
        lines = run([TOKENS, "--key", key, "--ring", spec, "--rf", "2"]).stdout.splitlines()[1:]
        predicted = {"127.0.0.%s" % re.search(r"node (\d+)", line).group(1) for line in lines}
        # the range (start, end] holding the token; the one with start > end wraps around
        hold = [eps for start, end, eps in ranges
                if (start < tok <= end) or (start >= end and (tok > start or tok <= end))]
        assert hold == [predicted], (key, tok, ranges, predicted)


def test_cli_runs_statements_from_stdin(ring):
    ring.ensure(ring.size or 1)
    out = ring.cluster("cli", input="show api version;\n").stdout
    assert "19.4.0" in out


def test_bad_ring_sizes_and_node_numbers_are_refused(ring):
    for bad in ["0", "9", "x"]:
        p = ring.cluster("start", bad, check=False)
        assert p.returncode == 64 and "node count from 1 to 8" in p.stderr
    p = ring.cluster("kill", "7", check=False)
    assert p.returncode == 64
    p = ring.cluster("frobnicate", check=False)
    assert p.returncode == 64


def test_starting_over_a_running_ring_is_refused(ring):
    ring.ensure(ring.size or 1)
    p = ring.cluster("start", "1", check=False)
    assert p.returncode == 1 and "stop it first" in p.stderr
