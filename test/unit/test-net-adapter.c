/*
 * test-net-adapter.c - net/adapter: the session loop's literal mode and ticks, driven through
 * adapter_run_session with a tiny test core on a socketpair (the test plays the client).
 *
 * The test core: "LIT n" makes the next n octets a literal ("+ go" first, "OK literal n" when
 * they are in); "TICK ms [k]" asks for tick() every ms milliseconds (and ends the session with
 * "tick-end" after k ticks); "QUIT" ends; any other line is answered "LINE len". A second
 * core, the same without literal/feed_literal/tick_ms/tick, shows that a core leaving them NULL
 * gets lines as before.
 */
#include "net/adapter.h"

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "support/adapter_session.h"
#include "support/store_mem.h"
#include "util/log.h"

/* What the test core saw; one session at a time, so one of it. */
typedef struct {
    gsize literal_left;     /* octets of the literal still to come */
    GString *literal;       /* every octet literals brought, in order */
    guint pieces;           /* feed_literal calls */
    gsize max_piece;
    GPtrArray *lines;       /* the lines fed, without line ends */
    guint tick_ms, ticks, end_after_ticks;
    const char *ended;
    gboolean timed_out, freed;
} TestCore;

static TestCore tc;

static gpointer
tc_open(AdapterRun *run, Store *store, const char *peer)
{
    (void)run, (void)store, (void)peer;
    return &tc;
}

static void
tc_greeting(gpointer core, GString *out)
{
    (void)core;
    g_string_append(out, "* OK test\r\n");
}

static gboolean
tc_feed(gpointer core, const char *line, gsize len, ProtoLine status, GString *out)
{
    TestCore *t = core;
    (void)status;
    g_autofree char *text = g_strndup(line, len);
    g_strchomp(text);
    g_ptr_array_add(t->lines, g_strdup(text));
    guint ms = 0, k = 0;
    gsize n = 0;
    if (sscanf(text, "LIT %zu", &n) == 1) {
        t->literal_left = n;
        g_string_append(out, "+ go\r\n");
    } else if (sscanf(text, "TICK %u %u", &ms, &k) >= 1) {
        t->tick_ms = ms;
        t->end_after_ticks = k;
        g_string_append(out, "OK tick\r\n");
    } else if (strcmp(text, "QUIT") == 0) {
        g_string_append(out, "BYE\r\n");
        t->ended = "quit";
        return TRUE;
    } else {
        g_string_append_printf(out, "LINE %zu\r\n", len);
    }
    return FALSE;
}

static gsize
tc_line_max(gpointer core)
{
    (void)core;
    return 1000;
}

static gsize
tc_literal(gpointer core)
{
    return ((TestCore *)core)->literal_left;
}

static gboolean
tc_feed_literal(gpointer core, const char *buf, gsize len, GString *out)
{
    TestCore *t = core;
    g_assert_cmpuint(len, >=, 1);
    g_assert_cmpuint(len, <=, t->literal_left);
    g_string_append_len(t->literal, buf, (gssize)len);
    t->pieces++;
    t->max_piece = MAX(t->max_piece, len);
    t->literal_left -= len;
    if (t->literal_left == 0)
        g_string_append_printf(out, "OK literal %zu\r\n", t->literal->len);
    return FALSE;
}

static guint
tc_tick_ms(gpointer core)
{
    return ((TestCore *)core)->tick_ms;
}

static void
tc_tick(gpointer core, GString *out)
{
    TestCore *t = core;
    t->ticks++;
    g_string_append_printf(out, "* tick %u\r\n", t->ticks);
    if (t->end_after_ticks && t->ticks >= t->end_after_ticks) {
        g_string_append(out, "* BYE ticked out\r\n");
        t->ended = "tick-end";
    }
}

static gboolean
tc_false(gpointer core)
{
    (void)core;
    return FALSE;
}

static void
tc_nothing(gpointer core)
{
    (void)core;
}

static void
tc_timeout(gpointer core, GString *out)
{
    ((TestCore *)core)->timed_out = TRUE;
    g_string_append(out, "* BYE timeout\r\n");
}

static const char *
tc_ended(gpointer core)
{
    return ((TestCore *)core)->ended;
}

static void
tc_log_fields(gpointer core, GString *head, GString *tail)
{
    TestCore *t = core;
    g_string_append_printf(head, "lines=%u", t->lines->len);
    g_string_append_printf(tail, "ticks=%u", t->ticks);
}

static void
tc_free(gpointer core)
{
    ((TestCore *)core)->freed = TRUE;
}

static const ProtoCore test_core = {
    .name = "test",
    .greeting = tc_greeting,
    .feed = tc_feed,
    .line_max = tc_line_max,
    .literal = tc_literal,
    .feed_literal = tc_feed_literal,
    .tick_ms = tc_tick_ms,
    .tick = tc_tick,
    .tls_pending = tc_false,
    .tls_started = tc_nothing,
    .timeout = tc_timeout,
    .ended = tc_ended,
    .log_fields = tc_log_fields,
    .free = tc_free,
};

