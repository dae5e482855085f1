/*
 * session.c - the POP3 protocol core (RFC 1939, RFC 2449 CAPA and response codes, RFC 3206 codes).
 *
 * One command table per state (popa3d's shape); STLS (RFC 2595 4) lives in the AUTHORIZATION one.
 * pop3_session_feed applies every cross-cutting rule before a handler runs: line length, NUL,
 * empty line, known verb, verb allowed in this state, number of arguments, the message an argument
 * names; and afterwards the error limit. Handlers write their reply through pop3_reply and return
 * whether the command was a bad one; that result, and only it, decides the error count (as in the
 * SMTP core).
 *
 * The maildrop is a compact array built at login from MailboxIndex alone (TimeUUID, size): STAT,
 * LIST and UIDL never read a message. RETR and TOP fetch one message and hand it to a Pop3MsgOut,
 * which the adapter drains in bounded chunks.
 */
#include "pop3/session.h"

#include <string.h>

#include <openssl/crypto.h>

#include "pop3/msgout.h"
#include "util/log.h"
#include "util/password.h"

#define POP3_GREETING "CassMail POP3 server ready"
#define POP3_SIGN_OFF "CassMail POP3 server signing off"

/* One message of the maildrop: 24 octets, whatever the message's size. */
typedef struct {
    StoreMsgId id;
    guint64 size : 63;
    guint64 deleted : 1;
} Pop3Msg;

struct Pop3Session {
    ProtoState proto;        /* first: TLS, STLS pending, a failed login's delay (proto.h) */
    Pop3SessionConfig cfg;
    Store *store;
    const char *peer;
    Pop3State state;
    gboolean authenticated;

    char *user;              /* from USER, lower-cased; kept after login */
    char *mailbox;

    GArray *msgs;            /* Pop3Msg, in arrival order: message n is msgs[n - 1] */
    guint live;              /* messages not marked deleted */
    guint64 live_octets;

    Pop3MsgOut body;         /* RETR / TOP output in progress */
    guint64 body_octets;     /* size of a RETR in progress (for the statistics) */
    gboolean body_is_retr;
    guint body_msg;          /* the message number being sent (for logs) */

    gboolean body_failed;    /* the store failed inside a RETR/TOP body: the session closed */
    guint errors;
    guint failed_logins;
    guint retrieved;
    guint64 retrieved_octets;
    guint deleted;
    guint messages_at_login;
    guint64 octets_at_login;

    char line[POP3_LINE_MAX + 1];   /* the current command, NUL-terminated; wiped after use */
};

/* What a handler says about the command it ran. */
typedef enum {
    POP3_DONE,   /* replied (+OK or an ordinary -ERR) */
    POP3_BAD,    /* replied -ERR, and the command counts towards max_errors */
} Pop3Status;

#define POP3_MAX_ARGS 2

/* A command's arguments, as the dispatcher found them. */
typedef struct {
    char *argv[POP3_MAX_ARGS + 1];
    guint argc;
    Pop3Msg *msg;            /* POP3_ARG_MSG: the message argv[0] names (NULL without argument) */
    guint n;                 /* and its number */
} Pop3Args;

/* command flags */
enum {
    POP3_ARG_RAW = 1 << 0,   /* the rest of the line is one argument, spaces included (PASS) */
    POP3_ARG_MSG = 1 << 1,   /* argv[0], when given, names a message not marked deleted */
};

typedef struct {
    const char *verb;
    guint min_args, max_args;
    guint flags;
    const char *usage;
    Pop3Status (*proceed)(Pop3Session *s, Pop3Args *a, GString *out);
} Pop3Command;

/* ---- replies ---------------------------------------------------------------------------- */

/* pop3_reply - one status line: "+OK text" or "-ERR [code] text" (RFC 2449 section 8) */
static void pop3_reply(GString *out, gboolean ok, const char *code, const char *fmt, ...)
    G_GNUC_PRINTF(4, 5);

static void
pop3_reply(GString *out, gboolean ok, const char *code, const char *fmt, ...)
{
    va_list ap;
    g_string_append(out, ok ? "+OK" : "-ERR");
    if (code)
        g_string_append_printf(out, " [%s]", code);
    g_string_append_c(out, ' ');
    va_start(ap, fmt);
    g_string_append_vprintf(out, fmt, ap);
    va_end(ap);
    g_string_append(out, "\r\n");
}

