"""Sessions per client address ([limits] client_connection_limit), end to end: cassmail-smtpd and
cassmail-pop3d in daemon mode with a real Cassandra 0.7.0 node behind them.

Eviction closes the session whose client has been silent longest, so a client that trickles one
byte a second on every session is never evicted: before this limit, max_children such sessions
held every slot for as long as the idle timeout allowed. Now one client address may hold at most
its share of the listener, min(client_connection_limit, max_children - 1) (src/net/server.h):
another address always finds a slot that address cannot take. A connection beyond its address's
share gets the busy reply at once ("421 4.3.2", POP3 "-ERR [SYS/TEMP]") and evicts nobody.

Every address of 127.0.0.0/8 is this machine's, so the tests speak as several clients by binding
their sockets to 127.0.0.1, 127.0.0.2, ... before they connect.
"""
import poplib
import re
import smtplib
import socket
import threading
import time

import pytest

from conftest import unique, write_conf
from support import HOST, POP3D, SMTPD, Daemon, one_node_mail, wait_for
from test_hostile import first_bytes

PASSWORD = "limit pass 5"
SERVE_WITHIN_S = 2.0
GREETING = {"smtp": b"220 ", "pop3": b"+OK "}
BUSY = {"smtp": b"421 4.3.2 ", "pop3": b"-ERR [SYS/TEMP] "}
# A command each protocol accepts before login, trickled one octet a second.
TRICKLE = {"smtp": b"NOOP\r\n", "pop3": b"CAPA\r\n"}


def connect(port, source, timeout=30):
    """A TCP connection to 127.0.0.1:PORT from address SOURCE."""
    return socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))


class POP3From(poplib.POP3):
    """poplib's client, connecting from address SOURCE."""

    def __init__(self, source, *args, **kw):
        self.source = source
        super().__init__(*args, **kw)

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self.source, 0))


def served(proto, port, user, source):
    """A whole client from SOURCE — SMTP: a delivery to USER; POP3: USER's login and STAT — and
    the seconds it took from connect to the last reply."""
    t = time.monotonic()
    if proto == "smtp":
        with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=30,
                          source_address=(source, 0)) as s:
            assert s.sendmail("someone@remote.example", [f"{user}@example.com"],
                              b"Subject: served\r\n\r\nserved\r\n") == {}
    else:
        p = POP3From(source, "127.0.0.1", port, timeout=30)
        p.user(user)
        p.pass_(PASSWORD)
        p.stat()
        p.quit()
    return time.monotonic() - t


class Trickle:
    """Sends one octet a second of a valid command on each socket, in a thread, so that none of
    their sessions is ever silent for eviction's sake."""

    def __init__(self, socks, command):
        self.socks, self.command, self.stop_ = socks, command, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        i = 0
        while not self.stop_.wait(1.0):
            octet = self.command[i % len(self.command):][:1]
            for s in self.socks:
                s.sendall(octet)
            i += 1

    def stop(self):
        self.stop_.set()
        self.thread.join()


@pytest.fixture(scope="module")
def mail(ring, tmp_path_factory):
    return one_node_mail(ring, write_conf(tmp_path_factory.mktemp("limit") / "admin.conf"))


def daemon(proto, tmp_path, **limits):
    conf = write_conf(tmp_path / f"{proto}.conf", smtp={"hostname": HOST}, limits=limits)
    return Daemon(SMTPD if proto == "smtp" else POP3D, conf, tmp_path / f"{proto}.log")


@pytest.mark.parametrize("proto", ["smtp", "pop3"])
def test_trickling_sessions_from_one_address_fill_only_their_share(mail, tmp_path, proto):
    user = mail.useradd(unique("l"), password=PASSWORD)
    d = daemon(proto, tmp_path, max_children=4)   # default client_connection_limit (50): share 3
    socks, trickle = [], None
    try:
        for _ in range(3):
            socks.append(connect(d.port, "127.0.0.1"))
        assert all(first_bytes(s).startswith(GREETING[proto]) for s in socks)
        t = time.monotonic()
        fourth = connect(d.port, "127.0.0.1")
        socks.append(fourth)
        assert first_bytes(fourth).startswith(BUSY[proto])   # at once, then closed
        assert fourth.recv(100) == b""
        assert time.monotonic() - t < 1.0
        socks.remove(fourth)
        fourth.close()
        wait_for(lambda: "refused 127.0.0.1: 3 sessions from this address, its limit" in d.log(),
                 timeout=10, what="the refusal's log line")
        trickle = Trickle(socks[:3], TRICKLE[proto])
        time.sleep(2.5)   # the trickle is going: no held session is ever silent
        elapsed = served(proto, d.port, user, "127.0.0.2")
        print(f"{proto}: 3 trickling sessions of 127.0.0.1, 127.0.0.2 served in {elapsed:.3f} s")
        assert elapsed <= SERVE_WITHIN_S
        assert "evicted" not in d.log()
        # the trickling sessions are still there, untouched, and 127.0.0.1 is still at its share
        assert len(d.children()) >= 3
        extra = connect(d.port, "127.0.0.1")
        assert first_bytes(extra).startswith(BUSY[proto])
        extra.close()
    finally:
        if trickle:
            trickle.stop()
        for s in socks:
            s.close()
        wait_for(lambda: not d.children(), timeout=60, what="the sessions to end")
        log = d.log()
        assert d.stop() == 0
    assert "died of signal" not in log and "exited with status" not in log


def test_the_default_limit_is_50_sessions_from_one_address(mail, tmp_path):
    user = mail.useradd(unique("l"), password=PASSWORD)
    d = daemon("smtp", tmp_path)   # max_children 1000, client_connection_limit 50
    socks = []
    try:
        assert "(at most 1000 sessions, 50 from one client address)" in d.log()
        for _ in range(50):
            socks.append(connect(d.port, "127.0.0.1"))
        assert all(first_bytes(s).startswith(b"220 ") for s in socks)
        extra = connect(d.port, "127.0.0.1")
        assert first_bytes(extra).startswith(b"421 4.3.2 ")
        extra.close()
        # another address is served at once, and so is this one after one of its sessions ends
        assert served("smtp", d.port, user, "127.0.0.2") <= SERVE_WITHIN_S
        socks.pop().close()
        wait_for(lambda: len(d.children()) == 49, timeout=30, what="the closed session to end")
        assert served("smtp", d.port, user, "127.0.0.1") <= SERVE_WITHIN_S
        assert len(mail.list(user)) == 2
    finally:
        for s in socks:
            s.close()
        wait_for(lambda: not d.children(), timeout=60, what="the sessions to end")
        assert d.stop() == 0


def test_client_connection_limit_0_lets_one_address_take_every_slot(mail, tmp_path):
    d = daemon("pop3", tmp_path, max_children=4, client_connection_limit=0)
    socks = []
    try:
        for _ in range(5):
            socks.append(connect(d.port, "127.0.0.1"))
        replies = [first_bytes(s) for s in socks]
        assert [r[:4] for r in replies] == [b"+OK "] * 4 + [b"-ERR"], replies
        wait_for(lambda: re.search(r"refused 127\.0\.0\.1: 4 sessions running, the limit", d.log()),
                 timeout=10, what="the refusal's log line")
    finally:
        for s in socks:
            s.close()
        wait_for(lambda: not d.children(), timeout=60, what="the sessions to end")
        assert d.stop() == 0
