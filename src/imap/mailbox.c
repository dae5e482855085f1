/*
 * mailbox.c - the IMAP commands on mailboxes and on the selected mailbox's messages (RFC 9051
 * sections 6.3 and 6.4 but FETCH and SEARCH): SELECT, EXAMINE, CREATE, DELETE, RENAME, SUBSCRIBE,
 * UNSUBSCRIBE, LIST (with SPECIAL-USE, RFC 6154), LSUB, STATUS, APPEND (its message streamed to
 * the store as it arrives), CLOSE, UNSELECT (RFC 3691), EXPUNGE, UID EXPUNGE (RFC 4315), STORE,
 * COPY, MOVE (RFC 6851); and the untagged updates of a selected mailbox (imap_sync).
 *
 * Everything about the store goes through src/imap/view.h.
 */
#include "imap/internal.h"

#include <string.h>

#include "util/log.h"

#define IMAP_SYSTEM_FLAGS "\\Answered \\Flagged \\Deleted \\Seen \\Draft"

/* ---- the selected mailbox's messages ------------------------------------------------------- */

guint imap_msgs(const ImapSession *s) { return s->view ? imap_view_count(s->view) : 0; }
guint32 imap_msg_uid(const ImapSession *s, guint i) { return imap_view_uid(s->view, i + 1); }
const StoreMsgId *imap_msg_id(const ImapSession *s, guint i) { return imap_view_msgid(s->view, i + 1); }
guint64 imap_msg_size(const ImapSession *s, guint i) { return imap_view_size(s->view, i + 1); }
guint imap_msg_flags(const ImapSession *s, guint i) { return imap_view_flags(s->view, i + 1); }

gboolean
imap_msg_open(const ImapSession *s, guint i, StoreReader **r, GError **error)
{
    return store_reader_open(s->store, s->user, imap_view_stored_name(s->view), imap_msg_id(s, i),
                             r, error);
}

/* imap_flag_bits_append - the system flags of BITS and KEYWORDS, space-separated */
static void
imap_flag_bits_append(guint bits, const char *const *keywords, GString *out)
{
    gboolean first = TRUE;
    for (guint b = 1; b <= IMAP_FLAG_DRAFT; b <<= 1) {
        if (bits & b) {
            g_string_append_printf(out, "%s%s", first ? "" : " ", imap_flag_name(b));
            first = FALSE;
        }
    }
    for (guint k = 0; keywords && keywords[k]; k++) {
        g_string_append_printf(out, "%s%s", first ? "" : " ", keywords[k]);
        first = FALSE;
    }
}

void
imap_flags_append(ImapSession *s, guint i, GString *out)
{
    g_string_append_c(out, '(');
    imap_flag_bits_append(imap_view_flags(s->view, i + 1),
                          imap_view_msg_keywords(s->view, i + 1), out);
    g_string_append_c(out, ')');
}

/* imap_set_mark - mark seq (1-based) SEQ in MARKS */
static void
imap_set_mark(GArray *marks, guint seq)
{
    if (seq >= 1 && seq <= marks->len)
        g_array_index(marks, guint8, seq - 1) = 1;
}

GArray *
imap_set_of(ImapSession *s, GArray *ranges, gboolean uid)
{
    guint count = imap_msgs(s);
    guint32 max = !uid ? count : count ? imap_view_uid(s->view, count) : 0;
    g_autoptr(GArray) marks = g_array_sized_new(FALSE, TRUE, 1, count);
    g_array_set_size(marks, count);
    for (guint k = 0; k < ranges->len; k++) {
        ImapRange r = imap_range_resolve(g_array_index(ranges, ImapRange, k), max);
        guint first = r.lo, last = r.hi;
        if (uid) {
            /* UIDs no message has are left out (RFC 9051 6.4.9) */
            if (!count || !imap_view_seq_range(s->view, r.lo, r.hi, &first, &last))
                continue;
        } else if (r.lo == 0 || r.hi > count) {
            return NULL;
        }
        for (guint q = first; q <= last; q++)
            imap_set_mark(marks, q);
    }
    GArray *set = g_array_new(FALSE, FALSE, sizeof(guint));
    for (guint i = 0; i < count; i++)
        if (g_array_index(marks, guint8, i))
            g_array_append_val(set, i);
    return set;
}

/* imap_seqs - the 1-based seqs of INDEXES (0-based), for view.h */
static guint *
imap_seqs(const GArray *indexes)
{
    guint *seqs = g_new(guint, MAX(indexes->len, 1));
    for (guint k = 0; k < indexes->len; k++)
        seqs[k] = g_array_index(indexes, guint, k) + 1;
    return seqs;
}

gboolean
imap_seen(ImapSession *s, GArray *indexes, GError **error)
{
    g_autofree guint *seqs = imap_seqs(indexes);
    return imap_view_store_flags(s->view, seqs, indexes->len, IMAP_FLAGS_ADD, IMAP_FLAG_SEEN,
                                 NULL, NULL, error);
}

