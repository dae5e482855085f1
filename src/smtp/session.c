/*
 * session.c - the SMTP protocol core (see session.h for the contract with the adapter and the
 * policies on text lines; RFC 5321, 1870, 2034/3463, 2920, 6152).
 *
 * Anatomy of a command line, all in smtp_core.feed (smtp_feed):
 *   1. rules that hold for every command: over-long line (500), NUL (500), unknown verb (500),
 *      the states a verb is allowed in (503), arity (501);
 *   2. the verb's check step: parses and validates its argument, may refuse by policy (SIZE 552,
 *      relay 554, recipient limit 452); it changes nothing;
 *   3. the verb's proceed step: asks the store, changes the session, replies.
 * A verb that only answers (NOOP, VRFY, HELP, those not implemented) has no steps: its reply
 * stands in the command table.
 * Bad commands (1, and syntax errors of 2) count towards max_errors; at the limit the session is
 * answered 421 and closed. Every reply goes through smtp_reply_line(); every state change through
 * smtp_enter_state().
 *
 * Two things are not commands: the lines of an AUTH exchange (smtp_auth_line, RFC 4954 4), and
 * whatever arrives between the 220 to STARTTLS and the adapter's smtp_core.tls_started()
 * (dropped, RFC 3207 6). smtp_feed routes them before the command rules apply.
 */
#include "smtp/session.h"

#include <stdarg.h>
#include <string.h>

#include <openssl/crypto.h>

#include "util/log.h"
#include "util/password.h"
#include "util/text.h"

/* --- enhanced status codes (RFC 3463) ------------------------------------------------------- */

/* The subject.detail part; the class digit is the reply code's first digit, so a 5xx always
 * carries 5.x.x and a 4xx 4.x.x. */
typedef enum {
    SMTP_ESC_NONE,             /* no enhanced code: 220, 354, EHLO/HELO lines (RFC 2034 3) */
    SMTP_ESC_OTHER,            /* X.0.0 */
    SMTP_ESC_SENDER_OK,        /* X.1.0 other address status */
    SMTP_ESC_RCPT_OK,          /* X.1.5 destination address valid */
    SMTP_ESC_BAD_MAILBOX,      /* X.1.1 bad destination mailbox address */
    SMTP_ESC_BAD_RCPT_SYNTAX,  /* X.1.3 bad destination mailbox address syntax */
    SMTP_ESC_BAD_SENDER_SYNTAX,/* X.1.7 bad sender's mailbox address syntax */
    SMTP_ESC_SYSTEM,           /* X.3.0 other or undefined mail system status */
    SMTP_ESC_TOO_BIG,          /* X.3.4 message too big for system */
    SMTP_ESC_NO_ANSWER,        /* X.4.1 no answer from host (the smarthost) */
    SMTP_ESC_CONN_TIMEOUT,     /* X.4.2 bad connection */
    SMTP_ESC_INVALID_COMMAND,  /* X.5.1 invalid command */
    SMTP_ESC_SYNTAX,           /* X.5.2 syntax error */
    SMTP_ESC_TOO_MANY_RCPTS,   /* X.5.3 too many recipients */
    SMTP_ESC_INVALID_ARGS,     /* X.5.4 invalid command arguments */
    SMTP_ESC_CANNOT_VRFY,      /* X.5.2 as sendmail answers VRFY with 252 */
    SMTP_ESC_MEDIA,            /* X.6.0 other or undefined media error */
    SMTP_ESC_NOT_AUTHORIZED,   /* X.7.1 delivery not authorized (relay) */
    SMTP_ESC_SECURITY,         /* X.7.0 other security or policy status (AUTH 235, 454) */
    SMTP_ESC_AUTH_INVALID,     /* X.7.8 authentication credentials invalid (RFC 4954 6) */
    SMTP_ESC_ENCRYPTION_NEEDED,/* X.7.11 encryption required for the mechanism (RFC 4954 6) */
} SmtpEsc;

static const char *const smtp_esc_text[] = {
    [SMTP_ESC_NONE] = NULL,
    [SMTP_ESC_OTHER] = "0.0",
    [SMTP_ESC_SENDER_OK] = "1.0",
    [SMTP_ESC_RCPT_OK] = "1.5",
    [SMTP_ESC_BAD_MAILBOX] = "1.1",
    [SMTP_ESC_BAD_RCPT_SYNTAX] = "1.3",
    [SMTP_ESC_BAD_SENDER_SYNTAX] = "1.7",
    [SMTP_ESC_SYSTEM] = "3.0",
    [SMTP_ESC_TOO_BIG] = "3.4",
    [SMTP_ESC_NO_ANSWER] = "4.1",
    [SMTP_ESC_CONN_TIMEOUT] = "4.2",
    [SMTP_ESC_INVALID_COMMAND] = "5.1",
    [SMTP_ESC_SYNTAX] = "5.2",
    [SMTP_ESC_TOO_MANY_RCPTS] = "5.3",
    [SMTP_ESC_INVALID_ARGS] = "5.4",
    [SMTP_ESC_CANNOT_VRFY] = "5.2",
    [SMTP_ESC_MEDIA] = "6.0",
    [SMTP_ESC_NOT_AUTHORIZED] = "7.1",
    [SMTP_ESC_SECURITY] = "7.0",
    [SMTP_ESC_AUTH_INVALID] = "7.8",
    [SMTP_ESC_ENCRYPTION_NEEDED] = "7.11",
};

/* smtp_reply_line - one reply line: CODE, "-" when MORE lines of the reply follow (RFC 5321
 * 4.2.1), the enhanced code, the text */
static void G_GNUC_PRINTF(5, 6)
smtp_reply_line(GString *out, int code, gboolean more, SmtpEsc esc, const char *fmt, ...)
{
    g_string_append_printf(out, "%03d%c", code, more ? '-' : ' ');
    if (esc != SMTP_ESC_NONE && code >= 200 && code < 600)
        g_string_append_printf(out, "%d.%s ", code / 100, smtp_esc_text[esc]);
    gsize start = out->len;
    va_list ap;
    va_start(ap, fmt);
    g_string_append_vprintf(out, fmt, ap);
    va_end(ap);
    /* A reply line is one line: nothing the client sent may break it (RFC 5321 4.2). */
    for (gsize i = start; i < out->len; i++)
        if (out->str[i] == '\r' || out->str[i] == '\n' || out->str[i] == '\0')
            out->str[i] = '?';
    g_string_append(out, "\r\n");
}

/* smtp_reply - the last (or only) line of a reply: smtp_reply(out, code, esc, fmt, ...) */
#define smtp_reply(out, code, ...) smtp_reply_line((out), (code), FALSE, __VA_ARGS__)

/* --- the session ----------------------------------------------------------------------------- */

/* Where an AUTH exchange stands: which response the next line is (RFC 4954 4). */
typedef enum {
    SMTP_AUTH_NONE,          /* no exchange: lines are commands */
    SMTP_AUTH_PLAIN,         /* PLAIN without an initial response: "authzid NUL user NUL pass" */
    SMTP_AUTH_LOGIN_USER,    /* LOGIN: the user name */
    SMTP_AUTH_LOGIN_PASS,    /* LOGIN: the password */
} SmtpAuthStep;

struct SmtpSession {
    ProtoState proto;          /* first: TLS, STARTTLS pending (proto.h); no login delay */
    SmtpSessionConfig cfg;
    Store *store;
    const char *peer;
    char id[9];                /* 8 hex digits, for Received: and logs */
    SmtpState state;
    char *helo;
    gboolean esmtp;
    guint transactions;        /* DATA commands so far */

    /* TLS and authentication */
    char *auth_user;           /* after a successful AUTH */
    SmtpAuthStep auth_step;    /* an AUTH exchange in progress */
    char *auth_login_user;     /* AUTH LOGIN: the user name, until the password arrives */

    /* the transaction */
    char *sender;              /* envelope sender, "" for <> */
    char *sender_user;         /* the sender's user name when the sender is a local user */
    GPtrArray *rcpt_users;     /* accepted recipients' user names, distinct */
    StoreWriter *writer;       /* the message going to the store while it arrives: Received: +
                                  text; dropped as soon as the message cannot be accepted */
    GError *store_error;       /* the store failed mid-message: 451 at its end */
    StoreMsgId msgid;          /* the message's id: in Received:, stored under, "queued as" */
    gsize text_octets;         /* text octets seen, including those not kept */
    gboolean line_too_long;    /* a text line was over SMTP_TEXT_LINE_MAX */
    gboolean has_nul;          /* a text line contained NUL */
    gboolean has_bare_cr;      /* a text line contained a CR not followed by LF */
    gboolean after_crlf;       /* the previous text line (or the DATA command) ended in CRLF */
    gboolean command_crlf;     /* the last command line ended in CRLF */
    gboolean store_wanted;     /* the message has local targets (inboxes or the outbox) */

    /* relaying: non-local recipients through the smarthost (src/relay/relay.h) */
    Relay *relay;              /* the smarthost's session for this transaction, NULL when none or
                                  lost (then relay_rcpts makes the end of DATA fail) */
    GPtrArray *relay_rcpts;    /* non-local recipients the smarthost accepted, distinct */
    RelayReply relay_failure;  /* the smarthost could not be used in this transaction: why */
    gboolean relay_failed;

    /* submission (cfg.submission): the header fields a submission server adds (RFC 6409 8) */
    gboolean in_header;        /* the text so far is header fields */
    guint header_fields;
    gboolean has_date, has_msgid;

    /* counters, for smtp_session_stats */
    guint accepted, rejected, relayed, errors;
    guint64 accepted_octets;
};

const char *
smtp_state_name(SmtpState state)
{
    static const char *const names[] = {"init", "ready", "mail", "rcpt", "data", "closed"};
    return state <= SMTP_STATE_CLOSED ? names[state] : "?";
}

