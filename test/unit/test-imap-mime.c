/*
 * test-imap-mime.c - the MIME parser of cassmail-imapd (src/imap/mime.h): ENVELOPE, BODY and
 * BODYSTRUCTURE of real-world shaped messages, octet for octet; the same tree whatever the
 * chunks the message arrives in (whole, one octet at a time, random cuts); BODY[section] ranges;
 * the limits that bound memory; section syntax.
 *
 * Each golden case is a message of the fuzzing seed corpus, test/fuzz/corpus/mime/NAME, and what
 * the parser answers for it, test/unit/data/mime/NAME.ref: "ENVELOPE (...)", "BODYSTRUCTURE
 * (...)" and "BODY (...)", each ended by a LF (a literal's CRLF inside is kept as the answer has
 * it). Every NAME.ref is a test case of its own, /imap-mime/envelope-and-bodystructure/NAME;
 * adding a case is adding those two files. The expected strings are what Dovecot's imap answers
 * for the same messages (test/e2e/test_imap_mime.py checks that against a private Dovecot), but
 * for the deliberate differences listed in src/imap/mime.c, which appear here as this parser's
 * answer.
 */
#include <string.h>

#include "imap/mime.h"

/* The Makefile gives the tree's top as CASSMAIL_TOP, so the data is found whatever the working
 * directory the binary runs in. */
#define CORPUS CASSMAIL_TOP "/test/fuzz/corpus/mime"
#define REFS CASSMAIL_TOP "/test/unit/data/mime"

static GHashTable *messages;   /* corpus name -> GBytes, each read once */

/* read_file - the contents of DIR/NAME (NUL-terminated after them); *LEN its length if LEN */
static char *
read_file(const char *dir, const char *name, gsize *len)
{
    char *path = g_build_filename(dir, name, NULL);
    char *text = NULL;
    GError *error = NULL;
    g_file_get_contents(path, &text, len, &error);
    g_assert_no_error(error);
    g_free(path);
    return text;
}

/* message - the corpus message NAME, NUL-terminated after its octets; *LEN its length if LEN */
static const char *
message(const char *name, gsize *len)
{
    GBytes *b = g_hash_table_lookup(messages, name);
    if (!b) {
        gsize n;
        char *text = read_file(CORPUS, name, &n);
        b = g_bytes_new_take(text, n);
        g_hash_table_insert(messages, g_strdup(name), b);
    }
    gsize n;
    const char *data = g_bytes_get_data(b, &n);
    if (len)
        *len = n;
    return data;
}

/* ref - the expected answers for the corpus message NAME (g_free it) */
static char *
ref(const char *name)
{
    char *file = g_strconcat(name, ".ref", NULL);
    char *text = read_file(REFS, file, NULL);
    g_free(file);
    return text;
}

/* answers - what the parser answers for T, laid out as a .ref file */
static char *
answers(const MimeTree *t)
{
    GString *out = g_string_new("ENVELOPE ");
    mime_envelope(t->root, out);
    for (int extended = 1; extended >= 0; extended--) {   /* BODYSTRUCTURE, then BODY */
        g_string_append(out, extended ? "\nBODYSTRUCTURE " : "\nBODY ");
        mime_bodystructure(t->root, extended, out);
    }
    g_string_append_c(out, '\n');
    return g_string_free(out, FALSE);
}

/* dump_part - everything the tree says about PART and below, for comparing two trees */
static void
dump_part(GString *out, const MimePart *part)
{
    g_string_append_printf(out, "[%u k%d m%d %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT
                           " %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT " l%" G_GUINT64_FORMAT
                           " s%" G_GUINT64_FORMAT " h%" G_GSIZE_FORMAT "%s ",
                           part->depth, part->kind, part->is_message, part->header_start,
                           part->blank_start, part->body_start, part->end, part->body_lines,
                           part->body_size, part->header_len, part->header_cut ? " cut" : "");
    if (part->header)
        g_string_append_len(out, part->header, (gssize)part->header_len);
    for (const MimePart *c = part->children; c; c = c->next)
        dump_part(out, c);
    g_string_append_c(out, ']');
}