/* imap_view_no - the tagged NO for a view error E of command C; E is freed */
static ImapRc
imap_view_no(ImapSession *s, const ImapCmd *c, GError *e, GString *out)
{
    static const struct {
        ImapViewErrorCode code;
        const char *text;
    } texts[] = {
        {IMAP_VIEW_ERROR_NONEXISTENT, "[NONEXISTENT] Mailbox does not exist"},
        {IMAP_VIEW_ERROR_EXISTS, "[ALREADYEXISTS] Mailbox already exists"},
        {IMAP_VIEW_ERROR_BAD_NAME, "[CANNOT] Invalid mailbox name"},
        {IMAP_VIEW_ERROR_READ_ONLY, "[READ-ONLY] Mailbox is read-only"},
        {IMAP_VIEW_ERROR_LIMIT, "[LIMIT] Too many or too long keywords"},
        {IMAP_VIEW_ERROR_INBOX, "[CANNOT] INBOX cannot be deleted"},
    };
    const char *text = NULL;
    for (gsize k = 0; e && e->domain == IMAP_VIEW_ERROR && k < G_N_ELEMENTS(texts); k++)
        if (e->code == (int)texts[k].code)
            text = texts[k].text;
    if (text)
        imap_tagged(out, c->tag, "NO", "%s", text);
    else
        imap_store_failed(s, c, e, out);
    g_clear_error(&e);
    return IMAP_DONE;
}

/* imap_view_done - the tagged reply of command C after a call on the view: OK when it went
 * well (OK), else the NO for its error E (freed) */
static ImapRc
imap_view_done(ImapSession *s, const ImapCmd *c, gboolean ok, GError *e, GString *out)
{
    if (!ok)
        return imap_view_no(s, c, e, out);
    imap_tagged(out, c->tag, "OK", "%s completed", c->name);
    return IMAP_DONE;
}

/* imap_epoch_ended - the selected mailbox's UIDVALIDITY changed: the session cannot go on */
static void
imap_epoch_ended(ImapSession *s, GString *out)
{
    log_info("imap %s: %s: %s changed under the session, closing", s->peer, s->user, s->mailbox);
    g_string_append(out, "* BYE [UNAVAILABLE] Mailbox changed (UIDVALIDITY), please reconnect\r\n");
    imap_fetch_free(&s->fetch);
    s->end_reason = "epoch-ended";
    s->state = IMAP_STATE_LOGOUT;
}

/* imap_mailbox_flags - the FLAGS and PERMANENTFLAGS lines of the selected mailbox */
static void
imap_mailbox_flags(ImapSession *s, GString *out)
{
    const char *const *kw = imap_view_keywords(s->view);
    g_string_append(out, "* FLAGS (" IMAP_SYSTEM_FLAGS);
    for (guint k = 0; kw && kw[k]; k++)
        g_string_append_printf(out, " %s", kw[k]);
    g_string_append(out, ")\r\n");
    if (s->readonly) {
        g_string_append(out, "* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n");
        return;
    }
    g_string_append(out, "* OK [PERMANENTFLAGS (" IMAP_SYSTEM_FLAGS);
    for (guint k = 0; kw && kw[k]; k++)
        g_string_append_printf(out, " %s", kw[k]);
    if (!imap_view_keywords_full(s->view))
        g_string_append(out, " \\*");
    g_string_append(out, ")] Flags permitted\r\n");
}

/* imap_send_expunged - "* n EXPUNGE" for each of EXPUNGED */
static void
imap_send_expunged(ImapSession *s, const GArray *expunged, GString *out)
{
    for (guint k = 0; expunged && k < expunged->len; k++) {
        g_string_append_printf(out, "* %u EXPUNGE\r\n", g_array_index(expunged, guint, k));
        if (s->exists)
            s->exists--;
    }
}

void
imap_sync(ImapSession *s, GString *out)
{
    if (!s->view)
        return;
    ImapViewChanges ch;
    imap_view_changes_init(&ch);
    GError *e = NULL;
    if (!imap_view_sync(s->view, &ch, &e)) {
        if (g_error_matches(e, IMAP_VIEW_ERROR, IMAP_VIEW_ERROR_EPOCH_ENDED))
            imap_epoch_ended(s, out);
        else
            log_warn("imap %s: %s: sync of %s failed: %s", s->peer, s->user, s->mailbox,
                     e->message);
        g_error_free(e);
        imap_view_changes_clear(&ch);
        return;
    }
    imap_send_expunged(s, ch.expunged, out);
    if (ch.keywords_changed)
        imap_mailbox_flags(s, out);
    if (ch.exists != s->exists) {
        g_string_append_printf(out, "* %u EXISTS\r\n", ch.exists);
        s->exists = ch.exists;
    }
    for (guint k = 0; ch.flags_changed && k < ch.flags_changed->len; k++) {
        guint seq = g_array_index(ch.flags_changed, guint, k);
        if (seq < 1 || seq > imap_msgs(s))
            continue;
        g_string_append_printf(out, "* %u FETCH (UID %u FLAGS ", seq, imap_msg_uid(s, seq - 1));
        imap_flags_append(s, seq - 1, out);
        g_string_append(out, ")\r\n");
    }
    imap_view_changes_clear(&ch);
}

/* ---- arguments ------------------------------------------------------------------------------- */

/* imap_mailbox_arg - SP mailbox (astring), "/" at its end removed; NULL on bad syntax */
static char *
imap_mailbox_arg(ImapCmd *c)
{
    if (!imap_parse_sp(&c->p))
        return NULL;
    return imap_parse_astring(&c->p);
}

/* imap_flags_parse - FLAGS (strings) into system bits and keywords (NULL-terminated, in
 * KEYWORDS); FALSE on a flag that cannot be stored (\Recent is ignored, as RFC 9051 asks) */
