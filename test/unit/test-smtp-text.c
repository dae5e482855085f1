/*
 * test-smtp-text.c - the DATA fast path (smtp_core.feed_text over net_conn_peek, as
 * src/cmd/cassmail-smtpd.c drives it) against the line-by-line path (net_conn_read_line and
 * smtp_core.feed for every line): the same replies and the same stored messages, however the
 * client's octets are split into reads.
 *
 * Each case is a whole SMTP conversation. The reference is the line-by-line adapter with the
 * conversation in one write. The fast adapter then gets it in pieces — every split into two
 * reads for the short cases, one octet per read, and seeded random splits into up to eight
 * reads — each piece taken before the next is sent, so a read ends exactly at a split: lines
 * split over reads, "\r\n.\r\n" split at each of its octets, a transparency dot alone at the end
 * of a read, bare CRs and LFs on both sides of a boundary, a line over the limit split anywhere,
 * text past max_message_size. Named tests pin what users see for the commonest of these.
 */
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/conn.h"
#include "smtp/session.h"
#include "store/store.h"
#include "support/smtp_fixture.h"

static char *domains[] = {"example.com", NULL};
static const char *const users[] = {"anne", "bob", NULL};

typedef SmtpFixture Run;

/* run_new - a session on a fresh in-memory store; MAX_SIZE is max_message_size */
static Run *
run_new(gsize max_size)
{
    Run *r = g_new0(Run, 1);
    smtp_fixture_open(r, users, domains, max_size, 10, "192.0.2.9");
    return r;
}

static void
run_free(Run *r)
{
    smtp_fixture_close(r);
    g_free(r);
}

/* pump - the adapter's loop over what has arrived (TIMEOUT_MS 0) or up to EOF: in DATA, when
 * FAST, the buffered complete lines go through smtp_core.feed_text in place, everything else
 * through the line reader. FALSE when the session or the input ended. */
static gboolean
pump(Run *r, NetConn *c, gboolean fast, int timeout_ms, GString *line)
{
    for (;;) {
        gsize max = smtp_core.line_max(r->s);
        if (fast && smtp_core.in_text(r->s)) {
            gsize avail;
            const char *buf = net_conn_peek(c, &avail);
            gsize used = avail ? smtp_core.feed_text(r->s, buf, avail, max, r->out) : 0;
            g_assert_cmpuint(used, <=, avail);
            if (used) {
                net_conn_consume(c, used);
                continue;
            }
        }
        NetLineStatus st = net_conn_read_line(c, max, timeout_ms, line);
        if (st == NET_LINE_TIMEOUT)
            return TRUE;
        if (st != NET_LINE_OK && st != NET_LINE_NUL && st != NET_LINE_TOO_LONG)
            return FALSE;
        ProtoLine flags = st == NET_LINE_TOO_LONG ? PROTO_LINE_TOO_LONG : st == NET_LINE_NUL ? PROTO_LINE_NUL : PROTO_LINE_OK;
        if (smtp_core.feed(r->s, line->str, line->len, flags, r->out))
            return FALSE;
    }
}

/* converse - TEXT (LEN octets) sent in reads cut at CUTS (N_CUTS ascending offsets), each read
 * taken before the next is sent, then EOF */
static void
converse(Run *r, const char *text, gsize len, const gsize *cuts, guint n_cuts, gboolean fast)
{
    int fd[2];
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, fd), ==, 0);
    NetConn *c = net_conn_new(fd[0], fd[0]);
    GString *line = g_string_new(NULL);
    gsize from = 0;
    gboolean going = TRUE;
    for (guint i = 0; i <= n_cuts && going; i++) {
        gsize to = i < n_cuts ? cuts[i] : len;
        if (to > from)
            g_assert_cmpint(write(fd[1], text + from, to - from), ==, (gssize)(to - from));
        from = to;
        going = pump(r, c, fast, 0, line);
    }
    close(fd[1]);
    if (going)
        pump(r, c, fast, 5000, line);
    net_conn_free(&c);
    close(fd[0]);
    g_string_free(line, TRUE);
}

/* outcome - the replies, then each user's stored texts (without our Received: field) */
static char *
outcome(Run *r)
{
    GString *o = g_string_new(r->out->str);
    for (const char *const *u = users; *u; u++) {
        g_autoptr(GArray) idx = g_array_new(FALSE, FALSE, sizeof(StoreIndexEntry));
        g_assert_true(store_index_page(r->store, *u, "inbox", NULL, 100, idx, NULL));
        for (guint i = 0; i < idx->len; i++) {
            g_autoptr(GBytes) msg = NULL;
            g_assert_true(store_fetch(r->store, *u, "inbox",
                                      &g_array_index(idx, StoreIndexEntry, i).id, &msg, NULL));
            gsize mlen, tlen;
            const char *m = g_bytes_get_data(msg, &mlen);
            const char *t = smtp_received_strip(m, mlen, &tlen);
            g_assert_nonnull(t);
            g_string_append_printf(o, "[%s %u: ", *u, i);
            g_string_append_len(o, t, (gssize)tlen);
            g_string_append(o, "]");
        }
    }
    return g_string_free(o, FALSE);
}

