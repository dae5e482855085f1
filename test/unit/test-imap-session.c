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
                    "MOVE SPECIAL-USE ESEARCH] Logged in\r\n");
    return t;
}

/* t_select - logged in with INBOX selected */
static T *
t_select(void)
{
    T *t = t_login(TRUE);
    const char *r = t_send(t, "s SELECT INBOX\r\n");
    g_assert_true(g_str_has_suffix(r, "s OK [READ-WRITE] SELECT completed\r\n"));
    return t;
}

#define CAPS_PRE "IMAP4rev1 IMAP4rev2 LITERAL+ ID ENABLE IDLE NAMESPACE UNSELECT MOVE " \
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
                    "MOVE SPECIAL-USE ESEARCH] Logged in\r\n");
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
                    "MOVE SPECIAL-USE ESEARCH] Logged in\r\n");
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
    g_assert_cmpstr(t_send(t, "13 UNSUBSCRIBE outbox\r\n"), ==, "13 NO [CANNOT] every mailbox is subscribed here\r\n");
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

static void
test_fetch(void)
{
    T *t = t_select();
    g_assert_cmpstr(t_send(t, "1 FETCH 1:* (UID FLAGS RFC822.SIZE)\r\n"), ==,
                    "* 1 FETCH (UID 1 FLAGS () RFC822.SIZE 152)\r\n"
                    "* 2 FETCH (UID 2 FLAGS () RFC822.SIZE 342)\r\n"
                    "* 3 FETCH (UID 3 FLAGS () RFC822.SIZE 64)\r\n1 OK FETCH completed\r\n");
    g_assert_cmpstr(t_send(t, "2 FETCH 1 (ENVELOPE BODY)\r\n"), ==,
                    "* 1 FETCH (ENVELOPE (\"Mon, 30 Nov 2026 10:00:00 +0000\" \"hello\" "
                    "((\"Anne\" NIL \"anne\" \"example.com\")) ((\"Anne\" NIL \"anne\" \"example.com\")) "
                    "((\"Anne\" NIL \"anne\" \"example.com\")) ((NIL NIL \"pete\" \"example.com\")) NIL NIL "
                    "NIL \"<1@example.com>\") BODY (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
                    "\"7bit\" 13 1))\r\n2 OK FETCH completed\r\n");
    g_assert_cmpstr(t_send(t, "3 FETCH 2 BODYSTRUCTURE\r\n"), ==,
                    "* 2 FETCH (BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
                    "\"7bit\" 19 0 NIL NIL NIL NIL)(\"application\" \"octet-stream\" NIL NIL NIL "
                    "\"base64\" 4 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"b1\") NIL NIL NIL))\r\n"
                    "3 OK FETCH completed\r\n");
    /* BODY.PEEK leaves \Seen alone; BODY[] sets it and says so */
    g_assert_cmpstr(t_send(t, "4 FETCH 3 (BODY.PEEK[HEADER] BODY.PEEK[TEXT]<0.6>)\r\n"), ==,
                    "* 3 FETCH (BODY[HEADER] {42}\r\nFrom: anne@example.com\r\nSubject: third\r\n\r\n"
                    " BODY[TEXT]<0> {6}\r\nneedle)\r\n4 OK FETCH completed\r\n");
    g_assert_cmpstr(t_send(t, "5 FETCH 2 (BODY[1] BODY.PEEK[2.MIME] BODY[HEADER.FIELDS (Subject cc)])\r\n"), ==,
                    "* 2 FETCH (BODY[1] {19}\r\nThe numbers are in. BODY[2.MIME] {77}\r\n"
                    "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                    " BODY[HEADER.FIELDS (Subject cc)] {42}\r\nCc: carol@example.net\r\nSubject: report\r\n\r\n"
                    " FLAGS (\\Seen))\r\n5 OK FETCH completed\r\n");
    g_assert_cmpstr(t_send(t, "6 FETCH 1:3 FLAGS\r\n"), ==,
                    "* 1 FETCH (FLAGS ())\r\n* 2 FETCH (FLAGS (\\Seen))\r\n* 3 FETCH (FLAGS ())\r\n"
                    "6 OK FETCH completed\r\n");
    g_assert_cmpstr(t_send(t, "7 UID FETCH 3:* RFC822.HEADER\r\n"), ==,
                    "* 3 FETCH (UID 3 RFC822.HEADER {42}\r\nFrom: anne@example.com\r\nSubject: third\r\n\r\n)\r\n"
                    "7 OK UID FETCH completed\r\n");
    g_assert_cmpstr(t_send(t, "8 FETCH 3 (RFC822.TEXT)\r\n"), ==,
                    "* 3 FETCH (RFC822.TEXT {22}\r\nneedle in a haystack\r\n FLAGS (\\Seen))\r\n8 OK FETCH completed\r\n");
    g_assert_cmpstr(t_send(t, "9 FETCH 3 RFC822\r\n"), ==,
                    "* 3 FETCH (RFC822 {64}\r\nFrom: anne@example.com\r\nSubject: third\r\n\r\n"
                    "needle in a haystack\r\n)\r\n9 OK FETCH completed\r\n");
    /* partial past the end, a part the message does not have */
    g_assert_cmpstr(t_send(t, "10 FETCH 3 (BODY.PEEK[]<100.5> BODY.PEEK[4] BODY.PEEK[1])\r\n"), ==,
                    "* 3 FETCH (BODY[]<100> \"\" BODY[4] {0}\r\n BODY[1] {22}\r\nneedle in a haystack\r\n)\r\n"
                    "10 OK FETCH completed\r\n");
    /* UID FETCH of UIDs that do not exist: nothing, OK; "n:*" includes the last message */
    g_assert_cmpstr(t_send(t, "11 UID FETCH 7:9 FLAGS\r\n"), ==, "11 OK UID FETCH completed\r\n");
    g_assert_cmpstr(t_send(t, "12 UID FETCH 9:* UID\r\n"), ==, "* 3 FETCH (UID 3)\r\n12 OK UID FETCH completed\r\n");
    /* the macros */
    const char *r = t_send(t, "13 FETCH 1 FAST\r\n");
    g_assert_true(g_str_has_prefix(r, "* 1 FETCH (FLAGS () INTERNALDATE \""));
    g_assert_true(g_str_has_suffix(r, " +0000\" RFC822.SIZE 152)\r\n13 OK FETCH completed\r\n"));
    r = t_send(t, "14 FETCH 1 ALL\r\n");
    g_assert_true(strstr(r, " RFC822.SIZE 152 ENVELOPE (\"Mon, 30 Nov") != NULL);
    r = t_send(t, "15 FETCH 1 FULL\r\n");
    g_assert_true(strstr(r, "\"<1@example.com>\") BODY (\"text\"") != NULL);
    /* INTERNALDATE is the TimeUUID's time */
    GDateTime *dt = g_date_time_new_from_unix_utc(imap_view_internaldate(t->s->view, 1));
    g_autofree char *date = g_date_time_format(dt, "\"%d-%b-%Y %H:%M:%S +0000\"");
    g_date_time_unref(dt);
    g_autofree char *expect = g_strdup_printf("* 1 FETCH (INTERNALDATE %s)\r\n16 OK FETCH completed\r\n", date);
    g_assert_cmpstr(t_send(t, "16 FETCH 1 INTERNALDATE\r\n"), ==, expect);
    t_free(t);
}

