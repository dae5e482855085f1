"""Sending to other domains: authenticated submission (587 with STARTTLS, 465 with implicit TLS)
relayed through a smarthost, end to end. A real Cassandra 0.7.0 node, cassmail-smtpd and
cassmail-pop3d in daemon mode, a real Postfix (a private instance on loopback: its own main.cf,
master.cf and queue, as tools/bench/run runs it) as the smarthost, and a capture SMTP server
written here standing in for the far MX, to which Postfix relays everything (relayhost). Clients:
smtplib (SMTP and SMTP_SSL), msmtp (Debian's package) and raw sockets.

What is proven (see cassmail-smtpd(8), "Relaying", and src/smtp/session.h):

- An authenticated message to a remote address arrives byte for byte at the far MX (after the
  trace fields, ours and Postfix's), its copy in the sender's outbox once; mixed local and
  remote recipients: the local copies read back over POP3, the remote ones at the far MX, the
  outbox copy once.
- Smarthost down: the remote RCPT gets 451 4.4.1, nothing is stored. Smarthost refusing at the
  end of DATA: its code goes to the client and nothing is stored (not even the local copies).
  A text refused by us (NUL) closes the smarthost's connection inside DATA: nothing arrives.
- Postfix refusing one recipient at RCPT: that recipient is refused to the client with Postfix's
  code, the others are delivered.
- No open relay: without AUTH (and outside [relay] trusted_networks), or without a smarthost,
  a remote recipient is 554 5.7.1, in every combination tried; submission mode wants AUTH
  before MAIL (530 5.7.0).
- STARTTLS towards the smarthost with its certificate checked (Postfix with TLS; a wrong CA file
  makes the remote RCPT 451), AUTH PLAIN towards a smarthost that asks for it.
- msmtp on the submission port (STARTTLS, AUTH PLAIN) and smtplib.SMTP_SSL on the implicit-TLS
  port; submission adds a missing Date: and Message-ID: (<TimeUUID@hostname>).
"""
import base64
import os
import poplib
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import TOP, Mail, unique, write_conf
from support import (HOST, MSGID_RE, POP3D, SMTPD, Daemon, Raw, body, free_port, make_certificate, retr_bytes,
                     wait_for)

sys.path.insert(0, str(TOP / "tools" / "bench"))
from cassbench.postfix import start_postfix  # noqa: E402

PASSWORD = "relay pass 5"
REMOTE = "remote.example"
RELAY_USER, RELAY_PASSWORD = "cassmail-out", "smarthost secret 9"


def need(tool):
    """The path of TOOL; a clear failure (never a skip) when it is not installed."""
    path = shutil.which(tool) or (f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists() else None)
    if not path:
        pytest.fail(f"{tool} is not installed: run tools/setup (it installs the Debian package)",
                    pytrace=False)
    return path


# --- the far MX: a capture SMTP server ------------------------------------------------------------


