"""cassmail-pop3d end to end: a real Cassandra 0.7.0 node, mail delivered by cassmail-smtpd, and real
POP3 clients (Python's poplib, curl, fetchmail, rabid from Debian's postal).

What pop3d reads from Cassandra and how large the session process grew come from its log line at
the end of each session (stderr with -f):

    pop3 PEER: session end user=... ... bytes_read=N columns_read=N vmhwm_kb=N
"""
import os
import poplib
import re
import smtplib
import socket
import subprocess
import time

import pytest

import support
from conftest import BUILD, unique, write_conf
from support import POP3D, SMTPD, Daemon, free_port, retr_bytes

PASSWORD = "Secret pass 42"
LOGIN_DELAY_MS = 300
AUTH_ERR = b"-ERR [AUTH] Invalid login"


class Pop3Env:
    """One Cassandra ring (the `mail` fixture), cassmail-smtpd and cassmail-pop3d on free ports."""

    def __init__(self, mail, tmp_path, pop3_args=()):
        self.tmp = tmp_path
        self.mail = mail
        self.smtp_port, self.pop_port = free_port(), free_port()
        self.smtpd = Daemon(SMTPD, mail.conf, tmp_path / "smtpd.log", port=self.smtp_port)
        self.pop3d = Daemon(POP3D, mail.conf, tmp_path / "pop3d.log", port=self.pop_port,
                            args=pop3_args)

    def stop(self):
        self.pop3d.stop()
        self.smtpd.stop()

    def user(self, password=PASSWORD):
        return self.mail.useradd(unique("p"), password=password)

    def send(self, recipients, messages, sender="someone@example.org"):
        """Deliver MESSAGES (bytes, CRLF lines) over one SMTP connection; the stored copies."""
        if isinstance(recipients, str):
            recipients = [recipients]
        with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=120) as s:
            for m in messages:
                refused = s.sendmail(sender, [f"{r}@example.com" for r in recipients], m)
                assert not refused, refused

    def stored(self, user, box="inbox"):
        """[(uid, size, octets)] of USER's BOX as cassmail-admin sees it."""
        return [(uid, size, self.mail.fetch(user, box, uid)) for uid, size in self.mail.list(user, box)]

    def pop(self, user, box=None, password=PASSWORD):
        p = poplib.POP3("127.0.0.1", self.pop_port, timeout=120)
        p.user(f"{user}|{box}" if box else user)
        p.pass_(password)
        return p


@pytest.fixture
def env(mail, tmp_path):
    write_conf(mail.conf, pop3={"login_delay_ms": LOGIN_DELAY_MS, "batch_size": 64})
    e = Pop3Env(mail, tmp_path)
    try:
        yield e
    finally:
        e.stop()


def message(subject, size=0, seed=0):
    """A CRLF message of about SIZE octets whose lines exercise dot-stuffing."""
    head = (f"From: Sender <someone@example.org>\r\nTo: rcpt@example.com\r\nSubject: {subject}\r\n"
            f"Message-ID: <{unique('m')}@example.org>\r\n\r\n").encode()
    lines = [b"Body first line", b".a line starting with a dot", b"..two dots", b".", b"",
             b"x" * 76, b"plain line with trailing space "]
    body, i = [], seed
    n = 0
    while n < size or not body:
        line = lines[i % len(lines)] + (b" %d" % i if i % 3 else b"")
        body.append(line)
        n += len(line) + 2
        i += 1
    return head + b"\r\n".join(body) + b"\r\n"


class Raw(support.Raw):
    """A POP3 connection spoken line by line, to see replies exactly as sent: lines are octets,
    and b"" once the server has closed."""

    def __init__(self, port):
        super().__init__(port, timeout=60, greeting=False)
        self.greeting = self.line()

    def line(self):
        try:
            return self.octets()
        except EOFError:
            return b""

    def cmd(self, text):
        self.send(text + "\r\n")
        return self.line()

    def multi(self, text):
        first = self.cmd(text)
        lines = []
        if first.startswith(b"+OK"):
            while (line := self.line()) != b".":
                lines.append(line)
        return first, lines


