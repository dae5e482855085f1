/*
 * test-util-text.c - util/text: the host:port parser the Cassandra client, the relay, the
 * configuration and the listener share, and the strict base64 check of SMTP AUTH and stored passwords.
 */
#include "util/text.h"

#include <string.h>

static void
test_hostport_takes_names_addresses_and_brackets(void)
{
    static const struct {
        const char *text;
        guint default_port;
        const char *host;   /* NULL: refused */
        guint port;
    } cases[] = {
        {"127.0.0.1:9160", 0, "127.0.0.1", 9160},
        {"mail.example:25", 0, "mail.example", 25},
        {"[::1]:2525", 0, "::1", 2525},
        {"cass1", 9160, "cass1", 9160},
        {"[::1]", 9160, "::1", 9160},
        {"cass1", 0, NULL, 0},           /* a port is needed */
        {"[::1]", 0, NULL, 0},
        {":25", 0, NULL, 0},             /* no host */
        {"[]:25", 0, NULL, 0},
        {"host:", 0, NULL, 0},
        {"host:0", 0, NULL, 0},          /* ports are 1 to 65535 */
        {"host:65536", 0, NULL, 0},
        {"host:+25", 0, NULL, 0},
        {"host:25x", 0, NULL, 0},
        {"[::1]x25", 0, NULL, 0},
        {"[::1:25", 0, NULL, 0},
    };
    for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
        char *host = NULL;
        guint port = 0;
        gboolean ok = text_hostport_split(cases[i].text, cases[i].default_port, &host, &port);
        g_assert_cmpint(ok, ==, cases[i].host != NULL);
        g_assert_cmpstr(host, ==, cases[i].host);
        if (ok)
            g_assert_cmpuint(port, ==, cases[i].port);
        g_free(host);
    }
}

/* the listen form: port 0, every address, IPv6 only in brackets (more in test-net-server.c) */
static void
test_hostport_listen_form_and_why_not(void)
{
    char *host = (char *)"untouched";
    guint port = 1;
    g_assert_null(text_hostport_parse("*:0", 0, TEXT_HOSTPORT_LISTEN, &host, &port));
    g_assert_null(host);
    g_assert_cmpuint(port, ==, 0);
    g_assert_null(text_hostport_parse(":25", 0, TEXT_HOSTPORT_LISTEN, &host, &port));
    g_assert_null(host);
    g_assert_cmpstr(text_hostport_parse("::1:110", 0, TEXT_HOSTPORT_LISTEN, &host, &port), ==,
                    "an IPv6 address goes in brackets: [ADDRESS]:PORT");
    g_assert_cmpstr(text_hostport_parse("[::1]:0", 0, 0, &host, &port), ==,
                    "the port must be 1..65535");
    g_assert_cmpstr(text_hostport_parse("*:25", 0, 0, &host, &port), ==, NULL);   /* a name */
    g_assert_cmpstr(host, ==, "*");
    g_free(host);
}

static void
test_base64_check_is_strict(void)
{
    const char *good[] = {"", "AAAA", "dGVzdA==", "dGVzdDE=", "a+/9"};
    const char *bad[] = {"A", "AAA", "AAAAA", "=AAA", "A=AA", "AA=A", "dGVzdA=\n", "dG Vz",
                         "AB==AAAA", "A===", "AB=C"};
    for (gsize i = 0; i < G_N_ELEMENTS(good); i++)
        g_assert_true(text_base64_valid(good[i], strlen(good[i])));
    for (gsize i = 0; i < G_N_ELEMENTS(bad); i++)
        g_assert_false(text_base64_valid(bad[i], strlen(bad[i])));
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/text/hostport-takes-names-addresses-and-brackets",
                    test_hostport_takes_names_addresses_and_brackets);
    g_test_add_func("/text/hostport-listen-form-and-why-not", test_hostport_listen_form_and_why_not);
    g_test_add_func("/text/base64-check-is-strict", test_base64_check_is_strict);
    return g_test_run();
}
