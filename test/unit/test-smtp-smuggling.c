/*
 * test-smtp-smuggling.c - SMTP smuggling: the bounded line reader (src/net/conn.h) and the SMTP
 * core (src/smtp/session.h) together, as src/cmd/cassmail-smtpd.c drives them, against the
 * in-memory store.
 *
 * A client's octets go into one end of a socketpair (in one write: a pipelined client), or in
 * pieces the reader has to take one by one (lines split across TCP reads); a NetConn on the other
 * end cuts them into lines with the core's own limits (smtp_core.line_max) and the flags of
 * the adapter, and feeds them to the session. What a test checks is what a user would see: the
 * replies, and which messages are stored for whom.
 *
 * The policy (session.h): only "." CRLF after a line that really ended in CRLF ends DATA; a bare
 * LF line end is stored as CRLF; a bare CR refuses the message (554 5.6.0); an over-long line
 * refuses it (500 5.6.0) and the "." after it ends DATA only when that line ended in CRLF.
 * Every variant of the public "SMTP smuggling" research (Dec 2023) is tried: "\n.\n",
 * "\n.\r\n", "\r.\r\n", "\r\n.\r", "\r\n.\n", "\r.\n", each alone and after an over-long line.
 */
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/conn.h"
#include "smtp/session.h"
#include "store/store.h"
#include "support/smtp_fixture.h"
#include "support/store_mem.h"

static char *domains[] = {"example.com", NULL};
static const char *const users[] = {"anne", "bob", NULL};

typedef SmtpFixture Fx;

static void
fx_setup(Fx *f, gconstpointer data)
{
    (void)data;
    smtp_fixture_open(f, users, domains, 1024 * 1024, 10, "192.0.2.9");
}

static void
fx_teardown(Fx *f, gconstpointer data)
{
    (void)data;
    smtp_fixture_close(f);
}

/* serve - the adapter's loop over a reader holding what the client sent (up to EOF) */
static void
serve(Fx *f, NetConn *c)
{
    GString *line = g_string_new(NULL);
    for (;;) {
        NetLineStatus r = net_conn_read_line(c, smtp_core.line_max(f->s), 5000, line);
        ProtoLine flags = r == NET_LINE_TOO_LONG ? PROTO_LINE_TOO_LONG : r == NET_LINE_NUL ? PROTO_LINE_NUL : PROTO_LINE_OK;
        if (r != NET_LINE_OK && r != NET_LINE_NUL && r != NET_LINE_TOO_LONG)
            break;
        if (smtp_core.feed(f->s, line->str, line->len, flags, f->out))
            break;
    }
    g_string_free(line, TRUE);
}

/* wire - the client sends PIECES (NULL-terminated) and hangs up; when SPLIT, the reader takes
 * each piece before the next is sent (the client's lines arrive cut at those points). All the
 * replies to it, valid until the next call. */
static const char *
wire_pieces(Fx *f, gboolean split, const char *const *pieces)
{
    int fd[2];
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, fd), ==, 0);
    NetConn *c = net_conn_new(fd[0], fd[0]);
    GString *line = g_string_new(NULL);
    g_string_truncate(f->out, 0);
    for (const char *const *p = pieces; *p; p++) {
        gsize n = strlen(*p);
        g_assert_cmpint(write(fd[1], *p, n), ==, (gssize)n);
        if (!split)
            continue;
        /* take every complete line now; what is left of a line stays in the reader */
        for (;;) {
            NetLineStatus r = net_conn_read_line(c, smtp_core.line_max(f->s), 0, line);
            if (r == NET_LINE_TIMEOUT)
                break;
            g_assert_true(r == NET_LINE_OK || r == NET_LINE_NUL || r == NET_LINE_TOO_LONG);
            ProtoLine flags = r == NET_LINE_TOO_LONG ? PROTO_LINE_TOO_LONG : r == NET_LINE_NUL ? PROTO_LINE_NUL : PROTO_LINE_OK;
            smtp_core.feed(f->s, line->str, line->len, flags, f->out);
        }
    }
    close(fd[1]);
    serve(f, c);
    net_conn_free(&c);
    close(fd[0]);
    g_string_free(line, TRUE);
    return f->out->str;
}

/* wire - TEXT sent in one write (pipelined) */
static const char *
wire(Fx *f, const char *text)
{
    const char *const pieces[] = {text, NULL};
    return wire_pieces(f, FALSE, pieces);
}