/* smtp_enter_state - the one place a session changes state */
static void
smtp_enter_state(SmtpSession *s, SmtpState next)
{
    if (s->state != next)
        log_msg(LOG_DEBUG, "smtp %s %s: %s -> %s", s->id, s->peer, smtp_state_name(s->state),
                smtp_state_name(next));
    s->state = next;
}

/* smtp_reset_transaction - forget the envelope and the text (RSET, HELO/EHLO, end of DATA) */
static void
smtp_reset_transaction(SmtpSession *s)
{
    g_clear_pointer(&s->sender, g_free);
    g_clear_pointer(&s->sender_user, g_free);
    g_ptr_array_set_size(s->rcpt_users, 0);
    store_writer_free(&s->writer);
    g_clear_error(&s->store_error);
    relay_free(&s->relay);   /* inside DATA: closed without ".", so the smarthost drops it */
    g_ptr_array_set_size(s->relay_rcpts, 0);
    relay_reply_clear(&s->relay_failure);
    s->relay_failed = s->store_wanted = FALSE;
    s->in_header = s->has_date = s->has_msgid = FALSE;
    s->header_fields = 0;
    s->text_octets = 0;
    s->line_too_long = s->has_nul = s->has_bare_cr = FALSE;
    s->after_crlf = TRUE;
}

/* smtp_auth_forget - end any AUTH exchange (the user name given to LOGIN is wiped) */
static void
smtp_auth_forget(SmtpSession *s)
{
    if (s->auth_login_user) {
        OPENSSL_cleanse(s->auth_login_user, strlen(s->auth_login_user));
        g_clear_pointer(&s->auth_login_user, g_free);
    }
    s->auth_step = SMTP_AUTH_NONE;
}

/* smtp_close - say CODE/ESC/TEXT and close: the transaction in progress is dropped */
static void
smtp_close(SmtpSession *s, GString *out, int code, SmtpEsc esc, const char *why)
{
    smtp_reply(out, code, esc, "%s %s, closing connection", s->cfg.hostname, why);
    smtp_reset_transaction(s);
    smtp_auth_forget(s);
    smtp_enter_state(s, SMTP_STATE_CLOSED);
}

/* --- addresses ------------------------------------------------------------------------------- */

/* smtp_domain_is_local - whether DOMAIN is one of ours (case-insensitive) */
static gboolean
smtp_domain_is_local(const SmtpSession *s, const char *domain)
{
    for (char *const *d = s->cfg.domains; d && *d; d++)
        if (g_ascii_strcasecmp(*d, domain) == 0)
            return TRUE;
    return FALSE;
}

/* smtp_domain_valid - a domain name (letters, digits, "-", dots between labels) or an address
 * literal "[...]" of printable characters (RFC 5321 4.1.2, as far as we need to tell) */
static gboolean
smtp_domain_valid(const char *d)
{
    gsize n = strlen(d);
    if (n == 0 || n > 255)
        return FALSE;
    if (d[0] == '[') {
        if (n < 3 || d[n - 1] != ']')
            return FALSE;
        for (gsize i = 1; i + 1 < n; i++)
            if (!g_ascii_isgraph(d[i]) || d[i] == '[' || d[i] == ']' || d[i] == '\\')
                return FALSE;
        return TRUE;
    }
    for (gsize i = 0; i < n; i++)
        if (!(g_ascii_isalnum(d[i]) || d[i] == '-' || d[i] == '.'))
            return FALSE;
    return d[0] != '.' && d[n - 1] != '.' && !strstr(d, "..");
}

/* smtp_parse_path - "<local@domain> [params]" after "FROM:" or "TO:" (spaces before "<" are
 * tolerated, as most servers do). *ADDRESS gets the mailbox ("" for "<>"), *PARAMS the rest
 * (maybe ""). FALSE on bad syntax. */
static gboolean
smtp_parse_path(const char *arg, char **address, const char **params)
{
    while (*arg == ' ')
        arg++;
    if (*arg != '<')
        return FALSE;
    const char *close = strchr(arg, '>');
    if (!close)
        return FALSE;
    const char *start = arg + 1;
    /* RFC 5321 4.1.2: an obsolete source route "@a,@b:" is accepted and ignored (C.2) */
    if (*start == '@') {
        const char *colon = memchr(start, ':', (gsize)(close - start));
        if (!colon)
            return FALSE;
        start = colon + 1;
    }
    const char *rest = close + 1;
    if (*rest && *rest != ' ')
        return FALSE;
    while (*rest == ' ')
        rest++;
    *address = g_strndup(start, (gsize)(close - start));
    *params = rest;
    return TRUE;
}

/* smtp_split_address - "local@domain" into its parts; FALSE when it is not of that form. A
 * quoted local part is not supported (no user name could contain what it quotes). */
static gboolean
smtp_split_address(const char *address, char **local, char **domain)
{
    const char *at = strrchr(address, '@');
    /* RFC 5321 4.5.3.1: local part 64, path 256 octets (with the brackets) */
    if (!at || at == address || !at[1] || at - address > 64 || strlen(address) > 254)
        return FALSE;
    for (const char *p = address; p < at; p++)
        if (!g_ascii_isgraph(*p) || strchr("<>()[]\\,;:\"", *p))
            return FALSE;
    if (!smtp_domain_valid(at + 1))
        return FALSE;
    *local = g_strndup(address, (gsize)(at - address));
    *domain = g_strdup(at + 1);
    return TRUE;
}

/* smtp_lookup_user - whether local part LOCAL names an existing user: *USER gets the user name
 * (lower case) when it does. FALSE with ERROR when the store could not tell. */
static gboolean
smtp_lookup_user(SmtpSession *s, const char *local, char **user, GError **error)
{
    g_autofree char *name = g_ascii_strdown(local, -1);
    gboolean exists = FALSE;
    *user = NULL;
    if (!store_name_valid(name))
        return TRUE;   /* no user can have this name */
    if (!store_user_exists(s->store, name, &exists, error))
        return FALSE;
    if (exists)
        *user = g_steal_pointer(&name);
    return TRUE;
}

/* --- commands -------------------------------------------------------------------------------- */

typedef enum {
    SMTP_GO,          /* check: go on to proceed; proceed: done */
    SMTP_REFUSED,     /* a reply was written: refused by policy or by the store, not a bad command */
    SMTP_BAD,         /* a reply was written: a bad command, counted towards max_errors */
    SMTP_CLOSE,       /* a reply was written: close the connection */
} SmtpResult;

/* What a check step found in the argument, for its proceed step. */
typedef struct {
    const char *arg;   /* the argument text (leading spaces skipped), "" when none */
    char *address;     /* MAIL, RCPT: the mailbox inside <>; HELO/EHLO: the domain */
    char *local;       /* the local part, and */
    char *domain;      /* the domain of ADDRESS (NULL for <>) */
} SmtpArgs;

typedef SmtpResult (*SmtpStep)(SmtpSession *s, SmtpArgs *a, GString *out);

#define S_INIT (1u << SMTP_STATE_INIT)
#define S_READY (1u << SMTP_STATE_READY)
#define S_MAIL (1u << SMTP_STATE_MAIL)
#define S_RCPT (1u << SMTP_STATE_RCPT)
#define S_ANY (S_INIT | S_READY | S_MAIL | S_RCPT)

/* command flags */
enum {
    CMD_ARG_NONE = 1 << 0,      /* takes no argument (501 otherwise) */
    CMD_ARG_REQUIRED = 1 << 1,  /* needs an argument (501 otherwise) */
};

/* The whole reply of a command that only answers; its lines are separated by "\n". */
typedef struct {
    int code;
    SmtpEsc esc;
    const char *text;
} SmtpAnswer;

typedef struct {
    const char *verb;
    guint states;           /* where it is allowed; elsewhere 503 */
    guint flags;
    SmtpStep check;         /* validates only; NULL when there is nothing to check */
    SmtpStep proceed;       /* acts and replies */
    SmtpAnswer answer;      /* without check and proceed: the reply (a 5xx is a bad command) */
} SmtpCommand;

/* smtp_answer - a command's fixed reply (RFC 5321 4.2.1 for the lines before the last) */
static SmtpResult
smtp_answer(const SmtpAnswer *answer, GString *out)
{
    const char *text = answer->text, *nl;
    while ((nl = strchr(text, '\n'))) {
        smtp_reply_line(out, answer->code, TRUE, answer->esc, "%.*s", (int)(nl - text), text);
        text = nl + 1;
    }
    smtp_reply(out, answer->code, answer->esc, "%s", text);
    return answer->code >= 500 ? SMTP_BAD : SMTP_GO;
}

/* smtp_check_helo - HELO/EHLO domain: one word of printable ASCII, at most 255 octets. Like
 * Postfix by default we do not insist on a valid domain name (RFC 5321 4.1.4: a server MUST NOT
 * refuse a session because the name does not check out; real clients send "my_pc" or "localhost")
 * — but it goes into the Received: field, so nothing else passes. */
static SmtpResult
smtp_check_helo(SmtpSession *s, SmtpArgs *a, GString *out)
{
    (void)s;
    gsize n = strlen(a->arg);
    gboolean ok = n > 0 && n <= 255;
    for (gsize i = 0; ok && i < n; i++)
        ok = g_ascii_isgraph(a->arg[i]);
    if (!ok) {
        smtp_reply(out, 501, SMTP_ESC_INVALID_ARGS, "Syntax: EHLO domain (or HELO domain)");
        return SMTP_BAD;
    }
    a->address = g_strdup(a->arg);
    return SMTP_GO;
}

/* smtp_greet_client - what HELO and EHLO share: a new session state (RFC 5321 4.1.4) */
static void
smtp_greet_client(SmtpSession *s, SmtpArgs *a, gboolean esmtp)
{
    smtp_reset_transaction(s);
    g_free(s->helo);
    s->helo = g_steal_pointer(&a->address);
    s->esmtp = esmtp;
    smtp_enter_state(s, SMTP_STATE_READY);
}

