/*
 * adapter.c - the one server shape (see adapter.h): main, the start-up order, and the session
 * loop every protocol core runs in.
 *
 * Start-up order (src/util/privs.h): read the configuration, bind the listener (not in --inetd
 * mode), load the [tls] certificate and key, let the server prepare what needs root too (the
 * smarthost's password), then — when started as root — become [server] user/group for good,
 * before any client byte is read. As root without a user to become it refuses to run (exit 77),
 * in --inetd mode too: inetd may well start us as root.
 */
#include "net/adapter.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "net/conn.h"
#include "net/server.h"
#include "util/log.h"
#include "util/password.h"
#include "util/privs.h"

#define ADAPTER_DEFAULT_CONFIG "/etc/cassmail/cassmail.conf"
/* Long replies (RETR, TOP) are written in chunks of this size, each flushed before the next. */
#define ADAPTER_CHUNK (64 * 1024)

/* adapter_send - queue OUT on CONN and empty it; FALSE when the client is gone */
static gboolean
adapter_send(NetConn *conn, GString *out)
{
    gboolean ok = out->len == 0 || net_conn_write(conn, out->str, out->len);
    g_string_truncate(out, 0);
    return ok;
}

/* adapter_vmhwm_kb - this process's peak resident set (VmHWM in /proc/self/status), 0 if unknown */
static guint64
adapter_vmhwm_kb(void)
{
    g_autofree char *status = NULL;
    if (!g_file_get_contents("/proc/self/status", &status, NULL, NULL))
        return 0;
    const char *p = strstr(status, "\nVmHWM:");
    return p ? g_ascii_strtoull(p + 7, NULL, 10) : 0;
}

/* adapter_who - "smtp 1A2B3C4D 127.0.0.1" or "pop3 127.0.0.1": how log lines name a session */
static char *
adapter_who(AdapterRun *run, gpointer core, const char *peer)
{
    const ProtoCore *c = run->server->core;
    const char *id = c->id ? c->id(core) : NULL;
    return g_strdup_printf("%s%s%s %s", c->name, id ? " " : "", id ? id : "", peer);
}

/* adapter_start_tls - the handshake after the core's yes to STARTTLS/STLS, or before the
 * greeting (TLS on connect); net_conn_start_tls flushes that reply and drops buffered input
 * first. FALSE when the session cannot go on. */
static gboolean
adapter_start_tls(AdapterRun *run, NetConn *conn, gpointer core, const char *peer)
{
    const ProtoCore *c = run->server->core;
    g_autofree char *who = adapter_who(run, core, peer);
    GError *error = NULL;
    if (!net_conn_start_tls(conn, run->tls, &error)) {
        log_info("%s: %s: %s", who, c->tls_verb, error->message);
        g_error_free(error);
        return FALSE;
    }
    log_info("%s: %s: %s", who, c->tls_verb, net_conn_tls_description(conn));
    c->tls_started(core);
    return TRUE;
}

/* adapter_line_status - what the reader saw, as a core is told it */
static ProtoLine
adapter_line_status(NetLineStatus r)
{
    return r == NET_LINE_TOO_LONG ? PROTO_LINE_TOO_LONG
           : r == NET_LINE_NUL    ? PROTO_LINE_NUL
                                  : PROTO_LINE_OK;
}

/* adapter_reply - after the core took a line or a piece of a literal (CLOSE: it said the
 * connection closes after OUT): the failed login's delay, OUT, a long reply in chunks, the flush
 * of a pipelined batch, STARTTLS. NULL while the session goes on, else why it ended. */