/* reply_codes - "250 354 500" for OUT's replies (the last line of each) */
static char *
reply_codes(const char *out)
{
    GString *codes = g_string_new(NULL);
    g_auto(GStrv) lines = g_strsplit(out, "\r\n", -1);
    for (guint i = 0; lines[i]; i++) {
        if (strlen(lines[i]) < 4 || lines[i][3] != ' ')
            continue;
        if (codes->len)
            g_string_append_c(codes, ' ');
        g_string_append_len(codes, lines[i], 3);
    }
    return g_string_free(codes, FALSE);
}

/* text_of - message I of USER's inbox without our Received: field (a new string) */
static char *
text_of(Fx *f, const char *user, guint i)
{
    g_autoptr(GArray) idx = g_array_new(FALSE, FALSE, sizeof(StoreIndexEntry));
    g_assert_true(store_index_page(f->store, user, "inbox", NULL, 100, idx, NULL));
    g_assert_cmpuint(i, <, idx->len);
    g_autoptr(GBytes) msg = NULL;
    g_assert_true(store_fetch(f->store, user, "inbox", &g_array_index(idx, StoreIndexEntry, i).id, &msg, NULL));
    gsize mlen, tlen;
    const char *m = g_bytes_get_data(msg, &mlen);
    const char *t = smtp_received_strip(m, mlen, &tlen);
    g_assert_nonnull(t);
    g_assert_null(memchr(t, '\0', tlen));
    return g_strndup(t, tlen);
}

/* assert_crlf_clean - TEXT has no CR or LF outside a CRLF */
static void
assert_crlf_clean(const char *text)
{
    for (const char *p = text; *p; p++) {
        if (*p == '\r')
            g_assert_cmpint(p[1], ==, '\n');
        if (*p == '\n')
            g_assert_true(p > text && p[-1] == '\r');
    }
}

static guint
inbox(Fx *f, const char *user)
{
    return store_mem_message_count(f->store, user, "inbox");
}

#define ENVELOPE "EHLO client.example\r\nMAIL FROM:<x@remote.example>\r\nRCPT TO:<anne@example.com>\r\nDATA\r\n"
#define SMUGGLED "MAIL FROM:<ceo@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n" \
                 "From: ceo@example.com\r\nSubject: smuggled\r\n\r\nwire the money\r\n.\r\n"

/* over_long - "X" x 1100: a text line over the 1000-octet limit */
static char *
over_long(void)
{
    return g_strnfill(1100, 'X');
}

static void
test_over_long_line_then_bare_lf_period_smuggles_nothing(Fx *f, gconstpointer d)
{
    (void)d;
    /* The attack of issue 13 item 2, pipelined in one write as an attacker would send it. */
    g_autofree char *x = over_long();
    g_autofree char *attack = g_strconcat(ENVELOPE, x, "\n.\r\n", SMUGGLED, "QUIT\r\n", NULL);
    g_autofree char *codes = reply_codes(wire(f, attack));
    /* the "." after the bare LF is text: the message ends at the last CRLF "." CRLF, refused */
    g_assert_cmpstr(codes, ==, "250 250 250 354 500 221");
    g_assert_nonnull(strstr(f->out->str, "500 5.6.0 "));
    g_assert_cmpuint(inbox(f, "bob"), ==, 0);
    g_assert_cmpuint(inbox(f, "anne"), ==, 0);
}

static void
test_over_long_line_split_across_reads_smuggles_nothing(Fx *f, gconstpointer d)
{
    (void)d;
    /* the same with the over-long line's end and the "." in reads of their own */
    g_autofree char *x = over_long();
    const char *const pieces[] = {ENVELOPE, x, "X", "\n", ".", "\r", "\n", SMUGGLED, "QUIT\r\n", NULL};
    g_autofree char *codes = reply_codes(wire_pieces(f, TRUE, pieces));
    g_assert_cmpstr(codes, ==, "250 250 250 354 500 221");
    g_assert_cmpuint(inbox(f, "bob"), ==, 0);
    /* the CR of a CRLF in one read and its LF in the next: a real CRLF, so the "." ends DATA */
    fx_teardown(f, NULL);
    fx_setup(f, NULL);
    const char *const crlf[] = {ENVELOPE, x, "\r", "\n.\r\n", "QUIT\r\n", NULL};
    g_autofree char *codes2 = reply_codes(wire_pieces(f, TRUE, crlf));
    g_assert_cmpstr(codes2, ==, "250 250 250 354 500 221");
}

