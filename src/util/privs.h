/*
 * privs.h - giving up root: servers bind their port (and load keys) first, then become the
 * configured unprivileged user before reading a byte from a client.
 */
#ifndef CASSMAIL_PRIVS_H
#define CASSMAIL_PRIVS_H

#include <glib.h>

/* privs_drop - when running as root with USER set, become USER (and GROUP, or USER's primary
 * group) for good, and check that root cannot be regained. Not root, or no USER: nothing to do.
 * Running as root with no USER is allowed only when ALLOW_ROOT (an error otherwise). */
gboolean privs_drop(const char *user, const char *group, gboolean allow_root, GError **error);

#endif
