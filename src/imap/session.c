/*
 * session.c - the IMAP protocol core (RFC 9051, RFC 3501 clients; the list of what is implemented
 * is in session.h): the input (command lines, literals, APPEND's streamed message), the dispatch
 * table and every command but FETCH (fetch.c) and SEARCH (search.c).
 *
 * Input: a command arrives as a line, or as lines joined by literals. imap_session_feed takes a
 * line; when it ends with a literal announcement ("{N}" or "{N+}", RFC 9051 section 4.3, RFC 7888)
 * the core asks for N raw octets (imap_core.literal) and takes them in feed_literal, then the line
 * that continues the command. Small literals are kept in the command buffer in their canonical
 * form (parse.h); APPEND's message literal is streamed to the store. A command the core cannot
 * take whole (a literal or the command over its limit) is read to its end and dropped ("skipping")
 * with one reply, except that a synchronizing literal is refused before the client sends it.
 *
 * Dispatch applies every cross-cutting rule before a handler runs: the tag, a known command, the
 * command allowed in this state; handlers parse their arguments with parse.h and reply; a BAD reply
 * counts towards max_errors, as do failed logins.
 */
#include "imap/internal.h"

#include <stdarg.h>
#include <string.h>

#include <openssl/crypto.h>

#include "util/log.h"
#include "util/password.h"

#define IMAP_GREETING "CassMail IMAP server ready"
#define IMAP_DELIMITER "/"

/* ---- responses ----------------------------------------------------------------------------- */

void
imap_tagged(GString *out, const char *tag, const char *status, const char *fmt, ...)
{
    va_list ap;
    g_string_append_printf(out, "%s %s ", tag ? tag : "*", status);
    va_start(ap, fmt);
    g_string_append_vprintf(out, fmt, ap);
    va_end(ap);
    g_string_append(out, "\r\n");
}

ImapRc
imap_bad(const ImapCmd *c, GString *out, const char *fmt, ...)
{
    va_list ap;
    g_string_append_printf(out, "%s BAD ", c->tag);
    va_start(ap, fmt);
    g_string_append_vprintf(out, fmt, ap);
    va_end(ap);
    g_string_append(out, "\r\n");
    return IMAP_BAD;
}

/* imap_is_atom - whether S may be sent as an atom (and is not NIL) */
static gboolean
imap_is_atom(const char *s)
{
    if (!*s || g_ascii_strcasecmp(s, "NIL") == 0)
        return FALSE;
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= 0x1f || c >= 0x7f || strchr("(){ %*\"\\]", c))
            return FALSE;
    }
    return TRUE;
}

void
imap_append_astring(GString *out, const char *s)
{
    if (imap_is_atom(s))
        g_string_append(out, s);
    else
        mime_append_nstring(out, s, strlen(s));
}

gboolean
imap_temporary(const GError *e)
{
    return e && e->domain == STORE_ERROR && e->code == STORE_ERROR_TEMPORARY;
}

void
imap_store_failed(ImapSession *s, const ImapCmd *c, const GError *e, GString *out)
{
    log_warn("imap %s: %s %s failed: %s", s->peer, s->user ? s->user : "-", c->name,
             e ? e->message : "?");
    if (imap_temporary(e))
        imap_tagged(out, c->tag, "NO", "[UNAVAILABLE] %s failed, try again later", c->name);
    else if (e && e->domain == STORE_ERROR && e->code == STORE_ERROR_NOT_FOUND)
        imap_tagged(out, c->tag, "NO", "[NONEXISTENT] %s: no such mailbox or message", c->name);
    else if (e && e->domain == STORE_ERROR && e->code == STORE_ERROR_INVALID)
        imap_tagged(out, c->tag, "NO", "[CANNOT] %s: %s", c->name, e->message);
    else
        imap_tagged(out, c->tag, "NO", "[SERVERBUG] %s failed", c->name);
}

/* ---- state --------------------------------------------------------------------------------- */

const char *
imap_state_name(ImapState state)
{
    switch (state) {
    case IMAP_STATE_NOT_AUTHENTICATED: return "NOT-AUTHENTICATED";
    case IMAP_STATE_AUTHENTICATED: return "AUTHENTICATED";
    case IMAP_STATE_SELECTED: return "SELECTED";
    case IMAP_STATE_LOGOUT: return "LOGOUT";
    }
    return "?";
}

ImapState imap_session_state(const ImapSession *s) { return s->state; }

/* imap_enter_state - every state change goes through here; REASON when it is LOGOUT */
static void
imap_enter_state(ImapSession *s, ImapState next, const char *reason)
{
    if (next == IMAP_STATE_LOGOUT && !s->end_reason)
        s->end_reason = reason ? reason : "quit";
    s->state = next;
}

/* ---- capabilities (RFC 9051 section 6.1.1) ------------------------------------------------- */

static gboolean imap_auth_allowed(const ImapSession *s) { return s->proto.tls || s->cfg.plaintext_auth; }

