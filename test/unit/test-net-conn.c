/*
 * test-net-conn.c - net/conn: the bounded line reader (terminators, MAX, over-long lines that
 * resynchronise at LF without growing memory, NUL, deadlines, EOF), the buffered writer, pending
 * input and STARTTLS's discard, and the TLS switch.
 */
#include "net/conn.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* A connected pair: the NetConn reads and writes fd[0], the test plays the client on fd[1]. */
typedef struct {
    int fd[2];
    NetConn *conn;
    GString *line;
} Pair;

/* pair_new - a socketpair with a NetConn on one end */
static Pair *
pair_new(void)
{
    Pair *p = g_new0(Pair, 1);
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, p->fd), ==, 0);
    p->conn = net_conn_new(p->fd[0], p->fd[0]);
    p->line = g_string_new(NULL);
    return p;
}

/* pair_free - everything, both fds */
static void
pair_free(Pair *p)
{
    net_conn_free(&p->conn);
    g_assert_null(p->conn);
    close(p->fd[0]);
    if (p->fd[1] >= 0)
        close(p->fd[1]);
    g_string_free(p->line, TRUE);
    g_free(p);
}

/* send_text - the client writes TEXT (LEN octets; -1: strlen) */
static void
send_text(Pair *p, const char *text, gssize len)
{
    gsize n = len < 0 ? strlen(text) : (gsize)len;
    g_assert_cmpint(write(p->fd[1], text, n), ==, (gssize)n);
}

/* client_close - the client hangs up */
static void
client_close(Pair *p)
{
    close(p->fd[1]);
    p->fd[1] = -1;
}

/* read_line - one line with a generous timeout */
static NetLineStatus
read_line(Pair *p, gsize max)
{
    return net_conn_read_line(p->conn, max, 5000, p->line);
}

/* A thread that writes a big payload to an fd, then closes it. */
typedef struct {
    int fd;
    gsize filler;          /* this many 'x' octets first */
    const char *tail;      /* then this */
    guint drip_ms;         /* > 0: one octet of TAIL per DRIP_MS instead */
} Writer;

/* writer_run - the Writer's thread body */
static gpointer
writer_run(gpointer data)
{
    Writer *w = data;
    static char chunk[65536];
    memset(chunk, 'x', sizeof chunk);
    gsize left = w->filler;
    while (left > 0) {
        ssize_t n = write(w->fd, chunk, MIN(left, sizeof chunk));
        if (n <= 0)
            break;
        left -= (gsize)n;
    }
    for (const char *t = w->tail; t && *t; t++) {
        if (write(w->fd, t, w->drip_ms ? 1 : strlen(t)) <= 0)
            break;
        if (!w->drip_ms)
            break;
        g_usleep(w->drip_ms * 1000);
    }
    close(w->fd);
    return NULL;
}

static void
test_crlf_line_is_returned_with_its_terminator(void)
{
    Pair *p = pair_new();
    send_text(p, "EHLO client.example\r\nQUIT\r\n", -1);
    g_assert_cmpint(read_line(p, 512), ==, NET_LINE_OK);
    g_assert_cmpstr(p->line->str, ==, "EHLO client.example\r\n");
    g_assert_true(net_line_chomp(p->line));
    g_assert_cmpstr(p->line->str, ==, "EHLO client.example");
    g_assert_cmpint(read_line(p, 512), ==, NET_LINE_OK);
    g_assert_cmpstr(p->line->str, ==, "QUIT\r\n");
    pair_free(p);
}

static void
test_bare_lf_ends_a_line_and_chomp_tells_it_apart(void)
{
    Pair *p = pair_new();
    send_text(p, "USER pete\nPASS x\r\n\n", -1);
    g_assert_cmpint(read_line(p, 512), ==, NET_LINE_OK);
    g_assert_cmpstr(p->line->str, ==, "USER pete\n");
    g_assert_false(net_line_chomp(p->line));
    g_assert_cmpstr(p->line->str, ==, "USER pete");
    g_assert_cmpint(read_line(p, 512), ==, NET_LINE_OK);
    g_assert_true(net_line_chomp(p->line));
    g_assert_cmpint(read_line(p, 512), ==, NET_LINE_OK);   /* an empty line */
    g_assert_cmpstr(p->line->str, ==, "\n");
    pair_free(p);
}

static void
test_lone_cr_is_an_ordinary_octet(void)
{
    Pair *p = pair_new();
    send_text(p, "a\rb\r\n", -1);
    g_assert_cmpint(read_line(p, 512), ==, NET_LINE_OK);
    g_assert_cmpstr(p->line->str, ==, "a\rb\r\n");
    g_assert_true(net_line_chomp(p->line));
    g_assert_cmpstr(p->line->str, ==, "a\rb");
    pair_free(p);
}

