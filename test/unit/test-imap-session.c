/*
 * test-imap-session.c - the IMAP core (src/imap/session.c, mailbox.c, fetch.c, search.c, parse.c)
 * driven as the adapter drives it, over the in-memory store, with scripted transcripts.
 *
 * t_send() plays the adapter: it cuts the client's octets into lines (at most line_max), hands
 * announced literals to feed_literal (in pieces of t->split octets when set), and drains long
 * responses through more() in chunks of t->chunk octets. Every response is compared whole.
 *
 * The view's clock (imap_view_set_clock) runs an hour ahead of the TimeUUIDs minted here, so every
 * delivered message is past the seal horizon and gets its UID at once.
 */
#include <string.h>

#include "imap/internal.h"
#include "imap/session.h"
#include "imap/view.h"
#include "store/store.h"
#include "support/store_mem.h"
#include "util/password.h"

static char *t_hash;   /* "secret" at the lowest cost */

static gint64 t_now;   /* the view's clock: fixed, an hour after the start */

static gint64
t_clock(void)
{
    return t_now;
}

typedef struct {
    Store *store;
    ImapSessionConfig cfg;
    ImapSession *s;
    GString *out;
    gboolean closed;
    gsize split;           /* literal octets per feed_literal (0: as much as there is) */
    gsize chunk;           /* more()'s max */
    gsize max_more;        /* the largest piece more() produced */
    guint more_calls;
    gsize max_cmd;         /* the largest command buffer seen (s->cmd) */
    GString *pending;      /* the start of a line whose LF has not come yet */
} T;

static void
t_deliver(T *t, const char *mailbox, const char *msg)
{
    StoreMsgId id;
    StoreTarget target = {"pete", mailbox};
    store_msgid_new(&id);
    g_assert_true(store_deliver(t->store, &id, &target, 1, (const guint8 *)msg, strlen(msg), NULL));
}

static const char t_msg1[] =
    "From: Anne <anne@example.com>\r\n"
    "To: pete@example.com\r\n"
    "Subject: hello\r\n"
    "Date: Mon, 30 Nov 2026 10:00:00 +0000\r\n"
    "Message-ID: <1@example.com>\r\n"
    "\r\n"
    "Hello Pete.\r\n";
static const char t_msg2[] =
    "From: bob@example.org\r\n"
    "To: pete@example.com\r\n"
    "Cc: carol@example.net\r\n"
    "Subject: report\r\n"
    "Date: Tue, 1 Dec 2026 09:00:00 +0100\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"b1\"\r\n"
    "\r\n"
    "--b1\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "The numbers are in.\r\n"
    "--b1\r\n"
    "Content-Type: application/octet-stream\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "AAEC\r\n"
    "--b1--\r\n";
static const char t_msg3[] =
    "From: anne@example.com\r\n"
    "Subject: third\r\n"
    "\r\n"
    "needle in a haystack\r\n";

static T *
t_new(gboolean with_mail)
{
    T *t = g_new0(T, 1);
    t->store = store_mem_new();
    g_assert_true(store_user_add(t->store, "pete", NULL));
    g_assert_true(store_password_set(t->store, "pete", t_hash, NULL));
    g_assert_true(store_user_add(t->store, "anne", NULL));
    if (with_mail) {
        t_deliver(t, "inbox", t_msg1);
        t_deliver(t, "inbox", t_msg2);
        t_deliver(t, "inbox", t_msg3);
    }
    t->cfg = (ImapSessionConfig){
        .login_delay_ms = 1000, .max_errors = 20, .max_message_size = 10 * 1024 * 1024,
        .settle_ms = 2000, .idle_poll_ms = 5000, .plaintext_auth = TRUE, .starttls = FALSE,
    };
    t->out = g_string_new(NULL);
    t->pending = g_string_new(NULL);
    t->chunk = 4096;
    return t;
}

