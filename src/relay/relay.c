/*
 * relay.c - the SMTP client towards the smarthost (see relay.h): RFC 5321 client side (3.3 the
 * mail transaction, 4.2 replies, multi-line included; 4.5.2 dot stuffing; 4.5.3.2 timeouts),
 * RFC 3207 STARTTLS, RFC 4954/4616 AUTH PLAIN, RFC 6152 BODY=8BITMIME.
 *
 * One connection per mail transaction, no pipelining: a relayed message waits on the smarthost
 * at each RCPT anyway, and a fresh connection per transaction keeps no state between clients.
 * The socket is non-blocking and every read, write and handshake waits in poll() against a
 * deadline, so nothing the smarthost does (or does not do) can hold a session longer than the
 * configured timeouts.
 */
#include "relay/relay.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "util/log.h"
#include "util/text.h"

struct Relay {
    RelayConfig cfg;          /* strings borrowed from the caller */
    char *host;               /* the smarthost's host (without brackets) and port */
    guint port;
    int fd;
    gboolean loopback;        /* connected to a loopback address */
    SSL *ssl;                 /* after STARTTLS */
    gboolean failed;          /* the connection is unusable: every call fails */
    gboolean in_data;         /* after 354: closing now makes the smarthost drop the message */
    gboolean ended;           /* "." sent and answered */
    gboolean bol;             /* the next text octet starts a line (dot stuffing) */
    gboolean ext_starttls, ext_auth_plain, ext_8bitmime;
    char in[RELAY_LINE_MAX];  /* received, not yet taken as lines */
    gsize in_len;
    GString *out;             /* to send, at most about RELAY_BUFFER octets */
};

static const char *relay_tls_error(char *buf, gsize len, const char *what);

/* --- replies --------------------------------------------------------------------------------- */

void
relay_reply_clear(RelayReply *reply)
{
    g_clear_pointer(&reply->text, g_free);
    reply->code = 0;
}

char *
relay_reply_describe(const RelayReply *reply)
{
    const char *text = reply->text ? reply->text : "";
    return reply->code ? g_strdup_printf("%d %s", reply->code, text) : g_strdup(text);
}

/* relay_fail - the connection is unusable; REPLY (if any) gets code 0 and the reason */
static gboolean G_GNUC_PRINTF(3, 4)
relay_fail(Relay *r, RelayReply *reply, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *why = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    r->failed = TRUE;
    if (reply) {
        relay_reply_clear(reply);
        reply->text = why;
    } else {
        g_free(why);
    }
    return FALSE;
}

/* relay_sanitize - TEXT with anything but printable ASCII and spaces replaced by "?" */
static char *
relay_sanitize(const char *text, gsize len)
{
    char *out = g_strndup(text, len);
    for (char *p = out; *p; p++)
        if (!g_ascii_isprint(*p))
            *p = '?';
    return out;
}

char *
relay_queue_id(const char *text)
{
    const char *p = text ? strstr(text, "queued as ") : NULL;
    if (p)
        p += strlen("queued as ");
    else if (text && (p = strstr(text, "id=")))
        p += 3;
    if (!p)
        return NULL;
    gsize n = 0;
    while (p[n] && (g_ascii_isalnum(p[n]) || strchr("._-", p[n])) && n < 128)
        n++;
    return n ? g_strndup(p, n) : NULL;
}

/* --- I/O with deadlines ------------------------------------------------------------------------ */

/* relay_deadline - MS milliseconds from now, on the monotonic clock (microseconds) */
static gint64
relay_deadline(int ms)
{
    return g_get_monotonic_time() + (gint64)ms * 1000;
}

/* relay_wait - poll for EVENTS until DEADLINE; FALSE on timeout or error */
static gboolean
relay_wait(Relay *r, short events, gint64 deadline)
{
    for (;;) {
        gint64 left = (deadline - g_get_monotonic_time()) / 1000;
        if (left <= 0)
            return FALSE;
        struct pollfd p = {.fd = r->fd, .events = events};
        int n = poll(&p, 1, left > G_MAXINT ? G_MAXINT : (int)left);
        if (n > 0)
            return TRUE;
        if (n < 0 && errno != EINTR)
            return FALSE;
    }
}

/* relay_io - one read into BUF (WRITE FALSE) or write from it (TRUE) of up to N octets, waiting
 * until DEADLINE: >0 octets, 0 at EOF, -1 on error or timeout */
