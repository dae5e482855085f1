/*
 * mime.c - incremental MIME parser and IMAP's ENVELOPE, BODY, BODYSTRUCTURE and section ranges
 * (RFC 2045, RFC 2046 section 5, RFC 5322 section 3.4, RFC 9051 sections 6.4.5 and 7.5.2); see
 * mime.h for the model and the limits.
 *
 * The parser reads a line at a time without holding the line: it copies only the first octets of
 * each line (enough to recognise a boundary delimiter) and, while in a header, the header octets
 * (bounded). Everything else is counted and dropped. A part's end and line count are fixed when
 * the delimiter after it is recognised: the line end before the delimiter belongs to the
 * delimiter (RFC 2046 section 5.1.1), so the parser remembers how long the last line end was and
 * how many LFs came before the current line.
 *
 * The output is Dovecot's (its imap is what most clients have met) wherever RFC 9051 leaves room:
 * test/e2e/test_imap_mime.py compares the two on every seed of test/fuzz/corpus/mime, ENVELOPE,
 * BODY, BODYSTRUCTURE and BODY[section] alike. So: types, subtypes and parameter names keep the
 * case they were written in; a text part without a charset gets ("charset" "us-ascii"); RFC 2231
 * pieces are joined, their charset and %-encoding left alone; a multipart without a usable
 * boundary, or with no part, shows one empty text/plain part; message/rfc822 is parsed as a
 * message whatever its Content-Transfer-Encoding; a repeated ENVELOPE field counts by its last
 * occurrence, a repeated Content-* field by its first; a broken address becomes
 * MISSING_MAILBOX / MISSING_DOMAIN; a part number past a leaf is the leaf once ("2.1" is "2").
 *
 * Where we differ on purpose (each is listed with both answers in test_imap_mime.py):
 *   - A Content-Type that is not type/subtype is text/plain (RFC 2045 section 5.2); Dovecot
 *     shows the type with an empty subtype.
 *   - The line end before a delimiter is always the delimiter's (RFC 2046 section 5.1.1), also
 *     after a nested multipart's close delimiter and when it ends an encapsulated message's
 *     header; Dovecot sometimes counts it in the part (sizes and lines of such message/rfc822
 *     parts, and BODY[n] of such a nested multipart, then differ by that line end).
 *   - ENVELOPE strings are unfolded and trimmed; Dovecot sends a folded Subject as a literal
 *     and keeps trailing blanks.
 *   - An address list with garbage in it gives an entry for each piece; Dovecot stops at the
 *     first.
 *   - HEADER.FIELDS of a header with no blank line returns only octets of the message; Dovecot
 *     adds the missing line end and blank line.
 * What the server must do when sending ranges (not the parser's business): NUL octets are not
 * allowed in a literal (Dovecot sends 0x80), and bare LFs go out as CRLF (BODYSTRUCTURE's sizes
 * already count them so).
 */
#include "imap/mime.h"

#include <string.h>

G_DEFINE_QUARK(cassmail-mime-error-quark, mime_error)

/* Room for "--", the longest boundary we match, "--". */
#define LINE_PREFIX (2 + MIME_BOUNDARY_MAX + 2)

struct MimeParser {
    MimeTree *tree;
    MimePart *cur;           /* the innermost open part */
    gboolean in_header;      /* CUR's header is being read */
    GString *hdr;            /* CUR's header octets kept so far */
    guint64 kept;            /* header octets kept for the whole message */
    guint active;            /* open multiparts whose boundary is still recognised */
    gboolean no_boundaries;  /* MIME_PARTS_MAX reached: the rest is opaque */

    guint64 offset;          /* octets fed */
    guint64 lf;              /* LFs fed */
    guint64 bare_lf;         /* of them without a CR before */
    /* the current line */
    guint64 line_start, line_lf, line_bare_lf;
    guint prev_eol;          /* length of the line end before LINE_START (0 at the start) */
    char line[LINE_PREFIX];
    gsize line_len;          /* octets of LINE held (at most LINE_PREFIX) */
    guint64 line_pos;        /* octets of the line so far */
    gboolean last_cr;        /* the line's last octet so far is a CR */
    gboolean decided;        /* the boundary question is answered for this line */
    gboolean delimiter;      /* this line is a boundary delimiter; the rest of it is skipped */
    MimePart *new_child_of;  /* ... after which a new part of this multipart starts */
    gsize hdr_mark;          /* HDR's length at the line's start */
};

/* ---- the tree ---------------------------------------------------------------------------- */

static void
params_free(GPtrArray **a)
{
    if (*a)
        g_ptr_array_unref(*a);
    *a = NULL;
}

/* part_free - PART and its subtree */
static void
part_free(MimePart *part)
{
    while (part) {
        MimePart *next = part->next;
        part_free(part->children);
        g_free(part->header);
        g_free(part->type);
        g_free(part->subtype);
        params_free(&part->params);
        for (int k = 0; k < MIME_CONTENT_N; k++)
            g_free(part->content[k]);
        g_free(part->disposition);
        params_free(&part->disposition_params);
        g_free(part->boundary);
        g_free(part);
        part = next;
    }
}

void
mime_tree_free(MimeTree **t)
{
    if (!*t)
        return;
    part_free((*t)->root);
    g_free(*t);
    *t = NULL;
}

/* part_new - a new part under PARENT (NULL: the root) whose header starts at START */
static MimePart *
part_new(MimeParser *p, MimePart *parent, guint64 start, gboolean is_message)
{
    MimePart *part = g_new0(MimePart, 1);
    part->parent = parent;
    part->depth = parent ? parent->depth + 1 : 0;
    part->is_message = is_message;
    part->header_start = part->blank_start = part->body_start = part->end = start;
    if (parent) {
        MimePart **link = &parent->children;
        while (*link)
            link = &(*link)->next;
        *link = part;
    }
    p->tree->parts++;
    return part;
}

/* ---- header fields --------------------------------------------------------------------------- */

gboolean
mime_header_next(const char *h, gsize len, gsize *pos, MimeField *f)
{
    while (*pos < len) {
        gsize start = *pos;
        /* the field runs to the end of the line that the next non-continuation line follows */
        gsize end = start;
        for (;;) {
            const char *lf = memchr(h + end, '\n', len - end);
            end = lf ? (gsize)(lf - h) + 1 : len;
            if (end >= len || (h[end] != ' ' && h[end] != '\t'))
                break;
        }
        *pos = end;
        const char *colon = memchr(h + start, ':', end - start);
        if (!colon)
            continue;
        gsize nl = (gsize)(colon - (h + start));
        const char *lf = memchr(h + start, '\n', nl);
        if (lf)
            continue;   /* the colon is on a continuation line: not a field name */
        while (nl > 0 && (h[start + nl - 1] == ' ' || h[start + nl - 1] == '\t'))
            nl--;
        if (nl == 0)
            continue;
        f->name = h + start;
        f->name_len = nl;
        f->value = colon + 1;
        f->value_len = end - (gsize)(colon + 1 - h);
        f->start = start;
        f->end = end;
        return TRUE;
    }
    return FALSE;
}

