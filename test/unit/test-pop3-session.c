/*
 * test-pop3-session.c - the POP3 core (src/pop3/session.c, msgout.c) against the in-memory store.
 *
 * The store is wrapped in a proxy that counts what the session asks for (index pages, fetches) and
 * fails chosen operations, so each RFC 1939 rule and each store failure has a test of its own.
 */
#include <string.h>

#include "net/adapter.h"
#include "pop3/msgout.h"
#include "pop3/session.h"
#include "store/store.h"
#include "support/store_mem.h"
#include "util/password.h"

/* ---- a proxy store: counts calls, fails on demand ------------------------------------------- */

typedef enum {
    OP_NONE,
    OP_MAILBOXES,
    OP_PASSWORD,
    OP_INDEX,
    OP_FETCH,
    OP_READ,      /* a chunk of a message being read (after RETR's +OK) */
    OP_REMOVE,
} ProxyOp;

typedef struct {
    Store base;
    Store *inner;
    guint index_pages;
    guint fetches;
    guint removes;
    ProxyOp fail_op;
    StoreErrorCode fail_code;
} Proxy;

/* proxy_fails - whether OP should fail now (once), setting ERROR */
static gboolean
proxy_fails(Proxy *p, ProxyOp op, GError **error)
{
    if (p->fail_op != op)
        return FALSE;
    p->fail_op = OP_NONE;
    g_set_error(error, STORE_ERROR, p->fail_code, "injected failure");
    return TRUE;
}

#define INNER(s) (((Proxy *)(s))->inner)

static gboolean
px_user_exists(Store *s, const char *u, gboolean *e, GError **err)
{
    return INNER(s)->ops->user_exists(INNER(s), u, e, err);
}
static gboolean
px_user_add(Store *s, const char *u, GError **err)
{
    return INNER(s)->ops->user_add(INNER(s), u, err);
}
static gboolean
px_user_del(Store *s, const char *u, GError **err)
{
    return INNER(s)->ops->user_del(INNER(s), u, err);
}
static gboolean
px_users_list(Store *s, GPtrArray *out, GError **err)
{
    return INNER(s)->ops->users_list(INNER(s), out, err);
}
static gboolean
px_mailbox_add(Store *s, const char *u, const char *m, GError **err)
{
    return INNER(s)->ops->mailbox_add(INNER(s), u, m, err);
}
static gboolean
px_mailboxes_list(Store *s, const char *u, GPtrArray *out, GError **err)
{
    return !proxy_fails((Proxy *)s, OP_MAILBOXES, err) &&
           INNER(s)->ops->mailboxes_list(INNER(s), u, out, err);
}
/* The writer and reader belong to the inner store: its functions see it as their store. */
static StoreWriter *
px_writer_begin(Store *s, const StoreMsgId *id)
{
    StoreWriter *w = INNER(s)->ops->writer_begin(INNER(s), id);
    w->store = INNER(s);
    return w;
}
static gboolean
px_writer_write(StoreWriter *w, const guint8 *data, gsize len, GError **err)
{
    Store *outer = w->store;
    w->store = ((Proxy *)outer)->inner;
    gboolean ok = w->store->ops->writer_write(w, data, len, err);
    w->store = outer;
    return ok;
}
static gboolean
px_writer_commit(StoreWriter *w, const StoreTarget *t, guint n, GError **err)
{
    Store *outer = w->store;
    w->store = ((Proxy *)outer)->inner;
    gboolean ok = w->store->ops->writer_commit(w, t, n, err);
    w->store = outer;
    return ok;
}
static void
px_writer_free(StoreWriter *w)
{
    w->store = ((Proxy *)w->store)->inner;
    w->store->ops->writer_free(w);
}
static gboolean
px_index_page(Store *s, const char *u, const char *m, const StoreMsgId *after, guint max,
              GArray *out, GError **err)
{
    ((Proxy *)s)->index_pages++;
    return !proxy_fails((Proxy *)s, OP_INDEX, err) &&
           INNER(s)->ops->index_page(INNER(s), u, m, after, max, out, err);
}
static gboolean
px_reader_open(Store *s, const char *u, const char *m, const StoreMsgId *id, StoreReader **r,
               GError **err)
{
    ((Proxy *)s)->fetches++;
    return !proxy_fails((Proxy *)s, OP_FETCH, err) &&
           INNER(s)->ops->reader_open(INNER(s), u, m, id, r, err);
}
static gboolean
px_reader_next(StoreReader *r, GBytes **chunk, GError **err)
{
    Store *outer = r->store;
    if (proxy_fails((Proxy *)outer, OP_READ, err))
        return FALSE;
    r->store = ((Proxy *)outer)->inner;
    gboolean ok = r->store->ops->reader_next(r, chunk, err);
    r->store = outer;
    return ok;
}
static void
px_reader_free(StoreReader *r)
{
    r->store = ((Proxy *)r->store)->inner;
    r->store->ops->reader_free(r);
}
static gboolean
px_remove(Store *s, const char *u, const char *m, const StoreMsgId *ids, guint n, GError **err)
{
    ((Proxy *)s)->removes++;
    return !proxy_fails((Proxy *)s, OP_REMOVE, err) &&
           INNER(s)->ops->remove(INNER(s), u, m, ids, n, err);
}
static gboolean
px_password_set(Store *s, const char *u, const char *h, GError **err)
{
    return INNER(s)->ops->password_set(INNER(s), u, h, err);
}
static gboolean
px_password_get(Store *s, const char *u, char **h, GError **err)
{
    return !proxy_fails((Proxy *)s, OP_PASSWORD, err) &&
           INNER(s)->ops->password_get(INNER(s), u, h, err);
}
static void
px_destroy(Store *s)
{
    store_free(&INNER(s));
    g_free(s);
}

static const StoreOps proxy_ops = {
    .user_exists = px_user_exists,
    .user_add = px_user_add,
    .user_del = px_user_del,
    .users_list = px_users_list,
    .mailbox_add = px_mailbox_add,
    .mailboxes_list = px_mailboxes_list,
    .writer_begin = px_writer_begin,
    .writer_write = px_writer_write,
    .writer_commit = px_writer_commit,
    .writer_free = px_writer_free,
    .index_page = px_index_page,
    .reader_open = px_reader_open,
    .reader_next = px_reader_next,
    .reader_free = px_reader_free,
    .remove = px_remove,
    .password_set = px_password_set,
    .password_get = px_password_get,
    .destroy = px_destroy,
};

/* ---- fixture -------------------------------------------------------------------------------- */

#define DELAY_MS 1000

typedef struct {
    Store *store;
    Proxy *proxy;
    Pop3SessionConfig cfg;
    Pop3Session *s;
    GString *out;
    guint delay;       /* from the last command */
    gboolean closed;
    gsize chunk;       /* how much pop3_core.more may give at a time */
} Fx;

static const char *hash_secret;   /* "secret", hashed once with a low cost */

static StoreMsgId
deliver_to(Fx *f, const char *user, const char *mailbox, const char *msg, gsize len)
{
    StoreTarget t = {user, mailbox};
    StoreMsgId id;
    store_msgid_new(&id);
    g_assert_true(store_deliver(f->store, &id, &t, 1, (const guint8 *)msg, len, NULL));
    return id;
}

static StoreMsgId
deliver(Fx *f, const char *msg)
{
    return deliver_to(f, "pete", "inbox", msg, strlen(msg));
}

