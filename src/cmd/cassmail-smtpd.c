/*
 * cassmail-smtpd.c - the SMTP server: a thin adapter between a connection and src/smtp/session.c.
 *
 *     cassmail-smtpd [-c FILE] [-f] [--inetd | -l ADDR:PORT] [--submission] [--tls-on-connect]
 *
 * Started per connection by inetd/xinetd/systemd Accept=yes (--inetd: the connection is stdin and
 * stdout), or as its own listener forking one child per connection (at most [limits]
 * max_children, and [limits] client_connection_limit from one client address; beyond that a
 * client gets "421 4.3.2" and is closed). It never daemonizes: run under systemd (Type=simple)
 * or a supervisor. Logs go to syslog (facility mail), or to stderr with -f. Each session opens
 * its own Store, which connects to Cassandra on first use, so every child has its own Thrift
 * connection and the parent has none.
 *
 * Start-up order (src/util/privs.h): read the configuration, bind the listener (not in --inetd
 * mode), load the [tls] certificate and key, then — when started as root — become [server]
 * user/group for good, before any client byte is read. As root without a user to become it
 * refuses to run (exit 77), in --inetd mode too: inetd may well start us as root.
 *
 * TLS: with [tls] certificate and key, EHLO offers STARTTLS (RFC 3207). After the core's 220 the
 * adapter flushes, drops every input octet it holds (a command pipelined behind STARTTLS is never
 * executed), runs the handshake (TLS 1.2 or newer, src/net/conn.h) and tells the core, which
 * forgets the session so far. A failed handshake ends the session. Whether AUTH may be used
 * before TLS is [smtp] allow_plaintext_auth, read for this peer (config_plaintext_auth_allowed).
 *
 * The adapter reads lines with the RFC 5321 limits (512 octets for commands, 1000 for text lines
 * plus the transparency dot) — inside DATA the complete lines it has buffered go to the core in
 * place, in one call per read (smtp_session_feed_text), not one copied line at a time — and
 * timeouts ([limits] idle_timeout_s between commands,
 * data_timeout_s inside DATA; on expiry "421 4.4.2" and close), answers pipelined commands in one
 * write (RFC 2920: it flushes when no more input is buffered, and the reader flushes before it
 * waits), and logs one line per session. Under its own listener a session may be evicted (see
 * src/net/server.h) only while it waits for a command outside DATA: it holds inside DATA, and
 * from each line read until its reply is written (a delivery waiting on the store included), so
 * a stored message always gets its 250 rather than an eviction the client would retry.
 *
 * Submission (--submission, RFC 6409; port 587): MAIL needs AUTH, and AUTH needs TLS except from
 * loopback clients (unless [smtp] allow_plaintext_auth = false forbids even that). Implicit TLS
 * (--tls-on-connect, RFC 8314; port 465, with --submission): the handshake runs before the
 * greeting, from the first byte. Relaying: with [relay] smarthost the core hands non-local
 * recipients of authenticated (or [relay] trusted_networks) clients to it (src/relay/relay.h);
 * the smarthost's AUTH password is read here, before privileges are dropped.
 *
 *     smtp ID PEER: session end helo=... accepted=N octets=N rejected=N errors=N end=... ms=N
 *         tls=yes|no auth=USER|- relayed=N
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "net/conn.h"
#include "net/server.h"
#include "relay/relay.h"
#include "smtp/session.h"
#include "store/store.h"
#include "util/password.h"
#include "util/config.h"
#include "util/log.h"
#include "util/privs.h"

#define SMTPD_BUSY "421 4.3.2 Too many connections, try again later\r\n"
#define DEFAULT_CONFIG "/etc/cassmail/cassmail.conf"

typedef struct {
    CassmailConfig *cfg;
    SSL_CTX *tls;            /* NULL without [tls] certificate and key */
    gboolean submission;     /* --submission (RFC 6409) */
    gboolean tls_on_connect; /* --tls-on-connect (RFC 8314 implicit TLS) */
    RelayConfig relay;       /* [relay]; used when relay.smarthost is set */
    SSL_CTX *relay_tls;      /* towards the smarthost; NULL with [relay] starttls = none */
} Smtpd;

/* smtpd_send - queue OUT on CONN (and empty it); FALSE when the client is gone */
static gboolean
smtpd_send(NetConn *conn, GString *out)
{
    gboolean ok = out->len == 0 || net_conn_write(conn, out->str, out->len);
    g_string_truncate(out, 0);
    return ok;
}

/* smtpd_start_tls - the handshake after the core's 220 to STARTTLS (net_conn_start_tls flushes
 * the 220 and drops buffered input first); FALSE when the session cannot go on */
