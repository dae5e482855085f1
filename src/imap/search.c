/*
 * search.c - SEARCH and UID SEARCH (RFC 9051 section 6.4.4), with ESEARCH's RETURN (MIN MAX COUNT
 * ALL) of RFC 4731 (and IMAP4rev2, which answers every SEARCH with ESEARCH once enabled).
 *
 * The keys are parsed into a tree, then each message is tested against it. Flags, sizes, UIDs and
 * dates come from the view; the header keys (FROM, TO, CC, BCC, SUBJECT, HEADER, SENT*) read the
 * message's header only (through the MIME parser, whose kept header is bounded), BODY and TEXT
 * stream the message a chunk at a time looking for the string, keeping no more than the string's
 * length between chunks. Strings match as case-insensitive substrings of the raw octets (ASCII
 * case only): encoded words and transfer encodings are not decoded.
 */
#include "imap/internal.h"

#include <string.h>

typedef enum {
    K_ALL, K_AND, K_OR, K_NOT, K_SEQ, K_UID, K_FLAG, K_UNFLAG, K_KEYWORD, K_UNKEYWORD,
    K_LARGER, K_SMALLER, K_BEFORE, K_ON, K_SINCE, K_SENTBEFORE, K_SENTON, K_SENTSINCE,
    K_HEADER, K_BODY, K_TEXT, K_NONE,
} KeyKind;

typedef struct Key Key;
struct Key {
    KeyKind kind;
    GPtrArray *children;   /* K_AND, K_OR (2), K_NOT (1): Key* */
    GArray *set;           /* K_SEQ, K_UID: ImapRange */
    guint flag;            /* K_FLAG, K_UNFLAG */
    char *field;           /* K_HEADER: the field name */
    char *text;            /* K_KEYWORD, K_HEADER, K_BODY, K_TEXT */
    guint64 number;        /* K_LARGER, K_SMALLER; days for the dates */
    gint64 days;
};

static void
key_free(gpointer p)
{
    Key *k = p;
    if (!k)
        return;
    if (k->children)
        g_ptr_array_free(k->children, TRUE);
    if (k->set)
        g_array_free(k->set, TRUE);
    g_free(k->field);
    g_free(k->text);
    g_free(k);
}

static Key *
key_new(KeyKind kind)
{
    Key *k = g_new0(Key, 1);
    k->kind = kind;
    if (kind == K_AND || kind == K_OR || kind == K_NOT)
        k->children = g_ptr_array_new_with_free_func(key_free);
    return k;
}

#define SEARCH_DEPTH_MAX 50
#define SEARCH_KEYS_MAX 1000

static Key *search_key(ImapParser *p, guint depth, guint *count);

/* search_keys - 1*(SP search-key) until the end or ")" into an AND */
static Key *
search_keys(ImapParser *p, guint depth, guint *count, gboolean in_parens)
{
    Key *and = key_new(K_AND);
    do {
        Key *k = search_key(p, depth, count);
        if (!k) {
            key_free(and);
            return NULL;
        }
        g_ptr_array_add(and->children, k);
    } while (imap_parse_sp(p));
    if (in_parens && !imap_parse_char(p, ')')) {
        key_free(and);
        return NULL;
    }
    return and;
}

/* search_string - SP astring, as a search string */
static char *
search_string(ImapParser *p)
{
    if (!imap_parse_sp(p))
        return NULL;
    char *s = imap_parse_astring(p);
    if (s && strlen(s) > 1024) {
        g_free(s);
        return NULL;
    }
    return s;
}