static void
fx_setup(Fx *f, gconstpointer data)
{
    (void)data;
    Proxy *p = g_new0(Proxy, 1);
    p->base.ops = &proxy_ops;
    p->inner = store_mem_new();
    f->proxy = p;
    f->store = &p->base;
    g_assert_true(store_user_add(f->store, "pete", NULL));
    g_assert_true(store_password_set(f->store, "pete", hash_secret, NULL));
    g_assert_true(store_user_add(f->store, "anne", NULL));   /* a user without a password */
    f->cfg = (Pop3SessionConfig){
        .batch_size = 3, .mailbox_delimiter = '|', .login_delay_ms = DELAY_MS, .max_errors = 5,
        .plaintext_auth = TRUE,
    };
    f->out = g_string_new(NULL);
    f->chunk = 7;   /* small, so every multi-line reply is produced in many pieces */
}

static void
fx_teardown(Fx *f, gconstpointer data)
{
    (void)data;
    pop3_session_free(&f->s);
    g_string_free(f->out, TRUE);
    store_free(&f->store);
}

/* fx_open - a new session and its greeting */
static const char *
fx_open(Fx *f)
{
    pop3_session_free(&f->s);
    f->s = pop3_session_new(&f->cfg, f->store, "test");
    f->closed = FALSE;
    g_string_truncate(f->out, 0);
    pop3_core.greeting(f->s, f->out);
    return f->out->str;
}

/* say - one line (CRLF added) and the whole reply, drained as the adapter would */
static const char *
say_len(Fx *f, const char *line, gsize len, ProtoLine status)
{
    g_string_truncate(f->out, 0);
    f->closed = pop3_core.feed(f->s, line, len, status, f->out);
    f->delay = pop3_core.take_delay_ms(f->s);
    g_assert_cmpuint(pop3_core.take_delay_ms(f->s), ==, 0);
    gsize before = f->out->len;
    while (pop3_core.more(f->s, f->out, f->chunk)) {
        g_assert_cmpuint(f->out->len - before, <=, f->chunk + 5);
        before = f->out->len;
    }
    return f->out->str;
}

static const char *
say(Fx *f, const char *line)
{
    g_autofree char *l = g_strconcat(line, "\r\n", NULL);
    return say_len(f, l, strlen(l), PROTO_LINE_OK);
}

static void
login(Fx *f)
{
    fx_open(f);
    g_assert_cmpstr(say(f, "USER pete"), ==, "+OK send PASS\r\n");
    g_assert_true(g_str_has_prefix(say(f, "PASS secret"), "+OK maildrop has "));
    g_assert_cmpuint(f->delay, ==, 0);
}

static guint
index_len(Fx *f, const char *user, const char *mailbox)
{
    g_autoptr(GArray) a = g_array_new(FALSE, FALSE, sizeof(StoreIndexEntry));
    g_assert_true(store_index_page(f->store, user, mailbox, NULL, 100000, a, NULL));
    return a->len;
}

/* ---- AUTHORIZATION ---------------------------------------------------------------------------- */

static void
test_greeting_is_ok(Fx *f, gconstpointer d)
{
    (void)d;
    g_assert_cmpstr(fx_open(f), ==, "+OK CassMail POP3 server ready\r\n");
}

static void
test_transaction_commands_are_refused_before_login(Fx *f, gconstpointer d)
{
    (void)d;
    f->cfg.max_errors = 100;
    fx_open(f);
    const char *cmds[] = {"STAT", "LIST", "LIST 1", "UIDL", "RETR 1", "TOP 1 1", "DELE 1", "RSET",
                          "NOOP"};
    for (gsize i = 0; i < G_N_ELEMENTS(cmds); i++)
        g_assert_cmpstr(say(f, cmds[i]), ==, "-ERR command not valid in this state\r\n");
    g_assert_cmpstr(say(f, "XYZZY"), ==, "-ERR unknown command\r\n");
    g_assert_cmpstr(say(f, "APOP pete 0123456789abcdef0123456789abcdef"), ==,
                    "-ERR unknown command\r\n");
    g_assert_false(f->closed);
    g_assert_cmpuint(f->proxy->fetches + f->proxy->index_pages, ==, 0);
}

static void
test_pass_needs_user_first(Fx *f, gconstpointer d)
{
    (void)d;
    fx_open(f);
    g_assert_cmpstr(say(f, "PASS secret"), ==, "-ERR give USER first\r\n");
    g_assert_cmpstr(say(f, "USER"), ==, "-ERR syntax: USER name\r\n");
    g_assert_cmpstr(say(f, "USER pete"), ==, "+OK send PASS\r\n");
    g_assert_cmpstr(say(f, "PASS"), ==, "-ERR syntax: PASS password\r\n");
}

static void
test_login_lists_the_inbox(Fx *f, gconstpointer d)
{
    (void)d;
    deliver(f, "Subject: a\r\n\r\nhello\r\n");          /* 21 octets */
    deliver(f, "Subject: b\r\n\r\nhello again\r\n");    /* 27 octets */
    fx_open(f);
    say(f, "USER pete");
    g_assert_cmpstr(say(f, "PASS secret"), ==, "+OK maildrop has 2 messages (48 octets)\r\n");
    g_assert_cmpstr(say(f, "STAT"), ==, "+OK 2 48\r\n");
    g_assert_cmpuint(f->proxy->fetches, ==, 0);
}

static void
test_user_name_is_case_insensitive_and_commands_too(Fx *f, gconstpointer d)
{
    (void)d;
    fx_open(f);
    g_assert_cmpstr(say(f, "user PeTe"), ==, "+OK send PASS\r\n");
    g_assert_cmpstr(say(f, "pass secret"), ==, "+OK maildrop has 0 messages (0 octets)\r\n");
    g_assert_cmpstr(say(f, "stat"), ==, "+OK 0 0\r\n");
}

static void
test_password_keeps_its_spaces(Fx *f, gconstpointer d)
{
    (void)d;
    g_autofree char *h = password_hash_iterations(" two words ", 1000, NULL);
    g_assert_true(store_password_set(f->store, "anne", h, NULL));
    fx_open(f);
    say(f, "USER anne");
    g_assert_true(g_str_has_prefix(say(f, "PASS  two words "), "+OK"));
}

static void
test_every_failed_login_gives_the_same_err_after_the_delay(Fx *f, gconstpointer d)
{
    (void)d;
    const char *tries[][2] = {
        {"USER pete", "PASS wrong"},          /* wrong password */
        {"USER nobody", "PASS secret"},       /* unknown user */
        {"USER pete|nobox", "PASS secret"},   /* unknown mailbox */
        {"USER anne", "PASS secret"},         /* user without a password */
        {"USER p:te", "PASS secret"},         /* a name the store never holds */
        {"USER pete|", "PASS secret"},        /* empty mailbox name */
    };
    f->cfg.max_errors = 100;
    fx_open(f);
    for (gsize i = 0; i < G_N_ELEMENTS(tries); i++) {
        g_assert_cmpstr(say(f, tries[i][0]), ==, "+OK send PASS\r\n");
        g_assert_cmpstr(say(f, tries[i][1]), ==, "-ERR [AUTH] Invalid login\r\n");
        g_assert_cmpuint(f->delay, ==, DELAY_MS);
        /* A failed PASS forgets the user: back to the start of AUTHORIZATION. */
        g_assert_cmpstr(say(f, "PASS secret"), ==, "-ERR give USER first\r\n");
        g_assert_cmpuint(f->delay, ==, 0);
    }
    Pop3SessionStats st;
    pop3_session_stats(f->s, &st);
    g_assert_cmpuint(st.failed_logins, ==, G_N_ELEMENTS(tries));
    g_assert_null(st.user);
}