/* imap_capabilities - the CAPABILITY list for the current state */
static void
imap_capabilities(const ImapSession *s, GString *out)
{
    /* No UIDPLUS: a new message gets its UID from a seal made settle_ms later (docs/imap.md),
     * so APPEND and COPY cannot answer APPENDUID/COPYUID at once; clients without UIDPLUS find
     * their uploads by searching, as mbsync does with its X-TUID header. */
    g_string_append(out, "IMAP4rev1 IMAP4rev2 LITERAL+ ID ENABLE IDLE NAMESPACE UNSELECT "
                         "MOVE SPECIAL-USE ESEARCH");
    if (s->state == IMAP_STATE_NOT_AUTHENTICATED) {
        g_string_append(out, " SASL-IR");
        if (s->cfg.starttls && !s->proto.tls)
            g_string_append(out, " STARTTLS");
        g_string_append(out, imap_auth_allowed(s) ? " AUTH=PLAIN" : " LOGINDISABLED");
    }
}

/* imap_cmd_capability - CAPABILITY (6.1.1) */
static ImapRc
imap_cmd_capability(ImapSession *s, ImapCmd *c, GString *out)
{
    g_string_append(out, "* CAPABILITY ");
    imap_capabilities(s, out);
    g_string_append(out, "\r\n");
    imap_tagged(out, c->tag, "OK", "CAPABILITY completed");
    return IMAP_DONE;
}

/* imap_cmd_noop - NOOP (6.1.2): in a mailbox, what changed; also IMAP4rev1's CHECK (RFC 3501
 * 6.4.1), which IMAP4rev2 dropped and clients such as mbsync still send: every change is already
 * in the store when its command completes, so a checkpoint is a NOOP */
static ImapRc
imap_cmd_noop(ImapSession *s, ImapCmd *c, GString *out)
{
    if (s->state == IMAP_STATE_SELECTED)
        imap_sync(s, out);
    if (s->state == IMAP_STATE_LOGOUT)
        return IMAP_DONE;
    imap_tagged(out, c->tag, "OK", "%s completed", c->name);
    return IMAP_DONE;
}

/* imap_cmd_logout - LOGOUT (6.1.3) */
static ImapRc
imap_cmd_logout(ImapSession *s, ImapCmd *c, GString *out)
{
    g_string_append(out, "* BYE CassMail IMAP server logging out\r\n");
    imap_tagged(out, c->tag, "OK", "LOGOUT completed");
    imap_enter_state(s, IMAP_STATE_LOGOUT, "quit");
    return IMAP_DONE;
}

/* imap_cmd_starttls - STARTTLS (6.2.1): "OK", then the adapter negotiates TLS */
static ImapRc
imap_cmd_starttls(ImapSession *s, ImapCmd *c, GString *out)
{
    if (s->proto.tls)
        return imap_bad(c, out, "TLS is already active");
    if (!s->cfg.starttls)
        return imap_bad(c, out, "STARTTLS is not available");
    imap_tagged(out, c->tag, "OK", "Begin TLS negotiation now");
    s->proto.tls_pending = TRUE;
    return IMAP_DONE;
}

/* ---- login (6.2.2, 6.2.3) ------------------------------------------------------------------ */

/* imap_login - check USER's PASSWORD (both may be anything the client sent) and enter the
 * authenticated state, or reply NO. Every path costs the same (see pop3_pass). */
static ImapRc
imap_login(ImapSession *s, const char *tag, const char *user, const char *password, GString *out)
{
    g_autofree char *name = g_ascii_strdown(user, -1);
    gboolean valid = store_name_valid(name);
    GError *user_error = NULL, *pw_error = NULL;
    gboolean exists = FALSE;
    char *hash = NULL;
    if (valid) {
        store_user_exists(s->store, name, &exists, &user_error);
        store_password_get(s->store, name, &hash, &pw_error);
    }
    gboolean ok, had_hash = hash != NULL;
    if (hash) {
        ok = password_verify(password, hash);
        OPENSSL_cleanse(hash, strlen(hash));
        g_free(hash);
    } else {
        password_verify_dummy(password);
        ok = FALSE;
    }
    /* Only "no such user" and "no password" are verdicts; any other store failure leaves the
     * password unchecked, as in POP3 and SMTP. */
    const GError *unchecked = store_error_unanswered(user_error) ? user_error
                              : store_error_unanswered(pw_error) ? pw_error
                                                                 : NULL;
    if (unchecked) {
        log_warn("imap %s: login for %s not checked: %s", s->peer, name, unchecked->message);
        g_clear_error(&user_error);
        g_clear_error(&pw_error);
        imap_tagged(out, tag, "NO", "[UNAVAILABLE] authentication temporarily unavailable");
        return IMAP_DONE;
    }
    const char *why = !valid || !exists ? "unknown user"
                      : !had_hash       ? "no password set"
                                        : "wrong password";
    g_clear_error(&user_error);
    g_clear_error(&pw_error);
    if (!ok || !exists) {
        log_info("imap %s: failed login for %.64s (%s)", s->peer, valid ? name : "(invalid name)",
                 why);
        s->failed_logins++;
        s->proto.delay_ms = s->cfg.login_delay_ms;
        imap_tagged(out, tag, "NO", "[AUTHENTICATIONFAILED] Authentication failed");
        return IMAP_BAD;
    }
    s->user = g_steal_pointer(&name);
    imap_enter_state(s, IMAP_STATE_AUTHENTICATED, NULL);
    log_info("imap %s: login %s", s->peer, s->user);
    g_string_append_printf(out, "%s OK [CAPABILITY ", tag);
    imap_capabilities(s, out);
    g_string_append(out, "] Logged in\r\n");
    return IMAP_DONE;
}

