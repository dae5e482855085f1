/*
 * store-check - end-to-end checks of the mail store against a real Cassandra (run by
 * test/e2e/test_store.py; not a unit test: it needs the node named in the configuration).
 *
 *   store-check CONFIG CHECK USER
 *
 * CHECK is one of:
 *   roundtrip   a 2 MB binary message (every octet value) comes back byte-exact
 *   large       the same for a message of the default size limit (10 MB)
 *   volume      120 messages of 1 MB written and read back over one connection
 *   order       50 messages come back from the index in arrival order, sizes right
 *   paging      1000 messages listed in pages of 64 return each message exactly once
 *   delete      removing messages removes both the message and its index entry
 *   outbox      one delivery to two targets is one write: both copies share one TimeUUID
 *   oldlayout   creates the configuration's keyspace as CassMail 1.0 did (Users, Mailboxes,
 *               MailboxIndex, Credentials: no Bodies) and writes USER with three messages the
 *               way its store did (the octets in Mailboxes, the size in MailboxIndex, one
 *               batch_mutate); prints "msg ID SIZE SHA256" for each
 * Prints "ok CHECK" and exits 0, or prints what failed and exits 1.
 */
#include <stdio.h>
#include <string.h>

#include <uuid/uuid.h>

#include "cass/cass.h"
#include "store/store.h"
#include "support/store_tool.h"
#include "util/config.h"

static Store *store;
static const char *user;
static CassmailConfig *config;

static int
check_roundtrip_size(gsize len)
{
    g_autofree guint8 *msg = g_malloc(len);   /* freed on the early returns of OK() too */
    for (gsize i = 0; i < len; i++)
        msg[i] = (guint8)(i * 7 + i / 251);
    StoreTarget t = {user, "inbox"};
    StoreMsgId id;
    OK((store_msgid_new(&id), store_deliver(store, &id, &t, 1, msg, len, E)));
    g_autoptr(GBytes) back = NULL;
    OK(store_fetch(store, user, "inbox", &id, &back, E));
    gsize blen;
    const guint8 *b = g_bytes_get_data(back, &blen);
    gboolean same = blen == len && memcmp(b, msg, len) == 0;
    CHECK(same, "message differs (got %zu octets)", blen);
    g_autoptr(GArray) idx = g_array_new(FALSE, FALSE, sizeof(StoreIndexEntry));
    OK(store_index_page(store, user, "inbox", NULL, 10, idx, E));
    CHECK(idx->len == 1 && g_array_index(idx, StoreIndexEntry, 0).size == len, "index entry wrong");
    return 0;
}

static int
check_roundtrip(void)
{
    return check_roundtrip_size(2 * 1024 * 1024);
}

/* the largest message the default configuration accepts, plus room for our Received: line */
static int
check_large(void)
{
    return check_roundtrip_size(10240000 + 1024);
}

/* one connection reads more than Thrift's default 100 MB message-size budget */
static int
check_volume(void)
{
    gsize len = 1024 * 1024;
    g_autofree guint8 *msg = g_malloc(len);
    memset(msg, 'v', len);
    StoreTarget t = {user, "inbox"};
    StoreMsgId ids[120];
    for (int i = 0; i < 120; i++) {
        msg[0] = (guint8)i;
        OK((store_msgid_new(&ids[i]), store_deliver(store, &ids[i], &t, 1, msg, len, E)));
    }
    for (int i = 0; i < 120; i++) {
        g_autoptr(GBytes) back = NULL;
        OK(store_fetch(store, user, "inbox", &ids[i], &back, E));
        CHECK(g_bytes_get_size(back) == len && ((const guint8 *)g_bytes_get_data(back, NULL))[0] == i,
              "message %d differs", i);
    }
    const StoreCounters *c = store_counters(store);
    CHECK(c->retries == 0, "%" G_GUINT64_FORMAT " retries: the connection was dropped", c->retries);
    return 0;
}

static int
check_order(void)
{
    StoreMsgId ids[50];
    StoreTarget t = {user, "inbox"};
    for (int i = 0; i < 50; i++) {
        g_autofree char *m = g_strdup_printf("Subject: %d\r\n\r\n%*d\r\n", i, i + 1, i);
        OK((store_msgid_new(&ids[i]), store_deliver(store, &ids[i], &t, 1, (const guint8 *)m, strlen(m), E)));
    }
    g_autoptr(GArray) idx = g_array_new(FALSE, FALSE, sizeof(StoreIndexEntry));
    OK(store_index_page(store, user, "inbox", NULL, 100, idx, E));
    CHECK(idx->len == 50, "expected 50 entries, got %u", idx->len);
    for (int i = 0; i < 50; i++) {
        StoreIndexEntry *e = &g_array_index(idx, StoreIndexEntry, i);
        CHECK(memcmp(e->id.bytes, ids[i].bytes, 16) == 0, "entry %d out of arrival order", i);
        g_autofree char *m = g_strdup_printf("Subject: %d\r\n\r\n%*d\r\n", i, i + 1, i);
        CHECK(e->size == strlen(m), "entry %d size %" G_GUINT64_FORMAT, i, e->size);
    }
    return 0;
}

