/*
 * adapter_session.h - a protocol core's session run by the adapter (adapter_run_session) in a
 * thread on one end of a socketpair, the test playing the client on the other end; the session's
 * log (stderr, while it runs) goes to a file the test reads when the session is over.
 *
 * The test fills server, run and store, calls session_begin, talks (send_all, send_text,
 * session_read, read_to_eof), takes the log with session_join (or both: session_over) and tidies up with session_end
 * (which frees the store too); what it made for server and run is its own to free. The names
 * are the ones the tests had when each of them carried a copy of this.
 */
#ifndef CASSMAIL_TEST_ADAPTER_SESSION_H
#define CASSMAIL_TEST_ADAPTER_SESSION_H

#include "net/adapter.h"

typedef struct {
    AdapterServer server;
    AdapterRun run;
    Store *store;
    int fd, sfd;            /* the client's end, the session's end */
    NetConn *conn;
    GThread *thread;        /* NULL once joined */
    int saved_stderr;
    char log_path[64];
    gint64 started;         /* monotonic time of session_begin */
    GString *got;           /* everything the client read */
    gboolean eof;           /* the session closed its end */
} AdapterSession;

/* session_begin - the socketpair, the log file (/tmp/NAME-XXXXXX) and the session's thread */
void session_begin(AdapterSession *s, const char *name);
/* session_join - wait for the session's end; its log (g_free it) */
char *session_join(AdapterSession *s);
/* session_end - join if still running, then free the connection, the ends, GOT and STORE */
void session_end(AdapterSession *s);

/* send_all - LEN octets at DATA to the session */
void send_all(AdapterSession *s, const void *data, gsize len);
/* send_text - TEXT to the session */
void send_text(AdapterSession *s, const char *text);
/* session_read - what the session wrote next onto GOT, waiting until DEADLINE (monotonic time);
 * FALSE at the deadline or at EOF (then EOF is set) */
gboolean session_read(AdapterSession *s, gint64 deadline);
/* read_to_eof - everything the session still writes, until it closes */
void read_to_eof(AdapterSession *s);
/* session_over - read_to_eof, then session_join: the ended session's log (g_free it) */
char *session_over(AdapterSession *s);

#endif