static void
t_start(T *t)
{
    t->s = imap_session_new(&t->cfg, t->store, "test");
    imap_core.greeting(t->s, t->out);
}

static void
t_free(T *t)
{
    if (t->s)
        imap_core.free(t->s);
    store_free(&t->store);
    g_string_free(t->out, TRUE);
    g_string_free(t->pending, TRUE);
    g_free(t);
}

/* t_drain - more() until it says no more */
static void
t_drain(T *t, GString *out)
{
    for (;;) {
        gsize before = out->len;
        gboolean more = imap_core.more(t->s, out, t->chunk);
        t->more_calls++;
        t->max_more = MAX(t->max_more, out->len - before);
        if (!more)
            break;
    }
}

/* t_feed_line - one line (its LF included) as the adapter's reader hands it over */
static void
t_feed_line(T *t, const char *text, gsize n)
{
    gsize max = imap_core.line_max(t->s);
    if (n > max) {
        t->closed = imap_core.feed(t->s, "\r\n", 2, PROTO_LINE_TOO_LONG, t->out);
    } else {
        char *line = g_memdup2(text, n);
        gboolean nul = memchr(line, '\0', n) != NULL;
        t->closed = imap_core.feed(t->s, line, n, nul ? PROTO_LINE_NUL : PROTO_LINE_OK, t->out);
        g_free(line);
    }
    t->max_cmd = MAX(t->max_cmd, t->s->cmd->len);
    t_drain(t, t->out);
    if (!t->closed && imap_core.ended(t->s))
        t->closed = TRUE;
}

/* t_sendn - the client sends TEXT (LEN octets); the server's answer (owned by t). An unfinished
 * line waits for the rest, as in the adapter's reader. */
static const char *
t_sendn(T *t, const char *text, gsize len)
{
    g_string_truncate(t->out, 0);
    gsize pos = 0;
    while (pos < len && !t->closed) {
        gsize lit = imap_core.literal(t->s);
        if (lit) {
            g_assert_cmpuint(t->pending->len, ==, 0);
            gsize n = MIN(lit, len - pos);
            if (t->split)
                n = MIN(n, t->split);
            t->closed = imap_core.feed_literal(t->s, text + pos, n, t->out);
            pos += n;
            t->max_cmd = MAX(t->max_cmd, t->s->cmd->len);
            continue;
        }
        const char *lf = memchr(text + pos, '\n', len - pos);
        gsize n = lf ? (gsize)(lf - (text + pos)) + 1 : len - pos;
        g_string_append_len(t->pending, text + pos, (gssize)n);
        pos += n;
        if (!lf)
            break;
        GString *line = t->pending;
        t->pending = g_string_new(NULL);
        t_feed_line(t, line->str, line->len);
        g_string_free(line, TRUE);
    }
    return t->out->str;
}

static const char *t_send(T *t, const char *text) { return t_sendn(t, text, strlen(text)); }

/* t_login - a session logged in as pete */
static T *
t_login(gboolean with_mail)
{
    T *t = t_new(with_mail);
    t_start(t);
    g_assert_cmpstr(t_send(t, "a LOGIN pete secret\r\n"), ==,
                    "a OK [CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+ ID ENABLE IDLE NAMESPACE UNSELECT "
                    "UIDPLUS MOVE SPECIAL-USE ESEARCH] Logged in\r\n");
    return t;
}

/* t_select - logged in with INBOX selected */
G_GNUC_UNUSED static T *
t_select(void)
{
    T *t = t_login(TRUE);
    const char *r = t_send(t, "s SELECT INBOX\r\n");
    g_assert_true(g_str_has_suffix(r, "s OK [READ-WRITE] SELECT completed\r\n"));
    return t;
}

#define CAPS_PRE "IMAP4rev1 IMAP4rev2 LITERAL+ ID ENABLE IDLE NAMESPACE UNSELECT UIDPLUS MOVE " \
                 "SPECIAL-USE ESEARCH SASL-IR"

