/*
 * conn.c - the buffered client connection: a bounded line reader with deadlines, a buffered
 * writer with a stall timeout, and an optional TLS layer (see conn.h for the policies).
 *
 * Both buffers are allocated once at NET_CONN_BUFFER_SIZE and never grow. Every wait is a poll()
 * with a deadline; reads and writes never block outside poll (sockets get MSG_DONTWAIT, pipes are
 * read only after POLLIN and written at most PIPE_BUF octets after POLLOUT). The transport (plain
 * or TLS) sits behind a table of two functions; OpenSSL reaches the fds through our own BIO,
 * so it uses the same non-blocking, SIGPIPE-free calls.
 */
#include "net/conn.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>

G_DEFINE_QUARK(cassmail-net-error-quark, net_error)

typedef enum {
    IO_OK,        /* *N octets moved (at least one) */
    IO_AGAIN,     /* TLS only: try the same call again */
    IO_EOF,
    IO_TIMEOUT,
    IO_ERROR,
} IoResult;

/* A transport: how octets get in and out. */
typedef struct {
    /* some octets (up to LEN, *N of them) read into RBUF or written from WBUF, the other one
     * NULL, waiting until DEADLINE (monotonic µs, or -1 for none) */
    IoResult (*io)(NetConn *c, void *rbuf, const void *wbuf, gsize len, gint64 deadline, gsize *n);
    gsize (*pending)(NetConn *c);   /* octets the transport holds that the fd no longer has */
} NetTransport;

struct NetConn {
    int rfd, wfd;
    gboolean rsock, wsock;          /* the fd is a socket: recv/send with flags */
    const NetTransport *transport;
    SSL *ssl;
    gboolean bio_eof;               /* the BIO read EOF (OpenSSL asks, to tell EOF from errors) */
    char tls_desc[128];

    guint8 *rbuf;                   /* NET_CONN_BUFFER_SIZE */
    gsize rpos, rlen;               /* unconsumed input is rbuf[rpos, rlen) */
    gsize scanned;                  /* rbuf[rpos, rpos+scanned) is known to hold no LF */
    gboolean skipping;              /* dropping an over-long line up to its LF */
    gboolean skip_cr;               /* the last octet dropped while skipping was a CR */
    gboolean eof, rfailed;

    guint8 *wbuf;                   /* NET_CONN_BUFFER_SIZE */
    gsize wlen;
    gboolean wfailed;
    int write_timeout_ms;
};

/* A read deadline not yet computed (net_conn_read_line sets it before its first read). */
#define DEADLINE_UNSET G_MININT64

/* remaining_ms - poll() timeout until DEADLINE (-1: none), rounded up */
static int
remaining_ms(gint64 deadline)
{
    if (deadline < 0)
        return -1;
    gint64 left = deadline - g_get_monotonic_time();
    if (left <= 0)
        return 0;
    return (int)MIN((left + 999) / 1000, (gint64)INT_MAX);
}

/* wait_fd - 1 when FD is ready for EVENTS (or has an error to report), 0 at DEADLINE, -1 on a
 * poll failure */
static int
wait_fd(int fd, short events, gint64 deadline)
{
    for (;;) {
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, remaining_ms(deadline));
        if (r > 0)
            return 1;
        if (r == 0)
            return 0;
        if (errno != EINTR && errno != EAGAIN)
            return -1;
    }
}

/* deadline_after - the monotonic time TIMEOUT_MS from now; -1 (none) for a negative one */
static gint64
deadline_after(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : g_get_monotonic_time() + (gint64)timeout_ms * 1000;
}

/* write_deadline - when a write starting now has stalled too long */
static gint64
write_deadline(NetConn *c)
{
    return deadline_after(c->write_timeout_ms);
}

/* raw_recv - one read from the fd that never blocks on a socket */
static ssize_t
raw_recv(NetConn *c, void *buf, gsize len)
{
    return c->rsock ? recv(c->rfd, buf, len, MSG_DONTWAIT) : read(c->rfd, buf, len);
}