static void
test_outbox_is_selected_with_the_delimiter(Fx *f, gconstpointer d)
{
    (void)d;
    deliver(f, "Subject: in\r\n\r\nin\r\n");
    deliver_to(f, "pete", "outbox", "Subject: out\r\n\r\nout\r\n", 21);
    fx_open(f);
    say(f, "USER Pete|OUTBOX");
    g_assert_cmpstr(say(f, "PASS secret"), ==, "+OK maildrop has 1 messages (21 octets)\r\n");
    g_assert_cmpstr(say(f, "RETR 1"), ==, "+OK 21 octets\r\nSubject: out\r\n\r\nout\r\n.\r\n");
    Pop3SessionStats st;
    pop3_session_stats(f->s, &st);
    g_assert_cmpstr(st.user, ==, "pete");
    g_assert_cmpstr(st.mailbox, ==, "outbox");
}

static void
test_delimiter_comes_from_the_configuration(Fx *f, gconstpointer d)
{
    (void)d;
    deliver_to(f, "pete", "outbox", "x\r\n", 3);
    f->cfg.mailbox_delimiter = '#';
    fx_open(f);
    say(f, "USER pete#outbox");
    g_assert_cmpstr(say(f, "PASS secret"), ==, "+OK maildrop has 1 messages (3 octets)\r\n");
    fx_open(f);
    say(f, "USER pete|outbox");   /* now just a name that does not exist */
    g_assert_cmpstr(say(f, "PASS secret"), ==, "-ERR [AUTH] Invalid login\r\n");
}

static void
test_store_failure_at_login_is_temporary(Fx *f, gconstpointer d)
{
    (void)d;
    ProxyOp ops[] = {OP_PASSWORD, OP_MAILBOXES, OP_INDEX};
    for (gsize i = 0; i < G_N_ELEMENTS(ops); i++) {
        fx_open(f);
        say(f, "USER pete");
        f->proxy->fail_op = ops[i];
        f->proxy->fail_code = STORE_ERROR_TEMPORARY;
        const char *r = say(f, "PASS secret");
        g_assert_true(g_str_has_prefix(r, "-ERR [SYS/TEMP] "));
        g_assert_cmpuint(f->delay, ==, 0);
        g_assert_cmpstr(say(f, "STAT"), ==, "-ERR command not valid in this state\r\n");
        /* and a second try works */
        say(f, "USER pete");
        g_assert_true(g_str_has_prefix(say(f, "PASS secret"), "+OK"));
    }
}

static void
test_capa_in_both_states(Fx *f, gconstpointer d)
{
    (void)d;
    const char *capa = "+OK Capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\nRESP-CODES\r\n"
                       "AUTH-RESP-CODE\r\nPIPELINING\r\nEXPIRE NEVER\r\nIMPLEMENTATION CassMail\r\n"
                       ".\r\n";
    fx_open(f);
    g_assert_cmpstr(say(f, "CAPA"), ==, capa);
    login(f);
    g_assert_cmpstr(say(f, "CAPA"), ==, capa);
    g_assert_cmpstr(say(f, "CAPA x"), ==, "-ERR syntax: CAPA\r\n");
}

static void
test_without_plaintext_auth_user_is_neither_offered_nor_accepted(Fx *f, gconstpointer d)
{
    (void)d;
    f->cfg.plaintext_auth = FALSE;
    fx_open(f);
    g_assert_null(strstr(say(f, "CAPA"), "USER\r\n"));
    g_assert_true(g_str_has_prefix(say(f, "USER pete"), "-ERR [AUTH] "));
    g_assert_cmpstr(say(f, "PASS secret"), ==, "-ERR give USER first\r\n");
}

static void
test_quit_before_login_closes(Fx *f, gconstpointer d)
{
    (void)d;
    fx_open(f);
    g_assert_cmpstr(say(f, "QUIT"), ==, "+OK CassMail POP3 server signing off\r\n");
    g_assert_true(f->closed);
    g_assert_true(pop3_core.feed(f->s, "NOOP", 4, PROTO_LINE_OK, f->out));
}

/* ---- TRANSACTION ------------------------------------------------------------------------------ */

static void
test_list_and_uidl_come_from_the_index_only(Fx *f, gconstpointer d)
{
    (void)d;
    StoreMsgId ids[5];
    char uid[5][STORE_MSGID_TEXT_LEN];
    for (int i = 0; i < 5; i++) {
        g_autofree char *m = g_strdup_printf("Subject: %d\r\n\r\n%.*s\r\n", i, i, "xxxxx");
        ids[i] = deliver(f, m);
        store_msgid_to_text(&ids[i], uid[i]);
    }
    login(f);   /* 5 messages, batch_size 3: two index pages */
    g_assert_cmpuint(f->proxy->index_pages, ==, 2);
    g_assert_cmpstr(say(f, "LIST"), ==,
                    "+OK 5 messages (90 octets)\r\n1 16\r\n2 17\r\n3 18\r\n4 19\r\n5 20\r\n.\r\n");
    g_assert_cmpstr(say(f, "LIST 3"), ==, "+OK 3 18\r\n");
    g_autofree char *want = g_strdup_printf("+OK unique-id listing follows\r\n1 %s\r\n2 %s\r\n"
                                            "3 %s\r\n4 %s\r\n5 %s\r\n.\r\n",
                                            uid[0], uid[1], uid[2], uid[3], uid[4]);
    g_assert_cmpstr(say(f, "UIDL"), ==, want);
    g_autofree char *one = g_strdup_printf("+OK 4 %s\r\n", uid[3]);
    g_assert_cmpstr(say(f, "UIDL 4"), ==, one);
    g_assert_cmpstr(say(f, "STAT"), ==, "+OK 5 90\r\n");
    g_assert_cmpuint(f->proxy->fetches, ==, 0);
    g_assert_cmpuint(f->proxy->index_pages, ==, 2);
}

static void
test_a_full_last_page_is_followed_by_an_empty_one(Fx *f, gconstpointer d)
{
    (void)d;
    for (int i = 0; i < 6; i++)
        deliver(f, "x\r\n");
    login(f);
    g_assert_cmpuint(f->proxy->index_pages, ==, 3);   /* 3 + 3 + 0 */
    g_assert_cmpstr(say(f, "STAT"), ==, "+OK 6 18\r\n");
}

static void
test_message_numbers_are_checked(Fx *f, gconstpointer d)
{
    (void)d;
    deliver(f, "x\r\n");
    f->cfg.max_errors = 100;
    login(f);
    const char *none = "-ERR no such message, only 1 messages in maildrop\r\n";
    g_assert_cmpstr(say(f, "LIST 2"), ==, none);
    g_assert_cmpstr(say(f, "LIST 0"), ==, none);
    g_assert_cmpstr(say(f, "RETR 999999999"), ==, none);
    g_assert_cmpstr(say(f, "UIDL 2"), ==, none);
    g_assert_cmpstr(say(f, "DELE 2"), ==, none);
    g_assert_cmpstr(say(f, "TOP 2 0"), ==, none);
    g_assert_cmpstr(say(f, "LIST x"), ==, "-ERR invalid message number \"x\"\r\n");
    g_assert_cmpstr(say(f, "LIST -1"), ==, "-ERR invalid message number \"-1\"\r\n");
    g_assert_cmpstr(say(f, "LIST 1234567890"), ==, "-ERR invalid message number \"1234567890\"\r\n");
    g_assert_cmpstr(say(f, "RETR"), ==, "-ERR syntax: RETR msg\r\n");
    g_assert_cmpstr(say(f, "LIST 1 2"), ==, "-ERR syntax: LIST [msg]\r\n");
    g_assert_cmpstr(say(f, "TOP 1"), ==, "-ERR syntax: TOP msg lines\r\n");
    g_assert_cmpstr(say(f, "TOP 1 x"), ==, "-ERR invalid number of lines \"x\"\r\n");
    g_assert_cmpstr(say(f, "USER pete"), ==, "-ERR command not valid in this state\r\n");
    g_assert_cmpstr(say(f, "PASS secret"), ==, "-ERR command not valid in this state\r\n");
    g_assert_cmpstr(say(f, "NOOP"), ==, "+OK NOOP\r\n");
    g_assert_cmpuint(f->proxy->fetches, ==, 0);
}

