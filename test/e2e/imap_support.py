"""IMAP servers for the end-to-end tests, behind one interface (test_imap.py, test_imap_uids.py).

The tests talk to whatever IMAP server a fixture gives them; what they need of it is here:

  - Cassmail: a 1-node ring (the session's `ring`), cassmail-smtpd, cassmail-imapd and
    cassmail-pop3d with STARTTLS (the tests' self-signed certificate); mail arrives through SMTP
    (smtplib), stored octets come from cassmail-admin.
  - Dovecot: a private Dovecot (Debian's dovecot-imapd and dovecot-pop3d; its own configuration,
    Maildirs and passwd-file in a folder of its own; nothing under /etc/dovecot used), IMAP and
    POP3 with STARTTLS on free ports, mail as nobody; mail "arrives" as files in new/. The
    development reference: CASSMAIL_IMAP_TARGET=dovecot runs the tests against it.

`make test` runs them against cassmail-imapd (the default). Both targets have the mailboxes
INBOX and "outbox" (\\Sent, RFC 6154) and users with passwords; user(), deliver(), stored()
and imap()/pop3() are all a test uses.

Client helpers: Imap (imaplib.IMAP4 with the few things imaplib lacks: raw lines, IDLE, waiting
for mail that the server shows after its settle delay) and RawImap (a socket, exact bytes).
"""
import imaplib
import os
import poplib
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

from conftest import BUILD, unique, write_conf
from support import POP3D, SMTPD, Daemon, free_port, make_certificate, one_node_mail, wait_for

IMAPD = BUILD / "cassmail-imapd"
TARGET = os.environ.get("CASSMAIL_IMAP_TARGET", "cassmail")
PASSWORD = "Imap pass 18"
# How old a delivery must be before cassmail-imapd gives it a UID ([imap] settle_ms): short in
# these tests, so that new mail shows quickly; test_imap_uids.py sets its own.
SETTLE_MS = 500


# mbsync compares the address it connects to with the certificate's DNS names only
MBSYNC_NAMES = ("DNS:127.0.0.1",)


def client_context(cert):
    """TLS for our clients: the server must present CERT (we connect to 127.0.0.1; the name on
    the certificate is mx.example.com, so it is not checked)."""
    ctx = ssl.create_default_context(cafile=str(cert))
    ctx.check_hostname = False
    return ctx


def message_id(text):
    m = re.search(rb"^Message-ID: *(<[^>\r\n]+>)\r?$", text, re.M | re.I)
    return m.group(1).decode() if m else None


class Target:
    """What every IMAP server under test offers the tests."""
    name = "?"
    imap_port = pop3_port = None
    cert = None

    def imap(self, tls=False, login=True, user=None, password=PASSWORD, timeout=60):
        c = Imap("127.0.0.1", self.imap_port, timeout=timeout)
        if tls:
            c.starttls(client_context(self.cert))
        if login and user:
            c.login(user, password)
        return c

    def pop3(self, user, tls=False, password=PASSWORD):
        p = poplib.POP3("127.0.0.1", self.pop3_port, timeout=60)
        if tls:
            p.stls(client_context(self.cert))
        p.user(user)
        p.pass_(password)
        return p

    def session_ends(self, user=None):
        """cassmail-imapd's "session end k=v" records (empty for other servers)."""
        return []


