/*
 * test-store-mem.c - the in-memory test store behaves like the Cassandra store as the protocol
 * cores see it: delivery to several mailboxes under one TimeUUID, paging in arrival order, fetch,
 * remove, credentials, injected temporary failures and read counters.
 */
#include "support/store_mem.h"

#include <string.h>
#include <uuid/uuid.h>

/* new_store - a store with users pete and anna */
static Store *
new_store(void)
{
    Store *s = store_mem_new();
    g_autoptr(GError) error = NULL;
    g_assert_true(store_user_add(s, "pete", &error));
    g_assert_true(store_user_add(s, "anna", &error));
    g_assert_no_error(error);
    return s;
}

/* deliver - MSG to pete:inbox and anna:inbox; its id */
static StoreMsgId
deliver(Store *s, const char *msg)
{
    StoreTarget to[] = {{"pete", "inbox"}, {"anna", "inbox"}};
    StoreMsgId id;
    g_autoptr(GError) error = NULL;
    store_msgid_new(&id);
    g_assert_true(store_deliver(s, &id, to, G_N_ELEMENTS(to), (const guint8 *)msg, strlen(msg), &error));
    g_assert_no_error(error);
    return id;
}

/* all_ids - every index entry of USER:MAILBOX, read in pages of PAGE */
static GArray *
all_ids(Store *s, const char *user, const char *mailbox, guint page)
{
    GArray *all = g_array_new(FALSE, FALSE, sizeof(StoreIndexEntry));
    const StoreMsgId *after = NULL;
    StoreMsgId last;
    for (guint round = 0; round < 1000; round++) {
        g_autoptr(GArray) got = g_array_new(FALSE, FALSE, sizeof(StoreIndexEntry));
        g_autoptr(GError) error = NULL;
        g_assert_true(store_index_page(s, user, mailbox, after, page, got, &error));
        g_assert_no_error(error);
        g_assert_cmpuint(got->len, <=, page);
        g_array_append_vals(all, got->data, got->len);
        if (got->len < page)
            break;
        last = g_array_index(got, StoreIndexEntry, got->len - 1).id;
        after = &last;
    }
    return all;
}

static void
test_deliver_to_two_then_pages_of_two_list_every_id_once_in_order(void)
{
    Store *s = new_store();
    StoreMsgId ids[5];
    for (int i = 0; i < 5; i++) {
        g_autofree char *msg = g_strdup_printf("Subject: %d\r\n\r\nbody %d\r\n", i, i);
        ids[i] = deliver(s, msg);
        for (int j = 0; j < i; j++)
            g_assert_true(memcmp(ids[i].bytes, ids[j].bytes, 16) != 0);   /* fresh ids */
        g_assert_cmpint(ids[i].bytes[6] >> 4, ==, 1);   /* a version-1 TimeUUID */
    }
    const char *users[] = {"pete", "anna"};
    for (gsize u = 0; u < G_N_ELEMENTS(users); u++) {
        g_autoptr(GArray) all = all_ids(s, users[u], "inbox", 2);
        g_assert_cmpuint(all->len, ==, 5);
        for (guint i = 0; i < 5; i++) {
            StoreIndexEntry *e = &g_array_index(all, StoreIndexEntry, i);
            g_assert_cmpmem(e->id.bytes, 16, ids[i].bytes, 16);
            g_assert_cmpuint(e->size, ==, strlen("Subject: 0\r\n\r\nbody 0\r\n"));
        }
    }
    g_autoptr(GArray) none = all_ids(s, "pete", "outbox", 2);
    g_assert_cmpuint(none->len, ==, 0);
    g_assert_cmpuint(store_mem_message_count(s, "pete", "inbox"), ==, 5);
    store_free(&s);
    g_assert_null(s);
}

static void
test_one_copy_per_mailbox_however_often_named(void)
{
    Store *s = new_store();
    StoreTarget to[] = {{"pete", "inbox"}, {"pete", "inbox"}, {"pete", "outbox"}};
    StoreMsgId id;
    store_msgid_new(&id);
    g_assert_true(store_deliver(s, &id, to, 3, (const guint8 *)"x\r\n", 3, NULL));
    g_assert_cmpuint(store_mem_message_count(s, "pete", "inbox"), ==, 1);
    g_assert_cmpuint(store_mem_message_count(s, "pete", "outbox"), ==, 1);
    store_free(&s);
}

