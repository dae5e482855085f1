"""SMTP smuggling against cassmail-smtpd and cassmail-pop3d in daemon mode, with a real Cassandra
0.7.0 node behind them: the attack of issue 13 (an over-long line, then "\\n.\\r\\n" and a second
transaction with an envelope of the attacker's choosing) and the variants of the public research
(Dec 2023), pipelined in one write, split across TCP segments, and over TLS in separate records.

The policy these tests hold the servers to (src/smtp/session.h, README "SMTP smuggling"):

  - Only CRLF "." CRLF ends DATA, where the CRLF really ended the line before (after an
    over-long line, a bare LF or a bare CR, a "." line is text). So nothing is ever stored under
    the smuggled envelope: the attacker's second transaction is text of the first message.
  - A bare LF line end is stored as CRLF (like Postfix 3.9's smtpd_forbid_bare_newline =
    normalize); a bare CR refuses the message with "554 5.6.0"; an over-long line with
    "500 5.6.0". Every stored message is CRLF-clean.
  - POP3 sends every line ending in CRLF and stuffs a "." after each, so octets an older version
    stored (bare CR, bare LF) cannot end RETR or TOP early for any client.

What is stored is read with cassmail-admin; what a client sees with POP3.
"""
import poplib
import socket
import ssl
import subprocess
import time

import pytest

import support
from conftest import BUILD, Mail, unique, write_conf
from support import HOST, POP3D, SMTPD, make_certificate
from test_tls_auth import client_context

PASSWORD = "smuggling pass 3"
STORE_PUT = BUILD / "test" / "store-put"
OVER_LONG = b"X" * 1100   # a text line over RFC 5321's 1000 octets


class Env:
    def __init__(self, conf, mail, smtpd, pop3d, ctx):
        self.conf, self.mail, self.smtpd, self.pop3d, self.ctx = conf, mail, smtpd, pop3d, ctx

    def user(self, prefix):
        return self.mail.useradd(unique(prefix), password=PASSWORD)

    def texts(self, user):
        """The client text of every message in USER's inbox (our Received: field checked and
        dropped), oldest first."""
        return [support.strip_received(self.mail.fetch(user, "inbox", i), exact=False)
                for i, _ in self.mail.list(user)]


@pytest.fixture(scope="module")
def env(ring, tmp_path_factory):
    """A 1-node ring with the schema; cassmail-smtpd (with STARTTLS) and cassmail-pop3d."""
    ring.ensure(1)
    d = tmp_path_factory.mktemp("smuggling")
    cert, key = make_certificate(d, "mx")
    conf = write_conf(d / "cassmail.conf", smtp={"hostname": HOST},
                      tls={"certificate": cert, "key": key})
    ring.schema(conf)
    smtpd = support.Daemon(SMTPD, conf, d / "smtpd.log")
    pop3d = None
    try:
        pop3d = support.Daemon(POP3D, conf, d / "pop3d.log")
        yield Env(conf, Mail(conf), smtpd, pop3d, client_context(cert))
    finally:
        rcs = [smtpd.stop(), pop3d.stop() if pop3d else 0]
        assert rcs == [0, 0]


def envelope(rcpt):
    return (f"EHLO client.example\r\nMAIL FROM:<x@remote.example>\r\n"
            f"RCPT TO:<{rcpt}@example.com>\r\nDATA\r\n").encode()


def smuggled(target):
    """The attacker's second transaction: the CEO writes to TARGET."""
    return (f"MAIL FROM:<ceo@example.com>\r\nRCPT TO:<{target}@example.com>\r\nDATA\r\n"
            f"From: ceo@example.com\r\nSubject: smuggled\r\n\r\nwire the money\r\n.\r\n").encode()


def replies(c):
    """Every reply until the 221 to QUIT (or the server closes): their first lines."""
    out = []
    while True:
        try:
            r = c.reply()
        except EOFError:
            return out
        out.append(r.split("\n")[-1])
        if r.startswith("221"):
            return out


def session(env, pieces, split=False, tls=False):
    """A raw SMTP client sends PIECES (octets) and reads every reply; with SPLIT each piece is a
    TCP segment (or TLS record) of its own, sent after a pause, so the server reads them apart.
    With TLS the pieces go after EHLO and STARTTLS."""
    c = support.Raw(env.smtpd.port, timeout=60)
    try:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            assert c.cmd("EHLO client.example").startswith("250")
            assert c.cmd("STARTTLS").startswith("220")
            c.sock = env.ctx.wrap_socket(c.sock, server_hostname=HOST)
        if split:
            for p in pieces:
                c.sock.sendall(p)
                time.sleep(0.05)
        else:
            c.sock.sendall(b"".join(pieces))
        return [r[:9] for r in replies(c)]
    finally:
        c.close()


