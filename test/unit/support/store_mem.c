/*
 * store_mem.c - the in-memory Store backend for unit tests and fuzzers (see store_mem.h).
 *
 * Users map to a set of mailbox names, "user:mailbox" to a queue of messages in arrival order,
 * users to password hashes: the same rows the Cassandra backend keeps, in GLib hash tables.
 */
#include "store_mem.h"

#include <string.h>

typedef struct {
    StoreMsgId id;
    GBytes *body;   /* shared by every mailbox the message went to */
} MemMsg;

typedef struct {
    Store base;
    GHashTable *users;       /* user -> GHashTable set of mailbox names */
    GHashTable *boxes;       /* "user:mailbox" -> GQueue of MemMsg*, oldest first */
    GHashTable *passwords;   /* user -> hash text */
    int fail_next;
    gsize chunk;             /* how much a reader hands out at a time */
} MemStore;

#define ID_OCTETS 16    /* a TimeUUID column name */
#define SIZE_OCTETS 8   /* a MailboxIndex value */

/* mem_msg_free - one stored message */
static void
mem_msg_free(gpointer p)
{
    MemMsg *m = p;
    g_bytes_unref(m->body);
    g_free(m);
}

/* mem_queue_free - a mailbox and its messages */
static void
mem_queue_free(gpointer p)
{
    g_queue_free_full(p, mem_msg_free);
}

/* mem_injected_failure - TRUE (and ERROR set) when this operation is one store_mem_fail_next
 * asked to fail */
static gboolean
mem_injected_failure(MemStore *s, GError **error)
{
    if (s->fail_next <= 0)
        return FALSE;
    s->fail_next--;
    g_set_error(error, STORE_ERROR, STORE_ERROR_TEMPORARY, "injected failure (store_mem)");
    return TRUE;
}

/* mem_ok - the tail of every successful operation */
static gboolean
mem_ok(MemStore *s)
{
    s->base.counters.calls++;
    return TRUE;
}

/* mem_row_key - "user:mailbox" */
static char *
mem_row_key(const char *user, const char *mailbox)
{
    return g_strconcat(user, ":", mailbox, NULL);
}

