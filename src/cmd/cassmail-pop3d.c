/*
 * cassmail-pop3d.c - the POP3 server: a thin adapter between a connection and src/pop3/session.c.
 *
 *     cassmail-pop3d [-c FILE] [-f] [--inetd | -l ADDR:PORT] [-t SECONDS]
 *
 * Started per connection by inetd/xinetd/systemd (--inetd: the connection is stdin/stdout), or as
 * its own listener forking one child per connection (at most [limits] max_children; beyond that a
 * client gets "-ERR [SYS/TEMP] too many connections", as does one beyond [limits]
 * client_connection_limit from one client address). A session may be evicted by a full listener
 * (src/net/server.h) only while it waits for a command, never while a command waits on the store
 * or its reply is being written. Each session opens its own Store, which connects to Cassandra
 * on first use.
 *
 * The adapter does what the pure core must not: reading lines with a timeout (RFC 1939 section 3:
 * the autologout timer is at least 10 minutes), sleeping before a failed login's reply, writing
 * RETR/TOP output in bounded chunks as the core produces them, and logging one line per session:
 *
 *     session end peer=... user=... mailbox=... state=... end=... tls=yes|no
 *         retrieved=N/octets deleted=N failed_logins=N errors=N duration=S bytes_read=N
 *         columns_read=N vmhwm_kb=N
 *
 * Start-up order (src/util/privs.h): read the configuration, bind (not in --inetd mode), load the
 * [tls] certificate and key, then — when started as root — become [server] user/group for good
 * before any client byte is read; as root without a user to become it refuses to run (exit 77),
 * in --inetd mode too.
 *
 * TLS: with [tls] certificate and key, CAPA offers STLS (RFC 2595). After the core's "+OK" the
 * adapter flushes, drops every input octet it holds, runs the handshake (TLS 1.2 or newer) and
 * tells the core. USER/PASS before TLS follow [smtp] allow_plaintext_auth for this peer.
 *
 * bytes_read/columns_read are the store's counters (what this session read from Cassandra) and
 * vmhwm_kb the process's peak resident size: the end-to-end tests read them from this line.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "net/conn.h"
#include "net/server.h"
#include "pop3/session.h"
#include "store/store.h"
#include "util/password.h"
#include "util/config.h"
#include "util/log.h"
#include "util/privs.h"

/* RFC 1939 section 3: "an autologout timer MUST be of at least 10 minutes' duration". */
#define POP3D_MIN_IDLE_S 600
/* Multi-line replies are written in chunks of this size, each flushed before the next is made. */
#define POP3D_CHUNK (64 * 1024)
#define POP3D_BUSY "-ERR [SYS/TEMP] too many connections, try again later\r\n"
#define DEFAULT_CONFIG "/etc/cassmail/cassmail.conf"

typedef struct {
    CassmailConfig *cfg;
    int idle_timeout_s;
    SSL_CTX *tls;            /* NULL without [tls] certificate and key */
} Pop3d;

/* pop3d_vmhwm_kb - this process's peak resident set (VmHWM in /proc/self/status), 0 if unknown */
static guint64
pop3d_vmhwm_kb(void)
{
    g_autofree char *status = NULL;
    if (!g_file_get_contents("/proc/self/status", &status, NULL, NULL))
        return 0;
    const char *p = strstr(status, "\nVmHWM:");
    return p ? g_ascii_strtoull(p + 7, NULL, 10) : 0;
}

/* pop3d_start_tls - the handshake after the core's "+OK" to STLS; FALSE when the session cannot
 * go on */
static gboolean
pop3d_start_tls(Pop3d *d, NetConn *conn, Pop3Session *s, const char *peer)
{
    GError *error = NULL;
    if (!net_conn_start_tls(conn, d->tls, &error)) {
        log_info("pop3 %s: STLS: %s", peer, error->message);
        g_error_free(error);
        return FALSE;
    }
    log_info("pop3 %s: STLS: %s", peer, net_conn_tls_description(conn));
    pop3_session_tls_started(s);
    return TRUE;
}

/* pop3d_send - write OUT to CONN and empty it; FALSE when the connection failed */
static gboolean
pop3d_send(NetConn *conn, GString *out, gboolean flush)
{
    gboolean ok = TRUE;
    if (out->len)
        ok = net_conn_write(conn, out->str, out->len);
    g_string_truncate(out, 0);
    if (ok && flush)
        ok = net_conn_flush(conn);
    return ok;
}