def codes(rs):
    return [r[:3] for r in rs]


def assert_crlf_clean(text):
    assert b"\r" not in text.replace(b"\r\n", b"") and b"\n" not in text.replace(b"\r\n", b""), text


def pop3_retr(env, user, n=1):
    """RETR N through poplib (lines split at LF, stuffing removed), back to CRLF text."""
    p = poplib.POP3("127.0.0.1", env.pop3d.port, timeout=60)
    try:
        p.user(user)
        p.pass_(PASSWORD)
        return support.retr_bytes(p, n)
    finally:
        p.quit()


def pop3_raw(env, user, command):
    """The exact octets of the multi-line response to COMMAND, up to and including the first
    CRLF "." CRLF after its status line."""
    c = support.Raw(env.pop3d.port, timeout=60)
    try:
        assert c.cmd(f"USER {user}").startswith("+OK")
        assert c.cmd(f"PASS {PASSWORD}").startswith("+OK")
        c.send(command + "\r\n")
        data = c.buf
        while b"\r\n.\r\n" not in data:
            chunk = c.sock.recv(65536)
            assert chunk, f"the response never ended: {data!r}"
            data += chunk
        status, rest = data.split(b"\r\n", 1)
        assert status.startswith(b"+OK"), status
        body = rest[:rest.index(b".\r\n") + 3] if rest.startswith(b".\r\n") else \
            rest[:rest.index(b"\r\n.\r\n") + 5]
        c.send("QUIT\r\n")
        return body
    finally:
        c.close()


def client_view(body, cr_ends_lines):
    """The lines a client sees in a multi-line response BODY (octets after the status line): it
    splits at LF (dropping a CR before it), or at CR, LF and CRLF alike; it stops at the first
    lone "."; stuffing removed. None when it sees no end."""
    if cr_ends_lines:
        body = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    lines = []
    for line in body.split(b"\n"):
        line = line[:-1] if line.endswith(b"\r") else line
        if line == b".":
            return lines
        lines.append(line[1:] if line.startswith(b".") else line)
    return None


# ---- the attack of issue 13 ----------------------------------------------------------------------

def test_over_long_line_then_bare_lf_period_stores_nothing_under_the_smuggled_envelope(env):
    victim, target = env.user("sv"), env.user("st")
    rs = session(env, [envelope(victim), OVER_LONG + b"\n.\r\n" + smuggled(target) + b"QUIT\r\n"])
    # one answer for the whole text, which ended at the attacker's own last CRLF "." CRLF
    assert codes(rs) == ["250", "250", "250", "354", "500", "221"], rs
    assert rs[4] == "500 5.6.0", rs
    assert env.mail.list(target) == []
    assert env.mail.list(victim) == []
    p = poplib.POP3("127.0.0.1", env.pop3d.port, timeout=60)
    p.user(target)
    p.pass_(PASSWORD)
    assert p.stat() == (0, 0)
    p.quit()


def test_over_long_line_attack_split_across_segments_and_tls_records_stores_nothing(env):
    """How the octets arrive never changes where DATA ends."""
    victim, target = env.user("sv"), env.user("st")
    pieces = [OVER_LONG[:700], OVER_LONG[700:] + b"\r", b"\n." + b"\r", b"\n",
              smuggled(target), b"QUIT\r\n"]
    # "\r" and "\n" in separate segments still make a CRLF: the "." ends DATA, so the "smuggled"
    # commands are commands the client really sent (nothing is smuggled: it asked for them)
    rs = session(env, [envelope(victim)] + pieces, split=True)
    assert codes(rs) == ["250", "250", "250", "354", "500", "250", "250", "354", "250", "221"], rs
    assert len(env.mail.list(target)) == 1
    # a bare LF after the over-long line, the "." and its CRLF in segments and TLS records of
    # their own: text
    target2 = env.user("st")
    attack = [OVER_LONG[:700], OVER_LONG[700:], b"\n", b".", b"\r", b"\n", smuggled(target2), b"QUIT\r\n"]
    for tls in (False, True):
        victim = env.user("sv")
        rs = session(env, [envelope(victim)] + attack, split=True, tls=tls)
        want = ["250", "250", "250", "354", "500", "221"]
        assert codes(rs)[-len(want):] == want, (tls, rs)
        assert env.mail.list(victim) == []
    assert env.mail.list(target2) == []


# ---- the variants --------------------------------------------------------------------------------