/* raw_send - one write to the fd that never blocks on a socket and never raises SIGPIPE there;
 * a pipe takes at most PIPE_BUF octets, which a blocking pipe accepts at once after POLLOUT */
static ssize_t
raw_send(NetConn *c, const void *buf, gsize len)
{
    if (c->wsock)
        return send(c->wfd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    return write(c->wfd, buf, MIN(len, (gsize)PIPE_BUF));
}

/* retryable - whether a failed read or write should wait and try again */
static gboolean
retryable(int err)
{
    return err == EINTR || err == EAGAIN || err == EWOULDBLOCK;
}

/* plain_io - the plain transport. A socket is tried first and polled only when it has nothing or
 * no room (under load it mostly has: one system call, not two); a pipe only after poll() says
 * so, since its read or write would block. */
static IoResult
plain_io(NetConn *c, void *rbuf, const void *wbuf, gsize len, gint64 deadline, gsize *n)
{
    gboolean sock = rbuf ? c->rsock : c->wsock;
    for (gboolean first = TRUE;; first = FALSE) {
        if (!(first && sock)) {
            int w = rbuf ? wait_fd(c->rfd, POLLIN, deadline) : wait_fd(c->wfd, POLLOUT, deadline);
            if (w <= 0)
                return w == 0 ? IO_TIMEOUT : IO_ERROR;
        }
        ssize_t r = rbuf ? raw_recv(c, rbuf, len) : raw_send(c, wbuf, len);
        if (r > 0) {
            *n = (gsize)r;
            return IO_OK;
        }
        if (r == 0 && rbuf)
            return IO_EOF;
        if (r < 0 && !retryable(errno))
            return IO_ERROR;
    }
}

/* plain_pending - a plain fd holds nothing of ours */
static gsize
plain_pending(NetConn *c)
{
    (void)c;
    return 0;
}

static const NetTransport plain_transport = {plain_io, plain_pending};

/* OpenSSL talks to the fds through this BIO, built on raw_recv/raw_send: no SIGPIPE from a TLS
 * write to a vanished client, and waiting stays in our poll() with our deadlines. */

/* bio_write - BIO method: one non-blocking write */
static int
bio_write(BIO *b, const char *buf, int len)
{
    NetConn *c = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t r = raw_send(c, buf, (gsize)MAX(len, 0));
    if (r < 0 && retryable(errno))
        BIO_set_retry_write(b);
    return (int)r;
}

/* bio_read - BIO method: one non-blocking read; 0 marks EOF for BIO_CTRL_EOF */
static int
bio_read(BIO *b, char *buf, int len)
{
    NetConn *c = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t r = raw_recv(c, buf, (gsize)MAX(len, 0));
    if (r < 0 && retryable(errno))
        BIO_set_retry_read(b);
    if (r == 0 && len > 0)
        c->bio_eof = TRUE;
    return (int)r;
}

/* bio_ctrl - BIO method: only what the SSL layer asks of a plain fd BIO */
static long
bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    NetConn *c = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_EOF:
        return c && c->bio_eof;
    default:
        return 0;
    }
}

/* bio_create - BIO method: a BIO is usable as soon as it exists */
static int
bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

/* bio_method_make - the method table, once per process (BIO type indices are a small, global
 * resource, so it is never freed) */
static gpointer
bio_method_make(gpointer unused)
{
    (void)unused;
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "cassmail-conn");
    if (m && !(BIO_meth_set_write(m, bio_write) && BIO_meth_set_read(m, bio_read) &&
               BIO_meth_set_ctrl(m, bio_ctrl) && BIO_meth_set_create(m, bio_create))) {
        BIO_meth_free(m);
        m = NULL;
    }
    return m;
}

/* bio_method - our BIO method, or NULL when OpenSSL could not make it */
static BIO_METHOD *
bio_method(void)
{
    static GOnce once = G_ONCE_INIT;
    return g_once(&once, bio_method_make, NULL);
}

/* tls_wait - after an SSL call returned RET: wait for what OpenSSL needs (IO_AGAIN), or the
 * outcome */