/* pop3d_session - serve one connection (in the forked child, or the inetd process) */
static void
pop3d_session(NetConn *conn, const char *peer, gpointer data)
{
    Pop3d *d = data;
    gint64 start = g_get_monotonic_time();
    GError *error = NULL;
    Store *store = store_open(d->cfg, &error);
    if (!store) {
        log_err("pop3 %s: store: %s", peer, error->message);
        g_error_free(error);
        static const char unavailable[] = "-ERR [SYS/TEMP] mail store unavailable\r\n";
        net_conn_write(conn, unavailable, sizeof unavailable - 1);
        net_conn_flush(conn);
        return;
    }

    Pop3SessionConfig pc;
    pop3_session_config_init(&pc, d->cfg);
    pc.plaintext_auth = config_plaintext_auth_allowed(d->cfg, peer);
    pc.stls = d->tls != NULL;
    Pop3Session *s = pop3_session_new(&pc, store, peer);

    GString *out = g_string_sized_new(1024);
    GString *line = g_string_sized_new(POP3_LINE_MAX + 2);
    const char *end = "dropped";
    pop3_session_greeting(s, out);
    gboolean ok = pop3d_send(conn, out, TRUE);
    while (ok) {
        /* RFC 2449 section 4: 255 octets; we allow 255 before the CRLF (see session.h). */
        net_session_hold(FALSE);   /* evictable only while waiting for a command */
        NetLineStatus r = net_conn_read_line(conn, POP3_LINE_MAX + 2, d->idle_timeout_s * 1000,
                                              line);
        net_session_hold(TRUE);    /* the command may wait on the store (PASS, STAT, QUIT) */
        gboolean close;
        if (r == NET_LINE_OK || r == NET_LINE_NUL || r == NET_LINE_TOO_LONG) {
            /* The core strips the CRLF and answers a NUL or an over-long line with -ERR. */
            close = pop3_session_feed(s, line->str, line->len, r == NET_LINE_TOO_LONG, out);
            OPENSSL_cleanse(line->str, line->len);   /* it may hold a password */
            g_string_truncate(line, 0);
        } else if (r == NET_LINE_TIMEOUT) {
            pop3_session_timeout(s, out);
            pop3d_send(conn, out, TRUE);
            end = "timeout";
            break;
        } else {
            break;   /* EOF or a broken connection: nothing is deleted */
        }
        guint delay = pop3_session_take_delay_ms(s);
        if (delay) {
            ok = net_conn_flush(conn);
            g_usleep((gulong)delay * 1000);
        }
        ok = ok && pop3d_send(conn, out, FALSE);
        /* RETR/TOP: write each chunk before making the next, so memory stays bounded. */
        gboolean more = TRUE;
        while (ok && more) {
            more = pop3_session_more(s, out, POP3D_CHUNK);
            if (out->len)
                ok = pop3d_send(conn, out, TRUE);
        }
        if (pop3_session_closed(s) && !close) {
            end = "body-failed";   /* logged by the core; the reply cannot be finished */
            break;
        }
        /* PIPELINING (RFC 2449): answer a batch of commands in one write. */
        if (ok && (close || !net_conn_pending(conn)))
            ok = net_conn_flush(conn);
        if (close) {
            end = "closed";
            break;
        }
        if (ok && pop3_session_stls_pending(s) && !pop3d_start_tls(d, conn, s, peer)) {
            end = "tls-failed";
            break;
        }
    }

    Pop3SessionStats st;
    pop3_session_stats(s, &st);
    const StoreCounters *c = store_counters(store);
    log_info("session end peer=%s user=%s mailbox=%s state=%s end=%s tls=%s"
             " retrieved=%u/%" G_GUINT64_FORMAT " deleted=%u failed_logins=%u errors=%u"
             " duration=%.3f bytes_read=%" G_GUINT64_FORMAT " columns_read=%" G_GUINT64_FORMAT
             " max_frame=%" G_GUINT64_FORMAT " vmhwm_kb=%" G_GUINT64_FORMAT,
             peer, st.user ? st.user : "-", st.mailbox ? st.mailbox : "-",
             pop3_state_name(st.state), end, st.tls ? "yes" : "no", st.retrieved,
             st.retrieved_octets, st.deleted, st.failed_logins, st.errors, (double)(g_get_monotonic_time() - start) / 1e6,
             c->bytes_read, c->columns_read, c->max_frame, pop3d_vmhwm_kb());
    pop3_session_free(&s);
    store_free(&store);
    g_string_free(out, TRUE);
    g_string_free(line, TRUE);
}

/* pop3d_fail - report ERROR (to stderr too when ECHO: the log goes to syslog and stderr is not
 * the client), free, exit status RC */
static int
pop3d_fail(CassmailConfig *cfg, gboolean echo, GError *error, int rc)
{
    log_err("%s", error->message);
    if (echo)
        fprintf(stderr, "cassmail-pop3d: %s\n", error->message);
    g_error_free(error);
    config_free(&cfg);
    return rc;
}

