/*
 * text.c - shared parsers for addresses and base64 (see text.h).
 */
#include "util/text.h"

#include <string.h>

#include <arpa/inet.h>

const char *
text_hostport_parse(const char *text, guint default_port, TextHostPortFlags flags, char **host,
                    guint *port)
{
    gboolean listen = (flags & TEXT_HOSTPORT_LISTEN) != 0;
    const char *port_text = NULL;
    g_autofree char *h = NULL;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || (close[1] != ':' && (close[1] || !default_port)))
            return "expected [IPv6-ADDRESS]:PORT";
        h = g_strndup(text + 1, (gsize)(close - text - 1));
        struct in6_addr a6;
        if (listen && inet_pton(AF_INET6, h, &a6) != 1)
            return "not an IPv6 address";
        port_text = close[1] ? close + 2 : NULL;
    } else {
        const char *colon = strrchr(text, ':');
        if (!colon && !default_port)
            return "expected HOST:PORT";
        h = colon ? g_strndup(text, (gsize)(colon - text)) : g_strdup(text);
        port_text = colon ? colon + 1 : NULL;
        if (listen && strchr(h, ':'))
            return "an IPv6 address goes in brackets: [ADDRESS]:PORT";
        if (listen && (!*h || strcmp(h, "*") == 0))
            g_clear_pointer(&h, g_free);   /* every address */
        else if (listen && h[strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                       "0123456789.-")])
            return "bad host name";
    }
    if (h && !*h)
        return "expected HOST:PORT";
    guint64 n = default_port;
    if (port_text && !g_ascii_string_to_unsigned(port_text, 10, listen ? 0 : 1, 65535, &n, NULL))
        return listen ? "the port must be 0..65535" : "the port must be 1..65535";
    *host = g_steal_pointer(&h);
    *port = (guint)n;
    return NULL;
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
