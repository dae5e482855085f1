/*
 * imap-store-check - end-to-end checks of the IMAP store layer (src/imap/view.c) against a real
 * Cassandra ring (run by test/e2e/test_imap_store.py): seals at QUORUM, flags, expunges seen
 * across views and POP3's store_remove, meta read in a few RPCs, mailbox create/rename/delete
 * with IMAP names, and an epoch change when two variants of a seal exist.
 *
 *   imap-store-check CONFIG CHECK USER [N]
 *
 * CHECK: seals | flags | meta (N messages, default 2000) | mailboxes | conflict
 * Prints "ok CHECK" (and measurements as "key=value") and exits 0, or what failed and exits 1.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "imap/view.h"
#include "store/store.h"
#include "support/store_tool.h"
#include "util/config.h"

static Store *store;
static const char *user;
static int meta_messages = 2000;   /* the check meta's N */
#define SETTLE_MS 500

/* deliver - N small messages to USER's MAILBOX */
static int
deliver(const char *mailbox, int n)
{
    StoreTarget t = {user, mailbox};
    for (int i = 0; i < n; i++) {
        g_autofree char *msg = g_strdup_printf("Message-ID: <%d@check>\r\nSubject: m%d\r\n\r\n"
                                               "body %d\r\n", i, i, i);
        StoreMsgId id;
        store_msgid_new(&id);
        OK(store_deliver(store, &id, &t, 1, (const guint8 *)msg, strlen(msg), E));
    }
    return 0;
}

static void
settle(void)
{
    g_usleep((SETTLE_MS + 1100) * 1000);   /* past the horizon's next whole second */
}

static int
same_view(ImapView *a, ImapView *b)
{
    CHECK(imap_view_count(a) == imap_view_count(b), "counts %u and %u", imap_view_count(a),
          imap_view_count(b));
    CHECK(imap_view_uidvalidity(a) == imap_view_uidvalidity(b), "uidvalidity differs");
    for (guint seq = 1; seq <= imap_view_count(a); seq++) {
        CHECK(imap_view_uid(a, seq) == imap_view_uid(b, seq), "uid of %u differs", seq);
        CHECK(memcmp(imap_view_msgid(a, seq), imap_view_msgid(b, seq), 16) == 0,
              "message of %u differs", seq);
        if (seq > 1)
            CHECK(imap_view_uid(a, seq) > imap_view_uid(a, seq - 1), "uids not ascending");
    }
    return 0;
}

static int
check_seals(void)
{
    if (deliver("inbox", 20))
        return 1;
    settle();
    ImapView *a = NULL, *b = NULL;
    OK((a = imap_view_open(store, user, "INBOX", FALSE, SETTLE_MS, E)));
    OK((b = imap_view_open(store, user, "inbox", TRUE, SETTLE_MS, E)));
    CHECK(imap_view_count(a) == 20, "%u messages", imap_view_count(a));
    CHECK(imap_view_uid(a, 20) == 20 && imap_view_uidnext(a) == 21, "uids 1..20 expected");
    if (same_view(a, b))
        return 1;
    if (deliver("inbox", 5))
        return 1;
    settle();
    ImapViewChanges ca, cb;
    imap_view_changes_init(&ca);
    imap_view_changes_init(&cb);
    OK(imap_view_sync(b, &cb, E));   /* the read-only view seals too */
    OK(imap_view_sync(a, &ca, E));
    CHECK(ca.exists == 25 && cb.exists == 25, "exists %u %u", ca.exists, cb.exists);
    if (same_view(a, b))
        return 1;
    ImapView *c = NULL;
    OK((c = imap_view_open(store, user, "INBOX", FALSE, SETTLE_MS, E)));
    if (same_view(a, c))
        return 1;
    imap_view_changes_clear(&ca);
    imap_view_changes_clear(&cb);
    imap_view_free(&a);
    imap_view_free(&b);
    imap_view_free(&c);
    return 0;
}