static IoResult
tls_wait(NetConn *c, int ret, gint64 deadline)
{
    int w;
    switch (SSL_get_error(c->ssl, ret)) {
    case SSL_ERROR_WANT_READ:
        w = wait_fd(c->rfd, POLLIN, deadline);
        break;
    case SSL_ERROR_WANT_WRITE:
        w = wait_fd(c->wfd, POLLOUT, deadline);
        break;
    case SSL_ERROR_ZERO_RETURN:
        return IO_EOF;
    case SSL_ERROR_SYSCALL:
        if (errno == EINTR)
            return IO_AGAIN;
        return IO_ERROR;
    default:
        return IO_ERROR;
    }
    return w > 0 ? IO_AGAIN : w == 0 ? IO_TIMEOUT : IO_ERROR;
}

/* tls_io - the TLS transport: decrypted octets in, octets encrypted and sent out (partial
 * writes are enabled) */
static IoResult
tls_io(NetConn *c, void *rbuf, const void *wbuf, gsize len, gint64 deadline, gsize *n)
{
    int chunk = (int)MIN(len, (gsize)INT_MAX);
    for (;;) {
        ERR_clear_error();
        int r = rbuf ? SSL_read(c->ssl, rbuf, chunk) : SSL_write(c->ssl, wbuf, chunk);
        if (r > 0) {
            *n = (gsize)r;
            return IO_OK;
        }
        IoResult io = tls_wait(c, r, deadline);
        if (io == IO_EOF && !rbuf)
            return IO_ERROR;   /* the peer closed TLS: it will not read this */
        if (io != IO_AGAIN)
            return io;
    }
}

/* tls_pending - decrypted octets inside OpenSSL */
static gsize
tls_pending(NetConn *c)
{
    int p = SSL_pending(c->ssl);
    return p > 0 ? (gsize)p : 0;
}

static const NetTransport tls_transport = {tls_io, tls_pending};