static void
test_exactly_max_octets_is_accepted(void)
{
    Pair *p = pair_new();
    /* MAX counts the terminator: 10 octets + CRLF = 12 */
    send_text(p, "0123456789\r\n0123456789\n", -1);
    g_assert_cmpint(read_line(p, 12), ==, NET_LINE_OK);
    g_assert_cmpuint(p->line->len, ==, 12);
    g_assert_cmpint(read_line(p, 11), ==, NET_LINE_OK);
    g_assert_cmpuint(p->line->len, ==, 11);
    pair_free(p);
}

static void
test_max_plus_one_is_too_long_once_then_resyncs(void)
{
    Pair *p = pair_new();
    send_text(p, "0123456789\r\nNEXT\r\n", -1);
    g_assert_cmpint(read_line(p, 11), ==, NET_LINE_TOO_LONG);
    g_assert_cmpstr(p->line->str, ==, "\r\n");   /* only how the skipped line ended */
    g_assert_cmpint(read_line(p, 11), ==, NET_LINE_OK);
    g_assert_cmpstr(p->line->str, ==, "NEXT\r\n");
    client_close(p);
    g_assert_cmpint(read_line(p, 11), ==, NET_LINE_EOF);
    pair_free(p);
}

/* max_rss_kb - this process's peak resident set */
static long
max_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void
test_too_long_resyncs(void)
{
    /* 10 MB without an LF, then a good line: exactly one TOO_LONG, then the line, then EOF. */
    Pair *p = pair_new();
    Writer w = {.fd = p->fd[1], .filler = 10 * 1024 * 1024, .tail = "\r\nNOOP\r\n"};
    p->fd[1] = -1;
    long before = max_rss_kb();
    GThread *t = g_thread_new("writer", writer_run, &w);
    g_assert_cmpint(net_conn_read_line(p->conn, 512, 30000, p->line), ==, NET_LINE_TOO_LONG);
    g_assert_cmpuint(p->line->allocated_len, <, 1024);   /* nothing was kept */
    g_assert_cmpint(net_conn_read_line(p->conn, 512, 30000, p->line), ==, NET_LINE_OK);
    g_assert_cmpstr(p->line->str, ==, "NOOP\r\n");
    g_assert_cmpint(net_conn_read_line(p->conn, 512, 30000, p->line), ==, NET_LINE_EOF);
    g_thread_join(t);
    long grown_kb = max_rss_kb() - before;
    g_test_message("peak RSS grew by %ld kB while skipping 10 MB", grown_kb);
    g_assert_cmpint(grown_kb, <, 4 * 1024);
    pair_free(p);
}

static void
test_too_long_at_eof_is_reported_once(void)
{
    Pair *p = pair_new();
    send_text(p, "0123456789abcdef", -1);
    client_close(p);
    g_assert_cmpint(read_line(p, 8), ==, NET_LINE_TOO_LONG);
    g_assert_cmpuint(p->line->len, ==, 0);   /* it never ended */
    g_assert_cmpint(read_line(p, 8), ==, NET_LINE_EOF);
    g_assert_cmpint(read_line(p, 8), ==, NET_LINE_EOF);
    pair_free(p);
}

static void
test_too_long_line_tells_crlf_from_bare_lf(void)
{
    /* The SMTP smuggling attack: an over-long text line ending in a bare LF, then "." CRLF. The
     * caller must learn that the skipped line ended in a bare LF, or it takes the "." for the
     * end of DATA. */
    Pair *p = pair_new();
    g_autofree char *x = g_strnfill(1100, 'X');
    send_text(p, x, -1);
    send_text(p, "\n.\r\n", -1);
    send_text(p, x, -1);
    send_text(p, "\r\n.\r\n", -1);
    send_text(p, x, -1);
    send_text(p, "\r\r\n\r\n", -1);   /* a bare CR, then CRLF: it ended in CRLF */
    send_text(p, x, -1);
    send_text(p, "\rx\n", -1);           /* a bare CR inside, a bare LF at the end */
    client_close(p);
    static const char *const ends[] = {"\n", "\r\n", "\r\n", "\n"};
    static const char *const after[] = {".\r\n", ".\r\n", "\r\n", NULL};
    for (guint i = 0; i < G_N_ELEMENTS(ends); i++) {
        g_assert_cmpint(read_line(p, 1001), ==, NET_LINE_TOO_LONG);
        g_assert_cmpstr(p->line->str, ==, ends[i]);
        if (after[i]) {
            g_assert_cmpint(read_line(p, 1001), ==, NET_LINE_OK);
            g_assert_cmpstr(p->line->str, ==, after[i]);
        }
    }
    g_assert_cmpint(read_line(p, 1001), ==, NET_LINE_EOF);
    pair_free(p);
}