static gssize
relay_io(Relay *r, gboolean write, char *buf, gsize n, gint64 deadline)
{
    for (;;) {
        short ev = write ? POLLOUT : POLLIN;
        if (r->ssl) {
            ERR_clear_error();
            int len = n > G_MAXINT ? G_MAXINT : (int)n;
            int k = write ? SSL_write(r->ssl, buf, len) : SSL_read(r->ssl, buf, len);
            if (k > 0)
                return k;
            int e = SSL_get_error(r->ssl, k);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                return e == SSL_ERROR_ZERO_RETURN ? 0 : -1;
            ev = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        } else {
            ssize_t k = write ? send(r->fd, buf, n, MSG_NOSIGNAL) : recv(r->fd, buf, n, 0);
            if (k > 0 || (k == 0 && !write))
                return k;
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
                return -1;
        }
        if (!relay_wait(r, ev, deadline))
            return -1;
    }
}

/* relay_io_write - all LEN octets of BUF before DEADLINE; FALSE otherwise */
static gboolean
relay_io_write(Relay *r, char *buf, gsize len, gint64 deadline)
{
    for (gssize k = 0; len > 0; buf += k, len -= (gsize)k)
        if ((k = relay_io(r, TRUE, buf, len, deadline)) <= 0)
            return FALSE;
    return TRUE;
}

/* relay_flush - send everything buffered (within timeout_s); FALSE (and failed) otherwise */
static gboolean
relay_flush(Relay *r, RelayReply *reply)
{
    if (r->failed)
        return relay_fail(r, reply, "connection to the smarthost already failed");
    gboolean ok = relay_io_write(r, r->out->str, r->out->len, relay_deadline(r->cfg.timeout_ms));
    OPENSSL_cleanse(r->out->str, r->out->len);   /* it may have held AUTH's credentials */
    g_string_truncate(r->out, 0);
    return ok || relay_fail(r, reply, "writing to the smarthost failed or timed out");
}

/* relay_read_line - the next reply line (without CRLF) into LINE (RELAY_LINE_MAX octets) */
static gboolean
relay_read_line(Relay *r, char *line, gsize *len, gint64 deadline, RelayReply *reply)
{
    for (;;) {
        char *lf = memchr(r->in, '\n', r->in_len);
        if (lf) {
            gsize n = (gsize)(lf - r->in);
            gsize keep = n;
            if (keep && r->in[keep - 1] == '\r')
                keep--;
            memcpy(line, r->in, keep);
            line[keep] = '\0';
            *len = keep;
            memmove(r->in, lf + 1, r->in_len - n - 1);
            r->in_len -= n + 1;
            return TRUE;
        }
        if (r->in_len >= sizeof r->in)
            return relay_fail(r, reply, "smarthost sent a reply line over %d octets", RELAY_LINE_MAX);
        gssize k = relay_io(r, FALSE, r->in + r->in_len, sizeof r->in - r->in_len, deadline);
        if (k == 0)
            return relay_fail(r, reply, "smarthost closed the connection");
        if (k < 0)
            return relay_fail(r, reply, "no reply from the smarthost (timed out or connection lost)");
        r->in_len += (gsize)k;
    }
}

/* relay_read_reply - one reply, multi-line or not (RFC 5321 4.2.1), within timeout_s. LINES, when
 * given, gets the text of every line. FALSE (code 0) on a protocol error or a lost connection. */
static gboolean
relay_read_reply(Relay *r, RelayReply *reply, GPtrArray *lines)
{
    relay_reply_clear(reply);
    gint64 deadline = relay_deadline(r->cfg.timeout_ms);
    char line[RELAY_LINE_MAX + 1];
    int code = 0;
    for (int i = 0; i < RELAY_REPLY_LINES; i++) {
        gsize len = 0;
        if (!relay_read_line(r, line, &len, deadline, reply))
            return FALSE;
        if (len < 3 || !g_ascii_isdigit(line[0]) || !g_ascii_isdigit(line[1]) ||
            !g_ascii_isdigit(line[2]) || (len > 3 && line[3] != ' ' && line[3] != '-')) {
            g_autofree char *bad = relay_sanitize(line, MIN(len, 80));
            return relay_fail(r, reply, "smarthost sent a malformed reply line \"%s\"", bad);
        }
        int c = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
        if (c < 200 || c > 599 || (code && c != code))
            return relay_fail(r, reply, "smarthost sent an unexpected reply code %d", c);
        code = c;
        const char *text = len > 4 ? line + 4 : "";
        if (lines)
            g_ptr_array_add(lines, relay_sanitize(text, strlen(text)));
        if (len == 3 || line[3] == ' ') {
            reply->code = code;
            reply->text = relay_sanitize(text, strlen(text));
            return TRUE;
        }
    }
    return relay_fail(r, reply, "smarthost sent a reply of over %d lines", RELAY_REPLY_LINES);
}