/* dump - a tree as text: structure, offsets, ENVELOPE, BODYSTRUCTURE */
static char *
dump(const MimeTree *t)
{
    GString *out = g_string_new(NULL);
    g_string_append_printf(out, "size %" G_GUINT64_FORMAT " parts %u limited %d\n", t->size,
                           t->parts, t->limited);
    dump_part(out, t->root);
    g_string_append_c(out, '\n');
    mime_envelope(t->root, out);
    g_string_append_c(out, '\n');
    mime_bodystructure(t->root, TRUE, out);
    return g_string_free(out, FALSE);
}

/* parse_chunked - MSG fed in pieces of CHUNK octets (0: random sizes 1..64) */
static MimeTree *
parse_chunked(const char *msg, gsize len, gsize chunk)
{
    MimeParser *p = mime_parser_new();
    for (gsize pos = 0; pos < len;) {
        gsize n = chunk ? chunk : (gsize)g_test_rand_int_range(1, 65);
        n = MIN(n, len - pos);
        mime_parser_feed(p, msg + pos, n);
        pos += n;
    }
    return mime_parser_finish(&p);
}

/* test_golden - ENVELOPE, BODYSTRUCTURE and BODY of the corpus message NAME are its .ref */
static void
test_golden(gconstpointer name)
{
    gsize len;
    const char *msg = message(name, &len);
    MimeTree *t = mime_parse(msg, len);
    g_assert_cmpuint(t->size, ==, len);
    char *got = answers(t);
    char *want = ref(name);
    g_assert_cmpstr(got, ==, want);
    g_free(got);
    g_free(want);
    mime_tree_free(&t);
    g_assert_null(t);
}

/* test_any_chunking - the corpus message NAME gives the same tree whatever the chunks */
static void
test_any_chunking(gconstpointer name)
{
    gsize len;
    const char *msg = message(name, &len);
    MimeTree *whole = mime_parse(msg, len);
    char *want = dump(whole);
    mime_tree_free(&whole);
    gsize chunks[] = { 1, 2, 3, 7, 64, 0, 0, 0, 0, 0 };
    for (gsize k = 0; k < G_N_ELEMENTS(chunks); k++) {
        MimeTree *t = parse_chunked(msg, len, chunks[k]);
        char *got = dump(t);
        if (strcmp(got, want) != 0)
            g_test_message("chunks of %" G_GSIZE_FORMAT, chunks[k]);
        g_assert_cmpstr(got, ==, want);
        g_free(got);
        mime_tree_free(&t);
    }
    g_free(want);
}

/* section - the octets BODY[SPEC] of MSG returns; NULL with the error code in *CODE */
static char *
section(const char *msg, const char *spec, int *code)
{
    MimeTree *t = mime_parse(msg, strlen(msg));
    GArray *r = g_array_new(FALSE, FALSE, sizeof(MimeRange));
    GError *error = NULL;
    char *res = NULL;
    *code = -1;
    if (mime_section_ranges(t, spec, r, &error)) {
        GString *s = g_string_new(NULL);
        for (guint i = 0; i < r->len; i++) {
            MimeRange *m = &g_array_index(r, MimeRange, i);
            g_assert_cmpuint(m->start + m->len, <=, t->size);
            g_string_append_len(s, msg + m->start, (gssize)m->len);
        }
        g_assert_cmpuint(mime_ranges_size(r), ==, s->len);
        res = g_string_free(s, FALSE);
    } else {
        g_assert_error(error, MIME_ERROR, error->code);
        *code = error->code;
        g_error_free(error);
    }
    g_array_unref(r);
    mime_tree_free(&t);
    return res;
}

/* assert_section - BODY[SPEC] of MSG is WANT */
static void
assert_section(const char *msg, const char *spec, const char *want)
{
    int code;
    char *got = section(msg, spec, &code);
    if (!got)
        g_test_message("BODY[%s]: error %d", spec, code);
    g_assert_nonnull(got);
    g_assert_cmpstr(got, ==, want);
    g_free(got);
}

/* assert_no_section - BODY[SPEC] of MSG is error CODE */
static void
assert_no_section(const char *msg, const char *spec, int code)
{
    int got_code;
    char *got = section(msg, spec, &got_code);
    if (got)
        g_test_message("BODY[%s] = \"%s\"", spec, got);
    g_assert_null(got);
    g_assert_cmpint(got_code, ==, code);
}