/* the same core without the optional entries an IMAP core adds */
static const ProtoCore plain_core = {
    .name = "test",
    .greeting = tc_greeting,
    .feed = tc_feed,
    .line_max = tc_line_max,
    .tls_pending = tc_false,
    .tls_started = tc_nothing,
    .timeout = tc_timeout,
    .ended = tc_ended,
    .log_fields = tc_log_fields,
    .free = tc_free,
};

typedef AdapterSession Session;

/* session_start - a session of CORE with these timeouts; its log goes to a file */
static Session *
session_start(const ProtoCore *core, int idle_s, int data_s)
{
    memset(&tc, 0, sizeof tc);
    tc.literal = g_string_new(NULL);
    tc.lines = g_ptr_array_new_with_free_func(g_free);
    Session *s = g_new0(Session, 1);
    s->server = (AdapterServer){.program = "test-net-adapter", .open = tc_open, .core = core};
    s->run = (AdapterRun){.server = &s->server, .idle_timeout_s = idle_s, .data_timeout_s = data_s};
    s->store = store_mem_new();
    session_begin(s, "test-net-adapter");
    return s;
}

static void
session_free(Session *s)
{
    session_end(s);
    g_string_free(tc.literal, TRUE);
    g_ptr_array_free(tc.lines, TRUE);
    g_free(s);
}

/* expect - read until everything read so far ends with WANT (within TIMEOUT_MS); TRUE then */
static gboolean
expect(Session *s, const char *want, int timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    while (!g_str_has_suffix(s->got->str, want))
        if (!session_read(s, deadline))
            return g_str_has_suffix(s->got->str, want);
    return TRUE;
}

/* elapsed_ms - since the session started */
static gint64
elapsed_ms(Session *s)
{
    return (g_get_monotonic_time() - s->started) / 1000;
}

static void
test_literal_octets_are_raw_and_a_line_follows(void)
{
    Session *s = session_start(&test_core, 30, 30);
    g_assert_true(expect(s, "* OK test\r\n", 5000));
    send_text(s, "LIT 14\r\n");
    g_assert_true(expect(s, "+ go\r\n", 5000));
    /* line ends, a NUL, a would-be command: all literal octets, none of them a line */
    static const char lit[14] = "A\r\nQUIT\r\n\0x\n.\r";
    send_all(s, lit, sizeof lit);
    g_assert_true(expect(s, "OK literal 14\r\n", 5000));
    send_text(s, "AFTER\r\nQUIT\r\n");
    g_autofree char *log = session_over(s);
    g_assert_cmpmem(tc.literal->str, tc.literal->len, lit, sizeof lit);
    g_assert_cmpuint(tc.lines->len, ==, 3);
    g_assert_cmpstr(g_ptr_array_index(tc.lines, 1), ==, "AFTER");
    g_assert_nonnull(strstr(s->got->str, "LINE 7\r\nBYE\r\n"));
    g_assert_nonnull(strstr(log, "test 127.0.0.1: session end lines=3 end=quit ms="));
    g_assert_nonnull(strstr(log, " tls=no ticks=0 bytes_read=0 "));
    g_assert_true(tc.freed);
    session_free(s);
}

static void
test_pipelined_literal_in_one_write_is_split_exactly(void)
{
    /* the command, its literal and the next commands in one segment: the literal takes its 5
     * octets from the read buffer, in place, and the rest are lines again */
    Session *s = session_start(&test_core, 30, 30);
    send_text(s, "LIT 5\r\nab\ncdNEXT\r\nLIT 3\r\nxyzQUIT\r\n");
    g_autofree char *log = session_over(s);
    g_assert_cmpstr(tc.literal->str, ==, "ab\ncdxyz");
    g_assert_cmpuint(tc.lines->len, ==, 4);
    g_assert_cmpstr(g_ptr_array_index(tc.lines, 1), ==, "NEXT");
    g_assert_cmpstr(s->got->str, ==, "* OK test\r\n+ go\r\nOK literal 5\r\nLINE 6\r\n+ go\r\n"
                                     "OK literal 8\r\nBYE\r\n");
    g_assert_nonnull(strstr(log, "end=quit"));
    session_free(s);
}

/* A thread writing a literal of N octets (a pattern) and then "QUIT". */
typedef struct {
    int fd;
    gsize n;
} LiteralWriter;

