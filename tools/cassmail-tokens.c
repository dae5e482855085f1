/*
 * cassmail-tokens - RandomPartitioner tokens for Cassandra 0.7 rings.
 *
 *   cassmail-tokens N                 the N balanced initial tokens i * 2^127 / N (i = 0 .. N-1),
 *                                     one a line, in decimal
 *   cassmail-tokens --yaml N          the same as cassandra.yaml lines ("# node I" and
 *                                     "initial_token: T" per node)
 *   cassmail-tokens --key KEY         "token T": the token of row key KEY
 *   cassmail-tokens --key KEY --ring T1,T2,...|FILE [--rf R]
 *                                     also "owner node I token T" and R-1 lines "replica node I
 *                                     token T": the node owning KEY and the next ones clockwise
 *   cassmail-tokens --move N M        growing a balanced ring from N to M nodes: the new nodes'
 *                                     tokens, and which existing nodes must move
 *
 * RandomPartitioner (Cassandra 0.7): a key's token is the MD5 of its octets read as a signed
 * big-endian two's-complement integer, absolute value (Java's new BigInteger(md5).abs()); tokens
 * lie in 0 .. 2^127. A node owns the keys whose tokens fall in (previous node's token, its own
 * token]; with SimpleStrategy the next RF-1 nodes clockwise hold the other replicas. Nodes of
 * --ring are numbered 1, 2, ... in the order given (for cassmail-tokens N's output, token order);
 * ownership follows token order. Exact arithmetic with OpenSSL BIGNUM.
 *
 * Exit status: 0; 64 (EX_USAGE) for bad input; 70 (EX_SOFTWARE) if OpenSSL fails.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include <glib.h>
#include <openssl/bn.h>
#include <openssl/evp.h>

#define MAX_NODES 65536
#define PROG "cassmail-tokens"

/* need - exit with EX_SOFTWARE when an OpenSSL call failed (only on allocation failure) */
static void
need(int ok)
{
    if (!ok) {
        fprintf(stderr, PROG ": OpenSSL failed (out of memory?)\n");
        exit(EX_SOFTWARE);
    }
}

/* parse_count - a node count from 1 to MAX_NODES from TEXT, or 0 */
static long
parse_count(const char *text)
{
    gint64 n;
    if (!text || !g_ascii_string_to_signed(text, 10, 1, MAX_NODES, &n, NULL))
        return 0;
    return (long)n;
}

/* count_error - the usage message for a bad node count TEXT (NULL: none given) */
static int
count_error(const char *text)
{
    if (text)
        fprintf(stderr, PROG ": the number of nodes must be a whole number from 1 to %d (got \"%s\")\n",
                MAX_NODES, text);
    else
        fprintf(stderr, PROG ": give the number of nodes, a whole number from 1 to %d (see --help)\n",
                MAX_NODES);
    return EX_USAGE;
}

/* two_pow - a new BIGNUM holding 2^BITS */
static BIGNUM *
two_pow(int bits)
{
    BIGNUM *t = BN_new();
    need(t && BN_set_bit(t, bits));
    return t;
}

/* balanced_token - a new BIGNUM holding i * 2^127 / n, rounded down */
static BIGNUM *
balanced_token(long i, long n, BN_CTX *ctx)
{
    BIGNUM *t = two_pow(127), *div = BN_new();
    need(div && BN_mul_word(t, (BN_ULONG)i) && BN_set_word(div, (BN_ULONG)n) &&
         BN_div(t, NULL, t, div, ctx));
    BN_free(div);
    return t;
}

/* print_bn - print T in decimal between PREFIX and SUFFIX */
static void
print_bn(const char *prefix, const BIGNUM *t, const char *suffix)
{
    char *s = BN_bn2dec(t);
    need(s != NULL);
    printf("%s%s%s", prefix, s, suffix);
    OPENSSL_free(s);
}

/* key_token - a new BIGNUM holding the RandomPartitioner token of the LEN octets at KEY */
static BIGNUM *
key_token(const char *key, size_t len)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    need(EVP_Digest(key, len, md, &mdlen, EVP_md5(), NULL) && mdlen == 16);
    BIGNUM *t = BN_bin2bn(md, (int)mdlen, NULL);
    need(t != NULL);
    if (md[0] & 0x80) {
        /* negative in two's complement: |x| = 2^128 - (x read unsigned) */
        BIGNUM *m = two_pow(128);
        need(BN_sub(t, m, t));
        BN_free(m);
    }
    return t;
}