gboolean
mime_field_is(const MimeField *f, const char *name)
{
    return strlen(name) == f->name_len && g_ascii_strncasecmp(f->name, name, f->name_len) == 0;
}

/* unfold - VALUE without CR and LF (RFC 5322 section 2.2.3), NUL as U+FFFD (as Dovecot does),
 * blanks at both ends trimmed; a new string */
static char *
unfold(const char *v, gsize len)
{
    GString *s = g_string_sized_new(len);
    for (gsize i = 0; i < len; i++) {
        char c = v[i];
        if (c == '\r' || c == '\n')
            continue;
        if (c == '\0')
            g_string_append(s, "\xef\xbf\xbd");
        else
            g_string_append_c(s, c);
    }
    gsize a = 0, b = s->len;
    while (a < b && (s->str[a] == ' ' || s->str[a] == '\t'))
        a++;
    while (b > a && (s->str[b - 1] == ' ' || s->str[b - 1] == '\t'))
        b--;
    char *r = g_strndup(s->str + a, b - a);
    g_string_free(s, TRUE);
    return r;
}

/* header_get - the unfolded value of the last field NAME in H (the one that counts when a field
 * that must be there once is there twice, as Dovecot's ENVELOPE takes it), or NULL */
static char *
header_get(const char *h, gsize len, const char *name)
{
    gsize pos = 0;
    MimeField f, last;
    gboolean found = FALSE;
    while (mime_header_next(h, len, &pos, &f))
        if (mime_field_is(&f, name)) {
            last = f;
            found = TRUE;
        }
    return found ? unfold(last.value, last.value_len) : NULL;
}

/* ---- RFC 2045 tokens ------------------------------------------------------------------------- */

/* skip_cfws - past blanks and (nested) comments */
static const char *
skip_cfws(const char *s)
{
    for (;;) {
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s != '(')
            return s;
        int depth = 0;
        while (*s) {
            if (*s == '\\' && s[1])
                s++;
            else if (*s == '(')
                depth++;
            else if (*s == ')' && --depth == 0) {
                s++;
                break;
            }
            s++;
        }
    }
}

/* is_tspecial - RFC 2045's tspecials, blanks and controls end a token */
static gboolean
is_tspecial(char c)
{
    return (guchar)c <= ' ' || strchr("()<>@,;:\\\"/[]?=", c) != NULL;
}

/* read_token - an RFC 2045 token at *S (advanced past it), or NULL */
static char *
read_token(const char **s)
{
    const char *a = *s;
    while (**s && !is_tspecial(**s))
        (*s)++;
    return *s > a ? g_strndup(a, (gsize)(*s - a)) : NULL;
}

/* read_value - a token or a quoted string (unquoted) at *S, or NULL */
static char *
read_value(const char **s)
{
    if (**s != '"') {
        const char *a = *s;
        /* tolerate what RFC 2045 forbids in a bare value, up to ";" */
        while (**s && **s != ';' && **s != ' ' && **s != '\t')
            (*s)++;
        return *s > a ? g_strndup(a, (gsize)(*s - a)) : g_strdup("");
    }
    GString *v = g_string_new(NULL);
    (*s)++;
    while (**s && **s != '"') {
        if (**s == '\\' && (*s)[1])
            (*s)++;
        g_string_append_c(v, **s);
        (*s)++;
    }
    if (**s == '"')
        (*s)++;
    return g_string_free(v, FALSE);
}

static GPtrArray *rfc2231_merge(GPtrArray *a);

/* parse_params - ";" name "=" value pairs at S into a new array (NULL when there are none) */
static GPtrArray *
parse_params(const char *s)
{
    GPtrArray *a = NULL;
    for (;;) {
        s = skip_cfws(s);
        if (*s != ';') {
            /* skip garbage up to the next ";" */
            const char *semi = strchr(s, ';');
            if (!semi)
                break;
            s = semi;
        }
        s = skip_cfws(s + 1);
        char *name = read_token(&s);
        if (!name)
            continue;
        s = skip_cfws(s);
        if (*s != '=') {
            g_free(name);
            continue;
        }
        s = skip_cfws(s + 1);
        char *value = read_value(&s);
        if (!a)
            a = g_ptr_array_new_with_free_func(g_free);
        g_ptr_array_add(a, name);
        g_ptr_array_add(a, value);
    }
    return a ? rfc2231_merge(a) : NULL;
}

/* continuation - whether NAME is an RFC 2231 piece "base*N" or "base*N*": its base's length,
 * N and whether it is extended; FALSE otherwise */
static gboolean
continuation(const char *name, gsize *base_len, guint *n, gboolean *extended)
{
    const char *star = strchr(name, '*');
    if (!star || star == name || !g_ascii_isdigit(star[1]))
        return FALSE;
    const char *d = star + 1;
    guint64 v = 0;
    while (g_ascii_isdigit(*d) && v < 100000)
        v = v * 10 + (guint64)(*d++ - '0');
    if (*d && !(d[0] == '*' && d[1] == '\0'))
        return FALSE;
    *base_len = (gsize)(star - name);
    *n = (guint)v;
    *extended = *d == '*';
    return TRUE;
}

/* rfc2231_merge - RFC 2231 section 3: the pieces "name*0", "name*1*", ... of a parameter joined
 * in order into one, named "name", or "name*" when a piece is extended (its charset and
 * %-encoding are left as they are); the joined ones follow the plain ones, as Dovecot shows
 * them. A is taken; the result is a new array. */
static GPtrArray *
rfc2231_merge(GPtrArray *a)
{
    gboolean any = FALSE;
    gsize bl;
    guint n;
    gboolean ext;
    for (guint i = 0; i + 1 < a->len && !any; i += 2)
        any = continuation(g_ptr_array_index(a, i), &bl, &n, &ext);
    if (!any)
        return a;
    GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; i + 1 < a->len; i += 2)
        if (!continuation(g_ptr_array_index(a, i), &bl, &n, &ext)) {
            g_ptr_array_add(out, g_strdup(g_ptr_array_index(a, i)));
            g_ptr_array_add(out, g_strdup(g_ptr_array_index(a, i + 1)));
        }
    GPtrArray *done = g_ptr_array_new_with_free_func(g_free);   /* bases already joined */
    for (guint i = 0; i + 1 < a->len; i += 2) {
        const char *name = g_ptr_array_index(a, i);
        if (!continuation(name, &bl, &n, &ext))
            continue;
        char *base = g_strndup(name, bl);
        gboolean seen = FALSE;
        for (guint k = 0; k < done->len && !seen; k++)
            seen = g_ascii_strcasecmp(g_ptr_array_index(done, k), base) == 0;
        if (seen) {
            g_free(base);
            continue;
        }
        g_ptr_array_add(done, base);
        /* the pieces 0, 1, ... as long as they follow on */
        GString *v = g_string_new(NULL);
        gboolean extended = FALSE;
        for (guint want = 0;; want++) {
            gboolean found = FALSE;
            for (guint j = 0; j + 1 < a->len && !found; j += 2) {
                gsize bl2;
                guint n2;
                gboolean ext2;
                const char *nm = g_ptr_array_index(a, j);
                if (continuation(nm, &bl2, &n2, &ext2) && n2 == want && bl2 == bl &&
                    g_ascii_strncasecmp(nm, base, bl) == 0) {
                    g_string_append(v, g_ptr_array_index(a, j + 1));
                    extended |= ext2;
                    found = TRUE;
                }
            }
            if (!found)
                break;
        }
        g_ptr_array_add(out, extended ? g_strconcat(base, "*", NULL) : g_strdup(base));
        g_ptr_array_add(out, g_string_free(v, FALSE));
    }
    g_ptr_array_unref(done);
    g_ptr_array_unref(a);
    return out;
}

