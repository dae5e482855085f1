"""cassmail-imapd as a program, against a real Cassandra node: what the adapter and the server
entry (src/cmd/cassmail-imapd.c) decide, not the IMAP commands (test_imap.py has those).

  - The autologout: at least 30 minutes whatever [limits] idle_timeout_s says (RFC 9051 5.4),
    longer when it says so, -t for anything; on expiry "* BYE" and end=idle-timeout.
  - A synchronizing literal gets its "+" before the server waits for it, holds what a quoted
    string cannot, and one that stops coming ends with the data timeout, not the 30-minute one.
  - A full listener answers "* BYE [UNAVAILABLE] too many connections".
  - The session-end line carries the core's fields around the adapter's.
"""
import re
import socket
import time

import pytest

from conftest import unique, write_conf
from support import IMAPD, Daemon, wait_for

PASSWORD = "imapd pass 7"


@pytest.fixture
def conf(ring, tmp_path):
    ring.ensure(1)
    c = write_conf(tmp_path / "imapd.conf", limits={"data_timeout_s": 2},
                   pop3={"login_delay_ms": 0})
    ring.schema(c)
    return c


class Client:
    """A raw IMAP client: exact octets out, what came back so far in .got."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.got = b""

    def send(self, data):
        self.s.sendall(data)

    def until(self, want, timeout=30):
        """Read until WANT (bytes or a compiled pattern) is in what came back."""
        deadline = time.monotonic() + timeout
        while not (want.search(self.got) if hasattr(want, "search") else want in self.got):
            assert time.monotonic() < deadline, f"no {want!r} in {self.got!r}"
            self.s.settimeout(max(0.1, deadline - time.monotonic()))
            chunk = self.s.recv(65536)
            assert chunk, f"EOF before {want!r}: {self.got!r}"
            self.got += chunk
        return self.got

    def to_eof(self, timeout=60):
        self.s.settimeout(timeout)
        while chunk := self.s.recv(65536):
            self.got += chunk
        return self.got

    def close(self):
        self.s.close()


def describe(daemon):
    return re.search(r"autologout after (\d+) s", daemon.log()).group(1)


@pytest.mark.parametrize("idle,args,want", [("300", (), "1800"), ("3600", (), "3600"),
                                            ("300", ("-t", "5"), "5")],
                         ids=["raised-to-30-minutes", "longer-kept", "t-sets-it"])
def test_autologout_is_at_least_30_minutes_unless_t_says(ring, tmp_path, idle, args, want):
    ring.ensure(1)
    c = write_conf(tmp_path / "imapd.conf", limits={"idle_timeout_s": idle})
    d = Daemon(IMAPD, c, tmp_path / "imapd.log", args=args)
    try:
        assert describe(d) == want
    finally:
        assert d.stop() in (0, None)


def test_autologout_says_bye_and_logs_idle_timeout(conf, mail, tmp_path):
    user = mail.useradd(unique("ia"), password=PASSWORD)
    d = Daemon(IMAPD, conf, tmp_path / "imapd.log", args=("-t", "2"))
    try:
        c = Client(d.port)
        c.until(b"* OK [CAPABILITY ")
        c.send(f'a LOGIN {user} "{PASSWORD}"\r\n'.encode())
        c.until(b"a OK")
        t0 = time.monotonic()
        got = c.to_eof()
        assert 1.5 < time.monotonic() - t0 < 10
        assert got.endswith(b"\r\n") and b"* BYE" in got.split(b"a OK", 1)[1], got
        c.close()
        (end,) = d.wait_session_ends(1, user)
        assert end["end"] == "idle-timeout" and end["user"] == user, end
        assert end["tls"] == "no" and "commands" in end and "vmhwm_kb" in end, end
    finally:
        d.stop()


def test_a_literal_is_announced_and_stops_at_the_data_timeout(conf, mail, tmp_path):
    """A password as a synchronizing literal (quotes, a backslash, spaces: what a quoted string
    would have to escape) logs in, and a literal that stops coming ends after [limits]
    data_timeout_s (2 s here), not the 30 minutes between commands."""
    odd = 'p "q\\ r  {3}'

    user = mail.useradd(unique("il"), password=odd)
    d = Daemon(IMAPD, conf, tmp_path / "imapd.log")
    try:
        c = Client(d.port)
        c.until(b"* OK [CAPABILITY ")
        pw = odd.encode()
        c.send(f"a LOGIN {user} {{{len(pw)}}}\r\n".encode())
        c.until(b"+ ")
        c.send(pw + b"\r\n")
        c.until(b"a OK")
        c.send(b"b LOGIN x {20}\r\n")
        c.until(b"+ ")
        c.send(b"abc")
        t0 = time.monotonic()
        c.to_eof()
        assert 1.5 < time.monotonic() - t0 < 15
        c.close()
        (end,) = d.wait_session_ends(1, user)
        assert end["end"] == "data-timeout", end
    finally:
        d.stop()


def test_a_full_listener_answers_bye_unavailable(ring, tmp_path):
    ring.ensure(1)
    c = write_conf(tmp_path / "imapd.conf", limits={"max_children": 1, "evict_idle_s": 0})
    d = Daemon(IMAPD, c, tmp_path / "imapd.log")
    try:
        first = Client(d.port)
        first.until(b"* OK [CAPABILITY ")
        wait_for(lambda: d.children(), what="the first session")
        second = Client(d.port)
        assert second.to_eof() == b"* BYE [UNAVAILABLE] too many connections, try again later\r\n"
        second.close()
        first.send(b"a LOGOUT\r\n")
        assert b"a OK" in first.to_eof()
        first.close()
    finally:
        d.stop()
