/*
 * text.h - small parsers several modules share: a "host:port" address and the check of strict
 * base64 (RFC 4648 section 4).
 */
#ifndef CASSMAIL_TEXT_H
#define CASSMAIL_TEXT_H

#include <glib.h>

/* text_hostport_split - "host:port", "[IPv6]:port", or (when DEFAULT_PORT is not 0) "host" and
 * "[IPv6]" alone, into *HOST (g_free) and *PORT; FALSE when TEXT is none of these, its host is
 * empty or its port is not a number from 1 to 65535 */
gboolean text_hostport_split(const char *text, guint default_port, char **host, guint *port);

/* text_base64_valid - whether the LEN characters at TEXT are whole quads of the base64 alphabet
 * with "=" only as the final padding (none at all is valid too) */
gboolean text_base64_valid(const char *text, gsize len);

#endif
