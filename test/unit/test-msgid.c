/*
 * test-msgid.c - message ids (store_msgid_new): version-1 TimeUUIDs with a random node
 * (RFC 4122 4.5), unique across forked processes, strictly ascending within one process in
 * Cassandra 0.7's TimeUUIDType order even when the clock stands still or steps back.
 */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/store.h"

#define PROCS 8
#define PER_PROC 100000
/* 100-ns intervals since 1582-10-15 at the Unix epoch */
#define EPOCH_OFFSET G_GUINT64_CONSTANT(0x01B21DD213814000)

/* id_from - an id from 16 octets given as 32 hex digits */
static StoreMsgId
id_from(const char *hex)
{
    StoreMsgId id;
    for (int i = 0; i < 16; i++)
        id.bytes[i] = (guint8)(g_ascii_xdigit_value(hex[2 * i]) << 4 | g_ascii_xdigit_value(hex[2 * i + 1]));
    return id;
}

static void
test_version_variant_and_random_multicast_node(void)
{
    StoreMsgId id;
    store_msgid_new(&id);
    g_assert_cmpint(id.bytes[6] >> 4, ==, 1);          /* version 1: time-based */
    g_assert_cmpint(id.bytes[8] & 0xc0, ==, 0x80);     /* variant 10 (RFC 4122) */
    g_assert_cmpint(id.bytes[10] & 0x01, ==, 0x01);    /* 4.5: multicast bit marks a random node */
    /* the time is now (within a second) */
    gint64 us = ((gint64)store_msgid_time(&id) - (gint64)EPOCH_OFFSET) / 10;
    g_assert_cmpint(ABS(us - g_get_real_time()), <, 1000000);
    /* and the node is none of this machine's network cards */
    glob_t g;
    if (glob("/sys/class/net/*/address", 0, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++) {
            g_autofree char *text = NULL;
            if (!g_file_get_contents(g.gl_pathv[i], &text, NULL, NULL))
                continue;
            guint8 mac[6];
            if (sscanf(text, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &mac[0], &mac[1], &mac[2], &mac[3],
                       &mac[4], &mac[5]) == 6)
                g_assert_true(memcmp(mac, id.bytes + 10, 6) != 0);
        }
        globfree(&g);
    }
}

static void
test_text_round_trip(void)
{
    StoreMsgId id, back;
    store_msgid_new(&id);
    char text[STORE_MSGID_TEXT_LEN];
    store_msgid_to_text(&id, text);
    g_assert_cmpuint(strlen(text), ==, 36);
    g_assert_true(store_msgid_from_text(text, &back));
    g_assert_cmpmem(id.bytes, 16, back.bytes, 16);
}

static void
test_compare_is_cassandra_timeuuid_order(void)
{
    /* time first, and time_hi outranks time_low although it comes later in the octets */
    StoreMsgId early = id_from("ffffffff0000100080000000000000ff");   /* time 0x000'0000'ffffffff */
    StoreMsgId late = id_from("00000000000010018000000000000000");    /* time 0x001'0000'00000000 */
    g_assert_cmpint(store_msgid_compare(&early, &late), <, 0);
    g_assert_cmpint(store_msgid_compare(&late, &early), >, 0);
    g_assert_cmpint(store_msgid_compare(&late, &late), ==, 0);
    /* equal times: the octets as Java compares bytes, signed (0x80 is -128 and sorts first) */
    StoreMsgId a = id_from("00000001000010008000000000000001");
    StoreMsgId b = id_from("00000001000010008000000000000080");
    g_assert_cmpint(store_msgid_compare(&b, &a), <, 0);
    StoreMsgId c = id_from("000000010000100080000000000000ff");
    g_assert_cmpint(store_msgid_compare(&c, &a), <, 0);   /* -1 < 1 */
    g_assert_cmpint(store_msgid_compare(&b, &c), <, 0);   /* -128 < -1 */
}

/* assert_ascending_at - ids minted with the clock readings in CLOCK come out strictly ascending */
static void
assert_ascending_at(const guint64 *clock, gsize n)
{
    StoreMsgId prev, id;
    store_msgid_new(&prev);
    for (gsize i = 0; i < n; i++) {
        store_msgid_new_at(&id, clock[i]);
        g_assert_cmpint(store_msgid_compare(&prev, &id), <, 0);
        g_assert_cmpuint(store_msgid_time(&prev), <, store_msgid_time(&id));
        g_assert_cmpmem(prev.bytes + 8, 8, id.bytes + 8, 8);   /* same process, same node */
        prev = id;
    }
}

static void
test_ascending_when_the_clock_stands_still(void)
{
    StoreMsgId id;
    store_msgid_new(&id);
    guint64 now = store_msgid_time(&id);
    guint64 clock[1000];
    for (gsize i = 0; i < G_N_ELEMENTS(clock); i++)
        clock[i] = now;
    assert_ascending_at(clock, G_N_ELEMENTS(clock));
}