static SmtpResult
smtp_proceed_helo(SmtpSession *s, SmtpArgs *a, GString *out)
{
    smtp_greet_client(s, a, FALSE);
    smtp_reply(out, 250, SMTP_ESC_NONE, "%s", s->cfg.hostname);
    return SMTP_GO;
}

/* smtp_auth_offered - whether AUTH may be used now: over TLS, or where plaintext is allowed */
static gboolean
smtp_auth_offered(const SmtpSession *s)
{
    return s->proto.tls || s->cfg.plaintext_auth;
}

static SmtpResult
smtp_proceed_ehlo(SmtpSession *s, SmtpArgs *a, GString *out)
{
    smtp_greet_client(s, a, TRUE);
    smtp_reply_line(out, 250, TRUE, SMTP_ESC_NONE, "%s", s->cfg.hostname);
    smtp_reply_line(out, 250, TRUE, SMTP_ESC_NONE, "PIPELINING");
    smtp_reply_line(out, 250, TRUE, SMTP_ESC_NONE, "SIZE %" G_GSIZE_FORMAT, s->cfg.max_message_size);
    smtp_reply_line(out, 250, TRUE, SMTP_ESC_NONE, "8BITMIME");
    if (s->cfg.starttls && !s->proto.tls)
        smtp_reply_line(out, 250, TRUE, SMTP_ESC_NONE, "STARTTLS");
    if (smtp_auth_offered(s))
        smtp_reply_line(out, 250, TRUE, SMTP_ESC_NONE, "AUTH PLAIN LOGIN");
    for (const char *const *e = s->cfg.extensions; e && *e; e++)
        smtp_reply_line(out, 250, TRUE, SMTP_ESC_NONE, "%s", *e);
    smtp_reply(out, 250, SMTP_ESC_NONE, "ENHANCEDSTATUSCODES");
    return SMTP_GO;
}

/* smtp_check_mail_params - MAIL's parameters: SIZE=n (RFC 1870 6) and BODY=7BIT|8BITMIME
 * (RFC 6152 2); anything else is 555 (RFC 5321 4.1.1.11) */
static SmtpResult
smtp_check_mail_params(SmtpSession *s, const char *params, GString *out)
{
    if (!*params)
        return SMTP_GO;
    if (!s->esmtp) {
        smtp_reply(out, 555, SMTP_ESC_INVALID_ARGS, "MAIL parameters are for EHLO sessions only");
        return SMTP_BAD;
    }
    g_auto(GStrv) words = g_strsplit(params, " ", -1);
    for (char **w = words; *w; w++) {
        if (!**w)
            continue;
        const char *eq = strchr(*w, '=');
        g_autofree char *key = g_ascii_strup(*w, eq ? eq - *w : -1);
        const char *value = eq ? eq + 1 : NULL;
        if (strcmp(key, "SIZE") == 0 && value) {
            guint64 size;
            if (!g_ascii_string_to_unsigned(value, 10, 0, G_MAXUINT64, &size, NULL)) {
                smtp_reply(out, 501, SMTP_ESC_INVALID_ARGS, "Bad SIZE= value");
                return SMTP_BAD;
            }
            if (size > s->cfg.max_message_size) {
                smtp_reply(out, 552, SMTP_ESC_TOO_BIG,
                           "Message size exceeds fixed maximum message size (%" G_GSIZE_FORMAT ")",
                           s->cfg.max_message_size);
                return SMTP_REFUSED;
            }
        } else if (strcmp(key, "AUTH") == 0 && value && *value && smtp_auth_offered(s)) {
            /* RFC 4954 5: the identity a relaying MTA vouches for; we never relay, so it only
             * needs to be accepted */
        } else if (strcmp(key, "BODY") == 0 && value &&
                   (g_ascii_strcasecmp(value, "7BIT") == 0 || g_ascii_strcasecmp(value, "8BITMIME") == 0)) {
            /* both are stored exactly as they come */
        } else {
            smtp_reply(out, 555, SMTP_ESC_INVALID_ARGS, "Unsupported MAIL parameter %.64s", key);
            return SMTP_BAD;
        }
    }
    return SMTP_GO;
}

/* smtp_sender_is_own - whether the parsed MAIL address is the authenticated user's own:
 * user@<a local domain>, the local part compared without case */
static gboolean
smtp_sender_is_own(const SmtpSession *s, const SmtpArgs *a)
{
    return a->domain && smtp_domain_is_local(s, a->domain) &&
           g_ascii_strcasecmp(a->local, s->auth_user) == 0;
}

/* smtp_check_mail - "FROM:<reverse-path> [params]" (RFC 5321 4.1.1.2); <> is the null sender */
static SmtpResult
smtp_check_mail(SmtpSession *s, SmtpArgs *a, GString *out)
{
    const char *params = NULL;
    if (s->cfg.submission && !s->auth_user) {
        /* RFC 6409 4.3, RFC 4954 6 */
        smtp_reply(out, 530, SMTP_ESC_SECURITY, "Authentication required");
        return SMTP_REFUSED;
    }
    if (g_ascii_strncasecmp(a->arg, "FROM:", 5) != 0 || !smtp_parse_path(a->arg + 5, &a->address, &params)) {
        smtp_reply(out, 501, SMTP_ESC_INVALID_ARGS, "Syntax: MAIL FROM:<address>");
        return SMTP_BAD;
    }
    if (*a->address && !smtp_split_address(a->address, &a->local, &a->domain)) {
        smtp_reply(out, 501, SMTP_ESC_BAD_SENDER_SYNTAX, "Bad sender address syntax");
        return SMTP_BAD;
    }
    SmtpResult r = smtp_check_mail_params(s, params, out);
    if (r == SMTP_GO && s->auth_user && !smtp_sender_is_own(s, a)) {
        smtp_reply(out, 553, SMTP_ESC_NOT_AUTHORIZED,
                   "<%.256s>: Sender address rejected: not owned by user %s", a->address, s->auth_user);
        return SMTP_REFUSED;
    }
    return r;
}

/* smtp_outbox_wanted - whether the sender of the parsed MAIL address gets an outbox copy (when
 * it is a user of ours): every local sender under "local" (the paper's design); under
 * "authenticated" only a logged-in client, whose address smtp_check_mail proved its own */
static gboolean
smtp_outbox_wanted(const SmtpSession *s, const SmtpArgs *a)
{
    if (!a->domain || !smtp_domain_is_local(s, a->domain))
        return FALSE;
    switch (s->cfg.outbox_copy) {
    case SMTP_OUTBOX_LOCAL:
        return TRUE;
    case SMTP_OUTBOX_AUTHENTICATED:
        return s->auth_user && smtp_sender_is_own(s, a);
    case SMTP_OUTBOX_NEVER:
    default:
        return FALSE;
    }
}

static SmtpResult
smtp_proceed_mail(SmtpSession *s, SmtpArgs *a, GString *out)
{
    if (smtp_outbox_wanted(s, a)) {
        GError *error = NULL;
        if (!smtp_lookup_user(s, a->local, &s->sender_user, &error)) {
            log_warn("smtp %s %s: MAIL FROM:<%s>: %s", s->id, s->peer, a->address, error->message);
            g_error_free(error);
            smtp_reply(out, 451, SMTP_ESC_SYSTEM, "Mail store temporarily unavailable, try again later");
            return SMTP_REFUSED;
        }
    }
    s->sender = g_steal_pointer(&a->address);
    smtp_enter_state(s, SMTP_STATE_MAIL);
    smtp_reply(out, 250, SMTP_ESC_SENDER_OK, "Sender ok");
    return SMTP_GO;
}

/* smtp_relay_allowed - whether this client may send to non-local recipients: only through a
 * configured smarthost, and only after AUTH or from a trusted network (RFC 2505) */
static gboolean
smtp_relay_allowed(const SmtpSession *s)
{
    return s->cfg.relay && (s->auth_user || s->cfg.relay_trusted);
}

/* smtp_reply_relayed - the smarthost's REPLY passed to our client: its code and text (with an
 * enhanced code of the right class, X.0.0 when it gave none); no reply at all (code 0) is
 * "451 4.4.1" — the client keeps the message and tries again */
static void
smtp_reply_relayed(GString *out, const RelayReply *reply)
{
    if (reply->code < 400 || reply->code > 599) {
        smtp_reply(out, 451, SMTP_ESC_NO_ANSWER, "Smarthost unavailable, try again later");
        return;
    }
    const char *t = reply->text ? reply->text : "";
    gboolean esc = t[0] - '0' == reply->code / 100 && t[1] == '.';
    for (const char *p = t + 2; esc && *p && *p != ' '; p++)
        esc = g_ascii_isdigit(*p) || *p == '.';
    if (esc)
        smtp_reply(out, reply->code, SMTP_ESC_NONE, "%.400s (smarthost)", t);
    else
        smtp_reply(out, reply->code, SMTP_ESC_NONE, "%d.0.0 %.400s (smarthost)", reply->code / 100, t);
}

/* smtp_check_rcpt - "TO:<forward-path>" (RFC 5321 4.1.1.3): syntax, relay policy (RFC 2505),
 * the recipient limit (4.5.3.1.8) */
