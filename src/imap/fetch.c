/*
 * fetch.c - FETCH and UID FETCH (RFC 9051 section 6.4.5, 7.5.2; RFC 3501 6.4.5 for IMAP4rev1's
 * RFC822, RFC822.HEADER and RFC822.TEXT).
 *
 * The command is parsed into a list of items, then its responses are made one message at a time
 * by imap_fetch_more, which the adapter calls until it says no more (at most about MAX octets a
 * call). A message's body parts are never held whole: a message whose items need its MIME
 * structure (ENVELOPE, BODY, BODYSTRUCTURE, a section other than the whole message) is streamed
 * through the MIME parser first (only its header for ENVELOPE alone), then the octets of each
 * section are streamed from a second reader of the store, a chunk at a time, straight into the
 * response's literal.
 *
 * A message gone from the store (expunged by another session) is left out and the command ends
 * "NO [EXPUNGEISSUED]"; a store that fails before a message's response begins ends it
 * "NO [UNAVAILABLE]"; one that fails inside a literal leaves no honest way on, and the session is
 * closed (end reason body-failed), as POP3 does inside RETR.
 */
#include "imap/internal.h"

#include <string.h>

#include "util/log.h"

typedef enum {
    FI_UID,
    FI_FLAGS,
    FI_INTERNALDATE,
    FI_SIZE,
    FI_ENVELOPE,         /* ENVELOPE, BODY and BODYSTRUCTURE come from the message's structure */
    FI_BODY,             /* BODY without a section: the non-extensible BODYSTRUCTURE */
    FI_BODYSTRUCTURE,
    FI_SECTION,          /* BODY[...] and BODY.PEEK[...], RFC822, RFC822.HEADER, RFC822.TEXT */
} FetchKind;

typedef struct {
    FetchKind kind;
    char *section;       /* FI_SECTION: what mime_section_ranges takes ("" = the whole message) */
    char *label;         /* FI_SECTION: the name in the response ("BODY[TEXT]", "RFC822") */
    gboolean peek;       /* does not set \Seen */
    gboolean partial;
    guint64 origin, count;
} FetchItem;

struct ImapFetch {
    char *tag;
    char *name;          /* "FETCH" or "UID FETCH" */
    GArray *items;       /* FetchItem */
    GArray *msgs;        /* the indexes of the messages, in order */
    gboolean add_flags;  /* \Seen was set: FLAGS goes with each response */
    guint next;          /* the next of msgs */
    gboolean need_tree, need_body_tree;
    gboolean has_section;   /* a reader is opened before each message's response begins */
    gboolean use_meta;      /* ENVELOPE/BODY/BODYSTRUCTURE from the view's meta cache */
    GPtrArray *meta;        /* GBytes* (or NULL) of msgs[meta_from ..] */
    guint meta_from;
    GBytes *blob;           /* the current message's meta */
    const char *texts[3];   /* its ENVELOPE, BODY and BODYSTRUCTURE (fetch_structure_names) */

    /* the message being answered */
    gboolean in_msg;
    guint item;          /* the next of items */
    guint seq;
    MimeTree *tree;
    /* a literal being streamed */
    gboolean streaming;
    StoreReader *reader;
    GBytes *chunk;
    guint64 chunk_at;    /* the chunk's offset in the message */
    gsize chunk_used;
    GArray *ranges;      /* MimeRange, the literal's octets */
    guint range;
    guint64 range_done;  /* octets of ranges[range] sent */

    gboolean expunged;   /* a message was gone */
};

static void
fetch_item_clear(gpointer p)
{
    FetchItem *it = p;
    g_free(it->section);
    g_free(it->label);
}

void
imap_fetch_free(ImapFetch **fp)
{
    ImapFetch *f = fp ? *fp : NULL;
    if (!f)
        return;
    g_free(f->tag);
    g_free(f->name);
    g_array_free(f->items, TRUE);
    if (f->msgs)
        g_array_free(f->msgs, TRUE);
    mime_tree_free(&f->tree);
    if (f->meta)
        g_ptr_array_unref(f->meta);
    g_clear_pointer(&f->blob, g_bytes_unref);
    store_reader_free(&f->reader);
    g_clear_pointer(&f->chunk, g_bytes_unref);
    g_array_free(f->ranges, TRUE);
    g_free(f);
    *fp = NULL;
}

