/*
 * privs.c - drop root for good (see privs.h).
 *
 * Order matters: supplementary groups, then the gid, then the uid (once the uid is gone the
 * others can no longer be changed). setgid/setuid as root set the real, effective and saved ids,
 * so nothing is left to regain; the final check proves it.
 */
#include "util/privs.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

/* privs_root_refused - the error for a server that would serve clients as root */
static gboolean
privs_root_refused(GError **error, const char *why)
{
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_PERM,
                "refusing to serve clients as root: %s (set [server] user to an unprivileged user)",
                why);
    return FALSE;
}

gboolean
privs_drop(const char *user, const char *group, gboolean allow_root, GError **error)
{
    if (geteuid() != 0 && getuid() != 0)
        return TRUE;
    if (!user || !*user)
        return allow_root ? TRUE : privs_root_refused(error, "[server] user is not set");
    struct passwd *pw = getpwnam(user);
    if (!pw) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_NOENT, "[server] user %s: no such user", user);
        return FALSE;
    }
    if (pw->pw_uid == 0 && !allow_root)
        return privs_root_refused(error, "[server] user has uid 0");
    uid_t uid = pw->pw_uid;
    gid_t gid = pw->pw_gid;
    if (group && *group) {
        struct group *gr = getgrnam(group);
        if (!gr) {
            g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_NOENT, "[server] group %s: no such group", group);
            return FALSE;
        }
        gid = gr->gr_gid;
    }
    if (setgroups(1, &gid) != 0 || setgid(gid) != 0 || setuid(uid) != 0) {
        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno), "cannot become user %s: %s",
                    user, g_strerror(errno));
        return FALSE;
    }
    if (uid != 0 && (setuid(0) == 0 || geteuid() == 0 || getuid() == 0 || getegid() != gid)) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_PERM, "privileges not fully dropped after becoming %s", user);
        return FALSE;
    }
    return TRUE;
}