static gpointer
literal_writer(gpointer data)
{
    LiteralWriter *w = data;
    char buf[10000];
    for (gsize off = 0; off < w->n;) {
        gsize k = MIN(sizeof buf, w->n - off);
        for (gsize i = 0; i < k; i++)
            buf[i] = (char)((off + i) * 7 % 251);   /* CR, LF and NUL among them */
        gsize done = 0;
        while (done < k) {
            ssize_t r = write(w->fd, buf + done, k - done);
            if (r <= 0)
                return NULL;
            done += (gsize)r;
        }
        off += k;
    }
    const char *quit = "QUIT\r\n";
    (void)!write(w->fd, quit, strlen(quit));
    return NULL;
}

static void
test_large_literal_comes_in_bounded_pieces(void)
{
    /* 3 MB: far more than the read buffer; the adapter hands it on piece by piece and never
     * holds more than its buffer */
    const gsize n = 3 * 1000 * 1000;
    Session *s = session_start(&test_core, 30, 30);
    g_autofree char *command = g_strdup_printf("LIT %zu\r\n", n);
    send_text(s, command);
    g_assert_true(expect(s, "+ go\r\n", 5000));
    LiteralWriter w = {.fd = s->fd, .n = n};
    GThread *t = g_thread_new("writer", literal_writer, &w);
    read_to_eof(s);
    g_thread_join(t);
    g_autofree char *log = session_join(s);
    g_assert_cmpuint(tc.literal->len, ==, n);
    for (gsize i = 0; i < n; i++)
        if (tc.literal->str[i] != (char)(i * 7 % 251))
            g_assert_cmpuint(i, ==, G_MAXSIZE);   /* names the first octet that differs */
    g_assert_cmpuint(tc.max_piece, <=, NET_CONN_BUFFER_SIZE);
    g_assert_cmpuint(tc.pieces, >=, n / NET_CONN_BUFFER_SIZE);
    g_test_message("%u pieces, the largest %zu octets", tc.pieces, tc.max_piece);
    g_assert_nonnull(strstr(s->got->str, "OK literal 3000000\r\nBYE\r\n"));
    g_assert_nonnull(strstr(log, "end=quit"));
    session_free(s);
}

static void
test_literal_waits_with_the_data_timeout(void)
{
    /* idle timeout 30 s, data timeout 1 s: a literal that stops coming ends after about 1 s */
    Session *s = session_start(&test_core, 30, 1);
    send_text(s, "LIT 10\r\nabc");
    g_autofree char *log = session_over(s);
    gint64 ms = elapsed_ms(s);
    g_assert_cmpint(ms, >=, 900);
    g_assert_cmpint(ms, <, 10000);
    g_assert_true(tc.timed_out);
    g_assert_cmpstr(tc.literal->str, ==, "abc");
    g_assert_true(g_str_has_suffix(s->got->str, "+ go\r\n* BYE timeout\r\n"));
    g_assert_nonnull(strstr(log, "end=data-timeout"));
    session_free(s);
}

static void
test_eof_inside_a_literal_is_eof_in_data(void)
{
    Session *s = session_start(&test_core, 30, 30);
    send_text(s, "LIT 10\r\n12345");
    shutdown(s->fd, SHUT_WR);
    g_autofree char *log = session_over(s);
    g_assert_cmpstr(tc.literal->str, ==, "12345");
    g_assert_nonnull(strstr(log, "end=eof-in-data"));
    session_free(s);
}

static void
test_ticks_are_written_at_once_and_the_idle_timeout_still_counts(void)
{
    /* idle timeout 2 s, a tick every 300 ms: the client, silent, gets the ticks as they come,
     * and the session still ends 2 s after the last command */
    Session *s = session_start(&test_core, 2, 30);
    send_text(s, "TICK 300\r\n");
    g_assert_true(expect(s, "OK tick\r\n", 5000));
    gint64 t0 = g_get_monotonic_time();
    g_assert_true(expect(s, "* tick 1\r\n", 2000));   /* flushed, not held for a reply */
    gint64 first_ms = (g_get_monotonic_time() - t0) / 1000;
    g_assert_cmpint(first_ms, >=, 200);
    read_to_eof(s);
    gint64 total_ms = (g_get_monotonic_time() - t0) / 1000;
    g_autofree char *log = session_join(s);
    g_test_message("first tick after %" G_GINT64_FORMAT " ms, %u ticks, end after %" G_GINT64_FORMAT
                   " ms", first_ms, tc.ticks, total_ms);
    g_assert_cmpint(total_ms, >=, 1800);
    g_assert_cmpint(total_ms, <, 4000);
    g_assert_cmpuint(tc.ticks, >=, 3);
    g_assert_cmpuint(tc.ticks, <=, 7);
    g_assert_true(tc.timed_out);
    g_assert_true(g_str_has_suffix(s->got->str, "* BYE timeout\r\n"));
    g_assert_nonnull(strstr(log, "end=idle-timeout"));
    g_autofree char *ticks = g_strdup_printf("ticks=%u ", tc.ticks);
    g_assert_nonnull(strstr(log, ticks));
    session_free(s);
}

