/*
 * text.c - shared parsers for addresses and base64 (see text.h).
 */
#include "util/text.h"

#include <string.h>

gboolean
text_hostport_split(const char *text, guint default_port, char **host, guint *port)
{
    const char *port_text = NULL;
    g_autofree char *h = NULL;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || (close[1] && close[1] != ':'))
            return FALSE;
        h = g_strndup(text + 1, (gsize)(close - text - 1));
        port_text = close[1] ? close + 2 : NULL;
    } else {
        const char *colon = strrchr(text, ':');
        h = colon ? g_strndup(text, (gsize)(colon - text)) : g_strdup(text);
        port_text = colon ? colon + 1 : NULL;
    }
    guint64 n = default_port;
    if (!*h || (!port_text && !default_port) ||
        (port_text && !g_ascii_string_to_unsigned(port_text, 10, 1, 65535, &n, NULL)))
        return FALSE;
    *host = g_steal_pointer(&h);
    *port = (guint)n;
    return TRUE;
}

gboolean
text_base64_valid(const char *text, gsize len)
{
    if (len % 4 != 0)
        return FALSE;
    for (gsize i = 0; i < len; i++) {
        gboolean pad_ok = text[i] == '=' && i + 2 >= len && (i + 1 == len || text[i + 1] == '=');
        if (!(g_ascii_isalnum(text[i]) || text[i] == '+' || text[i] == '/' || pad_ok))
            return FALSE;
    }
    return TRUE;
}