static void
test_retr_stuffs_dots_and_terminates(Fx *f, gconstpointer d)
{
    (void)d;
    const char *msg = "Subject: dots\r\n\r\n.\r\n..two\r\nmid.dle\r\n.\r\n";
    deliver(f, msg);
    login(f);
    g_autofree char *want = g_strdup_printf("+OK %zu octets\r\nSubject: dots\r\n\r\n..\r\n...two\r\n"
                                            "mid.dle\r\n..\r\n.\r\n", strlen(msg));
    g_assert_cmpstr(say(f, "RETR 1"), ==, want);
    g_assert_cmpuint(f->proxy->fetches, ==, 1);
    /* Every chunk size gives the same octets. */
    gsize sizes[] = {1, 2, 3, 64, 100000};
    for (gsize i = 0; i < G_N_ELEMENTS(sizes); i++) {
        f->chunk = sizes[i];
        g_assert_cmpstr(say(f, "RETR 1"), ==, want);
    }
    Pop3SessionStats st;
    pop3_session_stats(f->s, &st);
    g_assert_cmpuint(st.retrieved, ==, 1 + G_N_ELEMENTS(sizes));
}

static void
test_retr_adds_the_missing_final_crlf(Fx *f, gconstpointer d)
{
    (void)d;
    deliver(f, "Subject: x\r\n\r\nno newline at the end");
    deliver(f, ".starts with a dot");
    deliver_to(f, "pete", "inbox", "", 0);
    login(f);
    g_assert_cmpstr(say(f, "RETR 1"), ==,
                    "+OK 35 octets\r\nSubject: x\r\n\r\nno newline at the end\r\n.\r\n");
    g_assert_cmpstr(say(f, "RETR 2"), ==, "+OK 18 octets\r\n..starts with a dot\r\n.\r\n");
    g_assert_cmpstr(say(f, "RETR 3"), ==, "+OK 0 octets\r\n.\r\n");
}

static void
test_retr_of_a_large_message_streams_in_bounded_chunks(Fx *f, gconstpointer d)
{
    (void)d;
    GString *m = g_string_new("Subject: big\r\n\r\n");
    while (m->len < 2 * 1024 * 1024)
        g_string_append(m, ".a line that starts with a dot, seventy-odd octets long, over and over\r\n");
    deliver_to(f, "pete", "inbox", m->str, m->len);
    login(f);
    g_string_truncate(f->out, 0);
    g_assert_false(pop3_core.feed(f->s, "RETR 1\r\n", 8, PROTO_LINE_OK, f->out));
    g_assert_true(g_str_has_prefix(f->out->str, "+OK "));
    gsize total = 0, chunks = 0;
    gboolean more;
    do {
        g_string_truncate(f->out, 0);
        more = pop3_core.more(f->s, f->out, 65536);
        g_assert_cmpuint(f->out->len, <=, 65536 + 5);
        total += f->out->len;
        chunks++;
    } while (more);
    gsize lines = (m->len - 16) / 72;
    g_assert_cmpuint(total, ==, m->len + lines + 3);   /* one dot per stuffed line, then .CRLF */
    g_assert_cmpuint(chunks, >, 30);
    g_string_free(m, TRUE);
}

static void
test_top_sends_headers_blank_line_and_n_lines(Fx *f, gconstpointer d)
{
    (void)d;
    deliver(f, "From: a\r\nSubject: t\r\n\r\nline 1\r\n.line 2\r\nline 3\r\n");
    deliver(f, "From: a\r\nSubject: no body\r\n");
    deliver(f, "From: a\r\n\r\nlast line without CRLF");
    login(f);
    g_assert_cmpstr(say(f, "TOP 1 0"), ==,
                    "+OK top of message 1 follows\r\nFrom: a\r\nSubject: t\r\n\r\n.\r\n");
    g_assert_cmpstr(say(f, "TOP 1 2"), ==,
                    "+OK top of message 1 follows\r\nFrom: a\r\nSubject: t\r\n\r\nline 1\r\n"
                    "..line 2\r\n.\r\n");
    g_assert_cmpstr(say(f, "TOP 1 100"), ==,
                    "+OK top of message 1 follows\r\nFrom: a\r\nSubject: t\r\n\r\nline 1\r\n"
                    "..line 2\r\nline 3\r\n.\r\n");
    g_assert_cmpstr(say(f, "TOP 2 5"), ==,
                    "+OK top of message 2 follows\r\nFrom: a\r\nSubject: no body\r\n.\r\n");
    g_assert_cmpstr(say(f, "TOP 3 1"), ==,
                    "+OK top of message 3 follows\r\nFrom: a\r\n\r\nlast line without CRLF\r\n.\r\n");
    Pop3SessionStats st;
    pop3_session_stats(f->s, &st);
    g_assert_cmpuint(st.retrieved, ==, 0);   /* TOP is not a retrieval */
}

/* client_lines - what a client that ends lines at TERMINATORS ("\r\n": CRLF only; "\n": LF;
 * "\r\n" + bare CR too when CR_TOO) sees of a multi-line response OUT: the lines after the
 * status line up to the first lone ".", unstuffed; NULL when it never finds that end */
static GPtrArray *
client_lines(const char *out, gsize len, const char *mode)
{
    GPtrArray *lines = g_ptr_array_new_with_free_func(g_free);
    gsize pos = 0;
    gboolean first = TRUE;
    while (pos < len) {
        gsize end = pos, next;
        if (strcmp(mode, "crlf") == 0) {
            while (end + 1 < len && !(out[end] == '\r' && out[end + 1] == '\n'))
                end++;
            if (end + 1 >= len)
                break;
            next = end + 2;
        } else {
            /* "lf": a line ends at LF (a CR before it dropped); "cr": at CR, LF or CRLF */
            while (end < len && out[end] != '\n' && !(mode[0] == 'c' && out[end] == '\r'))
                end++;
            if (end >= len)
                break;
            next = end + 1;
            if (out[end] == '\r' && next < len && out[next] == '\n')
                next++;
            else if (out[end] == '\n' && end > pos && out[end - 1] == '\r')
                end--;
        }
        g_autofree char *line = g_strndup(out + pos, end - pos);
        pos = next;
        if (first) {   /* the status line */
            first = FALSE;
            continue;
        }
        if (strcmp(line, ".") == 0)
            return lines;
        g_ptr_array_add(lines, g_strdup(line[0] == '.' ? line + 1 : line));
    }
    g_ptr_array_unref(lines);
    return NULL;
}

/* assert_clients_agree - CRLF-only, LF and CR-as-well clients all see exactly WANT (lines, NULL
 * terminated) in OUT */
static void
assert_clients_agree(const char *out, const char *const *want)
{
    static const char *const modes[] = {"crlf", "lf", "cr"};
    for (guint i = 0; i < G_N_ELEMENTS(modes); i++) {
        GPtrArray *got = client_lines(out, strlen(out), modes[i]);
        g_assert_nonnull(got);
        g_ptr_array_add(got, NULL);
        if (!g_strv_equal((const char *const *)got->pdata, want)) {
            g_autofree char *esc = g_strescape(out, NULL);
            g_autofree char *msg = g_strdup_printf("a %s client sees other lines in \"%s\"", modes[i], esc);
            g_assertion_message(G_LOG_DOMAIN, __FILE__, __LINE__, G_STRFUNC, msg);
        }
        g_ptr_array_unref(got);
    }
}

