/*
 * test-imapd.c - cassmail-imapd's shape: the IMAP core (src/imap/session.h) behind the adapter
 * (adapter_run_session) on a socketpair, with the in-memory store. What the adapter adds for
 * IMAP, seen by a client: a synchronizing literal's "+" goes out before the adapter waits for
 * the octets, a non-synchronizing APPEND literal larger than the read buffer, IDLE reporting a
 * delivery made while the client is silent (the core's ticks), and the autologout that IDLE's
 * reports do not put off.
 */
#include "imap/session.h"
#include "net/adapter.h"

#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "support/adapter_session.h"
#include "support/store_mem.h"
#include "util/log.h"
#include "util/password.h"

#define USER "pete"
#define SECRET "secret"

/* A delivery the test asks for, made by the store hook in the session's own thread (the
 * in-memory store is not thread-safe): at the start of the next store operation. */
static gint deliver_now;
static Store *hook_store;

static void
deliver(Store *store, const char *subject)
{
    g_autofree char *msg = g_strdup_printf("From: <a@example.org>\r\nSubject: %s\r\n\r\nhello\r\n",
                                           subject);
    StoreMsgId id;
    store_msgid_new(&id);
    StoreTarget t = {USER, "inbox"};
    g_assert_true(store_deliver(store, &id, &t, 1, (const guint8 *)msg, strlen(msg), NULL));
}

static void
store_hook(gpointer data, const char *op)
{
    (void)data, (void)op;
    if (!g_atomic_int_compare_and_exchange(&deliver_now, 1, 0))
        return;
    deliver(hook_store, "while idling");   /* the hook is not called again while it runs */
}

static gpointer
imapd_open(AdapterRun *run, Store *store, const char *peer)
{
    ImapSessionConfig ic;
    adapter_imap_config(run, peer, &ic);
    ic.plaintext_auth = TRUE;
    ic.settle_ms = 1;
    ic.idle_poll_ms = 100;
    ic.login_delay_ms = 0;
    return imap_session_new(&ic, store, peer);
}

typedef AdapterSession Session;

static Session *
session_start(int idle_s)
{
    Session *s = g_new0(Session, 1);
    s->server = (AdapterServer){.program = "cassmail-imapd", .open = imapd_open, .core = &imap_core};
    s->run = (AdapterRun){.server = &s->server, .idle_timeout_s = idle_s, .data_timeout_s = 30};
    s->run.cfg = config_load(NULL, NULL);
    g_assert_nonnull(s->run.cfg);
    s->store = store_mem_new();
    hook_store = s->store;
    store_mem_set_hook(s->store, store_hook, NULL);
    g_assert_true(store_user_add(s->store, USER, NULL));
    g_autofree char *hash = password_hash_iterations(SECRET, 1000, NULL);
    g_assert_true(store_password_set(s->store, USER, hash, NULL));
    deliver(s->store, "first");
    /* a UID at SELECT: older than the view's horizon, a whole second at least settle_ms ago */
    g_usleep(1100 * 1000);
    session_begin(s, "test-imapd");
    return s;
}

static void
session_free(Session *s)
{
    session_end(s);
    config_free(&s->run.cfg);
    g_free(s);
}

/* expect - read until WANT appears in what came after position *FROM (then *FROM moves past it) */
static gboolean
expect(Session *s, gsize *from, const char *want, int timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    for (;;) {
        const char *hit = strstr(s->got->str + *from, want);
        if (hit) {
            *from = (gsize)(hit - s->got->str) + strlen(want);
            return TRUE;
        }
        if (!session_read(s, deadline)) {
            if (s->eof)
                g_test_message("EOF; the client got:\n%s", s->got->str);
            return FALSE;
        }
    }
}

