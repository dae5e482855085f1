/*
 * store.c - the backend-independent half of the mail store: name rules, message ids, and the
 * dispatch of every operation to the backend's table after its arguments are checked.
 */
#include "store/store.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include <openssl/rand.h>

#include "util/log.h"

G_DEFINE_QUARK(cassmail-store-error-quark, store_error)

gboolean
store_error_unanswered(const GError *e)
{
    return e && !g_error_matches(e, STORE_ERROR, STORE_ERROR_NOT_FOUND) &&
           !g_error_matches(e, STORE_ERROR, STORE_ERROR_INVALID);
}

/* store_name_valid - see store.h */
gboolean
store_name_valid(const char *name)
{
    gsize n = name ? strlen(name) : 0;
    if (n == 0 || n > 64)
        return FALSE;
    for (gsize i = 0; i < n; i++) {
        char c = name[i];
        if (!(g_ascii_islower(c) || g_ascii_isdigit(c) || c == '.' || c == '_' || c == '+' || c == '-'))
            return FALSE;
    }
    return TRUE;
}

/* store_mailbox_name_valid - see store.h */
gboolean
store_mailbox_name_valid(const char *name)
{
    gsize n = name ? strlen(name) : 0;
    if (n == 0 || n > 200)
        return FALSE;
    for (gsize i = 0; i < n; i++)
        if (name[i] < 0x20 || name[i] > 0x7e)
            return FALSE;
    return TRUE;
}

const char *const store_system_flags[] = {"\\Seen", "\\Answered", "\\Flagged", "\\Deleted",
                                          "\\Draft", NULL};

/* check_names - INVALID error unless USER (and MAILBOX when given) are valid names */
static gboolean
check_names(const char *user, const char *mailbox, GError **error)
{
    if (!store_name_valid(user)) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_INVALID, "invalid user name \"%s\"", user ? user : "");
        return FALSE;
    }
    if (mailbox && !store_mailbox_name_valid(mailbox)) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_INVALID, "invalid mailbox name \"%s\"", mailbox);
        return FALSE;
    }
    return TRUE;
}

void
store_msgid_to_text(const StoreMsgId *id, char out[STORE_MSGID_TEXT_LEN])
{
    uuid_unparse_lower(id->bytes, out);
}

gboolean
store_msgid_from_text(const char *text, StoreMsgId *id)
{
    return text && strlen(text) == 36 && uuid_parse(text, id->bytes) == 0;
}

/* Gregorian reform (1582-10-15) to the Unix epoch, in 100-ns intervals (RFC 4122 4.1.4). */
#define MSGID_EPOCH_OFFSET G_GUINT64_CONSTANT(0x01B21DD213814000)
#define MSGID_TIME_MAX G_GUINT64_CONSTANT(0x0FFFFFFFFFFFFFFF)   /* 60 bits */

/* The minting state of this process. libuuid's uuid_generate_time would put the machine's MAC
 * address into every id (and so into "queued as" and UIDL); the node here is random instead. */
static struct {
    pid_t pid;          /* the process that drew node and clock_seq (0: not yet) */
    guint64 last;       /* the last timestamp handed out */
    guint8 node[6];
    guint16 clock_seq;
} msgid_state;
G_LOCK_DEFINE_STATIC(msgid_state);

/* msgid_random - LEN random octets into BUF: the kernel's getrandom(2), else OpenSSL's RAND; when
 * both fail (neither should), the process id and both clocks, which still tell processes apart */
static void
msgid_random(guint8 *buf, gsize len)
{
    gsize got = 0;
    while (got < len) {
        ssize_t n = getrandom(buf + got, len - got, 0);
        if (n > 0)
            got += (gsize)n;
        else if (n < 0 && errno != EINTR)
            break;
    }
    if (got == len || RAND_bytes(buf, (int)len) == 1)
        return;
    log_warn("store: no random octets for message ids; using the process id and the clocks");
    guint64 mix[3] = {(guint64)getpid(), (guint64)g_get_real_time(), (guint64)g_get_monotonic_time()};
    guint32 h = 2166136261u;   /* FNV-1a over MIX, one output octet per round */
    for (gsize i = 0; i < len; i++) {
        for (gsize j = 0; j < sizeof mix; j++)
            h = (h ^ ((const guint8 *)mix)[j]) * 16777619u;
        buf[i] = (guint8)(h >> 24);
        h ^= (guint32)i;
    }
}

