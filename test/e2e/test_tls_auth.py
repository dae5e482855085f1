"""TLS, SMTP AUTH, the relay policy and privileges, end to end: a real Cassandra 0.7.0 node, the
real servers started as this test process's user (root on the build machine), and real clients —
Python's smtplib and poplib, curl, swaks, `openssl s_client` and `openssl s_server`.

What the servers promise here (see src/smtp/session.h, src/pop3/session.h, src/util/privs.h and
config/cassmail.conf):

- STARTTLS (RFC 3207) and STLS (RFC 2595) are offered only with a [tls] certificate and key;
  TLS 1.2 or newer only; whatever the client pipelined behind STARTTLS/STLS is discarded; after
  the handshake the SMTP session starts over (EHLO again, no transaction, no login).
- SMTP AUTH PLAIN and LOGIN (RFC 4954) against Credentials: 235 / 535 5.7.8 / 538 5.7.11.
  [smtp] allow_plaintext_auth decides where a password may travel without TLS: "false" (tested
  here as the policy every non-loopback client gets by default), "loopback" (the default: this
  machine only) or "true". POP3 USER/PASS follow the same rule.
- No open relay: a recipient outside the local domains is 554 5.7.1 whether the client logged in
  or not; a logged-in client may use only its own address as sender (553 5.7.1 otherwise).
- Started as root, both servers bind and load the key, then become [server] user before a client
  byte is read; with no user to become they refuse to run (exit 77), in --inetd mode too.

Stored messages are read back through cassmail-pop3d (over STLS) and compared byte for byte with
what the client sent, after our three-line Received: field.
"""
import base64
import os
import poplib
import pwd
import grp
import re
import smtplib
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

import support
from conftest import Mail, unique, write_conf
from support import HOST, IMAPD, POP3D, SMTPD, UUID, Daemon, body, children, free_port, wait_for

PASSWORD = "Tls auth pass 7"
AS_ROOT = os.geteuid() == 0


def ids(pid):
    """{"Uid": [real, effective, saved, fs], "Gid": [...], "Groups": [...]} of process PID."""
    status = Path(f"/proc/{pid}/status").read_text()
    out = {}
    for key in ("Uid", "Gid", "Groups"):
        m = re.search(rf"^{key}:\s*(.*)$", status, re.M)
        out[key] = [int(x) for x in m.group(1).split()]
    return out


def client_context(cert):
    """TLS for our clients: the server must present CERT (the name is not checked: we connect to
    127.0.0.1, the certificate names mx.example.com)."""
    ctx = ssl.create_default_context(cafile=str(cert))
    ctx.check_hostname = False
    return ctx


class Env:
    def __init__(self, d, cert, key, mail, confs, daemons):
        self.dir, self.cert, self.key, self.mail = d, cert, key, mail
        self.conf = confs
        self.d = daemons
        self.ctx = client_context(cert)

    def user(self, prefix="ta"):
        return self.mail.useradd(unique(prefix), PASSWORD)

    def smtp(self, which="strict"):
        return smtplib.SMTP("127.0.0.1", self.d[f"smtp_{which}"].port, local_hostname="client.example",
                            timeout=60)

    def pop3_messages(self, user, box=None, which="strict", password=PASSWORD):
        """Every message of USER's BOX through cassmail-pop3d over STLS, as retrieved."""
        p = poplib.POP3("127.0.0.1", self.d[f"pop3_{which}"].port, timeout=60)
        try:
            p.stls(self.ctx)
            p.user(user + (f"|{box}" if box else ""))
            p.pass_(password)
            n = len(p.list()[1])
            return [b"".join(l + b"\r\n" for l in p.retr(i + 1)[1]) for i in range(n)]
        finally:
            p.quit()

    def stored(self, user, box="inbox"):
        """What cassmail-admin sees in Cassandra: [stored octets] in arrival order."""
        return [self.mail.fetch(user, box, i) for i, _ in self.mail.list(user, box)]