int
main(int argc, char **argv)
{
    g_autofree char *config_path = NULL;
    g_autofree char *listen = NULL;
    gboolean foreground = FALSE, inetd = FALSE;
    int idle_timeout = 0;
    GOptionEntry entries[] = {
        {"config", 'c', 0, G_OPTION_ARG_FILENAME, &config_path,
         "configuration file (default " DEFAULT_CONFIG " if it exists)", "FILE"},
        {"foreground", 'f', 0, G_OPTION_ARG_NONE, &foreground,
         "log to stderr instead of syslog", NULL},
        {"inetd", 0, 0, G_OPTION_ARG_NONE, &inetd, "serve one connection on stdin/stdout", NULL},
        {"listen", 'l', 0, G_OPTION_ARG_STRING, &listen, "listen on ADDR:PORT ([pop3] listen)",
         "ADDR:PORT"},
        {"idle-timeout", 't', 0, G_OPTION_ARG_INT, &idle_timeout,
         "autologout after SECONDS idle (default: [limits] idle_timeout_s, at least 600)",
         "SECONDS"},
        {NULL, 0, 0, 0, NULL, NULL, NULL},
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("- CassMail POP3 server");
    g_option_context_set_summary(ctx,
        "Serves the users' mailboxes (USER name or name|mailbox) from Cassandra.\n"
        "Without --inetd it listens and forks one process per connection; it stays in the\n"
        "foreground either way (for systemd, or run it with nohup/daemon).");
    g_option_context_add_main_entries(ctx, entries, NULL);
    GError *error = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
        fprintf(stderr, "cassmail-pop3d: %s (see --help)\n", error->message);
        g_error_free(error);
        return 64;
    }
    if (argc > 1) {
        fprintf(stderr, "cassmail-pop3d: unexpected argument \"%s\"\n", argv[1]);
        return 64;
    }
    /* In inetd mode stderr may be the client's socket: log there only when asked (-f). */
    log_open("cassmail-pop3d", foreground);
    /* Errors go to stderr too when the log does not, except in inetd mode (the client's socket). */
    gboolean echo = !foreground && !inetd;
    if (!config_path && g_file_test(DEFAULT_CONFIG, G_FILE_TEST_EXISTS))
        config_path = g_strdup(DEFAULT_CONFIG);

    CassmailConfig *cfg = config_load(config_path, &error);
    if (!cfg)
        return pop3d_fail(NULL, echo, error, 78);
    password_set_cost((guint)cfg->password_iterations);
    Pop3d d = {
        .cfg = cfg,
        /* RFC 1939 wants >= 10 minutes; [limits] idle_timeout_s is shared with SMTP (300 s by
         * default), so it is raised to 600 here. -t sets any value, for tests and operators. */
        .idle_timeout_s = idle_timeout > 0 ? idle_timeout
                                           : MAX(cfg->idle_timeout_s, POP3D_MIN_IDLE_S),
    };
    signal(SIGPIPE, SIG_IGN);

    /* Bind first (port 110 needs root), load the key (it may be root's alone), then become
     * [server] user before reading a byte; never serve clients as root. */
    int fd = -1;
    if (!inetd && (fd = net_listen(listen ? listen : cfg->pop3_listen, &error)) < 0)
        return pop3d_fail(cfg, echo, error, 69);
    if (cfg->tls_certificate && !(d.tls = net_tls_server_context(cfg->tls_certificate, cfg->tls_key, &error))) {
        if (fd >= 0)
            close(fd);
        return pop3d_fail(cfg, echo, error, 78);
    }
    if (!privs_drop(cfg->user, cfg->group, FALSE, &error)) {
        if (fd >= 0)
            close(fd);
        SSL_CTX_free(d.tls);
        return pop3d_fail(cfg, echo, error, 77);
    }

    if (inetd) {
        net_serve_inetd(pop3d_session, &d);
    } else {
        log_info("max %d children, autologout after %d s, STLS %s", cfg->max_children,
                 d.idle_timeout_s, d.tls ? "offered" : "not offered (no [tls] certificate)");
        net_serve_set_evict_idle(cfg->evict_idle_s);
        net_serve_set_client_limit(cfg->client_connection_limit);
        if (net_serve_fd(fd, cfg->max_children, POP3D_BUSY, pop3d_session, &d, &error) < 0) {
            SSL_CTX_free(d.tls);
            return pop3d_fail(cfg, echo, error, 69);
        }
    }
    SSL_CTX_free(d.tls);
    config_free(&cfg);
    return 0;
}