/* relay_command - send one command line (FMT) and read its reply */
static gboolean G_GNUC_PRINTF(4, 5)
relay_command(Relay *r, RelayReply *reply, GPtrArray *lines, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_string_append_vprintf(r->out, fmt, ap);
    va_end(ap);
    g_string_append(r->out, "\r\n");
    return relay_flush(r, reply) && relay_read_reply(r, reply, lines);
}

/* --- the session ----------------------------------------------------------------------------- */

SSL_CTX *
relay_tls_context(const RelayConfig *rc, GError **error)
{
    if (!rc->smarthost || rc->starttls == RELAY_TLS_NONE)
        return NULL;
    char ebuf[256];
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_FAILED, "[relay] TLS: %s",
                    relay_tls_error(ebuf, sizeof ebuf, "no context"));
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    if (rc->tls_verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        gboolean loaded = rc->tls_ca_file ? SSL_CTX_load_verify_locations(ctx, rc->tls_ca_file, NULL)
                                         : SSL_CTX_set_default_verify_paths(ctx);
        if (!loaded) {
            /* a file that is not there or not readable: the system's words, not OpenSSL's last */
            unsigned long first = ERR_peek_error();
            g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_FAILED,
                        "[relay] tls_ca_file %s: cannot load CA certificates: %s",
                        rc->tls_ca_file ? rc->tls_ca_file : "(the system's)",
                        ERR_GET_LIB(first) == ERR_LIB_SYS
                            ? g_strerror(ERR_GET_REASON(first))
                            : relay_tls_error(ebuf, sizeof ebuf, "unknown error"));
            SSL_CTX_free(ctx);
            return NULL;
        }
    }
    return ctx;
}

char *
relay_password_load(const char *path, GError **error)
{
    char *text = NULL;
    gsize len = 0;
    if (!g_file_get_contents(path, &text, &len, error))
        return NULL;
    gsize n = strcspn(text, "\r\n");
    char *password = g_strndup(text, n);
    OPENSSL_cleanse(text, len);
    g_free(text);
    if (!*password) {
        g_free(password);
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_FAILED, "%s: no password on its first line", path);
        return NULL;
    }
    return password;
}

const char *
relay_peer(const Relay *r)
{
    return r->cfg.smarthost;
}

/* relay_connect - a connected non-blocking socket to the smarthost within connect_timeout_ms */
static gboolean
relay_connect(Relay *r, RelayReply *reply)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC}, *res = NULL;
    char service[8];
    g_snprintf(service, sizeof service, "%u", r->port);
    int rc = getaddrinfo(r->host, service, &hints, &res);
    if (rc != 0)
        return relay_fail(r, reply, "cannot resolve smarthost %s: %s", r->cfg.smarthost, gai_strerror(rc));
    gint64 deadline = relay_deadline(r->cfg.connect_timeout_ms);
    int err = 0;
    for (struct addrinfo *ai = res; ai && r->fd < 0; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        r->fd = fd;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ||
            (errno == EINPROGRESS && relay_wait(r, POLLOUT, deadline))) {
            socklen_t sl = sizeof err;
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl) == 0 && err == 0) {
                if (ai->ai_family == AF_INET)
                    r->loopback = (ntohl(((struct sockaddr_in *)ai->ai_addr)->sin_addr.s_addr) >> 24) == 127;
                else if (ai->ai_family == AF_INET6)
                    r->loopback = IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr);
                break;
            }
        } else {
            err = errno == EINPROGRESS ? ETIMEDOUT : errno;
        }
        close(fd);
        r->fd = -1;
    }
    freeaddrinfo(res);
    if (r->fd < 0)
        return relay_fail(r, reply, "cannot connect to smarthost %s: %s", r->cfg.smarthost,
                          g_strerror(err ? err : ETIMEDOUT));
    return TRUE;
}

/* relay_ehlo - EHLO and the extensions we use from its reply */
static gboolean
relay_ehlo(Relay *r, RelayReply *reply)
{
    g_autoptr(GPtrArray) lines = g_ptr_array_new_with_free_func(g_free);
    if (!relay_command(r, reply, lines, "EHLO %s", r->cfg.helo ? r->cfg.helo : "localhost"))
        return FALSE;
    if (reply->code != 250)
        return relay_fail(r, reply, "smarthost refused EHLO: %d %s", reply->code, reply->text);
    r->ext_starttls = r->ext_auth_plain = r->ext_8bitmime = FALSE;
    for (guint i = 1; i < lines->len; i++) {
        g_auto(GStrv) words = g_strsplit(g_ptr_array_index(lines, i), " ", -1);
        if (!words[0])
            continue;
        if (g_ascii_strcasecmp(words[0], "STARTTLS") == 0)
            r->ext_starttls = TRUE;
        else if (g_ascii_strcasecmp(words[0], "8BITMIME") == 0)
            r->ext_8bitmime = TRUE;
        else if (g_ascii_strcasecmp(words[0], "AUTH") == 0)
            for (char **w = words + 1; *w; w++)
                r->ext_auth_plain |= g_ascii_strcasecmp(*w, "PLAIN") == 0;
    }
    return TRUE;
}

