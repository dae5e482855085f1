"""Message ids end to end, against a real Cassandra node, the real servers and real clients.

One message, one id: the id in "250 2.0.0 Ok: queued as ID" is the id our Received: field names
in every stored copy (each recipient's inbox and the local sender's outbox), the column
`cassmail-admin list` shows, and the POP3 UIDL. Ids carry a random node (RFC 4122 4.5, multicast
bit set), not this machine's MAC address; each process has its own. Sessions forked in parallel
mint ids that never collide, and Cassandra's own TimeUUIDType order lists each session's
messages in the order they were accepted.
"""
import poplib
import re
import smtplib
import threading
import uuid
from pathlib import Path

from conftest import unique
from support import POP3D, SMTPD, Daemon, body, queued_id, received_id

PASSWORD = "Ids pass 3"


def macs():
    """This machine's network card addresses, as 12 hex digits."""
    out = set()
    for f in Path("/sys/class/net").glob("*/address"):
        out.add(f.read_text().strip().replace(":", "").lower())
    return out


def node_of(msgid):
    return msgid.replace("-", "")[20:]


def test_one_message_has_one_id_everywhere(mail, tmp_path):
    sender = mail.useradd(unique("is"), password=PASSWORD)
    rcpts = [mail.useradd(unique("ir"), password=PASSWORD) for _ in range(2)]
    d = Daemon(SMTPD, mail.conf, tmp_path / "smtpd.log")
    try:
        with smtplib.SMTP("127.0.0.1", d.port, timeout=60) as s:
            s.ehlo("client.example")
            s.login(sender, PASSWORD)   # the sent copy is for senders who logged in (outbox_copy)
            s.mail(f"{sender}@example.com")
            for r in rcpts:
                s.rcpt(f"{r}@example.com")
            code, reply = s.data(body(b"Subject: one id", b"", b"text"))
            assert code == 250, reply
    finally:
        d.stop()
    msgid = queued_id(reply.decode())
    # the stored copies: each one's Received: field names the queued id, and so does its column
    for user, box in [(rcpts[0], "inbox"), (rcpts[1], "inbox"), (sender, "outbox")]:
        listed = mail.list(user, box)
        assert [i for i, _ in listed] == [msgid], (user, box, listed)
        assert received_id(mail.fetch(user, box, msgid)) == msgid
    # POP3's unique id is the same id
    p3 = Daemon(POP3D, mail.conf, tmp_path / "pop3d.log")
    try:
        p = poplib.POP3("127.0.0.1", p3.port, timeout=60)
        p.user(rcpts[0])
        p.pass_(PASSWORD)
        _, uidls, _ = p.uidl()
        p.quit()
    finally:
        p3.stop()
    assert [u.split()[1].decode() for u in uidls] == [msgid]
    # a version-1 TimeUUID whose node is random (multicast bit set), no network card's
    u = uuid.UUID(msgid)
    assert u.version == 1 and u.variant == uuid.RFC_4122
    assert int(node_of(msgid)[:2], 16) & 0x01
    assert node_of(msgid) not in macs()


def test_parallel_sessions_mint_distinct_ids_listed_in_acceptance_order(mail, tmp_path):
    """8 clients at once, each 12 messages over one connection (one forked process each), to one
    mailbox: 96 distinct ids; Cassandra lists each connection's messages in the order of its
    250 replies; each process has one node of its own, none of them a network card's."""
    user = mail.useradd(unique("ip"))
    d = Daemon(SMTPD, mail.conf, tmp_path / "smtpd.log")
    clients, per_client = 8, 12
    got = [[] for _ in range(clients)]
    errors = []

    def client(k):
        try:
            with smtplib.SMTP("127.0.0.1", d.port, timeout=120) as s:
                s.ehlo("client.example")
                for n in range(per_client):
                    s.mail("someone@remote.example")
                    s.rcpt(f"{user}@example.com")
                    code, reply = s.data(body(b"Subject: %d.%d" % (k, n), b"", b"x"))
                    assert code == 250, reply
                    got[k].append(queued_id(reply.decode()))
        except Exception as e:   # reported below, in the test's own thread
            errors.append(e)
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
    finally:
        d.stop()
    assert not errors, errors
    listed = [i for i, _ in mail.list(user)]
    everything = [i for ids in got for i in ids]
    assert len(set(everything)) == clients * per_client
    assert sorted(listed) == sorted(everything)
    position = {msgid: n for n, msgid in enumerate(listed)}
    nodes = set()
    for ids in got:
        assert [position[i] for i in ids] == sorted(position[i] for i in ids), ids
        assert len({node_of(i) for i in ids}) == 1, "one process, one node"
        nodes.add(node_of(ids[0]))
        assert received_id(mail.fetch(user, "inbox", ids[0])) == ids[0]
    assert len(nodes) == clients, "each forked session draws its own node"
    assert not nodes & macs()
    assert all(int(n[:2], 16) & 0x01 for n in nodes)