class Cassmail(Target):
    name = "cassmail"

    def __init__(self, ring, folder, imap=None, cassandra=None):
        self.dir = Path(folder)
        self.cert, self.key = make_certificate(self.dir, "imap", MBSYNC_NAMES)
        imap_settings = {"settle_ms": SETTLE_MS, **(imap or {})}
        self.conf = write_conf(self.dir / "cassmail.conf", tls={"certificate": self.cert, "key": self.key},
                               imap=imap_settings, pop3={"login_delay_ms": 100},
                               # logins are many here: the least hash cost (the servers' floor too)
                               auth={"password_iterations": 1000},
                               **({"cassandra": cassandra} if cassandra else {}))
        self.mail = one_node_mail(ring, self.conf)
        assert IMAPD.exists(), f"{IMAPD} not built (make all)"
        self.daemons = []
        try:
            self.smtpd = self._start(SMTPD, "smtpd")
            self.imapd = self._start(IMAPD, "imapd")
            self.pop3d = self._start(POP3D, "pop3d")
        except BaseException:
            self.stop()
            raise
        self.smtp_port, self.imap_port, self.pop3_port = self.smtpd.port, self.imapd.port, self.pop3d.port

    def variant(self, name, **sections):
        """Another cassmail-imapd on this ring with SECTIONS changed in its configuration (e.g.
        imap={"allow_plaintext_auth": "false"}); stopped with the others."""
        text = self.conf.read_text()
        conf = self.dir / f"{name}.conf"
        conf.write_text(text)
        for section, values in sections.items():
            for k, v in values.items():
                text = conf.read_text()
                if f"[{section}]\n" not in text:
                    text += f"\n[{section}]\n"
                text = text.replace(f"[{section}]\n", f"[{section}]\n{k}={v}\n", 1)
                conf.write_text(text)
        d = Daemon(IMAPD, conf, self.dir / f"{name}.log")
        self.daemons.append(d)
        return d

    def _start(self, program, name):
        d = Daemon(program, self.conf, self.dir / f"{name}.log")
        self.daemons.append(d)
        return d

    def stop(self):
        for d in reversed(self.daemons):
            d.stop()

    def user(self, password=PASSWORD, prefix="im"):
        return self.mail.useradd(unique(prefix), password=password)

    def deliver(self, user, messages, sender="someone@example.org"):
        """MESSAGES (CRLF octets) through cassmail-smtpd to USER's inbox; the stored octets
        of each, in the same order (our Received: field in front of what was sent)."""
        before = {i for i, _ in self.mail.list(user)}
        with smtplib.SMTP("127.0.0.1", self.smtp_port, local_hostname="client.example", timeout=120) as s:
            for m in messages:
                assert not s.sendmail(sender, [f"{user}@example.com"], m)
        new = [self.mail.fetch(user, "inbox", i) for i, _ in self.mail.list(user) if i not in before]
        out = []
        for m in messages:
            match = [s for s in new if s.endswith(m)]
            assert len(match) == 1, "a delivered message is not stored once"
            out.append(match[0])
        return out

    def session_ends(self, user=None):
        return self.imapd.session_ends(user)