static const char *
adapter_reply(AdapterRun *run, NetConn *conn, gpointer core, const char *peer, GString *out,
              gboolean close)
{
    const ProtoCore *c = run->server->core;
    gboolean ok = TRUE;
    guint delay = c->take_delay_ms ? c->take_delay_ms(core) : 0;
    if (delay) {   /* a failed login: the reply waits, the output so far does not */
        ok = net_conn_flush(conn);
        g_usleep((gulong)delay * 1000);
    }
    ok = ok && adapter_send(conn, out);
    /* A long reply: each chunk written before the next is made, so memory stays bounded. */
    for (gboolean more = c->more != NULL; ok && more;) {
        more = c->more(core, out, ADAPTER_CHUNK);
        if (out->len)
            ok = adapter_send(conn, out) && net_conn_flush(conn);
    }
    const char *ended = c->ended(core);
    if (ended && !close)
        return ended;   /* the reply cannot be finished (logged by the core) */
    /* Pipelining (RFC 2920, RFC 2449): one write for a batch; flush once input runs dry. */
    if (ok && (close || net_conn_pending(conn) == 0))
        ok = net_conn_flush(conn);
    if (close)
        return ended ? ended : "quit";
    if (!ok)
        return "write-error";
    if (c->tls_pending(core) && !adapter_start_tls(run, conn, core, peer))
        return "tls-failed";
    return NULL;
}

/* adapter_literal - the next piece of the literal the core takes (WANT octets more): what the
 * read buffer holds, else what one read brings (the data timeout; never evicted), in place, at
 * most WANT octets, whatever they are. NULL while the session goes on, else why it ended. */
static const char *
adapter_literal(AdapterRun *run, NetConn *conn, gpointer core, const char *peer, GString *out,
                gsize want)
{
    const ProtoCore *c = run->server->core;
    net_session_hold(TRUE);   /* the client would have to send the command again */
    NetLineStatus r = net_conn_read_more(conn, run->data_timeout_s * 1000);
    if (r == NET_LINE_TIMEOUT) {
        c->timeout(core, out);
        adapter_send(conn, out);
        net_conn_flush(conn);
        return "data-timeout";
    }
    if (r == NET_LINE_EOF)   /* the command is dropped, as a transaction in DATA is */
        return "eof-in-data";
    if (r != NET_LINE_OK)
        return "read-error";
    gsize avail;
    const char *buf = net_conn_peek(conn, &avail);
    gsize n = MIN(avail, want);
    gboolean close = c->feed_literal(core, buf, n, out);
    net_conn_consume(conn, n);
    return adapter_reply(run, conn, core, peer, out, close);
}

/* adapter_read_line - the next line into LINE within TIMEOUT_S. Between commands, a core with
 * tick_ms gets tick() whenever that long passes without a line (IMAP IDLE), its output written
 * and flushed at once; the timeout still counts from the start of the wait, not from a tick.
 * *END says why the session ended during a tick (NULL: it goes on). */
static NetLineStatus
adapter_read_line(AdapterRun *run, NetConn *conn, gpointer core, gsize max, int timeout_s,
                  gboolean in_text, GString *line, GString *out, const char **end)
{
    const ProtoCore *c = run->server->core;
    *end = NULL;
    if (in_text || !c->tick_ms || !c->tick)
        return net_conn_read_line(conn, max, timeout_s * 1000, line);
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_s * G_USEC_PER_SEC;
    for (;;) {
        guint tick_ms = c->tick_ms(core);
        gint64 left_ms = MAX((deadline - g_get_monotonic_time() + 999) / 1000, 0);
        gboolean ticking = tick_ms > 0 && (gint64)tick_ms < left_ms;
        NetLineStatus r = net_conn_read_line(conn, max, ticking ? (int)tick_ms : (int)left_ms, line);
        if (r != NET_LINE_TIMEOUT || !ticking)
            return r;
        net_session_hold(TRUE);   /* the tick may wait on the store; its output must go out */
        c->tick(core, out);
        gboolean ok = adapter_send(conn, out) && net_conn_flush(conn);
        net_session_hold(FALSE);
        if (!ok)
            *end = "write-error";
        else
            *end = c->ended(core);
        if (*end)
            return r;
    }
}

