/*
 * store_cass.c - the mail store on Cassandra 0.7.0 (the product backend; schema in store.h).
 *
 * Delivery is one batch_mutate under one version-1 TimeUUID: every target's Mailboxes column and
 * its MailboxIndex entry. Column timestamps come from the TimeUUID itself, so a retried write is
 * the same write and can never duplicate a message. The id comes from the caller
 * (store_msgid_new), which may have written it into the message already. A delivery that fails in
 * the end is withdrawn (its columns deleted again), since Cassandra may have applied part of the
 * batch and the client will resend the message under a new id. Reads for POP3 listings touch MailboxIndex
 * only; message bodies are read one at a time.
 */
#include "store/store.h"

#include <string.h>

#include "cass/cass.h"
#include "store/store_admin.h"
#include "util/log.h"

typedef struct {
    Store base;
    CassClient *client;
    char *keyspace;
    char **endpoints;
    int timeout_ms, retry_ms, backoff_ms, unavailable_ms;
    int write_consistency;
    int read_consistency;
} CassStore;

#define CF_USERS "Users"
#define CF_MAILBOXES "Mailboxes"
#define CF_INDEX "MailboxIndex"
#define CF_CREDENTIALS "Credentials"
#define PASSWORD_COLUMN "password"

/* The schema: column families with their comparators. gc_grace for the mail CFs is one day
 * instead of ten: deleted mail may reappear if a replica stays down longer than that and is then
 * brought back without repair, which the paper accepts for e-mail; in exchange POP3 slices skip
 * fewer tombstones.
 *
 * Memtable lifetime: Cassandra 0.7 deletes a commit log segment only once every column family
 * written in it has flushed, and it flushes a memtable when it is full (memtable_throughput_in_mb,
 * memtable_operations_in_millions) or older than memtable_flush_after_mins (default 60). The
 * small column families never fill: MailboxIndex gets 8 octets per message, Users and
 * Credentials a few writes per user added. With the default they would keep an hour of commit
 * log alive — every message of that hour, twice per local sender — which measured 28 GB after
 * three minutes of a single node taking 130 MB/s. Flushed after a minute, they bound a node's
 * commit log to about two minutes of its writes (the flush check runs every minute); the price
 * is one small SSTable a minute, which compaction merges. Mailboxes fills and flushes by size. */
#define SMALL_CF_FLUSH_MINS 1

/* ---- Column-family settings for mail (measured in docs/tuning.md; one place, used below) ----
 * OCTETS_CF_TUNING is for the column family that holds message octets (Mailboxes). 0.7's defaults
 * flush its memtable at heap/16 (64 MB at 1 GB) and compact every 4 similar SSTables, so each
 * megabyte of mail was rewritten by compaction again and again (CompactionExecutor and
 * FlushWriter took most of Cassandra's CPU per MB).
 *  memtable_throughput_in_mb 256    fewer, larger SSTables: 4 times fewer flushes and one tier of
 *                                   compaction less than 64 MB; up to three of them (filling,
 *                                   queued, flushing) fit the 2 GB heap tools/cluster gives a
 *                                   node of a ring of 3-8 (1024 MB saves more, needs 4 GB)
 *  memtable_operations_in_millions 1   a memtable of mail parts fills by size long before 1
 *                                   million writes (stated, so the heap-derived default never
 *                                   decides)
 *  min/max_compaction_threshold 16/32  compact once 16 SSTables of a size exist, not 4: each byte
 *                                   is rewritten once per 16-fold growth instead of once per
 *                                   4-fold; the price is that reading one message of a busy
 *                                   mailbox may look into up to about 16 SSTables per size tier
 *                                   instead of 4 (POP3 reads each message once, by column name)
 * Measured on one node under Postal, one copy per message: Cassandra's CPU per MB of mail
 * 0.66-0.71 (200 KB-2 MB) and 0.57 (50-500 KB) of 0.7's defaults, throughput 1.27-1.52x.
 * The small column families (SMALL_CF_TUNING) keep 0.7's size thresholds: they flush after a
 * minute anyway (see above), which bounds their memtables far below any size threshold. */
