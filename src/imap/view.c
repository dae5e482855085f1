/*
 * view.c - the IMAP store layer (view.h): mailboxes by IMAP name, and the selected mailbox with
 * UIDs from the seal protocol of docs/imap.md.
 *
 * Seals (ImapSeals row "user:mailbox", BytesType):
 *   seal   name  epoch (8, BE) · seal number (8, BE) · digest (16: SHA-256 of the value, cut)
 *          value horizon (8, BE, µs) · first UID (4, BE) · count (4, BE) ·
 *                count × (TimeUUID (16) · size (4, BE, capped))
 *   marker name  epoch (8, BE) · 0xff × 24          value empty: "epoch e has ended"
 * A marker sorts after every seal of its epoch and before the next epoch's, so the row's last
 * column tells the current epoch (one reversed slice of one column).
 *
 * Establishing seal k of epoch e (docs/imap.md "Establishing seal k"): read its variants at
 * QUORUM; one variant: write it back at QUORUM; none: compute one from the index and write it;
 * then read again: exactly that variant -> established (its messages get their UIDs in the view).
 * Two variants, at any step -> the epoch ends (marker at QUORUM; a selected view reports
 * EPOCH_ENDED, the core says * BYE; a view being opened moves to epoch e+1). A failed write ->
 * nothing is shown (STORE_ERROR_TEMPORARY).
 *
 * Only the last seal of an epoch needs the write-back when a view opens: a seal k+1 exists only
 * because its writer established seal k, which put k on a quorum; a QUORUM read that sees one
 * variant of k sees that one.
 *
 * Memory: a message is a ViewMsg (28 octets) plus its place in by_id (4): 32 octets. Messages
 * sealed in the epoch and expunged since stay as ids in DEAD (16 octets), so they are never sealed
 * again, and an id that comes back into the index after the view reported it expunged ends the
 * epoch (a client was told it is gone).
 */
#include "imap/view.h"

#include <string.h>

#include "util/log.h"

G_DEFINE_QUARK(cassmail-imap-view-error-quark, imap_view_error)

#define SEAL_NAME_LEN 32
#define SEAL_HEAD_LEN 16
#define SEAL_ENTRY_LEN 20
#define SEAL_MAX 4096         /* messages per seal: 80 KiB values, 128 of them fit one response */
#define SEAL_PAGE 128         /* seal columns per slice */
#define SEAL_VARIANTS_MAX 8   /* variants of one seal read at a time (2 already mean conflict) */
#define INDEX_PAGE 4096       /* index entries per slice */
#define OPEN_TRIES 4          /* epochs a view may move through while it opens */
#define DEFAULT_SETTLE_MS 2000
#define QUANTUM_US G_USEC_PER_SEC
/* Gregorian reform (1582-10-15) to the Unix epoch, in 100-ns intervals (RFC 4122 4.1.4). */
#define MSGID_EPOCH_OFFSET G_GUINT64_CONSTANT(0x01B21DD213814000)

static gint64 (*view_clock)(void) = g_get_real_time;

/* imap_view_set_clock - see view.h */
void
imap_view_set_clock(gint64 (*now_us)(void))
{
    view_clock = now_us ? now_us : g_get_real_time;
}

/* ---- flags and names ---- */

static const struct {
    guint bit;
    const char *name;
} system_flags[] = {
    {IMAP_FLAG_SEEN, "\\Seen"},       {IMAP_FLAG_ANSWERED, "\\Answered"},
    {IMAP_FLAG_FLAGGED, "\\Flagged"}, {IMAP_FLAG_DELETED, "\\Deleted"},
    {IMAP_FLAG_DRAFT, "\\Draft"},
};

const char *
imap_flag_name(guint bit)
{
    for (gsize i = 0; i < G_N_ELEMENTS(system_flags); i++)
        if (system_flags[i].bit == bit)
            return system_flags[i].name;
    return NULL;
}

guint
imap_flag_from_name(const char *name)
{
    for (gsize i = 0; name && i < G_N_ELEMENTS(system_flags); i++)
        if (g_ascii_strcasecmp(system_flags[i].name, name) == 0)
            return system_flags[i].bit;
    return 0;
}

/* name_valid - an IMAP name the store can hold (view.h "Names") */
static gboolean
name_valid(const char *name)
{
    if (!store_mailbox_name_valid(name))
        return FALSE;
    gsize n = strlen(name);
    return name[0] != '/' && name[n - 1] != '/' && !strstr(name, "//");
}

char *
imap_name_to_store(const char *name)
{
    if (name && g_ascii_strcasecmp(name, "INBOX") == 0)
        return g_strdup("inbox");
    return name_valid(name) ? g_strdup(name) : NULL;
}

char *
imap_name_from_store(const char *stored)
{
    return g_strdup(strcmp(stored, "inbox") == 0 ? "INBOX" : stored);
}

/* to_store - the stored name of NAME, or NULL with BAD_NAME */
static char *
to_store(const char *name, GError **error)
{
    char *stored = imap_name_to_store(name);
    if (!stored)
        g_set_error(error, IMAP_VIEW_ERROR, IMAP_VIEW_ERROR_BAD_NAME,
                    "a mailbox name is 1-%d octets of printable ASCII without an empty level",
                    IMAP_NAME_MAX);
    return stored;
}

/* ---- octets: the big-endian numbers of seal names and values ---- */

static void put_be64(guint8 *p, guint64 v) { v = GUINT64_TO_BE(v); memcpy(p, &v, 8); }
static void put_be32(guint8 *p, guint32 v) { v = GUINT32_TO_BE(v); memcpy(p, &v, 4); }
static guint64 get_be64(const guint8 *p) { guint64 v; memcpy(&v, p, 8); return GUINT64_FROM_BE(v); }
static guint32 get_be32(const guint8 *p) { guint32 v; memcpy(&v, p, 4); return GUINT32_FROM_BE(v); }

/* msgid_unix_us - the time of a TimeUUID in µs since the Unix epoch */
static gint64
msgid_unix_us(const StoreMsgId *id)
{
    guint64 t = store_msgid_time(id);
    return t < MSGID_EPOCH_OFFSET ? 0 : (gint64)((t - MSGID_EPOCH_OFFSET) / 10);
}

/* ---- the view ---- */

typedef struct {
    StoreMsgId id;
    guint32 uid;
    guint32 size;      /* RFC822.SIZE, capped at 4 GiB - 1 (the store never holds more) */
    guint16 flags;     /* IMAP_FLAG_* */
    guint16 kwset;     /* index into kwsets; 0: no keywords */
} ViewMsg;

struct ImapView {
    Store *store;
    char *user, *stored, *name;
    gboolean read_only;
    int settle_ms;
    guint32 base;          /* UIDVALIDITY base of the mailbox */
    guint64 epoch;
    guint64 next_seal;     /* seals 0 .. next_seal-1 of the epoch are established */
    guint32 uidnext;
    GArray *msgs;          /* ViewMsg in UID (= sequence) order */
    GArray *by_id;         /* guint32 positions into msgs, ordered by id octets */
    GArray *dead;          /* StoreMsgId sealed in the epoch and expunged since, by octets */
    GPtrArray *kwsets;     /* char ** (NULL-terminated, sorted); [0] is the empty set */
    GHashTable *kwset_index;   /* "a\nb" -> index + 1 */
    GPtrArray *keywords;   /* the mailbox's keyword list, NULL-terminated */
};

typedef struct {
    StoreMsgId id;
    guint64 size;
} Entry;

static int
id_cmp(const StoreMsgId *a, const StoreMsgId *b)
{
    return memcmp(a->bytes, b->bytes, 16);
}

static ViewMsg *
msg_at(const ImapView *v, guint pos)
{
    return &g_array_index(v->msgs, ViewMsg, pos);
}

