/*
 * fuzz-mime.c - libFuzzer harness for the MIME parser of cassmail-imapd (src/imap/mime.h).
 *
 * One input is one message. It is parsed whole, and again fed in chunks whose sizes come from a
 * small generator seeded by the input (1 octet up to a few hundred, as the store's parts would
 * cut it anywhere); the two trees must be the same in every offset, count and output. An input
 * holding the octets 0xff 0xfe has, after them, a section spec that is looked up too (the
 * message is the whole input all the same).
 *
 * Checks beyond the sanitizers (a violation aborts):
 *   - every part: header_start <= blank_start <= body_start <= end <= size; a child lies within
 *     its parent's body, after its previous sibling; an encapsulated message starts where its
 *     message/rfc822 part's body does; lines and sizes agree with the octets; depth and part
 *     count within MIME_DEPTH_MAX and MIME_PARTS_MAX;
 *   - ENVELOPE, BODY and BODYSTRUCTURE are IMAP syntax: parentheses balance, quoted strings are
 *     closed and hold no CR, LF, NUL or 8-bit octet, a literal's length is right;
 *   - every section range (of a fixed list and of the input's own spec) lies within the message,
 *     in order and apart, and partial cuts keep that.
 *
 *   make fuzz FUZZ_SECONDS=300       (build/fuzz/fuzz-mime, seeds in test/fuzz/corpus/mime)
 *
 * The seeds that have a test/unit/data/mime/NAME.ref are also the golden messages of
 * test/unit/test-imap-mime.c: changing one changes what that test expects.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/mime.h"

/* fuzz_fail - report WHAT and abort (libFuzzer keeps the input) */
static void
fuzz_fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz-mime: %s\n%.*s\n", what, 4096, detail ? detail : "");
    abort();
}

/* check_part - the invariants of PART (and below) in a message of SIZE octets */
static void
check_part(const MimePart *p, const guint8 *msg, guint64 size)
{
    if (!(p->header_start <= p->blank_start && p->blank_start <= p->body_start &&
          p->body_start <= p->end && p->end <= size))
        fuzz_fail("offsets out of order", NULL);
    if (p->depth >= MIME_DEPTH_MAX)
        fuzz_fail("too deep", NULL);
    guint64 lfs = 0, bare = 0;
    for (guint64 i = p->body_start; i < p->end; i++)
        if (msg[i] == '\n') {
            lfs++;
            bare += i == 0 || msg[i - 1] != '\r';
        }
    if (p->body_lines != lfs)
        fuzz_fail("line count", NULL);
    if (p->body_size != p->end - p->body_start + bare)
        fuzz_fail("body size", NULL);
    if (p->header && p->header_len > p->body_start - p->header_start)
        fuzz_fail("kept header longer than the header", NULL);
    if (p->header && memcmp(p->header, msg + p->header_start, p->header_len) != 0)
        fuzz_fail("kept header differs from the message", NULL);
    if (p->kind == MIME_KIND_MESSAGE &&
        (!p->children || p->children->next || p->children->header_start != p->body_start ||
         p->children->end != p->end || !p->children->is_message))
        fuzz_fail("message/rfc822 without its message", NULL);
    if (p->kind == MIME_KIND_BASIC && p->children)
        fuzz_fail("a leaf with children", NULL);
    guint64 after = p->body_start;
    for (const MimePart *c = p->children; c; c = c->next) {
        if (c->parent != p || c->depth != p->depth + 1)
            fuzz_fail("parent link", NULL);
        if (c->header_start < after || c->end > p->end)
            fuzz_fail("child outside its parent or before its sibling", NULL);
        after = c->end;
        check_part(c, msg, size);
    }
}

/* check_syntax - OUT is an IMAP parenthesised list of strings, literals, NIL and numbers */
static void
check_syntax(const GString *out)
{
    const char *s = out->str;
    gsize n = out->len, i = 0;
    int level = 0;
    while (i < n) {
        char c = s[i];
        if (c == '(') {
            level++;
            i++;
        } else if (c == ')') {
            if (--level < 0)
                fuzz_fail("unbalanced )", s);
            i++;
        } else if (c == ' ') {
            i++;
        } else if (c == '"') {
            for (i++; i < n && s[i] != '"'; i++) {
                guchar q = (guchar)s[i];
                if (q == '\r' || q == '\n' || q == 0 || q >= 0x80)
                    fuzz_fail("bad octet in a quoted string", s);
                if (q == '\\') {
                    if (i + 1 >= n || (s[i + 1] != '"' && s[i + 1] != '\\'))
                        fuzz_fail("bad escape", s);
                    i++;
                }
            }
            if (i >= n)
                fuzz_fail("unclosed quoted string", s);
            i++;
        } else if (c == '{') {
            char *end;
            unsigned long long len = strtoull(s + i + 1, &end, 10);
            if (*end != '}' || end[1] != '\r' || end[2] != '\n')
                fuzz_fail("bad literal", s);
            i = (gsize)(end + 3 - s);
            if (i + len > n)
                fuzz_fail("literal past the end", s);
            if (memchr(s + i, '\0', len))
                fuzz_fail("NUL in a literal", s);
            i += len;
        } else if (g_ascii_isdigit(c)) {
            while (i < n && g_ascii_isdigit(s[i]))
                i++;
        } else if (n - i >= 3 && memcmp(s + i, "NIL", 3) == 0) {
            i += 3;
        } else {
            fuzz_fail("unexpected octet", s + i);
        }
        if (level == 0 && i < n)
            fuzz_fail("text after the list", s);
    }
    if (level != 0)
        fuzz_fail("unbalanced (", s);
}