static void
test_sections_of_nested_multipart(void)
{
    const char *m = message("mixed-alternative-attachment", NULL);
    assert_section(m, "", m);
    assert_section(m, "1.1", "Hello =E2=80=94 the report is attached.");
    assert_section(m, "1.1.1", "Hello =E2=80=94 the report is attached.");   /* a leaf, once */
    assert_no_section(m, "1.1.1.1", MIME_ERROR_NO_PART);
    assert_section(m, "1.2", "<p>Hello, the report is attached.</p>");
    assert_section(m, "1.2.MIME", "Content-Type: text/html; charset=\"utf-8\"\r\n"
                                  "Content-Transfer-Encoding: 7bit\r\n\r\n");
    assert_section(m, "2", "JVBERi0xLjQKJcfs");
    assert_section(m, "1", "--inner\r\nContent-Type: text/plain; charset=UTF-8\r\n"
                           "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
                           "Hello =E2=80=94 the report is attached.\r\n--inner\r\n"
                           "Content-Type: text/html; charset=\"utf-8\"\r\n"
                           "Content-Transfer-Encoding: 7bit\r\n\r\n"
                           "<p>Hello, the report is attached.</p>\r\n--inner--");
    assert_section(m, "header.fields (SUBJECT cc)",
                   "Cc: team: a@example.org, b@example.org;\r\nSubject: Report with attachment\r\n\r\n");
    assert_section(m, "HEADER.FIELDS.NOT (Subject Cc Content-Type MIME-Version From To Date Message-ID)",
                   "In-Reply-To: <1@example.org>\r\n\r\n");
    assert_section(m, "HEADER.FIELDS (\"In-Reply-To\" X-None)", "In-Reply-To: <1@example.org>\r\n\r\n");
    const char *text = strstr(m, "\r\n\r\n") + 4;
    assert_section(m, "TEXT", text);
    char *header = g_strndup(m, (gsize)(text - m));
    assert_section(m, "HEADER", header);
    g_free(header);
    assert_no_section(m, "3", MIME_ERROR_NO_PART);
    assert_no_section(m, "2.HEADER", MIME_ERROR_NO_PART);   /* not a message/rfc822 */
}

static void
test_sections_of_forwarded_message(void)
{
    const char *m = message("forwarded-rfc822", NULL);
    assert_section(m, "1", "See below.\r\n");
    assert_section(m, "2.MIME", "Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n");
    assert_section(m, "2.HEADER.FIELDS (Subject)", "Subject: Lunch\r\n\r\n");
    assert_section(m, "2.1", "noon?");
    assert_section(m, "2.2", "<b>noon?</b>");
    assert_section(m, "2.2.MIME", "Content-Type: text/html\r\n\r\n");
    const char *inner = strstr(m, "From: Anne");
    const char *inner_text = strstr(inner, "\r\n\r\n") + 4;
    char *h = g_strndup(inner, (gsize)(inner_text - inner));
    assert_section(m, "2.HEADER", h);
    g_free(h);
    /* the body of the message/rfc822 part ends before the CRLF of the last delimiter */
    const char *end = strstr(m, "\r\n--b1--");
    char *body = g_strndup(inner, (gsize)(end - inner));
    assert_section(m, "2", body);
    char *text = g_strndup(inner_text, (gsize)(end - inner_text));
    assert_section(m, "2.TEXT", text);
    g_free(body);
    g_free(text);

    /* a single-part message whose body is a message/rfc822 */
    const char *r = message("rfc822-single", NULL);
    assert_section(r, "1", strstr(r, "From: b@"));
    assert_section(r, "1.1", "inner body\r\ntwo lines\r\n");
    assert_section(r, "1.HEADER", "From: b@example.org\r\nSubject: inner\r\n\r\n");
    assert_section(r, "1.TEXT", "inner body\r\ntwo lines\r\n");
    assert_no_section(r, "1.1.1", MIME_ERROR_NO_PART);
}

