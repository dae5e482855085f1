/*
 * privs.c - drop root for good (see privs.h).
 */
#include "util/privs.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

gboolean
privs_drop(const char *user, const char *group, gboolean allow_root, GError **error)
{
    if (geteuid() != 0)
        return TRUE;
    if (!user || !*user) {
        if (allow_root)
            return TRUE;
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_PERM,
                    "refusing to serve clients as root: set [server] user in the configuration");
        return FALSE;
    }
    struct passwd *pw = getpwnam(user);
    if (!pw) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_NOENT, "[server] user %s: no such user", user);
        return FALSE;
    }
    gid_t gid = pw->pw_gid;
    if (group && *group) {
        struct group *gr = getgrnam(group);
        if (!gr) {
            g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_NOENT, "[server] group %s: no such group", group);
            return FALSE;
        }
        gid = gr->gr_gid;
    }
    if (setgroups(1, &gid) != 0 || setgid(gid) != 0 || setuid(pw->pw_uid) != 0) {
        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno), "cannot become user %s: %s",
                    user, g_strerror(errno));
        return FALSE;
    }
    if (pw->pw_uid != 0 && (setuid(0) == 0 || geteuid() == 0)) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_PERM, "still able to regain root after becoming %s", user);
        return FALSE;
    }
    return TRUE;
}