#define OCTETS_CF_TUNING                                                                   \
    .memtable_throughput_in_mb = 256, .memtable_operations_in_millions = 1.0,              \
    .min_compaction_threshold = 16, .max_compaction_threshold = 32
#define SMALL_CF_TUNING .memtable_flush_after_mins = SMALL_CF_FLUSH_MINS
/* ---- end of column-family settings ---- */

static const CassCfSpec schema_cfs[] = {
    {CF_USERS, "BytesType", 0, "user -> mailbox names", SMALL_CF_TUNING},
    {CF_MAILBOXES, "TimeUUIDType", 86400, "user:mailbox -> TimeUUID -> message", OCTETS_CF_TUNING},
    {CF_INDEX, "TimeUUIDType", 86400, "user:mailbox -> TimeUUID -> size (8 octets, big-endian)",
     SMALL_CF_TUNING},
    {CF_CREDENTIALS, "BytesType", 0, "user -> password hash", SMALL_CF_TUNING},
};

/* to_store_error - a CASS_ERROR as the store reports it */
static void
to_store_error(GError *e, GError **error)
{
    int code = STORE_ERROR_FAILED;
    if (e->domain == CASS_ERROR) {
        switch (e->code) {
        case CASS_ERROR_TRANSPORT:
        case CASS_ERROR_UNAVAILABLE:
        case CASS_ERROR_TIMEDOUT:
            code = STORE_ERROR_TEMPORARY;
            break;
        case CASS_ERROR_NOT_FOUND:
            code = STORE_ERROR_NOT_FOUND;
            break;
        default:
            break;
        }
    }
    g_set_error_literal(error, STORE_ERROR, code, e->message);
    g_error_free(e);
}

/* sync_counters - the client's figures into the store's counters */
static void
sync_counters(CassStore *s)
{
    const CassStats *st = cass_client_stats(s->client);
    s->base.counters.bytes_read = st->bytes_read;
    s->base.counters.columns_read = st->columns_read;
    s->base.counters.bytes_written = st->bytes_written;
    s->base.counters.calls = st->calls;
    s->base.counters.retries = st->retries;
}

/* done - common tail of every operation: counters, error conversion */
static gboolean
done(CassStore *s, gboolean ok, GError *e, GError **error)
{
    sync_counters(s);
    if (!ok)
        to_store_error(e, error);
    return ok;
}

/* now_us - wall clock in microseconds, Cassandra's timestamp convention */
static gint64
now_us(void)
{
    return g_get_real_time();
}

/* uuid_timestamp_us - microseconds since the Unix epoch of a version-1 UUID */
static gint64
uuid_timestamp_us(const StoreMsgId *id)
{
    /* 100 ns intervals since 1582-10-15 to µs since 1970-01-01 */
    return ((gint64)store_msgid_time(id) - (gint64)G_GUINT64_CONSTANT(0x01B21DD213814000)) / 10;
}

/* row_key - "user:mailbox" */
static char *
row_key(const char *user, const char *mailbox)
{
    return g_strconcat(user, ":", mailbox, NULL);
}

/* cap_budget - limit the client's retry budget to MS for what follows; returns the budget to
 * restore afterwards */
static int
cap_budget(CassStore *s, int ms)
{
    int budget = cass_client_set_retry_ms(s->client, ms);
    if (budget < ms)
        cass_client_set_retry_ms(s->client, budget);
    return budget;
}

/* How long confirming an unknown user at QUORUM may take, at most. */
#define CONFIRM_BUDGET_MS 1000

