"""cassmail-smtpd end to end: a real Cassandra 0.7.0 node, the real server (daemon and inetd mode)
and real clients (Python's smtplib, curl, Postal, raw sockets).

What was stored is read back with `cassmail-admin list/fetch`. A stored message is our Received:
field — always exactly three lines,

    Received: from HELO (PEER)\\r\\n
    \\tby HOSTNAME (CassMail) with ESMTP id MSGID;\\r\\n
    \\tDATE\\r\\n

— followed by the client's text, dot-unstuffed, with CRLF line ends. strip_received() (in
support.py) checks those three lines and returns the rest, which must equal what the client sent,
byte for byte.

Transcripts: test/smtp/NAME.in holds client lines (LF or CRLF; each is sent with CRLF; a line
"@LONG N" stands for N octets of "x"); test/smtp/NAME.out the server's replies with every TimeUUID
written as <TIMEUUID>. Each .in is sent in one write (so it is pipelined) through --inetd on a pipe
and through the daemon on a socket; both must give the .out.
"""
import os
import re
import signal
import smtplib
import socket
import subprocess
import time

import pytest

from conftest import TOP, unique, write_conf
from support import (HOST, SMTPD, UUID, Daemon, Raw, body, one_node_mail, postal_messages, queued_id,
                     received_id, strip_received, wait_for)

TRANSCRIPTS = TOP / "test" / "smtp"
MAX_SIZE = 3_000_000
MAX_RCPTS = 5
TX_USERS = ["txalice", "txbob", "txcarol", "txdave", "txerin", "txfrank", "postmaster"]


class Smtpd(Daemon):
    """cassmail-smtpd -f in daemon mode on a free port of 127.0.0.1, its log in a file."""

    def __init__(self, conf, log_path):
        super().__init__(SMTPD, conf, log_path)

    def accepted(self):
        """{TimeUUID: fields} of every "accepted" log line."""
        return {m.group(1): m.group(0) for m in re.finditer(rf"accepted id=({UUID}) .*", self.log())}


class Env:
    def __init__(self, conf, mail, smtpd, dir):
        self.conf, self.mail, self.smtpd, self.dir = conf, mail, smtpd, dir

    def users(self, n, prefix="s"):
        return [self.mail.useradd(unique(prefix)) for _ in range(n)]

    def stored(self, user, box="inbox"):
        """{TimeUUID: stored octets} of USER's BOX."""
        return {i: self.mail.fetch(user, box, i) for i, _ in self.mail.list(user, box)}

    def only(self, user, box="inbox"):
        msgs = self.stored(user, box)
        assert len(msgs) == 1, f"{user}:{box} holds {len(msgs)} messages"
        return next(iter(msgs.items()))

    def smtp(self):
        return smtplib.SMTP("127.0.0.1", self.smtpd.port, local_hostname="client.example", timeout=60)


def smtp_conf(path, **limits):
    return write_conf(path, smtp={"max_message_size": MAX_SIZE, "max_recipients": MAX_RCPTS,
                                  "hostname": HOST},
                      limits={"max_errors": 10, **limits})


@pytest.fixture(scope="module")
def env(ring, tmp_path_factory):
    """A 1-node ring with the schema, the transcript users, and one cassmail-smtpd daemon."""
    d = tmp_path_factory.mktemp("smtp")
    mail = one_node_mail(ring, smtp_conf(d / "cassmail.conf"))
    for u in TX_USERS:
        mail.useradd(u)
    smtpd = Smtpd(mail.conf, d / "smtpd.log")
    try:
        yield Env(mail.conf, mail, smtpd, d)
    finally:
        smtpd.stop()


# ---- real clients ----------------------------------------------------------------------------

def test_smtplib_one_recipient_stored_byte_exact(env):
    (rcpt,) = env.users(1)
    msg = body(b"From: someone@remote.example", f"To: {rcpt}@example.com".encode(),
               b"Subject: one", b"", b"Hello, one recipient.")
    with env.smtp() as s:
        s.ehlo()
        s.mail("someone@remote.example")
        assert s.rcpt(f"{rcpt}@example.com")[0] == 250
        code, text = s.data(msg)
        assert code == 250
    msgid, stored = env.only(rcpt)
    assert queued_id(text.decode()) == msgid
    assert strip_received(stored) == msg
    assert stored.startswith(b"Received: from client.example (127.0.0.1)\r\n\tby mx.example.com (CassMail) with ESMTP id ")