/* ---- not authenticated ------------------------------------------------------------------------ */

static void
test_greeting(void)
{
    T *t = t_new(FALSE);
    t_start(t);
    g_assert_cmpstr(t->out->str, ==, "* OK [CAPABILITY " CAPS_PRE " AUTH=PLAIN] CassMail IMAP server ready\r\n");
    g_assert_null(imap_core.ended(t->s));
    g_assert_cmpuint(imap_core.tick_ms(t->s), ==, 0);
    t_free(t);
}

static void
test_capability_states(void)
{
    T *t = t_new(FALSE);
    t->cfg.plaintext_auth = FALSE;
    t->cfg.starttls = TRUE;
    t_start(t);
    g_assert_cmpstr(t_send(t, "1 CAPABILITY\r\n"), ==,
                    "* CAPABILITY " CAPS_PRE " STARTTLS LOGINDISABLED\r\n1 OK CAPABILITY completed\r\n");
    g_assert_cmpstr(t_send(t, "2 LOGIN pete secret\r\n"), ==,
                    "2 NO [PRIVACYREQUIRED] LOGIN is not allowed without TLS, use STARTTLS first\r\n");
    g_assert_cmpstr(t_send(t, "3 AUTHENTICATE PLAIN\r\n"), ==,
                    "3 NO [PRIVACYREQUIRED] authentication is not allowed without TLS, use STARTTLS first\r\n");
    /* STARTTLS: OK, then whatever was pipelined behind it is dropped unanswered */
    g_assert_cmpstr(t_send(t, "4 STARTTLS\r\n5 LOGIN pete secret\r\n"), ==,
                    "4 OK Begin TLS negotiation now\r\n");
    g_assert_true(imap_core.tls_pending(t->s));
    imap_core.tls_started(t->s);
    g_assert_false(imap_core.tls_pending(t->s));
    g_assert_cmpstr(t_send(t, "6 CAPABILITY\r\n"), ==,
                    "* CAPABILITY " CAPS_PRE " AUTH=PLAIN\r\n6 OK CAPABILITY completed\r\n");
    g_assert_cmpstr(t_send(t, "7 STARTTLS\r\n"), ==, "7 BAD TLS is already active\r\n");
    g_assert_cmpstr(t_send(t, "8 LOGIN pete secret\r\n"), ==,
                    "8 OK [CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+ ID ENABLE IDLE NAMESPACE UNSELECT "
                    "UIDPLUS MOVE SPECIAL-USE ESEARCH] Logged in\r\n");
    g_assert_cmpstr(t_send(t, "9 STARTTLS\r\n"), ==, "9 BAD STARTTLS not allowed now: already logged in\r\n");
    t_free(t);
}

static void
test_starttls_unavailable(void)
{
    T *t = t_new(FALSE);
    t_start(t);
    g_assert_cmpstr(t_send(t, "1 STARTTLS\r\n"), ==, "1 BAD STARTTLS is not available\r\n");
    t_free(t);
}