/* ENVELOPE and BODYSTRUCTURE go into the view's meta cache and come from it the next time */
static void
test_fetch_meta_cache(void)
{
    T *t = t_select();
    guint seqs[] = {1, 2, 3};
    GPtrArray *meta = g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref);
    g_assert_true(imap_view_meta_get(t->s->view, seqs, 3, meta, NULL));
    g_assert_null(g_ptr_array_index(meta, 1));
    g_ptr_array_set_size(meta, 0);
    g_autofree char *first = g_strdup(t_send(t, "1 FETCH 1:3 (ENVELOPE BODYSTRUCTURE BODY)\r\n"));
    g_assert_true(imap_view_meta_get(t->s->view, seqs, 3, meta, NULL));
    g_assert_nonnull(g_ptr_array_index(meta, 0));
    g_assert_nonnull(g_ptr_array_index(meta, 2));
    g_ptr_array_unref(meta);
    /* the same answer from the cache, without reading a message */
    store_mem_fail_next(t->store, 0);
    g_autofree char *again = g_strdup(t_send(t, "1 FETCH 1:3 (ENVELOPE BODYSTRUCTURE BODY)\r\n"));
    g_assert_cmpstr(again, ==, first);
    g_assert_true(strstr(first, "* 2 FETCH (ENVELOPE (\"Tue, 1 Dec 2026 09:00:00 +0100\" \"report\"") != NULL);
    t_free(t);
}

