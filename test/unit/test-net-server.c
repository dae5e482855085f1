/*
 * test-net-server.c - net/server: listen addresses, the fork-per-connection listener (the busy
 * reply past max_children, reaping, SIGTERM stopping it and its sessions, a client address's
 * share, eviction passing over a held session) and inetd mode.
 */
#include "net/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/log.h"

#define BUSY "421 4.3.2 Too many connections, try again later\r\n"

static void
test_parse_accepts_every_documented_form(void)
{
    static const struct {
        const char *text, *host;
        int port;
    } cases[] = {
        {"127.0.0.1:2525", "127.0.0.1", 2525},
        {"0.0.0.0:25", "0.0.0.0", 25},
        {"[::1]:110", "::1", 110},
        {"[::]:995", "::", 995},
        {":2525", NULL, 2525},
        {"*:143", NULL, 143},
        {"mail.example.com:587", "mail.example.com", 587},
        {"localhost:0", "localhost", 0},
        {"127.0.0.1:65535", "127.0.0.1", 65535},
    };
    for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *host = NULL;
        int port = -1;
        g_autoptr(GError) error = NULL;
        g_assert_true(net_parse_listen(cases[i].text, &host, &port, &error));
        g_assert_no_error(error);
        g_assert_cmpstr(host, ==, cases[i].host);
        g_assert_cmpint(port, ==, cases[i].port);
    }
}

static void
test_parse_rejects_malformed_addresses(void)
{
    static const char *bad[] = {
        "", "2525", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:25x",
        "127.0.0.1:123456", "::1:110", "[::1]110", "[::1]:", "[]:25", "[1.2.3.4]:25",
        "[::1:110", "a b:25", "host/x:25",
    };
    for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
        char *host = (char *)"untouched";
        int port = -1;
        g_autoptr(GError) error = NULL;
        g_assert_false(net_parse_listen(bad[i], &host, &port, &error));
        g_assert_error(error, NET_ERROR, NET_ERROR_ADDRESS);
        g_assert_null(host);
    }
    g_autoptr(GError) error = NULL;
    char *host = NULL;
    int port;
    g_autofree char *huge = g_strnfill(1000, 'a');
    g_assert_false(net_parse_listen(huge, &host, &port, &error));
    g_assert_false(net_parse_listen(NULL, &host, &port, NULL));
}

static void
test_listen_port_zero_gets_a_free_port(void)
{
    g_autoptr(GError) error = NULL;
    int fd = net_listen("127.0.0.1:0", &error);
    g_assert_no_error(error);
    g_assert_cmpint(fd, >=, 0);
    int port = net_bound_port(fd);
    g_assert_cmpint(port, >, 0);
    /* the same port again is in use */
    g_autofree char *again = g_strdup_printf("127.0.0.1:%d", port);
    int fd2 = net_listen(again, &error);
    g_assert_cmpint(fd2, ==, -1);
    g_assert_error(error, NET_ERROR, NET_ERROR_SYSTEM);
    g_test_message("%s", error->message);
    close(fd);
}

static void
test_listen_on_every_address(void)
{
    g_autoptr(GError) error = NULL;
    int fd = net_listen(":0", &error);
    g_assert_no_error(error);
    g_assert_cmpint(net_bound_port(fd), >, 0);
    close(fd);
    g_assert_cmpint(net_listen("no-such-host.invalid:25", &error), ==, -1);
    g_assert_error(error, NET_ERROR, NET_ERROR_ADDRESS);
}