static Key *
search_key(ImapParser *p, guint depth, guint *count)
{
    if (depth > SEARCH_DEPTH_MAX || ++*count > SEARCH_KEYS_MAX)
        return NULL;
    if (imap_parse_char(p, '('))
        return search_keys(p, depth + 1, count, TRUE);
    char c = imap_parse_peek(p);
    if (g_ascii_isdigit(c) || c == '*') {
        Key *k = key_new(K_SEQ);
        k->set = g_array_new(FALSE, FALSE, sizeof(ImapRange));
        if (!imap_parse_seqset(p, k->set)) {
            key_free(k);
            return NULL;
        }
        return k;
    }
    g_autofree char *name = imap_parse_atom(p);
    if (!name)
        return NULL;
    static const struct { const char *name; KeyKind kind; guint flag; } simple[] = {
        {"ALL", K_ALL, 0},
        {"ANSWERED", K_FLAG, IMAP_FLAG_ANSWERED}, {"UNANSWERED", K_UNFLAG, IMAP_FLAG_ANSWERED},
        {"DELETED", K_FLAG, IMAP_FLAG_DELETED}, {"UNDELETED", K_UNFLAG, IMAP_FLAG_DELETED},
        {"DRAFT", K_FLAG, IMAP_FLAG_DRAFT}, {"UNDRAFT", K_UNFLAG, IMAP_FLAG_DRAFT},
        {"FLAGGED", K_FLAG, IMAP_FLAG_FLAGGED}, {"UNFLAGGED", K_UNFLAG, IMAP_FLAG_FLAGGED},
        {"SEEN", K_FLAG, IMAP_FLAG_SEEN}, {"UNSEEN", K_UNFLAG, IMAP_FLAG_SEEN},
        /* \Recent is not kept: no message is recent (NEW = RECENT UNSEEN, OLD = NOT RECENT) */
        {"RECENT", K_NONE, 0}, {"NEW", K_NONE, 0}, {"OLD", K_ALL, 0},
    };
    for (gsize i = 0; i < G_N_ELEMENTS(simple); i++) {
        if (g_ascii_strcasecmp(name, simple[i].name) == 0) {
            Key *k = key_new(simple[i].kind);
            k->flag = simple[i].flag;
            return k;
        }
    }
    static const struct { const char *name; KeyKind kind; } dated[] = {
        {"BEFORE", K_BEFORE}, {"ON", K_ON}, {"SINCE", K_SINCE}, {"SENTBEFORE", K_SENTBEFORE},
        {"SENTON", K_SENTON}, {"SENTSINCE", K_SENTSINCE},
    };
    for (gsize i = 0; i < G_N_ELEMENTS(dated); i++) {
        if (g_ascii_strcasecmp(name, dated[i].name) == 0) {
            Key *k = key_new(dated[i].kind);
            if (!imap_parse_sp(p) || !imap_parse_date(p, &k->days)) {
                key_free(k);
                return NULL;
            }
            return k;
        }
    }
    static const char *const fields[] = {"FROM", "TO", "CC", "BCC", "SUBJECT"};
    for (gsize i = 0; i < G_N_ELEMENTS(fields); i++) {
        if (g_ascii_strcasecmp(name, fields[i]) == 0) {
            Key *k = key_new(K_HEADER);
            k->field = g_strdup(fields[i]);
            if (!(k->text = search_string(p))) {
                key_free(k);
                return NULL;
            }
            return k;
        }
    }
    Key *k = NULL;
    if (g_ascii_strcasecmp(name, "HEADER") == 0) {
        k = key_new(K_HEADER);
        if (!(k->field = search_string(p)) || !*k->field || !(k->text = search_string(p)))
            goto bad;
    } else if (g_ascii_strcasecmp(name, "BODY") == 0 || g_ascii_strcasecmp(name, "TEXT") == 0) {
        k = key_new(g_ascii_strcasecmp(name, "BODY") == 0 ? K_BODY : K_TEXT);
        if (!(k->text = search_string(p)))
            goto bad;
    } else if (g_ascii_strcasecmp(name, "KEYWORD") == 0 ||
               g_ascii_strcasecmp(name, "UNKEYWORD") == 0) {
        k = key_new(g_ascii_strcasecmp(name, "KEYWORD") == 0 ? K_KEYWORD : K_UNKEYWORD);
        if (!imap_parse_sp(p) || !(k->text = imap_parse_flag(p, FALSE)))
            goto bad;
        guint bit = imap_flag_from_name(k->text);
        if (bit) {
            /* KEYWORD \Seen: as SEEN (lenient) */
            k->kind = k->kind == K_KEYWORD ? K_FLAG : K_UNFLAG;
            k->flag = bit;
        }
    } else if (g_ascii_strcasecmp(name, "LARGER") == 0 ||
               g_ascii_strcasecmp(name, "SMALLER") == 0) {
        k = key_new(g_ascii_strcasecmp(name, "LARGER") == 0 ? K_LARGER : K_SMALLER);
        if (!imap_parse_sp(p) || !imap_parse_number64(p, &k->number))
            goto bad;
    } else if (g_ascii_strcasecmp(name, "UID") == 0) {
        k = key_new(K_UID);
        k->set = g_array_new(FALSE, FALSE, sizeof(ImapRange));
        if (!imap_parse_sp(p) || !imap_parse_seqset(p, k->set))
            goto bad;
    } else if (g_ascii_strcasecmp(name, "NOT") == 0) {
        k = key_new(K_NOT);
        Key *a = imap_parse_sp(p) ? search_key(p, depth + 1, count) : NULL;
        if (!a)
            goto bad;
        g_ptr_array_add(k->children, a);
    } else if (g_ascii_strcasecmp(name, "OR") == 0) {
        k = key_new(K_OR);
        for (int i = 0; i < 2; i++) {
            Key *a = imap_parse_sp(p) ? search_key(p, depth + 1, count) : NULL;
            if (!a)
                goto bad;
            g_ptr_array_add(k->children, a);
        }
    }
    return k;
bad:
    key_free(k);
    return NULL;
}

