"""The launcher files CassMail ships: config/xinetd.d/*, config/inetd.conf, config/systemd/*.

xinetd: the real xinetd (Debian's package) runs in the foreground with a private configuration
made from the shipped service files — only what must differ on a test machine is rewritten: an
unlisted service on a free high port of 127.0.0.1, the programs of this build, the test's
configuration file, and the user xinetd starts them as. The programs are copies in the test's own
world-readable folder, so that nobody can run them wherever the tree was cloned (root's home,
mode 700, keeps nobody out of build/). A message goes in through SMTP and comes
back out through IMAP and POP3, byte for byte, all through xinetd, against a real Cassandra node. When
the tests run as root this is done twice: xinetd starting the servers as root (they become the
[server] user conftest's write_conf sets, nobody, before reading a byte) and as nobody.

systemd: `systemd-analyze verify` checks the units (with ExecStart pointed at this build's
programs and man pointed at man/, since it checks Documentation=man: pages too), and the test
checks what makes them inetd-style: Accept=yes, a template service, the socket on standard input
and output, --inetd.

inetd.conf: each line has the seven fields inetd(8) expects and names the installed server.
"""
import imaplib
import os
import poplib
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import BUILD, TOP, unique, write_conf
from support import free_port, wait_for

CONFIG = TOP / "config"
SERVICES = {"smtp": ("cassmail-smtp", "cassmail-smtpd", 25), "pop3": ("cassmail-pop3", "cassmail-pop3d", 110),
            "imap": ("cassmail-imap", "cassmail-imapd", 143)}
# Message submission (RFC 6409) and submission over implicit TLS (RFC 8314): cassmail-smtpd with
# the options of its mode between --inetd and -c.
SUBMISSION = {"submission": ("cassmail-submission", "cassmail-smtpd", 587, ["--submission"]),
              "submissions": ("cassmail-submissions", "cassmail-smtpd", 465,
                              ["--submission", "--tls-on-connect"])}
# IMAP over implicit TLS (RFC 8314, port 993).
IMAPS = {"imaps": ("cassmail-imaps", "cassmail-imapd", 993, ["--tls-on-connect"])}
FLAGS = {proto: v[3] for proto, v in {**SUBMISSION, **IMAPS}.items()}
ALL = {**SERVICES, **{proto: v[:3] for proto, v in {**SUBMISSION, **IMAPS}.items()}}
PASSWORD = "launch pass 7"


def parse_xinetd(path):
    """(service name, [(attribute, operator, value)]) of the one service in an xinetd file."""
    text = Path(path).read_text()
    m = re.search(r"^service\s+(\S+)\s*\{(.*?)^\}", text, flags=re.M | re.S)
    assert m, f"{path}: no service block"
    attrs = []
    for line in m.group(2).splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        a = re.match(r"^(\w+)\s*(\+=|-=|=)\s*(.*)$", line)
        assert a, f"{path}: cannot parse {line!r}"
        attrs.append(a.groups())
    return m.group(1), attrs


def test_shipped_xinetd_services_start_the_servers_in_inetd_mode():
    for proto, (name, prog, port) in ALL.items():
        service, attrs = parse_xinetd(CONFIG / "xinetd.d" / name)
        d = {k: v for k, op, v in attrs if op == "="}
        assert service == proto and socket.getservbyname(service, "tcp") == port
        assert d["socket_type"] == "stream" and d["protocol"] == "tcp" and d["wait"] == "no"
        assert d["disable"] == "no"
        assert d["server"] == f"/usr/local/sbin/{prog}"
        assert d["server_args"].split()[:1 + len(FLAGS.get(proto, []))] == ["--inetd", *FLAGS.get(proto, [])]
        assert "-c /etc/cassmail/cassmail.conf" in d["server_args"]
        assert int(d["instances"]) > 0 and int(d["per_source"]) > 0


def xinetd_service(name, port, conf, user, bindir=BUILD):
    """The shipped service NAME rewritten for the test: unlisted, PORT on 127.0.0.1, the program
    in BINDIR (this build or a copy of it), CONF, and USER (None: no user/group lines, for a
    non-root xinetd)."""
    _, attrs = parse_xinetd(CONFIG / "xinetd.d" / name)
    prog = ALL[name.split("-")[1]][1]
    flags = " ".join(FLAGS.get(name.split("-")[1], []))
    replaced = {"server": str(Path(bindir) / prog), "server_args": f"--inetd {flags} -c {conf}"}
    if user:
        replaced["user"], replaced["group"] = user
    lines = []
    for k, op, v in attrs:
        if k in ("user", "group") and not user:
            continue
        lines.append(f"    {k} {op} {replaced.get(k, v)}")
    lines += ["    type = UNLISTED", f"    port = {port}", "    bind = 127.0.0.1"]
    return f"service test-{name}\n{{\n" + "\n".join(lines) + "\n}\n"


