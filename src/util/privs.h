/*
 * privs.h - giving up root: servers bind their port and load the TLS key first, then become the
 * configured unprivileged user before reading a byte from a client.
 *
 * Rule (both servers, daemon and --inetd mode): started as root, a server must end up as
 * [server] user (and group); with no user configured, or one whose uid is 0, it refuses to run.
 * Started as any other user it stays that user.
 */
#ifndef CASSMAIL_PRIVS_H
#define CASSMAIL_PRIVS_H

#include <glib.h>

/* privs_drop - when running as root with USER set, become USER (and GROUP, or USER's primary
 * group) for good, and check that root cannot be regained. Not root: nothing to do. Running as
 * root with no USER, or with a USER of uid 0, is allowed only when ALLOW_ROOT (an error
 * otherwise). */
gboolean privs_drop(const char *user, const char *group, gboolean allow_root, GError **error);

#endif
