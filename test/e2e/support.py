"""Helpers shared by the end-to-end test files (fixtures live in conftest.py).

  - wait_for: poll a predicate until it is true or a deadline passes.
  - children, free_port: the processes a daemon forked (from /proc); a free TCP port of 127.0.0.1.
  - Daemon: cassmail-smtpd, cassmail-pop3d or cassmail-imapd in the foreground (-f) on 127.0.0.1, its output in
    a log file, with what the tests read from that log ("listening on", "session end k=v ...").
  - Raw: a raw client socket, exact bytes out and CRLF lines in, SMTP replies read whole.
  - What a stored message looks like: our three-line Received: field (strip_received), a TimeUUID
    (UUID, queued_id), CRLF text (body); retr_bytes and postal_messages read what POP3 and Postal
    saw as sent octets.
  - one_node_mail: the 1-node ring with the schema of a test's configuration, and its Mail view.
  - Where rows live on the 3-node ring at RF 2 (replicas, names_where), as cassmail-tokens predicts.

A test file keeps what is specific to it, as a subclass where it needs more of these.
"""
import functools
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

from conftest import BUILD, Mail, run, unique

SMTPD = BUILD / "cassmail-smtpd"
POP3D = BUILD / "cassmail-pop3d"
IMAPD = BUILD / "cassmail-imapd"
TOKENS = str(BUILD / "cassmail-tokens")
# The [smtp] hostname of the test configurations; our Received: fields name it.
HOST = "mx.example.com"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def wait_for(pred, timeout=30.0, what="condition", step=0.05):
    """PRED's first true value, polling every STEP seconds until TIMEOUT seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(step)


def children(pid):
    """Pids of PID's child processes (a daemon's sessions)."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(p.name))
    return out