static void
test_login(void)
{
    T *t = t_new(FALSE);
    t_start(t);
    g_assert_cmpstr(t_send(t, "a LOGIN pete wrong\r\n"), ==,
                    "a NO [AUTHENTICATIONFAILED] Authentication failed\r\n");
    g_assert_cmpuint(imap_core.take_delay_ms(t->s), ==, 1000);
    g_assert_cmpuint(imap_core.take_delay_ms(t->s), ==, 0);
    g_assert_cmpstr(t_send(t, "b LOGIN nobody secret\r\n"), ==,
                    "b NO [AUTHENTICATIONFAILED] Authentication failed\r\n");
    g_assert_cmpstr(t_send(t, "c LOGIN anne secret\r\n"), ==,
                    "c NO [AUTHENTICATIONFAILED] Authentication failed\r\n");
    g_assert_cmpstr(t_send(t, "d LOGIN \"bad name!\" secret\r\n"), ==,
                    "d NO [AUTHENTICATIONFAILED] Authentication failed\r\n");
    g_assert_cmpstr(t_send(t, "e LOGIN pete\r\n"), ==, "e BAD syntax: LOGIN user password\r\n");
    g_assert_cmpstr(t_send(t, "f SELECT INBOX\r\n"), ==, "f BAD SELECT not allowed now: log in first\r\n");
    /* the user name's case does not matter; a quoted password */
    g_assert_true(g_str_has_prefix(t_send(t, "g LOGIN PETE \"secret\"\r\n"), "g OK [CAPABILITY "));
    g_assert_cmpint(imap_session_state(t->s), ==, IMAP_STATE_AUTHENTICATED);
    g_assert_cmpstr(t_send(t, "h LOGIN pete secret\r\n"), ==, "h BAD LOGIN not allowed now: already logged in\r\n");
    t_free(t);
}

static void
test_login_literals(void)
{
    T *t = t_new(FALSE);
    t_start(t);
    /* a synchronizing literal gets "+", a non-synchronizing one not */
    g_assert_cmpstr(t_send(t, "a LOGIN {4}\r\n"), ==, "+ Ready for literal data\r\n");
    g_assert_cmpuint(imap_core.literal(t->s), ==, 4);
    g_assert_cmpstr(t_send(t, "pete {6+}\r\nsecret\r\n"), ==,
                    "a OK [CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+ ID ENABLE IDLE NAMESPACE UNSELECT "
                    "UIDPLUS MOVE SPECIAL-USE ESEARCH] Logged in\r\n");
    t_free(t);
}

/* t_norm - S with UIDVALIDITY's number (the mailbox's creation second) replaced by "V" */
static char *
t_norm(const char *s)
{
    GString *r = g_string_new(NULL);
    while (*s) {
        if (g_str_has_prefix(s, "UIDVALIDITY ")) {
            g_string_append(r, "UIDVALIDITY V");
            s += 12;
            while (g_ascii_isdigit(*s))
                s++;
            continue;
        }
        g_string_append_c(r, *s++);
    }
    return g_string_free(r, FALSE);
}

/* every cut of one stream of commands with literals gives the same responses */
static void
test_literals_split_everywhere(void)
{
    static const char in[] = "a LOGIN {4+}\r\npete {6+}\r\nsecret\r\n"
                             "b SELECT {5+}\r\nINBOX\r\n"
                             "c SEARCH SUBJECT {5+}\r\nhe\r\nl\r\n"
                             "d LOGOUT\r\n";
    gsize n = strlen(in);
    g_autofree char *expect = NULL;
    for (gsize split = 0; split <= 8; split++) {
        for (gsize cut = 0; cut <= n; cut++) {
            T *t = t_new(TRUE);
            t->split = split;
            t_start(t);
            GString *all = g_string_new(NULL);
            t_sendn(t, in, cut);
            g_string_append(all, t->out->str);
            t_sendn(t, in + cut, n - cut);
            g_string_append(all, t->out->str);
            g_autofree char *got = t_norm(all->str);
            if (!expect)
                expect = g_strdup(got);
            g_assert_cmpstr(got, ==, expect);
            g_string_free(all, TRUE);
            t_free(t);
        }
    }
    g_assert_true(strstr(expect, "c OK SEARCH completed\r\n") != NULL);
    g_assert_true(strstr(expect, "* SEARCH\r\n") != NULL);   /* "he\r\nl" is in no subject */
    g_assert_true(g_str_has_suffix(expect, "d OK LOGOUT completed\r\n"));
}