class Capture:
    """A small SMTP server on 127.0.0.1 standing in for a remote domain's MX: it takes every
    message, keeps (sender, [recipients], text unstuffed) and can be told to refuse. Recipients
    whose local part starts with "refuse" get 550 5.1.1; a text holding "X-Capture-Reply: NNN"
    gets NNN at its end. With AUTH, EHLO offers AUTH PLAIN and MAIL needs it."""

    def __init__(self, auth=None):
        self.auth = auth            # (user, password) or None
        self.messages = []
        self.auth_seen = []
        self.sessions = 0
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.session, args=(conn,), daemon=True).start()

    def session(self, conn):
        with self.lock:
            self.sessions += 1
        f = conn.makefile("rb")
        out = lambda text: conn.sendall(text.encode() + b"\r\n")
        try:
            out("220 far-mx.remote.example ESMTP capture")
            sender, rcpts, authed = None, [], self.auth is None
            while True:
                line = f.readline(4096)
                if not line:
                    return
                cmd = line.rstrip(b"\r\n").decode("utf-8", "replace")
                verb = cmd.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    out("250-far-mx.remote.example")
                    out("250-8BITMIME")
                    if self.auth:
                        out("250-AUTH PLAIN")
                    out("250 SIZE 104857600")
                elif verb == "HELO":
                    out("250 far-mx.remote.example")
                elif verb == "AUTH":
                    parts = cmd.split(" ")
                    raw = base64.b64decode(parts[2]) if len(parts) > 2 else b""
                    with self.lock:
                        self.auth_seen.append(raw)
                    if self.auth and raw == b"\0" + self.auth[0].encode() + b"\0" + self.auth[1].encode():
                        authed = True
                        out("235 2.7.0 ok")
                    else:
                        out("535 5.7.8 bad credentials")
                elif verb == "MAIL":
                    if not authed:
                        out("530 5.7.0 Authentication required")
                        continue
                    sender, rcpts = re.search(r"<([^>]*)>", cmd).group(1), []
                    out("250 2.1.0 ok")
                elif verb == "RCPT":
                    addr = re.search(r"<([^>]*)>", cmd).group(1)
                    if addr.startswith("refuse"):
                        out(f"550 5.1.1 <{addr}>: no such user at the far end")
                    else:
                        rcpts.append(addr)
                        out("250 2.1.5 ok")
                elif verb == "DATA":
                    out("354 go ahead")
                    text = b""
                    while True:
                        l = f.readline(1 << 20)
                        if not l:
                            return   # closed inside DATA: the message is dropped
                        if l == b".\r\n":
                            break
                        text += l[1:] if l.startswith(b".") else l
                    m = re.search(rb"X-Capture-Reply: (\d{3})", text)
                    if m:
                        code = m.group(1).decode()
                        out(f"{code} {code[0]}.0.0 refused by the far end as asked")
                        continue
                    with self.lock:
                        self.messages.append((sender, rcpts, text))
                    out(f"250 2.0.0 Ok: queued as CAP{len(self.messages):05d}")
                elif verb == "RSET":
                    sender, rcpts = None, []
                    out("250 2.0.0 ok")
                elif verb == "QUIT":
                    out("221 2.0.0 bye")
                    return
                else:
                    out("250 2.0.0 ok")
        except OSError:
            return
        finally:
            conn.close()

    def wait(self, rcpt, timeout=90):
        """The message (sender, rcpts, text) that reached RCPT (waiting for Postfix to pass it on)."""
        def find():
            with self.lock:
                return next((m for m in self.messages if rcpt in m[1]), None)
        return wait_for(find, timeout=timeout, what=f"a message for {rcpt} at the far MX", step=0.2)

    def to(self, rcpt):
        with self.lock:
            return [m for m in self.messages if rcpt in m[1]]

    def stop(self):
        self.stopped = True
        self.sock.close()


def strip_trace(text):
    """TEXT without the Received: fields at its top (ours and Postfix's), folded lines included."""
    lines = text.split(b"\r\n")
    i = 0
    while i < len(lines) and lines[i].startswith(b"Received:"):
        i += 1
        while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
            i += 1
    return b"\r\n".join(lines[i:])


def our_received_id(text):
    """The TimeUUID of our Received: field in TEXT (the id CassMail stored the message under)."""
    m = re.search(rb"\tby " + HOST.encode() + rb" \(CassMail\) with \S+ id (" + MSGID_RE + rb");\r\n", text)
    assert m, text[:600]
    return m.group(1).decode()


# --- the smarthost: a private Postfix -----------------------------------------------------------