/* split_too_long - one over-long line sent as PIECES (NULL-terminated), the reader made to read
 * each piece on its own; how the reader says the line ended */
static char *
split_too_long(gsize max, const char *const *pieces)
{
    Pair *p = pair_new();
    for (const char *const *piece = pieces; *piece; piece++) {
        send_text(p, *piece, -1);
        if (piece[1]) {   /* not the last: nothing complete yet, the reader takes what came */
            g_assert_cmpint(net_conn_read_line(p->conn, max, 30, p->line), ==, NET_LINE_TIMEOUT);
        }
    }
    g_assert_cmpint(read_line(p, max), ==, NET_LINE_TOO_LONG);
    char *end = g_strdup(p->line->str);
    send_text(p, "NEXT\n", -1);
    g_assert_cmpint(read_line(p, max), ==, NET_LINE_OK);
    g_assert_cmpstr(p->line->str, ==, "NEXT\n");
    pair_free(p);
    return end;
}

static void
test_too_long_line_end_survives_any_split(void)
{
    /* CR and LF in two reads: the CR went with the octets already dropped */
    const char *const cr_then_lf[] = {"aaaaaaaaaaaa\r", "\n", NULL};
    g_autofree char *e1 = split_too_long(8, cr_then_lf);
    g_assert_cmpstr(e1, ==, "\r\n");
    /* the CR is the last of the first MAX octets, the LF the first octet after them */
    const char *const cr_at_max[] = {"1234567\r", "\n", NULL};
    g_autofree char *e2 = split_too_long(8, cr_at_max);
    g_assert_cmpstr(e2, ==, "\r\n");
    const char *const cr_at_max_one_read[] = {"1234567\r\n", NULL};
    g_autofree char *e3 = split_too_long(8, cr_at_max_one_read);
    g_assert_cmpstr(e3, ==, "\r\n");
    /* a CR at the end of one read that is not followed by the LF: a bare LF ends the line */
    const char *const cr_then_other[] = {"aaaaaaaaaaaa\r", "b\n", NULL};
    g_autofree char *e4 = split_too_long(8, cr_then_other);
    g_assert_cmpstr(e4, ==, "\n");
    const char *const cr_then_more[] = {"aaaaaaaaaaaa\r", "bbbbbbbbbbbbbbbbbbbbbbbbb", "\n", NULL};
    g_autofree char *e5 = split_too_long(8, cr_then_more);
    g_assert_cmpstr(e5, ==, "\n");
    /* a skipped line in many pieces, the last CR in a piece of its own */
    const char *const pieces[] = {"aaaaaaaaaaaa", "bbbbbbbbbbbb", "\r", "\n", NULL};
    g_autofree char *e6 = split_too_long(8, pieces);
    g_assert_cmpstr(e6, ==, "\r\n");
    const char *const lf_alone[] = {"aaaaaaaaaaaa", "bbbbbbbbbbbb", "\n", NULL};
    g_autofree char *e7 = split_too_long(8, lf_alone);
    g_assert_cmpstr(e7, ==, "\n");
}

static void
test_too_long_line_split_across_reads_is_one_error(void)
{
    Pair *p = pair_new();
    send_text(p, "aaaaaaaaaaaaaaaaaaaa", -1);
    /* the overflow is seen before the LF arrives: no answer yet */
    g_assert_cmpint(net_conn_read_line(p->conn, 8, 50, p->line), ==, NET_LINE_TIMEOUT);
    send_text(p, "bbbbbbbbbbbb", -1);
    g_assert_cmpint(net_conn_read_line(p->conn, 8, 50, p->line), ==, NET_LINE_TIMEOUT);
    send_text(p, "cc\nOK\n", -1);
    g_assert_cmpint(read_line(p, 8), ==, NET_LINE_TOO_LONG);
    g_assert_cmpint(read_line(p, 8), ==, NET_LINE_OK);
    g_assert_cmpstr(p->line->str, ==, "OK\n");
    pair_free(p);
}

static void
test_nul_is_reported(void)
{
    Pair *p = pair_new();
    send_text(p, "RCPT TO:<a\0b>\r\nNOOP\r\n", 21);
    g_assert_cmpint(read_line(p, 512), ==, NET_LINE_NUL);
    g_assert_cmpuint(p->line->len, ==, 15);           /* the whole line, NUL included */
    g_assert_cmpint(p->line->str[10], ==, '\0');
    g_assert_cmpint(read_line(p, 512), ==, NET_LINE_OK);
    g_assert_cmpstr(p->line->str, ==, "NOOP\r\n");
    pair_free(p);
}

