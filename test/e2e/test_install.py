"""`make install` and the man pages.

`make install PREFIX=... DESTDIR=...` must put the programs, the six man pages, the sample
configuration and the launcher files where an operator expects them, with the launcher files'
paths rewritten for PREFIX; the installed programs must run. The man pages must render without
a single groff warning, describe every key of config/cassmail.conf (which itself must list every
key the configuration parser accepts), and mention every option each program's --help prints.
"""
import os
import re

import pytest

from conftest import BUILD, TOP, run

MAN = TOP / "man"
PAGES = {
    "cassmail-smtpd": MAN / "cassmail-smtpd.8",
    "cassmail-pop3d": MAN / "cassmail-pop3d.8",
    "cassmail-imapd": MAN / "cassmail-imapd.8",
    "cassmail-admin": MAN / "cassmail-admin.8",
    "cassmail-tokens": MAN / "cassmail-tokens.1",
}
CONF_PAGE = MAN / "cassmail.conf.5"
ALL_PAGES = [*PAGES.values(), CONF_PAGE]
PREFIX = "/opt/cassmail"


def balanced_tokens(n):
    return [i * 2**127 // n for i in range(n)]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A tree made by `make install PREFIX=/opt/cassmail DESTDIR=<tmp>` (the default build/)."""
    dest = tmp_path_factory.mktemp("destdir")
    run(["make", "-s", "-C", str(TOP), "install", f"PREFIX={PREFIX}", f"DESTDIR={dest}"],
        timeout=1800)
    return dest


def test_make_install_puts_programs_pages_configuration_and_launchers_in_place(installed):
    root = installed / PREFIX.lstrip("/")
    expected = {
        "sbin/cassmail-smtpd": 0o755, "sbin/cassmail-pop3d": 0o755, "sbin/cassmail-imapd": 0o755,
        "sbin/cassmail-admin": 0o755,
        "bin/cassmail-tokens": 0o755,
        "share/man/man1/cassmail-tokens.1": 0o644, "share/man/man5/cassmail.conf.5": 0o644,
        "share/man/man8/cassmail-smtpd.8": 0o644, "share/man/man8/cassmail-pop3d.8": 0o644,
        "share/man/man8/cassmail-admin.8": 0o644, "share/man/man8/cassmail-imapd.8": 0o644,
        "share/cassmail/cassmail.conf": 0o644, "share/cassmail/cassandra.yaml": 0o644,
        "share/cassmail/inetd.conf": 0o644,
        "share/cassmail/xinetd.d/cassmail-smtp": 0o644, "share/cassmail/xinetd.d/cassmail-pop3": 0o644,
        "share/cassmail/systemd/cassmail-smtp.socket": 0o644,
        "share/cassmail/systemd/cassmail-smtp@.service": 0o644,
        "share/cassmail/systemd/cassmail-pop3.socket": 0o644,
        "share/cassmail/systemd/cassmail-pop3@.service": 0o644,
        "share/cassmail/systemd/cassmail-gc.service": 0o644,
        "share/cassmail/systemd/cassmail-gc.timer": 0o644,
        "share/cassmail/cron.d/cassmail-gc": 0o644,
        # message submission (587) and submission over implicit TLS (465)
        "share/cassmail/xinetd.d/cassmail-submission": 0o644,
        "share/cassmail/xinetd.d/cassmail-submissions": 0o644,
        "share/cassmail/systemd/cassmail-submission.socket": 0o644,
        "share/cassmail/systemd/cassmail-submission@.service": 0o644,
        "share/cassmail/systemd/cassmail-submissions.socket": 0o644,
        "share/cassmail/systemd/cassmail-submissions@.service": 0o644,
        # IMAP (143) and IMAP over implicit TLS (993)
        "share/cassmail/xinetd.d/cassmail-imap": 0o644,
        "share/cassmail/xinetd.d/cassmail-imaps": 0o644,
        "share/cassmail/systemd/cassmail-imap.socket": 0o644,
        "share/cassmail/systemd/cassmail-imap@.service": 0o644,
        "share/cassmail/systemd/cassmail-imaps.socket": 0o644,
        "share/cassmail/systemd/cassmail-imaps@.service": 0o644,
    }
    for rel, mode in expected.items():
        p = root / rel
        assert p.is_file(), f"{rel} not installed"
        assert p.stat().st_mode & 0o777 == mode, f"{rel}: mode {oct(p.stat().st_mode & 0o777)}"
    # The installed programs are the built ones, and the pages are ours.
    for prog in ("cassmail-smtpd", "cassmail-pop3d", "cassmail-imapd", "cassmail-admin"):
        assert (root / "sbin" / prog).read_bytes() == (TOP / "build" / prog).read_bytes()
    assert (root / "share/man/man5/cassmail.conf.5").read_bytes() == CONF_PAGE.read_bytes()
    # The sample configuration, also as the live one (there was none in DESTDIR).
    sample = (TOP / "config" / "cassmail.conf").read_bytes()
    assert (root / "share/cassmail/cassmail.conf").read_bytes() == sample
    assert (installed / "etc/cassmail/cassmail.conf").read_bytes() == sample


def test_installed_launcher_files_name_the_installed_programs(installed):
    share = installed / PREFIX.lstrip("/") / "share/cassmail"
    files = [share / "inetd.conf", *sorted((share / "xinetd.d").iterdir()),
             *sorted((share / "systemd").glob("*.service")), *sorted((share / "cron.d").iterdir())]
    for f in files:
        text = f.read_text()
        assert "/usr/local/sbin" not in text, f"{f.name} still names /usr/local/sbin"
        paths = re.findall(r"(/\S+/sbin/cassmail-\w+)", text)
        assert paths, f"{f.name} names no program"
        for p in paths:
            assert p.startswith(f"{PREFIX}/sbin/"), f"{f.name}: {p}"
            assert (installed / p.lstrip("/")).is_file(), f"{f.name}: {p} is not installed"
        assert "/etc/cassmail/cassmail.conf" in text


def test_installed_programs_run(installed):
    root = installed / PREFIX.lstrip("/")
    p = run([str(root / "bin/cassmail-tokens"), "4"])
    assert [int(t) for t in p.stdout.split()] == balanced_tokens(4)
    for prog in ("sbin/cassmail-smtpd", "sbin/cassmail-pop3d", "sbin/cassmail-imapd", "sbin/cassmail-admin"):
        p = run([str(root / prog), "--help"])
        assert "--config" in p.stdout, prog
    # The installed pages are found by man through the installed tree.
    p = run(["man", "-M", str(root / "share/man"), "-E", "ascii", "5", "cassmail.conf"],
            env={**os.environ, "MANWIDTH": "100", "MANPAGER": "cat", "PAGER": "cat"})
    assert "cassmail.conf - configuration of the CassMail servers and tools" in p.stdout


def test_install_keeps_an_existing_configuration(installed):
    live = installed / "etc/cassmail/cassmail.conf"
    live.write_text("[smtp]\ndomains=mine.example\n")
    run(["make", "-s", "-C", str(TOP), "install", f"PREFIX={PREFIX}", f"DESTDIR={installed}"],
        timeout=1800)
    assert live.read_text() == "[smtp]\ndomains=mine.example\n"


@pytest.mark.parametrize("page", ALL_PAGES, ids=lambda p: p.name)
def test_man_page_renders_without_warnings(page):
    p = run(["groff", "-man", "-ww", "-z", str(page)])
    assert p.stderr == "", p.stderr
    p = run(["man", "--warnings", "-E", "UTF-8", "-l", str(page)],
            env={**os.environ, "MANWIDTH": "80", "MANPAGER": "cat", "PAGER": "cat"})
    assert p.stderr == "", p.stderr
    assert len(p.stdout) > 1000


def page_text(page):
    """The page source with roff escapes for '-' and fonts removed: what a reader sees."""
    text = page.read_text()
    text = text.replace("\\-", "-").replace("\\~", " ")
    return re.sub(r"\\f[BIRP]", "", text)


def sample_keys():
    """{section: [keys]} of config/cassmail.conf, commented-out keys (#key=value) included."""
    keys, section = {}, None
    for line in (TOP / "config" / "cassmail.conf").read_text().splitlines():
        m = re.match(r"^\[(\w+)\]", line)
        if m:
            section = m.group(1)
            keys[section] = []
            continue
        m = re.match(r"^#?([a-z_]+)=", line)
        if m and section:
            keys[section].append(m.group(1))
    return keys


def parser_keys():
    """{section: [keys]} from the known_keys table of src/util/config.c."""
    src = (TOP / "src" / "util" / "config.c").read_text()
    table = re.search(r"known_keys\[\]\[\d+\] = \{(.*?)\n\};", src, re.S).group(1)
    out = {}
    for row in re.findall(r"\{([^{}]*)\}", table):
        words = re.findall(r'"(\w+)"', row)
        out[words[0]] = words[1:]
    return out


def test_sample_configuration_lists_every_key_the_parser_accepts():
    assert sample_keys() == parser_keys()


def test_every_configuration_key_is_described_in_cassmail_conf_5():
    text = page_text(CONF_PAGE)
    # Split the page at its ".SH "[name] SECTION"" headings.
    parts = re.split(r'^\.SH "\[(\w+)\] SECTION"$', text, flags=re.M)
    sections = {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}
    keys = sample_keys()
    assert set(sections) == set(keys)
    for section, names in keys.items():
        described = re.findall(r"^\.TP\n\.B (\w+)$", sections[section], flags=re.M)
        assert described == names, f"[{section}]: page {described}, sample {names}"


def help_options(prog):
    p = run([str(BUILD / prog), "--help"])
    opts = re.findall(r"^\s+(?:(-\w), )?(--[\w-]+)", p.stdout, flags=re.M)
    assert opts, p.stdout
    return p.stdout, [o for pair in opts for o in pair if o and o != "--help-all"]


@pytest.mark.parametrize("prog", sorted(PAGES))
def test_every_option_of_help_is_in_the_man_page(prog):
    out, opts = help_options(prog)
    text = page_text(PAGES[prog])
    for opt in opts:
        assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text), f"{prog}: {opt} missing"
    if prog == "cassmail-admin":
        # Its commands are listed in --help too, one per line after "Commands:".
        commands = re.findall(r"^  ([a-z]+)\b", out.split("Commands:", 1)[1].split("\n\n")[0], flags=re.M)
        assert len(commands) >= 10, out
        for c in commands:
            assert re.search(rf"^\.B[IR]? \"?{c}\b", text, flags=re.M), f"command {c} not described"