/* imap_cmd_login - LOGIN user password (6.2.3) */
static ImapRc
imap_cmd_login(ImapSession *s, ImapCmd *c, GString *out)
{
    g_autofree char *user = NULL;
    char *password = NULL;
    if (!imap_parse_sp(&c->p) || !(user = imap_parse_astring(&c->p)) || !imap_parse_sp(&c->p) ||
        !(password = imap_parse_astring(&c->p)) || !imap_parse_end(&c->p)) {
        if (password) {
            OPENSSL_cleanse(password, strlen(password));
            g_free(password);
        }
        return imap_bad(c, out, "syntax: LOGIN user password");
    }
    ImapRc st;
    if (!imap_auth_allowed(s)) {
        imap_tagged(out, c->tag, "NO", "[PRIVACYREQUIRED] LOGIN is not allowed without TLS%s",
                    s->cfg.starttls ? ", use STARTTLS first" : "");
        st = IMAP_DONE;
    } else {
        st = imap_login(s, c->tag, user, password, out);
    }
    OPENSSL_cleanse(password, strlen(password));
    g_free(password);
    return st;
}

/* imap_sasl_plain - the PLAIN response (RFC 4616) in base64 B64: log in or reply NO/BAD */
static ImapRc
imap_sasl_plain(ImapSession *s, const char *tag, const char *b64, GString *out)
{
    gsize n = strlen(b64);
    if (n == 0) {
        imap_tagged(out, tag, "BAD", "malformed PLAIN response");
        return IMAP_BAD;
    }
    gboolean valid = n % 4 == 0;
    for (gsize i = 0; valid && i < n; i++)
        valid = g_ascii_isalnum(b64[i]) || b64[i] == '+' || b64[i] == '/' ||
                (b64[i] == '=' && i >= n - 2 && (i == n - 1 || b64[n - 1] == '='));
    if (!valid) {
        imap_tagged(out, tag, "BAD", "invalid base64 in the PLAIN response");
        return IMAP_BAD;
    }
    gsize len;
    guchar *raw = g_base64_decode(b64, &len);
    /* authzid NUL authcid NUL passwd */
    char *authzid = (char *)raw, *authcid = NULL, *passwd = NULL;
    guchar *z1 = memchr(raw, '\0', len);
    guchar *z2 = z1 ? memchr(z1 + 1, '\0', len - (gsize)(z1 + 1 - raw)) : NULL;
    ImapRc st;
    if (!z1 || !z2 || memchr(z2 + 1, '\0', len - (gsize)(z2 + 1 - raw))) {
        imap_tagged(out, tag, "BAD", "malformed PLAIN response");
        st = IMAP_BAD;
    } else {
        authcid = (char *)z1 + 1;
        passwd = g_strndup((char *)z2 + 1, len - (gsize)(z2 + 1 - raw));
        if (*authzid && strcmp(authzid, authcid) != 0) {
            imap_tagged(out, tag, "NO", "[AUTHORIZATIONFAILED] cannot act as another user");
            st = IMAP_BAD;
        } else {
            st = imap_login(s, tag, authcid, passwd, out);
        }
        OPENSSL_cleanse(passwd, strlen(passwd));
        g_free(passwd);
    }
    OPENSSL_cleanse(raw, len);
    g_free(raw);
    return st;
}

/* imap_cmd_authenticate - AUTHENTICATE PLAIN [initial-response] (6.2.2, RFC 4959) */
static ImapRc
imap_cmd_authenticate(ImapSession *s, ImapCmd *c, GString *out)
{
    g_autofree char *mech = NULL;
    if (!imap_parse_sp(&c->p) || !(mech = imap_parse_atom(&c->p)))
        return imap_bad(c, out, "syntax: AUTHENTICATE mechanism [initial-response]");
    char *ir = NULL;
    if (imap_parse_sp(&c->p)) {
        gsize start = c->p.pos;
        while (c->p.pos < c->p.len && c->p.buf[c->p.pos] != ' ')
            c->p.pos++;
        ir = g_strndup(c->p.buf + start, c->p.pos - start);
    }
    ImapRc st = IMAP_DONE;
    if (!imap_parse_end(&c->p) || (ir && !*ir)) {
        st = imap_bad(c, out, "syntax: AUTHENTICATE mechanism [initial-response]");
    } else if (g_ascii_strcasecmp(mech, "PLAIN") != 0) {
        imap_tagged(out, c->tag, "NO", "[CANNOT] unsupported mechanism");
    } else if (!imap_auth_allowed(s)) {
        imap_tagged(out, c->tag, "NO", "[PRIVACYREQUIRED] authentication is not allowed without TLS%s",
                    s->cfg.starttls ? ", use STARTTLS first" : "");
    } else if (!ir) {
        g_string_append(out, "+ \r\n");
        s->auth_tag = g_strdup(c->tag);
    } else if (strcmp(ir, "=") == 0) {
        st = imap_sasl_plain(s, c->tag, "", out);
    } else {
        st = imap_sasl_plain(s, c->tag, ir, out);
    }
    if (ir) {
        OPENSSL_cleanse(ir, strlen(ir));
        g_free(ir);
    }
    return st;
}