static void
test_timeout_when_no_complete_line(void)
{
    Pair *p = pair_new();
    gint64 t0 = g_get_monotonic_time();
    g_assert_cmpint(net_conn_read_line(p->conn, 512, 100, p->line), ==, NET_LINE_TIMEOUT);
    gint64 ms = (g_get_monotonic_time() - t0) / 1000;
    g_assert_cmpint(ms, >=, 90);
    g_assert_cmpint(ms, <, 2000);
    /* 0 only takes what is already there */
    g_assert_cmpint(net_conn_read_line(p->conn, 512, 0, p->line), ==, NET_LINE_TIMEOUT);
    send_text(p, "HELO x\r\n", -1);
    g_assert_cmpint(net_conn_read_line(p->conn, 512, 0, p->line), ==, NET_LINE_OK);
    pair_free(p);
}

static void
test_partial_line_survives_a_timeout(void)
{
    Pair *p = pair_new();
    send_text(p, "MAIL FROM:", -1);
    g_assert_cmpint(net_conn_read_line(p->conn, 512, 30, p->line), ==, NET_LINE_TIMEOUT);
    g_assert_cmpuint(net_conn_pending(p->conn), ==, 10);
    send_text(p, "<a@b>\r\n", -1);
    g_assert_cmpint(read_line(p, 512), ==, NET_LINE_OK);
    g_assert_cmpstr(p->line->str, ==, "MAIL FROM:<a@b>\r\n");
    pair_free(p);
}

static void
test_timeout_covers_a_slow_drip(void)
{
    /* One octet every 40 ms never completes a line: the deadline is per call, not per octet. */
    Pair *p = pair_new();
    Writer w = {.fd = p->fd[1], .tail = "abcdefghijklmnopqrstuvwxyz\n", .drip_ms = 40};
    p->fd[1] = -1;
    GThread *t = g_thread_new("drip", writer_run, &w);
    gint64 t0 = g_get_monotonic_time();
    g_assert_cmpint(net_conn_read_line(p->conn, 512, 300, p->line), ==, NET_LINE_TIMEOUT);
    gint64 ms = (g_get_monotonic_time() - t0) / 1000;
    g_assert_cmpint(ms, <, 900);
    g_thread_join(t);
    g_assert_cmpint(read_line(p, 512), ==, NET_LINE_OK);
    g_assert_cmpstr(p->line->str, ==, "abcdefghijklmnopqrstuvwxyz\n");
    pair_free(p);
}

static void
test_eof_mid_line(void)
{
    Pair *p = pair_new();
    send_text(p, "QUIT\r\nRSE", -1);
    client_close(p);
    g_assert_cmpint(read_line(p, 512), ==, NET_LINE_OK);
    g_assert_cmpint(read_line(p, 512), ==, NET_LINE_EOF);
    g_assert_cmpstr(p->line->str, ==, "RSE");              /* for the log, never executed */
    g_assert_cmpint(read_line(p, 512), ==, NET_LINE_EOF);  /* and it stays at EOF */
    g_assert_cmpuint(p->line->len, ==, 0);
    pair_free(p);
}

static void
test_max_above_buffer_is_clamped(void)
{
    /* A line longer than the buffer is too long even when MAX says more. */
    Pair *p = pair_new();
    Writer w = {.fd = p->fd[1], .filler = NET_CONN_BUFFER_SIZE + 10, .tail = "\nX\n"};
    p->fd[1] = -1;
    GThread *t = g_thread_new("writer", writer_run, &w);
    g_assert_cmpint(net_conn_read_line(p->conn, G_MAXSIZE, 10000, p->line), ==, NET_LINE_TOO_LONG);
    g_assert_cmpint(net_conn_read_line(p->conn, G_MAXSIZE, 10000, p->line), ==, NET_LINE_OK);
    g_assert_cmpstr(p->line->str, ==, "X\n");
    g_thread_join(t);
    pair_free(p);
}

static void
test_longest_line_fills_the_buffer(void)
{
    Pair *p = pair_new();
    Writer w = {.fd = p->fd[1], .filler = NET_CONN_LINE_MAX - 1, .tail = "\n"};
    p->fd[1] = -1;
    GThread *t = g_thread_new("writer", writer_run, &w);
    g_assert_cmpint(net_conn_read_line(p->conn, NET_CONN_LINE_MAX, 10000, p->line), ==, NET_LINE_OK);
    g_assert_cmpuint(p->line->len, ==, NET_CONN_LINE_MAX);
    g_thread_join(t);
    pair_free(p);
}

