/*
 * conn.h - a buffered client connection: the bounded line reader and the buffered writer that
 * the adapter (src/net/adapter.h) puts between a socket (or inetd's fds 0 and 1) and a protocol
 * core.
 *
 * The protocol cores never see a NetConn; the adapters read lines here and feed them to the core
 * (and, for an IMAP literal, raw octets: net_conn_peek, net_conn_read_more, net_conn_consume).
 *
 * Reading (net_conn_read_line):
 *   - A line is every octet up to and including the next LF. LINE receives it with its
 *     terminator, so the caller can see how it ended; net_line_chomp() strips it.
 *   - MAX counts every octet of the line, terminator included, so RFC limits are passed as
 *     written: 512 for an SMTP command line (RFC 5321 4.5.3.1.4), 1000 for a text line
 *     (4.5.3.1.6); each core names its own (ProtoCore's line_max: the POP3 core's is
 *     POP3_LINE_MAX + 2, src/pop3/session.h). MAX is clamped to NET_CONN_LINE_MAX.
 *   - Bare-LF policy: CRLF and a bare LF both end a line (RFC 5321 2.3.8 says a server SHOULD NOT
 *     recognise bare LF, but MUAs send it and both POP3 and SMTP commands are unambiguous either
 *     way). The terminator stays in LINE: net_line_chomp() returns TRUE only for CRLF, so the SMTP
 *     core can insist on CRLF where it matters — the end of DATA must be "." CRLF after a CRLF,
 *     never a bare-LF variant (SMTP smuggling). A CR not followed by LF is an ordinary octet here;
 *     what it means is the protocol's decision (SMTP refuses a message that holds one).
 *   - Over-long lines: once MAX octets arrived without an LF, the reader drops octets up to and
 *     including the next LF, never holding more than NET_CONN_BUFFER_SIZE, and then reports
 *     NET_LINE_TOO_LONG exactly once (at EOF if the LF never comes). LINE then holds only how the
 *     skipped line ended: "\r\n" for CRLF, "\n" for a bare LF, empty at EOF — the same whether
 *     the CR and the LF arrived in one read or two, or the CR was the last of the first MAX
 *     octets. The SMTP core needs it: a skipped text line that ended in a bare LF must not make
 *     the "." CRLF after it the end of DATA (SMTP smuggling with over-long lines). The next call
 *     reads the line after it.
 *   - NUL policy: a complete line that contains a NUL octet is reported as NET_LINE_NUL, not OK,
 *     with the whole line in LINE (so code that treats lines as C strings cannot be fooled by
 *     an early NUL unless it asks for that). Protocols answer it with an error.
 *   - Every read has a deadline: TIMEOUT_MS covers the whole call (a slow drip of octets does
 *     not extend it); < 0 waits forever, 0 only takes what has already arrived. The clock is
 *     read when the call first has to wait for input, so a line already buffered costs none.
 *   - EOF, TIMEOUT and ERROR: after EOF (and after ERROR) every later call says so again. On EOF
 *     in the middle of a line LINE holds the incomplete octets (without terminator) for logs; it
 *     must not be executed. On TIMEOUT a partial line stays buffered and the next call goes on.
 *
 * Writing: net_conn_write/printf buffer up to NET_CONN_BUFFER_SIZE and write when full;
 * net_conn_flush writes everything. net_conn_read_line flushes by itself before it waits for
 * input (never while it still has a buffered line to return), so replies to a pipelined batch go
 * out in one write and a client is never left waiting for a reply we are sitting on. A write that makes no progress for the write timeout fails
 * (default NET_CONN_WRITE_TIMEOUT_MS). After a failed write every later write fails at once.
 * Writes to a socket never raise SIGPIPE (MSG_NOSIGNAL, with or without TLS); for a pipe (inetd
 * with pipes) the program must ignore SIGPIPE, which net_serve_fd and net_serve_inetd do.
 *
 * TLS: net_conn_start_tls switches a plain connection to TLS (OpenSSL, server side) — for
 * STARTTLS/STLS after the "go ahead" reply, or at once for implicit TLS. Reads and writes go
 * through a small table of transport functions, so nothing else changes for the caller; OpenSSL
 * reaches the fds through a BIO of ours, with the same deadlines. (Pipe fds are switched to
 * O_NONBLOCK for TLS; sockets are left as they are.)
 *
 * A NetConn borrows its fds: net_conn_free does not close them.
 */
#ifndef CASSMAIL_NET_CONN_H
#define CASSMAIL_NET_CONN_H

#include <glib.h>
#include <openssl/ssl.h>

/* The read buffer and the write buffer are each this large, once, for the life of a connection. */
#define NET_CONN_BUFFER_SIZE 65536
/* The longest line MAX may ask for. */
#define NET_CONN_LINE_MAX NET_CONN_BUFFER_SIZE
/* A write (or TLS handshake) that makes no progress for this long fails. */
#define NET_CONN_WRITE_TIMEOUT_MS 60000

#define NET_ERROR (net_error_quark())
GQuark net_error_quark(void);
typedef enum {
    NET_ERROR_ADDRESS,   /* a listen address we cannot parse or resolve */
    NET_ERROR_SYSTEM,    /* socket, bind, listen, fork, ... failed */
    NET_ERROR_TLS,       /* the TLS handshake failed or timed out */
} NetErrorCode;

