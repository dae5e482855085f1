/*
 * test-password.c - util/password: hashes verify, are salted, reject malformed stored text, and
 * an unknown user costs as much time as a known one.
 */
#include "util/password.h"

#include <string.h>

#define FAST 1000   /* iterations for tests that do not measure cost */

static void
test_hash_then_verify_accepts_the_password(void)
{
    g_autofree char *h = password_hash_iterations("s3cret pass", FAST, NULL);
    g_assert_nonnull(h);
    g_assert_true(password_verify("s3cret pass", h));
}

static void
test_wrong_password_is_refused(void)
{
    g_autofree char *h = password_hash_iterations("s3cret", FAST, NULL);
    g_assert_false(password_verify("s3creT", h));
    g_assert_false(password_verify("s3cret ", h));
    g_assert_false(password_verify("", h));
}

static void
test_stored_text_is_self_describing_and_salted(void)
{
    g_autofree char *a = password_hash_iterations("same", 1234, NULL);
    g_autofree char *b = password_hash_iterations("same", 1234, NULL);
    g_assert_true(g_str_has_prefix(a, "$pbkdf2-sha256$i=1234$"));
    g_assert_cmpstr(a, !=, b);                 /* fresh salt each time */
    g_assert_null(strstr(a, "same"));          /* never the password itself */
    g_auto(GStrv) parts = g_strsplit(a, "$", -1);
    g_assert_cmpuint(g_strv_length(parts), ==, 5);
    g_assert_cmpuint(strlen(parts[3]), ==, 24);   /* 16-octet salt */
    g_assert_cmpuint(strlen(parts[4]), ==, 44);   /* 32-octet key */
}

static void
test_default_cost_is_embedded(void)
{
    g_autofree char *h = password_hash("pw", NULL);
    g_autofree char *want = g_strdup_printf("$pbkdf2-sha256$i=%d$", PASSWORD_ITERATIONS);
    g_assert_true(g_str_has_prefix(h, want));
    g_assert_true(password_verify("pw", h));
}

static void
test_empty_or_huge_password_cannot_be_hashed(void)
{
    GError *e = NULL;
    g_assert_null(password_hash_iterations("", FAST, &e));
    g_assert_error(e, PASSWORD_ERROR, PASSWORD_ERROR_INVALID);
    g_clear_error(&e);
    g_autofree char *big = g_strnfill(PASSWORD_MAX_LEN + 1, 'x');
    g_assert_null(password_hash_iterations(big, FAST, &e));
    g_assert_error(e, PASSWORD_ERROR, PASSWORD_ERROR_INVALID);
    g_clear_error(&e);
    g_assert_null(password_hash_iterations("x", 10, &e));   /* too cheap */
    g_assert_error(e, PASSWORD_ERROR, PASSWORD_ERROR_INVALID);
    g_clear_error(&e);
}

static void
test_malformed_stored_text_never_matches(void)
{
    g_autofree char *good = password_hash_iterations("pw", FAST, NULL);
    g_auto(GStrv) p = g_strsplit(good, "$", -1);   /* "", scheme, i=N, salt, key */
    const char *bad[] = {
        "", "pw", "$", "$$$$", "plain text",
        "$pbkdf2-sha1$i=1000$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        NULL,
    };
    for (int i = 0; bad[i]; i++)
        g_assert_false(password_verify("pw", bad[i]));
    g_assert_false(password_verify("pw", NULL));
    char *v[] = {
        g_strdup_printf("$pbkdf2-sha256$i=%s$%s$%s", "10", p[3], p[4]),          /* cost too low */
        g_strdup_printf("$pbkdf2-sha256$i=%s$%s$%s", "x1000", p[3], p[4]),
        g_strdup_printf("$pbkdf2-sha256$i=%s$%s$%s", "", p[3], p[4]),
        g_strdup_printf("$pbkdf2-sha256$i=%s$%s$%s", "99999999999", p[3], p[4]),
        g_strdup_printf("$pbkdf2-sha256$i=1000$%s", p[3]),                       /* no key */
        g_strdup_printf("$pbkdf2-sha256$i=1000$$%s", p[4]),                      /* no salt */
        g_strdup_printf("$pbkdf2-sha256$i=1000$%s$%s", p[3], "AAAA"),            /* key too short */
        g_strdup_printf("$pbkdf2-sha256$i=1000$%s$%s!", p[3], p[4]),             /* not base64 */
        g_strdup_printf("$pbkdf2-sha256$i=1000$%s$%s$", p[3], p[4]),             /* extra field */
        g_strdup_printf("$pbkdf2-sha256$i=1000$%s$%.43s", p[3], p[4]),           /* truncated */
        g_strdup_printf("$pbkdf2-sha256$i=1000$%s$=%.43s", p[3], p[4]),          /* padding first */
    };
    for (gsize i = 0; i < G_N_ELEMENTS(v); i++) {
        g_assert_false(password_verify("pw", v[i]));
        g_free(v[i]);
    }
    g_assert_true(password_verify("pw", good));
}

static void
test_key_bytes_matter(void)
{
    g_autofree char *h = password_hash_iterations("pw", FAST, NULL);
    /* Flip one base64 character of the key: still well-formed, must not match. */
    gsize n = strlen(h);
    h[n - 3] = h[n - 3] == 'A' ? 'B' : 'A';
    g_assert_false(password_verify("pw", h));
}