/* adapter_loop - the session after the greeting; why it ended */
static const char *
adapter_loop(AdapterRun *run, NetConn *conn, gpointer core, const char *peer, GString *out)
{
    const ProtoCore *c = run->server->core;
    g_autoptr(GString) line = g_string_sized_new(1024);
    for (;;) {
        /* A literal (IMAP {N}): raw octets, whatever they are, until the core has them all. */
        gsize literal = c->literal && c->feed_literal ? c->literal(core) : 0;
        if (literal) {
            const char *end = adapter_literal(run, conn, core, peer, out, literal);
            if (end)
                return end;
            continue;
        }
        gboolean in_text = c->in_text && c->in_text(core);
        gsize max = c->line_max(core);
        if (in_text && c->feed_text) {
            /* The text fast path: every complete line already buffered, in place; the reader
             * below takes an incomplete or over-long line, then the next pass goes on with
             * what its read brought. */
            gsize avail;
            const char *buf = net_conn_peek(conn, &avail);
            gsize used = avail ? c->feed_text(core, buf, avail, max, out) : 0;
            if (used) {
                net_conn_consume(conn, used);
                if (!adapter_send(conn, out) || (net_conn_pending(conn) == 0 && !net_conn_flush(conn)))
                    return "write-error";
                continue;
            }
        }
        /* Evictable only while waiting for a command, never in text (src/net/server.h). */
        net_session_hold(in_text);
        int timeout_s = in_text ? run->data_timeout_s : run->idle_timeout_s;
        const char *ticked;
        NetLineStatus r = adapter_read_line(run, conn, core, max, timeout_s, in_text, line, out,
                                            &ticked);
        net_session_hold(TRUE);   /* the line may wait on the store; its reply must go out */
        if (ticked)
            return ticked;
        if (r == NET_LINE_TIMEOUT) {
            c->timeout(core, out);
            adapter_send(conn, out);
            net_conn_flush(conn);
            return in_text ? "data-timeout" : "idle-timeout";
        }
        if (r == NET_LINE_EOF)   /* a transaction in progress is dropped, nothing stored */
            return in_text ? "eof-in-data" : "eof";
        if (r != NET_LINE_OK && r != NET_LINE_NUL && r != NET_LINE_TOO_LONG)
            return "read-error";

        gboolean close = c->feed(core, line->str, line->len, adapter_line_status(r), out);
        if (!in_text)
            OPENSSL_cleanse(line->str, line->len);   /* it may hold credentials */
        const char *end = adapter_reply(run, conn, core, peer, out, close);
        if (end)
            return end;
    }
}

/* adapter_run_session - see adapter.h */
void
adapter_run_session(AdapterRun *run, NetConn *conn, Store *store, const char *peer)
{
    const ProtoCore *c = run->server->core;
    gint64 start = g_get_monotonic_time();
    gpointer core = run->server->open(run, store, peer);
    GString *out = g_string_sized_new(1024);
    const char *end = NULL;
    /* RFC 8314 3.3: TLS from the first byte, then the greeting */
    if (run->tls_on_connect && !adapter_start_tls(run, conn, core, peer))
        end = "tls-failed";
    if (!end) {
        c->greeting(core, out);
        if (!adapter_send(conn, out) || !net_conn_flush(conn))
            end = "write-error";
    }
    if (!end)
        end = adapter_loop(run, conn, core, peer, out);

    g_autofree char *who = adapter_who(run, core, peer);
    g_autoptr(GString) head = g_string_new(NULL);
    g_autoptr(GString) tail = g_string_new(NULL);
    c->log_fields(core, head, tail);
    const StoreCounters *n = store_counters(store);
    log_info("%s: session end %s%send=%s ms=%" G_GINT64_FORMAT " tls=%s%s%s bytes_read=%"
             G_GUINT64_FORMAT " columns_read=%" G_GUINT64_FORMAT " max_frame=%" G_GUINT64_FORMAT
             " vmhwm_kb=%" G_GUINT64_FORMAT,
             who, head->str, head->len ? " " : "", end, (g_get_monotonic_time() - start) / 1000,
             net_conn_is_tls(conn) ? "yes" : "no", tail->len ? " " : "", tail->str, n->bytes_read,
             n->columns_read, n->max_frame, adapter_vmhwm_kb());
    c->free(core);
    g_string_free(out, TRUE);
}