def cli_count(ring, cf, row):
    """The number of columns in ROW of column family CF, counted by Cassandra's own CLI."""
    out = ring.cluster("cli", input=f"use Mail;\ncount {cf}['{row}'];\n").stdout
    m = re.search(r"(\d+) columns", out)
    assert m, out
    return int(m.group(1))


# ---- real clients retrieve byte-exact messages ------------------------------------------------

def test_poplib_retrieves_byte_exact_messages_including_2mb(env):
    user = env.user()
    sent = [message("small", 300), message("two megabytes", 2 * 1024 * 1024, seed=1),
            message("medium", 40000, seed=2)]
    env.send(user, sent)
    stored = env.stored(user)
    assert len(stored) == 3
    p = env.pop(user)
    count, total = p.stat()
    assert count == 3 and total == sum(size for _, size, _ in stored)
    for i, (uid, size, octets) in enumerate(stored, 1):
        got = retr_bytes(p, i)
        assert got == octets, f"message {i} differs from the stored octets"
        assert got.endswith(sent[i - 1]) and len(got) == size
    p.quit()


def test_curl_retrieves_byte_exact_messages_and_lists(env, tmp_path):
    user = env.user()
    env.send(user, [message("curl small", 500), message("curl 2MB", 2 * 1024 * 1024, seed=3)])
    stored = env.stored(user)
    url = f"pop3://127.0.0.1:{env.pop_port}"
    for i, (_, _, octets) in enumerate(stored, 1):
        out = tmp_path / f"curl.{i}"
        subprocess.run(["curl", "-sS", "--fail", "-u", f"{user}:{PASSWORD}", "-o", str(out), f"{url}/{i}"],
                       check=True, timeout=120)
        assert out.read_bytes() == octets
    listing = subprocess.run(["curl", "-sS", "-u", f"{user}:{PASSWORD}", f"{url}/"], check=True,
                             capture_output=True, timeout=60).stdout.decode().split("\r\n")
    assert [line for line in listing if line] == [f"{i} {size}" for i, (_, size, _) in enumerate(stored, 1)]
    uidl = subprocess.run(["curl", "-sS", "-u", f"{user}:{PASSWORD}", "-X", "UIDL", f"{url}/"],
                          check=True, capture_output=True, timeout=60).stdout.decode().split("\r\n")
    assert [line for line in uidl if line] == [f"{i} {uid}" for i, (uid, _, _) in enumerate(stored, 1)]
    bad = subprocess.run(["curl", "-sS", "-u", f"{user}:wrong", f"{url}/1"], capture_output=True, timeout=60)
    assert bad.returncode != 0


def fetchmail(tmp_path, port, user, keep, name):
    """Run fetchmail once for USER; each message lands in its own file under tmp_path/NAME."""
    out = tmp_path / name
    out.mkdir()
    rc = tmp_path / f"{name}.rc"
    # sslproto '': plain POP3 on localhost without trying STLS; no stripcr/no rewrite/--invisible:
    # deliver the octets exactly as retrieved; the MDA gets one message per run of its shell.
    rc.write_text(
        "set no bouncemail\n"
        f"poll 127.0.0.1 with proto POP3 port {port} auth password timeout 120\n"
        f'  user "{user}" there with password "{PASSWORD}" is "root" here\n'
        f"  sslproto '' {'keep' if keep else 'nokeep'} fetchall no rewrite no stripcr\n"
        f'  mda "cat > {out}/msg.$$"\n')
    rc.chmod(0o600)
    p = subprocess.run(["fetchmail", "--nosyslog", "--invisible", "-f", str(rc),
                        "-i", str(tmp_path / f"{name}.ids")],
                       capture_output=True, timeout=300, env={**os.environ, "HOME": str(tmp_path)})
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
    return sorted(f.read_bytes() for f in out.iterdir())