/* param_get - the value of parameter NAME in A, or NULL */
static const char *
param_get(const GPtrArray *a, const char *name)
{
    for (guint i = 0; a && i + 1 < a->len; i += 2)
        if (g_ascii_strcasecmp(g_ptr_array_index(a, i), name) == 0)
            return g_ptr_array_index(a, i + 1);
    return NULL;
}

/* parse_content_type - Content-Type V into PART (RFC 2045 section 5.1); a value that is not
 * "type/subtype" leaves the defaults */
static void
parse_content_type(MimePart *part, const char *v)
{
    const char *s = skip_cfws(v);
    char *type = read_token(&s);
    s = skip_cfws(s);
    char *subtype = NULL;
    if (type && *s == '/') {
        s = skip_cfws(s + 1);
        subtype = read_token(&s);
    }
    if (!type || !subtype) {
        g_free(type);
        g_free(subtype);
        return;
    }
    g_free(part->type);
    g_free(part->subtype);
    part->type = type;
    part->subtype = subtype;
    params_free(&part->params);
    part->params = parse_params(s);
}

/* parse_disposition - Content-Disposition V into PART (RFC 2183) */
static void
parse_disposition(MimePart *part, const char *v)
{
    const char *s = skip_cfws(v);
    char *d = read_token(&s);
    if (!d)
        return;
    part->disposition = d;
    part->disposition_params = parse_params(s);
}

/* the names of the fields of MimeContent */
static const char *const content_fields[MIME_CONTENT_N] = {
    "content-id", "content-description", "content-transfer-encoding", "content-md5",
    "content-language", "content-location",
};

/* part_parse_header - the Content-* fields of PART's header H, and the defaults of RFC 2045
 * section 5.2 (text/plain; charset=us-ascii) and RFC 2046 section 5.1.5 (in a digest,
 * message/rfc822) */
static void
part_parse_header(MimePart *part, const char *h, gsize len)
{
    gboolean digest = part->parent && part->parent->kind == MIME_KIND_MULTIPART &&
                      g_ascii_strcasecmp(part->parent->subtype, "digest") == 0;
    part->type = g_strdup(digest ? "message" : "text");
    part->subtype = g_strdup(digest ? "rfc822" : "plain");
    gsize pos = 0;
    MimeField f;
    gboolean seen_type = FALSE;
    while (mime_header_next(h, len, &pos, &f)) {
        if (f.name_len < 8 || g_ascii_strncasecmp(f.name, "content-", 8) != 0)
            continue;
        if (mime_field_is(&f, "content-type") && !seen_type) {
            seen_type = TRUE;
            g_autofree char *v = unfold(f.value, f.value_len);
            parse_content_type(part, v);
        } else if (mime_field_is(&f, "content-disposition") && !part->disposition) {
            g_autofree char *v = unfold(f.value, f.value_len);
            parse_disposition(part, v);
        }
        for (int k = 0; k < MIME_CONTENT_N; k++)
            if (!part->content[k] && mime_field_is(&f, content_fields[k]))
                part->content[k] = unfold(f.value, f.value_len);
    }
    char **encoding = &part->content[MIME_CONTENT_ENCODING];
    if (*encoding) {
        /* a mechanism is a token (RFC 2045 section 6.1); comments and the rest go */
        const char *s = skip_cfws(*encoding);
        char *t = read_token(&s);
        g_free(*encoding);
        *encoding = t;
    }
}

/* ---- the parser -------------------------------------------------------------------------- */

MimeParser *
mime_parser_new(void)
{
    MimeParser *p = g_new0(MimeParser, 1);
    p->tree = g_new0(MimeTree, 1);
    p->tree->root = p->cur = part_new(p, NULL, 0, TRUE);
    p->in_header = TRUE;
    p->hdr = g_string_new(NULL);
    return p;
}

gboolean
mime_parser_header_done(const MimeParser *p)
{
    return p->cur != p->tree->root || !p->in_header;
}

/* part_is_rfc822 - whether PART's type is message/rfc822 */
static gboolean
part_is_rfc822(const MimePart *part)
{
    return g_ascii_strcasecmp(part->type, "message") == 0 &&
           g_ascii_strcasecmp(part->subtype, "rfc822") == 0;
}

/* header_end - CUR's header ended; its body starts at BODY_START: take its fields, and for a
 * multipart start recognising its boundary, for a message/rfc822 start the encapsulated
 * message's header. OPEN is FALSE when a delimiter ended the header (the part ends at once). */
static void
header_end(MimeParser *p, guint64 blank_start, guint64 body_start, gboolean open)
{
    MimePart *part = p->cur;
    part->blank_start = blank_start;
    part->body_start = part->end = body_start;
    part->body_lf = p->lf;
    part->body_bare_lf = p->bare_lf;
    gsize hlen = (gsize)MIN((guint64)p->hdr->len, body_start - part->header_start);
    p->kept += hlen;
    part_parse_header(part, p->hdr->str, hlen);
    if (part->is_message) {
        part->header = g_malloc(hlen + 1);
        memcpy(part->header, p->hdr->str, hlen);
        part->header[hlen] = '\0';
        part->header_len = hlen;
    }
    g_string_truncate(p->hdr, 0);
    p->hdr_mark = 0;
    p->in_header = FALSE;

    if (g_ascii_strcasecmp(part->type, "multipart") == 0) {
        /* Without a usable boundary (or too deep) it is a multipart with no parts: its body is
         * opaque, and BODYSTRUCTURE shows one empty text part in it (as Dovecot does) */
        part->kind = MIME_KIND_MULTIPART;
        const char *b = param_get(part->params, "boundary");
        if (!b || !*b || strlen(b) > MIME_BOUNDARY_MAX)
            return;
        if (part->depth + 1 >= MIME_DEPTH_MAX) {
            p->tree->limited = TRUE;
            return;
        }
        if (open && !p->no_boundaries) {
            part->boundary = g_strdup(b);
            p->active++;
        }
        return;
    }
    if (part_is_rfc822(part)) {
        /* RFC 2046 section 5.2.1 allows only 7bit, 8bit or binary; an encoded one is parsed as
         * a message all the same (as Dovecot does), which keeps BODYSTRUCTURE's grammar */
        if (part->depth + 1 >= MIME_DEPTH_MAX || p->tree->parts >= MIME_PARTS_MAX) {
            p->tree->limited = TRUE;
            return;
        }
        part->kind = MIME_KIND_MESSAGE;
        MimePart *child = part_new(p, part, body_start, TRUE);
        if (open) {
            p->cur = child;
            p->in_header = TRUE;
        } else {
            child->body_lf = p->lf;
            child->body_bare_lf = p->bare_lf;
            part_parse_header(child, "", 0);
            child->header = g_strdup("");
        }
    }
}

