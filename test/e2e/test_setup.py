"""First contact: what a newcomer's first `make run` and `make test` meet on a fresh machine.

The Makefile: on a fresh machine pkg-config knows none of the libraries until tools/setup has
installed their -dev packages, and setup runs inside the very `make run` (or `make test`) whose
Makefile was already read. Each test here runs the project's real Makefile in a small tree of its
own, against a machine made to look fresh: a pkg-config on PATH that answers nothing until a
stand-in tools/setup has "installed" the libraries (it then hands over to the real pkg-config),
and one source file in each of the library and the programs that includes <glib.h>, which the
compiler finds only through pkg-config's -I flags. The stand-ins for tools/run-local and test/run
check that the build is there and runs. `make tools/fresh-check` (tools/fresh-check) shows the
same on a real fresh Debian root; it needs root and minutes, so it is not part of `make test`.

tools/cluster: where the machine's hostname does not resolve (no /etc/hosts line, as in many
containers and fresh roots), Cassandra 0.7's InetAddress.getLocalHost fails and every read
answers "Internal error processing get_slice". The test starts a real node under a hostname that
resolves nowhere (a UTS namespace of its own) and reads and writes through it at QUORUM (reads
above ONE are what ask for the local host's address, once, in Cassandra's GuidGenerator).
"""
import os
import random
import shutil
import string
import subprocess
from pathlib import Path

import pytest

from conftest import CLUSTER, TOP, Mail, run, unique, write_conf

# What each stand-in leaves in the tree's log, one line each, in the order they ran.
FAKE_SETUP = """#!/bin/sh
# stand-in for tools/setup: the libraries appear now, as apt-get install would make them
echo setup >> "$FRESH_LOG"
touch "$FRESH_INSTALLED"
"""
FAKE_PKG_CONFIG = """#!/bin/sh
# pkg-config of a machine whose -dev packages are installed only by tools/setup
[ -e "$FRESH_INSTALLED" ] || exit 1
exec "$REAL_PKG_CONFIG" "$@"
"""
# test/run and tools/run-local: the build must be there (build/, or the one CASSMAIL_BUILD names
# under make test-asan), and its program must run.
FAKE_AFTER = """#!/bin/sh
echo "{name}" >> "$FRESH_LOG"
"${{CASSMAIL_BUILD:-build}}/probe" || {{ echo "{name}: the probe did not run" >&2; exit 1; }}
"""
LIB_SOURCE = """#include <glib.h>
/* probe_major - the GLib major version this was compiled against */
int probe_major(void) { return GLIB_MAJOR_VERSION; }
"""
CMD_SOURCE = """#include <glib.h>
int probe_major(void);
int main(void) { return probe_major() == 2 && glib_major_version == 2 ? 0 : 1; }
"""


@pytest.fixture
def fresh_tree(tmp_path):
    """(tree, env): the real Makefile in a tree of stand-ins, and an environment in which
    pkg-config knows nothing until the tree's tools/setup ran."""
    real = shutil.which("pkg-config")
    assert real, "pkg-config missing: tools/setup installs it"
    tree = tmp_path / "tree"
    for d in ("src/util", "src/cmd", "tools", "test", "gen-c_glib", "bin"):
        (tree / d).mkdir(parents=True)
    shutil.copy2(TOP / "Makefile", tree / "Makefile")
    files = {"tools/setup": FAKE_SETUP, "bin/pkg-config": FAKE_PKG_CONFIG,
             "tools/run-local": FAKE_AFTER.format(name="run-local"),
             "test/run": FAKE_AFTER.format(name="test-run"),
             "src/util/probe.c": LIB_SOURCE, "src/cmd/probe.c": CMD_SOURCE}
    for name, text in files.items():
        (tree / name).write_text(text)
        if not name.endswith(".c"):
            (tree / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "CFLAGS", "LDLIBS")}
    env.update(PATH=f"{tree / 'bin'}:{os.environ['PATH']}", REAL_PKG_CONFIG=real,
               FRESH_LOG=str(tree / "log"), FRESH_INSTALLED=str(tree / "installed"))
    return tree, env


def make(tree, env, *args, timeout=600):
    return subprocess.run(["make", *args], cwd=tree, env=env, capture_output=True, text=True,
                          timeout=timeout)


def log_lines(tree):
    log = tree / "log"
    return log.read_text().split() if log.exists() else []


@pytest.mark.parametrize("target,after", [("run", "run-local"), ("test", "test-run"),
                                          ("test-ring", "test-run")])