class Dovecot(Target):
    """Dovecot's imap and pop3 behind its own master, as root with mail as nobody."""
    name = "dovecot"

    def __init__(self, folder=None):
        self.dir = Path(tempfile.mkdtemp(prefix="cassmail-imap-dovecot-"))
        self.dir.chmod(0o755)
        self.cert, self.key = make_certificate(self.dir, "imap", MBSYNC_NAMES)
        self.mail = self.dir / "mail"
        self.mail.mkdir()
        self.passwd = self.dir / "passwd"
        # Dovecot reads its passwd-file again only when the file's mtime changes, a second at a
        # time: users are made in advance, and user() hands them out.
        self.users = [unique("dv") for _ in range(self.POOL)]
        self.passwds = {u: PASSWORD for u in self.users}
        self.passwd.write_text("".join(f"{u}:{PASSWORD}\n" for u in self.users))
        for u in self.users:
            for sub in ("cur", "new", "tmp"):
                (self.mail / u / sub).mkdir(parents=True)
        self.imap_port, self.pop3_port = free_port(), free_port()
        self.seq = 0
        (self.dir / "run").mkdir()
        # each protocol on its port of 127.0.0.1, its implicit-TLS listener off
        listeners = "".join(f"""service {proto}-login {{
  inet_listener {proto} {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener {proto}s {{
    port = 0
  }}
}}
""" for proto, port in (("imap", self.imap_port), ("pop3", self.pop3_port)))
        (self.dir / "dovecot.conf").write_text(f"""\
# A private test instance: nothing under /etc/dovecot is used or changed.
base_dir = {self.dir}/run
state_dir = {self.dir}/run
log_path = {self.dir}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = yes
ssl_cert = <{self.cert}
ssl_key = <{self.key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = 100
mail_location = maildir:{self.mail}/%n
pop3_uidl_format = %08Xu%08Xv
mail_max_userip_connections = 200
namespace inbox {{
  inbox = yes
  separator = /
  mailbox outbox {{
    special_use = \\Sent
    auto = subscribe
  }}
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {self.passwd}
}}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home={self.mail}/%n
}}
{listeners}""")
        subprocess.run(["chown", "-R", "nobody:nogroup", str(self.mail)], check=True)
        subprocess.run(["dovecot", "-c", str(self.dir / "dovecot.conf")], check=True, timeout=60)
        pidfile = self.dir / "run" / "master.pid"
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="dovecot's pid file")
        self.pid = int(pidfile.read_text().split()[0])
        for port in (self.imap_port, self.pop3_port):
            wait_for(lambda: _answers(port), what="dovecot listening")

    def stop(self):
        subprocess.run(["doveadm", "-c", str(self.dir / "dovecot.conf"), "stop"], capture_output=True,
                       timeout=60)
        try:
            wait_for(lambda: not Path(f"/proc/{self.pid}").exists(), timeout=20)
        except AssertionError:
            os.kill(self.pid, 9)
        shutil.rmtree(self.dir, ignore_errors=True)

    POOL = 300

    def user(self, password=PASSWORD, prefix="im"):
        assert password == PASSWORD, "Dovecot's users all have PASSWORD"
        return self.users.pop()

    def deliver(self, user, messages, sender=None):
        """MESSAGES as files in USER's new/, in order; stored as given."""
        for m in messages:
            self.seq += 1
            tmp = self.mail / user / "tmp" / f"{int(time.time())}.M{self.seq}P{os.getpid()}.test"
            tmp.write_bytes(m)
            os.chown(tmp, 65534, 65534)
            tmp.rename(self.mail / user / "new" / f"{int(time.time())}.M{self.seq:08d}P{os.getpid()}.test")
        return list(messages)


def _answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def start_target(ring, folder, **kw):
    """The IMAP server of CASSMAIL_IMAP_TARGET (cassmail-imapd unless it says dovecot)."""
    if TARGET == "dovecot":
        return Dovecot(folder)
    assert TARGET == "cassmail", f"CASSMAIL_IMAP_TARGET={TARGET}: cassmail or dovecot"
    return Cassmail(ring, folder, **kw)


# ---- clients ------------------------------------------------------------------------------------

class Imap(imaplib.IMAP4):
    """imaplib.IMAP4 with raw commands (tagged, responses read exactly) and IDLE."""

    def _append_untagged(self, typ, dat):
        # what imaplib's own commands hear counts too
        if typ == "EXISTS" and dat is not None:
            self.exists = int(dat)
        elif typ == "EXPUNGE":
            self.exists = getattr(self, "exists", 1) - 1
        super()._append_untagged(typ, dat)

    def raw(self, text, timeout=30):
        """Send TEXT (a command without tag) and read until its tagged reply: (untagged lines
        as octets, the tagged line). Literals in the server's answer are kept inside the line
        they belong to."""
        tag = self._new_tag()
        self.send(tag + b" " + (text.encode() if isinstance(text, str) else text) + b"\r\n")
        return self.read_until(tag, timeout)

    def read_until(self, tag, timeout=30):
        self.sock.settimeout(timeout)
        lines = []
        try:
            while True:
                line = self.read_response_line()
                if line.startswith(tag + b" "):
                    return lines, line
                lines.append(line)
                m = re.match(rb"\* (\d+) (EXISTS|EXPUNGE)$", line)
                if m and m.group(2) == b"EXISTS":
                    self.exists = int(m.group(1))
                elif m:
                    self.exists = getattr(self, "exists", 1) - 1
        finally:
            self.sock.settimeout(None)

    def read_response_line(self):
        """One response line with any literals it announces, joined in."""
        line = self._get_line()
        out = line
        while True:
            m = re.search(rb"\{(\d+)\}$", line)
            if not m:
                return out
            data = self.read(int(m.group(1)))
            line = self._get_line()
            out += b"\r\n" + data + line

    def wait_exists(self, n, timeout=30):
        """NOOP until the selected mailbox has at least N messages (the server shows new mail
        once it is older than its settle delay); the count."""
        def count():
            lines, tagged = self.raw("NOOP")
            assert b" OK" in tagged, tagged
            return getattr(self, "exists", 0) >= n and self.exists
        return wait_for(count, timeout=timeout, step=0.2, what=f"{n} messages")

    def select_count(self, box="INBOX", readonly=False):
        typ, data = self.select(_q(box), readonly)
        assert typ == "OK", data
        self.exists = int(data[0])
        return self.exists