/* part_close - PART ends before the delimiter line at the current line's start, and not before
 * MIN_END (where the part inside it that ended first ends: a header's blank line right before
 * the delimiter is that header's); returns where it ends */
static guint64
part_close(MimeParser *p, MimePart *part, guint64 min_end)
{
    /* the line end before the delimiter is the delimiter's (RFC 2046 section 5.1.1) */
    guint64 cut = p->line_start - p->prev_eol;
    if (part->body_start == p->line_start && part->body_start > cut) {
        /* the header's blank line is right before the delimiter: its line end is the
         * delimiter's, so the header ends before it and the body is empty */
        part->body_start = part->blank_start = MAX(cut, part->header_start);
        part->header_len = (gsize)MIN((guint64)part->header_len, part->body_start - part->header_start);
        MimePart *c = part->children;
        if (part->kind == MIME_KIND_MESSAGE && c && c->header_start > part->body_start) {
            /* the encapsulated message had not begun: it is empty, where the body is */
            c->header_start = c->blank_start = c->body_start = c->end = part->body_start;
            c->header_len = 0;
            c->body_lines = c->body_size = 0;
            min_end = part->body_start;
        }
    }
    guint64 end = MAX(MAX(cut, part->body_start), min_end);
    guint64 lines = 0, bare = 0;
    if (end >= p->line_start) {
        lines = p->line_lf - part->body_lf;
        bare = p->line_bare_lf - part->body_bare_lf;
    } else if (end > part->body_start) {
        lines = p->line_lf - 1 - part->body_lf;
        bare = p->line_bare_lf - (p->prev_eol == 1) - part->body_bare_lf;
    }
    part->end = end;
    part->body_lines = lines;
    part->body_size = end - part->body_start + bare;
    if (part->boundary) {
        g_clear_pointer(&part->boundary, g_free);
        p->active--;
    }
    return end;
}

/* decide - whether the current line (its first octets in LINE) is a boundary delimiter, and if
 * so end the parts it ends */
static void
decide(MimeParser *p)
{
    p->decided = TRUE;
    if (p->active == 0 || p->no_boundaries || p->line_len < 2 || p->line[0] != '-' || p->line[1] != '-')
        return;
    MimePart *m;
    gboolean close = FALSE;
    for (m = p->cur; m; m = m->parent) {
        if (!m->boundary)
            continue;
        gsize bl = strlen(m->boundary);
        if (p->line_len >= 2 + bl && memcmp(p->line + 2, m->boundary, bl) == 0) {
            close = p->line_len >= 4 + bl && p->line[2 + bl] == '-' && p->line[3 + bl] == '-';
            break;
        }
    }
    if (!m)
        return;
    if (!close && p->tree->parts >= MIME_PARTS_MAX) {
        /* no more parts: from here on everything is the body of what is open */
        p->no_boundaries = TRUE;
        p->tree->limited = TRUE;
        return;
    }
    if (p->in_header) {
        /* a part with no blank line after its header: the header ends before the delimiter */
        g_string_truncate(p->hdr, p->hdr_mark);
        guint64 end = MAX(p->cur->header_start, p->line_start - p->prev_eol);
        header_end(p, end, end, FALSE);
    }
    guint64 inner_end = 0;
    for (MimePart *q = p->cur; q != m; q = q->parent)
        inner_end = part_close(p, q, inner_end);
    p->cur = m;
    p->delimiter = TRUE;
    if (close) {
        g_clear_pointer(&m->boundary, g_free);
        p->active--;
    } else {
        p->new_child_of = m;
    }
}

/* line_end - the LF at offset LF_AT ends the current line */
static void
line_end(MimeParser *p, guint64 lf_at)
{
    if (!p->decided)
        decide(p);
    p->lf++;
    if (!p->last_cr)
        p->bare_lf++;
    if (p->delimiter) {
        if (p->new_child_of) {
            p->cur = part_new(p, p->new_child_of, lf_at + 1, FALSE);
            p->in_header = TRUE;
            g_string_truncate(p->hdr, 0);
            p->new_child_of = NULL;
        }
    } else if (p->in_header && (p->line_pos == 0 || (p->line_pos == 1 && p->line[0] == '\r'))) {
        header_end(p, p->line_start, lf_at + 1, TRUE);
    }
    p->prev_eol = p->last_cr ? 2 : 1;
    p->line_start = lf_at + 1;
    p->line_lf = p->lf;
    p->line_bare_lf = p->bare_lf;
    p->line_len = 0;
    p->line_pos = 0;
    p->last_cr = FALSE;
    p->decided = FALSE;
    p->delimiter = FALSE;
    p->hdr_mark = p->hdr->len;
}

/* keep_header - append LEN octets of CUR's header to HDR, as far as the limits allow */
static void
keep_header(MimeParser *p, const char *s, gsize len)
{
    guint64 room_total = p->kept < MIME_KEEP_TOTAL ? MIME_KEEP_TOTAL - p->kept : 0;
    gsize room = p->hdr->len < MIME_HEADER_KEEP ? MIME_HEADER_KEEP - p->hdr->len : 0;
    if ((guint64)room > room_total)
        room = (gsize)room_total;
    if (len > room) {
        p->cur->header_cut = TRUE;
        p->tree->limited = TRUE;
        len = room;
    }
    g_string_append_len(p->hdr, s, (gssize)len);
}

void
mime_parser_feed(MimeParser *p, const void *buf, gsize len)
{
    const char *s = buf;
    gsize pos = 0;
    while (pos < len) {
        const char *lf = memchr(s + pos, '\n', len - pos);
        gsize seg_end = lf ? (gsize)(lf - s) : len;
        gsize n = seg_end - pos;
        if (n) {
            if (p->in_header && !p->delimiter)
                keep_header(p, s + pos, n);
            if (p->line_len < LINE_PREFIX) {
                gsize c = MIN(n, LINE_PREFIX - p->line_len);
                memcpy(p->line + p->line_len, s + pos, c);
                p->line_len += c;
            }
            p->line_pos += n;
            p->last_cr = s[seg_end - 1] == '\r';
            if (!p->decided && (p->line_len == LINE_PREFIX ||
                                (p->line_len >= 2 && (p->line[0] != '-' || p->line[1] != '-'))))
                decide(p);
        }
        if (lf) {
            if (p->in_header && !p->delimiter)
                keep_header(p, "\n", 1);
            line_end(p, p->offset + seg_end);
            pos = seg_end + 1;
        } else {
            pos = seg_end;
        }
    }
    p->offset += len;
}

