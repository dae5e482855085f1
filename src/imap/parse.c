/*
 * parse.c - the IMAP command grammar (RFC 9051 section 9; see parse.h for the buffer it reads).
 */
#include "imap/parse.h"

#include <string.h>

void
imap_parser_init(ImapParser *p, const char *buf, gsize len)
{
    *p = (ImapParser){.buf = buf, .len = len, .pos = 0};
}

gboolean imap_parse_end(const ImapParser *p) { return p->pos >= p->len; }
char imap_parse_peek(const ImapParser *p) { return p->pos < p->len ? p->buf[p->pos] : 0; }

gboolean
imap_parse_char(ImapParser *p, char c)
{
    if (p->pos < p->len && p->buf[p->pos] == c) {
        p->pos++;
        return TRUE;
    }
    return FALSE;
}

gboolean imap_parse_sp(ImapParser *p) { return imap_parse_char(p, ' '); }

/* imap_atom_char - ATOM-CHAR: a CHAR that is not an atom-special */
static gboolean
imap_atom_char(unsigned char c)
{
    if (c <= 0x1f || c >= 0x7f)
        return FALSE;
    return !strchr("(){ %*\"\\]", c);
}

static gboolean imap_astring_char(unsigned char c) { return imap_atom_char(c) || c == ']'; }
static gboolean imap_tag_char(unsigned char c) { return imap_astring_char(c) && c != '+'; }
static gboolean imap_list_char(unsigned char c)
{ return imap_atom_char(c) || c == '%' || c == '*' || c == ']'; }

/* imap_parse_run - the longest run of octets CLASS accepts (at least one), copied */
static char *
imap_parse_run(ImapParser *p, gboolean (*class)(unsigned char))
{
    gsize start = p->pos;
    while (p->pos < p->len && class((unsigned char)p->buf[p->pos]))
        p->pos++;
    if (p->pos == start)
        return NULL;
    return g_strndup(p->buf + start, p->pos - start);
}

char *imap_parse_tag(ImapParser *p) { return imap_parse_run(p, imap_tag_char); }
char *imap_parse_atom(ImapParser *p) { return imap_parse_run(p, imap_atom_char); }

/* imap_parse_quoted - DQUOTE *QUOTED-CHAR DQUOTE (UTF-8 allowed, RFC 9051; no CR, LF, NUL) */
static char *
imap_parse_quoted(ImapParser *p, gsize *len)
{
    gsize save = p->pos;
    if (!imap_parse_char(p, '"'))
        return NULL;
    GString *s = g_string_new(NULL);
    while (p->pos < p->len) {
        char c = p->buf[p->pos++];
        if (c == '"') {
            *len = s->len;
            return g_string_free(s, FALSE);
        }
        if (c == '\\') {
            if (p->pos >= p->len || (p->buf[p->pos] != '"' && p->buf[p->pos] != '\\'))
                break;
            c = p->buf[p->pos++];
        } else if (c == '\r' || c == '\n' || c == '\0') {
            break;
        }
        g_string_append_c(s, c);
    }
    g_string_free(s, TRUE);
    p->pos = save;
    return NULL;
}

/* imap_parse_literal - "{" number "}" CRLF *OCTET, as the session stored it */
static char *
imap_parse_literal(ImapParser *p, gsize *len)
{
    gsize save = p->pos;
    guint64 n;
    if (!imap_parse_char(p, '{') || !imap_parse_number64(p, &n) || !imap_parse_char(p, '}') ||
        !imap_parse_char(p, '\r') || !imap_parse_char(p, '\n') || n > p->len - p->pos) {
        p->pos = save;
        return NULL;
    }
    char *s = g_malloc((gsize)n + 1);
    memcpy(s, p->buf + p->pos, (gsize)n);
    s[n] = '\0';
    p->pos += (gsize)n;
    *len = (gsize)n;
    return s;
}

char *
imap_parse_string(ImapParser *p, gsize *len)
{
    gsize dummy;
    if (!len)
        len = &dummy;
    if (imap_parse_peek(p) == '"')
        return imap_parse_quoted(p, len);
    if (imap_parse_peek(p) == '{')
        return imap_parse_literal(p, len);
    return NULL;
}