def test_smtplib_several_recipients_share_one_message(env):
    users = env.users(3)
    msg = body(b"Subject: many", b"", b"to three")
    with env.smtp() as s:
        refused = s.sendmail("someone@remote.example", [f"{u}@example.com" for u in users], msg)
        assert refused == {}
    ids = set()
    for u in users:
        msgid, stored = env.only(u)
        ids.add(msgid)
        assert strip_received(stored) == msg
    assert len(ids) == 1, "one TimeUUID for every copy"
    assert f"id={ids.pop()} from=<someone@remote.example> rcpts=3 " in env.smtpd.log()


def test_curl_one_and_several_recipients(env, tmp_path):
    users = env.users(3)
    f = tmp_path / "msg.eml"
    msg = body(b"From: curl@remote.example", b"Subject: curl", b"", b"sent by curl", b".leading dot")
    f.write_bytes(msg)
    url = f"smtp://127.0.0.1:{env.smtpd.port}/client.example"
    for rcpts in ([users[0]], users[1:]):
        args = ["curl", "-sS", "--url", url, "--mail-from", "curl@remote.example", "--upload-file", str(f)]
        for u in rcpts:
            args += ["--mail-rcpt", f"{u}@example.com"]
        p = subprocess.run(args, capture_output=True, timeout=60)
        assert p.returncode == 0, p.stderr
    for u in users:
        assert strip_received(env.only(u)[1]) == msg
    assert env.only(users[1])[0] == env.only(users[2])[0]


def test_pipelined_commands_in_one_write(env):
    a, b = env.users(2)
    c = Raw(env.smtpd.port)
    assert c.greeting.startswith("220 ")
    c.send("EHLO client.example\r\nMAIL FROM:<p@remote.example>\r\n"
           f"RCPT TO:<{a}@example.com>\r\nRCPT TO:<nosuch{a}@example.com>\r\nRCPT TO:<{b}@example.com>\r\n"
           "DATA\r\n")
    assert "250-PIPELINING" in c.reply()
    assert c.reply().startswith("250 2.1.0")
    assert c.reply().startswith("250 2.1.5")
    assert c.reply().startswith("550 5.1.1")
    assert c.reply().startswith("250 2.1.5")
    assert c.reply().startswith("354 ")
    # text, end, and the next transaction in one write too
    c.send("Subject: piped\r\n\r\nx\r\n.\r\nRSET\r\nNOOP\r\nQUIT\r\n")
    assert c.reply().startswith("250 2.0.0 Ok: queued as ")
    assert c.reply().startswith("250 2.0.0")
    assert c.reply().startswith("250 2.0.0")
    assert c.reply().startswith("221 2.0.0")
    assert c.closed()
    c.close()
    for u in (a, b):
        assert strip_received(env.only(u)[1]) == b"Subject: piped\r\n\r\nx\r\n"


def test_dot_stuffed_body_stored_unstuffed(env):
    (rcpt,) = env.users(1)
    msg = body(b"Subject: dots", b"", b".", b"..", b"...", b".starts with a dot", b"a . in the middle", b". ")
    with env.smtp() as s:   # smtplib stuffs the dots; we must unstuff them
        s.sendmail("d@remote.example", [f"{rcpt}@example.com"], msg)
    assert strip_received(env.only(rcpt)[1]) == msg


def test_8bit_body_stored_byte_exact(env):
    (rcpt,) = env.users(1)
    msg = body("Subject: =?utf-8?q?caf=C3=A9?=".encode(), b"Content-Type: text/plain; charset=utf-8",
               b"Content-Transfer-Encoding: 8bit", b"", "Grüße, café, 日本語".encode(),
               bytes(range(0x80, 0x100)), b"\x01\x02\x7f control octets")
    with env.smtp() as s:
        s.ehlo()
        assert "8bitmime" in s.esmtp_features
        s.sendmail("e@remote.example", [f"{rcpt}@example.com"], msg, mail_options=["BODY=8BITMIME"])
    assert strip_received(env.only(rcpt)[1]) == msg