/* ---- cassmail.conf mapped to each layer's settings (adapter.h); config_load checked the ranges */

Store *
adapter_store_open(const CassmailConfig *cfg, GError **error)
{
    StoreSettings set = {
        .endpoints = cfg->endpoints,
        .keyspace = cfg->keyspace,
        .write_consistency = cfg->write_consistency,
        .read_consistency = cfg->read_consistency,
        .timeout_ms = cfg->timeout_ms,
        .retry_ms = cfg->retry_ms,
        .unavailable_retry_ms = cfg->unavailable_retry_ms,
        .backoff_ms = cfg->backoff_ms,
        .inline_max = cfg->inline_max,
        .part_size = cfg->part_size,
        .gc_min_age_s = cfg->gc_min_age_s,
    };
    return store_open(&set, error);
}

void
adapter_relay_config(const CassmailConfig *cfg, RelayConfig *rc)
{
    *rc = (RelayConfig){
        .smarthost = cfg->relay_smarthost,
        .connect_timeout_ms = cfg->relay_connect_timeout_s * 1000,
        .timeout_ms = cfg->relay_timeout_s * 1000,
        .helo = cfg->hostname,
        .starttls = cfg->relay_starttls,
        .tls_verify = cfg->relay_tls_verify,
        .tls_ca_file = cfg->relay_tls_ca_file,
        .auth_user = cfg->relay_auth_user,
    };
}

ConfigPlaintextAuth
adapter_smtp_plaintext(const CassmailConfig *cfg, gboolean submission)
{
    /* RFC 6409 4.3 / RFC 8314 3: in submission no password in plaintext off this machine */
    if (submission && cfg->allow_plaintext_auth != CONFIG_PLAINTEXT_NEVER)
        return CONFIG_PLAINTEXT_LOOPBACK;
    return cfg->allow_plaintext_auth;
}

void
adapter_smtp_config(const AdapterRun *run, const char *peer, gboolean submission,
                    SmtpSessionConfig *sc)
{
    const CassmailConfig *cfg = run->cfg;
    *sc = (SmtpSessionConfig){
        .hostname = cfg->hostname,
        .domains = cfg->domains,
        .max_message_size = cfg->max_message_size,
        .max_recipients = (guint)cfg->max_recipients,
        .max_errors = (guint)cfg->max_errors,
        .starttls = run->tls != NULL,
        .plaintext_auth = config_plaintext_auth_allowed(adapter_smtp_plaintext(cfg, submission), peer),
        .outbox_copy = cfg->outbox_copy,
        .relay_trusted = config_peer_trusted(cfg, peer),
        .submission = submission,
    };
}

void
adapter_pop3_config(const AdapterRun *run, const char *peer, Pop3SessionConfig *pc)
{
    const CassmailConfig *cfg = run->cfg;
    *pc = (Pop3SessionConfig){
        .batch_size = (guint)cfg->batch_size,
        .mailbox_delimiter = cfg->mailbox_delimiter[0],
        .login_delay_ms = (guint)cfg->login_delay_ms,
        .max_errors = (guint)cfg->max_errors,
        .plaintext_auth = config_plaintext_auth_allowed(cfg->pop3_allow_plaintext_auth, peer),
        .stls = run->tls != NULL,
    };
}

void
adapter_imap_config(const AdapterRun *run, const char *peer, ImapSessionConfig *ic)
{
    const CassmailConfig *cfg = run->cfg;
    *ic = (ImapSessionConfig){
        .login_delay_ms = (guint)cfg->login_delay_ms,
        .max_errors = (guint)cfg->max_errors,
        .max_message_size = cfg->max_message_size,
        .settle_ms = (guint)cfg->imap_settle_ms,
        .plaintext_auth = config_plaintext_auth_allowed(cfg->imap_allow_plaintext_auth, peer),
        .starttls = run->tls != NULL,
    };
}