/* ---- parsing (RFC 9051 section 9: fetch-att) ------------------------------------------------- */

/* fetch_name - the name of a fetch-att: letters, digits and dots */
static char *
fetch_name(ImapParser *p)
{
    gsize start = p->pos;
    while (p->pos < p->len && (g_ascii_isalnum(p->buf[p->pos]) || p->buf[p->pos] == '.'))
        p->pos++;
    return p->pos > start ? g_ascii_strup(p->buf + start, (gssize)(p->pos - start)) : NULL;
}

/* fetch_section - "[" section-spec "]": the text between the brackets (quotes respected) */
static char *
fetch_section(ImapParser *p)
{
    gsize save = p->pos;
    if (!imap_parse_char(p, '['))
        return NULL;
    gsize start = p->pos;
    gboolean quoted = FALSE;
    while (p->pos < p->len) {
        char c = p->buf[p->pos];
        if (c == '\r' || c == '\n' || c == '\0' || c == '{')
            break;
        if (quoted) {
            if (c == '\\')
                p->pos++;
            else if (c == '"')
                quoted = FALSE;
        } else if (c == '"') {
            quoted = TRUE;
        } else if (c == ']') {
            char *s = g_strndup(p->buf + start, p->pos - start);
            p->pos++;
            return s;
        }
        p->pos++;
    }
    p->pos = save;
    return NULL;
}

static void
fetch_add(GArray *items, FetchKind kind)
{
    FetchItem it = {.kind = kind};
    g_array_append_val(items, it);
}

/* fetch_add_section - an FI_SECTION item */
static void
fetch_add_section(GArray *items, const char *section, const char *label, gboolean peek)
{
    FetchItem it = {.kind = FI_SECTION, .section = g_strdup(section), .label = g_strdup(label),
                    .peek = peek};
    g_array_append_val(items, it);
}

/* The fetch-atts that are one item: a kind, or for RFC822, RFC822.HEADER and RFC822.TEXT the
 * section they stand for (their label is their name) */
static const struct {
    const char *name;
    FetchKind kind;
    const char *section;
    gboolean peek;
} fetch_atts[] = {
    {"UID", FI_UID, NULL, FALSE},
    {"FLAGS", FI_FLAGS, NULL, FALSE},
    {"INTERNALDATE", FI_INTERNALDATE, NULL, FALSE},
    {"RFC822.SIZE", FI_SIZE, NULL, FALSE},
    {"ENVELOPE", FI_ENVELOPE, NULL, FALSE},
    {"BODYSTRUCTURE", FI_BODYSTRUCTURE, NULL, FALSE},
    {"RFC822", FI_SECTION, "", FALSE},
    {"RFC822.HEADER", FI_SECTION, "HEADER", TRUE},
    {"RFC822.TEXT", FI_SECTION, "TEXT", FALSE},
};

/* The macros (RFC 9051 6.4.5): each is the first N of the same list */
static const FetchKind fetch_macro_items[] = {FI_FLAGS, FI_INTERNALDATE, FI_SIZE, FI_ENVELOPE,
                                              FI_BODY};
static const struct {
    const char *name;
    guint n;
} fetch_macros[] = {{"FAST", 3}, {"ALL", 4}, {"FULL", 5}};