/* The queued-as ids and Received: dates differ between runs: replies are compared by the code
 * of each one's last line ("250 354 ..."). */
static char *
codes_and_texts(const char *o)
{
    GString *g = g_string_new(NULL);
    const char *p = o;
    while (*p) {
        const char *eol = strstr(p, "\r\n");
        if (!eol || *p == '[')
            break;
        if (eol - p >= 4 && p[3] == ' ') {
            g_string_append_len(g, p, 3);
            g_string_append_c(g, ' ');
        }
        p = eol + 2;
    }
    g_string_append(g, p);
    return g_string_free(g, FALSE);
}

/* result - the outcome of TEXT split at CUTS through the fast (or line-by-line) adapter */
static char *
result(const char *text, gsize len, gsize max_size, const gsize *cuts, guint n_cuts, gboolean fast)
{
    Run *r = run_new(max_size);
    converse(r, text, len, cuts, n_cuts, fast);
    g_autofree char *o = outcome(r);
    run_free(r);
    return codes_and_texts(o);
}

#define ENVELOPE "EHLO client.example\r\nMAIL FROM:<x@remote.example>\r\nRCPT TO:<anne@example.com>\r\nDATA\r\n"
#define SECOND "MAIL FROM:<y@remote.example>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"

typedef struct {
    const char *name;
    char *text;
    gsize max_size;
} Case;

/* cases - the conversations (free with cases_free) */
static GPtrArray *
cases(void)
{
    GPtrArray *a = g_ptr_array_new();
    g_autofree char *x1000 = g_strnfill(998, 'x');    /* with CRLF: exactly the 1000-octet limit */
    g_autofree char *x1001 = g_strnfill(999, 'x');    /* one over */
    g_autofree char *x1100 = g_strnfill(1100, 'x');   /* over the reader's limit: skipped */
    g_autofree char *big = NULL;
    GString *b = g_string_new(NULL);
    for (int i = 0; i < 300; i++)
        g_string_append_printf(b, "%sline %d of a longer text, long enough to fill reads\r\n",
                               i % 7 == 0 ? "." : "", i);
    big = g_string_free(b, FALSE);
    Case *c;
#define C(n, m, ...)                                                                              \
    do {                                                                                          \
        c = g_new(Case, 1);                                                                       \
        *c = (Case){n, g_strconcat(__VA_ARGS__, NULL), m};                                        \
        g_ptr_array_add(a, c);                                                                    \
    } while (0)
    C("plain", 1 << 20, ENVELOPE, "Subject: hi\r\n\r\nhello\r\nworld\r\n.\r\nQUIT\r\n");
    C("dots", 1 << 20, ENVELOPE, "..a\r\n.\r\n..\r\n...\r\n.b\r\n.\n.\r\nQUIT\r\n");
    C("empty", 1 << 20, ENVELOPE, ".\r\nQUIT\r\n");
    C("empty-after-bare-lf-data", 1 << 20, "EHLO c\r\nMAIL FROM:<x@r.example>\r\nRCPT TO:<anne@example.com>\r\n"
      "DATA\n.\r\nhello\r\n.\r\nQUIT\r\n");
    C("bare-lf", 1 << 20, ENVELOPE, "a\nb\n\n.\n\r\n.\r\nQUIT\r\n");
    C("lf-period-crlf", 1 << 20, ENVELOPE, "hello\n.\r\n" SECOND "x\r\n.\r\nQUIT\r\n");
    C("crlf-period-lf", 1 << 20, ENVELOPE, "hello\r\n.\n" SECOND "x\r\n.\r\nQUIT\r\n");
    C("bare-cr", 1 << 20, ENVELOPE, "old\rmac\r\n.\r\n" SECOND "clean\r\n.\r\nQUIT\r\n");
    C("cr-period-crlf", 1 << 20, ENVELOPE, "hello\r.\r\n" SECOND "x\r\n.\r\nQUIT\r\n");
    C("crlf-period-cr", 1 << 20, ENVELOPE, "hello\r\n.\r" SECOND "x\r\n.\r\nQUIT\r\n");
    C("crcrlf", 1 << 20, ENVELOPE, "end\r\r\n.\r\nQUIT\r\n");
    C("nul", 1 << 20, ENVELOPE, "a\r\nb", "\r\n.\r\n" SECOND "ok\r\n.\r\nQUIT\r\n");
    C("line-at-limit", 1 << 20, ENVELOPE, x1000, "\r\n.", x1000, "\r\n.\r\nQUIT\r\n");
    C("line-over-limit", 1 << 20, ENVELOPE, x1001, "\r\n.\r\n" SECOND "fine\r\n.\r\nQUIT\r\n");
    C("dotted-line-over-limit", 1 << 20, ENVELOPE, ".", x1001, "\r\n.\r\nQUIT\r\n");
    C("over-long-then-lf-period", 1 << 20, ENVELOPE, x1100, "\n.\r\n" SECOND "x\r\n.\r\nQUIT\r\n");
    C("over-long-then-crlf-period", 1 << 20, ENVELOPE, x1100, "\r\n.\r\n" SECOND "x\r\n.\r\nQUIT\r\n");
    C("over-long-bare-cr-end", 1 << 20, ENVELOPE, x1100, "\r.\r\n" SECOND "x\r\n.\r\nQUIT\r\n");
    C("too-big", 40, ENVELOPE, "0123456789012345678\r\n0123456789012345\r\n.\r\n" SECOND "ok\r\n.\r\nQUIT\r\n");
    C("exactly-max-size", 40, ENVELOPE, "0123456789012345678\r\n..012345678901234567\r\n.\r\nQUIT\r\n");
    C("pipelined-after-end", 1 << 20, ENVELOPE, "one\r\n.\r\nRSET\r\n" "MAIL FROM:<a@b.example>\r\n"
      "RCPT TO:<bob@example.com>\r\nDATA\r\ntwo\r\n.\r\nQUIT\r\n");
    C("big", 1 << 20, ENVELOPE, big, ".\r\n" SECOND, big, "\n.\r\nQUIT\r\n");
    C("eof-in-data", 1 << 20, ENVELOPE, "never\r\nends\r\n");
#undef C
    return a;
}