static void
test_fetch_bad(void)
{
    T *t = t_select();
    g_assert_cmpstr(t_send(t, "1 FETCH 4 FLAGS\r\n"), ==, "1 BAD invalid message sequence number\r\n");
    g_assert_cmpstr(t_send(t, "2 FETCH 0 FLAGS\r\n"), ==, "2 BAD syntax: FETCH sequence-set items\r\n");
    g_assert_cmpstr(t_send(t, "3 FETCH 1 (FLAGS BOGUS)\r\n"), ==, "3 BAD syntax: FETCH sequence-set items\r\n");
    g_assert_cmpstr(t_send(t, "4 FETCH 1 BODY[HEADER.FIELDS]\r\n"), ==, "4 BAD invalid section [HEADER.FIELDS]\r\n");
    g_assert_cmpstr(t_send(t, "5 FETCH 1 BODY[TEXT\r\n"), ==, "5 BAD syntax: FETCH sequence-set items\r\n");
    g_assert_cmpstr(t_send(t, "6 FETCH 1 BODY[]<1.0>\r\n"), ==, "6 BAD syntax: FETCH sequence-set items\r\n");
    g_assert_cmpstr(t_send(t, "7 FETCH 1:* ()\r\n"), ==, "7 BAD syntax: FETCH sequence-set items\r\n");
    g_assert_cmpstr(t_send(t, "8 FETCH 1\r\n"), ==, "8 BAD syntax: FETCH sequence-set items\r\n");
    g_assert_cmpstr(t_send(t, "9 UID FETCH * BODY.PEEK\r\n"), ==, "9 BAD syntax: UID FETCH sequence-set items\r\n");
    /* a message another session removed: left out, NO [EXPUNGEISSUED] */
    g_assert_true(store_remove(t->store, "pete", "inbox", imap_view_msgid(t->s->view, 2), 1, NULL));
    g_assert_cmpstr(t_send(t, "10 FETCH 1:3 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n"), ==,
                    "* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {18}\r\nSubject: hello\r\n\r\n)\r\n"
                    "* 3 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {18}\r\nSubject: third\r\n\r\n)\r\n"
                    "10 NO [EXPUNGEISSUED] some of the messages no longer exist\r\n");
    /* NOOP then reports it */
    g_assert_cmpstr(t_send(t, "11 NOOP\r\n"), ==, "* 2 EXPUNGE\r\n11 OK NOOP completed\r\n");
    /* the store failing before a message's response: NO [UNAVAILABLE], the session goes on */
    store_mem_fail_next(t->store, 1);
    g_assert_cmpstr(t_send(t, "12 FETCH 1 BODY.PEEK[]\r\n"), ==, "12 NO [UNAVAILABLE] FETCH failed, try again later\r\n");
    g_assert_cmpstr(t_send(t, "13 FETCH 2 ENVELOPE\r\n"), ==,
                    "* 2 FETCH (ENVELOPE (NIL \"third\" ((NIL NIL \"anne\" \"example.com\")) "
                    "((NIL NIL \"anne\" \"example.com\")) ((NIL NIL \"anne\" \"example.com\")) NIL NIL NIL "
                    "NIL NIL))\r\n13 OK FETCH completed\r\n");
    t_free(t);
}

/* a large body goes out in chunks of about the adapter's size, read a part at a time */
static void
test_fetch_large(void)
{
    T *t = t_login(FALSE);
    GString *m = g_string_new("Subject: big\r\n\r\n");
    for (int i = 0; m->len < 3 * 1024 * 1024; i++)
        g_string_append_printf(m, "line %d of a large message, with some text to fill it up\r\n", i);
    t_deliver(t, "inbox", m->str);
    store_mem_set_chunk(t->store, 64 * 1024);
    t_send(t, "s SELECT INBOX\r\n");
    t->chunk = 16 * 1024;
    t->max_more = 0;
    t->more_calls = 0;
    const char *r = t_send(t, "1 FETCH 1 BODY[]\r\n");
    g_autofree char *head = g_strdup_printf("* 1 FETCH (BODY[] {%zu}\r\n", m->len);
    g_assert_true(g_str_has_prefix(r, head));
    g_assert_cmpuint(t->out->len, ==, strlen(head) + m->len + strlen(" FLAGS (\\Seen))\r\n1 OK FETCH completed\r\n"));
    g_assert_true(memcmp(r + strlen(head), m->str, m->len) == 0);
    g_assert_cmpuint(t->max_more, <=, 16 * 1024 + 200);
    g_assert_cmpuint(t->more_calls, >=, m->len / (16 * 1024));
    /* a partial from the middle, across chunk boundaries */
    t->chunk = 1000;
    r = t_send(t, "2 FETCH 1 BODY.PEEK[TEXT]<100000.200000>\r\n");
    g_assert_true(g_str_has_prefix(r, "* 1 FETCH (BODY[TEXT]<100000> {200000}\r\n"));
    gsize hl = strlen("* 1 FETCH (BODY[TEXT]<100000> {200000}\r\n");
    g_assert_true(memcmp(r + hl, m->str + 16 + 100000, 200000) == 0);
    /* the store failing inside a literal: the session closes (no honest way on) */
    store_mem_fail_next(t->store, 0);
    t->chunk = 64 * 1024;
    g_string_truncate(t->out, 0);
    g_assert_false(imap_core.feed(t->s, "3 FETCH 1 BODY.PEEK[]\r\n", 23, PROTO_LINE_OK, t->out));
    g_assert_true(imap_core.more(t->s, t->out, 1000));
    store_mem_fail_next(t->store, 5);
    while (imap_core.more(t->s, t->out, 100000))
        ;
    g_assert_cmpstr(imap_core.ended(t->s), ==, "body-failed");
    g_string_free(m, TRUE);
    t_free(t);
}