/* fetch_att - one fetch-att (or a macro) into ITEMS */
static gboolean
fetch_att(ImapParser *p, GArray *items, gboolean macros)
{
    g_autofree char *name = fetch_name(p);
    if (!name)
        return FALSE;
    for (gsize k = 0; macros && k < G_N_ELEMENTS(fetch_macros); k++) {
        if (strcmp(name, fetch_macros[k].name) == 0) {
            for (guint j = 0; j < fetch_macros[k].n; j++)
                fetch_add(items, fetch_macro_items[j]);
            return TRUE;
        }
    }
    for (gsize k = 0; k < G_N_ELEMENTS(fetch_atts); k++) {
        if (strcmp(name, fetch_atts[k].name) != 0)
            continue;
        if (fetch_atts[k].section)
            fetch_add_section(items, fetch_atts[k].section, name, fetch_atts[k].peek);
        else
            fetch_add(items, fetch_atts[k].kind);
        return TRUE;
    }
    gboolean peek = strcmp(name, "BODY.PEEK") == 0;
    if (!peek && strcmp(name, "BODY") != 0)
        return FALSE;
    if (!peek && imap_parse_peek(p) != '[') {
        fetch_add(items, FI_BODY);
        return TRUE;
    }
    g_autofree char *section = fetch_section(p);
    if (!section)
        return FALSE;
    g_autofree char *label = g_strdup_printf("BODY[%s]", section);
    fetch_add_section(items, section, label, peek);
    if (imap_parse_char(p, '<')) {
        FetchItem *it = &g_array_index(items, FetchItem, items->len - 1);
        guint32 origin, count;
        if (!imap_parse_number(p, &origin, FALSE) || !imap_parse_char(p, '.') ||
            !imap_parse_number(p, &count, TRUE) || !imap_parse_char(p, '>'))
            return FALSE;
        it->partial = TRUE;
        it->origin = origin;
        it->count = count;
    }
    return TRUE;
}

/* fetch_section_valid - whether SECTION is a section-spec mime.c takes (tried on an empty
 * message: only a part number past its parts may fail then) */
static gboolean
fetch_section_valid(const char *section)
{
    static MimeTree *empty;
    if (!empty)
        empty = mime_parse("", 0);
    g_autoptr(GArray) r = g_array_new(FALSE, FALSE, sizeof(MimeRange));
    GError *e = NULL;
    gboolean ok = mime_section_ranges(empty, section, r, &e);
    if (!ok && g_error_matches(e, MIME_ERROR, MIME_ERROR_NO_PART))
        ok = TRUE;
    g_clear_error(&e);
    return ok;
}

/* ---- output ---------------------------------------------------------------------------------- */

/* fetch_internaldate - INTERNALDATE: UNIX_S as date-time */
static void
fetch_internaldate(gint64 unix_s, GString *out)
{
    GDateTime *dt = g_date_time_new_from_unix_utc(MAX(unix_s, 0));
    if (!dt)
        dt = g_date_time_new_from_unix_utc(0);
    g_string_append_printf(out, "\"%02d-%s-%04d %02d:%02d:%02d +0000\"",
                           g_date_time_get_day_of_month(dt),
                           imap_month_names[g_date_time_get_month(dt) - 1],
                           g_date_time_get_year(dt), g_date_time_get_hour(dt),
                           g_date_time_get_minute(dt), g_date_time_get_second(dt));
    g_date_time_unref(dt);
}

gboolean
imap_msg_tree(ImapSession *s, guint i, gboolean whole, MimeTree **tree, GError **error)
{
    StoreReader *r = NULL;
    if (!imap_msg_open(s, i, &r, error))
        return FALSE;
    MimeParser *mp = mime_parser_new();
    GBytes *chunk = NULL;
    gboolean ok;
    while ((ok = store_reader_next(r, &chunk, error)) && chunk) {
        gsize n;
        const void *d = g_bytes_get_data(chunk, &n);
        mime_parser_feed(mp, d, n);
        g_clear_pointer(&chunk, g_bytes_unref);
        if (!whole && mime_parser_header_done(mp))
            break;
    }
    store_reader_free(&r);
    if (!ok) {
        mime_parser_free(&mp);
        return FALSE;
    }
    *tree = mime_parser_finish(&mp);
    return TRUE;
}

/* fetch_start_literal - the literal of section item IT of the current message: " {n}\r\n" and
 * the octets to stream */
