"""cassbench.postfix - a private Postfix instance: its own configuration, queue and log under one
folder, listening on one port of 127.0.0.1; nothing under /etc/postfix is used or changed. The
benchmark's Postfix (servers.py) and the relay tests' smarthost (test/e2e/test_relay.py) differ
only in the main.cf lines they add."""
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path


def start_postfix(folder, port, main_cf):
    """Postfix on 127.0.0.1:PORT with FOLDER/conf (which may already hold files MAIN_CF names),
    FOLDER/spool, FOLDER/data and FOLDER/maillog, and main.cf's shared settings followed by
    MAIN_CF; checked, started and listening. Returns the conf folder (MAIL_CONFIG)."""
    conf = folder / "conf"
    conf.mkdir(parents=True, exist_ok=True)
    for sub in ("spool", "data"):
        (folder / sub).mkdir(exist_ok=True)
    shutil.chown(folder / "data", "postfix")
    (conf / "main.cf").write_text(f"""\
# A private instance: nothing under /etc/postfix is used or changed.
compatibility_level = 3.6
queue_directory = {folder}/spool
data_directory = {folder}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.0/8
relay_domains =
alias_maps =
alias_database =
local_recipient_maps =
maillog_file = {folder}/maillog
maillog_file_prefixes = {folder}
biff = no
smtputf8_enable = no
""" + main_cf)
    master = Path("/usr/share/postfix/master.cf.dist").read_text()
    master = re.sub(r"^smtp\s+inet\s.*$", f"127.0.0.1:{port} inet n - n - - smtpd", master,
                    count=1, flags=re.M)
    (conf / "master.cf").write_text(master)
    env = dict(os.environ, MAIL_CONFIG=str(conf))
    for command in ("check", "start"):
        p = subprocess.run(["postfix", "-c", str(conf), command], env=env, capture_output=True,
                           text=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError(f"postfix {command}: {p.stdout}{p.stderr}")
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return conf
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Postfix does not listen on 127.0.0.1:{port}")
            time.sleep(0.1)