/* is_socket - whether FD is a socket */
static gboolean
is_socket(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

/* net_conn_new - see conn.h */
NetConn *
net_conn_new(int rfd, int wfd)
{
    NetConn *c = g_new0(NetConn, 1);
    c->rfd = rfd;
    c->wfd = wfd;
    c->rsock = is_socket(rfd);
    c->wsock = rfd == wfd ? c->rsock : is_socket(wfd);
    c->transport = &plain_transport;
    c->rbuf = g_malloc(NET_CONN_BUFFER_SIZE);
    c->wbuf = g_malloc(NET_CONN_BUFFER_SIZE);
    c->write_timeout_ms = NET_CONN_WRITE_TIMEOUT_MS;
    return c;
}

/* net_conn_free - see conn.h */
void
net_conn_free(NetConn **cp)
{
    if (!cp || !*cp)
        return;
    NetConn *c = *cp;
    if (c->ssl) {
        if (!c->wfailed && !c->rfailed) {
            ERR_clear_error();
            (void)SSL_shutdown(c->ssl);   /* one try at close_notify; never wait for the peer */
        }
        SSL_free(c->ssl);
        ERR_clear_error();
    }
    g_free(c->rbuf);
    g_free(c->wbuf);
    g_free(c);
    *cp = NULL;
}

/* read_in - one read into the free end of the input buffer: OK (octets added), EOF (noted),
 * TIMEOUT, or ERROR (which sticks) */
static NetLineStatus
read_in(NetConn *c, gint64 deadline)
{
    gsize n = 0;
    switch (c->transport->io(c, c->rbuf + c->rlen, NULL, NET_CONN_BUFFER_SIZE - c->rlen, deadline,
                             &n)) {
    case IO_OK:
        c->rlen += n;
        return NET_LINE_OK;
    case IO_EOF:
        c->eof = TRUE;
        return NET_LINE_EOF;
    case IO_TIMEOUT:
        return NET_LINE_TIMEOUT;
    case IO_AGAIN:
    case IO_ERROR:
    default:
        c->rfailed = TRUE;
        return NET_LINE_ERROR;
    }
}

/* net_conn_read_line - see conn.h */
NetLineStatus
net_conn_read_line(NetConn *c, gsize max, int timeout_ms, GString *line)
{
    g_string_truncate(line, 0);
    if (c->rfailed)
        return NET_LINE_ERROR;
    max = CLAMP(max, 1, (gsize)NET_CONN_LINE_MAX);
    /* The deadline is set when the call first has to read: a line already buffered costs no
     * clock reading (one per read, not one per line). */
    gint64 deadline = DEADLINE_UNSET;

    for (;;) {
        guint8 *start = c->rbuf + c->rpos;
        gsize avail = c->rlen - c->rpos;
        if (c->skipping) {
            const guint8 *lf = memchr(start, '\n', avail);
            if (lf) {
                /* The LF's CR may have gone with an earlier read (or with the first MAX octets):
                 * skip_cr remembers it, so the caller learns how the line really ended. */
                gboolean cr = lf > start ? lf[-1] == '\r' : c->skip_cr;
                g_string_append(line, cr ? "\r\n" : "\n");
                c->rpos += (gsize)(lf - start) + 1;
                c->skipping = c->skip_cr = FALSE;
                c->scanned = 0;
                return NET_LINE_TOO_LONG;
            }
            if (avail > 0)
                c->skip_cr = start[avail - 1] == '\r';
            c->rpos = c->rlen = c->scanned = 0;   /* the middle of an over-long line: drop it */
        } else {
            gsize limit = MIN(avail, max);
            if (c->scanned < limit) {
                const guint8 *lf = memchr(start + c->scanned, '\n', limit - c->scanned);
                if (lf) {
                    gsize n = (gsize)(lf - start) + 1;
                    g_string_append_len(line, (const char *)start, (gssize)n);
                    c->rpos += n;
                    c->scanned = 0;
                    return memchr(start, '\0', n) ? NET_LINE_NUL : NET_LINE_OK;
                }
                c->scanned = limit;
            }
            if (avail >= max) {
                /* MAX octets and no LF among them: whatever follows, this line is too long. */
                c->skipping = TRUE;
                continue;
            }
        }

        if (c->eof) {
            if (c->skipping) {   /* no line end at all: LINE stays empty */
                c->skipping = c->skip_cr = FALSE;
                c->rpos = c->rlen = c->scanned = 0;
                return NET_LINE_TOO_LONG;
            }
            g_string_append_len(line, (const char *)c->rbuf + c->rpos, (gssize)(c->rlen - c->rpos));
            c->rpos = c->rlen = c->scanned = 0;
            return NET_LINE_EOF;
        }

        /* About to wait for the client: it must have every reply we owe it first (RFC 2920
         * section 3.1: a server may buffer replies but flushes before a blocking read). */
        if (c->wlen > 0)
            (void)net_conn_flush(c);   /* a failure sticks and shows on the next write */

        /* Make room: the unconsumed part is shorter than MAX, so after this there is some. */
        if (c->rpos > 0) {
            memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
            c->rlen -= c->rpos;
            c->rpos = 0;
        }
        if (deadline == DEADLINE_UNSET)
            deadline = deadline_after(timeout_ms);
        NetLineStatus st = read_in(c, deadline);
        if (st == NET_LINE_TIMEOUT || st == NET_LINE_ERROR)
            return st;
    }
}

/* net_line_chomp - see conn.h */
gboolean
net_line_chomp(GString *line)
{
    if (line->len == 0 || line->str[line->len - 1] != '\n')
        return FALSE;
    g_string_truncate(line, line->len - 1);
    if (line->len > 0 && line->str[line->len - 1] == '\r') {
        g_string_truncate(line, line->len - 1);
        return TRUE;
    }
    return FALSE;
}

/* net_line_status_name - see conn.h */
const char *
net_line_status_name(NetLineStatus status)
{
    switch (status) {
    case NET_LINE_OK:
        return "OK";
    case NET_LINE_NUL:
        return "NUL";
    case NET_LINE_TOO_LONG:
        return "TOO_LONG";
    case NET_LINE_EOF:
        return "EOF";
    case NET_LINE_TIMEOUT:
        return "TIMEOUT";
    case NET_LINE_ERROR:
        return "ERROR";
    }
    return "?";
}

/* net_conn_pending - see conn.h */
gsize
net_conn_pending(NetConn *c)
{
    return (c->rlen - c->rpos) + c->transport->pending(c);
}

/* net_conn_peek - see conn.h */
const char *
net_conn_peek(NetConn *c, gsize *len)
{
    *len = c->skipping || c->rfailed ? 0 : c->rlen - c->rpos;
    return (const char *)c->rbuf + c->rpos;
}

/* net_conn_consume - see conn.h */
void
net_conn_consume(NetConn *c, gsize n)
{
    g_return_if_fail(!c->skipping && n <= c->rlen - c->rpos);
    c->rpos += n;
    c->scanned = 0;
    if (c->rpos == c->rlen)
        c->rpos = c->rlen = 0;
}

/* net_conn_read_more - see conn.h */
NetLineStatus
net_conn_read_more(NetConn *c, int timeout_ms)
{
    if (c->rfailed || c->skipping)
        return NET_LINE_ERROR;
    if (c->rlen > c->rpos)
        return NET_LINE_OK;
    if (c->eof)
        return NET_LINE_EOF;
    if (c->wlen > 0)
        (void)net_conn_flush(c);   /* the client gets what it is owed before we wait */
    c->rpos = c->rlen = c->scanned = 0;
    return read_in(c, deadline_after(timeout_ms));
}

/* net_conn_discard_input - see conn.h */
void
net_conn_discard_input(NetConn *c)
{
    c->rpos = c->rlen = c->scanned = 0;
    c->skipping = c->skip_cr = FALSE;
}

/* net_conn_write - see conn.h */
gboolean
net_conn_write(NetConn *c, const void *data, gsize len)
{
    const guint8 *p = data;
    while (len > 0) {
        if (c->wfailed)
            return FALSE;
        if (c->wlen == NET_CONN_BUFFER_SIZE && !net_conn_flush(c))
            return FALSE;
        gsize n = MIN(len, NET_CONN_BUFFER_SIZE - c->wlen);
        memcpy(c->wbuf + c->wlen, p, n);
        c->wlen += n;
        p += n;
        len -= n;
    }
    return !c->wfailed;
}

/* net_conn_printf - see conn.h */
gboolean
net_conn_printf(NetConn *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *text = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    return net_conn_write(c, text, strlen(text));
}

/* net_conn_flush - see conn.h */
gboolean
net_conn_flush(NetConn *c)
{
    gsize off = 0;
    while (!c->wfailed && off < c->wlen) {
        gsize n = 0;
        /* The stall timeout restarts with every octet that gets through. */
        if (c->transport->io(c, NULL, c->wbuf + off, c->wlen - off, write_deadline(c), &n) == IO_OK)
            off += n;
        else
            c->wfailed = TRUE;
    }
    c->wlen = 0;
    return !c->wfailed;
}

/* net_conn_set_write_timeout - see conn.h */
void
net_conn_set_write_timeout(NetConn *c, int timeout_ms)
{
    c->write_timeout_ms = timeout_ms > 0 ? timeout_ms : NET_CONN_WRITE_TIMEOUT_MS;
}

/* set_nonblocking - O_NONBLOCK on FD (OpenSSL must never block outside our poll) */
static gboolean
set_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl >= 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0;
}

