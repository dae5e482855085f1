"""The MIME parser of cassmail-imapd (src/imap/mime.c) against Dovecot's imap on the same messages.

Every message of the seed corpus test/fuzz/corpus/mime goes into a private Dovecot's Maildir
(Debian's dovecot-imapd; its own configuration and folders under the test's tmp_path, run in
preauth mode on a pipe: no port, nothing under /etc/dovecot used) and through build/test/mime-dump,
which prints what the parser makes of it. ENVELOPE, BODYSTRUCTURE and BODY must be the same octet
for octet, and so must BODY[section] for every part and the HEADER, TEXT, MIME and HEADER.FIELDS
sections of the message and of each encapsulated message.

Deliberate differences (see src/imap/mime.c's header comment) are listed in DELIBERATE with what
each of the two says; the test checks they are still exactly those.
"""
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import BUILD, TOP

CORPUS = sorted((TOP / "test" / "fuzz" / "corpus" / "mime").iterdir())
IMAP = "/usr/lib/dovecot/imap"

# message -> [(ours, Dovecot's)]: where the two differ on purpose
DELIBERATE = {
    # RFC 2045 section 5.2: a Content-Type that is not type/subtype means text/plain
    "bad-content-type": [('("text" "plain"', '("text" ""')],
    # the same unfolded Subject, which Dovecot sends as a literal because the field was folded
    "encoded-words": [('"=?UTF-8?Q?Gr=C3=BC=C3=9Fe?= and =?UTF-8?Q?more?="',
                       '{48}\r\n=?UTF-8?Q?Gr=C3=BC=C3=9Fe?= and =?UTF-8?Q?more?=')],
    # blanks around a header value are not part of it
    "groups-and-obsolete": [('"<abc@example.net>")', '"<abc@example.net>  ")')],
    # the line end before a delimiter is the delimiter's (RFC 2046 section 5.1.1), also when
    # it ends an encapsulated message's header: Dovecot counts it in the message/rfc822 part
    "rfc822-base64": [('"base64" 36', '"base64" 38'), ('"7bit" 0 0 NIL NIL NIL NIL) 0 NIL',
                                                       '"7bit" 0 0 NIL NIL NIL NIL) 1 NIL'),
                      ('"7bit" 0 0) 0)', '"7bit" 0 0) 1)')],
    # the same with a blank line before the delimiter: Dovecot leaves it out of the
    # encapsulated header (2.HEADER, as we do) but counts it in the message/rfc822 part
    "blank-line-before-delimiter": [('"7bit" 11 (', '"7bit" 13 ('),
                                    ('NIL NIL NIL NIL) 1 NIL', 'NIL NIL NIL NIL) 2 NIL'),
                                    ('"7bit" 0 0) 1)', '"7bit" 0 0) 2)')],
    "found-delimiter-after-encapsulated-blank-line": [
        ('"7bit" 68 (', '"7bit" 70 ('), ('NIL NIL NIL NIL) 2 NIL', 'NIL NIL NIL NIL) 3 NIL'),
        ('"7bit" 0 0) 2)', '"7bit" 0 0) 3)')],
    "empty-encapsulated-message": [('"7bit" 19 (', '"7bit" 21 ('),
                                   ('NIL NIL NIL NIL) 1 NIL', 'NIL NIL NIL NIL) 2 NIL'),
                                   ('"7bit" 0 0) 1)', '"7bit" 0 0) 2)')],
    # garbage in an address list: an entry for each piece (Dovecot stops at the first)
    "found-address-stray-bracket": [('(NIL NIL "MISSING_MAILBOX" "MISSING_DOMAIN")'
                                     '(NIL NIL "MISSING_MAILBOX" "MISSING_DOMAIN")',
                                     '(NIL NIL "MISSING_MAILBOX" "MISSING_DOMAIN")')],
}
# (message, section) -> why BODY[section] differs on purpose
DELIBERATE_SECTIONS = {
    # the same as rfc822-base64 above
    ("rfc822-base64", "1"): "CRLF before the delimiter",
    ("blank-line-before-delimiter", "2"): "CRLF before the delimiter",
    ("empty-encapsulated-message", "2"): "CRLF before the delimiter",
    ("found-delimiter-after-encapsulated-blank-line", "1"): "CRLF before the delimiter",
    # after a nested multipart's close delimiter the CRLF before the outer delimiter is the
    # outer delimiter's (RFC 2046 section 5.1.1); Dovecot gives it to the nested multipart
    ("mixed-alternative-attachment", "1"): "CRLF before the delimiter",
    # a header without a blank line: only octets of the message are served; Dovecot adds the
    # missing CRLF and blank line
    ("header-only", "HEADER.FIELDS (From Subject Content-Type)"): "no blank line",
}


def dovecot_fetch(workdir, message, items):
    """Dovecot's untagged FETCH response for MESSAGE (bytes) and the fetch ITEMS."""
    d = workdir / "dovecot"
    shutil.rmtree(d, ignore_errors=True)
    for sub in ("cur", "new", "tmp"):
        (d / "mail" / sub).mkdir(parents=True)
    (d / "run").mkdir()
    (d / "mail" / "new" / "1.test:2,").write_bytes(message)
    root = os.getuid() == 0
    uid = 65534 if root else os.getuid()
    gid = 65534 if root else os.getgid()
    (d / "dovecot.conf").write_text(f"""\
base_dir = {d}/run
state_dir = {d}/run
log_path = {d}/dovecot.log
protocols = imap
ssl = no
mail_location = maildir:{d}/mail
mail_uid = {uid}
mail_gid = {gid}
first_valid_uid = {min(uid, 100)}
first_valid_gid = {min(gid, 100)}
""")
    if root:
        subprocess.run(["chown", "-R", f"{uid}:{gid}", str(d)], check=True)
        # Dovecot will not read mail as root
        prefix = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
    else:
        prefix = []
    script = f"a1 SELECT INBOX\r\na2 FETCH 1 ({items})\r\na3 LOGOUT\r\n".encode()
    env = {"USER": "nobody" if root else os.environ.get("USER", "user"), "HOME": str(d),
           "MAIL": f"maildir:{d}/mail", "PATH": os.environ["PATH"]}
    p = subprocess.run(prefix + [IMAP, "-c", str(d / "dovecot.conf")], input=script,
                       capture_output=True, env=env, timeout=60)
    out = p.stdout
    start = out.find(b"* 1 FETCH (")
    end = out.find(b"\r\na2 OK")
    assert start >= 0 and end > start, (p.stdout + p.stderr).decode(errors="replace")
    return out[start:end + 2]