static gboolean
fetch_start_literal(ImapSession *s, ImapFetch *f, const FetchItem *it, guint i, GString *out,
                    GError **error)
{
    g_array_set_size(f->ranges, 0);
    guint64 size = imap_msg_size(s, i);
    if (!f->tree) {
        /* the whole message, no tree needed */
        MimeRange r = {0, size};
        g_array_append_val(f->ranges, r);
    } else {
        GError *e = NULL;
        if (!mime_section_ranges(f->tree, it->section, f->ranges, &e)) {
            /* a part the message does not have: an empty string (RFC 9051 6.4.5) */
            g_clear_error(&e);
            g_array_set_size(f->ranges, 0);
        }
    }
    if (it->partial)
        mime_ranges_partial(f->ranges, it->origin, it->count);
    guint64 n = mime_ranges_size(f->ranges);
    /* the reader first: when it cannot be had, nothing of this item is out yet */
    if (n > 0 && !f->reader && !imap_msg_open(s, i, &f->reader, error))
        return FALSE;
    g_string_append_printf(out, "%s", it->label);
    if (it->partial)
        g_string_append_printf(out, "<%" G_GUINT64_FORMAT ">", it->origin);
    if (n == 0 && it->partial) {
        g_string_append(out, " \"\"");
        return TRUE;
    }
    g_string_append_printf(out, " {%" G_GUINT64_FORMAT "}\r\n", n);
    if (n == 0)
        return TRUE;
    f->streaming = TRUE;
    f->chunk_at = 0;
    f->chunk_used = 0;
    f->range = 0;
    f->range_done = 0;
    s->fetched_octets += n;
    return TRUE;
}

/* fetch_stream - more of the literal being streamed, up to about MAX octets in OUT; FALSE with
 * ERROR when the store failed (or the message was shorter than its ranges) */
static gboolean
fetch_stream(ImapFetch *f, GString *out, gsize max, GError **error)
{
    while (f->streaming && out->len < max) {
        if (f->range >= f->ranges->len) {
            f->streaming = FALSE;
            store_reader_free(&f->reader);
            g_clear_pointer(&f->chunk, g_bytes_unref);
            break;
        }
        const MimeRange *r = &g_array_index(f->ranges, MimeRange, f->range);
        guint64 want = r->start + f->range_done;   /* the next octet to send */
        gsize clen = f->chunk ? g_bytes_get_size(f->chunk) : 0;
        if (!f->chunk || want >= f->chunk_at + clen) {
            f->chunk_at += clen;
            g_clear_pointer(&f->chunk, g_bytes_unref);
            if (!store_reader_next(f->reader, &f->chunk, error))
                return FALSE;
            if (!f->chunk) {
                g_set_error(error, STORE_ERROR, STORE_ERROR_FAILED, "message shorter than its parts");
                return FALSE;
            }
            continue;
        }
        if (want < f->chunk_at) {
            g_set_error(error, STORE_ERROR, STORE_ERROR_FAILED, "ranges out of order");
            return FALSE;
        }
        const char *d = g_bytes_get_data(f->chunk, &clen);
        gsize off = (gsize)(want - f->chunk_at);
        guint64 left = r->len - f->range_done;
        gsize n = (gsize)MIN((guint64)(clen - off), left);
        n = MIN(n, max - out->len);
        g_string_append_len(out, d + off, (gssize)n);
        f->range_done += n;
        if (f->range_done == r->len) {
            f->range++;
            f->range_done = 0;
        }
    }
    return TRUE;
}

static const char *const fetch_structure_names[] = {"ENVELOPE", "BODY", "BODYSTRUCTURE"};

/* fetch_structure - item KIND (FI_ENVELOPE, FI_BODY or FI_BODYSTRUCTURE) of TREE into OUT */
static void
fetch_structure(const MimeTree *tree, FetchKind kind, GString *out)
{
    if (kind == FI_ENVELOPE)
        mime_envelope(tree->root, out);
    else
        mime_bodystructure(tree->root, kind == FI_BODYSTRUCTURE, out);
}

/* fetch_item - item IT of message I into OUT (a literal starts streaming) */
static gboolean
fetch_item(ImapSession *s, ImapFetch *f, const FetchItem *it, guint i, GString *out,
           GError **error)
{
    switch (it->kind) {
    case FI_UID:
        g_string_append_printf(out, "UID %u", imap_msg_uid(s, i));
        break;
    case FI_FLAGS:
        g_string_append(out, "FLAGS ");
        imap_flags_append(s, i, out);
        break;
    case FI_INTERNALDATE:
        g_string_append(out, "INTERNALDATE ");
        fetch_internaldate(imap_view_internaldate(s->view, i + 1), out);
        break;
    case FI_SIZE:
        g_string_append_printf(out, "RFC822.SIZE %" G_GUINT64_FORMAT, imap_msg_size(s, i));
        break;
    case FI_ENVELOPE:
    case FI_BODY:
    case FI_BODYSTRUCTURE: {
        const char *cached = f->texts[it->kind - FI_ENVELOPE];
        g_string_append_printf(out, "%s ", fetch_structure_names[it->kind - FI_ENVELOPE]);
        if (cached)
            g_string_append(out, cached);
        else
            fetch_structure(f->tree, it->kind, out);
        break;
    }
    case FI_SECTION:
        return fetch_start_literal(s, f, it, i, out, error);
    }
    return TRUE;
}