static gboolean
cs_user_exists(Store *base, const char *user, gboolean *exists, GError **error)
{
    CassStore *s = (CassStore *)base;
    g_autoptr(GPtrArray) cols = g_ptr_array_new_with_free_func(cass_column_free);
    GError *e = NULL;
    gboolean ok = cass_get_slice(s->client, CF_USERS, user, strlen(user), NULL, 0, NULL, 0, FALSE, 1,
                                 s->read_consistency, cols, &e);
    *exists = ok && cols->len > 0;
    /* "No such user" at ONE may be one stale replica talking: a node that crashed loses the
     * writes of its last commit log sync period and answers without them until repaired. Since
     * the answer becomes a permanent 550, it is confirmed at QUORUM first (within a second);
     * when QUORUM cannot be had, the first answer stands. */
    if (ok && !*exists && s->read_consistency == CASS_ONE) {
        GError *e2 = NULL;
        int budget = cap_budget(s, CONFIRM_BUDGET_MS);
        if (cass_get_slice(s->client, CF_USERS, user, strlen(user), NULL, 0, NULL, 0, FALSE, 1,
                           CASS_QUORUM, cols, &e2))
            *exists = cols->len > 0;
        else
            g_error_free(e2);
        cass_client_set_retry_ms(s->client, budget);
    }
    return done(s, ok, e, error);
}

static gboolean
cs_mailbox_add(Store *base, const char *user, const char *mailbox, GError **error)
{
    CassStore *s = (CassStore *)base;
    CassBatch *b = cass_batch_new();
    g_autoptr(GBytes) empty = g_bytes_new(NULL, 0);
    cass_batch_insert(b, CF_USERS, user, strlen(user), mailbox, strlen(mailbox), empty, now_us());
    GError *e = NULL;
    gboolean ok = cass_batch_execute(s->client, b, s->write_consistency, &e);
    cass_batch_free(&b);
    return done(s, ok, e, error);
}

static gboolean
cs_user_add(Store *base, const char *user, GError **error)
{
    CassStore *s = (CassStore *)base;
    CassBatch *b = cass_batch_new();
    g_autoptr(GBytes) empty = g_bytes_new(NULL, 0);
    gint64 ts = now_us();
    cass_batch_insert(b, CF_USERS, user, strlen(user), "inbox", 5, empty, ts);
    cass_batch_insert(b, CF_USERS, user, strlen(user), "outbox", 6, empty, ts);
    GError *e = NULL;
    gboolean ok = cass_batch_execute(s->client, b, s->write_consistency, &e);
    cass_batch_free(&b);
    return done(s, ok, e, error);
}

static gboolean
cs_mailboxes_list(Store *base, const char *user, GPtrArray *out, GError **error)
{
    CassStore *s = (CassStore *)base;
    g_autoptr(GPtrArray) cols = g_ptr_array_new_with_free_func(cass_column_free);
    GError *e = NULL;
    gboolean ok = cass_get_slice(s->client, CF_USERS, user, strlen(user), NULL, 0, NULL, 0, FALSE,
                                 10000, s->read_consistency, cols, &e);
    for (guint i = 0; ok && i < cols->len; i++) {
        CassColumn *c = g_ptr_array_index(cols, i);
        gsize len;
        const char *name = g_bytes_get_data(c->name, &len);
        g_ptr_array_add(out, g_strndup(name, len));
    }
    return done(s, ok, e, error);
}

static gboolean
cs_user_del(Store *base, const char *user, GError **error)
{
    CassStore *s = (CassStore *)base;
    g_autoptr(GPtrArray) boxes = g_ptr_array_new_with_free_func(g_free);
    if (!cs_mailboxes_list(base, user, boxes, error))
        return FALSE;
    gint64 ts = now_us();
    GError *e = NULL;
    gboolean ok = TRUE;
    /* Messages first, the user last: an interrupted userdel can simply be run again. */
    for (guint i = 0; ok && i < boxes->len; i++) {
        g_autofree char *key = row_key(user, g_ptr_array_index(boxes, i));
        ok = cass_remove_row(s->client, CF_MAILBOXES, key, strlen(key), ts, s->write_consistency, &e) &&
             cass_remove_row(s->client, CF_INDEX, key, strlen(key), ts, s->write_consistency, &e);
    }
    ok = ok && cass_remove_row(s->client, CF_CREDENTIALS, user, strlen(user), ts, s->write_consistency, &e);
    ok = ok && cass_remove_row(s->client, CF_USERS, user, strlen(user), ts, s->write_consistency, &e);
    return done(s, ok, e, error);
}