def free_port():
    """A TCP port of 127.0.0.1 that nothing listens on at the moment."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """PROGRAM (cassmail-smtpd, cassmail-pop3d or cassmail-imapd) -f -c CONF listening on 127.0.0.1:PORT, then
    ARGS; its stdout and stderr in the file LOG_PATH. PORT 0 (the default): a free port the server
    picks, read back from its "listening on" line, like any port, into .port.

    Subclasses may change start_timeout (seconds to wait for the "listening on" line) and
    stop_timeout (seconds after SIGTERM before SIGKILL)."""

    start_timeout = 30.0
    stop_timeout = 20.0

    def __init__(self, program, conf, log_path, port=0, args=()):
        self.program = Path(program)
        self.log_path = Path(log_path)
        self.log_file = open(self.log_path, "wb")
        argv = [str(program), "-f", "-c", str(conf), "-l", f"127.0.0.1:{port}", *map(str, args)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log_file,
                                     stderr=subprocess.STDOUT)

        # Ready when it says so (a probe connection would count as a session of its own).
        def listening():
            assert self.proc.poll() is None, f"{self.program.name} exited:\n{self.log()}"
            return re.search(r"listening on 127\.0\.0\.1:(\d+)", self.log())
        m = wait_for(listening, timeout=self.start_timeout, what=f"{self.program.name} listening")
        self.port = int(m.group(1))

    def log(self):
        return self.log_path.read_text(errors="replace")

    def session_ends(self, user=None):
        """The fields of every "session end k=v ..." log line so far (of USER's sessions), as
        dicts."""
        ends = [dict(kv.split("=", 1) for kv in m.group(1).split())
                for m in re.finditer(r"session end (.*)", self.log())]
        return [e for e in ends if user is None or e["user"] == user]

    def session_end_count(self):
        """How many "session end" lines were logged so far (whatever their fields hold)."""
        return len(re.findall(r"session end ", self.log()))

    def wait_session_ends(self, n, user=None, timeout=15.0):
        """The first N session-end records (of USER), waiting for the sessions to finish."""
        return wait_for(lambda: len(self.session_ends(user)) >= n and self.session_ends(user)[:n],
                        timeout=timeout, what=f"{n} {self.program.name} session ends")

    def children(self):
        return children(self.proc.pid)

    def stop(self):
        """SIGTERM; the exit status (killed after stop_timeout seconds if it does not stop)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()
        return self.proc.returncode


class Raw:
    """A raw client socket to 127.0.0.1:PORT: exact bytes out, CRLF-ended lines in. With
    GREETING (the default) the server's first reply is read at once, into .greeting."""

    def __init__(self, port, timeout=30, greeting=True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        if greeting:
            self.greeting = self.reply()

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def octets(self):
        """The next line's octets, without its CRLF; EOFError once the server has closed."""
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"connection closed; unread: {self.buf!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def line(self):
        return self.octets().decode("utf-8", "replace")

    def reply(self):
        """One SMTP reply (its lines joined with \\n), or one POP3 status line."""
        lines = [self.line()]
        while lines[-1][3:4] == "-":
            lines.append(self.line())
        return "\n".join(lines)

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def closed(self):
        """Whether the server closed the connection (EOF with nothing more to read)."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()


def body(*lines):
    """LINES (octets) as CRLF-ended text."""
    return b"".join(l + b"\r\n" for l in lines)


# A message id as CassMail mints it: a version-1 TimeUUID, variant 10, in canonical lower case.
MSGID_RE = rb"[0-9a-f]{8}-[0-9a-f]{4}-1[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


def received_id(stored):
    """The message id our Received: field in STORED names."""
    m = re.search(rb"\r\n\tby \S+ \(CassMail\) with \S+ id (" + MSGID_RE + rb");\r\n", stored)
    assert m, stored[:300]
    return m.group(1).decode()


def strip_received(stored, exact=True):
    """The client's text inside stored (or retrieved) message STORED: it must start with our
    three-line Received: field; the rest is returned.

    EXACT: each of the three lines is checked whole — "from HELO (PEER)", "by HOST (CassMail)
    with ESMTP id MSGID;" (or SMTP, after HELO; MSGID is the message's TimeUUID, the id of
    "queued as") and the date. exact=False: only that the field
    is ours — "Received: from " and "by HOST (CassMail) with " whatever follows (ESMTPS, ESMTPA
    and ESMTPSA after STARTTLS or AUTH, RFC 3848)."""
    parts = stored.split(b"\r\n", 3)
    if not exact:
        assert len(parts) == 4 and parts[0].startswith(b"Received: from "), stored[:300]
        assert parts[1].startswith(b"\tby " + HOST.encode() + b" (CassMail) with "), parts[1]
        return parts[3]
    assert len(parts) == 4, stored[:300]
    assert re.fullmatch(rb"Received: from \S+ \([^()\r\n]+\)", parts[0]), parts[0]
    assert re.fullmatch(rb"\tby " + HOST.encode() + rb" \(CassMail\) with E?SMTP id " + MSGID_RE + rb";",
                        parts[1]), parts[1]
    assert re.fullmatch(rb"\t(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}",
                        parts[2]), parts[2]
    return parts[3]


def queued_id(reply_text):
    """The TimeUUID of a "250 2.0.0 Ok: queued as ID" reply."""
    m = re.search(rf"Ok: queued as ({UUID})", reply_text)
    assert m, reply_text
    return m.group(1)


def retr_bytes(p, n):
    """RETR N through poplib, back to octets (poplib splits lines and removes the stuffing)."""
    _, lines, _ = p.retr(n)
    return b"".join(line + b"\r\n" for line in lines)


def postal_messages(debug_files):
    """Every message in Postal's I/O logs (-z): [(recipient, text as sent, unstuffed, server reply)]."""
    out = []
    for f in debug_files:
        lines = f.read_bytes().split(b"\r\n")
        i = 0
        rcpt = None
        while i < len(lines):
            line = lines[i]
            m = re.match(rb"RCPT TO: ?<([^@>]+)@", line)
            if m:
                rcpt = m.group(1).decode()
            if line.startswith(b"354 "):
                j = i + 1
                text = []
                while j < len(lines) and lines[j] != b".":
                    text.append(lines[j][1:] if lines[j].startswith(b".") else lines[j])
                    j += 1
                reply = lines[j + 1].decode() if j + 1 < len(lines) else ""
                out.append((rcpt, b"".join(t + b"\r\n" for t in text), reply))
                i = j
            i += 1
    return out


def make_certificate(folder, name, extra_names=()):
    """A self-signed certificate for mx.example.com and 127.0.0.1 (clients connect to the
    address) in FOLDER/NAME-cert.pem, its key in NAME-key.pem, mode 0600: root's alone when the
    tests run as root, so only a server that reads it before dropping privileges can use it.
    EXTRA_NAMES are more subject-alt-names, e.g. "DNS:127.0.0.1" for clients that compare the
    address with DNS names only (mbsync)."""
    cert, key = folder / f"{name}-cert.pem", folder / f"{name}-key.pem"
    names = ",".join([f"DNS:{HOST}", "IP:127.0.0.1", *extra_names])
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={HOST}",
                    "-addext", f"subjectAltName={names}"],
                   check=True, capture_output=True, timeout=60)
    key.chmod(0o600)
    return cert, key


def one_node_mail(ring, conf):
    """A 1-node ring with the Mail schema of CONF (a cassmail.conf), and a Mail view of it."""
    ring.ensure(1)
    ring.schema(conf)
    return Mail(conf)


@functools.lru_cache(maxsize=None)
def ring_spec():
    """The 3-node ring's tokens, as tools/cluster gives them to the nodes."""
    return ",".join(run([TOKENS, "3"]).stdout.split())


def replicas(key):
    """The nodes (numbers) that hold row KEY on the 3-node ring at RF 2, as cassmail-tokens
    predicts (checked against Cassandra itself in test_tokens.py and test_cluster.py)."""
    out = run([TOKENS, "--key", key, "--ring", ring_spec(), "--rf", "2"]).stdout
    return {int(n) for n in re.findall(r"^(?:owner|replica) node (\d+)", out, re.M)}


def names_where(rows, n, prefix):
    """N fresh user names whose rows on the 3-node ring at RF 2 are where ROWS says: {key suffix:
    set of nodes}, e.g. {"": {2, 3}, ":inbox": {2, 3}} for a Users row and an inbox row on nodes
    2 and 3 only."""
    found = []
    for _ in range(5000):
        name = unique(prefix)
        if all(replicas(name + suffix) == nodes for suffix, nodes in rows.items()):
            found.append(name)
            if len(found) == n:
                return found
    raise AssertionError(f"no {n} user names with rows {rows}")
