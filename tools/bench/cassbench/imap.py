"""cassbench.imap - cassmail-imapd against Dovecot's imap on the same messages (tools/bench/run imap).

One node, RF 1, CL ONE. Two mailboxes are filled through cassmail-smtpd (the parts layout,
CassMail's default; no outbox copy): LIST, --imap-messages messages of 1-6 KB (a quarter of them
multipart/alternative, some with Cc and In-Reply-To), and BODIES, --imap-bodies messages of
20-400 KB. The stored octets are read back through cassmail-pop3d and written, octet for octet,
into one Maildir per mailbox for a private Dovecot (imap only, passwd-file, mail as nobody).

Two operations, each in a fresh session (LOGIN, SELECT INBOX, the FETCH, LOGOUT) by one client:

    envelope   FETCH 1:* (FLAGS ENVELOPE) on LIST
    bodies     FETCH 1:* BODY.PEEK[] on BODIES

Each server gets one warm-up round of both (Dovecot builds its index and cache then; cassmail
seals the mailbox and writes MessageMeta of messages that lack it), then --imap-rounds measured
rounds. Per operation: wall seconds, the server's CPU seconds (the listener's and its session
children's, reaped or not: /proc, as for POP3), Cassandra's CPU seconds and the client's. The
client checks every answer: the message count, and for bodies the octets against the Maildir.

Results: docs/bench/imap.csv, one row per (system, operation, round), and a row per operation
with system "ratio": cassmail's rate (operations per wall second) over Dovecot's, and the CPU
seconds (server + Cassandra) of cassmail over Dovecot's, from the means of the measured rounds.
"""
import csv
import poplib
import random
import re
import resource
import shutil
import smtplib
import socket
import statistics
import subprocess
import threading
import time

from .common import BUILD, OUT, WORK, log, node, sh, stop_pid
from .ring import Ring, proc_children, proc_cpu
from .servers import Smtpd, cassmail_start, dovecot_start, make_schema, pop3d_start, write_conf

FIELDS = ["experiment", "system", "operation", "round", "messages", "octets", "seconds", "ops_per_s",
          "cpu_server_s", "cpu_cassandra_s", "cpu_client_s", "started"]
PASSWORD_ITERATIONS = 1000


# ---- the messages ---------------------------------------------------------------------------

WORDS = ("meeting report budget review draft plan update notes invoice schedule release build "
         "question answer lunch travel project status weekly summary design test result").split()
NAMES = ["Alice Martin", "Bob Chen", "Carol Diaz", "Dave Olsen", "Erin Kowalski", "Frank Moreau",
         "Grace Lee", "Heidi Novak", "Ivan Petrov", "Judy Haas"]


def list_message(rnd, n):
    who = rnd.choice(NAMES)
    addr = who.split()[0].lower() + "@" + rnd.choice(["one.example", "two.example", "three.example"])
    subject = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(2, 7))).capitalize()
    head = [f"From: {who} <{addr}>", "To: Bench User <bench@example.com>",
            f"Subject: {'Re: ' if n % 5 == 0 else ''}{subject} #{n}",
            f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime(1700000000 + 600 * n))}",
            f"Message-ID: <list{n}.{rnd.randrange(1 << 30)}@bench.example>"]
    if n % 3 == 0:
        head.append(f"Cc: {rnd.choice(NAMES)} <cc{n % 7}@example.net>, other{n % 11}@example.org")
    if n % 5 == 0:
        head.append(f"In-Reply-To: <list{n - 1}@bench.example>")
    text = "\r\n".join(" ".join(rnd.choice(WORDS) for _ in range(12)) for _ in range(rnd.randint(10, 80)))
    if n % 4 == 0:
        b = f"b{n}x"
        head += ["MIME-Version: 1.0", f'Content-Type: multipart/alternative; boundary="{b}"']
        body = (f"--{b}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n{text}\r\n"
                f"--{b}\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n<p>{text}</p>\r\n--{b}--\r\n")
    else:
        head.append("Content-Type: text/plain; charset=us-ascii")
        body = text + "\r\n"
    return ("\r\n".join(head) + "\r\n\r\n" + body).encode()


def body_message(rnd, n):
    size = rnd.randint(20 * 1024, 400 * 1024)
    raw = rnd.randbytes(size * 3 // 4)
    import base64
    data = base64.encodebytes(raw).replace(b"\n", b"\r\n")
    return (f"From: Bob Chen <bob@two.example>\r\nTo: bench@example.com\r\nSubject: attachment {n}\r\n"
            f"Message-ID: <body{n}@bench.example>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n").encode() + data


def fill(port, user, make, count, seed, conns=4):
    """COUNT messages MAKE(rnd, n) to USER through smtpd at PORT, CONNS connections at once."""
    errors = []

    def worker(k):
        rnd = random.Random(seed * 100 + k)
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=300) as s:
                for n in range(k, count, conns):
                    s.sendmail("sender@remote.example", [f"{user}@example.com"], make(rnd, n))
        except Exception as e:   # noqa: BLE001 - reported below
            errors.append(repr(e))
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"filling {user}: {errors}")