static SmtpResult
smtp_check_rcpt(SmtpSession *s, SmtpArgs *a, GString *out)
{
    const char *params = NULL;
    if (g_ascii_strncasecmp(a->arg, "TO:", 3) != 0 || !smtp_parse_path(a->arg + 3, &a->address, &params)) {
        smtp_reply(out, 501, SMTP_ESC_INVALID_ARGS, "Syntax: RCPT TO:<address>");
        return SMTP_BAD;
    }
    if (*params) {
        smtp_reply(out, 555, SMTP_ESC_INVALID_ARGS, "RCPT parameters are not supported");
        return SMTP_BAD;
    }
    if (g_ascii_strcasecmp(a->address, "postmaster") == 0 && s->cfg.domains && s->cfg.domains[0]) {
        /* RFC 5321 4.5.1: <Postmaster> without a domain is ours */
        a->local = g_strdup("postmaster");
        a->domain = g_strdup(s->cfg.domains[0]);
    } else if (!smtp_split_address(a->address, &a->local, &a->domain)) {
        smtp_reply(out, 501, SMTP_ESC_BAD_RCPT_SYNTAX, "Bad recipient address syntax");
        return SMTP_BAD;
    }
    if (!smtp_domain_is_local(s, a->domain) && !smtp_relay_allowed(s)) {
        smtp_reply(out, 554, SMTP_ESC_NOT_AUTHORIZED, "<%.256s>: Relay access denied", a->address);
        return SMTP_REFUSED;
    }
    if (s->rcpt_users->len + s->relay_rcpts->len >= s->cfg.max_recipients) {
        smtp_reply(out, 452, SMTP_ESC_TOO_MANY_RCPTS, "Too many recipients");
        return SMTP_REFUSED;
    }
    return SMTP_GO;
}

/* smtp_proceed_relay_rcpt - a non-local recipient (smtp_check_rcpt allowed it): the smarthost's
 * verdict, the session to it opened at the first one */
static SmtpResult
smtp_proceed_relay_rcpt(SmtpSession *s, SmtpArgs *a, GString *out)
{
    for (guint i = 0; i < s->relay_rcpts->len; i++) {
        if (strcmp(g_ptr_array_index(s->relay_rcpts, i), a->address) == 0) {
            smtp_reply(out, 250, SMTP_ESC_RCPT_OK, "Recipient ok");   /* named once already */
            return SMTP_GO;
        }
    }
    if (s->relay_failed) {   /* this transaction already found the smarthost unusable */
        smtp_reply_relayed(out, &s->relay_failure);
        return SMTP_REFUSED;
    }
    RelayReply reply = {0};
    if (!s->relay && !(s->relay = relay_open(s->cfg.relay, s->sender, TRUE, &reply))) {
        g_autofree char *said = relay_reply_describe(&reply);
        log_warn("smtp %s %s: smarthost %s: not relaying from=<%s>: %s", s->id, s->peer,
                 s->cfg.relay->smarthost, s->sender, said);
        s->relay_failed = TRUE;
        s->relay_failure = reply;
        smtp_reply_relayed(out, &s->relay_failure);
        return SMTP_REFUSED;
    }
    if (!relay_rcpt(s->relay, a->address, &reply)) {
        g_autofree char *said = relay_reply_describe(&reply);
        log_info("smtp %s %s: smarthost %s refused RCPT TO:<%s>: %s", s->id, s->peer,
                 s->cfg.relay->smarthost, a->address, said);
        smtp_reply_relayed(out, &reply);
        if (reply.code == 0) {   /* the connection is gone: so is every relayed recipient */
            relay_free(&s->relay);
            s->relay_failed = TRUE;
            s->relay_failure = reply;
        } else {
            relay_reply_clear(&reply);
        }
        return SMTP_REFUSED;
    }
    relay_reply_clear(&reply);
    g_ptr_array_add(s->relay_rcpts, g_strdup(a->address));
    smtp_enter_state(s, SMTP_STATE_RCPT);
    smtp_reply(out, 250, SMTP_ESC_RCPT_OK, "Recipient ok (relayed)");
    return SMTP_GO;
}

static SmtpResult
smtp_proceed_rcpt(SmtpSession *s, SmtpArgs *a, GString *out)
{
    g_autofree char *user = NULL;
    GError *error = NULL;
    if (!smtp_domain_is_local(s, a->domain))
        return smtp_proceed_relay_rcpt(s, a, out);
    if (!smtp_lookup_user(s, a->local, &user, &error)) {
        log_warn("smtp %s %s: RCPT TO:<%s>: %s", s->id, s->peer, a->address, error->message);
        g_error_free(error);
        smtp_reply(out, 451, SMTP_ESC_SYSTEM, "Mail store temporarily unavailable, try again later");
        return SMTP_REFUSED;
    }
    if (!user) {
        smtp_reply(out, 550, SMTP_ESC_BAD_MAILBOX, "<%.256s>: Recipient address rejected: User unknown",
                   a->address);
        return SMTP_REFUSED;
    }
    gboolean seen = FALSE;
    for (guint i = 0; i < s->rcpt_users->len && !seen; i++)
        seen = strcmp(g_ptr_array_index(s->rcpt_users, i), user) == 0;
    if (!seen)   /* one copy per user, however often named */
        g_ptr_array_add(s->rcpt_users, g_steal_pointer(&user));
    smtp_enter_state(s, SMTP_STATE_RCPT);
    smtp_reply(out, 250, SMTP_ESC_RCPT_OK, "Recipient ok");
    return SMTP_GO;
}

/* smtp_received - our trace field (RFC 5321 4.4), always SMTP_RECEIVED_LINES lines; its id is
 * the message's TimeUUID, minted here, the one it is stored under and "queued as" names */
static void
smtp_received(SmtpSession *s, GString *msg)
{
    char id[STORE_MSGID_TEXT_LEN];
    store_msgid_new(&s->msgid);
    store_msgid_to_text(&s->msgid, id);
    g_autoptr(GDateTime) now = g_date_time_new_now_local();
    g_autofree char *date = g_date_time_format(now, "%a, %d %b %Y %H:%M:%S %z");
    /* RFC 3848: ESMTPS over TLS, ESMTPA after AUTH, ESMTPSA for both */
    const char *with = !s->esmtp ? "SMTP"
                       : s->proto.tls  ? (s->auth_user ? "ESMTPSA" : "ESMTPS")
                                 : (s->auth_user ? "ESMTPA" : "ESMTP");
    g_string_append_printf(msg, "Received: from %s (%s)\r\n\tby %s (CassMail) with %s id %s;\r\n\t%s\r\n",
                           s->helo, s->peer, s->cfg.hostname, with, id, date);
}

static SmtpResult
smtp_proceed_data(SmtpSession *s, SmtpArgs *a, GString *out)
{
    (void)a;
    s->transactions++;
    /* The message's id is minted now (smtp_received); its octets go to the store as they arrive
     * (parts of a large message are written long before the end), memory bounded whatever its
     * size. */
    if (s->relay_rcpts->len > 0) {
        RelayReply reply = {0};
        if (!s->relay || !relay_data(s->relay, &reply)) {
            if (!s->relay)
                reply = (RelayReply){0, g_strdup("connection to the smarthost lost")};
            g_autofree char *said = relay_reply_describe(&reply);
            log_warn("smtp %s %s: smarthost %s: DATA: %s", s->id, s->peer, s->cfg.relay->smarthost,
                     said);
            smtp_reply_relayed(out, &reply);
            relay_reply_clear(&reply);
            s->rejected++;
            smtp_reset_transaction(s);
            smtp_enter_state(s, SMTP_STATE_READY);
            return SMTP_REFUSED;
        }
        relay_reply_clear(&reply);
    } else {
        relay_free(&s->relay);   /* the smarthost took none of the recipients: QUIT */
    }
    g_autoptr(GString) received = g_string_sized_new(256);
    smtp_received(s, received);
    /* Only local inboxes and the sender's outbox are stored; a message that only leaves through
     * the smarthost writes nothing here. */
    s->store_wanted = s->rcpt_users->len > 0 || s->sender_user;
    if (s->store_wanted) {
        s->writer = store_writer_begin(s->store, &s->msgid);
        if (!store_writer_write(s->writer, received->str, received->len, &s->store_error))
            store_writer_free(&s->writer);
    }
    if (s->relay && !relay_write(s->relay, received->str, received->len))
        relay_free(&s->relay);   /* 451 at the end of the text */
    s->in_header = s->cfg.submission;
    s->text_octets = 0;
    /* RFC 5321 4.1.1.4: in an empty message the CRLF before "." is the DATA command's own */
    s->after_crlf = s->command_crlf;
    smtp_enter_state(s, SMTP_STATE_DATA);
    smtp_reply(out, 354, SMTP_ESC_NONE, "End data with <CR><LF>.<CR><LF>");
    return SMTP_GO;
}

static SmtpResult
smtp_proceed_rset(SmtpSession *s, SmtpArgs *a, GString *out)
{
    (void)a;
    smtp_reset_transaction(s);
    smtp_enter_state(s, s->helo ? SMTP_STATE_READY : SMTP_STATE_INIT);
    smtp_reply(out, 250, SMTP_ESC_OTHER, "Ok");
    return SMTP_GO;
}

static SmtpResult
smtp_proceed_quit(SmtpSession *s, SmtpArgs *a, GString *out)
{
    (void)a;
    smtp_reply(out, 221, SMTP_ESC_OTHER, "%s closing connection", s->cfg.hostname);
    smtp_reset_transaction(s);
    smtp_enter_state(s, SMTP_STATE_CLOSED);
    return SMTP_CLOSE;
}

/* --- STARTTLS (RFC 3207) --------------------------------------------------------------------- */

static SmtpResult
smtp_check_starttls(SmtpSession *s, SmtpArgs *a, GString *out)
{
    (void)a;
    if (!s->cfg.starttls) {
        smtp_reply(out, 502, SMTP_ESC_INVALID_COMMAND, "STARTTLS not available");
        return SMTP_BAD;
    }
    if (s->proto.tls) {
        smtp_reply(out, 503, SMTP_ESC_INVALID_COMMAND, "Bad sequence of commands: TLS already active");
        return SMTP_BAD;
    }
    return SMTP_GO;
}

static SmtpResult
smtp_proceed_starttls(SmtpSession *s, SmtpArgs *a, GString *out)
{
    (void)a;
    smtp_reply(out, 220, SMTP_ESC_OTHER, "Ready to start TLS");
    s->proto.tls_pending = TRUE;
    return SMTP_GO;
}

/* smtp_tls_started - the session runs over TLS and forgets the client's HELO name, transaction
 * and authentication (RFC 3207 4.2) */