static void
test_store(void)
{
    T *t = t_select();
    g_assert_cmpstr(t_send(t, "1 STORE 1 +FLAGS (\\Seen \\Flagged)\r\n"), ==,
                    "* 1 FETCH (FLAGS (\\Seen \\Flagged))\r\n1 OK STORE completed\r\n");
    g_assert_cmpstr(t_send(t, "2 STORE 1:2 FLAGS \\Answered $Important\r\n"), ==,
                    "* 1 FETCH (FLAGS (\\Answered $Important))\r\n"
                    "* 2 FETCH (FLAGS (\\Answered $Important))\r\n2 OK STORE completed\r\n");
    g_assert_cmpstr(t_send(t, "3 UID STORE 2 -FLAGS.SILENT (\\Answered)\r\n"), ==, "3 OK UID STORE completed\r\n");
    g_assert_cmpstr(t_send(t, "4 UID STORE 1:* +FLAGS (\\Deleted \\Recent)\r\n"), ==,
                    "* 1 FETCH (UID 1 FLAGS (\\Answered \\Deleted $Important))\r\n"
                    "* 2 FETCH (UID 2 FLAGS (\\Deleted $Important))\r\n"
                    "* 3 FETCH (UID 3 FLAGS (\\Deleted))\r\n4 OK UID STORE completed\r\n");
    g_assert_cmpstr(t_send(t, "5 STORE 1 +FLAGS (\\Bogus)\r\n"), ==, "5 BAD invalid flag\r\n");
    g_assert_cmpstr(t_send(t, "6 STORE 1 +FLAGZ (\\Seen)\r\n"), ==,
                    "6 BAD syntax: STORE set [+-]FLAGS[.SILENT] (flags)\r\n");
    g_assert_cmpstr(t_send(t, "7 STORE 1 FLAGS (\\Seen\r\n"), ==, "7 BAD syntax: invalid flag list\r\n");
    const char *r = t_send(t, "8 FETCH 1 FLAGS\r\n");
    g_assert_cmpstr(r, ==, "* 1 FETCH (FLAGS (\\Answered \\Deleted $Important))\r\n8 OK FETCH completed\r\n");
    /* the new keyword is in FLAGS at the next SELECT */
    r = t_send(t, "9 SELECT INBOX\r\n");
    g_assert_true(g_str_has_prefix(r, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Important)\r\n"
                                      "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Important \\*)]"));
    t_free(t);
}