static gboolean
cs_users_list(Store *base, GPtrArray *out, GError **error)
{
    CassStore *s = (CassStore *)base;
    const int page = 256;
    g_autoptr(GBytes) start = g_bytes_new(NULL, 0);
    GError *e = NULL;
    for (;;) {
        g_autoptr(GPtrArray) keys = g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref);
        guint seen = 0;
        gsize slen;
        const void *sdata = g_bytes_get_data(start, &slen);
        if (!cass_range_keys(s->client, CF_USERS, sdata, slen, page, s->read_consistency, keys,
                             &seen, &e))
            return done(s, FALSE, e, error);
        for (guint i = 0; i < keys->len; i++) {
            GBytes *k = g_ptr_array_index(keys, i);
            if (slen && g_bytes_equal(k, start))
                continue;   /* the start key of a following page comes back again */
            gsize len;
            const char *name = g_bytes_get_data(k, &len);
            g_ptr_array_add(out, g_strndup(name, len));
        }
        if (seen < (guint)page || keys->len == 0)
            break;
        g_bytes_unref(start);
        start = g_bytes_ref(g_ptr_array_index(keys, keys->len - 1));
    }
    return done(s, TRUE, NULL, error);
}

/* How long the clean-up after a failed delivery may take, at most. */
#define WITHDRAW_BUDGET_MS 3000

/* withdraw_delivery - delete whatever landed of a delivery that failed
 *
 * Cassandra 0.7 applies a batch_mutate row by row and replica by replica, and it reports
 * Unavailable for one row after it may already have written others; TimedOut and a dropped
 * connection leave the same doubt. The client is told 451 and will send the message again, under
 * a new id, so any copy of this attempt would be a half-delivered message now and a duplicate
 * later. Each target's columns are deleted with a timestamp one microsecond newer than the
 * write, which wins over the write on every replica whatever order they arrive in. The
 * deletion goes at ONE (it reaches every live replica; a dead one gets it by hinted handoff) and
 * within a short budget of its own; if even that fails, a warning names the message. */
static void
withdraw_delivery(CassStore *s, GHashTable *keys, const StoreMsgId *id, gint64 ts)
{
    CassBatch *b = cass_batch_new();
    GHashTableIter it;
    gpointer key;
    g_hash_table_iter_init(&it, keys);
    while (g_hash_table_iter_next(&it, &key, NULL)) {
        cass_batch_delete(b, CF_MAILBOXES, key, strlen(key), id->bytes, 16, ts + 1);
        cass_batch_delete(b, CF_INDEX, key, strlen(key), id->bytes, 16, ts + 1);
    }
    int budget = cap_budget(s, WITHDRAW_BUDGET_MS);
    GError *e = NULL;
    char text[STORE_MSGID_TEXT_LEN];
    store_msgid_to_text(id, text);
    if (cass_batch_execute(s->client, b, CASS_ONE, &e)) {
        log_info("store: delivery id=%s failed; whatever part of it was written is withdrawn", text);
    } else {
        log_warn("store: delivery id=%s failed and could not be withdrawn (%s); a partial copy "
                 "may remain", text, e->message);
        g_error_free(e);
    }
    cass_client_set_retry_ms(s->client, budget);
    cass_batch_free(&b);
}