static void
cases_free(GPtrArray *a)
{
    for (guint i = 0; i < a->len; i++) {
        Case *c = g_ptr_array_index(a, i);
        g_free(c->text);
        g_free(c);
    }
    g_ptr_array_free(a, TRUE);
}

/* check - the fast adapter with TEXT cut at CUTS gives WANT */
static void
check(const Case *c, const char *want, const gsize *cuts, guint n_cuts)
{
    g_autofree char *got = result(c->text, strlen(c->text), c->max_size, cuts, n_cuts, TRUE);
    if (g_strcmp0(got, want) != 0) {
        GString *where = g_string_new(NULL);
        for (guint i = 0; i < n_cuts; i++)
            g_string_append_printf(where, " %zu", cuts[i]);
        g_test_message("case %s, cut at%s", c->name, where->str);
        g_string_free(where, TRUE);
    }
    g_assert_cmpstr(got, ==, want);
}

static void
test_every_split_gives_the_line_by_line_result(void)
{
    GPtrArray *a = cases();
    GRand *rnd = g_rand_new_with_seed(15);
    for (guint k = 0; k < a->len; k++) {
        const Case *c = g_ptr_array_index(a, k);
        gsize len = strlen(c->text);
        g_autofree char *want = result(c->text, len, c->max_size, NULL, 0, FALSE);
        check(c, want, NULL, 0);
        /* every cut into two reads (around the DATA text for the long cases) */
        gsize env = strlen(ENVELOPE) - 2;
        for (gsize i = 1; i < len; i++) {
            if (len > 2500 && i > env + 300 && i < len - 300 && i % 97)
                continue;
            check(c, want, &i, 1);
        }
        /* seeded random cuts into up to eight reads */
        for (int t = 0; t < 200; t++) {
            gsize cuts[7];
            guint n = (guint)g_rand_int_range(rnd, 1, 8);
            for (guint i = 0; i < n; i++)
                cuts[i] = (gsize)g_rand_int_range(rnd, 1, (gint32)len);
            for (guint i = 1; i < n; i++)   /* ascending (insertion sort) */
                for (guint j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
                    gsize tmp = cuts[j];
                    cuts[j] = cuts[j - 1];
                    cuts[j - 1] = tmp;
                }
            check(c, want, cuts, n);
        }
        /* one octet per read, for the short ones */
        if (len < 3000) {
            gsize *cuts = g_new(gsize, len);
            for (gsize i = 0; i < len - 1; i++)
                cuts[i] = i + 1;
            check(c, want, cuts, (guint)(len - 1));
            g_free(cuts);
        }
    }
    g_rand_free(rnd);
    cases_free(a);
}

/* stored - the fast adapter's outcome for PIECES (NULL-terminated), each in a read of its own */
static char *
stored(const char *const *pieces)
{
    GString *t = g_string_new(NULL);
    gsize cuts[16];
    guint n = 0;
    for (const char *const *p = pieces; *p; p++) {
        if (t->len)
            cuts[n++] = t->len;
        g_string_append(t, *p);
    }
    char *o = result(t->str, t->len, 1 << 20, cuts, n, TRUE);
    g_string_free(t, TRUE);
    return o;
}

