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

#define MEM_REPLICAS_MAX 5

typedef struct {
    Store base;
    GHashTable *users;       /* user -> GHashTable mailbox name -> UIDVALIDITY base */
    GHashTable *boxes;       /* "user:mailbox" -> GQueue of MemMsg*, oldest first */
    GHashTable *passwords;   /* user -> hash text */
    GHashTable *flags;       /* "user:mailbox" -> GHashTable set of GBytes id·name */
    GHashTable *meta;        /* "user:mailbox" -> GHashTable GBytes id -> GBytes blob */
    GHashTable *seals[MEM_REPLICAS_MAX];   /* per replica: "user:mailbox" -> GTree name -> value */
    int replicas;            /* replicas of ImapSeals (1 unless store_mem_set_replicas) */
    GRand *rand;             /* which replicas a QUORUM call reaches */
    int partial_permille;    /* seal writes that reach one replica and fail */
    int lost_ack_permille;   /* seal writes that reach a quorum and still fail */
    StoreMemHook hook;
    gpointer hook_data;
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

#define mem_injected_failure(s, error) mem_injected_failure_in(s, error, __func__)

/* mem_injected_failure - TRUE (and ERROR set) when this operation is one store_mem_fail_next
 * asked to fail */
static gboolean
mem_injected_failure_in(MemStore *s, GError **error, const char *op)
{
    static _Thread_local gboolean in_hook;
    if (s->hook && !in_hook) {
        in_hook = TRUE;
        s->hook(s->hook_data, op);   /* a scheduler's point: another thread may run first */
        in_hook = FALSE;
    }
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

/* mem_add_mailbox - MAILBOX into USER's set (creating the user), with UIDVALIDITY base BASE (0:
 * now, as an empty Users value reads) */
static void
mem_add_mailbox_base(MemStore *s, const char *user, const char *mailbox, guint32 base)
{
    GHashTable *set = g_hash_table_lookup(s->users, user);
    if (!set) {
        set = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        g_hash_table_insert(s->users, g_strdup(user), set);
    }
    if (!base)
        base = (guint32)(g_get_real_time() / G_USEC_PER_SEC);
    g_hash_table_insert(set, g_strdup(mailbox), GUINT_TO_POINTER(base));
    s->base.counters.bytes_written += strlen(mailbox);
}

static void
mem_add_mailbox(MemStore *s, const char *user, const char *mailbox)
{
    mem_add_mailbox_base(s, user, mailbox, 0);
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
            g_hash_table_remove(s->flags, key);
            g_hash_table_remove(s->meta, key);
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
static void mem_flags_drop(GHashTable *flags, const StoreMsgId *id);

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
    /* flags and meta of the removed messages go in the same write (store.h) */
    g_autofree char *key = mem_row_key(user, mailbox);
    GHashTable *flags = g_hash_table_lookup(s->flags, key);
    GHashTable *meta = g_hash_table_lookup(s->meta, key);
    for (guint i = 0; i < n; i++) {
        if (flags)
            mem_flags_drop(flags, &ids[i]);
        if (meta) {
            g_autoptr(GBytes) k = g_bytes_new(ids[i].bytes, ID_OCTETS);
            g_hash_table_remove(meta, k);
        }
    }
    return mem_ok(s);
}


/* ---- IMAP: mailboxes, seals (with simulated replicas), flags, meta ---- */

/* mem_flags_drop - every flag of message ID from the flag set FLAGS */
static void
mem_flags_drop(GHashTable *flags, const StoreMsgId *id)
{
    GHashTableIter it;
    gpointer key;
    g_hash_table_iter_init(&it, flags);
    while (g_hash_table_iter_next(&it, &key, NULL))
        if (memcmp(g_bytes_get_data(key, NULL), id->bytes, ID_OCTETS) == 0)
            g_hash_table_iter_remove(&it);
}

/* mem_row - table TABLE's row KEY, created (a GHashTable made by NEW) when CREATE */
static GHashTable *
mem_row(GHashTable *table, const char *key, gboolean create, GHashTable *(*new)(void))
{
    GHashTable *row = g_hash_table_lookup(table, key);
    if (!row && create) {
        row = new();
        g_hash_table_insert(table, g_strdup(key), row);
    }
    return row;
}

static GHashTable *
mem_bytes_set_new(void)
{
    return g_hash_table_new_full(g_bytes_hash, g_bytes_equal, (GDestroyNotify)g_bytes_unref, NULL);
}

static GHashTable *
mem_bytes_map_new(void)
{
    return g_hash_table_new_full(g_bytes_hash, g_bytes_equal, (GDestroyNotify)g_bytes_unref,
                                 (GDestroyNotify)g_bytes_unref);
}

static gboolean
mem_mailbox_get(Store *base, const char *user, const char *mailbox, gboolean *exists,
                guint32 *ubase, GError **error)
{
    MemStore *s = (MemStore *)base;
    if (mem_injected_failure(s, error))
        return FALSE;
    GHashTable *set = g_hash_table_lookup(s->users, user);
    gpointer value = NULL;
    *exists = set && g_hash_table_lookup_extended(set, mailbox, NULL, &value);
    *ubase = GPOINTER_TO_UINT(value);
    return mem_ok(s);
}

static gboolean
mem_mailbox_create(Store *base, const char *user, const char *mailbox, guint32 ubase,
                   GError **error)
{
    MemStore *s = (MemStore *)base;
    if (mem_injected_failure(s, error))
        return FALSE;
    mem_add_mailbox_base(s, user, mailbox, ubase);
    return mem_ok(s);
}

static gboolean
mem_mailbox_drop(Store *base, const char *user, const char *mailbox, GError **error)
{
    MemStore *s = (MemStore *)base;
    if (mem_injected_failure(s, error))
        return FALSE;
    GHashTable *set = g_hash_table_lookup(s->users, user);
    if (set)
        g_hash_table_remove(set, mailbox);
    g_autofree char *key = mem_row_key(user, mailbox);
    g_hash_table_remove(s->boxes, key);
    g_hash_table_remove(s->flags, key);
    g_hash_table_remove(s->meta, key);
    return mem_ok(s);
}

static gboolean
mem_mailbox_move(Store *base, const char *user, const char *from, const char *to, GError **error)
{
    MemStore *s = (MemStore *)base;
    if (mem_injected_failure(s, error))
        return FALSE;
    g_autofree char *fkey = mem_row_key(user, from);
    g_autofree char *tkey = mem_row_key(user, to);
    if (strcmp(fkey, tkey) == 0)
        return mem_ok(s);
    GQueue *q = g_hash_table_lookup(s->boxes, fkey);
    if (q && q->length) {
        GQueue *dq = g_hash_table_lookup(s->boxes, tkey);
        if (!dq) {
            dq = g_queue_new();
            g_hash_table_insert(s->boxes, g_strdup(tkey), dq);
        }
        MemMsg *m;
        while ((m = g_queue_pop_head(q))) {
            GList *same = mem_find(dq, &m->id);
            if (same) {
                mem_msg_free(same->data);
                g_queue_delete_link(dq, same);
            }
            g_queue_insert_sorted(dq, m, mem_msg_cmp, NULL);
        }
    }
    GHashTable *ff = g_hash_table_lookup(s->flags, fkey);
    if (ff) {
        GHashTable *tf = mem_row(s->flags, tkey, TRUE, mem_bytes_set_new);
        GHashTableIter it;
        gpointer k;
        g_hash_table_iter_init(&it, ff);
        while (g_hash_table_iter_next(&it, &k, NULL))
            g_hash_table_add(tf, g_bytes_ref(k));
        g_hash_table_remove_all(ff);
    }
    GHashTable *fm = g_hash_table_lookup(s->meta, fkey);
    if (fm) {
        GHashTable *tm = mem_row(s->meta, tkey, TRUE, mem_bytes_map_new);
        GHashTableIter it;
        gpointer k, v;
        g_hash_table_iter_init(&it, fm);
        while (g_hash_table_iter_next(&it, &k, &v))
            g_hash_table_insert(tm, g_bytes_ref(k), g_bytes_ref(v));
        g_hash_table_remove_all(fm);
    }
    return mem_ok(s);
}

/* mem_bytes_cmp - BytesType order: octets unsigned, a prefix first */
static gint
mem_bytes_cmp(gconstpointer a, gconstpointer b, gpointer unused)
{
    (void)unused;
    gsize la, lb;
    const guint8 *pa = g_bytes_get_data((GBytes *)a, &la);
    const guint8 *pb = g_bytes_get_data((GBytes *)b, &lb);
    int c = memcmp(pa, pb, MIN(la, lb));
    if (c)
        return c;
    return la < lb ? -1 : la > lb;
}

/* mem_quorum - which replicas a QUORUM call reaches: a random quorum of s->replicas (bits) */
static guint
mem_quorum(MemStore *s, int size)
{
    guint pick = 0;
    int n = 0;
    while (n < size) {
        int r = g_rand_int_range(s->rand, 0, s->replicas);
        if (!(pick & (1u << r))) {
            pick |= 1u << r;
            n++;
        }
    }
    return pick;
}

typedef struct {
    GBytes *start, *finish;
    GPtrArray *hits;   /* GBytes names in range */
} MemSlice;

static gboolean
mem_slice_collect(gpointer key, gpointer value, gpointer data)
{
    (void)value;
    MemSlice *sl = data;
    if (sl->start && mem_bytes_cmp(key, sl->start, NULL) < 0)
        return FALSE;
    if (sl->finish && mem_bytes_cmp(key, sl->finish, NULL) > 0)
        return TRUE;
    g_ptr_array_add(sl->hits, key);
    return FALSE;
}

static gboolean
mem_seals_slice(Store *base, const char *user, const char *mailbox, const void *start,
                gsize start_len, const void *finish, gsize finish_len, gboolean reversed,
                guint max, GPtrArray *out, GError **error)
{
    MemStore *s = (MemStore *)base;
    if (mem_injected_failure(s, error))
        return FALSE;
    g_autofree char *key = mem_row_key(user, mailbox);
    /* the merge of a quorum of replicas: every column any of them has (values of one name are
     * the same everywhere: a seal column's name holds its digest) */
    GTree *merged = g_tree_new_full(mem_bytes_cmp, NULL, NULL, NULL);
    guint pick = mem_quorum(s, s->replicas / 2 + 1);
    MemSlice sl = {
        .start = start_len ? g_bytes_new(start, start_len) : NULL,
        .finish = finish_len ? g_bytes_new(finish, finish_len) : NULL,
        .hits = g_ptr_array_new(),
    };
    if (reversed) {   /* Cassandra's reversed slice starts at START (the high end) */
        GBytes *t = sl.start;
        sl.start = sl.finish;
        sl.finish = t;
    }
    for (int r = 0; r < s->replicas; r++) {
        if (!(pick & (1u << r)))
            continue;
        GTree *row = g_hash_table_lookup(s->seals[r], key);
        if (!row)
            continue;
        g_ptr_array_set_size(sl.hits, 0);
        g_tree_foreach(row, mem_slice_collect, &sl);
        for (guint i = 0; i < sl.hits->len; i++) {
            GBytes *name = g_ptr_array_index(sl.hits, i);
            g_tree_insert(merged, name, g_tree_lookup(row, name));
        }
    }
    g_ptr_array_set_size(sl.hits, 0);
    g_tree_foreach(merged, mem_slice_collect, &sl);
    guint n = sl.hits->len;
    for (guint i = 0; i < n && i < max; i++) {
        GBytes *name = g_ptr_array_index(sl.hits, reversed ? n - 1 - i : i);
        StoreColumn *c = g_new(StoreColumn, 1);
        c->name = g_bytes_ref(name);
        c->value = g_bytes_ref(g_tree_lookup(merged, name));
        g_ptr_array_add(out, c);
        s->base.counters.columns_read++;
        s->base.counters.bytes_read += g_bytes_get_size(c->name) + g_bytes_get_size(c->value);
    }
    g_ptr_array_unref(sl.hits);
    g_tree_destroy(merged);
    if (sl.start)
        g_bytes_unref(sl.start);
    if (sl.finish)
        g_bytes_unref(sl.finish);
    return mem_ok(s);
}

/* mem_seal_write - NAME = VALUE on the replicas in PICK */
static void
mem_seal_write(MemStore *s, const char *key, guint pick, GBytes *name, GBytes *value)
{
    for (int r = 0; r < s->replicas; r++) {
        if (!(pick & (1u << r)))
            continue;
        GTree *row = g_hash_table_lookup(s->seals[r], key);
        if (!row) {
            row = g_tree_new_full(mem_bytes_cmp, NULL, (GDestroyNotify)g_bytes_unref,
                                  (GDestroyNotify)g_bytes_unref);
            g_hash_table_insert(s->seals[r], g_strdup(key), row);
        }
        g_tree_replace(row, g_bytes_ref(name), g_bytes_ref(value));
    }
}

static gboolean
mem_seal_put(Store *base, const char *user, const char *mailbox, const void *name, gsize name_len,
             GBytes *value, gint64 timestamp, GError **error)
{
    (void)timestamp;
    MemStore *s = (MemStore *)base;
    if (mem_injected_failure(s, error))
        return FALSE;
    g_autofree char *key = mem_row_key(user, mailbox);
    g_autoptr(GBytes) n = g_bytes_new(name, name_len);
    int roll = s->replicas > 1 ? g_rand_int_range(s->rand, 0, 1000) : 1000;
    if (roll < s->partial_permille) {
        /* the coordinator reached one replica, then timed out: the column is there, on one */
        mem_seal_write(s, key, mem_quorum(s, 1), n, value);
        g_set_error(error, STORE_ERROR, STORE_ERROR_TEMPORARY, "simulated: a write on one replica");
        return FALSE;
    }
    mem_seal_write(s, key, mem_quorum(s, s->replicas / 2 + 1), n, value);
    s->base.counters.bytes_written += name_len + g_bytes_get_size(value);
    if (roll < s->partial_permille + s->lost_ack_permille) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_TEMPORARY, "simulated: a lost acknowledgement");
        return FALSE;
    }
    return mem_ok(s);
}