static gboolean
imap_flags_parse(GPtrArray *flags, guint *bits, GPtrArray *keywords)
{
    *bits = 0;
    for (guint k = 0; k < flags->len; k++) {
        const char *f = g_ptr_array_index(flags, k);
        if (f[0] == '\\') {
            guint b = imap_flag_from_name(f);
            if (b)
                *bits |= b;
            else if (g_ascii_strcasecmp(f, "\\Recent") != 0)
                return FALSE;
        } else {
            gboolean dup = FALSE;
            for (guint j = 0; j < keywords->len && !dup; j++)
                dup = g_ascii_strcasecmp(g_ptr_array_index(keywords, j), f) == 0;
            if (!dup)
                g_ptr_array_add(keywords, g_strdup(f));
        }
    }
    g_ptr_array_add(keywords, NULL);
    return TRUE;
}

/* ---- SELECT, EXAMINE, CLOSE, UNSELECT -------------------------------------------------------- */

void
imap_unselect(ImapSession *s)
{
    imap_fetch_free(&s->fetch);
    imap_view_free(&s->view);
    g_clear_pointer(&s->mailbox, g_free);
    s->readonly = FALSE;
    s->exists = 0;
    if (s->state == IMAP_STATE_SELECTED)
        s->state = IMAP_STATE_AUTHENTICATED;
}

/* imap_cmd_select - SELECT / EXAMINE mailbox (6.3.2, 6.3.3) */
ImapRc
imap_cmd_select(ImapSession *s, ImapCmd *c, GString *out)
{
    g_autofree char *name = imap_mailbox_arg(c);
    if (!name || !imap_parse_end(&c->p))
        return imap_bad(c, out, "syntax: %s mailbox", c->name);
    gboolean examine = g_ascii_strcasecmp(c->name, "EXAMINE") == 0;
    if (s->state == IMAP_STATE_SELECTED) {
        imap_unselect(s);
        if (s->rev2)
            g_string_append(out, "* OK [CLOSED] Previous mailbox closed\r\n");
    }
    GError *e = NULL;
    s->view = imap_view_open(s->store, s->user, name, examine, (int)s->cfg.settle_ms, &e);
    if (!s->view) {
        return imap_view_no(s, c, e, out);
    }
    s->mailbox = g_strdup(imap_view_name(s->view));
    s->readonly = imap_view_read_only(s->view);
    s->state = IMAP_STATE_SELECTED;
    guint count = imap_view_count(s->view);
    s->exists = count;
    imap_mailbox_flags(s, out);
    g_string_append_printf(out, "* %u EXISTS\r\n", count);
    if (!s->rev2) {
        g_string_append(out, "* 0 RECENT\r\n");
        for (guint q = 1; q <= count; q++) {
            if (!(imap_view_flags(s->view, q) & IMAP_FLAG_SEEN)) {
                g_string_append_printf(out, "* OK [UNSEEN %u] First unseen\r\n", q);
                break;
            }
        }
    }
    g_string_append_printf(out, "* OK [UIDVALIDITY %u] UIDs valid\r\n",
                           imap_view_uidvalidity(s->view));
    g_string_append_printf(out, "* OK [UIDNEXT %u] Predicted next UID\r\n",
                           imap_view_uidnext(s->view));
    if (s->rev2) {
        g_string_append(out, "* LIST () \"/\" ");
        imap_append_astring(out, s->mailbox);
        g_string_append(out, "\r\n");
    }
    imap_tagged(out, c->tag, "OK", "[%s] %s completed", s->readonly ? "READ-ONLY" : "READ-WRITE",
                examine ? "EXAMINE" : "SELECT");
    return IMAP_DONE;
}

/* imap_cmd_close - CLOSE (6.4.1: expunge silently unless read-only) and UNSELECT (RFC 3691) */
ImapRc
imap_cmd_close(ImapSession *s, ImapCmd *c, GString *out)
{
    if (!imap_parse_end(&c->p))
        return imap_bad(c, out, "syntax: %s", c->name);
    if (strcmp(c->name, "CLOSE") == 0 && !s->readonly) {
        GError *e = NULL;
        g_autoptr(GArray) gone = g_array_new(FALSE, FALSE, sizeof(guint));
        if (!imap_view_expunge(s->view, NULL, 0, gone, &e)) {
            log_warn("imap %s: %s: CLOSE of %s could not expunge: %s", s->peer, s->user,
                     s->mailbox, e->message);
            g_error_free(e);
        }
    }
    imap_unselect(s);
    imap_tagged(out, c->tag, "OK", "%s completed", c->name);
    return IMAP_DONE;
}

/* ---- CREATE, DELETE, RENAME, SUBSCRIBE, STATUS ---------------------------------------------- */

/* imap_strip_delimiter - NAME without a trailing "/" (CREATE's "foo/" makes "foo") */
static char *
imap_strip_delimiter(char *name)
{
    gsize n = strlen(name);
    while (n > 1 && name[n - 1] == '/')
        name[--n] = '\0';
    return name;
}

/* imap_cmd_manage - CREATE mailbox (6.3.4), DELETE mailbox (6.3.5), RENAME mailbox new-name
 * (6.3.6) */
ImapRc
imap_cmd_manage(ImapSession *s, ImapCmd *c, GString *out)
{
    gboolean rename = strcmp(c->name, "RENAME") == 0;
    g_autofree char *name = imap_mailbox_arg(c);
    g_autofree char *to = name && rename ? imap_mailbox_arg(c) : NULL;
    if (!name || (rename && !to) || !imap_parse_end(&c->p))
        return imap_bad(c, out, "syntax: %s mailbox%s", c->name, rename ? " new-name" : "");
    GError *e = NULL;
    gboolean ok;
    if (rename)
        ok = imap_mailbox_rename(s->store, s->user, name, imap_strip_delimiter(to), &e);
    else if (strcmp(c->name, "CREATE") == 0)
        ok = imap_mailbox_create(s->store, s->user, imap_strip_delimiter(name), &e);
    else
        ok = imap_mailbox_delete(s->store, s->user, name, &e);
    return imap_view_done(s, c, ok, e, out);
}