MimeTree *
mime_parser_finish(MimeParser **pp)
{
    MimeParser *p = *pp;
    /* the last line, unended: a delimiter there counts (decided like any other line) */
    if (p->line_pos > 0 && !p->decided)
        decide(p);
    if (p->delimiter && p->new_child_of) {
        p->cur = part_new(p, p->new_child_of, p->offset, FALSE);
        p->in_header = TRUE;
        g_string_truncate(p->hdr, 0);
        p->new_child_of = NULL;
    }
    if (p->in_header) {
        /* a header with no blank line runs to the end of the message */
        if (p->delimiter)
            g_string_truncate(p->hdr, p->hdr_mark);
        header_end(p, p->offset, p->offset, FALSE);
    }
    /* every open part ends at the end of the message (an unended last line adds no LF) */
    for (MimePart *q = p->cur; q; q = q->parent) {
        q->end = MAX(p->offset, q->body_start);
        q->body_lines = p->lf - q->body_lf;
        q->body_size = q->end - q->body_start + p->bare_lf - q->body_bare_lf;
        g_clear_pointer(&q->boundary, g_free);
    }
    MimeTree *t = p->tree;
    t->size = p->offset;
    p->tree = NULL;
    mime_parser_free(pp);
    return t;
}

void
mime_parser_free(MimeParser **pp)
{
    MimeParser *p = *pp;
    if (!p)
        return;
    mime_tree_free(&p->tree);
    g_string_free(p->hdr, TRUE);
    g_free(p);
    *pp = NULL;
}

MimeTree *
mime_parse(const void *msg, gsize len)
{
    MimeParser *p = mime_parser_new();
    mime_parser_feed(p, msg, len);
    return mime_parser_finish(&p);
}

/* ---- IMAP strings ---------------------------------------------------------------------------- */

void
mime_append_nstring(GString *out, const char *s, gsize len)
{
    if (!s) {
        g_string_append(out, "NIL");
        return;
    }
    gboolean literal = FALSE;
    for (gsize i = 0; i < len && !literal; i++) {
        guchar c = (guchar)s[i];
        literal = c == '\r' || c == '\n' || c == '\0' || c >= 0x80;
    }
    if (literal) {
        g_string_append_printf(out, "{%" G_GSIZE_FORMAT "}\r\n", len);
        for (gsize i = 0; i < len; i++)
            g_string_append_c(out, s[i] == '\0' ? (char)0x80 : s[i]);   /* not reached via unfold */
        return;
    }
    g_string_append_c(out, '"');
    for (gsize i = 0; i < len; i++) {
        if (s[i] == '"' || s[i] == '\\')
            g_string_append_c(out, '\\');
        g_string_append_c(out, s[i]);
    }
    g_string_append_c(out, '"');
}

/* append_str - a C string (NULL: NIL) */
static void
append_str(GString *out, const char *s)
{
    mime_append_nstring(out, s, s ? strlen(s) : 0);
}

/* ---- addresses (RFC 5322 section 3.4, with the obsolete forms of section 4.4) ----------------- */

typedef enum { TOK_END, TOK_ATOM, TOK_QUOTED, TOK_LITERAL, TOK_SPECIAL } TokKind;

typedef struct {
    const char *s;          /* the unfolded field value */
    const char *comment;    /* the last comment skipped (its text), for a name-less addr-spec */
    gsize comment_len;
} AddrLexer;

typedef struct {
    TokKind kind;
    char special;
    const char *raw;        /* the token as written (quotes included) */
    gsize raw_len;
} Tok;

/* lex_cfws - past blanks and comments, remembering the last comment's text */
static void
lex_cfws(AddrLexer *x)
{
    for (;;) {
        while (*x->s == ' ' || *x->s == '\t')
            x->s++;
        if (*x->s != '(')
            return;
        const char *start = x->s + 1;
        int depth = 0;
        while (*x->s) {
            if (*x->s == '\\' && x->s[1])
                x->s++;
            else if (*x->s == '(')
                depth++;
            else if (*x->s == ')' && --depth == 0)
                break;
            x->s++;
        }
        x->comment = start;
        x->comment_len = (gsize)(x->s - start);
        if (*x->s)
            x->s++;
    }
}

/* lex_peek - the next token without taking it */
static Tok
lex_peek(AddrLexer *x)
{
    lex_cfws(x);
    Tok t = { TOK_END, 0, x->s, 0 };
    const char *s = x->s;
    if (!*s)
        return t;
    if (*s == '"' || *s == '[') {
        char close = *s == '"' ? '"' : ']';
        t.kind = *s == '"' ? TOK_QUOTED : TOK_LITERAL;
        s++;
        while (*s && *s != close) {
            if (*s == '\\' && s[1])
                s++;
            s++;
        }
        if (*s)
            s++;
        t.raw_len = (gsize)(s - x->s);
        return t;
    }
    if (strchr("<>@,;:.\\)]", *s)) {   /* every octet that ends an atom starts a token */
        t.kind = TOK_SPECIAL;
        t.special = *s;
        t.raw_len = 1;
        return t;
    }
    while (*s && !strchr(" \t()<>@,;:.\\\"[]", *s))
        s++;
    t.kind = TOK_ATOM;
    t.raw_len = (gsize)(s - x->s);
    return t;
}

/* lex_take - take token T (from lex_peek) */
static void
lex_take(AddrLexer *x, const Tok *t)
{
    x->s = t->raw + t->raw_len;
}

/* append_unquoted - a quoted string's text without its quotes and escapes */
static void
append_unquoted(GString *g, const char *raw, gsize len)
{
    gsize end = len > 1 && raw[len - 1] == '"' ? len - 1 : len;
    for (gsize i = 1; i < end; i++) {
        if (raw[i] == '\\' && i + 1 < end)
            i++;
        g_string_append_c(g, raw[i]);
    }
}

typedef struct {
    char *name, *adl, *mailbox, *host;
} Addr;

static void
addr_clear(gpointer data)
{
    Addr *a = data;
    g_free(a->name);
    g_free(a->adl);
    g_free(a->mailbox);
    g_free(a->host);
}

/* read_phrase - words (atoms, quoted strings, obsolete dots) as a display name: words joined by
 * one space, quoted strings unquoted; NULL when there is none */
static char *
read_phrase(AddrLexer *x)
{
    GString *g = NULL;
    for (;;) {
        Tok t = lex_peek(x);
        if (t.kind != TOK_ATOM && t.kind != TOK_QUOTED && !(t.kind == TOK_SPECIAL && t.special == '.'))
            break;
        lex_take(x, &t);
        if (!g)
            g = g_string_new(NULL);
        else if (!(t.kind == TOK_SPECIAL && t.special == '.'))
            g_string_append_c(g, ' ');
        if (t.kind == TOK_QUOTED)
            append_unquoted(g, t.raw, t.raw_len);
        else
            g_string_append_len(g, t.raw, (gssize)t.raw_len);
    }
    return g ? g_string_free(g, FALSE) : NULL;
}

