/*
 * test-smtp-session.c - the SMTP core (src/smtp/session.c) against the in-memory store.
 *
 * A test drives a session as the adapter would: whole client scripts go in line by line (each
 * line with its own line ending, as the reader hands it over, with the reader's flags where a
 * test needs them), the concatenated replies come out. What was stored is read back from the
 * memory store (store_mem_message_count, store_index_page, store_fetch).
 *
 * Every reply is also checked for the rules every reply obeys: "NNN" then " " or "-", CRLF, no
 * line break inside, and a 4xx/5xx carries an enhanced status code of its own class (RFC 2034).
 */
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "net/adapter.h"
#include "smtp/session.h"
#include "store/store.h"
#include "support/smtp_fixture.h"
#include "support/store_mem.h"
#include "util/password.h"

/* ---- fixture -------------------------------------------------------------------------------- */

#define HOST SMTP_FIXTURE_HOST
#define PEER "192.0.2.7"
#define MAX_SIZE 2048
#define MAX_RCPTS 3

static char *domains[] = {"example.com", "Example.NET", NULL};
static const char *const users[] = {"anne", "bob", "carol", "dave", "postmaster", NULL};

typedef SmtpFixture Fx;

/* check_replies - OUT is a sequence of well-formed reply lines (see the top of the file) */
static void
check_replies(const char *out)
{
    g_auto(GStrv) lines = g_strsplit(out, "\r\n", -1);
    guint n = g_strv_length(lines);
    g_assert_cmpstr(lines[n - 1], ==, "");   /* ends in CRLF */
    for (guint i = 0; i + 1 < n; i++) {
        const char *l = lines[i];
        g_assert_cmpuint(strlen(l), >=, 4);
        g_assert_true(g_ascii_isdigit(l[0]) && g_ascii_isdigit(l[1]) && g_ascii_isdigit(l[2]));
        g_assert_true(l[3] == ' ' || l[3] == '-');
        g_assert_null(strchr(l, '\n'));
        g_assert_null(strchr(l, '\r'));
        if (l[0] == '4' || l[0] == '5') {
            g_assert_cmpint(l[4], ==, l[0]);
            g_assert_cmpint(l[5], ==, '.');
        }
        if (l[3] == '-')   /* a multi-line reply keeps its code */
            g_assert_cmpmem(l, 3, lines[i + 1], 3);
    }
}

/* new_session - (re)start the session with the fixture's configuration; the greeting is dropped */
static void
new_session(Fx *f)
{
    smtp_fixture_restart(f);
    smtp_core.greeting(f->s, f->out);
    g_string_truncate(f->out, 0);
}

static void
fx_setup(Fx *f, gconstpointer data)
{
    (void)data;
    smtp_fixture_open(f, users, domains, MAX_SIZE, MAX_RCPTS, PEER);
    new_session(f);
}

static void
fx_teardown(Fx *f, gconstpointer data)
{
    (void)data;
    smtp_fixture_close(f);
}

/* feed_line - one line of LEN octets exactly as given (line ending included) with reader FLAGS;
 * the replies to it (valid until the next feed) */
static const char *
feed_line(Fx *f, const char *line, gsize len, ProtoLine flags)
{
    g_string_truncate(f->out, 0);
    f->closed = smtp_core.feed(f->s, line, len, flags, f->out);
    if (f->out->len)
        check_replies(f->out->str);
    return f->out->str;
}

/* script - a whole client script, fed line by line (a line ends after each LF, so CRLF and bare
 * LF lines go in as written); all the replies, concatenated (valid until the next feed) */
static const char *
script(Fx *f, const char *text)
{
    g_string_truncate(f->out, 0);
    for (const char *p = text; *p;) {
        const char *lf = strchr(p, '\n');
        gsize len = lf ? (gsize)(lf - p + 1) : strlen(p);
        f->closed = smtp_core.feed(f->s, p, len, 0, f->out);
        p += len;
    }
    if (f->out->len)
        check_replies(f->out->str);
    return f->out->str;
}

/* reply_has - whether REPLY starts with WANT: a code and enhanced code ("250 2.1.0", "214-2.0.0"),
 * or a code alone ("354": then followed by " " or "-") */
static gboolean
reply_has(const char *reply, const char *want)
{
    gsize n = strlen(want);
    g_assert_cmpuint(n, >=, 3);
    if (strncmp(reply, want, n) != 0)
        return FALSE;
    return n > 3 || reply[3] == ' ' || reply[3] == '-';
}

static void
assert_reply_at(const char *file, int line, const char *func, const char *reply, const char *want)
{
    if (reply_has(reply, want))
        return;
    g_autofree char *esc = g_strescape(reply, NULL);
    g_autofree char *msg = g_strdup_printf("reply \"%s\" does not start with \"%s\"", esc, want);
    g_assertion_message(G_LOG_DOMAIN, file, line, func, msg);
}

/* assert_reply - the (first) reply in REPLY starts with the code and enhanced code WANT */
#define assert_reply(reply, want) assert_reply_at(__FILE__, __LINE__, G_STRFUNC, (reply), (want))

static void
assert_replies_at(const char *file, int line, const char *func, const char *out, ...)
{
    g_auto(GStrv) lines = g_strsplit(out, "\r\n", -1);
    va_list ap;
    va_start(ap, out);
    guint i = 0, n = 0;
    const char *want;
    g_autofree char *esc = g_strescape(out, NULL);
    while ((want = va_arg(ap, const char *))) {
        n++;
        if (!lines[i] || !*lines[i]) {
            va_end(ap);
            g_autofree char *msg = g_strdup_printf("replies \"%s\": no reply %u (\"%s\")", esc, n, want);
            g_assertion_message(G_LOG_DOMAIN, file, line, func, msg);
            return;
        }
        g_autofree char *first = g_strconcat(lines[i], "\r\n", NULL);
        if (!reply_has(first, want)) {
            va_end(ap);
            g_autofree char *msg = g_strdup_printf("replies \"%s\": reply %u is not \"%s\"", esc, n, want);
            g_assertion_message(G_LOG_DOMAIN, file, line, func, msg);
            return;
        }
        while (lines[i] && lines[i][0] && lines[i][3] == '-')   /* the rest of a multi-line reply */
            i++;
        if (lines[i] && lines[i][0])
            i++;
    }
    va_end(ap);
    if (lines[i] && *lines[i]) {
        g_autofree char *msg = g_strdup_printf("replies \"%s\": more than %u replies", esc, n);
        g_assertion_message(G_LOG_DOMAIN, file, line, func, msg);
    }
}

/* assert_replies - OUT is exactly the replies starting with the given codes, in order */
#define assert_replies(out, ...) assert_replies_at(__FILE__, __LINE__, G_STRFUNC, (out), __VA_ARGS__, NULL)

static SmtpSessionStats
stats(Fx *f)
{
    SmtpSessionStats st;
    smtp_session_stats(f->s, &st);
    return st;
}

static SmtpState
state(Fx *f)
{
    return stats(f).state;
}

static guint
count(Fx *f, const char *user, const char *mailbox)
{
    return store_mem_message_count(f->store, user, mailbox);
}

/* stored - message I (in arrival order) of USER's MAILBOX, as stored */
static GBytes *
stored(Fx *f, const char *user, const char *mailbox, guint i)
{
    g_autoptr(GArray) idx = g_array_new(FALSE, FALSE, sizeof(StoreIndexEntry));
    g_assert_true(store_index_page(f->store, user, mailbox, NULL, 100, idx, NULL));
    g_assert_cmpuint(i, <, idx->len);
    StoreIndexEntry *e = &g_array_index(idx, StoreIndexEntry, i);
    GBytes *msg = NULL;
    g_assert_true(store_fetch(f->store, user, mailbox, &e->id, &msg, NULL));
    g_assert_cmpuint(e->size, ==, g_bytes_get_size(msg));
    return msg;
}

/* assert_text - USER's only inbox message is our Received: field, then exactly WANT (LEN octets) */
static void
assert_text(Fx *f, const char *user, const char *want, gsize len)
{
    g_assert_cmpuint(count(f, user, "inbox"), ==, 1);
    g_autoptr(GBytes) msg = stored(f, user, "inbox", 0);
    gsize mlen, tlen;
    const char *m = g_bytes_get_data(msg, &mlen);
    const char *t = smtp_received_strip(m, mlen, &tlen);
    g_assert_nonnull(t);
    g_assert_cmpmem(t, tlen, want, len);
}
#define assert_stored_text(f, user, want) assert_text((f), (user), (want), strlen(want))

/* queued_id - the id text of a "250 2.0.0 Ok: queued as ID" reply R */
static char *
queued_id(const char *r)
{
    g_assert_true(g_str_has_prefix(r, "250 2.0.0 Ok: queued as "));
    return g_strndup(r + strlen("250 2.0.0 Ok: queued as "), STORE_MSGID_TEXT_LEN - 1);
}

/* open_data - EHLO (when not greeted yet), MAIL FROM:<FROM>, RCPT TO:<RCPT>, DATA: all accepted */
static void
open_data(Fx *f, const char *from, const char *rcpt)
{
    if (state(f) == SMTP_STATE_INIT)
        assert_reply(script(f, "EHLO client.example.org\r\n"), "250");
    g_autofree char *s = g_strdup_printf("MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n", from, rcpt);
    assert_replies(script(f, s), "250 2.1.0", "250 2.1.5", "354");
    g_assert_true(smtp_core.in_text(f->s));
}

/* ---- greeting, EHLO, HELO ------------------------------------------------------------------- */

static void
test_greeting_is_220(Fx *f, gconstpointer d)
{
    (void)d;
    smtp_core.greeting(f->s, f->out);
    g_assert_cmpstr(f->out->str, ==, "220 " HOST " ESMTP CassMail\r\n");
    g_assert_cmpint(state(f), ==, SMTP_STATE_INIT);
    g_assert_false(smtp_core.in_text(f->s));
}

static void
test_ehlo_lists_extensions(Fx *f, gconstpointer d)
{
    (void)d;
    g_assert_cmpstr(script(f, "EHLO client.example.org\r\n"), ==,
                    "250-" HOST "\r\n"
                    "250-PIPELINING\r\n"
                    "250-SIZE 2048\r\n"
                    "250-8BITMIME\r\n"
                    "250 ENHANCEDSTATUSCODES\r\n");
    g_assert_false(f->closed);
    g_assert_cmpint(state(f), ==, SMTP_STATE_READY);
    g_assert_cmpstr(stats(f).helo, ==, "client.example.org");
}

static void
test_ehlo_lists_configured_extensions(Fx *f, gconstpointer d)
{
    (void)d;
    static const char *const more[] = {"STARTTLS", "AUTH PLAIN", NULL};
    f->cfg.extensions = more;
    new_session(f);
    g_assert_cmpstr(script(f, "ehlo [192.0.2.7]\r\n"), ==,
                    "250-" HOST "\r\n250-PIPELINING\r\n250-SIZE 2048\r\n250-8BITMIME\r\n"
                    "250-STARTTLS\r\n250-AUTH PLAIN\r\n250 ENHANCEDSTATUSCODES\r\n");
}

static void
test_helo_is_250(Fx *f, gconstpointer d)
{
    (void)d;
    g_assert_cmpstr(script(f, "HELO client.example.org\r\n"), ==, "250 " HOST "\r\n");
    g_assert_cmpint(state(f), ==, SMTP_STATE_READY);
    g_assert_cmpstr(stats(f).helo, ==, "client.example.org");
}

static void
test_helo_not_one_printable_word_is_501(Fx *f, gconstpointer d)
{
    (void)d;
    /* the name goes into Received:, so only one word of printable ASCII passes */
    g_assert_cmpstr(script(f, "EHLO two words\r\n"), ==, "501 5.5.4 Syntax: EHLO domain (or HELO domain)\r\n");
    assert_reply(script(f, "HELO tab\there\r\n"), "501 5.5.4");
    assert_reply(script(f, "HELO caf\xc3\xa9\r\n"), "501 5.5.4");
    g_autofree char *n256 = g_strnfill(256, 'a');
    g_autofree char *line = g_strdup_printf("EHLO %s\r\n", n256);
    assert_reply(script(f, line), "501 5.5.4");
    g_assert_cmpint(state(f), ==, SMTP_STATE_INIT);
    g_assert_null(stats(f).helo);
    g_assert_cmpuint(stats(f).errors, ==, 4);
    line[5 + 255] = '\r', line[5 + 256] = '\n', line[5 + 257] = '\0';   /* 255 octets are fine */
    assert_reply(script(f, line), "250");
}

static void
test_helo_name_need_not_be_a_valid_domain(Fx *f, gconstpointer d)
{
    (void)d;
    /* RFC 5321 4.1.4: no session is refused because the name does not check out */
    assert_reply(script(f, "HELO my_pc\r\n"), "250");
    g_assert_cmpstr(stats(f).helo, ==, "my_pc");
    assert_reply(script(f, "EHLO bad..example\r\n"), "250");
    assert_reply(script(f, "EHLO [192.0.2.7\r\n"), "250");
    assert_reply(script(f, "EHLO [192.0.2.7]\r\n"), "250");
    g_assert_cmpuint(stats(f).errors, ==, 0);
}

/* ---- the command / state table -------------------------------------------------------------- */

static void
test_mail_before_helo_is_503(Fx *f, gconstpointer d)
{
    (void)d;
    g_assert_cmpstr(script(f, "MAIL FROM:<x@remote.example>\r\n"), ==,
                    "503 5.5.1 Bad sequence of commands: send HELO/EHLO first\r\n");
    g_assert_cmpint(state(f), ==, SMTP_STATE_INIT);
    g_assert_cmpuint(stats(f).errors, ==, 1);
}

static void
test_rcpt_before_mail_is_503(Fx *f, gconstpointer d)
{
    (void)d;
    assert_reply(script(f, "RCPT TO:<anne@example.com>\r\n"), "503 5.5.1");
    assert_reply(script(f, "EHLO client.example.org\r\n"), "250");
    g_assert_cmpstr(script(f, "RCPT TO:<anne@example.com>\r\n"), ==,
                    "503 5.5.1 Bad sequence of commands: need MAIL command\r\n");
    g_assert_cmpint(state(f), ==, SMTP_STATE_READY);
}

static void
test_data_before_rcpt_is_503(Fx *f, gconstpointer d)
{
    (void)d;
    assert_reply(script(f, "DATA\r\n"), "503 5.5.1");
    assert_reply(script(f, "EHLO client.example.org\r\n"), "250");
    assert_reply(script(f, "DATA\r\n"), "503 5.5.1");
    assert_reply(script(f, "MAIL FROM:<x@remote.example>\r\n"), "250 2.1.0");
    g_assert_cmpstr(script(f, "DATA\r\n"), ==, "503 5.5.1 Bad sequence of commands: need RCPT command\r\n");
    /* a refused recipient opens no DATA either */
    assert_replies(script(f, "RCPT TO:<nobody@example.com>\r\nDATA\r\n"), "550 5.1.1", "503 5.5.1");
    g_assert_cmpint(state(f), ==, SMTP_STATE_MAIL);
    g_assert_false(smtp_core.in_text(f->s));
}