static void
test_literals_idle_and_append_through_the_adapter(void)
{
    Session *s = session_start(1800);
    gsize at = 0;
    g_assert_true(expect(s, &at, "* OK [CAPABILITY ", 5000));
    /* a synchronizing literal: the continuation comes before the client sends the octets */
    send_text(s, "a LOGIN " USER " {6}\r\n");
    g_assert_true(expect(s, &at, "+ ", 5000));
    send_text(s, SECRET "\r\n");
    g_assert_true(expect(s, &at, "a OK", 30000));
    send_text(s, "b SELECT INBOX\r\n");
    g_assert_true(expect(s, &at, "* 1 EXISTS\r\n", 5000));
    g_assert_true(expect(s, &at, "b OK", 5000));
    /* IDLE: the client says nothing; a delivery shows up through the core's ticks */
    send_text(s, "c IDLE\r\n");
    g_assert_true(expect(s, &at, "+ idling\r\n", 5000));
    g_usleep(300 * 1000);
    g_atomic_int_set(&deliver_now, 1);
    gint64 t0 = g_get_monotonic_time();
    g_assert_true(expect(s, &at, "* 2 EXISTS\r\n", 10000));
    g_test_message("the delivery was reported after %" G_GINT64_FORMAT " ms",
                   (g_get_monotonic_time() - t0) / 1000);
    send_text(s, "DONE\r\n");
    g_assert_true(expect(s, &at, "c OK", 5000));
    /* APPEND with a non-synchronizing literal of 200 KB: in pieces, straight to the store */
    GString *msg = g_string_new("From: <b@example.org>\r\nSubject: big\r\n\r\n");
    while (msg->len < 200 * 1000)
        g_string_append(msg, "a line of the appended message, long enough to need many of them\r\n");
    g_autofree char *append = g_strdup_printf("d APPEND INBOX {%zu+}\r\n", msg->len);
    send_text(s, append);
    send_all(s, msg->str, msg->len);
    send_text(s, "\r\ne LOGOUT\r\n");
    g_assert_true(expect(s, &at, "d OK", 10000));
    g_assert_true(expect(s, &at, "* BYE", 5000));
    g_assert_true(expect(s, &at, "e OK", 5000));
    g_autofree char *log = session_over(s);
    g_assert_null(strstr(s->got->str, " BAD "));
    g_assert_null(strstr(s->got->str, " NO "));
    g_assert_cmpuint(store_mem_message_count(s->store, USER, "inbox"), ==, 3);
    g_assert_nonnull(strstr(log, "imap 127.0.0.1: session end user=" USER " "));
    g_assert_nonnull(strstr(log, " end=quit "));
    g_assert_nonnull(strstr(log, " appended=1 "));
    g_string_free(msg, TRUE);
    session_free(s);
}

static void
test_idle_reports_do_not_put_off_the_autologout(void)
{
    /* autologout after 1 s: an IDLE session polled every 100 ms still ends then */
    Session *s = session_start(1);
    gsize at = 0;
    send_text(s, "a LOGIN " USER " " SECRET "\r\nb SELECT INBOX\r\nc IDLE\r\n");
    g_assert_true(expect(s, &at, "+ idling\r\n", 30000));
    gint64 t0 = g_get_monotonic_time();
    read_to_eof(s);
    gint64 ms = (g_get_monotonic_time() - t0) / 1000;
    g_autofree char *log = session_join(s);
    g_assert_cmpint(ms, <, 3000);
    g_assert_nonnull(strstr(s->got->str + at, "* BYE"));
    g_assert_nonnull(strstr(log, " end=idle-timeout "));
    session_free(s);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    log_open("test-imapd", TRUE);
    password_set_cost(1000);   /* what a login costs: the stored hash's and a dummy's (tests) */
    g_test_add_func("/imapd/literals-idle-and-append-through-the-adapter",
                    test_literals_idle_and_append_through_the_adapter);
    g_test_add_func("/imapd/idle-reports-do-not-put-off-the-autologout",
                    test_idle_reports_do_not_put_off_the_autologout);
    return g_test_run();
}