/* read_dotted - a local part or domain: words, dots and literals as written (without CFWS) */
static char *
read_dotted(AddrLexer *x, gboolean domain)
{
    GString *g = g_string_new(NULL);
    for (;;) {
        Tok t = lex_peek(x);
        if (t.kind == TOK_ATOM || t.kind == TOK_QUOTED || (domain && t.kind == TOK_LITERAL) ||
            (t.kind == TOK_SPECIAL && t.special == '.')) {
            lex_take(x, &t);
            if (t.kind == TOK_QUOTED)
                append_unquoted(g, t.raw, t.raw_len);   /* "john doe"@x is mailbox john doe */
            else
                g_string_append_len(g, t.raw, (gssize)t.raw_len);
            continue;
        }
        break;
    }
    if (g->len == 0) {
        g_string_free(g, TRUE);
        return NULL;
    }
    return g_string_free(g, FALSE);
}

/* read_addr_spec - local-part "@" domain into A (missing parts as Dovecot names them) */
static void
read_addr_spec(AddrLexer *x, Addr *a, char *local)
{
    a->mailbox = local ? local : read_dotted(x, FALSE);
    Tok t = lex_peek(x);
    if (t.kind == TOK_SPECIAL && t.special == '@') {
        lex_take(x, &t);
        a->host = read_dotted(x, TRUE);
    }
    if (!a->mailbox)
        a->mailbox = g_strdup("MISSING_MAILBOX");
    if (!a->host)
        a->host = g_strdup("MISSING_DOMAIN");
}

/* skip_to - past tokens up to (not including) one of the specials in STOP, or the end */
static void
skip_to(AddrLexer *x, const char *stop)
{
    for (;;) {
        Tok t = lex_peek(x);
        if (t.kind == TOK_END || (t.kind == TOK_SPECIAL && strchr(stop, t.special)))
            return;
        lex_take(x, &t);
    }
}

/* parse_addresses - the address list V as IMAP address structures (groups as their start and
 * end markers: name NULL, host NULL) */
static GArray *
parse_addresses(const char *v)
{
    GArray *list = g_array_new(FALSE, TRUE, sizeof(Addr));
    g_array_set_clear_func(list, addr_clear);
    AddrLexer x = { v, NULL, 0 };
    gboolean in_group = FALSE;
    for (;;) {
        Tok t = lex_peek(&x);
        if (t.kind == TOK_END)
            break;
        if (t.kind == TOK_SPECIAL && t.special == ',') {
            lex_take(&x, &t);
            continue;
        }
        if (t.kind == TOK_SPECIAL && t.special == ';') {
            lex_take(&x, &t);
            if (in_group) {
                Addr end = { 0 };
                g_array_append_val(list, end);
                in_group = FALSE;
            }
            continue;
        }
        x.comment = NULL;
        const char *before = x.s;
        char *phrase = read_phrase(&x);
        t = lex_peek(&x);
        Addr a = { 0 };
        if (t.kind == TOK_SPECIAL && t.special == ':' && !in_group) {
            lex_take(&x, &t);
            a.mailbox = phrase ? phrase : g_strdup("");
            g_array_append_val(list, a);
            in_group = TRUE;
            continue;
        }
        if (t.kind == TOK_SPECIAL && t.special == '<') {
            lex_take(&x, &t);
            a.name = phrase;
            t = lex_peek(&x);
            if (t.kind == TOK_SPECIAL && t.special == '@') {
                /* obs-route: "@a,@b:" */
                const char *r = t.raw;
                skip_to(&x, ":>");
                t = lex_peek(&x);
                if (t.kind == TOK_SPECIAL && t.special == ':') {
                    GString *adl = g_string_new(NULL);
                    for (const char *c = r; c < t.raw; c++)
                        if (*c != ' ' && *c != '\t')
                            g_string_append_c(adl, *c);
                    a.adl = g_string_free(adl, FALSE);
                    lex_take(&x, &t);
                } else {
                    x.s = r;
                }
            }
            read_addr_spec(&x, &a, NULL);
            skip_to(&x, in_group ? ">,;" : ">,");
            t = lex_peek(&x);
            if (t.kind == TOK_SPECIAL && t.special == '>')
                lex_take(&x, &t);
        } else {
            /* an addr-spec; the phrase read was its local part, re-read as written */
            g_free(phrase);
            x.s = before;
            x.comment = NULL;
            read_addr_spec(&x, &a, NULL);
            lex_cfws(&x);
            if (x.comment)
                a.name = g_strndup(x.comment, x.comment_len);
        }
        g_array_append_val(list, a);
        skip_to(&x, in_group ? ",;" : ",");
        /* a stray character that stops nothing (">", "\", ")") */
        t = lex_peek(&x);
        if (t.kind == TOK_SPECIAL && !strchr(",;", t.special))
            lex_take(&x, &t);
    }
    if (in_group) {
        Addr end = { 0 };
        g_array_append_val(list, end);
    }
    return list;
}

/* append_addresses - an address list in IMAP form, NIL when empty */
static void
append_addresses(GString *out, GArray *list)
{
    if (!list || list->len == 0) {
        g_string_append(out, "NIL");
        return;
    }
    g_string_append_c(out, '(');
    for (guint i = 0; i < list->len; i++) {
        Addr *a = &g_array_index(list, Addr, i);
        g_string_append_c(out, '(');
        append_str(out, a->name && *a->name ? a->name : NULL);
        g_string_append_c(out, ' ');
        append_str(out, a->adl);
        g_string_append_c(out, ' ');
        append_str(out, a->mailbox);
        g_string_append_c(out, ' ');
        append_str(out, a->host);
        g_string_append_c(out, ')');
    }
    g_string_append_c(out, ')');
}

void
mime_envelope(const MimePart *msg, GString *out)
{
    const char *h = msg->header ? msg->header : "";
    gsize hl = msg->header ? msg->header_len : 0;
    static const char *const names[] = { "from", "sender", "reply-to", "to", "cc", "bcc" };
    GArray *lists[G_N_ELEMENTS(names)];
    for (gsize i = 0; i < G_N_ELEMENTS(names); i++) {
        char *v = header_get(h, hl, names[i]);
        lists[i] = v ? parse_addresses(v) : NULL;
        g_free(v);
    }
    g_string_append_c(out, '(');
    char *v = header_get(h, hl, "date");
    append_str(out, v);
    g_free(v);
    g_string_append_c(out, ' ');
    v = header_get(h, hl, "subject");
    append_str(out, v);
    g_free(v);
    for (gsize i = 0; i < G_N_ELEMENTS(names); i++) {
        g_string_append_c(out, ' ');
        /* RFC 9051 7.5.2: an absent or empty Sender or Reply-To is the From */
        GArray *l = lists[i];
        if ((i == 1 || i == 2) && (!l || l->len == 0))
            l = lists[0];
        append_addresses(out, l);
    }
    for (gsize i = 0; i < G_N_ELEMENTS(names); i++)
        if (lists[i])
            g_array_unref(lists[i]);
    static const char *const ids[] = { "in-reply-to", "message-id" };
    for (gsize i = 0; i < G_N_ELEMENTS(ids); i++) {
        g_string_append_c(out, ' ');
        v = header_get(h, hl, ids[i]);
        append_str(out, v);
        g_free(v);
    }
    g_string_append_c(out, ')');
}

/* ---- BODY and BODYSTRUCTURE (RFC 9051 section 7.5.2) -------------------------------------- */