static int
check_paging(void)
{
    const int n = 1000;
    StoreTarget t = {user, "inbox"};
    g_autoptr(GHashTable) sent = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    for (int i = 0; i < n; i++) {
        g_autofree char *m = g_strdup_printf("Subject: message %d\r\n\r\nbody %d\r\n", i, i);
        StoreMsgId id;
        OK((store_msgid_new(&id), store_deliver(store, &id, &t, 1, (const guint8 *)m, strlen(m), E)));
        char text[STORE_MSGID_TEXT_LEN];
        store_msgid_to_text(&id, text);
        g_hash_table_add(sent, g_strdup(text));
    }
    CHECK(g_hash_table_size(sent) == (guint)n, "TimeUUIDs were not unique");
    g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    g_autoptr(GArray) page = g_array_new(FALSE, FALSE, sizeof(StoreIndexEntry));
    StoreMsgId last;
    int pages = 0;
    for (gboolean first = TRUE;; first = FALSE) {
        g_array_set_size(page, 0);
        OK(store_index_page(store, user, "inbox", first ? NULL : &last, 64, page, E));
        pages++;
        for (guint i = 0; i < page->len; i++) {
            char text[STORE_MSGID_TEXT_LEN];
            store_msgid_to_text(&g_array_index(page, StoreIndexEntry, i).id, text);
            CHECK(g_hash_table_contains(sent, text), "listed a message never sent: %s", text);
            CHECK(g_hash_table_add(seen, g_strdup(text)), "listed twice: %s", text);
            last = g_array_index(page, StoreIndexEntry, i).id;
        }
        if (page->len < 64)
            break;
    }
    CHECK(g_hash_table_size(seen) == (guint)n, "listed %u of %d", g_hash_table_size(seen), n);
    CHECK(pages == n / 64 + 1, "expected %d pages, read %d", n / 64 + 1, pages);
    return 0;
}

static int
check_delete(void)
{
    StoreTarget t = {user, "inbox"};
    StoreMsgId ids[3];
    for (int i = 0; i < 3; i++)
        OK((store_msgid_new(&ids[i]), store_deliver(store, &ids[i], &t, 1, (const guint8 *)"x\r\n", 3, E)));
    StoreMsgId gone[2] = {ids[0], ids[2]};
    OK(store_remove(store, user, "inbox", gone, 2, E));
    g_autoptr(GArray) idx = g_array_new(FALSE, FALSE, sizeof(StoreIndexEntry));
    OK(store_index_page(store, user, "inbox", NULL, 10, idx, E));
    CHECK(idx->len == 1 && memcmp(g_array_index(idx, StoreIndexEntry, 0).id.bytes, ids[1].bytes, 16) == 0,
          "index still lists deleted messages (%u entries)", idx->len);
    GBytes *msg = NULL;
    GError *e = NULL;
    CHECK(!store_fetch(store, user, "inbox", &ids[0], &msg, &e) &&
          g_error_matches(e, STORE_ERROR, STORE_ERROR_NOT_FOUND), "deleted message still readable");
    g_clear_error(&e);
    g_autoptr(GBytes) kept = NULL;
    OK(store_fetch(store, user, "inbox", &ids[1], &kept, E));
    return 0;
}

static int
check_outbox(void)
{
    StoreTarget t[3] = {{user, "inbox"}, {user, "outbox"}, {user, "inbox"}};
    StoreMsgId id;
    OK((store_msgid_new(&id), store_deliver(store, &id, t, 3, (const guint8 *)"hello\r\n", 7, E)));
    for (int i = 0; i < 2; i++) {
        g_autoptr(GArray) idx = g_array_new(FALSE, FALSE, sizeof(StoreIndexEntry));
        OK(store_index_page(store, user, t[i].mailbox, NULL, 10, idx, E));
        CHECK(idx->len == 1, "%s has %u messages, want 1 (duplicates stored once)", t[i].mailbox, idx->len);
        CHECK(memcmp(g_array_index(idx, StoreIndexEntry, 0).id.bytes, id.bytes, 16) == 0,
              "%s copy has another id", t[i].mailbox);
    }
    return 0;
}

