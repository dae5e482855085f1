/*
 * mime-dump.c - print what the MIME parser (src/imap/mime.h) makes of each message file named on
 * the command line, as cassmail-imapd would answer FETCH (ENVELOPE BODYSTRUCTURE BODY):
 *
 *   * N FETCH (ENVELOPE (...) BODYSTRUCTURE (...) BODY (...))
 *
 * one line per file (literals inline), numbered from 1, the way Dovecot's imap prints the same
 * fetch; test_imap_mime.py compares the two. With --chunk N the file is fed N octets at a time.
 * With --section SPEC it prints instead what BODY[SPEC] returns (the octets of its ranges).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/mime.h"

int
main(int argc, char **argv)
{
    gsize chunk = 0;
    const char *section = NULL;
    int first = 1;
    while (argc > first + 1 && argv[first][0] == '-') {
        if (strcmp(argv[first], "--chunk") == 0)
            chunk = (gsize)strtoul(argv[first + 1], NULL, 10);
        else if (strcmp(argv[first], "--section") == 0)
            section = argv[first + 1];
        else
            break;
        first += 2;
    }
    for (int i = first; i < argc; i++) {
        gchar *data = NULL;
        gsize len = 0;
        GError *error = NULL;
        if (!g_file_get_contents(argv[i], &data, &len, &error)) {
            fprintf(stderr, "mime-dump: %s\n", error->message);
            g_error_free(error);
            return 1;
        }
        MimeParser *p = mime_parser_new();
        for (gsize pos = 0; pos < len;) {
            gsize n = chunk ? MIN(chunk, len - pos) : len - pos;
            mime_parser_feed(p, data + pos, n);
            pos += n;
        }
        MimeTree *t = mime_parser_finish(&p);
        GString *out = g_string_new(NULL);
        if (section) {
            GArray *r = g_array_new(FALSE, FALSE, sizeof(MimeRange));
            if (!mime_section_ranges(t, section, r, &error)) {
                fprintf(stderr, "mime-dump: %s\n", error->message);
                g_clear_error(&error);
            }
            for (guint k = 0; k < r->len; k++) {
                MimeRange *m = &g_array_index(r, MimeRange, k);
                fwrite(data + m->start, 1, (size_t)m->len, stdout);
            }
            g_array_unref(r);
            g_string_free(out, TRUE);
            mime_tree_free(&t);
            g_free(data);
            continue;
        }
        g_string_append_printf(out, "* %d FETCH (ENVELOPE ", i - first + 1);
        mime_envelope(t->root, out);
        g_string_append(out, " BODYSTRUCTURE ");
        mime_bodystructure(t->root, TRUE, out);
        g_string_append(out, " BODY ");
        mime_bodystructure(t->root, FALSE, out);
        g_string_append(out, ")\r\n");
        fwrite(out->str, 1, out->len, stdout);
        g_string_free(out, TRUE);
        mime_tree_free(&t);
        g_free(data);
    }
    return 0;
}