static void
test_sections_of_odd_shapes(void)
{
    /* preamble and epilogue belong to no part */
    const char *preamble = message("preamble-epilogue", NULL);
    assert_section(preamble, "1", "part one, no header");
    assert_section(preamble, "1.MIME", "\r\n");
    assert_section(preamble, "2", "part two");
    /* an empty body; a header with no blank line (HEADER.FIELDS serves only the message's
     * octets: there is no blank line to add) */
    const char *empty = message("empty-body", NULL);
    assert_section(empty, "TEXT", "");
    assert_section(empty, "1", "");
    const char *header_only = message("header-only", NULL);
    assert_section(header_only, "HEADER", header_only);
    assert_section(header_only, "TEXT", "");
    assert_section(header_only, "HEADER.FIELDS (Subject)", "Subject: header only, no blank line");
    /* a digest's parts are messages by default */
    const char *digest = message("digest", NULL);
    assert_section(digest, "1.HEADER", "From: a@example.org\r\nSubject: first\r\n\r\n");
    assert_section(digest, "3.1", "two");
    assert_no_section(digest, "2.HEADER", MIME_ERROR_NO_PART);
    /* bare LF: ranges are stored octets */
    const char *bare_lf = message("bare-lf", NULL);
    assert_section(bare_lf, "1", "line");
    assert_section(bare_lf, "1.MIME", "Content-Type: text/plain\n\n");
    /* an unended multipart: the last part runs to the end */
    assert_section(message("unterminated-multipart", NULL), "2", "second, then the message ends");
    /* a blank line right before a delimiter is the delimiter's: not in the header */
    const char *blank = message("blank-line-before-delimiter", NULL);
    assert_section(blank, "1.MIME", "Content-Type: text/plain\r\n");
    assert_section(blank, "2.MIME", "Content-Type: message/rfc822\r\n\r\n");
    assert_section(blank, "2.HEADER", "From: x@y\r\n");
    assert_section(blank, "2", "From: x@y\r\n");
    /* folded fields come whole */
    assert_section(message("encoded-words", NULL), "HEADER.FIELDS (SUBJECT)",
                   "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= and\r\n =?UTF-8?Q?more?=\r\n\r\n");
}

static void
test_section_syntax(void)
{
    const char *m = message("mixed-alternative-attachment", NULL);
    const char *bad[] = { "0", "1.", ".1", "01", "1..2", "MIME", "HEADER.FIELDS", "HEADER.FIELDS ()",
                          "HEADER.FIELDS (a", "HEADER.FIELDS (a) x", "HEADER.FIELDS(a)", "TEXT.1",
                          "1.BODY", "x", "1.2.MIME.TEXT", "99999999999999999999",
                          "HEADER.FIELDS (\"a)", "HEADER.FIELDS.NOT", "1 ", " 1" };
    for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_test_message("%s", bad[i]);
        assert_no_section(m, bad[i], MIME_ERROR_SECTION);
    }
    assert_no_section(m, "4.1", MIME_ERROR_NO_PART);
    assert_no_section(m, "4.MIME", MIME_ERROR_NO_PART);
    const MimeTree *t = NULL;
    MimeTree *owned = mime_parse(m, strlen(m));
    t = owned;
    g_assert_true(mime_part_find(t, "") == t->root);
    g_assert_true(mime_part_find(t, "1.2") == t->root->children->children->next);
    g_assert_null(mime_part_find(t, "1.3"));
    g_assert_null(mime_part_find(t, "1.x"));
    mime_tree_free(&owned);
}

static void
test_partial_cuts_the_ranges(void)
{
    const char *m = message("mixed-alternative-attachment", NULL);
    MimeTree *t = mime_parse(m, strlen(m));
    GArray *r = g_array_new(FALSE, FALSE, sizeof(MimeRange));
    g_assert_true(mime_section_ranges(t, "HEADER.FIELDS (Cc Subject From)", r, NULL));
    GString *all = g_string_new(NULL);
    for (guint i = 0; i < r->len; i++)
        g_string_append_len(all, m + g_array_index(r, MimeRange, i).start,
                            (gssize)g_array_index(r, MimeRange, i).len);
    guint64 total = mime_ranges_size(r);
    g_assert_cmpuint(r->len, >, 1);
    for (guint64 origin = 0; origin <= total + 1; origin += 5)
        for (guint64 count = 0; count <= total + 2; count += 7) {
            GArray *c = g_array_copy(r);
            mime_ranges_partial(c, origin, count);
            GString *got = g_string_new(NULL);
            for (guint i = 0; i < c->len; i++)
                g_string_append_len(got, m + g_array_index(c, MimeRange, i).start,
                                    (gssize)g_array_index(c, MimeRange, i).len);
            guint64 want_len = origin >= total ? 0 : MIN(count, total - origin);
            g_assert_cmpuint(got->len, ==, want_len);
            g_assert_true(memcmp(got->str, all->str + MIN(origin, total), want_len) == 0);
            g_string_free(got, TRUE);
            g_array_unref(c);
        }
    mime_ranges_partial(r, 3, G_MAXUINT64);
    g_assert_cmpuint(mime_ranges_size(r), ==, total - 3);
    g_string_free(all, TRUE);
    g_array_unref(r);
    mime_tree_free(&t);
}