/* msgid_clock - the real-time clock in 100-ns intervals since 1582-10-15 */
static guint64
msgid_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (guint64)ts.tv_sec * 10000000u + (guint64)ts.tv_nsec / 100u + MSGID_EPOCH_OFFSET;
}

void
store_msgid_new_at(StoreMsgId *id, guint64 now)
{
    G_LOCK(msgid_state);
    pid_t pid = getpid();
    if (msgid_state.pid != pid) {
        /* first id of this process, or the first after fork(): a node and clock sequence of
         * its own; the inherited last timestamp stays, so order carries on across the fork */
        guint8 r[8];
        msgid_random(r, sizeof r);
        memcpy(msgid_state.node, r, 6);
        msgid_state.node[0] |= 0x01;   /* RFC 4122 4.5: the multicast bit marks a random node */
        msgid_state.clock_seq = (guint16)(((guint16)r[6] << 8 | r[7]) & 0x3fff);
        msgid_state.pid = pid;
    }
    /* Strictly ascending in this process, whatever the clock does: TimeUUIDType compares the
     * timestamp first, so a later id must never carry an earlier or equal one. */
    guint64 t = now > msgid_state.last ? now : msgid_state.last + 1;
    t &= MSGID_TIME_MAX;
    msgid_state.last = t;
    guint8 *u = id->bytes;
    u[0] = (guint8)(t >> 24);                       /* time_low */
    u[1] = (guint8)(t >> 16);
    u[2] = (guint8)(t >> 8);
    u[3] = (guint8)t;
    u[4] = (guint8)(t >> 40);                       /* time_mid */
    u[5] = (guint8)(t >> 32);
    u[6] = (guint8)(0x10 | ((t >> 56) & 0x0f));     /* version 1, time_hi */
    u[7] = (guint8)(t >> 48);
    u[8] = (guint8)(0x80 | (msgid_state.clock_seq >> 8));   /* variant 10, clock_seq_hi */
    u[9] = (guint8)msgid_state.clock_seq;
    memcpy(u + 10, msgid_state.node, 6);
    G_UNLOCK(msgid_state);
}

void
store_msgid_new(StoreMsgId *id)
{
    store_msgid_new_at(id, msgid_clock());
}

guint64
store_msgid_time(const StoreMsgId *id)
{
    const guint8 *u = id->bytes;
    return ((guint64)(u[6] & 0x0f) << 56) | ((guint64)u[7] << 48) | ((guint64)u[4] << 40) |
           ((guint64)u[5] << 32) | ((guint64)u[0] << 24) | ((guint64)u[1] << 16) |
           ((guint64)u[2] << 8) | (guint64)u[3];
}

int
store_msgid_compare(const StoreMsgId *a, const StoreMsgId *b)
{
    guint64 ta = store_msgid_time(a), tb = store_msgid_time(b);
    if (ta != tb)
        return ta < tb ? -1 : 1;
    for (int i = 0; i < 16; i++) {
        int x = a->bytes[i] < 128 ? a->bytes[i] : a->bytes[i] - 256;
        int y = b->bytes[i] < 128 ? b->bytes[i] : b->bytes[i] - 256;
        if (x != y)
            return x < y ? -1 : 1;
    }
    return 0;
}

void
store_free(Store **s)
{
    if (s && *s) {
        (*s)->ops->destroy(*s);
        *s = NULL;
    }
}

const StoreCounters *
store_counters(Store *s)
{
    return &s->counters;
}

gboolean
store_user_exists(Store *s, const char *user, gboolean *exists, GError **error)
{
    *exists = FALSE;
    if (!store_name_valid(user))
        return TRUE;   /* a name we never store simply does not exist */
    return s->ops->user_exists(s, user, exists, error);
}

