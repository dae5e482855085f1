/*
 * cassmail-pop3d.c - the POP3 server: the POP3 core (src/pop3/session.c) in the one server shape
 * (src/net/adapter.h), which owns the loop, options, TLS, privileges and the log line.
 *
 *     cassmail-pop3d [-c FILE] [-f] [--inetd | -l ADDR:PORT] [-t SECONDS]
 *
 * Started per connection by inetd/xinetd/systemd (--inetd), or as its own listener forking one
 * child per connection; beyond [limits] max_children or client_connection_limit a client gets
 * "-ERR [SYS/TEMP] too many connections". The autologout timer is at least 10 minutes (RFC 1939
 * section 3) unless -t says otherwise. Reading, the failed login's delay, RETR/TOP in bounded
 * chunks, STLS and privileges: src/net/adapter.h. USER/PASS before TLS follow [pop3]
 * allow_plaintext_auth (not set: [smtp]'s) for this peer. bytes_read/columns_read (what the
 * session read from Cassandra) and vmhwm_kb (peak resident size) are read by the tests:
 *
 *     pop3 PEER: session end user=... mailbox=... state=... end=... ms=N tls=yes|no
 *         retrieved=N/octets deleted=N failed_logins=N errors=N bytes_read=N columns_read=N
 *         max_frame=N vmhwm_kb=N
 */
#include "net/adapter.h"
#include "pop3/session.h"

/* pop3d_open - a core for PEER */
static gpointer
pop3d_open(AdapterRun *run, Store *store, const char *peer)
{
    Pop3SessionConfig pc;
    adapter_pop3_config(run, peer, &pc);
    return pop3_session_new(&pc, store, peer);
}

static const AdapterServer pop3d_server = {
    .program = "cassmail-pop3d",
    .parameter = "- CassMail POP3 server",
    .summary = "Serves the users' mailboxes (USER name or name|mailbox) from Cassandra.\n"
               "Without --inetd it listens and forks one process per connection; it stays in the\n"
               "foreground either way (for systemd, or run it with nohup/daemon).",
    .open = pop3d_open,
    .core = &pop3_core,
};

int
main(int argc, char **argv)
{
    return adapter_main(&pop3d_server, argc, argv);
}
