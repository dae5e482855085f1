/*
 * adapter_session.c - a core's session through the adapter on a socketpair (see the header).
 */
#include "adapter_session.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* session_thread - the session, then its end of the socket closed for writing: EOF to the test */
static gpointer
session_thread(gpointer data)
{
    AdapterSession *s = data;
    adapter_run_session(&s->run, s->conn, s->store, "127.0.0.1");
    net_conn_flush(s->conn);
    shutdown(s->sfd, SHUT_WR);
    return NULL;
}

void
session_begin(AdapterSession *s, const char *name)
{
    int fds[2];
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), ==, 0);
    s->fd = fds[1];
    s->sfd = fds[0];
    s->conn = net_conn_new(s->sfd, s->sfd);
    s->got = g_string_new(NULL);
    s->eof = FALSE;
    g_snprintf(s->log_path, sizeof s->log_path, "/tmp/%s-XXXXXX", name);
    int lfd = mkstemp(s->log_path);
    g_assert_cmpint(lfd, >=, 0);
    fflush(stderr);
    s->saved_stderr = dup(2);
    dup2(lfd, 2);
    close(lfd);
    s->started = g_get_monotonic_time();
    s->thread = g_thread_new("session", session_thread, s);
}

char *
session_join(AdapterSession *s)
{
    g_thread_join(s->thread);
    s->thread = NULL;
    fflush(stderr);
    dup2(s->saved_stderr, 2);
    close(s->saved_stderr);
    char *log = NULL;
    g_assert_true(g_file_get_contents(s->log_path, &log, NULL, NULL));
    unlink(s->log_path);
    return log;
}

void
session_end(AdapterSession *s)
{
    if (s->thread)
        g_free(session_join(s));
    net_conn_free(&s->conn);
    close(s->sfd);
    close(s->fd);
    g_string_free(s->got, TRUE);
    s->got = NULL;
    store_free(&s->store);
}

void
send_all(AdapterSession *s, const void *data, gsize len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(s->fd, p, len);
        g_assert_cmpint(n, >, 0);
        p += n;
        len -= (gsize)n;
    }
}

void
send_text(AdapterSession *s, const char *text)
{
    send_all(s, text, strlen(text));
}

gboolean
session_read(AdapterSession *s, gint64 deadline)
{
    for (;;) {
        gint64 left = (deadline - g_get_monotonic_time()) / 1000;
        if (left <= 0)
            return FALSE;
        struct pollfd p = {.fd = s->fd, .events = POLLIN};
        if (poll(&p, 1, (int)left) <= 0)
            continue;
        char buf[4096];
        ssize_t n = read(s->fd, buf, sizeof buf);
        if (n <= 0) {
            s->eof = TRUE;
            return FALSE;
        }
        g_string_append_len(s->got, buf, n);
        return TRUE;
    }
}

void
read_to_eof(AdapterSession *s)
{
    char buf[4096];
    ssize_t n;
    while ((n = read(s->fd, buf, sizeof buf)) > 0)
        g_string_append_len(s->got, buf, n);
    s->eof = TRUE;
}

char *
session_over(AdapterSession *s)
{
    read_to_eof(s);
    return session_join(s);
}
