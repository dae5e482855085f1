/*
 * test-cass-frame.c - a body part's batch_mutate serialised in place (cass_frame_build,
 * src/cass/cass.h) is, octet for octet, the frame the generated Thrift client sends for the
 * same mutations (cass_batch_serialise): the wire format Cassandra 0.7.0 reads is unchanged,
 * only the copies are gone.
 */
#include <string.h>

#include "cass/cass.h"

static const guint8 key[16] = {0x6b, 0x3a, 0x10, 0x22, 0x45, 0x71, 0x11, 0xf0,
                               0x80, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07};
static const guint8 marker[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

/* check_same - a part (number PART, VALUE_LEN octets) built in place equals the generated one */
static void
check_same(guint64 part, gsize value_len, int consistency)
{
    guint8 name[8];
    for (int i = 0; i < 8; i++)
        name[i] = (guint8)(part >> (56 - 8 * i));
    gint64 ts = G_GINT64_CONSTANT(1764657600123456);
    CassFrame *f = cass_frame_new(value_len + 7);
    guint8 *value = cass_frame_value(f);
    for (gsize i = 0; i < value_len; i++)
        value[i] = (guint8)(i * 31 + 7);
    g_assert_true(cass_frame_build(f, "Bodies", key, 16, part == 0 ? marker : NULL, 8, name, 8,
                                   value_len, ts, consistency));

    CassBatch *b = cass_batch_new();
    if (part == 0) {
        g_autoptr(GBytes) empty = g_bytes_new_static("", 0);
        cass_batch_insert(b, "Bodies", key, 16, marker, 8, empty, ts);
    }
    g_autoptr(GBytes) v = g_bytes_new(value, value_len);
    cass_batch_insert(b, "Bodies", key, 16, name, 8, v, ts);
    g_autoptr(GByteArray) want = g_byte_array_new();
    cass_batch_serialise(b, consistency, want);
    cass_batch_free(&b);

    gsize len;
    const guint8 *got = cass_frame_bytes(f, &len);
    g_assert_cmpmem(got, len, want->data, want->len);
    cass_frame_free(&f);
    g_assert_null(f);
}

static void
test_first_part_with_marker(void)
{
    check_same(0, 1000, CASS_ONE);
    check_same(0, 1, CASS_QUORUM);
}

static void
test_later_parts(void)
{
    check_same(1, 4096, CASS_ALL);
    check_same(300, 65537, CASS_ONE);
}

static void
test_full_part(void)
{
    check_same(2, 1024 * 1024, CASS_QUORUM);
}

static void
test_value_larger_than_room_is_refused(void)
{
    CassFrame *f = cass_frame_new(100);
    g_assert_cmpuint(cass_frame_value_max(f), ==, 100);
    g_assert_false(cass_frame_build(f, "Bodies", key, 16, NULL, 0, "n", 1, 101, 1, CASS_ONE));
    g_assert_true(cass_frame_build(f, "Bodies", key, 16, NULL, 0, "n", 1, 100, 1, CASS_ONE));
    cass_frame_free(&f);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/cass/frame/first-part-with-marker-is-the-generated-frame", test_first_part_with_marker);
    g_test_add_func("/cass/frame/later-parts-are-the-generated-frame", test_later_parts);
    g_test_add_func("/cass/frame/a-full-mebioctet-part-is-the-generated-frame", test_full_part);
    g_test_add_func("/cass/frame/value-larger-than-its-room-is-refused", test_value_larger_than_room_is_refused);
    return g_test_run();
}