def test_fetchmail_retrieves_byte_exact_messages_and_deletes_them_with_nokeep(env, tmp_path):
    user = env.user()
    env.send(user, [message("fetchmail one", 1000), message("fetchmail 2MB", 2 * 1024 * 1024, seed=4),
                    message("fetchmail three", 5000, seed=5)])
    stored = sorted(octets for _, _, octets in env.stored(user))
    assert fetchmail(tmp_path, env.pop_port, user, True, "keep") == stored
    assert len(env.mail.list(user)) == 3
    assert fetchmail(tmp_path, env.pop_port, user, False, "nokeep") == stored
    assert env.mail.list(user) == []


# ---- RFC 1939 semantics ---------------------------------------------------------------------------

def test_top_uidl_and_list_n(env):
    user = env.user()
    env.send(user, [message("first", 200), message("second", 3000, seed=1)])
    stored = env.stored(user)
    p = env.pop(user)
    for i, (uid, size, octets) in enumerate(stored, 1):
        assert p.list(i) == f"+OK {i} {size}".encode()
        assert p.uidl(i) == f"+OK {i} {uid}".encode()
        head, body = octets.split(b"\r\n\r\n", 1)
        _, lines, _ = p.top(i, 0)
        assert lines == head.split(b"\r\n") + [b""]
        _, lines, _ = p.top(i, 3)
        assert lines == head.split(b"\r\n") + [b""] + body.split(b"\r\n")[:3]
    _, uids, _ = p.uidl()
    assert uids == [f"{i} {uid}".encode() for i, (uid, _, _) in enumerate(stored, 1)]
    with pytest.raises(poplib.error_proto, match="no such message"):
        p.list(3)
    p.quit()


def test_dele_then_rset_keeps_everything(env):
    user = env.user()
    env.send(user, [message("a", 100), message("b", 100, seed=1)])
    before = env.mail.list(user)
    p = env.pop(user)
    p.dele(1)
    assert p.stat() == (1, before[1][1])
    with pytest.raises(poplib.error_proto, match="already deleted"):
        p.retr(1)
    with pytest.raises(poplib.error_proto, match="already deleted"):
        p.top(1, 0)
    assert [line.split()[0] for line in p.uidl()[1]] == [b"2"]
    p.rset()
    assert p.stat() == (2, before[0][1] + before[1][1])
    p.quit()
    assert env.mail.list(user) == before


def test_quit_after_dele_removes_message_and_index_entry_seen_by_cassandra_cli(env, ring):
    user = env.user()
    env.send(user, [message("keep", 100), message("remove", 100, seed=1), message("keep too", 100, seed=2)])
    before = env.mail.list(user)
    row = f"{user}:inbox"
    assert cli_count(ring, "Mailboxes", row) == 3 and cli_count(ring, "MailboxIndex", row) == 3
    p = env.pop(user)
    p.dele(2)
    assert p.quit().startswith(b"+OK")
    assert env.mail.list(user) == [before[0], before[2]]
    assert cli_count(ring, "Mailboxes", row) == 2
    assert cli_count(ring, "MailboxIndex", row) == 2
    gone = subprocess.run([str(BUILD / "cassmail-admin"), "-c", str(env.mail.conf), "fetch", user, "inbox",
                           before[1][0]], capture_output=True, timeout=60)
    assert gone.returncode != 0
    end = env.pop3d.wait_session_ends(1, user)[0]
    assert end["deleted"] == "1"


