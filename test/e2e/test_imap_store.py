"""The IMAP store layer (src/imap/view.c: seals, flags, meta, mailboxes) against real Cassandra
0.7.0: a 1-node ring, and a 3-node ring at RF 3 where QUORUM is two replicas."""
import os
import re
import shutil

import pytest

from conftest import BUILD, Mail, node, run, write_conf

CHECK = BUILD / "test" / "imap-store-check"


def imap_check(mail, check, *args):
    user = mail.useradd()
    p = run([str(CHECK), str(mail.conf), check, user, *map(str, args)], check=False, timeout=600)
    assert p.returncode == 0 and f"ok {check}" in p.stdout, p.stdout + p.stderr
    return p.stdout


def test_two_views_agree_on_every_uid_and_new_mail_gets_higher_ones(mail):
    imap_check(mail, "seals")


def test_flags_merge_and_expunge_and_pop3_dele_are_seen_by_the_other_view(mail):
    imap_check(mail, "flags")


def test_meta_of_10000_messages_comes_back_in_ten_reads(mail):
    out = imap_check(mail, "meta", 10000)
    calls = int(re.search(r"meta_calls=(\d+)", out).group(1))
    assert calls <= 10, out
    print(out)


def test_create_rename_delete_with_imap_names_and_append_and_copy(mail):
    imap_check(mail, "mailboxes")


def test_two_variants_of_a_seal_move_the_mailbox_to_a_new_uidvalidity(mail):
    imap_check(mail, "conflict")


def test_the_schema_has_the_imap_column_families(mail, ring):
    out = ring.cluster("cli", input="describe keyspace Mail;\n").stdout
    cfs = dict(re.findall(r"ColumnFamily: (\w+).*?Columns sorted by: org\.apache\.cassandra\.db\.marshal\.(\w+)",
                          out, re.S))
    assert cfs["ImapSeals"] == "BytesType" and cfs["Flags"] == "BytesType", out
    assert cfs["MessageMeta"] == "TimeUUIDType", out


@pytest.fixture
def mail3(ring, tmp_path):
    """A 3-node ring at RF 3, the store at QUORUM."""
    ring.ensure(3)
    conf = write_conf(tmp_path / "cassmail.conf", cassandra={
        "endpoints": ";".join(node(i) for i in (1, 2, 3)), "write_consistency": "QUORUM",
        "read_consistency": "QUORUM"})
    ring.schema(conf, rf=3)
    return Mail(conf)


@pytest.mark.parametrize("check", ["seals", "flags", "conflict"])
def test_on_three_nodes_at_rf3(mail3, check):
    imap_check(mail3, check)


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind not installed")
@pytest.mark.parametrize("check", ["seals", "flags", "mailboxes", "conflict"])
def test_the_cassandra_backend_of_imap_is_memcheck_clean(mail, check, tmp_path):
    """Each check under valgrind's memcheck against the real node: no error, no leak (as
    test_valgrind.py judges the servers)."""
    user = mail.useradd()
    log = tmp_path / "vg.log"
    p = run(["valgrind", "--leak-check=full", "--show-leak-kinds=definite,indirect",
             "--errors-for-leak-kinds=definite,indirect", "--num-callers=30",
             f"--log-file={log}", str(CHECK), str(mail.conf), check, user],
            check=False, timeout=900, env={**os.environ, "G_SLICE": "always-malloc",
                                           "G_DEBUG": "gc-friendly"})
    text = log.read_text(errors="replace")
    assert p.returncode == 0 and f"ok {check}" in p.stdout, p.stdout + p.stderr + text[-3000:]
    assert "ERROR SUMMARY: 0 errors" in text, text[-6000:]