/* mem_name_cmp - g_ptr_array_sort order of two names */
static gint
mem_name_cmp(gconstpointer a, gconstpointer b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* mem_sorted_names - the names in SET, sorted bytewise like a BytesType comparator */
static GPtrArray *
mem_sorted_names(GHashTable *set)
{
    GPtrArray *names = g_ptr_array_new();
    GHashTableIter it;
    gpointer key;
    g_hash_table_iter_init(&it, set);
    while (g_hash_table_iter_next(&it, &key, NULL))
        g_ptr_array_add(names, key);
    g_ptr_array_sort(names, mem_name_cmp);
    return names;
}

/* mem_id_after - whether A sorts after B as TimeUUIDType does: time first, then the octets */
static gboolean
mem_id_after(const StoreMsgId *a, const StoreMsgId *b)
{
    return store_msgid_compare(a, b) > 0;
}

/* mem_msg_cmp - g_queue_insert_sorted order of two messages: their ids as Cassandra orders them */
static gint
mem_msg_cmp(gconstpointer a, gconstpointer b, gpointer unused)
{
    (void)unused;
    return store_msgid_compare(&((const MemMsg *)a)->id, &((const MemMsg *)b)->id);
}

static gboolean
mem_user_exists(Store *base, const char *user, gboolean *exists, GError **error)
{
    MemStore *s = (MemStore *)base;
    if (mem_injected_failure(s, error))
        return FALSE;
    GHashTable *set = g_hash_table_lookup(s->users, user);
    *exists = set && g_hash_table_size(set) > 0;
    if (*exists) {
        /* the real backend reads one column of the user's row */
        g_autoptr(GPtrArray) names = mem_sorted_names(set);
        s->base.counters.columns_read++;
        s->base.counters.bytes_read += strlen(g_ptr_array_index(names, 0));
    }
    return mem_ok(s);
}

/* mem_add_mailbox - MAILBOX into USER's set (creating the user) */
static void
mem_add_mailbox(MemStore *s, const char *user, const char *mailbox)
{
    GHashTable *set = g_hash_table_lookup(s->users, user);
    if (!set) {
        set = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        g_hash_table_insert(s->users, g_strdup(user), set);
    }
    g_hash_table_add(set, g_strdup(mailbox));
    s->base.counters.bytes_written += strlen(mailbox);
}

static gboolean
mem_user_add(Store *base, const char *user, GError **error)
{
    MemStore *s = (MemStore *)base;
    if (mem_injected_failure(s, error))
        return FALSE;
    mem_add_mailbox(s, user, "inbox");
    mem_add_mailbox(s, user, "outbox");
    return mem_ok(s);
}

static gboolean
mem_user_del(Store *base, const char *user, GError **error)
{
    MemStore *s = (MemStore *)base;
    if (mem_injected_failure(s, error))
        return FALSE;
    GHashTable *set = g_hash_table_lookup(s->users, user);
    if (set) {
        GHashTableIter it;
        gpointer name;
        g_hash_table_iter_init(&it, set);
        while (g_hash_table_iter_next(&it, &name, NULL)) {
            g_autofree char *key = mem_row_key(user, name);
            g_hash_table_remove(s->boxes, key);
        }
    }
    g_hash_table_remove(s->passwords, user);
    g_hash_table_remove(s->users, user);
    return mem_ok(s);
}

static gboolean
mem_users_list(Store *base, GPtrArray *out, GError **error)
{
    MemStore *s = (MemStore *)base;
    if (mem_injected_failure(s, error))
        return FALSE;
    g_autoptr(GPtrArray) names = mem_sorted_names(s->users);
    for (guint i = 0; i < names->len; i++)
        g_ptr_array_add(out, g_strdup(g_ptr_array_index(names, i)));
    return mem_ok(s);
}

static gboolean
mem_mailbox_add(Store *base, const char *user, const char *mailbox, GError **error)
{
    MemStore *s = (MemStore *)base;
    if (mem_injected_failure(s, error))
        return FALSE;
    mem_add_mailbox(s, user, mailbox);
    return mem_ok(s);
}

static gboolean
mem_mailboxes_list(Store *base, const char *user, GPtrArray *out, GError **error)
{
    MemStore *s = (MemStore *)base;
    if (mem_injected_failure(s, error))
        return FALSE;
    GHashTable *set = g_hash_table_lookup(s->users, user);
    if (set) {
        g_autoptr(GPtrArray) names = mem_sorted_names(set);
        for (guint i = 0; i < names->len; i++) {
            const char *name = g_ptr_array_index(names, i);
            g_ptr_array_add(out, g_strdup(name));
            s->base.counters.columns_read++;
            s->base.counters.bytes_read += strlen(name);
        }
    }
    return mem_ok(s);
}

static GList *mem_find(GQueue *q, const StoreMsgId *id);

/* A message being written: all of it in memory (tests only need the behaviour). */
typedef struct {
    StoreWriter base;
    GByteArray *buf;
} MemWriter;

static StoreWriter *
mem_writer_begin(Store *base, const StoreMsgId *id)
{
    (void)base, (void)id;
    MemWriter *w = g_new0(MemWriter, 1);
    w->buf = g_byte_array_new();
    return &w->base;
}

static gboolean
mem_writer_write(StoreWriter *base, const guint8 *data, gsize len, GError **error)
{
    MemWriter *w = (MemWriter *)base;
    if (mem_injected_failure((MemStore *)base->store, error))
        return FALSE;   /* as when a part cannot be written */
    g_byte_array_append(w->buf, data, (guint)len);
    return TRUE;
}

static gboolean
mem_writer_commit(StoreWriter *wbase, const StoreTarget *targets, guint n_targets, GError **error)
{
    MemWriter *w = (MemWriter *)wbase;
    MemStore *s = (MemStore *)wbase->store;
    if (mem_injected_failure(s, error))
        return FALSE;
    const StoreMsgId *id = &wbase->id;
    gsize len = w->buf->len;
    g_autoptr(GBytes) body = g_bytes_new(w->buf->data, len);
    g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    for (guint i = 0; i < n_targets; i++) {
        char *key = mem_row_key(targets[i].user, targets[i].mailbox);
        if (!g_hash_table_add(seen, key))
            continue;   /* one copy per mailbox, however often it was named */
        GQueue *q = g_hash_table_lookup(s->boxes, key);
        if (!q) {
            q = g_queue_new();
            g_hash_table_insert(s->boxes, g_strdup(key), q);
        }
        GList *same = mem_find(q, id);
        if (same) {   /* the same column written again: the new value replaces the old */
            MemMsg *old = same->data;
            g_bytes_unref(old->body);
            old->body = g_bytes_ref(body);
        } else {
            MemMsg *m = g_new(MemMsg, 1);
            m->id = *id;
            m->body = g_bytes_ref(body);
            g_queue_insert_sorted(q, m, mem_msg_cmp, NULL);   /* Cassandra's column order */
        }
        s->base.counters.bytes_written += (ID_OCTETS + len) + (ID_OCTETS + SIZE_OCTETS);
    }
    return mem_ok(s);
}

static void
mem_writer_free(StoreWriter *base)
{
    MemWriter *w = (MemWriter *)base;
    g_byte_array_unref(w->buf);
    g_free(w);
}

/* mem_box - USER's MAILBOX queue, or NULL */
static GQueue *
mem_box(MemStore *s, const char *user, const char *mailbox)
{
    g_autofree char *key = mem_row_key(user, mailbox);
    return g_hash_table_lookup(s->boxes, key);
}

static gboolean
mem_index_page(Store *base, const char *user, const char *mailbox, const StoreMsgId *after,
               guint max, GArray *out, GError **error)
{
    MemStore *s = (MemStore *)base;
    if (mem_injected_failure(s, error))
        return FALSE;
    GQueue *q = mem_box(s, user, mailbox);
    GList *l = q ? q->head : NULL;
    if (after) {
        /* Just past AFTER; if AFTER is gone, at the first id that sorts after it. */
        GList *exact = l;
        while (exact && memcmp(((MemMsg *)exact->data)->id.bytes, after->bytes, ID_OCTETS) != 0)
            exact = exact->next;
        if (exact) {
            l = exact->next;
        } else {
            while (l && !mem_id_after(&((MemMsg *)l->data)->id, after))
                l = l->next;
        }
    }
    for (guint n = 0; l && n < max; l = l->next, n++) {
        MemMsg *m = l->data;
        StoreIndexEntry ent = {.id = m->id, .size = g_bytes_get_size(m->body)};
        g_array_append_val(out, ent);
        s->base.counters.columns_read++;
        s->base.counters.bytes_read += ID_OCTETS + SIZE_OCTETS;
    }
    return mem_ok(s);
}

/* mem_find - the message ID in Q, or NULL */
static GList *
mem_find(GQueue *q, const StoreMsgId *id)
{
    for (GList *l = q ? q->head : NULL; l; l = l->next)
        if (memcmp(((MemMsg *)l->data)->id.bytes, id->bytes, ID_OCTETS) == 0)
            return l;
    return NULL;
}

/* A message being read: its octets in chunks of the store's chunk size. */
typedef struct {
    StoreReader base;
    GBytes *body;
    gsize pos;
    gsize chunk;
} MemReader;

static gboolean
mem_reader_open(Store *base, const char *user, const char *mailbox, const StoreMsgId *id,
                StoreReader **reader, GError **error)
{
    MemStore *s = (MemStore *)base;
    if (mem_injected_failure(s, error))
        return FALSE;
    GList *l = mem_find(mem_box(s, user, mailbox), id);
    if (!l) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_NOT_FOUND, "no such message");
        return FALSE;
    }
    MemMsg *m = l->data;
    MemReader *r = g_new0(MemReader, 1);
    r->body = g_bytes_ref(m->body);
    r->base.size = g_bytes_get_size(m->body);
    r->chunk = s->chunk;
    s->base.counters.columns_read++;
    s->base.counters.bytes_read += ID_OCTETS + g_bytes_get_size(m->body);
    *reader = &r->base;
    return mem_ok(s);
}