/* mem_flag_key - the Flags column name: id·name */
static GBytes *
mem_flag_key(const StoreMsgId *id, const char *name)
{
    gsize n = strlen(name);
    guint8 *buf = g_malloc(ID_OCTETS + n);
    memcpy(buf, id->bytes, ID_OCTETS);
    memcpy(buf + ID_OCTETS, name, n);
    return g_bytes_new_take(buf, ID_OCTETS + n);
}

static gboolean
mem_flags_list(Store *base, const char *user, const char *mailbox, GPtrArray *out, GError **error)
{
    MemStore *s = (MemStore *)base;
    if (mem_injected_failure(s, error))
        return FALSE;
    g_autofree char *key = mem_row_key(user, mailbox);
    GHashTable *row = g_hash_table_lookup(s->flags, key);
    if (row) {
        GHashTableIter it;
        gpointer k;
        g_hash_table_iter_init(&it, row);
        while (g_hash_table_iter_next(&it, &k, NULL)) {
            gsize len;
            const guint8 *p = g_bytes_get_data(k, &len);
            g_ptr_array_add(out, store_flag_new(p, len));
            s->base.counters.columns_read++;
            s->base.counters.bytes_read += len;
        }
    }
    return mem_ok(s);
}

static gboolean
mem_flags_change(Store *base, const char *user, const char *mailbox,
                 const StoreFlagChange *changes, guint n, GError **error)
{
    MemStore *s = (MemStore *)base;
    if (mem_injected_failure(s, error))
        return FALSE;
    g_autofree char *key = mem_row_key(user, mailbox);
    GHashTable *row = mem_row(s->flags, key, TRUE, mem_bytes_set_new);
    static const StoreMsgId list_id;   /* all zero: the mailbox's keyword list */
    for (guint i = 0; i < n; i++) {
        GBytes *k = mem_flag_key(&changes[i].id, changes[i].name);
        if (changes[i].set) {
            if (changes[i].name[0] != '\\')
                g_hash_table_add(row, mem_flag_key(&list_id, changes[i].name));
            s->base.counters.bytes_written += g_bytes_get_size(k);
            g_hash_table_add(row, k);
        } else {
            g_hash_table_remove(row, k);
            g_bytes_unref(k);
        }
    }
    return mem_ok(s);
}