@pytest.fixture(scope="module")
def env(ring, tmp_path_factory):
    """A 1-node ring with the schema; certificate and key; four daemons: SMTP and POP3 with TLS
    and the default plaintext rule (loopback), and SMTP and POP3 with allow_plaintext_auth=false
    (what a client on another machine gets by default)."""
    ring.ensure(1)
    d = tmp_path_factory.mktemp("tlsauth")
    cert, key = support.make_certificate(d, "mx")
    tls = {"certificate": cert, "key": key}
    confs = {
        "loopback": write_conf(d / "loopback.conf", tls=tls),
        "strict": write_conf(d / "strict.conf", tls=tls, smtp={"allow_plaintext_auth": "false"},
                             pop3={"login_delay_ms": 200}),
        "plain": write_conf(d / "plain.conf"),
    }
    ring.schema(confs["strict"])
    mail = Mail(confs["strict"])
    daemons = {}
    try:
        for which in ("loopback", "strict"):
            daemons[f"smtp_{which}"] = Daemon(SMTPD, confs[which], d / f"smtpd-{which}.log")
            daemons[f"pop3_{which}"] = Daemon(POP3D, confs[which], d / f"pop3d-{which}.log")
        yield Env(d, cert, key, mail, confs, daemons)
    finally:
        for daemon in daemons.values():
            daemon.stop()


class Raw(support.Raw):
    """A raw client: exact bytes out, reply lines in (the greeting too: nothing is read at
    connect), and a TLS switch at the moment we choose."""

    def __init__(self, port, timeout=30):
        super().__init__(port, timeout=timeout, greeting=False)

    def start_tls(self, ctx):
        """The client side of the handshake; the server must not have sent anything after its
        go-ahead (a byte of plaintext would also break the handshake)."""
        assert self.buf == b"", f"plaintext after the go-ahead: {self.buf!r}"
        self.sock = ctx.wrap_socket(self.sock, server_hostname=HOST)
        return self.sock.version()

    def nothing_more(self, wait=1.5):
        """Whether the server sends nothing more within WAIT seconds."""
        if self.buf:
            return False
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return True
        finally:
            self.sock.settimeout(30)
        self.buf += data
        return False


def strip_received(stored):
    """The client's text inside a stored (or retrieved) message: our three Received: lines go.
    Checked as ours only, not line by line: here the with clause is ESMTPS, ESMTPA or ESMTPSA."""
    return support.strip_received(stored, exact=False)


def plain_b64(user, password, authzid=""):
    return base64.b64encode(f"{authzid}\0{user}\0{password}".encode()).decode()


# ---- STARTTLS / STLS offered only with a certificate and key -----------------------------------

def test_starttls_and_stls_offered_only_with_certificate_and_key(env, tmp_path):
    plain_smtp = Daemon(SMTPD, env.conf["plain"], tmp_path / "smtpd.log")
    plain_pop3 = Daemon(POP3D, env.conf["plain"], tmp_path / "pop3d.log")
    try:
        with smtplib.SMTP("127.0.0.1", plain_smtp.port, local_hostname="c.example", timeout=60) as s:
            s.ehlo()
            assert not s.has_extn("starttls")
            assert s.docmd("STARTTLS") == (502, b"5.5.1 STARTTLS not available")
        p = poplib.POP3("127.0.0.1", plain_pop3.port, timeout=60)
        assert "STLS" not in p.capa()
        with pytest.raises(poplib.error_proto, match="STLS not available"):
            p._shortcmd("STLS")
        p.quit()
    finally:
        plain_smtp.stop()
        plain_pop3.stop()
    assert "STARTTLS not offered (no [tls] certificate)" in plain_smtp.log()

    with env.smtp() as s:
        s.ehlo()
        assert s.has_extn("starttls")
    p = poplib.POP3("127.0.0.1", env.d["pop3_strict"].port, timeout=60)
    assert "STLS" in p.capa()
    p.quit()

    # half a pair, or a key that does not load, stops the server at start-up, saying which file
    # and why
    _, other_key = support.make_certificate(tmp_path, "other")
    for name, tls, want in (("half", {"certificate": env.cert}, "[tls] certificate and key must be given together"),
                            ("nokey", {"certificate": env.cert, "key": tmp_path / "missing.pem"},
                             f"[tls] key {tmp_path / 'missing.pem'}: cannot load: "),
                            ("swapped", {"certificate": env.key, "key": env.cert},
                             f"[tls] certificate {env.key}: cannot load (no PEM certificate in it?)"),
                            ("notakey", {"certificate": env.cert, "key": env.cert},
                             f"[tls] key {env.cert}: cannot load (no PEM private key in it?)"),
                            ("otherkey", {"certificate": env.cert, "key": other_key},
                             f"[tls] key {other_key} does not match certificate {env.cert}")):
        conf = write_conf(tmp_path / f"{name}.conf", tls=tls)
        for prog in (SMTPD, POP3D, IMAPD):
            p = subprocess.run([str(prog), "-f", "-c", str(conf), "-l", "127.0.0.1:0"],
                               capture_output=True, text=True, timeout=60)
            assert p.returncode == 78, (prog.name, name, p.returncode, p.stderr)
            assert want in p.stderr, (prog.name, name, p.stderr)
            if name == "nokey":
                assert "No such file or directory" in p.stderr, (prog.name, p.stderr)


