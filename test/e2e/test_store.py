"""The mail store and cassmail-admin against a real Cassandra 0.7.0 node."""
import re
import time


from conftest import BUILD, NET, Mail, run, unique, write_conf

CHECK = BUILD / "test" / "store-check"


def store_check(mail, check):
    user = mail.useradd()
    p = run([str(CHECK), str(mail.conf), check, user], check=False, timeout=300)
    assert p.returncode == 0 and f"ok {check}" in p.stdout, p.stdout + p.stderr


def test_a_2mb_binary_message_round_trips_byte_exact(mail):
    store_check(mail, "roundtrip")


def test_a_10mb_message_at_the_default_size_limit_round_trips(mail):
    store_check(mail, "large")


def test_one_connection_reads_more_than_100mb(mail):
    store_check(mail, "volume")


def test_timeuuid_columns_come_back_in_arrival_order(mail):
    store_check(mail, "order")


def test_1000_messages_listed_in_batches_of_64_each_exactly_once(mail):
    store_check(mail, "paging")


def test_deletion_removes_message_and_index_entry(mail):
    store_check(mail, "delete")


def test_one_delivery_to_several_mailboxes_shares_one_timeuuid(mail):
    store_check(mail, "outbox")


def test_schema_creation_twice_is_harmless_and_cli_shows_the_eight_column_families(mail, ring):
    for _ in range(2):
        assert "keyspace Mail ready" in mail.admin("schema").stdout.decode()
    out = ring.cluster("cli", input="describe keyspace Mail;\n").stdout
    cfs = dict(re.findall(r"ColumnFamily: (\w+).*?Columns sorted by: org\.apache\.cassandra\.db\.marshal\.(\w+)",
                          out, re.S))
    assert cfs == {"Users": "BytesType", "Mailboxes": "TimeUUIDType",
                   "MailboxIndex": "TimeUUIDType", "Credentials": "BytesType",
                   "Bodies": "LongType", "ImapSeals": "BytesType", "Flags": "BytesType",
                   "MessageMeta": "TimeUUIDType"}, out
    # The small column families flush after a minute, so they never hold the commit log for the
    # default hour; Mailboxes flushes by size (the CLI prints ops/MB/minutes).
    assert flush_minutes(out) == {"Users": 1, "Mailboxes": 60, "MailboxIndex": 1, "Credentials": 1,
                                  "Bodies": 60, "ImapSeals": 1, "Flags": 1, "MessageMeta": 1}, out
    # The column families of message octets flush at 256 MB and compact 16 to 32 SSTables at
    # once (docs/tuning.md); the small ones keep 0.7's size and compaction thresholds.
    sizes, compaction = cf_thresholds(out)
    for cf in ("Mailboxes", "Bodies"):
        assert sizes[cf] == (1.0, 256) and compaction[cf] == (16, 32), out
    for cf in ("Users", "MailboxIndex", "Credentials", "ImapSeals", "Flags", "MessageMeta"):
        assert compaction[cf] == (4, 32), out


def cf_thresholds(cli_out):
    """({cf: (memtable million operations, MB)}, {cf: (min, max compaction threshold)}) from the
    CLI's `describe keyspace`."""
    sizes = {cf: (float(ops), int(mb)) for cf, ops, mb in re.findall(
        r"ColumnFamily: (\w+).*?Memtable thresholds: ([\d.]+)/(\d+)/\d+", cli_out, re.S)}
    compaction = {cf: (int(lo), int(hi)) for cf, lo, hi in re.findall(
        r"ColumnFamily: (\w+).*?Compaction min/max thresholds: (\d+)/(\d+)", cli_out, re.S)}
    return sizes, compaction


def flush_minutes(cli_out):
    """{column family: memtable_flush_after_mins} from the CLI's `describe keyspace`."""
    return {cf: int(m) for cf, m in re.findall(
        r"ColumnFamily: (\w+).*?Memtable thresholds: [\d.]+/\d+/(\d+)", cli_out, re.S)}


def test_schema_brings_an_older_keyspace_up_to_date(mail, ring):
    """A keyspace made before the memtable lifetime was set, or missing a column family, is
    repaired by `cassmail-admin schema`, which says what it changed."""
    ring.cluster("cli", input="use Mail;\nupdate column family MailboxIndex with memtable_flush_after=60;\n")
    assert flush_minutes(ring.cluster("cli", input="describe keyspace Mail;\n").stdout)["MailboxIndex"] == 60
    p = mail.admin("schema")
    assert b"Mail.MailboxIndex now flushes its memtable after 1 minute(s)" in p.stderr, p.stderr
    assert flush_minutes(ring.cluster("cli", input="describe keyspace Mail;\n").stdout)["MailboxIndex"] == 1
    # nothing left to change: silent
    assert b"now flushes" not in mail.admin("schema").stderr


def test_schema_gives_an_older_keyspace_the_mail_memtable_and_compaction_settings(mail, ring):
    """A keyspace made with 0.7's thresholds for Mailboxes gets CassMail's from `schema`."""
    ring.cluster("cli", input="use Mail;\nupdate column family Mailboxes with memtable_throughput=64 "
                 "and min_compaction_threshold=4 and max_compaction_threshold=32;\n")
    sizes, compaction = cf_thresholds(ring.cluster("cli", input="describe keyspace Mail;\n").stdout)
    assert sizes["Mailboxes"][1] == 64 and compaction["Mailboxes"] == (4, 32)
    p = mail.admin("schema")
    assert b"Mail.Mailboxes memtable_throughput_in_mb 256; memtable_operations_in_millions 1; " \
           b"min_compaction_threshold 16; max_compaction_threshold 32" in p.stderr, p.stderr
    sizes, compaction = cf_thresholds(ring.cluster("cli", input="describe keyspace Mail;\n").stdout)
    assert sizes["Mailboxes"] == (1.0, 256) and compaction["Mailboxes"] == (16, 32)
    assert b"Mail.Mailboxes" not in mail.admin("schema").stderr