class Postfix:
    """Postfix on 127.0.0.1:PORT relaying every domain to the capture server (relayhost), with
    STARTTLS (CERT, KEY) and an access map that refuses nobody@remote.example at RCPT. A private
    instance: its own config and queue directories; nothing under /etc/postfix is used."""

    def __init__(self, capture_port, cert, key):
        need("postfix")
        # Postfix's daemons run as user postfix: its directories must be reachable by it (pytest's
        # temporary folders are root's alone).
        self.dir = Path(tempfile.mkdtemp(prefix="cassmail-postfix-"))
        self.dir.chmod(0o755)
        conf = self.dir / "conf"
        conf.mkdir(parents=True)
        shutil.copy(cert, conf / "cert.pem")
        shutil.copy(key, conf / "key.pem")
        self.port = free_port()
        self.log = self.dir / "maillog"
        (conf / "rcpt_access").write_text(f"nobody@{REMOTE} 550 5.1.1 <nobody@{REMOTE}>: Recipient "
                                          "address rejected by the smarthost's policy\n")
        self.conf = start_postfix(self.dir, self.port, f"""\
myhostname = smarthost.example.net
# Everything goes to the far MX stand-in; in production this is MX delivery (no relayhost)
relayhost = [127.0.0.1]:{capture_port}
smtpd_recipient_restrictions = check_recipient_access texthash:{conf}/rcpt_access,
    permit_mynetworks, reject_unauth_destination
# Leave CassMail's messages as they are (no header rewriting for this client)
local_header_rewrite_clients =
smtpd_tls_security_level = may
smtpd_tls_cert_file = {conf}/cert.pem
smtpd_tls_key_file = {conf}/key.pem
smtp_tls_security_level = none
""")

    def maillog(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self):
        subprocess.run(["postfix", "-c", str(self.conf), "stop"], capture_output=True, timeout=60,
                       env=dict(os.environ, MAIL_CONFIG=str(self.conf)))
        shutil.rmtree(self.dir, ignore_errors=True)


# --- the servers ----------------------------------------------------------------------------------


class Env:
    def __init__(self, d, mail, cert, capture, capture_auth, postfix, smtpd, pop3d):
        self.dir, self.mail, self.cert = d, mail, cert
        self.capture, self.capture_auth, self.postfix = capture, capture_auth, postfix
        self.smtpd, self.pop3d = smtpd, pop3d
        self.ctx = ssl.create_default_context(cafile=str(cert))

    def user(self):
        return self.mail.useradd(unique("r"), password=PASSWORD)

    def smtp(self, name, login=None):
        """smtplib to cassmail-smtpd NAME (EHLO said), logged in as LOGIN when given"""
        s = smtplib.SMTP("127.0.0.1", self.smtpd[name].port, local_hostname="client.example", timeout=120)
        s.ehlo()
        if login:
            assert s.login(login, PASSWORD)[0] == 235
        return s

    def send(self, name, sender, rcpts, msg, login=None):
        """MSG through smtpd NAME: {rcpt: (code, text)} and the end-of-DATA (code, text), or None
        for DATA when no recipient was accepted"""
        with self.smtp(name, login) as s:
            assert s.mail(sender)[0] == 250
            verdicts = {r: s.rcpt(r) for r in rcpts}
            if not any(c == 250 for c, _ in verdicts.values()):
                return verdicts, None
            code, text = s.data(msg)
            return verdicts, (code, text.decode())

    def stored(self, user, box="inbox"):
        return [self.mail.fetch(user, box, i) for i, _ in self.mail.list(user, box)]

    def pop3(self, user, box="inbox"):
        p = poplib.POP3("127.0.0.1", self.pop3d.port, timeout=60)
        p.user(user if box == "inbox" else f"{user}|{box}")
        p.pass_(PASSWORD)
        n, _ = p.stat()
        msgs = [retr_bytes(p, i) for i in range(1, n + 1)]
        p.quit()
        return msgs

    def relayed_line(self, name, msgid):
        """smtpd NAME's "relayed id=MSGID ..." log line"""
        return wait_for(lambda: re.search(rf"relayed id={msgid} .*", self.smtpd[name].log()),
                        what="the relayed log line").group(0)