# ---- SMTP: STARTTLS, AUTH, submission; POP3: STLS; byte-exact --------------------------------

def test_smtplib_starttls_and_login_then_poplib_stls_reads_it_byte_exact(env):
    alice, bob = env.user(), env.user()
    msg = body(f"From: {alice}@example.com".encode(), f"To: {bob}@example.com".encode(),
               b"Subject: over TLS", b"", b"sent after STARTTLS and AUTH PLAIN", b".a dot line",
               "ünïcode".encode())
    with env.smtp() as s:
        s.ehlo()
        # plaintext auth is off: AUTH is neither offered nor accepted before TLS
        assert not s.has_extn("auth")
        with pytest.raises(smtplib.SMTPNotSupportedError):
            s.login(alice, PASSWORD)
        assert s.docmd("AUTH", "PLAIN " + plain_b64(alice, PASSWORD)) == \
            (538, b"5.7.11 Encryption required for requested authentication mechanism")
        code, _ = s.starttls(context=env.ctx)
        assert code == 220
        assert s.sock.version() in ("TLSv1.2", "TLSv1.3")
        s.ehlo()
        assert not s.has_extn("starttls")
        assert s.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
        assert s.login(alice, PASSWORD) == (235, b"2.7.0 Authentication successful")
        assert s.sendmail(f"{alice}@example.com", [f"{bob}@example.com"], msg) == {}

    (inbox,) = env.stored(bob)
    (outbox,) = env.stored(alice, "outbox")
    assert inbox == outbox
    assert strip_received(inbox) == msg
    assert b" with ESMTPSA id " in inbox.split(b"\r\n")[1]
    assert env.pop3_messages(bob) == [inbox]
    assert env.pop3_messages(alice, "outbox") == [inbox]
    assert re.search(rf"AUTH PLAIN as {alice} over TLS", env.d["smtp_strict"].log())
    wait_for(lambda: re.search(rf"session end helo=client\.example accepted=1 .* tls=yes auth={alice}",
                               env.d["smtp_strict"].log()), what="the session end line")