static void
test_search(void)
{
    T *t = t_select();
    t_send(t, "0 STORE 2 +FLAGS.SILENT (\\Flagged \\Seen work)\r\n");
    static const struct { const char *cmd, *reply; } cases[] = {
        {"1 SEARCH ALL", "* SEARCH 1 2 3"},
        {"2 SEARCH FLAGGED", "* SEARCH 2"},
        {"3 SEARCH UNSEEN", "* SEARCH 1 3"},
        {"4 SEARCH FROM anne", "* SEARCH 1 3"},
        {"5 SEARCH FROM \"ANNE <\"", "* SEARCH 1"},
        {"6 SEARCH TO pete CC carol", "* SEARCH 2"},
        {"7 SEARCH SUBJECT hello", "* SEARCH 1"},
        {"8 SEARCH BODY needle", "* SEARCH 3"},
        {"9 SEARCH BODY third", "* SEARCH"},
        {"10 SEARCH TEXT third", "* SEARCH 3"},
        {"11 SEARCH HEADER Message-ID <1@", "* SEARCH 1"},
        {"12 SEARCH OR SUBJECT hello SUBJECT third", "* SEARCH 1 3"},
        {"13 SEARCH NOT (FROM anne)", "* SEARCH 2"},
        {"14 SEARCH LARGER 100 SMALLER 200", "* SEARCH 1"},
        {"15 SEARCH 2:*", "* SEARCH 2 3"},
        {"16 SEARCH UID 1,3", "* SEARCH 1 3"},
        {"17 UID SEARCH 1:2 UNFLAGGED", "* SEARCH 1"},
        {"18 SEARCH KEYWORD work", "* SEARCH 2"},
        {"19 SEARCH UNKEYWORD work", "* SEARCH 1 3"},
        {"20 SEARCH SENTSINCE 1-Dec-2026", "* SEARCH 2"},
        {"21 SEARCH SENTBEFORE 1-Dec-2026", "* SEARCH 1"},
        {"22 SEARCH SENTON 30-Nov-2026", "* SEARCH 1"},
        {"23 SEARCH SINCE 1-Jan-2000 BEFORE 1-Jan-2100", "* SEARCH 1 2 3"},
        {"24 SEARCH ON 1-Jan-2000", "* SEARCH"},
        {"25 SEARCH DELETED", "* SEARCH"},
        {"26 SEARCH UNDELETED ANSWERED", "* SEARCH"},
        {"27 SEARCH NEW", "* SEARCH"},
        {"28 SEARCH CHARSET UTF-8 SEEN", "* SEARCH 2"},
        {"29 SEARCH (OR 1 3) (NOT 1)", "* SEARCH 3"},
        {"30 SEARCH RETURN (MIN MAX COUNT) ALL", "* ESEARCH (TAG \"30\") MIN 1 MAX 3 COUNT 3"},
        {"31 UID SEARCH RETURN () UNFLAGGED", "* ESEARCH (TAG \"31\") UID ALL 1,3"},
        {"32 SEARCH RETURN (COUNT) DRAFT", "* ESEARCH (TAG \"32\") COUNT 0"},
        {"33 SEARCH RETURN (ALL) 1:3", "* ESEARCH (TAG \"33\") ALL 1:3"},
    };
    for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *cmd = g_strdup_printf("%s\r\n", cases[i].cmd);
        g_autofree char *tag = g_strndup(cases[i].cmd, strcspn(cases[i].cmd, " "));
        g_autofree char *expect = g_strdup_printf("%s\r\n%s OK %sSEARCH completed\r\n", cases[i].reply,
                                                  tag, strstr(cases[i].cmd, "UID SEARCH") ? "UID " : "");
        g_assert_cmpstr(t_send(t, cmd), ==, expect);
    }
    g_assert_cmpstr(t_send(t, "40 SEARCH CHARSET KOI8-R ALL\r\n"), ==,
                    "40 NO [BADCHARSET (US-ASCII UTF-8)] Unsupported charset\r\n");
    g_assert_cmpstr(t_send(t, "41 SEARCH\r\n"), ==, "41 BAD syntax: SEARCH keys\r\n");
    g_assert_cmpstr(t_send(t, "42 SEARCH BOGUS\r\n"), ==, "42 BAD syntax: SEARCH search keys\r\n");
    g_assert_cmpstr(t_send(t, "43 SEARCH OR SEEN\r\n"), ==, "43 BAD syntax: SEARCH search keys\r\n");
    g_assert_cmpstr(t_send(t, "44 SEARCH (SEEN\r\n"), ==, "44 BAD syntax: SEARCH search keys\r\n");
    g_assert_cmpstr(t_send(t, "45 SEARCH SINCE 31-Feb-2026\r\n"), ==, "45 BAD syntax: SEARCH search keys\r\n");
    g_assert_cmpstr(t_send(t, "46 SEARCH RETURN (SAVE) ALL\r\n"), ==,
                    "46 BAD SEARCH RETURN option SAVE is not supported\r\n");
    /* nesting deeper than the limit is refused, not a stack overflow */
    GString *deep = g_string_new("47 SEARCH ");
    for (int i = 0; i < 2000; i++)
        g_string_append(deep, "NOT ");
    g_string_append(deep, "ALL\r\n");
    g_assert_cmpstr(t_send(t, deep->str), ==, "47 BAD syntax: SEARCH search keys\r\n");
    g_string_free(deep, TRUE);
    t_free(t);
}

static void
test_copy_move_expunge(void)
{
    T *t = t_select();
    g_assert_cmpstr(t_send(t, "1 CREATE Archive\r\n"), ==, "1 OK CREATE completed\r\n");
    g_assert_cmpstr(t_send(t, "2 COPY 1:2 Archive\r\n"), ==, "2 OK COPY completed\r\n");
    g_assert_cmpstr(t_send(t, "3 COPY 1 Nowhere\r\n"), ==, "3 NO [TRYCREATE] Mailbox does not exist\r\n");
    g_assert_cmpstr(t_send(t, "4 STATUS Archive (MESSAGES)\r\n"), ==,
                    "* STATUS Archive (MESSAGES 2)\r\n4 OK STATUS completed\r\n");
    g_assert_cmpstr(t_send(t, "5 UID MOVE 3 Archive\r\n"), ==, "* 3 EXPUNGE\r\n5 OK UID MOVE completed\r\n");
    g_assert_cmpstr(t_send(t, "6 UID COPY 5:7 Archive\r\n"), ==, "6 OK UID COPY completed\r\n");
    g_assert_cmpstr(t_send(t, "7 STORE 1 +FLAGS.SILENT (\\Deleted)\r\n"), ==, "7 OK STORE completed\r\n");
    g_assert_cmpstr(t_send(t, "8 EXPUNGE\r\n"), ==, "* 1 EXPUNGE\r\n8 OK EXPUNGE completed\r\n");
    g_assert_cmpstr(t_send(t, "9 FETCH 1:* UID\r\n"), ==, "* 1 FETCH (UID 2)\r\n9 OK FETCH completed\r\n");
    /* UID EXPUNGE takes only the named messages with \Deleted */
    t_send(t, "10 SELECT Archive\r\n");
    g_assert_cmpuint(imap_view_count(t->s->view), ==, 3);
    g_assert_cmpstr(t_send(t, "11 STORE 1:* +FLAGS.SILENT (\\Deleted)\r\n"), ==, "11 OK STORE completed\r\n");
    g_assert_cmpstr(t_send(t, "12 UID EXPUNGE 2\r\n"), ==, "* 2 EXPUNGE\r\n12 OK UID EXPUNGE completed\r\n");
    g_assert_cmpstr(t_send(t, "13 UNSELECT\r\n"), ==, "13 OK UNSELECT completed\r\n");
    g_assert_cmpstr(t_send(t, "14 STATUS Archive (MESSAGES DELETED)\r\n"), ==,
                    "* STATUS Archive (MESSAGES 2 DELETED 2)\r\n14 OK STATUS completed\r\n");
    /* CLOSE expunges silently */
    t_send(t, "15 SELECT Archive\r\n");
    g_assert_cmpstr(t_send(t, "16 CLOSE\r\n"), ==, "16 OK CLOSE completed\r\n");
    g_assert_cmpint(imap_session_state(t->s), ==, IMAP_STATE_AUTHENTICATED);
    g_assert_cmpstr(t_send(t, "17 STATUS Archive (MESSAGES)\r\n"), ==,
                    "* STATUS Archive (MESSAGES 0)\r\n17 OK STATUS completed\r\n");
    g_assert_cmpstr(t_send(t, "18 EXPUNGE\r\n"), ==, "18 BAD EXPUNGE not allowed now: select a mailbox first\r\n");
    /* EXAMINE + CLOSE expunges nothing; MOVE out of it is refused */
    t_send(t, "19 EXAMINE INBOX\r\n");
    g_assert_cmpstr(t_send(t, "20 MOVE 1 Archive\r\n"), ==, "20 NO [READ-ONLY] Mailbox is read-only\r\n");
    g_assert_cmpstr(t_send(t, "21 COPY 1 Archive\r\n"), ==, "21 OK COPY completed\r\n");
    t_free(t);
}