#define EMPTY_BODY "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)"
#define EMPTY_BODYSTRUCTURE \
    "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)"

/* append_params - body-fld-param: ("name" "value" ...) or NIL; a text part gets the default
 * charset when it names none */
static void
append_params(GString *out, const GPtrArray *a, gboolean text)
{
    gboolean charset = param_get(a, "charset") != NULL;
    if ((!a || a->len < 2) && !(text && !charset)) {
        g_string_append(out, "NIL");
        return;
    }
    g_string_append_c(out, '(');
    gboolean first = TRUE;
    if (text && !charset) {
        g_string_append(out, "\"charset\" \"us-ascii\"");
        first = FALSE;
    }
    for (guint i = 0; a && i + 1 < a->len; i += 2) {
        if (!first)
            g_string_append_c(out, ' ');
        first = FALSE;
        append_str(out, g_ptr_array_index(a, i));
        g_string_append_c(out, ' ');
        append_str(out, g_ptr_array_index(a, i + 1));
    }
    g_string_append_c(out, ')');
}

/* append_ext - the extension data shared by both forms: dsp, lang, loc */
static void
append_ext(GString *out, const MimePart *part)
{
    g_string_append_c(out, ' ');
    if (part->disposition) {
        g_string_append_c(out, '(');
        append_str(out, part->disposition);
        g_string_append_c(out, ' ');
        append_params(out, part->disposition_params, FALSE);
        g_string_append_c(out, ')');
    } else {
        g_string_append(out, "NIL");
    }
    g_string_append_c(out, ' ');
    /* body-fld-lang: one tag as a string, several as a list */
    GPtrArray *tags = g_ptr_array_new_with_free_func(g_free);
    const char *s = part->content[MIME_CONTENT_LANGUAGE];
    s = s ? s : "";
    for (;;) {
        s = skip_cfws(s);
        while (*s == ',')
            s = skip_cfws(s + 1);
        const char *a = s;
        while (*s && *s != ',' && *s != ' ' && *s != '\t' && *s != '(')
            s++;
        if (s == a)
            break;
        g_ptr_array_add(tags, g_strndup(a, (gsize)(s - a)));
    }
    if (tags->len == 0) {
        g_string_append(out, "NIL");
    } else if (tags->len == 1) {
        append_str(out, g_ptr_array_index(tags, 0));
    } else {
        g_string_append_c(out, '(');
        for (guint i = 0; i < tags->len; i++) {
            if (i)
                g_string_append_c(out, ' ');
            append_str(out, g_ptr_array_index(tags, i));
        }
        g_string_append_c(out, ')');
    }
    g_ptr_array_unref(tags);
    g_string_append_c(out, ' ');
    append_str(out, part->content[MIME_CONTENT_LOCATION]);
}

void
mime_bodystructure(const MimePart *part, gboolean extended, GString *out)
{
    g_string_append_c(out, '(');
    if (part->kind == MIME_KIND_MULTIPART) {
        if (!part->children)
            /* no part between the delimiters, which IMAP cannot say: one empty text part */
            g_string_append(out, extended ? EMPTY_BODYSTRUCTURE : EMPTY_BODY);
        for (const MimePart *c = part->children; c; c = c->next)
            mime_bodystructure(c, extended, out);
        g_string_append_c(out, ' ');
        append_str(out, part->subtype);
        if (extended) {
            g_string_append_c(out, ' ');
            append_params(out, part->params, FALSE);
            append_ext(out, part);
        }
        g_string_append_c(out, ')');
        return;
    }
    gboolean text = g_ascii_strcasecmp(part->type, "text") == 0;
    append_str(out, part->type);
    g_string_append_c(out, ' ');
    append_str(out, part->subtype);
    g_string_append_c(out, ' ');
    append_params(out, part->params, text);
    g_string_append_c(out, ' ');
    append_str(out, part->content[MIME_CONTENT_ID]);
    g_string_append_c(out, ' ');
    append_str(out, part->content[MIME_CONTENT_DESCRIPTION]);
    g_string_append_c(out, ' ');
    const char *encoding = part->content[MIME_CONTENT_ENCODING];
    append_str(out, encoding ? encoding : "7bit");
    g_string_append_printf(out, " %" G_GUINT64_FORMAT, part->body_size);
    if (text) {
        g_string_append_printf(out, " %" G_GUINT64_FORMAT, part->body_lines);
    } else if (part->kind == MIME_KIND_MESSAGE) {
        g_string_append_c(out, ' ');
        mime_envelope(part->children, out);
        g_string_append_c(out, ' ');
        mime_bodystructure(part->children, extended, out);
        g_string_append_printf(out, " %" G_GUINT64_FORMAT, part->body_lines);
    } else if (part_is_rfc822(part)) {
        /* not parsed (a limit): the grammar still wants an envelope and a body */
        g_string_append_printf(out, " (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) %s %" G_GUINT64_FORMAT,
                               extended ? EMPTY_BODYSTRUCTURE : EMPTY_BODY, part->body_lines);
    }
    if (extended) {
        g_string_append_c(out, ' ');
        append_str(out, part->content[MIME_CONTENT_MD5]);
        append_ext(out, part);
    }
    g_string_append_c(out, ')');
}

/* ---- sections (RFC 9051 section 6.4.5) --------------------------------------------------- */

/* message_part - part N of message M: of its multipart body, or (N = 1) M itself, whose body is
 * its only part */
static const MimePart *
message_part(const MimePart *m, guint64 n)
{
    if (m->kind != MIME_KIND_MULTIPART)
        return n == 1 ? m : NULL;
    for (const MimePart *c = m->children; c; c = c->next)
        if (--n == 0)
            return c;
    return NULL;
}

/* part_step - subpart N of body part P (RFC 9051 section 6.4.5's part numbers), or NULL: a
 * multipart's Nth part, a message/rfc822's encapsulated message's part N. A single part is its
 * own part 1 once (*SELF_OK: it was not reached that way), as Dovecot counts: "2.1" is part 2
 * when that is a leaf, "2.1.1" is nothing. */
static const MimePart *
part_step(const MimePart *p, guint64 n, gboolean *self_ok)
{
    const MimePart *q;
    if (p->kind == MIME_KIND_MESSAGE && p->children)
        q = message_part(p->children, n);
    else if (p->kind == MIME_KIND_MULTIPART)
        q = message_part(p, n);
    else
        q = *self_ok && n == 1 ? p : NULL;
    *self_ok = q && q->parent == (p->kind == MIME_KIND_MESSAGE ? p->children : p) && q != p;
    return q;
}

/* parse_part_numbers - "1.2.3" at *S into the part, *S past it (and past the "." before any
 * text that follows); NULL and *BAD for bad syntax */