/* imap_auth_response - the client's line after AUTHENTICATE PLAIN's "+ " (RFC 9051 6.2.2) */
static ImapRc
imap_auth_response(ImapSession *s, char *line, GString *out)
{
    g_autofree char *tag = g_steal_pointer(&s->auth_tag);
    if (strcmp(line, "*") == 0) {
        imap_tagged(out, tag, "BAD", "AUTHENTICATE cancelled");
        return IMAP_BAD;
    }
    return imap_sasl_plain(s, tag, line, out);
}

/* ---- commands of any authenticated state ----------------------------------------------------- */

/* imap_cmd_enable - ENABLE capability... (RFC 5161; IMAP4rev2 is the one that changes anything) */
static ImapRc
imap_cmd_enable(ImapSession *s, ImapCmd *c, GString *out)
{
    g_autoptr(GString) enabled = g_string_new(NULL);
    if (!imap_parse_sp(&c->p))
        return imap_bad(c, out, "syntax: ENABLE capability...");
    do {
        g_autofree char *cap = imap_parse_atom(&c->p);
        if (!cap)
            return imap_bad(c, out, "syntax: ENABLE capability...");
        if (g_ascii_strcasecmp(cap, "IMAP4rev2") == 0 && !s->rev2) {
            s->rev2 = TRUE;
            g_string_append(enabled, " IMAP4rev2");
        }
    } while (imap_parse_sp(&c->p));
    if (!imap_parse_end(&c->p))
        return imap_bad(c, out, "syntax: ENABLE capability...");
    g_string_append_printf(out, "* ENABLED%s\r\n", enabled->str);
    imap_tagged(out, c->tag, "OK", "ENABLE completed");
    return IMAP_DONE;
}

/* imap_cmd_namespace - NAMESPACE (RFC 2342): one personal namespace */
static ImapRc
imap_cmd_namespace(ImapSession *s, ImapCmd *c, GString *out)
{
    (void)s;
    if (!imap_parse_end(&c->p))
        return imap_bad(c, out, "syntax: NAMESPACE");
    g_string_append(out, "* NAMESPACE ((\"\" \"" IMAP_DELIMITER "\")) NIL NIL\r\n");
    imap_tagged(out, c->tag, "OK", "NAMESPACE completed");
    return IMAP_DONE;
}

/* imap_cmd_id - ID ( "(" *(string SP nstring) ")" / NIL ) (RFC 2971): what the client says is
 * read and dropped; we say who we are */
static ImapRc
imap_cmd_id(ImapSession *s, ImapCmd *c, GString *out)
{
    (void)s;
    ImapParser *p = &c->p;
    gboolean ok = imap_parse_sp(p);
    if (ok) {
        g_autofree char *nil = NULL;
        if (imap_parse_char(p, '(')) {
            guint pairs = 0;
            while (ok && !imap_parse_char(p, ')')) {
                if (pairs && !imap_parse_sp(p)) {
                    ok = FALSE;
                    break;
                }
                g_autofree char *k = imap_parse_string(p, NULL);
                g_autofree char *v = NULL;
                ok = k && imap_parse_sp(p) && ++pairs <= 30;
                if (ok && !(v = imap_parse_string(p, NULL))) {
                    g_autofree char *a = imap_parse_atom(p);
                    ok = a && g_ascii_strcasecmp(a, "NIL") == 0;
                }
            }
        } else {
            nil = imap_parse_atom(p);
            ok = nil && g_ascii_strcasecmp(nil, "NIL") == 0;
        }
    }
    if (!ok || !imap_parse_end(p))
        return imap_bad(c, out, "syntax: ID (\"name\" \"value\" ...) or ID NIL");
    g_string_append(out, "* ID (\"name\" \"CassMail\" \"vendor\" \"CassMail\")\r\n");
    imap_tagged(out, c->tag, "OK", "ID completed");
    return IMAP_DONE;
}

/* imap_cmd_idle - IDLE (RFC 2177): "+ idling"; updates come from tick() until DONE */
static ImapRc
imap_cmd_idle(ImapSession *s, ImapCmd *c, GString *out)
{
    if (!imap_parse_end(&c->p))
        return imap_bad(c, out, "syntax: IDLE");
    if (s->state == IMAP_STATE_SELECTED)
        imap_sync(s, out);
    if (s->state == IMAP_STATE_LOGOUT)
        return IMAP_DONE;
    g_string_append(out, "+ idling\r\n");
    s->idle_tag = g_strdup(c->tag);
    return IMAP_DONE;
}