def test_2mb_body_stored_byte_exact(env):
    a, b = env.users(2)
    rnd = os.urandom(1_600_000)
    import base64
    text = base64.encodebytes(rnd)   # 76-character lines, LF
    msg = b"Subject: big\r\n\r\n" + text.replace(b"\n", b"\r\n")
    assert len(msg) > 2_000_000
    with env.smtp() as s:
        s.ehlo()
        s.sendmail("big@remote.example", [f"{a}@example.com", f"{b}@example.com"], msg,
                   mail_options=[f"SIZE={len(msg)}"])
    for u in (a, b):
        assert strip_received(env.only(u)[1]) == msg


def test_bare_lf_text_stored_with_crlf(env):
    (rcpt,) = env.users(1)
    c = Raw(env.smtpd.port)
    for line in ("EHLO client.example", "MAIL FROM:<lf@remote.example>", f"RCPT TO:<{rcpt}@example.com>", "DATA"):
        assert c.cmd(line)[0] in "23"
    c.send(b"Subject: lf\n\nbare\n.\nstill text\r\n.\r\n")   # ".\n" is text, not the end
    assert c.reply().startswith("250 2.0.0")
    c.cmd("QUIT")
    c.close()
    assert strip_received(env.only(rcpt)[1]) == b"Subject: lf\r\n\r\nbare\r\n\r\nstill text\r\n"


# ---- refusals --------------------------------------------------------------------------------

def test_unknown_user_is_550(env):
    (rcpt,) = env.users(1)
    with env.smtp() as s:
        s.ehlo()
        s.mail("x@remote.example")
        code, text = s.rcpt(f"nosuch{rcpt}@example.com")
        assert code == 550 and text.startswith(b"5.1.1 ")
        s.rset()
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            s.sendmail("x@remote.example", [f"nosuch{rcpt}@example.com"], b"x\r\n")
        # a partly refused list still delivers to the rest
        refused = s.sendmail("x@remote.example", [f"nosuch{rcpt}@example.com", f"{rcpt}@example.com"],
                             b"Subject: partly\r\n\r\nx\r\n")
        assert refused[f"nosuch{rcpt}@example.com"][0] == 550
    assert strip_received(env.only(rcpt)[1]) == b"Subject: partly\r\n\r\nx\r\n"


def test_foreign_domain_is_relay_denied_554(env):
    c = Raw(env.smtpd.port)
    c.cmd("EHLO client.example")
    c.cmd("MAIL FROM:<x@remote.example>")
    for rcpt in ("someone@gmail.com", "txalice@example.com.evil.example", "txalice@[127.0.0.1]"):
        assert c.cmd(f"RCPT TO:<{rcpt}>") == f"554 5.7.1 <{rcpt}>: Relay access denied"
    assert c.cmd("DATA").startswith("503 5.5.1")
    c.cmd("QUIT")
    c.close()
    assert "Relay access denied" not in env.smtpd.log()   # a refusal, not an incident


def test_too_many_recipients_is_452(env):
    users = env.users(MAX_RCPTS + 1)
    c = Raw(env.smtpd.port)
    c.cmd("EHLO client.example")
    c.cmd("MAIL FROM:<x@remote.example>")
    for u in users[:MAX_RCPTS]:
        assert c.cmd(f"RCPT TO:<{u}@example.com>").startswith("250 2.1.5")
    assert c.cmd(f"RCPT TO:<{users[-1]}@example.com>") == "452 4.5.3 Too many recipients"
    assert c.cmd("DATA").startswith("354")
    c.send("Subject: five\r\n\r\n.\r\n")
    assert c.reply().startswith("250 2.0.0")
    c.close()
    assert all(len(env.mail.list(u)) == 1 for u in users[:MAX_RCPTS])
    assert env.mail.list(users[-1]) == []


def test_size_parameter_over_limit_is_552_then_next_message(env):
    (rcpt,) = env.users(1)
    with env.smtp() as s:
        s.ehlo()
        assert s.esmtp_features["size"] == str(MAX_SIZE)
        code, text = s.mail("x@remote.example", [f"SIZE={MAX_SIZE + 1}"])
        assert code == 552 and text.startswith(b"5.3.4 ")
        s.sendmail("x@remote.example", [f"{rcpt}@example.com"], b"Subject: next\r\n\r\n",
                   mail_options=[f"SIZE={MAX_SIZE}"])
    assert strip_received(env.only(rcpt)[1]) == b"Subject: next\r\n\r\n"