@pytest.fixture(scope="module")
def env(ring, tmp_path_factory):
    need("postfix")
    need("msmtp")
    ring.ensure(1)
    d = tmp_path_factory.mktemp("relay")
    d.chmod(0o755)
    cert, key = make_certificate(d, "mx")
    other_cert, _ = make_certificate(d, "other")
    capture = Capture()
    capture_auth = Capture(auth=(RELAY_USER, RELAY_PASSWORD))
    pwfile = d / "smarthost.password"
    pwfile.write_text(RELAY_PASSWORD + "\n")
    pwfile.chmod(0o600)
    postfix = None
    daemons = []
    try:
        postfix = Postfix(capture.port, cert, key)
        tls = {"certificate": cert, "key": key}
        smarthost = f"127.0.0.1:{postfix.port}"
        verified = {"smarthost": smarthost, "starttls": "required", "tls_ca_file": cert}
        confs = {
            "relay": dict(tls=tls, relay=verified),
            "down": dict(tls=tls, relay={"smarthost": f"127.0.0.1:{free_port()}", "connect_timeout_s": 10}),
            "none": dict(tls=tls, relay={"trusted_networks": "127.0.0.0/8"}),
            "trusted": dict(relay={"smarthost": smarthost, "starttls": "none",
                                   "trusted_networks": "127.0.0.1/32"}),
            "untrusted": dict(relay={"smarthost": smarthost, "trusted_networks": "10.0.0.0/8, ::1/128"}),
            "badca": dict(relay={"smarthost": smarthost, "starttls": "required", "tls_ca_file": other_cert}),
            "direct": dict(relay={"smarthost": f"127.0.0.1:{capture_auth.port}", "starttls": "none",
                                  "auth_user": RELAY_USER, "auth_password_file": pwfile}),
        }
        args = {"submission": ["--submission"], "smtps": ["--submission", "--tls-on-connect"]}
        for name in args:
            confs[name] = confs["relay"]
        files = {name: write_conf(d / f"{name}.conf", **c) for name, c in confs.items()}
        ring.schema(files["relay"])
        smtpd = {}
        for name, conf in files.items():
            smtpd[name] = Daemon(SMTPD, conf, d / f"smtpd-{name}.log", args=args.get(name, ()))
            daemons.append(smtpd[name])
        pop3d = Daemon(POP3D, files["relay"], d / "pop3d.log")
        daemons.append(pop3d)
        yield Env(d, Mail(files["relay"]), cert, capture, capture_auth, postfix, smtpd, pop3d)
    finally:
        codes = [x.stop() for x in daemons]
        if postfix:
            postfix.stop()
        capture.stop()
        capture_auth.stop()
        assert codes == [0] * len(codes)


def message(subject, *extra):
    return body(b"From: someone <someone@example.com>", b"To: far away <friend@" + REMOTE.encode() + b">",
                b"Date: Wed, 02 Dec 2026 06:00:00 +0000", b"Message-ID: <" + subject.encode() + b"@client.example>",
                b"Subject: " + subject.encode(), *extra, b"",
                b"Hello over there.", b".a line that starts with a dot", b"..two dots", b".",
                b"\xc3\xa9t\xc3\xa9 8-bit text", b"last line")


# --- tests ----------------------------------------------------------------------------------------