/* fetch_end - the tagged reply */
static void
fetch_end(ImapSession *s, ImapFetch *f, const GError *e, GString *out)
{
    if (e) {
        ImapCmd c = {.tag = f->tag, .name = f->name};
        imap_store_failed(s, &c, e, out);
    } else if (f->expunged) {
        imap_tagged(out, f->tag, "NO", "[EXPUNGEISSUED] some of the messages no longer exist");
    } else {
        imap_tagged(out, f->tag, "OK", "%s completed", f->name);
    }
}

#define FETCH_META_MAGIC "M1"
#define FETCH_META_BATCH 512

/* fetch_meta_split - the three texts of BLOB (magic NUL envelope NUL body NUL bodystructure NUL) */
static gboolean
fetch_meta_split(ImapFetch *f, GBytes *blob)
{
    gsize n;
    const char *d = g_bytes_get_data(blob, &n);
    const char *parts[4];
    gsize at = 0;
    for (int k = 0; k < 4; k++) {
        const char *z = at < n ? memchr(d + at, '\0', n - at) : NULL;
        if (!z)
            return FALSE;
        parts[k] = d + at;
        at = (gsize)(z - d) + 1;
    }
    if (strcmp(parts[0], FETCH_META_MAGIC) != 0 || at != n)
        return FALSE;
    f->blob = g_bytes_ref(blob);
    for (int k = 0; k < 3; k++)
        f->texts[k] = parts[k + 1];
    return TRUE;
}

/* fetch_meta - ENVELOPE, BODY and BODYSTRUCTURE of the next message from the view's cache (read
 * in batches), or parsed from the message and put in the cache; FALSE with ERROR when the message
 * cannot be read, FALSE without when the cache cannot help (then the tree is parsed) */
static gboolean
fetch_meta(ImapSession *s, ImapFetch *f, GError **error)
{
    if (!f->meta || f->next < f->meta_from || f->next >= f->meta_from + f->meta->len) {
        if (f->meta)
            g_ptr_array_unref(f->meta);
        f->meta = g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref);
        f->meta_from = f->next;
        guint n = MIN(FETCH_META_BATCH, f->msgs->len - f->next);
        g_autofree guint *seqs = g_new(guint, n);
        for (guint k = 0; k < n; k++)
            seqs[k] = g_array_index(f->msgs, guint, f->next + k) + 1;
        GError *e = NULL;
        if (!imap_view_meta_get(s->view, seqs, n, f->meta, &e)) {
            g_clear_error(&e);
            g_ptr_array_set_size(f->meta, 0);
            for (guint k = 0; k < n; k++)
                g_ptr_array_add(f->meta, NULL);
        }
    }
    GBytes *blob = g_ptr_array_index(f->meta, f->next - f->meta_from);
    if (blob && fetch_meta_split(f, blob))
        return TRUE;
    guint i = g_array_index(f->msgs, guint, f->next);
    MimeTree *tree = NULL;
    if (!imap_msg_tree(s, i, TRUE, &tree, error))
        return FALSE;
    GString *m = g_string_new(FETCH_META_MAGIC);
    g_string_append_c(m, '\0');
    for (FetchKind k = FI_ENVELOPE; k <= FI_BODYSTRUCTURE; k++) {
        fetch_structure(tree, k, m);
        g_string_append_c(m, '\0');
    }
    mime_tree_free(&tree);
    GBytes *made = g_string_free_to_bytes(m);
    if (g_bytes_get_size(made) <= IMAP_META_MAX) {
        GError *e = NULL;
        if (!imap_view_meta_put(s->view, i + 1, made, &e))
            g_clear_error(&e);   /* a cache: the next FETCH parses again */
    }
    gboolean ok = fetch_meta_split(f, made);
    g_bytes_unref(made);
    return ok;
}

/* fetch_message_clear - forget what the current message's response needed */
static void
fetch_message_clear(ImapFetch *f)
{
    mime_tree_free(&f->tree);
    g_clear_pointer(&f->blob, g_bytes_unref);
    memset(f->texts, 0, sizeof f->texts);
}