def test_users_and_mailboxes_are_added_listed_and_removed(mail):
    a, b = unique(), unique()
    mail.useradd(a)
    mail.useradd(b)
    users = mail.admin("users").stdout.decode().split()
    assert a in users and b in users
    assert mail.admin("mailboxes", a).stdout.decode().split() == ["inbox", "outbox"]
    mail.admin("mailbox", "add", a, "archive")
    assert mail.admin("mailboxes", a).stdout.decode().split() == ["archive", "inbox", "outbox"]
    mail.admin("userdel", a)
    assert a not in mail.admin("users").stdout.decode().split()
    for command in ("mailboxes", "list"):
        p = mail.admin(command, a, check=False)
        assert p.returncode == 67 and b"no such user" in p.stderr, command


def test_import_reads_a_postal_style_user_list(mail, tmp_path):
    names = [unique() for _ in range(5)]
    lst = tmp_path / "users.txt"
    lst.write_text("# postal list\n" + "".join(f"{n}@example.com\n" for n in names[:3])
                   + f"<{names[3].upper()}@Example.COM>\n\n{names[4]}\n")
    out = mail.admin("import", lst).stdout.decode()
    assert "5 users added" in out
    users = set(mail.admin("users").stdout.decode().split())
    assert set(names) <= users
    # a line of two words is refused whole, not taken as its first word
    first = unique()
    lst.write_text(f"{first} Smith\n")
    p = mail.admin("import", lst, check=False)
    assert p.returncode == 65 and b"not a valid user name" in p.stderr, p.stderr
    assert b"0 users added, 1 lines refused" in p.stdout
    assert first not in mail.admin("users").stdout.decode().split()


def test_bad_names_and_unknown_users_get_clear_errors_and_sysexits_codes(mail, tmp_path):
    p = mail.admin("useradd", "Bad:Name", check=False)
    assert p.returncode == 65 and b"invalid user name" in p.stderr
    p = mail.admin("passwd", unique(), input=b"x\n", check=False)
    assert p.returncode == 67
    p = mail.admin("frobnicate", check=False)
    assert p.returncode == 64 and b"unknown command" in p.stderr
    p = mail.admin("import", tmp_path / "missing.txt", check=False)
    assert p.returncode == 66


def test_passwords_are_stored_hashed_never_in_clear(mail, ring):
    user = unique()
    secret = "s3cret-" + unique("p")
    mail.useradd(user, password=secret)
    out = ring.cluster("cli", input=f"use Mail;\nget Credentials['{user}'];\n").stdout
    assert "=> (column=" in out, out
    assert secret.encode().hex() not in out and secret not in out


def test_passwd_iterations_sets_the_hash_cost_and_refuses_out_of_range(mail, ring):
    user = unique()
    mail.useradd(user)
    mail.admin("passwd", "--iterations", "1000", user, input=b"cheap-but-salted\n")
    out = ring.cluster("cli", input=f"use Mail;\nget Credentials['{user}'];\n").stdout
    assert "i=1000$".encode().hex() in out, out
    for bad in ("999", "100000001"):
        p = mail.admin("passwd", "--iterations", bad, user, input=b"x\n", check=False)
        assert p.returncode == 64 and b"--iterations must be from 1000 to 100000000" in p.stderr, p


def test_auth_password_iterations_sets_the_cost_of_new_hashes_and_is_range_checked(mail, ring, tmp_path):
    base = mail.conf.read_text()
    conf = tmp_path / "auth.conf"
    conf.write_text(base + "\n[auth]\npassword_iterations=2000\n")
    cheap = Mail(conf)
    user = unique()
    cheap.useradd(user)
    cheap.admin("passwd", user, input=b"configured-cost\n")
    out = ring.cluster("cli", input=f"use Mail;\nget Credentials['{user}'];\n").stdout
    assert "i=2000$".encode().hex() in out, out
    cheap.admin("passwd", "--iterations", "3000", user, input=b"explicit-cost\n")
    out = ring.cluster("cli", input=f"use Mail;\nget Credentials['{user}'];\n").stdout
    assert "i=3000$".encode().hex() in out, out
    conf.write_text(base + "\n[auth]\npassword_iterations=999\n")
    p = Mail(conf).admin("users", check=False)
    assert p.returncode == 78 and b"password_iterations" in p.stderr, p


def test_ring_lists_the_node(mail):
    out = mail.admin("ring").stdout.decode()
    assert re.search(r"^0\s+0\s+%s\.1$" % re.escape(NET), out, re.M), out


def test_with_no_node_running_tools_fail_clearly_within_the_retry_budget(tmp_path):
    conf = write_conf(tmp_path / "dead.conf", cassandra={"endpoints": "127.0.0.254:9160",
                                                        "retry_ms": 1500, "timeout_ms": 1000})
    m = Mail(conf)
    t0 = time.monotonic()
    p = m.admin("users", check=False)
    took = time.monotonic() - t0
    assert p.returncode == 69, p
    assert b"cannot connect to 127.0.0.254:9160" in p.stderr
    assert took < 10
    p = run([str(CHECK), str(conf), "roundtrip", "nobody"], check=False, timeout=60)
    assert p.returncode == 1 and "cannot connect" in p.stderr