static gboolean
mem_reader_next(StoreReader *base, GBytes **chunk, GError **error)
{
    MemReader *r = (MemReader *)base;
    MemStore *s = (MemStore *)base->store;
    gsize len = g_bytes_get_size(r->body);
    if (r->pos == len) {
        *chunk = NULL;
        return TRUE;
    }
    if (mem_injected_failure(s, error))
        return FALSE;
    gsize n = MIN(r->chunk, len - r->pos);
    *chunk = g_bytes_new_from_bytes(r->body, r->pos, n);
    r->pos += n;
    return TRUE;
}

static void
mem_reader_free(StoreReader *base)
{
    MemReader *r = (MemReader *)base;
    g_bytes_unref(r->body);
    g_free(r);
}

static gboolean
mem_remove(Store *base, const char *user, const char *mailbox, const StoreMsgId *ids, guint n,
           GError **error)
{
    MemStore *s = (MemStore *)base;
    if (mem_injected_failure(s, error))
        return FALSE;
    GQueue *q = mem_box(s, user, mailbox);
    for (guint i = 0; q && i < n; i++) {
        GList *l = mem_find(q, &ids[i]);
        if (l) {
            mem_msg_free(l->data);
            g_queue_delete_link(q, l);
        }
    }
    return mem_ok(s);
}