/* imap_parse_text_string - a string with no NUL in it */
static char *
imap_parse_text_string(ImapParser *p)
{
    gsize save = p->pos, len;
    char *s = imap_parse_string(p, &len);
    if (s && memchr(s, '\0', len)) {
        g_free(s);
        p->pos = save;
        return NULL;
    }
    return s;
}

/* imap_parse_string_or_run - a string (no NUL in it) or else a run of octets CLASS accepts */
static char *
imap_parse_string_or_run(ImapParser *p, gboolean (*class)(unsigned char))
{
    char c = imap_parse_peek(p);
    if (c == '"' || c == '{')
        return imap_parse_text_string(p);
    return imap_parse_run(p, class);
}

char *imap_parse_astring(ImapParser *p) { return imap_parse_string_or_run(p, imap_astring_char); }
char *imap_parse_list_mailbox(ImapParser *p) { return imap_parse_string_or_run(p, imap_list_char); }

gboolean
imap_parse_number64(ImapParser *p, guint64 *n)
{
    gsize start = p->pos;
    guint64 v = 0;
    while (p->pos < p->len && g_ascii_isdigit(p->buf[p->pos])) {
        if (p->pos - start >= 19) {
            p->pos = start;
            return FALSE;
        }
        v = v * 10 + (guint64)(p->buf[p->pos++] - '0');
    }
    if (p->pos == start)
        return FALSE;
    *n = v;
    return TRUE;
}

gboolean
imap_parse_number(ImapParser *p, guint32 *n, gboolean nz)
{
    gsize save = p->pos;
    guint64 v;
    if (!imap_parse_number64(p, &v) || v > G_MAXUINT32 || (nz && v == 0)) {
        p->pos = save;
        return FALSE;
    }
    *n = (guint32)v;
    return TRUE;
}

/* imap_parse_seq_number - nz-number / "*" */
static gboolean
imap_parse_seq_number(ImapParser *p, guint32 *n)
{
    if (imap_parse_char(p, '*')) {
        *n = G_MAXUINT32;
        return TRUE;
    }
    return imap_parse_number(p, n, TRUE);
}

gboolean
imap_parse_seqset(ImapParser *p, GArray *ranges)
{
    gsize save = p->pos;
    guint start_len = ranges->len;
    do {
        ImapRange r;
        if (!imap_parse_seq_number(p, &r.lo))
            goto fail;
        r.hi = r.lo;
        if (imap_parse_char(p, ':') && !imap_parse_seq_number(p, &r.hi))
            goto fail;
        if (ranges->len - start_len >= 10000)
            goto fail;   /* a set this long is an attack, not a client */
        g_array_append_val(ranges, r);
    } while (imap_parse_char(p, ','));
    return TRUE;
fail:
    g_array_set_size(ranges, start_len);
    p->pos = save;
    return FALSE;
}

ImapRange
imap_range_resolve(ImapRange r, guint32 max)
{
    if (r.lo == G_MAXUINT32)
        r.lo = max;
    if (r.hi == G_MAXUINT32)
        r.hi = max;
    return r.lo <= r.hi ? r : (ImapRange){r.hi, r.lo};
}

gboolean
imap_seqset_contains(const GArray *ranges, guint32 n, guint32 max)
{
    for (guint i = 0; i < ranges->len; i++) {
        ImapRange r = imap_range_resolve(g_array_index(ranges, ImapRange, i), max);
        if (n >= r.lo && n <= r.hi)
            return TRUE;
    }
    return FALSE;
}

char *
imap_parse_flag(ImapParser *p, gboolean allow_star)
{
    gsize save = p->pos;
    if (imap_parse_char(p, '\\')) {
        if (allow_star && imap_parse_char(p, '*'))
            return g_strdup("\\*");
        char *a = imap_parse_atom(p);
        if (!a) {
            p->pos = save;
            return NULL;
        }
        char *f = g_strconcat("\\", a, NULL);
        g_free(a);
        return f;
    }
    return imap_parse_atom(p);
}

gboolean
imap_parse_flag_list(ImapParser *p, GPtrArray *flags)
{
    gsize save = p->pos;
    guint start_len = flags->len;
    if (!imap_parse_char(p, '('))
        return FALSE;
    if (imap_parse_char(p, ')'))
        return TRUE;
    do {
        char *f = imap_parse_flag(p, FALSE);
        if (!f || flags->len - start_len >= 100) {
            g_free(f);
            goto fail;
        }
        g_ptr_array_add(flags, f);
    } while (imap_parse_sp(p));
    if (imap_parse_char(p, ')'))
        return TRUE;
fail:
    while (flags->len > start_len)
        g_free(g_ptr_array_steal_index(flags, flags->len - 1));
    p->pos = save;
    return FALSE;
}

