"""cassbench.servers - the servers under test, each on 127.0.0.1 at a free port: cassmail-smtpd
and cassmail-pop3d with a configuration written for the run, and private Postfix and Dovecot
instances (their own configuration, queue and mail folders under the run folder; nothing under
/etc is used or changed). What each server logged is read back here: the messages it accepted."""
import re
import shutil
import subprocess
import time

from .common import BUILD, WORK, check_disk, free_port, node, sh, stop_pid, users_file, wait_port
from .postfix import start_postfix
from .ring import proc_children, proc_cpu


def write_conf(path, endpoints, rf, cl, keyspace="Mail", inline_max=10240000, outbox_copy="local"):
    path.write_text(
        "[cassandra]\n"
        f"endpoints={';'.join(f'{e}:9160' for e in endpoints)}\n"
        f"keyspace={keyspace}\nreplication_factor={rf}\n"
        f"write_consistency={cl}\nread_consistency={'ONE' if cl == 'ONE' else cl}\n\n"
        "[smtp]\ndomains=example.com\nhostname=mx.example.com\nlisten=127.0.0.1:2525\n"
        "max_message_size=10240000\n"
        # The paper's workload: Postal's senders are local users and do not log in, and each of
        # their messages is also stored in the sender's outbox (the default is authenticated).
        f"outbox_copy={outbox_copy}\n\n"
        # The paper's layout: [store] inline_max at max_message_size (10240000, the limit these
        # runs always had) keeps every message inline in each Mailboxes column, one copy per
        # mailbox, as the paper stored it; the reproduction figures are measured that way, not
        # with the parts layout that is CassMail's default.
        f"[store]\ninline_max={inline_max}\n\n"
        "[pop3]\nlisten=127.0.0.1:1110\n\n"
        "[limits]\nmax_children=400\n\n"
        # A login costs what --pop-iterations gave the users' hashes: the servers' floor is the
        # least a deployment may configure, so it never pads those hashes up.
        "[auth]\npassword_iterations=1000\n\n"
        "[server]\nuser=nobody\ngroup=nogroup\n")
    return path


def make_schema(ring, rf, cl):
    """schema at RF and the 700 users; returns the configuration for node 1"""
    conf = write_conf(WORK / "admin.conf", [node(1)], rf, cl)
    sh(BUILD / "cassmail-admin", "-c", conf, "schema", "--rf", rf, stdout=subprocess.DEVNULL)
    sh(BUILD / "cassmail-admin", "-c", conf, "import", users_file(), stdout=subprocess.DEVNULL)
    return conf


class Smtpd:
    """cassmail-smtpd listening on 127.0.0.1:free port, Cassandra node I first; STORE is
    write_conf's inline_max and outbox_copy (default: the paper's layout and workload)"""

    def __init__(self, ring, i, rf, cl, tag, **store):
        order = [i] + [j for j in range(1, ring.n + 1) if j != i]
        self.conf = write_conf(WORK / f"smtpd{i}.conf", [node(j) for j in order], rf, cl, **store)
        self.port = free_port()
        self.logfile = WORK / f"{tag}-smtpd{i}.log"
        self.proc = subprocess.Popen([BUILD / "cassmail-smtpd", "-c", self.conf, "-f",
                                      "-l", f"127.0.0.1:{self.port}"],
                                     stdout=subprocess.DEVNULL, stderr=open(self.logfile, "w"))
        wait_port(self.port)

    def cpu(self):
        return proc_cpu(self.proc.pid)

    def stop(self):
        stop_pid(self.proc.pid, "cassmail-smtpd")
        self.proc.wait()

    def refused(self):
        """[HH:MM:SS] of every message this server answered 451 for: not stored, or a sender or
        recipient that could not be looked up"""
        rx = re.compile(r"^(\d\d:\d\d:\d\d)\.\d+ \S+: smtp \S+ \S+: "
                        r"(?:not stored|(?:MAIL FROM|RCPT TO):.* failed)")
        return [m.group(1) for m in map(rx.match, self.logfile.read_text(errors="replace").splitlines()) if m]

    def accepted(self):
        """[(HH:MM:SS, octets)] of every message this server stored"""
        rx = re.compile(r"^(\d\d:\d\d:\d\d)\.\d+ \S+: smtp \S+ \S+: accepted id=.* size=(\d+) ")
        out = []
        for line in self.logfile.read_text(errors="replace").splitlines():
            m = rx.match(line)
            if m:
                out.append((m.group(1), int(m.group(2))))
        return out


# --- Postfix: a private instance (own config and queue directories, own port) -----------------