static void
test_fetch_returns_the_octets_and_not_found_when_gone(void)
{
    Store *s = new_store();
    StoreMsgId a = deliver(s, "first\r\n");
    StoreMsgId b = deliver(s, "second\r\n");
    g_autoptr(GBytes) msg = NULL;
    g_autoptr(GError) error = NULL;
    g_assert_true(store_fetch(s, "anna", "inbox", &b, &msg, &error));
    g_assert_cmpmem(g_bytes_get_data(msg, NULL), g_bytes_get_size(msg), "second\r\n", 8);

    g_assert_true(store_remove(s, "anna", "inbox", &a, 1, &error));
    GBytes *gone = NULL;
    g_assert_false(store_fetch(s, "anna", "inbox", &a, &gone, &error));
    g_assert_error(error, STORE_ERROR, STORE_ERROR_NOT_FOUND);
    g_assert_null(gone);
    g_clear_error(&error);
    /* pete's copy is his own */
    g_autoptr(GBytes) petes = NULL;
    g_assert_true(store_fetch(s, "pete", "inbox", &a, &petes, &error));
    /* and a mailbox nobody has */
    g_assert_false(store_fetch(s, "pete", "drafts", &a, &gone, &error));
    g_assert_error(error, STORE_ERROR, STORE_ERROR_NOT_FOUND);
    store_free(&s);
}

static void
test_remove_deletes_listed_ids_and_ignores_missing_ones(void)
{
    Store *s = new_store();
    StoreMsgId ids[4];
    for (int i = 0; i < 4; i++)
        ids[i] = deliver(s, "m\r\n");
    StoreMsgId del[] = {ids[1], ids[3], ids[3]};
    g_autoptr(GError) error = NULL;
    g_assert_true(store_remove(s, "pete", "inbox", del, G_N_ELEMENTS(del), &error));
    g_assert_no_error(error);
    g_autoptr(GArray) left = all_ids(s, "pete", "inbox", 10);
    g_assert_cmpuint(left->len, ==, 2);
    g_assert_cmpmem(g_array_index(left, StoreIndexEntry, 0).id.bytes, 16, ids[0].bytes, 16);
    g_assert_cmpmem(g_array_index(left, StoreIndexEntry, 1).id.bytes, 16, ids[2].bytes, 16);
    g_assert_cmpuint(store_mem_message_count(s, "anna", "inbox"), ==, 4);
    g_assert_true(store_remove(s, "nobody", "inbox", ids, 1, &error));
    store_free(&s);
}

static void
test_page_after_a_removed_id_continues_after_it(void)
{
    Store *s = new_store();
    StoreMsgId ids[4];
    for (int i = 0; i < 4; i++)
        ids[i] = deliver(s, "m\r\n");
    g_assert_true(store_remove(s, "pete", "inbox", &ids[1], 1, NULL));
    g_autoptr(GArray) got = g_array_new(FALSE, FALSE, sizeof(StoreIndexEntry));
    g_assert_true(store_index_page(s, "pete", "inbox", &ids[1], 10, got, NULL));
    g_assert_cmpuint(got->len, ==, 2);
    g_assert_cmpmem(g_array_index(got, StoreIndexEntry, 0).id.bytes, 16, ids[2].bytes, 16);
    store_free(&s);
}

static void
test_users_mailboxes_and_deletion(void)
{
    Store *s = new_store();
    g_autoptr(GError) error = NULL;
    gboolean exists = FALSE;
    g_assert_true(store_user_exists(s, "pete", &exists, &error) && exists);
    g_assert_true(store_user_exists(s, "zoe", &exists, &error) && !exists);
    g_assert_true(store_mailbox_add(s, "pete", "lists", &error));
    g_autoptr(GPtrArray) boxes = g_ptr_array_new_with_free_func(g_free);
    g_assert_true(store_mailboxes_list(s, "pete", boxes, &error));
    g_assert_cmpuint(boxes->len, ==, 3);
    g_assert_cmpstr(g_ptr_array_index(boxes, 0), ==, "inbox");
    g_assert_cmpstr(g_ptr_array_index(boxes, 1), ==, "lists");
    g_assert_cmpstr(g_ptr_array_index(boxes, 2), ==, "outbox");
    g_assert_true(store_mailbox_exists(s, "pete", "lists", &exists, &error) && exists);
    g_assert_true(store_mailbox_exists(s, "anna", "lists", &exists, &error) && !exists);

    g_autoptr(GPtrArray) users = g_ptr_array_new_with_free_func(g_free);
    g_assert_true(store_users_list(s, users, &error));
    g_assert_cmpuint(users->len, ==, 2);
    g_assert_cmpstr(g_ptr_array_index(users, 0), ==, "anna");

    deliver(s, "hello\r\n");
    g_assert_true(store_password_set(s, "pete", "$hash", &error));
    g_assert_true(store_user_del(s, "pete", &error));
    g_assert_no_error(error);
    g_assert_true(store_user_exists(s, "pete", &exists, &error) && !exists);
    g_assert_cmpuint(store_mem_message_count(s, "pete", "inbox"), ==, 0);
    g_assert_cmpuint(store_mem_message_count(s, "anna", "inbox"), ==, 1);
    char *hash = NULL;
    g_assert_false(store_password_get(s, "pete", &hash, &error));
    g_assert_error(error, STORE_ERROR, STORE_ERROR_NOT_FOUND);
    store_free(&s);
}