static gboolean
mem_meta_get(Store *base, const char *user, const char *mailbox, const StoreMsgId *ids, guint n,
             GPtrArray *out, GError **error)
{
    MemStore *s = (MemStore *)base;
    if (mem_injected_failure(s, error))
        return FALSE;
    g_autofree char *key = mem_row_key(user, mailbox);
    GHashTable *row = g_hash_table_lookup(s->meta, key);
    for (guint i = 0; i < n; i++) {
        g_autoptr(GBytes) k = g_bytes_new(ids[i].bytes, ID_OCTETS);
        GBytes *v = row ? g_hash_table_lookup(row, k) : NULL;
        g_ptr_array_add(out, v ? g_bytes_ref(v) : NULL);
        if (v) {
            s->base.counters.columns_read++;
            s->base.counters.bytes_read += ID_OCTETS + g_bytes_get_size(v);
        }
    }
    /* one get_slice per thousand names, as the Cassandra backend does */
    s->base.counters.calls += (n - 1) / 1000;
    return mem_ok(s);
}

static gboolean
mem_meta_put(Store *base, const char *user, const char *mailbox, const StoreMsgId *id, GBytes *meta,
             GError **error)
{
    MemStore *s = (MemStore *)base;
    if (mem_injected_failure(s, error))
        return FALSE;
    g_autofree char *key = mem_row_key(user, mailbox);
    GHashTable *row = mem_row(s->meta, key, TRUE, mem_bytes_map_new);
    g_hash_table_insert(row, g_bytes_new(id->bytes, ID_OCTETS), g_bytes_ref(meta));
    s->base.counters.bytes_written += ID_OCTETS + g_bytes_get_size(meta);
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
    g_hash_table_unref(s->flags);
    g_hash_table_unref(s->meta);
    for (int r = 0; r < MEM_REPLICAS_MAX; r++)
        g_hash_table_unref(s->seals[r]);
    g_rand_free(s->rand);
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
    .mailbox_get = mem_mailbox_get,
    .mailbox_create = mem_mailbox_create,
    .mailbox_drop = mem_mailbox_drop,
    .mailbox_move = mem_mailbox_move,
    .index_page_quorum = mem_index_page,
    .seals_slice = mem_seals_slice,
    .seal_put = mem_seal_put,
    .flags_list = mem_flags_list,
    .flags_change = mem_flags_change,
    .meta_get = mem_meta_get,
    .meta_put = mem_meta_put,
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
    s->flags = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                     (GDestroyNotify)g_hash_table_unref);
    s->meta = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                    (GDestroyNotify)g_hash_table_unref);
    for (int r = 0; r < MEM_REPLICAS_MAX; r++)
        s->seals[r] = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                            (GDestroyNotify)g_tree_unref);
    s->replicas = 1;
    s->rand = g_rand_new_with_seed(1);
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

