/*
 * cassmail-smtpd.c - the SMTP server: the SMTP core (src/smtp/session.c) in the one server shape
 * (src/net/adapter.h), which owns the loop, options, TLS, privileges and the log line.
 *
 *     cassmail-smtpd [-c FILE] [-f] [--inetd | -l ADDR:PORT] [--submission] [--tls-on-connect]
 *
 * Started per connection by inetd/xinetd/systemd Accept=yes (--inetd), or as its own listener
 * forking one child per connection; beyond [limits] max_children or client_connection_limit a
 * client gets "421 4.3.2". Reading, timeouts ([limits] idle_timeout_s between commands,
 * data_timeout_s inside DATA: "421 4.4.2"), pipelining, TLS and privileges: src/net/adapter.h.
 * Whether AUTH may be used before TLS is [smtp] allow_plaintext_auth for this peer.
 *
 * Submission (--submission, RFC 6409; port 587): MAIL needs AUTH, and AUTH needs TLS except from
 * loopback clients (unless [smtp] allow_plaintext_auth = false forbids even that). Implicit TLS
 * (--tls-on-connect, RFC 8314; port 465, with --submission): the handshake runs before the
 * greeting, from the first byte. Relaying: with [relay] smarthost the core hands non-local
 * recipients of authenticated (or [relay] trusted_networks) clients to it (src/relay/relay.h);
 * the smarthost's AUTH password is read here, before privileges are dropped.
 *
 *     smtp ID PEER: session end helo=... accepted=N octets=N rejected=N errors=N end=... ms=N
 *         tls=yes|no auth=USER|- relayed=N bytes_read=N columns_read=N max_frame=N vmhwm_kb=N
 */
#include <string.h>

#include <openssl/crypto.h>

#include "net/adapter.h"
#include "relay/relay.h"
#include "smtp/session.h"
#include "util/log.h"

typedef struct {
    RelayConfig relay;       /* [relay]; used when relay.smarthost is set */
    char *relay_password;    /* the smarthost's AUTH password, read as root */
} Smtpd;

static Smtpd smtpd;
static gboolean smtpd_submission;   /* --submission (RFC 6409) */

/* smtpd_open - a core for PEER */
static gpointer
smtpd_open(AdapterRun *run, Store *store, const char *peer)
{
    SmtpSessionConfig sc;
    adapter_smtp_config(run, peer, smtpd_submission, &sc);
    sc.relay = smtpd.relay.smarthost ? &smtpd.relay : NULL;
    return smtp_session_new(&sc, store, peer);
}

/* smtpd_prepare - the smarthost's password (it may be readable by root alone, like the key) and
 * its TLS context, before privileges are dropped */
static gboolean
smtpd_prepare(AdapterRun *run, GError **error)
{
    const CassmailConfig *cfg = run->cfg;
    adapter_relay_config(cfg, &smtpd.relay);
    if (cfg->relay_smarthost && cfg->relay_auth_password_file &&
        !(smtpd.relay_password = relay_password_load(cfg->relay_auth_password_file, error))) {
        g_prefix_error(error, "[relay] auth_password_file: ");
        return FALSE;
    }
    smtpd.relay.auth_password = smtpd.relay_password;
    smtpd.relay.tls = relay_tls_context(&smtpd.relay, error);
    return smtpd.relay.tls || !*error;
}

static void
smtpd_describe(AdapterRun *run)
{
    const CassmailConfig *cfg = run->cfg;
    g_autofree char *domains = g_strjoinv(",", cfg->domains);
    log_info("domains %s, max message %" G_GSIZE_FORMAT " octets, %d recipients, %d children at most",
             domains, cfg->max_message_size, cfg->max_recipients, cfg->max_children);
    log_info("STARTTLS %s, AUTH without TLS: %s",
             run->tls_on_connect ? "not offered (TLS on connect)"
             : run->tls          ? "offered"
                                 : "not offered (no [tls] certificate)",
             config_plaintext_auth_text(adapter_smtp_plaintext(cfg, smtpd_submission)));
    log_info("outbox copies: %s", config_outbox_copy_name(cfg->outbox_copy));
    log_info("mode: %s%s; relay: %s", smtpd_submission ? "submission (AUTH required)" : "smtp",
             run->tls_on_connect ? ", TLS on connect" : "",
             cfg->relay_smarthost ? cfg->relay_smarthost : "none (non-local recipients refused)");
}

static void
smtpd_finish(AdapterRun *run)
{
    (void)run;
    SSL_CTX_free(smtpd.relay.tls);
    if (smtpd.relay_password)
        OPENSSL_cleanse(smtpd.relay_password, strlen(smtpd.relay_password));
    g_free(smtpd.relay_password);
}

static GOptionEntry smtpd_options[] = {
    {"submission", 0, 0, G_OPTION_ARG_NONE, &smtpd_submission,
     "Message submission (RFC 6409, port 587): AUTH before MAIL, AUTH only over TLS except "
     "from loopback, missing Date: and Message-ID: added (--tls-on-connect with it: port 465)", NULL},
    {NULL, 0, 0, 0, NULL, NULL, NULL},
};

static const AdapterServer smtpd_server = {
    .program = "cassmail-smtpd",
    .parameter = "- CassMail SMTP server",
    .summary = "Accepts mail for the users of the local domains and stores it in Cassandra.\n"
               "Without --inetd it listens and forks one process per connection. It stays in the\n"
               "foreground (for systemd or another supervisor) and logs to syslog, facility mail,\n"
               "unless -f sends the log to stderr. SIGTERM stops it cleanly.",
    .options = smtpd_options,
    .prepare = smtpd_prepare,
    .describe = smtpd_describe,
    .finish = smtpd_finish,
    .open = smtpd_open,
    .core = &smtp_core,
};

int
main(int argc, char **argv)
{
    return adapter_main(&smtpd_server, argc, argv);
}