def ours(path, *args):
    p = subprocess.run([str(BUILD / "test" / "mime-dump"), *args, str(path)],
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout


def part_numbers(bodystructure, prefix=""):
    """Part numbers in a BODYSTRUCTURE's text, guessed from its nesting: enough for the corpus."""
    nums = []

    def walk(s, i, prefix):
        # s[i] == "(" starts a body; returns the index after it
        assert s[i] == "("
        i += 1
        if s[i] == "(":   # multipart: bodies then subtype
            n = 0
            while s[i] == "(":
                n += 1
                num = f"{prefix}{n}"
                nums.append(num)
                i = walk(s, i, num + ".")
            return skip(s, i)
        return skip(s, i, prefix, message=s[i:i + 20].lower().startswith('"message" "rfc822"'))

    def skip(s, i, prefix="", message=False):
        depth = 1
        seen = 0
        while depth:
            c = s[i]
            if c == '"':
                i += 1
                while s[i] != '"':
                    i += 2 if s[i] == "\\" else 1
            elif c == "{":
                m = re.match(r"\{(\d+)\}\r\n", s[i:])
                i += m.end() + int(m.group(1)) - 1
            elif c == "(":
                seen += 1
                if message and depth == 1 and seen == 3:   # params, envelope, then the body
                    walk_body = walk(s, i, prefix)
                    i = walk_body
                    continue
                depth += 1
            elif c == ")":
                depth -= 1
            i += 1
        return i

    walk(bodystructure, 0, prefix)
    return nums


@pytest.fixture(scope="module", autouse=True)
def tools():
    if not os.path.exists(IMAP):
        pytest.fail(f"{IMAP} missing: tools/setup installs dovecot-imapd")
    assert (BUILD / "test" / "mime-dump").exists(), "build/test/mime-dump not built (make all)"


@pytest.fixture
def workdir():
    """A folder Dovecot can reach when it drops to nobody (pytest's tmp_path is root's, 0700)."""
    d = tempfile.mkdtemp(prefix="cassmail-mime-dovecot-")
    os.chmod(d, 0o755)
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_envelope_and_bodystructure_as_dovecot(path, workdir):
    message = path.read_bytes()
    theirs = dovecot_fetch(workdir, message, "ENVELOPE BODYSTRUCTURE BODY")
    mine = ours(path)
    for a, b in DELIBERATE.get(path.name, []):
        a, b = a.encode(), b.encode()
        assert a in mine and b in theirs, (mine, theirs)
        mine = mine.replace(a, b)
    assert mine == theirs
    # and the same whatever the chunks
    for chunk in ("1", "7", "4096"):
        assert ours(path, "--chunk", chunk) == ours(path)


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_sections_as_dovecot(path, workdir):
    message = path.read_bytes()
    text = ours(path).decode("utf-8", "surrogateescape")
    bs = text[text.index("BODYSTRUCTURE ") + len("BODYSTRUCTURE "):]
    nums = part_numbers(bs)
    sections = ["", "HEADER", "TEXT", "HEADER.FIELDS (From Subject Content-Type)",
                "HEADER.FIELDS.NOT (From Subject)", "1"]
    for n in nums:
        sections += [n, f"{n}.MIME", f"{n}.HEADER", f"{n}.TEXT", f"{n}.1"]
    sections = list(dict.fromkeys(sections))
    items = " ".join(f"BODY.PEEK[{s}]" for s in sections)
    theirs = dovecot_fetch(workdir, message, items)
    for s in sections:
        key = f"BODY[{s}]".upper().encode()   # Dovecot names header fields in upper case
        i = theirs.upper().find(key + b" ")
        assert i >= 0, (s, theirs)
        rest = theirs[i + len(key) + 1:]
        m = re.match(rb"\{(\d+)\}\r\n", rest)
        if m:
            expect = rest[m.end():m.end() + int(m.group(1))]
        elif rest.startswith(b'""'):
            expect = b""
        elif rest.startswith(b"NIL"):
            expect = None
        else:
            q = re.match(rb'"((?:[^"\\]|\\.)*)"', rest)
            expect = re.sub(rb"\\(.)", rb"\1", q.group(1))
        p = subprocess.run([str(BUILD / "test" / "mime-dump"), "--section", s, str(path)],
                           capture_output=True, timeout=60)
        # Dovecot sends bare LFs as CRLF and NUL as 0x80 (a literal may not hold NUL, RFC 9051
        # section 4.3), as cassmail-imapd must when it sends these ranges
        got = re.sub(rb"(?<!\r)\n", b"\r\n", p.stdout).replace(b"\0", b"\x80")
        if (path.name, s) in DELIBERATE_SECTIONS:
            assert got != expect, (s, got)
            continue
        if expect is None or (expect == b"" and got == b"" ):
            # a part Dovecot has not: we say so too (an error), or return nothing
            assert got == b"", (s, got)
            continue
        assert got == expect, (s, got, expect)