static void
test_append(void)
{
    T *t = t_login(FALSE);
    static const char msg[] = "Subject: appended\r\n\r\nbody\r\n";
    g_autofree char *l1 = g_strdup_printf("1 APPEND INBOX (\\Seen) {%zu}\r\n", strlen(msg));
    g_assert_cmpstr(t_send(t, l1), ==, "+ Ready for literal data\r\n");
    g_autofree char *l2 = g_strdup_printf("%s\r\n", msg);
    const char *r = t_send(t, l2);
    g_assert_true(g_str_has_prefix(r, "1 OK ") && g_str_has_suffix(r, "APPEND completed\r\n"));
    /* LITERAL+, a date-time, keywords */
    g_autofree char *l3 = g_strdup_printf("2 APPEND outbox (\\Draft $Later) \" 1-Dec-2026 10:00:00 +0100\" {%zu+}\r\n%s\r\n",
                                          strlen(msg), msg);
    r = t_send(t, l3);
    g_assert_true(g_str_has_prefix(r, "2 OK ") && g_str_has_suffix(r, "APPEND completed\r\n"));
    r = t_send(t, "3 SELECT INBOX\r\n");
    g_assert_true(strstr(r, "* 1 EXISTS\r\n") != NULL);
    g_assert_cmpstr(t_send(t, "4 FETCH 1 (FLAGS BODY.PEEK[])\r\n"), ==,
                    "* 1 FETCH (FLAGS (\\Seen) BODY[] {27}\r\nSubject: appended\r\n\r\nbody\r\n)\r\n4 OK FETCH completed\r\n");
    g_assert_cmpstr(t_send(t, "5 STATUS outbox (MESSAGES)\r\n"), ==, "* STATUS outbox (MESSAGES 1)\r\n5 OK STATUS completed\r\n");
    /* refused before the literal: the client sends nothing more */
    g_assert_cmpstr(t_send(t, "6 APPEND Nowhere {5}\r\n"), ==, "6 NO [TRYCREATE] Mailbox does not exist\r\n");
    g_assert_cmpstr(t_send(t, "7 APPEND INBOX {20000000}\r\n"), ==, "7 NO [TOOBIG] Message too large\r\n");
    g_assert_cmpstr(t_send(t, "8 APPEND INBOX (\\Bogus) {5}\r\n"), ==, "8 BAD invalid flag in APPEND\r\n");
    g_assert_cmpstr(t_send(t, "9 APPEND INBOX \"bad date\" {5}\r\n"), ==,
                    "9 BAD syntax: APPEND mailbox [(flags)] [date-time] literal\r\n");
    /* refused after a non-synchronizing literal: read, dropped, answered at the end */
    g_assert_cmpstr(t_send(t, "10 APPEND Nowhere {5+}\r\nhello\r\n"), ==, "10 NO [TRYCREATE] Mailbox does not exist\r\n");
    g_assert_cmpstr(t_send(t, "11 APPEND INBOX {5+}\r\nhello extra\r\n"), ==, "11 BAD APPEND takes one message\r\n");
    g_assert_cmpstr(t_send(t, "12 APPEND INBOX\r\n"), ==, "12 BAD syntax: APPEND mailbox [(flags)] [date-time] literal\r\n");
    g_assert_cmpstr(t_send(t, "13 NOOP\r\n"), ==, "13 OK NOOP completed\r\n");
    g_assert_cmpuint(store_mem_message_count(t->store, "pete", "inbox"), ==, 1);
    /* the store failing during the message: NO at the end, nothing stored */
    store_mem_fail_next(t->store, 0);
    g_assert_cmpstr(t_send(t, "14 APPEND INBOX {10}\r\n"), ==, "+ Ready for literal data\r\n");
    store_mem_fail_next(t->store, 3);
    g_assert_cmpstr(t_send(t, "0123456789\r\n"), ==, "14 NO [UNAVAILABLE] APPEND failed, try again later\r\n");
    store_mem_fail_next(t->store, 0);
    g_assert_cmpuint(store_mem_message_count(t->store, "pete", "inbox"), ==, 1);
    t_free(t);
}

