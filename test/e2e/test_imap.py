"""cassmail-imapd end to end: a real Cassandra 0.7.0 node, mail delivered by cassmail-smtpd, and
real IMAP clients — Python's imaplib (a scripted session of every command of the IMAP issue),
mbsync (isync), curl and mutt — over plain loopback and over STARTTLS.

The server is the fixture `target` (imap_support.py): cassmail-imapd with cassmail-smtpd and
cassmail-pop3d on one node in `make test`; CASSMAIL_IMAP_TARGET=dovecot runs the same tests
against a private Dovecot (the development reference: what a test asks of the server is what
RFC 9051 and RFC 3501 ask, and Dovecot answers it so).

New mail shows in cassmail-imapd once it is older than [imap] settle_ms (500 ms here): tests
that deliver and then look wait for EXISTS with NOOP (Imap.wait_exists).

What cassmail-imapd's session process grew to comes from its "session end ... vmhwm_kb=N" log
line, as for POP3 (test_body.py).
"""
import base64
import datetime
import imaplib
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import imap_support
from conftest import TOP, unique
from imap_support import PASSWORD, Imap, RawImap, client_context, fetch_map, message_id, parse_value
from support import wait_for

CORPUS = TOP / "test" / "fuzz" / "corpus" / "mime"
MODES = ["plain", "starttls"]
VMHWM_MAX_KB = 64 * 1024        # 64 MiB, the bound of the other servers' sessions (test_body.py)


@pytest.fixture(scope="module")
def target(ring, tmp_path_factory):
    t = imap_support.start_target(ring, tmp_path_factory.mktemp("imap"))
    try:
        yield t
    finally:
        t.stop()


def connect(target, mode, user=None, password=PASSWORD):
    return target.imap(tls=(mode == "starttls"), user=user, password=password)


def new_session(target, mode):
    """A session of a new user (c.user), logged in."""
    user = target.user()
    c = connect(target, mode, user)
    c.user = user
    return c


def ok(result):
    typ, data = result
    assert typ == "OK", data
    return data


def text_message(subject, body=b"Hello.\r\n", sender="Alice Example <alice@example.org>",
                 to="bob@example.com", date="Mon, 7 Feb 1994 21:52:25 -0800", extra=b""):
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\n"
            f"Message-ID: <{unique('m')}@example.org>\r\n").encode() + extra + b"\r\n" + body


def big_text(size, seed=0):
    """About SIZE octets of CRLF lines, some starting with a dot."""
    lines, n, i = [], 0, seed
    while n < size:
        line = (b"." if i % 17 == 0 else b"") + b"line %d " % i + b"x" * (i % 70)
        lines.append(line)
        n += len(line) + 2
        i += 1
    return b"\r\n".join(lines) + b"\r\n"


def untagged(lines, word):
    """The untagged lines whose first word (after '* ') is WORD."""
    return [l for l in lines if l.upper().startswith(b"* " + word.upper().encode() + b" ")
            or l.upper() == b"* " + word.upper().encode()]


# ---- greeting, CAPABILITY, STARTTLS, LOGIN, AUTHENTICATE PLAIN, LOGOUT ----------------------------

def test_greeting_and_capabilities(target):
    c = target.imap(login=False)
    assert c.welcome.startswith(b"* OK"), c.welcome
    caps = set(ok(c.capability())[0].upper().split())
    assert {b"IMAP4REV1", b"STARTTLS", b"AUTH=PLAIN"} <= caps, caps   # PLAIN: loopback is allowed
    assert b"LITERAL+" in caps or b"LITERAL-" in caps, caps
    # after STARTTLS: no STARTTLS any more, still the rest
    c.starttls(client_context(target.cert))
    assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
    caps2 = set(ok(c.capability())[0].upper().split())
    assert b"STARTTLS" not in caps2 and b"IMAP4REV1" in caps2 and b"AUTH=PLAIN" in caps2
    # a second STARTTLS is refused
    lines, tagged = c.raw("STARTTLS")
    assert re.match(rb"\S+ (BAD|NO) ", tagged), tagged
    # logged in: every extension the issue names
    ok(c.login(target.user(), PASSWORD))
    caps = set(ok(c.capability())[0].upper().split())
    assert {b"IMAP4REV1", b"IDLE", b"NAMESPACE", b"ID", b"ENABLE", b"UNSELECT", b"MOVE", b"ESEARCH",
            b"SPECIAL-USE"} <= caps, caps
    assert b"LITERAL+" in caps or b"LITERAL-" in caps, caps
    c.logout()


@pytest.mark.parametrize("mode", MODES)
def test_login_authenticate_plain_and_logout(target, mode):
    user = target.user()
    c = connect(target, mode, user)
    ok(c.noop())
    assert c.state == "AUTH"
    typ, data = c.logout()
    assert typ == "BYE", (typ, data)
    # wrong password, unknown user: NO, and the session goes on
    c = connect(target, mode)
    with pytest.raises(imaplib.IMAP4.error):
        c.login(user, "wrong password")
    with pytest.raises(imaplib.IMAP4.error):
        c.login(unique("nobody"), PASSWORD)
    # AUTHENTICATE PLAIN, the response on a continuation
    ok(c.authenticate("PLAIN", lambda _: f"\0{user}\0{PASSWORD}".encode()))
    ok(c.noop())
    c.logout()
    # AUTHENTICATE PLAIN with a wrong password, and a cancelled exchange ("*")
    c = connect(target, mode)
    with pytest.raises(imaplib.IMAP4.error):
        c.authenticate("PLAIN", lambda _: f"\0{user}\0nope".encode())
    c.send(b"x1 AUTHENTICATE PLAIN\r\n")
    assert c._get_line().startswith(b"+")
    c.send(b"*\r\n")
    assert re.match(rb"x1 (BAD|NO) ", c._get_line())
    # the initial response in the command (SASL-IR) when offered
    if b"SASL-IR" in ok(c.capability())[0].upper().split():
        ir = base64.b64encode(f"\0{user}\0{PASSWORD}".encode()).decode()
        lines, tagged = c.raw(f"AUTHENTICATE PLAIN {ir}")
        assert b" OK" in tagged, tagged
    else:
        ok(c.login(user, PASSWORD))
    # commands of the authenticated state work; LOGIN again is refused
    lines, tagged = c.raw(f"LOGIN {user} \"{PASSWORD}\"")
    assert re.match(rb"\S+ (BAD|NO) ", tagged), tagged
    c.logout()


def test_login_needs_tls_where_plaintext_is_not_allowed(target):
    """[imap] allow_plaintext_auth=false (what a client on another machine gets by default):
    LOGINDISABLED and no AUTH=PLAIN before STARTTLS, LOGIN and AUTHENTICATE refused; after
    STARTTLS both work. (cassmail-imapd only: the reference Dovecot runs with one setting.)"""
    if target.name != "cassmail":
        return
    strict = target.variant("strict", imap={"allow_plaintext_auth": "false"})
    user = target.user()
    c = Imap("127.0.0.1", strict.port, timeout=60)
    caps = set(ok(c.capability())[0].upper().split())
    assert b"LOGINDISABLED" in caps and b"AUTH=PLAIN" not in caps and b"STARTTLS" in caps, caps
    lines, tagged = c.raw(f'LOGIN {user} "{PASSWORD}"')
    assert re.match(rb"\S+ (NO|BAD) ", tagged), tagged
    lines, tagged = c.raw("AUTHENTICATE PLAIN " + base64.b64encode(f"\0{user}\0{PASSWORD}".encode()).decode())
    assert re.match(rb"\S+ (NO|BAD) ", tagged), tagged
    c.starttls(client_context(target.cert))
    caps = set(ok(c.capability())[0].upper().split())
    assert b"LOGINDISABLED" not in caps and b"AUTH=PLAIN" in caps, caps
    ok(c.login(user, PASSWORD))
    ok(c.noop())
    c.logout()