static void
test_authenticate(void)
{
    T *t = t_new(FALSE);
    t_start(t);
    g_autofree char *good = g_base64_encode((const guchar *)"\0pete\0secret", 12);
    g_autofree char *bad = g_base64_encode((const guchar *)"\0pete\0wrong", 11);
    g_autofree char *other = g_base64_encode((const guchar *)"anne\0pete\0secret", 16);
    g_autofree char *l1 = g_strdup_printf("1 AUTHENTICATE PLAIN %s\r\n", bad);
    g_assert_cmpstr(t_send(t, l1), ==, "1 NO [AUTHENTICATIONFAILED] Authentication failed\r\n");
    g_autofree char *l2 = g_strdup_printf("2 AUTHENTICATE PLAIN %s\r\n", other);
    g_assert_cmpstr(t_send(t, l2), ==, "2 NO [AUTHORIZATIONFAILED] cannot act as another user\r\n");
    g_assert_cmpstr(t_send(t, "3 AUTHENTICATE PLAIN\r\n"), ==, "+ \r\n");
    g_assert_cmpstr(t_send(t, "*\r\n"), ==, "3 BAD AUTHENTICATE cancelled\r\n");
    g_assert_cmpstr(t_send(t, "4 AUTHENTICATE PLAIN\r\n"), ==, "+ \r\n");
    g_assert_cmpstr(t_send(t, "!!!\r\n"), ==, "4 BAD invalid base64 in the PLAIN response\r\n");
    g_assert_cmpstr(t_send(t, "5 AUTHENTICATE CRAM-MD5\r\n"), ==, "5 NO [CANNOT] unsupported mechanism\r\n");
    g_assert_cmpstr(t_send(t, "6 AUTHENTICATE PLAIN =\r\n"), ==, "6 BAD malformed PLAIN response\r\n");
    g_assert_cmpstr(t_send(t, "7 AUTHENTICATE PLAIN\r\n"), ==, "+ \r\n");
    g_autofree char *l7 = g_strdup_printf("%s\r\n", good);
    g_assert_true(g_str_has_prefix(t_send(t, l7), "7 OK [CAPABILITY IMAP4rev1 "));
    g_assert_cmpint(imap_session_state(t->s), ==, IMAP_STATE_AUTHENTICATED);
    t_free(t);

    t = t_new(FALSE);
    t_start(t);
    g_autofree char *l8 = g_strdup_printf("8 authenticate plain %s\r\n", good);   /* SASL-IR */
    g_assert_true(g_str_has_prefix(t_send(t, l8), "8 OK [CAPABILITY IMAP4rev1 "));
    t_free(t);
}

static void
test_any_state(void)
{
    T *t = t_new(FALSE);
    t_start(t);
    g_assert_cmpstr(t_send(t, "1 NOOP\r\n"), ==, "1 OK NOOP completed\r\n");
    g_assert_cmpstr(t_send(t, "2 ID (\"name\" \"test\" \"version\" NIL)\r\n"), ==,
                    "* ID (\"name\" \"CassMail\" \"vendor\" \"CassMail\")\r\n2 OK ID completed\r\n");
    g_assert_cmpstr(t_send(t, "3 ID NIL\r\n"), ==,
                    "* ID (\"name\" \"CassMail\" \"vendor\" \"CassMail\")\r\n3 OK ID completed\r\n");
    g_assert_cmpstr(t_send(t, "4 ID (\"name\")\r\n"), ==,
                    "4 BAD syntax: ID (\"name\" \"value\" ...) or ID NIL\r\n");
    g_assert_cmpstr(t_send(t, "5 ENABLE IMAP4rev2\r\n"), ==, "5 BAD ENABLE not allowed now: log in first\r\n");
    g_assert_cmpstr(t_send(t, "6 LOGOUT\r\n"), ==,
                    "* BYE CassMail IMAP server logging out\r\n6 OK LOGOUT completed\r\n");
    g_assert_true(t->closed);
    g_assert_cmpstr(imap_core.ended(t->s), ==, "quit");
    t_free(t);
}

/* ---- authenticated ------------------------------------------------------------------------------ */

