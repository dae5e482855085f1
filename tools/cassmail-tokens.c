/*
 * cassmail-tokens - RandomPartitioner tokens for Cassandra rings.
 *
 *   cassmail-tokens N                 the N balanced initial tokens i * 2^127 / N, one a line
 *   cassmail-tokens --yaml N          the same as cassandra.yaml lines, one a node
 *   cassmail-tokens --key KEY         the token of row key KEY
 *   cassmail-tokens --key KEY --ring T1,T2,...|FILE [--rf R]
 *                                     also the node owning KEY and the R-1 further replicas
 *   cassmail-tokens --move N M        growing a balanced ring from N to M nodes: the new tokens,
 *                                     and which existing nodes must move
 *
 * RandomPartitioner (Cassandra 0.7): a key's token is the MD5 of its octets read as a signed
 * big-endian two's-complement integer, absolute value; tokens lie in 0 .. 2^127. A node owns the
 * keys whose tokens fall in (previous node's token, its own token]; with SimpleStrategy the next
 * RF-1 nodes clockwise hold the other replicas. Exact arithmetic with OpenSSL BIGNUM.
 * Exit status: 0, or 64 (usage) for bad input.
 */
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include <glib.h>
#include <openssl/bn.h>
#include <openssl/evp.h>

#define MAX_NODES 65536

/* parse_count - a node count from TEXT, or 0 */
static long
parse_count(const char *text)
{
    gint64 n;
    if (!text || !g_ascii_string_to_signed(text, 10, 1, MAX_NODES, &n, NULL))
        return 0;
    return (long)n;
}

/* balanced_token - i * 2^127 / n */
static BIGNUM *
balanced_token(long i, long n, BN_CTX *ctx)
{
    BIGNUM *t = BN_new(), *div = BN_new();
    BN_one(t);
    BN_lshift(t, t, 127);
    BN_mul_word(t, (BN_ULONG)i);
    BN_set_word(div, (BN_ULONG)n);
    BN_div(t, NULL, t, div, ctx);
    BN_free(div);
    return t;
}

/* print_bn - decimal, with PREFIX */
static void
print_bn(const char *prefix, const BIGNUM *t, const char *suffix)
{
    char *s = BN_bn2dec(t);
    printf("%s%s%s", prefix, s, suffix);
    OPENSSL_free(s);
}

/* key_token - the RandomPartitioner token of KEY */
static BIGNUM *
key_token(const char *key)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(key, strlen(key), md, &len, EVP_md5(), NULL);
    BIGNUM *t = BN_bin2bn(md, (int)len, NULL);
    if (md[0] & 0x80) {
        /* negative in two's complement: |x| = 2^128 - unsigned value */
        BIGNUM *m = BN_new();
        BN_one(m);
        BN_lshift(m, m, 128);
        BN_sub(t, m, t);
        BN_free(m);
    }
    return t;
}

/* parse_ring - tokens from "t1,t2,..." or a file of tokens (one per line or comma separated),
 * sorted; NULL and a message on bad input */
static GPtrArray *
parse_ring(const char *spec)
{
    g_autofree char *text = NULL;
    if (g_file_test(spec, G_FILE_TEST_IS_REGULAR)) {
        if (!g_file_get_contents(spec, &text, NULL, NULL)) {
            fprintf(stderr, "cassmail-tokens: cannot read %s\n", spec);
            return NULL;
        }
    } else {
        text = g_strdup(spec);
    }
    GPtrArray *ring = g_ptr_array_new_with_free_func((GDestroyNotify)BN_free);
    g_auto(GStrv) parts = g_strsplit_set(text, ", \t\r\n", -1);
    BIGNUM *max = BN_new();
    BN_one(max);
    BN_lshift(max, max, 127);
    for (char **p = parts; *p; p++) {
        if (!**p)
            continue;
        BIGNUM *t = NULL;
        if (strspn(*p, "0123456789") != strlen(*p) || !BN_dec2bn(&t, *p) || BN_cmp(t, max) > 0) {
            fprintf(stderr, "cassmail-tokens: not a token (0 .. 2^127): \"%s\"\n", *p);
            BN_free(t);
            BN_free(max);
            g_ptr_array_unref(ring);
            return NULL;
        }
        g_ptr_array_add(ring, t);
    }
    BN_free(max);
    if (ring->len == 0) {
        fprintf(stderr, "cassmail-tokens: the ring has no tokens\n");
        g_ptr_array_unref(ring);
        return NULL;
    }
    return ring;
}