static void
test_nested_mail_is_503(Fx *f, gconstpointer d)
{
    (void)d;
    assert_replies(script(f, "EHLO client.example.org\r\nMAIL FROM:<x@remote.example>\r\n"
                             "MAIL FROM:<y@remote.example>\r\n"),
                   "250", "250 2.1.0", "503 5.5.1");
    assert_replies(script(f, "RCPT TO:<anne@example.com>\r\nMAIL FROM:<y@remote.example>\r\n"),
                   "250 2.1.5", "503 5.5.1");
    g_assert_cmpint(state(f), ==, SMTP_STATE_RCPT);
    /* the first transaction is intact */
    assert_reply(script(f, "DATA\r\nhi\r\n.\r\n"), "354");
    g_assert_cmpuint(count(f, "anne", "inbox"), ==, 1);
}

/* to_state - bring a fresh session to ST (init, ready, mail or rcpt) */
static void
to_state(Fx *f, SmtpState st)
{
    new_session(f);
    if (st >= SMTP_STATE_READY)
        assert_reply(script(f, "EHLO client.example.org\r\n"), "250");
    if (st >= SMTP_STATE_MAIL)
        assert_reply(script(f, "MAIL FROM:<x@remote.example>\r\n"), "250 2.1.0");
    if (st >= SMTP_STATE_RCPT)
        assert_reply(script(f, "RCPT TO:<anne@example.com>\r\n"), "250 2.1.5");
    g_assert_cmpint(state(f), ==, st);
}

static void
test_rset_anywhere_is_250_and_ready(Fx *f, gconstpointer d)
{
    (void)d;
    for (SmtpState st = SMTP_STATE_INIT; st <= SMTP_STATE_RCPT; st++) {
        to_state(f, st);
        g_assert_cmpstr(script(f, "RSET\r\n"), ==, "250 2.0.0 Ok\r\n");
        /* back to ready: the envelope is gone; before HELO/EHLO there was none to begin with */
        g_assert_cmpint(state(f), ==, st == SMTP_STATE_INIT ? SMTP_STATE_INIT : SMTP_STATE_READY);
        assert_reply(script(f, "DATA\r\n"), "503 5.5.1");
        if (st != SMTP_STATE_INIT)
            assert_replies(script(f, "MAIL FROM:<x@remote.example>\r\n"), "250 2.1.0");
    }
    g_assert_cmpuint(count(f, "anne", "inbox"), ==, 0);
}

static void
test_noop_is_250_anywhere(Fx *f, gconstpointer d)
{
    (void)d;
    for (SmtpState st = SMTP_STATE_INIT; st <= SMTP_STATE_RCPT; st++) {
        to_state(f, st);
        g_assert_cmpstr(script(f, "NOOP\r\n"), ==, "250 2.0.0 Ok\r\n");
        assert_reply(script(f, "NOOP any string\r\n"), "250 2.0.0");
        g_assert_cmpint(state(f), ==, st);
    }
}

static void
test_vrfy_is_252(Fx *f, gconstpointer d)
{
    (void)d;
    /* the same answer for a user, a stranger and a foreign address: nothing is revealed */
    const char *r = script(f, "VRFY anne\r\n");
    assert_reply(r, "252 2.5.2");
    g_autofree char *first = g_strdup(r);
    g_assert_cmpstr(script(f, "VRFY nobody\r\n"), ==, first);
    g_assert_cmpstr(script(f, "VRFY <x@remote.example>\r\n"), ==, first);
    g_assert_cmpint(state(f), ==, SMTP_STATE_INIT);
    g_assert_cmpuint(stats(f).errors, ==, 0);
}

static void
test_help_is_214(Fx *f, gconstpointer d)
{
    (void)d;
    assert_replies(script(f, "HELP\r\nHELP MAIL\r\n"), "214-2.0.0", "214-2.0.0");
    g_assert_true(g_str_has_suffix(script(f, "HELP\r\n"), "\r\n214 2.0.0 End of HELP info\r\n"));
    g_assert_cmpint(state(f), ==, SMTP_STATE_INIT);
}

static void
test_quit_is_221_and_closes(Fx *f, gconstpointer d)
{
    (void)d;
    for (SmtpState st = SMTP_STATE_INIT; st <= SMTP_STATE_RCPT; st++) {
        to_state(f, st);
        g_assert_cmpstr(script(f, "QUIT\r\n"), ==, "221 2.0.0 " HOST " closing connection\r\n");
        g_assert_true(f->closed);
        g_assert_cmpint(state(f), ==, SMTP_STATE_CLOSED);
        /* nothing more is read or answered */
        g_assert_cmpstr(script(f, "NOOP\r\n"), ==, "");
        g_assert_true(f->closed);
    }
    g_assert_cmpuint(count(f, "anne", "inbox"), ==, 0);
}

static void
test_expn_and_turn_are_502(Fx *f, gconstpointer d)
{
    (void)d;
    assert_replies(script(f, "EXPN staff\r\nTURN\r\n"), "502 5.5.1", "502 5.5.1");
    assert_replies(script(f, "EHLO client.example.org\r\nEXPN staff\r\nTURN\r\nETRN example.com\r\n"),
                   "250", "502 5.5.1", "502 5.5.1", "502 5.5.1");
    g_assert_cmpint(state(f), ==, SMTP_STATE_READY);
}

static void
test_unknown_verb_is_500(Fx *f, gconstpointer d)
{
    (void)d;
    g_assert_cmpstr(script(f, "XYZZY plugh\r\n"), ==, "500 5.5.2 Command unrecognized\r\n");
    assert_reply(script(f, "\r\n"), "500 5.5.2");
    assert_reply(script(f, "MAILFROM:<x@remote.example>\r\n"), "500 5.5.2");
    assert_reply(script(f, " EHLO client.example.org\r\n"), "500 5.5.2");
    g_assert_false(f->closed);
    g_assert_cmpuint(stats(f).errors, ==, 4);
    assert_reply(script(f, "EHLO client.example.org\r\n"), "250");
}

static void
test_missing_argument_is_501(Fx *f, gconstpointer d)
{
    (void)d;
    assert_reply(script(f, "HELO\r\n"), "501 5.5.2");
    assert_reply(script(f, "EHLO   \r\n"), "501 5.5.2");
    assert_reply(script(f, "VRFY\r\n"), "501 5.5.2");
    assert_reply(script(f, "EHLO client.example.org\r\n"), "250");
    assert_reply(script(f, "MAIL\r\n"), "501 5.5.2");
    assert_reply(script(f, "MAIL FROM:<x@remote.example>\r\n"), "250");
    assert_reply(script(f, "RCPT\r\n"), "501 5.5.2");
    g_assert_cmpint(state(f), ==, SMTP_STATE_MAIL);
}

static void
test_argument_to_data_rset_quit_is_501(Fx *f, gconstpointer d)
{
    (void)d;
    to_state(f, SMTP_STATE_RCPT);
    assert_reply(script(f, "DATA now\r\n"), "501 5.5.2");
    g_assert_false(smtp_core.in_text(f->s));
    assert_reply(script(f, "RSET all\r\n"), "501 5.5.2");
    g_assert_cmpint(state(f), ==, SMTP_STATE_RCPT);   /* not reset */
    assert_reply(script(f, "QUIT now\r\n"), "501 5.5.2");
    g_assert_false(f->closed);
    g_assert_cmpint(state(f), ==, SMTP_STATE_RCPT);
    g_assert_cmpuint(stats(f).errors, ==, 3);
}

/* One row of the table: a command line and its reply in each state before DATA, and the state
 * it leaves (SAME: unchanged). */
typedef struct {
    const char *line;
    const char *reply[4];   /* in init, ready, mail, rcpt */
    guint next[4];
} Row;

#define SAME (SMTP_STATE_CLOSED + 1)
#define RDY SMTP_STATE_READY
#define CLS SMTP_STATE_CLOSED

static const Row table[] = {
    {"HELO client.example.org", {"250 ", "250 ", "250 ", "250 "}, {RDY, RDY, RDY, RDY}},
    {"EHLO client.example.org", {"250-", "250-", "250-", "250-"}, {RDY, RDY, RDY, RDY}},
    {"MAIL FROM:<y@remote.example>", {"503 5.5.1", "250 2.1.0", "503 5.5.1", "503 5.5.1"},
     {SAME, SMTP_STATE_MAIL, SAME, SAME}},
    {"RCPT TO:<bob@example.com>", {"503 5.5.1", "503 5.5.1", "250 2.1.5", "250 2.1.5"},
     {SAME, SAME, SMTP_STATE_RCPT, SMTP_STATE_RCPT}},
    {"DATA", {"503 5.5.1", "503 5.5.1", "503 5.5.1", "354 "}, {SAME, SAME, SAME, SMTP_STATE_DATA}},
    {"RSET", {"250 2.0.0", "250 2.0.0", "250 2.0.0", "250 2.0.0"}, {SMTP_STATE_INIT, RDY, RDY, RDY}},
    {"NOOP", {"250 2.0.0", "250 2.0.0", "250 2.0.0", "250 2.0.0"}, {SAME, SAME, SAME, SAME}},
    {"VRFY anne", {"252 2.5.2", "252 2.5.2", "252 2.5.2", "252 2.5.2"}, {SAME, SAME, SAME, SAME}},
    {"HELP", {"214-2.0.0", "214-2.0.0", "214-2.0.0", "214-2.0.0"}, {SAME, SAME, SAME, SAME}},
    {"EXPN staff", {"502 5.5.1", "502 5.5.1", "502 5.5.1", "502 5.5.1"}, {SAME, SAME, SAME, SAME}},
    {"TURN", {"502 5.5.1", "502 5.5.1", "502 5.5.1", "502 5.5.1"}, {SAME, SAME, SAME, SAME}},
    {"BDAT 10 LAST", {"502 5.5.1", "502 5.5.1", "502 5.5.1", "502 5.5.1"}, {SAME, SAME, SAME, SAME}},
    {"XYZZY", {"500 5.5.2", "500 5.5.2", "500 5.5.2", "500 5.5.2"}, {SAME, SAME, SAME, SAME}},
    {"QUIT", {"221 2.0.0", "221 2.0.0", "221 2.0.0", "221 2.0.0"}, {CLS, CLS, CLS, CLS}},
};

static void
test_every_command_in_every_state(Fx *f, gconstpointer d)
{
    (void)d;
    for (gsize i = 0; i < G_N_ELEMENTS(table); i++) {
        for (SmtpState st = SMTP_STATE_INIT; st <= SMTP_STATE_RCPT; st++) {
            to_state(f, st);
            g_autofree char *line = g_strconcat(table[i].line, "\r\n", NULL);
            const char *r = script(f, line);
            if (!reply_has(r, table[i].reply[st]))
                g_error("%s in state %s: expected \"%s...\", got \"%s\"", table[i].line, smtp_state_name(st),
                        table[i].reply[st], r);
            SmtpState want = table[i].next[st] == SAME ? st : (SmtpState)table[i].next[st];
            if (state(f) != want)
                g_error("%s in state %s: left state %s, expected %s", table[i].line, smtp_state_name(st),
                        smtp_state_name(state(f)), smtp_state_name(want));
            g_assert_cmpint(f->closed, ==, want == SMTP_STATE_CLOSED);
        }
    }
}

static void
test_helo_again_drops_the_transaction(Fx *f, gconstpointer d)
{
    (void)d;
    to_state(f, SMTP_STATE_RCPT);
    assert_replies(script(f, "EHLO again.example.org\r\nDATA\r\n"), "250", "503 5.5.1");
    g_assert_cmpstr(stats(f).helo, ==, "again.example.org");
    g_assert_cmpuint(count(f, "anne", "inbox"), ==, 0);
}

static void
test_verbs_are_case_insensitive(Fx *f, gconstpointer d)
{
    (void)d;
    assert_replies(script(f, "ehlo client.example.org\r\nmail from:<x@remote.example>\r\n"
                             "Rcpt To:<anne@example.com>\r\ndata\r\nx\r\n.\r\nquit\r\n"),
                   "250", "250 2.1.0", "250 2.1.5", "354", "250 2.0.0", "221 2.0.0");
    g_assert_true(f->closed);
    g_assert_cmpuint(count(f, "anne", "inbox"), ==, 1);
}

/* ---- MAIL ----------------------------------------------------------------------------------- */

static void
test_mail_syntax_error_is_501(Fx *f, gconstpointer d)
{
    (void)d;
    assert_reply(script(f, "EHLO client.example.org\r\n"), "250");
    assert_reply(script(f, "MAIL TO:<x@remote.example>\r\n"), "501 5.5.4");
    assert_reply(script(f, "MAIL FROM:x@remote.example\r\n"), "501 5.5.4");
    assert_reply(script(f, "MAIL FROM:<x@remote.example\r\n"), "501 5.5.4");
    assert_reply(script(f, "MAIL FROM:<x@remote.example>junk\r\n"), "501 5.5.4");
    assert_reply(script(f, "MAIL FROM:<x@remote.example> SIZE=ten\r\n"), "501 5.5.4");
    g_assert_cmpint(state(f), ==, SMTP_STATE_READY);
    g_assert_cmpuint(stats(f).errors, ==, 5);
    /* a space before "<" is tolerated, as most servers do */
    assert_reply(script(f, "MAIL FROM: <x@remote.example>\r\n"), "250 2.1.0");
}

static void
test_mail_bad_sender_address_is_501(Fx *f, gconstpointer d)
{
    (void)d;
    assert_reply(script(f, "EHLO client.example.org\r\n"), "250");
    g_assert_cmpstr(script(f, "MAIL FROM:<no-at-sign>\r\n"), ==, "501 5.1.7 Bad sender address syntax\r\n");
    assert_reply(script(f, "MAIL FROM:<x@bad..example>\r\n"), "501 5.1.7");
    assert_reply(script(f, "MAIL FROM:<x y@remote.example>\r\n"), "501 5.1.7");
    assert_reply(script(f, "MAIL FROM:<@remote.example>\r\n"), "501");
    assert_reply(script(f, "MAIL FROM:<x@>\r\n"), "501 5.1.7");
    g_assert_cmpint(state(f), ==, SMTP_STATE_READY);
    assert_reply(script(f, "MAIL FROM:<x@remote.example>\r\n"), "250 2.1.0");
}

static void
test_mail_unknown_parameter_is_555(Fx *f, gconstpointer d)
{
    (void)d;
    assert_reply(script(f, "EHLO client.example.org\r\n"), "250");
    g_assert_cmpstr(script(f, "MAIL FROM:<x@remote.example> RET=FULL\r\n"), ==,
                    "555 5.5.4 Unsupported MAIL parameter RET\r\n");
    assert_reply(script(f, "MAIL FROM:<x@remote.example> BODY=BINARYMIME\r\n"), "555 5.5.4");
    assert_reply(script(f, "MAIL FROM:<x@remote.example> SIZE\r\n"), "555 5.5.4");
    g_assert_cmpint(state(f), ==, SMTP_STATE_READY);
}