static void
test_pipes_work_as_in_inetd(void)
{
    int in[2], out[2];
    g_assert_cmpint(pipe(in), ==, 0);
    g_assert_cmpint(pipe(out), ==, 0);
    NetConn *c = net_conn_new(in[0], out[1]);
    g_assert_cmpint(write(in[1], "CAPA\r\n", 6), ==, 6);
    close(in[1]);
    g_autoptr(GString) line = g_string_new(NULL);
    g_assert_cmpint(net_conn_read_line(c, 255, 1000, line), ==, NET_LINE_OK);
    g_assert_cmpstr(line->str, ==, "CAPA\r\n");
    g_assert_cmpint(net_conn_read_line(c, 255, 1000, line), ==, NET_LINE_EOF);
    g_assert_true(net_conn_printf(c, "+OK %d\r\n", 7));
    g_assert_true(net_conn_flush(c));
    char buf[16] = "";
    g_assert_cmpint(read(out[0], buf, sizeof buf - 1), ==, 7);
    g_assert_cmpstr(buf, ==, "+OK 7\r\n");
    net_conn_free(&c);
    close(in[0]);
    close(out[0]);
    close(out[1]);
}

static void
test_pending_and_discard(void)
{
    Pair *p = pair_new();
    g_assert_cmpuint(net_conn_pending(p->conn), ==, 0);
    send_text(p, "STARTTLS\r\nMAIL FROM:<evil@x>\r\n", -1);
    g_assert_cmpint(read_line(p, 512), ==, NET_LINE_OK);
    g_assert_cmpstr(p->line->str, ==, "STARTTLS\r\n");
    g_assert_cmpuint(net_conn_pending(p->conn), ==, 20);   /* the pipelined command */
    net_conn_discard_input(p->conn);
    g_assert_cmpuint(net_conn_pending(p->conn), ==, 0);
    g_assert_cmpint(net_conn_read_line(p->conn, 512, 30, p->line), ==, NET_LINE_TIMEOUT);
    send_text(p, "EHLO again\r\n", -1);
    g_assert_cmpint(read_line(p, 512), ==, NET_LINE_OK);
    g_assert_cmpstr(p->line->str, ==, "EHLO again\r\n");
    pair_free(p);
}

static void
test_discard_ends_an_over_long_line(void)
{
    Pair *p = pair_new();
    send_text(p, "0123456789", -1);
    g_assert_cmpint(net_conn_read_line(p->conn, 4, 30, p->line), ==, NET_LINE_TIMEOUT);
    net_conn_discard_input(p->conn);
    send_text(p, "OK\n", -1);
    g_assert_cmpint(read_line(p, 4), ==, NET_LINE_OK);
    g_assert_cmpstr(p->line->str, ==, "OK\n");
    pair_free(p);
}

static void
test_read_more_takes_raw_octets_after_a_line(void)
{
    /* an IMAP literal: the octets after the line, whatever they are, then a line again */
    Pair *p = pair_new();
    send_text(p, "A1 APPEND box {7}\r\nx\r\n\0y\nzNEXT\r\n", 32);
    g_assert_cmpint(read_line(p, 512), ==, NET_LINE_OK);
    g_assert_cmpint(net_conn_read_more(p->conn, 0), ==, NET_LINE_OK);   /* buffered: at once */
    gsize avail;
    const char *buf = net_conn_peek(p->conn, &avail);
    g_assert_cmpuint(avail, ==, 13);
    g_assert_cmpmem(buf, 7, "x\r\n\0y\nz", 7);
    net_conn_consume(p->conn, 7);
    g_assert_cmpint(read_line(p, 512), ==, NET_LINE_OK);
    g_assert_cmpstr(p->line->str, ==, "NEXT\r\n");
    pair_free(p);
}

static void
test_read_more_waits_flushes_and_times_out(void)
{
    Pair *p = pair_new();
    g_assert_true(net_conn_write(p->conn, "+ go\r\n", 6));
    gint64 t0 = g_get_monotonic_time();
    g_assert_cmpint(net_conn_read_more(p->conn, 150), ==, NET_LINE_TIMEOUT);
    g_assert_cmpint(g_get_monotonic_time() - t0, >=, 140 * 1000);
    char got[16] = {0};
    g_assert_cmpint(read(p->fd[1], got, sizeof got), ==, 6);   /* flushed before the wait */
    g_assert_cmpstr(got, ==, "+ go\r\n");
    send_text(p, "abc", -1);
    g_assert_cmpint(net_conn_read_more(p->conn, 5000), ==, NET_LINE_OK);
    gsize avail;
    net_conn_peek(p->conn, &avail);
    g_assert_cmpuint(avail, ==, 3);
    net_conn_consume(p->conn, 3);
    client_close(p);
    g_assert_cmpint(net_conn_read_more(p->conn, 5000), ==, NET_LINE_EOF);
    g_assert_cmpint(net_conn_read_more(p->conn, 5000), ==, NET_LINE_EOF);
    pair_free(p);
}

static void
test_read_more_refuses_while_skipping_a_long_line(void)
{
    Pair *p = pair_new();
    send_text(p, "0123456789", -1);
    g_assert_cmpint(net_conn_read_line(p->conn, 4, 30, p->line), ==, NET_LINE_TIMEOUT);
    g_assert_cmpint(net_conn_read_more(p->conn, 0), ==, NET_LINE_ERROR);
    pair_free(p);
}

