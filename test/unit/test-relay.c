/*
 * test-relay.c - relay/relay.c, the SMTP client towards the smarthost, against scripted servers
 * on loopback (a thread per test): a full transaction with multi-line replies and dot stuffing;
 * a smarthost that never answers, one that sends an endless line, one that sends endless reply
 * lines — each fails within its timeout instead of hanging; closing inside DATA never sends the
 * final dot. Also [relay] trusted_networks matching and queue ids from 250 texts.
 */
#include "relay/relay.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "util/config.h"

/* A scripted smarthost: SCRIPT's replies are sent in order, each after one line (or, for the
 * text, after the final dot) is read; everything received is kept. CFG is the relay client's
 * settings towards it. */
typedef struct {
    int listener;
    int port;
    char *hostport;
    RelayConfig cfg;
    const char *const *script;   /* NULL-terminated; "" means: say nothing and wait */
    const char *blob;            /* sent once after the greeting, instead of the script */
    gsize blob_repeat;
    GString *received;
    GThread *thread;
} Server;

static gboolean
server_read_line(int fd, GString *received, gboolean *dot)
{
    char c;
    gsize start = received->len;
    while (read(fd, &c, 1) == 1) {
        g_string_append_c(received, c);
        if (c == '\n') {
            *dot = strcmp(received->str + start, ".\r\n") == 0;
            return TRUE;
        }
    }
    return FALSE;
}

static gpointer
server_run(gpointer data)
{
    Server *sv = data;
    int fd = accept(sv->listener, NULL, NULL);
    if (fd < 0)
        return NULL;
    if (sv->blob) {
        for (gsize i = 0; i < sv->blob_repeat; i++)
            if (write(fd, sv->blob, strlen(sv->blob)) < 0)
                break;
    } else {
        gboolean in_data = FALSE, dot = FALSE;
        for (const char *const *s = sv->script; *s; s++) {
            if (s != sv->script) {   /* the greeting needs no command */
                do {
                    if (!server_read_line(fd, sv->received, &dot))
                        goto out;
                } while (in_data && !dot);
            }
            if (!**s) {   /* silence: wait for the client to give up */
                char c;
                while (read(fd, &c, 1) == 1)
                    ;
                goto out;
            }
            in_data = g_str_has_prefix(*s, "354");
            if (write(fd, *s, strlen(*s)) < 0)
                goto out;
        }
        char buf[256];   /* whatever else comes (QUIT), until the client closes */
        ssize_t n;
        while ((n = read(fd, buf, sizeof buf)) > 0)
            g_string_append_len(sv->received, buf, n);
    }
out:
    close(fd);
    return NULL;
}

/* server_start - a smarthost for SCRIPT (or sending BLOB REPEAT times); the client's reply
 * timeout in its CFG is TIMEOUT_MS */
static Server *
server_start(const char *const *script, const char *blob, gsize repeat, int timeout_ms)
{
    Server *sv = g_new0(Server, 1);
    sv->script = script;
    sv->blob = blob;
    sv->blob_repeat = repeat;
    sv->received = g_string_new(NULL);
    sv->listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    g_assert_cmpint(bind(sv->listener, (struct sockaddr *)&a, sizeof a), ==, 0);
    g_assert_cmpint(listen(sv->listener, 1), ==, 0);
    g_assert_cmpint(getsockname(sv->listener, (struct sockaddr *)&a, &len), ==, 0);
    sv->port = ntohs(a.sin_port);
    sv->hostport = g_strdup_printf("127.0.0.1:%d", sv->port);
    sv->cfg = (RelayConfig){.smarthost = sv->hostport, .helo = "mx.example.com",
                            .starttls = RELAY_TLS_OPPORTUNISTIC, .connect_timeout_ms = 2000,
                            .timeout_ms = timeout_ms};
    sv->thread = g_thread_new("smarthost", server_run, sv);
    return sv;
}

/* server_join - wait for the scripted session to end (what it received is then complete) */
static void
server_join(Server *sv)
{
    if (sv->thread)
        g_thread_join(sv->thread);
    sv->thread = NULL;
}

static void
server_free(Server *sv)
{
    server_join(sv);
    close(sv->listener);
    g_string_free(sv->received, TRUE);
    g_free(sv->hostport);
    g_free(sv);
}