/* imap_cmd_subscribe - SUBSCRIBE (6.3.7) and UNSUBSCRIBE (6.3.8): every mailbox is subscribed,
 * so SUBSCRIBE changes nothing; no subscription list is kept (LSUB is LIST), so an OK to
 * UNSUBSCRIBE would be a promise the next LSUB breaks: the answer says so instead */
ImapRc
imap_cmd_subscribe(ImapSession *s, ImapCmd *c, GString *out)
{
    (void)s;
    g_autofree char *name = imap_mailbox_arg(c);
    if (!name || !imap_parse_end(&c->p))
        return imap_bad(c, out, "syntax: %s mailbox", c->name);
    if (strcmp(c->name, "UNSUBSCRIBE") == 0)
        imap_tagged(out, c->tag, "NO", "[CANNOT] every mailbox is subscribed here");
    else
        imap_tagged(out, c->tag, "OK", "%s completed", c->name);
    return IMAP_DONE;
}

ImapRc
imap_cmd_status(ImapSession *s, ImapCmd *c, GString *out)
{
    enum { ST_MESSAGES = 1, ST_UIDNEXT = 2, ST_UIDVALIDITY = 4, ST_UNSEEN = 8, ST_SIZE = 16,
           ST_DELETED = 32, ST_RECENT = 64 };
    static const struct { const char *name; guint bit; } atts[] = {
        {"MESSAGES", ST_MESSAGES}, {"UIDNEXT", ST_UIDNEXT}, {"UIDVALIDITY", ST_UIDVALIDITY},
        {"UNSEEN", ST_UNSEEN}, {"SIZE", ST_SIZE}, {"DELETED", ST_DELETED}, {"RECENT", ST_RECENT},
    };
    g_autofree char *name = imap_mailbox_arg(c);
    if (!name || !imap_parse_sp(&c->p) || !imap_parse_char(&c->p, '('))
        return imap_bad(c, out, "syntax: STATUS mailbox (items)");
    g_autoptr(GArray) order = g_array_new(FALSE, FALSE, sizeof(guint));
    do {
        g_autofree char *a = imap_parse_atom(&c->p);
        guint bit = 0;
        for (gsize k = 0; a && k < G_N_ELEMENTS(atts); k++)
            if (g_ascii_strcasecmp(a, atts[k].name) == 0)
                bit = atts[k].bit;
        if (!bit || order->len > 20)
            return imap_bad(c, out, "syntax: STATUS mailbox (MESSAGES UIDNEXT UIDVALIDITY UNSEEN "
                            "SIZE DELETED)");
        g_array_append_val(order, bit);
    } while (imap_parse_sp(&c->p));
    if (!imap_parse_char(&c->p, ')') || !imap_parse_end(&c->p))
        return imap_bad(c, out, "syntax: STATUS mailbox (items)");
    ImapStatus st;
    GError *e = NULL;
    if (!imap_mailbox_status(s->store, s->user, name, (int)s->cfg.settle_ms, &st, &e))
        return imap_view_no(s, c, e, out);
    g_autofree char *shown = NULL;
    {
        g_autofree char *stored = imap_name_to_store(name);
        shown = stored ? imap_name_from_store(stored) : g_strdup(name);
    }
    g_string_append(out, "* STATUS ");
    imap_append_astring(out, shown);
    g_string_append(out, " (");
    for (guint k = 0; k < order->len; k++) {
        guint bit = g_array_index(order, guint, k);
        if (k)
            g_string_append_c(out, ' ');
        switch (bit) {
        case ST_MESSAGES: g_string_append_printf(out, "MESSAGES %u", st.messages); break;
        case ST_UIDNEXT: g_string_append_printf(out, "UIDNEXT %u", st.uidnext); break;
        case ST_UIDVALIDITY: g_string_append_printf(out, "UIDVALIDITY %u", st.uidvalidity); break;
        case ST_UNSEEN: g_string_append_printf(out, "UNSEEN %u", st.unseen); break;
        case ST_SIZE: g_string_append_printf(out, "SIZE %" G_GUINT64_FORMAT, st.size); break;
        case ST_DELETED: g_string_append_printf(out, "DELETED %u", st.deleted); break;
        default: g_string_append(out, "RECENT 0"); break;
        }
    }
    g_string_append(out, ")\r\n");
    imap_tagged(out, c->tag, "OK", "STATUS completed");
    return IMAP_DONE;
}

/* ---- LIST, LSUB (6.3.9, RFC 6154) ------------------------------------------------------------ */

/* imap_match - whether NAME matches PATTERN ('*' anything, '%' anything but '/'); INBOX's case
 * does not matter */
static gboolean
imap_match(const char *pattern, const char *name)
{
    for (; *pattern; pattern++, name++) {
        if (*pattern == '*' || *pattern == '%') {
            for (const char *t = name;; t++) {
                if (imap_match(pattern + 1, t))
                    return TRUE;
                if (!*t || (*pattern == '%' && *t == '/'))
                    return FALSE;
            }
        }
        if (*pattern != *name)
            return FALSE;
    }
    return *name == '\0';
}