static void
test_a_line_between_ticks_is_a_command(void)
{
    Session *s = session_start(&test_core, 30, 30);
    send_text(s, "TICK 100\r\n");
    g_assert_true(expect(s, "* tick 2\r\n", 5000));
    send_text(s, "DONE\r\n");
    g_assert_true(expect(s, "LINE 6\r\n", 5000));
    send_text(s, "TICK 0\r\n");   /* no more ticks */
    g_assert_true(expect(s, "OK tick\r\n", 5000));
    guint ticks = tc.ticks;
    g_usleep(400 * 1000);
    send_text(s, "QUIT\r\n");
    g_autofree char *log = session_over(s);
    g_assert_cmpuint(tc.ticks, ==, ticks);
    g_assert_cmpstr(g_ptr_array_index(tc.lines, 1), ==, "DONE");
    g_assert_nonnull(strstr(log, "end=quit"));
    session_free(s);
}

static void
test_a_tick_may_end_the_session(void)
{
    Session *s = session_start(&test_core, 30, 30);
    send_text(s, "TICK 100 2\r\n");
    g_autofree char *log = session_over(s);
    g_assert_cmpuint(tc.ticks, ==, 2);
    g_assert_true(g_str_has_suffix(s->got->str, "* tick 2\r\n* BYE ticked out\r\n"));
    g_assert_nonnull(strstr(log, "end=tick-end"));
    g_assert_cmpint(elapsed_ms(s), <, 5000);
    session_free(s);
}

static void
test_ticks_wait_while_a_literal_comes(void)
{
    /* ticks are for the wait between commands: none while a literal is coming */
    Session *s = session_start(&test_core, 30, 30);
    send_text(s, "TICK 50\r\nLIT 4\r\nab");
    g_assert_true(expect(s, "+ go\r\n", 5000));
    g_usleep(400 * 1000);
    guint ticks = tc.ticks;
    send_text(s, "cdQUIT\r\n");
    g_autofree char *log = session_over(s);
    g_assert_cmpuint(ticks, ==, 0);
    g_assert_cmpstr(tc.literal->str, ==, "abcd");
    g_assert_nonnull(strstr(log, "end=quit"));
    session_free(s);
}

static void
test_a_core_without_literal_or_tick_gets_lines(void)
{
    /* the entries SMTP and POP3 leave NULL: "LIT 3" is just a line, and so is what follows */
    Session *s = session_start(&plain_core, 1, 30);
    send_text(s, "LIT 3\r\nabc\r\nTICK 100\r\n");
    g_autofree char *log = session_over(s);
    g_assert_cmpuint(tc.literal->len, ==, 0);
    g_assert_cmpuint(tc.lines->len, ==, 3);
    g_assert_cmpstr(g_ptr_array_index(tc.lines, 1), ==, "abc");
    g_assert_cmpuint(tc.ticks, ==, 0);
    g_assert_cmpstr(s->got->str, ==, "* OK test\r\n+ go\r\nLINE 5\r\nOK tick\r\n* BYE timeout\r\n");
    g_assert_nonnull(strstr(log, "end=idle-timeout"));
    session_free(s);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    log_open("test-net-adapter", TRUE);
    g_test_add_func("/net/adapter/literal-octets-are-raw-and-a-line-follows",
                    test_literal_octets_are_raw_and_a_line_follows);
    g_test_add_func("/net/adapter/pipelined-literal-in-one-write-is-split-exactly",
                    test_pipelined_literal_in_one_write_is_split_exactly);
    g_test_add_func("/net/adapter/large-literal-comes-in-bounded-pieces",
                    test_large_literal_comes_in_bounded_pieces);
    g_test_add_func("/net/adapter/literal-waits-with-the-data-timeout",
                    test_literal_waits_with_the_data_timeout);
    g_test_add_func("/net/adapter/eof-inside-a-literal-is-eof-in-data",
                    test_eof_inside_a_literal_is_eof_in_data);
    g_test_add_func("/net/adapter/ticks-are-written-at-once-and-the-idle-timeout-still-counts",
                    test_ticks_are_written_at_once_and_the_idle_timeout_still_counts);
    g_test_add_func("/net/adapter/a-line-between-ticks-is-a-command",
                    test_a_line_between_ticks_is_a_command);
    g_test_add_func("/net/adapter/a-tick-may-end-the-session", test_a_tick_may_end_the_session);
    g_test_add_func("/net/adapter/ticks-wait-while-a-literal-comes",
                    test_ticks_wait_while_a_literal_comes);
    g_test_add_func("/net/adapter/a-core-without-literal-or-tick-gets-lines",
                    test_a_core_without_literal_or_tick_gets_lines);
    return g_test_run();
}