static int
check_flags(void)
{
    if (deliver("inbox", 6))
        return 1;
    settle();
    ImapView *a = NULL, *b = NULL;
    OK((a = imap_view_open(store, user, "INBOX", FALSE, SETTLE_MS, E)));
    OK((b = imap_view_open(store, user, "INBOX", FALSE, SETTLE_MS, E)));
    guint one = 1, two = 2, three = 3;
    const char *kw[] = {"$Important", NULL};
    OK(imap_view_store_flags(a, &one, 1, IMAP_FLAGS_ADD, IMAP_FLAG_SEEN, kw, NULL, E));
    OK(imap_view_store_flags(b, &one, 1, IMAP_FLAGS_ADD, IMAP_FLAG_FLAGGED, NULL, NULL, E));
    OK(imap_view_store_flags(a, &two, 1, IMAP_FLAGS_ADD, IMAP_FLAG_DELETED, NULL, NULL, E));
    ImapViewChanges ca, cb;
    imap_view_changes_init(&ca);
    imap_view_changes_init(&cb);
    OK(imap_view_sync(a, &ca, E));
    OK(imap_view_sync(b, &cb, E));
    CHECK(imap_view_flags(a, 1) == (IMAP_FLAG_SEEN | IMAP_FLAG_FLAGGED), "flags merge in a: %u",
          imap_view_flags(a, 1));
    CHECK(imap_view_flags(b, 1) == (IMAP_FLAG_SEEN | IMAP_FLAG_FLAGGED), "flags merge in b");
    CHECK(imap_view_msg_keywords(b, 1)[0] && strcmp(imap_view_msg_keywords(b, 1)[0], "$Important") == 0,
          "keyword");
    /* EXPUNGE in a is seen by b */
    g_autoptr(GArray) gone = g_array_new(FALSE, FALSE, sizeof(guint));
    OK(imap_view_expunge(a, NULL, 0, gone, E));
    CHECK(gone->len == 1 && g_array_index(gone, guint, 0) == 2, "expunge of seq 2");
    imap_view_changes_clear(&cb);
    imap_view_changes_init(&cb);
    OK(imap_view_sync(b, &cb, E));
    CHECK(cb.expunged->len == 1 && g_array_index(cb.expunged, guint, 0) == 2, "b sees the expunge");
    /* POP3's DELE (store_remove) drops the flags, and both views see it */
    StoreMsgId first = *imap_view_msgid(a, 1);
    OK(imap_view_store_flags(a, &three, 1, IMAP_FLAGS_ADD, IMAP_FLAG_ANSWERED, NULL, NULL, E));
    OK(store_remove(store, user, "inbox", &first, 1, E));
    g_autoptr(GPtrArray) flags = g_ptr_array_new_with_free_func(g_free);
    OK(store_flags_list(store, user, "inbox", flags, E));
    for (guint i = 0; i < flags->len; i++)
        CHECK(memcmp(((StoreFlag *)flags->pdata[i])->id.bytes, first.bytes, 16) != 0,
              "flag %s of a removed message remains", ((StoreFlag *)flags->pdata[i])->name);
    imap_view_changes_clear(&ca);
    imap_view_changes_init(&ca);
    OK(imap_view_sync(a, &ca, E));
    CHECK(ca.expunged->len == 1 && g_array_index(ca.expunged, guint, 0) == 1, "a sees DELE");
    CHECK(imap_view_count(a) == 4, "%u left", imap_view_count(a));
    imap_view_changes_clear(&ca);
    imap_view_changes_clear(&cb);
    imap_view_free(&a);
    imap_view_free(&b);
    return 0;
}