/* ---- the program ------------------------------------------------------------------------------ */

/* adapter_session - serve one connection (in the forked child, or the inetd process) */
static void
adapter_session(NetConn *conn, const char *peer, gpointer data)
{
    AdapterRun *run = data;
    const ProtoCore *c = run->server->core;
    GError *error = NULL;
    /* store_open only prepares: the Thrift connection is made at first use. */
    Store *store = adapter_store_open(run->cfg, &error);
    if (!store) {
        log_err("%s %s: store: %s", c->name, peer, error->message);
        g_error_free(error);
        net_conn_printf(conn, c->unavailable, run->cfg->hostname);
        net_conn_flush(conn);
        return;
    }
    adapter_run_session(run, conn, store, peer);
    store_free(&store);
}

/* adapter_fail - report ERROR (on stderr too when ECHO: the log goes to syslog and stderr is not
 * the client); exit status RC */
static int
adapter_fail(AdapterRun *run, gboolean echo, GError *error, int rc)
{
    log_err("%s", error->message);
    if (echo)
        fprintf(stderr, "%s: %s\n", run->server->program, error->message);
    g_error_free(error);
    return rc;
}

/* adapter_serve - from the configuration to the end of the last session; the exit status */
static int
adapter_serve(AdapterRun *run, gboolean inetd, const char *listen, gboolean echo)
{
    const AdapterServer *srv = run->server;
    const ProtoCore *c = srv->core;
    CassmailConfig *cfg = run->cfg;
    GError *error = NULL;
    password_set_cost((guint)cfg->password_iterations);
    if (run->tls_on_connect && !cfg->tls_certificate) {
        g_set_error(&error, CONFIG_ERROR, 0, "--tls-on-connect needs [tls] certificate and key");
        return adapter_fail(run, echo, error, 78);
    }
    signal(SIGPIPE, SIG_IGN);

    /* Bind first (ports below 1024 need root), load the key (it may be root's alone), then
     * become [server] user before reading a byte; never serve clients as root. */
    int fd = -1;
    if (!inetd && (fd = net_listen(listen ? listen : config_listen(cfg, c->name), &error)) < 0) {
        if (listen)   /* where the address came from: the operator's to change */
            g_prefix_error(&error, "--listen: ");
        else
            g_prefix_error(&error, "[%s] listen: ", c->name);
        return adapter_fail(run, echo, error, 69);
    }
    int rc = 0;
    if (cfg->tls_certificate && !(run->tls = net_tls_server_context(cfg->tls_certificate, cfg->tls_key, &error)))
        rc = 78;
    else if (srv->prepare && !srv->prepare(run, &error))
        rc = 78;
    else if (!privs_drop(cfg->user, cfg->group, FALSE, &error))
        rc = 77;
    if (rc) {
        if (fd >= 0)
            close(fd);
        return adapter_fail(run, echo, error, rc);
    }

    if (inetd) {
        net_serve_inetd(adapter_session, run);
        return 0;
    }
    if (c->min_idle_s)
        log_info("max %d children, autologout after %d s, %s%s", cfg->max_children,
                 run->idle_timeout_s, run->tls_on_connect ? "TLS on connect" : c->tls_verb,
                 run->tls_on_connect ? ""
                 : run->tls          ? " offered"
                                     : " not offered (no [tls] certificate)");
    if (srv->describe)
        srv->describe(run);
    net_serve_set_evict_idle(cfg->evict_idle_s);
    net_serve_set_client_limit(cfg->client_connection_limit);
    if (net_serve_fd(fd, cfg->max_children, c->busy_reply, adapter_session, run, &error) < 0)
        return adapter_fail(run, echo, error, 69);
    return 0;
}