static void
test_mail_size_over_max_is_552_then_good_mail_works(Fx *f, gconstpointer d)
{
    (void)d;
    assert_reply(script(f, "EHLO client.example.org\r\n"), "250");
    g_assert_cmpstr(script(f, "MAIL FROM:<x@remote.example> SIZE=2049\r\n"), ==,
                    "552 5.3.4 Message size exceeds fixed maximum message size (2048)\r\n");
    g_assert_cmpint(state(f), ==, SMTP_STATE_READY);
    g_assert_cmpuint(stats(f).errors, ==, 0);   /* a refusal, not a bad command */
    assert_reply(script(f, "MAIL FROM:<x@remote.example> SIZE=99999999999999999999999\r\n"), "501 5.5.4");
    assert_reply(script(f, "MAIL FROM:<x@remote.example> SIZE=2048\r\n"), "250 2.1.0");
    g_assert_cmpint(state(f), ==, SMTP_STATE_MAIL);
}

static void
test_mail_body_8bitmime_accepted(Fx *f, gconstpointer d)
{
    (void)d;
    assert_replies(script(f, "EHLO client.example.org\r\nMAIL FROM:<x@remote.example> BODY=8BITMIME\r\n"
                             "RSET\r\nMAIL FROM:<x@remote.example> body=7bit size=100\r\n"
                             "RSET\r\nMAIL FROM:<x@remote.example> SIZE=100 BODY=8bitmime\r\n"),
                   "250", "250 2.1.0", "250 2.0.0", "250 2.1.0", "250 2.0.0", "250 2.1.0");
}

static void
test_mail_parameters_after_helo_are_555(Fx *f, gconstpointer d)
{
    (void)d;
    assert_replies(script(f, "HELO client.example.org\r\nMAIL FROM:<x@remote.example> BODY=8BITMIME\r\n"
                             "MAIL FROM:<x@remote.example> SIZE=10\r\nMAIL FROM:<x@remote.example>\r\n"),
                   "250", "555 5.5.4", "555 5.5.4", "250 2.1.0");
}

static void
test_mail_null_sender_accepted(Fx *f, gconstpointer d)
{
    (void)d;
    assert_replies(script(f, "EHLO client.example.org\r\nMAIL FROM:<>\r\nRCPT TO:<anne@example.com>\r\n"
                             "DATA\r\nSubject: bounce\r\n.\r\n"),
                   "250", "250 2.1.0", "250 2.1.5", "354", "250 2.0.0");
    assert_stored_text(f, "anne", "Subject: bounce\r\n");
}

static void
test_mail_local_sender_store_failure_is_451(Fx *f, gconstpointer d)
{
    (void)d;
    /* By default an unauthenticated sender gets no outbox copy, so MAIL asks the store nothing */
    assert_reply(script(f, "EHLO client.example.org\r\n"), "250");
    store_mem_fail_next(f->store, 1);
    assert_replies(script(f, "MAIL FROM:<anne@example.com>\r\nRSET\r\n"), "250 2.1.0", "250");
    store_mem_fail_next(f->store, 0);
    /* With outbox_copy = local, MAIL looks the sender up: a store failure there is 451 */
    f->cfg.outbox_copy = SMTP_OUTBOX_LOCAL;
    new_session(f);
    assert_reply(script(f, "EHLO client.example.org\r\n"), "250");
    store_mem_fail_next(f->store, 1);
    assert_reply(script(f, "MAIL FROM:<anne@example.com>\r\n"), "451 4.3.0");
    g_assert_cmpint(state(f), ==, SMTP_STATE_READY);
    g_assert_cmpuint(stats(f).errors, ==, 0);
    assert_reply(script(f, "MAIL FROM:<anne@example.com>\r\n"), "250 2.1.0");
}

/* ---- RCPT ----------------------------------------------------------------------------------- */

static void
test_rcpt_foreign_domain_is_relay_denied(Fx *f, gconstpointer d)
{
    (void)d;
    /* not even for a local sender: no relay (RFC 2505) */
    assert_replies(script(f, "EHLO client.example.org\r\nMAIL FROM:<anne@example.com>\r\n"), "250", "250 2.1.0");
    g_assert_cmpstr(script(f, "RCPT TO:<someone@remote.example>\r\n"), ==,
                    "554 5.7.1 <someone@remote.example>: Relay access denied\r\n");
    assert_reply(script(f, "RCPT TO:<anne@example.com.remote.example>\r\n"), "554 5.7.1");
    assert_reply(script(f, "RCPT TO:<anne@sub.example.com>\r\n"), "554 5.7.1");
    assert_reply(script(f, "RCPT TO:<anne@[192.0.2.1]>\r\n"), "554 5.7.1");
    assert_reply(script(f, "RCPT TO:<@example.com:someone@remote.example>\r\n"), "554 5.7.1");
    g_assert_cmpint(state(f), ==, SMTP_STATE_MAIL);
    g_assert_cmpuint(stats(f).errors, ==, 0);
}

static void
test_rcpt_unknown_local_user_is_550(Fx *f, gconstpointer d)
{
    (void)d;
    assert_replies(script(f, "EHLO client.example.org\r\nMAIL FROM:<x@remote.example>\r\n"), "250", "250 2.1.0");
    g_assert_cmpstr(script(f, "RCPT TO:<nobody@example.com>\r\n"), ==,
                    "550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown\r\n");
    assert_reply(script(f, "RCPT TO:<an|ne@example.com>\r\n"), "550 5.1.1");   /* no user has that name */
    g_assert_cmpint(state(f), ==, SMTP_STATE_MAIL);
}

static void
test_rcpt_bad_address_is_501(Fx *f, gconstpointer d)
{
    (void)d;
    assert_replies(script(f, "EHLO client.example.org\r\nMAIL FROM:<x@remote.example>\r\n"), "250", "250 2.1.0");
    g_assert_cmpstr(script(f, "RCPT TO:<anne>\r\n"), ==, "501 5.1.3 Bad recipient address syntax\r\n");
    assert_reply(script(f, "RCPT TO:<>\r\n"), "501 5.1.3");
    assert_reply(script(f, "RCPT TO:<anne@>\r\n"), "501 5.1.3");
    assert_reply(script(f, "RCPT TO:<an:ne@example.com>\r\n"), "501 5.1.3");
    assert_reply(script(f, "RCPT TO:<anne@exa_mple.com>\r\n"), "501 5.1.3");
    /* no path at all is a syntax error of the command */
    assert_reply(script(f, "RCPT TO:anne@example.com\r\n"), "501 5.5.");
    assert_reply(script(f, "RCPT FROM:<anne@example.com>\r\n"), "501 5.5.");
    g_assert_cmpint(state(f), ==, SMTP_STATE_MAIL);
}

static void
test_rcpt_parameters_are_555(Fx *f, gconstpointer d)
{
    (void)d;
    assert_replies(script(f, "EHLO client.example.org\r\nMAIL FROM:<x@remote.example>\r\n"
                             "RCPT TO:<anne@example.com> NOTIFY=NEVER\r\n"),
                   "250", "250 2.1.0", "555 5.5.4");
    g_assert_cmpint(state(f), ==, SMTP_STATE_MAIL);
}

static void
test_rcpt_domain_is_case_insensitive(Fx *f, gconstpointer d)
{
    (void)d;
    assert_replies(script(f, "EHLO client.example.org\r\nMAIL FROM:<x@remote.example>\r\n"
                             "RCPT TO:<anne@EXAMPLE.COM>\r\nRCPT TO:<Bob@example.net>\r\n"
                             "RCPT TO:<CAROL@eXaMpLe.NeT>\r\nDATA\r\nx\r\n.\r\n"),
                   "250", "250 2.1.0", "250 2.1.5", "250 2.1.5", "250 2.1.5", "354", "250 2.0.0");
    g_assert_cmpuint(count(f, "anne", "inbox"), ==, 1);
    g_assert_cmpuint(count(f, "bob", "inbox"), ==, 1);
    g_assert_cmpuint(count(f, "carol", "inbox"), ==, 1);
}

static void
test_rcpt_bare_postmaster_accepted(Fx *f, gconstpointer d)
{
    (void)d;
    assert_replies(script(f, "EHLO client.example.org\r\nMAIL FROM:<x@remote.example>\r\n"
                             "RCPT TO:<Postmaster>\r\nDATA\r\nto the postmaster\r\n.\r\n"),
                   "250", "250 2.1.0", "250 2.1.5", "354", "250 2.0.0");
    assert_stored_text(f, "postmaster", "to the postmaster\r\n");
}

static void
test_rcpt_duplicate_recipient_stored_once(Fx *f, gconstpointer d)
{
    (void)d;
    /* with room for 3 recipients, the same user named 4 ways takes one place: bob and carol fit */
    assert_replies(script(f, "EHLO client.example.org\r\nMAIL FROM:<x@remote.example>\r\n"
                             "RCPT TO:<anne@example.com>\r\nRCPT TO:<ANNE@example.com>\r\n"
                             "RCPT TO:<anne@example.net>\r\nRCPT TO:<@relay.example:anne@example.com>\r\n"
                             "RCPT TO:<bob@example.com>\r\nRCPT TO:<carol@example.com>\r\n"
                             "DATA\r\nonce\r\n.\r\n"),
                   "250", "250 2.1.0", "250 2.1.5", "250 2.1.5", "250 2.1.5", "250 2.1.5", "250 2.1.5",
                   "250 2.1.5", "354", "250 2.0.0");
    assert_stored_text(f, "anne", "once\r\n");
    g_assert_cmpuint(count(f, "bob", "inbox"), ==, 1);
    g_assert_cmpuint(count(f, "carol", "inbox"), ==, 1);
}

static void
test_rcpt_over_max_recipients_is_452(Fx *f, gconstpointer d)
{
    (void)d;
    assert_replies(script(f, "EHLO client.example.org\r\nMAIL FROM:<x@remote.example>\r\n"
                             "RCPT TO:<anne@example.com>\r\nRCPT TO:<bob@example.com>\r\n"
                             "RCPT TO:<carol@example.com>\r\nRCPT TO:<dave@example.com>\r\n"),
                   "250", "250 2.1.0", "250 2.1.5", "250 2.1.5", "250 2.1.5", "452 4.5.3");
    g_assert_cmpuint(stats(f).errors, ==, 0);
    /* the transaction goes on with the first three */
    assert_replies(script(f, "DATA\r\nx\r\n.\r\n"), "354", "250 2.0.0");
    g_assert_cmpuint(count(f, "anne", "inbox"), ==, 1);
    g_assert_cmpuint(count(f, "carol", "inbox"), ==, 1);
    g_assert_cmpuint(count(f, "dave", "inbox"), ==, 0);
    /* the limit is per transaction */
    assert_replies(script(f, "MAIL FROM:<x@remote.example>\r\nRCPT TO:<dave@example.com>\r\n"), "250 2.1.0",
                   "250 2.1.5");
}

static void
test_rcpt_store_failure_is_451(Fx *f, gconstpointer d)
{
    (void)d;
    assert_replies(script(f, "EHLO client.example.org\r\nMAIL FROM:<x@remote.example>\r\n"), "250", "250 2.1.0");
    store_mem_fail_next(f->store, 1);
    assert_reply(script(f, "RCPT TO:<anne@example.com>\r\n"), "451 4.3.0");
    g_assert_cmpint(state(f), ==, SMTP_STATE_MAIL);
    g_assert_cmpuint(stats(f).errors, ==, 0);
    assert_reply(script(f, "RCPT TO:<anne@example.com>\r\n"), "250 2.1.5");
}

/* ---- DATA ----------------------------------------------------------------------------------- */

static void
test_data_is_354_and_period_alone_ends(Fx *f, gconstpointer d)
{
    (void)d;
    to_state(f, SMTP_STATE_RCPT);
    g_assert_cmpstr(script(f, "DATA\r\n"), ==, "354 End data with <CR><LF>.<CR><LF>\r\n");
    g_assert_true(smtp_core.in_text(f->s));
    /* inside the text nothing is a command and nothing is answered */
    g_assert_cmpstr(script(f, "QUIT\r\nRSET\r\n. \r\n.x\r\n\r\n"), ==, "");
    g_assert_false(f->closed);
    g_assert_true(smtp_core.in_text(f->s));
    const char *r = script(f, ".\r\n");
    assert_reply(r, "250 2.0.0");
    g_assert_true(g_str_has_prefix(r, "250 2.0.0 Ok: queued as "));
    g_assert_false(smtp_core.in_text(f->s));
    g_assert_cmpint(state(f), ==, SMTP_STATE_READY);
    assert_stored_text(f, "anne", "QUIT\r\nRSET\r\n \r\nx\r\n\r\n");
    /* the id in the reply is the stored message's */
    g_autofree char *text = g_strndup(r + strlen("250 2.0.0 Ok: queued as "), STORE_MSGID_TEXT_LEN - 1);
    StoreMsgId id;
    g_assert_true(store_msgid_from_text(text, &id));
    g_autoptr(GBytes) msg = NULL;
    g_assert_true(store_fetch(f->store, "anne", "inbox", &id, &msg, NULL));
    g_assert_cmpuint(stats(f).accepted, ==, 1);
    g_assert_cmpuint(stats(f).accepted_octets, ==, g_bytes_get_size(msg));
}

static void
test_data_received_field_then_text(Fx *f, gconstpointer d)
{
    (void)d;
    open_data(f, "x@remote.example", "anne@example.com");
    g_autofree char *id = queued_id(script(f, "Subject: hello\r\n\r\nbody line\r\n.\r\n"));
    g_autoptr(GBytes) msg = stored(f, "anne", "inbox", 0);
    gsize len;
    const char *m = g_bytes_get_data(msg, &len);
    g_autofree char *re = g_strdup_printf(
        "^Received: from client\\.example\\.org \\(192\\.0\\.2\\.7\\)\r\n"
        "\tby mx\\.example\\.com \\(CassMail\\) with ESMTP id %s;\r\n"
        "\t(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
        "[0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} [+-][0-9]{4}\r\n"
        "Subject: hello\r\n\r\nbody line\r\n$",
        id);
    g_autoptr(GRegex) regex = g_regex_new(re, G_REGEX_RAW, 0, NULL);
    g_assert_nonnull(regex);
    g_autofree char *copy = g_strndup(m, len);
    if (!g_regex_match(regex, copy, 0, NULL))
        g_error("stored message does not match:\n%s", copy);
    /* exactly one trace field: one "Received:", its other lines folded with a tab */
    g_auto(GStrv) lines = g_strsplit(copy, "\r\n", -1);
    guint received = 0;
    for (char **l = lines; *l; l++)
        received += g_str_has_prefix(*l, "Received:");
    g_assert_cmpuint(received, ==, 1);
    g_assert_true(lines[1][0] == '\t' && lines[2][0] == '\t');
    g_assert_cmpstr(lines[3], ==, "Subject: hello");
    g_assert_cmpuint(g_bytes_get_size(msg), ==, stats(f).accepted_octets);
}