/* ---- evaluation -------------------------------------------------------------------------------- */

typedef struct {
    ImapSession *s;
    guint i;               /* the message's index */
    guint count;
    guint32 last_uid;
    MimeTree *tree;        /* its header, read on first need */
    gboolean tree_failed;
    GError *error;         /* a store failure (not a message gone) */
} SearchCtx;

/* search_ci_find - whether NEEDLE (ASCII case ignored) is in HAY */
static gboolean
search_ci_find(const char *hay, gsize hlen, const char *needle, gsize nlen)
{
    if (nlen == 0)
        return TRUE;
    if (hlen < nlen)
        return FALSE;
    for (gsize i = 0; i + nlen <= hlen; i++) {
        if (g_ascii_tolower(hay[i]) != g_ascii_tolower(needle[0]))
            continue;
        if (g_ascii_strncasecmp(hay + i + 1, needle + 1, nlen - 1) == 0) {
            /* strncasecmp stops at NUL: compare NULs too */
            gboolean same = TRUE;
            for (gsize j = 1; j < nlen && same; j++)
                same = g_ascii_tolower(hay[i + j]) == g_ascii_tolower(needle[j]);
            if (same)
                return TRUE;
        }
    }
    return FALSE;
}

/* search_header - the message's header (parsed once); NULL when it cannot be read (a store
 * failure other than the message being gone is kept in x->error) */
static const MimePart *
search_header(SearchCtx *x)
{
    if (!x->tree && !x->tree_failed) {
        GError *e = NULL;
        if (!imap_msg_tree(x->s, x->i, FALSE, &x->tree, &e)) {
            x->tree_failed = TRUE;
            if (!g_error_matches(e, STORE_ERROR, STORE_ERROR_NOT_FOUND) && !x->error)
                x->error = g_steal_pointer(&e);
            g_clear_error(&e);
        }
    }
    return x->tree ? x->tree->root : NULL;
}