static gboolean
mem_password_set(Store *base, const char *user, const char *hash, GError **error)
{
    MemStore *s = (MemStore *)base;
    if (mem_injected_failure(s, error))
        return FALSE;
    g_hash_table_insert(s->passwords, g_strdup(user), g_strdup(hash));
    s->base.counters.bytes_written += strlen("password") + strlen(hash);
    return mem_ok(s);
}

static gboolean
mem_password_get(Store *base, const char *user, char **hash, GError **error)
{
    MemStore *s = (MemStore *)base;
    if (mem_injected_failure(s, error))
        return FALSE;
    const char *h = g_hash_table_lookup(s->passwords, user);
    if (!h) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_NOT_FOUND, "no password for %s", user);
        return FALSE;
    }
    *hash = g_strdup(h);
    s->base.counters.columns_read++;
    s->base.counters.bytes_read += strlen("password") + strlen(h);
    return mem_ok(s);
}

static void
mem_destroy(Store *base)
{
    MemStore *s = (MemStore *)base;
    g_hash_table_unref(s->users);
    g_hash_table_unref(s->boxes);
    g_hash_table_unref(s->passwords);
    g_free(s);
}

static const StoreOps mem_ops = {
    .user_exists = mem_user_exists,
    .user_add = mem_user_add,
    .user_del = mem_user_del,
    .users_list = mem_users_list,
    .mailbox_add = mem_mailbox_add,
    .mailboxes_list = mem_mailboxes_list,
    .writer_begin = mem_writer_begin,
    .writer_write = mem_writer_write,
    .writer_commit = mem_writer_commit,
    .writer_free = mem_writer_free,
    .index_page = mem_index_page,
    .reader_open = mem_reader_open,
    .reader_next = mem_reader_next,
    .reader_free = mem_reader_free,
    .remove = mem_remove,
    .password_set = mem_password_set,
    .password_get = mem_password_get,
    .destroy = mem_destroy,
};

/* store_mem_new - see store_mem.h */
Store *
store_mem_new(void)
{
    MemStore *s = g_new0(MemStore, 1);
    s->base.ops = &mem_ops;
    s->users = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                     (GDestroyNotify)g_hash_table_unref);
    s->boxes = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, mem_queue_free);
    s->passwords = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    s->chunk = STORE_PART_SIZE;
    return &s->base;
}

/* store_mem_fail_next - see store_mem.h */
void
store_mem_fail_next(Store *base, int n)
{
    g_return_if_fail(base && base->ops == &mem_ops);
    ((MemStore *)base)->fail_next = MAX(n, 0);
}

/* store_mem_message_count - see store_mem.h */
guint
store_mem_message_count(Store *base, const char *user, const char *mailbox)
{
    g_return_val_if_fail(base && base->ops == &mem_ops, 0);
    GQueue *q = mem_box((MemStore *)base, user, mailbox);
    return q ? q->length : 0;
}

/* store_mem_set_chunk - see store_mem.h */
void
store_mem_set_chunk(Store *base, gsize chunk)
{
    g_return_if_fail(base && base->ops == &mem_ops);
    ((MemStore *)base)->chunk = MAX(chunk, 1);
}