/* relay_tls_error - the newest OpenSSL error text (or WHAT) */
static const char *
relay_tls_error(char *buf, gsize len, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    if (!e)
        return what;
    ERR_error_string_n(e, buf, len);
    return buf;
}

/* relay_starttls - STARTTLS, the handshake (certificate checked as configured), EHLO again */
static gboolean
relay_starttls(Relay *r, RelayReply *reply)
{
    char ebuf[256];
    if (!relay_command(r, reply, NULL, "STARTTLS"))
        return FALSE;
    if (reply->code != 220)
        return relay_fail(r, reply, "smarthost refused STARTTLS: %d %s", reply->code, reply->text);
    /* RFC 3207 6: nothing received before the handshake may count as sent under TLS */
    r->in_len = 0;
    ERR_clear_error();
    if (!r->cfg.tls)
        return relay_fail(r, reply, "TLS: no client context");
    r->ssl = SSL_new(r->cfg.tls);
    if (!r->ssl || !SSL_set_fd(r->ssl, r->fd))
        return relay_fail(r, reply, "TLS: %s", relay_tls_error(ebuf, sizeof ebuf, "no session"));
    unsigned char ip[16];
    gboolean literal = inet_pton(AF_INET, r->host, ip) == 1 || inet_pton(AF_INET6, r->host, ip) == 1;
    if (r->cfg.tls_verify) {
        X509_VERIFY_PARAM *param = SSL_get0_param(r->ssl);
        if (literal ? !X509_VERIFY_PARAM_set1_ip_asc(param, r->host) : !SSL_set1_host(r->ssl, r->host))
            return relay_fail(r, reply, "TLS: cannot check the name %s", r->host);
    }
    if (!literal)
        SSL_set_tlsext_host_name(r->ssl, r->host);
    gint64 deadline = relay_deadline(r->cfg.timeout_ms);
    for (;;) {
        ERR_clear_error();
        int k = SSL_connect(r->ssl);
        if (k == 1)
            break;
        int e = SSL_get_error(r->ssl, k);
        short ev = e == SSL_ERROR_WANT_READ ? POLLIN : e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
        if (!ev || !relay_wait(r, ev, deadline)) {
            long v = SSL_get_verify_result(r->ssl);
            const char *why = v != X509_V_OK ? X509_verify_cert_error_string(v)
                                             : relay_tls_error(ebuf, sizeof ebuf, ev ? "timed out" : "failed");
            SSL_free(r->ssl);   /* nothing more may be sent on a failed handshake */
            r->ssl = NULL;
            return relay_fail(r, reply, "TLS handshake with smarthost %s failed: %s", r->cfg.smarthost, why);
        }
    }
    log_info("relay %s: STARTTLS: %s %s%s", r->cfg.smarthost, SSL_get_version(r->ssl),
             SSL_CIPHER_get_name(SSL_get_current_cipher(r->ssl)),
             r->cfg.tls_verify ? ", certificate verified" : ", certificate not checked (tls_verify = false)");
    return relay_ehlo(r, reply);
}

/* relay_auth - AUTH PLAIN with the configured user and password */
static gboolean
relay_auth(Relay *r, RelayReply *reply)
{
    if (!r->ssl && !r->loopback)
        return relay_fail(r, reply, "not sending the AUTH password to %s without TLS", r->cfg.smarthost);
    if (!r->ext_auth_plain)
        return relay_fail(r, reply, "smarthost %s does not offer AUTH PLAIN", r->cfg.smarthost);
    gsize ul = strlen(r->cfg.auth_user), pl = strlen(r->cfg.auth_password ? r->cfg.auth_password : "");
    gsize n = ul + pl + 2;
    guchar *plain = g_malloc(n);
    plain[0] = '\0';
    memcpy(plain + 1, r->cfg.auth_user, ul);
    plain[ul + 1] = '\0';
    memcpy(plain + ul + 2, r->cfg.auth_password ? r->cfg.auth_password : "", pl);
    char *b64 = g_base64_encode(plain, n);
    OPENSSL_cleanse(plain, n);
    g_free(plain);
    gboolean ok = relay_command(r, reply, NULL, "AUTH PLAIN %s", b64);
    OPENSSL_cleanse(b64, strlen(b64));
    g_free(b64);
    if (!ok)
        return FALSE;
    if (reply->code != 235)
        return relay_fail(r, reply, "smarthost refused AUTH as %s: %d %s", r->cfg.auth_user, reply->code,
                          reply->text);
    return TRUE;
}