def test_dropped_connection_after_dele_deletes_nothing(env, ring):
    user = env.user()
    env.send(user, [message("one", 100), message("two", 100, seed=1)])
    before = env.mail.list(user)
    r = Raw(env.pop_port)
    assert r.cmd(f"USER {user}").startswith(b"+OK")
    assert r.cmd(f"PASS {PASSWORD}").startswith(b"+OK")
    assert r.cmd("DELE 1").startswith(b"+OK")
    assert r.cmd("DELE 2").startswith(b"+OK")
    r.close()   # no QUIT
    end = env.pop3d.wait_session_ends(1, user)[0]
    assert end["end"] == "eof" and end["deleted"] == "0"
    assert env.mail.list(user) == before
    row = f"{user}:inbox"
    assert cli_count(ring, "Mailboxes", row) == 2 and cli_count(ring, "MailboxIndex", row) == 2


def test_outbox_is_read_with_user_pipe_outbox(env):
    pete, anne = env.user(), env.user()
    sent = message("from pete", 500)
    # the sent copy is kept for a sender who logged in ([smtp] outbox_copy = authenticated)
    with smtplib.SMTP("127.0.0.1", env.smtp_port, timeout=120) as s:
        s.login(pete, PASSWORD)
        assert s.sendmail(f"{pete}@example.com", [f"{anne}@example.com"], sent) == {}
    out = env.stored(pete, "outbox")
    assert len(out) == 1
    p = env.pop(pete, "outbox")
    assert p.stat() == (1, out[0][1])
    assert retr_bytes(p, 1) == out[0][2]
    assert p.uidl(1) == f"+OK 1 {out[0][0]}".encode()
    p.quit()
    p = env.pop(anne)   # and anne has the same message in her inbox
    assert retr_bytes(p, 1) == env.stored(anne)[0][2]
    p.quit()
    p = env.pop(pete.upper())   # names are case-insensitive; pete's inbox is empty
    assert p.stat() == (0, 0)
    p.quit()


def test_wrong_password_unknown_user_and_unknown_mailbox_get_the_same_err(env):
    user = env.user()
    env.mail.useradd(nopw := unique("p"))   # a user without a password
    tries = [(user, "wrong password"), (unique("nobody"), PASSWORD), (f"{user}|nosuchbox", PASSWORD),
             (nopw, PASSWORD), (user, PASSWORD[:-1])]
    for name, password in tries:
        r = Raw(env.pop_port)
        assert r.cmd(f"USER {name}") == b"+OK send PASS"
        t0 = time.monotonic()
        assert r.cmd(f"PASS {password}") == AUTH_ERR
        assert time.monotonic() - t0 >= LOGIN_DELAY_MS / 1000
        assert r.cmd("STAT") == b"-ERR command not valid in this state"
        r.cmd("QUIT")
        r.close()
    with pytest.raises(poplib.error_proto, match=re.escape(AUTH_ERR.decode())):
        env.pop(user, password="nope")
    env.pop(user).quit()   # and the right password works


# ---- the server ----------------------------------------------------------------------------------

def test_capa_long_lines_and_too_many_errors(env):
    r = Raw(env.pop_port)
    assert r.greeting.startswith(b"+OK")
    first, caps = r.multi("CAPA")
    assert first.startswith(b"+OK")
    assert {b"TOP", b"UIDL", b"USER", b"RESP-CODES", b"PIPELINING", b"IMPLEMENTATION CassMail"} <= set(caps)
    assert r.cmd("NOOP " + "x" * 300) == b"-ERR line too long"
    assert r.cmd("CAPA").startswith(b"+OK")   # the session goes on
    while r.line() != b".":
        pass
    # [limits] max_errors = 10 by default: the long line was one, nine more close the session.
    replies = [r.cmd("BOGUS") for _ in range(9)]
    assert replies == [b"-ERR unknown command"] * 9
    assert r.line() == b""   # closed by the server
    r.close()