static void
test_enable_namespace(void)
{
    T *t = t_login(FALSE);
    g_assert_cmpstr(t_send(t, "1 NAMESPACE\r\n"), ==,
                    "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n1 OK NAMESPACE completed\r\n");
    g_assert_cmpstr(t_send(t, "2 ENABLE CONDSTORE IMAP4rev2\r\n"), ==,
                    "* ENABLED IMAP4rev2\r\n2 OK ENABLE completed\r\n");
    g_assert_cmpstr(t_send(t, "3 ENABLE IMAP4rev2\r\n"), ==, "* ENABLED\r\n3 OK ENABLE completed\r\n");
    g_assert_cmpstr(t_send(t, "4 ENABLE\r\n"), ==, "4 BAD syntax: ENABLE capability...\r\n");
    t_free(t);
}

static void
test_list(void)
{
    T *t = t_login(FALSE);
    g_assert_cmpstr(t_send(t, "1 LIST \"\" \"\"\r\n"), ==,
                    "* LIST (\\Noselect) \"/\" \"\"\r\n1 OK LIST completed\r\n");
    g_assert_cmpstr(t_send(t, "2 LIST \"\" *\r\n"), ==,
                    "* LIST (\\HasNoChildren) \"/\" INBOX\r\n"
                    "* LIST (\\HasNoChildren \\Sent) \"/\" outbox\r\n2 OK LIST completed\r\n");
    g_assert_cmpstr(t_send(t, "3 CREATE Work/Projects/\r\n"), ==, "3 OK CREATE completed\r\n");
    g_assert_cmpstr(t_send(t, "4 CREATE \"Old mail\"\r\n"), ==, "4 OK CREATE completed\r\n");
    g_assert_cmpstr(t_send(t, "5 LIST \"\" %\r\n"), ==,
                    "* LIST (\\HasNoChildren) \"/\" INBOX\r\n"
                    "* LIST (\\HasNoChildren) \"/\" \"Old mail\"\r\n"
                    "* LIST (\\Noselect \\HasChildren) \"/\" Work\r\n"
                    "* LIST (\\HasNoChildren \\Sent) \"/\" outbox\r\n5 OK LIST completed\r\n");
    g_assert_cmpstr(t_send(t, "6 LIST Work/ %\r\n"), ==,
                    "* LIST (\\HasNoChildren) \"/\" Work/Projects\r\n6 OK LIST completed\r\n");
    g_assert_cmpstr(t_send(t, "7 LSUB \"\" inbox\r\n"), ==,
                    "* LSUB (\\HasNoChildren) \"/\" INBOX\r\n7 OK LSUB completed\r\n");
    g_assert_cmpstr(t_send(t, "8 LIST (SPECIAL-USE) \"\" *\r\n"), ==,
                    "* LIST (\\HasNoChildren \\Sent) \"/\" outbox\r\n8 OK LIST completed\r\n");
    g_assert_cmpstr(t_send(t, "9 LIST \"\" (INBOX outbox) RETURN (SUBSCRIBED)\r\n"), ==,
                    "* LIST (\\HasNoChildren \\Subscribed) \"/\" INBOX\r\n"
                    "* LIST (\\HasNoChildren \\Sent \\Subscribed) \"/\" outbox\r\n9 OK LIST completed\r\n");
    g_assert_cmpstr(t_send(t, "10 LIST \"\" * RETURN (STATUS (MESSAGES))\r\n"), ==,
                    "10 BAD LIST RETURN option not supported\r\n");
    g_assert_cmpstr(t_send(t, "11 LIST \"\"\r\n"), ==, "11 BAD syntax: LIST reference mailbox\r\n");
    g_assert_cmpstr(t_send(t, "12 SUBSCRIBE outbox\r\n"), ==, "12 OK SUBSCRIBE completed\r\n");
    g_assert_cmpstr(t_send(t, "13 UNSUBSCRIBE outbox\r\n"), ==, "13 OK UNSUBSCRIBE completed\r\n");
    t_free(t);
}