/* imap_idle_line - a line while idling: DONE ends IDLE, anything else is an error that ends it */
static ImapRc
imap_idle_line(ImapSession *s, const char *line, GString *out)
{
    g_autofree char *tag = g_steal_pointer(&s->idle_tag);
    if (g_ascii_strcasecmp(line, "DONE") == 0) {
        imap_tagged(out, tag, "OK", "IDLE terminated");
        return IMAP_DONE;
    }
    imap_tagged(out, tag, "BAD", "expected DONE");
    return IMAP_BAD;
}

/* ---- dispatch -------------------------------------------------------------------------------- */

enum {
    S_NOAUTH = 1 << IMAP_STATE_NOT_AUTHENTICATED,
    S_AUTH = 1 << IMAP_STATE_AUTHENTICATED,
    S_SEL = 1 << IMAP_STATE_SELECTED,
    S_ANY = S_NOAUTH | S_AUTH | S_SEL,
    S_IN = S_AUTH | S_SEL,
};

typedef struct {
    const char *name;
    guint states;
    gboolean uid;            /* has a UID form */
    ImapHandler *proceed;
} ImapCommand;

static const ImapCommand imap_commands[] = {
    {"CAPABILITY", S_ANY, FALSE, imap_cmd_capability},
    {"NOOP", S_ANY, FALSE, imap_cmd_noop},
    {"LOGOUT", S_ANY, FALSE, imap_cmd_logout},
    {"ID", S_ANY, FALSE, imap_cmd_id},
    {"STARTTLS", S_NOAUTH, FALSE, imap_cmd_starttls},
    {"LOGIN", S_NOAUTH, FALSE, imap_cmd_login},
    {"AUTHENTICATE", S_NOAUTH, FALSE, imap_cmd_authenticate},
    {"ENABLE", S_IN, FALSE, imap_cmd_enable},
    {"NAMESPACE", S_IN, FALSE, imap_cmd_namespace},
    {"IDLE", S_IN, FALSE, imap_cmd_idle},
    {"SELECT", S_IN, FALSE, imap_cmd_select},
    {"EXAMINE", S_IN, FALSE, imap_cmd_select},
    {"CREATE", S_IN, FALSE, imap_cmd_manage},
    {"DELETE", S_IN, FALSE, imap_cmd_manage},
    {"RENAME", S_IN, FALSE, imap_cmd_manage},
    {"SUBSCRIBE", S_IN, FALSE, imap_cmd_subscribe},
    {"UNSUBSCRIBE", S_IN, FALSE, imap_cmd_subscribe},
    {"LIST", S_IN, FALSE, imap_cmd_list},
    {"LSUB", S_IN, FALSE, imap_cmd_list},
    {"STATUS", S_IN, FALSE, imap_cmd_status},
    {"APPEND", S_IN, FALSE, imap_cmd_append},
    {"CHECK", S_SEL, FALSE, imap_cmd_noop},
    {"CLOSE", S_SEL, FALSE, imap_cmd_close},
    {"UNSELECT", S_SEL, FALSE, imap_cmd_close},
    {"EXPUNGE", S_SEL, TRUE, imap_cmd_expunge},
    {"SEARCH", S_SEL, TRUE, imap_cmd_search},
    {"FETCH", S_SEL, TRUE, imap_cmd_fetch},
    {"STORE", S_SEL, TRUE, imap_cmd_store},
    {"COPY", S_SEL, TRUE, imap_cmd_copy},
    {"MOVE", S_SEL, TRUE, imap_cmd_copy},
    {NULL, 0, FALSE, NULL},
};

static const ImapCommand *
imap_command_find(const char *name)
{
    for (const ImapCommand *c = imap_commands; c->name; c++)
        if (g_ascii_strcasecmp(c->name, name) == 0)
            return c;
    return NULL;
}

/* imap_dispatch - run the command gathered in s->cmd */
static ImapRc
imap_dispatch(ImapSession *s, GString *out)
{
    ImapCmd c = {0};
    imap_parser_init(&c.p, s->cmd->str, s->cmd->len);
    g_autofree char *tag = imap_parse_tag(&c.p);
    if (!tag || !imap_parse_sp(&c.p)) {
        imap_tagged(out, "*", "BAD", tag ? "missing command" : "missing or invalid tag");
        return IMAP_BAD;
    }
    c.tag = tag;
    g_autofree char *verb = imap_parse_atom(&c.p);
    c.name = "command";
    if (!verb)
        return imap_bad(&c, out, "missing command");
    g_autofree char *name = g_ascii_strup(verb, -1);
    if (strcmp(name, "UID") == 0) {
        g_free(verb);
        verb = NULL;
        if (!imap_parse_sp(&c.p) || !(verb = imap_parse_atom(&c.p)))
            return imap_bad(&c, out, "syntax: UID FETCH|STORE|COPY|MOVE|SEARCH|EXPUNGE ...");
        g_free(name);
        name = g_strconcat("UID ", verb, NULL);
        for (char *q = name; *q; q++)
            *q = g_ascii_toupper(*q);
        c.uid = TRUE;
    }
    c.name = name;
    const ImapCommand *cmd = imap_command_find(c.uid ? name + 4 : name);
    if (!cmd || (c.uid && !cmd->uid))
        return imap_bad(&c, out, "unknown command");
    if (!(cmd->states & (1u << s->state))) {
        const char *why = s->state == IMAP_STATE_NOT_AUTHENTICATED ? "log in first"
                          : cmd->states == S_NOAUTH                ? "already logged in"
                                                                   : "select a mailbox first";
        return imap_bad(&c, out, "%s not allowed now: %s", name, why);
    }
    s->commands++;
    return cmd->proceed(s, &c, out);
}

