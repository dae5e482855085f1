/*
 * log.c - syslog or stderr, chosen once at start-up (see log.h).
 */
#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

static gboolean log_to_stderr = TRUE;
static gboolean log_debug = FALSE;
static const char *log_ident = "cassmail";

void
log_open(const char *ident, gboolean to_stderr)
{
    log_ident = ident;
    log_to_stderr = to_stderr;
    /* debug lines (state changes and the like) only when CASSMAIL_DEBUG is set */
    log_debug = g_getenv("CASSMAIL_DEBUG") != NULL;
    if (!to_stderr)
        openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void
log_msg(int priority, const char *fmt, ...)
{
    if (priority == LOG_DEBUG && !log_debug)
        return;
    va_list ap;
    va_start(ap, fmt);
    if (log_to_stderr) {
        g_autofree char *text = g_strdup_vprintf(fmt, ap);
        g_autoptr(GDateTime) now = g_date_time_new_now_local();
        g_autofree char *stamp = g_date_time_format(now, "%H:%M:%S.%f");
        stamp[12] = '\0';  /* milliseconds */
        fprintf(stderr, "%s %s[%ld]: %s\n", stamp, log_ident, (long)getpid(), text);
    } else {
        vsyslog(priority, fmt, ap);
    }
    va_end(ap);
}