class Xinetd:
    """xinetd -dontfork with a private configuration; stopped (SIGTERM, then SIGKILL) by pid.
    The servers it starts are copies of this build's in FOLDER/bin (FOLDER must be readable by
    USER): a build/ under a private home is out of the reach of nobody."""

    def __init__(self, folder, conf, user, services=SERVICES):
        self.folder = Path(folder)
        bindir = self.folder / "bin"
        bindir.mkdir(mode=0o755)
        bindir.chmod(0o755)
        for proto in services:
            prog = ALL[proto][1]
            shutil.copy2(BUILD / prog, bindir / prog)
            (bindir / prog).chmod(0o755)
        self.ports = {proto: free_port() for proto in services}
        self.log_path = self.folder / "xinetd.log"
        self.services_log = self.folder / "services.log"
        text = ("defaults\n{\n"
                f"    log_type = FILE {self.services_log}\n"
                "    log_on_success = PID HOST EXIT\n"
                "    log_on_failure = HOST\n}\n")
        for proto in services:
            text += xinetd_service(ALL[proto][0], self.ports[proto], conf, user, bindir)
        self.conf = self.folder / "xinetd.conf"
        self.conf.write_text(text)
        self.proc = subprocess.Popen(["xinetd", "-dontfork", "-f", str(self.conf), "-filelog",
                                      str(self.log_path), "-pidfile", str(self.folder / "xinetd.pid")],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.folder / "xinetd.stderr", "wb"))

        def started():
            assert self.proc.poll() is None, f"xinetd exited {self.proc.returncode}:\n{self.log()}"
            return f"Started working: {len(services)} available services" in self.log()
        wait_for(started, what=f"xinetd to start its {len(services)} services")

    def log(self):
        out = ""
        for p in (self.log_path, self.services_log, self.folder / "xinetd.stderr"):
            if p.exists():
                out += p.read_text(errors="replace")
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def message(subject):
    """A message whose lines exercise dot-stuffing, CRLF throughout."""
    return (f"From: Launch Test <sender@example.org>\r\nTo: rcpt@example.com\r\n"
            f"Subject: {subject}\r\nMessage-ID: <{unique('m')}@example.org>\r\n\r\n"
            "first line\r\n.leading dot\r\n..two dots\r\n.\r\n\r\nlast line\r\n").encode()


USERS = [("root", "root"), ("nobody", "nogroup")] if os.geteuid() == 0 else [None]


@pytest.mark.parametrize("xinetd_user", USERS, ids=lambda u: f"as-{u[0]}" if u else "as-self")
def test_xinetd_delivers_over_smtp_and_serves_the_message_over_imap_and_pop3(mail, xinetd_user):
    deliver_through_xinetd(mail, xinetd_user)


@pytest.mark.skipif(os.geteuid() != 0, reason="xinetd can start the servers as nobody only as root")
def test_xinetd_as_nobody_serves_a_tree_cloned_into_a_private_home(mail, monkeypatch):
    """A tree cloned as root into root's home (mode 700, the default) keeps nobody out of its
    build/: xinetd starting the servers as nobody must still work there."""
    home = Path(tempfile.mkdtemp(prefix="cassmail-home-"))
    try:
        home.chmod(0o700)
        private = home / "cassmail" / "build"
        private.mkdir(parents=True)
        for _, prog, _ in SERVICES.values():
            shutil.copy2(BUILD / prog, private / prog)
        # nobody really cannot reach it
        p = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                            "test", "-x", str(private / "cassmail-smtpd")])
        assert p.returncode == 1
        monkeypatch.setattr(sys.modules[__name__], "BUILD", private)
        deliver_through_xinetd(mail, ("nobody", "nogroup"))
    finally:
        shutil.rmtree(home, ignore_errors=True)