static void
test_a_transaction_with_multiline_replies_and_dot_stuffing(void)
{
    static const char *const script[] = {
        "220-smarthost.example ESMTP\r\n220 second greeting line\r\n",
        "250-smarthost.example\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 1000000\r\n",
        "250 2.1.0 Ok\r\n",
        "250 2.1.5 Ok\r\n",
        "550-5.1.1 <nobody@far.example>: no\r\n550 5.1.1 such user\r\n",
        "354 End data with <CR><LF>.<CR><LF>\r\n",
        "250 2.0.0 Ok: queued as 4ZqXyz1Abc\r\n",
        "221 2.0.0 Bye\r\n",
        NULL};
    Server *sv = server_start(script, NULL, 0, 5000);
    RelayReply reply = {0};
    Relay *r = relay_open(&sv->cfg, "pete@example.com", TRUE, &reply);
    g_assert_nonnull(r);
    g_assert_cmpint(reply.code, ==, 250);
    g_assert_true(relay_rcpt(r, "friend@far.example", &reply));
    g_assert_false(relay_rcpt(r, "nobody@far.example", &reply));
    g_assert_cmpint(reply.code, ==, 550);
    g_assert_cmpstr(reply.text, ==, "5.1.1 such user");   /* the last line's text */
    g_assert_true(relay_data(r, &reply));
    const char text[] = "Subject: x\r\n\r\n.leading dot\r\n..\r\n.\r\nlast";
    g_assert_true(relay_write(r, text, 20));   /* split inside a line */
    g_assert_true(relay_write(r, text + 20, sizeof text - 1 - 20));
    g_assert_true(relay_end(r, &reply));
    g_assert_cmpint(reply.code, ==, 250);
    g_autofree char *qid = relay_queue_id(reply.text);
    g_assert_cmpstr(qid, ==, "4ZqXyz1Abc");
    relay_free(&r);
    relay_reply_clear(&reply);
    server_free(sv);
}

static void
test_the_exchange_on_the_wire(void)
{
    static const char *const script[] = {
        "220 smarthost.example ESMTP\r\n", "250-smarthost.example\r\n250 8BITMIME\r\n",
        "250 Ok\r\n", "250 Ok\r\n", "354 go\r\n", "250 Ok: queued as ABC\r\n", "221 Bye\r\n", NULL};
    Server *sv = server_start(script, NULL, 0, 5000);
    RelayReply reply = {0};
    Relay *r = relay_open(&sv->cfg, "", TRUE, &reply);
    g_assert_nonnull(r);
    g_assert_true(relay_rcpt(r, "a@far.example", &reply));
    g_assert_true(relay_data(r, &reply));
    g_assert_true(relay_write(r, ".one\r\ntwo\r\n.\r\n", 14));
    g_assert_true(relay_end(r, &reply));
    relay_free(&r);
    relay_reply_clear(&reply);
    server_join(sv);
    g_assert_cmpstr(sv->received->str, ==,
                    "EHLO mx.example.com\r\n"
                    "MAIL FROM:<> BODY=8BITMIME\r\n"
                    "RCPT TO:<a@far.example>\r\n"
                    "DATA\r\n"
                    "..one\r\ntwo\r\n..\r\n.\r\n"
                    "QUIT\r\n");
    server_free(sv);
}

static void
test_a_silent_smarthost_times_out(void)
{
    static const char *const script[] = {"220 hello\r\n", "", NULL};   /* never answers EHLO */
    Server *sv = server_start(script, NULL, 0, 300);
    RelayReply reply = {0};
    gint64 t0 = g_get_monotonic_time();
    Relay *r = relay_open(&sv->cfg, "pete@example.com", TRUE, &reply);
    gint64 ms = (g_get_monotonic_time() - t0) / 1000;
    g_assert_null(r);
    g_assert_cmpint(reply.code, ==, 0);
    g_assert_nonnull(strstr(reply.text, "no reply"));
    g_assert_cmpint(ms, >=, 290);
    g_assert_cmpint(ms, <, 3000);
    relay_reply_clear(&reply);
    server_free(sv);
}

/* What a smarthost sends without end, and the error that refuses it once past its bound */
typedef struct {
    const char *pattern;
    const char *error;
} Endless;