static void
test_ascending_when_the_clock_steps_back(void)
{
    StoreMsgId id;
    store_msgid_new(&id);
    guint64 now = store_msgid_time(&id);
    /* an NTP step back of a second, and one of an hour, each read a few times */
    guint64 clock[] = {now, now - 10000000, now - 10000000, now - 5, now - G_GUINT64_CONSTANT(36000000000),
                       now + 1, now + 1, 0};
    assert_ascending_at(clock, G_N_ELEMENTS(clock));
    /* once the clock is past the last id again, ids follow the clock */
    store_msgid_new_at(&id, now + 1000000);
    g_assert_cmpuint(store_msgid_time(&id), ==, now + 1000000);
}

/* The node of the id at I in a block of ids. */
#define NODE(ids, i) ((ids)[i].bytes + 8)

static int
cmp_octets(const void *a, const void *b)
{
    return memcmp(a, b, 16);
}

static int
cmp_time(const void *a, const void *b)
{
    guint64 x = *(const guint64 *)a, y = *(const guint64 *)b;
    return x < y ? -1 : x > y;
}

static void
test_forked_processes_mint_unique_ascending_ids(void)
{
    /* the parent mints first, so the children inherit its state and must re-draw their node */
    StoreMsgId parent;
    store_msgid_new(&parent);
    gsize n = (gsize)PROCS * PER_PROC;
    StoreMsgId *ids = mmap(NULL, n * sizeof *ids, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                           -1, 0);
    g_assert_true(ids != MAP_FAILED);
    int go[2];
    g_assert_cmpint(pipe(go), ==, 0);
    pid_t pids[PROCS];
    for (int p = 0; p < PROCS; p++) {
        pids[p] = fork();
        g_assert_cmpint(pids[p], >=, 0);
        if (pids[p] == 0) {
            /* all start at once, so they mint in the same ticks as far as the machine allows */
            close(go[1]);
            char c;
            if (read(go[0], &c, 1) < 0)
                _exit(2);
            for (gsize i = 0; i < PER_PROC; i++)
                store_msgid_new(&ids[(gsize)p * PER_PROC + i]);
            _exit(0);
        }
    }
    close(go[0]);
    close(go[1]);   /* the children's read returns: go */
    for (int p = 0; p < PROCS; p++) {
        int status = 0;
        g_assert_cmpint(waitpid(pids[p], &status, 0), ==, pids[p]);
        g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    for (int p = 0; p < PROCS; p++) {
        const StoreMsgId *own = ids + (gsize)p * PER_PROC;
        /* a node (and clock sequence) of its own, with the multicast bit, not the parent's */
        g_assert_cmpint(own[0].bytes[10] & 0x01, ==, 0x01);
        g_assert_true(memcmp(NODE(own, 0), parent.bytes + 8, 8) != 0);
        for (int q = 0; q < p; q++)
            g_assert_true(memcmp(NODE(own, 0), NODE(ids + (gsize)q * PER_PROC, 0), 8) != 0);
        for (gsize i = 1; i < PER_PROC; i++) {
            g_assert_cmpint(store_msgid_compare(&own[i - 1], &own[i]), <, 0);
            g_assert_true(memcmp(NODE(own, i), NODE(own, 0), 8) == 0);
        }
    }
    /* no id twice among all 800 000 (and the parent's) */
    StoreMsgId *sorted = g_new(StoreMsgId, n + 1);
    memcpy(sorted, ids, n * sizeof *ids);
    sorted[n] = parent;
    qsort(sorted, n + 1, sizeof *sorted, cmp_octets);
    for (gsize i = 1; i <= n; i++)
        g_assert_true(memcmp(&sorted[i - 1], &sorted[i], 16) != 0);
    /* how often processes shared a timestamp (what the node and clock sequence are for) */
    guint64 *times = g_new(guint64, n);
    for (gsize i = 0; i < n; i++)
        times[i] = store_msgid_time(&ids[i]);
    qsort(times, n, sizeof *times, cmp_time);
    gsize shared = 0;
    for (gsize i = 1; i < n; i++)
        shared += times[i] == times[i - 1];
    g_test_message("%" G_GSIZE_FORMAT " ids share their timestamp with another process's", shared);
    g_free(times);
    g_free(sorted);
    munmap(ids, n * sizeof *ids);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/msgid/version-variant-and-random-multicast-node",
                    test_version_variant_and_random_multicast_node);
    g_test_add_func("/msgid/text-round-trip", test_text_round_trip);
    g_test_add_func("/msgid/compare-is-cassandra-timeuuid-order", test_compare_is_cassandra_timeuuid_order);
    g_test_add_func("/msgid/ascending-when-the-clock-stands-still", test_ascending_when_the_clock_stands_still);
    g_test_add_func("/msgid/ascending-when-the-clock-steps-back", test_ascending_when_the_clock_steps_back);
    g_test_add_func("/msgid/8-forked-processes-100000-ids-each-unique-and-ascending",
                    test_forked_processes_mint_unique_ascending_ids);
    return g_test_run();
}