def _q(box):
    """A mailbox name as an IMAP quoted string."""
    return '"' + box.replace("\\", "\\\\").replace('"', '\\"') + '"'


def fetch_map(lines):
    """{sequence number: {ITEM: value}} from raw FETCH lines (values as octets, literals
    resolved; parenthesised values kept as text)."""
    out = {}
    for line in lines:
        m = re.match(rb"\* (\d+) FETCH \(", line)
        if not m:
            continue
        items = out.setdefault(int(m.group(1)), {})
        i = m.end()
        while i < len(line) and line[i:i + 1] != b")":
            j = i
            depth = 0
            while True:   # the item name, including [section] and <partial>
                c = line[j:j + 1]
                if c == b"[":
                    depth += 1
                elif c == b"]":
                    depth -= 1
                elif c == b" " and depth == 0:
                    break
                j += 1
            name = line[i:j].upper().decode()
            value, i = parse_value(line, j + 1)
            items[name] = value
            if line[i:i + 1] == b" ":
                i += 1
    return out


def parse_value(line, i):
    """An IMAP value at LINE[i:]: literal or quoted string -> octets, NIL -> None, a
    parenthesised list -> its text as octets, an atom -> octets; (value, index after it)."""
    c = line[i:i + 1]
    if c == b"{":
        m = re.match(rb"\{(\d+)\}\r\n", line[i:])
        n = int(m.group(1))
        start = i + m.end()
        return line[start:start + n], start + n
    if c == b'"':
        j = i + 1
        buf = b""
        while line[j:j + 1] != b'"':
            if line[j:j + 1] == b"\\":
                j += 1
            buf += line[j:j + 1]
            j += 1
        return buf, j + 1
    if c == b"(":
        depth, j = 0, i
        while True:
            c = line[j:j + 1]
            if c == b'"':
                _, j = parse_value(line, j)
                continue
            if c == b"{":
                _, j = parse_value(line, j)
                continue
            if c == b"(":
                depth += 1
            elif c == b")":
                depth -= 1
                if depth == 0:
                    return line[i:j + 1], j + 1
            j += 1
    m = re.match(rb"[^ )]+", line[i:])
    v = m.group(0)
    return (None if v.upper() == b"NIL" else v), i + m.end()


class RawImap:
    """A raw IMAP connection: exact bytes out, CRLF lines in (b"" once closed)."""

    def __init__(self, port, timeout=30):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.greeting = self.line()

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def line(self):
        while b"\r\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                line, self.buf = self.buf, b""
                return line
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def until(self, tag):
        """Lines up to and including the one tagged TAG (or up to the end of the connection)."""
        lines = []
        while True:
            line = self.line()
            lines.append(line)
            if line == b"" or line.startswith(tag + b" "):
                return lines

    def cmd(self, tag, text):
        self.send(f"{tag} {text}\r\n")
        return self.until(tag.encode())

    def close(self):
        self.sock.close()