static void
test_data_helo_session_received_says_smtp(Fx *f, gconstpointer d)
{
    (void)d;
    assert_reply(script(f, "HELO old.example.org\r\n"), "250");
    open_data(f, "x@remote.example", "bob@example.com");
    g_autofree char *id = queued_id(script(f, "x\r\n.\r\n"));
    g_autoptr(GBytes) msg = stored(f, "bob", "inbox", 0);
    g_autofree char *m = g_strndup(g_bytes_get_data(msg, NULL), g_bytes_get_size(msg));
    g_autofree char *want = g_strdup_printf("Received: from old.example.org (" PEER ")\r\n"
                                            "\tby " HOST " (CassMail) with SMTP id %s;\r\n\t", id);
    g_assert_true(g_str_has_prefix(m, want));
}

static void
test_data_received_id_is_the_queued_id(Fx *f, gconstpointer d)
{
    (void)d;
    char *ids[3];
    for (int i = 0; i < 3; i++) {
        open_data(f, "x@remote.example", "carol@example.com");
        ids[i] = queued_id(script(f, "x\r\n.\r\n"));
    }
    g_assert_cmpuint(count(f, "carol", "inbox"), ==, 3);
    /* one message, one id: its Received: field names the id "queued as" gave, and each message
     * of the session has its own, in arrival order */
    for (guint i = 0; i < 3; i++) {
        g_autoptr(GBytes) msg = stored(f, "carol", "inbox", i);
        g_autofree char *m = g_strndup(g_bytes_get_data(msg, NULL), g_bytes_get_size(msg));
        g_autofree char *want = g_strdup_printf(" (CassMail) with ESMTP id %s;\r\n", ids[i]);
        g_assert_nonnull(strstr(m, want));
        g_assert_null(strstr(m, stats(f).id));   /* the session id stays in the logs */
        if (i > 0) {
            StoreMsgId a, b;
            g_assert_true(store_msgid_from_text(ids[i - 1], &a) && store_msgid_from_text(ids[i], &b));
            g_assert_cmpint(store_msgid_compare(&a, &b), <, 0);
        }
    }
    for (int i = 0; i < 3; i++)
        g_free(ids[i]);
}

static void
test_data_dot_unstuffing(Fx *f, gconstpointer d)
{
    (void)d;
    open_data(f, "x@remote.example", "anne@example.com");
    assert_reply(script(f, "..x\r\n..\r\n...\r\n.. leading\r\nmid.dle.\r\n.\r\n"), "250 2.0.0");
    assert_stored_text(f, "anne", ".x\r\n.\r\n..\r\n. leading\r\nmid.dle.\r\n");
}

static void
test_data_empty_text_is_stored(Fx *f, gconstpointer d)
{
    (void)d;
    open_data(f, "x@remote.example", "anne@example.com");
    assert_reply(script(f, ".\r\n"), "250 2.0.0");
    assert_stored_text(f, "anne", "");
}

static void
test_data_bare_lf_lines_stored_with_crlf(Fx *f, gconstpointer d)
{
    (void)d;
    open_data(f, "x@remote.example", "anne@example.com");
    g_assert_cmpstr(script(f, "Subject: lf\n\nline one\nline two\r\nend\n.\r\n"), ==, "");
    /* the "." after a bare LF was text, not the end */
    g_assert_true(smtp_core.in_text(f->s));
    assert_reply(script(f, ".\r\n"), "250 2.0.0");
    assert_stored_text(f, "anne", "Subject: lf\r\n\r\nline one\r\nline two\r\nend\r\n\r\n");
}

static void
test_data_bare_cr_is_554(Fx *f, gconstpointer d)
{
    (void)d;
    /* a CR not followed by LF: no reading of it is safe (SMTP smuggling's "\r.\r\n"), so the
     * message is refused after its end, and the session goes on */
    open_data(f, "x@remote.example", "anne@example.com");
    g_assert_cmpstr(script(f, "Subject: cr\r\n\r\ncr\rinside\r\n"), ==, "");
    g_assert_cmpstr(script(f, "x\r.\r\n"), ==, "");   /* text: the line holds a bare CR */
    g_assert_true(smtp_core.in_text(f->s));
    g_assert_cmpstr(script(f, ".\r\n"), ==, "554 5.6.0 Message contains a bare CR (CR without LF); not delivered\r\n");
    g_assert_false(f->closed);
    g_assert_cmpint(state(f), ==, SMTP_STATE_READY);
    g_assert_cmpuint(count(f, "anne", "inbox"), ==, 0);
    g_assert_cmpuint(stats(f).rejected, ==, 1);
    g_assert_cmpuint(stats(f).errors, ==, 0);
    /* a CR just before the CRLF is bare too */
    open_data(f, "x@remote.example", "anne@example.com");
    assert_reply(script(f, "double\r\r\n.\r\n"), "554 5.6.0");
    /* the next message is fine */
    open_data(f, "x@remote.example", "anne@example.com");
    assert_reply(script(f, "clean\r\n.\r\n"), "250 2.0.0");
    assert_stored_text(f, "anne", "clean\r\n");
}

static void
test_data_too_long_line_ending_decides_the_end(Fx *f, gconstpointer d)
{
    (void)d;
    /* the reader hands over how a skipped line ended: a bare LF makes the "." after it text */
    open_data(f, "x@remote.example", "anne@example.com");
    g_assert_cmpstr(feed_line(f, "\n", 1, PROTO_LINE_TOO_LONG), ==, "");
    g_assert_cmpstr(script(f, ".\r\nMAIL FROM:<ceo@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"), ==, "");
    g_assert_true(smtp_core.in_text(f->s));
    /* at EOF the skipped line had no end at all: the same */
    g_assert_cmpstr(feed_line(f, "", 0, PROTO_LINE_TOO_LONG), ==, "");
    g_assert_cmpstr(script(f, ".\r\n"), ==, "");
    /* a CRLF does end it; one answer for the message */
    g_assert_cmpstr(feed_line(f, "\r\n", 2, PROTO_LINE_TOO_LONG), ==, "");
    assert_reply(script(f, ".\r\n"), "500 5.6.0");
    g_assert_cmpuint(count(f, "anne", "inbox"), ==, 0);
    g_assert_cmpuint(count(f, "bob", "inbox"), ==, 0);
}

static void
test_data_bare_lf_period_never_ends_text(Fx *f, gconstpointer d)
{
    (void)d;
    /* no SMTP smuggling: "\n.\n", "\n.\r\n" and "\r\n.\n" are text; only "\r\n.\r\n" ends */
    open_data(f, "x@remote.example", "anne@example.com");
    g_assert_cmpstr(script(f, "one\r\n.\nMAIL FROM:<evil@remote.example>\r\ntwo\n.\r\nthree\r\n"), ==, "");
    g_assert_true(smtp_core.in_text(f->s));
    assert_reply(script(f, ".\r\n"), "250 2.0.0");
    assert_stored_text(f, "anne", "one\r\n\r\nMAIL FROM:<evil@remote.example>\r\ntwo\r\n\r\nthree\r\n");
}

static void
test_data_8bit_octets_stored_unchanged(Fx *f, gconstpointer d)
{
    (void)d;
    assert_replies(script(f, "EHLO client.example.org\r\nMAIL FROM:<x@remote.example> BODY=8BITMIME\r\n"
                             "RCPT TO:<anne@example.com>\r\nDATA\r\n"),
                   "250", "250 2.1.0", "250 2.1.5", "354");
    static const char text[] = "Subject: caf\xc3\xa9\r\n\r\n\xff\xfe\x80\x7f\x01\x1b gr\xc3\xbc\xc3\x9f" "e\r\n";
    g_assert_cmpstr(script(f, text), ==, "");
    assert_reply(script(f, ".\r\n"), "250 2.0.0");
    assert_stored_text(f, "anne", text);
}

/* data_lines - N lines of WIDTH octets each (CRLF included) */
static char *
data_lines(guint n, gsize width)
{
    GString *t = g_string_new(NULL);
    for (guint i = 0; i < n; i++) {
        for (gsize j = 0; j + 2 < width; j++)
            g_string_append_c(t, (char)('a' + (i + j) % 26));
        g_string_append(t, "\r\n");
    }
    return g_string_free(t, FALSE);
}

static void
test_data_over_max_size_is_552(Fx *f, gconstpointer d)
{
    (void)d;
    g_autofree char *big = data_lines(21, 100);   /* 2100 > 2048 */
    open_data(f, "anne@example.com", "bob@example.com");
    g_assert_cmpstr(script(f, big), ==, "");
    g_assert_cmpstr(script(f, ".\r\n"), ==, "552 5.3.4 Message size exceeds fixed maximum message size (2048)\r\n");
    g_assert_false(f->closed);
    g_assert_cmpint(state(f), ==, SMTP_STATE_READY);
    g_assert_cmpuint(count(f, "bob", "inbox"), ==, 0);
    g_assert_cmpuint(count(f, "anne", "outbox"), ==, 0);
    g_assert_cmpuint(stats(f).rejected, ==, 1);
    /* the next transaction on the same session succeeds */
    g_autofree char *fits = data_lines(20, 100);
    open_data(f, "x@remote.example", "bob@example.com");
    g_assert_cmpstr(script(f, fits), ==, "");
    assert_reply(script(f, ".\r\n"), "250 2.0.0");
    assert_stored_text(f, "bob", fits);
}

static void
test_data_exactly_max_size_is_stored(Fx *f, gconstpointer d)
{
    (void)d;
    /* the size is of the text as stored: unstuffed, with CRLF line ends */
    g_autofree char *t = data_lines(20, 100);   /* 2000 */
    GString *sent = g_string_new(t);
    g_string_append(sent, "..");                 /* unstuffed "." + 45 more + CRLF: 48, 2048 in all */
    for (int i = 0; i < 45; i++)
        g_string_append_c(sent, 'z');
    g_string_append(sent, "\r\n");
    open_data(f, "x@remote.example", "anne@example.com");
    g_assert_cmpstr(script(f, sent->str), ==, "");
    assert_reply(script(f, ".\r\n"), "250 2.0.0");
    g_autoptr(GBytes) msg = stored(f, "anne", "inbox", 0);
    gsize tlen;
    g_assert_nonnull(smtp_received_strip(g_bytes_get_data(msg, NULL), g_bytes_get_size(msg), &tlen));
    g_assert_cmpuint(tlen, ==, MAX_SIZE);
    /* one octet more is refused */
    g_string_insert_c(sent, 0, 'y');
    open_data(f, "x@remote.example", "bob@example.com");
    g_assert_cmpstr(script(f, sent->str), ==, "");
    assert_reply(script(f, ".\r\n"), "552 5.3.4");
    g_assert_cmpuint(count(f, "bob", "inbox"), ==, 0);
    g_string_free(sent, TRUE);
}

static void
test_data_too_long_line_is_500(Fx *f, gconstpointer d)
{
    (void)d;
    open_data(f, "x@remote.example", "anne@example.com");
    g_assert_cmpstr(script(f, "short\r\n"), ==, "");
    /* the reader skipped the line up to its LF and says so: no answer yet */
    g_assert_cmpstr(feed_line(f, "\r\n", 2, PROTO_LINE_TOO_LONG), ==, "");
    g_assert_true(smtp_core.in_text(f->s));
    g_assert_cmpstr(script(f, "after\r\n"), ==, "");
    /* one answer, after the end */
    g_assert_cmpstr(script(f, ".\r\n"), ==, "500 5.6.0 Line too long (over 1000 octets); message not delivered\r\n");
    g_assert_false(f->closed);
    g_assert_cmpuint(count(f, "anne", "inbox"), ==, 0);
    g_assert_cmpuint(stats(f).rejected, ==, 1);
    g_assert_cmpuint(stats(f).errors, ==, 0);
    /* the next message is fine */
    open_data(f, "x@remote.example", "anne@example.com");
    assert_reply(script(f, "ok\r\n.\r\n"), "250 2.0.0");
    assert_stored_text(f, "anne", "ok\r\n");
}

static void
test_data_line_limit_is_1000_octets_without_the_dot(Fx *f, gconstpointer d)
{
    (void)d;
    g_autofree char *a998 = g_strnfill(998, 'a');
    g_autofree char *b999 = g_strnfill(999, 'b');
    /* 998 + CRLF = 1000 octets; the stuffed line of 998 dots is 1001 on the wire, 1000 unstuffed */
    g_autofree char *ok = g_strdup_printf("%s\r\n.%s\r\n", a998, a998);
    open_data(f, "x@remote.example", "anne@example.com");
    g_assert_cmpstr(script(f, ok), ==, "");
    assert_reply(script(f, ".\r\n"), "250 2.0.0");
    g_autofree char *want = g_strdup_printf("%s\r\n%s\r\n", a998, a998);
    assert_stored_text(f, "anne", want);
    /* 999 + CRLF: the reader's limit (1001) let it through, the text limit does not */
    g_autofree char *bad = g_strdup_printf("%s\r\n", b999);
    open_data(f, "x@remote.example", "bob@example.com");
    g_assert_cmpstr(script(f, bad), ==, "");
    assert_reply(script(f, ".\r\n"), "500 5.6.0");
    g_assert_cmpuint(count(f, "bob", "inbox"), ==, 0);
}

static void
test_data_nul_line_is_554(Fx *f, gconstpointer d)
{
    (void)d;
    open_data(f, "x@remote.example", "anne@example.com");
    g_assert_cmpstr(script(f, "before\r\n"), ==, "");
    g_assert_cmpstr(feed_line(f, "a\0b\r\n", 5, PROTO_LINE_NUL), ==, "");
    g_assert_cmpstr(script(f, "after\r\n"), ==, "");
    const char *r = script(f, ".\r\n");
    assert_reply(r, "554 5.6.0");
    g_assert_cmpstr(r, ==, "554 5.6.0 Message contains NUL octets; not delivered\r\n");
    g_assert_cmpuint(count(f, "anne", "inbox"), ==, 0);
    g_assert_cmpuint(stats(f).rejected, ==, 1);
    /* a NUL the reader did not flag is found all the same */
    open_data(f, "x@remote.example", "anne@example.com");
    g_assert_cmpstr(feed_line(f, "x\0\r\n", 4, 0), ==, "");
    assert_reply(script(f, ".\r\n"), "554 5.6.0");
    g_assert_cmpuint(count(f, "anne", "inbox"), ==, 0);
    /* and the session goes on */
    open_data(f, "x@remote.example", "anne@example.com");
    assert_reply(script(f, "clean\r\n.\r\n"), "250 2.0.0");
}

static void
test_data_store_failure_is_451_then_next_is_250(Fx *f, gconstpointer d)
{
    (void)d;
    f->cfg.outbox_copy = SMTP_OUTBOX_LOCAL;   /* anne's outbox copy is part of the write */
    new_session(f);
    open_data(f, "anne@example.com", "bob@example.com");
    g_assert_cmpstr(script(f, "first try\r\n"), ==, "");
    store_mem_fail_next(f->store, 1);
    const char *r = script(f, ".\r\n");
    assert_reply(r, "451 4.3.0");
    g_assert_null(strstr(r, "queued"));
    g_assert_false(f->closed);
    g_assert_cmpint(state(f), ==, SMTP_STATE_READY);
    g_assert_cmpuint(count(f, "bob", "inbox"), ==, 0);
    g_assert_cmpuint(count(f, "anne", "outbox"), ==, 0);
    g_assert_cmpuint(stats(f).rejected, ==, 1);
    g_assert_cmpuint(stats(f).accepted, ==, 0);
    /* the client tries again on the same session */
    open_data(f, "anne@example.com", "bob@example.com");
    assert_reply(script(f, "second try\r\n.\r\n"), "250 2.0.0");
    assert_stored_text(f, "bob", "second try\r\n");
    g_assert_cmpuint(count(f, "anne", "outbox"), ==, 1);
    g_assert_cmpuint(stats(f).accepted, ==, 1);
}