def test_pipelined_commands_are_answered_in_order(env):
    user = env.user()
    env.send(user, [message("p1", 100), message("p2", 100, seed=1)])
    s = socket.create_connection(("127.0.0.1", env.pop_port), timeout=60)
    f = s.makefile("rb")
    f.readline()
    s.sendall(f"USER {user}\r\nPASS {PASSWORD}\r\nSTAT\r\nLIST 2\r\nRETR 1\r\nNOOP\r\nQUIT\r\n".encode())
    data = f.read()
    s.close()
    lines = data.split(b"\r\n")
    assert lines[0] == b"+OK send PASS" and lines[1].startswith(b"+OK maildrop has 2")
    assert lines[2].startswith(b"+OK 2 ") and lines[3].startswith(b"+OK 2 ")
    assert data.endswith(b"\r\n.\r\n+OK NOOP\r\n+OK CassMail POP3 server signing off (2 messages left)\r\n")


def test_autologout_after_the_idle_timeout(mail, tmp_path):
    e = Pop3Env(mail, tmp_path, pop3_args=("-t", "2"))
    try:
        user = e.user()
        r = Raw(e.pop_port)
        r.cmd(f"USER {user}")
        r.cmd(f"PASS {PASSWORD}")
        t0 = time.monotonic()
        assert r.line().startswith(b"-ERR autologout")
        assert 1.5 < time.monotonic() - t0 < 10
        assert r.line() == b""
        r.close()
        assert e.pop3d.wait_session_ends(1, user)[0]["end"] == "idle-timeout"
    finally:
        e.stop()


def test_busy_reply_beyond_max_children(mail, tmp_path):
    write_conf(mail.conf, limits={"max_children": 1})
    e = Pop3Env(mail, tmp_path)
    try:
        first = Raw(e.pop_port)
        assert first.greeting.startswith(b"+OK")
        second = Raw(e.pop_port)
        assert second.greeting.startswith(b"-ERR [SYS/TEMP] too many connections")
        second.close()
        first.cmd("QUIT")
        first.close()
    finally:
        e.stop()