static void
smtp_tls_started(gpointer core)
{
    SmtpSession *s = core;
    proto_tls_on(s);
    smtp_reset_transaction(s);
    smtp_auth_forget(s);
    g_clear_pointer(&s->auth_user, g_free);
    g_clear_pointer(&s->helo, g_free);
    s->esmtp = FALSE;
    if (s->state != SMTP_STATE_CLOSED)
        smtp_enter_state(s, SMTP_STATE_INIT);
}

/* --- AUTH (RFC 4954; mechanisms PLAIN, RFC 4616, and LOGIN) ---------------------------------- */

/* smtp_auth_decode - strict base64 (RFC 4648 4: whole quads, "=" only as padding) of the
 * response TEXT: a NUL-terminated buffer (g_free after OPENSSL_cleanse) and its length in *LEN,
 * or NULL. "=" alone is the empty response (RFC 4954 4). */
static char *
smtp_auth_decode(const char *text, gsize *len)
{
    gsize n = strlen(text);
    if (strcmp(text, "=") == 0) {
        *len = 0;
        return g_strdup("");
    }
    if (!text_base64_valid(text, n))
        return NULL;
    char *buf = g_strdup(text);
    gsize out_len = 0;
    if (n > 0)
        g_base64_decode_inplace(buf, &out_len);
    buf[out_len] = '\0';   /* the decoded text is shorter than the encoded one */
    *len = out_len;
    return buf;
}

/* smtp_auth_name - the user an authentication identity names: "pete" or "pete@<local domain>",
 * lower-cased; NULL when it cannot be one of our users */
static char *
smtp_auth_name(const SmtpSession *s, const char *identity)
{
    const char *at = strrchr(identity, '@');
    if (at && !smtp_domain_is_local(s, at + 1))
        return NULL;
    char *name = g_ascii_strdown(identity, at ? at - identity : -1);
    if (!store_name_valid(name)) {
        g_free(name);
        return NULL;
    }
    return name;
}

/* smtp_auth_verify - check USER's PASSWORD against Credentials (AUTHZID: empty or the same user)
 * and reply 235, 535 or 454. Every failing path spends the time of one key derivation, so the
 * answer's timing does not tell which users exist. */
static SmtpResult
smtp_auth_verify(SmtpSession *s, const char *mech, const char *authzid, const char *user,
                 const char *password, GString *out)
{
    g_autofree char *name = smtp_auth_name(s, user);
    g_autofree char *zname = *authzid ? smtp_auth_name(s, authzid) : NULL;
    gboolean ok = FALSE;
    char *hash = NULL;
    GError *error = NULL;
    gboolean same = !*authzid || (zname && name && strcmp(zname, name) == 0);
    if (name && same && store_password_get(s->store, name, &hash, &error)) {
        ok = password_verify(password, hash);
        OPENSSL_cleanse(hash, strlen(hash));
        g_free(hash);
    } else {
        password_verify_dummy(password);
    }
    g_autofree char *who = g_strescape(user, NULL);   /* from the client: escaped for the log */
    if (store_error_unanswered(error)) {
        log_warn("smtp %s %s: AUTH %s for %s not checked: %s", s->id, s->peer, mech, who, error->message);
        g_error_free(error);
        smtp_reply(out, 454, SMTP_ESC_SECURITY, "Temporary authentication failure, try again later");
        return SMTP_REFUSED;
    }
    if (!ok) {
        const char *why = !name  ? "not a user of ours"
                          : !same ? "authorization identity is another user"
                          : error ? "unknown user or no password set"
                                  : "wrong password";
        log_info("smtp %s %s: AUTH %s failed for %s (%s)", s->id, s->peer, mech, who, why);
        g_clear_error(&error);
        smtp_reply(out, 535, SMTP_ESC_AUTH_INVALID, "Authentication credentials invalid");
        return SMTP_BAD;
    }
    g_clear_error(&error);
    s->auth_user = g_steal_pointer(&name);
    log_info("smtp %s %s: AUTH %s as %s%s", s->id, s->peer, mech, s->auth_user, s->proto.tls ? " over TLS" : "");
    smtp_reply(out, 235, SMTP_ESC_SECURITY, "Authentication successful");
    return SMTP_GO;
}

/* smtp_auth_response - one decoded client response (DATA, LEN octets) for the current step */
static SmtpResult
smtp_auth_response(SmtpSession *s, const char *data, gsize len, GString *out)
{
    SmtpAuthStep step = s->auth_step;
    s->auth_step = SMTP_AUTH_NONE;
    if (step == SMTP_AUTH_LOGIN_USER) {
        if (memchr(data, '\0', len)) {
            smtp_reply(out, 501, SMTP_ESC_SYNTAX, "Bad user name");
            return SMTP_BAD;
        }
        s->auth_login_user = g_strdup(data);
        s->auth_step = SMTP_AUTH_LOGIN_PASS;
        smtp_reply(out, 334, SMTP_ESC_NONE, "UGFzc3dvcmQ6");   /* "Password:" */
        return SMTP_GO;
    }
    if (step == SMTP_AUTH_LOGIN_PASS) {
        char *user = g_steal_pointer(&s->auth_login_user);
        SmtpResult r;
        if (memchr(data, '\0', len)) {
            smtp_reply(out, 501, SMTP_ESC_SYNTAX, "Bad password");
            r = SMTP_BAD;
        } else {
            r = smtp_auth_verify(s, "LOGIN", "", user, data, out);
        }
        OPENSSL_cleanse(user, strlen(user));
        g_free(user);
        return r;
    }
    /* PLAIN: authzid NUL authcid NUL passwd, no other NUL (RFC 4616 2) */
    const char *nul1 = memchr(data, '\0', len);
    const char *nul2 = nul1 ? memchr(nul1 + 1, '\0', len - (gsize)(nul1 + 1 - data)) : NULL;
    if (!nul2 || memchr(nul2 + 1, '\0', len - (gsize)(nul2 + 1 - data))) {
        smtp_reply(out, 501, SMTP_ESC_SYNTAX, "Bad PLAIN response");
        return SMTP_BAD;
    }
    return smtp_auth_verify(s, "PLAIN", data, nul1 + 1, nul2 + 1, out);
}

/* smtp_auth_text - a response line's text (CRLF already removed): "*" cancels (RFC 4954 4),
 * anything else must be base64 */
static SmtpResult
smtp_auth_text(SmtpSession *s, const char *text, GString *out)
{
    if (strcmp(text, "*") == 0) {
        smtp_auth_forget(s);
        smtp_reply(out, 501, SMTP_ESC_SECURITY, "Authentication cancelled");
        return SMTP_BAD;
    }
    gsize len = 0;
    char *data = smtp_auth_decode(text, &len);
    if (!data) {
        smtp_auth_forget(s);
        smtp_reply(out, 501, SMTP_ESC_SYNTAX, "Cannot decode the response (base64)");
        return SMTP_BAD;
    }
    SmtpResult r = smtp_auth_response(s, data, len, out);
    OPENSSL_cleanse(data, len);
    g_free(data);
    return r;
}

/* smtp_auth_line - a line of an AUTH exchange as the reader handed it over */
static SmtpResult
smtp_auth_line(SmtpSession *s, const char *line, gsize len, ProtoLine status, GString *out)
{
    if (status != PROTO_LINE_OK || memchr(line, '\0', len)) {
        smtp_auth_forget(s);
        smtp_reply(out, 501, SMTP_ESC_SYNTAX, "Bad response line; authentication aborted");
        return SMTP_BAD;
    }
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    char *text = g_strndup(line, len);
    SmtpResult r = smtp_auth_text(s, text, out);
    OPENSSL_cleanse(text, len);
    g_free(text);
    return r;
}

/* smtp_check_auth - "AUTH mechanism [initial-response]": after EHLO, once, where offered */
static SmtpResult
smtp_check_auth(SmtpSession *s, SmtpArgs *a, GString *out)
{
    if (!s->esmtp) {
        smtp_reply(out, 503, SMTP_ESC_INVALID_COMMAND, "Bad sequence of commands: AUTH needs EHLO");
        return SMTP_BAD;
    }
    if (s->auth_user) {
        smtp_reply(out, 503, SMTP_ESC_INVALID_COMMAND, "Bad sequence of commands: already authenticated");
        return SMTP_BAD;
    }
    if (!smtp_auth_offered(s)) {
        smtp_reply(out, 538, SMTP_ESC_ENCRYPTION_NEEDED,
                   "Encryption required for requested authentication mechanism");
        return SMTP_REFUSED;
    }
    gsize mlen = strcspn(a->arg, " ");
    const char *initial = a->arg + mlen;
    while (*initial == ' ')
        initial++;
    if (strchr(initial, ' ')) {
        smtp_reply(out, 501, SMTP_ESC_SYNTAX, "Syntax: AUTH mechanism [initial-response]");
        return SMTP_BAD;
    }
    if (!((mlen == 5 && g_ascii_strncasecmp(a->arg, "PLAIN", 5) == 0) ||
          (mlen == 5 && g_ascii_strncasecmp(a->arg, "LOGIN", 5) == 0))) {
        smtp_reply(out, 504, SMTP_ESC_INVALID_ARGS, "Unrecognized authentication type");
        return SMTP_BAD;
    }
    return SMTP_GO;
}

static SmtpResult
smtp_proceed_auth(SmtpSession *s, SmtpArgs *a, GString *out)
{
    gboolean plain = g_ascii_strncasecmp(a->arg, "PLAIN", 5) == 0;
    const char *initial = a->arg + 5;
    while (*initial == ' ')
        initial++;
    s->auth_step = plain ? SMTP_AUTH_PLAIN : SMTP_AUTH_LOGIN_USER;
    if (*initial)   /* RFC 4954 4: the initial response saves a round trip */
        return smtp_auth_text(s, initial, out);
    if (plain)
        smtp_reply(out, 334, SMTP_ESC_NONE, "%s", "");
    else
        smtp_reply(out, 334, SMTP_ESC_NONE, "VXNlcm5hbWU6");   /* "Username:" */
    return SMTP_GO;
}