static void
test_header_done_after_the_blank_line(void)
{
    const char *m = message("forwarded-rfc822", NULL);
    const char *body = strstr(m, "\r\n\r\n") + 4;
    MimeParser *p = mime_parser_new();
    mime_parser_feed(p, m, (gsize)(body - m) - 1);
    g_assert_false(mime_parser_header_done(p));
    mime_parser_feed(p, body - 1, 1);
    g_assert_true(mime_parser_header_done(p));
    /* stopping there gives the ENVELOPE all the same */
    MimeTree *t = mime_parser_finish(&p);
    g_assert_null(p);
    char *got = answers(t);
    char *want = ref("forwarded-rfc822");
    got[strcspn(got, "\n")] = 0;
    want[strcspn(want, "\n")] = 0;
    g_assert_cmpstr(got, ==, want);
    g_free(got);
    g_free(want);
    mime_tree_free(&t);
    p = mime_parser_new();
    mime_parser_feed(p, "Subject: x\r\n", 12);
    mime_parser_free(&p);
    g_assert_null(p);
}

/* nested - a message nesting DEPTH multiparts, the innermost holding one text part */
static GString *
nested(guint depth)
{
    GString *m = g_string_new("Subject: deep\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n");
    for (guint i = 1; i < depth; i++)
        g_string_append_printf(m, "--b%u\r\nContent-Type: multipart/mixed; boundary=b%u\r\n\r\n",
                               i - 1, i);
    g_string_append_printf(m, "--b%u\r\n\r\ntext\r\n", depth - 1);
    for (guint i = depth; i-- > 0;)
        g_string_append_printf(m, "--b%u--\r\n", i);
    return m;
}

static void
test_depth_limit_makes_the_rest_opaque(void)
{
    GString *m = nested(MIME_DEPTH_MAX + 50);
    MimeTree *t = mime_parse(m->str, m->len);
    g_assert_true(t->limited);
    guint depth = 0;
    const MimePart *p = t->root;
    while (p->children) {
        p = p->children;
        depth++;
    }
    g_assert_cmpuint(depth, <, MIME_DEPTH_MAX);
    g_assert_cmpuint(p->end, <=, t->size);
    GString *out = g_string_new(NULL);
    mime_bodystructure(t->root, TRUE, out);
    /* balanced, and the innermost multipart shows one empty part */
    int level = 0;
    for (gsize i = 0; i < out->len; i++) {
        level += out->str[i] == '(' ? 1 : out->str[i] == ')' ? -1 : 0;
        g_assert_cmpint(level, >=, 0);
    }
    g_assert_cmpint(level, ==, 0);
    g_assert_nonnull(strstr(out->str, "\"7bit\" 0 0 NIL NIL NIL NIL)"));
    g_string_free(out, TRUE);
    mime_tree_free(&t);
    g_string_free(m, TRUE);

    /* just under the limit everything is parsed */
    m = nested(MIME_DEPTH_MAX - 2);
    t = mime_parse(m->str, m->len);
    g_assert_false(t->limited);
    g_assert_cmpuint(t->parts, ==, MIME_DEPTH_MAX - 1);
    mime_tree_free(&t);
    g_string_free(m, TRUE);
}

static void
test_parts_limit_makes_the_rest_opaque(void)
{
    GString *m = g_string_new("Subject: many\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n");
    for (guint i = 0; i < MIME_PARTS_MAX + 100; i++)
        g_string_append_printf(m, "--m\r\n\r\n%u\r\n", i);
    g_string_append(m, "--m--\r\n");
    MimeTree *t = mime_parse(m->str, m->len);
    g_assert_true(t->limited);
    g_assert_cmpuint(t->parts, ==, MIME_PARTS_MAX);
    /* the last part kept runs to the end of the message */
    const MimePart *last = t->root->children;
    guint n = 1;
    while (last->next) {
        last = last->next;
        n++;
    }
    g_assert_cmpuint(n, ==, MIME_PARTS_MAX - 1);
    g_assert_cmpuint(last->end, ==, m->len);
    g_assert_cmpuint(t->root->end, ==, m->len);
    mime_tree_free(&t);
    g_string_free(m, TRUE);
}