/* The keyspace of CassMail before bodies were stored in parts, column family by column family. */
static const CassCfSpec old_cfs[] = {
    {"Users", "BytesType", 0, "user -> mailbox names", .memtable_flush_after_mins = 1},
    {"Mailboxes", "TimeUUIDType", 86400, "user:mailbox -> TimeUUID -> message", .memtable_flush_after_mins = 0},
    {"MailboxIndex", "TimeUUIDType", 86400, "user:mailbox -> TimeUUID -> size (8 octets, big-endian)",
     .memtable_flush_after_mins = 1},
    {"Credentials", "BytesType", 0, "user -> password hash", .memtable_flush_after_mins = 1},
};

static int
check_oldlayout(void)
{
    const CassmailConfig *cfg = config;
    CassClient *admin = cass_client_new((const char *const *)cfg->endpoints, NULL, cfg->timeout_ms,
                                        cfg->retry_ms, cfg->backoff_ms);
    gboolean exists = TRUE;
    OK(cass_keyspace_describe(admin, cfg->keyspace, &exists, NULL, E));
    CHECK(!exists, "keyspace %s exists already", cfg->keyspace);
    OK(cass_keyspace_add(admin, cfg->keyspace, 1, old_cfs, G_N_ELEMENTS(old_cfs), E));
    OK(cass_schema_agree(admin, 30000, E));
    cass_client_free(&admin);
    CassClient *c = cass_client_new((const char *const *)cfg->endpoints, cfg->keyspace,
                                    cfg->timeout_ms, cfg->retry_ms, cfg->backoff_ms);
    g_autoptr(GBytes) empty = g_bytes_new(NULL, 0);
    CassBatch *b = cass_batch_new();
    cass_batch_insert(b, "Users", user, strlen(user), "inbox", 5, empty, g_get_real_time());
    cass_batch_insert(b, "Users", user, strlen(user), "outbox", 6, empty, g_get_real_time());
    OK(cass_batch_execute(c, b, CASS_ONE, CASS_RETRY_DEFAULT, E));
    cass_batch_free(&b);
    const gsize sizes[] = {900, 2 * 1024 * 1024, 9 * 1000 * 1000};
    g_autofree char *key = g_strconcat(user, ":inbox", NULL);
    for (gsize m = 0; m < G_N_ELEMENTS(sizes); m++) {
        GString *msg = g_string_new("Received: from old.example (127.0.0.1)\r\n"
                                    "\tby mx.example.com (CassMail) with ESMTP id 0000CAFE.1;\r\n"
                                    "\tWed, 02 Dec 2026 03:00:00 +0000\r\n"
                                    "Subject: written by the old layout\r\n\r\n");
        for (guint i = 0; msg->len < sizes[m]; i++)
            g_string_append_printf(msg, "message %zu line %u of the old layout, ..dots and all\r\n",
                                   m, i);
        uuid_t id;
        uuid_generate_time(id);
        gint64 ts = g_get_real_time();
        guint8 size_be[8];
        for (int i = 0; i < 8; i++)
            size_be[i] = (guint8)((guint64)msg->len >> (56 - 8 * i));
        g_autoptr(GBytes) value = g_bytes_new(msg->str, msg->len);
        g_autoptr(GBytes) size = g_bytes_new(size_be, 8);
        b = cass_batch_new();
        cass_batch_insert(b, "Mailboxes", key, strlen(key), id, 16, value, ts);
        cass_batch_insert(b, "MailboxIndex", key, strlen(key), id, 16, size, ts);
        OK(cass_batch_execute(c, b, CASS_ONE, CASS_RETRY_DEFAULT, E));
        cass_batch_free(&b);
        char text[37];
        uuid_unparse_lower(id, text);
        g_autofree char *sum = g_compute_checksum_for_data(G_CHECKSUM_SHA256, (const guchar *)msg->str,
                                                           msg->len);
        printf("msg %s %zu %s\n", text, msg->len, sum);
        g_string_free(msg, TRUE);
    }
    cass_client_free(&c);
    return 0;
}

int
main(int argc, char **argv)
{
    static const StoreToolCheck checks[] = {
        {"roundtrip", check_roundtrip}, {"large", check_large}, {"volume", check_volume},
        {"order", check_order}, {"paging", check_paging}, {"delete", check_delete},
        {"outbox", check_outbox}, {"oldlayout", check_oldlayout}, {NULL, NULL},
    };
    if (argc != 4) {
        fprintf(stderr, "usage: store-check CONFIG roundtrip|order|paging|delete|outbox USER\n");
        return 64;
    }
    if (!(store = store_tool_open("store-check", argv[1], &config)))
        return 1;
    user = argv[3];
    int rc = store_tool_run("store-check", checks, argv[2]);
    const StoreCounters *c = store_counters(store);
    printf("calls=%" G_GUINT64_FORMAT " bytes_read=%" G_GUINT64_FORMAT " bytes_written=%" G_GUINT64_FORMAT "\n",
           c->calls, c->bytes_read, c->bytes_written);
    store_free(&store);
    config_free(&config);
    return rc;
}