gboolean
store_user_add(Store *s, const char *user, GError **error)
{
    return check_names(user, NULL, error) && s->ops->user_add(s, user, error);
}

gboolean
store_user_del(Store *s, const char *user, GError **error)
{
    return check_names(user, NULL, error) && s->ops->user_del(s, user, error);
}

gboolean
store_users_list(Store *s, GPtrArray *out, GError **error)
{
    return s->ops->users_list(s, out, error);
}

gboolean
store_mailbox_add(Store *s, const char *user, const char *mailbox, GError **error)
{
    return check_names(user, mailbox, error) && s->ops->mailbox_add(s, user, mailbox, error);
}

gboolean
store_mailboxes_list(Store *s, const char *user, GPtrArray *out, GError **error)
{
    return check_names(user, NULL, error) && s->ops->mailboxes_list(s, user, out, error);
}

gboolean
store_mailbox_exists(Store *s, const char *user, const char *mailbox, gboolean *exists,
                     GError **error)
{
    *exists = FALSE;
    if (!store_name_valid(user) || !store_mailbox_name_valid(mailbox))
        return TRUE;
    g_autoptr(GPtrArray) boxes = g_ptr_array_new_with_free_func(g_free);
    if (!s->ops->mailboxes_list(s, user, boxes, error))
        return FALSE;
    for (guint i = 0; i < boxes->len; i++)
        if (strcmp(g_ptr_array_index(boxes, i), mailbox) == 0)
            *exists = TRUE;
    return TRUE;
}

/* check_targets - INVALID error unless there is a target and every name in it is valid */
static gboolean
check_targets(const StoreTarget *targets, guint n_targets, GError **error)
{
    if (n_targets == 0) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_INVALID, "a message needs at least one mailbox");
        return FALSE;
    }
    for (guint i = 0; i < n_targets; i++)
        if (!check_names(targets[i].user, targets[i].mailbox, error))
            return FALSE;
    return TRUE;
}

/* check_msgid - INVALID error unless ID is a version-1 TimeUUID (the column name and timestamp
 * of everything a delivery writes come from it) */
static gboolean
check_msgid(const StoreMsgId *id, GError **error)
{
    if (!id || id->bytes[6] >> 4 != 1 || (id->bytes[8] & 0xc0) != 0x80) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_INVALID, "a message id must be a version-1 TimeUUID");
        return FALSE;
    }
    return TRUE;
}

StoreWriter *
store_writer_begin(Store *s, const StoreMsgId *id)
{
    StoreMsgId fresh;
    if (!id) {
        store_msgid_new(&fresh);
        id = &fresh;
    }
    StoreWriter *w = s->ops->writer_begin(s, id);
    w->store = s;
    w->id = *id;
    return w;
}

const StoreMsgId *
store_writer_id(const StoreWriter *w)
{
    return &w->id;
}

/* writer_failed - ERROR from W's first failure (FALSE) */
static gboolean
writer_failed(StoreWriter *w, GError **error)
{
    if (error)
        *error = g_error_copy(w->error);
    return FALSE;
}

/* writer_ready - whether W may take more: neither failed nor committed (ERROR says which) */
static gboolean
writer_ready(StoreWriter *w, GError **error)
{
    if (w->error)
        return writer_failed(w, error);
    if (w->committed) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_FAILED, "message already committed");
        return FALSE;
    }
    return TRUE;
}

gboolean
store_writer_write(StoreWriter *w, const void *data, gsize len, GError **error)
{
    if (!writer_ready(w, error))
        return FALSE;
    if (len == 0)
        return TRUE;
    if (!w->store->ops->writer_write(w, data, len, &w->error))
        return writer_failed(w, error);
    w->size += len;
    return TRUE;
}

gboolean
store_writer_commit(StoreWriter *w, const StoreTarget *targets, guint n_targets, GError **error)
{
    if (!writer_ready(w, error))
        return FALSE;
    if (!check_targets(targets, n_targets, error) || !check_msgid(&w->id, error))
        return FALSE;
    if (!w->store->ops->writer_commit(w, targets, n_targets, &w->error))
        return writer_failed(w, error);
    w->committed = TRUE;
    return TRUE;
}