/* ---- input ----------------------------------------------------------------------------------- */

/* imap_literal_at_end - whether LINE (without its CRLF) ends in a literal announcement outside a
 * quoted string: its octets *N, non-synchronizing *PLUS, and where it starts *AT. *HUGE: it
 * announced more than 64 bits can count. */
static gboolean
imap_literal_at_end(const char *line, gsize len, guint64 *n, gboolean *plus, gsize *at,
                    gboolean *huge)
{
    gboolean quoted = FALSE;
    for (gsize i = 0; i < len; i++) {
        if (quoted) {
            if (line[i] == '\\')
                i++;
            else if (line[i] == '"')
                quoted = FALSE;
        } else if (line[i] == '"') {
            quoted = TRUE;
        }
    }
    if (quoted || len < 3 || line[len - 1] != '}')
        return FALSE;
    gsize j = len - 1;
    *plus = line[j - 1] == '+';
    if (*plus)
        j--;
    gsize end = j;
    while (j > 0 && g_ascii_isdigit(line[j - 1]))
        j--;
    if (j == end || j == 0 || line[j - 1] != '{')
        return FALSE;
    *at = j - 1;
    *huge = end - j > 19;
    guint64 v = 0;
    for (gsize k = j; k < end && !*huge; k++)
        v = v * 10 + (guint64)(line[k] - '0');
    *n = v;
    return TRUE;
}

/* imap_cmd_tag - the tag of the command gathered so far ("*" when it has none) */
static char *
imap_cmd_tag(const ImapSession *s)
{
    ImapParser p;
    imap_parser_init(&p, s->cmd->str, s->cmd->len);
    char *tag = imap_parse_tag(&p);
    return tag && imap_parse_sp(&p) ? tag : (g_free(tag), g_strdup("*"));
}

/* imap_command_reset - forget the command gathered so far */
static void
imap_command_reset(ImapSession *s)
{
    OPENSSL_cleanse(s->cmd->str, s->cmd->len);   /* it may have held a password */
    g_string_truncate(s->cmd, 0);
    s->literal_left = 0;
    s->skipping = FALSE;
    g_string_truncate(s->skip_reply, 0);
    imap_upload_free(&s->append);
}

/* imap_tls_started - over TLS, with no command half gathered (RFC 9051 6.2.1) */
static void
imap_tls_started(gpointer core)
{
    proto_tls_on(core);
    imap_command_reset(core);
}

/* imap_skip - drop the rest of the command being gathered, answering it with a tagged STATUS
 * and TEXT once it has ended */
static void
imap_skip(ImapSession *s, const char *status, const char *text)
{
    g_autofree char *tag = imap_cmd_tag(s);
    s->skipping = TRUE;
    g_string_truncate(s->skip_reply, 0);
    imap_tagged(s->skip_reply, tag, status, "%s", text);
}

/* imap_skip_end - the command being skipped has ended: its reply */
static ImapRc
imap_skip_end(ImapSession *s, GString *out)
{
    gboolean bad = strstr(s->skip_reply->str, " BAD ") != NULL;
    g_string_append_len(out, s->skip_reply->str, s->skip_reply->len);
    imap_command_reset(s);
    return bad ? IMAP_BAD : IMAP_DONE;
}

/* imap_take_line - one line of the command being gathered (without its line end): more of the
 * command, a literal announced at its end, or the command complete and run */