/* search_sent_date - the day of RFC 5322 date-time V: [day-name ","] day month year ... */
static gboolean
search_sent_date(const char *v, gint64 *days)
{
    const char *q = v;
    const char *comma = strchr(q, ',');
    if (comma)
        q = comma + 1;
    while (*q == ' ' || *q == '\t')
        q++;
    guint d = 0, y = 0;
    while (g_ascii_isdigit(*q) && d < 100)
        d = d * 10 + (guint)(*q++ - '0');
    while (*q == ' ')
        q++;
    guint m = imap_month(q);
    q += strnlen(q, 3);
    while (*q == ' ')
        q++;
    guint digits = 0;
    while (g_ascii_isdigit(*q) && digits < 4) {
        y = y * 10 + (guint)(*q++ - '0');
        digits++;
    }
    if (digits == 2)
        y += y < 50 ? 2000 : 1900;
    if (d < 1 || d > 31 || !m || y < 1900)
        return FALSE;
    *days = imap_days_from_civil(y, m, d);
    return TRUE;
}

/* search_fields_match - whether a field NAME of HEADER (written with its colon right after the
 * name) holds NEEDLE once unfolded; without a needle, *DATE_DAYS is the day of the first such
 * field (a Date) */
static gboolean
search_fields_match(const char *header, gsize len, const char *name, const char *needle,
                    gint64 *date_days)
{
    gsize pos = 0;
    MimeField f;
    while (mime_header_next(header, len, &pos, &f)) {
        if (!mime_field_is(&f, name) || f.name[f.name_len] != ':')
            continue;
        GString *v = g_string_new(NULL);
        for (gsize j = 0; j < f.value_len; j++)
            if (f.value[j] != '\r' && f.value[j] != '\n')
                g_string_append_c(v, f.value[j]);
        gboolean hit = needle ? search_ci_find(v->str, v->len, needle, strlen(needle))
                              : search_sent_date(v->str, date_days);
        g_string_free(v, TRUE);
        if (hit || !needle)
            return hit;   /* the first Date: field only */
    }
    return FALSE;
}

/* search_stream_find - whether NEEDLE is in the message's octets (from its body when BODY_ONLY) */
static gboolean
search_stream_find(SearchCtx *x, const char *needle, gboolean body_only)
{
    guint64 from = 0;
    if (body_only) {
        const MimePart *h = search_header(x);
        if (!h)
            return FALSE;
        from = h->body_start;
    }
    gsize nlen = strlen(needle);
    StoreReader *r = NULL;
    GError *e = NULL;
    if (!imap_msg_open(x->s, x->i, &r, &e)) {
        if (!g_error_matches(e, STORE_ERROR, STORE_ERROR_NOT_FOUND) && !x->error)
            x->error = g_steal_pointer(&e);
        g_clear_error(&e);
        return FALSE;
    }
    GString *window = g_string_new(NULL);
    guint64 at = 0;
    gboolean found = FALSE;
    GBytes *chunk = NULL;
    gboolean ok;
    while (!found && (ok = store_reader_next(r, &chunk, &e)) && chunk) {
        gsize n;
        const char *d = g_bytes_get_data(chunk, &n);
        gsize skip = at + n <= from ? n : at < from ? (gsize)(from - at) : 0;
        at += n;
        g_string_append_len(window, d + skip, (gssize)(n - skip));
        g_clear_pointer(&chunk, g_bytes_unref);
        found = search_ci_find(window->str, window->len, needle, nlen);
        if (window->len > nlen)
            g_string_erase(window, 0, (gssize)(window->len - nlen));
    }
    g_clear_pointer(&chunk, g_bytes_unref);
    if (!found && e && !x->error)
        x->error = g_steal_pointer(&e);
    g_clear_error(&e);
    g_string_free(window, TRUE);
    store_reader_free(&r);
    return found;
}