static const Endless endless_line = {
    "220 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "reply line over"};
static const Endless endless_multiline = {"220-more\r\n", "reply of over"};

static void
test_an_endless_reply_is_refused_not_buffered(gconstpointer data)
{
    const Endless *e = data;
    Server *sv = server_start(NULL, e->pattern, 10000, 2000);
    RelayReply reply = {0};
    Relay *r = relay_open(&sv->cfg, "pete@example.com", TRUE, &reply);
    g_assert_null(r);
    g_assert_cmpint(reply.code, ==, 0);
    g_assert_nonnull(strstr(reply.text, e->error));
    relay_reply_clear(&reply);
    server_free(sv);
}

static void
test_required_starttls_that_is_not_offered_fails(void)
{
    static const char *const script[] = {"220 hi\r\n", "250 smarthost.example\r\n", "221 Bye\r\n", NULL};
    Server *sv = server_start(script, NULL, 0, 2000);
    sv->cfg.starttls = RELAY_TLS_REQUIRED;
    RelayReply reply = {0};
    g_assert_null(relay_open(&sv->cfg, "pete@example.com", TRUE, &reply));
    g_assert_nonnull(strstr(reply.text, "does not offer STARTTLS"));
    relay_reply_clear(&reply);
    server_free(sv);
}

static void
test_freed_inside_data_the_final_dot_is_never_sent(void)
{
    static const char *const script[] = {"220 hi\r\n", "250 smarthost.example\r\n", "250 Ok\r\n",
                                         "250 Ok\r\n", "354 go\r\n", "250 should not happen\r\n", NULL};
    Server *sv = server_start(script, NULL, 0, 2000);
    RelayReply reply = {0};
    Relay *r = relay_open(&sv->cfg, "pete@example.com", TRUE, &reply);
    g_assert_true(relay_rcpt(r, "a@far.example", &reply));
    g_assert_true(relay_data(r, &reply));
    g_assert_true(relay_write(r, "half a message\r\n", 16));
    relay_free(&r);   /* the message was refused on our side */
    relay_reply_clear(&reply);
    server_join(sv);
    /* what was sent after DATA (maybe nothing: the text was still buffered) never ends it */
    const char *after = strstr(sv->received->str, "DATA\r\n");
    g_assert_nonnull(after);
    g_assert_true(g_str_has_prefix("DATA\r\nhalf a message\r\n", after));
    g_assert_null(strstr(after, "\r\n.\r\n"));
    g_assert_null(strstr(after, "QUIT"));
    server_free(sv);
}

static void
test_a_smarthost_that_is_down_fails_at_once(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);   /* a port of ours that nothing listens on */
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    g_assert_cmpint(bind(fd, (struct sockaddr *)&a, sizeof a), ==, 0);
    g_assert_cmpint(getsockname(fd, (struct sockaddr *)&a, &len), ==, 0);
    g_autofree char *hp = g_strdup_printf("127.0.0.1:%d", ntohs(a.sin_port));
    RelayConfig cfg = {.smarthost = hp, .helo = "mx", .connect_timeout_ms = 2000, .timeout_ms = 2000};
    RelayReply reply = {0};
    gint64 t0 = g_get_monotonic_time();
    g_assert_null(relay_open(&cfg, "pete@example.com", TRUE, &reply));
    g_assert_cmpint((g_get_monotonic_time() - t0) / 1000, <, 1000);
    g_assert_nonnull(strstr(reply.text, "cannot connect"));
    relay_reply_clear(&reply);
    close(fd);
}

static void
test_trusted_networks_match_by_prefix(void)
{
    CassmailConfig cfg = {0};
    char *nets[] = {"10.1.0.0/16", "192.0.2.7", "2001:db8::/32", NULL};
    cfg.relay_trusted_networks = nets;
    g_assert_true(config_peer_trusted(&cfg, "10.1.200.3"));
    g_assert_false(config_peer_trusted(&cfg, "10.2.0.1"));
    g_assert_true(config_peer_trusted(&cfg, "192.0.2.7"));
    g_assert_false(config_peer_trusted(&cfg, "192.0.2.8"));
    g_assert_true(config_peer_trusted(&cfg, "2001:db8:1::5"));
    g_assert_false(config_peer_trusted(&cfg, "2001:db9::5"));
    g_assert_false(config_peer_trusted(&cfg, "pipe"));
    g_assert_false(config_peer_trusted(&cfg, "local"));
    g_assert_false(config_peer_trusted(&cfg, NULL));
    cfg.relay_trusted_networks = NULL;
    g_assert_false(config_peer_trusted(&cfg, "10.1.200.3"));
}

static void
test_queue_ids_from_250_texts(void)
{
    g_autofree char *a = relay_queue_id("2.0.0 Ok: queued as 4ZqXyz1Abc");
    g_autofree char *b = relay_queue_id("OK id=1tQ2xR-000abc-Zz");
    g_autofree char *c = relay_queue_id("2.0.0 Ok");
    g_assert_cmpstr(a, ==, "4ZqXyz1Abc");
    g_assert_cmpstr(b, ==, "1tQ2xR-000abc-Zz");
    g_assert_null(c);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    signal(SIGPIPE, SIG_IGN);   /* a scripted smarthost writing to a client that gave up */
    g_test_add_func("/relay/transaction-multiline-dot-stuffing", test_a_transaction_with_multiline_replies_and_dot_stuffing);
    g_test_add_func("/relay/exchange-on-the-wire", test_the_exchange_on_the_wire);
    g_test_add_func("/relay/silent-smarthost-times-out", test_a_silent_smarthost_times_out);
    g_test_add_data_func("/relay/endless-line-refused", &endless_line,
                         test_an_endless_reply_is_refused_not_buffered);
    g_test_add_data_func("/relay/endless-multiline-refused", &endless_multiline,
                         test_an_endless_reply_is_refused_not_buffered);
    g_test_add_func("/relay/required-starttls-not-offered", test_required_starttls_that_is_not_offered_fails);
    g_test_add_func("/relay/freed-inside-data-no-dot", test_freed_inside_data_the_final_dot_is_never_sent);
    g_test_add_func("/relay/smarthost-down", test_a_smarthost_that_is_down_fails_at_once);
    g_test_add_func("/relay/trusted-networks", test_trusted_networks_match_by_prefix);
    g_test_add_func("/relay/queue-ids", test_queue_ids_from_250_texts);
    return g_test_run();
}