const char imap_month_names[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

guint
imap_month(const char *s)
{
    for (guint i = 0; i < 12; i++)
        if (g_ascii_strncasecmp(s, imap_month_names[i], 3) == 0)
            return i + 1;
    return 0;
}

gint64
imap_days_from_civil(gint64 y, guint m, guint d)
{
    /* H. Hinnant's days_from_civil */
    y -= m <= 2;
    gint64 era = (y >= 0 ? y : y - 399) / 400;
    gint64 yoe = y - era * 400;
    gint64 doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    gint64 doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* imap_parse_digits - exactly N digits */
static gboolean
imap_parse_digits(ImapParser *p, guint n, guint *v)
{
    if (p->len - p->pos < n)
        return FALSE;
    guint x = 0;
    for (guint i = 0; i < n; i++) {
        if (!g_ascii_isdigit(p->buf[p->pos + i]))
            return FALSE;
        x = x * 10 + (guint)(p->buf[p->pos + i] - '0');
    }
    p->pos += n;
    *v = x;
    return TRUE;
}

/* imap_parse_month - "-" date-month "-" */
static gboolean
imap_parse_month(ImapParser *p, guint *m)
{
    if (p->len - p->pos < 5 || p->buf[p->pos] != '-' || p->buf[p->pos + 4] != '-' ||
        !(*m = imap_month(p->buf + p->pos + 1)))
        return FALSE;
    p->pos += 5;
    return TRUE;
}

/* imap_valid_day - whether D is a day of month M in year Y */
static gboolean
imap_valid_day(guint y, guint m, guint d)
{
    static const guint mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (d < 1 || d > mdays[m - 1])
        return FALSE;
    gboolean leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return !(m == 2 && d == 29 && !leap);
}

gboolean
imap_parse_date(ImapParser *p, gint64 *days)
{
    gsize save = p->pos;
    gboolean quoted = imap_parse_char(p, '"');
    guint d, m, y;
    if (!imap_parse_digits(p, 2, &d) && !imap_parse_digits(p, 1, &d))
        goto fail;
    if (!imap_parse_month(p, &m) || !imap_parse_digits(p, 4, &y) || !imap_valid_day(y, m, d))
        goto fail;
    if (quoted && !imap_parse_char(p, '"'))
        goto fail;
    *days = imap_days_from_civil(y, m, d);
    return TRUE;
fail:
    p->pos = save;
    return FALSE;
}

gboolean
imap_parse_date_time(ImapParser *p, gint64 *t)
{
    gsize save = p->pos;
    guint d, m, y, hh, mm, ss, zone;
    if (!imap_parse_char(p, '"'))
        goto fail;
    if (imap_parse_char(p, ' ')) {
        if (!imap_parse_digits(p, 1, &d))
            goto fail;
    } else if (!imap_parse_digits(p, 2, &d)) {
        goto fail;
    }
    if (!imap_parse_month(p, &m) || !imap_parse_digits(p, 4, &y) || !imap_valid_day(y, m, d) ||
        !imap_parse_sp(p) || !imap_parse_digits(p, 2, &hh) || !imap_parse_char(p, ':') ||
        !imap_parse_digits(p, 2, &mm) || !imap_parse_char(p, ':') ||
        !imap_parse_digits(p, 2, &ss) || !imap_parse_sp(p) || hh > 23 || mm > 59 || ss > 60)
        goto fail;
    char sign = imap_parse_peek(p);
    if ((sign != '+' && sign != '-') || (p->pos++, !imap_parse_digits(p, 4, &zone)) ||
        !imap_parse_char(p, '"') || zone % 100 > 59)
        goto fail;
    gint64 off = (gint64)(zone / 100 * 3600 + zone % 100 * 60);
    *t = imap_days_from_civil(y, m, d) * 86400 + hh * 3600 + mm * 60 + ss -
         (sign == '+' ? off : -off);
    return TRUE;
fail:
    p->pos = save;
    return FALSE;
}