static gboolean
cs_deliver(Store *base, const StoreMsgId *id, const StoreTarget *targets, guint n_targets,
           const guint8 *msg, gsize len, GError **error)
{
    CassStore *s = (CassStore *)base;
    gint64 ts = uuid_timestamp_us(id);
    guint8 size_be[8];
    for (int i = 0; i < 8; i++)
        size_be[i] = (guint8)((guint64)len >> (56 - 8 * i));
    g_autoptr(GBytes) body = g_bytes_new_static(msg, len);
    g_autoptr(GBytes) size = g_bytes_new(size_be, sizeof size_be);
    g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    CassBatch *b = cass_batch_new();
    for (guint i = 0; i < n_targets; i++) {
        char *key = row_key(targets[i].user, targets[i].mailbox);
        if (!g_hash_table_add(seen, key))
            continue;   /* one copy per mailbox, however often it was named */
        cass_batch_insert(b, CF_MAILBOXES, key, strlen(key), id->bytes, 16, body, ts);
        cass_batch_insert(b, CF_INDEX, key, strlen(key), id->bytes, 16, size, ts);
    }
    GError *e = NULL;
    gboolean ok = cass_batch_execute(s->client, b, s->write_consistency, &e);
    cass_batch_free(&b);
    /* InvalidRequest is refused before anything is applied; the rest leave a doubt */
    if (!ok && e->domain == CASS_ERROR && e->code != CASS_ERROR_INVALID)
        withdraw_delivery(s, seen, id, ts);
    return done(s, ok, e, error);
}

static gboolean
cs_index_page(Store *base, const char *user, const char *mailbox, const StoreMsgId *after, guint max,
              GArray *out, GError **error)
{
    CassStore *s = (CassStore *)base;
    g_autofree char *key = row_key(user, mailbox);
    g_autoptr(GPtrArray) cols = g_ptr_array_new_with_free_func(cass_column_free);
    GError *e = NULL;
    /* A slice starts at its start column inclusive: ask for one more and drop AFTER itself. */
    int count = (int)MIN(max + (after ? 1u : 0u), (guint)G_MAXINT);
    gboolean ok = cass_get_slice(s->client, CF_INDEX, key, strlen(key), after ? after->bytes : NULL,
                                 after ? 16 : 0, NULL, 0, FALSE, count, s->read_consistency, cols, &e);
    for (guint i = 0; ok && i < cols->len; i++) {
        CassColumn *c = g_ptr_array_index(cols, i);
        gsize nlen, vlen;
        const guint8 *name = g_bytes_get_data(c->name, &nlen);
        const guint8 *val = g_bytes_get_data(c->value, &vlen);
        if (nlen != 16 || (after && memcmp(name, after->bytes, 16) == 0))
            continue;
        StoreIndexEntry ent;
        memcpy(ent.id.bytes, name, 16);
        ent.size = 0;
        for (gsize j = 0; j < vlen && j < 8; j++)
            ent.size = (ent.size << 8) | val[j];
        if (out->len < G_MAXUINT)
            g_array_append_val(out, ent);
    }
    return done(s, ok, e, error);
}

static gboolean
cs_fetch(Store *base, const char *user, const char *mailbox, const StoreMsgId *id, GBytes **msg,
         GError **error)
{
    CassStore *s = (CassStore *)base;
    g_autofree char *key = row_key(user, mailbox);
    CassColumn *col = NULL;
    GError *e = NULL;
    gboolean ok = cass_get(s->client, CF_MAILBOXES, key, strlen(key), id->bytes, 16,
                           s->read_consistency, &col, &e);
    if (ok) {
        *msg = g_bytes_ref(col->value);
        cass_column_free(col);
    }
    return done(s, ok, e, error);
}