@pytest.mark.parametrize("jobs", ["-j1", "-j2"])
def test_first_make_on_a_fresh_machine_sets_up_then_builds(fresh_tree, target, after, jobs):
    tree, env = fresh_tree
    # Fresh indeed: before setup, pkg-config knows nothing.
    assert subprocess.run(["pkg-config", "--cflags", "glib-2.0"], env=env,
                          capture_output=True).returncode != 0
    p = make(tree, env, jobs, target)
    assert p.returncode == 0, f"first make {target} failed:\n{p.stdout}\n{p.stderr}"
    assert log_lines(tree) == ["setup", after]
    assert (tree / "build" / "probe").exists()
    # The compile really used pkg-config's flags (gcc found <glib.h> under glib-2.0/).
    assert "glib-2.0" in p.stdout


def test_test_asan_sets_up_then_builds_with_the_sanitizers(fresh_tree):
    tree, env = fresh_tree
    p = make(tree, env, "test-asan")
    assert p.returncode == 0, f"first make test-asan failed:\n{p.stdout}\n{p.stderr}"
    assert log_lines(tree) == ["setup", "test-run"]
    assert (tree / "build" / "asan" / "probe").exists()


def test_make_without_setup_says_what_to_do(fresh_tree):
    tree, env = fresh_tree
    p = make(tree, env, "all")
    assert p.returncode != 0
    assert "run tools/setup" in p.stderr, p.stderr
    # it stopped before the compiler tried (and failed on <glib.h>)
    assert "glib.h" not in p.stderr and not (tree / "build" / "obj").exists()
    assert log_lines(tree) == []


def test_a_second_make_run_sets_up_again_and_builds_nothing_new(fresh_tree):
    tree, env = fresh_tree
    assert make(tree, env, "run").returncode == 0
    p = make(tree, env, "run")
    assert p.returncode == 0, p.stderr
    assert log_lines(tree) == ["setup", "run-local", "setup", "run-local"]
    assert "gcc" not in p.stdout and "cc " not in p.stdout


def unresolvable_name():
    """A hostname that resolves nowhere: not in /etc/hosts, not in DNS."""
    for _ in range(5):
        name = "cassmail-nohost-" + "".join(random.choice(string.ascii_lowercase) for _ in range(8))
        if subprocess.run(["getent", "hosts", name], capture_output=True).returncode != 0:
            return name
    pytest.fail("could not find a hostname that does not resolve")


# First in the session: the node it starts is the other tests' 1-node ring.
@pytest.mark.ring(1, first=True)
def test_cluster_serves_reads_where_the_hostname_does_not_resolve(ring, tmp_path):
    """A node started by tools/cluster under a hostname no resolver knows still serves reads
    (get_slice) and writes; its system.log has no UnknownHostException."""
    name = unresolvable_name()
    # A UTS namespace of its own gives the node (and only it) the hostname; without root, a
    # user namespace makes that possible.
    unshare = ["unshare", "--uts"] if os.geteuid() == 0 else ["unshare", "--user", "--map-root-user", "--uts"]
    ring.stop()
    ok = False
    try:
        run([*unshare, "sh", "-c", 'hostname "$1" && exec "$2" start 1 --fresh', "sh", name,
             str(CLUSTER)], timeout=600)
        ring.adopt(1, fresh=True)
        pid = run([str(CLUSTER), "status"]).stdout.split()[4]
        # The JVM really runs under that hostname (its UTS namespace is not ours).
        assert os.readlink(f"/proc/{pid}/ns/uts") != os.readlink("/proc/self/ns/uts")
        assert run(["nsenter", "-t", pid, "-u", "hostname"]).stdout.strip() == name

        # Reads above ONE go through the node's messaging (strongRead -> sendRR), whose
        # GuidGenerator asks InetAddress.getLocalHost once; ONE reads the local node directly.
        conf = write_conf(tmp_path / "cassmail.conf",
                          cassandra={"read_consistency": "QUORUM", "write_consistency": "QUORUM"})
        mail = Mail(conf)
        ring.schema(conf)
        user = mail.useradd(unique("h"), password="host pass 1")
        assert mail.list(user) == []          # get_slice on MailboxIndex
        p = mail.admin("mailboxes", user)     # get_slice on Users
        assert b"inbox" in p.stdout, p.stdout
        # an unknown user: confirmed at QUORUM, and really unknown
        p = mail.admin("mailboxes", unique("nobody"), check=False)
        assert p.returncode != 0 and b"Internal error" not in p.stderr, p.stderr
        log = Path(run([str(CLUSTER), "log", "1"]).stdout.strip()).read_text(errors="replace")
        assert "UnknownHostException" not in log and "Internal error" not in log
        ok = True
    finally:
        # A node that served everything is the following tests' 1-node ring (one start fewer).
        if not ok:
            ring.stop()
