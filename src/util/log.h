/*
 * log.h - one logging call for every CassMail program: syslog (facility mail) in production,
 * standard error in the foreground (-f) and in tests. LOG_DEBUG lines appear only when the
 * environment has CASSMAIL_DEBUG set.
 */
#ifndef CASSMAIL_LOG_H
#define CASSMAIL_LOG_H

#include <glib.h>
#include <syslog.h>

/* log_open - IDENT names the program; TO_STDERR sends lines to stderr instead of syslog */
void log_open(const char *ident, gboolean to_stderr);
void log_msg(int priority, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_err(...)  log_msg(LOG_ERR, __VA_ARGS__)

#endif
