/*
 * cassmail-imapd.c - the IMAP server: the IMAP core (src/imap/session.c, RFC 9051 IMAP4rev2 and
 * RFC 3501 clients) in the one server shape (src/net/adapter.h), which owns the loop, options,
 * TLS, privileges and the log line.
 *
 *     cassmail-imapd [-c FILE] [-f] [--inetd | -l ADDR:PORT] [-t SECONDS] [--tls-on-connect]
 *
 * Started per connection by inetd/xinetd/systemd (--inetd), or as its own listener forking one
 * child per connection; beyond [limits] max_children or client_connection_limit a client gets
 * "* BYE [UNAVAILABLE] too many connections". Port 143 with STARTTLS, or 993 with
 * --tls-on-connect (RFC 8314: TLS from the first byte). The autologout timer is at least 30
 * minutes (RFC 9051 section 5.4; an IDLE client renews its IDLE every 29 minutes) unless -t says
 * otherwise. The core's literals ({N}, {N+}) reach it as raw octets in bounded pieces and IDLE
 * polls the store on the core's ticks (src/net/adapter.h). LOGIN and AUTHENTICATE before TLS
 * follow [imap] allow_plaintext_auth (not set: [pop3]'s) for this peer. The session-end line
 * (the core's fields around the adapter's):
 *
 *     imap PEER: session end user=... end=... ms=N tls=yes|no ... bytes_read=N columns_read=N
 *         max_frame=N vmhwm_kb=N
 */
#include "imap/session.h"
#include "net/adapter.h"
#include "util/log.h"

/* RFC 9051 5.4: an inactivity autologout timer after authentication "MUST be at least 30
 * minutes"; one timer serves the whole session here. */
#define IMAPD_MIN_IDLE_S 1800

static int imapd_idle_timeout;   /* -t */

/* imapd_open - a core for PEER: cassmail.conf mapped to its settings */
static gpointer
imapd_open(AdapterRun *run, Store *store, const char *peer)
{
    ImapSessionConfig ic;
    imap_session_config_init(&ic, run->cfg);
    ic.plaintext_auth = config_plaintext_auth_allowed(run->cfg->imap_allow_plaintext_auth, peer);
    ic.starttls = run->tls != NULL;
    return imap_session_new(&ic, store, peer);
}

/* imapd_prepare - the autologout time */
static gboolean
imapd_prepare(AdapterRun *run, GError **error)
{
    (void)error;
    /* [limits] idle_timeout_s is shared with SMTP (300 s by default): raised to 30 minutes
     * here. -t sets any value, for tests and operators. */
    run->idle_timeout_s = imapd_idle_timeout > 0 ? imapd_idle_timeout
                                                 : MAX(run->cfg->idle_timeout_s, IMAPD_MIN_IDLE_S);
    return TRUE;
}

static void
imapd_describe(AdapterRun *run)
{
    const CassmailConfig *cfg = run->cfg;
    log_info("max %d children, autologout after %d s, %s", cfg->max_children, run->idle_timeout_s,
             run->tls_on_connect ? "TLS on connect"
             : run->tls          ? "STARTTLS offered"
                                 : "STARTTLS not offered (no [tls] certificate)");
    log_info("LOGIN without TLS: %s; new mail gets UIDs after %d ms",
             cfg->imap_allow_plaintext_auth == CONFIG_PLAINTEXT_ALWAYS     ? "every client"
             : cfg->imap_allow_plaintext_auth == CONFIG_PLAINTEXT_LOOPBACK ? "loopback clients only"
                                                                           : "never",
             cfg->imap_settle_ms);
}

static const char *
imapd_listen(const CassmailConfig *cfg)
{
    return cfg->imap_listen;
}

static GOptionEntry imapd_options[] = {
    {"idle-timeout", 't', 0, G_OPTION_ARG_INT, &imapd_idle_timeout,
     "Autologout after SECONDS idle (default: [limits] idle_timeout_s, at least 1800)", "SECONDS"},
    {NULL, 0, 0, 0, NULL, NULL, NULL},
};

static const AdapterServer imapd_server = {
    .program = "cassmail-imapd",
    .name = "imap",
    .parameter = "- CassMail IMAP server",
    .summary = "Serves the users' mailboxes over IMAP4rev2 (RFC 9051) from Cassandra.\n"
               "Without --inetd it listens and forks one process per connection; it stays in the\n"
               "foreground either way (for systemd, or run it with nohup/daemon).",
    .tls_verb = "STARTTLS",
    .busy_reply = "* BYE [UNAVAILABLE] too many connections, try again later\r\n",
    .unavailable = "* BYE [UNAVAILABLE] mail store unavailable\r\n",
    .tls_on_connect = TRUE,
    .options = imapd_options,
    .listen = imapd_listen,
    .prepare = imapd_prepare,
    .describe = imapd_describe,
    .open = imapd_open,
    .core = &imap_core,
};

int
main(int argc, char **argv)
{
    return adapter_main(&imapd_server, argc, argv);
}