/* imap_match_name - NAME against PATTERN, INBOX (and "INBOX/...") matching case-insensitively */
static gboolean
imap_match_name(const char *pattern, const char *name)
{
    if (g_ascii_strncasecmp(name, "INBOX", 5) == 0 && (name[5] == '\0' || name[5] == '/') &&
        g_ascii_strncasecmp(pattern, "INBOX", 5) == 0) {
        g_autofree char *p = g_strconcat("INBOX", pattern + 5, NULL);
        g_autofree char *n = g_strconcat("INBOX", name + 5, NULL);
        return imap_match(p, n);
    }
    return imap_match(pattern, name);
}

typedef struct {
    char *name;
    gboolean exists, sent, children;
} ImapListEntry;

static void
imap_list_entry_free(gpointer p)
{
    ImapListEntry *e = p;
    g_free(e->name);
    g_free(e);
}

/* imap_list_add - NAME (EXISTS or only a parent of one) into TABLE */
static ImapListEntry *
imap_list_add(GHashTable *table, GPtrArray *order, const char *name, gboolean exists)
{
    ImapListEntry *e = g_hash_table_lookup(table, name);
    if (!e) {
        e = g_new0(ImapListEntry, 1);
        e->name = g_strdup(name);
        g_hash_table_insert(table, e->name, e);
        g_ptr_array_add(order, e);
    }
    e->exists |= exists;
    return e;
}

ImapRc
imap_cmd_list(ImapSession *s, ImapCmd *c, GString *out)
{
    gboolean lsub = strcmp(c->name, "LSUB") == 0;
    gboolean special_only = FALSE, subscribed = FALSE, ret_special = TRUE;
    ImapParser *p = &c->p;
    if (!imap_parse_sp(p))
        return imap_bad(c, out, "syntax: %s reference mailbox", c->name);
    /* LIST-EXTENDED (RFC 5258) selection options: the ones that make sense here */
    if (!lsub && imap_parse_char(p, '(')) {
        while (!imap_parse_char(p, ')')) {
            g_autofree char *o = imap_parse_atom(p);
            if (!o)
                return imap_bad(c, out, "syntax: LIST (options) reference mailbox");
            if (g_ascii_strcasecmp(o, "SPECIAL-USE") == 0)
                special_only = TRUE;
            else if (g_ascii_strcasecmp(o, "SUBSCRIBED") == 0)
                subscribed = TRUE;
            else if (g_ascii_strcasecmp(o, "REMOTE") != 0 &&
                     g_ascii_strcasecmp(o, "RECURSIVEMATCH") != 0)
                return imap_bad(c, out, "LIST option %.40s is not supported", o);
            imap_parse_sp(p);
        }
        if (!imap_parse_sp(p))
            return imap_bad(c, out, "syntax: LIST (options) reference mailbox");
    }
    g_autofree char *ref = imap_parse_astring(p);
    if (!ref || !imap_parse_sp(p))
        return imap_bad(c, out, "syntax: %s reference mailbox", c->name);
    g_autoptr(GPtrArray) patterns = g_ptr_array_new_with_free_func(g_free);
    if (!lsub && imap_parse_char(p, '(')) {
        do {
            char *pat = imap_parse_list_mailbox(p);
            if (!pat || patterns->len >= 20) {
                g_free(pat);
                return imap_bad(c, out, "syntax: LIST reference (patterns)");
            }
            g_ptr_array_add(patterns, pat);
        } while (imap_parse_sp(p));
        if (!imap_parse_char(p, ')'))
            return imap_bad(c, out, "syntax: LIST reference (patterns)");
    } else {
        char *pat = imap_parse_list_mailbox(p);
        if (!pat)
            return imap_bad(c, out, "syntax: %s reference mailbox", c->name);
        g_ptr_array_add(patterns, pat);
    }
    if (!lsub && imap_parse_sp(p)) {
        g_autofree char *ret = imap_parse_atom(p);
        if (!ret || g_ascii_strcasecmp(ret, "RETURN") != 0 || !imap_parse_sp(p) ||
            !imap_parse_char(p, '('))
            return imap_bad(c, out, "syntax: LIST reference mailbox RETURN (options)");
        while (!imap_parse_char(p, ')')) {
            g_autofree char *o = imap_parse_atom(p);
            if (!o || (g_ascii_strcasecmp(o, "SPECIAL-USE") != 0 &&
                       g_ascii_strcasecmp(o, "CHILDREN") != 0 &&
                       g_ascii_strcasecmp(o, "SUBSCRIBED") != 0))
                return imap_bad(c, out, "LIST RETURN option not supported");
            if (g_ascii_strcasecmp(o, "SUBSCRIBED") == 0)
                subscribed = TRUE;
            imap_parse_sp(p);
        }
    }
    if (!imap_parse_end(p))
        return imap_bad(c, out, "syntax: %s reference mailbox", c->name);
    (void)ret_special;

    const char *verb = lsub ? "LSUB" : "LIST";
    /* LIST "" "": the hierarchy delimiter and root */
    if (patterns->len == 1 && !*(char *)g_ptr_array_index(patterns, 0)) {
        g_string_append_printf(out, "* %s (\\Noselect) \"/\" \"\"\r\n", verb);
        imap_tagged(out, c->tag, "OK", "%s completed", verb);
        return IMAP_DONE;
    }

    g_autoptr(GPtrArray) boxes = g_ptr_array_new_with_free_func(g_free);
    GError *e = NULL;
    if (!imap_mailboxes_list(s->store, s->user, boxes, &e)) {
        return imap_view_no(s, c, e, out);
    }
    g_autoptr(GHashTable) table = g_hash_table_new(g_str_hash, g_str_equal);
    g_autoptr(GPtrArray) order = g_ptr_array_new_with_free_func(imap_list_entry_free);
    for (guint k = 0; k < boxes->len; k++) {
        const ImapMailboxInfo *b = g_ptr_array_index(boxes, k);
        ImapListEntry *en = imap_list_add(table, order, b->name, TRUE);
        en->sent = b->sent;
        /* every parent level, existing or not, has children */
        g_autofree char *parent = g_strdup(b->name);
        char *slash;
        while ((slash = strrchr(parent, '/')) != NULL) {
            *slash = '\0';
            if (!*parent)
                break;
            imap_list_add(table, order, parent, FALSE)->children = TRUE;
        }
    }
    for (guint k = 0; k < order->len; k++) {
        ImapListEntry *en = g_ptr_array_index(order, k);
        gboolean match = FALSE;
        for (guint j = 0; j < patterns->len && !match; j++) {
            g_autofree char *full = g_strconcat(ref, g_ptr_array_index(patterns, j), NULL);
            match = imap_match_name(full, en->name);
        }
        if (!match || (special_only && !en->sent))
            continue;
        g_string_append_printf(out, "* %s (", verb);
        GString *attrs = g_string_new(NULL);
        if (!en->exists)
            g_string_append(attrs, " \\Noselect");
        g_string_append(attrs, en->children ? " \\HasChildren" : " \\HasNoChildren");
        if (en->sent)
            g_string_append(attrs, " \\Sent");
        if (subscribed && en->exists)
            g_string_append(attrs, " \\Subscribed");
        g_string_append(out, attrs->str + 1);
        g_string_free(attrs, TRUE);
        g_string_append(out, ") \"/\" ");
        imap_append_astring(out, en->name);
        g_string_append(out, "\r\n");
    }
    imap_tagged(out, c->tag, "OK", "%s completed", verb);
    return IMAP_DONE;
}

