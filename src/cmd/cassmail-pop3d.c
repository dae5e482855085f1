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
#include "util/log.h"

/* RFC 1939 section 3: "an autologout timer MUST be of at least 10 minutes' duration". */
#define POP3D_MIN_IDLE_S 600

static int pop3d_idle_timeout;   /* -t */

/* pop3d_open - a core for PEER: cassmail.conf mapped to its settings */
static gpointer
pop3d_open(AdapterRun *run, Store *store, const char *peer)
{
    Pop3SessionConfig pc;
    pop3_session_config_init(&pc, run->cfg);
    pc.plaintext_auth = config_plaintext_auth_allowed(run->cfg->pop3_allow_plaintext_auth, peer);
    pc.stls = run->tls != NULL;
    return pop3_session_new(&pc, store, peer);
}

/* pop3d_prepare - the autologout time */
static gboolean
pop3d_prepare(AdapterRun *run, GError **error)
{
    (void)error;
    /* RFC 1939 wants >= 10 minutes; [limits] idle_timeout_s is shared with SMTP (300 s by
     * default), so it is raised to 600 here. -t sets any value, for tests and operators. */
    run->idle_timeout_s = pop3d_idle_timeout > 0 ? pop3d_idle_timeout
                                                 : MAX(run->cfg->idle_timeout_s, POP3D_MIN_IDLE_S);
    return TRUE;
}

static void
pop3d_describe(AdapterRun *run)
{
    log_info("max %d children, autologout after %d s, STLS %s", run->cfg->max_children,
             run->idle_timeout_s, run->tls ? "offered" : "not offered (no [tls] certificate)");
}

static const char *
pop3d_listen(const CassmailConfig *cfg)
{
    return cfg->pop3_listen;
}

static GOptionEntry pop3d_options[] = {
    {"idle-timeout", 't', 0, G_OPTION_ARG_INT, &pop3d_idle_timeout,
     "Autologout after SECONDS idle (default: [limits] idle_timeout_s, at least 600)", "SECONDS"},
    {NULL, 0, 0, 0, NULL, NULL, NULL},
};

static const AdapterServer pop3d_server = {
    .program = "cassmail-pop3d",
    .name = "pop3",
    .parameter = "- CassMail POP3 server",
    .summary = "Serves the users' mailboxes (USER name or name|mailbox) from Cassandra.\n"
               "Without --inetd it listens and forks one process per connection; it stays in the\n"
               "foreground either way (for systemd, or run it with nohup/daemon).",
    .tls_verb = "STLS",
    .busy_reply = "-ERR [SYS/TEMP] too many connections, try again later\r\n",
    .unavailable = "-ERR [SYS/TEMP] mail store unavailable\r\n",
    .options = pop3d_options,
    .listen = pop3d_listen,
    .prepare = pop3d_prepare,
    .describe = pop3d_describe,
    .open = pop3d_open,
    .core = &pop3_core,
};

int
main(int argc, char **argv)
{
    return adapter_main(&pop3d_server, argc, argv);
}