/* spent - the PBKDF2 iterations FN(DATA) spent */
static guint64
spent(void (*fn)(gconstpointer), gconstpointer data)
{
    guint64 before = password_iterations_spent();
    fn(data);
    return password_iterations_spent() - before;
}

static void
verify_wrong(gconstpointer stored)
{
    g_assert_false(password_verify("wrong", stored));
}

static void
verify_right(gconstpointer stored)
{
    g_assert_true(password_verify("right", stored));
}

static void
verify_unknown(gconstpointer unused)
{
    (void)unused;
    password_verify_dummy("wrong");
}

static void
test_unknown_user_costs_as_much_as_a_known_one(void)
{
    g_autofree char *h = password_hash("right", NULL);
    g_assert_cmpuint(spent(verify_unknown, NULL), ==, PASSWORD_ITERATIONS);
    g_assert_cmpuint(spent(verify_wrong, h), ==, PASSWORD_ITERATIONS);
    g_assert_cmpuint(spent(verify_right, h), ==, PASSWORD_ITERATIONS);
    g_assert_cmpuint(password_check_cost(h), ==, PASSWORD_ITERATIONS);
}

static void
test_a_cheaper_hash_is_padded_to_the_default_cost(void)
{
    /* `passwd --iterations 1000`: its user must not answer faster than an unknown name */
    g_autofree char *h = password_hash_iterations("right", FAST, NULL);
    g_assert_cmpuint(spent(verify_wrong, h), ==, PASSWORD_ITERATIONS);
    g_assert_cmpuint(spent(verify_right, h), ==, PASSWORD_ITERATIONS);
    g_assert_cmpuint(spent(verify_unknown, NULL), ==, PASSWORD_ITERATIONS);
    g_assert_cmpuint(password_check_cost(h), ==, PASSWORD_ITERATIONS);
}

static void
test_a_dearer_hash_costs_its_own_count(void)
{
    /* above the default a check costs what the hash says: documented as visible by timing */
    g_autofree char *h = password_hash_iterations("right", PASSWORD_ITERATIONS + 1000, NULL);
    g_assert_cmpuint(spent(verify_wrong, h), ==, PASSWORD_ITERATIONS + 1000);
    g_assert_cmpuint(password_check_cost(h), ==, PASSWORD_ITERATIONS + 1000);
}

static void
test_a_malformed_hash_costs_the_default(void)
{
    g_assert_cmpuint(spent(verify_wrong, "$pbkdf2-sha256$i=1000$broken"), ==, PASSWORD_ITERATIONS);
    g_assert_cmpuint(spent(verify_wrong, "plain text"), ==, PASSWORD_ITERATIONS);
    g_assert_cmpuint(password_check_cost("plain text"), ==, PASSWORD_ITERATIONS);
}

/* The configured cost ([auth] password_iterations) is what every check costs at least and what
 * new hashes get; the rules above hold around it. */
static void
test_the_configured_cost_sets_every_checks_floor(void)
{
    password_set_cost(2000);
    g_autofree char *h = password_hash("right", NULL);
    g_autofree char *cheap = password_hash_iterations("right", 1000, NULL);
    g_autofree char *dear = password_hash_iterations("right", 5000, NULL);
    g_assert_cmpuint(password_check_cost(h), ==, 2000);
    g_assert_cmpuint(spent(verify_unknown, NULL), ==, 2000);
    g_assert_cmpuint(spent(verify_wrong, h), ==, 2000);
    g_assert_cmpuint(spent(verify_right, cheap), ==, 2000);
    g_assert_cmpuint(spent(verify_wrong, cheap), ==, 2000);
    g_assert_cmpuint(spent(verify_right, dear), ==, 5000);
    g_assert_cmpuint(spent(verify_unknown, "plain text"), ==, 2000);
    password_set_cost(1);   /* clamped to the accepted range */
    g_assert_cmpuint(password_get_cost(), ==, PASSWORD_ITERATIONS_MIN);
    password_set_cost(PASSWORD_ITERATIONS);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/password/hash-then-verify-accepts-the-password",
                    test_hash_then_verify_accepts_the_password);
    g_test_add_func("/password/wrong-password-is-refused", test_wrong_password_is_refused);
    g_test_add_func("/password/stored-text-is-self-describing-and-salted",
                    test_stored_text_is_self_describing_and_salted);
    g_test_add_func("/password/default-cost-is-embedded", test_default_cost_is_embedded);
    g_test_add_func("/password/empty-or-huge-password-cannot-be-hashed",
                    test_empty_or_huge_password_cannot_be_hashed);
    g_test_add_func("/password/malformed-stored-text-never-matches",
                    test_malformed_stored_text_never_matches);
    g_test_add_func("/password/key-bytes-matter", test_key_bytes_matter);
    g_test_add_func("/password/unknown-user-costs-as-much-as-a-known-one",
                    test_unknown_user_costs_as_much_as_a_known_one);
    g_test_add_func("/password/a-cheaper-hash-is-padded-to-the-default-cost",
                    test_a_cheaper_hash_is_padded_to_the_default_cost);
    g_test_add_func("/password/a-dearer-hash-costs-its-own-count", test_a_dearer_hash_costs_its_own_count);
    g_test_add_func("/password/a-malformed-hash-costs-the-default", test_a_malformed_hash_costs_the_default);
    g_test_add_func("/password/the-configured-cost-sets-every-checks-floor",
                    test_the_configured_cost_sets_every_checks_floor);
    return g_test_run();
}