def test_login_the_store_cannot_check_is_unavailable_not_a_wrong_password(target):
    """A store that fails for another reason than a missing user or password (here the node's
    [cassandra] keyspace does not exist, a misconfiguration) is no verdict on the password:
    LOGIN gets NO [UNAVAILABLE], as POP3 answers -ERR [SYS/TEMP] and SMTP 454, not
    [AUTHENTICATIONFAILED], and the log says why the login was not checked. A refused login's
    log line says why it was refused. (cassmail-imapd only.)"""
    if target.name != "cassmail":
        return
    user = target.user()
    c = Imap("127.0.0.1", target.imap_port, timeout=60)
    with pytest.raises(imaplib.IMAP4.error):
        c.login(user, "wrong password")
    c.logout()
    wait_for(lambda: f"failed login for {user} (wrong password)" in target.imapd.log())

    broken = target.variant("nokeyspace", cassandra={"keyspace": "NoSuchKeyspace"})
    c = Imap("127.0.0.1", broken.port, timeout=60)
    lines, tagged = c.raw(f'LOGIN {user} "{PASSWORD}"')
    assert re.match(rb"\S+ NO \[UNAVAILABLE\] ", tagged), tagged
    c.logout()
    wait_for(lambda: f"login for {user} not checked" in broken.log())
    assert "Keyspace NoSuchKeyspace does not exist" in broken.log()
    assert f"failed login for {user}" not in broken.log()


def test_commands_need_login_and_selection(target):
    # a connection each (a server may end a session after some bad commands before login)
    for cmd in ("SELECT INBOX", "LIST \"\" \"*\"", "STATUS INBOX (MESSAGES)", "CREATE x",
                "APPEND INBOX {1+}\r\nx", "NAMESPACE"):
        c = target.imap(login=False)
        lines, tagged = c.raw(cmd)
        assert re.match(rb"\S+ (BAD|NO) ", tagged), (cmd, tagged)
        c.shutdown()
    user = target.user()
    c = target.imap(login=False)
    ok(c.login(user, PASSWORD))
    for cmd in ("FETCH 1 FLAGS", "STORE 1 +FLAGS (\\Seen)", "SEARCH ALL", "EXPUNGE", "CLOSE",
                "UNSELECT", "UID FETCH 1 FLAGS", "COPY 1 INBOX", "MOVE 1 INBOX"):
        lines, tagged = c.raw(cmd)
        assert re.match(rb"\S+ (BAD|NO) ", tagged), (cmd, tagged)
    c.logout()


# ---- NOOP, ENABLE, NAMESPACE, ID --------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_noop_enable_namespace_id(target, mode):
    c = new_session(target, mode)
    ok(c.noop())
    # ENABLE: an untagged ENABLED naming only what the server supports
    lines, tagged = c.raw("ENABLE X-NO-SUCH-EXTENSION")
    assert b" OK" in tagged, tagged
    assert all(b"X-NO-SUCH" not in l for l in untagged(lines, "ENABLED"))
    lines, tagged = c.raw("ENABLE UTF8=ACCEPT")
    assert b" OK" in tagged and len(untagged(lines, "ENABLED")) <= 1, (lines, tagged)
    # NAMESPACE: one personal namespace, the rest NIL or lists
    lines, tagged = c.raw("NAMESPACE")
    assert b" OK" in tagged
    (ns,) = untagged(lines, "NAMESPACE")
    m = re.match(rb'\* NAMESPACE \(\("([^"]*)" (NIL|"[^"]*")\)\) (NIL|\(.*\)) (NIL|\(.*\))$', ns)
    assert m, ns
    # ID: the server answers with its own ID (a list or NIL)
    lines, tagged = c.raw('ID ("name" "cassmail-test" "version" "1")')
    assert b" OK" in tagged
    (idl,) = untagged(lines, "ID")
    assert re.match(rb"\* ID (NIL|\(.*\))$", idl), idl
    lines, tagged = c.raw("ID NIL")
    assert b" OK" in tagged
    # IMAP4rev2 where offered: ENABLE turns it on, and SEARCH then answers ESEARCH (RFC 9051 7.3.4)
    if b"IMAP4REV2" in ok(c.capability())[0].upper().split():
        lines, tagged = c.raw("ENABLE IMAP4rev2")
        assert b" OK" in tagged and untagged(lines, "ENABLED") == [b"* ENABLED IMAP4rev2"], lines
        ok(c.append("INBOX", None, None, text_message("rev2")))
        lines, tagged = c.raw("SELECT INBOX")
        assert b" OK" in tagged and not [l for l in lines if b"RECENT" in l.upper()], lines
        c.wait_exists(1)
        lines, tagged = c.raw("SEARCH ALL")
        assert b" OK" in tagged and not untagged(lines, "SEARCH"), lines
        (es,) = untagged(lines, "ESEARCH")
        assert re.match(rb'\* ESEARCH \(TAG "[^"]+"\) ALL 1$', es), es
    c.logout()


# ---- LIST, SPECIAL-USE, LSUB, SUBSCRIBE, CREATE, DELETE, RENAME, STATUS ------------------------

def listed(c, pattern="*", cmd="LIST"):
    """{name: (attributes, delimiter)} of LIST (or LSUB) "" PATTERN."""
    lines, tagged = c.raw(f'{cmd} "" "{pattern}"')
    assert b" OK" in tagged, tagged
    out = {}
    for line in untagged(lines, cmd):
        m = re.match(rb"\* \w+ \(([^)]*)\) (NIL|\"(?:\\.|[^\"])*\") (.*)$", line, re.S)
        assert m, line
        name, _ = parse_value(m.group(3), 0)
        out[name.decode()] = (set(m.group(1).decode().lower().split()), m.group(2))
    return out


@pytest.mark.parametrize("mode", MODES)
def test_list_special_use_create_rename_delete_subscribe_status(target, mode):
    c = new_session(target, mode)
    boxes = listed(c)
    assert "INBOX" in boxes and "outbox" in boxes, boxes
    assert "\\sent" in boxes["outbox"][0], boxes
    assert not {"\\sent", "\\drafts", "\\trash", "\\junk"} & boxes["INBOX"][0]
    # the delimiter: LIST "" ""
    lines, tagged = c.raw('LIST "" ""')
    assert b" OK" in tagged and len(untagged(lines, "LIST")) == 1, lines
    if b"LIST-EXTENDED" in ok(c.capability())[0].upper().split():
        lines, tagged = c.raw('LIST (SPECIAL-USE) "" "*"')
        assert b" OK" in tagged
        assert [l for l in untagged(lines, "LIST")] and all(b"\\Sent" in l for l in untagged(lines, "LIST"))

    # CREATE, a name with a space; the same name again is NO
    ok(c.create('"Work Items"'))
    typ, _ = c.create('"Work Items"')
    assert typ == "NO"
    assert "Work Items" in listed(c)
    assert set(listed(c, "Work*")) == {"Work Items"}
    assert listed(c, "nothing-like-this*") == {}
    # STATUS of an empty mailbox
    typ, data = c.status('"Work Items"', "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN)")
    assert typ == "OK", data
    st = status_values(data[0])
    assert st["MESSAGES"] == 0 and st["UNSEEN"] == 0 and st["UIDVALIDITY"] > 0 and st["UIDNEXT"] >= 1
    # messages go with a RENAME
    ok(c.append('"Work Items"', None, None, text_message("to be renamed")))
    ok(c.rename('"Work Items"', "Projects"))
    boxes = listed(c)
    assert "Projects" in boxes and "Work Items" not in boxes
    wait_for(lambda: status_values(c.status("Projects", "(MESSAGES)")[1][0])["MESSAGES"] == 1, timeout=30,
             step=0.3, what="the renamed mailbox's message counted by STATUS")
    assert c.status('"Work Items"', "(MESSAGES)")[0] == "NO"
    # RENAME onto an existing name, of a missing mailbox: NO
    ok(c.create("Other"))
    assert c.rename("Projects", "Other")[0] == "NO"
    assert c.rename("Missing", "Fresh")[0] == "NO"
    # DELETE: gone, STATUS and SELECT say NO; INBOX cannot be deleted; a missing one neither
    ok(c.delete("Projects"))
    ok(c.delete("Other"))
    assert "Projects" not in listed(c)
    assert c.status("Projects", "(MESSAGES)")[0] == "NO"
    assert c.select("Projects")[0] == "NO"
    assert c.delete("INBOX")[0] == "NO"
    assert c.delete("Missing")[0] == "NO"
    # a name below another, with the delimiter LIST gives ("/" here and in our Dovecot)
    delim = parse_value(listed(c)["INBOX"][1], 0)[0].decode()
    child = f"Parent{delim}Child"
    ok(c.create(f'"{child}"'))
    assert set(listed(c, f"Parent{delim}*")) == {child}
    ok(c.append(f'"{child}"', None, None, text_message("in a child")))
    select_when(c, f'"{child}"', 1)
    ok(c.unselect())
    ok(c.delete(f'"{child}"'))
    assert child not in listed(c)
    # a mailbox created again after DELETE is empty, with a new UIDVALIDITY or the old UIDs gone
    ok(c.create("Projects"))
    typ, data = c.status("Projects", "(MESSAGES UIDVALIDITY UIDNEXT)")
    assert status_values(data[0])["MESSAGES"] == 0
    ok(c.delete("Projects"))
    # SUBSCRIBE / LSUB / UNSUBSCRIBE
    ok(c.create('"Sub Box"'))
    ok(c.subscribe('"Sub Box"'))
    assert "Sub Box" in listed(c, cmd="LSUB")
    # UNSUBSCRIBE: OK and gone from LSUB, or NO where every mailbox is always subscribed
    typ, data = c.unsubscribe('"Sub Box"')
    assert typ == "NO" or "Sub Box" not in listed(c, cmd="LSUB"), (typ, data)
    c.logout()