static void
test_over_long_line_then_crlf_period_ends_data(Fx *f, gconstpointer d)
{
    (void)d;
    /* only a real CRLF "." CRLF ends DATA, after an over-long line too: what follows it is a
     * new transaction the client really asked for */
    g_autofree char *x = over_long();
    g_autofree char *text = g_strconcat(ENVELOPE, x, "\r\n.\r\n",
                                        "MAIL FROM:<x@remote.example>\r\nRCPT TO:<bob@example.com>\r\n"
                                        "DATA\r\nSubject: second\r\n\r\nfine\r\n.\r\nQUIT\r\n", NULL);
    g_autofree char *codes = reply_codes(wire(f, text));
    g_assert_cmpstr(codes, ==, "250 250 250 354 500 250 250 354 250 221");
    g_assert_cmpuint(inbox(f, "anne"), ==, 0);
    g_assert_cmpuint(inbox(f, "bob"), ==, 1);
    g_autofree char *t = text_of(f, "bob", 0);
    g_assert_cmpstr(t, ==, "Subject: second\r\n\r\nfine\r\n");
}

/* One variant: what comes between "hello" and the smuggled transaction, and what the whole must
 * get: STORED (the message for anne, SMUGGLED as its text) or the refusal's code. */
typedef struct {
    const char *name;
    gboolean after_over_long;   /* "hello" is replaced by an over-long line */
    const char *separator;
    const char *codes;          /* the replies after the envelope's */
    const char *stored;         /* anne's message's text, NULL when nothing may be stored */
} Variant;

#define STORED_TAIL "MAIL FROM:<ceo@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n" \
                    "From: ceo@example.com\r\nSubject: smuggled\r\n\r\nwire the money\r\n"

static const Variant variants[] = {
    /* bare LF: normalised to CRLF; the lone "." is text (it loses its transparency dot) */
    {"lf-period-lf", FALSE, "\n.\n", "250 221", "hello\r\n\r\n" STORED_TAIL},
    {"lf-period-crlf", FALSE, "\n.\r\n", "250 221", "hello\r\n\r\n" STORED_TAIL},
    {"crlf-period-lf", FALSE, "\r\n.\n", "250 221", "hello\r\n\r\n" STORED_TAIL},
    /* bare CR: refused */
    {"cr-period-crlf", FALSE, "\r.\r\n", "554 221", NULL},
    {"crlf-period-cr", FALSE, "\r\n.\r", "554 221", NULL},
    {"cr-period-cr", FALSE, "\r.\r", "554 221", NULL},
    {"cr-period-lf", FALSE, "\r.\n", "554 221", NULL},
    {"lf-period-cr", FALSE, "\n.\r", "554 221", NULL},
    {"crcrlf-period-lf", FALSE, "\r\r\n.\n", "554 221", NULL},
    /* after an over-long line: refused as too long, whatever the "." */
    {"long-lf-period-lf", TRUE, "\n.\n", "500 221", NULL},
    {"long-lf-period-crlf", TRUE, "\n.\r\n", "500 221", NULL},
    {"long-cr-period-crlf", TRUE, "\r.\r\n", "500 221", NULL},
    {"long-crlf-period-cr", TRUE, "\r\n.\r", "554 221", NULL},   /* the bare CR is named first */
    {"long-crlf-period-lf", TRUE, "\r\n.\n", "500 221", NULL},
    {"long-cr-period-lf", TRUE, "\r.\n", "500 221", NULL},
};

static void
test_variant(Fx *f, gconstpointer d)
{
    const Variant *v = d;
    g_autofree char *x = over_long();
    g_autofree char *text = g_strconcat(ENVELOPE, v->after_over_long ? x : "hello", v->separator,
                                        SMUGGLED, "QUIT\r\n", NULL);
    for (int split = 0; split < 2; split++) {
        fx_teardown(f, NULL);
        fx_setup(f, NULL);
        const char *out;
        if (split) {
            /* every octet in a read of its own */
            gsize n = strlen(text);
            char **pieces = g_new0(char *, n + 1);
            for (gsize i = 0; i < n; i++)
                pieces[i] = g_strndup(text + i, 1);
            out = wire_pieces(f, TRUE, (const char *const *)pieces);
            g_strfreev(pieces);
        } else {
            out = wire(f, text);
        }
        g_autofree char *codes = reply_codes(out);
        g_autofree char *want = g_strconcat("250 250 250 354 ", v->codes, NULL);
        g_assert_cmpstr(codes, ==, want);
        g_assert_cmpuint(inbox(f, "bob"), ==, 0);   /* never the smuggled envelope */
        if (v->stored) {
            g_assert_cmpuint(inbox(f, "anne"), ==, 1);
            g_autofree char *t = text_of(f, "anne", 0);
            assert_crlf_clean(t);
            g_assert_cmpstr(t, ==, v->stored);
        } else {
            g_assert_cmpuint(inbox(f, "anne"), ==, 0);
        }
    }
}