int
adapter_main(const AdapterServer *server, int argc, char **argv)
{
    const ProtoCore *c = server->core;
    g_autofree char *config_path = NULL, *listen = NULL;
    gboolean foreground = FALSE, inetd = FALSE, tls_on_connect = FALSE;
    int idle_timeout_s = 0;
    g_autofree char *listen_help = g_strdup_printf("Listen on ADDR:PORT instead of [%s] listen",
                                                   c->name);
    g_autofree char *idle_help = g_strdup_printf("Autologout after SECONDS idle (default: [limits] "
                                                 "idle_timeout_s, at least %d)", c->min_idle_s);
    GOptionEntry entries[] = {
        {"config", 'c', 0, G_OPTION_ARG_FILENAME, &config_path,
         "Configuration file (default " ADAPTER_DEFAULT_CONFIG " when it exists, else built-in defaults)",
         "FILE"},
        {"foreground", 'f', 0, G_OPTION_ARG_NONE, &foreground,
         "Log to stderr instead of syslog (the server never daemonizes either way)", NULL},
        {"inetd", 0, 0, G_OPTION_ARG_NONE, &inetd,
         "Serve one connection on stdin/stdout (inetd, xinetd, systemd Accept=yes)", NULL},
        {"listen", 'l', 0, G_OPTION_ARG_STRING, &listen, listen_help, "ADDR:PORT"},
        {NULL, 0, 0, 0, NULL, NULL, NULL},
        {NULL, 0, 0, 0, NULL, NULL, NULL},
        {NULL, 0, 0, 0, NULL, NULL, NULL},
    };
    GOptionEntry *more = &entries[4];
    if (c->tls_on_connect)
        *more++ = (GOptionEntry){"tls-on-connect", 0, 0, G_OPTION_ARG_NONE, &tls_on_connect,
                                 "Implicit TLS (RFC 8314): TLS from the first byte; needs [tls] "
                                 "certificate and key", NULL};
    if (c->min_idle_s)
        *more = (GOptionEntry){"idle-timeout", 't', 0, G_OPTION_ARG_INT, &idle_timeout_s,
                               idle_help, "SECONDS"};
    g_autoptr(GOptionContext) ctx = g_option_context_new(server->parameter);
    g_option_context_set_summary(ctx, server->summary);
    g_option_context_add_main_entries(ctx, entries, NULL);
    if (server->options)
        g_option_context_add_main_entries(ctx, server->options, NULL);
    GError *error = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
        fprintf(stderr, "%s: %s (see --help)\n", server->program, error->message);
        g_error_free(error);
        return 64;
    }
    if (argc > 1) {
        fprintf(stderr, "%s: unexpected argument \"%s\" (see --help)\n", server->program, argv[1]);
        return 64;
    }
    if (inetd && listen) {
        fprintf(stderr, "%s: --inetd and --listen exclude each other\n", server->program);
        return 64;
    }
    /* In inetd mode stderr may be the client's socket: log there only when asked (-f). */
    log_open(server->program, foreground);
    /* Errors go to stderr too when the log does not, except in inetd mode (the client's socket). */
    gboolean echo = !foreground && !inetd;
    if (!config_path && g_file_test(ADAPTER_DEFAULT_CONFIG, G_FILE_TEST_EXISTS))
        config_path = g_strdup(ADAPTER_DEFAULT_CONFIG);
    AdapterRun run = {.server = server, .tls_on_connect = tls_on_connect};
    run.cfg = config_load(config_path, &error);
    if (!run.cfg)
        return adapter_fail(&run, echo, error, 78);
    /* [limits] idle_timeout_s is shared with SMTP (300 s by default): raised to the protocol's
     * least autologout. -t sets any value, for tests and operators. */
    run.idle_timeout_s = idle_timeout_s > 0 ? idle_timeout_s
                                            : MAX(run.cfg->idle_timeout_s, c->min_idle_s);
    run.data_timeout_s = run.cfg->data_timeout_s;
    int rc = adapter_serve(&run, inetd, listen, echo);
    if (server->finish)
        server->finish(&run);
    SSL_CTX_free(run.tls);
    config_free(&run.cfg);
    return rc;
}