def test_authenticated_message_to_a_remote_address_arrives_byte_exact_at_the_far_mx(env):
    alice = env.user()
    far = f"friend-{unique('f')}@{REMOTE}"
    msg = message("byte-exact")
    verdicts, (code, text) = env.send("relay", f"{alice}@example.com", [far], msg, login=alice)
    assert verdicts[far][0] == 250 and code == 250, (verdicts, text)
    sender, rcpts, got = env.capture.wait(far)
    assert sender == f"{alice}@example.com" and rcpts == [far]
    assert strip_trace(got) == msg
    # Our Received: field names the id the outbox copy is stored under; the copy is there once,
    # the same octets the smarthost got (after Postfix's own trace field).
    msgid = re.search(r"queued as (\S+)", text).group(1)
    assert our_received_id(got) == msgid
    [outbox] = env.stored(alice, "outbox")
    assert got.endswith(outbox) and got.index(outbox) > 0
    assert env.pop3(alice, "outbox") == [outbox]
    assert env.stored(alice) == []
    # One log line per relayed message, with the smarthost's queue id: Postfix's own.
    line = env.relayed_line("relay", msgid)
    qid = re.search(r"queue_id=(\w+)", line).group(1)
    assert re.search(rf"postfix/smtpd\[\d+\]: {qid}: client=", env.postfix.maillog())
    assert f"from=<{alice}@example.com> rcpts=1 " in line
    # Towards the smarthost: STARTTLS with its certificate verified, as configured.
    assert re.search(r"relay 127\.0\.0\.1:\d+: STARTTLS: TLSv1\.[23] .* certificate verified",
                     env.smtpd["relay"].log())


def test_mixed_local_and_remote_recipients_store_the_local_copies_and_relay_the_rest(env):
    alice, bob, carol = env.user(), env.user(), env.user()
    far1, far2 = f"one-{unique('f')}@{REMOTE}", f"two-{unique('f')}@{REMOTE.upper()}"
    msg = message("mixed")
    verdicts, (code, text) = env.send("relay", f"{alice}@example.com",
                                      [f"{bob}@example.com", far1, f"{carol}@example.com", far2, far1],
                                      msg, login=alice)
    assert all(c == 250 for c, _ in verdicts.values()) and code == 250, (verdicts, text)
    _, rcpts, got = env.capture.wait(far1)
    assert sorted(rcpts) == sorted([far1, far2])   # one message, both remote recipients, once
    assert len(env.capture.to(far1)) == 1
    [bob_copy] = env.pop3(bob)
    [carol_copy] = env.pop3(carol)
    [outbox] = env.pop3(alice, "outbox")
    assert bob_copy == carol_copy == outbox
    assert strip_trace(bob_copy) == msg and strip_trace(got) == msg
    assert got.endswith(outbox)
    assert len(env.stored(alice, "outbox")) == 1
    msgid = re.search(r"queued as (\S+)", text).group(1)
    assert f"rcpts=2 " in env.relayed_line("relay", msgid)
    assert re.search(rf"accepted id={msgid} from=<{alice}@example.com> rcpts=2 \+outbox", env.smtpd["relay"].log())


def test_smarthost_down_gives_4xx_for_the_remote_recipient_and_stores_nothing(env):
    alice, bob = env.user(), env.user()
    far = f"friend-{unique('f')}@{REMOTE}"
    with env.smtp("down", login=alice) as s:
        assert s.mail(f"{alice}@example.com")[0] == 250
        code, text = s.rcpt(far)
        assert code == 451 and text.startswith(b"4.4.1"), text
        # a second remote recipient is answered the same at once (no second connection attempt)
        t0 = time.monotonic()
        assert s.rcpt(f"other@{REMOTE}")[0] == 451
        assert time.monotonic() - t0 < 5
        s.rset()
        # the client gives up on the remote recipient: a message with only it never starts
        assert s.mail(f"{alice}@example.com")[0] == 250
        assert s.rcpt(far)[0] == 451
        with pytest.raises(smtplib.SMTPDataError) as e:
            s.data(message("never"))
        assert e.value.smtp_code == 503
    assert env.stored(alice, "outbox") == [] and env.pop3(alice, "outbox") == []
    assert env.stored(bob) == []
    # the operator's line names the sender and why, once, with no reply code the smarthost never sent
    log = env.smtpd["down"].log()
    lines = re.findall(rf"smarthost 127\.0\.0\.1:\d+: not relaying from=<{alice}@example\.com>: (.*)", log)
    assert lines and all(line.startswith("cannot connect to smarthost 127.0.0.1:") for line in lines), lines
    assert "relay 127.0.0.1:" not in log