/* client_connect - a TCP connection to 127.0.0.1:PORT as a NetConn (the fd in *FD) */
static NetConn *
client_connect(int port, int *fd)
{
    *fd = socket(AF_INET, SOCK_STREAM, 0);
    g_assert_cmpint(*fd, >=, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((guint16)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    g_assert_cmpint(connect(*fd, (struct sockaddr *)&sin, sizeof sin), ==, 0);
    return net_conn_new(*fd, *fd);
}

/* client_close - the NetConn and its fd */
static void
client_close(NetConn **c, int fd)
{
    net_conn_free(c);
    close(fd);
}

/* echo_handler - greets with the peer address, answers one line, ends the session */
static void
echo_handler(NetConn *conn, const char *peer, gpointer user_data)
{
    g_assert_cmpstr(user_data, ==, "data");
    net_conn_printf(conn, "220 hello %s\r\n", peer);
    net_conn_flush(conn);
    g_autoptr(GString) line = g_string_new(NULL);
    if (net_conn_read_line(conn, 512, 20000, line) == NET_LINE_OK)
        net_conn_printf(conn, "250 %s", line->str);
}

/* wait_exit - the exit status of PID, waiting at most TIMEOUT_MS (-1 when it did not end) */
static int
wait_exit(pid_t pid, int timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    int status;
    while (g_get_monotonic_time() < deadline) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        g_usleep(20 * 1000);
    }
    return -1;
}

/* server_start - net_serve_fd on a free port of 127.0.0.1 (its number in *PORT) in a child
 * process that first runs SETUP: MAX_CHILDREN sessions of HANDLER with DATA; the child's pid */
static pid_t
server_start(void (*setup)(void), int max_children, NetHandler handler, gpointer data, int *port)
{
    g_autoptr(GError) error = NULL;
    int lfd = net_listen("127.0.0.1:0", &error);
    g_assert_no_error(error);
    *port = net_bound_port(lfd);
    pid_t server = fork();
    g_assert_cmpint(server, >=, 0);
    if (server == 0) {
        setup();
        int rc = net_serve_fd(lfd, max_children, BUSY, handler, data, NULL);
        _exit(rc == 0 ? 0 : 3);
    }
    close(lfd);
    return server;
}

/* log_to_stderr - server_start's SETUP for a server whose log the test shows */
static void
log_to_stderr(void)
{
    log_open("test-net-server", TRUE);
}

static void
test_serve_refuses_past_max_children_and_stops_on_sigterm(void)
{
    int port;
    pid_t server = server_start(log_to_stderr, 1, echo_handler, (gpointer) "data", &port);
    g_autoptr(GString) line = g_string_new(NULL);

    /* the first connection gets a session */
    int fd1;
    NetConn *c1 = client_connect(port, &fd1);
    g_assert_cmpint(net_conn_read_line(c1, 512, 10000, line), ==, NET_LINE_OK);
    g_assert_cmpstr(line->str, ==, "220 hello 127.0.0.1\r\n");

    /* the second, while the first is alive, gets the busy reply and is closed */
    int fd2;
    NetConn *c2 = client_connect(port, &fd2);
    g_assert_cmpint(net_conn_read_line(c2, 512, 10000, line), ==, NET_LINE_OK);
    g_assert_cmpstr(line->str, ==, BUSY);
    g_assert_cmpint(net_conn_read_line(c2, 512, 10000, line), ==, NET_LINE_EOF);
    client_close(&c2, fd2);

    /* the first session ends normally */
    g_assert_true(net_conn_printf(c1, "PING\r\n") && net_conn_flush(c1));
    g_assert_cmpint(net_conn_read_line(c1, 512, 10000, line), ==, NET_LINE_OK);
    g_assert_cmpstr(line->str, ==, "250 PING\r\n");
    g_assert_cmpint(net_conn_read_line(c1, 512, 10000, line), ==, NET_LINE_EOF);
    client_close(&c1, fd1);

    /* once that child is reaped there is room again */
    int fd3 = -1;
    NetConn *c3 = NULL;
    gboolean served = FALSE;
    for (int i = 0; i < 200 && !served; i++) {
        c3 = client_connect(port, &fd3);
        g_assert_cmpint(net_conn_read_line(c3, 512, 10000, line), ==, NET_LINE_OK);
        served = g_str_has_prefix(line->str, "220 ");
        if (!served) {
            client_close(&c3, fd3);
            g_usleep(50 * 1000);
        }
    }
    g_assert_true(served);

    /* SIGTERM: the server stops its session (c3 sees EOF) and returns 0 */
    g_assert_cmpint(kill(server, SIGTERM), ==, 0);
    g_assert_cmpint(wait_exit(server, 15000), ==, 0);
    g_assert_cmpint(net_conn_read_line(c3, 512, 10000, line), ==, NET_LINE_EOF);
    client_close(&c3, fd3);

    /* and nobody listens any more */
    int fd4 = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((guint16)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    g_assert_cmpint(connect(fd4, (struct sockaddr *)&sin, sizeof sin), ==, -1);
    close(fd4);
}

static void
test_client_share_leaves_another_address_a_slot(void)
{
    net_serve_set_client_limit(50);
    g_assert_cmpint(net_serve_client_share(1), ==, 1);
    g_assert_cmpint(net_serve_client_share(2), ==, 1);
    g_assert_cmpint(net_serve_client_share(4), ==, 3);
    g_assert_cmpint(net_serve_client_share(51), ==, 50);
    g_assert_cmpint(net_serve_client_share(1000), ==, 50);
    net_serve_set_client_limit(0);   /* no limit of its own */
    g_assert_cmpint(net_serve_client_share(4), ==, 4);
    net_serve_set_client_limit(NET_SERVE_CLIENT_LIMIT);
}

/* hold_handler - greets, answers two lines; after a first line "HOLD" it holds the session */
static void
hold_handler(NetConn *conn, const char *peer, gpointer user_data)
{
    (void)user_data;
    net_conn_printf(conn, "220 hello %s\r\n", peer);
    net_conn_flush(conn);
    g_autoptr(GString) line = g_string_new(NULL);
    for (int i = 0; i < 2 && net_conn_read_line(conn, 512, 20000, line) == NET_LINE_OK; i++) {
        if (i == 0 && g_str_has_prefix(line->str, "HOLD"))
            net_session_hold(TRUE);
        net_conn_printf(conn, "250 %s", line->str);
        net_conn_flush(conn);
    }
}

/* say - send LINE on C and expect REPLY */
static void
say(NetConn *c, const char *line, const char *reply)
{
    g_autoptr(GString) got = g_string_new(NULL);
    g_assert_true(net_conn_printf(c, "%s", line) && net_conn_flush(c));
    g_assert_cmpint(net_conn_read_line(c, 512, 10000, got), ==, NET_LINE_OK);
    g_assert_cmpstr(got->str, ==, reply);
}

/* evict_after_a_second - server_start's SETUP for the eviction test */
static void
evict_after_a_second(void)
{
    net_serve_set_evict_idle(1);
    net_serve_set_client_limit(0);   /* every client here is 127.0.0.1 */
}

static void
test_eviction_passes_over_a_held_session(void)
{
    int port;
    pid_t server = server_start(evict_after_a_second, 2, hold_handler, NULL, &port);
    g_autoptr(GString) line = g_string_new(NULL);
    int fd1, fd2, fd3;
    NetConn *held = client_connect(port, &fd1);
    g_assert_cmpint(net_conn_read_line(held, 512, 10000, line), ==, NET_LINE_OK);
    say(held, "HOLD\r\n", "250 HOLD\r\n");
    g_usleep(200 * 1000);
    NetConn *idle = client_connect(port, &fd2);
    g_assert_cmpint(net_conn_read_line(idle, 512, 10000, line), ==, NET_LINE_OK);
    say(idle, "FREE\r\n", "250 FREE\r\n");
    g_usleep(1500 * 1000);   /* both silent past the eviction time, the held one longest */

    /* the listener is full: the newcomer is served by closing the idle session, not the held */
    NetConn *third = client_connect(port, &fd3);
    g_assert_cmpint(net_conn_read_line(third, 512, 10000, line), ==, NET_LINE_OK);
    g_assert_cmpstr(line->str, ==, "220 hello 127.0.0.1\r\n");
    g_assert_cmpint(net_conn_read_line(idle, 512, 10000, line), ==, NET_LINE_OK);
    g_assert_cmpstr(line->str, ==, BUSY);
    g_assert_cmpint(net_conn_read_line(idle, 512, 10000, line), ==, NET_LINE_EOF);
    say(held, "PING\r\n", "250 PING\r\n");
    client_close(&idle, fd2);
    client_close(&held, fd1);
    client_close(&third, fd3);
    g_assert_cmpint(kill(server, SIGTERM), ==, 0);
    g_assert_cmpint(wait_exit(server, 15000), ==, 0);
}

static void
test_serve_rejects_bad_arguments(void)
{
    g_autoptr(GError) error = NULL;
    g_assert_cmpint(net_serve_fd(-1, 1, BUSY, echo_handler, NULL, &error), ==, -1);
    g_assert_error(error, NET_ERROR, NET_ERROR_SYSTEM);
    g_clear_error(&error);
    g_assert_cmpint(net_listen("nonsense", &error), ==, -1);
    g_assert_error(error, NET_ERROR, NET_ERROR_ADDRESS);
}

/* peer_handler - writes the peer address it was given */
static void
peer_handler(NetConn *conn, const char *peer, gpointer user_data)
{
    (void)user_data;
    net_conn_printf(conn, "peer=%s\r\n", peer);
}

/* run_inetd - fork a child whose fds 0 and 1 are IN and OUT, running net_serve_inetd; return the
 * line the handler wrote to OUT_READ */
static char *
run_inetd(int in, int out, int out_read)
{
    pid_t pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        if (dup2(in, 0) < 0 || dup2(out, 1) < 0)
            _exit(2);
        net_serve_inetd(peer_handler, NULL);
        _exit(0);
    }
    g_assert_cmpint(wait_exit(pid, 10000), ==, 0);
    char buf[128] = "";
    ssize_t n = read(out_read, buf, sizeof buf - 1);
    g_assert_cmpint(n, >, 0);
    return g_strndup(buf, (gsize)n);
}

static void
test_inetd_mode_serves_fds_0_and_1(void)
{
    int sp[2];
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), ==, 0);
    g_autofree char *got = run_inetd(sp[0], sp[0], sp[1]);
    g_assert_cmpstr(got, ==, "peer=local\r\n");
    close(sp[0]);
    close(sp[1]);

    int in[2], out[2];
    g_assert_cmpint(pipe(in), ==, 0);
    g_assert_cmpint(pipe(out), ==, 0);
    g_autofree char *got2 = run_inetd(in[0], out[1], out[0]);
    g_assert_cmpstr(got2, ==, "peer=pipe\r\n");
    close(in[0]);
    close(in[1]);
    close(out[0]);
    close(out[1]);
}

