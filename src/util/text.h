/*
 * text.h - small parsers several modules share: a "host:port" address (Cassandra endpoints, the
 * smarthost, listen addresses) and the check of strict base64 (RFC 4648 section 4).
 */
#ifndef CASSMAIL_TEXT_H
#define CASSMAIL_TEXT_H

#include <glib.h>

/* What text_hostport_parse takes besides "host:port". */
typedef enum {
    TEXT_HOSTPORT_LISTEN = 1 << 0,  /* a listen address: port 0 too (any free port); an empty or
                                     * "*" host is every address (*HOST NULL); an IPv6 address
                                     * only in brackets, and checked; a host name only of letters,
                                     * digits, '.' and '-' */
} TextHostPortFlags;

/* text_hostport_parse - "host:port", "[IPv6]:port", or (when DEFAULT_PORT is not 0) "host" and
 * "[IPv6]" alone, into *HOST (g_free) and *PORT; NULL when it is one of these, else what is
 * wrong with TEXT: it is none of them, its host is empty or its port is not a number from 1 (0
 * with TEXT_HOSTPORT_LISTEN) to 65535 */
const char *text_hostport_parse(const char *text, guint default_port, TextHostPortFlags flags,
                                char **host, guint *port);
/* text_hostport_split - the same without flags, TRUE when TEXT is one */
static inline gboolean
text_hostport_split(const char *text, guint default_port, char **host, guint *port)
{
    return !text_hostport_parse(text, default_port, 0, host, port);
}

/* text_base64_valid - whether the LEN characters at TEXT are whole quads of the base64 alphabet
 * with "=" only as the final padding (none at all is valid too) */
gboolean text_base64_valid(const char *text, gsize len);

#endif