/* ---- APPEND (6.3.12) ------------------------------------------------------------------------- */

void
imap_upload_free(ImapUpload **up)
{
    ImapUpload *u = g_steal_pointer(up);
    if (!u)
        return;
    imap_append_free(&u->append);
    g_clear_pointer(&u->keywords, g_ptr_array_unref);
    g_clear_error(&u->error);
    g_free(u);
}

/* imap_upload_head - parse the command gathered so far as "tag APPEND mailbox [flags]
 * [date-time] " (the message literal follows); the mailbox and flags when it is */
static gboolean
imap_upload_head(ImapSession *s, char **mailbox, GPtrArray *flags, gboolean *flags_ok)
{
    ImapParser p;
    imap_parser_init(&p, s->cmd->str, s->cmd->len);
    g_autofree char *tag = imap_parse_tag(&p);
    g_autofree char *verb = NULL;
    if (!tag || !imap_parse_sp(&p) || !(verb = imap_parse_atom(&p)) ||
        g_ascii_strcasecmp(verb, "APPEND") != 0 || !imap_parse_sp(&p))
        return FALSE;
    char *name = imap_parse_astring(&p);
    if (!name)
        return FALSE;
    if (!imap_parse_sp(&p)) {
        g_free(name);
        return FALSE;
    }
    *flags_ok = TRUE;
    if (imap_parse_peek(&p) == '(') {
        if (!imap_parse_flag_list(&p, flags) || !imap_parse_sp(&p))
            *flags_ok = FALSE;
    }
    gint64 t;
    if (*flags_ok && imap_parse_peek(&p) == '"') {
        if (!imap_parse_date_time(&p, &t) || !imap_parse_sp(&p))
            *flags_ok = FALSE;
    }
    if (*flags_ok && !imap_parse_end(&p))
        *flags_ok = FALSE;
    *mailbox = name;
    return TRUE;
}

gboolean
imap_upload_starts(ImapSession *s)
{
    g_autoptr(GPtrArray) flags = g_ptr_array_new_with_free_func(g_free);
    char *name = NULL;
    gboolean ok = FALSE;
    gboolean is = imap_upload_head(s, &name, flags, &ok);
    g_free(name);
    return is;
}

/* imap_upload_refuse - an APPEND that will not be taken: now (a synchronizing literal: the
 * client sends nothing more) or after its literal has been read and dropped */
static ImapRc
imap_upload_refuse(ImapSession *s, const char *tag, gboolean plus, gboolean huge, guint64 n,
                   const char *status, const char *text, GString *out)
{
    if (!plus || huge) {
        imap_tagged(out, tag, status, "%s", text);
        return strcmp(status, "BAD") == 0 ? IMAP_BAD : IMAP_DONE;
    }
    s->skipping = TRUE;
    g_string_truncate(s->skip_reply, 0);
    imap_tagged(s->skip_reply, tag, status, "%s", text);
    s->literal_left = n;
    return IMAP_DONE;
}