/* tls_error - the first OpenSSL error, or WHAT alone */
static void
tls_error(GError **error, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256];
    if (e) {
        ERR_error_string_n(e, buf, sizeof buf);
        g_set_error(error, NET_ERROR, NET_ERROR_TLS, "%s: %s", what, buf);
    } else {
        g_set_error(error, NET_ERROR, NET_ERROR_TLS, "%s", what);
    }
    ERR_clear_error();
}

/* net_tls_server_context - see conn.h */
SSL_CTX *
net_tls_server_context(const char *certificate, const char *key, GError **error)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        tls_error(error, "cannot create a TLS context");
        return NULL;
    }
    if (!SSL_CTX_set_min_proto_version(ctx, NET_TLS_MIN_VERSION)) {
        tls_error(error, "cannot require TLS 1.2");
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                             SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* One process per connection: a session cache would never be hit. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    g_autofree char *what = NULL;
    /* OpenSSL's first error says why: a system error (no such file, permission denied) as it is;
     * a file of other content, or the key of another certificate, said in words too */
    if (SSL_CTX_use_certificate_chain_file(ctx, certificate) != 1) {
        gboolean sys = ERR_GET_LIB(ERR_peek_error()) == ERR_LIB_SYS;
        what = g_strdup_printf("[tls] certificate %s: cannot load%s", certificate,
                               sys ? "" : " (no PEM certificate in it?)");
    } else if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        unsigned long e = ERR_peek_error();
        if (ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
            what = g_strdup_printf("[tls] key %s does not match certificate %s", key, certificate);
        else
            what = g_strdup_printf("[tls] key %s: cannot load%s", key,
                                   ERR_GET_LIB(e) == ERR_LIB_SYS ? "" : " (no PEM private key in it?)");
    } else if (SSL_CTX_check_private_key(ctx) != 1) {
        what = g_strdup_printf("[tls] key %s does not match certificate %s", key, certificate);
    }
    if (what) {
        tls_error(error, what);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* net_conn_start_tls - see conn.h */
gboolean
net_conn_start_tls(NetConn *c, SSL_CTX *ctx, GError **error)
{
    if (c->ssl) {
        g_set_error(error, NET_ERROR, NET_ERROR_TLS, "TLS is already active");
        return FALSE;
    }
    if (!net_conn_flush(c)) {
        g_set_error(error, NET_ERROR, NET_ERROR_SYSTEM, "cannot write to the client");
        return FALSE;
    }
    net_conn_discard_input(c);
    /* Sockets are read and written with MSG_DONTWAIT; a pipe must not block OpenSSL either. */
    if ((!c->rsock && !set_nonblocking(c->rfd)) || (!c->wsock && !set_nonblocking(c->wfd))) {
        g_set_error(error, NET_ERROR, NET_ERROR_SYSTEM, "fcntl: %s", g_strerror(errno));
        c->rfailed = c->wfailed = TRUE;
        return FALSE;
    }
    ERR_clear_error();
    BIO *bio = bio_method() ? BIO_new(bio_method()) : NULL;
    c->ssl = bio ? SSL_new(ctx) : NULL;
    if (!c->ssl) {
        BIO_free(bio);
        tls_error(error, "cannot set up TLS");
        c->rfailed = c->wfailed = TRUE;
        return FALSE;
    }
    BIO_set_data(bio, c);
    SSL_set_bio(c->ssl, bio, bio);   /* the SSL owns the BIO now */
    SSL_set_options(c->ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_set_accept_state(c->ssl);
    c->transport = &tls_transport;

    gint64 deadline = write_deadline(c);
    for (;;) {
        ERR_clear_error();
        int r = SSL_do_handshake(c->ssl);
        if (r == 1)
            break;
        IoResult io = tls_wait(c, r, deadline);
        if (io == IO_AGAIN)
            continue;
        tls_error(error, io == IO_TIMEOUT ? "TLS handshake timed out"
                         : io == IO_EOF   ? "the client closed during the TLS handshake"
                                          : "TLS handshake failed");
        c->rfailed = c->wfailed = TRUE;
        return FALSE;
    }
    const SSL_CIPHER *cipher = SSL_get_current_cipher(c->ssl);
    g_snprintf(c->tls_desc, sizeof c->tls_desc, "%s %s", SSL_get_version(c->ssl),
               cipher ? SSL_CIPHER_get_name(cipher) : "unknown");
    return TRUE;
}

/* net_conn_is_tls - see conn.h */
gboolean
net_conn_is_tls(NetConn *c)
{
    return c->ssl != NULL;
}

/* net_conn_tls_description - see conn.h */
const char *
net_conn_tls_description(NetConn *c)
{
    return c->ssl ? c->tls_desc : NULL;
}