static gboolean
smtpd_start_tls(Smtpd *d, NetConn *conn, SmtpSession *s, const char *peer)
{
    SmtpSessionStats st;
    smtp_session_stats(s, &st);
    GError *error = NULL;
    if (!net_conn_start_tls(conn, d->tls, &error)) {
        log_info("smtp %s %s: STARTTLS: %s", st.id, peer, error->message);
        g_error_free(error);
        return FALSE;
    }
    log_info("smtp %s %s: STARTTLS: %s", st.id, peer, net_conn_tls_description(conn));
    smtp_session_tls_started(s);
    return TRUE;
}

/* smtpd_vmhwm_kb - this process's peak resident set (VmHWM in /proc/self/status), 0 if unknown */
static guint64
smtpd_vmhwm_kb(void)
{
    g_autofree char *status = NULL;
    if (!g_file_get_contents("/proc/self/status", &status, NULL, NULL))
        return 0;
    const char *p = strstr(status, "\nVmHWM:");
    return p ? g_ascii_strtoull(p + 7, NULL, 10) : 0;
}

/* smtpd_session - serve one connection (in the forked child, or the inetd process) */
static void
smtpd_session(NetConn *conn, const char *peer, gpointer data)
{
    Smtpd *d = data;
    gint64 start = g_get_monotonic_time();
    GError *error = NULL;
    /* store_open only prepares: the Thrift connection is made at the first RCPT. */
    Store *store = store_open(d->cfg, &error);
    if (!store) {
        log_err("smtp %s: store: %s", peer, error->message);
        g_error_free(error);
        net_conn_printf(conn, "421 4.3.0 %s mail store unavailable, try again later\r\n", d->cfg->hostname);
        net_conn_flush(conn);
        return;
    }
    SmtpSessionConfig sc;
    smtp_session_config_init(&sc, d->cfg);
    sc.starttls = d->tls != NULL;
    sc.plaintext_auth = config_plaintext_auth_allowed(d->cfg, peer);
    if (d->submission)   /* RFC 6409 4.3 / RFC 8314 3: no password in plaintext off this machine */
        sc.plaintext_auth = config_peer_is_loopback(peer) &&
                            d->cfg->allow_plaintext_auth != CONFIG_PLAINTEXT_NEVER;
    sc.submission = d->submission;
    sc.relay = d->relay.smarthost ? &d->relay : NULL;
    sc.relay_trusted = config_peer_trusted(d->cfg, peer);
    SmtpSession *s = smtp_session_new(&sc, store, peer);
    GString *out = g_string_sized_new(1024);
    GString *line = g_string_sized_new(SMTP_TEXT_READ_MAX + 1);
    const char *end = "eof";

    gboolean ok = TRUE;
    if (d->tls_on_connect) {   /* RFC 8314 3.3: TLS from the first byte, then the greeting */
        ok = smtpd_start_tls(d, conn, s, peer);
        if (!ok)
            end = "tls-failed";
    }
    if (ok) {
        smtp_session_greeting(s, out);
        ok = smtpd_send(conn, out) && net_conn_flush(conn);
    }
    while (ok) {
        gboolean in_data = smtp_session_in_data(s);
        gsize max = smtp_session_line_max(s);
        int timeout_s = in_data ? d->cfg->data_timeout_s : d->cfg->idle_timeout_s;
        if (in_data) {
            /* The DATA fast path: every complete text line already buffered, in place, handed to
             * the store in runs; the reader below takes an incomplete or over-long line, then
             * the next pass here goes on with what its read brought. */
            gsize avail;
            const char *buf = net_conn_peek(conn, &avail);
            gsize used = avail ? smtp_session_feed_text(s, buf, avail, max, out) : 0;
            if (used) {
                net_conn_consume(conn, used);
                ok = smtpd_send(conn, out);
                if (ok && net_conn_pending(conn) == 0)
                    ok = net_conn_flush(conn);
                if (!ok)
                    end = "write-error";
                continue;
            }
        }
        /* Evictable only while waiting for a command: never inside DATA (src/net/server.h). */
        net_session_hold(in_data);
        NetLineStatus r = net_conn_read_line(conn, max, timeout_s * 1000, line);
        net_session_hold(TRUE);   /* the line may wait on the store; its reply must go out */
        guint flags = 0;
        if (r == NET_LINE_TOO_LONG) {
            flags |= SMTP_LINE_TOO_LONG;
        } else if (r == NET_LINE_NUL) {
            flags |= SMTP_LINE_NUL;
        } else if (r == NET_LINE_TIMEOUT) {
            smtp_session_timeout(s, out);
            smtpd_send(conn, out);
            net_conn_flush(conn);
            end = in_data ? "data-timeout" : "idle-timeout";
            break;
        } else if (r != NET_LINE_OK) {
            /* EOF or a broken connection: a transaction in progress is dropped, nothing stored */
            end = r == NET_LINE_EOF ? (in_data ? "eof-in-data" : "eof") : "read-error";
            break;
        }
        gboolean close = smtp_session_feed(s, line->str, line->len, flags, out);
        if (!in_data)
            OPENSSL_cleanse(line->str, line->len);   /* it may hold AUTH credentials */
        ok = smtpd_send(conn, out);
        /* RFC 2920: one write for a pipelined group; flush once the input runs dry. */
        if (ok && (close || net_conn_pending(conn) == 0))
            ok = net_conn_flush(conn);
        if (close) {
            SmtpSessionStats st;
            smtp_session_stats(s, &st);
            end = st.errors >= sc.max_errors && sc.max_errors ? "too-many-errors" : "quit";
            break;
        }
        if (!ok) {
            end = "write-error";
        } else if (smtp_session_starttls_pending(s) && !smtpd_start_tls(d, conn, s, peer)) {
            end = "tls-failed";
            break;
        }
    }
    SmtpSessionStats st;
    smtp_session_stats(s, &st);
    log_info("smtp %s %s: session end helo=%s accepted=%u octets=%" G_GUINT64_FORMAT
             " rejected=%u errors=%u end=%s ms=%" G_GINT64_FORMAT " tls=%s auth=%s relayed=%u"
             " max_frame=%" G_GUINT64_FORMAT " vmhwm_kb=%" G_GUINT64_FORMAT,
             st.id, peer, st.helo ? st.helo : "-", st.accepted, st.accepted_octets, st.rejected,
             st.errors, end, (g_get_monotonic_time() - start) / 1000, st.tls ? "yes" : "no",
             st.auth_user ? st.auth_user : "-", st.relayed, store_counters(store)->max_frame,
             smtpd_vmhwm_kb());
    smtp_session_free(&s);
    store_free(&store);
    g_string_free(out, TRUE);
    g_string_free(line, TRUE);
}