/* parse_ring - the tokens of "t1,t2,..." or of a file of tokens (separated by commas, blanks or
 * newlines), in the order given; NULL after a message on bad input */
static GPtrArray *
parse_ring(const char *spec)
{
    g_autofree char *text = NULL;
    if (g_file_test(spec, G_FILE_TEST_IS_REGULAR)) {
        g_autoptr(GError) error = NULL;
        if (!g_file_get_contents(spec, &text, NULL, &error)) {
            fprintf(stderr, PROG ": %s\n", error->message);
            return NULL;
        }
    } else {
        text = g_strdup(spec);
    }
    GPtrArray *ring = g_ptr_array_new_with_free_func((GDestroyNotify)BN_free);
    g_auto(GStrv) parts = g_strsplit_set(text, ", \t\r\n", -1);
    BIGNUM *max = two_pow(127);
    for (char **p = parts; *p; p++) {
        if (!**p)
            continue;
        BIGNUM *t = NULL;
        if (strspn(*p, "0123456789") != strlen(*p) || strlen(*p) > 60 || !BN_dec2bn(&t, *p) ||
            BN_cmp(t, max) > 0) {
            fprintf(stderr, PROG ": not a token (a whole number from 0 to 2^127): \"%s\"\n", *p);
            BN_free(t);
            BN_free(max);
            g_ptr_array_unref(ring);
            return NULL;
        }
        g_ptr_array_add(ring, t);
    }
    BN_free(max);
    if (ring->len == 0) {
        fprintf(stderr, PROG ": the ring has no tokens\n");
        g_ptr_array_unref(ring);
        return NULL;
    }
    return ring;
}

/* ring_order - the indexes of RING's tokens sorted by token (a new array of RING->len) */
static guint *
ring_order(GPtrArray *ring)
{
    guint n = ring->len, *order = g_new(guint, n);
    for (guint i = 0; i < n; i++)
        order[i] = i;
    for (guint i = 1; i < n; i++)    /* insertion sort: rings are small */
        for (guint j = i; j > 0 && BN_cmp(g_ptr_array_index(ring, order[j - 1]),
                                          g_ptr_array_index(ring, order[j])) > 0; j--) {
            guint tmp = order[j];
            order[j] = order[j - 1];
            order[j - 1] = tmp;
        }
    return order;
}

/* cmd_key - print KEY's token and, with RING_SPEC, its owner and RF-1 further replicas */
static int
cmd_key(const char *key, const char *ring_spec, int rf)
{
    BIGNUM *t = key_token(key, strlen(key));
    print_bn("token ", t, "\n");
    int rc = EX_OK;
    if (ring_spec) {
        GPtrArray *ring = parse_ring(ring_spec);
        if (!ring) {
            BN_free(t);
            return EX_USAGE;
        }
        guint n = ring->len;
        if (rf < 1 || (guint)rf > n) {
            fprintf(stderr, PROG ": --rf must be from 1 to the ring's size (%u)\n", n);
            rc = EX_USAGE;
        } else {
            guint *order = ring_order(ring);
            guint first = 0;    /* the first node whose token >= the key's, wrapping to the lowest */
            while (first < n && BN_cmp(g_ptr_array_index(ring, order[first]), t) < 0)
                first++;
            first %= n;
            for (int r = 0; r < rf; r++) {
                guint node = order[(first + (guint)r) % n];
                printf("%s node %u token ", r == 0 ? "owner" : "replica", node + 1);
                print_bn("", g_ptr_array_index(ring, node), "\n");
            }
            g_free(order);
        }
        g_ptr_array_unref(ring);
    }
    BN_free(t);
    return rc;
}

/* cmd_move - print how a balanced ring of N nodes grows to M nodes */
static int
cmd_move(long n, long m, BN_CTX *ctx)
{
    /* Existing node i takes the new slot nearest its old position (distinct because M > N);
     * the slots left over go to the new nodes. Doubling a ring moves nobody. */
    gboolean *taken = g_new0(gboolean, m);
    for (long i = 0; i < n; i++) {
        long j = (i * m + n / 2) / n;
        taken[j] = TRUE;
        BIGNUM *old = balanced_token(i, n, ctx), *t = balanced_token(j, m, ctx);
        printf("node %ld: ", i + 1);
        if (BN_cmp(old, t) == 0) {
            print_bn("keeps ", t, "\n");
        } else {
            print_bn("moves from ", old, "");
            print_bn(" to ", t, "\n");
        }
        BN_free(old);
        BN_free(t);
    }
    for (long j = 0, k = n; j < m; j++) {
        if (taken[j])
            continue;
        BIGNUM *t = balanced_token(j, m, ctx);
        printf("node %ld: ", ++k);
        print_bn("new, initial_token ", t, "\n");
        BN_free(t);
    }
    g_free(taken);
    return EX_OK;
}