static void
test_write_is_buffered_until_flush(void)
{
    Pair *p = pair_new();
    g_assert_true(net_conn_write(p->conn, "250-a\r\n", 7));
    g_assert_true(net_conn_printf(p->conn, "250 %s\r\n", "b"));
    char buf[64];
    g_assert_cmpint(recv(p->fd[1], buf, sizeof buf, MSG_DONTWAIT), ==, -1);   /* nothing yet */
    g_assert_true(net_conn_flush(p->conn));
    g_assert_true(net_conn_flush(p->conn));   /* nothing to write is fine */
    ssize_t n = recv(p->fd[1], buf, sizeof buf, 0);
    g_assert_cmpint(n, ==, 14);
    g_assert_cmpmem(buf, 14, "250-a\r\n250 b\r\n", 14);
    pair_free(p);
}

/* reader_run - read everything from an fd until EOF; returns the count */
static gpointer
reader_run(gpointer data)
{
    int fd = GPOINTER_TO_INT(data);
    gsize total = 0;
    char buf[8192];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        total += (gsize)n;
    return GSIZE_TO_POINTER(total);
}

static void
test_read_flushes_replies_before_it_waits(void)
{
    Pair *p = pair_new();
    send_text(p, "NOOP\r\nNOOP\r\n", -1);
    g_assert_cmpint(read_line(p, 512), ==, NET_LINE_OK);
    g_assert_true(net_conn_write(p->conn, "250 a\r\n", 7));
    /* the second line is buffered already: no reason to write yet */
    g_assert_cmpint(read_line(p, 512), ==, NET_LINE_OK);
    char buf[64];
    g_assert_cmpint(recv(p->fd[1], buf, sizeof buf, MSG_DONTWAIT), ==, -1);
    g_assert_true(net_conn_write(p->conn, "250 b\r\n", 7));
    /* now it must wait for the client, so both replies go out in one write first */
    g_assert_cmpint(net_conn_read_line(p->conn, 512, 20, p->line), ==, NET_LINE_TIMEOUT);
    g_assert_cmpint(recv(p->fd[1], buf, sizeof buf, MSG_DONTWAIT), ==, 14);
    g_assert_cmpmem(buf, 14, "250 a\r\n250 b\r\n", 14);
    pair_free(p);
}

static void
test_large_write_goes_through_the_fixed_buffer(void)
{
    Pair *p = pair_new();
    GThread *t = g_thread_new("reader", reader_run, GINT_TO_POINTER(p->fd[1]));
    gsize size = 5 * NET_CONN_BUFFER_SIZE + 123;
    g_autofree char *big = g_malloc(size);
    memset(big, 'm', size);
    g_assert_true(net_conn_write(p->conn, big, size));
    g_assert_true(net_conn_write(p->conn, "\r\n.\r\n", 5));
    g_assert_true(net_conn_flush(p->conn));
    shutdown(p->fd[0], SHUT_WR);
    gsize got = GPOINTER_TO_SIZE(g_thread_join(t));
    g_assert_cmpuint(got, ==, size + 5);
    pair_free(p);
}

static void
test_write_to_closed_peer_fails_without_sigpipe(void)
{
    /* SIGPIPE keeps its default (fatal) action here: the test only lives on if none is raised. */
    g_assert_true(signal(SIGPIPE, SIG_DFL) != SIG_ERR);
    Pair *p = pair_new();
    client_close(p);
    g_assert_true(net_conn_write(p->conn, "221 bye\r\n", 9));
    g_assert_false(net_conn_flush(p->conn));
    g_assert_false(net_conn_write(p->conn, "x", 1));   /* stays failed */
    g_assert_false(net_conn_flush(p->conn) && net_conn_printf(p->conn, "y"));
    pair_free(p);
}