# (name, over-long line instead of "hello", what comes between it and the smuggled transaction,
#  the reply to the whole text, the text stored for the victim or None)
STORED = b"Subject: variant\r\n\r\nhello\r\n\r\n"
VARIANTS = [
    ("lf-period-lf", False, b"\n.\n", "250", STORED),
    ("lf-period-crlf", False, b"\n.\r\n", "250", STORED),
    ("crlf-period-lf", False, b"\r\n.\n", "250", STORED),
    ("cr-period-crlf", False, b"\r.\r\n", "554", None),
    ("crlf-period-cr", False, b"\r\n.\r", "554", None),
    ("cr-period-lf", False, b"\r.\n", "554", None),
    ("long-lf-period-lf", True, b"\n.\n", "500", None),
    ("long-lf-period-crlf", True, b"\n.\r\n", "500", None),
    ("long-cr-period-crlf", True, b"\r.\r\n", "500", None),
    ("long-crlf-period-lf", True, b"\r\n.\n", "500", None),
]


@pytest.mark.parametrize("split", [False, True], ids=["pipelined", "split"])
@pytest.mark.parametrize("name,long,sep,reply,stored", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_smuggling_variant_never_stores_the_smuggled_envelope(env, name, long, sep, reply, stored, split):
    victim, target = env.user("sv"), env.user("st")
    first = b"Subject: variant\r\n\r\n" + (OVER_LONG if long else b"hello")
    # split: every octet of the separator in a segment of its own
    pieces = [envelope(victim), first] + [sep[i:i + 1] for i in range(len(sep))] + \
        [smuggled(target), b"QUIT\r\n"]
    rs = session(env, pieces, split=split)
    assert codes(rs) == ["250", "250", "250", "354", reply, "221"], rs
    assert env.mail.list(target) == []
    if stored is None:
        assert env.mail.list(victim) == []
        return
    # stored once, for the victim, with the attacker's commands as CRLF-clean text
    want = stored + smuggled(target)[:-3]
    assert env.texts(victim) == [want]
    assert_crlf_clean(want)
    assert support.strip_received(pop3_retr(env, victim), exact=False) == want


# ---- what legitimate mail gets -------------------------------------------------------------------

def test_message_with_bare_lf_line_ends_is_stored_with_crlf(env):
    user = env.user("sl")
    text = b"Subject: bare lf\nFrom: script@remote.example\n\nline one\nline two\r\n..dotted\nend\r\n.\r\n"
    rs = session(env, [envelope(user), text, b"QUIT\r\n"])
    assert codes(rs) == ["250", "250", "250", "354", "250", "221"], rs
    want = b"Subject: bare lf\r\nFrom: script@remote.example\r\n\r\nline one\r\nline two\r\n.dotted\r\nend\r\n"
    assert env.texts(user) == [want]
    size = env.mail.list(user)[0][1]
    retrieved = pop3_retr(env, user)
    assert len(retrieved) == size   # what POP3 sends is what is stored, byte for byte
    assert support.strip_received(retrieved, exact=False) == want


def test_message_with_a_bare_cr_is_554_and_the_next_is_stored(env):
    user = env.user("sc")
    rs = session(env, [envelope(user), b"Subject: cr\r\n\r\nold\rmac text\r\n.\r\n",
                       b"MAIL FROM:<x@remote.example>\r\n", f"RCPT TO:<{user}@example.com>\r\n".encode(),
                       b"DATA\r\nSubject: fine\r\n\r\nclean\r\n.\r\nQUIT\r\n"])
    assert codes(rs) == ["250", "250", "250", "354", "554", "250", "250", "354", "250", "221"], rs
    assert rs[4] == "554 5.6.0", rs
    assert env.texts(user) == [b"Subject: fine\r\n\r\nclean\r\n"]


# ---- POP3 and messages an older version stored ---------------------------------------------------

def test_pop3_sends_old_bare_cr_and_lf_messages_crlf_clean_to_every_client(env):
    user = env.user("sp")
    old = (b"Subject: old\r\n\r\nx\r.\r\nMAIL FROM:<ceo@example.com>\r\n.\n..\rmid\n.\r\r\n"
           b"last\r.")
    p = subprocess.run([str(STORE_PUT), str(env.conf), user], input=old, capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    assert env.mail.list(user)[0][1] == len(old)
    want = [b"Subject: old", b"", b"x", b".", b"MAIL FROM:<ceo@example.com>", b".", b"..", b"mid",
            b".", b"", b"last", b"."]
    body = pop3_raw(env, user, "RETR 1")
    assert body == (b"Subject: old\r\n\r\nx\r\n..\r\nMAIL FROM:<ceo@example.com>\r\n..\r\n...\r\n"
                    b"mid\r\n..\r\n\r\nlast\r\n..\r\n.\r\n")
    for cr in (False, True):
        assert client_view(body, cr) == want
    assert pop3_retr(env, user).split(b"\r\n")[:-1] == want
    top = pop3_raw(env, user, "TOP 1 2")
    assert top == b"Subject: old\r\n\r\nx\r\n..\r\n.\r\n"
    for cr in (False, True):
        assert client_view(top, cr) == want[:4]