/* commands we know and do not offer (RFC 5321 4.2.4) */
#define SMTP_NOT_IMPLEMENTED {502, SMTP_ESC_INVALID_COMMAND, "Command not implemented"}

static const SmtpCommand smtp_commands[] = {
    {"HELO", S_ANY, CMD_ARG_REQUIRED, .check = smtp_check_helo, .proceed = smtp_proceed_helo},
    {"EHLO", S_ANY, CMD_ARG_REQUIRED, .check = smtp_check_helo, .proceed = smtp_proceed_ehlo},
    {"MAIL", S_READY, CMD_ARG_REQUIRED, .check = smtp_check_mail, .proceed = smtp_proceed_mail},
    {"RCPT", S_MAIL | S_RCPT, CMD_ARG_REQUIRED, .check = smtp_check_rcpt, .proceed = smtp_proceed_rcpt},
    {"DATA", S_RCPT, CMD_ARG_NONE, .proceed = smtp_proceed_data},
    {"RSET", S_ANY, CMD_ARG_NONE, .proceed = smtp_proceed_rset},
    {"NOOP", S_ANY, 0, .answer = {250, SMTP_ESC_OTHER, "Ok"}},
    {"QUIT", S_ANY, CMD_ARG_NONE, .proceed = smtp_proceed_quit},
    /* RFC 5321 3.5.3: 252, without telling which users exist */
    {"VRFY", S_ANY, CMD_ARG_REQUIRED,
     .answer = {252, SMTP_ESC_CANNOT_VRFY, "Cannot VRFY user, but will accept message and attempt delivery"}},
    {"HELP", S_ANY, 0,
     .answer = {214, SMTP_ESC_OTHER, "Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP\nEnd of HELP info"}},
    {"STARTTLS", S_READY, CMD_ARG_NONE, .check = smtp_check_starttls, .proceed = smtp_proceed_starttls},
    {"AUTH", S_READY, CMD_ARG_REQUIRED, .check = smtp_check_auth, .proceed = smtp_proceed_auth},
    {"EXPN", S_ANY, 0, .answer = SMTP_NOT_IMPLEMENTED},
    {"TURN", S_ANY, 0, .answer = SMTP_NOT_IMPLEMENTED},
    {"ETRN", S_ANY, 0, .answer = SMTP_NOT_IMPLEMENTED},
    {"SEND", S_ANY, 0, .answer = SMTP_NOT_IMPLEMENTED},
    {"SOML", S_ANY, 0, .answer = SMTP_NOT_IMPLEMENTED},
    {"SAML", S_ANY, 0, .answer = SMTP_NOT_IMPLEMENTED},
    {"BDAT", S_ANY, 0, .answer = SMTP_NOT_IMPLEMENTED},
};

/* smtp_sequence_hint - the text of a 503 for VERB in the session's state (RFC 5321 4.1.4) */
static const char *
smtp_sequence_hint(const SmtpSession *s, const SmtpCommand *cmd)
{
    if (s->state == SMTP_STATE_INIT)
        return "send HELO/EHLO first";
    if (strcmp(cmd->verb, "MAIL") == 0)
        return "nested MAIL command";
    if (strcmp(cmd->verb, "RCPT") == 0)
        return "need MAIL command";
    if (strcmp(cmd->verb, "DATA") == 0)
        return s->state == SMTP_STATE_MAIL ? "need RCPT command" : "need MAIL command";
    if (strcmp(cmd->verb, "STARTTLS") == 0 || strcmp(cmd->verb, "AUTH") == 0)
        return "mail transaction in progress";
    return "command not allowed now";
}

/* --- message text ---------------------------------------------------------------------------- */

/* smtp_relay_finish - the smarthost's final reply for the relayed recipients: TRUE when it took
 * the message (its queue id logged); otherwise its refusal, or 451, is the client's answer */
static gboolean
smtp_relay_finish(SmtpSession *s, const char *id, guint64 size, GString *out)
{
    RelayReply reply = {0};
    gint64 t0 = g_get_monotonic_time();
    gboolean ok = s->relay ? relay_end(s->relay, &reply) : FALSE;
    gint64 ms = (g_get_monotonic_time() - t0) / 1000;
    if (!s->relay)
        reply.text = g_strdup("connection to the smarthost lost during DATA");
    if (!ok) {
        g_autofree char *said = relay_reply_describe(&reply);
        log_warn("smtp %s %s: not relayed id=%s from=<%s> relayed_rcpts=%u size=%" G_GUINT64_FORMAT
                 " smarthost=%s: %s", s->id, s->peer, id, s->sender, s->relay_rcpts->len, size,
                 s->cfg.relay->smarthost, said);
        smtp_reply_relayed(out, &reply);
        relay_reply_clear(&reply);
        s->rejected++;
        return FALSE;
    }
    g_autofree char *queue_id = relay_queue_id(reply.text);
    log_info("smtp %s %s: relayed id=%s from=<%s> rcpts=%u size=%" G_GUINT64_FORMAT
             " smarthost=%s queue_id=%s relay_ms=%" G_GINT64_FORMAT " reply=\"%d %s\"",
             s->id, s->peer, id, s->sender, s->relay_rcpts->len, size, s->cfg.relay->smarthost,
             queue_id ? queue_id : "-", ms, reply.code, reply.text);
    relay_reply_clear(&reply);
    s->relayed++;
    return TRUE;
}

/* smtp_deliver - the finished message: first the smarthost's final reply for the relayed
 * recipients (it takes responsibility, or nothing is stored), then one store commit for every
 * local recipient and the sender's outbox, then 250 (the order and why: cassmail-smtpd(8)) */
static void
smtp_deliver(SmtpSession *s, GString *out)
{
    char text[STORE_MSGID_TEXT_LEN];
    store_msgid_to_text(&s->msgid, text);
    guint64 size = s->writer ? s->writer->size : s->text_octets;
    /* A store that already failed must not let the smarthost take the message: the client
     * gets 451 and sends it again, to everyone. */
    if (s->store_wanted && (s->store_error || !s->writer)) {
        log_warn("smtp %s %s: not stored (from=<%s> rcpts=%u size=%" G_GUINT64_FORMAT "): %s",
                 s->id, s->peer, s->sender, s->rcpt_users->len, size,
                 s->store_error ? s->store_error->message : "store writer lost");
        smtp_reply(out, 451, SMTP_ESC_SYSTEM, "Mail store temporarily unavailable; message not stored, try again later");
        s->rejected++;
        return;   /* the smarthost connection is closed inside DATA: it drops the message */
    }
    gboolean relayed = s->relay_rcpts->len > 0;
    if (relayed && !smtp_relay_finish(s, text, size, out))
        return;
    gint64 t0 = g_get_monotonic_time();
    if (s->store_wanted) {
        guint n = s->rcpt_users->len + (s->sender_user ? 1 : 0);
        StoreTarget *targets = g_new(StoreTarget, n);
        for (guint i = 0; i < s->rcpt_users->len; i++)
            targets[i] = (StoreTarget){g_ptr_array_index(s->rcpt_users, i), "inbox"};
        if (s->sender_user)
            targets[n - 1] = (StoreTarget){s->sender_user, "outbox"};
        GError *error = NULL;
        gboolean ok = store_writer_commit(s->writer, targets, n, &error);
        g_free(targets);
        if (!ok) {
            gint64 ms = (g_get_monotonic_time() - t0) / 1000;
            /* Whatever the store's reason, the client keeps the message and tries again: a
             * permanent refusal here could lose mail the store would take later. */
            log_warn("smtp %s %s: not stored (from=<%s> rcpts=%u size=%" G_GUINT64_FORMAT
                     " after %" G_GINT64_FORMAT " ms): %s",
                     s->id, s->peer, s->sender, s->rcpt_users->len, size, ms, error->message);
            if (relayed)
                log_err("smtp %s %s: id=%s was relayed to the smarthost but its local copies were not"
                        " stored; the client's retry will send it to the %u remote recipient(s) again",
                        s->id, s->peer, text, s->relay_rcpts->len);
            g_error_free(error);
            smtp_reply(out, 451, SMTP_ESC_SYSTEM, "Mail store temporarily unavailable; message not stored, try again later");
            s->rejected++;
            return;
        }
    }
    gint64 ms = (g_get_monotonic_time() - t0) / 1000;
    if (s->store_wanted)
        log_info("smtp %s %s: accepted id=%s from=<%s> rcpts=%u%s size=%" G_GUINT64_FORMAT " store_ms=%" G_GINT64_FORMAT,
                 s->id, s->peer, text, s->sender, s->rcpt_users->len, s->sender_user ? " +outbox" : "",
                 size, ms);
    smtp_reply(out, 250, SMTP_ESC_OTHER, "Ok: queued as %s", text);
    s->accepted++;
    s->accepted_octets += size;
}

/* smtp_text_out - LEN octets of text (and CRLF when ADD_CRLF) to the store and the smarthost */
static void
smtp_text_out(SmtpSession *s, const char *text, gsize len, gboolean add_crlf)
{
    if (s->writer && !(store_writer_write(s->writer, text, len, &s->store_error) &&
                       (!add_crlf || store_writer_write(s->writer, "\r\n", 2, &s->store_error))))
        store_writer_free(&s->writer);   /* keep reading the text; 451 at its end */
    if (s->relay && !(relay_write(s->relay, text, len) && (!add_crlf || relay_write(s->relay, "\r\n", 2))))
        relay_free(&s->relay);
}

/* smtp_header_end - the end of the header section (submission): add the Date: and Message-ID:
 * fields the message lacks (RFC 6409 8.2, 8.3), the id made of the message's TimeUUID */