def test_smarthost_refusing_at_the_end_of_data_stores_nothing_not_even_local_copies(env):
    """The smarthost (the capture server asking for AUTH, reached directly) takes the recipients
    and then refuses the text: its code goes to the client, and neither the local recipient nor
    the outbox holds the message."""
    alice, bob = env.user(), env.user()
    far = f"friend-{unique('f')}@{REMOTE}"
    for reply in (554, 451):
        msg = message(f"refused-{reply}", f"X-Capture-Reply: {reply}".encode())
        verdicts, (code, text) = env.send("direct", f"{alice}@example.com", [f"{bob}@example.com", far],
                                          msg, login=alice)
        assert all(c == 250 for c, _ in verdicts.values()), verdicts
        assert code == reply and text.startswith(f"{reply // 100}.0.0 refused by the far end"), text
    assert env.stored(bob) == [] and env.pop3(bob) == []
    assert env.stored(alice, "outbox") == []
    assert env.capture_auth.to(far) == []
    # AUTH PLAIN towards the smarthost with the configured user and the password file's line
    assert env.capture_auth.auth_seen[-1] == f"\0{RELAY_USER}\0{RELAY_PASSWORD}".encode()
    # and the same message without the refusal goes through
    msg = message("accepted-direct")
    verdicts, (code, text) = env.send("direct", f"{alice}@example.com", [f"{bob}@example.com", far],
                                      msg, login=alice)
    assert code == 250, text
    _, _, got = env.capture_auth.wait(far, timeout=10)
    assert strip_trace(got) == msg
    [copy] = env.pop3(bob)
    assert got == copy
    assert re.search(r"relayed id=\S+ .* queue_id=CAP\d+ ", env.smtpd["direct"].log())


def test_a_message_we_refuse_is_dropped_by_the_smarthost_too(env):
    """A bare CR makes us refuse the text after its end; the smarthost's connection is closed
    inside DATA, so the far end never gets it either."""
    alice = env.user()
    far = f"friend-{unique('f')}@{REMOTE}"
    r = Raw(env.smtpd["direct"].port)
    r.cmd("EHLO client.example")
    plain = base64.b64encode(f"\0{alice}\0{PASSWORD}".encode()).decode()
    assert r.cmd(f"AUTH PLAIN {plain}").startswith("235")
    assert r.cmd(f"MAIL FROM:<{alice}@example.com>").startswith("250")
    assert r.cmd(f"RCPT TO:<{far}>").startswith("250")
    assert r.cmd("DATA").startswith("354")
    r.send(b"Subject: bare CR\r\n\r\nhalf\rline\r\n.\r\n")
    assert r.reply().startswith("554 5.6.0")
    assert r.cmd("QUIT").startswith("221")
    r.close()
    time.sleep(1)
    assert env.capture_auth.to(far) == []
    assert env.stored(alice, "outbox") == []


def test_smarthost_refusing_one_recipient_refuses_it_and_delivers_the_rest(env):
    alice, bob = env.user(), env.user()
    ok = f"fine-{unique('f')}@{REMOTE}"
    refused = f"nobody@{REMOTE}"
    msg = message("one refused")
    verdicts, (code, text) = env.send("relay", f"{alice}@example.com",
                                      [ok, refused, f"{bob}@example.com"], msg, login=alice)
    assert verdicts[ok][0] == 250 and verdicts[f"{bob}@example.com"][0] == 250
    assert verdicts[refused][0] == 550, verdicts
    assert verdicts[refused][1].startswith(b"5.1.1 <nobody@remote.example>: Recipient address rejected")
    assert code == 250, text
    _, rcpts, got = env.capture.wait(ok)
    assert rcpts == [ok] and strip_trace(got) == msg
    assert env.capture.to(refused) == []
    [copy] = env.pop3(bob)
    assert strip_trace(copy) == msg