void
store_writer_free(StoreWriter **wp)
{
    StoreWriter *w = *wp;
    if (!w)
        return;
    g_clear_error(&w->error);
    w->store->ops->writer_free(w);   /* frees W itself */
    *wp = NULL;
}

gboolean
store_deliver(Store *s, const StoreMsgId *id, const StoreTarget *targets, guint n_targets,
              const guint8 *msg, gsize len, GError **error)
{
    if (!check_targets(targets, n_targets, error) || !check_msgid(id, error))
        return FALSE;
    StoreWriter *w = store_writer_begin(s, id);
    gboolean ok = store_writer_write(w, msg, len, error) &&
                  store_writer_commit(w, targets, n_targets, error);
    store_writer_free(&w);
    return ok;
}

gboolean
store_reader_open(Store *s, const char *user, const char *mailbox, const StoreMsgId *id,
                  StoreReader **reader, GError **error)
{
    *reader = NULL;
    if (!check_names(user, mailbox, error) || !s->ops->reader_open(s, user, mailbox, id, reader, error))
        return FALSE;
    (*reader)->store = s;
    return TRUE;
}

guint64
store_reader_size(const StoreReader *r)
{
    return r->size;
}

gboolean
store_reader_next(StoreReader *r, GBytes **chunk, GError **error)
{
    *chunk = NULL;
    return r->store->ops->reader_next(r, chunk, error);
}

void
store_reader_free(StoreReader **rp)
{
    if (rp && *rp) {
        (*rp)->store->ops->reader_free(*rp);
        *rp = NULL;
    }
}

/* the type of StoreOps' index_page and index_page_quorum */
typedef gboolean (*IndexPageOp)(Store *s, const char *user, const char *mailbox,
                                const StoreMsgId *after, guint max, GArray *out, GError **error);

/* index_page - what store_index_page and store_index_page_quorum share: PAGE is the one of the
 * two ops */
static gboolean
index_page(Store *s, IndexPageOp page, const char *user, const char *mailbox,
           const StoreMsgId *after, guint max, GArray *out, GError **error)
{
    return check_names(user, mailbox, error) &&
           page(s, user, mailbox, after, max ? max : 1, out, error);
}

gboolean
store_index_page(Store *s, const char *user, const char *mailbox, const StoreMsgId *after,
                 guint max, GArray *out, GError **error)
{
    return index_page(s, s->ops->index_page, user, mailbox, after, max, out, error);
}

gboolean
store_fetch(Store *s, const char *user, const char *mailbox, const StoreMsgId *id, GBytes **msg,
            GError **error)
{
    StoreReader *r = NULL;
    *msg = NULL;
    if (!store_reader_open(s, user, mailbox, id, &r, error))
        return FALSE;
    GByteArray *all = g_byte_array_sized_new((guint)MIN(r->size, (guint64)G_MAXUINT));
    GBytes *chunk = NULL;
    gboolean ok;
    while ((ok = store_reader_next(r, &chunk, error)) && chunk) {
        gsize len;
        const guint8 *data = g_bytes_get_data(chunk, &len);
        g_byte_array_append(all, data, (guint)len);
        g_bytes_unref(chunk);
    }
    store_reader_free(&r);
    if (ok)
        *msg = g_byte_array_free_to_bytes(all);
    else
        g_byte_array_unref(all);
    return ok;
}

gboolean
store_remove(Store *s, const char *user, const char *mailbox, const StoreMsgId *ids, guint n,
             GError **error)
{
    if (n == 0)
        return check_names(user, mailbox, error);
    return check_names(user, mailbox, error) && s->ops->remove(s, user, mailbox, ids, n, error);
}

gboolean
store_password_set(Store *s, const char *user, const char *hash, GError **error)
{
    return check_names(user, NULL, error) && s->ops->password_set(s, user, hash, error);
}