static int
check_meta(void)
{
    int n = meta_messages;
    gint64 t0 = g_get_monotonic_time();
    if (deliver("inbox", n))
        return 1;
    gint64 t1 = g_get_monotonic_time();
    settle();
    guint64 calls = store_counters(store)->calls;
    gint64 t2 = g_get_monotonic_time();
    ImapView *v = NULL;
    OK((v = imap_view_open(store, user, "INBOX", FALSE, SETTLE_MS, E)));
    gint64 t3 = g_get_monotonic_time();
    guint64 open_calls = store_counters(store)->calls - calls;
    CHECK(imap_view_count(v) == (guint)n, "%u messages", imap_view_count(v));
    ImapView *w = NULL;   /* a second SELECT: the seals exist, it only reads */
    calls = store_counters(store)->calls;
    gint64 t4 = g_get_monotonic_time();
    OK((w = imap_view_open(store, user, "INBOX", TRUE, SETTLE_MS, E)));
    gint64 t5 = g_get_monotonic_time();
    guint64 reopen_calls = store_counters(store)->calls - calls;
    for (guint seq = 1; seq <= (guint)n; seq++) {
        g_autofree char *blob = g_strdup_printf("(\"envelope %u\")", seq);
        g_autoptr(GBytes) b = g_bytes_new(blob, strlen(blob));
        OK(imap_view_meta_put(v, seq, b, E));
    }
    g_autoptr(GArray) seqs = g_array_new(FALSE, FALSE, sizeof(guint));
    for (guint seq = 1; seq <= (guint)n; seq++)
        g_array_append_val(seqs, seq);
    g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref);
    calls = store_counters(store)->calls;
    gint64 t6 = g_get_monotonic_time();
    OK(imap_view_meta_get(w, (guint *)seqs->data, seqs->len, out, E));
    gint64 t7 = g_get_monotonic_time();
    guint64 meta_calls = store_counters(store)->calls - calls;
    CHECK(out->len == (guint)n, "meta entries");
    for (guint i = 0; i < out->len; i++) {
        g_autofree char *want = g_strdup_printf("(\"envelope %u\")", i + 1);
        GBytes *b = out->pdata[i];
        CHECK(b && g_bytes_get_size(b) == strlen(want) &&
              memcmp(g_bytes_get_data(b, NULL), want, strlen(want)) == 0, "meta %u", i + 1);
    }
    CHECK(meta_calls <= (guint64)(n + 999) / 1000, "%" G_GUINT64_FORMAT " calls for meta",
          meta_calls);
    printf("messages=%d deliver_s=%.2f open_ms=%.1f open_calls=%" G_GUINT64_FORMAT
           " reopen_ms=%.1f reopen_calls=%" G_GUINT64_FORMAT " meta_get_ms=%.1f meta_calls=%"
           G_GUINT64_FORMAT "\n", n, (t1 - t0) / 1e6, (t3 - t2) / 1e3, open_calls,
           (t5 - t4) / 1e3, reopen_calls, (t7 - t6) / 1e3, meta_calls);
    imap_view_free(&v);
    imap_view_free(&w);
    return 0;
}

static int
check_mailboxes(void)
{
    OK(imap_mailbox_create(store, user, "Work Stuff", E));
    OK(imap_mailbox_create(store, user, "Work Stuff/2026: Q1|x", E));
    if (deliver("Work Stuff", 40) || deliver("Work Stuff/2026: Q1|x", 2))
        return 1;
    settle();
    ImapView *v = NULL;
    OK((v = imap_view_open(store, user, "Work Stuff", FALSE, SETTLE_MS, E)));
    guint32 old_validity = imap_view_uidvalidity(v);
    guint one = 1;
    OK(imap_view_store_flags(v, &one, 1, IMAP_FLAGS_ADD, IMAP_FLAG_FLAGGED, NULL, NULL, E));
    g_usleep(1100 * 1000);
    OK(imap_mailbox_rename(store, user, "Work Stuff", "Archive/Work", E));
    ImapViewChanges c;
    imap_view_changes_init(&c);
    GError *e = NULL;
    CHECK(!imap_view_sync(v, &c, &e) &&
          g_error_matches(e, IMAP_VIEW_ERROR, IMAP_VIEW_ERROR_EPOCH_ENDED), "renamed away");
    g_clear_error(&e);
    imap_view_changes_clear(&c);
    imap_view_free(&v);
    OK((v = imap_view_open(store, user, "Archive/Work", FALSE, SETTLE_MS, E)));
    CHECK(imap_view_count(v) == 40, "%u moved", imap_view_count(v));
    CHECK(imap_view_flags(v, 1) == IMAP_FLAG_FLAGGED, "flags moved");
    CHECK(imap_view_uidvalidity(v) > old_validity, "a new uidvalidity");
    imap_view_free(&v);
    OK((v = imap_view_open(store, user, "Archive/Work/2026: Q1|x", FALSE, SETTLE_MS, E)));
    CHECK(imap_view_count(v) == 2, "inferior moved");
    imap_view_free(&v);
    g_autoptr(GPtrArray) list = g_ptr_array_new_with_free_func(g_free);
    OK(imap_mailboxes_list(store, user, list, E));
    GString *names = g_string_new(NULL);
    for (guint i = 0; i < list->len; i++)
        g_string_append_printf(names, "[%s]", ((ImapMailboxInfo *)list->pdata[i])->name);
    CHECK(strcmp(names->str, "[INBOX][Archive/Work][Archive/Work/2026: Q1|x][outbox]") == 0,
          "list %s", names->str);
    g_string_free(names, TRUE);
    OK(imap_mailbox_delete(store, user, "Archive/Work", E));
    CHECK(!imap_view_open(store, user, "Archive/Work", FALSE, SETTLE_MS, &e) &&
          g_error_matches(e, IMAP_VIEW_ERROR, IMAP_VIEW_ERROR_NONEXISTENT), "deleted");
    g_clear_error(&e);
    OK(imap_mailbox_create(store, user, "Archive/Work", E));
    OK((v = imap_view_open(store, user, "Archive/Work", FALSE, SETTLE_MS, E)));
    CHECK(imap_view_count(v) == 0, "re-created empty");
    imap_view_free(&v);
    /* APPEND and COPY go through the writer */
    ImapAppend *a = NULL;
    OK((a = imap_append_begin(store, user, "Archive/Work", E)));
    OK(imap_append_write(a, "Subject: appended\r\n\r\n", 21, E));
    OK(imap_append_write(a, "hello\r\n", 7, E));
    guint32 validity, uid;
    OK(imap_append_commit(a, IMAP_FLAG_SEEN, NULL, 0, &validity, &uid, E));
    imap_append_free(&a);
    settle();
    OK((v = imap_view_open(store, user, "Archive/Work", FALSE, SETTLE_MS, E)));
    CHECK(imap_view_count(v) == 1 && imap_view_flags(v, 1) == IMAP_FLAG_SEEN, "appended");
    CHECK(imap_view_uidvalidity(v) == validity, "APPEND's uidvalidity");
    OK(imap_view_copy(v, &one, 1, "INBOX", FALSE, NULL, NULL, E));
    imap_view_free(&v);
    return 0;
}