static void
test_bare_lf_message_is_stored_crlf_clean(Fx *f, gconstpointer d)
{
    (void)d;
    g_autofree char *codes = reply_codes(
        wire(f, ENVELOPE "Subject: bare\n\nline one\nline two\r\n..dot\n.\r\n.\n\r\n.\r\nQUIT\r\n"));
    g_assert_cmpstr(codes, ==, "250 250 250 354 250 221");
    g_autofree char *t = text_of(f, "anne", 0);
    assert_crlf_clean(t);
    g_assert_cmpstr(t, ==, "Subject: bare\r\n\r\nline one\r\nline two\r\n.dot\r\n\r\n\r\n\r\n");
}

static void
test_bare_cr_is_554_and_the_session_goes_on(Fx *f, gconstpointer d)
{
    (void)d;
    const char *out = wire(f, ENVELOPE "Subject: cr\r\n\r\nold\rmac\r\nend\r\r\n.\r\n"
                              "MAIL FROM:<x@remote.example>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"
                              "clean\r\n.\r\nQUIT\r\n");
    g_assert_nonnull(strstr(out, "\r\n554 5.6.0 Message contains a bare CR (CR without LF); not delivered\r\n"));
    g_autofree char *codes = reply_codes(out);
    g_assert_cmpstr(codes, ==, "250 250 250 354 554 250 250 354 250 221");
    g_assert_cmpuint(inbox(f, "anne"), ==, 0);
    g_assert_cmpuint(inbox(f, "bob"), ==, 1);
    SmtpSessionStats st;
    smtp_session_stats(f->s, &st);
    g_assert_cmpuint(st.rejected, ==, 1);
    g_assert_cmpuint(st.errors, ==, 0);
}

static void
test_empty_message_needs_the_data_commands_crlf(Fx *f, gconstpointer d)
{
    (void)d;
    /* "DATA" LF "." CRLF is "\n.\r\n" on the wire: not the end of an empty message */
    g_autofree char *codes = reply_codes(
        wire(f, "EHLO client.example\r\nMAIL FROM:<x@remote.example>\r\nRCPT TO:<anne@example.com>\r\n"
                "DATA\n.\r\n" SMUGGLED "QUIT\r\n"));
    g_assert_cmpstr(codes, ==, "250 250 250 354 250 221");
    g_assert_cmpuint(inbox(f, "bob"), ==, 0);
    g_autofree char *t = text_of(f, "anne", 0);
    g_assert_cmpstr(t, ==, "\r\n" STORED_TAIL);
    /* with CRLF it is */
    fx_teardown(f, NULL);
    fx_setup(f, NULL);
    g_autofree char *codes2 = reply_codes(wire(f, ENVELOPE ".\r\nQUIT\r\n"));
    g_assert_cmpstr(codes2, ==, "250 250 250 354 250 221");
    g_autofree char *t2 = text_of(f, "anne", 0);
    g_assert_cmpstr(t2, ==, "");
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
#define T(path, fn, data) g_test_add("/smtp/smuggling/" path, Fx, data, fx_setup, fn, fx_teardown)
    T("over-long-line-then-bare-lf-period-smuggles-nothing",
      test_over_long_line_then_bare_lf_period_smuggles_nothing, NULL);
    T("over-long-line-split-across-reads-smuggles-nothing",
      test_over_long_line_split_across_reads_smuggles_nothing, NULL);
    T("over-long-line-then-crlf-period-ends-data", test_over_long_line_then_crlf_period_ends_data, NULL);
    for (guint i = 0; i < G_N_ELEMENTS(variants); i++) {
        g_autofree char *path = g_strdup_printf("/smtp/smuggling/variant/%s", variants[i].name);
        g_test_add(path, Fx, &variants[i], fx_setup, test_variant, fx_teardown);
    }
    T("bare-lf-message-is-stored-crlf-clean", test_bare_lf_message_is_stored_crlf_clean, NULL);
    T("bare-cr-is-554-and-the-session-goes-on", test_bare_cr_is_554_and_the_session_goes_on, NULL);
    T("empty-message-needs-the-data-commands-crlf", test_empty_message_needs_the_data_commands_crlf, NULL);
    return g_test_run();
}