def imap_fetch_first(m):
    """BODY.PEEK[] of the first message of INBOX through imaplib session M, or None while the
    mailbox is empty (a new delivery gets its UID after [imap] settle_ms)."""
    typ, data = m.select("INBOX", readonly=True)
    assert typ == "OK", data
    if int(data[0]) == 0:
        return None
    typ, data = m.fetch("1", "(BODY.PEEK[])")
    assert typ == "OK", data
    return data[0][1]


def deliver_through_xinetd(mail, xinetd_user):
    """A message in through SMTP and out through IMAP and POP3, all started by xinetd as
    XINETD_USER."""
    # A folder every user can read: the servers may run as nobody.
    folder = Path(tempfile.mkdtemp(prefix="cassmail-xinetd-"))
    try:
        folder.chmod(0o755)
        conf = write_conf(folder / "cassmail.conf", smtp={"domains": "example.com"})
        conf.chmod(0o644)
        user = mail.useradd(unique("x"), password=PASSWORD)
        sent = message(f"through xinetd as {xinetd_user[0] if xinetd_user else 'self'}")
        x = Xinetd(folder, conf, xinetd_user)
        try:
            with smtplib.SMTP("127.0.0.1", x.ports["smtp"], timeout=120) as s:
                code, banner = s.ehlo("client.example")
                assert code == 250, banner
                assert s.sendmail("sender@example.org", [f"{user}@example.com"], sent) == {}
            # IMAP first (it only reads): the message once it has a UID ([imap] settle_ms).
            with imaplib.IMAP4("127.0.0.1", x.ports["imap"], timeout=120) as m:
                assert m.welcome.startswith(b"* OK")
                m.login(user, PASSWORD)
                imap_got = wait_for(lambda: imap_fetch_first(m), what="the message over IMAP",
                                    timeout=60, step=0.5)
                m.logout()
            p = poplib.POP3("127.0.0.1", x.ports["pop3"], timeout=120)
            try:
                assert p.getwelcome().startswith(b"+OK")
                p.user(user)
                p.pass_(PASSWORD)
                count, _ = p.stat()
                assert count == 1
                _, lines, _ = p.retr(1)
                got = b"".join(line + b"\r\n" for line in lines)
                p.dele(1)
                p.quit()
            finally:
                p.close()
            # What came back is our Received: field (three lines) and then the client's octets.
            head = got.split(b"\r\n", 3)
            assert head[0].startswith(b"Received: from client.example (127.0.0.1)")
            assert head[1].startswith(b"\tby mx.example.com (CassMail) with ESMTP")
            assert head[3] == sent
            assert imap_got == got   # IMAP's BODY[] is the stored message, as POP3's RETR
            # The sessions really went through xinetd, and ended cleanly.
            wait_for(lambda: len(re.findall(r"EXIT: test-cassmail-\w+ status=0", x.log())) >= 3,
                     what="three sessions to end with status 0", timeout=60)
            log = x.log()
            assert re.search(r"START: test-cassmail-smtp pid=\d+ from=127\.0\.0\.1", log), log
            assert re.search(r"START: test-cassmail-pop3 pid=\d+ from=127\.0\.0\.1", log), log
            assert re.search(r"START: test-cassmail-imap pid=\d+ from=127\.0\.0\.1", log), log
            # DELE and QUIT removed it from Cassandra.
            assert mail.list(user) == []
        finally:
            x.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_xinetd_configuration_rejects_a_server_that_cannot_run():
    """The generated configuration is really what xinetd reads: a bad server path disables it."""
    folder = Path(tempfile.mkdtemp(prefix="cassmail-xinetd-"))
    proc = None
    try:
        text = xinetd_service("cassmail-smtp", free_port(), "/nonexistent.conf", None)
        text = text.replace(str(BUILD / "cassmail-smtpd"), str(folder / "missing-smtpd"))
        (folder / "xinetd.conf").write_text(text)
        log = folder / "xinetd.log"
        proc = subprocess.Popen(["xinetd", "-dontfork", "-f", str(folder / "xinetd.conf"),
                                 "-filelog", str(log)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        text = wait_for(lambda: log.exists() and "Started working" in log.read_text() and log.read_text(),
                        what="xinetd to start")
        assert "missing-smtpd is not executable" in text
        assert "Started working: 0 available services" in text
    finally:
        if proc and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


def test_inetd_conf_lines_have_seven_fields_and_name_the_installed_servers():
    lines = [l for l in (CONFIG / "inetd.conf").read_text().splitlines()
             if l.strip() and not l.lstrip().startswith("#")]
    seen = set()
    for line in lines:
        f = line.split()
        assert len(f) >= 7, line
        service, sock, proto, wait, user, server, argv0, *args = f
        assert service in ALL, line
        name, prog, port = ALL[service]
        assert socket.getservbyname(service, "tcp") == port
        assert (sock, proto, wait) == ("stream", "tcp", "nowait"), line
        assert re.fullmatch(r"[a-z_][a-z0-9_-]*(\.[a-z_][a-z0-9_-]*)?", user), line
        assert server == f"/usr/local/sbin/{prog}" and argv0 == prog, line
        assert args[:1 + len(FLAGS.get(service, []))] == ["--inetd", *FLAGS.get(service, [])], line
        assert "-c" in args, line
        seen.add(service)
    assert seen == set(ALL)


def systemd_units(tmp_path):
    """Copies of the units whose ExecStart names this build, and a man tree holding our pages."""
    units = tmp_path / "units"
    units.mkdir()
    for f in (CONFIG / "systemd").iterdir():
        text = f.read_text()
        for _, prog, _ in SERVICES.values():
            text = text.replace(f"/usr/local/sbin/{prog}", str(BUILD / prog))
        (units / f.name).write_text(text)
    man = tmp_path / "man"
    for page in (TOP / "man").iterdir():
        section = man / f"man{page.suffix[1:]}"
        section.mkdir(parents=True, exist_ok=True)
        shutil.copy(page, section / page.name)
    return units, man


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_units_pass_systemd_analyze_verify(tmp_path):
    units, man = systemd_units(tmp_path)
    for _, (name, _, _) in ALL.items():
        p = subprocess.run(["systemd-analyze", "verify", str(units / f"{name}.socket"),
                            str(units / f"{name}@.service")],
                           capture_output=True, text=True, timeout=120,
                           env={**os.environ, "MANPATH": str(man), "SYSTEMD_LOG_LEVEL": "notice"})
        assert p.returncode == 0 and p.stdout + p.stderr == "", p.stdout + p.stderr
    # The check is real: a unit naming a program that is not there fails it.
    bad = units / "cassmail-smtp@.service"
    bad.write_text(bad.read_text().replace(str(BUILD / "cassmail-smtpd"), str(tmp_path / "nothing")))
    p = subprocess.run(["systemd-analyze", "verify", str(units / "cassmail-smtp.socket"), str(bad)],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "MANPATH": str(man)})
    assert p.returncode != 0


def unit(path):
    """{section: {key: value}} of a systemd unit file."""
    out, section = {}, None
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"\[(\w+)\]", line)
        if m:
            section = out.setdefault(m.group(1), {})
        else:
            k, v = line.split("=", 1)
            section[k.strip()] = v.strip()
    return out


