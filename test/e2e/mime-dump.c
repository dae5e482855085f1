/*
 * mime-dump.c - print what the MIME parser (src/imap/mime.h) makes of each message file named on
 * the command line, as cassmail-imapd would answer FETCH (ENVELOPE BODYSTRUCTURE BODY):
 *
 *   * N FETCH (ENVELOPE (...) BODYSTRUCTURE (...) BODY (...))
 *
 * one line per file (literals inline), numbered from 1, the way Dovecot's imap prints the same
 * fetch; test_imap_mime.py compares the two. With --chunk N the file is fed N octets at a time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/mime.h"

int
main(int argc, char **argv)
{
    gsize chunk = 0;
    int first = 1;
    if (argc > 2 && strcmp(argv[1], "--chunk") == 0) {
        chunk = (gsize)strtoul(argv[2], NULL, 10);
        first = 3;
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