static void
test_data_store_failure_mid_text_is_451_at_the_end(Fx *f, gconstpointer d)
{
    (void)d;
    new_session(f);
    open_data(f, "x@remote.example", "bob@example.com");
    g_assert_cmpstr(script(f, "first line\r\n"), ==, "");
    store_mem_fail_next(f->store, 1);   /* the store fails while the text still arrives */
    g_assert_cmpstr(script(f, "second line\r\n"), ==, "");
    g_assert_cmpstr(script(f, "third line\r\n"), ==, "");   /* read on, nothing said yet */
    const char *r = script(f, ".\r\n");
    assert_reply(r, "451 4.3.0");
    g_assert_cmpuint(count(f, "bob", "inbox"), ==, 0);
    g_assert_cmpuint(stats(f).rejected, ==, 1);
    open_data(f, "x@remote.example", "bob@example.com");
    assert_reply(script(f, "again\r\n.\r\n"), "250 2.0.0");
    assert_stored_text(f, "bob", "again\r\n");
}

/* ---- the sender's outbox -------------------------------------------------------------------- */

static void
test_outbox_none_for_unauthenticated_local_sender_by_default(Fx *f, gconstpointer d)
{
    (void)d;
    /* anyone can write MAIL FROM:<anne@...>: without AUTH, anne's outbox is not touched */
    g_assert_cmpint(f->cfg.outbox_copy, ==, SMTP_OUTBOX_AUTHENTICATED);
    open_data(f, "anne@example.com", "bob@example.com");
    assert_reply(script(f, "forged\r\n.\r\n"), "250 2.0.0");
    assert_stored_text(f, "bob", "forged\r\n");
    g_assert_cmpuint(count(f, "anne", "outbox"), ==, 0);
    /* writing to "oneself" unauthenticated: the inbox only */
    open_data(f, "anne@example.com", "anne@example.com");
    assert_reply(script(f, "note\r\n.\r\n"), "250 2.0.0");
    g_assert_cmpuint(count(f, "anne", "inbox"), ==, 1);
    g_assert_cmpuint(count(f, "anne", "outbox"), ==, 0);
}

static void
test_outbox_local_copies_for_every_local_sender(Fx *f, gconstpointer d)
{
    (void)d;
    f->cfg.outbox_copy = SMTP_OUTBOX_LOCAL;   /* the paper's design */
    new_session(f);
    assert_replies(script(f, "EHLO client.example.org\r\nMAIL FROM:<Anne@Example.net>\r\n"
                             "RCPT TO:<bob@example.com>\r\nRCPT TO:<carol@example.com>\r\n"
                             "DATA\r\nfrom anne\r\n.\r\n"),
                   "250", "250 2.1.0", "250 2.1.5", "250 2.1.5", "354", "250 2.0.0");
    g_assert_cmpuint(store_mem_message_count(f->store, "anne", "outbox"), ==, 1);
    g_assert_cmpuint(count(f, "anne", "inbox"), ==, 0);
    g_autoptr(GBytes) in = stored(f, "bob", "inbox", 0);
    g_autoptr(GBytes) out = stored(f, "anne", "outbox", 0);
    g_assert_true(g_bytes_equal(in, out));
    /* writing to oneself: inbox and outbox */
    assert_replies(script(f, "MAIL FROM:<anne@example.com>\r\nRCPT TO:<anne@example.com>\r\n"
                             "DATA\r\nnote to self\r\n.\r\n"),
                   "250 2.1.0", "250 2.1.5", "354", "250 2.0.0");
    g_assert_cmpuint(count(f, "anne", "outbox"), ==, 2);
    assert_stored_text(f, "anne", "note to self\r\n");
}

static void
test_outbox_none_for_foreign_sender(Fx *f, gconstpointer d)
{
    (void)d;
    f->cfg.outbox_copy = SMTP_OUTBOX_LOCAL;
    new_session(f);
    /* "anne" of another domain is not our anne */
    open_data(f, "anne@remote.example", "bob@example.com");
    assert_reply(script(f, "x\r\n.\r\n"), "250 2.0.0");
    g_assert_cmpuint(count(f, "bob", "inbox"), ==, 1);
    g_assert_cmpuint(count(f, "anne", "outbox"), ==, 0);
}

static void
test_outbox_none_for_null_sender(Fx *f, gconstpointer d)
{
    (void)d;
    f->cfg.outbox_copy = SMTP_OUTBOX_LOCAL;
    new_session(f);
    open_data(f, "", "bob@example.com");
    assert_reply(script(f, "x\r\n.\r\n"), "250 2.0.0");
    g_assert_cmpuint(count(f, "bob", "inbox"), ==, 1);
    for (const char *const *u = users; *u; u++)
        g_assert_cmpuint(count(f, *u, "outbox"), ==, 0);
}

static void
test_outbox_none_for_unknown_local_sender(Fx *f, gconstpointer d)
{
    (void)d;
    f->cfg.outbox_copy = SMTP_OUTBOX_LOCAL;
    new_session(f);
    open_data(f, "ghost@example.com", "bob@example.com");
    assert_reply(script(f, "x\r\n.\r\n"), "250 2.0.0");
    g_assert_cmpuint(count(f, "bob", "inbox"), ==, 1);
    g_assert_cmpuint(count(f, "ghost", "outbox"), ==, 0);
}

/* ---- bad lines, limits, timeouts ------------------------------------------------------------ */

static void
test_over_long_command_is_one_500(Fx *f, gconstpointer d)
{
    (void)d;
    assert_reply(script(f, "EHLO client.example.org\r\n"), "250");
    g_assert_cmpstr(feed_line(f, "", 0, PROTO_LINE_TOO_LONG), ==, "500 5.5.2 Line too long (over 512 octets)\r\n");
    g_assert_false(f->closed);
    g_assert_cmpint(state(f), ==, SMTP_STATE_READY);
    g_assert_cmpuint(stats(f).errors, ==, 1);
    /* the session continues */
    open_data(f, "x@remote.example", "anne@example.com");
    assert_reply(script(f, "x\r\n.\r\n"), "250 2.0.0");
}

static void
test_nul_in_command_is_500(Fx *f, gconstpointer d)
{
    (void)d;
    assert_reply(feed_line(f, "EHLO a\0b\r\n", 10, PROTO_LINE_NUL), "500 5.5.2");
    assert_reply(feed_line(f, "NOOP\0\r\n", 7, 0), "500 5.5.2");   /* unflagged: found all the same */
    g_assert_cmpint(state(f), ==, SMTP_STATE_INIT);
    g_assert_false(f->closed);
    g_assert_cmpuint(stats(f).errors, ==, 2);
    assert_reply(script(f, "EHLO client.example.org\r\n"), "250");
}

static void
test_bare_lf_commands_work(Fx *f, gconstpointer d)
{
    (void)d;
    assert_replies(script(f, "HELO client.example.org\nMAIL FROM:<x@remote.example>\n"), "250", "250 2.1.0");
}

static void
test_max_errors_is_421_and_close(Fx *f, gconstpointer d)
{
    (void)d;
    f->cfg.max_errors = 3;
    new_session(f);
    assert_reply(script(f, "BOGUS\r\n"), "500 5.5.2");
    g_assert_false(f->closed);
    assert_reply(script(f, "MAIL FROM:<x@remote.example>\r\n"), "503 5.5.1");
    g_assert_false(f->closed);
    g_assert_cmpstr(script(f, "EXPN staff\r\n"), ==,
                    "502 5.5.1 Command not implemented\r\n"
                    "421 4.7.0 " HOST " Error: too many errors, closing connection\r\n");
    g_assert_true(f->closed);
    g_assert_cmpint(state(f), ==, SMTP_STATE_CLOSED);
    g_assert_cmpstr(script(f, "EHLO client.example.org\r\n"), ==, "");
    g_assert_true(f->closed);
}

static void
test_max_errors_counts_over_the_whole_session(Fx *f, gconstpointer d)
{
    (void)d;
    f->cfg.max_errors = 3;
    new_session(f);
    assert_replies(script(f, "EHLO client.example.org\r\nDATA\r\n"), "250", "503 5.5.1");
    open_data(f, "x@remote.example", "anne@example.com");
    assert_replies(script(f, "x\r\n.\r\nRSET x\r\nNOOP\r\nVRFY\r\n"), "250 2.0.0", "501 5.5.2", "250 2.0.0",
                   "501 5.5.2", "421 4.7.0");
    g_assert_true(f->closed);
    g_assert_cmpuint(count(f, "anne", "inbox"), ==, 1);
}

static void
test_refusals_do_not_count_as_errors(Fx *f, gconstpointer d)
{
    (void)d;
    f->cfg.max_errors = 2;
    new_session(f);
    assert_replies(script(f, "EHLO client.example.org\r\nMAIL FROM:<x@remote.example> SIZE=99999\r\n"
                             "MAIL FROM:<x@remote.example>\r\n"),
                   "250", "552 5.3.4", "250 2.1.0");
    for (int i = 0; i < 5; i++)
        assert_replies(script(f, "RCPT TO:<nobody@example.com>\r\nRCPT TO:<x@remote.example>\r\n"), "550 5.1.1",
                       "554 5.7.1");
    g_assert_false(f->closed);
    g_assert_cmpuint(stats(f).errors, ==, 0);
}

static void
test_timeout_is_421_and_drops_unfinished_data(Fx *f, gconstpointer d)
{
    (void)d;
    open_data(f, "anne@example.com", "bob@example.com");
    g_assert_cmpstr(script(f, "Subject: never finished\r\n\r\npartial\r\n"), ==, "");
    g_string_truncate(f->out, 0);
    smtp_core.timeout(f->s, f->out);
    g_assert_cmpstr(f->out->str, ==, "421 4.4.2 " HOST " Error: timeout exceeded, closing connection\r\n");
    g_assert_cmpint(state(f), ==, SMTP_STATE_CLOSED);
    g_assert_false(smtp_core.in_text(f->s));
    /* what the client might still send is neither stored nor answered */
    g_assert_cmpstr(script(f, ".\r\n"), ==, "");
    g_assert_true(f->closed);
    g_assert_cmpuint(count(f, "bob", "inbox"), ==, 0);
    g_assert_cmpuint(count(f, "anne", "outbox"), ==, 0);
    /* a second timeout says nothing more */
    g_string_truncate(f->out, 0);
    smtp_core.timeout(f->s, f->out);
    g_assert_cmpstr(f->out->str, ==, "");
}

static void
test_timeout_when_idle_is_421(Fx *f, gconstpointer d)
{
    (void)d;
    smtp_core.timeout(f->s, f->out);
    assert_reply(f->out->str, "421 4.4.2");
    g_assert_cmpint(state(f), ==, SMTP_STATE_CLOSED);
}

static void
test_pipelining_replies_in_order(Fx *f, gconstpointer d)
{
    (void)d;
    assert_reply(script(f, "EHLO client.example.org\r\n"), "250");
    /* MAIL, RCPT, RCPT, DATA in one write: four replies, in order */
    g_assert_cmpstr(script(f, "MAIL FROM:<x@remote.example>\r\nRCPT TO:<anne@example.com>\r\n"
                              "RCPT TO:<nobody@example.com>\r\nDATA\r\n"),
                    ==,
                    "250 2.1.0 Sender ok\r\n"
                    "250 2.1.5 Recipient ok\r\n"
                    "550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown\r\n"
                    "354 End data with <CR><LF>.<CR><LF>\r\n");
    assert_reply(script(f, "x\r\n.\r\n"), "250 2.0.0");
    /* a whole session in one write, QUIT included */
    new_session(f);
    assert_replies(script(f, "EHLO client.example.org\r\nMAIL FROM:<x@remote.example>\r\n"
                             "RCPT TO:<bob@example.com>\r\nRCPT TO:<carol@example.com>\r\nDATA\r\n"
                             "Subject: pipelined\r\n\r\nhi\r\n.\r\n"
                             "MAIL FROM:<>\r\nRCPT TO:<x@remote.example>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"
                             "second\r\n.\r\nQUIT\r\n"),
                   "250", "250 2.1.0", "250 2.1.5", "250 2.1.5", "354", "250 2.0.0", "250 2.1.0", "554 5.7.1",
                   "250 2.1.5", "354", "250 2.0.0", "221 2.0.0");
    g_assert_true(f->closed);
    g_assert_cmpuint(count(f, "bob", "inbox"), ==, 2);
    g_assert_cmpuint(count(f, "carol", "inbox"), ==, 1);
    g_assert_cmpuint(stats(f).accepted, ==, 2);
}

static void
test_reply_text_never_breaks_lines(Fx *f, gconstpointer d)
{
    (void)d;
    assert_reply(script(f, "EHLO client.example.org\r\n"), "250");
    /* what the client sent is echoed with a CR made harmless (check_replies looks at every line) */
    g_assert_cmpstr(script(f, "MAIL FROM:<x@remote.example> A\rB=1\r\n"), ==,
                    "555 5.5.4 Unsupported MAIL parameter A?B\r\n");
    assert_reply(script(f, "MAIL FROM:<x@remote.example>\r\n"), "250 2.1.0");
    assert_reply(feed_line(f, "RCPT TO:<no\rbody@example.com>\r\n", 31, 0), "501 5.1.3");
    assert_reply(feed_line(f, "RCPT TO:<x@remote\r.example>\r\n", 29, 0), "501 5.1.3");
}

/* ---- helpers of the core -------------------------------------------------------------------- */

static void
test_received_strip(void)
{
    const char *m = "Received: from a (b)\r\n\tby c (CassMail) with ESMTP id X.1;\r\n\tdate\r\nSubject: x\r\n";
    gsize n;
    const char *t = smtp_received_strip(m, strlen(m), &n);
    g_assert_cmpstr(t, ==, "Subject: x\r\n");
    g_assert_cmpuint(n, ==, 12);
    t = smtp_received_strip(m, strlen(m) - 12, &n);   /* an empty text */
    g_assert_nonnull(t);
    g_assert_cmpuint(n, ==, 0);
    g_assert_null(smtp_received_strip("Subject: x\r\n", 12, &n));
    g_assert_null(smtp_received_strip("Received: from a\r\nX: y\r\n\tz\r\n", 28, &n));
    g_assert_null(smtp_received_strip(m, 30, &n));
}

static void
test_state_names(void)
{
    g_assert_cmpstr(smtp_state_name(SMTP_STATE_INIT), ==, "init");
    g_assert_cmpstr(smtp_state_name(SMTP_STATE_DATA), ==, "data");
    g_assert_cmpstr(smtp_state_name(SMTP_STATE_CLOSED), ==, "closed");
    g_assert_cmpstr(smtp_state_name((SmtpState)99), ==, "?");
}