int
main(int argc, char **argv)
{
    g_autofree char *key = NULL, *ring_spec = NULL;
    int rf = 1;
    gboolean yaml = FALSE, move = FALSE;
    GOptionEntry entries[] = {
        {"key", 'k', 0, G_OPTION_ARG_STRING, &key, "print the token of row key KEY", "KEY"},
        {"ring", 'r', 0, G_OPTION_ARG_STRING, &ring_spec, "with --key: the ring's tokens", "T1,T2,...|FILE"},
        {"rf", 0, 0, G_OPTION_ARG_INT, &rf, "with --ring: replication factor (default 1)", "R"},
        {"yaml", 'y', 0, G_OPTION_ARG_NONE, &yaml, "print cassandra.yaml initial_token lines", NULL},
        {"move", 'm', 0, G_OPTION_ARG_NONE, &move, "N M: tokens for growing a ring from N to M nodes", NULL},
        {NULL, 0, 0, 0, NULL, NULL, NULL},
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("[N | N M]");
    g_option_context_set_summary(ctx, "RandomPartitioner tokens for balanced Cassandra rings.");
    g_option_context_add_main_entries(ctx, entries, NULL);
    GError *error = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
        fprintf(stderr, "cassmail-tokens: %s (see --help)\n", error->message);
        g_error_free(error);
        return EX_USAGE;
    }
    BN_CTX *bctx = BN_CTX_new();
    int rc = EX_OK;

    if (key) {
        if (argc != 1) {
            fprintf(stderr, "cassmail-tokens: --key takes no node count\n");
            rc = EX_USAGE;
            goto out;
        }
        BIGNUM *t = key_token(key);
        print_bn("token ", t, "\n");
        if (ring_spec) {
            GPtrArray *ring = parse_ring(ring_spec);
            if (!ring) {
                BN_free(t);
                rc = EX_USAGE;
                goto out;
            }
            if (rf < 1 || (guint)rf > ring->len) {
                fprintf(stderr, "cassmail-tokens: --rf must be from 1 to the ring size (%u)\n", ring->len);
                g_ptr_array_unref(ring);
                BN_free(t);
                rc = EX_USAGE;
                goto out;
            }
            /* nodes are numbered 1.. in the order given; ownership follows token order */
            guint n = ring->len;
            guint *order = g_new(guint, n);
            for (guint i = 0; i < n; i++)
                order[i] = i;
            for (guint i = 1; i < n; i++)    /* insertion sort by token */
                for (guint j = i; j > 0 && BN_cmp(g_ptr_array_index(ring, order[j - 1]),
                                                  g_ptr_array_index(ring, order[j])) > 0; j--) {
                    guint tmp = order[j];
                    order[j] = order[j - 1];
                    order[j - 1] = tmp;
                }
            guint first = 0;   /* first node whose token >= key token, wrapping to the lowest */
            while (first < n && BN_cmp(g_ptr_array_index(ring, order[first]), t) < 0)
                first++;
            first %= n;
            for (int r = 0; r < rf; r++) {
                guint node = order[(first + (guint)r) % n];
                printf("%s node %u token ", r == 0 ? "owner" : "replica", node + 1);
                print_bn("", g_ptr_array_index(ring, node), "\n");
            }
            g_free(order);
            g_ptr_array_unref(ring);
        }
        BN_free(t);
        goto out;
    }
    if (ring_spec) {
        fprintf(stderr, "cassmail-tokens: --ring goes with --key\n");
        rc = EX_USAGE;
        goto out;
    }
    if (move) {
        long n = argc == 3 ? parse_count(argv[1]) : 0, m = argc == 3 ? parse_count(argv[2]) : 0;
        if (!n || !m || m <= n) {
            fprintf(stderr, "cassmail-tokens: --move takes N M with 1 <= N < M <= %d\n", MAX_NODES);
            rc = EX_USAGE;
            goto out;
        }
        /* Existing node i takes the new slot nearest its old position (distinct because
         * M > N); the slots left over go to the new nodes. Doubling a ring moves nobody. */
        gboolean *taken = g_new0(gboolean, m);
        for (long i = 0; i < n; i++) {
            long j = (i * m + n / 2) / n;
            taken[j] = TRUE;
            BIGNUM *old = balanced_token(i, n, bctx), *t = balanced_token(j, m, bctx);
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
            BIGNUM *t = balanced_token(j, m, bctx);
            printf("node %ld: ", ++k);
            print_bn("new, initial_token ", t, "\n");
            BN_free(t);
        }
        g_free(taken);
        goto out;
    }
    long n = argc == 2 ? parse_count(argv[1]) : 0;
    if (!n) {
        fprintf(stderr, "cassmail-tokens: give the number of nodes, a whole number from 1 to %d%s%s%s\n",
                MAX_NODES, argc >= 2 ? " (got \"" : "", argc >= 2 ? argv[1] : "", argc >= 2 ? "\")" : "");
        rc = EX_USAGE;
        goto out;
    }
    for (long i = 0; i < n; i++) {
        BIGNUM *t = balanced_token(i, n, bctx);
        if (yaml) {
            printf("# node %ld\n", i + 1);
            print_bn("initial_token: ", t, "\n");
        } else {
            print_bn("", t, "\n");
        }
        BN_free(t);
    }
out:
    BN_CTX_free(bctx);
    return rc;
}