gboolean
store_password_get(Store *s, const char *user, char **hash, GError **error)
{
    *hash = NULL;
    if (!store_name_valid(user)) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_NOT_FOUND, "no such user");
        return FALSE;
    }
    return s->ops->password_get(s, user, hash, error);
}

/* ---- IMAP ---- */

void
store_column_free(gpointer p)
{
    StoreColumn *c = p;
    if (!c)
        return;
    g_bytes_unref(c->name);
    g_bytes_unref(c->value);
    g_free(c);
}

StoreFlag *
store_flag_new(const guint8 *column, gsize len)
{
    const gsize id_len = sizeof(StoreMsgId), name_len = len - id_len;
    StoreFlag *f = g_malloc(sizeof *f + name_len + 1);
    memcpy(f->id.bytes, column, id_len);
    memcpy(f->name, column + id_len, name_len);
    f->name[name_len] = '\0';
    return f;
}

gboolean
store_mailbox_get(Store *s, const char *user, const char *mailbox, gboolean *exists, guint32 *base,
                  GError **error)
{
    *exists = FALSE;
    *base = 0;
    if (!store_name_valid(user) || !store_mailbox_name_valid(mailbox))
        return TRUE;
    return s->ops->mailbox_get(s, user, mailbox, exists, base, error);
}

gboolean
store_mailbox_create(Store *s, const char *user, const char *mailbox, guint32 base, GError **error)
{
    return check_names(user, mailbox, error) && s->ops->mailbox_create(s, user, mailbox, base, error);
}

gboolean
store_mailbox_drop(Store *s, const char *user, const char *mailbox, GError **error)
{
    return check_names(user, mailbox, error) && s->ops->mailbox_drop(s, user, mailbox, error);
}

gboolean
store_mailbox_move(Store *s, const char *user, const char *from, const char *to, GError **error)
{
    return check_names(user, from, error) && check_names(user, to, error) &&
           s->ops->mailbox_move(s, user, from, to, error);
}

gboolean
store_index_page_quorum(Store *s, const char *user, const char *mailbox, const StoreMsgId *after,
                        guint max, GArray *out, GError **error)
{
    return index_page(s, s->ops->index_page_quorum, user, mailbox, after, max, out, error);
}

gboolean
store_seals_slice(Store *s, const char *user, const char *mailbox, const void *start,
                  gsize start_len, const void *finish, gsize finish_len, gboolean reversed,
                  guint max, GPtrArray *out, GError **error)
{
    return check_names(user, mailbox, error) &&
           s->ops->seals_slice(s, user, mailbox, start, start_len, finish, finish_len, reversed,
                               max ? max : 1, out, error);
}

gboolean
store_seal_put(Store *s, const char *user, const char *mailbox, const void *name, gsize name_len,
               GBytes *value, gint64 timestamp, GError **error)
{
    return check_names(user, mailbox, error) &&
           s->ops->seal_put(s, user, mailbox, name, name_len, value, timestamp, error);
}

gboolean
store_flags_list(Store *s, const char *user, const char *mailbox, GPtrArray *out, GError **error)
{
    return check_names(user, mailbox, error) && s->ops->flags_list(s, user, mailbox, out, error);
}

gboolean
store_flags_change(Store *s, const char *user, const char *mailbox, const StoreFlagChange *changes,
                   guint n, GError **error)
{
    if (!check_names(user, mailbox, error))
        return FALSE;
    return n == 0 || s->ops->flags_change(s, user, mailbox, changes, n, error);
}

gboolean
store_meta_get(Store *s, const char *user, const char *mailbox, const StoreMsgId *ids, guint n,
               GPtrArray *out, GError **error)
{
    if (!check_names(user, mailbox, error))
        return FALSE;
    return n == 0 || s->ops->meta_get(s, user, mailbox, ids, n, out, error);
}

gboolean
store_meta_put(Store *s, const char *user, const char *mailbox, const StoreMsgId *id, GBytes *meta,
               GError **error)
{
    return check_names(user, mailbox, error) && s->ops->meta_put(s, user, mailbox, id, meta, error);
}