static void
test_adapter_maps_the_smtp_settings(void)
{
    g_autoptr(GError) error = NULL;
    CassmailConfig *cfg = config_load(NULL, &error);
    g_assert_no_error(error);
    SmtpSessionConfig sc;
    adapter_smtp_config(&(AdapterRun){.cfg = cfg}, "192.0.2.7", FALSE, &sc);
    g_assert_true(sc.hostname == cfg->hostname);
    g_assert_true(sc.domains == cfg->domains);
    g_assert_cmpuint(sc.max_message_size, ==, cfg->max_message_size);
    g_assert_cmpuint(sc.max_recipients, ==, (guint)cfg->max_recipients);
    g_assert_cmpuint(sc.max_errors, ==, (guint)cfg->max_errors);
    g_assert_null(sc.extensions);
    g_assert_cmpint(sc.outbox_copy, ==, SMTP_OUTBOX_AUTHENTICATED);
    g_assert_false(sc.starttls);   /* no TLS context */
    g_assert_false(sc.relay_trusted);
    g_assert_false(sc.submission);
    config_free(&cfg);
}

/* ---- STARTTLS (RFC 3207) -------------------------------------------------------------------- */

/* tls_session - a session whose adapter can do TLS (and, when PLAINTEXT, allows AUTH before it) */
static void
tls_session(Fx *f, gboolean plaintext)
{
    f->cfg.starttls = TRUE;
    f->cfg.plaintext_auth = plaintext;
    new_session(f);
}

/* starttls - EHLO, STARTTLS (220), then the handshake as the adapter reports it */
static void
starttls(Fx *f)
{
    if (state(f) == SMTP_STATE_INIT)
        assert_reply(script(f, "EHLO before.example\r\n"), "250");
    assert_replies(script(f, "STARTTLS\r\n"), "220 2.0.0");
    g_assert_true(smtp_core.tls_pending(f->s));
    smtp_core.tls_started(f->s);
    g_assert_false(smtp_core.tls_pending(f->s));
}

static void
test_starttls_offered_only_when_the_adapter_can(Fx *f, gconstpointer d)
{
    (void)d;
    g_assert_null(strstr(script(f, "EHLO c.example\r\n"), "STARTTLS"));
    assert_reply(script(f, "STARTTLS\r\n"), "502 5.5.1");
    g_assert_false(smtp_core.tls_pending(f->s));
    tls_session(f, FALSE);
    g_assert_cmpstr(script(f, "EHLO c.example\r\n"), ==,
                    "250-" HOST "\r\n250-PIPELINING\r\n250-SIZE 2048\r\n250-8BITMIME\r\n"
                    "250-STARTTLS\r\n250 ENHANCEDSTATUSCODES\r\n");
}

static void
test_starttls_is_220_and_drops_what_follows_until_tls(Fx *f, gconstpointer d)
{
    (void)d;
    tls_session(f, FALSE);
    assert_reply(script(f, "EHLO c.example\r\n"), "250");
    /* STARTTLS with a command pipelined behind it, as an attacker on the path would inject it */
    assert_replies(script(f, "STARTTLS\r\nRSET\r\nMAIL FROM:<x@remote.example>\r\n"), "220 2.0.0");
    g_assert_true(smtp_core.tls_pending(f->s));
    g_assert_cmpstr(script(f, "QUIT\r\n"), ==, "");
    g_assert_false(f->closed);
    g_assert_cmpuint(stats(f).errors, ==, 0);
    smtp_core.tls_started(f->s);
    g_assert_true(stats(f).tls);
    /* the session starts over: nothing of the plaintext part is known */
    g_assert_cmpint(state(f), ==, SMTP_STATE_INIT);
    g_assert_null(stats(f).helo);
    assert_reply(script(f, "MAIL FROM:<x@remote.example>\r\n"), "503 5.5.1");
    g_assert_cmpstr(script(f, "EHLO after.example\r\n"), ==,
                    "250-" HOST "\r\n250-PIPELINING\r\n250-SIZE 2048\r\n250-8BITMIME\r\n"
                    "250-AUTH PLAIN LOGIN\r\n250 ENHANCEDSTATUSCODES\r\n");
    g_assert_cmpstr(stats(f).helo, ==, "after.example");
}

static void
test_second_starttls_is_503(Fx *f, gconstpointer d)
{
    (void)d;
    tls_session(f, FALSE);
    starttls(f);
    assert_reply(script(f, "EHLO c.example\r\n"), "250");
    assert_reply(script(f, "STARTTLS\r\n"), "503 5.5.1");
    g_assert_false(smtp_core.tls_pending(f->s));
}

static void
test_starttls_needs_ehlo_no_transaction_no_argument(Fx *f, gconstpointer d)
{
    (void)d;
    tls_session(f, FALSE);
    assert_reply(script(f, "STARTTLS\r\n"), "503 5.5.1");
    assert_reply(script(f, "EHLO c.example\r\n"), "250");
    assert_reply(script(f, "STARTTLS now\r\n"), "501 5.5.2");
    assert_replies(script(f, "MAIL FROM:<x@remote.example>\r\nSTARTTLS\r\n"), "250 2.1.0", "503 5.5.1");
    g_assert_false(smtp_core.tls_pending(f->s));
    g_assert_cmpint(state(f), ==, SMTP_STATE_MAIL);
}

static void
test_tls_forgets_the_transaction_and_the_login(Fx *f, gconstpointer d)
{
    (void)d;
    tls_session(f, TRUE);
    g_autofree char *h = password_hash_iterations("secret", 1000, NULL);
    g_assert_true(store_password_set(f->store, "anne", h, NULL));
    assert_reply(script(f, "EHLO c.example\r\n"), "250");
    assert_reply(script(f, "AUTH PLAIN AGFubmUAc2VjcmV0\r\n"), "235 2.7.0");   /* \0anne\0secret */
    g_assert_cmpstr(stats(f).auth_user, ==, "anne");
    starttls(f);
    g_assert_null(stats(f).auth_user);
    assert_reply(script(f, "EHLO c.example\r\n"), "250");
    /* no longer anne: any sender again, and AUTH may be used once more */
    assert_reply(script(f, "MAIL FROM:<bob@example.com>\r\n"), "250 2.1.0");
    assert_replies(script(f, "RSET\r\nAUTH PLAIN AGFubmUAc2VjcmV0\r\n"), "250", "235 2.7.0");
}

/* ---- AUTH (RFC 4954) ------------------------------------------------------------------------ */

/* b64 - base64 of LEN octets (NULs allowed), as a client would send them */
static char *
b64(const char *data, gsize len)
{
    return g_base64_encode((const guchar *)data, len);
}

/* auth_session - TLS done (or plaintext allowed), anne's password "secret", EHLO said */
static void
auth_session(Fx *f)
{
    tls_session(f, FALSE);
    g_autofree char *h = password_hash_iterations("secret", 1000, NULL);
    g_assert_true(store_password_set(f->store, "anne", h, NULL));
    starttls(f);
    assert_reply(script(f, "EHLO c.example\r\n"), "250");
}

/* auth_plain - "AUTH PLAIN <initial response>" for AUTHZID, USER, PASSWORD; the replies */
static const char *
auth_plain(Fx *f, const char *authzid, const char *user, const char *password)
{
    g_autofree char *raw = g_strdup_printf("%s%c%s%c%s", authzid, 0, user, 0, password);
    gsize len = strlen(authzid) + strlen(user) + strlen(password) + 2;
    g_autofree char *enc = b64(raw, len);
    g_autofree char *cmd = g_strdup_printf("AUTH PLAIN %s\r\n", enc);
    return script(f, cmd);
}

static void
test_auth_plain_with_initial_response(Fx *f, gconstpointer d)
{
    (void)d;
    auth_session(f);
    g_assert_cmpuint(smtp_core.line_max(f->s), ==, SMTP_COMMAND_LINE_MAX);
    g_assert_cmpstr(auth_plain(f, "", "anne", "secret"), ==, "235 2.7.0 Authentication successful\r\n");
    g_assert_cmpstr(stats(f).auth_user, ==, "anne");
    g_assert_cmpuint(stats(f).errors, ==, 0);
}

static void
test_auth_plain_with_an_empty_challenge(Fx *f, gconstpointer d)
{
    (void)d;
    auth_session(f);
    g_assert_cmpstr(script(f, "auth plain\r\n"), ==, "334 \r\n");
    g_assert_cmpuint(smtp_core.line_max(f->s), ==, SMTP_AUTH_LINE_MAX);
    g_autofree char *enc = b64("anne\0anne\0secret", 16);   /* authzid = the same user */
    g_autofree char *line = g_strconcat(enc, "\r\n", NULL);
    assert_reply(script(f, line), "235 2.7.0");
    g_assert_cmpuint(smtp_core.line_max(f->s), ==, SMTP_COMMAND_LINE_MAX);
}

static void
test_auth_login_in_two_steps_and_with_initial_response(Fx *f, gconstpointer d)
{
    (void)d;
    auth_session(f);
    g_assert_cmpstr(script(f, "AUTH LOGIN\r\n"), ==, "334 VXNlcm5hbWU6\r\n");   /* Username: */
    g_assert_cmpstr(script(f, "YW5uZQ==\r\n"), ==, "334 UGFzc3dvcmQ6\r\n");     /* anne */
    assert_reply(script(f, "c2VjcmV0\r\n"), "235 2.7.0");                        /* secret */
    g_assert_cmpstr(stats(f).auth_user, ==, "anne");

    auth_session(f);   /* smtplib's way: the user name as initial response */
    g_assert_cmpstr(script(f, "AUTH LOGIN YW5uZUBleGFtcGxlLmNvbQ==\r\n"), ==, "334 UGFzc3dvcmQ6\r\n");
    assert_reply(script(f, "c2VjcmV0\r\n"), "235 2.7.0");                        /* anne@example.com */
    g_assert_cmpstr(stats(f).auth_user, ==, "anne");
}

static void
test_auth_bad_credentials_are_535_and_count_as_errors(Fx *f, gconstpointer d)
{
    (void)d;
    auth_session(f);
    g_autofree char *bob = password_hash_iterations("bobs", 1000, NULL);
    g_assert_true(store_password_set(f->store, "bob", bob, NULL));
    assert_reply(auth_plain(f, "", "anne", "wrong"), "535 5.7.8");
    assert_reply(auth_plain(f, "", "ghost", "secret"), "535 5.7.8");            /* unknown user */
    assert_reply(auth_plain(f, "", "carol", "secret"), "535 5.7.8");            /* no password */
    assert_reply(auth_plain(f, "bob", "anne", "secret"), "535 5.7.8");          /* acting as bob */
    assert_reply(auth_plain(f, "", "anne@remote.example", "secret"), "535 5.7.8");
    assert_reply(auth_plain(f, "", "a:ne", "secret"), "535 5.7.8");             /* not a user name */
    assert_reply(auth_plain(f, "", "Anne", "Secret"), "535 5.7.8");             /* passwords keep case */
    g_assert_null(stats(f).auth_user);
    g_assert_cmpuint(stats(f).errors, ==, 7);
    /* the user name does not: Anne@Example.NET is anne */
    assert_reply(auth_plain(f, "", "Anne@Example.NET", "secret"), "235 2.7.0");
}

static void
test_auth_failures_reach_max_errors(Fx *f, gconstpointer d)
{
    (void)d;
    f->cfg.max_errors = 3;
    auth_session(f);
    assert_reply(auth_plain(f, "", "anne", "a"), "535 5.7.8");
    assert_reply(auth_plain(f, "", "anne", "b"), "535 5.7.8");
    assert_replies(auth_plain(f, "", "anne", "secret"), "235 2.7.0");
    g_assert_false(f->closed);
    auth_session(f);
    assert_reply(auth_plain(f, "", "anne", "a"), "535 5.7.8");
    assert_reply(auth_plain(f, "", "anne", "b"), "535 5.7.8");
    assert_replies(auth_plain(f, "", "anne", "c"), "535 5.7.8", "421 4.7.0");
    g_assert_true(f->closed);
}

static void
test_auth_cancel_bad_base64_and_bad_plain_are_501(Fx *f, gconstpointer d)
{
    (void)d;
    auth_session(f);
    assert_reply(script(f, "AUTH PLAIN\r\n"), "334");
    assert_reply(script(f, "*\r\n"), "501 5.7.0");
    assert_reply(script(f, "AUTH LOGIN\r\n"), "334");
    assert_reply(script(f, "YW5uZQ==\r\n"), "334");
    assert_reply(script(f, "*\r\n"), "501 5.7.0");
    assert_reply(script(f, "AUTH PLAIN not!base64\r\n"), "501 5.5.2");
    assert_reply(script(f, "AUTH PLAIN AGFubmU\r\n"), "501 5.5.2");              /* not whole quads */
    assert_reply(script(f, "AUTH PLAIN A=Fubm==\r\n"), "501 5.5.2");             /* "=" inside */
    assert_reply(script(f, "AUTH PLAIN YW5uZQ==\r\n"), "501 5.5.2");             /* no NUL at all */
    g_autofree char *three = b64("\0anne\0secret\0", 13);
    g_autofree char *cmd = g_strdup_printf("AUTH PLAIN %s\r\n", three);
    assert_reply(script(f, cmd), "501 5.5.2");                                   /* a third NUL */
    /* an over-long or NUL response line aborts the exchange */
    assert_reply(script(f, "AUTH PLAIN\r\n"), "334");
    assert_reply(feed_line(f, "", 0, PROTO_LINE_TOO_LONG), "501 5.5.2");
    assert_reply(script(f, "AUTH PLAIN\r\n"), "334");
    assert_reply(feed_line(f, "A\0==\r\n", 6, PROTO_LINE_NUL), "501 5.5.2");
    /* every exchange ended: commands are commands again */
    assert_reply(script(f, "NOOP\r\n"), "250 2.0.0");
    g_assert_null(stats(f).auth_user);
    assert_reply(auth_plain(f, "", "anne", "secret"), "235 2.7.0");
}

static void
test_auth_sequence_rules(Fx *f, gconstpointer d)
{
    (void)d;
    tls_session(f, TRUE);
    g_autofree char *h = password_hash_iterations("secret", 1000, NULL);
    g_assert_true(store_password_set(f->store, "anne", h, NULL));
    assert_reply(script(f, "AUTH PLAIN AGFubmUAc2VjcmV0\r\n"), "503 5.5.1");    /* before EHLO */
    assert_reply(script(f, "HELO c.example\r\n"), "250");
    assert_reply(script(f, "AUTH PLAIN AGFubmUAc2VjcmV0\r\n"), "503 5.5.1");    /* HELO is not EHLO */
    assert_reply(script(f, "EHLO c.example\r\n"), "250");
    assert_reply(script(f, "AUTH\r\n"), "501 5.5.2");
    assert_reply(script(f, "AUTH CRAM-MD5\r\n"), "504 5.5.4");
    assert_reply(script(f, "AUTH PLAIN AGFubmUAc2VjcmV0 more\r\n"), "501 5.5.2");
    assert_reply(script(f, "MAIL FROM:<x@remote.example>\r\n"), "250");
    assert_reply(script(f, "AUTH PLAIN AGFubmUAc2VjcmV0\r\n"), "503 5.5.1");    /* in a transaction */
    assert_reply(script(f, "RSET\r\n"), "250");
    assert_reply(script(f, "AUTH PLAIN AGFubmUAc2VjcmV0\r\n"), "235 2.7.0");
    assert_reply(script(f, "AUTH PLAIN AGFubmUAc2VjcmV0\r\n"), "503 5.5.1");    /* once only */
    /* EHLO again keeps the login (it resets the transaction, not the authentication) */
    assert_reply(script(f, "EHLO c.example\r\n"), "250");
    g_assert_cmpstr(stats(f).auth_user, ==, "anne");
}