#define OK_TAIL "250 250 250 354 250 221 "

static void
test_line_split_over_reads(void)
{
    const char *const p[] = {ENVELOPE "Subject: a\r\nhel", "lo wor", "ld\r\n.\r\nQUIT\r\n", NULL};
    g_autofree char *o = stored(p);
    g_assert_cmpstr(o, ==, OK_TAIL "[anne 0: Subject: a\r\nhello world\r\n]");
}

static void
test_end_of_data_split_across_reads(void)
{
    /* "\r\n.\r\n" cut after each of its octets: a real end every time */
    static const char *const heads[] = {"text\r", "text\r\n", "text\r\n.", "text\r\n.\r"};
    static const char *const tails[] = {"\n.\r\nQUIT\r\n", ".\r\nQUIT\r\n", "\r\nQUIT\r\n", "\nQUIT\r\n"};
    for (guint i = 0; i < G_N_ELEMENTS(heads); i++) {
        const char *const p[] = {ENVELOPE, heads[i], tails[i], NULL};
        g_autofree char *o = stored(p);
        g_assert_cmpstr(o, ==, OK_TAIL "[anne 0: text\r\n]");
    }
}

static void
test_dot_at_read_boundary(void)
{
    /* a transparency dot at the end of one read, its line in the next */
    const char *const p[] = {ENVELOPE "line\r\n.", ".dotted\r\n.", ".\r\n.\r\nQUIT\r\n", NULL};
    g_autofree char *o = stored(p);
    g_assert_cmpstr(o, ==, OK_TAIL "[anne 0: line\r\n.dotted\r\n.\r\n]");
}

static void
test_bare_cr_and_lf_at_read_boundaries(void)
{
    /* CR at the end of a read, LF at the start of the next: one CRLF */
    const char *const crlf[] = {ENVELOPE "abc\r", "\n.\r\nQUIT\r\n", NULL};
    g_autofree char *o1 = stored(crlf);
    g_assert_cmpstr(o1, ==, OK_TAIL "[anne 0: abc\r\n]");
    /* CR at the end of a read, text after it: a bare CR, refused */
    const char *const cr[] = {ENVELOPE "abc\r", "def\r\n.\r\nQUIT\r\n", NULL};
    g_autofree char *o2 = stored(cr);
    g_assert_cmpstr(o2, ==, "250 250 250 354 554 221 ");
    /* a bare LF at the end of a read: the "." CRLF after it is text, stored CRLF-clean */
    const char *const lf[] = {ENVELOPE "abc\n", ".\r\n", ".\r\nQUIT\r\n", NULL};
    g_autofree char *o3 = stored(lf);
    g_assert_cmpstr(o3, ==, OK_TAIL "[anne 0: abc\r\n\r\n]");
}

static void
test_reader_buffer_boundary(void)
{
    /* a text longer than the reader's buffer, a dotted line and the end straddling its size */
    GString *t = g_string_new(ENVELOPE);
    gsize data_at = t->len;
    while (t->len - data_at < NET_CONN_BUFFER_SIZE - 40)
        g_string_append(t, "0123456789012345678901234567890123456789012345678901234567890123\r\n");
    g_string_append(t, "..at the boundary of the buffer, dotted, and long enough to cross it\r\n");
    g_string_append(t, "last\r\n.\r\nQUIT\r\n");
    g_autofree char *text = g_string_free(t, FALSE);
    gsize len = strlen(text);
    g_autofree char *want = result(text, len, 1 << 20, NULL, 0, FALSE);
    g_assert_nonnull(strstr(want, "\r\n.at the boundary"));
    for (gsize at = data_at + NET_CONN_BUFFER_SIZE - 80; at < data_at + NET_CONN_BUFFER_SIZE + 40; at++) {
        g_autofree char *got = result(text, len, 1 << 20, &at, 1, TRUE);
        g_assert_cmpstr(got, ==, want);
    }
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/smtp/text/every-split-gives-the-line-by-line-result",
                    test_every_split_gives_the_line_by_line_result);
    g_test_add_func("/smtp/text/line-split-over-reads", test_line_split_over_reads);
    g_test_add_func("/smtp/text/end-of-data-split-across-reads", test_end_of_data_split_across_reads);
    g_test_add_func("/smtp/text/dot-at-read-boundary", test_dot_at_read_boundary);
    g_test_add_func("/smtp/text/bare-cr-and-lf-at-read-boundaries", test_bare_cr_and_lf_at_read_boundaries);
    g_test_add_func("/smtp/text/reader-buffer-boundary", test_reader_buffer_boundary);
    return g_test_run();
}