static const MimePart *
parse_part_numbers(const MimeTree *t, const char **s, gboolean *bad)
{
    const MimePart *p = t->root;
    gboolean first = TRUE, self_ok = FALSE;
    while (g_ascii_isdigit(**s)) {
        if (**s == '0') {
            *bad = TRUE;
            return NULL;
        }
        guint64 n = 0;
        while (g_ascii_isdigit(**s)) {
            if (n > G_MAXUINT32) {
                *bad = TRUE;
                return NULL;
            }
            n = n * 10 + (guint64)(**s - '0');
            (*s)++;
        }
        if (p)
            p = first ? message_part(p, n) : part_step(p, n, &self_ok);
        if (first && p)
            self_ok = p != t->root;
        first = FALSE;
        if (**s == '.') {
            (*s)++;
            if (!**s) {
                *bad = TRUE;
                return NULL;
            }
        } else if (**s) {
            *bad = TRUE;
            return NULL;
        }
    }
    return p;
}

/* add_range - append [START, START+LEN) to RANGES, merged with the last when adjacent */
static void
add_range(GArray *ranges, guint64 start, guint64 len)
{
    if (len == 0)
        return;
    if (ranges->len) {
        MimeRange *last = &g_array_index(ranges, MimeRange, ranges->len - 1);
        if (last->start + last->len == start) {
            last->len += len;
            return;
        }
    }
    MimeRange r = { start, len };
    g_array_append_val(ranges, r);
}

/* parse_field_list - " (name name ...)" after HEADER.FIELDS[.NOT] at S; NULL for bad syntax */
static GPtrArray *
parse_field_list(const char *s)
{
    if (*s++ != ' ' || *s++ != '(')
        return NULL;
    GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
    for (;;) {
        while (*s == ' ')
            s++;
        if (*s == ')')
            break;
        GString *n = g_string_new(NULL);
        if (*s == '"') {
            s++;
            while (*s && *s != '"') {
                if (*s == '\\' && s[1])
                    s++;
                g_string_append_c(n, *s++);
            }
            if (*s != '"') {
                g_string_free(n, TRUE);
                g_ptr_array_unref(names);
                return NULL;
            }
            s++;
        } else {
            while (*s && *s != ' ' && *s != ')' && *s != '(' && *s != '"' && (guchar)*s > ' ' &&
                   (guchar)*s < 0x7f)
                g_string_append_c(n, *s++);
        }
        if (n->len == 0) {
            g_string_free(n, TRUE);
            g_ptr_array_unref(names);
            return NULL;
        }
        g_ptr_array_add(names, g_string_free(n, FALSE));
        if (*s != ' ' && *s != ')') {
            g_ptr_array_unref(names);
            return NULL;
        }
    }
    if (s[1] != '\0' || names->len == 0) {
        g_ptr_array_unref(names);
        return NULL;
    }
    return names;
}

gboolean
mime_section_ranges(const MimeTree *t, const char *section, GArray *ranges, GError **error)
{
    const char *s = section;
    gboolean bad = FALSE;
    gboolean numbered = g_ascii_isdigit(*s);
    const MimePart *p = parse_part_numbers(t, &s, &bad);
    if (bad) {
        g_set_error(error, MIME_ERROR, MIME_ERROR_SECTION, "bad section: %s", section);
        return FALSE;
    }
    GPtrArray *fields = NULL;
    gboolean not = FALSE;
    enum { WHOLE, HEADER, TEXT, MIME, FIELDS } what;
    if (!*s)
        what = WHOLE;
    else if (g_ascii_strcasecmp(s, "HEADER") == 0)
        what = HEADER;
    else if (g_ascii_strcasecmp(s, "TEXT") == 0)
        what = TEXT;
    else if (numbered && g_ascii_strcasecmp(s, "MIME") == 0)
        what = MIME;
    else if (g_ascii_strncasecmp(s, "HEADER.FIELDS", 13) == 0) {
        what = FIELDS;
        s += 13;
        if (g_ascii_strncasecmp(s, ".NOT", 4) == 0) {
            not = TRUE;
            s += 4;
        }
        fields = parse_field_list(s);
        if (!fields) {
            g_set_error(error, MIME_ERROR, MIME_ERROR_SECTION, "bad section: %s", section);
            return FALSE;
        }
    } else {
        g_set_error(error, MIME_ERROR, MIME_ERROR_SECTION, "bad section: %s", section);
        return FALSE;
    }
    if (!p) {
        if (fields)
            g_ptr_array_unref(fields);
        g_set_error(error, MIME_ERROR, MIME_ERROR_NO_PART, "no such part: %s", section);
        return FALSE;
    }
    if (!numbered) {
        if (what == WHOLE)
            add_range(ranges, 0, t->size);
    } else if (what == WHOLE) {
        add_range(ranges, p->body_start, p->end - p->body_start);
        if (fields)
            g_ptr_array_unref(fields);
        return TRUE;
    } else if (what == MIME) {
        add_range(ranges, p->header_start, p->body_start - p->header_start);
        return TRUE;
    }
    /* HEADER, TEXT and HEADER.FIELDS: of the root, or of the message inside a message/rfc822 */
    const MimePart *m = p;
    if (numbered) {
        if (m->kind != MIME_KIND_MESSAGE || !m->children) {
            if (fields)
                g_ptr_array_unref(fields);
            g_set_error(error, MIME_ERROR, MIME_ERROR_NO_PART, "not a message/rfc822 part: %s",
                        section);
            return FALSE;
        }
        m = m->children;
    }
    if (what == HEADER)
        add_range(ranges, m->header_start, m->body_start - m->header_start);
    else if (what == TEXT)
        add_range(ranges, m->body_start, m->end - m->body_start);
    else if (what == FIELDS) {
        gsize pos = 0;
        MimeField f;
        while (m->header && mime_header_next(m->header, m->header_len, &pos, &f)) {
            gboolean listed = FALSE;
            for (guint i = 0; i < fields->len && !listed; i++)
                listed = mime_field_is(&f, g_ptr_array_index(fields, i));
            if (listed != not)
                add_range(ranges, m->header_start + f.start, f.end - f.start);
        }
        add_range(ranges, m->blank_start, m->body_start - m->blank_start);
        g_ptr_array_unref(fields);
    }
    return TRUE;
}

void
mime_ranges_partial(GArray *ranges, guint64 origin, guint64 count)
{
    GArray *out = g_array_new(FALSE, FALSE, sizeof(MimeRange));
    for (guint i = 0; i < ranges->len && count > 0; i++) {
        MimeRange r = g_array_index(ranges, MimeRange, i);
        if (origin >= r.len) {
            origin -= r.len;
            continue;
        }
        r.start += origin;
        r.len -= origin;
        origin = 0;
        if (r.len > count)
            r.len = count;
        count -= r.len;
        g_array_append_val(out, r);
    }
    g_array_set_size(ranges, 0);
    if (out->len)
        g_array_append_vals(ranges, out->data, out->len);
    g_array_unref(out);
}

guint64
mime_ranges_size(const GArray *ranges)
{
    guint64 n = 0;
    for (guint i = 0; i < ranges->len; i++)
        n += g_array_index(ranges, MimeRange, i).len;
    return n;
}

const MimePart *
mime_part_find(const MimeTree *t, const char *spec)
{
    const char *s = spec;
    gboolean bad = FALSE;
    const MimePart *p = parse_part_numbers(t, &s, &bad);
    return bad || *s ? NULL : p;
}