ImapRc
imap_upload_begin(ImapSession *s, guint64 n, gboolean plus, gboolean huge, GString *out)
{
    g_autoptr(GPtrArray) flags = g_ptr_array_new_with_free_func(g_free);
    g_autofree char *name = NULL;
    gboolean ok = FALSE;
    imap_upload_head(s, &name, flags, &ok);
    ImapParser p;
    imap_parser_init(&p, s->cmd->str, s->cmd->len);
    g_autofree char *tag = imap_parse_tag(&p);

    if (s->state != IMAP_STATE_AUTHENTICATED && s->state != IMAP_STATE_SELECTED)
        return imap_upload_refuse(s, tag, plus, huge, n, "BAD", "APPEND not allowed now: log in first", out);
    if (!ok)
        return imap_upload_refuse(s, tag, plus, huge, n, "BAD",
                                  "syntax: APPEND mailbox [(flags)] [date-time] literal", out);
    guint bits;
    g_autoptr(GPtrArray) keywords = g_ptr_array_new_with_free_func(g_free);
    if (!imap_flags_parse(flags, &bits, keywords))
        return imap_upload_refuse(s, tag, plus, huge, n, "BAD", "invalid flag in APPEND", out);
    if (huge || n > s->cfg.max_message_size)
        return imap_upload_refuse(s, tag, plus, huge, n, "NO",
                                  "[TOOBIG] Message too large", out);
    GError *e = NULL;
    ImapAppend *a = imap_append_begin(s->store, s->user, name, &e);
    if (!a) {
        g_autofree char *text = NULL;
        if (g_error_matches(e, IMAP_VIEW_ERROR, IMAP_VIEW_ERROR_NONEXISTENT))
            text = g_strdup("[TRYCREATE] Mailbox does not exist");
        else if (imap_temporary(e))
            text = g_strdup("[UNAVAILABLE] APPEND failed, try again later");
        else if (g_error_matches(e, IMAP_VIEW_ERROR, IMAP_VIEW_ERROR_BAD_NAME))
            text = g_strdup("[CANNOT] Invalid mailbox name");
        else
            text = g_strdup("[SERVERBUG] APPEND failed");
        log_info("imap %s: %s: APPEND to %.100s refused: %s", s->peer, s->user, name, e->message);
        g_error_free(e);
        return imap_upload_refuse(s, tag, plus, huge, n, "NO", text, out);
    }
    ImapUpload *u = g_new0(ImapUpload, 1);
    u->append = a;
    u->flags = bits;
    u->keywords = g_steal_pointer(&keywords);
    u->size = n;
    u->done = n == 0;
    s->append = u;
    s->literal_left = n;
    if (!plus)
        g_string_append(out, "+ Ready for literal data\r\n");
    return IMAP_DONE;
}

void
imap_upload_write(ImapSession *s, const char *buf, gsize len)
{
    ImapUpload *u = s->append;
    if (u->error || !len)
        return;
    imap_append_write(u->append, buf, len, &u->error);
}

ImapRc
imap_upload_finish(ImapSession *s, GString *out)
{
    ImapUpload *u = s->append;
    ImapParser p;
    imap_parser_init(&p, s->cmd->str, s->cmd->len);
    g_autofree char *tag = imap_parse_tag(&p);
    ImapCmd c = {.tag = tag, .name = "APPEND"};
    guint32 uidvalidity = 0, uid = 0;
    if (!u->error)
        imap_append_commit(u->append, u->flags, (const char *const *)u->keywords->pdata, 0,
                           &uidvalidity, &uid, &u->error);
    if (u->error) {
        if (g_error_matches(u->error, IMAP_VIEW_ERROR, IMAP_VIEW_ERROR_LIMIT))
            imap_tagged(out, tag, "NO", "[LIMIT] Too many or too long keywords");
        else
            imap_store_failed(s, &c, u->error, out);
        return IMAP_DONE;
    }
    s->appended++;
    if (s->state == IMAP_STATE_SELECTED)
        imap_sync(s, out);
    if (uid)
        imap_tagged(out, tag, "OK", "[APPENDUID %u %u] APPEND completed", uidvalidity, uid);
    else
        imap_tagged(out, tag, "OK", "APPEND completed");
    return IMAP_DONE;
}

/* imap_cmd_append - an APPEND that came without a message literal */
ImapRc
imap_cmd_append(ImapSession *s, ImapCmd *c, GString *out)
{
    (void)s;
    return imap_bad(c, out, "syntax: APPEND mailbox [(flags)] [date-time] literal");
}

/* ---- EXPUNGE, STORE, COPY, MOVE -------------------------------------------------------------- */

/* imap_uid_set_arg - SP sequence-set as message indexes; NULL after a BAD reply */
static GArray *
imap_set_arg(ImapSession *s, ImapCmd *c, GString *out, ImapRc *rc)
{
    g_autoptr(GArray) ranges = g_array_new(FALSE, FALSE, sizeof(ImapRange));
    if (!imap_parse_sp(&c->p) || !imap_parse_seqset(&c->p, ranges)) {
        *rc = imap_bad(c, out, "syntax: %s sequence-set ...", c->name);
        return NULL;
    }
    GArray *set = imap_set_of(s, ranges, c->uid);
    if (!set)
        *rc = imap_bad(c, out, "invalid message sequence number");
    return set;
}

ImapRc
imap_cmd_expunge(ImapSession *s, ImapCmd *c, GString *out)
{
    g_autoptr(GArray) set = NULL;
    ImapRc rc = IMAP_DONE;
    if (c->uid && !(set = imap_set_arg(s, c, out, &rc)))
        return rc;
    if (!imap_parse_end(&c->p))
        return imap_bad(c, out, "syntax: %s", c->uid ? "UID EXPUNGE sequence-set" : "EXPUNGE");
    if (s->readonly) {
        imap_tagged(out, c->tag, "NO", "[READ-ONLY] Mailbox is read-only");
        return IMAP_DONE;
    }
    g_autoptr(GArray) gone = g_array_new(FALSE, FALSE, sizeof(guint));
    g_autofree guint *seqs = set ? imap_seqs(set) : NULL;
    GError *e = NULL;
    if (!imap_view_expunge(s->view, seqs, set ? set->len : 0, gone, &e)) {
        return imap_view_no(s, c, e, out);
    }
    imap_send_expunged(s, gone, out);
    imap_tagged(out, c->tag, "OK", "%s completed", c->name);
    return IMAP_DONE;
}