static void
test_retr_of_bare_cr_and_lf_is_crlf_clean(Fx *f, gconstpointer d)
{
    (void)d;
    /* Messages an older version may have stored: bare CR and bare LF, with "." after them. Sent
     * as stored, "x\r.\r\n" would end the response early for a client that ends lines at CR. */
    deliver(f, "Subject: old\r\n\r\nx\r.\r\nMAIL FROM:<ceo@example.com>\r\n");
    deliver(f, "a\n.\nb\n.\r\nc\r\n.\rd\r\n.\ne");
    deliver(f, "double\r\r\n.\r\r\n..\r");
    deliver(f, "Subject: clean\r\n\r\n.\r\n..\r\nend\r\n");
    login(f);
    const char *const want1[] = {"Subject: old", "", "x", ".", "MAIL FROM:<ceo@example.com>", NULL};
    const char *const want2[] = {"a", ".", "b", ".", "c", ".", "d", ".", "e", NULL};
    const char *const want3[] = {"double", "", ".", "", "..", NULL};
    const char *const want4[] = {"Subject: clean", "", ".", "..", "end", NULL};
    const char *const *wants[] = {want1, want2, want3, want4};
    gsize sizes[] = {1, 2, 3, 7, 100000};
    for (guint n = 0; n < G_N_ELEMENTS(wants); n++) {
        g_autofree char *cmd = g_strdup_printf("RETR %u", n + 1);
        g_autofree char *first = NULL;
        for (gsize i = 0; i < G_N_ELEMENTS(sizes); i++) {
            f->chunk = sizes[i];
            const char *out = say(f, cmd);
            g_assert_true(g_str_has_prefix(out, "+OK "));
            /* nothing but CRLF line ends; the same octets for every chunk size */
            const char *body = strstr(out, "\r\n") + 2;
            for (const char *p = body; *p; p++)
                g_assert_true(*p == '\r' ? p[1] == '\n' : *p != '\n' || p[-1] == '\r');
            if (!first)
                first = g_strdup(out);
            g_assert_cmpstr(out, ==, first);
            assert_clients_agree(out, wants[n]);
        }
    }
    /* a message stored CRLF-clean goes out byte for byte, stuffing aside */
    f->chunk = 7;
    g_assert_cmpstr(say(f, "RETR 4"), ==,
                    "+OK 30 octets\r\nSubject: clean\r\n\r\n..\r\n...\r\nend\r\n.\r\n");
    g_assert_cmpstr(say(f, "RETR 1"), ==,
                    "+OK 50 octets\r\nSubject: old\r\n\r\nx\r\n..\r\nMAIL FROM:<ceo@example.com>\r\n.\r\n");
}

static void
test_top_counts_bare_cr_and_lf_as_line_ends(Fx *f, gconstpointer d)
{
    (void)d;
    deliver(f, "A: 1\rB: 2\n\rx\r.\r\n.\ny\n");
    login(f);
    const char *out = say(f, "TOP 1 0");
    g_assert_cmpstr(out, ==, "+OK top of message 1 follows\r\nA: 1\r\nB: 2\r\n\r\n.\r\n");
    out = say(f, "TOP 1 2");
    g_assert_cmpstr(out, ==, "+OK top of message 1 follows\r\nA: 1\r\nB: 2\r\n\r\nx\r\n..\r\n.\r\n");
    const char *const want[] = {"A: 1", "B: 2", "", "x", ".", NULL};
    assert_clients_agree(out, want);
    out = say(f, "TOP 1 9");
    const char *const all[] = {"A: 1", "B: 2", "", "x", ".", ".", "y", NULL};
    assert_clients_agree(out, all);
}

static void
test_retr_and_top_are_the_same_whatever_the_store_chunks(Fx *f, gconstpointer d)
{
    (void)d;
    /* Lines, dots, an empty header line in CRLF and bare-LF form: each may be split between the
     * parts the store hands out, anywhere. */
    deliver(f, "A: 1\r\nB: 2\r\n\r\n.b1\r\nb2\r\n.\r\nb4");
    deliver(f, "A: 1\nB: 2\n\nb1\nb2\n");
    deliver(f, "\r\nbody\r\n");
    deliver(f, "A: 1\rB: 2\r\r\n.b1\rb2\r\n\r");   /* bare CRs: a CRLF never cut in two */
    login(f);
    const char *cmds[] = {"RETR 1", "TOP 1 0", "TOP 1 1", "TOP 1 3", "RETR 2", "TOP 2 0",
                          "TOP 2 1", "TOP 2 9", "TOP 3 0", "RETR 3", "RETR 4", "TOP 4 0",
                          "TOP 4 1", "TOP 4 2"};
    char *want[G_N_ELEMENTS(cmds)];
    for (gsize i = 0; i < G_N_ELEMENTS(cmds); i++)
        want[i] = g_strdup(say(f, cmds[i]));
    g_assert_cmpstr(want[1], ==, "+OK top of message 1 follows\r\nA: 1\r\nB: 2\r\n\r\n.\r\n");
    g_assert_cmpstr(want[3], ==, "+OK top of message 1 follows\r\nA: 1\r\nB: 2\r\n\r\n..b1\r\n"
                                 "b2\r\n..\r\n.\r\n");
    g_assert_cmpstr(want[6], ==, "+OK top of message 2 follows\r\nA: 1\r\nB: 2\r\n\r\nb1\r\n.\r\n");
    g_assert_cmpstr(want[8], ==, "+OK top of message 3 follows\r\n\r\n.\r\n");
    g_assert_cmpstr(want[10], ==, "+OK 21 octets\r\nA: 1\r\nB: 2\r\n\r\n..b1\r\nb2\r\n\r\n.\r\n");
    g_assert_cmpstr(want[12], ==, "+OK top of message 4 follows\r\nA: 1\r\nB: 2\r\n\r\n..b1\r\n.\r\n");
    gsize chunks[] = {1, 2, 3, 5, 7};
    for (gsize c = 0; c < G_N_ELEMENTS(chunks); c++) {
        store_mem_set_chunk(f->proxy->inner, chunks[c]);
        for (gsize i = 0; i < G_N_ELEMENTS(cmds); i++)
            g_assert_cmpstr(say(f, cmds[i]), ==, want[i]);
    }
    for (gsize i = 0; i < G_N_ELEMENTS(cmds); i++)
        g_free(want[i]);
}

static void
test_a_store_failure_mid_body_closes_without_the_terminator(Fx *f, gconstpointer d)
{
    (void)d;
    deliver(f, "Subject: x\r\n\r\nfirst part, then the store fails\r\n");
    store_mem_set_chunk(f->proxy->inner, 16);
    login(f);
    g_string_truncate(f->out, 0);
    g_assert_false(pop3_core.feed(f->s, "RETR 1\r\n", 8, PROTO_LINE_OK, f->out));
    g_assert_true(pop3_core.more(f->s, f->out, 16));   /* the +OK and a first piece */
    f->proxy->fail_op = OP_READ;
    while (pop3_core.more(f->s, f->out, 16))
        ;
    g_assert_true(g_str_has_prefix(f->out->str, "+OK 48 octets\r\n"));
    g_assert_false(g_str_has_suffix(f->out->str, "\r\n.\r\n"));
    g_assert_true(pop3_core.ended(f->s) != NULL);
    Pop3SessionStats st;
    pop3_session_stats(f->s, &st);
    g_assert_cmpuint(st.retrieved, ==, 0);
}