def status_values(line):
    """{ITEM: int} of a STATUS response's data."""
    if isinstance(line, bytes):
        line = line.decode()
    inner = line[line.rindex("(") + 1:line.rindex(")")].split()
    return {inner[i].upper(): int(inner[i + 1]) for i in range(0, len(inner), 2)}


# ---- APPEND, SELECT, EXAMINE, FETCH -----------------------------------------------------------

def corpus_messages():
    """Messages of the MIME corpus whose ENVELOPE and BODYSTRUCTURE Dovecot and our parser agree
    on (test_imap_mime.py's DELIBERATE lists the others), with CRLF line ends only."""
    import test_imap_mime
    out = []
    for p in sorted(CORPUS.iterdir()):
        data = p.read_bytes()
        if (p.name in test_imap_mime.DELIBERATE or b"\0" in data
                or re.search(rb"(?<!\r)\n", data) or re.search(rb"[\x80-\xff]", data)
                or b"=?" in data):
            continue
        out.append((p.name, data))
    return out


@pytest.mark.parametrize("mode", MODES)
def test_append_select_examine_and_fetch_every_item(target, mode):
    c = new_session(target, mode)
    box = unique("Box")
    ok(c.create(box))
    msgs = corpus_messages()
    assert len(msgs) >= 5
    when = datetime.datetime(2024, 3, 5, 14, 6, 7, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    for k, (_, data) in enumerate(msgs):
        flags = "(\\Flagged $Work)" if k == 0 else None
        ok(c.append(box, flags, imaplib.Time2Internaldate(when.timestamp() + 60 * k), data))
    # APPEND to a missing mailbox: NO [TRYCREATE]
    typ, data = c.append("NoSuchBox", None, None, b"Subject: x\r\n\r\ny\r\n")
    assert typ == "NO" and b"TRYCREATE" in data[0].upper(), data

    # SELECT: EXISTS, FLAGS, PERMANENTFLAGS, UIDVALIDITY, UIDNEXT; READ-WRITE
    lines, tagged = select_when(c, box, len(msgs))
    assert re.match(rb"\S+ OK \[READ-WRITE\]", tagged), tagged
    text = b"\n".join(lines)
    assert re.search(rb"^\* %d EXISTS$" % len(msgs), text, re.M), text
    assert re.search(rb"^\* FLAGS \(.*\\Seen.*\)$", text, re.M), text
    assert re.search(rb"^\* OK \[PERMANENTFLAGS \(.*\\Deleted.*\)\]", text, re.M), text
    assert re.search(rb"^\* OK \[UIDVALIDITY \d+\]", text, re.M), text
    m = re.search(rb"^\* OK \[UIDNEXT (\d+)\]", text, re.M)
    assert m, text
    uidnext = int(m.group(1))

    # FETCH of every item
    lines, tagged = c.raw("FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY)")
    assert b" OK" in tagged, tagged
    got = fetch_map(lines)
    assert sorted(got) == list(range(1, len(msgs) + 1))
    uids = [int(got[i]["UID"]) for i in sorted(got)]
    assert uids == sorted(uids) and len(set(uids)) == len(uids) and uids[-1] < uidnext
    assert b"\\Flagged" in got[1]["FLAGS"] and b"$Work" in got[1]["FLAGS"]
    assert b"\\Seen" not in got[1]["FLAGS"] and b"\\Flagged" not in got[2]["FLAGS"]
    for k, (name, data) in enumerate(msgs):
        item = got[k + 1]
        assert int(item["RFC822.SIZE"]) == len(data), name
        # the date-time APPEND gave, or the time of arrival: cassmail-imapd ignores the argument
        # (a message's INTERNALDATE is the time of its TimeUUID, which orders its UID; RFC 9051
        # says SHOULD)
        stamp = time.mktime(imaplib.Internaldate2tuple(b'INTERNALDATE "' + item["INTERNALDATE"] + b'"'))
        assert (abs(stamp - (when.timestamp() + 60 * k)) <= 1 or abs(stamp - time.time()) < 600), \
            (name, item["INTERNALDATE"])
    # ENVELOPE, BODYSTRUCTURE, BODY as Dovecot answers for the same octets
    if target.name != "dovecot":
        import test_imap_mime
        work = Path(tempfile.mkdtemp(prefix="cassmail-imap-ref-"))
        os.chmod(work, 0o755)
        try:
            for k, (name, data) in enumerate(msgs):
                ref = fetch_map([test_imap_mime.dovecot_fetch(work, data, "ENVELOPE BODYSTRUCTURE BODY")
                                 .rstrip(b"\r\n")])[1]
                for item in ("ENVELOPE", "BODYSTRUCTURE", "BODY"):
                    assert got[k + 1][item] == ref[item], (name, item)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    # BODY[] is the octets appended; sections and partials
    for k, (name, data) in enumerate(msgs, 1):
        lines, tagged = c.raw(f"FETCH {k} (BODY.PEEK[] BODY.PEEK[HEADER] BODY.PEEK[TEXT] "
                              f"BODY.PEEK[HEADER.FIELDS (Subject Message-ID)] BODY.PEEK[]<5.20> "
                              f"BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[HEADER.FIELDS.NOT (Subject)])")
        assert b" OK" in tagged, (name, tagged)
        item = fetch_map(lines)[k]
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert item["BODY[]"] == data, name
        if sep:
            assert item["BODY[HEADER]"] == head + sep, name
            assert item["BODY[TEXT]"] == rest, name
        else:
            continue   # a header without a blank line: test_imap_mime.py covers its sections
        assert item["BODY[]<5>"] == data[5:25], name
        fields = [l for l in re.findall(rb"(?m)^(?:Subject|Message-ID):.*\r\n(?:[ \t].*\r\n)*",
                                        head + b"\r\n", re.I)]
        assert item["BODY[HEADER.FIELDS (SUBJECT MESSAGE-ID)]"] == b"".join(fields) + b"\r\n", name
        assert not re.search(rb"(?mi)^Subject:", item["BODY[HEADER.FIELDS.NOT (SUBJECT)]"]), name
    # the same through UID FETCH, the macros, and BINARY where offered
    lines, tagged = c.raw(f"UID FETCH {uids[0]}:{uids[-1]} (FLAGS)")
    assert b" OK" in tagged and len(fetch_map(lines)) == len(msgs)
    assert all(int(v["UID"]) in uids for v in fetch_map(lines).values()), "UID FETCH includes UID"
    for macro, want in (("FAST", {"FLAGS", "INTERNALDATE", "RFC822.SIZE"}),
                        ("ALL", {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"}),
                        ("FULL", {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"})):
        lines, tagged = c.raw(f"FETCH 1 {macro}")
        assert b" OK" in tagged and want <= set(fetch_map(lines)[1]), (macro, lines)
    # RFC822.SIZE of the last, in a sequence set with '*' and ranges given backwards
    lines, tagged = c.raw(f"FETCH *:{len(msgs) - 1} (RFC822.SIZE)")
    assert b" OK" in tagged and set(fetch_map(lines)) == {len(msgs) - 1, len(msgs)}
    # out-of-range sequence numbers are BAD (RFC 9051 section 6.4.5)
    lines, tagged = c.raw(f"FETCH {len(msgs) + 5} FLAGS")
    assert re.match(rb"\S+ (BAD|NO) ", tagged), tagged
    # a UID FETCH of UIDs that do not exist answers nothing and OK
    lines, tagged = c.raw(f"UID FETCH {uidnext + 100}:{uidnext + 200} FLAGS")
    assert b" OK" in tagged and not untagged(lines, "FETCH") or all(b"FETCH" not in l for l in lines)

    # BODY[] without PEEK sets \Seen, and FETCH says so
    lines, tagged = c.raw("FETCH 2 (BODY[TEXT])")
    assert b" OK" in tagged
    lines, tagged = c.raw("FETCH 2 (FLAGS)")
    assert b"\\Seen" in fetch_map(lines)[2]["FLAGS"]
    assert b" OK" in c.raw("UNSELECT")[1]

    # EXAMINE: READ-ONLY, BODY[] does not set \Seen, STORE is refused
    c.send(b"e1 EXAMINE " + box.encode() + b"\r\n")
    lines, tagged = c.read_until(b"e1")
    assert re.match(rb"e1 OK \[READ-ONLY\]", tagged), tagged
    c.raw("FETCH 3 (BODY[])")
    lines, tagged = c.raw("FETCH 3 (FLAGS)")
    assert b"\\Seen" not in fetch_map(lines)[3]["FLAGS"]
    lines, tagged = c.raw("STORE 3 +FLAGS (\\Seen)")
    # refused, or ignored (Dovecot says OK and changes nothing)
    assert re.match(rb"\S+ (NO|BAD|OK) ", tagged), tagged
    lines, tagged = c.raw("FETCH 3 (FLAGS)")
    assert b"\\Seen" not in fetch_map(lines)[3]["FLAGS"]
    assert b" OK" in c.raw("CLOSE")[1]   # CLOSE of an EXAMINEd mailbox expunges nothing
    c.select_count(box)
    assert c.exists == len(msgs)
    c.logout()


@pytest.mark.parametrize("mode", MODES)
def test_smtp_delivery_seen_byte_exact(target, mode):
    """Messages delivered through SMTP: BODY[] and RFC822.SIZE are the stored octets exactly,
    including a 2 MB one and lines that SMTP dot-stuffs."""
    user = target.user()
    sent = [text_message("small"), text_message("dots", big_text(30000, 3)),
            text_message("two megabytes", big_text(2 * 1024 * 1024, 5)),
            text_message("empty body", b"")]
    stored = target.deliver(user, sent)
    c = connect(target, mode, user)
    c.select_count()
    c.wait_exists(len(sent))
    lines, tagged = c.raw("FETCH 1:* (RFC822.SIZE BODY.PEEK[] ENVELOPE)")
    assert b" OK" in tagged
    got = fetch_map(lines)
    # sequence order is UID order, which is delivery order only for deliveries shorter than the
    # server's settle delay (a longer one gets the next UID after it ends: docs/imap.md)
    by_id = {message_id(v["BODY[]"]): (n, v) for n, v in got.items()}
    assert sorted(by_id) == sorted(message_id(m) for m in sent)
    for st in stored:
        n, v = by_id[message_id(st)]
        assert v["BODY[]"] == st and int(v["RFC822.SIZE"]) == len(st)
    seq, v = by_id[message_id(sent[2])]
    assert b'"two megabytes"' in v["ENVELOPE"]
    # the 2 MB message in pieces: <partial> ranges cover it exactly
    size = len(stored[2])
    pieces = []
    for start in range(0, size, 700000):
        lines, tagged = c.raw(f"FETCH {seq} (BODY.PEEK[]<{start}.700000>)")
        pieces.append(fetch_map(lines)[seq][f"BODY[]<{start}>"])
    assert b"".join(pieces) == stored[2]
    lines, tagged = c.raw(f"FETCH {seq} (BODY.PEEK[]<{size + 10}.5>)")
    assert fetch_map(lines)[seq][f"BODY[]<{size + 10}>"] == b""
    c.logout()


# ---- STORE, COPY, MOVE, EXPUNGE, UID EXPUNGE, CLOSE, UNSELECT -----------------------------------

def filled(target, mode, n, box=None):
    """A session of a new user with N messages APPENDed to BOX (a new one) and selected; (c, box, uids)."""
    c = new_session(target, mode)
    box = box or unique("B")
    ok(c.create(box))
    for k in range(n):
        ok(c.append(box, None, None, text_message(f"message {k}", b"Body %d.\r\n" % k)))
    select_when(c, box, n)
    lines, _ = c.raw("FETCH 1:* (UID)")
    uids = [int(v["UID"]) for _, v in sorted(fetch_map(lines).items())]
    return c, box, uids


def select_when(c, box, n, readonly=False, timeout=30):
    """SELECT (or EXAMINE) BOX until it has N messages: what a client APPENDed shows once the
    server has given it a UID, which cassmail-imapd does after its settle delay (docs/imap.md);
    the tagged reply and the untagged lines of the last SELECT."""
    cmd = "EXAMINE" if readonly else "SELECT"

    def selected():
        lines, tagged = c.raw(f"{cmd} {box}")
        assert b" OK" in tagged, tagged
        return c.exists >= n and (lines, tagged)
    out = wait_for(selected, timeout=timeout, step=0.3, what=f"{n} messages in {box}")
    assert c.exists == n, c.exists
    c.state = "SELECTED"
    return out


def flags_of(c, spec="1:*", uid=False):
    lines, tagged = c.raw(f"{'UID ' if uid else ''}FETCH {spec} (FLAGS UID)")
    assert b" OK" in tagged, tagged
    return {int(v["UID"]): set(v["FLAGS"].strip(b"()").split()) - {b"\\Recent"}
            for v in fetch_map(lines).values()}


@pytest.mark.parametrize("mode", MODES)
def test_store_system_flags_and_keywords(target, mode):
    c, box, uids = filled(target, mode, 4)
    lines, tagged = c.raw("STORE 1 +FLAGS (\\Flagged \\Answered)")
    assert b" OK" in tagged
    assert set(fetch_map(lines)[1]["FLAGS"].strip(b"()").split()) >= {b"\\Flagged", b"\\Answered"}
    lines, tagged = c.raw("STORE 1 -FLAGS.SILENT (\\Answered)")
    assert b" OK" in tagged and not untagged(lines, "1")   # nothing echoed... for this session
    assert not [l for l in lines if re.match(rb"\* 1 FETCH", l)], lines
    ok(c.uid("STORE", f"{uids[1]}", "FLAGS", "(\\Seen $Label1 Custom_Keyword)"))
    ok(c.store("3:4", "+FLAGS", "(\\Draft \\Deleted)"))
    f = flags_of(c)
    assert f[uids[0]] == {b"\\Flagged"}
    assert f[uids[1]] == {b"\\Seen", b"$Label1", b"Custom_Keyword"}
    assert f[uids[2]] == f[uids[3]] == {b"\\Draft", b"\\Deleted"}
    # keywords are announced in FLAGS / PERMANENTFLAGS
    lines, tagged = c.raw(f"SELECT {box}")
    assert any(b"$Label1" in l for l in untagged(lines, "FLAGS")), lines
    assert any(b"\\*" in l for l in lines if b"PERMANENTFLAGS" in l), lines
    # FLAGS replaces; -FLAGS of a flag not set is fine
    ok(c.store("2", "FLAGS", "(\\Answered)"))
    ok(c.store("1", "-FLAGS", "(\\Seen)"))
    f = flags_of(c)
    assert f[uids[1]] == {b"\\Answered"} and f[uids[0]] == {b"\\Flagged"}
    # another session sees the change (after its NOOP or on FETCH), and a change it makes is seen here
    other = connect(target, mode, c.user)
    other.select_count(box)
    assert flags_of(other) == f
    ok(other.store("4", "-FLAGS", "(\\Deleted)"))
    wait_for(lambda: c.raw("NOOP") and flags_of(c)[uids[3]] == {b"\\Draft"}, timeout=10,
             what="a flag change seen")
    # \Recent cannot be stored; bad flag syntax is BAD
    lines, tagged = c.raw("STORE 1 +FLAGS (\\Recent)")
    assert re.match(rb"\S+ (BAD|NO|OK) ", tagged)
    lines, tagged = c.raw("STORE 1 +FLAGS (\\NoSuchSystemFlag)")
    assert re.match(rb"\S+ (BAD|NO) ", tagged), tagged
    lines, tagged = c.raw("STORE 1 +FLAGS (unbalanced")
    assert re.match(rb"\S+ BAD ", tagged), tagged
    other.logout()
    c.logout()


@pytest.mark.parametrize("mode", MODES)
def test_copy_move_expunge_uid_expunge_close_unselect(target, mode):
    c, box, uids = filled(target, mode, 6)
    dest = unique("D")
    ok(c.create(dest))
    # COPY keeps the source; the copies carry the flags; COPYUID where UIDPLUS is offered
    ok(c.store("1", "+FLAGS", "(\\Flagged)"))
    lines, tagged = c.raw(f"COPY 1:2 {dest}")
    assert b" OK" in tagged, tagged
    # COPYUID where the new UIDs are known at once (cassmail-imapd's come with the next seal)
    assert b"COPYUID" not in tagged or re.search(rb"\[COPYUID \d+ [\d:,]+ [\d:,]+\]", tagged), tagged
    assert c.raw(f"COPY 1 NoSuchBox")[1].split()[1] == b"NO"
    wait_for(lambda: status_values(c.status(dest, "(MESSAGES)")[1][0])["MESSAGES"] == 2, timeout=30,
             step=0.3, what="the copies counted by STATUS")
    # MOVE: EXPUNGE (or VANISHED) here, the message there
    lines, tagged = c.raw("MOVE 3 " + dest)
    assert b" OK" in tagged, tagged
    assert untagged(lines, "3") == [b"* 3 EXPUNGE"] or any(b"VANISHED" in l for l in lines), lines
    assert sorted(flags_of(c)) == [uids[0], uids[1], uids[3], uids[4], uids[5]]
    lines, tagged = c.raw(f"UID MOVE {uids[5]} {dest}")
    assert b" OK" in tagged and untagged(lines, "5") == [b"* 5 EXPUNGE"], lines

    # UID EXPUNGE removes only the given \Deleted messages
    ok(c.store("1:*", "+FLAGS", "(\\Deleted)"))
    lines, tagged = c.raw(f"UID EXPUNGE {uids[1]}")
    assert b" OK" in tagged and untagged(lines, "2") == [b"* 2 EXPUNGE"], lines
    assert sorted(flags_of(c)) == [uids[0], uids[3], uids[4]]
    # EXPUNGE removes the rest with \Deleted: descending sequence numbers or the same one
    ok(c.store("2", "-FLAGS", "(\\Deleted)"))
    lines, tagged = c.raw("EXPUNGE")
    assert b" OK" in tagged
    assert [l for l in lines if l.endswith(b" EXPUNGE")] in ([b"* 3 EXPUNGE", b"* 1 EXPUNGE"],
                                                              [b"* 1 EXPUNGE", b"* 2 EXPUNGE"]), lines
    assert sorted(flags_of(c)) == [uids[3]]
    # the expunged UIDs are not given again: APPEND takes a UID above all of them
    ok(c.append(box, None, None, text_message("after expunge")))
    c.wait_exists(2)
    assert sorted(flags_of(c))[1] > uids[5]
    # UNSELECT does not expunge, CLOSE does (silently)
    ok(c.store("1:*", "+FLAGS", "(\\Deleted)"))
    ok(c.unselect())
    select_when(c, box, 2)
    c.send(b"c1 CLOSE\r\n")
    lines, tagged = c.read_until(b"c1")
    assert tagged.startswith(b"c1 OK") and not [l for l in lines if b"EXPUNGE" in l], lines
    assert c.select_count(box) == 0
    # the destination has the copies and the moved ones, one \Flagged copy
    select_when(c, dest, 4)
    f = flags_of(c)
    assert len(f) == 4 and sum(b"\\Flagged" in v for v in f.values()) == 1, f
    c.logout()


# ---- SEARCH, ESEARCH --------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_search_keys_and_esearch(target, mode):
    c = new_session(target, mode)
    box = unique("S")
    ok(c.create(box))
    day = 86400
    base = datetime.datetime(2023, 6, 10, 12, 0, tzinfo=datetime.timezone.utc).timestamp()
    specs = [  # (from, to, subject, extra header, body, size padding, days after base)
        ("Alice <alice@one.example>", "bob@example.com", "Quarterly report", b"X-Tag: blue\r\n", b"numbers inside", 0, 0),
        ("Carol <carol@two.example>", "dave@example.com", "Lunch", b"", b"pizza today", 5000, 1),
        ("Alice <alice@one.example>", "erin@example.com", "Re: Lunch", b"X-Tag: red\r\n", b"no pizza", 0, 2),
        ("Frank <frank@three.example>", "bob@example.com", "Report draft", b"", b"words " * 10, 20000, 3),
    ]
    for k, (frm, to, subj, extra, body, pad, days) in enumerate(specs):
        text = body + b"\r\n" + (b"y" * 70 + b"\r\n") * (pad // 72)
        date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(base + days * day))
        ok(c.append(box, None, None, text_message(subj, text, sender=frm, to=to, extra=extra, date=date)))
    select_when(c, box, len(specs))
    ok(c.store("1", "+FLAGS", "(\\Seen \\Flagged)"))
    ok(c.store("2", "+FLAGS", "(\\Seen)"))
    ok(c.store("4", "+FLAGS", "(\\Deleted)"))
    uid_of = {n: int(v["UID"]) for n, v in fetch_map(c.raw("FETCH 1:* UID")[0]).items()}

    def search(criteria, uid=False):
        typ, data = (c.uid("SEARCH", criteria) if uid else c.search(None, criteria))
        assert typ == "OK", (criteria, data)
        return sorted(int(x) for x in data[0].split())

    assert search("ALL") == [1, 2, 3, 4]
    assert search("SEEN") == [1, 2] and search("UNSEEN") == [3, 4]
    assert search("FLAGGED") == [1] and search("UNFLAGGED") == [2, 3, 4]
    assert search("DELETED") == [4] and search("UNDELETED") == [1, 2, 3]
    assert search('FROM "alice"') == [1, 3] and search("FROM two.example") == [2]
    assert search('TO "bob@example.com"') == [1, 4]
    assert search('SUBJECT "lunch"') == [2, 3] and search("SUBJECT REPORT") == [1, 4]
    assert search('HEADER X-Tag "red"') == [3] and search('HEADER X-Tag ""') == [1, 3]
    assert search('BODY "pizza"') == [2, 3] and search('TEXT "numbers"') == [1]
    assert search('TEXT "Quarterly"') == [1]       # TEXT covers the header
    # SINCE/BEFORE/ON compare INTERNALDATE (today: the messages were just appended); the
    # SENT* keys the Date: field, where the server has them
    def day_text(t):
        return time.strftime("%d-%b-%Y", time.gmtime(t))
    now = time.time()
    assert search(f"SINCE {day_text(now - day)}") == [1, 2, 3, 4] and search(f"SINCE {day_text(now + day)}") == []
    assert search(f"BEFORE {day_text(now + day)}") == [1, 2, 3, 4] and search(f"BEFORE {day_text(now - day)}") == []
    assert search(f"ON {day_text(now - 2 * day)}") == []
    lines, tagged = c.raw("SEARCH SENTSINCE 12-Jun-2023")
    if b" OK" in tagged:
        assert untagged(lines, "SEARCH") == [b"* SEARCH 3 4"], lines
    assert search("LARGER 10000") == [4] and search("SMALLER 1000") == [1, 3]
    assert search(f"UID {uid_of[2]}:{uid_of[3]}") == [2, 3]
    assert search("2:3") == [2, 3] and search("*") == [4]
    assert search("NOT SEEN") == [3, 4] and search('OR FLAGGED SUBJECT "lunch"') == [1, 2, 3]
    assert search('SEEN SUBJECT "lunch"') == [2]
    assert search("FLAGGED", uid=True) == [uid_of[1]]
    assert search('CHARSET UTF-8 SUBJECT "report"') == [1, 4]
    lines, tagged = c.raw("SEARCH NOSUCHKEY")
    assert re.match(rb"\S+ BAD ", tagged), tagged
    # ESEARCH (RFC 4731): RETURN options
    lines, tagged = c.raw("SEARCH RETURN (MIN MAX COUNT ALL) UNSEEN")
    assert b" OK" in tagged, tagged
    (es,) = untagged(lines, "ESEARCH")
    assert re.search(rb"\(TAG \"[^\"]+\"\)", es), es
    words = es.split()
    vals = {words[i].upper(): words[i + 1] for i in range(len(words) - 1)}
    assert vals[b"MIN"] == b"3" and vals[b"MAX"] == b"4" and vals[b"COUNT"] == b"2"
    assert vals[b"ALL"] in (b"3:4", b"3,4")
    lines, tagged = c.raw("UID SEARCH RETURN (COUNT) ALL")
    (es,) = untagged(lines, "ESEARCH")
    assert b" UID" in es and b"COUNT 4" in es, es
    lines, tagged = c.raw('SEARCH RETURN () SUBJECT "nothing like it"')
    assert b" OK" in tagged
    (es,) = untagged(lines, "ESEARCH")
    assert b"ALL" not in es
    c.logout()


# ---- IDLE -------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_idle_reports_new_mail_and_expunges(target, mode):
    user = target.user()
    target.deliver(user, [text_message("before idle")])
    c = connect(target, mode, user)
    c.select_count()
    c.wait_exists(1)
    c.send(b"i1 IDLE\r\n")
    assert c._get_line().startswith(b"+")
    target.deliver(user, [text_message("during idle")])
    c.sock.settimeout(30)
    line = c._get_line()
    while not line.endswith(b"EXISTS"):
        assert line.startswith(b"* "), line
        line = c._get_line()
    assert line == b"* 2 EXISTS"
    # an expunge by another session shows as EXPUNGE during IDLE
    other = connect(target, mode, user)
    other.select_count()
    ok(other.store("1", "+FLAGS", "(\\Deleted)"))
    ok(other.expunge())
    line = c._get_line()
    while line != b"* 1 EXPUNGE":
        assert line.startswith(b"* "), line
        line = c._get_line()
    c.send(b"DONE\r\n")
    lines, tagged = c.read_until(b"i1")
    assert tagged.startswith(b"i1 OK"), tagged
    ok(c.noop())
    other.logout()
    # DONE must be exactly that: anything else ends IDLE with BAD
    c.send(b"i2 IDLE\r\n")
    assert c._get_line().startswith(b"+")
    c.send(b"NOT DONE\r\n")
    lines, tagged = c.read_until(b"i2")
    assert re.match(rb"i2 (BAD|OK)", tagged) or any(b"BAD" in l for l in lines), (lines, tagged)
    c.logout()


# ---- literals, LITERAL+ ----------------------------------------------------------------------

def test_literals_synchronizing_and_nonsynchronizing(target):
    user = target.user()
    r = RawImap(target.imap_port)
    assert r.greeting.startswith(b"* OK")
    # LOGIN with both arguments as synchronizing literals
    r.send(f"l1 LOGIN {{{len(user)}}}\r\n")
    assert r.line().startswith(b"+")
    r.send(f"{user} {{{len(PASSWORD)}}}\r\n")
    assert r.line().startswith(b"+")
    r.send(PASSWORD + "\r\n")
    assert r.until(b"l1")[-1].startswith(b"l1 OK")
    # CREATE with a non-synchronizing literal (LITERAL+): no continuation is sent
    box = unique("Lit")
    r.send(f"c1 CREATE {{{len(box)}+}}\r\n{box}\r\n")
    assert r.until(b"c1")[-1].startswith(b"c1 OK")
    # APPEND with LITERAL+, the message holding CRLFs, "{5}" and a NUL-free 8-bit line
    msg = b"Subject: literal {5}\r\nX: \xc3\xa9t\xc3\xa9\r\n\r\nline one\r\n{3}\r\n)\r\n"
    r.send(b"a1 APPEND " + box.encode() + b" (\\Seen) {%d+}\r\n" % len(msg) + msg + b"\r\n")
    out = r.until(b"a1")
    assert out[-1].startswith(b"a1 OK"), out
    # APPEND with a synchronizing literal: the message only after the continuation
    msg2 = b"Subject: sync\r\n\r\nbody\r\n"
    r.send(b"a2 APPEND " + box.encode() + b" {%d}\r\n" % len(msg2))
    assert r.line().startswith(b"+")
    r.send(msg2 + b"\r\n")
    assert r.until(b"a2")[-1].startswith(b"a2 OK")
    # (once the server shows both: it gives them UIDs after its settle delay)
    wait_for(lambda: any(l == b"* 2 EXISTS" for l in r.cmd("s0", f"SELECT {box}")), timeout=30, step=0.3,
             what="the appended messages")
    # two commands in one write (pipelined), answered in order
    r.send(f"s1 SELECT {box}\r\nf1 FETCH 1:2 (BODY.PEEK[])\r\n")
    assert r.until(b"s1")[-1].startswith(b"s1 OK")
    fetched = []
    while True:
        line = r.line()
        if line.startswith(b"f1 "):
            assert line.startswith(b"f1 OK")
            break
        m = re.search(rb"\{(\d+)\}$", line)
        if m:
            n = int(m.group(1))
            while len(r.buf) < n:
                r.buf += r.sock.recv(65536)
            fetched.append(r.buf[:n])
            r.buf = r.buf[n:]
    assert fetched == [msg, msg2]
    # a literal where an atom is enough: a mailbox name in STATUS
    r.send(f"t1 STATUS {{{len(box)}+}}\r\n{box} (MESSAGES)\r\n")
    out = r.until(b"t1")
    assert out[-1].startswith(b"t1 OK") and any(b"MESSAGES 2" in l for l in out), out
    r.send("o1 LOGOUT\r\n")
    out = r.until(b"o1")
    assert out[0].startswith(b"* BYE") and out[-1].startswith(b"o1 OK")
    r.close()


# ---- POP3 and IMAP see each other's deletions ---------------------------------------------------

def test_pop3_dele_seen_by_imap_and_imap_expunge_seen_by_pop3(target):
    user = target.user()
    sent = [text_message(f"shared {k}", b"Body %d.\r\n" % k) for k in range(4)]
    stored = target.deliver(user, sent)
    c = connect(target, "plain", user)
    c.select_count()
    c.wait_exists(4)
    # POP3 DELE of the first message: IMAP reports "* 1 EXPUNGE"
    p = target.pop3(user)
    assert p.stat()[0] == 4
    first = b"".join(l + b"\r\n" for l in p.retr(1)[1])
    assert message_id(first) == message_id(sent[0])
    p.dele(1)
    p.quit()

    def expunged():
        lines, tagged = c.raw("NOOP")
        return any(l == b"* 1 EXPUNGE" for l in lines)
    wait_for(expunged, timeout=20, step=0.3, what="IMAP to see the POP3 DELE")
    lines, _ = c.raw("FETCH 1:* (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    assert len(fetch_map(lines)) == 3
    # IMAP EXPUNGE of the (now) second message: POP3 no longer lists it
    ok(c.store("2", "+FLAGS", "(\\Deleted)"))
    ok(c.expunge())
    p = target.pop3(user)
    count, _ = p.stat()
    assert count == 2
    left = [message_id(b"".join(l + b"\r\n" for l in p.retr(i)[1])) for i in (1, 2)]
    assert left == [message_id(sent[1]), message_id(sent[3])]
    p.quit()
    # an IMAP APPEND is a message like any other for POP3: listed last, octet for octet
    appended = text_message("appended for pop3", big_text(5000, 2))
    ok(c.append("INBOX", None, None, appended))
    p = target.pop3(user)
    assert p.stat()[0] == 3
    assert b"".join(l + b"\r\n" for l in p.retr(3)[1]) == appended
    p.quit()
    c.logout()


# ---- hostile input ------------------------------------------------------------------------------

class Hostile:
    """A raw session that sends bad input line by line: each must get BAD or NO (a BYE, or the
    connection closed, only after some bad commands: then it logs in again and goes on)."""

    def __init__(self, target, user):
        self.target, self.user, self.closed = target, user, 0
        self.open(login=False)

    def open(self, login):
        self.r = RawImap(self.target.imap_port)
        assert self.r.greeting.startswith(b"* OK"), self.r.greeting
        if login:
            self.r.send(f"l1 LOGIN {self.user} \"{PASSWORD}\"\r\n")
            assert self.r.until(b"l1")[-1].startswith(b"l1 OK")

    def send(self, data, login):
        self.r.send(data)
        lines = self.r.until(b"h1") if data.startswith(b"h1 ") else [self.r.line()]
        last = lines[-1]
        if last == b"" or last.startswith(b"* BYE"):
            self.closed += 1
            self.r.close()
            self.open(login)
            return
        assert re.match(rb"\S+ (BAD|NO) ", last), (data, lines)


def test_hostile_input_gets_bad_or_no_and_the_server_keeps_serving(target):
    user = target.user()
    h = Hostile(target, user)
    for text in (b"\x00\x01\x02\xff\xfe garbage\r\n", b"no-tag-only\r\n", b"h1 NOSUCHCOMMAND arg\r\n",
                 b"h1 LOGIN\r\n", b"h1 LOGIN a b c d\r\n", b"h1 SELECT INBOX\r\n",
                 b'"quoted" NOOP\r\n', b'h1 LOGIN "unterminated\r\n', b"h1 FETCH 1 FLAGS\r\n"):
        h.send(text, login=False)
    assert h.closed <= 3, "the session ends only after repeated bad commands"
    h.r.close()
    h = Hostile(target, user)
    h.open(login=True)
    # after login: malformed sequence sets, parentheses, sections, dates, arguments
    for text in ("FETCH 0:x FLAGS", "FETCH 1 (FLAGS", "FETCH 1 BODY[1.2.3.", "SELECT", "SEARCH SINCE 99-Foo-2020",
                 "STORE 1 +FLAGS", "UID", "LIST", "STATUS INBOX (NOSUCHITEM)", "CREATE \"\"",
                 "APPEND", "SEARCH (((((((((((((((((((((((((((((((ALL", "SELECT \"a\x01b\"", "FETCH"):
        h.send(f"h1 {text}\r\n".encode(), login=True)
    assert h.closed <= 3, "the session ends only after repeated bad commands"
    r = h.r
    assert r.cmd("n2", "NOOP")[-1].startswith(b"n2 OK")
    # a huge synchronizing literal announced: refused at once (the server does not wait for
    # 1 TB), the connection goes on or ends, but nothing hangs (our private Dovecot has no size
    # limit: it would take the octets)
    if target.name == "cassmail":
        r.send(b"a1 APPEND INBOX {1099511627776}\r\n")
        line = r.line()
        assert re.match(rb"(a1|\*) (BAD|NO|BYE) ", line), line
        if line:
            assert r.cmd("n3", "NOOP")[-1].startswith(b"n3 OK")
        r.close()
        # a non-synchronizing literal above [smtp] max_message_size: the client sends it anyway
        # (RFC 7888), the server drops it and says NO [TOOBIG], and the session goes on
        r = RawImap(target.imap_port)
        r.send(f"l2 LOGIN {user} \"{PASSWORD}\"\r\n".encode())
        assert r.until(b"l2")[-1].startswith(b"l2 OK")
        n = 60 * 1024 * 1024
        r.send(b"a2 APPEND INBOX {%d+}\r\n" % n)
        chunk = b"x" * 1024 * 1024
        try:
            for _ in range(n // len(chunk)):
                r.send(chunk)
            r.send(b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        out = r.until(b"a2")
        assert out[-1] == b"" or re.match(rb"(a2|\*) (BAD|NO|BYE) ", out[-1]), out
        if out[-1].startswith(b"a2 "):
            assert b"TOOBIG" in out[-1].upper(), out
            assert r.cmd("n4", "NOOP")[-1].startswith(b"n4 OK")
        r.close()
        # a 1 TB non-synchronizing literal, then the client gives up: the session ends with it
        ends = target.imapd.session_end_count()
        r = RawImap(target.imap_port)
        r.send(f"l3 LOGIN {user} \"{PASSWORD}\"\r\n".encode())
        assert r.until(b"l3")[-1].startswith(b"l3 OK")
        r.send(b"a3 APPEND INBOX {1099511627776+}\r\n" + b"y" * 100000)
        r.close()
        wait_for(lambda: target.imapd.session_end_count() > ends, timeout=20,
                 what="the session of the abandoned literal to end")
    # an over-long line (1 MiB without CRLF): BAD or BYE, never a hang or a crash
    r = RawImap(target.imap_port)
    try:
        r.send(b"x1 NOOP " + b"a" * (1024 * 1024) + b"\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    line = r.line()
    assert line == b"" or re.match(rb"(\*|x1) (BAD|NO|BYE) ", line), line[:200]
    r.close()
    # the server still serves: a fresh session logs in and works
    c = connect(target, "plain", user)
    ok(c.noop())
    assert c.select_count() >= 0
    c.logout()


def test_append_of_a_big_message_keeps_memory_bounded(target):
    """A 40 MB APPEND (below [smtp] max_message_size, 50 MiB) is stored whole, and the session
    that took it stays under 64 MiB resident (its "session end ... vmhwm_kb" log line)."""
    user = target.user()
    msg = text_message("forty megabytes", big_text(40 * 1024 * 1024, 11))
    c = connect(target, "plain", user)
    ok(c.append("INBOX", None, None, msg))
    c.select_count()
    c.wait_exists(1)
    lines, tagged = c.raw("FETCH 1 (RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])", timeout=120)
    item = fetch_map(lines)[1]
    assert int(item["RFC822.SIZE"]) == len(msg)
    assert message_id(item["BODY[HEADER.FIELDS (MESSAGE-ID)]"]) == message_id(msg)
    # the whole message back, checked by length and tail
    lines, tagged = c.raw("FETCH 1 (BODY.PEEK[]<0.41943040> BODY.PEEK[]<41900000.100000>)", timeout=300)
    item = fetch_map(lines)[1]
    assert item["BODY[]<0>"] == msg[:41943040]
    assert item["BODY[]<41900000>"] == msg[41900000:42000000]
    # above [smtp] max_message_size: NO [TOOBIG] (or a refusal of the literal), not a dead
    # server (our private Dovecot has no limit)
    if target.name == "cassmail":
        c.send(b"t1 APPEND INBOX {%d}\r\n" % (60 * 1024 * 1024))
        line = c._get_line()
        assert re.match(rb"(t1|\*) (NO|BAD)", line), line
    c.logout()
    if target.name == "cassmail":
        ends = target.imapd.wait_session_ends(1, user=user)
        assert all(int(e["vmhwm_kb"]) <= VMHWM_MAX_KB for e in ends), ends


# ---- real clients: mbsync, curl, mutt ----------------------------------------------------------

def mbsync_rc(path, target, user, mode, near):
    tls = ("SSLType STARTTLS\nCertificateFile %s\n" % target.cert) if mode == "starttls" else "SSLType None\n"
    path.write_text(f"""\
IMAPAccount test
Host 127.0.0.1
Port {target.imap_port}
User {user}
Pass "{PASSWORD}"
AuthMechs LOGIN PLAIN
{tls}
IMAPStore far
Account test

MaildirStore near
Path {near}/
Inbox {near}/INBOX
SubFolders Verbatim

Channel box
Far :far:INBOX
Near :near:
Create Near
Expunge Both
SyncState *
Sync All
""")
    return path


def run_mbsync(rc, home):
    p = subprocess.run(["mbsync", "-c", str(rc), "-V", "box"], capture_output=True, timeout=180,
                       env={**os.environ, "HOME": str(home)})
    assert p.returncode == 0, (p.stdout + p.stderr).decode(errors="replace")[-4000:]
    return p


def maildir_messages(folder):
    """{Message-ID: (path, octets)} of a Maildir's cur/ and new/."""
    out = {}
    for sub in ("cur", "new"):
        for f in (folder / sub).iterdir():
            data = f.read_bytes()
            out[message_id(data)] = (f, data)
    return out


@pytest.mark.parametrize("mode", MODES)
def test_mbsync_syncs_to_maildir_and_flag_changes_back(target, mode, tmp_path):
    user = target.user()
    sent = [text_message("mbsync one"), text_message("mbsync two", big_text(100000, 7)),
            text_message("mbsync three")]
    stored = target.deliver(user, sent)
    c = connect(target, mode, user)
    c.select_count()
    c.wait_exists(3)
    ok(c.store("3", "+FLAGS", "(\\Flagged)"))
    near = tmp_path / "mail"
    near.mkdir()
    rc = mbsync_rc(tmp_path / "mbsyncrc", target, user, mode, near)
    run_mbsync(rc, tmp_path)
    local = maildir_messages(near / "INBOX")
    assert sorted(local) == sorted(message_id(m) for m in sent)
    for s in stored:
        # mbsync writes Maildir files with LF line ends
        # and may add its X-TUID: field (the one it finds its uploads by)
        mine = re.sub(rb"(?m)^X-TUID: .*\n", b"", local[message_id(s)][1])
        assert mine == s.replace(b"\r\n", b"\n"), "mbsync's copy differs from the stored octets"
    assert local[message_id(sent[2])][0].name.endswith(",F") or ":2,F" in local[message_id(sent[2])][0].name
    # flag changes back: seen and flagged locally, a local deletion, a new local message
    f0 = local[message_id(sent[0])][0]
    f0.rename(f0.parent.parent / "cur" / (f0.name.split(":2,")[0] + ":2,FS"))
    f1 = local[message_id(sent[1])][0]
    f1.rename(f1.parent.parent / "cur" / (f1.name.split(":2,")[0] + ":2,ST"))
    new = text_message("written locally")
    (near / "INBOX" / "new" / f"{int(time.time())}.local1.test").write_bytes(new)
    run_mbsync(rc, tmp_path)
    c.wait_exists(3)
    lines, _ = c.raw("FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    seen = {message_id(v["BODY[HEADER.FIELDS (MESSAGE-ID)]"]): set(v["FLAGS"].strip(b"()").split())
            for v in fetch_map(lines).values()}
    assert message_id(sent[1]) not in seen, "the message deleted locally is expunged on the server"
    assert {b"\\Seen", b"\\Flagged"} <= seen[message_id(sent[0])]
    assert b"\\Flagged" in seen[message_id(sent[2])]
    assert message_id(new) in seen, "the local message was uploaded (APPEND)"
    # a third run changes nothing and still agrees
    run_mbsync(rc, tmp_path)
    assert sorted(maildir_messages(near / "INBOX")) == sorted(seen)
    c.logout()


def curl(*args, check=True):
    p = subprocess.run(["curl", "-sS", *map(str, args)], capture_output=True, timeout=120)
    if check:
        assert p.returncode == 0, p.stderr.decode()
    return p


@pytest.mark.parametrize("mode", MODES)
def test_curl_fetches_lists_and_examines(target, mode, tmp_path):
    user = target.user()
    sent = [text_message("curl one"), text_message("curl two", big_text(300000, 9))]
    stored = target.deliver(user, sent)
    c = connect(target, "plain", user)
    c.select_count()
    c.wait_exists(2)
    uids = [int(v["UID"]) for _, v in sorted(fetch_map(c.raw("FETCH 1:* UID")[0]).items())]
    c.logout()
    base = f"imap://127.0.0.1:{target.imap_port}"
    opts = ["--ssl-reqd", "--cacert", target.cert] if mode == "starttls" else []
    auth = ["-u", f"{user}:{PASSWORD}"]
    for uid, s in zip(uids, stored):
        out = tmp_path / f"m{uid}"
        curl(*opts, *auth, "-o", out, f"{base}/INBOX;UID={uid}")
        assert out.read_bytes() == s
        # a section
        sect = curl(*opts, *auth, f"{base}/INBOX;UID={uid};SECTION=HEADER.FIELDS%20(SUBJECT)").stdout
        assert sect.strip().lower().startswith(b"subject: curl")
    listing = curl(*opts, *auth, f"{base}/").stdout.decode()
    assert re.search(r'^\* LIST \([^)]*\) (NIL|"[^"]*") "?INBOX"?\r?$', listing, re.M), listing
    assert "outbox" in listing
    ex = curl(*opts, *auth, "-X", "EXAMINE INBOX", f"{base}/").stdout.decode()
    assert re.search(r"^\* 2 EXISTS", ex, re.M), ex
    search = curl(*opts, *auth, "-X", 'SEARCH SUBJECT "curl two"', f"{base}/INBOX").stdout.decode()
    assert re.search(r"^\* SEARCH 2\r?$", search, re.M), search
    bad = curl(*opts, "-u", f"{user}:wrong", f"{base}/INBOX;UID={uids[0]}", check=False)
    assert bad.returncode != 0


def run_mutt(home, args, timeout=90):
    """mutt in a pseudo-terminal (it has no batch mode for reading); its screen output."""
    import pty
    import select
    pid, fd = pty.fork()
    if pid == 0:
        os.environ.update(HOME=str(home), TERM="vt100", LINES="40", COLUMNS="132")
        os.execvp("mutt", ["mutt", *args])
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 1)
            if r:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    break
                if not data:
                    break
                out += data
            pid_done, _ = os.waitpid(pid, os.WNOHANG)
            if pid_done:
                pid = 0
                break
    finally:
        if pid:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)
    return out


@pytest.mark.parametrize("mode", MODES)
def test_mutt_reads_a_message(target, mode, tmp_path):
    user = target.user()
    body = b"The quick brown fox.\r\nA second line for mutt.\r\n"
    sent = [text_message("for mutt", body)]
    stored = target.deliver(user, sent)
    c = connect(target, "plain", user)
    c.select_count()
    c.wait_exists(1)
    c.logout()
    saved = tmp_path / "saved.txt"
    certs = tmp_path / "certs"
    shutil.copy(target.cert, certs)
    rc = tmp_path / "muttrc"
    rc.write_text(f"""\
set imap_user = "{user}"
set imap_pass = "{PASSWORD}"
set imap_authenticators = "plain:login"
set folder = "imap://127.0.0.1:{target.imap_port}/"
set spoolfile = "+INBOX"
set header_cache = ""
set message_cachedir = ""
set certificate_file = "{certs}"
set ssl_starttls = {"yes" if mode == "starttls" else "no"}
set ssl_force_tls = {"yes" if mode == "starttls" else "no"}
set mail_check = 60
set timeout = 5
set wait_key = no
set confirmappend = no
set quit = yes
set move = no
set sort = date-received
""")
    keys = f"<display-message><exit><pipe-message>cat > {saved}<enter><quit>"
    out = run_mutt(tmp_path, ["-n", "-F", str(rc), "-f", f"imap://127.0.0.1:{target.imap_port}/INBOX",
                              "-e", f"push '{keys}'"])
    assert saved.exists(), out.decode(errors="replace")[-3000:]
    got = saved.read_bytes()
    # mutt pipes the message with LF line ends, its own header display rules aside
    assert b"Subject: for mutt" in got and b"The quick brown fox.\nA second line for mutt.\n" in got, got
    # and it marked the message seen on the server (reading sets \Seen)
    c = connect(target, "plain", user)
    c.select_count()
    flags = fetch_map(c.raw("FETCH 1 FLAGS")[0])[1]["FLAGS"]
    assert b"\\Seen" in flags, flags
    c.logout()