/* dump - the tree and its outputs as text, for comparing two parses */
static void
dump_part(GString *d, const MimePart *p)
{
    g_string_append_printf(d, "[%" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT
                           " %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT " %d %"
                           G_GSIZE_FORMAT "%d", p->header_start, p->blank_start, p->body_start,
                           p->end, p->body_lines, p->body_size, p->kind, p->header_len, p->header_cut);
    for (const MimePart *c = p->children; c; c = c->next)
        dump_part(d, c);
    g_string_append_c(d, ']');
}

/* check_ranges - RANGES lie in a message of SIZE octets, in order and apart */
static void
check_ranges(const GArray *r, guint64 size)
{
    guint64 after = 0;
    for (guint i = 0; i < r->len; i++) {
        const MimeRange *m = &g_array_index(r, MimeRange, i);
        if (m->len == 0 || m->start < after || m->start + m->len > size)
            fuzz_fail("bad range", NULL);
        after = m->start + m->len;
    }
}

/* check_section - look SPEC up in T */
static void
check_section(const MimeTree *t, const char *spec)
{
    GArray *r = g_array_new(FALSE, FALSE, sizeof(MimeRange));
    GError *error = NULL;
    if (mime_section_ranges(t, spec, r, &error)) {
        check_ranges(r, t->size);
        guint64 total = mime_ranges_size(r);
        mime_ranges_partial(r, total / 3, total / 2 + 1);
        check_ranges(r, t->size);
        if (mime_ranges_size(r) != MIN(total - total / 3, total / 2 + 1))
            fuzz_fail("partial size", spec);
    } else {
        if (!error || error->domain != MIME_ERROR)
            fuzz_fail("section failed without a MIME_ERROR", spec);
        g_error_free(error);
    }
    g_array_unref(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    MimeTree *whole = mime_parse(data, size);
    /* the same message in chunks */
    guint32 seed = 2166136261u;
    for (size_t i = 0; i < MIN(size, (size_t)16); i++)
        seed = (seed ^ data[i]) * 16777619u;
    MimeParser *p = mime_parser_new();
    for (size_t pos = 0; pos < size;) {
        seed = seed * 1103515245u + 12345u;
        size_t n = (seed >> 16) % 4 == 0 ? 1 : 1 + (seed >> 16) % 300;
        n = MIN(n, size - pos);
        mime_parser_feed(p, data + pos, n);
        pos += n;
    }
    MimeTree *chunked = mime_parser_finish(&p);

    if (whole->size != size || whole->parts > MIME_PARTS_MAX)
        fuzz_fail("tree size or part count", NULL);
    check_part(whole->root, data, size);

    GString *a = g_string_new(NULL), *b = g_string_new(NULL);
    MimeTree *trees[2] = { whole, chunked };
    GString *dumps[2] = { a, b };
    for (int k = 0; k < 2; k++) {
        GString *out = g_string_new(NULL);
        dump_part(dumps[k], trees[k]->root);
        mime_envelope(trees[k]->root, out);
        check_syntax(out);
        g_string_append_len(dumps[k], out->str, (gssize)out->len);
        for (int ext = 0; ext < 2; ext++) {
            g_string_truncate(out, 0);
            mime_bodystructure(trees[k]->root, ext, out);
            check_syntax(out);
            g_string_append_len(dumps[k], out->str, (gssize)out->len);
        }
        g_string_free(out, TRUE);
    }
    if (a->len != b->len || memcmp(a->str, b->str, a->len) != 0)
        fuzz_fail("chunked parse differs from the whole", b->str);
    g_string_free(a, TRUE);
    g_string_free(b, TRUE);

    static const char *const specs[] = { "", "HEADER", "TEXT", "1", "2", "1.1", "1.2", "2.1",
                                         "1.MIME", "2.MIME", "1.1.MIME", "1.HEADER", "2.TEXT",
                                         "1.1.1", "HEADER.FIELDS (From Subject)",
                                         "1.HEADER.FIELDS.NOT (To)", "2.HEADER.FIELDS (Date)" };
    for (size_t i = 0; i < G_N_ELEMENTS(specs); i++)
        check_section(whole, specs[i]);
    for (size_t i = 0; i + 1 < size; i++)
        if (data[i] == 0xff && data[i + 1] == 0xfe) {
            char *spec = g_strndup((const char *)data + i + 2, size - i - 2);
            check_section(whole, spec);
            g_free(spec);
            break;
        }
    mime_tree_free(&whole);
    mime_tree_free(&chunked);
    return 0;
}