static void
test_auth_without_tls_is_538_unless_plaintext_allowed(Fx *f, gconstpointer d)
{
    (void)d;
    tls_session(f, FALSE);
    g_autofree char *h = password_hash_iterations("secret", 1000, NULL);
    g_assert_true(store_password_set(f->store, "anne", h, NULL));
    g_assert_null(strstr(script(f, "EHLO c.example\r\n"), "AUTH"));
    assert_reply(script(f, "AUTH PLAIN AGFubmUAc2VjcmV0\r\n"), "538 5.7.11");
    assert_reply(script(f, "AUTH LOGIN\r\n"), "538 5.7.11");
    g_assert_null(stats(f).auth_user);
    /* a MAIL parameter AUTH= only where AUTH is offered */
    assert_reply(script(f, "MAIL FROM:<x@remote.example> AUTH=<>\r\n"), "555 5.5.4");
    starttls(f);
    g_assert_nonnull(strstr(script(f, "EHLO c.example\r\n"), "250-AUTH PLAIN LOGIN\r\n"));
    assert_reply(script(f, "AUTH PLAIN AGFubmUAc2VjcmV0\r\n"), "235 2.7.0");
    /* allowed without TLS: offered and accepted at once */
    tls_session(f, TRUE);
    g_assert_nonnull(strstr(script(f, "EHLO c.example\r\n"), "250-AUTH PLAIN LOGIN\r\n"));
    assert_reply(script(f, "AUTH PLAIN AGFubmUAc2VjcmV0\r\n"), "235 2.7.0");
    assert_reply(script(f, "MAIL FROM:<anne@example.com> AUTH=<>\r\n"), "250 2.1.0");
}

static void
test_auth_store_failure_is_454(Fx *f, gconstpointer d)
{
    (void)d;
    auth_session(f);
    store_mem_fail_next(f->store, 1);
    assert_reply(auth_plain(f, "", "anne", "secret"), "454 4.7.0");
    g_assert_null(stats(f).auth_user);
    g_assert_cmpuint(stats(f).errors, ==, 0);
    assert_reply(auth_plain(f, "", "anne", "secret"), "235 2.7.0");
}

/* ---- what an authenticated client may send (RFC 2505: no relay) ---------------------------- */

static void
test_authenticated_sender_must_be_own_address(Fx *f, gconstpointer d)
{
    (void)d;
    auth_session(f);
    assert_reply(auth_plain(f, "", "anne", "secret"), "235");
    const char *refused[] = {"bob@example.com", "anne@remote.example", "", "postmaster@example.com",
                             "anne.x@example.com"};
    for (gsize i = 0; i < G_N_ELEMENTS(refused); i++) {
        g_autofree char *cmd = g_strdup_printf("MAIL FROM:<%s>\r\n", refused[i]);
        assert_reply(script(f, cmd), "553 5.7.1");
        g_assert_cmpint(state(f), ==, SMTP_STATE_READY);
    }
    g_assert_cmpuint(stats(f).errors, ==, 0);   /* refusals by policy, not bad commands */
    /* its own address, in any local domain and any case */
    assert_replies(script(f, "MAIL FROM:<ANNE@example.net>\r\nRSET\r\n"), "250 2.1.0", "250");
    open_data(f, "anne@example.com", "bob@example.com");
    assert_reply(script(f, "hello bob\r\n.\r\n"), "250 2.0.0");
    assert_stored_text(f, "bob", "hello bob\r\n");
    g_assert_cmpuint(count(f, "anne", "outbox"), ==, 1);
    g_autoptr(GBytes) msg = stored(f, "bob", "inbox", 0);
    g_autofree char *text = g_strndup(g_bytes_get_data(msg, NULL), g_bytes_get_size(msg));
    g_assert_nonnull(strstr(text, " with ESMTPSA id "));
}

static void
test_outbox_authenticated_sender_gets_a_copy_by_default(Fx *f, gconstpointer d)
{
    (void)d;
    auth_session(f);
    assert_reply(auth_plain(f, "", "anne", "secret"), "235");
    open_data(f, "Anne@Example.NET", "bob@example.com");
    assert_reply(script(f, "sent by anne\r\n.\r\n"), "250 2.0.0");
    g_assert_cmpuint(count(f, "anne", "outbox"), ==, 1);
    g_autoptr(GBytes) in = stored(f, "bob", "inbox", 0);
    g_autoptr(GBytes) out = stored(f, "anne", "outbox", 0);
    g_assert_true(g_bytes_equal(in, out));
}

static void
test_outbox_never_copies_even_for_an_authenticated_sender(Fx *f, gconstpointer d)
{
    (void)d;
    f->cfg.outbox_copy = SMTP_OUTBOX_NEVER;
    auth_session(f);
    assert_reply(auth_plain(f, "", "anne", "secret"), "235");
    open_data(f, "anne@example.com", "bob@example.com");
    assert_reply(script(f, "x\r\n.\r\n"), "250 2.0.0");
    g_assert_cmpuint(count(f, "bob", "inbox"), ==, 1);
    g_assert_cmpuint(count(f, "anne", "outbox"), ==, 0);
}

static void
test_authenticated_client_cannot_relay(Fx *f, gconstpointer d)
{
    (void)d;
    auth_session(f);
    assert_reply(auth_plain(f, "", "anne", "secret"), "235");
    assert_reply(script(f, "MAIL FROM:<anne@example.com>\r\n"), "250 2.1.0");
    const char *foreign[] = {"x@remote.example", "bob@example.com@remote.example",
                             "@example.com:x@remote.example", "x@[192.0.2.1]", "x@example.com.remote.example"};
    for (gsize i = 0; i < G_N_ELEMENTS(foreign); i++) {
        g_autofree char *cmd = g_strdup_printf("RCPT TO:<%s>\r\n", foreign[i]);
        assert_reply(script(f, cmd), "554 5.7.1");
    }
    /* tricks that name a local domain are just unknown local users */
    assert_reply(script(f, "RCPT TO:<x%remote.example@example.com>\r\n"), "550 5.1.1");
    assert_reply(script(f, "RCPT TO:<remote.example!x@example.com>\r\n"), "550 5.1.1");
    assert_reply(script(f, "DATA\r\n"), "503 5.5.1");
    g_assert_cmpint(state(f), ==, SMTP_STATE_MAIL);
}

static void
test_received_names_tls_and_auth(Fx *f, gconstpointer d)
{
    (void)d;
    const struct {
        gboolean tls, auth;
        const char *with;
    } cases[] = {
        {FALSE, FALSE, " with ESMTP id "},
        {FALSE, TRUE, " with ESMTPA id "},
        {TRUE, FALSE, " with ESMTPS id "},
        {TRUE, TRUE, " with ESMTPSA id "},
    };
    g_autofree char *h = password_hash_iterations("secret", 1000, NULL);
    g_assert_true(store_password_set(f->store, "anne", h, NULL));
    for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
        tls_session(f, TRUE);
        if (cases[i].tls)
            starttls(f);
        assert_reply(script(f, "EHLO c.example\r\n"), "250");
        if (cases[i].auth)
            assert_reply(script(f, "AUTH PLAIN AGFubmUAc2VjcmV0\r\n"), "235");
        open_data(f, "anne@example.com", "dave@example.com");
        assert_reply(script(f, "x\r\n.\r\n"), "250 2.0.0");
        g_autoptr(GBytes) msg = stored(f, "dave", "inbox", (guint)i);
        g_autofree char *text = g_strndup(g_bytes_get_data(msg, NULL), g_bytes_get_size(msg));
        g_assert_nonnull(strstr(text, cases[i].with));
    }
}

static void
test_line_max_follows_the_session(Fx *f, gconstpointer d)
{
    (void)d;
    g_assert_cmpuint(smtp_core.line_max(f->s), ==, SMTP_COMMAND_LINE_MAX);
    open_data(f, "x@remote.example", "bob@example.com");
    g_assert_cmpuint(smtp_core.line_max(f->s), ==, SMTP_TEXT_READ_MAX);
}

/* ---- the [smtp] allow_plaintext_auth rule ---------------------------------------------------- */

/* conf_with - a CassmailConfig from TEXT (NULL and ERROR when it does not load) */
static CassmailConfig *
conf_with(const char *text, GError **error)
{
    char *path = NULL;
    int fd = g_file_open_tmp("cassmail-XXXXXX.conf", &path, NULL);
    g_assert_cmpint(fd, >=, 0);
    close(fd);
    g_assert_true(g_file_set_contents(path, text, -1, NULL));
    CassmailConfig *c = config_load(path, error);
    g_unlink(path);
    g_free(path);
    return c;
}

static void
test_config_plaintext_auth_rule(void)
{
    const char *loopback[] = {"127.0.0.1", "127.1.2.3", "::1", "local", "pipe"};
    const char *remote[] = {"192.0.2.7", "2001:db8::7", "10.127.0.1", "::ffff:192.0.2.7"};
    g_autoptr(GError) error = NULL;
    CassmailConfig *def = config_load(NULL, &error);
    g_assert_no_error(error);
    CassmailConfig *never = conf_with("[smtp]\nallow_plaintext_auth=false\n", &error);
    g_assert_no_error(error);
    CassmailConfig *always = conf_with("[smtp]\nallow_plaintext_auth=true\n", &error);
    g_assert_no_error(error);
    g_assert_cmpint(def->allow_plaintext_auth, ==, CONFIG_PLAINTEXT_LOOPBACK);
    for (gsize i = 0; i < G_N_ELEMENTS(loopback); i++) {
        g_assert_true(config_plaintext_auth_allowed(def->allow_plaintext_auth, loopback[i]));
        g_assert_false(config_plaintext_auth_allowed(never->allow_plaintext_auth, loopback[i]));
        g_assert_true(config_plaintext_auth_allowed(always->allow_plaintext_auth, loopback[i]));
    }
    for (gsize i = 0; i < G_N_ELEMENTS(remote); i++) {
        g_assert_false(config_plaintext_auth_allowed(def->allow_plaintext_auth, remote[i]));
        g_assert_false(config_plaintext_auth_allowed(never->allow_plaintext_auth, remote[i]));
        g_assert_true(config_plaintext_auth_allowed(always->allow_plaintext_auth, remote[i]));
    }
    /* the adapter decides per peer; in submission (RFC 6409) never off this machine */
    SmtpSessionConfig sc;
    adapter_smtp_config(&(AdapterRun){.cfg = def}, "192.0.2.7", FALSE, &sc);
    g_assert_false(sc.plaintext_auth);
    adapter_smtp_config(&(AdapterRun){.cfg = def}, "127.0.0.1", TRUE, &sc);
    g_assert_true(sc.plaintext_auth);
    adapter_smtp_config(&(AdapterRun){.cfg = always}, "192.0.2.7", FALSE, &sc);
    g_assert_true(sc.plaintext_auth);
    adapter_smtp_config(&(AdapterRun){.cfg = always}, "192.0.2.7", TRUE, &sc);
    g_assert_false(sc.plaintext_auth);
    g_assert_true(sc.submission);
    adapter_smtp_config(&(AdapterRun){.cfg = never}, "127.0.0.1", TRUE, &sc);
    g_assert_false(sc.plaintext_auth);
    config_free(&def);
    config_free(&never);
    config_free(&always);

    g_assert_null(conf_with("[smtp]\nallow_plaintext_auth=maybe\n", &error));
    /* the file, the key and the value, as for an unknown key */
    g_assert_nonnull(strstr(error->message, ".conf: [smtp] allow_plaintext_auth = \"maybe\""));
    g_clear_error(&error);
    g_assert_null(conf_with("[tls]\ncertificate=/etc/cert.pem\n", &error));
    g_assert_nonnull(strstr(error->message, "[tls] certificate and key"));
}

/* [pop3] allow_plaintext_auth governs POP3 USER/PASS; without it the old [smtp] key still does */
static void
test_config_pop3_plaintext_auth_key(void)
{
    g_autoptr(GError) error = NULL;
    CassmailConfig *old = conf_with("[smtp]\nallow_plaintext_auth=false\n", &error);
    g_assert_no_error(error);
    g_assert_cmpint(old->pop3_allow_plaintext_auth, ==, CONFIG_PLAINTEXT_NEVER);
    CassmailConfig *own = conf_with("[smtp]\nallow_plaintext_auth=false\n"
                                    "[pop3]\nallow_plaintext_auth=true\n", &error);
    g_assert_no_error(error);
    g_assert_cmpint(own->allow_plaintext_auth, ==, CONFIG_PLAINTEXT_NEVER);
    g_assert_cmpint(own->pop3_allow_plaintext_auth, ==, CONFIG_PLAINTEXT_ALWAYS);
    CassmailConfig *def = conf_with("", &error);
    g_assert_no_error(error);
    g_assert_cmpint(def->pop3_allow_plaintext_auth, ==, CONFIG_PLAINTEXT_LOOPBACK);
    config_free(&old);
    config_free(&own);
    config_free(&def);
    g_assert_null(conf_with("[pop3]\nallow_plaintext_auth=maybe\n", &error));
    g_assert_nonnull(strstr(error->message, "[pop3] allow_plaintext_auth"));
}


/* ---- submission (RFC 6409) and the relay policy with a smarthost ------------------------------ */

/* submission_session - submission mode, anne logged in over TLS, EHLO said */
static void
submission_session(Fx *f)
{
    f->cfg.submission = TRUE;
    auth_session(f);
    assert_reply(auth_plain(f, "", "anne", "secret"), "235 2.7.0");
}

static void
test_submission_needs_auth_before_mail(Fx *f, gconstpointer d)
{
    (void)d;
    f->cfg.submission = TRUE;
    new_session(f);
    assert_replies(script(f, "EHLO c.example\r\nMAIL FROM:<anne@example.com>\r\n"), "250", "530 5.7.0");
    g_assert_cmpint(state(f), ==, SMTP_STATE_READY);
    submission_session(f);
    assert_replies(script(f, "MAIL FROM:<anne@example.com>\r\n"), "250 2.1.0");
}