static void
test_password_round_trip_and_not_found(void)
{
    Store *s = new_store();
    g_autoptr(GError) error = NULL;
    char *hash = NULL;
    g_assert_false(store_password_get(s, "anna", &hash, &error));
    g_assert_error(error, STORE_ERROR, STORE_ERROR_NOT_FOUND);
    g_assert_null(hash);
    g_clear_error(&error);
    g_assert_true(store_password_set(s, "anna", "$pbkdf2-sha256$i=1000$c2FsdA==$a2V5", &error));
    g_assert_true(store_password_get(s, "anna", &hash, &error));
    g_assert_cmpstr(hash, ==, "$pbkdf2-sha256$i=1000$c2FsdA==$a2V5");
    g_free(hash);
    store_free(&s);
}

static void
test_fail_next_fails_exactly_n_operations_with_temporary(void)
{
    Store *s = new_store();
    store_mem_fail_next(s, 2);
    StoreTarget to = {"pete", "inbox"};
    StoreMsgId id;
    g_autoptr(GError) error = NULL;
    store_msgid_new(&id);
    g_assert_false(store_deliver(s, &id, &to, 1, (const guint8 *)"x\r\n", 3, &error));
    g_assert_error(error, STORE_ERROR, STORE_ERROR_TEMPORARY);
    g_clear_error(&error);
    g_autoptr(GArray) page = g_array_new(FALSE, FALSE, sizeof(StoreIndexEntry));
    g_assert_false(store_index_page(s, "pete", "inbox", NULL, 10, page, &error));
    g_assert_error(error, STORE_ERROR, STORE_ERROR_TEMPORARY);
    g_clear_error(&error);
    g_assert_cmpuint(store_mem_message_count(s, "pete", "inbox"), ==, 0);   /* nothing half-done */
    store_msgid_new(&id);
    g_assert_true(store_deliver(s, &id, &to, 1, (const guint8 *)"x\r\n", 3, &error));
    g_assert_no_error(error);
    g_assert_cmpuint(store_mem_message_count(s, "pete", "inbox"), ==, 1);
    store_free(&s);
}

static void
test_counters_count_index_values_and_fetched_messages(void)
{
    Store *s = new_store();
    StoreMsgId id = deliver(s, "0123456789");
    deliver(s, "abc");
    const StoreCounters *c = store_counters(s);
    guint64 read0 = c->bytes_read, cols0 = c->columns_read;
    g_autoptr(GArray) all = all_ids(s, "pete", "inbox", 10);
    /* listing reads index columns only: 16-octet ids and 8-octet sizes, never bodies */
    g_assert_cmpuint(c->columns_read - cols0, ==, 2);
    g_assert_cmpuint(c->bytes_read - read0, ==, 2 * (16 + 8));
    g_autoptr(GBytes) msg = NULL;
    g_assert_true(store_fetch(s, "pete", "inbox", &id, &msg, NULL));
    g_assert_cmpuint(c->bytes_read - read0, ==, 2 * (16 + 8) + 16 + 10);
    g_assert_cmpuint(c->columns_read - cols0, ==, 3);
    g_assert_cmpuint(c->bytes_written, >=, 2 * 2 * (16 + 10));
    g_assert_cmpuint(c->calls, >, 0);
    store_free(&s);
}

static void
test_invalid_names_are_refused_before_the_backend(void)
{
    Store *s = new_store();
    g_autoptr(GError) error = NULL;
    StoreTarget to = {"Pete:x", "inbox"};
    StoreMsgId id;
    store_msgid_new(&id);
    g_assert_false(store_deliver(s, &id, &to, 1, (const guint8 *)"x", 1, &error));
    g_assert_error(error, STORE_ERROR, STORE_ERROR_INVALID);
    store_free(&s);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/store-mem/deliver-to-two-then-pages-of-two-list-every-id-once-in-order",
                    test_deliver_to_two_then_pages_of_two_list_every_id_once_in_order);
    g_test_add_func("/store-mem/one-copy-per-mailbox-however-often-named",
                    test_one_copy_per_mailbox_however_often_named);
    g_test_add_func("/store-mem/fetch-returns-the-octets-and-not-found-when-gone",
                    test_fetch_returns_the_octets_and_not_found_when_gone);
    g_test_add_func("/store-mem/remove-deletes-listed-ids-and-ignores-missing-ones",
                    test_remove_deletes_listed_ids_and_ignores_missing_ones);
    g_test_add_func("/store-mem/page-after-a-removed-id-continues-after-it",
                    test_page_after_a_removed_id_continues_after_it);
    g_test_add_func("/store-mem/users-mailboxes-and-deletion", test_users_mailboxes_and_deletion);
    g_test_add_func("/store-mem/password-round-trip-and-not-found",
                    test_password_round_trip_and_not_found);
    g_test_add_func("/store-mem/fail-next-fails-exactly-n-operations-with-temporary",
                    test_fail_next_fails_exactly_n_operations_with_temporary);
    g_test_add_func("/store-mem/counters-count-index-values-and-fetched-messages",
                    test_counters_count_index_values_and_fetched_messages);
    g_test_add_func("/store-mem/invalid-names-are-refused-before-the-backend",
                    test_invalid_names_are_refused_before_the_backend);
    return g_test_run();
}
