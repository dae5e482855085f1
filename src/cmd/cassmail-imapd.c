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

/* imapd_open - a core for PEER */
static gpointer
imapd_open(AdapterRun *run, Store *store, const char *peer)
{
    ImapSessionConfig ic;
    adapter_imap_config(run, peer, &ic);
    return imap_session_new(&ic, store, peer);
}

static void
imapd_describe(AdapterRun *run)
{
    const CassmailConfig *cfg = run->cfg;
    log_info("LOGIN without TLS: %s; new mail gets UIDs after %d ms",
             config_plaintext_auth_text(cfg->imap_allow_plaintext_auth), cfg->imap_settle_ms);
}

static const AdapterServer imapd_server = {
    .program = "cassmail-imapd",
    .parameter = "- CassMail IMAP server",
    .summary = "Serves the users' mailboxes over IMAP4rev2 (RFC 9051) from Cassandra.\n"
               "Without --inetd it listens and forks one process per connection; it stays in the\n"
               "foreground either way (for systemd, or run it with nohup/daemon).",
    .describe = imapd_describe,
    .open = imapd_open,
    .core = &imap_core,
};

int
main(int argc, char **argv)
{
    return adapter_main(&imapd_server, argc, argv);
}