static ImapRc
imap_take_line(ImapSession *s, const char *line, gsize len, GString *out)
{
    guint64 n = 0;
    gboolean plus = FALSE, huge = FALSE;
    gsize at = 0;
    gboolean literal = imap_literal_at_end(line, len, &n, &plus, &at, &huge);

    if (s->append && s->append->done) {
        /* the line after APPEND's message: nothing more may follow (no MULTIAPPEND) */
        if (len != 0) {
            if (literal && !plus) {
                imap_skip(s, "BAD", "APPEND takes one message");
                return imap_skip_end(s, out);
            }
            imap_skip(s, "BAD", "APPEND takes one message");
            if (literal) {
                s->literal_left = n;
                return IMAP_DONE;
            }
            return imap_skip_end(s, out);
        }
        ImapRc st = imap_upload_finish(s, out);
        imap_command_reset(s);
        return st;
    }
    if (s->skipping) {
        if (!literal)
            return imap_skip_end(s, out);
        if (!plus || huge)
            return imap_skip_end(s, out);   /* the client waits for "+", which it will not get */
        s->literal_left = n;
        return IMAP_DONE;
    }
    if (s->cmd->len + len > IMAP_COMMAND_MAX) {
        g_string_append_len(s->cmd, line, MIN(len, 64));
        imap_skip(s, "BAD", "[TOOBIG] command too long");
        if (literal && plus && !huge) {
            s->literal_left = n;
            return IMAP_DONE;
        }
        return imap_skip_end(s, out);
    }
    g_string_append_len(s->cmd, line, literal ? at : len);
    if (!literal) {
        ImapRc st = imap_dispatch(s, out);
        imap_command_reset(s);
        return st;
    }
    if (imap_upload_starts(s)) {
        ImapRc st = imap_upload_begin(s, n, plus, huge, out);
        if (st != IMAP_DONE || !s->append) {
            if (!s->skipping)
                imap_command_reset(s);
        }
        return st;
    }
    if (huge || n > IMAP_LITERAL_MAX) {
        if (!plus || huge) {
            g_autofree char *tag = imap_cmd_tag(s);
            imap_tagged(out, tag, "BAD", "[TOOBIG] literal too large");
            imap_command_reset(s);
            return IMAP_BAD;
        }
        imap_skip(s, "BAD", "[TOOBIG] literal too large");
        s->literal_left = n;
        return IMAP_DONE;
    }
    g_string_append_printf(s->cmd, "{%" G_GUINT64_FORMAT "}\r\n", n);
    s->literal_left = n;
    if (!plus)
        g_string_append(out, "+ Ready for literal data\r\n");
    return IMAP_DONE;
}

/* imap_count - the error count after a command; TRUE when it closed the session */
static gboolean
imap_count(ImapSession *s, ImapRc st, GString *out)
{
    if (st == IMAP_BAD)
        s->errors++;
    /* a failed login is a BAD result too: it counts once */
    if (s->state != IMAP_STATE_LOGOUT && s->cfg.max_errors && s->errors >= s->cfg.max_errors) {
        log_info("imap %s: %u bad commands and %u failed logins, closing", s->peer, s->errors,
                 s->failed_logins);
        g_string_append(out, "* BYE Too many errors\r\n");
        imap_enter_state(s, IMAP_STATE_LOGOUT, "too-many-errors");
    }
    return s->state == IMAP_STATE_LOGOUT;
}

static gboolean
imap_session_feed(gpointer core, const char *line, gsize len, ProtoLine status, GString *out)
{
    ImapSession *s = core;
    if (s->fetch)
        while (imap_fetch_more(s, out, G_MAXSIZE))
            ;
    if (s->state == IMAP_STATE_LOGOUT)
        return TRUE;
    if (s->proto.tls_pending)
        return FALSE;   /* RFC 9051 6.2.1: nothing sent before the handshake counts */
    if (s->literal_left) {
        /* the adapter should have used feed_literal; take the line as literal octets */
        return imap_core.feed_literal(s, line, MIN(len, s->literal_left), out);
    }
    if (len > 0 && line[len - 1] == '\n')
        len--;
    if (len > 0 && line[len - 1] == '\r')
        len--;

    /* a line that cannot be taken ends what it belonged to: the command, AUTHENTICATE or IDLE */
    const char *refused = status == PROTO_LINE_TOO_LONG || len + 2 > IMAP_LINE_MAX
                              ? "[TOOBIG] line too long"
                          : status == PROTO_LINE_NUL || memchr(line, '\0', len)
                              ? "NUL in command line"
                              : NULL;
    ImapRc st;
    if (refused) {
        g_autofree char *tag = s->cmd->len ? imap_cmd_tag(s) : NULL;
        g_autofree char *pending = g_steal_pointer(&s->auth_tag);
        if (!pending)
            pending = g_steal_pointer(&s->idle_tag);
        imap_tagged(out, pending ? pending : tag ? tag : "*", "BAD", "%s", refused);
        imap_command_reset(s);
        st = IMAP_BAD;
    } else if (s->auth_tag || s->idle_tag) {
        char *copy = g_strndup(line, len);
        st = s->auth_tag ? imap_auth_response(s, copy, out) : imap_idle_line(s, copy, out);
        OPENSSL_cleanse(copy, len);
        g_free(copy);
    } else if (len == 0 && s->cmd->len == 0 && !s->skipping && !s->append) {
        imap_tagged(out, "*", "BAD", "empty command line");
        st = IMAP_BAD;
    } else {
        st = imap_take_line(s, line, len, out);
    }
    return imap_count(s, st, out);
}