/* fetch_begin - what message I's response needs before it begins: its structure (from the
 * meta cache, else parsed) and a reader for its sections; FALSE with ERROR when the store
 * failed (nothing of the response is out then) */
static gboolean
fetch_begin(ImapSession *s, ImapFetch *f, guint i, GError **error)
{
    GError *e = NULL;
    gboolean cached = f->use_meta && fetch_meta(s, f, &e);
    gboolean ok = !e &&
                  (cached || !f->need_tree ||
                   imap_msg_tree(s, i, f->need_body_tree, &f->tree, &e)) &&
                  (!f->has_section ||
                   imap_msg_open(s, i, &f->reader, &e));
    if (!ok) {
        fetch_message_clear(f);
        g_propagate_error(error, e);
    }
    return ok;
}

gboolean
imap_fetch_more(ImapSession *s, GString *out, gsize max)
{
    ImapFetch *f = s->fetch;
    if (!f)
        return FALSE;
    GError *e = NULL;
    max = out->len + MIN(max, G_MAXSIZE - out->len);   /* MAX more octets: the end to stop at */
    while (out->len < max) {
        if (f->streaming) {
            if (!fetch_stream(f, out, max, &e)) {
                log_warn("imap %s: %s|%s: message %u cut short, closing: %s", s->peer, s->user,
                         imap_view_stored_name(s->view), f->seq, e->message);
                g_error_free(e);
                imap_fetch_free(&s->fetch);
                s->end_reason = "body-failed";
                s->state = IMAP_STATE_LOGOUT;
                return FALSE;
            }
            continue;
        }
        if (f->in_msg) {
            guint i = g_array_index(f->msgs, guint, f->next);
            if (f->item < f->items->len) {
                const FetchItem *it = &g_array_index(f->items, FetchItem, f->item);
                if (f->item > 0)
                    g_string_append_c(out, ' ');
                f->item++;
                if (!fetch_item(s, f, it, i, out, &e))
                    goto failed_inside;
                continue;
            }
            if (f->add_flags) {
                g_string_append(out, " FLAGS ");
                imap_flags_append(s, i, out);
            }
            g_string_append(out, ")\r\n");
            f->in_msg = FALSE;
            fetch_message_clear(f);
            f->next++;
            continue;
        }
        if (f->next >= f->msgs->len)
            goto end;
        guint i = g_array_index(f->msgs, guint, f->next);
        if (!fetch_begin(s, f, i, &e)) {
            if (!g_error_matches(e, STORE_ERROR, STORE_ERROR_NOT_FOUND))
                goto end;
            g_clear_error(&e);
            f->expunged = TRUE;   /* gone: left out */
            f->next++;
            continue;
        }
        f->seq = i + 1;
        f->in_msg = TRUE;
        f->item = 0;
        g_string_append_printf(out, "* %u FETCH (", i + 1);
    }
    return TRUE;

failed_inside:
    /* a later item's reader could not be had: end this message's response with what is out,
     * and the command with NO */
    if (out->len && out->str[out->len - 1] == ' ')
        g_string_truncate(out, out->len - 1);
    if (f->item <= 1)
        g_string_append_printf(out, "UID %u", imap_msg_uid(s, f->seq - 1));
    g_string_append(out, ")\r\n");
    if (g_error_matches(e, STORE_ERROR, STORE_ERROR_NOT_FOUND)) {
        g_clear_error(&e);
        f->expunged = TRUE;
    }
end:
    /* the tagged reply: OK, NO [EXPUNGEISSUED], or the store's failure E */
    fetch_end(s, f, e, out);
    g_clear_error(&e);
    imap_fetch_free(&s->fetch);
    return FALSE;
}

