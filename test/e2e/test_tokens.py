"""cassmail-tokens: balanced tokens, and key tokens checked against Cassandra's own partitioner."""
import hashlib
import random
import string
import subprocess

import pytest

from conftest import BUILD, TOP, run

TOKENS = str(BUILD / "cassmail-tokens")


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 64])
def test_balanced_tokens_are_exact(n):
    out = run([TOKENS, str(n)]).stdout.split()
    assert [int(t) for t in out] == [i * 2**127 // n for i in range(n)]


@pytest.mark.parametrize("arg", ["0", "abc", "", "3x", "65537", "1.5"])
def test_bad_node_counts_are_refused_clearly(arg):
    p = run([TOKENS, arg], check=False)
    assert p.returncode == 64 and p.stdout == ""
    assert "whole number" in p.stderr


@pytest.mark.parametrize("arg", ["-1", "-8"])
def test_a_negative_count_is_refused_as_a_count(arg):
    p = run([TOKENS, arg], check=False)
    assert p.returncode == 64 and p.stdout == ""
    assert "whole number" in p.stderr and f'"{arg}"' in p.stderr


def test_more_than_one_count_is_a_usage_error():
    p = run([TOKENS, "2", "3"], check=False)
    assert p.returncode == 64 and p.stdout == ""


def test_no_argument_is_a_usage_error():
    p = run([TOKENS], check=False)
    assert p.returncode == 64 and "number of nodes" in p.stderr


def test_yaml_lines_name_each_node():
    out = run([TOKENS, "--yaml", "2"]).stdout
    assert out == "# node 1\ninitial_token: 0\n# node 2\ninitial_token: %d\n" % (2**127 // 2)


def python_token(key: bytes) -> int:
    """RandomPartitioner's token: MD5 read as a signed big-endian integer, absolute value."""
    return abs(int.from_bytes(hashlib.md5(key).digest(), "big", signed=True))


@pytest.mark.parametrize("key", ["pete:inbox", "a", "b", "user:mailbox", "caf\u00e9:inbox", "x" * 300])
def test_key_tokens_agree_with_python(key):
    out = run([TOKENS, "--key", key]).stdout
    assert out == f"token {python_token(key.encode())}\n"


def test_a_key_is_octets_not_text():
    key = b"caf\xe9:inbox"          # Latin-1, not valid UTF-8: hashed as given
    out = subprocess.run([TOKENS.encode(), b"--key", key], capture_output=True, check=True).stdout
    assert out == b"token %d\n" % python_token(key)


def test_key_tokens_of_keys_whose_md5_has_the_top_bit_set():
    keys = [f"k{i}" for i in range(200)]
    top = [k for k in keys if hashlib.md5(k.encode()).digest()[0] & 0x80][:20]
    assert len(top) == 20
    for k in top:
        assert int(run([TOKENS, "--key", k]).stdout.split()[1]) == python_token(k.encode())
    # the most negative MD5 value possible is 2^127 away from 0: every token lies in 0 .. 2^127
    assert all(0 <= python_token(k.encode()) <= 2**127 for k in keys)


def test_key_tokens_agree_with_cassandras_random_partitioner_on_1000_keys():
    rng = random.Random(20101)
    keys = ["pete:inbox", "anne:outbox", "a", "user:mailbox"]
    keys += ["".join(rng.choice(string.ascii_letters + string.digits + ":._-") for _ in range(rng.randint(1, 40)))
             for _ in range(1000)]
    top_bit = [k for k in keys if hashlib.md5(k.encode()).digest()[0] & 0x80]
    assert len(top_bit) > 300, "the sample must include keys whose MD5 has the top bit set"
    oracle = subprocess.run(["java", "-cp", f"{TOP}/.cache/cassandra/lib/*", str(TOP / "test/e2e/TokenOracle.java")],
                            input="".join(k.encode().hex() + "\n" for k in keys), capture_output=True,
                            text=True, check=True, timeout=120).stdout.split("\n")
    cassandra = {bytes.fromhex(line.split()[0]).decode(): line.split()[1] for line in oracle if line.strip()}
    for k in keys:
        ours = run([TOKENS, "--key", k]).stdout.split()
        assert ours[0] == "token" and ours[1] == cassandra[k], k


def test_ring_ownership_and_replicas_follow_simple_strategy():
    ring = run([TOKENS, "3"]).stdout.split()
    spec = ",".join(ring)
    toks = [int(t) for t in ring]
    for k in ["pete:inbox", "anne:inbox", "x", "mail:outbox", "zz"]:
        t = abs(int.from_bytes(hashlib.md5(k.encode()).digest(), "big", signed=True))
        owner = next((i for i, nt in enumerate(toks) if nt >= t), 0)
        out = run([TOKENS, "--key", k, "--ring", spec, "--rf", "2"]).stdout.splitlines()
        assert out[1] == f"owner node {owner + 1} token {toks[owner]}"
        nxt = (owner + 1) % 3
        assert out[2] == f"replica node {nxt + 1} token {toks[nxt]}"


def test_ring_from_a_file_and_bad_rings_are_refused(tmp_path):
    f = tmp_path / "ring"
    f.write_text("\n".join(run([TOKENS, "4"]).stdout.split()) + "\n")
    assert "owner node" in run([TOKENS, "--key", "k", "--ring", str(f)]).stdout
    p = run([TOKENS, "--key", "k", "--ring", "1,banana"], check=False)
    assert p.returncode == 64 and "not a token" in p.stderr
    p = run([TOKENS, "--key", "k", "--ring", "1,2", "--rf", "3"], check=False)
    assert p.returncode == 64 and "--rf" in p.stderr
    p = run([TOKENS, "--key", "k", "--ring", str(2**128)], check=False)
    assert p.returncode == 64


def test_growing_a_ring_keeps_old_nodes_where_it_can():
    out = run([TOKENS, "--move", "2", "4"]).stdout.splitlines()
    assert out[0] == "node 1: keeps 0"
    assert out[1] == f"node 2: keeps {2**127 // 2}"
    assert sorted(out[2:]) == sorted([f"node 3: new, initial_token {2**127 // 4}",
                                      f"node 4: new, initial_token {3 * 2**127 // 4}"])
    out = run([TOKENS, "--move", "3", "4"]).stdout
    assert "moves from" in out
    assert run([TOKENS, "--move", "4", "2"], check=False).returncode == 64