/* by_id_find - the position in msgs of message ID, or -1 */
static gint64
by_id_find(const ImapView *v, const StoreMsgId *id)
{
    guint lo = 0, hi = v->by_id->len;
    while (lo < hi) {
        guint mid = (lo + hi) / 2;
        guint32 pos = g_array_index(v->by_id, guint32, mid);
        int c = id_cmp(&msg_at(v, pos)->id, id);
        if (c == 0)
            return pos;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static gint
by_id_cmp(gconstpointer a, gconstpointer b, gpointer view)
{
    const ViewMsg *ma = msg_at(view, *(const guint32 *)a);
    const ViewMsg *mb = msg_at(view, *(const guint32 *)b);
    return id_cmp(&ma->id, &mb->id);
}

/* by_id_rebuild - by_id for msgs as they are now */
static void
by_id_rebuild(ImapView *v)
{
    g_array_set_size(v->by_id, v->msgs->len);
    for (guint i = 0; i < v->msgs->len; i++)
        g_array_index(v->by_id, guint32, i) = i;
    g_array_sort_with_data(v->by_id, by_id_cmp, v);
}

static int
dead_cmp(const void *a, const void *b)
{
    return id_cmp(a, b);
}

static gboolean
dead_has(const ImapView *v, const StoreMsgId *id)
{
    return v->dead->len &&
           bsearch(id, v->dead->data, v->dead->len, sizeof(StoreMsgId), dead_cmp) != NULL;
}

static void
dead_add(ImapView *v, const StoreMsgId *id)
{
    g_array_append_val(v->dead, *id);
    g_array_sort(v->dead, (GCompareFunc)dead_cmp);
}

/* sealed - whether ID is in a seal of the view's epoch that the view established */
static gboolean
sealed(const ImapView *v, const StoreMsgId *id)
{
    return by_id_find(v, id) >= 0 || dead_has(v, id);
}

/* kwset_intern - the index of keyword set NAMES[0..N) (sorted, distinct) */
static guint16
kwset_intern(ImapView *v, char **names, guint n)
{
    if (n == 0)
        return 0;
    g_autofree char *joined = NULL;
    {
        g_autoptr(GString) j = g_string_new(NULL);
        for (guint i = 0; i < n; i++)
            g_string_append_printf(j, "%s%s", i ? "\n" : "", names[i]);
        joined = g_string_free(g_steal_pointer(&j), FALSE);
    }
    gpointer found = g_hash_table_lookup(v->kwset_index, joined);
    if (found)
        return (guint16)(GPOINTER_TO_UINT(found) - 1);
    if (v->kwsets->len >= G_MAXUINT16)
        return 0;   /* cannot happen with IMAP_KEYWORDS_MAX keywords in practice */
    char **set = g_new0(char *, n + 1);
    for (guint i = 0; i < n; i++)
        set[i] = g_strdup(names[i]);
    g_ptr_array_add(v->kwsets, set);
    g_hash_table_insert(v->kwset_index, g_steal_pointer(&joined), GUINT_TO_POINTER(v->kwsets->len));
    return (guint16)(v->kwsets->len - 1);
}

static const char *const *
kwset_names(const ImapView *v, guint16 kw)
{
    return (const char *const *)g_ptr_array_index(v->kwsets, kw);
}

static void
keyword_list_add(ImapView *v, const char *name, gboolean *grew)
{
    for (guint i = 0; i + 1 < v->keywords->len; i++)
        if (strcmp(g_ptr_array_index(v->keywords, i), name) == 0)
            return;
    g_ptr_array_insert(v->keywords, (gint)v->keywords->len - 1, g_strdup(name));
    if (grew)
        *grew = TRUE;
}

static ImapView *
view_new(Store *s, const char *user, const char *stored, const char *name, gboolean read_only,
         int settle_ms)
{
    ImapView *v = g_new0(ImapView, 1);
    v->store = s;
    v->user = g_strdup(user);
    v->stored = g_strdup(stored);
    v->name = imap_name_from_store(stored);
    (void)name;
    v->read_only = read_only;
    v->settle_ms = settle_ms > 0 ? settle_ms : DEFAULT_SETTLE_MS;
    v->msgs = g_array_new(FALSE, FALSE, sizeof(ViewMsg));
    v->by_id = g_array_new(FALSE, FALSE, sizeof(guint32));
    v->dead = g_array_new(FALSE, FALSE, sizeof(StoreMsgId));
    v->kwsets = g_ptr_array_new_with_free_func((GDestroyNotify)g_strfreev);
    g_ptr_array_add(v->kwsets, g_new0(char *, 1));
    v->kwset_index = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    v->keywords = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(v->keywords, NULL);
    v->uidnext = 1;
    return v;
}

/* view_reset - forget every seal (the view moves to another epoch) */
static void
view_reset(ImapView *v)
{
    g_array_set_size(v->msgs, 0);
    g_array_set_size(v->by_id, 0);
    g_array_set_size(v->dead, 0);
    v->next_seal = 0;
    v->uidnext = 1;
}

void
imap_view_free(ImapView **vp)
{
    ImapView *v = *vp;
    if (!v)
        return;
    g_free(v->user);
    g_free(v->stored);
    g_free(v->name);
    g_array_unref(v->msgs);
    g_array_unref(v->by_id);
    g_array_unref(v->dead);
    g_ptr_array_unref(v->kwsets);
    g_hash_table_unref(v->kwset_index);
    g_ptr_array_unref(v->keywords);
    g_free(v);
    *vp = NULL;
}

/* ---- seal columns ---- */

static void
seal_name(guint8 out[SEAL_NAME_LEN], guint64 epoch, guint64 k, guint8 fill)
{
    put_be64(out, epoch);
    put_be64(out + 8, k);
    memset(out + 16, fill, 16);
}

static void
marker_name(guint8 out[SEAL_NAME_LEN], guint64 epoch)
{
    put_be64(out, epoch);
    memset(out + 8, 0xff, 24);
}

static gboolean
is_marker(const guint8 *name, gsize len)
{
    if (len != SEAL_NAME_LEN)
        return FALSE;
    for (int i = 8; i < SEAL_NAME_LEN; i++)
        if (name[i] != 0xff)
            return FALSE;
    return TRUE;
}

/* seal_value_ok - whether VALUE is a well-formed seal value */
static gboolean
seal_value_ok(GBytes *value)
{
    gsize len;
    const guint8 *p = g_bytes_get_data(value, &len);
    if (len < SEAL_HEAD_LEN)
        return FALSE;
    guint32 count = get_be32(p + 12);
    return count > 0 && count <= SEAL_MAX && len == SEAL_HEAD_LEN + (gsize)count * SEAL_ENTRY_LEN &&
           get_be32(p + 8) > 0;
}

/* seal_digest_name - the column name of seal K of EPOCH with VALUE */
static void
seal_digest_name(guint8 out[SEAL_NAME_LEN], guint64 epoch, guint64 k, GBytes *value)
{
    seal_name(out, epoch, k, 0);
    GChecksum *sum = g_checksum_new(G_CHECKSUM_SHA256);
    gsize len;
    const guint8 *p = g_bytes_get_data(value, &len);
    g_checksum_update(sum, p, (gssize)len);
    guint8 digest[32];
    gsize dlen = sizeof digest;
    g_checksum_get_digest(sum, digest, &dlen);
    g_checksum_free(sum);
    memcpy(out + 16, digest, 16);
}

/* read_epoch - the mailbox's current epoch: the last column of its seal row tells */
static gboolean
read_epoch(Store *s, const char *user, const char *stored, guint64 *epoch, GError **error)
{
    g_autoptr(GPtrArray) cols = g_ptr_array_new_with_free_func(store_column_free);
    if (!store_seals_slice(s, user, stored, NULL, 0, NULL, 0, TRUE, 1, cols, error))
        return FALSE;
    *epoch = 0;
    if (cols->len) {
        gsize len;
        const guint8 *name = g_bytes_get_data(((StoreColumn *)cols->pdata[0])->name, &len);
        if (len == SEAL_NAME_LEN)
            *epoch = get_be64(name) + (is_marker(name, len) ? 1 : 0);
    }
    return TRUE;
}

/* end_epoch - write the marker "EPOCH has ended" at QUORUM */
static gboolean
end_epoch(Store *s, const char *user, const char *stored, guint64 epoch, GError **error)
{
    guint8 name[SEAL_NAME_LEN];
    marker_name(name, epoch);
    g_autoptr(GBytes) empty = g_bytes_new(NULL, 0);
    if (!store_seal_put(s, user, stored, name, sizeof name, empty, 1, error))
        return FALSE;
    log_info("imap: %s:%s epoch %" G_GUINT64_FORMAT " ended", user, stored, epoch);
    return TRUE;
}

static gboolean
epoch_ended_error(ImapView *v, GError **error)
{
    g_set_error(error, IMAP_VIEW_ERROR, IMAP_VIEW_ERROR_EPOCH_ENDED,
                "the UIDVALIDITY of %s changed; select it again", v->name);
    return FALSE;
}

/* conflict - two variants of a seal, or a message told expunged that came back: the epoch ends */
static gboolean
conflict(ImapView *v, const char *why, GError **error)
{
    log_info("imap: %s:%s epoch %" G_GUINT64_FORMAT ": %s", v->user, v->stored, v->epoch, why);
    GError *e = NULL;
    if (!end_epoch(v->store, v->user, v->stored, v->epoch, &e)) {
        /* the marker only tells others sooner; this view stops using the epoch either way */
        log_warn("imap: %s:%s: cannot mark the end of epoch %" G_GUINT64_FORMAT ": %s", v->user,
                 v->stored, v->epoch, e->message);
        g_error_free(e);
    }
    return epoch_ended_error(v, error);
}

/* marker_present - whether the view's epoch has ended (a marker at QUORUM) */
static gboolean
marker_present(ImapView *v, gboolean *present, GError **error)
{
    guint8 name[SEAL_NAME_LEN];
    marker_name(name, v->epoch);
    g_autoptr(GPtrArray) cols = g_ptr_array_new_with_free_func(store_column_free);
    if (!store_seals_slice(v->store, v->user, v->stored, name, sizeof name, name, sizeof name,
                           FALSE, 1, cols, error))
        return FALSE;
    *present = cols->len > 0;
    return TRUE;
}

/* seal_variants - the columns of seal K of the view's epoch (QUORUM) */
static gboolean
seal_variants(ImapView *v, guint64 k, GPtrArray *out, GError **error)
{
    guint8 lo[SEAL_NAME_LEN], hi[SEAL_NAME_LEN];
    seal_name(lo, v->epoch, k, 0);
    seal_name(hi, v->epoch, k, 0xff);
    return store_seals_slice(v->store, v->user, v->stored, lo, sizeof lo, hi, sizeof hi, FALSE,
                             SEAL_VARIANTS_MAX, out, error);
}

/* seal_check - whether VALUE can be seal k of the view: well formed, first UID where the last
 * established seal ended, no id twice, none sealed already */
static gboolean
seal_check(const ImapView *v, GBytes *value)
{
    if (!seal_value_ok(value))
        return FALSE;
    gsize len;
    const guint8 *p = g_bytes_get_data(value, &len);
    guint32 first = get_be32(p + 8), count = get_be32(p + 12);
    if (first != v->uidnext || (guint64)first + count > G_MAXUINT32)
        return FALSE;
    g_autoptr(GArray) ids = g_array_sized_new(FALSE, FALSE, sizeof(StoreMsgId), count);
    for (guint32 i = 0; i < count; i++) {
        const StoreMsgId *id = (const StoreMsgId *)(p + SEAL_HEAD_LEN + (gsize)i * SEAL_ENTRY_LEN);
        if (sealed(v, id))
            return FALSE;
        g_array_append_val(ids, *id);
    }
    g_array_sort(ids, (GCompareFunc)dead_cmp);
    for (guint i = 1; i < ids->len; i++)
        if (id_cmp(&g_array_index(ids, StoreMsgId, i - 1), &g_array_index(ids, StoreMsgId, i)) == 0)
            return FALSE;
    return TRUE;
}

/* seal_apply - the messages of established seal VALUE into the view, with their UIDs */
static void
seal_apply(ImapView *v, GBytes *value)
{
    gsize len;
    const guint8 *p = g_bytes_get_data(value, &len);
    guint32 first = get_be32(p + 8), count = get_be32(p + 12);
    for (guint32 i = 0; i < count; i++) {
        const guint8 *e = p + SEAL_HEAD_LEN + (gsize)i * SEAL_ENTRY_LEN;
        ViewMsg m = {.uid = first + i, .size = get_be32(e + 16)};
        memcpy(m.id.bytes, e, 16);
        g_array_append_val(v->msgs, m);
    }
    v->uidnext = first + count;
    v->next_seal++;
    by_id_rebuild(v);
}

/* seal_build - a seal value for the first (at most SEAL_MAX) of CANDS, from the view's UIDNEXT */
static GBytes *
seal_build(const ImapView *v, const GArray *cands, gint64 horizon)
{
    guint32 count = MIN(cands->len, (guint)SEAL_MAX);
    gsize len = SEAL_HEAD_LEN + (gsize)count * SEAL_ENTRY_LEN;
    guint8 *p = g_malloc(len);
    put_be64(p, (guint64)horizon);
    put_be32(p + 8, v->uidnext);
    put_be32(p + 12, count);
    for (guint32 i = 0; i < count; i++) {
        const Entry *c = &g_array_index(cands, Entry, i);
        guint8 *e = p + SEAL_HEAD_LEN + (gsize)i * SEAL_ENTRY_LEN;
        memcpy(e, c->id.bytes, 16);
        put_be32(e + 16, (guint32)MIN(c->size, (guint64)G_MAXUINT32));
    }
    return g_bytes_new_take(p, len);
}

/* horizon - H: a whole second at least settle_ms in the past (µs) */
static gint64
horizon(const ImapView *v)
{
    gint64 h = view_clock() - (gint64)v->settle_ms * 1000;
    return h / QUANTUM_US * QUANTUM_US;
}

/* candidates - the entries of INDEX older than the horizon that no seal of the view holds, in
 * the index's (TimeUUIDType) order */
static GArray *
candidates(const ImapView *v, const GArray *index)
{
    gint64 h = horizon(v);
    GArray *out = g_array_new(FALSE, FALSE, sizeof(Entry));
    for (guint i = 0; i < index->len; i++) {
        const Entry *e = &g_array_index(index, Entry, i);
        if (msgid_unix_us(&e->id) < h && !sealed(v, &e->id))
            g_array_append_val(out, *e);
    }
    return out;
}

typedef enum { EST_NOTHING, EST_DONE } EstResult;

/* establish - establish seal next_seal of the view (see the file's header); INDEX (read at
 * QUORUM) gives the candidates when no variant exists yet. *RESULT: EST_DONE (the seal's
 * messages are in the view) or EST_NOTHING (no variant and no candidate). */
static gboolean
establish(ImapView *v, const GArray *index, EstResult *result, GError **error)
{
    guint64 k = v->next_seal;
    g_autoptr(GPtrArray) cols = g_ptr_array_new_with_free_func(store_column_free);
    if (!seal_variants(v, k, cols, error))
        return FALSE;
    if (cols->len > 1)
        return conflict(v, "two variants of a seal", error);
    guint8 name[SEAL_NAME_LEN];
    g_autoptr(GBytes) value = NULL;
    if (cols->len == 1) {
        StoreColumn *c = g_ptr_array_index(cols, 0);
        value = g_bytes_ref(c->value);
        if (g_bytes_get_size(c->name) != SEAL_NAME_LEN || !seal_check(v, value))
            return conflict(v, "a seal that cannot follow the last one", error);
        memcpy(name, g_bytes_get_data(c->name, NULL), SEAL_NAME_LEN);
    } else {
        if (!index) {
            *result = EST_NOTHING;
            return TRUE;
        }
        g_autoptr(GArray) cands = candidates(v, index);
        if (cands->len == 0) {
            *result = EST_NOTHING;
            return TRUE;
        }
        value = seal_build(v, cands, horizon(v));
        seal_digest_name(name, v->epoch, k, value);
    }
    /* write (or write back) at QUORUM, then check */
    gsize vlen;
    const guint8 *vp = g_bytes_get_data(value, &vlen);
    gint64 ts = (gint64)get_be64(vp);   /* the horizon: the same for every writer of this value */
    if (!store_seal_put(v->store, v->user, v->stored, name, sizeof name, value, ts, error))
        return FALSE;
    g_ptr_array_set_size(cols, 0);
    if (!seal_variants(v, k, cols, error))
        return FALSE;
    if (cols->len != 1) {
        if (cols->len == 0) {   /* a completed QUORUM write must be seen by a QUORUM read */
            g_set_error(error, STORE_ERROR, STORE_ERROR_TEMPORARY, "a seal written is not read");
            return FALSE;
        }
        return conflict(v, "two variants of a seal", error);
    }
    StoreColumn *c = g_ptr_array_index(cols, 0);
    if (g_bytes_get_size(c->name) != SEAL_NAME_LEN ||
        memcmp(g_bytes_get_data(c->name, NULL), name, SEAL_NAME_LEN) != 0)
        return conflict(v, "two variants of a seal", error);
    seal_apply(v, value);
    *result = EST_DONE;
    return TRUE;
}

/* read_index - the whole index of the mailbox at QUORUM */
static gboolean
read_index(ImapView *v, GArray *out, GError **error)
{
    g_autoptr(GArray) page = g_array_new(FALSE, FALSE, sizeof(StoreIndexEntry));
    StoreMsgId after;
    gboolean have_after = FALSE;
    for (;;) {
        g_array_set_size(page, 0);
        if (!store_index_page_quorum(v->store, v->user, v->stored, have_after ? &after : NULL,
                                     INDEX_PAGE, page, error))
            return FALSE;
        for (guint i = 0; i < page->len; i++) {
            const StoreIndexEntry *e = &g_array_index(page, StoreIndexEntry, i);
            Entry x = {.id = e->id, .size = e->size};
            g_array_append_val(out, x);
        }
        if (page->len < INDEX_PAGE)
            return TRUE;
        after = g_array_index(page, StoreIndexEntry, page->len - 1).id;
        have_after = TRUE;
    }
}

static int
entry_id_cmp(const void *a, const void *b)
{
    return id_cmp(&((const Entry *)a)->id, &((const Entry *)b)->id);
}

static int
flag_cmp(const void *a, const void *b)
{
    const StoreFlag *fa = *(StoreFlag *const *)a, *fb = *(StoreFlag *const *)b;
    int c = id_cmp(&fa->id, &fb->id);
    return c ? c : strcmp(fa->name, fb->name);
}

/* flags_apply - the flags in FLAGS (sorted by flag_cmp) onto the view's messages; CHANGED gets
 * the seqs whose flags differ from before (the first KNOWN messages only: later ones are new) */
static void
flags_apply(ImapView *v, GPtrArray *flags, guint known, GArray *changed, gboolean *kw_grew)
{
    static const StoreMsgId zero;
    guint i = 0;
    for (; i < flags->len; i++) {   /* the keyword list sorts first (id all zero) */
        StoreFlag *f = g_ptr_array_index(flags, i);
        if (id_cmp(&f->id, &zero) != 0)
            break;
        keyword_list_add(v, f->name, kw_grew);
    }
    guint first_msg = i;
    g_autoptr(GPtrArray) kws = g_ptr_array_new();
    for (guint pos = 0; pos < v->msgs->len; pos++) {
        ViewMsg *m = msg_at(v, pos);
        /* binary search the first flag of M */
        guint lo = first_msg, hi = flags->len;
        while (lo < hi) {
            guint mid = (lo + hi) / 2;
            StoreFlag *f = g_ptr_array_index(flags, mid);
            if (id_cmp(&f->id, &m->id) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        guint bits = 0;
        g_ptr_array_set_size(kws, 0);
        for (guint j = lo; j < flags->len; j++) {
            StoreFlag *f = g_ptr_array_index(flags, j);
            if (id_cmp(&f->id, &m->id) != 0)
                break;
            guint bit = f->name[0] == '\\' ? imap_flag_from_name(f->name) : 0;
            if (bit)
                bits |= bit;
            else if (f->name[0] != '\\') {
                g_ptr_array_add(kws, f->name);
                keyword_list_add(v, f->name, kw_grew);
            }
        }
        guint16 kw = kwset_intern(v, (char **)kws->pdata, kws->len);
        if (pos < known && changed && (m->flags != bits || m->kwset != kw)) {
            guint seq = pos + 1;
            g_array_append_val(changed, seq);
        }
        m->flags = (guint16)bits;
        m->kwset = kw;
    }
}

/* read_flags - the mailbox's flags at QUORUM, sorted for flags_apply */
static GPtrArray *
read_flags(ImapView *v, GError **error)
{
    GPtrArray *flags = g_ptr_array_new_with_free_func(g_free);
    if (!store_flags_list(v->store, v->user, v->stored, flags, error)) {
        g_ptr_array_unref(flags);
        return NULL;
    }
    if (flags->len > 1)   /* an empty GPtrArray's pdata is NULL, which qsort may not take */
        qsort(flags->pdata, flags->len, sizeof(gpointer), flag_cmp);
    return flags;
}

/* remove_pos - message at POS leaves the view (expunged); its id joins DEAD */
static void
remove_pos(ImapView *v, guint pos)
{
    dead_add(v, &msg_at(v, pos)->id);
    g_array_remove_index(v->msgs, pos);
}

/* expunge_missing - messages of the first KNOWN of the view that INDEX (sorted by id) lacks:
 * removed, their seqs (highest first, so each number holds when sent) into EXPUNGED */
static guint
expunge_missing(ImapView *v, GArray *sorted_index, guint known, GArray *expunged)
{
    guint removed = 0;
    for (guint pos = known; pos-- > 0;) {
        Entry key = {.id = msg_at(v, pos)->id};
        if (!sorted_index->len ||
            !bsearch(&key, sorted_index->data, sorted_index->len, sizeof(Entry), entry_id_cmp)) {
            remove_pos(v, pos);
            removed++;
            if (expunged) {
                guint seq = pos + 1;
                g_array_append_val(expunged, seq);
            }
        }
    }
    if (removed)
        by_id_rebuild(v);
    return removed;
}

/* seal_new - establish seals until none is left to establish or build */
static gboolean
seal_new(ImapView *v, const GArray *index, GError **error)
{
    for (;;) {
        EstResult r;
        if (!establish(v, index, &r, error))
            return FALSE;
        if (r == EST_NOTHING)
            return TRUE;
    }
}

/* load_epoch - every seal of the view's epoch, the last one established; FALSE with
 * EPOCH_ENDED when the epoch has ended or conflicts */
static gboolean
load_epoch(ImapView *v, GError **error)
{
    guint8 lo[SEAL_NAME_LEN], hi[SEAL_NAME_LEN];
    seal_name(lo, v->epoch, 0, 0);
    marker_name(hi, v->epoch);
    g_autoptr(GBytes) last = NULL;   /* the value of the last seal seen, not yet applied */
    for (;;) {
        g_autoptr(GPtrArray) cols = g_ptr_array_new_with_free_func(store_column_free);
        if (!store_seals_slice(v->store, v->user, v->stored, lo, sizeof lo, hi, sizeof hi, FALSE,
                               SEAL_PAGE, cols, error))
            return FALSE;
        guint i = 0;
        if (cols->len && memcmp(g_bytes_get_data(((StoreColumn *)cols->pdata[0])->name, NULL), lo,
                                SEAL_NAME_LEN) == 0 && last)
            i = 1;   /* the page's start column again */
        for (; i < cols->len; i++) {
            StoreColumn *c = g_ptr_array_index(cols, i);
            gsize len;
            const guint8 *name = g_bytes_get_data(c->name, &len);
            if (len != SEAL_NAME_LEN)
                continue;   /* not ours */
            if (is_marker(name, len))
                return epoch_ended_error(v, error);
            guint64 k = get_be64(name + 8);
            guint64 expect = v->next_seal + (last ? 1 : 0);
            if (last && k == v->next_seal)
                return conflict(v, "two variants of a seal", error);
            if (k != expect)
                return conflict(v, "a gap between seals", error);
            if (last) {   /* LAST is followed by a seal: its writer established it */
                if (!seal_check(v, last))
                    return conflict(v, "a seal that cannot follow the last one", error);
                seal_apply(v, last);
                g_clear_pointer(&last, g_bytes_unref);
            }
            last = g_bytes_ref(c->value);
        }
        if (cols->len < SEAL_PAGE)
            break;
        memcpy(lo, g_bytes_get_data(((StoreColumn *)cols->pdata[cols->len - 1])->name, NULL),
               SEAL_NAME_LEN);
    }
    /* the last seal: established the full way (write-back, read again) */
    if (last) {
        EstResult r;
        if (!establish(v, NULL, &r, error))
            return FALSE;
    }
    return TRUE;
}

/* mailbox_must_exist - NONEXISTENT unless USER has STORED (*BASE: its UIDVALIDITY base) */
static gboolean
mailbox_must_exist(Store *s, const char *user, const char *stored, guint32 *base, GError **error)
{
    gboolean exists;
    guint32 b;
    if (!store_mailbox_get(s, user, stored, &exists, &b, error))
        return FALSE;
    if (!exists) {
        g_set_error(error, IMAP_VIEW_ERROR, IMAP_VIEW_ERROR_NONEXISTENT, "no mailbox %s", stored);
        return FALSE;
    }
    if (base)
        *base = b;
    return TRUE;
}

ImapView *
imap_view_open(Store *s, const char *user, const char *name, gboolean read_only, int settle_ms,
               GError **error)
{
    g_autofree char *stored = to_store(name, error);
    if (!stored)
        return NULL;
    guint32 base;
    if (!mailbox_must_exist(s, user, stored, &base, error))
        return NULL;
    ImapView *v = view_new(s, user, stored, name, read_only, settle_ms);
    v->base = base;
    for (int tries = 0;; tries++) {
        GError *e = NULL;
        view_reset(v);
        g_autoptr(GArray) index = g_array_new(FALSE, FALSE, sizeof(Entry));
        g_autoptr(GPtrArray) flags = NULL;
        gboolean ok = read_epoch(s, user, stored, &v->epoch, &e) && load_epoch(v, &e) &&
                      read_index(v, index, &e);
        if (ok) {
            /* sealed messages gone from the index: expunged before this view (nothing to say) */
            g_autoptr(GArray) sorted = g_array_copy(index);
            g_array_sort(sorted, entry_id_cmp);
            expunge_missing(v, sorted, v->msgs->len, NULL);
            ok = seal_new(v, index, &e) && (flags = read_flags(v, &e)) != NULL;
        }
        if (ok) {
            flags_apply(v, flags, 0, NULL, NULL);
            return v;
        }
        if (g_error_matches(e, IMAP_VIEW_ERROR, IMAP_VIEW_ERROR_EPOCH_ENDED) &&
            tries + 1 < OPEN_TRIES) {
            g_error_free(e);
            continue;   /* the next epoch */
        }
        g_propagate_error(error, e);
        imap_view_free(&v);
        return NULL;
    }
}

void
imap_view_changes_init(ImapViewChanges *c)
{
    memset(c, 0, sizeof *c);
    c->expunged = g_array_new(FALSE, FALSE, sizeof(guint));
    c->flags_changed = g_array_new(FALSE, FALSE, sizeof(guint));
}

void
imap_view_changes_clear(ImapViewChanges *c)
{
    if (c->expunged)
        g_array_unref(c->expunged);
    if (c->flags_changed)
        g_array_unref(c->flags_changed);
    memset(c, 0, sizeof *c);
}

gboolean
imap_view_sync(ImapView *v, ImapViewChanges *out, GError **error)
{
    gboolean ended;
    if (!marker_present(v, &ended, error))
        return FALSE;
    if (ended)
        return epoch_ended_error(v, error);
    g_autoptr(GArray) index = g_array_new(FALSE, FALSE, sizeof(Entry));
    if (!read_index(v, index, error))
        return FALSE;
    g_autoptr(GArray) sorted = g_array_copy(index);
    g_array_sort(sorted, entry_id_cmp);
    /* a message this view reported expunged is back: the client was told wrong */
    for (guint i = 0; i < v->dead->len; i++) {
        Entry key = {.id = g_array_index(v->dead, StoreMsgId, i)};
        if (sorted->len && bsearch(&key, sorted->data, sorted->len, sizeof(Entry), entry_id_cmp))
            return conflict(v, "an expunged message came back", error);
    }
    g_autoptr(GPtrArray) flags = read_flags(v, error);
    if (!flags)
        return FALSE;
    /* From here on the view changes; a failure to seal leaves what is done so far (reported). */
    expunge_missing(v, sorted, v->msgs->len, out->expunged);
    guint known = v->msgs->len;
    GError *e = NULL;
    if (!seal_new(v, index, &e)) {
        if (g_error_matches(e, IMAP_VIEW_ERROR, IMAP_VIEW_ERROR_EPOCH_ENDED)) {
            g_propagate_error(error, e);
            return FALSE;
        }
        log_info("imap: %s:%s: no new seal now: %s", v->user, v->stored, e->message);
        g_error_free(e);
    }
    flags_apply(v, flags, known, out->flags_changed, &out->keywords_changed);
    out->exists = v->msgs->len;
    return TRUE;
}

/* ---- accessors ---- */

Store *imap_view_store(const ImapView *v) { return v->store; }
const char *imap_view_user(const ImapView *v) { return v->user; }
const char *imap_view_stored_name(const ImapView *v) { return v->stored; }
const char *imap_view_name(const ImapView *v) { return v->name; }
gboolean imap_view_read_only(const ImapView *v) { return v->read_only; }
guint imap_view_count(const ImapView *v) { return v->msgs->len; }
guint32 imap_view_uidnext(const ImapView *v) { return v->uidnext; }

guint32
imap_view_uidvalidity(const ImapView *v)
{
    guint64 u = (guint64)v->base + v->epoch;
    return (guint32)MIN(MAX(u, 1), (guint64)G_MAXUINT32);
}

const char *const *
imap_view_keywords(const ImapView *v)
{
    return (const char *const *)v->keywords->pdata;
}

gboolean
imap_view_keywords_full(const ImapView *v)
{
    return v->keywords->len - 1 >= IMAP_KEYWORDS_MAX;
}

static const ViewMsg *
seq_msg(const ImapView *v, guint seq)
{
    return seq >= 1 && seq <= v->msgs->len ? msg_at(v, seq - 1) : NULL;
}

guint32
imap_view_uid(const ImapView *v, guint seq)
{
    const ViewMsg *m = seq_msg(v, seq);
    return m ? m->uid : 0;
}

const StoreMsgId *
imap_view_msgid(const ImapView *v, guint seq)
{
    const ViewMsg *m = seq_msg(v, seq);
    return m ? &m->id : NULL;
}

guint64
imap_view_size(const ImapView *v, guint seq)
{
    const ViewMsg *m = seq_msg(v, seq);
    return m ? m->size : 0;
}

gint64
imap_view_internaldate(const ImapView *v, guint seq)
{
    const ViewMsg *m = seq_msg(v, seq);
    return m ? msgid_unix_us(&m->id) / G_USEC_PER_SEC : 0;
}

guint
imap_view_flags(const ImapView *v, guint seq)
{
    const ViewMsg *m = seq_msg(v, seq);
    return m ? m->flags : 0;
}

const char *const *
imap_view_msg_keywords(const ImapView *v, guint seq)
{
    const ViewMsg *m = seq_msg(v, seq);
    return kwset_names(v, m ? m->kwset : 0);
}

/* first_uid_at_least - the position of the first message with UID >= UID */
static guint
first_uid_at_least(const ImapView *v, guint32 uid)
{
    guint lo = 0, hi = v->msgs->len;
    while (lo < hi) {
        guint mid = (lo + hi) / 2;
        if (msg_at(v, mid)->uid < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

guint
imap_view_seq_of_uid(const ImapView *v, guint32 uid)
{
    guint pos = first_uid_at_least(v, uid);
    return pos < v->msgs->len && msg_at(v, pos)->uid == uid ? pos + 1 : 0;
}

gboolean
imap_view_seq_range(const ImapView *v, guint32 lo, guint32 hi, guint *first, guint *last)
{
    if (lo > hi)
        return FALSE;
    guint a = first_uid_at_least(v, lo);
    guint b = hi == G_MAXUINT32 ? v->msgs->len : first_uid_at_least(v, hi + 1);
    if (a >= b)
        return FALSE;
    *first = a + 1;
    *last = b;
    return TRUE;
}

/* ---- flags ---- */

static gboolean
read_only_error(const ImapView *v, GError **error)
{
    g_set_error(error, IMAP_VIEW_ERROR, IMAP_VIEW_ERROR_READ_ONLY, "%s is selected read-only",
                v->name);
    return FALSE;
}

/* keywords_check - LIMIT unless KEYWORDS fit: each short enough, and the mailbox's list (KNOWN,
 * NULL-terminated) with them within IMAP_KEYWORDS_MAX */
static gboolean
keywords_check(const char *const *known, const char *const *keywords, GError **error)
{
    guint n = known ? g_strv_length((char **)known) : 0;
    for (guint i = 0; keywords && keywords[i]; i++) {
        if (strlen(keywords[i]) > IMAP_KEYWORD_LEN_MAX || !store_mailbox_name_valid(keywords[i])) {
            g_set_error(error, IMAP_VIEW_ERROR, IMAP_VIEW_ERROR_LIMIT,
                        "a keyword is at most %d octets", IMAP_KEYWORD_LEN_MAX);
            return FALSE;
        }
        gboolean have = known && g_strv_contains(known, keywords[i]);
        for (guint j = 0; !have && j < i; j++)
            have = strcmp(keywords[j], keywords[i]) == 0;
        if (!have && ++n > IMAP_KEYWORDS_MAX) {
            g_set_error(error, IMAP_VIEW_ERROR, IMAP_VIEW_ERROR_LIMIT,
                        "a mailbox has at most %d keywords", IMAP_KEYWORDS_MAX);
            return FALSE;
        }
    }
    return TRUE;
}

static gint
str_ptr_cmp(gconstpointer a, gconstpointer b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

gboolean
imap_view_store_flags(ImapView *v, const guint *seqs, guint n, ImapFlagsOp op, guint flags,
                      const char *const *keywords, GArray *changed, GError **error)
{
    if (v->read_only)
        return read_only_error(v, error);
    if (!keywords_check(imap_view_keywords(v), keywords, error))
        return FALSE;
    flags &= IMAP_FLAG_ALL;
    g_autoptr(GArray) changes = g_array_new(FALSE, FALSE, sizeof(StoreFlagChange));
    g_autoptr(GArray) touched = g_array_new(FALSE, FALSE, sizeof(guint));
    g_autoptr(GArray) new_bits = g_array_new(FALSE, FALSE, sizeof(guint));
    g_autoptr(GArray) new_kw = g_array_new(FALSE, FALSE, sizeof(guint16));
    g_autoptr(GPtrArray) kws = g_ptr_array_new();
    for (guint i = 0; i < n; i++) {
        const ViewMsg *m = seq_msg(v, seqs[i]);
        if (!m)
            continue;
        guint bits = op == IMAP_FLAGS_ADD      ? m->flags | flags
                     : op == IMAP_FLAGS_REMOVE ? m->flags & ~flags
                                               : flags;
        /* the message's keywords after OP, sorted and distinct */
        g_ptr_array_set_size(kws, 0);
        const char *const *old = kwset_names(v, m->kwset);
        for (guint j = 0; old[j]; j++) {
            gboolean in = keywords && g_strv_contains(keywords, old[j]);
            if (op == IMAP_FLAGS_ADD || (op == IMAP_FLAGS_REMOVE && !in) ||
                (op == IMAP_FLAGS_REPLACE && in))
                g_ptr_array_add(kws, (gpointer)old[j]);
        }
        for (guint j = 0; op != IMAP_FLAGS_REMOVE && keywords && keywords[j]; j++)
            if (keywords[j][0] != '\\' && !g_strv_contains(old, keywords[j])) {
                gboolean dup = FALSE;
                for (guint x = 0; x < kws->len && !dup; x++)
                    dup = strcmp(kws->pdata[x], keywords[j]) == 0;
                if (!dup)
                    g_ptr_array_add(kws, (gpointer)keywords[j]);
            }
        g_ptr_array_sort(kws, str_ptr_cmp);
        guint16 kw = kwset_intern(v, (char **)kws->pdata, kws->len);
        old = kwset_names(v, m->kwset);   /* interning may have moved the sets array */
        if (bits == m->flags && kw == m->kwset)
            continue;
        for (gsize f = 0; f < G_N_ELEMENTS(system_flags); f++) {
            guint bit = system_flags[f].bit;
            if ((bits & bit) != (m->flags & bit)) {
                StoreFlagChange c = {.id = m->id, .name = system_flags[f].name,
                                     .set = (bits & bit) != 0};
                g_array_append_val(changes, c);
            }
        }
        const char *const *now = kwset_names(v, kw);
        for (guint j = 0; now[j]; j++)
            if (!g_strv_contains(old, now[j])) {
                StoreFlagChange c = {.id = m->id, .name = now[j], .set = TRUE};
                g_array_append_val(changes, c);
            }
        for (guint j = 0; old[j]; j++)
            if (!g_strv_contains(now, old[j])) {
                StoreFlagChange c = {.id = m->id, .name = old[j], .set = FALSE};
                g_array_append_val(changes, c);
            }
        guint seq = seqs[i];
        g_array_append_val(touched, seq);
        g_array_append_val(new_bits, bits);
        g_array_append_val(new_kw, kw);
    }
    if (!store_flags_change(v->store, v->user, v->stored, (const StoreFlagChange *)changes->data,
                            changes->len, error))
        return FALSE;
    for (guint i = 0; i < touched->len; i++) {
        guint seq = g_array_index(touched, guint, i);
        ViewMsg *m = msg_at(v, seq - 1);
        m->flags = (guint16)g_array_index(new_bits, guint, i);
        m->kwset = g_array_index(new_kw, guint16, i);
        const char *const *now = kwset_names(v, m->kwset);
        for (guint j = 0; now[j]; j++)
            keyword_list_add(v, now[j], NULL);
        if (changed)
            g_array_append_val(changed, seq);
    }
    return TRUE;
}

/* ---- expunge ---- */

#define REMOVE_BATCH 1000

/* remove_seqs - remove the messages at the positions POSITIONS (ascending) from the store and
 * the view; EXPUNGED gets their seqs, highest first */
static gboolean
remove_positions(ImapView *v, GArray *positions, GArray *expunged, GError **error)
{
    g_autoptr(GArray) ids = g_array_new(FALSE, FALSE, sizeof(StoreMsgId));
    for (guint i = 0; i < positions->len; i++)
        g_array_append_val(ids, msg_at(v, g_array_index(positions, guint, i))->id);
    for (guint off = 0; off < ids->len; off += REMOVE_BATCH) {
        guint n = MIN(REMOVE_BATCH, ids->len - off);
        if (!store_remove(v->store, v->user, v->stored, &g_array_index(ids, StoreMsgId, off), n,
                          error)) {
            /* those removed so far go from the view as well: they are gone */
            g_array_set_size(positions, off);
            break;
        }
    }
    gboolean ok = positions->len == ids->len;
    for (guint i = positions->len; i-- > 0;) {
        guint pos = g_array_index(positions, guint, i);
        remove_pos(v, pos);
        if (expunged) {
            guint seq = pos + 1;
            g_array_append_val(expunged, seq);
        }
    }
    by_id_rebuild(v);
    return ok;
}

static int
guint_cmp(const void *a, const void *b)
{
    guint x = *(const guint *)a, y = *(const guint *)b;
    return x < y ? -1 : x > y;
}

/* positions_of - the distinct positions of SEQS[0..N) (NULL: all) with every bit of MASK, sorted */
static GArray *
positions_of(const ImapView *v, const guint *seqs, guint n, guint mask)
{
    GArray *pos = g_array_new(FALSE, FALSE, sizeof(guint));
    guint count = seqs ? n : v->msgs->len;
    for (guint i = 0; i < count; i++) {
        guint seq = seqs ? seqs[i] : i + 1;
        const ViewMsg *m = seq_msg(v, seq);
        if (m && (m->flags & mask) == mask) {
            guint p = seq - 1;
            g_array_append_val(pos, p);
        }
    }
    g_array_sort(pos, (GCompareFunc)guint_cmp);
    guint w = 0;
    for (guint i = 0; i < pos->len; i++)
        if (w == 0 || g_array_index(pos, guint, w - 1) != g_array_index(pos, guint, i))
            g_array_index(pos, guint, w++) = g_array_index(pos, guint, i);
    g_array_set_size(pos, w);
    return pos;
}

gboolean
imap_view_expunge(ImapView *v, const guint *seqs, guint n, GArray *expunged, GError **error)
{
    if (v->read_only)
        return read_only_error(v, error);
    g_autoptr(GArray) pos = positions_of(v, seqs, n, IMAP_FLAG_DELETED);
    return remove_positions(v, pos, expunged, error);
}

/* ---- APPEND, COPY ---- */

struct ImapAppend {
    Store *store;
    char *user, *stored;
    StoreWriter *w;
};

/* flag_changes - set FLAGS and KEYWORDS on ID, as changes into OUT */
static void
flag_changes(const StoreMsgId *id, guint flags, const char *const *keywords, GArray *out)
{
    for (gsize f = 0; f < G_N_ELEMENTS(system_flags); f++)
        if (flags & system_flags[f].bit) {
            StoreFlagChange c = {.id = *id, .name = system_flags[f].name, .set = TRUE};
            g_array_append_val(out, c);
        }
    for (guint j = 0; keywords && keywords[j]; j++)
        if (keywords[j][0] != '\\') {
            StoreFlagChange c = {.id = *id, .name = keywords[j], .set = TRUE};
            g_array_append_val(out, c);
        }
}

ImapAppend *
imap_append_begin(Store *s, const char *user, const char *name, GError **error)
{
    g_autofree char *stored = to_store(name, error);
    if (!stored || !mailbox_must_exist(s, user, stored, NULL, error))
        return NULL;
    ImapAppend *a = g_new0(ImapAppend, 1);
    a->store = s;
    a->user = g_strdup(user);
    a->stored = g_steal_pointer(&stored);
    a->w = store_writer_begin(s, NULL);
    return a;
}

gboolean
imap_append_write(ImapAppend *a, const void *data, gsize len, GError **error)
{
    return store_writer_write(a->w, data, len, error);
}

/* mailbox_uidvalidity - the UIDVALIDITY STORED has now */
static gboolean
mailbox_uidvalidity(Store *s, const char *user, const char *stored, guint32 base, guint32 *out,
                    GError **error)
{
    guint64 epoch;
    if (!read_epoch(s, user, stored, &epoch, error))
        return FALSE;
    *out = (guint32)MIN(MAX((guint64)base + epoch, 1), (guint64)G_MAXUINT32);
    return TRUE;
}

gboolean
imap_append_commit(ImapAppend *a, guint flags, const char *const *keywords, gint64 internal_date,
                   guint32 *uidvalidity, guint32 *uid, GError **error)
{
    (void)internal_date;   /* INTERNALDATE is the id's time (view.h) */
    if (uid)
        *uid = 0;
    guint32 base;
    g_autoptr(GPtrArray) known = g_ptr_array_new_with_free_func(g_free);
    if (!mailbox_must_exist(a->store, a->user, a->stored, &base, error))
        return FALSE;
    if (keywords && keywords[0]) {
        /* the mailbox's keyword list, for the limit */
        if (!store_flags_list(a->store, a->user, a->stored, known, error))
            return FALSE;
        g_autoptr(GPtrArray) names = g_ptr_array_new();
        static const StoreMsgId zero;
        for (guint i = 0; i < known->len; i++) {
            StoreFlag *f = g_ptr_array_index(known, i);
            if (id_cmp(&f->id, &zero) == 0)
                g_ptr_array_add(names, f->name);
        }
        g_ptr_array_add(names, NULL);
        if (!keywords_check((const char *const *)names->pdata, keywords, error))
            return FALSE;
    }
    /* flags first: flags of an id not (yet) in the index are ignored by every view */
    g_autoptr(GArray) changes = g_array_new(FALSE, FALSE, sizeof(StoreFlagChange));
    flag_changes(store_writer_id(a->w), flags & IMAP_FLAG_ALL, keywords, changes);
    StoreTarget t = {.user = a->user, .mailbox = a->stored};
    if (!store_flags_change(a->store, a->user, a->stored, (StoreFlagChange *)changes->data,
                            changes->len, error) ||
        !store_writer_commit(a->w, &t, 1, error))
        return FALSE;
    if (uidvalidity && !mailbox_uidvalidity(a->store, a->user, a->stored, base, uidvalidity, error))
        return FALSE;
    return TRUE;
}

const StoreMsgId *
imap_append_id(const ImapAppend *a)
{
    return store_writer_id(a->w);
}

void
imap_append_free(ImapAppend **ap)
{
    ImapAppend *a = *ap;
    if (!a)
        return;
    store_writer_free(&a->w);
    g_free(a->user);
    g_free(a->stored);
    g_free(a);
    *ap = NULL;
}

/* copy_one - the message at POS of V into DEST under a new id, with its flags */
static gboolean
copy_one(ImapView *v, guint pos, const char *dest, GError **error)
{
    const ViewMsg *m = msg_at(v, pos);
    StoreReader *r = NULL;
    if (!store_reader_open(v->store, v->user, v->stored, &m->id, &r, error))
        return FALSE;
    StoreWriter *w = store_writer_begin(v->store, NULL);
    GBytes *chunk = NULL;
    gboolean ok;
    while ((ok = store_reader_next(r, &chunk, error)) && chunk) {
        gsize len;
        const guint8 *data = g_bytes_get_data(chunk, &len);
        ok = store_writer_write(w, data, len, error);
        g_bytes_unref(chunk);
        if (!ok)
            break;
    }
    store_reader_free(&r);
    if (ok) {
        g_autoptr(GArray) changes = g_array_new(FALSE, FALSE, sizeof(StoreFlagChange));
        flag_changes(store_writer_id(w), m->flags, kwset_names(v, m->kwset), changes);
        StoreTarget t = {.user = v->user, .mailbox = dest};
        ok = store_flags_change(v->store, v->user, dest, (StoreFlagChange *)changes->data,
                                changes->len, error) &&
             store_writer_commit(w, &t, 1, error);
    }
    store_writer_free(&w);
    return ok;
}

gboolean
imap_view_copy(ImapView *v, const guint *seqs, guint n, const char *dest, gboolean move,
               guint32 *dest_uidvalidity, GArray *expunged, GError **error)
{
    if (move && v->read_only)
        return read_only_error(v, error);
    g_autofree char *stored = to_store(dest, error);
    guint32 base;
    if (!stored || !mailbox_must_exist(v->store, v->user, stored, &base, error))
        return FALSE;
    g_autoptr(GArray) pos = positions_of(v, seqs, n, 0);
    for (guint i = 0; i < pos->len; i++) {
        GError *e = NULL;
        if (!copy_one(v, g_array_index(pos, guint, i), stored, &e)) {
            if (!g_error_matches(e, STORE_ERROR, STORE_ERROR_NOT_FOUND)) {
                g_propagate_error(error, e);
                return FALSE;
            }
            g_error_free(e);   /* expunged meanwhile: nothing to copy (RFC 9051 6.4.7 allows) */
        }
    }
    if (dest_uidvalidity &&
        !mailbox_uidvalidity(v->store, v->user, stored, base, dest_uidvalidity, error))
        return FALSE;
    return !move || remove_positions(v, pos, expunged, error);
}

/* ---- meta ---- */

gboolean
imap_view_meta_get(ImapView *v, const guint *seqs, guint n, GPtrArray *out, GError **error)
{
    g_autoptr(GArray) ids = g_array_sized_new(FALSE, FALSE, sizeof(StoreMsgId), n);
    for (guint i = 0; i < n; i++) {
        const ViewMsg *m = seq_msg(v, seqs[i]);
        StoreMsgId id = {{0}};
        if (m)
            id = m->id;
        g_array_append_val(ids, id);
    }
    return store_meta_get(v->store, v->user, v->stored, (StoreMsgId *)ids->data, n, out, error);
}

gboolean
imap_view_meta_put(ImapView *v, guint seq, GBytes *meta, GError **error)
{
    const ViewMsg *m = seq_msg(v, seq);
    if (!m || g_bytes_get_size(meta) > IMAP_META_MAX) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_INVALID, "no such message, or meta too large");
        return FALSE;
    }
    return store_meta_put(v->store, v->user, v->stored, &m->id, meta, error);
}

/* ---- mailboxes ---- */

gboolean
imap_mailboxes_list(Store *s, const char *user, GPtrArray *out, GError **error)
{
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    if (!store_mailboxes_list(s, user, names, error))
        return FALSE;
    g_ptr_array_sort(names, str_ptr_cmp);
    for (int pass = 0; pass < 2; pass++)   /* INBOX first */
        for (guint i = 0; i < names->len; i++) {
            const char *stored = g_ptr_array_index(names, i);
            if ((strcmp(stored, "inbox") == 0) != (pass == 0))
                continue;
            g_autofree char *name = imap_name_from_store(stored);
            gsize size = strlen(name) + 1;
            ImapMailboxInfo *info = g_malloc(sizeof *info + size);
            info->sent = strcmp(stored, "outbox") == 0;
            memcpy(info->name, name, size);
            g_ptr_array_add(out, info);
        }
    return TRUE;
}

static guint32
now_base(void)
{
    return (guint32)(view_clock() / G_USEC_PER_SEC);
}

gboolean
imap_mailbox_create(Store *s, const char *user, const char *name, GError **error)
{
    g_autofree char *stored = to_store(name, error);
    if (!stored)
        return FALSE;
    gboolean exists;
    guint32 base;
    if (!store_mailbox_get(s, user, stored, &exists, &base, error))
        return FALSE;
    if (exists) {
        g_set_error(error, IMAP_VIEW_ERROR, IMAP_VIEW_ERROR_EXISTS, "%s exists", name);
        return FALSE;
    }
    /* the name's seal row (if it had one) continues with a later epoch: see docs/imap.md */
    return store_mailbox_create(s, user, stored, now_base(), error);
}

gboolean
imap_mailbox_delete(Store *s, const char *user, const char *name, GError **error)
{
    g_autofree char *stored = to_store(name, error);
    if (!stored)
        return FALSE;
    if (strcmp(stored, "inbox") == 0) {
        g_set_error(error, IMAP_VIEW_ERROR, IMAP_VIEW_ERROR_INBOX, "INBOX cannot be deleted");
        return FALSE;
    }
    guint64 epoch;
    return mailbox_must_exist(s, user, stored, NULL, error) &&
           read_epoch(s, user, stored, &epoch, error) && end_epoch(s, user, stored, epoch, error) &&
           store_mailbox_drop(s, user, stored, error);
}

/* rename_one - FROM's messages into the new mailbox TO; FROM goes (unless it is INBOX) */
static gboolean
rename_one(Store *s, const char *user, const char *from, const char *to, GError **error)
{
    gboolean inbox = strcmp(from, "inbox") == 0;
    guint64 epoch;
    if (!store_mailbox_create(s, user, to, now_base(), error) ||
        !store_mailbox_move(s, user, from, to, error))
        return FALSE;
    if (inbox)
        return TRUE;   /* INBOX stays, empty; its sessions see expunges */
    return read_epoch(s, user, from, &epoch, error) && end_epoch(s, user, from, epoch, error) &&
           store_mailbox_drop(s, user, from, error);
}

gboolean
imap_mailbox_rename(Store *s, const char *user, const char *from, const char *to, GError **error)
{
    g_autofree char *sfrom = to_store(from, error);
    if (!sfrom)
        return FALSE;
    g_autofree char *sto = to_store(to, error);
    if (!sto)
        return FALSE;
    if (!mailbox_must_exist(s, user, sfrom, NULL, error))
        return FALSE;
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    if (!store_mailboxes_list(s, user, names, error))
        return FALSE;
    if (g_ptr_array_find_with_equal_func(names, sto, g_str_equal, NULL)) {
        g_set_error(error, IMAP_VIEW_ERROR, IMAP_VIEW_ERROR_EXISTS, "%s exists", to);
        return FALSE;
    }
    gboolean inbox = strcmp(sfrom, "inbox") == 0;
    /* inferiors first checked: each new name must be valid and free */
    g_autoptr(GPtrArray) pairs = g_ptr_array_new_with_free_func(g_free);
    gsize flen = strlen(sfrom);
    for (guint i = 0; !inbox && i < names->len; i++) {
        const char *n = g_ptr_array_index(names, i);
        if (strncmp(n, sfrom, flen) == 0 && n[flen] == '/') {
            char *dest = g_strconcat(sto, n + flen, NULL);
            if (!name_valid(dest) ||
                g_ptr_array_find_with_equal_func(names, dest, g_str_equal, NULL)) {
                g_set_error(error, IMAP_VIEW_ERROR, IMAP_VIEW_ERROR_EXISTS,
                            "cannot rename %s to %s", n, dest);
                g_free(dest);
                return FALSE;
            }
            g_ptr_array_add(pairs, g_strdup(n));
            g_ptr_array_add(pairs, dest);
        }
    }
    if (!rename_one(s, user, sfrom, sto, error))
        return FALSE;
    for (guint i = 0; i < pairs->len; i += 2)
        if (!rename_one(s, user, pairs->pdata[i], pairs->pdata[i + 1], error))
            return FALSE;
    return TRUE;
}

gboolean
imap_mailbox_status(Store *s, const char *user, const char *name, int settle_ms, ImapStatus *out,
                    GError **error)
{
    memset(out, 0, sizeof *out);
    ImapView *v = imap_view_open(s, user, name, TRUE, settle_ms, error);
    if (!v)
        return FALSE;
    out->messages = v->msgs->len;
    out->uidnext = v->uidnext;
    out->uidvalidity = imap_view_uidvalidity(v);
    for (guint i = 0; i < v->msgs->len; i++) {
        const ViewMsg *m = msg_at(v, i);
        out->size += m->size;
        out->unseen += !(m->flags & IMAP_FLAG_SEEN);
        out->deleted += (m->flags & IMAP_FLAG_DELETED) != 0;
    }
    imap_view_free(&v);
    return TRUE;
}