static void
test_header_keep_limit(void)
{
    GString *m = g_string_new("Subject: big header\r\nFrom: a@example.org\r\n");
    while (m->len < MIME_HEADER_KEEP + 1000)
        g_string_append(m, "X-Filler: 0123456789012345678901234567890123456789012345678901234567890\r\n");
    g_string_append(m, "To: late@example.org\r\n\r\nbody\r\n");
    MimeTree *t = parse_chunked(m->str, m->len, 4096);
    g_assert_true(t->limited);
    g_assert_true(t->root->header_cut);
    g_assert_cmpuint(t->root->header_len, ==, MIME_HEADER_KEEP);
    g_assert_cmpuint(t->root->body_start, ==, m->len - 6);
    GString *out = g_string_new(NULL);
    mime_envelope(t->root, out);
    /* fields in the kept part are seen, the one past it is not */
    g_assert_cmpstr(out->str, ==, "(NIL \"big header\" ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" "
                    "\"example.org\")) ((NIL NIL \"a\" \"example.org\")) NIL NIL NIL NIL NIL)");
    g_string_free(out, TRUE);
    mime_tree_free(&t);
    g_string_free(m, TRUE);
}

static void
test_long_boundary_and_long_lines(void)
{
    /* a boundary over MIME_BOUNDARY_MAX: a multipart with no parts */
    GString *b = g_string_new(NULL);
    for (guint i = 0; i < MIME_BOUNDARY_MAX + 1; i++)
        g_string_append_c(b, 'x');
    GString *m = g_string_new(NULL);
    g_string_append_printf(m, "Content-Type: multipart/mixed; boundary=%s\r\n\r\n--%s\r\n\r\nx\r\n--%s--\r\n",
                           b->str, b->str, b->str);
    MimeTree *t = mime_parse(m->str, m->len);
    g_assert_cmpint(t->root->kind, ==, MIME_KIND_MULTIPART);
    g_assert_null(t->root->children);
    mime_tree_free(&t);
    /* one the longest allowed works, also with lines longer than what the parser holds */
    g_string_truncate(b, MIME_BOUNDARY_MAX);
    g_string_printf(m, "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n--%s\r\n\r\n", b->str, b->str);
    for (guint i = 0; i < 5000; i++)
        g_string_append_c(m, i % 2 ? '-' : 'y');
    g_string_append_printf(m, "\r\n--%sxyz\r\n--%s--\r\n", b->str, b->str);
    t = parse_chunked(m->str, m->len, 0);
    g_assert_nonnull(t->root->children);
    g_assert_nonnull(t->root->children->next);   /* "--bxyz" is a delimiter (prefix match) */
    g_assert_null(t->root->children->next->next);
    g_assert_cmpuint(t->root->children->body_size, ==, 5000);
    mime_tree_free(&t);
    g_string_free(b, TRUE);
    g_string_free(m, TRUE);
}

static void
test_large_message_in_megabyte_parts(void)
{
    /* 50 MiB: a text part and a base64 attachment, fed as the store hands it out (1 MiB parts);
     * only the headers are kept */
    const gsize total = 50u << 20;
    GString *head = g_string_new("From: a@example.org\r\nSubject: big\r\n"
                                 "Content-Type: multipart/mixed; boundary=big\r\n\r\n"
                                 "--big\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
                                 "--big\r\nContent-Type: application/octet-stream\r\n"
                                 "Content-Transfer-Encoding: base64\r\n\r\n");
    const char *tail = "\r\n--big--\r\n";
    char line[78];
    memset(line, 'A', 76);
    line[76] = '\r';
    line[77] = '\n';
    gsize body = total - head->len - strlen(tail);
    body -= body % 78;
    guint64 lines = body / 78;
    MimeParser *p = mime_parser_new();
    mime_parser_feed(p, head->str, head->len);
    char *chunk = g_malloc(1u << 20);
    for (gsize i = 0; i < (1u << 20); i++)
        chunk[i] = line[i % 78];
    gsize fed = 0;
    while (fed < body) {
        gsize n = MIN((gsize)(1u << 20) - (gsize)(1u << 20) % 78, body - fed);
        mime_parser_feed(p, chunk, n);
        fed += n;
    }
    mime_parser_feed(p, tail, strlen(tail));
    MimeTree *t = mime_parser_finish(&p);
    const MimePart *att = t->root->children->next;
    /* the CRLF before the delimiter is the delimiter's */
    g_assert_cmpuint(att->body_size, ==, body + 2 - 2);
    g_assert_cmpuint(att->body_lines, ==, lines);   /* its last line end is the delimiter's */
    g_assert_cmpuint(t->size, ==, head->len + body + strlen(tail));
    g_assert_null(att->header);   /* a MIME part's header is not kept once parsed */
    g_free(chunk);
    g_string_free(head, TRUE);
    mime_tree_free(&t);
}