static gboolean
search_match(SearchCtx *x, const Key *k)
{
    ImapSession *s = x->s;
    switch (k->kind) {
    case K_ALL: return TRUE;
    case K_NONE: return FALSE;
    case K_AND:
        for (guint j = 0; j < k->children->len; j++)
            if (!search_match(x, g_ptr_array_index(k->children, j)))
                return FALSE;
        return TRUE;
    case K_OR:
        return search_match(x, g_ptr_array_index(k->children, 0)) ||
               search_match(x, g_ptr_array_index(k->children, 1));
    case K_NOT: return !search_match(x, g_ptr_array_index(k->children, 0));
    case K_SEQ: return imap_seqset_contains(k->set, x->i + 1, x->count);
    case K_UID: return imap_seqset_contains(k->set, imap_msg_uid(s, x->i), x->last_uid);
    case K_FLAG: return (imap_msg_flags(s, x->i) & k->flag) != 0;
    case K_UNFLAG: return (imap_msg_flags(s, x->i) & k->flag) == 0;
    case K_KEYWORD:
    case K_UNKEYWORD: {
        const char *const *kw = imap_view_msg_keywords(s->view, x->i + 1);
        gboolean has = FALSE;
        for (guint j = 0; kw && kw[j] && !has; j++)
            has = g_ascii_strcasecmp(kw[j], k->text) == 0;
        return k->kind == K_KEYWORD ? has : !has;
    }
    case K_LARGER: return imap_msg_size(s, x->i) > k->number;
    case K_SMALLER: return imap_msg_size(s, x->i) < k->number;
    case K_BEFORE:
    case K_ON:
    case K_SINCE: {
        gint64 t = imap_view_internaldate(s->view, x->i + 1);
        gint64 days = t >= 0 ? t / 86400 : (t - 86399) / 86400;
        return k->kind == K_BEFORE ? days < k->days : k->kind == K_ON ? days == k->days
                                                                       : days >= k->days;
    }
    case K_SENTBEFORE:
    case K_SENTON:
    case K_SENTSINCE: {
        const MimePart *h = search_header(x);
        gint64 days;
        if (!h || !h->header || !search_fields_match(h->header, h->header_len, "Date", NULL, &days))
            return FALSE;
        return k->kind == K_SENTBEFORE ? days < k->days : k->kind == K_SENTON ? days == k->days
                                                                               : days >= k->days;
    }
    case K_HEADER: {
        const MimePart *h = search_header(x);
        return h && h->header &&
               search_fields_match(h->header, h->header_len, k->field, k->text, NULL);
    }
    case K_BODY: return search_stream_find(x, k->text, TRUE);
    case K_TEXT: return search_stream_find(x, k->text, FALSE);
    }
    return FALSE;
}

/* ---- the command ------------------------------------------------------------------------------- */

/* search_append_set - NUMS (ascending) as a sequence-set: "1:3,5" */
static void
search_append_set(GString *out, const GArray *nums)
{
    for (guint k = 0; k < nums->len;) {
        guint32 lo = g_array_index(nums, guint32, k), hi = lo;
        guint j = k + 1;
        while (j < nums->len && g_array_index(nums, guint32, j) == hi + 1)
            hi = g_array_index(nums, guint32, j++);
        if (k)
            g_string_append_c(out, ',');
        if (lo == hi)
            g_string_append_printf(out, "%u", lo);
        else
            g_string_append_printf(out, "%u:%u", lo, hi);
        k = j;
    }
}

enum { R_MIN = 1, R_MAX = 2, R_COUNT = 4, R_ALL = 8, R_SAVE = 16 };