/* check_conflict - two variants of seal 0 of the current epoch: a view moves to the next */
static int
check_conflict(void)
{
    if (deliver("inbox", 2))
        return 1;
    settle();
    ImapView *v = NULL;
    OK((v = imap_view_open(store, user, "INBOX", FALSE, SETTLE_MS, E)));
    guint32 validity = imap_view_uidvalidity(v);
    StoreMsgId second = *imap_view_msgid(v, 2);
    imap_view_free(&v);
    /* a rival variant of seal 0 of epoch 0 (one the real sealer did not write) */
    guint8 name[32] = {0}, value[36] = {0};
    memset(name + 16, 0x5a, 16);
    value[11] = 1;   /* first UID 1 */
    value[15] = 1;   /* one message */
    memcpy(value + 16, second.bytes, 16);
    g_autoptr(GBytes) vb = g_bytes_new(value, sizeof value);
    OK(store_seal_put(store, user, "inbox", name, sizeof name, vb, 1, E));
    OK((v = imap_view_open(store, user, "INBOX", FALSE, SETTLE_MS, E)));
    CHECK(imap_view_uidvalidity(v) == validity + 1, "uidvalidity %u after %u",
          imap_view_uidvalidity(v), validity);
    CHECK(imap_view_count(v) == 2 && imap_view_uid(v, 1) == 1 && imap_view_uid(v, 2) == 2,
          "epoch 1 starts at UID 1");
    imap_view_free(&v);
    return 0;
}

int
main(int argc, char **argv)
{
    static const StoreToolCheck checks[] = {
        {"seals", check_seals}, {"flags", check_flags}, {"meta", check_meta},
        {"mailboxes", check_mailboxes}, {"conflict", check_conflict}, {NULL, NULL},
    };
    if (argc < 4) {
        fprintf(stderr, "usage: imap-store-check CONFIG seals|flags|meta|mailboxes|conflict USER [N]\n");
        return 64;
    }
    CassmailConfig *cfg = NULL;
    if (!(store = store_tool_open("imap-store-check", argv[1], &cfg)))
        return 1;
    user = argv[3];
    if (argc > 4)
        meta_messages = atoi(argv[4]);
    int rc = store_tool_run("imap-store-check", checks, argv[2]);
    store_free(&store);
    config_free(&cfg);
    return rc;
}