typedef enum {
    NET_LINE_OK,         /* a complete line in LINE, ending in LF (see net_line_chomp) */
    NET_LINE_NUL,        /* a complete line in LINE that contains a NUL octet */
    NET_LINE_TOO_LONG,   /* a line longer than MAX was skipped up to its LF; LINE holds only its
                          * terminator ("\r\n", "\n", or "" at EOF) */
    NET_LINE_EOF,        /* the peer closed; LINE holds any incomplete last line */
    NET_LINE_TIMEOUT,    /* no complete line within TIMEOUT_MS */
    NET_LINE_ERROR,      /* a read error (connection reset, TLS failure) */
} NetLineStatus;

typedef struct NetConn NetConn;

/* net_conn_new - a connection reading RFD and writing WFD (inetd: 0 and 1; a socket: it twice) */
NetConn *net_conn_new(int rfd, int wfd);
/* net_conn_free - shut TLS down (best effort, nothing is flushed), free, set *C to NULL */
void net_conn_free(NetConn **c);

/* net_conn_read_line - the next line into LINE (replaced); see the policies above */
NetLineStatus net_conn_read_line(NetConn *c, gsize max, int timeout_ms, GString *line);
/* net_line_chomp - remove LINE's trailing LF (and a CR before it); TRUE when it was CRLF */
gboolean net_line_chomp(GString *line);
/* net_line_status_name - "OK", "TOO_LONG", ... for logs */
const char *net_line_status_name(NetLineStatus status);

/* net_conn_pending - octets received from the client but not yet returned as lines (including
 * decrypted TLS octets): nonzero means the client pipelined more commands */
gsize net_conn_pending(NetConn *c);
/* net_conn_peek - the input octets received and not yet returned as lines (*LEN of them, in
 * the connection's own buffer), for a caller that parses them in place: the SMTP DATA fast path
 * hands whole runs of text lines to the store from here, without a copy per line. Nothing is
 * read; *LEN is 0 while an over-long line is being skipped (net_conn_read_line must finish
 * that) and after a read error. The octets stay valid until the next call on C. */
const char *net_conn_peek(NetConn *c, gsize *len);
/* net_conn_consume - the first N octets net_conn_peek showed are dealt with */
void net_conn_consume(NetConn *c, gsize n);
/* net_conn_read_more - at least one input octet buffered for net_conn_peek: at once when some
 * are, else after one read that waits at most TIMEOUT_MS (< 0: forever; 0: only what has
 * arrived), the output flushed first as net_conn_read_line does. For a caller that takes raw
 * octets instead of lines (an IMAP literal: any octets, no line rules): NET_LINE_OK, NET_LINE_EOF
 * (nothing is buffered and nothing more will come), NET_LINE_TIMEOUT or NET_LINE_ERROR (also
 * while an over-long line is being skipped: net_conn_read_line finishes that). Memory stays the
 * read buffer's: it never holds more than NET_CONN_BUFFER_SIZE. */
NetLineStatus net_conn_read_more(NetConn *c, int timeout_ms);
/* net_conn_discard_input - drop every buffered input octet and any over-long line in progress
 * (STARTTLS: nothing sent in plaintext may be taken as sent under TLS, RFC 3207 section 6) */
void net_conn_discard_input(NetConn *c);

/* net_conn_write - append LEN octets to the output, writing when the buffer fills */
gboolean net_conn_write(NetConn *c, const void *data, gsize len);
gboolean net_conn_printf(NetConn *c, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
/* net_conn_flush - write everything buffered; FALSE when the peer is gone or stalled */
gboolean net_conn_flush(NetConn *c);
/* net_conn_set_write_timeout - how long a write or handshake may make no progress (ms, > 0) */
void net_conn_set_write_timeout(NetConn *c, int timeout_ms);

/* NET_TLS_MIN_VERSION - the oldest protocol version a client may negotiate (TLS 1.2; SSL 3,
 * TLS 1.0 and 1.1 are refused in the handshake) */
#define NET_TLS_MIN_VERSION TLS1_2_VERSION

/* net_tls_server_context - the server-side TLS context for STARTTLS/STLS: the certificate chain
 * and private key from PEM files CERTIFICATE and KEY (checked to match), TLS 1.2 or newer, no
 * compression, no renegotiation, the server's cipher order. Call it before dropping privileges:
 * the key may be readable by root alone. NULL and ERROR (naming the file) on failure; free with
 * SSL_CTX_free. */
SSL_CTX *net_tls_server_context(const char *certificate, const char *key, GError **error);

/* net_conn_start_tls - flush the output, drop buffered input, and run the server side of a TLS
 * handshake with CTX (bounded by the write timeout). On failure the connection is unusable. */
gboolean net_conn_start_tls(NetConn *c, SSL_CTX *ctx, GError **error);
/* net_conn_is_tls - whether the connection runs over TLS */
gboolean net_conn_is_tls(NetConn *c);
/* net_conn_tls_description - "TLSv1.3 TLS_AES_256_GCM_SHA384" for logs and Received: lines,
 * NULL without TLS (owned by the connection) */
const char *net_conn_tls_description(NetConn *c);

#endif