/* store_mem_set_replicas - see store_mem.h */
void
store_mem_set_replicas(Store *base, int replicas, guint32 seed, int partial_permille,
                       int lost_ack_permille)
{
    g_return_if_fail(base && base->ops == &mem_ops);
    MemStore *s = (MemStore *)base;
    s->replicas = CLAMP(replicas, 1, MEM_REPLICAS_MAX);
    g_rand_set_seed(s->rand, seed);
    s->partial_permille = partial_permille;
    s->lost_ack_permille = lost_ack_permille;
}

/* store_mem_set_hook - see store_mem.h */
void
store_mem_set_hook(Store *base, StoreMemHook hook, gpointer data)
{
    g_return_if_fail(base && base->ops == &mem_ops);
    ((MemStore *)base)->hook = hook;
    ((MemStore *)base)->hook_data = data;
}

/* store_mem_seal_copies - see store_mem.h */
void
store_mem_seal_copies(Store *base, const char *user, const char *mailbox, int *min, int *max)
{
    *min = *max = 0;
    g_return_if_fail(base && base->ops == &mem_ops);
    MemStore *s = (MemStore *)base;
    g_autofree char *key = mem_row_key(user, mailbox);
    GHashTable *copies = g_hash_table_new(g_bytes_hash, g_bytes_equal);   /* name -> count */
    for (int r = 0; r < s->replicas; r++) {
        GTree *row = g_hash_table_lookup(s->seals[r], key);
        if (!row)
            continue;
        MemSlice sl = {.hits = g_ptr_array_new()};
        g_tree_foreach(row, mem_slice_collect, &sl);
        for (guint i = 0; i < sl.hits->len; i++) {
            gpointer n = g_ptr_array_index(sl.hits, i);
            g_hash_table_insert(copies, n,
                                GINT_TO_POINTER(GPOINTER_TO_INT(g_hash_table_lookup(copies, n)) + 1));
        }
        g_ptr_array_unref(sl.hits);
    }
    int lo = G_MAXINT, hi = 0;
    GHashTableIter it;
    gpointer value;
    g_hash_table_iter_init(&it, copies);
    while (g_hash_table_iter_next(&it, NULL, &value)) {
        lo = MIN(lo, GPOINTER_TO_INT(value));
        hi = MAX(hi, GPOINTER_TO_INT(value));
    }
    g_hash_table_unref(copies);
    *min = hi ? lo : 0;
    *max = hi;
}