Relay *
relay_open(const RelayConfig *cfg, const char *sender, gboolean body8, RelayReply *reply)
{
    Relay *r = g_new0(Relay, 1);
    r->cfg = *cfg;
    r->fd = -1;
    r->bol = TRUE;
    r->out = g_string_sized_new(1024);
    relay_reply_clear(reply);
    gboolean ok = FALSE;
    if (!cfg->smarthost || !text_hostport_split(cfg->smarthost, 0, &r->host, &r->port))
        relay_fail(r, reply, "no usable [relay] smarthost");
    else if (relay_connect(r, reply) && relay_read_reply(r, reply, NULL)) {
        if (reply->code != 220)
            relay_fail(r, reply, "smarthost greeted with %d %s", reply->code, reply->text);
        else
            ok = relay_ehlo(r, reply);
    }
    if (ok && cfg->starttls != RELAY_TLS_NONE) {
        if (r->ext_starttls)
            ok = relay_starttls(r, reply);
        else if (cfg->starttls == RELAY_TLS_REQUIRED)
            ok = relay_fail(r, reply, "smarthost %s does not offer STARTTLS ([relay] starttls = required)",
                            cfg->smarthost);
    }
    if (ok && cfg->auth_user)
        ok = relay_auth(r, reply);
    if (ok)
        ok = relay_command(r, reply, NULL, "MAIL FROM:<%s>%s", sender,
                           body8 && r->ext_8bitmime ? " BODY=8BITMIME" : "") &&
             reply->code / 100 == 2;
    if (!ok)   /* the caller logs REPLY */
        relay_free(&r);
    return r;
}

gboolean
relay_rcpt(Relay *r, const char *address, RelayReply *reply)
{
    return relay_command(r, reply, NULL, "RCPT TO:<%s>", address) && reply->code / 100 == 2;
}

gboolean
relay_data(Relay *r, RelayReply *reply)
{
    if (!relay_command(r, reply, NULL, "DATA"))
        return FALSE;
    if (reply->code != 354)
        return reply->code / 100 == 2 ? relay_fail(r, reply, "smarthost answered DATA with %d", reply->code)
                                      : FALSE;
    r->in_data = TRUE;
    r->bol = TRUE;
    return TRUE;
}

gboolean
relay_write(Relay *r, const char *data, gsize len)
{
    if (r->failed || !r->in_data || r->ended)
        return FALSE;
    const char *p = data, *end = data + len;
    while (p < end) {
        if (r->bol && *p == '.')
            g_string_append_c(r->out, '.');   /* RFC 5321 4.5.2 */
        const char *lf = memchr(p, '\n', (gsize)(end - p));
        const char *next = lf ? lf + 1 : end;
        g_string_append_len(r->out, p, next - p);
        r->bol = lf != NULL;
        p = next;
        if (r->out->len >= RELAY_BUFFER && !relay_flush(r, NULL))
            return FALSE;
    }
    return TRUE;
}

gboolean
relay_end(Relay *r, RelayReply *reply)
{
    if (r->failed || !r->in_data)
        return relay_fail(r, reply, "connection to the smarthost already failed");
    g_string_append(r->out, r->bol ? ".\r\n" : "\r\n.\r\n");
    if (!relay_flush(r, reply) || !relay_read_reply(r, reply, NULL))
        return FALSE;
    r->ended = TRUE;
    r->in_data = FALSE;
    return reply->code / 100 == 2;
}

void
relay_free(Relay **rp)
{
    Relay *r = *rp;
    if (!r)
        return;
    if (r->fd >= 0 && !r->failed && !r->in_data) {
        /* Outside DATA the smarthost forgets an unfinished transaction at QUIT; the 221 is
         * waited for only briefly. Inside DATA we close without ".", so it drops the message. */
        RelayReply bye = {0};
        r->cfg.timeout_ms = MIN(r->cfg.timeout_ms, 2000);
        relay_command(r, &bye, NULL, "QUIT");
        relay_reply_clear(&bye);
    }
    if (r->ssl)
        SSL_free(r->ssl);
    if (r->fd >= 0)
        close(r->fd);
    g_string_free(r->out, TRUE);
    g_free(r->host);
    g_free(r);
    *rp = NULL;
}