/* APPEND of a large message: its octets go to the store as they come; the command buffer stays
 * small whatever the message's size */
static void
test_append_large(void)
{
    T *t = t_login(FALSE);
    gsize size = 8 * 1024 * 1024 + 17;
    GString *m = g_string_sized_new(size);
    g_string_append(m, "Subject: large\r\n\r\n");
    while (m->len < size)
        g_string_append_c(m, m->len % 64 == 62 ? '\r' : m->len % 64 == 63 ? '\n' : 'a' + m->len % 26);
    g_autofree char *l1 = g_strdup_printf("1 APPEND INBOX {%zu}\r\n", m->len);
    g_assert_cmpstr(t_send(t, l1), ==, "+ Ready for literal data\r\n");
    t->split = 64 * 1024;
    t->max_cmd = 0;
    t_sendn(t, m->str, m->len);
    g_assert_cmpstr(t->out->str, ==, "");
    g_assert_cmpuint(t->max_cmd, <, 100);
    const char *r = t_send(t, "\r\n");
    g_assert_true(g_str_has_suffix(r, "APPEND completed\r\n"));
    t_send(t, "2 SELECT INBOX\r\n");
    StoreMsgId id = *imap_view_msgid(t->s->view, 1);
    GBytes *stored = NULL;
    g_assert_true(store_fetch(t->store, "pete", "inbox", &id, &stored, NULL));
    g_assert_cmpuint(g_bytes_get_size(stored), ==, m->len);
    g_assert_true(memcmp(g_bytes_get_data(stored, NULL), m->str, m->len) == 0);
    g_bytes_unref(stored);
    g_string_free(m, TRUE);
    t_free(t);
}

static void
test_idle(void)
{
    T *t = t_select();
    g_assert_cmpstr(t_send(t, "1 IDLE\r\n"), ==, "+ idling\r\n");
    g_assert_cmpuint(imap_core.tick_ms(t->s), ==, 5000);
    g_string_truncate(t->out, 0);
    imap_core.tick(t->s, t->out);
    g_assert_cmpstr(t->out->str, ==, "");
    t_deliver(t, "inbox", t_msg1);
    g_assert_true(store_remove(t->store, "pete", "inbox", imap_view_msgid(t->s->view, 1), 1, NULL));
    imap_core.tick(t->s, t->out);
    g_assert_cmpstr(t->out->str, ==, "* 1 EXPUNGE\r\n* 3 EXISTS\r\n");
    g_assert_cmpstr(t_send(t, "done\r\n"), ==, "1 OK IDLE terminated\r\n");
    g_assert_cmpuint(imap_core.tick_ms(t->s), ==, 0);
    g_assert_cmpstr(t_send(t, "2 IDLE\r\n"), ==, "+ idling\r\n");
    g_assert_cmpstr(t_send(t, "3 NOOP\r\n"), ==, "2 BAD expected DONE\r\n");
    /* another session's flag change shows at NOOP */
    ImapSession *other = imap_session_new(&t->cfg, t->store, "other");
    GString *o = g_string_new(NULL);
    imap_core.feed(other, "a LOGIN pete secret\r\n", 21, PROTO_LINE_OK, o);
    imap_core.feed(other, "b SELECT INBOX\r\n", 16, PROTO_LINE_OK, o);
    g_string_truncate(o, 0);
    imap_core.feed(other, "c STORE 1 +FLAGS.SILENT (\\Flagged)\r\n", 36, PROTO_LINE_OK, o);
    g_assert_cmpstr(o->str, ==, "c OK STORE completed\r\n");
    imap_core.free(other);
    g_string_free(o, TRUE);
    g_assert_cmpstr(t_send(t, "4 NOOP\r\n"), ==, "* 1 FETCH (UID 2 FLAGS (\\Flagged))\r\n4 OK NOOP completed\r\n");
    t_free(t);
}