def test_inetd_mode_serves_stdin_and_stdout(env):
    user = env.user()
    env.send(user, [message("inetd", 100)])
    p = subprocess.run([str(POP3D), "--inetd", "-f", "-c", str(env.mail.conf)],
                       input=f"CAPA\r\nUSER {user}\r\nPASS {PASSWORD}\r\nSTAT\r\nQUIT\r\n".encode(),
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    out = p.stdout.split(b"\r\n")
    assert out[0].startswith(b"+OK") and b"+OK 1 " in p.stdout
    assert out[-2].startswith(b"+OK CassMail POP3 server signing off")
    assert b"pop3 pipe: session end user=" + user.encode() in p.stderr


# ---- a large mailbox: what is read, and how much memory ------------------------------------------------

def test_1000_messages_of_100kb_stat_and_list_read_under_1_percent_and_rss_stays_bounded(env):
    user = env.user()
    body = message("bulk", 100 * 1024)
    env.send(user, [body] * 1000)
    index = env.mail.list(user)
    assert len(index) == 1000
    mailbox_bytes = sum(size for _, size in index)
    largest = max(size for _, size in index)

    p = env.pop(user)
    assert p.stat() == (1000, mailbox_bytes)
    _, listing, _ = p.list()
    assert len(listing) == 1000
    _, uids, _ = p.uidl()
    assert [u.split()[1].decode() for u in uids] == [uid for uid, _ in index]
    p.quit()
    end = env.pop3d.wait_session_ends(1, user)[0]
    assert int(end["bytes_read"]) < mailbox_bytes / 100, end
    assert int(end["columns_read"]) < 1100, end

    # A session that reads messages too: memory bounded by the largest message, not the mailbox.
    p = env.pop(user)
    for i in range(1, 1001, 20):
        assert len(retr_bytes(p, i)) == index[i - 1][1]
    p.quit()
    end = env.pop3d.wait_session_ends(2, user)[1]
    assert int(end["retrieved"].split("/")[0]) == 50
    assert int(end["vmhwm_kb"]) * 1024 < 2 * largest + 16 * 1024 * 1024, end


def test_rss_of_a_session_retrieving_a_2mb_message_stays_bounded(env):
    user = env.user()
    env.send(user, [message("2MB", 2 * 1024 * 1024)])
    largest = env.mail.list(user)[0][1]
    p = env.pop(user)
    retr_bytes(p, 1)
    p.top(1, 10)
    p.quit()
    end = env.pop3d.wait_session_ends(1, user)[0]
    assert int(end["vmhwm_kb"]) * 1024 < 2 * largest + 16 * 1024 * 1024, end


# ---- load: rabid -----------------------------------------------------------------------------------

RABID_PASSWORD = "Rabid42"   # rabid's user list is "address password": no spaces in the password


def test_rabid_runs_60_seconds_without_errors_while_postal_delivers(env, tmp_path):
    users = [env.user(password=RABID_PASSWORD) for _ in range(8)]
    for u in users:   # something to read from the first second
        env.send(u, [message(f"seed {u} {i}", 2000 * (i + 1), seed=i) for i in range(3)])
    lst = tmp_path / "users.txt"
    lst.write_text("".join(f"{u}@example.com {RABID_PASSWORD}\n" for u in users))
    # postal keeps delivering; its messages carry an MD5 of their body, which rabid checks
    # ("MD5 mis-match" on stderr). rabid (4 processes, never two on one account) logs in, LISTs,
    # RETRs and DELEs every message, QUITs, and starts again. It prints no per-minute report
    # (0.76 only counts internally) and never exits by itself: it runs 65 s, then is killed.
    # Every server error it meets is printed ("Server error:..."), so line-buffer its output.
    postal = subprocess.Popen(["postal", "-t", "1", "-m", "20", "-M", "1", "-r", "240", "-c", "5",
                               f"[127.0.0.1]{env.smtp_port}", str(lst)], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rabid_out = tmp_path / "rabid.out"
    start = time.monotonic()
    with open(rabid_out, "wb") as out:
        rabid = subprocess.Popen(["stdbuf", "-oL", "-eL", "rabid", "-r", "600", "-p", "4", "-u",
                                  "-z", str(tmp_path / "traffic"), f"[127.0.0.1]{env.pop_port}", str(lst)],
                                 cwd=tmp_path, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT)
        try:
            time.sleep(65)
        finally:
            for p in (rabid, postal):
                p.terminate()
            for p in (rabid, postal):
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
    assert time.monotonic() - start >= 60
    text = rabid_out.read_text(errors="replace")
    for bad in ("Server error", "MD5 mis-match", "End of message data", "Can't connect"):
        assert bad not in text, text
    # rabid.log (in its working folder) gets the MD5 of every postal message it verified; postal.log
    # the MD5 of every message sent: what was read back is what was sent.
    sent = {line.split()[0] for line in (tmp_path / "postal.log").read_text().splitlines() if line}
    verified = [line.strip() for line in (tmp_path / "rabid.log").read_text().splitlines() if line]
    assert len(verified) >= 20 and set(verified) <= sent, (len(verified), len(sent))
    traffic = b"".join(f.read_bytes() for f in tmp_path.glob("traffic*"))
    assert traffic.count(b"+OK maildrop has") > 10
    assert b"-ERR" not in traffic
    ends = [e for e in env.pop3d.session_ends() if e["user"] in users]
    assert len(ends) > 10
    assert all(e["failed_logins"] == "0" and e["errors"] == "0" for e in ends), ends
    retrieved = sum(int(e["retrieved"].split("/")[0]) for e in ends)
    deleted = sum(int(e["deleted"]) for e in ends)
    assert retrieved >= 24 and deleted >= 24, (retrieved, deleted)
    # and the retrievals went on for the whole minute, not only at the start
    stamps = [line.split()[0] for line in env.pop3d.log().splitlines()
              if "session end" in line and "retrieved=0/" not in line]
    first, last = (sum(float(x) * m for x, m in zip(t.split(":"), (3600, 60, 1))) for t in (stamps[0], stamps[-1]))
    assert (last - first) % 86400 > 45, (stamps[0], stamps[-1])