static void
smtp_header_end(SmtpSession *s)
{
    s->in_header = FALSE;
    g_autoptr(GString) add = g_string_new(NULL);
    if (!s->has_date) {
        g_autoptr(GDateTime) now = g_date_time_new_now_local();
        g_autofree char *date = g_date_time_format(now, "%a, %d %b %Y %H:%M:%S %z");
        g_string_append_printf(add, "Date: %s\r\n", date);
    }
    if (!s->has_msgid) {
        char id[STORE_MSGID_TEXT_LEN];
        store_msgid_to_text(&s->msgid, id);
        g_string_append_printf(add, "Message-ID: <%s@%s>\r\n", id, s->cfg.hostname);
    }
    if (add->len)
        smtp_text_out(s, add->str, add->len, FALSE);
}

/* smtp_header_line - one text line (BODY octets, no line end) while the text may still be in its
 * header section: note Date: and Message-ID:; a line that is neither a field nor a folded
 * continuation (the empty line before the body, usually) ends the section */
static void
smtp_header_line(SmtpSession *s, const char *line, gsize body)
{
    if (s->header_fields > 0 && body > 0 && (line[0] == ' ' || line[0] == '\t'))
        return;   /* RFC 5322 2.2.3: a folded field goes on */
    gsize name = 0;
    while (name < body && line[name] != ':' && g_ascii_isgraph(line[name]))
        name++;
    if (name == 0 || name == body || line[name] != ':') {
        smtp_header_end(s);
        return;
    }
    s->header_fields++;
    if (name == 4 && g_ascii_strncasecmp(line, "Date", 4) == 0)
        s->has_date = TRUE;
    else if (name == 10 && g_ascii_strncasecmp(line, "Message-ID", 10) == 0)
        s->has_msgid = TRUE;
}

/* smtp_finish_message - the end of the text: store the message or say why not */
static void
smtp_finish_message(SmtpSession *s, GString *out)
{
    if (s->has_nul) {
        smtp_reply(out, 554, SMTP_ESC_MEDIA, "Message contains NUL octets; not delivered");
        s->rejected++;
    } else if (s->has_bare_cr) {
        smtp_reply(out, 554, SMTP_ESC_MEDIA, "Message contains a bare CR (CR without LF); not delivered");
        s->rejected++;
    } else if (s->line_too_long) {
        smtp_reply(out, 500, SMTP_ESC_MEDIA, "Line too long (over %d octets); message not delivered",
                   SMTP_TEXT_LINE_MAX);
        s->rejected++;
    } else if (s->text_octets > s->cfg.max_message_size) {
        smtp_reply(out, 552, SMTP_ESC_TOO_BIG,
                   "Message size exceeds fixed maximum message size (%" G_GSIZE_FORMAT ")",
                   s->cfg.max_message_size);
        s->rejected++;
    } else {
        if (s->in_header)   /* a text of header fields only */
            smtp_header_end(s);
        smtp_deliver(s, out);
    }
    smtp_reset_transaction(s);
    smtp_enter_state(s, SMTP_STATE_READY);
}

/* smtp_data_line - one line of message text, with its line ending
 *
 * The smuggling rules (see session.h): the text ends only at a line that is exactly "." CRLF
 * when the line before it (or the DATA command) really ended in CRLF. Whatever else came before
 * — a bare LF, a bare CR, an over-long line the reader skipped (LINE is then just its
 * terminator: "\r\n", "\n", or "" at EOF), a line split across reads or TLS records — a "."
 * line is text. A bare LF ends a text line and is stored as CRLF; a bare CR refuses the message
 * after its end, so every stored message is CRLF-clean and POP3 clients agree on its lines. */
static void
smtp_data_line(SmtpSession *s, const char *line, gsize len, ProtoLine status, GString *out)
{
    gboolean crlf = len >= 2 && line[len - 2] == '\r' && line[len - 1] == '\n';
    if (status == PROTO_LINE_TOO_LONG) {
        s->line_too_long = TRUE;
        s->after_crlf = crlf && len == 2;   /* all that is known of the skipped line: its end */
        return;
    }
    gsize body = len - (crlf ? 2 : (len && line[len - 1] == '\n') ? 1 : 0);
    /* RFC 5321 4.1.1.4: the text ends with CRLF "." CRLF — only that, never a bare-LF or bare-CR
     * variant, so no other server's idea of the end can smuggle a second message past us. */
    gboolean end = s->after_crlf && crlf && body == 1 && line[0] == '.';
    s->after_crlf = crlf;
    if (end) {
        smtp_finish_message(s, out);
        return;
    }
    if (status == PROTO_LINE_NUL || memchr(line, '\0', len))
        s->has_nul = TRUE;
    if (memchr(line, '\r', body))   /* a CR before the line's end is not followed by LF */
        s->has_bare_cr = TRUE;
    /* RFC 5321 4.5.2: remove the transparency dot */
    if (body > 0 && line[0] == '.') {
        line++;
        body--;
    }
    if (body + 2 > SMTP_TEXT_LINE_MAX)
        s->line_too_long = TRUE;
    s->text_octets += body + 2;
    /* A message that cannot be accepted any more is dropped at once (the store forgets what it
     * wrote of it); past that only count: the rest is never buffered nor written. */
    if (s->text_octets > s->cfg.max_message_size || s->line_too_long || s->has_nul ||
        s->has_bare_cr) {
        store_writer_free(&s->writer);
        relay_free(&s->relay);   /* closed inside DATA: the smarthost drops the message */
        return;
    }
    if (!s->writer && !s->relay)
        return;   /* the store (or the smarthost) failed earlier: 451 at the end */
    if (s->in_header)
        smtp_header_line(s, line, body);
    if (crlf)
        smtp_text_out(s, line, body + 2, FALSE);
    else
        smtp_text_out(s, line, body, TRUE);
}

/* smtp_text_unacceptable - whether the message can no longer be accepted (refused at its end) */
static gboolean
smtp_text_unacceptable(const SmtpSession *s)
{
    return s->text_octets > s->cfg.max_message_size || s->line_too_long || s->has_nul ||
           s->has_bare_cr;
}

/* smtp_text_write - LEN octets of stored text to the store and the smarthost, as smtp_text_out
 * (nothing once one failed or the message was dropped; a failure keeps the text read, 451 at its
 * end) */
static void
smtp_text_write(SmtpSession *s, const char *data, gsize len)
{
    if (len)
        smtp_text_out(s, data, len, FALSE);
}

/* smtp_feed_text - smtp_core.feed_text, the DATA fast path (smtp_core in session.h)
 *
 * The same rules as smtp_data_line, line by line, over the reader's buffer in place. What is
 * stored of a line is its octets from the first (or, after a transparency dot, the second) up
 * to its LF, and CRLF for a bare LF; consecutive lines stored unchanged make one run of the
 * buffer, handed to the store in one write when a line breaks it (a dot removed, a bare LF
 * completed) or the buffer is used up. Per line: one memchr for its LF, one for a CR before its
 * end; NULs are looked for once per call. */
static gsize
smtp_feed_text(gpointer core, const char *buf, gsize len, gsize max, GString *out)
{
    SmtpSession *s = core;
    /* The header of a submission is read line by line: smtp_header_line looks at each field. */
    if (s->state != SMTP_STATE_DATA || s->in_header)
        return 0;
    const char *p = buf, *end = buf + len;
    const char *run = NULL, *run_end = NULL;   /* text to store, not yet written */
    /* the first NUL at or after P (END: none), found once per call rather than once per line */
    const char *nul = memchr(p, '\0', len);
    if (!nul)
        nul = end;
    while (p < end) {
        const char *lf = memchr(p, '\n', MIN((gsize)(end - p), max));
        if (!lf)
            break;   /* incomplete, or over MAX: the reader's business */
        gboolean crlf = lf > p && lf[-1] == '\r';
        gsize body = (gsize)(lf - p) - (crlf ? 1 : 0);
        /* RFC 5321 4.1.1.4: the end is "." CRLF after a line that really ended in CRLF */
        if (s->after_crlf && crlf && body == 1 && p[0] == '.') {
            if (run && !smtp_text_unacceptable(s))
                smtp_text_write(s, run, (gsize)(run_end - run));
            s->after_crlf = TRUE;
            smtp_finish_message(s, out);
            return (gsize)(lf + 1 - buf);
        }
        s->after_crlf = crlf;
        if (nul < p && !(nul = memchr(p, '\0', (gsize)(end - p))))
            nul = end;
        if (nul <= lf)
            s->has_nul = TRUE;
        if (body && memchr(p, '\r', body))   /* a CR before the line's end is not followed by LF */
            s->has_bare_cr = TRUE;
        gboolean dot = body > 0 && p[0] == '.';   /* RFC 5321 4.5.2 */
        if (body - dot + 2 > SMTP_TEXT_LINE_MAX)
            s->line_too_long = TRUE;
        s->text_octets += body - dot + 2;
        if (smtp_text_unacceptable(s)) {
            /* dropped at once (the store forgets what it wrote); from now on only counted */
            run = run_end = NULL;
            store_writer_free(&s->writer);
            relay_free(&s->relay);   /* closed inside DATA: the smarthost drops the message */
        } else if (s->writer || s->relay) {
            const char *from = p + dot, *to = crlf ? lf + 1 : lf;
            if (run && run_end != from) {
                smtp_text_write(s, run, (gsize)(run_end - run));
                run = NULL;
            }
            if (!run)
                run = from;
            run_end = to;
            if (!crlf) {   /* a bare LF is stored as CRLF */
                smtp_text_write(s, run, (gsize)(run_end - run));
                smtp_text_write(s, "\r\n", 2);
                run = NULL;
            }
        }
        p = lf + 1;
    }
    if (run && !smtp_text_unacceptable(s))
        smtp_text_write(s, run, (gsize)(run_end - run));
    return (gsize)(p - buf);
}

/* --- the session ----------------------------------------------------------------------------- */