def copy_to_maildir(pop_port, user, password, folder):
    """Every message of USER's inbox, as cassmail-pop3d serves it, into the Maildir FOLDER;
    (messages, octets)."""
    for s in ("cur", "new", "tmp"):
        (folder / s).mkdir(parents=True, exist_ok=True)
    p = poplib.POP3("127.0.0.1", pop_port, timeout=300)
    p.user(user)
    p.pass_(password)
    n, total = p.stat()
    octets = 0
    for k in range(1, n + 1):
        data = b"".join(line + b"\r\n" for line in p.retr(k)[1])
        octets += len(data)
        (folder / "cur" / f"{1700000000 + k}.M{k}P1.bench,S={len(data)}:2,").write_bytes(data)
    p.quit()
    return n, octets


# ---- the servers ----------------------------------------------------------------------------

def imapd_start(conf):
    """cassmail-imapd on CONF at a free port, its log in WORK/imapd.log; (Popen, port)"""
    return cassmail_start("cassmail-imapd", conf, "imapd.log")


# ---- the client -----------------------------------------------------------------------------

class Client:
    """A minimal IMAP client: lines with their literals, counted and kept only when asked."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=600)
        self.buf = bytearray()
        self.n = 0
        self.line()

    def fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise EOFError("server closed the connection")
        self.buf += chunk

    def line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            self.fill()

    def take(self, n):
        while len(self.buf) < n:
            self.fill()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def cmd(self, text, keep_literals=False):
        """Send TEXT; ([response lines], [literals]) up to the tagged reply, which must be OK."""
        self.n += 1
        tag = b"b%d" % self.n
        self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        lines, literals = [], []
        while True:
            line = self.line()
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError(f"{text}: {line!r}")
                return lines, literals
            first = line
            while True:
                m = re.search(rb"\{(\d+)\}$", line)
                if not m:
                    break
                data = self.take(int(m.group(1)))
                if keep_literals:
                    literals.append(data)
                line = self.line()
            lines.append(first)

    def close(self):
        self.sock.close()


def session(port, user, password, fetch, keep_literals=False):
    c = Client(port)
    c.cmd(f'LOGIN {user} "{password}"')
    c.cmd("SELECT INBOX")
    lines, literals = c.cmd(fetch, keep_literals)
    c.cmd("LOGOUT")
    c.close()
    return lines, literals


# ---- the experiment -------------------------------------------------------------------------

def append(row):
    path = OUT / "imap.csv"
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        if new:
            w.writeheader()
        w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})


def imap(args):
    """the same messages behind cassmail-imapd (from Cassandra) and Dovecot (from Maildir)"""
    started = time.strftime("%H:%M:%S")
    (OUT / "imap.csv").unlink(missing_ok=True)
    have_imapd = (BUILD / "cassmail-imapd").exists()
    if not have_imapd:
        log("build/cassmail-imapd missing: Dovecot alone is measured")
    ring = Ring(1)
    procs = []
    dpid = None
    try:
        conf = make_schema(ring, 1, "ONE")
        users = {"envelope": "benchlist", "bodies": "benchbodies"}
        for u in users.values():
            sh(BUILD / "cassmail-admin", "-c", conf, "useradd", u, stdout=subprocess.DEVNULL)
            sh(BUILD / "cassmail-admin", "-c", conf, "passwd", "--iterations", str(PASSWORD_ITERATIONS),
               u, input=f"pw-{u}\n", text=True, stdout=subprocess.DEVNULL)
        smtpd = Smtpd(ring, 1, 1, "ONE", "imap-fill", inline_max=65536, outbox_copy="never")
        t0 = time.time()
        log(f"filling: {args.imap_messages} messages of 1-6 KB and {args.imap_bodies} of 20-400 KB "
            "through cassmail-smtpd")
        fill(smtpd.port, users["envelope"], list_message, args.imap_messages, 1)
        fill(smtpd.port, users["bodies"], body_message, args.imap_bodies, 2)
        smtpd.stop()
        log(f"  filled in {time.time() - t0:.0f} s")
        pconf = write_conf(WORK / "imap-pop3d.conf", [node(1)], 1, "ONE", inline_max=65536)
        pop, pport = pop3d_start(pconf)
        procs.append((pop, "cassmail-pop3d"))
        maildirs = WORK / "dovecot-imap" / "mail"
        shutil.rmtree(maildirs, ignore_errors=True)
        expect = {}
        for op, u in users.items():
            expect[op] = copy_to_maildir(pport, u, f"pw-{u}", maildirs / u)
        stop_pid(pop.pid, "cassmail-pop3d")
        sh("chown", "-R", "nobody:nogroup", maildirs)
        log(f"copied into Maildirs: {expect}")
        passwd = WORK / "dovecot-imap" / "passwd"
        passwd.write_text("".join(f"{u}:pw-{u}\n" for u in users.values()))
        servers = {}
        if have_imapd:
            iconf = write_conf(WORK / "imapd.conf", [node(1)], 1, "ONE", inline_max=65536)
            iproc, iport = imapd_start(iconf)
            procs.append((iproc, "cassmail-imapd"))
            servers["cassmail-imapd"] = (iport, iproc.pid)
        dport, dpid = dovecot_start("imap", maildirs, passwd, "dovecot-imap")
        servers["dovecot"] = (dport, dpid)
        fetches = {"envelope": "FETCH 1:* (FLAGS ENVELOPE)", "bodies": "FETCH 1:* BODY.PEEK[]"}
        means = {}
        for system, (port, pid) in servers.items():
            for rnd in range(0, args.imap_rounds + 1):
                for op, u in users.items():
                    kids = proc_children(pid)
                    cpu0 = proc_cpu(pid) + sum(proc_cpu(k) for k in kids)
                    cass0 = ring.cpu()
                    ru0 = resource.getrusage(resource.RUSAGE_SELF)
                    t0 = time.time()
                    lines, literals = session(port, u, f"pw-{u}", fetches[op], keep_literals=(op == "bodies"))
                    secs = time.time() - t0
                    ru = resource.getrusage(resource.RUSAGE_SELF)
                    time.sleep(0.3)   # the session child exits and is reaped
                    cpu = proc_cpu(pid) + sum(proc_cpu(k) for k in proc_children(pid)) - cpu0
                    cass = ring.cpu() - cass0
                    client = ru.ru_utime + ru.ru_stime - ru0.ru_utime - ru0.ru_stime
                    n = sum(1 for l in lines if re.match(rb"\* \d+ FETCH ", l))
                    octets = sum(len(x) for x in literals) if op == "bodies" else 0
                    want_n, want_octets = expect[op]
                    if n != want_n or (op == "bodies" and octets != want_octets):
                        raise RuntimeError(f"{system} {op}: {n} messages, {octets} octets; "
                                           f"expected {want_n}, {want_octets}")
                    label = "warm-up" if rnd == 0 else rnd
                    log(f"  {system} {op} round {label}: {secs:.2f} s, server {cpu:.2f} CPU-s, "
                        f"Cassandra {cass:.2f} CPU-s, client {client:.2f} CPU-s")
                    append(dict(experiment="imap", system=system, operation=op, round=label, messages=n,
                                octets=octets or "", seconds=secs, ops_per_s=1 / secs, cpu_server_s=cpu,
                                cpu_cassandra_s=cass if system != "dovecot" else 0.0,
                                cpu_client_s=client, started=started))
                    if rnd:
                        means.setdefault((system, op), []).append((secs, cpu + (cass if system != "dovecot" else 0)))
        if have_imapd:
            for op in users:
                c = means[("cassmail-imapd", op)]
                d = means[("dovecot", op)]
                cs, ds = statistics.mean(x for x, _ in c), statistics.mean(x for x, _ in d)
                cc, dc = statistics.mean(y for _, y in c), statistics.mean(y for _, y in d)
                cm, dm = statistics.median(x for x, _ in c), statistics.median(x for x, _ in d)
                log(f"  => {op}: cassmail-imapd {cs:.2f} s vs Dovecot {ds:.2f} s (means): rate ratio {ds / cs:.2f} "
                    f"(medians {cm:.2f} and {dm:.2f} s: {dm / cm:.2f}); CPU {cc:.2f} vs {dc:.2f} CPU-s")
                append(dict(experiment="imap", system="ratio", operation=op, round="mean",
                            messages=expect[op][0], octets=expect[op][1] if op == "bodies" else "",
                            seconds=cs / ds, ops_per_s=ds / cs, cpu_server_s=cc / dc, started=started))
    finally:
        for proc, name in procs:
            stop_pid(proc.pid, name)
        if dpid:
            stop_pid(dpid, "dovecot")
        ring.stop()
        shutil.rmtree(WORK / "dovecot-imap" / "mail", ignore_errors=True)