ImapRc
imap_cmd_search(ImapSession *s, ImapCmd *c, GString *out)
{
    ImapParser *p = &c->p;
    guint ret = 0;
    gboolean esearch = s->rev2;
    if (!imap_parse_sp(p))
        return imap_bad(c, out, "syntax: %s keys", c->name);
    gsize save = p->pos;
    g_autofree char *word = imap_parse_atom(p);
    if (word && g_ascii_strcasecmp(word, "RETURN") == 0) {
        esearch = TRUE;
        if (!imap_parse_sp(p) || !imap_parse_char(p, '('))
            return imap_bad(c, out, "syntax: %s RETURN (options) keys", c->name);
        while (!imap_parse_char(p, ')')) {
            g_autofree char *o = imap_parse_atom(p);
            if (!o)
                return imap_bad(c, out, "syntax: %s RETURN (options) keys", c->name);
            if (g_ascii_strcasecmp(o, "MIN") == 0)
                ret |= R_MIN;
            else if (g_ascii_strcasecmp(o, "MAX") == 0)
                ret |= R_MAX;
            else if (g_ascii_strcasecmp(o, "COUNT") == 0)
                ret |= R_COUNT;
            else if (g_ascii_strcasecmp(o, "ALL") == 0)
                ret |= R_ALL;
            else
                return imap_bad(c, out, "SEARCH RETURN option %.40s is not supported", o);
            imap_parse_sp(p);
        }
        if (!imap_parse_sp(p))
            return imap_bad(c, out, "syntax: %s RETURN (options) keys", c->name);
        save = p->pos;
        g_free(word);
        word = imap_parse_atom(p);
    }
    if (word && g_ascii_strcasecmp(word, "CHARSET") == 0) {
        g_autofree char *cs = imap_parse_sp(p) ? imap_parse_astring(p) : NULL;
        if (!cs || !imap_parse_sp(p))
            return imap_bad(c, out, "syntax: %s CHARSET charset keys", c->name);
        if (g_ascii_strcasecmp(cs, "UTF-8") != 0 && g_ascii_strcasecmp(cs, "US-ASCII") != 0) {
            imap_tagged(out, c->tag, "NO", "[BADCHARSET (US-ASCII UTF-8)] Unsupported charset");
            return IMAP_DONE;
        }
    } else {
        p->pos = save;
    }
    if (esearch && !ret)
        ret = R_ALL;
    guint count = 0;
    Key *keys = search_keys(p, 0, &count, FALSE);
    if (!keys || !imap_parse_end(p)) {
        key_free(keys);
        return imap_bad(c, out, "syntax: %s search keys", c->name);
    }

    SearchCtx x = {.s = s, .count = imap_msgs(s)};
    x.last_uid = x.count ? imap_msg_uid(s, x.count - 1) : 0;
    g_autoptr(GArray) hits = g_array_new(FALSE, FALSE, sizeof(guint32));
    for (guint i = 0; i < x.count && !x.error; i++) {
        x.i = i;
        if (search_match(&x, keys)) {
            guint32 n = c->uid ? imap_msg_uid(s, i) : i + 1;
            g_array_append_val(hits, n);
        }
        mime_tree_free(&x.tree);
        x.tree_failed = FALSE;
    }
    key_free(keys);
    if (x.error) {
        imap_store_failed(s, c, x.error, out);
        g_error_free(x.error);
        return IMAP_DONE;
    }
    if (!esearch) {
        g_string_append(out, "* SEARCH");
        for (guint k = 0; k < hits->len; k++)
            g_string_append_printf(out, " %u", g_array_index(hits, guint32, k));
        g_string_append(out, "\r\n");
    } else {
        g_string_append(out, "* ESEARCH (TAG ");
        mime_append_nstring(out, c->tag, strlen(c->tag));
        g_string_append(out, ")");
        if (c->uid)
            g_string_append(out, " UID");
        if (hits->len && (ret & R_MIN))
            g_string_append_printf(out, " MIN %u", g_array_index(hits, guint32, 0));
        if (hits->len && (ret & R_MAX))
            g_string_append_printf(out, " MAX %u", g_array_index(hits, guint32, hits->len - 1));
        if (ret & R_COUNT)
            g_string_append_printf(out, " COUNT %u", hits->len);
        if (hits->len && (ret & R_ALL)) {
            g_string_append(out, " ALL ");
            search_append_set(out, hits);
        }
        g_string_append(out, "\r\n");
    }
    imap_tagged(out, c->tag, "OK", "%s completed", c->name);
    return IMAP_DONE;
}