SmtpSession *
smtp_session_new(const SmtpSessionConfig *cfg, Store *store, const char *peer)
{
    SmtpSession *s = g_new0(SmtpSession, 1);
    s->cfg = *cfg;
    if (!s->cfg.hostname)
        s->cfg.hostname = "localhost";
    s->store = store;
    s->peer = peer && *peer ? peer : "unknown";
    g_snprintf(s->id, sizeof s->id, "%08X", g_random_int());
    s->rcpt_users = g_ptr_array_new_with_free_func(g_free);
    s->relay_rcpts = g_ptr_array_new_with_free_func(g_free);
    s->state = SMTP_STATE_INIT;
    s->after_crlf = TRUE;
    return s;
}

void
smtp_session_free(SmtpSession **sp)
{
    SmtpSession *s = *sp;
    if (!s)
        return;
    smtp_reset_transaction(s);
    smtp_auth_forget(s);
    g_free(s->auth_user);
    g_ptr_array_unref(s->rcpt_users);
    g_ptr_array_unref(s->relay_rcpts);
    g_free(s->helo);
    g_free(s);
    *sp = NULL;
}

/* core_greeting - the 220 greeting */
static void
core_greeting(gpointer core, GString *out)
{
    smtp_reply(out, 220, SMTP_ESC_NONE, "%s ESMTP CassMail", ((SmtpSession *)core)->cfg.hostname);
}

/* core_in_text - whether the next line is message text (for the line limit and timeout) */
static gboolean
core_in_text(gpointer core)
{
    return ((SmtpSession *)core)->state == SMTP_STATE_DATA;
}

/* core_line_max - SMTP_TEXT_READ_MAX in DATA, SMTP_AUTH_LINE_MAX in an AUTH exchange, else
 * SMTP_COMMAND_LINE_MAX */
static gsize
core_line_max(gpointer core)
{
    const SmtpSession *s = core;
    if (s->state == SMTP_STATE_DATA)
        return SMTP_TEXT_READ_MAX;
    return s->auth_step != SMTP_AUTH_NONE ? SMTP_AUTH_LINE_MAX : SMTP_COMMAND_LINE_MAX;
}

/* core_timeout - 421 4.4.2 and closed; a transaction in progress is dropped */
static void
core_timeout(gpointer core, GString *out)
{
    SmtpSession *s = core;
    if (s->state != SMTP_STATE_CLOSED)
        smtp_close(s, out, 421, SMTP_ESC_CONN_TIMEOUT, "Error: timeout exceeded");
}

/* smtp_session_end_reason - NULL while the session goes on, else why it ended */
static const char *
smtp_session_end_reason(gpointer core)
{
    const SmtpSession *s = core;
    if (s->state != SMTP_STATE_CLOSED)
        return NULL;
    return s->cfg.max_errors && s->errors >= s->cfg.max_errors ? "too-many-errors" : "quit";
}

void
smtp_session_stats(const SmtpSession *s, SmtpSessionStats *stats)
{
    *stats = (SmtpSessionStats){
        .state = s->state,
        .helo = s->helo,
        .id = s->id,
        .accepted = s->accepted,
        .accepted_octets = s->accepted_octets,
        .rejected = s->rejected,
        .relayed = s->relayed,
        .errors = s->errors,
        .tls = s->proto.tls,
        .auth_user = s->auth_user,
    };
}

/* smtp_find_command - the table entry for VERB (case-insensitive), or NULL */
static const SmtpCommand *
smtp_find_command(const char *verb, gsize len)
{
    for (gsize i = 0; i < G_N_ELEMENTS(smtp_commands); i++)
        if (strlen(smtp_commands[i].verb) == len && g_ascii_strncasecmp(smtp_commands[i].verb, verb, len) == 0)
            return &smtp_commands[i];
    return NULL;
}

static SmtpResult smtp_command_text(SmtpSession *s, const char *text, GString *out);

/* smtp_command - the rules every command line passes, then the verb's check and proceed */
static SmtpResult
smtp_command(SmtpSession *s, const char *line, gsize len, ProtoLine status, GString *out)
{
    if (status == PROTO_LINE_TOO_LONG) {
        smtp_reply(out, 500, SMTP_ESC_SYNTAX, "Line too long (over %d octets)", SMTP_COMMAND_LINE_MAX);
        return SMTP_BAD;
    }
    if (status == PROTO_LINE_NUL || memchr(line, '\0', len)) {
        smtp_reply(out, 500, SMTP_ESC_SYNTAX, "NUL octet in command");
        return SMTP_BAD;
    }
    s->command_crlf = len >= 2 && line[len - 2] == '\r' && line[len - 1] == '\n';
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    char *text = g_strndup(line, len);
    SmtpResult r = smtp_command_text(s, text, out);
    OPENSSL_cleanse(text, len);   /* AUTH's initial response carries a password */
    g_free(text);
    return r;
}

/* smtp_command_text - a command line without its line ending: dispatch, check, proceed */
static SmtpResult
smtp_command_text(SmtpSession *s, const char *text, GString *out)
{
    gsize vlen = strcspn(text, " ");
    const SmtpCommand *cmd = smtp_find_command(text, vlen);
    if (!cmd) {
        smtp_reply(out, 500, SMTP_ESC_SYNTAX, "Command unrecognized");
        return SMTP_BAD;
    }
    if (!(cmd->states & (1u << s->state))) {
        smtp_reply(out, 503, SMTP_ESC_INVALID_COMMAND, "Bad sequence of commands: %s", smtp_sequence_hint(s, cmd));
        return SMTP_BAD;
    }
    SmtpArgs a = {.arg = text + vlen};
    while (*a.arg == ' ')
        a.arg++;
    if ((cmd->flags & CMD_ARG_REQUIRED) && !*a.arg) {
        smtp_reply(out, 501, SMTP_ESC_SYNTAX, "Syntax: %s needs an argument", cmd->verb);
        return SMTP_BAD;
    }
    if ((cmd->flags & CMD_ARG_NONE) && *a.arg) {
        smtp_reply(out, 501, SMTP_ESC_SYNTAX, "Syntax: %s takes no argument", cmd->verb);
        return SMTP_BAD;
    }
    if (!cmd->check && !cmd->proceed)
        return smtp_answer(&cmd->answer, out);
    SmtpResult r = cmd->check ? cmd->check(s, &a, out) : SMTP_GO;
    if (r == SMTP_GO && cmd->proceed)
        r = cmd->proceed(s, &a, out);
    g_free(a.address);
    g_free(a.local);
    g_free(a.domain);
    return r;
}

/* smtp_feed - smtp_core.feed: one line (smtp_core in session.h) */
static gboolean
smtp_feed(gpointer core, const char *line, gsize len, ProtoLine status, GString *out)
{
    SmtpSession *s = core;
    switch (s->state) {
    case SMTP_STATE_CLOSED:
        return TRUE;
    case SMTP_STATE_DATA:
        smtp_data_line(s, line, len, status, out);
        return FALSE;
    default:
        break;
    }
    /* RFC 3207 6: nothing received after our 220 and before TLS is taken as a command */
    if (s->proto.tls_pending)
        return FALSE;
    SmtpResult r = s->auth_step != SMTP_AUTH_NONE ? smtp_auth_line(s, line, len, status, out)
                                                  : smtp_command(s, line, len, status, out);
    if (r == SMTP_BAD) {
        s->errors++;
        if (s->cfg.max_errors && s->errors >= s->cfg.max_errors) {
            smtp_close(s, out, 421, SMTP_ESC_SECURITY, "Error: too many errors");
            return TRUE;
        }
    }
    return r == SMTP_CLOSE;
}

const char *
smtp_received_strip(const char *msg, gsize len, gsize *text_len)
{
    static const char head[] = "Received: from ";
    if (len < sizeof head - 1 || memcmp(msg, head, sizeof head - 1) != 0)
        return NULL;
    const char *p = msg, *end = msg + len;
    for (int i = 0; i < SMTP_RECEIVED_LINES; i++) {
        const char *lf = memchr(p, '\n', (gsize)(end - p));
        if (!lf || (i > 0 && *p != '\t'))
            return NULL;
        p = lf + 1;
    }
    *text_len = (gsize)(end - p);
    return p;
}

/* --- the protocol-core interface (src/util/proto.h) ------------------------------------------ */

static const char *core_id(gpointer s) { return ((SmtpSession *)s)->id; }
static void core_free(gpointer s) { smtp_session_free((SmtpSession **)&s); }

/* core_log_fields - this session's part of the adapter's session-end line */
static void
core_log_fields(gpointer core, GString *head, GString *tail)
{
    const SmtpSession *s = core;
    g_string_append_printf(head, "helo=%s accepted=%u octets=%" G_GUINT64_FORMAT " rejected=%u errors=%u",
                           s->helo ? s->helo : "-", s->accepted, s->accepted_octets, s->rejected,
                           s->errors);
    g_string_append_printf(tail, "auth=%s relayed=%u", s->auth_user ? s->auth_user : "-", s->relayed);
}

/* proto_take_delay_ms and friends find the ProtoState at the start of the session */
G_STATIC_ASSERT(G_STRUCT_OFFSET(SmtpSession, proto) == 0);

const ProtoCore smtp_core = {
    .name = "smtp",
    .tls_verb = "STARTTLS",
    .busy_reply = "421 4.3.2 Too many connections, try again later\r\n",
    .unavailable = "421 4.3.0 %s mail store unavailable, try again later\r\n",
    .tls_on_connect = TRUE,   /* port 465, with submission */
    .greeting = core_greeting,
    .feed = smtp_feed,
    .feed_text = smtp_feed_text,
    .line_max = core_line_max,
    .in_text = core_in_text,
    .tls_pending = proto_tls_pending,
    .tls_started = smtp_tls_started,
    .timeout = core_timeout,
    .ended = smtp_session_end_reason,
    .id = core_id,
    .log_fields = core_log_fields,
    .free = core_free,
};