def test_unauthenticated_relay_attempts_are_refused_in_every_combination(env):
    alice, bob = env.user(), env.user()
    far = f"friend-{unique('f')}@{REMOTE}"
    refused = []

    def attempt(name, login=None, sender=None):
        with env.smtp(name, login) as s:
            assert s.mail(sender or f"{alice}@example.com")[0] == 250
            code, text = s.rcpt(far)
            refused.append((name, login, code, text))
            # a local recipient is still fine
            assert s.rcpt(f"{bob}@example.com")[0] == 250
            return code, text

    # a smarthost, no AUTH, not a trusted network: the forged local sender does not help
    assert attempt("relay")[0] == 554
    assert attempt("relay", sender=f"someone@{REMOTE}")[0] == 554
    assert attempt("untrusted")[0] == 554
    # no smarthost: nobody relays, not a logged-in user, not a trusted network
    assert attempt("none", login=alice)[0] == 554
    assert attempt("none")[0] == 554
    for name, login, code, text in refused:
        assert text == f"5.7.1 <{far}>: Relay access denied".encode(), (name, login, text)
    # a failed login does not count
    with env.smtp("relay") as s:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login(alice, "wrong password")
        assert s.mail(f"{alice}@example.com")[0] == 250
        assert s.rcpt(far)[0] == 554
    # nor do address tricks that name a remote domain inside a local address
    with env.smtp("relay") as s:
        assert s.mail(f"{alice}@example.com")[0] == 250
        assert s.rcpt(f"{far.replace('@', '%')}@example.com")[0] == 550
        assert s.docmd(f"RCPT TO:<@example.com:{far}>")[0] == 554
    # submission mode: no MAIL at all without AUTH
    with env.smtp("submission") as s:
        s.starttls(context=env.ctx)
        s.ehlo()
        code, text = s.mail(f"{alice}@example.com")
        assert code == 530 and text.startswith(b"5.7.0"), text
    assert env.capture.to(far) == []
    # the trusted network relays without AUTH (and nothing else does)
    verdicts, (code, text) = env.send("trusted", f"someone@{REMOTE}", [far], message("trusted"))
    assert verdicts[far][0] == 250 and code == 250
    assert strip_trace(env.capture.wait(far)[2]) == message("trusted")


def test_smarthost_certificate_that_does_not_verify_gives_4xx(env):
    alice = env.user()
    far = f"friend-{unique('f')}@{REMOTE}"
    with env.smtp("badca", login=alice) as s:
        assert s.mail(f"{alice}@example.com")[0] == 250
        code, text = s.rcpt(far)
        assert code == 451 and text.startswith(b"4.4.1"), text
    assert re.search(r"TLS handshake with smarthost 127\.0\.0\.1:\d+ failed: .*certificate",
                     env.smtpd["badca"].log())
    assert env.capture.to(far) == []


def test_msmtp_submits_on_587_with_starttls_and_auth(env):
    alice, bob = env.user(), env.user()
    far = f"msmtp-{unique('f')}@{REMOTE}"
    conf = env.dir / f"msmtprc-{alice}"
    conf.write_text(f"""\
account default
host 127.0.0.1
port {env.smtpd['submission'].port}
domain client.example
from {alice}@example.com
auth plain
user {alice}
password {PASSWORD}
tls on
tls_starttls on
tls_trust_file {env.cert}
logfile {env.dir}/msmtp-{alice}.log
""")
    conf.chmod(0o600)
    msg = message("msmtp").replace(b"someone@example.com", f"{alice}@example.com".encode())
    p = subprocess.run([need("msmtp"), "-C", str(conf), far, f"{bob}@example.com"], input=msg,
                       capture_output=True, timeout=120)
    assert p.returncode == 0, (p.stdout, p.stderr, (env.dir / f"msmtp-{alice}.log").read_text())
    _, rcpts, got = env.capture.wait(far)
    assert rcpts == [far] and strip_trace(got) == msg
    [copy] = env.pop3(bob)
    [outbox] = env.pop3(alice, "outbox")
    assert copy == outbox and got.endswith(copy)
    assert b" with ESMTPSA id " in copy.split(b"\r\n")[1]
    end = env.smtpd["submission"].wait_session_ends(1)
    assert any(e["tls"] == "yes" and e["auth"] == alice and e["relayed"] == "1"
               for e in env.smtpd["submission"].session_ends())