/* smtpd_fail - report ERROR (on stderr too when ECHO: the log goes to syslog and stderr is not
 * the client); exit status RC */
static int
smtpd_fail(CassmailConfig *cfg, gboolean echo, GError *error, int rc)
{
    log_err("%s", error->message);
    if (echo)
        fprintf(stderr, "cassmail-smtpd: %s\n", error->message);
    g_error_free(error);
    config_free(&cfg);
    return rc;
}

int
main(int argc, char **argv)
{
    g_autofree char *config_path = NULL, *listen = NULL;
    gboolean foreground = FALSE, inetd = FALSE, submission = FALSE, tls_on_connect = FALSE;
    GOptionEntry entries[] = {
        {"config", 'c', 0, G_OPTION_ARG_FILENAME, &config_path,
         "Configuration file (default " DEFAULT_CONFIG " when it exists, else built-in defaults)", "FILE"},
        {"foreground", 'f', 0, G_OPTION_ARG_NONE, &foreground,
         "Log to stderr instead of syslog (the server never daemonizes either way)", NULL},
        {"inetd", 0, 0, G_OPTION_ARG_NONE, &inetd,
         "Serve one connection on stdin/stdout (inetd, xinetd, systemd Accept=yes)", NULL},
        {"listen", 'l', 0, G_OPTION_ARG_STRING, &listen, "Listen on ADDR:PORT instead of [smtp] listen",
         "ADDR:PORT"},
        {"submission", 0, 0, G_OPTION_ARG_NONE, &submission,
         "Message submission (RFC 6409, port 587): AUTH before MAIL, AUTH only over TLS except "
         "from loopback, missing Date: and Message-ID: added", NULL},
        {"tls-on-connect", 0, 0, G_OPTION_ARG_NONE, &tls_on_connect,
         "Implicit TLS (RFC 8314, port 465 with --submission): TLS from the first byte; needs "
         "[tls] certificate and key", NULL},
        {NULL, 0, 0, 0, NULL, NULL, NULL},
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("- CassMail SMTP server");
    g_option_context_set_summary(ctx,
        "Accepts mail for the users of the local domains and stores it in Cassandra.\n"
        "Without --inetd it listens and forks one process per connection. It stays in the\n"
        "foreground (for systemd or another supervisor) and logs to syslog, facility mail,\n"
        "unless -f sends the log to stderr. SIGTERM stops it cleanly.");
    g_option_context_add_main_entries(ctx, entries, NULL);
    GError *error = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
        fprintf(stderr, "cassmail-smtpd: %s (see --help)\n", error->message);
        g_error_free(error);
        return 64;
    }
    if (argc > 1) {
        fprintf(stderr, "cassmail-smtpd: unexpected argument \"%s\" (see --help)\n", argv[1]);
        return 64;
    }
    if (inetd && listen) {
        fprintf(stderr, "cassmail-smtpd: --inetd and --listen exclude each other\n");
        return 64;
    }
    /* In inetd mode stderr may be the client's socket: log there only when asked (-f). */
    log_open("cassmail-smtpd", foreground);
    /* Errors go to stderr too when the log does not, except in inetd mode (the client's socket). */
    gboolean echo = !foreground && !inetd;
    if (!config_path && g_file_test(DEFAULT_CONFIG, G_FILE_TEST_EXISTS))
        config_path = g_strdup(DEFAULT_CONFIG);
    CassmailConfig *cfg = config_load(config_path, &error);
    if (!cfg)
        return smtpd_fail(NULL, echo, error, 78);
    password_set_cost((guint)cfg->password_iterations);
    Smtpd d = {.cfg = cfg, .submission = submission, .tls_on_connect = tls_on_connect};
    if (tls_on_connect && !cfg->tls_certificate) {
        g_set_error(&error, CONFIG_ERROR, 0, "--tls-on-connect needs [tls] certificate and key");
        return smtpd_fail(cfg, echo, error, 78);
    }
    signal(SIGPIPE, SIG_IGN);

    /* Bind first (port 25 needs root), load the key (it may be root's alone), then become
     * [server] user before reading a byte; never serve clients as root. */
    int fd = -1;
    if (!inetd && (fd = net_listen(listen ? listen : cfg->smtp_listen, &error)) < 0)
        return smtpd_fail(cfg, echo, error, 69);
    if (cfg->tls_certificate && !(d.tls = net_tls_server_context(cfg->tls_certificate, cfg->tls_key, &error))) {
        if (fd >= 0)
            close(fd);
        return smtpd_fail(cfg, echo, error, 78);
    }
    /* The smarthost's password may be readable by root alone, like the key. */
    g_autofree char *relay_password = NULL;
    if (cfg->relay_smarthost && cfg->relay_auth_password_file &&
        !(relay_password = relay_password_load(cfg->relay_auth_password_file, &error))) {
        if (fd >= 0)
            close(fd);
        SSL_CTX_free(d.tls);
        return smtpd_fail(cfg, echo, error, 78);
    }
    if (cfg->relay_smarthost && !(d.relay_tls = relay_tls_context(cfg, &error)) && error) {
        if (fd >= 0)
            close(fd);
        SSL_CTX_free(d.tls);
        return smtpd_fail(cfg, echo, error, 78);
    }
    relay_config_init(&d.relay, cfg, relay_password, d.relay_tls);
    if (!privs_drop(cfg->user, cfg->group, FALSE, &error)) {
        if (fd >= 0)
            close(fd);
        SSL_CTX_free(d.tls);
        return smtpd_fail(cfg, echo, error, 77);
    }

    if (inetd) {
        net_serve_inetd(smtpd_session, &d);
    } else {
        g_autofree char *domains = g_strjoinv(",", cfg->domains);
        log_info("domains %s, max message %" G_GSIZE_FORMAT " octets, %d recipients, %d children at most",
                 domains, cfg->max_message_size, cfg->max_recipients, cfg->max_children);
        log_info("STARTTLS %s, AUTH without TLS: %s", d.tls ? "offered" : "not offered (no [tls] certificate)",
                 cfg->allow_plaintext_auth == CONFIG_PLAINTEXT_ALWAYS     ? "every client"
                 : cfg->allow_plaintext_auth == CONFIG_PLAINTEXT_LOOPBACK ? "loopback clients only"
                                                                          : "never");
        net_serve_set_evict_idle(cfg->evict_idle_s);
        net_serve_set_client_limit(cfg->client_connection_limit);
        log_info("outbox copies: %s", config_outbox_copy_name(cfg->outbox_copy));
        log_info("mode: %s%s; relay: %s", submission ? "submission (AUTH required)" : "smtp",
                 tls_on_connect ? ", TLS on connect" : "",
                 cfg->relay_smarthost ? cfg->relay_smarthost : "none (non-local recipients refused)");
        if (net_serve_fd(fd, cfg->max_children, SMTPD_BUSY, smtpd_session, &d, &error) < 0) {
            SSL_CTX_free(d.tls);
            return smtpd_fail(cfg, echo, error, 69);
        }
    }
    SSL_CTX_free(d.tls);
    SSL_CTX_free(d.relay_tls);
    if (relay_password)
        OPENSSL_cleanse(relay_password, strlen(relay_password));
    config_free(&cfg);
    return 0;
}