static void
test_submission_adds_a_missing_date_and_message_id_where_the_header_ends(Fx *f, gconstpointer d)
{
    (void)d;
    submission_session(f);
    const char *r = script(f, "MAIL FROM:<anne@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"
                              "From: anne@example.com\r\nSubject: folded\r\n over two lines\r\n\r\n"
                              "Date: in the body is no header\r\n.\r\n");
    assert_replies(r, "250", "250", "354", "250 2.0.0");
    g_autofree char *id = queued_id(strstr(r, "250 2.0.0"));
    g_autoptr(GBytes) msg = stored(f, "bob", "inbox", 0);
    gsize mlen, tlen;
    const char *m = g_bytes_get_data(msg, &mlen);
    const char *t = smtp_received_strip(m, mlen, &tlen);
    g_autofree char *text = g_strndup(t, tlen);
    g_autofree char *want_id = g_strdup_printf("Message-ID: <%s@" HOST ">\r\n\r\nDate: in the body", id);
    g_assert_true(g_str_has_prefix(text, "From: anne@example.com\r\nSubject: folded\r\n over two lines\r\nDate: "));
    g_assert_nonnull(strstr(text, want_id));
    g_assert_true(g_str_has_suffix(text, "\r\n\r\nDate: in the body is no header\r\n"));
}

static void
test_submission_keeps_a_message_that_has_both_and_adds_to_a_header_only_text(Fx *f, gconstpointer d)
{
    (void)d;
    submission_session(f);
    const char *both = "date: Mon, 30 Nov 2026 10:00:00 +0000\r\nMESSAGE-ID: <x@y>\r\n\r\nbody\r\n";
    g_autofree char *cmds = g_strdup_printf("MAIL FROM:<anne@example.com>\r\nRCPT TO:<bob@example.com>\r\n"
                                            "DATA\r\n%s.\r\n", both);
    assert_replies(script(f, cmds), "250", "250", "354", "250 2.0.0");
    assert_stored_text(f, "bob", both);
    /* header fields only, no empty line: the added fields follow them */
    assert_replies(script(f, "MAIL FROM:<anne@example.com>\r\nRCPT TO:<carol@example.com>\r\nDATA\r\n"
                             "Subject: only a header\r\nMessage-ID: <z@y>\r\n.\r\n"),
                   "250", "250", "354", "250 2.0.0");
    g_autoptr(GBytes) msg = stored(f, "carol", "inbox", 0);
    gsize mlen, tlen;
    const char *m = g_bytes_get_data(msg, &mlen);
    const char *t = smtp_received_strip(m, mlen, &tlen);
    g_autofree char *text = g_strndup(t, tlen);
    g_assert_true(g_str_has_prefix(text, "Subject: only a header\r\nMessage-ID: <z@y>\r\nDate: "));
    g_assert_null(strstr(strstr(text, "Message-ID:") + 1, "Message-ID:"));   /* not a second one */
}

/* no_smarthost - a RelayConfig naming a loopback port nothing listens on */
static RelayConfig *
no_smarthost(char **hostport)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    g_assert_cmpint(bind(fd, (struct sockaddr *)&a, sizeof a), ==, 0);
    g_assert_cmpint(getsockname(fd, (struct sockaddr *)&a, &len), ==, 0);
    close(fd);
    *hostport = g_strdup_printf("127.0.0.1:%d", ntohs(a.sin_port));
    static RelayConfig rc;
    rc = (RelayConfig){.smarthost = *hostport, .helo = HOST, .starttls = RELAY_TLS_NONE,
                       .connect_timeout_ms = 2000, .timeout_ms = 2000};
    return &rc;
}

static void
test_with_a_smarthost_only_authenticated_or_trusted_clients_relay(Fx *f, gconstpointer d)
{
    (void)d;
    g_autofree char *hp = NULL;
    f->cfg.relay = no_smarthost(&hp);
    new_session(f);
    /* neither authenticated nor trusted: refused as without a smarthost, no connection tried */
    assert_replies(script(f, "EHLO c.example\r\nMAIL FROM:<anne@example.com>\r\nRCPT TO:<x@remote.example>\r\n"),
                   "250", "250", "554 5.7.1");
    /* trusted: the smarthost is asked; it is down, so 451 4.4.1, and the next remote recipient
     * gets the same at once; a local recipient is fine and the message goes to it alone */
    f->cfg.relay_trusted = TRUE;
    new_session(f);
    const char *r = script(f, "EHLO c.example\r\nMAIL FROM:<someone@remote.example>\r\n"
                              "RCPT TO:<x@remote.example>\r\nRCPT TO:<y@remote.example>\r\n"
                              "RCPT TO:<bob@example.com>\r\nDATA\r\nSubject: hi\r\n\r\nhi\r\n.\r\n");
    assert_replies(r, "250", "250", "451 4.4.1", "451 4.4.1", "250 2.1.5", "354", "250 2.0.0");
    g_assert_cmpuint(count(f, "bob", "inbox"), ==, 1);
    /* authenticated, not trusted */
    f->cfg.relay_trusted = FALSE;
    auth_session(f);
    assert_reply(auth_plain(f, "", "anne", "secret"), "235 2.7.0");
    assert_replies(script(f, "MAIL FROM:<anne@example.com>\r\nRCPT TO:<x@remote.example>\r\n"), "250", "451 4.4.1");
    /* a message whose only recipients the smarthost could not take never starts */
    assert_replies(script(f, "DATA\r\n"), "503 5.5.1");
    g_assert_cmpuint(count(f, "anne", "outbox"), ==, 0);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    /* the tests' hashes cost 1000 iterations, as a deployment may configure ([auth]) */
    password_set_cost(1000);
#define T(path, fn) g_test_add("/smtp/" path, Fx, NULL, fx_setup, fn, fx_teardown)
    T("greeting/is-220", test_greeting_is_220);
    T("ehlo/lists-pipelining-size-8bitmime-enhancedstatuscodes", test_ehlo_lists_extensions);
    T("ehlo/lists-configured-extensions", test_ehlo_lists_configured_extensions);
    T("helo/is-250", test_helo_is_250);
    T("helo/not-one-printable-word-is-501", test_helo_not_one_printable_word_is_501);
    T("helo/name-need-not-be-a-valid-domain", test_helo_name_need_not_be_a_valid_domain);

    T("state/mail-before-helo-is-503", test_mail_before_helo_is_503);
    T("state/rcpt-before-mail-is-503", test_rcpt_before_mail_is_503);
    T("state/data-before-rcpt-is-503", test_data_before_rcpt_is_503);
    T("state/nested-mail-is-503", test_nested_mail_is_503);
    T("state/rset-anywhere-is-250-and-ready", test_rset_anywhere_is_250_and_ready);
    T("state/noop-anywhere-is-250", test_noop_is_250_anywhere);
    T("state/vrfy-is-252-and-reveals-nothing", test_vrfy_is_252);
    T("state/help-is-214", test_help_is_214);
    T("state/quit-is-221-and-closes", test_quit_is_221_and_closes);
    T("state/expn-and-turn-are-502", test_expn_and_turn_are_502);
    T("state/unknown-verb-is-500", test_unknown_verb_is_500);
    T("state/missing-argument-is-501", test_missing_argument_is_501);
    T("state/argument-to-data-rset-quit-is-501", test_argument_to_data_rset_quit_is_501);
    T("state/every-command-in-every-state", test_every_command_in_every_state);
    T("state/helo-again-drops-the-transaction", test_helo_again_drops_the_transaction);
    T("state/verbs-are-case-insensitive", test_verbs_are_case_insensitive);

    T("mail/syntax-error-is-501-5.5.4", test_mail_syntax_error_is_501);
    T("mail/bad-sender-address-is-501-5.1.7", test_mail_bad_sender_address_is_501);
    T("mail/unknown-parameter-is-555", test_mail_unknown_parameter_is_555);
    T("mail/size-over-max-is-552-then-good-mail-works", test_mail_size_over_max_is_552_then_good_mail_works);
    T("mail/body-8bitmime-accepted", test_mail_body_8bitmime_accepted);
    T("mail/parameters-after-helo-are-555", test_mail_parameters_after_helo_are_555);
    T("mail/null-sender-accepted", test_mail_null_sender_accepted);
    T("mail/local-sender-store-failure-is-451", test_mail_local_sender_store_failure_is_451);

    T("rcpt/foreign-domain-is-relay-denied", test_rcpt_foreign_domain_is_relay_denied);
    T("rcpt/unknown-local-user-is-550", test_rcpt_unknown_local_user_is_550);
    T("rcpt/bad-address-is-501-5.1.3", test_rcpt_bad_address_is_501);
    T("rcpt/parameters-are-555", test_rcpt_parameters_are_555);
    T("rcpt/domain-is-case-insensitive", test_rcpt_domain_is_case_insensitive);
    T("rcpt/bare-postmaster-accepted", test_rcpt_bare_postmaster_accepted);
    T("rcpt/duplicate-recipient-stored-once", test_rcpt_duplicate_recipient_stored_once);
    T("rcpt/over-max-recipients-is-452", test_rcpt_over_max_recipients_is_452);
    T("rcpt/store-failure-is-451", test_rcpt_store_failure_is_451);

    T("data/is-354-and-period-alone-ends", test_data_is_354_and_period_alone_ends);
    T("data/stored-as-one-received-field-then-text", test_data_received_field_then_text);
    T("data/helo-session-received-says-smtp", test_data_helo_session_received_says_smtp);
    T("data/received-id-is-the-queued-id", test_data_received_id_is_the_queued_id);
    T("data/dot-unstuffing", test_data_dot_unstuffing);
    T("data/empty-text-is-stored", test_data_empty_text_is_stored);
    T("data/bare-lf-lines-stored-with-crlf", test_data_bare_lf_lines_stored_with_crlf);
    T("data/bare-lf-period-never-ends-text", test_data_bare_lf_period_never_ends_text);
    T("data/bare-cr-is-554-5.6.0-nothing-stored", test_data_bare_cr_is_554);
    T("data/too-long-line-ending-decides-the-end", test_data_too_long_line_ending_decides_the_end);
    T("data/8bit-octets-stored-unchanged", test_data_8bit_octets_stored_unchanged);
    T("data/over-max-size-is-552-nothing-stored-next-works", test_data_over_max_size_is_552);
    T("data/exactly-max-size-is-stored", test_data_exactly_max_size_is_stored);
    T("data/too-long-line-is-500-5.6.0-nothing-stored", test_data_too_long_line_is_500);
    T("data/line-limit-is-1000-octets-without-the-dot", test_data_line_limit_is_1000_octets_without_the_dot);
    T("data/nul-line-is-554-5.6.0-nothing-stored", test_data_nul_line_is_554);
    T("data/store-failure-is-451-then-next-is-250", test_data_store_failure_is_451_then_next_is_250);
    T("data/store-failure-mid-text-is-451-at-the-end",
      test_data_store_failure_mid_text_is_451_at_the_end);

    T("outbox/none-for-unauthenticated-local-sender-by-default",
      test_outbox_none_for_unauthenticated_local_sender_by_default);
    T("outbox/local-copies-for-every-local-sender", test_outbox_local_copies_for_every_local_sender);
    T("outbox/none-for-foreign-sender", test_outbox_none_for_foreign_sender);
    T("outbox/none-for-null-sender", test_outbox_none_for_null_sender);
    T("outbox/none-for-unknown-local-sender", test_outbox_none_for_unknown_local_sender);

    T("limits/over-long-command-is-one-500", test_over_long_command_is_one_500);
    T("limits/nul-in-command-is-500", test_nul_in_command_is_500);
    T("limits/bare-lf-commands-work", test_bare_lf_commands_work);
    T("limits/max-errors-is-421-and-close", test_max_errors_is_421_and_close);
    T("limits/max-errors-counts-over-the-whole-session", test_max_errors_counts_over_the_whole_session);
    T("limits/refusals-do-not-count-as-errors", test_refusals_do_not_count_as_errors);
    T("timeout/is-421-and-drops-unfinished-data", test_timeout_is_421_and_drops_unfinished_data);
    T("timeout/when-idle-is-421", test_timeout_when_idle_is_421);
    T("pipelining/replies-in-order", test_pipelining_replies_in_order);
    T("reply/text-never-breaks-lines", test_reply_text_never_breaks_lines);

    T("starttls/offered-only-when-the-adapter-can", test_starttls_offered_only_when_the_adapter_can);
    T("starttls/is-220-and-drops-what-follows-until-tls", test_starttls_is_220_and_drops_what_follows_until_tls);
    T("starttls/second-is-503", test_second_starttls_is_503);
    T("starttls/needs-ehlo-no-transaction-no-argument", test_starttls_needs_ehlo_no_transaction_no_argument);
    T("starttls/tls-forgets-the-transaction-and-the-login", test_tls_forgets_the_transaction_and_the_login);
    T("auth/plain-with-initial-response-is-235", test_auth_plain_with_initial_response);
    T("auth/plain-with-an-empty-challenge", test_auth_plain_with_an_empty_challenge);
    T("auth/login-in-two-steps-and-with-initial-response", test_auth_login_in_two_steps_and_with_initial_response);
    T("auth/bad-credentials-are-535-5.7.8-and-count-as-errors", test_auth_bad_credentials_are_535_and_count_as_errors);
    T("auth/failures-reach-max-errors", test_auth_failures_reach_max_errors);
    T("auth/cancel-bad-base64-and-bad-plain-are-501", test_auth_cancel_bad_base64_and_bad_plain_are_501);
    T("auth/sequence-rules-are-503-501-504", test_auth_sequence_rules);
    T("auth/without-tls-is-538-unless-plaintext-allowed", test_auth_without_tls_is_538_unless_plaintext_allowed);
    T("auth/store-failure-is-454", test_auth_store_failure_is_454);
    T("auth/authenticated-sender-must-be-own-address-553", test_authenticated_sender_must_be_own_address);
    T("outbox/authenticated-sender-gets-a-copy-by-default",
      test_outbox_authenticated_sender_gets_a_copy_by_default);
    T("outbox/never-copies-even-for-an-authenticated-sender",
      test_outbox_never_copies_even_for_an_authenticated_sender);
    T("auth/authenticated-client-cannot-relay-554", test_authenticated_client_cannot_relay);
    T("submission/needs-auth-before-mail-530", test_submission_needs_auth_before_mail);
    T("submission/adds-missing-date-and-message-id", test_submission_adds_a_missing_date_and_message_id_where_the_header_ends);
    T("submission/keeps-both-and-adds-to-header-only-text", test_submission_keeps_a_message_that_has_both_and_adds_to_a_header_only_text);
    T("relay/only-authenticated-or-trusted-with-a-smarthost", test_with_a_smarthost_only_authenticated_or_trusted_clients_relay);
    T("auth/received-names-tls-and-auth-rfc3848", test_received_names_tls_and_auth);
    T("limits/line-max-follows-the-session", test_line_max_follows_the_session);
#undef T
    g_test_add_func("/smtp/received-strip/drops-our-three-lines", test_received_strip);
    g_test_add_func("/smtp/names/state-names", test_state_names);
    g_test_add_func("/smtp/config/adapter-maps-the-smtp-settings", test_adapter_maps_the_smtp_settings);
    g_test_add_func("/smtp/config/plaintext-auth-rule", test_config_plaintext_auth_rule);
    g_test_add_func("/smtp/config/pop3-plaintext-auth-key", test_config_pop3_plaintext_auth_key);
    return g_test_run();
}