/* imap_session_feed_literal - LEN octets of the announced literal */
static gboolean
imap_session_feed_literal(gpointer core, const char *buf, gsize len, GString *out)
{
    ImapSession *s = core;
    if (s->state == IMAP_STATE_LOGOUT)
        return TRUE;
    len = (gsize)MIN((guint64)len, s->literal_left);
    s->literal_left -= len;
    if (s->skipping)
        return FALSE;
    if (s->append && !s->append->done) {
        imap_upload_write(s, buf, len);
        if (s->literal_left == 0)
            s->append->done = TRUE;
        return FALSE;
    }
    (void)out;
    g_string_append_len(s->cmd, buf, len);
    return FALSE;
}

/* ---- the session ----------------------------------------------------------------------------- */

ImapSession *
imap_session_new(const ImapSessionConfig *ic, Store *store, const char *peer)
{
    ImapSession *s = g_new0(ImapSession, 1);
    s->cfg = *ic;
    if (s->cfg.idle_poll_ms == 0)
        s->cfg.idle_poll_ms = 5000;
    s->store = store;
    s->peer = peer ? peer : "-";
    s->cmd = g_string_new(NULL);
    s->skip_reply = g_string_new(NULL);
    imap_enter_state(s, IMAP_STATE_NOT_AUTHENTICATED, NULL);
    return s;
}

void
imap_session_free(ImapSession **sp)
{
    ImapSession *s = sp ? *sp : NULL;
    if (!s)
        return;
    imap_fetch_free(&s->fetch);
    imap_command_reset(s);
    imap_unselect(s);
    g_string_free(s->cmd, TRUE);
    g_string_free(s->skip_reply, TRUE);
    g_free(s->auth_tag);
    g_free(s->idle_tag);
    g_free(s->user);
    g_free(s);
    *sp = NULL;
}

/* ---- the protocol-core interface (src/util/proto.h) ----------------------------------------- */

static void
core_greeting(gpointer core, GString *out)
{
    ImapSession *s = core;
    g_string_append(out, "* OK [CAPABILITY ");
    imap_capabilities(s, out);
    g_string_append(out, "] " IMAP_GREETING "\r\n");
}

static gboolean core_more(gpointer s, GString *out, gsize max)
{ return ((ImapSession *)s)->fetch ? imap_fetch_more(s, out, max) : FALSE; }

static gsize core_line_max(gpointer s) { (void)s; return IMAP_LINE_MAX; }
static gsize core_literal(gpointer s)
{ return (gsize)MIN(((ImapSession *)s)->literal_left, (guint64)G_MAXSIZE); }

static guint
core_tick_ms(gpointer core)
{
    ImapSession *s = core;
    return s->idle_tag && s->state == IMAP_STATE_SELECTED ? s->cfg.idle_poll_ms : 0;
}

static void
core_tick(gpointer core, GString *out)
{
    ImapSession *s = core;
    if (s->idle_tag && s->state == IMAP_STATE_SELECTED)
        imap_sync(s, out);
}

static void
core_timeout(gpointer core, GString *out)
{
    ImapSession *s = core;
    imap_fetch_free(&s->fetch);
    if (s->state != IMAP_STATE_LOGOUT)
        g_string_append(out, "* BYE Autologout; idle for too long\r\n");
    imap_enter_state(s, IMAP_STATE_LOGOUT, "idle-timeout");
}

static const char *
core_ended(gpointer core)
{
    ImapSession *s = core;
    return s->state == IMAP_STATE_LOGOUT ? s->end_reason : NULL;
}

static void core_free(gpointer s) { imap_session_free((ImapSession **)&s); }

static void
core_log_fields(gpointer core, GString *head, GString *tail)
{
    const ImapSession *s = core;
    g_string_append_printf(head, "user=%s mailbox=%s state=%s", s->user ? s->user : "-",
                           s->mailbox ? s->mailbox : "-", imap_state_name(s->state));
    g_string_append_printf(tail, "commands=%u fetched=%" G_GUINT64_FORMAT " appended=%u "
                           "failed_logins=%u errors=%u", s->commands, s->fetched_octets,
                           s->appended, s->failed_logins, s->errors);
}

/* proto_take_delay_ms and friends find the ProtoState at the start of the session */
G_STATIC_ASSERT(G_STRUCT_OFFSET(ImapSession, proto) == 0);

const ProtoCore imap_core = {
    .name = "imap",
    .tls_verb = "STARTTLS",
    .busy_reply = "* BYE [UNAVAILABLE] too many connections, try again later\r\n",
    .unavailable = "* BYE [UNAVAILABLE] mail store unavailable\r\n",
    .tls_on_connect = TRUE,   /* port 993 */
    /* RFC 9051 5.4: an inactivity autologout timer after authentication "MUST be at least 30
     * minutes"; one timer serves the whole session here */
    .min_idle_s = 1800,
    .greeting = core_greeting,
    .feed = imap_session_feed,
    .more = core_more,
    .take_delay_ms = proto_take_delay_ms,
    .line_max = core_line_max,
    .literal = core_literal,
    .feed_literal = imap_session_feed_literal,
    .tick_ms = core_tick_ms,
    .tick = core_tick,
    .tls_pending = proto_tls_pending,
    .tls_started = imap_tls_started,
    .timeout = core_timeout,
    .ended = core_ended,
    .log_fields = core_log_fields,
    .free = core_free,
};