/* pop3_bad - a -ERR reply for a command that counts towards max_errors (its caller returns it) */
static Pop3Status pop3_bad(GString *out, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

static Pop3Status
pop3_bad(GString *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *text = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    pop3_reply(out, FALSE, NULL, "%s", text);
    return POP3_BAD;
}

/* ---- state -------------------------------------------------------------------------------- */

const char *
pop3_state_name(Pop3State state)
{
    switch (state) {
    case POP3_STATE_AUTHORIZATION: return "AUTHORIZATION";
    case POP3_STATE_TRANSACTION: return "TRANSACTION";
    case POP3_STATE_UPDATE: return "UPDATE";
    case POP3_STATE_CLOSED: return "CLOSED";
    }
    return "?";
}

/* pop3_enter_state - every state change goes through here */
static void
pop3_enter_state(Pop3Session *s, Pop3State next)
{
    s->state = next;
}

/* ---- arguments ---------------------------------------------------------------------------- */

/* pop3_parse_number - a decimal number of 1 to 9 digits, nothing else */
static gboolean
pop3_parse_number(const char *arg, guint *value)
{
    guint64 n;
    if (strlen(arg) > 9 || !g_ascii_string_to_unsigned(arg, 10, 0, G_MAXUINT, &n, NULL))
        return FALSE;
    *value = (guint)n;
    return TRUE;
}

/* pop3_message_arg - the message ARG names, not marked deleted (RFC 1939 section 5: "may NOT refer
 * to a message marked as deleted"); NULL after replying -ERR, *STATUS POP3_BAD for a syntax error */
static Pop3Msg *
pop3_message_arg(Pop3Session *s, const char *arg, guint *number, GString *out, Pop3Status *status)
{
    *status = POP3_DONE;
    if (!pop3_parse_number(arg, number)) {
        *status = pop3_bad(out, "invalid message number \"%.40s\"", arg);
        return NULL;
    }
    if (*number == 0 || *number > s->msgs->len) {
        pop3_reply(out, FALSE, NULL, "no such message, only %u messages in maildrop", s->msgs->len);
        return NULL;
    }
    Pop3Msg *m = &g_array_index(s->msgs, Pop3Msg, *number - 1);
    if (m->deleted) {
        pop3_reply(out, FALSE, NULL, "message %u already deleted", *number);
        return NULL;
    }
    return m;
}

/* ---- AUTHORIZATION (RFC 1939 sections 4 and 7) ---------------------------------------------- */

/* pop3_forget_user - clear the name given with USER */
static void
pop3_forget_user(Pop3Session *s)
{
    g_clear_pointer(&s->user, g_free);
    g_clear_pointer(&s->mailbox, g_free);
}

/* pop3_offer_user - whether USER/PASS may be used now: over TLS, or where plaintext is allowed */
static gboolean
pop3_offer_user(const Pop3Session *s)
{
    return s->proto.tls || s->cfg.plaintext_auth;
}

/* pop3_offer_stls - whether STLS may be used now */
static gboolean
pop3_offer_stls(const Pop3Session *s)
{
    return s->cfg.stls && !s->proto.tls;
}

/* pop3_user - USER name (RFC 1939 section 7): remember user and mailbox; whether they exist is
 * decided at PASS */
static Pop3Status
pop3_user(Pop3Session *s, Pop3Args *a, GString *out)
{
    if (!pop3_offer_user(s)) {
        pop3_reply(out, FALSE, "AUTH", "plain-text login is not allowed on this connection%s",
                   s->cfg.stls ? ", use STLS first" : "");
        return POP3_DONE;
    }
    pop3_forget_user(s);
    g_autofree char *name = g_ascii_strdown(a->argv[0], -1);
    char *delim = strchr(name, s->cfg.mailbox_delimiter);
    if (delim) {
        *delim = '\0';
        s->mailbox = g_strdup(delim + 1);
    } else {
        s->mailbox = g_strdup("inbox");
    }
    s->user = g_steal_pointer(&name);
    /* The same answer for every name: whether it exists is only decided at PASS. */
    pop3_reply(out, TRUE, NULL, "send PASS");
    return POP3_DONE;
}

/* pop3_load_maildrop - the message list from MailboxIndex, in pages of batch_size */
static gboolean
pop3_load_maildrop(Pop3Session *s, GError **error)
{
    g_autoptr(GArray) page = g_array_sized_new(FALSE, FALSE, sizeof(StoreIndexEntry),
                                               s->cfg.batch_size);
    StoreMsgId after;
    gboolean have_after = FALSE;
    g_array_set_size(s->msgs, 0);
    s->live = 0;
    s->live_octets = 0;
    for (;;) {
        g_array_set_size(page, 0);
        if (!store_index_page(s->store, s->user, s->mailbox, have_after ? &after : NULL,
                              s->cfg.batch_size, page, error))
            return FALSE;
        for (guint i = 0; i < page->len; i++) {
            const StoreIndexEntry *e = &g_array_index(page, StoreIndexEntry, i);
            Pop3Msg m = {.id = e->id, .size = MIN(e->size, G_MAXINT64), .deleted = 0};
            g_array_append_val(s->msgs, m);
            s->live++;
            s->live_octets += m.size;
        }
        if (page->len < s->cfg.batch_size)
            break;
        after = g_array_index(page, StoreIndexEntry, page->len - 1).id;
        have_after = TRUE;
    }
    return TRUE;
}

/* pop3_pass - PASS string (RFC 1939 section 7): verify, then load the maildrop and enter
 * TRANSACTION */
static Pop3Status
pop3_pass(Pop3Session *s, Pop3Args *a, GString *out)
{
    if (!s->user)
        return pop3_bad(out, "give USER first");

    /* Every path does the same work: the mailbox lookup, the credentials lookup and one key
     * derivation (a dummy one when there is no hash), so neither the reply nor its timing tells an
     * unknown user or mailbox from a wrong password. */
    GError *box_error = NULL, *pw_error = NULL;
    gboolean exists = FALSE;
    char *hash = NULL;
    store_mailbox_exists(s->store, s->user, s->mailbox, &exists, &box_error);
    store_password_get(s->store, s->user, &hash, &pw_error);
    gboolean ok;
    if (hash) {
        ok = password_verify(a->argv[0], hash);
        OPENSSL_cleanse(hash, strlen(hash));
        g_free(hash);
    } else {
        password_verify_dummy(a->argv[0]);
        ok = FALSE;
    }

    /* The names come from the client: escape them for the log. */
    g_autofree char *who = g_strescape(s->user, NULL);
    g_autofree char *box = g_strescape(s->mailbox, NULL);
    if (store_error_unanswered(box_error) || store_error_unanswered(pw_error)) {
        log_warn("pop3 %s: login for %s|%s not checked: %s", s->peer, who, box,
                 (box_error ? box_error : pw_error)->message);
        g_clear_error(&box_error);
        g_clear_error(&pw_error);
        pop3_forget_user(s);
        pop3_reply(out, FALSE, "SYS/TEMP",
                   "authentication temporarily unavailable, try again later");
        return POP3_DONE;
    }
    const char *why = !exists   ? "unknown user or mailbox"
                      : pw_error ? "no password set"
                                 : "wrong password";
    g_clear_error(&box_error);
    g_clear_error(&pw_error);
    if (!ok || !exists) {
        log_info("pop3 %s: failed login for %s|%s (%s)", s->peer, who, box, why);
        pop3_forget_user(s);
        s->failed_logins++;
        s->proto.delay_ms = s->cfg.login_delay_ms;
        pop3_reply(out, FALSE, "AUTH", "Invalid login");
        return POP3_BAD;
    }

    GError *e = NULL;
    if (!pop3_load_maildrop(s, &e)) {
        log_warn("pop3 %s: cannot list %s|%s: %s", s->peer, s->user, s->mailbox, e->message);
        gboolean temp = store_error_unanswered(e);
        g_clear_error(&e);
        g_array_set_size(s->msgs, 0);
        pop3_forget_user(s);
        pop3_reply(out, FALSE, temp ? "SYS/TEMP" : "SYS/PERM", "maildrop not available%s",
                   temp ? ", try again later" : "");
        return POP3_DONE;
    }
    s->messages_at_login = s->live;
    s->octets_at_login = s->live_octets;
    s->authenticated = TRUE;
    pop3_enter_state(s, POP3_STATE_TRANSACTION);
    log_info("pop3 %s: login %s|%s, %u messages (%" G_GUINT64_FORMAT " octets)", s->peer, s->user,
             s->mailbox, s->live, s->live_octets);
    pop3_reply(out, TRUE, NULL, "maildrop has %u messages (%" G_GUINT64_FORMAT " octets)", s->live,
               s->live_octets);
    return POP3_DONE;
}

/* pop3_remove_marked - UPDATE state (RFC 1939 section 6): every marked message in one
 * store_remove */
static gboolean
pop3_remove_marked(Pop3Session *s, guint *removed)
{
    g_autoptr(GArray) ids = g_array_new(FALSE, FALSE, sizeof(StoreMsgId));
    for (guint i = 0; i < s->msgs->len; i++) {
        const Pop3Msg *m = &g_array_index(s->msgs, Pop3Msg, i);
        if (m->deleted)
            g_array_append_val(ids, m->id);
    }
    *removed = 0;
    if (ids->len == 0)
        return TRUE;
    GError *e = NULL;
    const StoreMsgId *marked = (const StoreMsgId *)(void *)ids->data;
    if (!store_remove(s->store, s->user, s->mailbox, marked, ids->len, &e)) {
        log_warn("pop3 %s: %s|%s: %u marked messages not removed: %s", s->peer, s->user, s->mailbox,
                 ids->len, e->message);
        g_error_free(e);
        return FALSE;
    }
    *removed = ids->len;
    return TRUE;
}

/* pop3_quit - QUIT (sections 4 and 6): sign off; from TRANSACTION, UPDATE first removes the
 * marked messages */
static Pop3Status
pop3_quit(Pop3Session *s, Pop3Args *a, GString *out)
{
    (void)a;
    if (s->state != POP3_STATE_TRANSACTION) {
        pop3_enter_state(s, POP3_STATE_CLOSED);
        pop3_reply(out, TRUE, NULL, POP3_SIGN_OFF);
        return POP3_DONE;
    }
    pop3_enter_state(s, POP3_STATE_UPDATE);
    guint removed = 0;
    gboolean ok = pop3_remove_marked(s, &removed);
    s->deleted = removed;
    pop3_enter_state(s, POP3_STATE_CLOSED);
    if (!ok)
        pop3_reply(out, FALSE, "SYS/TEMP", "some deleted messages not removed");
    else if (s->live == 0)
        pop3_reply(out, TRUE, NULL, POP3_SIGN_OFF " (maildrop empty)");
    else
        pop3_reply(out, TRUE, NULL, POP3_SIGN_OFF " (%u messages left)", s->live);
    return POP3_DONE;
}

/* pop3_offer_stls_now - STLS belongs in CAPA only in the AUTHORIZATION state (RFC 2595 4) */
static gboolean
pop3_offer_stls_now(const Pop3Session *s)
{
    return pop3_offer_stls(s) && s->state == POP3_STATE_AUTHORIZATION;
}

/* One capability (RFC 2449 section 6) and when it is offered. */
typedef struct {
    const char *text;
    gboolean (*offered)(const Pop3Session *s);
} Pop3Capability;

static const Pop3Capability pop3_capabilities[] = {
    {"TOP", NULL},
    {"UIDL", NULL},
    {"STLS", pop3_offer_stls_now},
    {"USER", pop3_offer_user},
    {"RESP-CODES", NULL},
    {"AUTH-RESP-CODE", NULL},
    {"PIPELINING", NULL},
    {"EXPIRE NEVER", NULL},    /* the server never deletes mail on its own */
    {"IMPLEMENTATION CassMail", NULL},
};

/* pop3_capa - CAPA (RFC 2449 section 5): the capabilities offered now */
static Pop3Status
pop3_capa(Pop3Session *s, Pop3Args *a, GString *out)
{
    (void)a;
    pop3_reply(out, TRUE, NULL, "Capability list follows");
    for (gsize i = 0; i < G_N_ELEMENTS(pop3_capabilities); i++)
        if (!pop3_capabilities[i].offered || pop3_capabilities[i].offered(s))
            g_string_append_printf(out, "%s\r\n", pop3_capabilities[i].text);
    g_string_append(out, ".\r\n");
    return POP3_DONE;
}

/* pop3_stls - STLS (RFC 2595 section 4): "+OK", then the adapter negotiates TLS */
static Pop3Status
pop3_stls(Pop3Session *s, Pop3Args *a, GString *out)
{
    (void)a;
    if (s->proto.tls) {
        pop3_reply(out, FALSE, NULL, "command not permitted when TLS active");
        return POP3_DONE;
    }
    if (!s->cfg.stls)
        return pop3_bad(out, "STLS not available");
    pop3_forget_user(s);
    s->proto.tls_pending = TRUE;
    pop3_reply(out, TRUE, NULL, "Begin TLS negotiation");
    return POP3_DONE;
}

/* pop3_tls_started - the session runs over TLS (USER/PASS now allowed) and has forgotten any name
 * given with USER (RFC 2595 4) */
static void
pop3_tls_started(gpointer core)
{
    proto_tls_on(core);
    pop3_forget_user(core);
}

/* ---- TRANSACTION (RFC 1939 sections 5 and 7) ------------------------------------------------ */

/* pop3_stat - STAT (section 5): messages and octets not marked deleted */
static Pop3Status
pop3_stat(Pop3Session *s, Pop3Args *a, GString *out)
{
    (void)a;
    pop3_reply(out, TRUE, NULL, "%u %" G_GUINT64_FORMAT, s->live, s->live_octets);
    return POP3_DONE;
}

/* pop3_list - LIST [msg] (section 5): sizes from the index */
static Pop3Status
pop3_list(Pop3Session *s, Pop3Args *a, GString *out)
{
    if (a->msg) {
        pop3_reply(out, TRUE, NULL, "%u %" G_GUINT64_FORMAT, a->n, (guint64)a->msg->size);
        return POP3_DONE;
    }
    pop3_reply(out, TRUE, NULL, "%u messages (%" G_GUINT64_FORMAT " octets)", s->live,
               s->live_octets);
    for (guint i = 0; i < s->msgs->len; i++) {
        const Pop3Msg *m = &g_array_index(s->msgs, Pop3Msg, i);
        if (!m->deleted)
            g_string_append_printf(out, "%u %" G_GUINT64_FORMAT "\r\n", i + 1, (guint64)m->size);
    }
    g_string_append(out, ".\r\n");
    return POP3_DONE;
}

/* pop3_uidl - UIDL [msg] (section 7): each message's TimeUUID, canonical text */
static Pop3Status
pop3_uidl(Pop3Session *s, Pop3Args *a, GString *out)
{
    char uid[STORE_MSGID_TEXT_LEN];
    if (a->msg) {
        store_msgid_to_text(&a->msg->id, uid);
        pop3_reply(out, TRUE, NULL, "%u %s", a->n, uid);
        return POP3_DONE;
    }
    pop3_reply(out, TRUE, NULL, "unique-id listing follows");
    for (guint i = 0; i < s->msgs->len; i++) {
        const Pop3Msg *m = &g_array_index(s->msgs, Pop3Msg, i);
        if (!m->deleted) {
            store_msgid_to_text(&m->id, uid);
            g_string_append_printf(out, "%u %s\r\n", i + 1, uid);
        }
    }
    g_string_append(out, ".\r\n");
    return POP3_DONE;
}

/* pop3_open - a reader of message N, or NULL after replying -ERR */
static StoreReader *
pop3_open(Pop3Session *s, guint n, const Pop3Msg *m, GString *out)
{
    StoreReader *r = NULL;
    GError *e = NULL;
    if (store_reader_open(s->store, s->user, s->mailbox, &m->id, &r, &e))
        return r;
    if (g_error_matches(e, STORE_ERROR, STORE_ERROR_NOT_FOUND)) {
        pop3_reply(out, FALSE, NULL, "message %u no longer exists", n);
    } else {
        log_warn("pop3 %s: %s|%s: cannot read message %u: %s", s->peer, s->user, s->mailbox, n,
                 e->message);
        if (store_error_unanswered(e))
            pop3_reply(out, FALSE, "SYS/TEMP", "message %u cannot be read now, try again later", n);
        else
            pop3_reply(out, FALSE, "SYS/PERM", "message %u cannot be read", n);
    }
    g_error_free(e);
    return NULL;
}

/* pop3_retr - RETR msg (section 5): "+OK n octets", then the body through pop3_session_more,
 * streamed from the store a part at a time */
static Pop3Status
pop3_retr(Pop3Session *s, Pop3Args *a, GString *out)
{
    StoreReader *r = pop3_open(s, a->n, a->msg, out);
    if (!r)
        return POP3_DONE;
    guint64 len = store_reader_size(r);
    pop3_reply(out, TRUE, NULL, "%" G_GUINT64_FORMAT " octets", len);
    pop3_msgout_start(&s->body, r, FALSE, 0);
    s->body_is_retr = TRUE;
    s->body_octets = len;
    s->body_msg = a->n;
    return POP3_DONE;
}

/* pop3_top - TOP msg n (section 7): header, blank line and n body lines, through
 * pop3_session_more */
static Pop3Status
pop3_top(Pop3Session *s, Pop3Args *a, GString *out)
{
    guint lines;
    if (!pop3_parse_number(a->argv[1], &lines))
        return pop3_bad(out, "invalid number of lines \"%.40s\"", a->argv[1]);
    StoreReader *r = pop3_open(s, a->n, a->msg, out);
    if (!r)
        return POP3_DONE;
    pop3_reply(out, TRUE, NULL, "top of message %u follows", a->n);
    pop3_msgout_start(&s->body, r, TRUE, lines);
    s->body_is_retr = FALSE;
    s->body_msg = a->n;
    return POP3_DONE;
}

/* pop3_dele - DELE msg (section 5): mark; the store is changed only at QUIT */
static Pop3Status
pop3_dele(Pop3Session *s, Pop3Args *a, GString *out)
{
    a->msg->deleted = 1;
    s->live--;
    s->live_octets -= a->msg->size;
    pop3_reply(out, TRUE, NULL, "message %u deleted", a->n);
    return POP3_DONE;
}

/* pop3_rset - RSET (section 5): unmark every message */
static Pop3Status
pop3_rset(Pop3Session *s, Pop3Args *a, GString *out)
{
    (void)a;
    for (guint i = 0; i < s->msgs->len; i++) {
        Pop3Msg *m = &g_array_index(s->msgs, Pop3Msg, i);
        if (m->deleted) {
            m->deleted = 0;
            s->live++;
            s->live_octets += m->size;
        }
    }
    pop3_reply(out, TRUE, NULL, "maildrop has %u messages (%" G_GUINT64_FORMAT " octets)", s->live,
               s->live_octets);
    return POP3_DONE;
}

/* pop3_noop - NOOP (section 5) */
static Pop3Status
pop3_noop(Pop3Session *s, Pop3Args *a, GString *out)
{
    (void)s, (void)a;
    pop3_reply(out, TRUE, NULL, "NOOP");
    return POP3_DONE;
}

/* ---- dispatch ----------------------------------------------------------------------------- */

static const Pop3Command pop3_authorization_commands[] = {
    {"USER", 1, 1, 0, "USER name", pop3_user},
    {"PASS", 1, 1, POP3_ARG_RAW, "PASS password", pop3_pass},
    {"QUIT", 0, 0, 0, "QUIT", pop3_quit},
    {"CAPA", 0, 0, 0, "CAPA", pop3_capa},
    {"STLS", 0, 0, 0, "STLS", pop3_stls},
    {NULL, 0, 0, 0, NULL, NULL},
};

static const Pop3Command pop3_transaction_commands[] = {
    {"STAT", 0, 0, 0, "STAT", pop3_stat},
    {"LIST", 0, 1, POP3_ARG_MSG, "LIST [msg]", pop3_list},
    {"UIDL", 0, 1, POP3_ARG_MSG, "UIDL [msg]", pop3_uidl},
    {"RETR", 1, 1, POP3_ARG_MSG, "RETR msg", pop3_retr},
    {"TOP", 2, 2, POP3_ARG_MSG, "TOP msg lines", pop3_top},
    {"DELE", 1, 1, POP3_ARG_MSG, "DELE msg", pop3_dele},
    {"RSET", 0, 0, 0, "RSET", pop3_rset},
    {"NOOP", 0, 0, 0, "NOOP", pop3_noop},
    {"QUIT", 0, 0, 0, "QUIT", pop3_quit},
    {"CAPA", 0, 0, 0, "CAPA", pop3_capa},
    {NULL, 0, 0, 0, NULL, NULL},
};

/* pop3_table_find - VERB in TABLE (case-insensitive, RFC 1939 section 3), or NULL */
static const Pop3Command *
pop3_table_find(const Pop3Command *table, const char *verb)
{
    for (const Pop3Command *c = table; c->verb; c++)
        if (g_ascii_strcasecmp(c->verb, verb) == 0)
            return c;
    return NULL;
}

static const Pop3Command *
pop3_state_table(Pop3State state)
{
    switch (state) {
    case POP3_STATE_AUTHORIZATION: return pop3_authorization_commands;
    case POP3_STATE_TRANSACTION: return pop3_transaction_commands;
    default: return NULL;
    }
}

/* pop3_dispatch - run the command in s->line (NUL-terminated, no CRLF); the handler's result */
static Pop3Status
pop3_dispatch(Pop3Session *s, GString *out)
{
    char *line = s->line;
    char *sp = strchr(line, ' ');
    char *rest = sp ? sp + 1 : NULL;
    if (sp)
        *sp = '\0';
    const Pop3Command *table = pop3_state_table(s->state);
    const Pop3Command *cmd = table ? pop3_table_find(table, line) : NULL;
    if (!cmd) {
        if (pop3_table_find(pop3_authorization_commands, line) ||
            pop3_table_find(pop3_transaction_commands, line))
            return pop3_bad(out, "command not valid in this state");
        return pop3_bad(out, "unknown command");
    }

    Pop3Args a = {.argc = 0};
    if (cmd->flags & POP3_ARG_RAW) {
        if (rest && *rest)
            a.argv[a.argc++] = rest;
    } else {
        /* Arguments are separated by single spaces (RFC 1939 section 3); be lenient with runs. */
        char *save = NULL;
        for (char *t = rest ? strtok_r(rest, " ", &save) : NULL; t;
             t = strtok_r(NULL, " ", &save)) {
            if (a.argc == G_N_ELEMENTS(a.argv)) {
                a.argc++;
                break;
            }
            a.argv[a.argc++] = t;
        }
    }
    if (a.argc < cmd->min_args || a.argc > cmd->max_args)
        return pop3_bad(out, "syntax: %s", cmd->usage);
    if ((cmd->flags & POP3_ARG_MSG) && a.argc > 0) {
        Pop3Status st;
        a.msg = pop3_message_arg(s, a.argv[0], &a.n, out, &st);
        if (!a.msg)
            return st;
    }
    return cmd->proceed(s, &a, out);
}

/* pop3_session_more - up to about MAX more octets of a multi-line reply (RETR, TOP) onto OUT;
 * TRUE while more remains (pop3_core.more) */
static gboolean
pop3_session_more(gpointer core, GString *out, gsize max)
{
    Pop3Session *s = core;
    if (!pop3_msgout_active(&s->body))
        return FALSE;
    if (pop3_msgout_next(&s->body, out, max))
        return TRUE;
    const GError *e = pop3_msgout_failed(&s->body);
    if (e) {
        /* The +OK and part of the body are out: the only honest end is to close without the
         * terminator, so the client cannot take a truncated message for a whole one. */
        log_warn("pop3 %s: %s|%s: message %u cut short, closing: %s", s->peer, s->user,
                 s->mailbox, s->body_msg, e->message);
        pop3_msgout_clear(&s->body);
        s->body_is_retr = FALSE;
        s->body_failed = TRUE;
        pop3_enter_state(s, POP3_STATE_CLOSED);
        return FALSE;
    }
    if (s->body_is_retr) {
        s->retrieved++;
        s->retrieved_octets += s->body_octets;
    }
    s->body_is_retr = FALSE;
    return FALSE;
}

/* pop3_session_feed - one command line (pop3_core.feed) */
static gboolean
pop3_session_feed(gpointer core, const char *line, gsize len, ProtoLine status, GString *out)
{
    Pop3Session *s = core;
    /* The adapter should have drained a multi-line reply; if not, finish it first. */
    while (pop3_session_more(s, out, G_MAXSIZE))
        ;
    if (s->state == POP3_STATE_CLOSED)
        return TRUE;
    /* RFC 2595 / RFC 3207 6: nothing sent before the TLS handshake is taken as sent under it */
    if (s->proto.tls_pending)
        return FALSE;

    if (len > 0 && line[len - 1] == '\n')
        len--;
    if (len > 0 && line[len - 1] == '\r')
        len--;
    Pop3Status r;
    if (status == PROTO_LINE_TOO_LONG || len > POP3_LINE_MAX) {
        r = pop3_bad(out, "line too long");
    } else if (status == PROTO_LINE_NUL || memchr(line, '\0', len)) {
        r = pop3_bad(out, "NUL in command");
    } else if (len == 0) {
        r = pop3_bad(out, "empty command");
    } else {
        memcpy(s->line, line, len);
        s->line[len] = '\0';
        r = pop3_dispatch(s, out);
        OPENSSL_cleanse(s->line, sizeof s->line);   /* it may have held a password */
    }

    if (r == POP3_BAD)
        s->errors++;
    if (s->state != POP3_STATE_CLOSED && s->cfg.max_errors && s->errors >= s->cfg.max_errors) {
        log_info("pop3 %s: %u bad commands, closing", s->peer, s->errors);
        pop3_msgout_clear(&s->body);
        pop3_enter_state(s, POP3_STATE_CLOSED);
    }
    return s->state == POP3_STATE_CLOSED;
}

/* pop3_session_end_reason - NULL while the session goes on, else why it ended */
static const char *
pop3_session_end_reason(gpointer core)
{
    const Pop3Session *s = core;
    if (s->state != POP3_STATE_CLOSED)
        return NULL;
    if (s->body_failed)
        return "body-failed";
    return s->cfg.max_errors && s->errors >= s->cfg.max_errors ? "too-many-errors" : "quit";
}

void
pop3_session_stats(const Pop3Session *s, Pop3SessionStats *st)
{
    gboolean in = s->authenticated;
    *st = (Pop3SessionStats){
        .state = s->state,
        .user = in ? s->user : NULL,
        .mailbox = in ? s->mailbox : NULL,
        .messages = s->messages_at_login,
        .octets = s->octets_at_login,
        .retrieved = s->retrieved,
        .retrieved_octets = s->retrieved_octets,
        .deleted = s->deleted,
        .failed_logins = s->failed_logins,
        .errors = s->errors,
        .tls = s->proto.tls,
    };
}

Pop3Session *
pop3_session_new(const Pop3SessionConfig *cfg, Store *store, const char *peer)
{
    Pop3Session *s = g_new0(Pop3Session, 1);
    s->cfg = *cfg;
    if (s->cfg.batch_size == 0)
        s->cfg.batch_size = 1;
    if (!s->cfg.mailbox_delimiter)
        s->cfg.mailbox_delimiter = '|';
    s->store = store;
    s->peer = peer ? peer : "-";
    s->msgs = g_array_new(FALSE, FALSE, sizeof(Pop3Msg));
    pop3_enter_state(s, POP3_STATE_AUTHORIZATION);
    return s;
}

void
pop3_session_free(Pop3Session **sp)
{
    Pop3Session *s = sp ? *sp : NULL;
    if (!s)
        return;
    pop3_msgout_clear(&s->body);
    pop3_forget_user(s);
    g_array_free(s->msgs, TRUE);
    OPENSSL_cleanse(s->line, sizeof s->line);
    g_free(s);
    *sp = NULL;
}

/* ---- the protocol-core interface (src/util/proto.h) --------------------------------------- */

/* core_greeting - the "+OK" greeting sent when the connection opens */
static void
core_greeting(gpointer s, GString *out)
{
    (void)s;
    pop3_reply(out, TRUE, NULL, POP3_GREETING);
}

static gsize core_line_max(gpointer s) { (void)s; return POP3_LINE_MAX + 2; }   /* and its CRLF */
/* core_timeout - the autologout (RFC 1939 section 3): a last -ERR line, no UPDATE */
static void
core_timeout(gpointer core, GString *out)
{
    Pop3Session *s = core;
    pop3_msgout_clear(&s->body);
    if (s->state != POP3_STATE_CLOSED)
        pop3_reply(out, FALSE, NULL, "autologout: idle for too long, nothing deleted");
    pop3_enter_state(s, POP3_STATE_CLOSED);
}

static void core_free(gpointer s) { pop3_session_free((Pop3Session **)&s); }

/* core_log_fields - this session's part of the adapter's session-end line */
static void
core_log_fields(gpointer core, GString *head, GString *tail)
{
    const Pop3Session *s = core;
    g_string_append_printf(head, "user=%s mailbox=%s state=%s", s->authenticated ? s->user : "-",
                           s->authenticated ? s->mailbox : "-", pop3_state_name(s->state));
    g_string_append_printf(tail, "retrieved=%u/%" G_GUINT64_FORMAT " deleted=%u failed_logins=%u errors=%u",
                           s->retrieved, s->retrieved_octets, s->deleted, s->failed_logins, s->errors);
}

/* proto_take_delay_ms and friends find the ProtoState at the start of the session */
G_STATIC_ASSERT(G_STRUCT_OFFSET(Pop3Session, proto) == 0);

const ProtoCore pop3_core = {
    .name = "pop3",
    .tls_verb = "STLS",
    .busy_reply = "-ERR [SYS/TEMP] too many connections, try again later\r\n",
    .unavailable = "-ERR [SYS/TEMP] mail store unavailable\r\n",
    /* RFC 1939 section 3: "an autologout timer MUST be of at least 10 minutes' duration" */
    .min_idle_s = 600,
    .greeting = core_greeting,
    .feed = pop3_session_feed,
    .more = pop3_session_more,
    .take_delay_ms = proto_take_delay_ms,
    .line_max = core_line_max,
    .tls_pending = proto_tls_pending,
    .tls_started = pop3_tls_started,
    .timeout = core_timeout,
    .ended = pop3_session_end_reason,
    .log_fields = core_log_fields,
    .free = core_free,
};
