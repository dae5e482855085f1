/*
 * test-cass-frame.c - batch_mutate as CassMail writes it (cass_batch_wire: its own octets around
 * values sent from where the caller holds them, src/cass/cass.c) is, octet for octet, the frame
 * the generated Thrift client would send for the same batch (cass_batch_serialise): the wire
 * format Cassandra 0.7.0 reads is unchanged, only the copies are gone.
 */
#include <string.h>

#include "cass/cass.h"

static const guint8 key[16] = {0x6b, 0x3a, 0x10, 0x22, 0x45, 0x71, 0x11, 0xf0,
                               0x80, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07};
static const guint8 marker[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
static const gint64 ts = G_GINT64_CONSTANT(1764657600123456);

/* assert_same_wire - B at CONSISTENCY is the generated client's frame; B is freed */
static void
assert_same_wire(CassBatch *b, int consistency)
{
    g_autoptr(GByteArray) got = g_byte_array_new();
    g_autoptr(GByteArray) want = g_byte_array_new();
    cass_batch_wire(b, consistency, got);
    cass_batch_serialise(b, consistency, want);
    cass_batch_free(&b);
    g_assert_null(b);
    g_assert_cmpmem(got->data, got->len, want->data, want->len);
    /* the length in front counts what follows it */
    g_assert_cmpuint(((guint)got->data[0] << 24 | (guint)got->data[1] << 16 |
                      (guint)got->data[2] << 8 | got->data[3]), ==, got->len - 4);
}

/* value - LEN octets of a pattern */
static GBytes *
value(gsize len)
{
    guint8 *v = g_malloc(len + 1);
    for (gsize i = 0; i < len; i++)
        v[i] = (guint8)(i * 31 + 7);
    return g_bytes_new_take(v, len);
}

/* part - a Bodies part (number N, LEN octets), with the marker for part 0 */
static void
check_part(guint64 n, gsize len, int consistency)
{
    guint8 name[8];
    for (int i = 0; i < 8; i++)
        name[i] = (guint8)(n >> (56 - 8 * i));
    CassBatch *b = cass_batch_new();
    if (n == 0) {
        g_autoptr(GBytes) empty = g_bytes_new_static("", 0);
        cass_batch_insert(b, "Bodies", key, 16, marker, 8, empty, ts);
    }
    g_autoptr(GBytes) v = value(len);
    cass_batch_insert(b, "Bodies", key, 16, name, 8, v, ts);
    assert_same_wire(b, consistency);
}

static void
test_body_parts(void)
{
    check_part(0, 1000, CASS_ONE);
    check_part(0, 1, CASS_QUORUM);
    check_part(1, 4096, CASS_ALL);
    check_part(300, 65537, CASS_ONE);
    check_part(2, 1024 * 1024, CASS_QUORUM);
}

static void
test_inline_message_and_index(void)
{
    /* one mailbox row: the message (sent by reference) and, in another CF, its size */
    g_autoptr(GBytes) msg = value(300000);
    g_autoptr(GBytes) size = g_bytes_new("\0\0\0\0\0\x04\x93\xe0", 8);
    CassBatch *b = cass_batch_new();
    cass_batch_insert(b, "Mailboxes", "anne:inbox", 10, key, 16, msg, ts);
    cass_batch_insert(b, "Mailboxes", "anne:inbox", 10, marker, 8, size, ts);
    assert_same_wire(b, CASS_ONE);
    b = cass_batch_new();
    cass_batch_insert(b, "MailboxIndex", "anne:inbox", 10, key, 16, size, ts);
    assert_same_wire(b, CASS_ALL);
}

static void
test_small_values_and_deletions(void)
{
    g_autoptr(GBytes) empty = g_bytes_new_static("", 0);
    g_autoptr(GBytes) small = value(512);
    g_autoptr(GBytes) large = value(513);
    CassBatch *b = cass_batch_new();
    cass_batch_insert(b, "Users", "pete", 4, "inbox", 5, empty, ts);
    cass_batch_insert(b, "Users", "pete", 4, "outbox", 6, small, ts);
    cass_batch_insert(b, "Users", "pete", 4, "x", 1, large, ts + 1);
    cass_batch_delete(b, "Users", "pete", 4, "y", 1, ts + 2);
    assert_same_wire(b, CASS_QUORUM);
    b = cass_batch_new();
    for (int i = 0; i < 100; i++)
        cass_batch_delete(b, "Mailboxes", "pete:inbox", 10, key, 16, ts + i);
    assert_same_wire(b, CASS_ONE);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/cass/wire/body-parts-are-the-generated-frame", test_body_parts);
    g_test_add_func("/cass/wire/inline-message-and-index-are-the-generated-frame",
                    test_inline_message_and_index);
    g_test_add_func("/cass/wire/small-values-and-deletions-are-the-generated-frame",
                    test_small_values_and_deletions);
    return g_test_run();
}