ImapRc
imap_cmd_fetch(ImapSession *s, ImapCmd *c, GString *out)
{
    g_autoptr(GArray) ranges = g_array_new(FALSE, FALSE, sizeof(ImapRange));
    g_autoptr(GArray) items = g_array_new(FALSE, FALSE, sizeof(FetchItem));
    g_array_set_clear_func(items, fetch_item_clear);
    ImapParser *p = &c->p;
    if (!imap_parse_sp(p) || !imap_parse_seqset(p, ranges) || !imap_parse_sp(p))
        return imap_bad(c, out, "syntax: %s sequence-set items", c->name);
    gboolean ok;
    if (imap_parse_char(p, '(')) {
        ok = TRUE;
        do
            ok = fetch_att(p, items, FALSE) && items->len <= 100;
        while (ok && imap_parse_sp(p));
        ok = ok && imap_parse_char(p, ')');
    } else {
        ok = fetch_att(p, items, TRUE);
    }
    if (!ok || !imap_parse_end(p))
        return imap_bad(c, out, "syntax: %s sequence-set items", c->name);
    for (guint k = 0; k < items->len; k++) {
        const FetchItem *it = &g_array_index(items, FetchItem, k);
        if (it->kind == FI_SECTION && !fetch_section_valid(it->section))
            return imap_bad(c, out, "invalid section [%.40s]", it->section);
    }

    ImapFetch *f = g_new0(ImapFetch, 1);
    f->tag = g_strdup(c->tag);
    f->name = g_strdup(c->name);
    f->ranges = g_array_new(FALSE, FALSE, sizeof(MimeRange));
    /* UID first for UID FETCH (RFC 9051 6.4.9), each item once */
    f->items = g_array_new(FALSE, FALSE, sizeof(FetchItem));
    g_array_set_clear_func(f->items, fetch_item_clear);
    gboolean has_uid = FALSE, has_flags = FALSE, sets_seen = FALSE;
    for (guint k = 0; k < items->len; k++) {
        FetchItem *it = &g_array_index(items, FetchItem, k);
        has_uid |= it->kind == FI_UID;
        has_flags |= it->kind == FI_FLAGS;
    }
    if (c->uid || has_uid)
        fetch_add(f->items, FI_UID);
    for (guint k = 0; k < items->len; k++) {
        FetchItem *it = &g_array_index(items, FetchItem, k);
        if (it->kind == FI_UID)
            continue;
        gboolean dup = FALSE;
        for (guint j = 0; j < f->items->len && it->kind != FI_SECTION; j++)
            dup |= g_array_index(f->items, FetchItem, j).kind == it->kind;
        if (dup)
            continue;
        FetchItem copy = *it;
        copy.section = g_strdup(it->section);
        copy.label = g_strdup(it->label);
        g_array_append_val(f->items, copy);
        if (it->kind == FI_ENVELOPE)
            f->need_tree = TRUE;
        if (it->kind == FI_BODY || it->kind == FI_BODYSTRUCTURE ||
            (it->kind == FI_SECTION && *it->section))
            f->need_tree = f->need_body_tree = TRUE;
        if (it->kind == FI_SECTION)
            f->has_section = TRUE;
        if (it->kind == FI_SECTION && !it->peek && !s->readonly)
            sets_seen = TRUE;
    }

    /* the cache serves what only needs the structure; a section needs the tree anyway */
    f->use_meta = f->need_tree;
    for (guint k = 0; k < f->items->len; k++) {
        const FetchItem *it = &g_array_index(f->items, FetchItem, k);
        if (it->kind == FI_SECTION && *it->section)
            f->use_meta = FALSE;
    }
    f->msgs = imap_set_of(s, ranges, c->uid);
    if (!c->uid && !f->msgs) {
        imap_fetch_free(&f);
        return imap_bad(c, out, "invalid message sequence number");
    }
    if (!f->msgs)
        f->msgs = g_array_new(FALSE, FALSE, sizeof(guint));
    if (sets_seen) {
        g_autoptr(GArray) unseen = g_array_new(FALSE, FALSE, sizeof(guint));
        for (guint k = 0; k < f->msgs->len; k++) {
            guint i = g_array_index(f->msgs, guint, k);
            if (!(imap_msg_flags(s, i) & IMAP_FLAG_SEEN))
                g_array_append_val(unseen, i);
        }
        GError *e = NULL;
        if (unseen->len && !imap_seen(s, unseen, &e)) {
            imap_store_failed(s, c, e, out);
            g_error_free(e);
            imap_fetch_free(&f);
            return IMAP_DONE;
        }
        f->add_flags = unseen->len > 0 && !has_flags;
    }
    s->fetch = f;
    return IMAP_DONE;
}
