/*
 * session.c - the IMAP protocol core (RFC 9051, RFC 3501 clients). First cut: the interface the
 * adapter drives; the commands follow.
 */
#include "imap/session.h"

struct ImapSession {
    ImapSessionConfig cfg;
    Store *store;
    char *peer;
    ImapState state;
};

void
imap_session_config_init(ImapSessionConfig *ic, const CassmailConfig *cfg)
{
    *ic = (ImapSessionConfig){
        .login_delay_ms = (guint)MAX(cfg->login_delay_ms, 0),
        .max_errors = (guint)MAX(cfg->max_errors, 0),
        .max_message_size = cfg->max_message_size,
        .settle_ms = (guint)MAX(cfg->imap_settle_ms, 0),
        .idle_poll_ms = 5000,
        .plaintext_auth = cfg->imap_allow_plaintext_auth == CONFIG_PLAINTEXT_ALWAYS,
        .starttls = FALSE,
    };
}

ImapSession *
imap_session_new(const ImapSessionConfig *ic, Store *store, const char *peer)
{
    ImapSession *s = g_new0(ImapSession, 1);
    s->cfg = *ic;
    s->store = store;
    s->peer = g_strdup(peer ? peer : "-");
    return s;
}

void
imap_session_free(ImapSession **sp)
{
    ImapSession *s = sp ? *sp : NULL;
    if (!s)
        return;
    g_free(s->peer);
    g_free(s);
    *sp = NULL;
}

ImapState imap_session_state(const ImapSession *s) { return s->state; }

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

static void core_greeting(gpointer s, GString *out)
{ (void)s; g_string_append(out, "* OK [CAPABILITY IMAP4rev1 IMAP4rev2] CassMail IMAP server ready\r\n"); }
static gboolean
core_feed(gpointer core, const char *line, gsize len, ProtoLine st, GString *out)
{
    ImapSession *s = core;
    (void)line, (void)len, (void)st;
    g_string_append(out, "* BYE not yet\r\n");
    s->state = IMAP_STATE_LOGOUT;
    return TRUE;
}
static gsize core_line_max(gpointer s) { (void)s; return IMAP_LINE_MAX; }
static gboolean core_tls_pending(gpointer s) { (void)s; return FALSE; }
static void core_tls_started(gpointer s) { (void)s; }
static void core_timeout(gpointer s, GString *out)
{ ((ImapSession *)s)->state = IMAP_STATE_LOGOUT; g_string_append(out, "* BYE idle\r\n"); }
static const char *core_ended(gpointer s)
{ return ((ImapSession *)s)->state == IMAP_STATE_LOGOUT ? "quit" : NULL; }
static void core_log_fields(gpointer s, GString *h, GString *t) { (void)s, (void)h, (void)t; }
static void core_free(gpointer s) { imap_session_free((ImapSession **)&s); }

const ProtoCore imap_core = {
    .greeting = core_greeting,
    .feed = core_feed,
    .line_max = core_line_max,
    .tls_pending = core_tls_pending,
    .tls_started = core_tls_started,
    .timeout = core_timeout,
    .ended = core_ended,
    .log_fields = core_log_fields,
    .free = core_free,
};