/* cmd_balanced - print the N balanced initial tokens, plain or as cassandra.yaml lines */
static int
cmd_balanced(long n, gboolean yaml, BN_CTX *ctx)
{
    for (long i = 0; i < n; i++) {
        BIGNUM *t = balanced_token(i, n, ctx);
        if (yaml) {
            printf("# node %ld\n", i + 1);
            print_bn("initial_token: ", t, "\n");
        } else {
            print_bn("", t, "\n");
        }
        BN_free(t);
    }
    return EX_OK;
}

/* negative_count - the first argument that reads as a negative number (GOption would take it
 * for an unknown option), or NULL */
static const char *
negative_count(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            return NULL;
        if (argv[i][0] == '-' && g_ascii_isdigit(argv[i][1]))
            return argv[i];
        /* the value of an option that takes one is not a count */
        if (strcmp(argv[i], "--key") == 0 || strcmp(argv[i], "-k") == 0 ||
            strcmp(argv[i], "--ring") == 0 || strcmp(argv[i], "-r") == 0 || strcmp(argv[i], "--rf") == 0)
            i++;
    }
    return NULL;
}

/* main - parse the options and run one of the commands above */
int
main(int argc, char **argv)
{
    g_autofree char *key = NULL, *ring_spec = NULL;
    int rf = 1;
    gboolean yaml = FALSE, move = FALSE;
    GOptionEntry entries[] = {
        /* FILENAME arguments are the octets as given: a key is bytes, not text in some locale */
        {"key", 'k', 0, G_OPTION_ARG_FILENAME, &key, "print the token of row key KEY (its octets)", "KEY"},
        {"ring", 'r', 0, G_OPTION_ARG_FILENAME, &ring_spec,
         "with --key: the ring's tokens (node 1, 2, ... in this order), or a file of them", "T1,T2,...|FILE"},
        {"rf", 0, 0, G_OPTION_ARG_INT, &rf, "with --ring: the replication factor (default 1)", "R"},
        {"yaml", 'y', 0, G_OPTION_ARG_NONE, &yaml, "print the tokens as cassandra.yaml initial_token lines", NULL},
        {"move", 'm', 0, G_OPTION_ARG_NONE, &move, "N M: the tokens for growing a ring from N to M nodes", NULL},
        {NULL, 0, 0, 0, NULL, NULL, NULL},
    };
    const char *neg = negative_count(argc, argv);
    if (neg)
        return count_error(neg);

    g_autoptr(GOptionContext) octx = g_option_context_new("[N | --move N M | --key KEY]");
    g_option_context_set_summary(octx, "RandomPartitioner tokens for balanced Cassandra 0.7 rings: "
                                       "i * 2^127 / N for i = 0 .. N-1, one a line.");
    g_option_context_add_main_entries(octx, entries, NULL);
    g_autoptr(GError) error = NULL;
    if (!g_option_context_parse(octx, &argc, &argv, &error)) {
        fprintf(stderr, PROG ": %s (see --help)\n", error->message);
        return EX_USAGE;
    }

    if (key) {
        if (argc != 1 || yaml || move) {
            fprintf(stderr, PROG ": --key takes no node count, --yaml or --move\n");
            return EX_USAGE;
        }
        return cmd_key(key, ring_spec, rf);
    }
    if (ring_spec) {
        fprintf(stderr, PROG ": --ring goes with --key\n");
        return EX_USAGE;
    }

    BN_CTX *ctx = BN_CTX_new();
    need(ctx != NULL);
    int rc;
    if (move) {
        long n = argc == 3 ? parse_count(argv[1]) : 0, m = argc == 3 ? parse_count(argv[2]) : 0;
        if (!n || !m || m <= n || yaml) {
            fprintf(stderr, PROG ": --move takes N M with 1 <= N < M <= %d\n", MAX_NODES);
            rc = EX_USAGE;
        } else {
            rc = cmd_move(n, m, ctx);
        }
    } else if (argc != 2) {
        rc = argc < 2 ? count_error(NULL) : (fprintf(stderr, PROG ": give one node count\n"), EX_USAGE);
    } else {
        long n = parse_count(argv[1]);
        rc = n ? cmd_balanced(n, yaml, ctx) : count_error(argv[1]);
    }
    BN_CTX_free(ctx);
    return rc;
}