static void
test_create_delete_rename(void)
{
    T *t = t_login(FALSE);
    g_assert_cmpstr(t_send(t, "1 CREATE Drafts\r\n"), ==, "1 OK CREATE completed\r\n");
    g_assert_cmpstr(t_send(t, "2 CREATE Drafts\r\n"), ==, "2 NO [ALREADYEXISTS] Mailbox already exists\r\n");
    g_assert_cmpstr(t_send(t, "3 RENAME Drafts Entwürfe\r\n"), ==, "3 BAD syntax: RENAME mailbox new-name\r\n");
    g_assert_cmpstr(t_send(t, "4 RENAME Drafts Later\r\n"), ==, "4 OK RENAME completed\r\n");
    g_assert_cmpstr(t_send(t, "5 DELETE Drafts\r\n"), ==, "5 NO [NONEXISTENT] Mailbox does not exist\r\n");
    g_assert_cmpstr(t_send(t, "6 DELETE Later\r\n"), ==, "6 OK DELETE completed\r\n");
    g_assert_cmpstr(t_send(t, "7 DELETE INBOX\r\n"), ==, "7 NO [CANNOT] INBOX cannot be deleted\r\n");
    g_assert_cmpstr(t_send(t, "8 CREATE \"a//b\"\r\n"), ==, "8 NO [CANNOT] Invalid mailbox name\r\n");
    g_assert_cmpstr(t_send(t, "9 LIST \"\" *\r\n"), ==,
                    "* LIST (\\HasNoChildren) \"/\" INBOX\r\n"
                    "* LIST (\\HasNoChildren \\Sent) \"/\" outbox\r\n9 OK LIST completed\r\n");
    t_free(t);
}

static void
test_status(void)
{
    T *t = t_login(TRUE);
    const char *r = t_send(t, "1 STATUS inbox (MESSAGES UNSEEN UIDNEXT SIZE DELETED RECENT)\r\n");
    g_autofree char *expect = g_strdup_printf(
        "* STATUS INBOX (MESSAGES 3 UNSEEN 3 UIDNEXT 4 SIZE %zu DELETED 0 RECENT 0)\r\n"
        "1 OK STATUS completed\r\n", strlen(t_msg1) + strlen(t_msg2) + strlen(t_msg3));
    g_assert_cmpstr(r, ==, expect);
    g_assert_cmpstr(t_send(t, "2 STATUS nowhere (MESSAGES)\r\n"), ==,
                    "2 NO [NONEXISTENT] Mailbox does not exist\r\n");
    g_assert_cmpstr(t_send(t, "3 STATUS INBOX (BOGUS)\r\n"), ==,
                    "3 BAD syntax: STATUS mailbox (MESSAGES UIDNEXT UIDVALIDITY UNSEEN SIZE DELETED)\r\n");
    r = t_send(t, "4 STATUS outbox (UIDVALIDITY)\r\n");
    g_assert_true(g_str_has_prefix(r, "* STATUS outbox (UIDVALIDITY "));
    t_free(t);
}

/* ---- selected ------------------------------------------------------------------------------------- */