static void
test_strings_quoted_or_literal(void)
{
    GString *out = g_string_new(NULL);
    mime_append_nstring(out, NULL, 0);
    g_string_append_c(out, ' ');
    mime_append_nstring(out, "a \"b\" \\c", 8);
    g_string_append_c(out, ' ');
    mime_append_nstring(out, "", 0);
    g_string_append_c(out, ' ');
    mime_append_nstring(out, "J\xc3\xb6rg", 5);
    g_string_append_c(out, ' ');
    mime_append_nstring(out, "a\r\nb", 4);
    g_assert_cmpstr(out->str, ==, "NIL \"a \\\"b\\\" \\\\c\" \"\" {5}\r\nJ\xc3\xb6rg {4}\r\na\r\nb");
    g_string_truncate(out, 0);
    mime_append_nstring(out, "a\0b", 3);
    g_assert_cmpmem(out->str, out->len, "{3}\r\na\x80" "b", 8);
    g_string_free(out, TRUE);
}

/* sort_names - g_ptr_array_sort's order of two names */
static int
sort_names(const char *const *a, const char *const *b)
{
    return strcmp(*a, *b);
}

/* test_golden_cases_are_found - the .ref files were read (else no golden case would run) */
static void
test_golden_cases_are_found(gconstpointer names)
{
    g_assert_cmpuint(((const GPtrArray *)names)->len, >, 0);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    messages = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_bytes_unref);
    /* a golden case for each .ref, in name order; none at all would be a data folder not found */
    GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
    GDir *dir = g_dir_open(REFS, 0, NULL);
    for (const char *f; dir && (f = g_dir_read_name(dir));)
        if (g_str_has_suffix(f, ".ref"))
            g_ptr_array_add(names, g_strndup(f, strlen(f) - 4));
    if (dir)
        g_dir_close(dir);
    g_ptr_array_sort(names, (GCompareFunc)sort_names);
    g_test_add_data_func("/imap-mime/envelope-and-bodystructure-cases-are-found", names, test_golden_cases_are_found);
    for (guint i = 0; i < names->len; i++) {
        const char *name = g_ptr_array_index(names, i);
        char *path = g_strconcat("/imap-mime/envelope-and-bodystructure/", name, NULL);
        g_test_add_data_func(path, name, test_golden);
        g_free(path);
        path = g_strconcat("/imap-mime/any-chunking-gives-the-same-tree/", name, NULL);
        g_test_add_data_func(path, name, test_any_chunking);
        g_free(path);
    }
    g_test_add_func("/imap-mime/sections-of-nested-multipart", test_sections_of_nested_multipart);
    g_test_add_func("/imap-mime/sections-of-forwarded-message", test_sections_of_forwarded_message);
    g_test_add_func("/imap-mime/sections-of-odd-shapes", test_sections_of_odd_shapes);
    g_test_add_func("/imap-mime/section-syntax", test_section_syntax);
    g_test_add_func("/imap-mime/partial-cuts-the-ranges", test_partial_cuts_the_ranges);
    g_test_add_func("/imap-mime/header-done-after-the-blank-line", test_header_done_after_the_blank_line);
    g_test_add_func("/imap-mime/depth-limit-makes-the-rest-opaque", test_depth_limit_makes_the_rest_opaque);
    g_test_add_func("/imap-mime/parts-limit-makes-the-rest-opaque", test_parts_limit_makes_the_rest_opaque);
    g_test_add_func("/imap-mime/header-keep-limit", test_header_keep_limit);
    g_test_add_func("/imap-mime/long-boundary-and-long-lines", test_long_boundary_and_long_lines);
    g_test_add_func("/imap-mime/large-message-in-megabyte-parts", test_large_message_in_megabyte_parts);
    g_test_add_func("/imap-mime/strings-quoted-or-literal", test_strings_quoted_or_literal);
    int rc = g_test_run();
    g_ptr_array_unref(names);
    g_hash_table_unref(messages);
    return rc;
}