def test_auth_login_with_smtplib_swaks_and_plain_with_curl(env, tmp_path):
    alice, bob = env.user(), env.user()
    sent = []
    # smtplib's LOGIN (user name as initial response, then 334 for the password)
    with env.smtp() as s:
        s.starttls(context=env.ctx)
        s.ehlo()
        s.user, s.password = alice, PASSWORD
        assert s.auth("LOGIN", s.auth_login) == (235, b"2.7.0 Authentication successful")
        m = body(b"Subject: smtplib LOGIN", b"", b"one")
        s.sendmail(f"{alice}@example.com", [f"{bob}@example.com"], m)
        sent.append(m)
    # swaks: STARTTLS, AUTH LOGIN in two steps
    m = body(b"Subject: swaks LOGIN", b"", b"two")
    f = tmp_path / "swaks.eml"
    f.write_bytes(m[:-2])   # swaks ends the text with CRLF itself
    p = subprocess.run(["swaks", "--server", f"127.0.0.1:{env.d['smtp_strict'].port}", "--tls",
                        "--auth", "LOGIN", "--auth-user", alice, "--auth-password", PASSWORD,
                        "--from", f"{alice}@example.com", "--to", f"{bob}@example.com",
                        "--helo", "swaks.example", "--data", f"@{f}"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "<~  334 VXNlcm5hbWU6" in p.stdout and "<~  235 2.7.0" in p.stdout, p.stdout
    sent.append(m)
    # curl: --ssl-reqd makes it use STARTTLS; it picks AUTH PLAIN
    m = body(b"Subject: curl PLAIN", b"", b"three")
    f = tmp_path / "curl.eml"
    f.write_bytes(m)
    p = subprocess.run(["curl", "-sS", "-v", "--ssl-reqd", "--cacert", str(env.cert),
                        "--resolve", f"{HOST}:{env.d['smtp_strict'].port}:127.0.0.1",
                        f"smtp://{HOST}:{env.d['smtp_strict'].port}/curl.example",
                        "-u", f"{alice}:{PASSWORD}", "--mail-from", f"{alice}@example.com",
                        "--mail-rcpt", f"{bob}@example.com", "--upload-file", str(f)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "> AUTH PLAIN" in p.stderr and "< 235 2.7.0" in p.stderr, p.stderr
    sent.append(m)

    stored = env.stored(bob)
    assert [strip_received(x) for x in stored] == sent
    assert env.pop3_messages(bob) == stored
    # curl reads it back over STLS as well (pop3 with --ssl-reqd)
    p = subprocess.run(["curl", "-sS", "--ssl-reqd", "--cacert", str(env.cert),
                        "--resolve", f"{HOST}:{env.d['pop3_strict'].port}:127.0.0.1",
                        "-u", f"{bob}:{PASSWORD}", f"pop3://{HOST}:{env.d['pop3_strict'].port}/3"],
                       capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout == stored[2]


def test_bad_credentials_are_535_and_the_session_goes_on(env):
    alice = env.user()
    with env.smtp() as s:
        s.starttls(context=env.ctx)
        s.ehlo()
        for user, password in ((alice, "wrong"), (unique("ghost"), PASSWORD), (alice, PASSWORD.upper())):
            with pytest.raises(smtplib.SMTPAuthenticationError) as e:
                s.login(user, password)
            assert e.value.smtp_code == 535 and e.value.smtp_error.startswith(b"5.7.8"), e.value
        # acting for another identity is refused too
        other = env.user()
        assert s.docmd("AUTH", "PLAIN " + plain_b64(alice, PASSWORD, authzid=other))[0] == 535
        # a cancelled exchange is 501
        assert s.docmd("AUTH", "LOGIN")[0] == 334
        assert s.docmd("*")[0] == 501
        assert s.login(alice, PASSWORD)[0] == 235
        assert s.docmd("AUTH", "PLAIN " + plain_b64(alice, PASSWORD))[0] == 503   # once only
    # POP3 over TLS: the same password rules
    with pytest.raises(poplib.error_proto, match=r"-ERR \[AUTH\] Invalid login"):
        env.pop3_messages(alice, password="wrong")
    assert env.pop3_messages(alice) == []


# ---- where a password may travel without TLS ---------------------------------------------------

def test_plaintext_auth_false_refuses_smtp_auth_and_pop3_user_before_tls(env):
    """allow_plaintext_auth=false: what every client off this machine gets with the default
    "loopback" — tested on loopback by switching the exemption off."""
    alice = env.user()
    r = Raw(env.d["smtp_strict"].port)
    assert r.reply().startswith("220 ")
    ehlo = r.cmd("EHLO c.example")
    assert "STARTTLS" in ehlo and "AUTH" not in ehlo
    assert r.cmd("AUTH PLAIN " + plain_b64(alice, PASSWORD)).startswith("538 5.7.11 ")
    assert r.cmd("AUTH LOGIN").startswith("538 5.7.11 ")
    assert r.cmd("MAIL FROM:<x@remote.example> AUTH=<>").startswith("555 5.5.4 ")
    r.cmd("QUIT")
    r.close()

    p = poplib.POP3("127.0.0.1", env.d["pop3_strict"].port, timeout=60)
    capa = p.capa()
    assert "STLS" in capa and "USER" not in capa
    with pytest.raises(poplib.error_proto, match=r"-ERR \[AUTH\] plain-text login is not allowed.*use STLS first"):
        p.user(alice)
    with pytest.raises(poplib.error_proto, match="give USER first"):
        p.pass_(PASSWORD)
    assert p.stls(env.ctx).startswith(b"+OK")
    capa = p.capa()
    assert "USER" in capa and "STLS" not in capa
    p.user(alice)
    assert p.pass_(PASSWORD).startswith(b"+OK maildrop has 0 messages")
    p.quit()
    wait_for(lambda: re.search(rf"pop3 127\.0\.0\.1: session end user={alice} mailbox=inbox state=CLOSED "
                               r"end=quit ms=\d+ tls=yes", env.d["pop3_strict"].log()), what="the session end line")


def test_plaintext_auth_loopback_default_allows_this_machine(env):
    alice, bob = env.user(), env.user()
    msg = body(b"Subject: loopback AUTH", b"", b"no TLS, from 127.0.0.1")
    with env.smtp("loopback") as s:
        s.ehlo()
        assert s.has_extn("auth") and s.has_extn("starttls")
        assert s.login(alice, PASSWORD)[0] == 235
        s.sendmail(f"{alice}@example.com", [f"{bob}@example.com"], msg)
    (stored,) = env.stored(bob)
    assert strip_received(stored) == msg
    assert b" with ESMTPA id " in stored.split(b"\r\n")[1]
    p = poplib.POP3("127.0.0.1", env.d["pop3_loopback"].port, timeout=60)
    assert "USER" in p.capa()
    p.user(bob)
    p.pass_(PASSWORD)
    assert b"".join(l + b"\r\n" for l in p.retr(1)[1]) == stored
    p.quit()
    assert "AUTH without TLS: loopback clients only" in env.d["smtp_loopback"].log()
    assert "AUTH without TLS: never" in env.d["smtp_strict"].log()


# ---- TLS versions --------------------------------------------------------------------------

def s_client(port, proto, cafile, *opts, stdin=b""):
    """openssl s_client with STARTTLS/STLS for PROTO; its output (stdout and stderr)."""
    p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-starttls", proto,
                        "-CAfile", str(cafile), *opts], input=stdin, capture_output=True, timeout=60)
    return (p.stdout + p.stderr).decode("utf-8", "replace")


def test_tls_1_1_client_refused_1_2_and_1_3_served(env, tmp_path):
    old = ["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]
    # control: this openssl does speak TLS 1.1 to a server that allows it
    port = free_port()
    server = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(env.cert),
                               "-key", str(env.key), "-naccept", "1", "-tls1_1", "-cipher", "ALL@SECLEVEL=0"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        # s_server says ACCEPT once it listens (a probe connection would use up -naccept 1)
        for line in server.stdout:
            if line.startswith(b"ACCEPT"):
                break
        out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *old],
                             input=b"", capture_output=True, timeout=60)
        text = (out.stdout + out.stderr).decode()
        assert re.search(r"Protocol\s*: TLSv1\.1", text) and "Cipher is (NONE)" not in text, text
    finally:
        server.kill()
        server.wait()

    for daemon, proto in ((env.d["smtp_strict"], "smtp"), (env.d["pop3_strict"], "pop3")):
        text = s_client(daemon.port, proto, env.cert, *old)
        assert "Cipher is (NONE)" in text and "protocol version" in text, text
        wait_for(lambda: "unsupported protocol" in daemon.log(), what=f"{proto}: the refused handshake in the log")
        for version, flag in (("TLSv1.2", "-tls1_2"), ("TLSv1.3", "-tls1_3")):
            cmds = b"EHLO s-client.example\nQUIT\n" if proto == "smtp" else b"CAPA\nQUIT\n"
            text = s_client(daemon.port, proto, env.cert, flag, "-crlf", "-ign_eof", stdin=cmds)
            assert re.search(rf"Protocol\s*: {version}", text), text
            assert "Cipher is (NONE)" not in text
            if proto == "smtp":
                assert "250-AUTH PLAIN LOGIN" in text and "221 2.0.0" in text, text
            else:
                assert re.search(r"^USER\r?$", text, re.M) and "signing off" in text, text
    assert "end=tls-failed" in env.d["smtp_strict"].log()


# ---- the STARTTLS injection and the state after TLS ----------------------------------------------

def test_starttls_discards_pipelined_plaintext_rset(env):
    r = Raw(env.d["smtp_strict"].port)
    assert r.reply().startswith("220 ")
    assert "STARTTLS" in r.cmd("EHLO c.example")
    # One write: STARTTLS and a command behind it, as a man in the middle would inject it
    r.send(b"STARTTLS\r\nRSET\r\n")
    assert r.reply() == "220 2.0.0 Ready to start TLS"
    assert r.start_tls(env.ctx) in ("TLSv1.2", "TLSv1.3")
    # Had the server executed RSET, its "250 2.0.0 Ok" would come first.
    ehlo = r.cmd("EHLO after.example")
    assert ehlo.startswith(f"250-{HOST}\n"), ehlo
    assert "STARTTLS" not in ehlo and "AUTH PLAIN LOGIN" in ehlo
    assert r.cmd("NOOP") == "250 2.0.0 Ok"
    assert r.nothing_more()
    assert r.cmd("QUIT").startswith("221 ")
    r.close()
    log = wait_for(lambda: re.search(r"session end helo=after\.example .*errors=0 end=quit .*tls=yes",
                                     env.d["smtp_strict"].log()), what="session end")
    assert log


def test_stls_discards_pipelined_plaintext_quit(env):
    r = Raw(env.d["pop3_strict"].port)
    assert r.line().startswith("+OK")
    r.send(b"STLS\r\nQUIT\r\n")
    assert r.line() == "+OK Begin TLS negotiation"
    r.start_tls(env.ctx)
    # Had the server executed the injected QUIT, it would have signed off and closed.
    r.send(b"CAPA\r\n")
    assert r.line() == "+OK Capability list follows"
    capa = []
    while (line := r.line()) != ".":
        capa.append(line)
    assert "USER" in capa and "STLS" not in capa
    assert r.nothing_more()
    r.send(b"STLS\r\n")
    assert r.line() == "-ERR command not permitted when TLS active"
    r.send(b"QUIT\r\n")
    assert r.line().startswith("+OK CassMail POP3 server signing off")
    r.close()


def test_session_starts_over_after_starttls(env):
    alice, bob = env.user(), env.user()
    r = Raw(env.d["smtp_loopback"].port)   # AUTH allowed before TLS here, to see it forgotten
    r.reply()
    r.cmd("EHLO before.example")
    assert r.cmd("AUTH PLAIN " + plain_b64(alice, PASSWORD)).startswith("235 2.7.0")
    assert r.cmd(f"MAIL FROM:<{alice}@example.com>").startswith("250 2.1.0")
    assert r.cmd("STARTTLS").startswith("503 5.5.1 ")       # not inside a transaction
    assert r.cmd("RSET").startswith("250 ")
    assert r.cmd("STARTTLS").startswith("220 2.0.0")
    r.start_tls(env.ctx)
    assert r.cmd(f"MAIL FROM:<{alice}@example.com>").startswith("503 5.5.1 ")   # EHLO first
    ehlo = r.cmd("EHLO after.example")
    assert "STARTTLS" not in ehlo and "AUTH PLAIN LOGIN" in ehlo
    # the login is forgotten: another sender is fine again (as for anyone unauthenticated) ...
    assert r.cmd(f"MAIL FROM:<{bob}@example.com>").startswith("250 2.1.0")
    assert r.cmd("RSET").startswith("250 ")
    # ... and AUTH may be given again (not 503 "already authenticated")
    assert r.cmd("AUTH PLAIN " + plain_b64(alice, PASSWORD)).startswith("235 2.7.0")
    assert r.cmd("STARTTLS").startswith("503 5.5.1 ")      # a second STARTTLS
    assert r.cmd(f"MAIL FROM:<{bob}@example.com>").startswith("553 5.7.1 ")
    assert r.cmd(f"MAIL FROM:<{alice}@example.com>").startswith("250 2.1.0")
    assert r.cmd(f"RCPT TO:<{bob}@example.com>").startswith("250 2.1.5")
    assert r.cmd("DATA").startswith("354 ")
    assert re.match(rf"250 2\.0\.0 Ok: queued as {UUID}$", r.cmd("Subject: after TLS\r\n\r\nhi\r\n."))
    r.cmd("QUIT")
    r.close()
    (stored,) = env.stored(bob)
    lines = stored.split(b"\r\n")
    assert lines[0] == b"Received: from after.example (127.0.0.1)"
    assert b" with ESMTPSA id " in lines[1]
    assert strip_received(stored) == b"Subject: after TLS\r\n\r\nhi\r\n"


def test_failed_handshake_ends_only_that_session(env):
    r = Raw(env.d["smtp_strict"].port)
    r.reply()
    r.cmd("EHLO c.example")
    assert r.cmd("STARTTLS").startswith("220 ")
    r.send(b"EHLO this is not a TLS ClientHello\r\n")
    r.sock.settimeout(60)
    while r.sock.recv(65536):   # perhaps an alert, then the server closes
        pass
    r.close()
    wait_for(lambda: re.search(r"helo=c\.example .*end=tls-failed", env.d["smtp_strict"].log()),
             what="tls-failed session end")
    with env.smtp() as s:     # the daemon serves the next client as before
        assert s.starttls(context=env.ctx)[0] == 220


# ---- no open relay: the matrix ---------------------------------------------------------------

MATRIX = [
    # (authenticated, sender, recipient, MAIL reply, RCPT reply)
    (False, "local", "local", 250, 250),
    (False, "local", "foreign", 250, 554),
    (False, "foreign", "local", 250, 250),
    (False, "foreign", "foreign", 250, 554),
    (True, "local", "local", 250, 250),
    (True, "local", "foreign", 250, 554),
    (True, "foreign", "local", 553, None),
    (True, "foreign", "foreign", 553, None),
    (True, "other-local", "local", 553, None),
]


@pytest.mark.parametrize("authenticated,sender,rcpt,mail_code,rcpt_code", MATRIX,
                         ids=[f"{'auth' if a else 'noauth'}-{s}-sender-{r}-rcpt" for a, s, r, *_ in MATRIX])
def test_relay_matrix(env, authenticated, sender, rcpt, mail_code, rcpt_code):
    """"local" sender: the logged-in user's own address (or, unauthenticated, a local user's);
    "other-local": another local user's address while logged in."""
    alice, bob, carol = env.user(), env.user(), env.user()
    from_addr = {"local": f"{alice}@example.com", "foreign": "someone@remote.example",
                 "other-local": f"{carol}@example.com"}[sender]
    to_addr = {"local": f"{bob}@example.com", "foreign": "victim@remote.example"}[rcpt]
    msg = body(f"Subject: matrix {authenticated} {sender} {rcpt}".encode(), b"", b"text")
    with env.smtp() as s:
        s.starttls(context=env.ctx)
        s.ehlo()
        if authenticated:
            assert s.login(alice, PASSWORD)[0] == 235
        code, text = s.mail(from_addr)
        assert code == mail_code, text
        if mail_code == 553:
            assert text.startswith(b"5.7.1 ") and b"not owned by user " + alice.encode() in text
            assert s.rcpt(to_addr)[0] == 503    # no transaction was opened
        else:
            code, text = s.rcpt(to_addr)
            assert code == rcpt_code, text
            if rcpt_code == 554:
                assert text == f"5.7.1 <{to_addr}>: Relay access denied".encode()
                assert s.docmd("DATA")[0] == 503   # nothing to deliver, nothing queued anywhere
            else:
                code, text = s.data(msg)
                assert code == 250, text
    accepted = mail_code == 250 and rcpt_code == 250
    inbox = env.stored(bob)
    if accepted:
        assert [strip_received(m) for m in inbox] == [msg]
        assert env.pop3_messages(bob) == inbox
        # the sender's outbox copy exists only for a sender who logged in ([smtp] outbox_copy =
        # authenticated, the default): an unauthenticated MAIL FROM a local user proves nothing
        assert len(env.stored(alice, "outbox")) == (1 if sender == "local" and authenticated else 0)
    else:
        assert inbox == []
        assert env.stored(alice, "outbox") == [] and env.stored(carol, "outbox") == []


def test_authenticated_client_cannot_relay_by_address_tricks(env):
    alice = env.user()
    tricks = ["victim@remote.example", "victim@remote.example.", "@example.com:victim@remote.example",
              f"{alice}@example.com@remote.example", "victim@[127.0.0.1]", "victim@example.com.remote.example",
              "victim%remote.example@example.com", "remote.example!victim@example.com",
              "\"victim@remote.example\"@example.com", "victim@remote.example@example.com"]
    with env.smtp() as s:
        s.starttls(context=env.ctx)
        s.ehlo()
        s.login(alice, PASSWORD)
        assert s.mail(f"{alice}@example.com")[0] == 250
        codes = {t: s.docmd("RCPT", f"TO:<{t}>") for t in tricks}
        assert all(c[0] in (501, 550, 554) for c in codes.values()), codes
        assert s.docmd("DATA")[0] == 503
    assert f"from=<{alice}@example.com>" not in env.d["smtp_strict"].log()


# ---- privileges --------------------------------------------------------------------------------

needs_root = pytest.mark.skipif(not AS_ROOT, reason="the privilege drop is tested when started as root")


@needs_root
def test_daemons_started_as_root_serve_clients_as_nobody(env, tmp_path):
    nobody, nogroup = pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
    assert oct(env.key.stat().st_mode & 0o777) == "0o600" and env.key.stat().st_uid == 0
    for prog, greet, tls_cmd, go_ahead in ((SMTPD, "220 ", "STARTTLS", "220"), (POP3D, "+OK", "STLS", "+OK"),
                                           (IMAPD, "* OK", "a STARTTLS", "a OK")):
        daemon = Daemon(prog, env.conf["strict"], tmp_path / f"{prog.name}.log")
        try:
            assert ids(daemon.proc.pid)["Uid"] == [nobody] * 4   # the listener gave up root already
            r = Raw(daemon.port)
            assert r.line().startswith(greet)
            # the session process, at the moment it waits for the client's first byte
            (child,) = wait_for(lambda: children(daemon.proc.pid), what="the session process")
            got = ids(child)
            assert got["Uid"] == [nobody] * 4, got
            assert got["Gid"] == [nogroup] * 4, got
            assert got["Groups"] == [nogroup], got
            # the key only root may read was loaded before the switch: TLS works
            if prog == SMTPD:
                r.cmd("EHLO c.example")
            r.send(tls_cmd + "\r\n")
            assert r.line().startswith(go_ahead)
            assert r.start_tls(env.ctx) in ("TLSv1.2", "TLSv1.3")
            r.close()
        finally:
            daemon.stop()


@needs_root
def test_inetd_mode_started_as_root_drops_too(env):
    nobody = pwd.getpwnam("nobody").pw_uid
    for prog, greet, quit_ in ((SMTPD, b"220 ", b"QUIT\r\n"), (POP3D, b"+OK", b"QUIT\r\n"),
                               (IMAPD, b"* OK", b"a LOGOUT\r\n")):
        ours, theirs = socket.socketpair()
        p = subprocess.Popen([str(prog), "-f", "-c", str(env.conf["strict"]), "--inetd"],
                             stdin=theirs.fileno(), stdout=theirs.fileno(), stderr=subprocess.PIPE)
        theirs.close()
        try:
            ours.settimeout(60)
            assert ours.recv(4096).startswith(greet)
            assert ids(p.pid)["Uid"] == [nobody] * 4
            ours.sendall(quit_)
            assert p.wait(timeout=60) == 0
        finally:
            ours.close()
            if p.poll() is None:
                p.kill()
            p.wait()
            p.stderr.close()


@needs_root
@pytest.mark.parametrize("server", [{"user": ""}, {"user": "root"}, {"user": "no-such-user-here"}],
                         ids=["no-user", "user-root", "unknown-user"])
def test_root_without_an_unprivileged_user_refuses_to_run(env, tmp_path, server):
    conf = write_conf(tmp_path / "root.conf", server=server)
    want = "no such user" if server["user"] == "no-such-user-here" else "refusing to serve clients as root"
    for prog in (SMTPD, POP3D, IMAPD):
        p = subprocess.run([str(prog), "-f", "-c", str(conf), "-l", "127.0.0.1:0"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 77, (prog.name, p.returncode, p.stderr)
        assert want in p.stderr, p.stderr
        assert "listening on" not in p.stderr
        # inetd mode: the same refusal, and not a byte for the client — even when stderr is the
        # client's socket too, as xinetd sets it up (the reason goes to syslog)
        ours, theirs = socket.socketpair()
        q = subprocess.run([str(prog), "-c", str(conf), "--inetd"], stdin=theirs.fileno(),
                           stdout=theirs.fileno(), stderr=theirs.fileno(), timeout=60)
        theirs.close()
        ours.settimeout(10)
        try:
            assert ours.recv(4096) == b""
        finally:
            ours.close()
        assert q.returncode == 77, (prog.name, q.returncode)
        q = subprocess.run([str(prog), "-f", "-c", str(conf), "--inetd"], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=60)
        assert q.returncode == 77 and want in q.stderr, (prog.name, q.returncode, q.stderr)