def test_oversize_data_is_552_then_next_message_same_connection(env):
    (rcpt,) = env.users(1)
    big = b"Subject: too big\r\n\r\n" + (b"y" * 998 + b"\r\n") * (MAX_SIZE // 1000 + 10)
    assert len(big) > MAX_SIZE
    with env.smtp() as s:
        s.ehlo()
        s.mail("x@remote.example")   # no SIZE= announced: only the text shows it
        s.rcpt(f"{rcpt}@example.com")
        code, text = s.data(big)
        assert code == 552 and text.startswith(b"5.3.4 ")
        assert s.noop()[0] == 250
        s.sendmail("x@remote.example", [f"{rcpt}@example.com"], b"Subject: small\r\n\r\nfits\r\n")
    assert strip_received(env.only(rcpt)[1]) == b"Subject: small\r\n\r\nfits\r\n"


# ---- sequence, syntax, limits ----------------------------------------------------------------

def test_every_sequence_error_is_503(env):
    (rcpt,) = env.users(1)
    c = Raw(env.smtpd.port)
    assert c.cmd("MAIL FROM:<x@remote.example>") == "503 5.5.1 Bad sequence of commands: send HELO/EHLO first"
    assert c.cmd(f"RCPT TO:<{rcpt}@example.com>").startswith("503 5.5.1")
    assert c.cmd("DATA").startswith("503 5.5.1")
    assert c.cmd("HELO client.example") == f"250 {HOST}"
    assert c.cmd(f"RCPT TO:<{rcpt}@example.com>") == "503 5.5.1 Bad sequence of commands: need MAIL command"
    assert c.cmd("DATA") == "503 5.5.1 Bad sequence of commands: need MAIL command"
    assert c.cmd("MAIL FROM:<x@remote.example>").startswith("250")
    assert c.cmd("MAIL FROM:<x@remote.example>") == "503 5.5.1 Bad sequence of commands: nested MAIL command"
    assert c.cmd("DATA") == "503 5.5.1 Bad sequence of commands: need RCPT command"
    assert c.cmd(f"RCPT TO:<{rcpt}@example.com>").startswith("250")
    assert c.cmd("RSET") == "250 2.0.0 Ok"
    assert c.cmd("DATA").startswith("503 5.5.1")
    assert c.cmd("QUIT").startswith("221")
    c.close()
    assert env.mail.list(rcpt) == []


def test_syntax_unknown_and_unimplemented_commands(env):
    c = Raw(env.smtpd.port)
    assert c.cmd("EHLO").startswith("501 5.5.2")
    assert c.cmd("EHLO client.example").startswith("250-")
    assert c.cmd("MAIL FROM x@remote.example").startswith("501 5.5.4")
    assert c.cmd("MAIL FROM:<x@>").startswith("501 5.1.7")
    assert c.cmd("MAIL FROM:<x@remote.example> ENVID=x").startswith("555 5.5.4")   # not AUTH=: offered (RFC 4954 5)
    assert c.cmd("MAIL FROM:<x@remote.example>").startswith("250")
    assert c.cmd("RCPT TO:<not an address>").startswith("501 5.1.3")
    assert c.cmd("FROB").startswith("500 5.5.2")
    assert c.cmd("EXPN staff").startswith("502 5.5.1")
    assert c.cmd("VRFY txalice").startswith("252 2.5.2")
    assert c.cmd("HELP").startswith("214-")
    assert c.cmd("NOOP").startswith("250")
    c.close()


def test_over_long_command_line_gets_one_error_and_session_continues(env):
    (rcpt,) = env.users(1)
    c = Raw(env.smtpd.port)
    c.cmd("EHLO client.example")
    c.send("MAIL FROM:<" + "x" * 5000 + "@remote.example>\r\nNOOP\r\n")
    assert c.reply() == "500 5.5.2 Line too long (over 512 octets)"
    assert c.reply().startswith("250 2.0.0")   # exactly one error, then in step again
    assert c.cmd("MAIL FROM:<x@remote.example>").startswith("250")
    assert c.cmd(f"RCPT TO:<{rcpt}@example.com>").startswith("250")
    c.close()


def test_over_long_text_line_is_500_after_the_end_then_next_message(env):
    (rcpt,) = env.users(1)
    c = Raw(env.smtpd.port)
    for line in ("EHLO client.example", "MAIL FROM:<x@remote.example>", f"RCPT TO:<{rcpt}@example.com>", "DATA"):
        c.cmd(line)
    c.send(b"Subject: long\r\n\r\n" + b"z" * 1200 + b"\r\nmore\r\n.\r\n")
    assert c.reply() == "500 5.6.0 Line too long (over 1000 octets); message not delivered"
    for line in ("MAIL FROM:<x@remote.example>", f"RCPT TO:<{rcpt}@example.com>", "DATA"):
        assert c.cmd(line)[0] in "23"
    c.send(b"Subject: short\r\n\r\n" + b"z" * 998 + b"\r\n.\r\n")
    assert c.reply().startswith("250 2.0.0")
    c.close()
    assert strip_received(env.only(rcpt)[1]) == b"Subject: short\r\n\r\n" + b"z" * 998 + b"\r\n"


def test_too_many_errors_closes_with_421(env):
    c = Raw(env.smtpd.port)
    for i in range(9):
        assert c.cmd(f"BOGUS {i}").startswith("500")
    assert c.cmd("BOGUS 9") == "500 5.5.2 Command unrecognized"
    assert c.reply() == f"421 4.7.0 {HOST} Error: too many errors, closing connection"
    assert c.closed()
    c.close()
    wait_for(lambda: any(e.get("end") == "too-many-errors" for e in env.smtpd.session_ends()),
             what="session end line")


def test_idle_and_data_timeouts_are_421(tmp_path, env):
    conf = smtp_conf(tmp_path / "t.conf", idle_timeout_s=1, data_timeout_s=2)
    d = Smtpd(conf, tmp_path / "t.log")
    try:
        (rcpt,) = env.users(1)
        c = Raw(d.port)
        t = time.monotonic()
        assert c.reply() == f"421 4.4.2 {HOST} Error: timeout exceeded, closing connection"
        assert 0.8 < time.monotonic() - t < 5
        assert c.closed()
        c = Raw(d.port)
        for line in ("EHLO client.example", "MAIL FROM:<x@remote.example>", f"RCPT TO:<{rcpt}@example.com>", "DATA"):
            c.cmd(line)
        c.send("Subject: never ends\r\n\r\nsome text\r\n")
        t = time.monotonic()
        assert c.reply().startswith("421 4.4.2")
        assert 1.5 < time.monotonic() - t < 6
        assert c.closed()
        assert env.mail.list(rcpt) == []
        ends = wait_for(lambda: len(d.session_ends()) >= 2 and d.session_ends(), what="session ends")
        assert [e["end"] for e in ends] == ["idle-timeout", "data-timeout"]
    finally:
        assert d.stop() == 0


def test_busy_server_answers_421_over_max_children(tmp_path, env):
    conf = smtp_conf(tmp_path / "b.conf", max_children=1)
    d = Smtpd(conf, tmp_path / "b.log")
    try:
        first = Raw(d.port)
        wait_for(lambda: len(d.children()) == 1, what="one session")
        second = socket.create_connection(("127.0.0.1", d.port), timeout=10)
        assert second.recv(200).startswith(b"421 4.3.2 ")
        second.close()
        assert first.cmd("NOOP").startswith("250")   # the first is unharmed
        first.cmd("QUIT")
        first.close()
        wait_for(lambda: not d.children(), what="the session to end")
        third = Raw(d.port)
        assert third.greeting.startswith("220 ")
        third.close()
    finally:
        assert d.stop() == 0


def test_log_lines_per_message_and_session(env):
    (rcpt,) = env.users(1)
    with env.smtp() as s:
        s.sendmail("logger@remote.example", [f"{rcpt}@example.com"], b"Subject: log\r\n\r\n")
    msgid, stored = env.only(rcpt)
    line = wait_for(lambda: env.smtpd.accepted().get(msgid), what="accepted line")
    assert re.search(rf"accepted id={msgid} from=<logger@remote\.example> rcpts=1 size={len(stored)} store_ms=\d+$",
                     line), line
    assert received_id(stored) == msgid   # one message, one id
    sid = re.search(rf"smtp ([0-9A-F]{{8}}) \S+: accepted id={msgid}", env.smtpd.log()).group(1)
    end = rf"smtp {sid} 127\.0\.0\.1: session end helo=client\.example accepted=1 octets={len(stored)} " \
          r"rejected=0 errors=0 end=quit ms=\d+"
    wait_for(lambda: re.search(end, env.smtpd.log()), what="the session end line")


# ---- transcripts: inetd on a pipe and the daemon give the same -------------------------------

def transcript_input(path):
    out = b""
    for line in path.read_bytes().splitlines():
        m = re.fullmatch(rb"@LONG (\d+)", line)
        out += (b"x" * int(m.group(1)) if m else line) + b"\r\n"
    return out


def normalize(replies):
    return re.sub(UUID.encode(), b"<TIMEUUID>", replies)


def daemon_transcript(port, data):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    s.close()
    return out


@pytest.mark.parametrize("name", sorted(p.stem for p in TRANSCRIPTS.glob("*.in")))
def test_transcript_inetd_and_daemon_agree(env, name):
    data = transcript_input(TRANSCRIPTS / f"{name}.in")
    want = (TRANSCRIPTS / f"{name}.out").read_bytes()
    p = subprocess.run([str(SMTPD), "-f", "-c", str(env.conf), "--inetd"], input=data, capture_output=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    inetd = normalize(p.stdout)
    daemon = normalize(daemon_transcript(env.smtpd.port, data))
    assert inetd.decode() == want.decode(), f"inetd transcript of {name}; log:\n{p.stderr.decode()}"
    assert daemon.decode() == want.decode(), f"daemon transcript of {name}"
    assert b" session end " in p.stderr


# ---- load: Postal ----------------------------------------------------------------------------

def test_postal_60s_every_message_stored_whole(env, tmp_path):
    n_users = 30
    names = [unique("pl") for _ in range(n_users)]
    (tmp_path / "users.txt").write_text("".join(f"{u}@example.com\n" for u in names))
    env.mail.admin("import", tmp_path / "users.txt")
    out_path = tmp_path / "postal.csv"
    dbg = tmp_path / "io"
    # The paper's load: Postal's senders are local users who do not log in, and each message is
    # also stored in the sender's outbox ([smtp] outbox_copy = local).
    conf = write_conf(tmp_path / "postal.conf", limits={"max_errors": 10},
                      smtp={"max_message_size": MAX_SIZE, "max_recipients": MAX_RCPTS,
                            "hostname": HOST, "outbox_copy": "local"})
    smtpd = Smtpd(conf, tmp_path / "smtpd.log")
    p = None
    try:
        with open(out_path, "wb") as out:
            p = subprocess.Popen(["postal", "-m", "20", "-M", "5", "-t", "2", "-c", "5", "-r", "1200",
                                  "-p", str(smtpd.port), "-z", str(dbg), "127.0.0.1",
                                  str(tmp_path / "users.txt")],
                                 stdout=out, stderr=subprocess.STDOUT)
        time.sleep(61)
        assert p.poll() is None, out_path.read_text()
        p.send_signal(signal.SIGINT)   # Postal stops sending, finishes its messages, keeps reporting
        wait_for(lambda: not smtpd.children(), timeout=60, what="Postal's sessions to end")
        lines_at_rest = len(out_path.read_text().splitlines())
        # Postal prints a line per wall-clock minute: the next one covers everything.
        wait_for(lambda: len(out_path.read_text().splitlines()) > lines_at_rest, timeout=75, step=0.5,
                 what="Postal's next per-minute report")
    finally:
        if p:
            p.kill()
            p.wait()
        assert smtpd.stop() == 0
    report = out_path.read_text().splitlines()
    assert report[0].startswith("time,messages,data(K),errors,connections"), report
    rows = [r.split(",") for r in report[1:] if re.match(r"\d\d:\d\d,", r)]
    reported = sum(int(r[1]) for r in rows)
    assert sum(int(r[3]) for r in rows) == 0, f"Postal saw errors:\n{chr(10).join(report)}"
    assert reported > 100, report

    sent = postal_messages(sorted(tmp_path.glob("io*")))
    assert len(sent) == reported
    assert all(reply.startswith("250 2.0.0 Ok: queued as ") for _, _, reply in sent)
    stored = {}
    for u in names:
        stored.update({i: (u, size) for i, size in env.mail.list(u)})
    outbox = sum(len(env.mail.list(u, "outbox")) for u in names)
    assert len(stored) == reported, f"Postal reported {reported} messages, Cassandra holds {len(stored)}"
    assert outbox == reported   # every sender is a local user: one outbox copy each
    for rcpt, text, reply in sent:   # every acknowledged message is there, whole, byte for byte
        msgid = queued_id(reply)
        assert stored[msgid][0] == rcpt
        assert strip_received(env.mail.fetch(rcpt, "inbox", msgid)) == text


# ---- failures ----------------------------------------------------------------------------------

def test_sigkill_of_a_child_in_data_stores_nothing(env):
    (rcpt,) = env.users(1)
    before = set(env.smtpd.children())
    c = Raw(env.smtpd.port)
    for line in ("EHLO client.example", "MAIL FROM:<k@remote.example>", f"RCPT TO:<{rcpt}@example.com>", "DATA"):
        c.cmd(line)
    c.send(b"Subject: half\r\n\r\n" + b"half of a message\r\n" * 1000)
    (child,) = wait_for(lambda: set(env.smtpd.children()) - before, what="the session's process")
    time.sleep(0.3)
    os.kill(child, signal.SIGKILL)
    assert c.closed()
    c.close()
    wait_for(lambda: f"session {child} died of signal 9" in env.smtpd.log(), what="the parent to reap it")
    assert env.mail.list(rcpt) == []
    assert env.smtpd.proc.poll() is None
    with env.smtp() as s:   # the server goes on
        s.sendmail("k@remote.example", [f"{rcpt}@example.com"], b"Subject: whole\r\n\r\n")
    assert strip_received(env.only(rcpt)[1]) == b"Subject: whole\r\n\r\n"


def test_cassandra_down_mid_session_is_451_then_delivered_after_restart(ring, env, tmp_path):
    conf = write_conf(tmp_path / "down.conf", cassandra={"retry_ms": 2000, "timeout_ms": 1000, "backoff_ms": 500},
                      smtp={"max_message_size": MAX_SIZE, "hostname": HOST})
    d = Smtpd(conf, tmp_path / "down.log")
    (rcpt,) = env.users(1)
    msg = b"Subject: while Cassandra is down\r\n\r\nkeep me\r\n"
    try:
        s = smtplib.SMTP("127.0.0.1", d.port, local_hostname="client.example", timeout=120)
        s.ehlo()
        s.mail("x@remote.example")
        assert s.rcpt(f"{rcpt}@example.com")[0] == 250
        ring.cluster("kill", 1)
        try:
            code, text = s.data(msg)
            assert code == 451 and text.startswith(b"4.3.0 "), (code, text)
            assert d.proc.poll() is None
            # a new session while it is down: greeted, then 451 at RCPT (the lookup fails)
            with smtplib.SMTP("127.0.0.1", d.port, local_hostname="client.example", timeout=120) as s2:
                s2.ehlo()
                s2.mail("x@remote.example")
                assert s2.rcpt(f"{rcpt}@example.com")[0] == 451
        finally:
            ring.cluster("restart", 1)
        # the same session sends it again, now with Cassandra back
        def deliver():
            s.rset()
            s.mail("x@remote.example")
            if s.rcpt(f"{rcpt}@example.com")[0] != 250:
                time.sleep(1)
                return False
            code, text = s.data(msg)
            assert code in (250, 451), (code, text)
            return code == 250 and text
        text = wait_for(deliver, timeout=90, what="delivery after restart")
        s.quit()
        msgid, stored = env.only(rcpt)
        assert queued_id(text.decode()) == msgid
        assert strip_received(stored) == msg
        assert "not stored" in d.log()
    finally:
        assert d.stop() == 0


def test_sigterm_stops_the_daemon_cleanly(tmp_path, env):
    d = Smtpd(env.conf, tmp_path / "stop.log")
    c = Raw(d.port)
    assert c.cmd("EHLO client.example").startswith("250")
    assert d.stop() == 0
    assert c.closed()
    assert "stopped listening" in d.log()