static void
test_dele_marks_and_deleted_messages_vanish(Fx *f, gconstpointer d)
{
    (void)d;
    deliver(f, "one\r\n");
    StoreMsgId two = deliver(f, "two!\r\n");
    deliver(f, "three\r\n");
    char uid2[STORE_MSGID_TEXT_LEN];
    store_msgid_to_text(&two, uid2);
    f->cfg.max_errors = 100;
    login(f);
    g_assert_cmpstr(say(f, "DELE 2"), ==, "+OK message 2 deleted\r\n");
    g_assert_cmpstr(say(f, "STAT"), ==, "+OK 2 12\r\n");
    g_assert_cmpstr(say(f, "LIST"), ==, "+OK 2 messages (12 octets)\r\n1 5\r\n3 7\r\n.\r\n");
    g_assert_null(strstr(say(f, "UIDL"), uid2));
    const char *gone = "-ERR message 2 already deleted\r\n";
    g_assert_cmpstr(say(f, "LIST 2"), ==, gone);
    g_assert_cmpstr(say(f, "UIDL 2"), ==, gone);
    g_assert_cmpstr(say(f, "RETR 2"), ==, gone);
    g_assert_cmpstr(say(f, "TOP 2 0"), ==, gone);
    g_assert_cmpstr(say(f, "DELE 2"), ==, gone);
    g_assert_cmpuint(f->proxy->fetches, ==, 0);
    /* Numbers do not shift: message 3 is still 3. */
    g_assert_cmpstr(say(f, "RETR 3"), ==, "+OK 7 octets\r\nthree\r\n.\r\n");
    /* Nothing is removed before QUIT. */
    g_assert_cmpuint(index_len(f, "pete", "inbox"), ==, 3);
    g_assert_cmpuint(f->proxy->removes, ==, 0);
}

static void
test_rset_unmarks(Fx *f, gconstpointer d)
{
    (void)d;
    deliver(f, "one\r\n");
    deliver(f, "two!\r\n");
    login(f);
    say(f, "DELE 1");
    say(f, "DELE 2");
    g_assert_cmpstr(say(f, "STAT"), ==, "+OK 0 0\r\n");
    g_assert_cmpstr(say(f, "RSET"), ==, "+OK maildrop has 2 messages (11 octets)\r\n");
    g_assert_cmpstr(say(f, "LIST"), ==, "+OK 2 messages (11 octets)\r\n1 5\r\n2 6\r\n.\r\n");
    g_assert_cmpstr(say(f, "QUIT"), ==, "+OK CassMail POP3 server signing off (2 messages left)\r\n");
    g_assert_true(f->closed);
    g_assert_cmpuint(index_len(f, "pete", "inbox"), ==, 2);
    g_assert_cmpuint(f->proxy->removes, ==, 0);   /* nothing marked: no write at all */
}

static void
test_quit_removes_the_marked_messages_in_one_call(Fx *f, gconstpointer d)
{
    (void)d;
    StoreMsgId a = deliver(f, "one\r\n");
    deliver(f, "two\r\n");
    StoreMsgId c = deliver(f, "three\r\n");
    login(f);
    say(f, "DELE 1");
    say(f, "DELE 3");
    g_assert_cmpstr(say(f, "QUIT"), ==, "+OK CassMail POP3 server signing off (1 messages left)\r\n");
    g_assert_true(f->closed);
    g_assert_cmpuint(f->proxy->removes, ==, 1);
    g_assert_cmpuint(index_len(f, "pete", "inbox"), ==, 1);
    GBytes *b = NULL;
    GError *e = NULL;
    g_assert_false(store_fetch(f->store, "pete", "inbox", &a, &b, &e));
    g_assert_error(e, STORE_ERROR, STORE_ERROR_NOT_FOUND);
    g_clear_error(&e);
    g_assert_false(store_fetch(f->store, "pete", "inbox", &c, &b, &e));
    g_clear_error(&e);
    Pop3SessionStats st;
    pop3_session_stats(f->s, &st);
    g_assert_cmpuint(st.deleted, ==, 2);
    /* A new session sees what is left. */
    login(f);
    g_assert_cmpstr(say(f, "LIST"), ==, "+OK 1 messages (5 octets)\r\n1 5\r\n.\r\n");
}

static void
test_quit_of_an_emptied_maildrop(Fx *f, gconstpointer d)
{
    (void)d;
    deliver(f, "one\r\n");
    login(f);
    say(f, "DELE 1");
    g_assert_cmpstr(say(f, "QUIT"), ==, "+OK CassMail POP3 server signing off (maildrop empty)\r\n");
    g_assert_cmpuint(index_len(f, "pete", "inbox"), ==, 0);
}

static void
test_dropped_connection_deletes_nothing(Fx *f, gconstpointer d)
{
    (void)d;
    deliver(f, "one\r\n");
    deliver(f, "two\r\n");
    login(f);
    say(f, "DELE 1");
    say(f, "DELE 2");
    pop3_session_free(&f->s);   /* the connection went away without QUIT */
    g_assert_cmpuint(f->proxy->removes, ==, 0);
    g_assert_cmpuint(index_len(f, "pete", "inbox"), ==, 2);
}

static void
test_autologout_deletes_nothing(Fx *f, gconstpointer d)
{
    (void)d;
    deliver(f, "one\r\n");
    login(f);
    say(f, "DELE 1");
    g_string_truncate(f->out, 0);
    pop3_core.timeout(f->s, f->out);
    g_assert_true(g_str_has_prefix(f->out->str, "-ERR "));
    g_assert_true(pop3_core.feed(f->s, "QUIT\r\n", 6, PROTO_LINE_OK, f->out));
    g_assert_cmpuint(f->proxy->removes, ==, 0);
    g_assert_cmpuint(index_len(f, "pete", "inbox"), ==, 1);
}

static void
test_failed_removal_at_quit_is_reported(Fx *f, gconstpointer d)
{
    (void)d;
    deliver(f, "one\r\n");
    login(f);
    say(f, "DELE 1");
    f->proxy->fail_op = OP_REMOVE;
    f->proxy->fail_code = STORE_ERROR_TEMPORARY;
    g_assert_cmpstr(say(f, "QUIT"), ==, "-ERR [SYS/TEMP] some deleted messages not removed\r\n");
    g_assert_true(f->closed);
    g_assert_cmpuint(index_len(f, "pete", "inbox"), ==, 1);
}

static void
test_message_removed_by_another_session_is_reported(Fx *f, gconstpointer d)
{
    (void)d;
    StoreMsgId a = deliver(f, "Subject: x\r\n\r\none\r\n");
    login(f);
    g_assert_true(store_remove(f->store, "pete", "inbox", &a, 1, NULL));   /* another session */
    g_assert_cmpstr(say(f, "RETR 1"), ==, "-ERR message 1 no longer exists\r\n");
    g_assert_cmpstr(say(f, "TOP 1 0"), ==, "-ERR message 1 no longer exists\r\n");
    g_assert_cmpstr(say(f, "DELE 1"), ==, "+OK message 1 deleted\r\n");
    g_assert_cmpstr(say(f, "QUIT"), ==, "+OK CassMail POP3 server signing off (maildrop empty)\r\n");
}

static void
test_fetch_failures_are_temporary_or_permanent(Fx *f, gconstpointer d)
{
    (void)d;
    deliver(f, "x\r\n");
    login(f);
    f->proxy->fail_op = OP_FETCH;
    f->proxy->fail_code = STORE_ERROR_TEMPORARY;
    g_assert_cmpstr(say(f, "RETR 1"), ==,
                    "-ERR [SYS/TEMP] message 1 cannot be read now, try again later\r\n");
    f->proxy->fail_op = OP_FETCH;
    f->proxy->fail_code = STORE_ERROR_INVALID;
    g_assert_cmpstr(say(f, "TOP 1 0"), ==, "-ERR [SYS/PERM] message 1 cannot be read\r\n");
    g_assert_cmpstr(say(f, "RETR 1"), ==, "+OK 3 octets\r\nx\r\n.\r\n");
    g_assert_false(f->closed);
}

/* ---- cross-cutting rules ---------------------------------------------------------------------- */