static void
test_peer_text_of_a_tcp_connection(void)
{
    g_autoptr(GError) error = NULL;
    int lfd = net_listen("127.0.0.1:0", &error);
    g_assert_no_error(error);
    int cfd;
    NetConn *c = client_connect(net_bound_port(lfd), &cfd);
    int afd = -1;
    for (int i = 0; i < 100 && afd < 0; i++) {
        afd = accept(lfd, NULL, NULL);
        if (afd < 0)
            g_usleep(10 * 1000);   /* the listener is non-blocking */
    }
    g_assert_cmpint(afd, >=, 0);
    g_autofree char *peer = net_peer_text(afd);
    g_assert_cmpstr(peer, ==, "127.0.0.1");
    close(afd);
    client_close(&c, cfd);
    close(lfd);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    log_open("test-net-server", TRUE);
    g_test_add_func("/net/listen/parse-accepts-every-documented-form",
                    test_parse_accepts_every_documented_form);
    g_test_add_func("/net/listen/parse-rejects-malformed-addresses",
                    test_parse_rejects_malformed_addresses);
    g_test_add_func("/net/listen/port-zero-gets-a-free-port", test_listen_port_zero_gets_a_free_port);
    g_test_add_func("/net/listen/on-every-address", test_listen_on_every_address);
    g_test_add_func("/net/listen/peer-text-of-a-tcp-connection", test_peer_text_of_a_tcp_connection);
    g_test_add_func("/net/serve/refuses-past-max-children-and-stops-on-sigterm",
                    test_serve_refuses_past_max_children_and_stops_on_sigterm);
    g_test_add_func("/net/serve/rejects-bad-arguments", test_serve_rejects_bad_arguments);
    g_test_add_func("/net/serve/client-share-leaves-another-address-a-slot",
                    test_client_share_leaves_another_address_a_slot);
    g_test_add_func("/net/serve/eviction-passes-over-a-held-session",
                    test_eviction_passes_over_a_held_session);
    g_test_add_func("/net/serve/inetd-mode-serves-fds-0-and-1", test_inetd_mode_serves_fds_0_and_1);
    return g_test_run();
}