static gboolean
cs_remove(Store *base, const char *user, const char *mailbox, const StoreMsgId *ids, guint n,
          GError **error)
{
    CassStore *s = (CassStore *)base;
    g_autofree char *key = row_key(user, mailbox);
    gint64 ts = now_us();
    CassBatch *b = cass_batch_new();
    for (guint i = 0; i < n; i++) {
        cass_batch_delete(b, CF_MAILBOXES, key, strlen(key), ids[i].bytes, 16, ts);
        cass_batch_delete(b, CF_INDEX, key, strlen(key), ids[i].bytes, 16, ts);
    }
    GError *e = NULL;
    gboolean ok = cass_batch_execute(s->client, b, s->write_consistency, &e);
    cass_batch_free(&b);
    return done(s, ok, e, error);
}

static gboolean
cs_password_set(Store *base, const char *user, const char *hash, GError **error)
{
    CassStore *s = (CassStore *)base;
    CassBatch *b = cass_batch_new();
    g_autoptr(GBytes) value = g_bytes_new(hash, strlen(hash));
    cass_batch_insert(b, CF_CREDENTIALS, user, strlen(user), PASSWORD_COLUMN,
                      strlen(PASSWORD_COLUMN), value, now_us());
    GError *e = NULL;
    gboolean ok = cass_batch_execute(s->client, b, s->write_consistency, &e);
    cass_batch_free(&b);
    return done(s, ok, e, error);
}

static gboolean
cs_password_get(Store *base, const char *user, char **hash, GError **error)
{
    CassStore *s = (CassStore *)base;
    CassColumn *col = NULL;
    GError *e = NULL;
    gboolean ok = cass_get(s->client, CF_CREDENTIALS, user, strlen(user), PASSWORD_COLUMN,
                           strlen(PASSWORD_COLUMN), s->read_consistency, &col, &e);
    if (ok) {
        gsize len;
        const char *data = g_bytes_get_data(col->value, &len);
        *hash = g_strndup(data, len);
        cass_column_free(col);
    }
    return done(s, ok, e, error);
}

static void
cs_destroy(Store *base)
{
    CassStore *s = (CassStore *)base;
    cass_client_free(&s->client);
    g_free(s->keyspace);
    g_strfreev(s->endpoints);
    g_free(s);
}

static const StoreOps cass_ops = {
    .user_exists = cs_user_exists,
    .user_add = cs_user_add,
    .user_del = cs_user_del,
    .users_list = cs_users_list,
    .mailbox_add = cs_mailbox_add,
    .mailboxes_list = cs_mailboxes_list,
    .deliver = cs_deliver,
    .index_page = cs_index_page,
    .fetch = cs_fetch,
    .remove = cs_remove,
    .password_set = cs_password_set,
    .password_get = cs_password_get,
    .destroy = cs_destroy,
};

/* cass_store_client - a client of S's endpoints with its budgets, using KEYSPACE (or none) */
static CassClient *
cass_store_client(CassStore *s, const char *keyspace)
{
    CassClient *c = cass_client_new((const char *const *)s->endpoints, keyspace, s->timeout_ms,
                                    s->retry_ms, s->backoff_ms);
    cass_client_set_unavailable_ms(c, s->unavailable_ms);
    return c;
}

Store *
store_open(const CassmailConfig *cfg, GError **error)
{
    if (!cfg->endpoints || !cfg->endpoints[0]) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_FAILED, "no Cassandra endpoints configured");
        return NULL;
    }
    CassStore *s = g_new0(CassStore, 1);
    s->base.ops = &cass_ops;
    s->keyspace = g_strdup(cfg->keyspace);
    s->endpoints = g_strdupv(cfg->endpoints);
    s->timeout_ms = cfg->timeout_ms;
    s->retry_ms = cfg->retry_ms;
    s->backoff_ms = cfg->backoff_ms;
    s->unavailable_ms = cfg->unavailable_retry_ms;
    s->write_consistency = cfg->write_consistency;
    s->read_consistency = cfg->read_consistency;
    s->client = cass_store_client(s, s->keyspace);
    return &s->base;
}