static void
test_select(void)
{
    T *t = t_login(TRUE);
    const char *r = t_send(t, "1 SELECT inbox\r\n");
    guint32 uidvalidity = imap_view_uidvalidity(t->s->view);
    g_autofree char *expect = g_strdup_printf(
        "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
        "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted\r\n"
        "* 3 EXISTS\r\n"
        "* 0 RECENT\r\n"
        "* OK [UNSEEN 1] First unseen\r\n"
        "* OK [UIDVALIDITY %u] UIDs valid\r\n"
        "* OK [UIDNEXT 4] Predicted next UID\r\n"
        "1 OK [READ-WRITE] SELECT completed\r\n", uidvalidity);
    g_assert_cmpstr(r, ==, expect);
    g_assert_cmpint(imap_session_state(t->s), ==, IMAP_STATE_SELECTED);
    /* EXAMINE: read-only; IMAP4rev2 leaves RECENT and UNSEEN out, says CLOSED and LIST */
    r = t_send(t, "3 EXAMINE INBOX\r\n");
    g_assert_true(g_str_has_prefix(r, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
                                      "* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n* 3 EXISTS\r\n"));
    g_assert_true(g_str_has_suffix(r, "3 OK [READ-ONLY] EXAMINE completed\r\n"));
    g_assert_cmpstr(t_send(t, "4 STORE 1 +FLAGS (\\Seen)\r\n"), ==, "4 NO [READ-ONLY] Mailbox is read-only\r\n");
    g_assert_cmpstr(t_send(t, "5 EXPUNGE\r\n"), ==, "5 NO [READ-ONLY] Mailbox is read-only\r\n");
    g_assert_cmpstr(t_send(t, "6 SELECT nowhere\r\n"), ==, "6 NO [NONEXISTENT] Mailbox does not exist\r\n");
    g_assert_cmpint(imap_session_state(t->s), ==, IMAP_STATE_AUTHENTICATED);
    g_assert_cmpstr(t_send(t, "7 FETCH 1 FLAGS\r\n"), ==, "7 BAD FETCH not allowed now: select a mailbox first\r\n");
    t_free(t);
}

static void
test_select_rev2(void)
{
    T *t = t_login(TRUE);
    t_send(t, "1 ENABLE IMAP4rev2\r\n");
    t_send(t, "2 SELECT INBOX\r\n");
    const char *r = t_send(t, "3 SELECT outbox\r\n");
    guint32 uidvalidity = imap_view_uidvalidity(t->s->view);
    g_autofree char *expect = g_strdup_printf(
        "* OK [CLOSED] Previous mailbox closed\r\n"
        "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
        "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted\r\n"
        "* 0 EXISTS\r\n"
        "* OK [UIDVALIDITY %u] UIDs valid\r\n"
        "* OK [UIDNEXT 1] Predicted next UID\r\n"
        "* LIST () \"/\" outbox\r\n"
        "3 OK [READ-WRITE] SELECT completed\r\n", uidvalidity);
    g_assert_cmpstr(r, ==, expect);
    /* IMAP4rev2: SEARCH answers with ESEARCH */
    g_assert_cmpstr(t_send(t, "4 SEARCH ALL\r\n"), ==, "* ESEARCH (TAG \"4\")\r\n4 OK SEARCH completed\r\n");
    t_free(t);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    password_set_cost(PASSWORD_ITERATIONS_MIN);
    t_hash = password_hash_iterations("secret", PASSWORD_ITERATIONS_MIN, NULL);
    t_now = (g_get_real_time() / 1000000 + 3600) * 1000000;
    imap_view_set_clock(t_clock);
    g_test_add_func("/imap/greeting", test_greeting);
    g_test_add_func("/imap/capability-states", test_capability_states);
    g_test_add_func("/imap/starttls-unavailable", test_starttls_unavailable);
    g_test_add_func("/imap/login", test_login);
    g_test_add_func("/imap/login-literals", test_login_literals);
    g_test_add_func("/imap/literals-split-everywhere", test_literals_split_everywhere);
    g_test_add_func("/imap/authenticate", test_authenticate);
    g_test_add_func("/imap/any-state", test_any_state);
    g_test_add_func("/imap/enable-namespace", test_enable_namespace);
    g_test_add_func("/imap/list", test_list);
    g_test_add_func("/imap/create-delete-rename", test_create_delete_rename);
    g_test_add_func("/imap/status", test_status);
    g_test_add_func("/imap/select", test_select);
    g_test_add_func("/imap/select-rev2", test_select_rev2);
    int rc = g_test_run();
    g_free(t_hash);
    return rc;
}