def test_smtplib_submits_over_implicit_tls_on_465_and_missing_headers_are_added(env):
    alice, bob = env.user(), env.user()
    far = f"smtps-{unique('f')}@{REMOTE}"
    msg = body(b"From: " + f"{alice}@example.com".encode(), b"To: " + far.encode(),
               b"Subject: no date, no id", b"X-Folded: one", b" two", b"", b"body text")
    with smtplib.SMTP_SSL("127.0.0.1", env.smtpd["smtps"].port, local_hostname="client.example",
                          context=env.ctx, timeout=120) as s:
        code, caps = s.ehlo()
        assert code == 250 and b"STARTTLS" not in caps and b"AUTH PLAIN LOGIN" in caps
        assert s.login(alice, PASSWORD)[0] == 235
        assert s.mail(f"{alice}@example.com")[0] == 250
        assert s.rcpt(far)[0] == 250 and s.rcpt(f"{bob}@example.com")[0] == 250
        code, text = s.data(msg)
        assert code == 250, text
    msgid = re.search(r"queued as (\S+)", text.decode()).group(1)
    _, _, got = env.capture.wait(far)
    [copy] = env.pop3(bob)
    assert got.endswith(copy)
    head, _, rest = strip_trace(copy).partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    # the client's fields as sent, then the two a submission server adds, then the body
    assert lines[:5] == msg.split(b"\r\n")[:5]
    assert re.fullmatch(rb"Date: (Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}",
                        lines[5]), lines[5]
    assert lines[6] == f"Message-ID: <{msgid}@{HOST}>".encode()
    assert len(lines) == 7 and rest == b"body text\r\n"
    assert b" with ESMTPSA id " in copy.split(b"\r\n")[1]
    # a message that has both keeps them and gets nothing more
    with smtplib.SMTP_SSL("127.0.0.1", env.smtpd["smtps"].port, context=env.ctx, timeout=120) as s:
        s.login(alice, PASSWORD)
        far2 = f"smtps2-{unique('f')}@{REMOTE}"
        msg2 = message("has both")
        assert s.sendmail(f"{alice}@example.com", [far2], msg2) == {}
    assert strip_trace(env.capture.wait(far2)[2]) == msg2


def test_relay_files_that_cannot_be_read_stop_the_server_saying_which(tmp_path):
    """The smarthost's CA file and AUTH password file are read at start-up (before privileges are
    dropped): one that is missing or holds nothing usable stops cassmail-smtpd with exit status 78
    and a message naming the key, the file and why. No ring is needed: nothing is served."""
    empty = tmp_path / "empty.password"
    empty.write_text("\n")
    relay = {"smarthost": "127.0.0.1:10025", "starttls": "required"}
    for name, more, want in (
            ("noca", {"tls_ca_file": tmp_path / "missing-ca.pem"},
             f"[relay] tls_ca_file {tmp_path / 'missing-ca.pem'}: cannot load CA certificates: "
             "No such file or directory"),
            ("nopw", {"auth_user": "cassmail", "auth_password_file": tmp_path / "missing.password"},
             "[relay] auth_password_file: "),
            ("emptypw", {"auth_user": "cassmail", "auth_password_file": empty},
             f"[relay] auth_password_file: {empty}: no password on its first line")):
        conf = write_conf(tmp_path / f"{name}.conf", relay={**relay, **more})
        p = subprocess.run([str(SMTPD), "-c", str(conf), "-l", "127.0.0.1:0"], capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 78, (name, p.returncode, p.stderr)
        assert want in p.stderr, (name, p.stderr)
        if name == "nopw":
            assert "missing.password" in p.stderr and "No such file or directory" in p.stderr, p.stderr