class Postfix:
    """Postfix delivering example.com's users to Maildirs under WORK/postfix/mail"""

    def __init__(self):
        self.dir = WORK / "postfix"
        shutil.rmtree(self.dir, ignore_errors=True)
        check_disk()
        conf = self.dir / "conf"
        conf.mkdir(parents=True)
        (self.dir / "mail").mkdir()
        shutil.chown(self.dir / "mail", "nobody", "nogroup")
        self.port = free_port()
        self.log = self.dir / "maillog"
        users = [u.strip() for u in users_file().read_text().split()]
        (conf / "vmailbox").write_text("".join(f"{u} {u.split('@')[0]}/\n" for u in users))
        start_postfix(self.dir, self.port, f"""\
myhostname = bench.example.net
virtual_mailbox_domains = example.com
virtual_mailbox_base = {self.dir}/mail
virtual_mailbox_maps = texthash:{conf}/vmailbox
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_minimum_uid = 100
message_size_limit = 10240000
virtual_mailbox_limit = 0
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
""")
        self.master = int((self.dir / "spool" / "pid" / "master.pid").read_text().split()[0])

    def cpu(self):
        return proc_cpu(self.master) + sum(proc_cpu(k) for k in proc_children(self.master))

    def stop(self):
        stop_pid(self.master, "master")
        for sub in ("mail", "spool"):   # the maillog stays for accepted()
            shutil.rmtree(self.dir / sub, ignore_errors=True)

    QUEUED = re.compile(r"(\d\d:\d\d:\d\d)\S* \S+ postfix/qmgr\[\d+\]: (\w+): from=<[^>]*>, size=(\d+),")
    DELIVERED = re.compile(r"(\d\d:\d\d:\d\d)\S* \S+ postfix/virtual\[\d+\]: (\w+): to=<.*status=sent")

    def accepted(self):
        """[(HH:MM:SS, octets)] of every message queued (Postfix's 250: on disk, fsync'ed)"""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            m = self.QUEUED.search(line)
            if m:
                out.append((m.group(1), int(m.group(3))))
        return out

    def delivered(self):
        """[(HH:MM:SS, octets)] of every delivery into a user's Maildir (Postal's messages have
        one recipient each), which Postfix makes after its 250, from the queue"""
        size, out = {}, []
        for line in self.log.read_text(errors="replace").splitlines():
            m = self.QUEUED.search(line)
            if m:
                size[m.group(2)] = int(m.group(3))
                continue
            m = self.DELIVERED.search(line)
            if m and m.group(2) in size:
                out.append((m.group(1), size[m.group(2)]))
        return out


def cassmail_start(program, conf, log_name):
    """cassmail PROGRAM (cassmail-pop3d, cassmail-imapd) on CONF at a free port, its log in
    WORK/LOG_NAME; (Popen, port)"""
    port = free_port()
    proc = subprocess.Popen([BUILD / program, "-c", conf, "-f", "-l", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=open(WORK / log_name, "w"))
    wait_port(port)
    return proc, port


def pop3d_start(conf):
    """cassmail-pop3d on CONF at a free port, its log in WORK/pop3d.log; (Popen, port)"""
    return cassmail_start("cassmail-pop3d", conf, "pop3d.log")


# What a Dovecot serving one protocol sets beyond the common part.
DOVECOT_SETTINGS = {"pop3": "pop3_uidl_format = %08Xu%08Xv\n", "imap": ""}


def dovecot_start(protocol, maildirs, passwd, folder="dovecot"):
    """a private Dovecot in WORK/FOLDER serving PROTOCOL ("pop3" or "imap") only, in plain text,
    from MAILDIRS/USER for the users of the passwd-file PASSWD; (port, master pid)"""
    d = WORK / folder
    shutil.rmtree(d / "run", ignore_errors=True)
    (d / "run").mkdir(parents=True)
    port = free_port()
    conf = d / "dovecot.conf"
    conf.write_text(f"""\
# A private benchmark instance: nothing under /etc/dovecot is used or changed.
base_dir = {d}/run
state_dir = {d}/run
log_path = {d}/dovecot.log
protocols = {protocol}
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = 100
mail_location = maildir:{maildirs}/%n
{DOVECOT_SETTINGS[protocol]}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {passwd}
}}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home={maildirs}/%n
}}
service {protocol}-login {{
  inet_listener {protocol} {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener {protocol}s {{
    port = 0
  }}
}}
""")
    sh("dovecot", "-c", conf)
    wait_port(port)
    pidfile = d / "run" / "master.pid"
    for _ in range(100):
        if pidfile.exists() and pidfile.read_text().strip():
            break
        time.sleep(0.1)
    return port, int(pidfile.read_text().split()[0])
