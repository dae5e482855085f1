"""cassbench - the benchmark harness behind tools/bench/run and tools/bench/tune.

    common       paths, sizes, logging, subprocess and port helpers, the user population
    postfix      a private Postfix instance (also test/e2e/test_relay.py's smarthost)
    ring         tools/cluster rings, CPU and disk accounting from /proc, JVM thread groups
    servers      the servers under test: cassmail-smtpd, cassmail-pop3d, private Postfix and Dovecot
    load         load generators (Postal, rabid, poplib clients, cassmail-load) and their reports
    report       the CSVs in docs/bench, the gnuplot figures and docs/bench/tables.md
    experiments  the paper's runs: fig3-6, baselines, layouts, pop3, threads
    imap         cassmail-imapd vs Dovecot's imap on the same messages (tools/bench/run imap)

Modules import only from those above them in this list. Nothing here is configured by changing a
module's variables: what a run varies is an argument.
"""