/* log_cf_tuned - say which settings of column family CF of KEYSPACE the schema brought up to date */
static void
log_cf_tuned(const char *keyspace, const CassCfSpec *cf)
{
    g_autoptr(GString) what = g_string_new(NULL);
    /* Cassandra 0.7 picks the interval of its flush check when it opens a keyspace: a node runs
     * the new lifetime's minute-by-minute check after its next restart. */
    if (cf->memtable_flush_after_mins > 0)
        g_string_append_printf(what, " now flushes its memtable after %d minute(s) (each node "
                               "checks that every minute once restarted);",
                               cf->memtable_flush_after_mins);
    if (cf->memtable_throughput_in_mb > 0)
        g_string_append_printf(what, " memtable_throughput_in_mb %d;", cf->memtable_throughput_in_mb);
    if (cf->memtable_operations_in_millions > 0)
        g_string_append_printf(what, " memtable_operations_in_millions %g;",
                               cf->memtable_operations_in_millions);
    if (cf->min_compaction_threshold > 0)
        g_string_append_printf(what, " min_compaction_threshold %d;", cf->min_compaction_threshold);
    if (cf->max_compaction_threshold > 0)
        g_string_append_printf(what, " max_compaction_threshold %d;", cf->max_compaction_threshold);
    g_string_truncate(what, what->len ? what->len - 1 : 0);
    log_info("schema: %s.%s%s", keyspace, cf->name, what->str);
}

gboolean
store_schema_create(Store *base, int replication_factor, GError **error)
{
    if (base->ops != &cass_ops) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_FAILED, "schema creation needs the Cassandra store");
        return FALSE;
    }
    CassStore *s = (CassStore *)base;
    /* A client without a keyspace: set_keyspace would fail while it does not exist yet. */
    CassClient *admin = cass_store_client(s, NULL);
    GError *e = NULL;
    gboolean exists = FALSE, ok;
    g_autoptr(GPtrArray) cfs = g_ptr_array_new_with_free_func(g_free);
    ok = cass_keyspace_describe(admin, s->keyspace, &exists, cfs, &e);
    if (ok && !exists) {
        ok = cass_keyspace_add(admin, s->keyspace, replication_factor, schema_cfs,
                               G_N_ELEMENTS(schema_cfs), &e);
    } else if (ok) {
        /* Changing a column family needs the keyspace selected on the connection (0.7.0 says
         * "You have not set a keyspace for this session" otherwise). */
        cass_client_free(&admin);
        admin = cass_store_client(s, s->keyspace);
        for (gsize i = 0; ok && i < G_N_ELEMENTS(schema_cfs); i++) {
            gboolean have = FALSE;
            for (guint j = 0; j < cfs->len; j++) {
                const char *line = g_ptr_array_index(cfs, j);
                gsize n = strlen(schema_cfs[i].name);
                have |= strncmp(line, schema_cfs[i].name, n) == 0 && line[n] == ' ';
            }
            gboolean changed = FALSE;
            if (!have)
                ok = cass_column_family_add(admin, s->keyspace, &schema_cfs[i], &e);
            else   /* a keyspace made by an older CassMail: bring its settings up to date */
                ok = cass_column_family_tune(admin, s->keyspace, &schema_cfs[i], &changed, &e);
            if (ok && changed)
                log_cf_tuned(s->keyspace, &schema_cfs[i]);
        }
    }
    ok = ok && cass_schema_agree(admin, 30000, &e);
    cass_client_free(&admin);
    if (!ok) {
        to_store_error(e, error);
        return FALSE;
    }
    /* Reconnect so the data client selects the (possibly new) keyspace. */
    cass_client_free(&s->client);
    s->client = cass_store_client(s, s->keyspace);
    return TRUE;
}

CassClient *
store_cass_client(Store *base)
{
    return base->ops == &cass_ops ? ((CassStore *)base)->client : NULL;
}