static void
test_write_stall_times_out(void)
{
    Pair *p = pair_new();
    int small = 4096;
    setsockopt(p->fd[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    net_conn_set_write_timeout(p->conn, 200);
    g_autofree char *big = g_malloc0(4 * 1024 * 1024);
    gint64 t0 = g_get_monotonic_time();
    gboolean ok = net_conn_write(p->conn, big, 4 * 1024 * 1024) && net_conn_flush(p->conn);
    g_assert_false(ok);   /* the client never reads */
    gint64 ms = (g_get_monotonic_time() - t0) / 1000;
    g_assert_cmpint(ms, >=, 150);
    g_assert_cmpint(ms, <, 3000);
    pair_free(p);
}

static void
test_status_names(void)
{
    g_assert_cmpstr(net_line_status_name(NET_LINE_OK), ==, "OK");
    g_assert_cmpstr(net_line_status_name(NET_LINE_TOO_LONG), ==, "TOO_LONG");
    g_assert_cmpstr(net_line_status_name((NetLineStatus)99), ==, "?");
    net_conn_free(NULL);   /* harmless */
}

/* make_server_ctx - a TLS server context with a fresh self-signed P-256 certificate */
static SSL_CTX *
make_server_ctx(void)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    g_assert_nonnull(key);
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
    X509_set_issuer_name(x, name);
    g_assert_cmpint(X509_sign(x, key, EVP_sha256()), >, 0);
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    g_assert_cmpint(SSL_CTX_use_certificate(ctx, x), ==, 1);
    g_assert_cmpint(SSL_CTX_use_PrivateKey(ctx, key), ==, 1);
    X509_free(x);
    EVP_PKEY_free(key);
    return ctx;
}

/* tls_client - the child: plaintext STARTTLS plus an injected command, then TLS; exit 0 when
 * the server answered as expected */
static int
tls_client(int fd)
{
    const char *plain = "STARTTLS\r\nRSET\r\n";
    if (write(fd, plain, strlen(plain)) != (ssize_t)strlen(plain))
        return 10;
    char buf[256];
    gsize n = 0;
    while (n < sizeof buf - 1 && read(fd, buf + n, 1) == 1 && buf[n] != '\n')
        n++;
    buf[n + 1 < sizeof buf ? n + 1 : n] = '\0';
    if (strcmp(buf, "220 go ahead\r\n") != 0)
        return 11;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    int rc = 0;
    if (SSL_connect(ssl) != 1) {
        rc = 12;
    } else if (SSL_write(ssl, "EHLO tls\r\n", 10) != 10) {
        rc = 13;
    } else {
        n = 0;
        int r;
        while (n < sizeof buf - 1 && (r = SSL_read(ssl, buf + n, (int)(sizeof buf - 1 - n))) > 0) {
            n += (gsize)r;
            if (memchr(buf, '\n', n))
                break;
        }
        buf[n] = '\0';
        if (strcmp(buf, "250 over TLS\r\n") != 0)
            rc = 14;
    }
    SSL_shutdown(ssl);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    return rc;
}

static void
test_starttls_drops_plaintext_and_talks_tls(void)
{
    /* SIGPIPE stays fatal: the close_notify sent after the client left must not raise it. */
    g_assert_true(signal(SIGPIPE, SIG_DFL) != SIG_ERR);
    Pair *p = pair_new();
    SSL_CTX *ctx = make_server_ctx();
    pid_t pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        close(p->fd[0]);
        SSL_CTX_free(ctx);   /* the server's, copied by fork */
        _exit(tls_client(p->fd[1]));
    }
    client_close(p);
    g_assert_cmpint(read_line(p, 512), ==, NET_LINE_OK);
    g_assert_cmpstr(p->line->str, ==, "STARTTLS\r\n");
    g_assert_cmpuint(net_conn_pending(p->conn), >, 0);   /* the injected RSET */
    g_assert_false(net_conn_is_tls(p->conn));
    g_assert_null(net_conn_tls_description(p->conn));
    g_assert_true(net_conn_write(p->conn, "220 go ahead\r\n", 14));
    g_autoptr(GError) error = NULL;
    g_assert_true(net_conn_start_tls(p->conn, ctx, &error));
    g_assert_no_error(error);
    g_assert_true(net_conn_is_tls(p->conn));
    g_test_message("TLS: %s", net_conn_tls_description(p->conn));
    g_assert_true(g_str_has_prefix(net_conn_tls_description(p->conn), "TLS"));
    g_assert_cmpint(read_line(p, 512), ==, NET_LINE_OK);
    g_assert_cmpstr(p->line->str, ==, "EHLO tls\r\n");   /* not the plaintext RSET */
    g_assert_true(net_conn_printf(p->conn, "250 over %s\r\n", "TLS"));
    g_assert_true(net_conn_flush(p->conn));
    g_assert_cmpint(read_line(p, 512), ==, NET_LINE_EOF);   /* close_notify */
    int status = 0;
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 0);
    pair_free(p);
    SSL_CTX_free(ctx);
}

static void
test_tls_handshake_with_a_plaintext_client_fails_cleanly(void)
{
    Pair *p = pair_new();
    SSL_CTX *ctx = make_server_ctx();
    send_text(p, "this is not a TLS ClientHello at all\r\n", -1);
    /* the line above was not buffered yet, so OpenSSL reads it as a record and fails */
    g_autoptr(GError) error = NULL;
    g_assert_false(net_conn_start_tls(p->conn, ctx, &error));
    g_assert_error(error, NET_ERROR, NET_ERROR_TLS);
    g_test_message("%s", error->message);
    g_assert_cmpint(read_line(p, 512), ==, NET_LINE_ERROR);
    g_assert_false(net_conn_flush(p->conn) && net_conn_write(p->conn, "x", 1));
    pair_free(p);
    SSL_CTX_free(ctx);
}