static void
test_errors(void)
{
    T *t = t_new(FALSE);
    t->cfg.max_errors = 5;
    t_start(t);
    g_assert_cmpstr(t_send(t, "\r\n"), ==, "* BAD empty command line\r\n");
    g_assert_cmpstr(t_send(t, "+ NOOP\r\n"), ==, "* BAD missing or invalid tag\r\n");
    g_assert_cmpstr(t_send(t, "a\r\n"), ==, "* BAD missing command\r\n");
    g_assert_cmpstr(t_send(t, "a FROB\r\n"), ==, "a BAD unknown command\r\n");
    g_assert_cmpstr(t_send(t, "a UID NOOP\r\n"), ==, "a BAD unknown command\r\n* BYE Too many errors\r\n");
    g_assert_true(t->closed);
    g_assert_cmpstr(imap_core.ended(t->s), ==, "too-many-errors");
    t_free(t);

    /* failed logins count towards the limit, once each */
    t = t_new(FALSE);
    t->cfg.max_errors = 3;
    t_start(t);
    g_assert_cmpstr(t_send(t, "a LOGIN pete x\r\n"), ==, "a NO [AUTHENTICATIONFAILED] Authentication failed\r\n");
    g_assert_cmpstr(t_send(t, "b LOGIN pete y\r\n"), ==, "b NO [AUTHENTICATIONFAILED] Authentication failed\r\n");
    g_assert_cmpstr(t_send(t, "c LOGIN pete z\r\n"), ==,
                    "c NO [AUTHENTICATIONFAILED] Authentication failed\r\n* BYE Too many errors\r\n");
    g_assert_true(t->closed);
    t_free(t);

    t = t_new(FALSE);
    t_start(t);
    /* a line over the limit: one BAD, the session goes on */
    GString *longline = g_string_new("a NOOP ");
    while (longline->len < IMAP_LINE_MAX + 10)
        g_string_append_c(longline, 'x');
    g_string_append(longline, "\r\n");
    g_assert_cmpstr(t_send(t, longline->str), ==, "* BAD [TOOBIG] line too long\r\n");
    g_string_free(longline, TRUE);
    g_assert_cmpstr(t_sendn(t, "a NO\0OP\r\n", 9), ==, "* BAD NUL in command line\r\n");
    /* literals over the limit: refused before (synchronizing) or read and dropped (LITERAL+) */
    g_assert_cmpstr(t_send(t, "b LOGIN {100000}\r\n"), ==, "b BAD [TOOBIG] literal too large\r\n");
    g_assert_cmpuint(imap_core.literal(t->s), ==, 0);
    g_assert_cmpstr(t_send(t, "c LOGIN {99999999999999999999999}\r\n"), ==, "c BAD [TOOBIG] literal too large\r\n");
    GString *big = g_string_new("d LOGIN {70000+}\r\n");
    for (int i = 0; i < 70000; i++)
        g_string_append_c(big, '\n');
    g_string_append(big, " secret\r\n");
    g_assert_cmpstr(t_send(t, big->str), ==, "d BAD [TOOBIG] literal too large\r\n");
    g_string_free(big, TRUE);
    /* a literal inside a quoted string is no literal */
    g_assert_cmpstr(t_send(t, "e LOGIN pete \"{6}\"\r\n"), ==, "e NO [AUTHENTICATIONFAILED] Authentication failed\r\n");
    /* the command with its literals over the limit */
    GString *many = g_string_new("f ID (");
    for (int i = 0; i < 8; i++)
        g_string_append_printf(many, "{40000+}\r\n%*s ", 40000, "");
    g_string_append(many, ")\r\n");
    g_assert_cmpstr(t_send(t, many->str), ==, "f BAD [TOOBIG] command too long\r\n");
    g_string_free(many, TRUE);
    g_assert_cmpstr(t_send(t, "g NOOP\r\n"), ==, "g OK NOOP completed\r\n");
    /* the autologout */
    g_string_truncate(t->out, 0);
    imap_core.timeout(t->s, t->out);
    g_assert_cmpstr(t->out->str, ==, "* BYE Autologout; idle for too long\r\n");
    g_assert_cmpstr(imap_core.ended(t->s), ==, "idle-timeout");
    GString *head = g_string_new(NULL), *tail = g_string_new(NULL);
    imap_core.log_fields(t->s, head, tail);
    g_assert_cmpstr(head->str, ==, "user=- mailbox=- state=LOGOUT");
    g_string_free(head, TRUE);
    g_string_free(tail, TRUE);
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
    g_test_add_func("/imap/fetch", test_fetch);
    g_test_add_func("/imap/fetch-meta-cache", test_fetch_meta_cache);
    g_test_add_func("/imap/fetch-bad", test_fetch_bad);
    g_test_add_func("/imap/fetch-large", test_fetch_large);
    g_test_add_func("/imap/store", test_store);
    g_test_add_func("/imap/search", test_search);
    g_test_add_func("/imap/copy-move-expunge", test_copy_move_expunge);
    g_test_add_func("/imap/append", test_append);
    g_test_add_func("/imap/append-large", test_append_large);
    g_test_add_func("/imap/idle", test_idle);
    g_test_add_func("/imap/errors", test_errors);
    int rc = g_test_run();
    g_free(t_hash);
    return rc;
}