ImapRc
imap_cmd_store(ImapSession *s, ImapCmd *c, GString *out)
{
    ImapRc rc = IMAP_DONE;
    g_autoptr(GArray) set = imap_set_arg(s, c, out, &rc);
    if (!set)
        return rc;
    ImapParser *p = &c->p;
    g_autofree char *item = NULL;
    ImapFlagsOp op = IMAP_FLAGS_REPLACE;
    if (!imap_parse_sp(p))
        return imap_bad(c, out, "syntax: %s set [+-]FLAGS[.SILENT] (flags)", c->name);
    if (imap_parse_char(p, '+'))
        op = IMAP_FLAGS_ADD;
    else if (imap_parse_char(p, '-'))
        op = IMAP_FLAGS_REMOVE;
    item = imap_parse_atom(p);
    gboolean silent = item && g_ascii_strcasecmp(item, "FLAGS.SILENT") == 0;
    if (!item || (!silent && g_ascii_strcasecmp(item, "FLAGS") != 0) || !imap_parse_sp(p))
        return imap_bad(c, out, "syntax: %s set [+-]FLAGS[.SILENT] (flags)", c->name);
    g_autoptr(GPtrArray) flags = g_ptr_array_new_with_free_func(g_free);
    if (imap_parse_peek(p) == '(') {
        if (!imap_parse_flag_list(p, flags))
            return imap_bad(c, out, "syntax: invalid flag list");
    } else {
        do {
            char *f = imap_parse_flag(p, FALSE);
            if (!f || flags->len >= 100) {
                g_free(f);
                return imap_bad(c, out, "syntax: invalid flag");
            }
            g_ptr_array_add(flags, f);
        } while (imap_parse_sp(p));
    }
    if (!imap_parse_end(p))
        return imap_bad(c, out, "syntax: %s set [+-]FLAGS[.SILENT] (flags)", c->name);
    guint bits;
    g_autoptr(GPtrArray) keywords = g_ptr_array_new_with_free_func(g_free);
    if (!imap_flags_parse(flags, &bits, keywords))
        return imap_bad(c, out, "invalid flag");
    if (s->readonly) {
        imap_tagged(out, c->tag, "NO", "[READ-ONLY] Mailbox is read-only");
        return IMAP_DONE;
    }
    g_autofree guint *seqs = imap_seqs(set);
    g_autoptr(GArray) changed = g_array_new(FALSE, FALSE, sizeof(guint));
    GError *e = NULL;
    if (set->len &&
        !imap_view_store_flags(s->view, seqs, set->len, op, bits,
                               (const char *const *)keywords->pdata, changed, &e)) {
        return imap_view_no(s, c, e, out);
    }
    for (guint k = 0; !silent && k < set->len; k++) {
        guint i = g_array_index(set, guint, k);
        g_string_append_printf(out, "* %u FETCH (", i + 1);
        if (c->uid)
            g_string_append_printf(out, "UID %u ", imap_msg_uid(s, i));
        g_string_append(out, "FLAGS ");
        imap_flags_append(s, i, out);
        g_string_append(out, ")\r\n");
    }
    imap_tagged(out, c->tag, "OK", "%s completed", c->name);
    return IMAP_DONE;
}

ImapRc
imap_cmd_copy(ImapSession *s, ImapCmd *c, GString *out)
{
    gboolean move = g_str_has_suffix(c->name, "MOVE");
    ImapRc rc = IMAP_DONE;
    g_autoptr(GArray) set = imap_set_arg(s, c, out, &rc);
    if (!set)
        return rc;
    g_autofree char *dest = imap_mailbox_arg(c);
    if (!dest || !imap_parse_end(&c->p))
        return imap_bad(c, out, "syntax: %s sequence-set mailbox", c->name);
    if (move && s->readonly) {
        imap_tagged(out, c->tag, "NO", "[READ-ONLY] Mailbox is read-only");
        return IMAP_DONE;
    }
    if (set->len == 0) {
        /* a UID set that names no message: nothing to do (RFC 9051 6.4.9) */
        imap_tagged(out, c->tag, "OK", "%s completed", c->name);
        return IMAP_DONE;
    }
    g_autofree guint *seqs = imap_seqs(set);
    g_autoptr(GArray) gone = g_array_new(FALSE, FALSE, sizeof(guint));
    guint32 uidvalidity = 0;
    GError *e = NULL;
    if (!imap_view_copy(s->view, seqs, set->len, dest, move, &uidvalidity, move ? gone : NULL,
                        &e)) {
        if (!g_error_matches(e, IMAP_VIEW_ERROR, IMAP_VIEW_ERROR_NONEXISTENT))
            return imap_view_no(s, c, e, out);
        g_error_free(e);
        imap_tagged(out, c->tag, "NO", "[TRYCREATE] Mailbox does not exist");
        return IMAP_DONE;
    }
    if (move)
        imap_send_expunged(s, gone, out);
    imap_tagged(out, c->tag, "OK", "%s completed", c->name);
    return IMAP_DONE;
}