static void
test_too_long_line_is_answered_once_and_the_session_goes_on(Fx *f, gconstpointer d)
{
    (void)d;
    login(f);
    g_autofree char *long_line = g_strnfill(POP3_LINE_MAX + 1, 'A');
    g_assert_cmpstr(say(f, long_line), ==, "-ERR line too long\r\n");
    /* The reader cut a longer line and tells us so: one answer for it. */
    g_assert_cmpstr(say_len(f, "NOOP", 4, PROTO_LINE_TOO_LONG), ==, "-ERR line too long\r\n");
    g_assert_cmpstr(say(f, "NOOP"), ==, "+OK NOOP\r\n");
    /* 255 octets is still a line. */
    g_autofree char *just = g_strnfill(POP3_LINE_MAX - 5, 'x');
    g_autofree char *l255 = g_strconcat("LIST ", just, NULL);
    g_assert_cmpuint(strlen(l255), ==, POP3_LINE_MAX);
    g_assert_true(g_str_has_prefix(say(f, l255), "-ERR invalid message number"));
    g_assert_false(f->closed);
}

static void
test_nul_and_empty_lines_are_refused(Fx *f, gconstpointer d)
{
    (void)d;
    login(f);
    g_assert_cmpstr(say_len(f, "NO\0OP\r\n", 7, PROTO_LINE_OK), ==, "-ERR NUL in command\r\n");
    g_assert_cmpstr(say(f, ""), ==, "-ERR empty command\r\n");
    g_assert_cmpstr(say_len(f, "NOOP\n", 5, PROTO_LINE_OK), ==, "+OK NOOP\r\n");   /* bare LF is fine */
    g_assert_cmpstr(say_len(f, "NOOP", 4, PROTO_LINE_OK), ==, "+OK NOOP\r\n");     /* so is none */
}

static void
test_too_many_bad_commands_close_the_session(Fx *f, gconstpointer d)
{
    (void)d;
    deliver(f, "x\r\n");
    login(f);
    say(f, "DELE 1");
    for (guint i = 1; i < f->cfg.max_errors; i++) {
        g_assert_cmpstr(say(f, "BOGUS"), ==, "-ERR unknown command\r\n");
        g_assert_false(f->closed);
    }
    g_assert_cmpstr(say(f, "BOGUS"), ==, "-ERR unknown command\r\n");
    g_assert_true(f->closed);
    g_assert_cmpuint(f->proxy->removes, ==, 0);   /* closing is not QUIT: nothing deleted */
}

static void
test_failed_logins_count_as_bad_commands(Fx *f, gconstpointer d)
{
    (void)d;
    fx_open(f);
    for (guint i = 0; i < f->cfg.max_errors; i++) {
        g_assert_false(f->closed);
        say(f, "USER pete");
        g_assert_cmpstr(say(f, "PASS nope"), ==, "-ERR [AUTH] Invalid login\r\n");
    }
    g_assert_true(f->closed);
}

static void
test_pipelined_commands_keep_their_order(Fx *f, gconstpointer d)
{
    (void)d;
    deliver(f, "m1\r\n");
    deliver(f, "m2\r\n");
    login(f);
    /* The adapter feeds the next command before draining the RETR: the core drains it first. */
    g_string_truncate(f->out, 0);
    pop3_core.feed(f->s, "RETR 1\r\n", 8, PROTO_LINE_OK, f->out);
    pop3_core.feed(f->s, "RETR 2\r\n", 8, PROTO_LINE_OK, f->out);
    pop3_core.feed(f->s, "STAT\r\n", 6, PROTO_LINE_OK, f->out);
    g_assert_cmpstr(f->out->str, ==,
                    "+OK 4 octets\r\nm1\r\n.\r\n+OK 4 octets\r\nm2\r\n.\r\n+OK 2 8\r\n");
}

static void
test_session_statistics(Fx *f, gconstpointer d)
{
    (void)d;
    deliver(f, "m1\r\n");
    deliver(f, "m22\r\n");
    login(f);
    say(f, "RETR 1");
    say(f, "RETR 2");
    say(f, "DELE 1");
    say(f, "QUIT");
    Pop3SessionStats st;
    pop3_session_stats(f->s, &st);
    g_assert_cmpuint(st.state, ==, POP3_STATE_CLOSED);
    g_assert_cmpstr(st.user, ==, "pete");
    g_assert_cmpstr(st.mailbox, ==, "inbox");
    g_assert_cmpuint(st.messages, ==, 2);
    g_assert_cmpuint(st.octets, ==, 9);
    g_assert_cmpuint(st.retrieved, ==, 2);
    g_assert_cmpuint(st.retrieved_octets, ==, 9);
    g_assert_cmpuint(st.deleted, ==, 1);
}

static void
test_adapter_maps_the_pop3_settings(void)
{
    g_autoptr(GError) e = NULL;
    CassmailConfig *c = config_load(NULL, &e);
    g_assert_no_error(e);
    Pop3SessionConfig pc;
    adapter_pop3_config(&(AdapterRun){.cfg = c}, "192.0.2.7", &pc);
    g_assert_cmpuint(pc.batch_size, ==, (guint)c->batch_size);
    g_assert_cmpint(pc.mailbox_delimiter, ==, '|');
    g_assert_cmpuint(pc.login_delay_ms, ==, (guint)c->login_delay_ms);
    g_assert_cmpuint(pc.max_errors, ==, (guint)c->max_errors);
    config_free(&c);
}

/* ---- STLS (RFC 2595) and plaintext USER/PASS ---------------------------------------------------- */

static void
test_stls_offered_in_capa_only_when_possible(Fx *f, gconstpointer d)
{
    (void)d;
    fx_open(f);
    g_assert_null(strstr(say(f, "CAPA"), "STLS\r\n"));
    g_assert_true(g_str_has_prefix(say(f, "STLS"), "-ERR "));
    g_assert_false(pop3_core.tls_pending(f->s));
    f->cfg.stls = TRUE;
    fx_open(f);
    g_assert_nonnull(strstr(say(f, "CAPA"), "\r\nSTLS\r\n"));
    login(f);   /* not in TRANSACTION (RFC 2595 4) */
    g_assert_null(strstr(say(f, "CAPA"), "STLS\r\n"));
    g_assert_cmpstr(say(f, "STLS"), ==, "-ERR command not valid in this state\r\n");
}

static void
test_stls_drops_pipelined_lines_until_tls(Fx *f, gconstpointer d)
{
    (void)d;
    f->cfg.stls = TRUE;
    fx_open(f);
    g_assert_cmpstr(say(f, "STLS"), ==, "+OK Begin TLS negotiation\r\n");
    g_assert_true(pop3_core.tls_pending(f->s));
    /* what an attacker on the path could add behind STLS is never executed */
    g_assert_cmpstr(say(f, "USER pete"), ==, "");
    g_assert_cmpstr(say(f, "QUIT"), ==, "");
    g_assert_false(f->closed);
    pop3_core.tls_started(f->s);
    g_assert_false(pop3_core.tls_pending(f->s));
    g_assert_cmpstr(say(f, "PASS secret"), ==, "-ERR give USER first\r\n");
    Pop3SessionStats st;
    pop3_session_stats(f->s, &st);
    g_assert_true(st.tls);
    g_assert_cmpuint(f->proxy->index_pages, ==, 0);
}