static void
test_tls_handshake_times_out(void)
{
    Pair *p = pair_new();
    SSL_CTX *ctx = make_server_ctx();
    net_conn_set_write_timeout(p->conn, 150);
    g_autoptr(GError) error = NULL;
    g_assert_false(net_conn_start_tls(p->conn, ctx, &error));   /* the client says nothing */
    g_assert_error(error, NET_ERROR, NET_ERROR_TLS);
    g_assert_nonnull(strstr(error->message, "timed out"));
    pair_free(p);
    SSL_CTX_free(ctx);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/net/line/crlf-line-is-returned-with-its-terminator",
                    test_crlf_line_is_returned_with_its_terminator);
    g_test_add_func("/net/line/bare-lf-ends-a-line-and-chomp-tells-it-apart",
                    test_bare_lf_ends_a_line_and_chomp_tells_it_apart);
    g_test_add_func("/net/line/lone-cr-is-an-ordinary-octet", test_lone_cr_is_an_ordinary_octet);
    g_test_add_func("/net/line/exactly-max-octets-is-accepted", test_exactly_max_octets_is_accepted);
    g_test_add_func("/net/line/max-plus-one-is-too-long-once-then-resyncs",
                    test_max_plus_one_is_too_long_once_then_resyncs);
    g_test_add_func("/net/line/too-long-resyncs", test_too_long_resyncs);
    g_test_add_func("/net/line/too-long-at-eof-is-reported-once",
                    test_too_long_at_eof_is_reported_once);
    g_test_add_func("/net/line/too-long-line-split-across-reads-is-one-error",
                    test_too_long_line_split_across_reads_is_one_error);
    g_test_add_func("/net/line/too-long-line-tells-crlf-from-bare-lf",
                    test_too_long_line_tells_crlf_from_bare_lf);
    g_test_add_func("/net/line/too-long-line-end-survives-any-split",
                    test_too_long_line_end_survives_any_split);
    g_test_add_func("/net/line/nul-is-reported", test_nul_is_reported);
    g_test_add_func("/net/line/timeout-when-no-complete-line", test_timeout_when_no_complete_line);
    g_test_add_func("/net/line/partial-line-survives-a-timeout",
                    test_partial_line_survives_a_timeout);
    g_test_add_func("/net/line/timeout-covers-a-slow-drip", test_timeout_covers_a_slow_drip);
    g_test_add_func("/net/line/eof-mid-line", test_eof_mid_line);
    g_test_add_func("/net/line/max-above-buffer-is-clamped", test_max_above_buffer_is_clamped);
    g_test_add_func("/net/line/longest-line-fills-the-buffer", test_longest_line_fills_the_buffer);
    g_test_add_func("/net/line/pipes-work-as-in-inetd", test_pipes_work_as_in_inetd);
    g_test_add_func("/net/line/status-names", test_status_names);
    g_test_add_func("/net/conn/pending-and-discard", test_pending_and_discard);
    g_test_add_func("/net/conn/read-more-takes-raw-octets-after-a-line",
                    test_read_more_takes_raw_octets_after_a_line);
    g_test_add_func("/net/conn/read-more-waits-flushes-and-times-out",
                    test_read_more_waits_flushes_and_times_out);
    g_test_add_func("/net/conn/read-more-refuses-while-skipping-a-long-line",
                    test_read_more_refuses_while_skipping_a_long_line);
    g_test_add_func("/net/conn/discard-ends-an-over-long-line", test_discard_ends_an_over_long_line);
    g_test_add_func("/net/conn/write-is-buffered-until-flush", test_write_is_buffered_until_flush);
    g_test_add_func("/net/conn/read-flushes-replies-before-it-waits",
                    test_read_flushes_replies_before_it_waits);
    g_test_add_func("/net/conn/large-write-goes-through-the-fixed-buffer",
                    test_large_write_goes_through_the_fixed_buffer);
    g_test_add_func("/net/conn/write-to-closed-peer-fails-without-sigpipe",
                    test_write_to_closed_peer_fails_without_sigpipe);
    g_test_add_func("/net/conn/write-stall-times-out", test_write_stall_times_out);
    g_test_add_func("/net/tls/starttls-drops-plaintext-and-talks-tls",
                    test_starttls_drops_plaintext_and_talks_tls);
    g_test_add_func("/net/tls/handshake-with-a-plaintext-client-fails-cleanly",
                    test_tls_handshake_with_a_plaintext_client_fails_cleanly);
    g_test_add_func("/net/tls/handshake-times-out", test_tls_handshake_times_out);
    return g_test_run();
}