def test_systemd_units_are_inetd_style_socket_activation():
    for proto, (name, prog, port) in ALL.items():
        sock = unit(CONFIG / "systemd" / f"{name}.socket")
        svc = unit(CONFIG / "systemd" / f"{name}@.service")
        assert sock["Socket"]["ListenStream"] == str(port)
        assert sock["Socket"]["Accept"] == "yes"
        assert int(sock["Socket"]["MaxConnections"]) > 0
        assert sock["Install"]["WantedBy"] == "sockets.target"
        s = svc["Service"]
        assert s["ExecStart"].split() == [f"/usr/local/sbin/{prog}", "--inetd", *FLAGS.get(proto, []),
                                          "-c", "/etc/cassmail/cassmail.conf"]
        assert s["StandardInput"] == "socket" and s["StandardOutput"] == "socket"
        assert svc["Unit"]["Documentation"] == f"man:{prog}(8)"
        assert (TOP / "man" / f"{prog}.8").is_file()


def test_xinetd_serves_submission_with_starttls_and_over_implicit_tls(mail):
    """The shipped submission services through the real xinetd: on the 587 service MAIL needs
    AUTH (530 before it); on the 465 service TLS runs from the first byte (smtplib.SMTP_SSL), the
    client logs in and a message reaches a local user."""
    folder = Path(tempfile.mkdtemp(prefix="cassmail-xinetd-"))
    try:
        folder.chmod(0o755)
        cert, key = folder / "cert.pem", folder / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
                        "-subj", "/CN=mx.example.com"], check=True, capture_output=True, timeout=60)
        key.chmod(0o600)   # read by the server before it becomes [server] user
        conf = write_conf(folder / "cassmail.conf", smtp={"domains": "example.com"},
                          tls={"certificate": cert, "key": key})
        conf.chmod(0o644)
        sender, user = mail.useradd(unique("x"), password=PASSWORD), mail.useradd(unique("x"))
        x = Xinetd(folder, conf, USERS[0], services=list(SUBMISSION))
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.check_hostname = False
        try:
            with smtplib.SMTP("127.0.0.1", x.ports["submission"], timeout=120) as s:
                s.ehlo("client.example")
                code, text = s.mail(f"{sender}@example.com")
                assert code == 530 and text.startswith(b"5.7.0"), text
                s.starttls(context=ctx)
                s.ehlo("client.example")
                assert s.login(sender, PASSWORD)[0] == 235
                assert s.mail(f"{sender}@example.com")[0] == 250
            sent = message("submitted over implicit TLS through xinetd")
            with smtplib.SMTP_SSL("127.0.0.1", x.ports["submissions"], context=ctx, timeout=120) as s:
                s.ehlo("client.example")
                assert s.login(sender, PASSWORD)[0] == 235
                assert s.sendmail(f"{sender}@example.com", [f"{user}@example.com"], sent) == {}
            [(msgid, _)] = mail.list(user)
            got = mail.fetch(user, "inbox", msgid)
            # the client's text, with the Date: field a submission server adds to a message without
            # one (its Message-ID: was there already), where the header section ends
            head, _, rest = sent.partition(b"\r\n\r\n")
            ghead, _, grest = got.split(b"\r\n", 3)[3].partition(b"\r\n\r\n")
            assert grest == rest and ghead.startswith(head + b"\r\nDate: "), ghead
            assert re.fullmatch(rb"Date: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}",
                                ghead[len(head) + 2:]), ghead
            assert b" with ESMTPSA id " in got.split(b"\r\n")[1]
        finally:
            x.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_xinetd_serves_imap_with_starttls_and_over_implicit_tls(mail):
    """The shipped IMAP services through the real xinetd, with TLS configured and [imap]
    allow_plaintext_auth = false: on the 143 service CAPABILITY offers STARTTLS and says
    LOGINDISABLED, LOGIN is refused before it and works after it; on the 993 service TLS runs from
    the first byte (imaplib.IMAP4_SSL) and LOGIN works at once."""
    folder = Path(tempfile.mkdtemp(prefix="cassmail-xinetd-"))
    try:
        folder.chmod(0o755)
        cert, key = folder / "cert.pem", folder / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
                        "-subj", "/CN=mx.example.com"], check=True, capture_output=True, timeout=60)
        key.chmod(0o600)   # read by the server before it becomes [server] user
        conf = write_conf(folder / "cassmail.conf", smtp={"domains": "example.com"},
                          tls={"certificate": cert, "key": key}, imap={"allow_plaintext_auth": "false"})
        conf.chmod(0o644)
        user = mail.useradd(unique("x"), password=PASSWORD)
        x = Xinetd(folder, conf, USERS[0], services=["imap", "imaps"])
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.check_hostname = False
        try:
            with imaplib.IMAP4("127.0.0.1", x.ports["imap"], timeout=120) as m:
                caps = m.capabilities
                assert "STARTTLS" in caps and "LOGINDISABLED" in caps, caps
                with pytest.raises(imaplib.IMAP4.error):
                    m.login(user, PASSWORD)
                m.starttls(ssl_context=ctx)
                assert "STARTTLS" not in m.capabilities and "AUTH=PLAIN" in m.capabilities, m.capabilities
                assert m.login(user, PASSWORD)[0] == "OK"
                assert m.select("INBOX")[0] == "OK"
                m.logout()
            with imaplib.IMAP4_SSL("127.0.0.1", x.ports["imaps"], ssl_context=ctx, timeout=120) as m:
                assert m.welcome.startswith(b"* OK")
                assert "STARTTLS" not in m.capabilities and "AUTH=PLAIN" in m.capabilities, m.capabilities
                assert m.login(user, PASSWORD)[0] == "OK"
                typ, data = m.list()
                assert typ == "OK" and any(b"INBOX" in line for line in data), data
                m.logout()
            wait_for(lambda: len(re.findall(r"EXIT: test-cassmail-imaps? status=0", x.log())) >= 2,
                     what="both sessions to end with status 0", timeout=60)
        finally:
            x.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