static void
test_without_plaintext_auth_user_pass_work_after_stls(Fx *f, gconstpointer d)
{
    (void)d;
    f->cfg.plaintext_auth = FALSE;
    f->cfg.stls = TRUE;
    deliver(f, "Subject: a\r\n\r\nhello\r\n");
    fx_open(f);
    const char *capa = say(f, "CAPA");
    g_assert_nonnull(strstr(capa, "\r\nSTLS\r\n"));
    g_assert_null(strstr(capa, "USER\r\n"));
    g_assert_cmpstr(say(f, "USER pete"), ==,
                    "-ERR [AUTH] plain-text login is not allowed on this connection, use STLS first\r\n");
    g_assert_cmpstr(say(f, "STLS"), ==, "+OK Begin TLS negotiation\r\n");
    pop3_core.tls_started(f->s);
    capa = say(f, "CAPA");
    g_assert_null(strstr(capa, "STLS\r\n"));
    g_assert_nonnull(strstr(capa, "\r\nUSER\r\n"));
    g_assert_cmpstr(say(f, "USER pete"), ==, "+OK send PASS\r\n");
    g_assert_cmpstr(say(f, "PASS secret"), ==, "+OK maildrop has 1 messages (21 octets)\r\n");
}

static void
test_second_stls_is_err(Fx *f, gconstpointer d)
{
    (void)d;
    f->cfg.stls = TRUE;
    fx_open(f);
    say(f, "STLS");
    pop3_core.tls_started(f->s);
    g_assert_cmpstr(say(f, "STLS"), ==, "-ERR command not permitted when TLS active\r\n");
    g_assert_false(pop3_core.tls_pending(f->s));
    g_assert_cmpstr(say(f, "USER pete"), ==, "+OK send PASS\r\n");
}

static void
test_stls_forgets_the_user_given_before(Fx *f, gconstpointer d)
{
    (void)d;
    f->cfg.stls = TRUE;   /* plaintext allowed too (the fixture's default) */
    fx_open(f);
    g_assert_cmpstr(say(f, "USER pete"), ==, "+OK send PASS\r\n");
    say(f, "STLS");
    pop3_core.tls_started(f->s);
    g_assert_cmpstr(say(f, "PASS secret"), ==, "-ERR give USER first\r\n");
}

static void
test_adapter_allows_plaintext_per_peer(void)
{
    g_autoptr(GError) error = NULL;
    CassmailConfig *c = config_load(NULL, &error);
    g_assert_no_error(error);
    Pop3SessionConfig pc;
    AdapterRun run = {.cfg = c};
    adapter_pop3_config(&run, "192.0.2.7", &pc);
    /* default "loopback": the adapter, which knows the peer, allows it from this machine only */
    g_assert_false(pc.plaintext_auth);
    g_assert_false(pc.stls);
    adapter_pop3_config(&run, "127.0.0.1", &pc);
    g_assert_true(pc.plaintext_auth);
    c->pop3_allow_plaintext_auth = CONFIG_PLAINTEXT_ALWAYS;
    adapter_pop3_config(&run, "192.0.2.7", &pc);
    g_assert_true(pc.plaintext_auth);
    config_free(&c);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    /* the tests' hashes cost 1000 iterations, as a deployment may configure ([auth]) */
    password_set_cost(1000);
    char *h = password_hash_iterations("secret", 1000, NULL);
    hash_secret = h;
#define T(name, fn) g_test_add("/pop3/" name, Fx, NULL, fx_setup, fn, fx_teardown)
    T("greeting-is-ok", test_greeting_is_ok);
    T("transaction-commands-are-refused-before-login",
      test_transaction_commands_are_refused_before_login);
    T("pass-needs-user-first", test_pass_needs_user_first);
    T("login-lists-the-inbox", test_login_lists_the_inbox);
    T("user-name-is-case-insensitive-and-commands-too",
      test_user_name_is_case_insensitive_and_commands_too);
    T("password-keeps-its-spaces", test_password_keeps_its_spaces);
    T("every-failed-login-gives-the-same-err-after-the-delay",
      test_every_failed_login_gives_the_same_err_after_the_delay);
    T("outbox-is-selected-with-the-delimiter", test_outbox_is_selected_with_the_delimiter);
    T("delimiter-comes-from-the-configuration", test_delimiter_comes_from_the_configuration);
    T("store-failure-at-login-is-temporary", test_store_failure_at_login_is_temporary);
    T("capa-in-both-states", test_capa_in_both_states);
    T("without-plaintext-auth-user-is-neither-offered-nor-accepted",
      test_without_plaintext_auth_user_is_neither_offered_nor_accepted);
    T("quit-before-login-closes", test_quit_before_login_closes);
    T("list-and-uidl-come-from-the-index-only", test_list_and_uidl_come_from_the_index_only);
    T("a-full-last-page-is-followed-by-an-empty-one", test_a_full_last_page_is_followed_by_an_empty_one);
    T("message-numbers-are-checked", test_message_numbers_are_checked);
    T("retr-stuffs-dots-and-terminates", test_retr_stuffs_dots_and_terminates);
    T("retr-adds-the-missing-final-crlf", test_retr_adds_the_missing_final_crlf);
    T("retr-of-a-large-message-streams-in-bounded-chunks",
      test_retr_of_a_large_message_streams_in_bounded_chunks);
    T("top-sends-headers-blank-line-and-n-lines", test_top_sends_headers_blank_line_and_n_lines);
    T("retr-and-top-are-the-same-whatever-the-store-chunks",
      test_retr_and_top_are_the_same_whatever_the_store_chunks);
    T("a-store-failure-mid-body-closes-without-the-terminator",
      test_a_store_failure_mid_body_closes_without_the_terminator);

    T("retr-of-bare-cr-and-lf-is-crlf-clean-for-every-client", test_retr_of_bare_cr_and_lf_is_crlf_clean);
    T("top-counts-bare-cr-and-lf-as-line-ends", test_top_counts_bare_cr_and_lf_as_line_ends);
    T("dele-marks-and-deleted-messages-vanish", test_dele_marks_and_deleted_messages_vanish);
    T("rset-unmarks", test_rset_unmarks);
    T("quit-removes-the-marked-messages-in-one-call",
      test_quit_removes_the_marked_messages_in_one_call);
    T("quit-of-an-emptied-maildrop", test_quit_of_an_emptied_maildrop);
    T("dropped-connection-deletes-nothing", test_dropped_connection_deletes_nothing);
    T("autologout-deletes-nothing", test_autologout_deletes_nothing);
    T("failed-removal-at-quit-is-reported", test_failed_removal_at_quit_is_reported);
    T("message-removed-by-another-session-is-reported",
      test_message_removed_by_another_session_is_reported);
    T("fetch-failures-are-temporary-or-permanent", test_fetch_failures_are_temporary_or_permanent);
    T("too-long-line-is-answered-once-and-the-session-goes-on",
      test_too_long_line_is_answered_once_and_the_session_goes_on);
    T("nul-and-empty-lines-are-refused", test_nul_and_empty_lines_are_refused);
    T("too-many-bad-commands-close-the-session", test_too_many_bad_commands_close_the_session);
    T("failed-logins-count-as-bad-commands", test_failed_logins_count_as_bad_commands);
    T("pipelined-commands-keep-their-order", test_pipelined_commands_keep_their_order);
    T("session-statistics", test_session_statistics);
    T("stls-offered-in-capa-only-when-possible", test_stls_offered_in_capa_only_when_possible);
    T("stls-drops-pipelined-lines-until-tls", test_stls_drops_pipelined_lines_until_tls);
    T("without-plaintext-auth-user-pass-work-after-stls",
      test_without_plaintext_auth_user_pass_work_after_stls);
    T("second-stls-is-err", test_second_stls_is_err);
    T("stls-forgets-the-user-given-before", test_stls_forgets_the_user_given_before);
    g_test_add_func("/pop3/adapter-maps-the-pop3-settings", test_adapter_maps_the_pop3_settings);
    g_test_add_func("/pop3/adapter-allows-plaintext-per-peer", test_adapter_allows_plaintext_per_peer);
#undef T
    int rc = g_test_run();
    g_free(h);
    return rc;
}
