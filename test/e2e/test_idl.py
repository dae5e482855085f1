"""Our Thrift IDL against Cassandra 0.7.0 itself: the jar's compiled classes and a live node."""
import re
import subprocess

import pytest

from conftest import TOP, run

IDL = TOP / "thrift" / "cassandra.thrift"
LIB = TOP / ".cache" / "cassandra" / "lib"


@pytest.fixture(scope="module")
def jar_dump(tmp_path_factory):
    out = tmp_path_factory.mktemp("idl") / "jar.json"
    p = run(["java", "-cp", f"{LIB}/*", str(TOP / "tools/idl/ThriftJarDump.java")])
    out.write_text(p.stdout)
    return out


def compare(idl, dump):
    return subprocess.run(["python3", str(TOP / "tools/idl/compare.py"), str(idl), str(dump)],
                          capture_output=True, text=True)


def test_idl_matches_every_struct_enum_and_method_of_the_jar(jar_dump):
    p = compare(IDL, jar_dump)
    assert p.returncode == 0, p.stdout
    counts = re.search(r"OK: (\d+) structs/exceptions, (\d+) enums, (\d+) methods", p.stdout)
    assert counts and [int(x) for x in counts.groups()] == [25, 3, 28], p.stdout


@pytest.mark.parametrize("change", [
    ("4: required i32 replication_factor", "6: required i32 replication_factor"),   # a field id
    ("3: required i64 timestamp,\n   4: optional i32 ttl",
     "3: optional i64 timestamp,\n   4: optional i32 ttl"),                           # requiredness
    ("ALL = 5", "ALL = 7"),                                                           # an enum value
    ("4:required i32 keys_per_split", "4:required i64 keys_per_split"),               # an argument type
    ("(1: InvalidRequestException ire, 2: UnavailableException ue)",
     "(1: InvalidRequestException ire, 3: UnavailableException ue)"),                 # an exception id
])
def test_comparison_fails_when_the_idl_is_changed(jar_dump, tmp_path, change):
    text = IDL.read_text()
    assert change[0] in text, f"test premise: {change[0]!r} not in the IDL"
    bad = tmp_path / "cassandra.thrift"
    bad.write_text(text.replace(change[0], change[1], 1))
    p = compare(bad, jar_dump)
    assert p.returncode == 1 and "MISMATCH" in p.stdout, p.stdout


def test_committed_stubs_equal_a_fresh_generation(tmp_path):
    run(["thrift", "--gen", "c_glib", "-out", str(tmp_path), str(IDL)])
    fresh = sorted(f.name for f in tmp_path.iterdir())
    committed = sorted(f.name for f in (TOP / "gen-c_glib").iterdir())
    assert fresh == committed
    for name in fresh:
        assert (tmp_path / name).read_bytes() == (TOP / "gen-c_glib" / name).read_bytes(), \
            f"gen-c_glib/{name} is stale: run `make gen`"


def test_live_node_reports_api_version_19_4_0(mail):
    out = mail.admin("version").stdout.decode()
    assert "Thrift API 19.4.0" in out
