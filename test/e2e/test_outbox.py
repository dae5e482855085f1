"""Who gets the sent copy in their outbox ([smtp] outbox_copy), end to end: a real Cassandra 0.7.0
node, cassmail-smtpd and cassmail-pop3d in daemon mode, smtplib and poplib as the clients.

The outbox copy (`user:outbox`, read over POP3 as `user|outbox`) is for senders who proved who
they are:

  - authenticated (the default): only a client that logged in (AUTH) gets a copy, in its own
    outbox (an authenticated client may only send from its own address). Without AUTH anyone can
    write MAIL FROM:<alice@example.com>, so that stores nothing in alice's outbox.
  - local: every envelope sender that is a local user gets a copy, proven or not (the paper's
    design, which the paper-reproduction benchmark sets explicitly).
  - never: nobody does.
"""
import poplib
import re
import smtplib
import subprocess

import pytest

from conftest import Mail, unique, write_conf
from support import HOST, POP3D, SMTPD, Daemon, body, retr_bytes, strip_received, wait_for

PASSWORD = "outbox pass 3"


class Env:
    def __init__(self, mail, smtpd, pop3d):
        self.mail, self.smtpd, self.pop3d = mail, smtpd, pop3d

    def user(self):
        return self.mail.useradd(unique("o"), password=PASSWORD)

    def send(self, mode, sender, rcpt, msg, login=None):
        """MSG from SENDER to RCPT through the smtpd of outbox_copy MODE, logged in as LOGIN
        (AUTH PLAIN without TLS: allowed from loopback by default); the 250's text."""
        with smtplib.SMTP("127.0.0.1", self.smtpd[mode].port, local_hostname="client.example",
                          timeout=60) as s:
            if login:
                assert s.login(login, PASSWORD)[0] == 235
            s.ehlo_or_helo_if_needed()
            assert s.mail(sender)[0] == 250
            assert s.rcpt(rcpt)[0] == 250
            code, text = s.data(msg)
            assert code == 250, text
            return text.decode()

    def stored(self, user, box="inbox"):
        """[stored octets] of USER's BOX, oldest first."""
        return [self.mail.fetch(user, box, i) for i, _ in self.mail.list(user, box)]

    def pop3_box(self, user, box):
        """Every message of USER|BOX as a POP3 client reads it."""
        p = poplib.POP3("127.0.0.1", self.pop3d.port, timeout=60)
        p.user(f"{user}|{box}")
        p.pass_(PASSWORD)
        n, _ = p.stat()
        msgs = [retr_bytes(p, i) for i in range(1, n + 1)]
        p.quit()
        return msgs


@pytest.fixture(scope="module")
def env(ring, tmp_path_factory):
    """A 1-node ring with the schema; one cassmail-smtpd per outbox_copy mode (the default
    configuration, local, never) and one cassmail-pop3d."""
    ring.ensure(1)
    d = tmp_path_factory.mktemp("outbox")
    confs = {"default": write_conf(d / "default.conf", smtp={"hostname": HOST})}
    for mode in ("local", "never"):
        confs[mode] = write_conf(d / f"{mode}.conf", smtp={"hostname": HOST, "outbox_copy": mode})
    ring.schema(confs["default"])
    daemons = []
    try:
        smtpd = {}
        for mode, conf in confs.items():
            smtpd[mode] = Daemon(SMTPD, conf, d / f"smtpd-{mode}.log")
            daemons.append(smtpd[mode])
        pop3d = Daemon(POP3D, confs["default"], d / "pop3d.log")
        daemons.append(pop3d)
        yield Env(Mail(confs["default"]), smtpd, pop3d)
    finally:
        assert [x.stop() for x in daemons] == [0] * len(daemons)


def test_unauthenticated_mail_from_a_local_user_writes_nothing_into_their_outbox(env):
    alice, bob = env.user(), env.user()
    msg = body(b"From: alice@example.com", b"Subject: not really from alice", b"", b"forged")
    text = env.send("default", f"{alice}@example.com", f"{bob}@example.com", msg)
    [inbox] = env.stored(bob)
    assert strip_received(inbox) == msg
    assert env.stored(alice, "outbox") == []
    # what alice reads as alice|outbox over POP3: nothing
    assert env.pop3_box(alice, "outbox") == []
    msgid = re.search(r"queued as (\S+)", text).group(1)
    line = wait_for(lambda: re.search(rf"accepted id={msgid} .*", env.smtpd["default"].log()),
                    what="the accepted line").group(0)
    assert f"from=<{alice}@example.com> rcpts=1 size=" in line   # no "+outbox"


def test_authenticated_sender_gets_the_outbox_copy_by_default(env):
    alice, bob = env.user(), env.user()
    msg = body(b"Subject: sent by alice herself", b"", b"kept in my outbox")
    env.send("default", f"{alice}@Example.COM", f"{bob}@example.com", msg, login=alice)
    [inbox] = env.stored(bob)
    [outbox] = env.stored(alice, "outbox")
    assert inbox == outbox   # one write, one TimeUUID, the same octets
    assert strip_received(outbox, exact=False) == msg
    assert b" with ESMTPA id " in outbox.split(b"\r\n")[1]
    assert env.pop3_box(alice, "outbox") == [outbox]
    assert env.stored(alice) == []


def test_outbox_copy_local_copies_every_local_sender_as_in_the_paper(env):
    alice, bob = env.user(), env.user()
    msg = body(b"Subject: from a local user", b"", b"kept in my outbox")
    env.send("local", f"{alice}@Example.COM", f"{bob}@example.com", msg)
    [inbox] = env.stored(bob)
    [outbox] = env.stored(alice, "outbox")
    assert inbox == outbox and strip_received(outbox) == msg
    assert env.pop3_box(alice, "outbox") == [outbox]
    # a remote sender, or an unknown local one, has no outbox copy
    env.send("local", f"{alice}@remote.example", f"{bob}@example.com", msg)
    env.send("local", f"nosuch{alice}@example.com", f"{bob}@example.com", msg)
    assert len(env.stored(alice, "outbox")) == 1
    assert len(env.stored(bob)) == 3


def test_outbox_copy_never_copies_even_an_authenticated_sender(env):
    alice, bob = env.user(), env.user()
    msg = body(b"Subject: no copy kept", b"", b"text")
    env.send("never", f"{alice}@example.com", f"{bob}@example.com", msg, login=alice)
    env.send("never", f"{alice}@example.com", f"{bob}@example.com", msg)
    assert [strip_received(m, exact=False) for m in env.stored(bob)] == [msg, msg]
    assert env.stored(alice, "outbox") == []


def test_an_unknown_outbox_copy_value_stops_the_server_at_start(tmp_path):
    conf = write_conf(tmp_path / "bad.conf", smtp={"outbox_copy": "sometimes"})
    p = subprocess.run([str(SMTPD), "-c", str(conf), "-l", "127.0.0.1:0"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 78, p
    assert '[smtp] outbox_copy = "sometimes": expected authenticated, local or never' in p.stderr
