/*
 * store_cass.c - the mail store on Cassandra 0.7.0 (the product backend): the one place that
 * knows the schema and the layout of a stored message.
 *
 * Delivery streams, then commits. A message is written under one version-1 TimeUUID, minted by
 * the caller (store_msgid_new; the SMTP core has written it into its Received: field already),
 * whose time is also the timestamp of every column it writes, so a retried write is the same
 * write and can never duplicate anything:
 *   1. while the text arrives: up to inline_max octets are only buffered; past that (or when the
 *      message starts with a NUL, see "References" below) the body goes to Bodies, row = the
 *      TimeUUID, one batch_mutate per full part of [store] part_size octets (default
 *      STORE_PART_SIZE: a frame of about 1 MiB, far inside the 15 MB one), so the writer
 *      holds at most one part (or inline_max octets, when that is larger).
 *   2. at the end: the last part, then ONE batch_mutate with every target's Mailboxes column (the
 *      inline message, or a 40-octet reference to the body) and its MailboxIndex entry. Only
 *      then is the message in any mailbox; a session or node that dies before leaves only
 *      unreferenced parts, which store_gc reclaims. A commit that fails is withdrawn (its
 *      columns deleted again), since Cassandra may have applied part of the batch and the client
 *      will resend the message under a new id.
 * Reads for POP3 listings touch MailboxIndex only; a body is read in slices of about
 * READ_AHEAD_OCTETS, handed out one part at a time. The reader needs no part size: it reads
 * parts 0, 1, 2 … whatever size they were written with.
 */
#include "store/store.h"

#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>

#include <uuid/uuid.h>

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
    gsize inline_max;
    gsize part_size;
    int gc_min_age_s;
    struct WriterBuffer *spare;   /* a writer's buffer, kept for the next message (CassWriter) */
} CassStore;

#define CF_USERS "Users"
#define CF_MAILBOXES "Mailboxes"
#define CF_INDEX "MailboxIndex"
#define CF_CREDENTIALS "Credentials"
#define CF_BODIES "Bodies"
#define CF_SEALS "ImapSeals"
#define CF_FLAGS "Flags"
#define CF_META "MessageMeta"
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
 * OCTETS_CF_TUNING is for the column families that hold message octets (Mailboxes, Bodies: with
 * bodies in parts most octets go to Bodies, and Mailboxes holds small messages and references,
 * so mostly one of the two memtables is large at a time). 0.7's defaults
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
    {CF_BODIES, "LongType", 86400, "TimeUUID -> part number (8 octets, big-endian) -> part",
     OCTETS_CF_TUNING},
    /* IMAP (docs/imap.md). ImapSeals: the UID seals of a mailbox, immutable columns that are never
     * deleted (a dropped mailbox's row stays, so a re-created one continues with a later epoch);
     * BytesType, since names are epoch · seal · digest, compared as octets; gc_grace is moot
     * (server default). Written and read at QUORUM whatever [store] says. */
    {CF_SEALS, "BytesType", 0, "user:mailbox -> epoch.seal.digest -> seal (IMAP UIDs)",
     SMALL_CF_TUNING},
    /* Flags: one empty column per set flag, named TimeUUID · flag name (BytesType: the row is
     * read whole, its order does not matter), so concurrent changes of different flags merge;
     * names starting with 16 zero octets list the mailbox's keywords, which store_remove needs
     * because batch_mutate's Deletion takes names, not a slice. gc_grace one day, as mail. */
    {CF_FLAGS, "BytesType", 86400, "user:mailbox -> TimeUUID.flag -> empty (IMAP flags)",
     SMALL_CF_TUNING},
    /* MessageMeta: the IMAP core's ENVELOPE/BODYSTRUCTURE cache per message, in the mailbox's row
     * (TimeUUIDType, like Mailboxes) so that FETCH of a thousand messages is one get_slice by
     * names, and removal deletes it in the same row mutation as the message. */
    {CF_META, "TimeUUIDType", 86400, "user:mailbox -> TimeUUID -> FETCH meta (IMAP)",
     SMALL_CF_TUNING},
};

/* Bodies.
 *
 * Row key: the message's TimeUUID (16 octets) — one body per delivery, however many mailboxes
 * refer to it. Columns (LongType: 8 octets, big-endian, signed): part 0, 1, 2 … each
 * part_size octets but the last; and a marker column -1 (eight 0xff octets), empty, that
 * sorts before every part and is written with part 0. A range scan asking for one column per row
 * (store_gc) then reads the marker, not a mebioctet of the first part.
 *
 * Part size, measured on one node of this machine kind (2 cores shared with other work, so noisy):
 * build/cassmail-load, 4 processes, messages of 200 KB-2 MB from local senders (inbox + outbox),
 * 25 s per setting, two rounds in opposite orders, default 1 GB heap, ParallelGC, batch commit
 * log. MB/s of mail stored; Cassandra CPU-s and octets written to disk per MB of mail:
 *     part size        MB/s (round 1, 2)   CPU-s/MB        disk MB/MB
 *     64 KiB           57.3, 59.9          0.020, 0.018    5.3, 5.7
 *     100 KB           65.1, 46.0          0.023, 0.021    5.8, 7.5
 *     256 KiB          67.1, 89.0          0.021, 0.012    4.9, 4.2
 *     1 MiB            87.7, 98.3          0.014, 0.011    4.7, 3.7
 *     paper (inline)   55.2, 49.5          0.023, 0.023    9.8, 8.0
 * (round 1's CPU and disk figures are per MB of the last 20 of 25 s: 25 % high.) Small parts cost a
 * round trip and a commit log sync each; 1 MiB was the fastest and cheapest in both rounds. It is
 * one frame per part (a fifteenth of the frame), one part of memory in a writer and about two in
 * a reader (READ_AHEAD_OCTETS), and 50 writes for a 50 MiB message. On a node run with G1 a
 * 1 MiB value is a humongous allocation on a 1 GB heap (its regions are 1 MiB, and half a region
 * or more is humongous); tools/cluster runs ParallelGC, which has no such class, and [store]
 * part_size can be lowered for a G1 node.
 *
 * References. A Mailboxes column either holds the message itself (inline: the paper's layout, and
 * every value an older CassMail wrote) or a reference:
 *     octets 0-3   00 'C' 'M' 'B'           (REF_MAGIC)
 *     octet  4     1                        (REF_VERSION)
 *     octets 5-7   0
 *     octets 8-15  message size, big-endian
 *     octets 16-23 number of parts, big-endian
 *     octets 24-39 the Bodies row key (the TimeUUID)
 * No inline value can start with a NUL octet: every message our SMTP server stores starts with its
 * Received: line (and it refuses any text with a NUL in it), and the writer itself never keeps a
 * message inline whose first octet is NUL, whoever calls it (store_deliver from a tool or a test):
 * such a message always goes to Bodies. So a value is a reference exactly when it is REF_LEN
 * octets starting with REF_MAGIC, and an old keyspace's values read as they always did.
 * MailboxIndex keeps the size (8 octets) for both, so STAT, LIST and UIDL never look further. */
#define REF_MAGIC "\0CMB"
#define REF_MAGIC_LEN 4
#define REF_VERSION 1
#define REF_LEN 40
#define READ_AHEAD_OCTETS (2 * 1024 * 1024)
static const guint8 body_marker[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

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
    s->base.counters.max_frame = st->max_frame;
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

/* write_batch - send B at CONSISTENCY and free it; the common tail of the writes, as done() */
static gboolean
write_batch(CassStore *s, CassBatch **bp, int consistency, GError **error)
{
    GError *e = NULL;
    gboolean ok = cass_batch_execute(s->client, *bp, consistency, CASS_RETRY_DEFAULT, &e);
    cass_batch_free(bp);
    return done(s, ok, e, error);
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
    struct timeval tv;
    uuid_time(id->bytes, &tv);
    return (gint64)tv.tv_sec * G_USEC_PER_SEC + tv.tv_usec;
}

/* remove_row - delete row KEY of CF as of TS at the write consistency */
static gboolean
remove_row(CassStore *s, const char *cf, const void *key, gsize key_len, gint64 ts, GError **error)
{
    return cass_remove_row(s->client, cf, key, key_len, ts, s->write_consistency,
                           CASS_RETRY_DEFAULT, error);
}

/* remove_mailbox_rows - the rows of mailbox KEY ("user:mailbox") as of TS, the messages' first */
static gboolean
remove_mailbox_rows(CassStore *s, const char *key, gint64 ts, GError **error)
{
    return remove_row(s, CF_MAILBOXES, key, strlen(key), ts, error) &&
           remove_row(s, CF_INDEX, key, strlen(key), ts, error) &&
           remove_row(s, CF_FLAGS, key, strlen(key), ts, error) &&
           remove_row(s, CF_META, key, strlen(key), ts, error);
}

/* row_key - "user:mailbox" */
static char *
row_key(const char *user, const char *mailbox)
{
    return g_strconcat(user, ":", mailbox, NULL);
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
                                 s->read_consistency, CASS_RETRY_DEFAULT, cols, &e);
    *exists = ok && cols->len > 0;
    /* "No such user" at ONE may be one stale replica talking: a node that crashed loses the
     * writes of its last commit log sync period and answers without them until repaired. Since
     * the answer becomes a permanent 550, it is confirmed at QUORUM first (within a second);
     * when QUORUM cannot be had, the first answer stands. */
    if (ok && !*exists && s->read_consistency == CASS_ONE) {
        GError *e2 = NULL;
        if (cass_get_slice(s->client, CF_USERS, user, strlen(user), NULL, 0, NULL, 0, FALSE, 1,
                           CASS_QUORUM, CONFIRM_BUDGET_MS, cols, &e2))
            *exists = cols->len > 0;
        else
            g_error_free(e2);
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
    return write_batch(s, &b, s->write_consistency, error);
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
    return write_batch(s, &b, s->write_consistency, error);
}

static gboolean
cs_mailboxes_list(Store *base, const char *user, GPtrArray *out, GError **error)
{
    CassStore *s = (CassStore *)base;
    g_autoptr(GPtrArray) cols = g_ptr_array_new_with_free_func(cass_column_free);
    GError *e = NULL;
    gboolean ok = cass_get_slice(s->client, CF_USERS, user, strlen(user), NULL, 0, NULL, 0, FALSE,
                                 10000, s->read_consistency, CASS_RETRY_DEFAULT, cols, &e);
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
        ok = remove_mailbox_rows(s, key, ts, &e);
    }
    ok = ok && remove_row(s, CF_CREDENTIALS, user, strlen(user), ts, &e);
    ok = ok && remove_row(s, CF_USERS, user, strlen(user), ts, &e);
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
        if (!cass_range_keys(s->client, CF_USERS, sdata, slen, page, s->read_consistency,
                             CASS_RETRY_DEFAULT, keys, &seen, &e))
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

/* put_be64 - V as 8 octets, big-endian */
static void
put_be64(guint8 *out, guint64 v)
{
    v = GUINT64_TO_BE(v);
    memcpy(out, &v, sizeof v);
}

/* get_be64 - 8 octets, big-endian */
static guint64
get_be64(const guint8 *in)
{
    guint64 v;
    memcpy(&v, in, sizeof v);
    return GUINT64_FROM_BE(v);
}

/* A message being written (see the file's header).
 *
 * Its octets are copied once, from the caller (the SMTP session: straight from its connection's
 * read buffer) into the writer's buffer, and sent from there: cass_batch_execute writes the
 * frame around them without copying them again (src/cass/cass.h). The buffer holds the inline
 * message or the part being filled. It is mapped once, untouched, at the larger of part_size and
 * inline_max (at most a frame) and kept by the store (spare) for the next message, so a session
 * reuses it; its pages are populated ahead of the octets in steps of POPULATE_STEP (one madvise
 * instead of a page fault per 4 KiB), as far as messages reach. A forked session of the listener
 * often lives for one message: page faults of buffers grown and freed for each message were a
 * large share of smtpd's CPU. (Transparent huge pages were tried: zeroing 2 MiB for every
 * message cost more than the faults they saved; docs/tuning.md.) */
typedef struct WriterBuffer {
    guint8 *data;           /* writer_capacity octets, page-aligned (mmap) */
    gsize populated;        /* octets from DATA whose pages are in place */
} WriterBuffer;

typedef struct {
    StoreWriter base;
    WriterBuffer *wb;       /* the inline message, or the part being filled */
    guint8 *buf;            /* wb->data */
    gsize fill;             /* octets in BUF */
    guint64 parts;          /* parts written to Bodies */
    gint64 ts;              /* the timestamp of every column: the TimeUUID's time */
    gint64 started;         /* monotonic µs at begin */
    gboolean in_parts;      /* the body goes to Bodies */
    gboolean commit_tried;  /* mailbox columns may exist: the parts are left to store_gc */
} CassWriter;

#define POPULATE_STEP (256u * 1024)

/* writer_capacity - the octets a writer's buffer holds: a part, or an inline message (which
 * must fit one Thrift frame with its mailbox row: a larger one could never be committed) */
static gsize
writer_capacity(const CassStore *s)
{
    return MAX(s->part_size, MIN(s->inline_max, (gsize)CASS_FRAME_MAX));
}

/* writer_buffer_new - an untouched buffer of writer_capacity octets */
static WriterBuffer *
writer_buffer_new(const CassStore *s)
{
    WriterBuffer *wb = g_new0(WriterBuffer, 1);
    void *p = mmap(NULL, writer_capacity(s), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    if (p == MAP_FAILED)
        g_error("store: cannot map a writer buffer of %zu octets", writer_capacity(s));
    wb->data = p;
    return wb;
}

static void
writer_buffer_free(const CassStore *s, WriterBuffer **wbp)
{
    WriterBuffer *wb = *wbp;
    if (!wb)
        return;
    munmap(wb->data, writer_capacity(s));
    g_free(wb);
    *wbp = NULL;
}

/* writer_buffer_reach - W's buffer is about to be written up to END: populate its pages ahead,
 * a step at a time (a kernel without MADV_POPULATE_WRITE refuses it, and the pages fault in one
 * by one as they would anyway) */
static void
writer_buffer_reach(const CassStore *s, CassWriter *w, gsize end)
{
    WriterBuffer *wb = w->wb;
    if (end <= wb->populated)
        return;
    gsize to = MIN((end + POPULATE_STEP - 1) / POPULATE_STEP * POPULATE_STEP, writer_capacity(s));
#ifdef MADV_POPULATE_WRITE
    (void)madvise(wb->data + wb->populated, to - wb->populated, MADV_POPULATE_WRITE);
#endif
    wb->populated = to;
}

static StoreWriter *
cw_begin(Store *base, const StoreMsgId *id)
{
    CassStore *s = (CassStore *)base;
    CassWriter *w = g_new0(CassWriter, 1);
    w->wb = g_steal_pointer(&s->spare);
    if (!w->wb)
        w->wb = writer_buffer_new(s);
    w->buf = w->wb->data;
    w->ts = uuid_timestamp_us(id);
    w->started = g_get_monotonic_time();
    return &w->base;
}

/* cw_put_part - part number W->parts (LEN octets at DATA) into Bodies: one batch_mutate, the
 * marker column with part 0; the frame is sent from DATA itself */
static gboolean
cw_put_part(CassStore *s, CassWriter *w, const guint8 *data, gsize len, GError **error)
{
    guint8 name[8];
    put_be64(name, w->parts);
    CassBatch *b = cass_batch_new();
    g_autoptr(GBytes) value = g_bytes_new_static(data, len);
    const guint8 *key = w->base.id.bytes;
    if (w->parts == 0) {
        g_autoptr(GBytes) empty = g_bytes_new_static("", 0);
        cass_batch_insert(b, CF_BODIES, key, 16, body_marker, 8, empty, w->ts);
    }
    cass_batch_insert(b, CF_BODIES, key, 16, name, 8, value, w->ts);
    if (!write_batch(s, &b, s->write_consistency, error))
        return FALSE;
    w->parts++;
    return TRUE;
}

/* cw_flush_parts - write every full part at the front of W's buffer */
static gboolean
cw_flush_parts(CassStore *s, CassWriter *w, GError **error)
{
    gsize off = 0;
    gboolean ok = TRUE;
    while (ok && w->fill - off >= s->part_size) {
        ok = cw_put_part(s, w, w->buf + off, s->part_size, error);
        off += s->part_size;
    }
    if (off) {
        /* only more than one part when inline_max is larger than part_size */
        memmove(w->buf, w->buf + off, w->fill - off);
        w->fill -= off;
    }
    return ok;
}

static gboolean
cw_write(StoreWriter *base, const guint8 *data, gsize len, GError **error)
{
    CassWriter *w = (CassWriter *)base;
    CassStore *s = (CassStore *)base->store;
    /* A message that starts with NUL never stays inline: see "References" above. */
    if (!w->in_parts && (w->fill + len > s->inline_max || (w->fill == 0 && data[0] == 0)))
        w->in_parts = TRUE;
    if (!w->in_parts) {
        if (w->fill + len > writer_capacity(s)) {
            /* the paper's layout with a message over the frame: the commit would be refused */
            g_set_error(error, STORE_ERROR, STORE_ERROR_FAILED, "a message of over %zu octets "
                        "cannot be stored inline: over the %u-octet Thrift frame",
                        writer_capacity(s), CASS_FRAME_MAX);
            return FALSE;
        }
        writer_buffer_reach(s, w, w->fill + len);
        memcpy(w->buf + w->fill, data, len);
        w->fill += len;
        return TRUE;
    }
    gsize taken = 0;
    for (;;) {
        if (!cw_flush_parts(s, w, error))
            return FALSE;
        if (taken == len)
            return TRUE;
        gsize n = MIN(s->part_size - w->fill, len - taken);
        writer_buffer_reach(s, w, w->fill + n);
        memcpy(w->buf + w->fill, data + taken, n);
        w->fill += n;
        taken += n;
    }
}

/* How long the clean-up after a failed delivery may take, at most. */
#define WITHDRAW_BUDGET_MS 3000

/* withdraw_delivery - delete whatever landed of a commit that failed
 *
 * Cassandra 0.7 applies a batch_mutate row by row and replica by replica, and it reports
 * Unavailable for one row after it may already have written others; TimedOut and a dropped
 * connection leave the same doubt. The client is told 451 and will send the message again, under
 * a new id, so any copy of this attempt would be a half-delivered message now and a duplicate
 * later. Each target's columns are deleted with a timestamp one microsecond newer than the
 * write, which wins over the write on every replica whatever order they arrive in. The
 * deletion goes at ONE (it reaches every live replica; a dead one gets it by hinted handoff) and
 * within a short budget of its own; if even that fails, a warning names the message. The body's
 * parts stay: a reference may survive this, so only store_gc (at ALL) may decide they are free. */
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
    GError *e = NULL;
    char text[STORE_MSGID_TEXT_LEN];
    store_msgid_to_text(id, text);
    if (cass_batch_execute(s->client, b, CASS_ONE, WITHDRAW_BUDGET_MS, &e)) {
        log_info("store: delivery id=%s failed; whatever part of it was written is withdrawn", text);
    } else {
        log_warn("store: delivery id=%s failed and could not be withdrawn (%s); a partial copy "
                 "may remain", text, e->message);
        g_error_free(e);
    }
    cass_batch_free(&b);
}

static gboolean
cw_commit(StoreWriter *base, const StoreTarget *targets, guint n_targets, GError **error)
{
    CassWriter *w = (CassWriter *)base;
    CassStore *s = (CassStore *)base->store;
    const StoreMsgId *id = &base->id;
    if (w->in_parts) {
        /* store_gc takes a body older than gc_min_age_s that nobody refers to for an orphan: a
         * delivery that took half of that is refused rather than risk a reference to a body
         * that is being reclaimed. */
        gint64 took_s = (g_get_monotonic_time() - w->started) / G_USEC_PER_SEC;
        if (took_s > s->gc_min_age_s / 2) {
            g_set_error(error, STORE_ERROR, STORE_ERROR_TEMPORARY,
                        "the delivery took %" G_GINT64_FORMAT " s, over half of [store] "
                        "gc_min_age_s (%d s)", took_s, s->gc_min_age_s);
            return FALSE;
        }
        if (w->fill && !cw_put_part(s, w, w->buf, w->fill, error))
            return FALSE;
        w->fill = 0;
    }
    guint8 size_be[8], ref[REF_LEN] = {0};
    put_be64(size_be, base->size);
    g_autoptr(GBytes) size = g_bytes_new(size_be, sizeof size_be);
    g_autoptr(GBytes) value = NULL;
    if (w->in_parts) {
        memcpy(ref, REF_MAGIC, REF_MAGIC_LEN);
        ref[4] = REF_VERSION;
        put_be64(ref + 8, base->size);
        put_be64(ref + 16, w->parts);
        memcpy(ref + 24, id->bytes, 16);
        value = g_bytes_new_static(ref, sizeof ref);
    } else {
        value = g_bytes_new_static(w->buf, w->fill);
    }
    g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    CassBatch *b = cass_batch_new();
    for (guint i = 0; i < n_targets; i++) {
        char *key = row_key(targets[i].user, targets[i].mailbox);
        if (!g_hash_table_add(seen, key))
            continue;   /* one reference per mailbox, however often it was named */
        cass_batch_insert(b, CF_MAILBOXES, key, strlen(key), id->bytes, 16, value, w->ts);
        cass_batch_insert(b, CF_INDEX, key, strlen(key), id->bytes, 16, size, w->ts);
    }
    w->commit_tried = TRUE;
    GError *e = NULL;
    gboolean ok = cass_batch_execute(s->client, b, s->write_consistency, CASS_RETRY_DEFAULT, &e);
    cass_batch_free(&b);
    /* InvalidRequest (and a frame refused before sending) applies nothing; the rest leave a
     * doubt */
    if (!ok && e->domain == CASS_ERROR && e->code != CASS_ERROR_INVALID)
        withdraw_delivery(s, seen, id, w->ts);
    return done(s, ok, e, error);
}

/* How long removing the parts of an abandoned message may take, at most. */
#define ABANDON_BUDGET_MS 2000

static void
cw_free(StoreWriter *base)
{
    CassWriter *w = (CassWriter *)base;
    CassStore *s = (CassStore *)base->store;
    /* A message refused or abandoned before its commit was tried has no reference anywhere: its
     * parts go now, as a courtesy to store_gc (which reclaims them anyway if this fails). */
    if (!base->committed && !w->commit_tried && w->parts > 0) {
        GError *e = NULL;
        if (!cass_remove_row(s->client, CF_BODIES, base->id.bytes, 16, w->ts + 1, CASS_ONE,
                             ABANDON_BUDGET_MS, &e))
            g_error_free(e);
        sync_counters(s);
    }
    /* the buffer goes back to the store for the next message (one is enough: a session writes
     * one message at a time) */
    if (!s->spare)
        s->spare = g_steal_pointer(&w->wb);
    writer_buffer_free(s, &w->wb);
    g_free(w);
}

/* A message being read. */
typedef struct {
    StoreReader base;
    GBytes *inline_msg;     /* an inline message, until it is handed out */
    guint8 body[16];        /* the Bodies row of a referenced body */
    guint64 parts;          /* its number of parts */
    guint64 next;           /* the next part to hand out */
    guint64 handed;         /* octets handed out */
    GPtrArray *ahead;       /* CassColumn*: parts read ahead, from AHEAD_POS on */
    guint ahead_pos;
} CassReader;

/* ref_parse - whether VALUE (LEN octets of a Mailboxes column) is a reference; its fields into R */
static gboolean
ref_parse(const guint8 *value, gsize len, CassReader *r)
{
    if (len != REF_LEN || memcmp(value, REF_MAGIC, REF_MAGIC_LEN) != 0 || value[4] != REF_VERSION)
        return FALSE;
    r->base.size = get_be64(value + 8);
    r->parts = get_be64(value + 16);
    memcpy(r->body, value + 24, 16);
    return TRUE;
}

static gboolean
cr_open(Store *base, const char *user, const char *mailbox, const StoreMsgId *id,
        StoreReader **reader, GError **error)
{
    CassStore *s = (CassStore *)base;
    g_autofree char *key = row_key(user, mailbox);
    CassColumn *col = NULL;
    GError *e = NULL;
    if (!cass_get(s->client, CF_MAILBOXES, key, strlen(key), id->bytes, 16, s->read_consistency,
                  CASS_RETRY_DEFAULT, &col, &e))
        return done(s, FALSE, e, error);
    CassReader *r = g_new0(CassReader, 1);
    gsize len;
    const guint8 *value = g_bytes_get_data(col->value, &len);
    if (!ref_parse(value, len, r)) {
        r->inline_msg = g_bytes_ref(col->value);
        r->base.size = len;
    }
    r->ahead = g_ptr_array_new_with_free_func(cass_column_free);
    cass_column_free(col);
    *reader = &r->base;
    return done(s, TRUE, NULL, error);
}

/* cr_incomplete - the error for a body that lacks something: TEMPORARY, since at a weak read
 * consistency a replica may simply not have it yet (a body store_gc removed has no reference) */
static gboolean
cr_incomplete(CassReader *r, GError **error, const char *what)
{
    char text[STORE_MSGID_TEXT_LEN];
    store_msgid_to_text((const StoreMsgId *)r->body, text);
    g_set_error(error, STORE_ERROR, STORE_ERROR_TEMPORARY, "body %s: %s (part %" G_GUINT64_FORMAT
                " of %" G_GUINT64_FORMAT ")", text, what, r->next, r->parts);
    return FALSE;
}

static gboolean
cr_next(StoreReader *base, GBytes **chunk, GError **error)
{
    CassReader *r = (CassReader *)base;
    CassStore *s = (CassStore *)base->store;
    if (r->inline_msg || r->parts == 0) {
        *chunk = g_steal_pointer(&r->inline_msg);
        return TRUE;
    }
    if (r->next == r->parts) {
        if (r->handed != base->size)
            return cr_incomplete(r, error, "parts do not add up to the message size");
        return TRUE;
    }
    if (r->ahead_pos == r->ahead->len) {
        g_ptr_array_set_size(r->ahead, 0);
        r->ahead_pos = 0;
        guint8 start[8];
        put_be64(start, r->next);
        GError *e = NULL;
        /* about READ_AHEAD_OCTETS a slice: two parts of the default size */
        guint64 ahead = MAX((guint64)1, (guint64)(READ_AHEAD_OCTETS / s->part_size));
        int count = (int)MIN(r->parts - r->next, ahead);
        if (!cass_get_slice(s->client, CF_BODIES, r->body, 16, start, 8, NULL, 0, FALSE, count,
                            s->read_consistency, CASS_RETRY_DEFAULT, r->ahead, &e))
            return done(s, FALSE, e, error);
        sync_counters(s);
        if (r->ahead->len == 0)
            return cr_incomplete(r, error, "part missing");
    }
    CassColumn *col = g_ptr_array_index(r->ahead, r->ahead_pos);
    gsize nlen;
    const guint8 *name = g_bytes_get_data(col->name, &nlen);
    if (nlen != 8 || get_be64(name) != r->next)
        return cr_incomplete(r, error, "part missing");
    *chunk = g_steal_pointer(&col->value);
    col->value = g_bytes_new_static("", 0);   /* the part is the caller's now */
    r->ahead_pos++;
    r->next++;
    r->handed += g_bytes_get_size(*chunk);
    if (r->handed > base->size) {
        g_clear_pointer(chunk, g_bytes_unref);
        return cr_incomplete(r, error, "parts exceed the message size");
    }
    return TRUE;
}

static void
cr_free(StoreReader *base)
{
    CassReader *r = (CassReader *)base;
    if (r->inline_msg)
        g_bytes_unref(r->inline_msg);
    g_ptr_array_unref(r->ahead);
    g_free(r);
}

static gboolean
index_page_at(CassStore *s, const char *user, const char *mailbox, const StoreMsgId *after,
              guint max, int consistency, GArray *out, GError **error);

static gboolean
cs_index_page(Store *base, const char *user, const char *mailbox, const StoreMsgId *after, guint max,
              GArray *out, GError **error)
{
    CassStore *s = (CassStore *)base;
    return index_page_at(s, user, mailbox, after, max, s->read_consistency, out, error);
}

static gboolean
cs_index_page_quorum(Store *base, const char *user, const char *mailbox, const StoreMsgId *after,
                     guint max, GArray *out, GError **error)
{
    return index_page_at((CassStore *)base, user, mailbox, after, max, CASS_QUORUM, out, error);
}

/* index_page_at - store_index_page at CONSISTENCY */
static gboolean
index_page_at(CassStore *s, const char *user, const char *mailbox, const StoreMsgId *after,
              guint max, int consistency, GArray *out, GError **error)
{
    g_autofree char *key = row_key(user, mailbox);
    g_autoptr(GPtrArray) cols = g_ptr_array_new_with_free_func(cass_column_free);
    GError *e = NULL;
    /* A slice starts at its start column inclusive: ask for one more and drop AFTER itself. */
    int count = (int)MIN(max + (after ? 1u : 0u), (guint)G_MAXINT);
    gboolean ok = cass_get_slice(s->client, CF_INDEX, key, strlen(key), after ? after->bytes : NULL,
                                 after ? 16 : 0, NULL, 0, FALSE, count, consistency,
                                 CASS_RETRY_DEFAULT, cols, &e);
    for (guint i = 0; ok && i < cols->len; i++) {
        CassColumn *c = g_ptr_array_index(cols, i);
        gsize nlen, vlen;
        const guint8 *name = g_bytes_get_data(c->name, &nlen);
        const guint8 *val = g_bytes_get_data(c->value, &vlen);
        if (nlen != 16 || (after && memcmp(name, after->bytes, 16) == 0))
            continue;
        StoreIndexEntry ent;
        memcpy(ent.id.bytes, name, 16);
        ent.size = vlen >= 8 ? get_be64(val) : 0;   /* what cw_commit writes: 8 octets */
        if (out->len < G_MAXUINT)
            g_array_append_val(out, ent);
    }
    return done(s, ok, e, error);
}


/* ---- IMAP: mailboxes, seals, flags, meta ---------------------------------------------------- */

#define FLAGS_PAGE 1024      /* Flags columns per get_slice */
#define META_NAMES 1000      /* MessageMeta names per get_slice */
#define MOVE_PAGE 16         /* messages per batch of a mailbox move */
#define MOVE_OCTETS (8u * 1000 * 1000)   /* ...and at most about this many octets of inline values */
#define KEYWORDS_READ 256    /* more than IMAP_KEYWORDS_MAX: the list is bounded by the view */

/* flag_name - the Flags column name ID · NAME */
static GByteArray *
flag_name(const StoreMsgId *id, const char *name)
{
    GByteArray *a = g_byte_array_sized_new(16 + (guint)strlen(name));
    g_byte_array_append(a, id->bytes, 16);
    g_byte_array_append(a, (const guint8 *)name, (guint)strlen(name));
    return a;
}

static void
flag_delete(CassBatch *b, const char *key, const StoreMsgId *id, const char *name, gint64 ts)
{
    g_autoptr(GByteArray) n = flag_name(id, name);
    cass_batch_delete(b, CF_FLAGS, key, strlen(key), n->data, n->len, ts);
}

/* keyword_list - the keywords on the list of row KEY's Flags (names after 16 zero octets) */
static gboolean
keyword_list(CassStore *s, const char *key, int consistency, GPtrArray *out, GError **error)
{
    guint8 lo[16] = {0}, hi[17] = {0};
    hi[16] = 0xff;
    g_autoptr(GPtrArray) cols = g_ptr_array_new_with_free_func(cass_column_free);
    GError *e = NULL;
    gboolean ok = cass_get_slice(s->client, CF_FLAGS, key, strlen(key), lo, sizeof lo, hi,
                                 sizeof hi, FALSE, KEYWORDS_READ, consistency, CASS_RETRY_DEFAULT,
                                 cols, &e);
    for (guint i = 0; ok && i < cols->len; i++) {
        gsize len;
        const char *name = g_bytes_get_data(((CassColumn *)cols->pdata[i])->name, &len);
        if (len > 16)
            g_ptr_array_add(out, g_strndup(name + 16, len - 16));
    }
    return done(s, ok, e, error);
}

static gboolean
cs_mailbox_get(Store *base, const char *user, const char *mailbox, gboolean *exists,
               guint32 *ubase, GError **error)
{
    CassStore *s = (CassStore *)base;
    CassColumn *col = NULL;
    GError *e = NULL;
    gboolean ok = cass_get(s->client, CF_USERS, user, strlen(user), mailbox, strlen(mailbox),
                           s->read_consistency, CASS_RETRY_DEFAULT, &col, &e);
    if (!ok && g_error_matches(e, CASS_ERROR, CASS_ERROR_NOT_FOUND)) {
        g_clear_error(&e);
        *exists = FALSE;
        return done(s, TRUE, NULL, error);
    }
    if (ok) {
        *exists = TRUE;
        gsize len;
        const guint8 *v = g_bytes_get_data(col->value, &len);
        /* the base written by CREATE; a mailbox made before IMAP: its column's time */
        *ubase = len == 4 ? (guint32)v[0] << 24 | (guint32)v[1] << 16 | (guint32)v[2] << 8 | v[3]
                          : (guint32)(col->timestamp / G_USEC_PER_SEC);
        cass_column_free(col);
    }
    return done(s, ok, e, error);
}

static gboolean
cs_mailbox_create(Store *base, const char *user, const char *mailbox, guint32 ubase,
                  GError **error)
{
    CassStore *s = (CassStore *)base;
    guint8 v[4] = {(guint8)(ubase >> 24), (guint8)(ubase >> 16), (guint8)(ubase >> 8), (guint8)ubase};
    CassBatch *b = cass_batch_new();
    g_autoptr(GBytes) value = g_bytes_new(v, sizeof v);
    cass_batch_insert(b, CF_USERS, user, strlen(user), mailbox, strlen(mailbox), value, now_us());
    return write_batch(s, &b, s->write_consistency, error);
}

static gboolean
cs_mailbox_drop(Store *base, const char *user, const char *mailbox, GError **error)
{
    CassStore *s = (CassStore *)base;
    g_autofree char *key = row_key(user, mailbox);
    gint64 ts = now_us();
    GError *e = NULL;
    /* the rows first, the name last: an interrupted drop can be run again */
    if (!remove_mailbox_rows(s, key, ts, &e))
        return done(s, FALSE, e, error);
    CassBatch *b = cass_batch_new();
    cass_batch_delete(b, CF_USERS, user, strlen(user), mailbox, strlen(mailbox), ts);
    return write_batch(s, &b, s->write_consistency, error);
}

/* names_of - GBytes of the 16-octet ids IDS[0..N) */
static GPtrArray *
names_of(const StoreMsgId *ids, guint n)
{
    GPtrArray *names = g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref);
    for (guint i = 0; i < n; i++)
        g_ptr_array_add(names, g_bytes_new(ids[i].bytes, 16));
    return names;
}

/* scan_row - each column of row KEY of CF at CONSISTENCY, read PAGE at a time, handed to FN,
 * which may take it from *COL */
static gboolean
scan_row(CassStore *s, const char *cf, const void *key, gsize key_len, guint page, int consistency,
         void (*fn)(CassColumn **col, gpointer data), gpointer data, GError **error)
{
    g_autoptr(GBytes) after = NULL;
    for (;;) {
        g_autoptr(GPtrArray) cols = g_ptr_array_new_with_free_func(cass_column_free);
        gsize alen = 0;
        const void *a = after ? g_bytes_get_data(after, &alen) : NULL;
        GError *e = NULL;
        if (!cass_get_slice(s->client, cf, key, key_len, a, alen, NULL, 0, FALSE, (int)page,
                            consistency, CASS_RETRY_DEFAULT, cols, &e))
            return done(s, FALSE, e, error);
        guint got = cols->len;
        GBytes *last = got ? g_bytes_ref(((CassColumn *)cols->pdata[got - 1])->name) : NULL;
        for (guint i = 0; i < got; i++) {
            CassColumn **c = (CassColumn **)&cols->pdata[i];
            if (after && g_bytes_equal((*c)->name, after))
                continue;   /* the page's start column again */
            fn(c, data);
        }
        g_clear_pointer(&after, g_bytes_unref);
        after = last;
        if (got < page)
            return done(s, TRUE, NULL, error);
    }
}

/* take_column - scan_row's FN that moves the column onto the GPtrArray DATA */
static void
take_column(CassColumn **col, gpointer data)
{
    g_ptr_array_add(data, g_steal_pointer(col));
}

/* every_flag - all columns of row KEY's Flags (CassColumn*), paged, at CONSISTENCY */
static gboolean
every_flag(CassStore *s, const char *key, int consistency, GPtrArray *out, GError **error)
{
    return scan_row(s, CF_FLAGS, key, strlen(key), FLAGS_PAGE, consistency, take_column, out, error);
}

/* insert_columns - COLS (CassColumn*), names and values, into row KEY of CF as of TS */
static void
insert_columns(CassBatch *b, const char *cf, const char *key, const GPtrArray *cols, gint64 ts)
{
    for (guint i = 0; i < cols->len; i++) {
        CassColumn *c = g_ptr_array_index(cols, i);
        gsize nl;
        const void *n = g_bytes_get_data(c->name, &nl);
        cass_batch_insert(b, cf, key, strlen(key), n, nl, c->value, ts);
    }
}

static gboolean
cs_mailbox_move(Store *base, const char *user, const char *from, const char *to, GError **error)
{
    CassStore *s = (CassStore *)base;
    g_autofree char *fkey = row_key(user, from);
    g_autofree char *tkey = row_key(user, to);
    if (strcmp(fkey, tkey) == 0)
        return TRUE;
    /* the flags of FROM, by id */
    g_autoptr(GPtrArray) flags = g_ptr_array_new_with_free_func(cass_column_free);
    if (!every_flag(s, fkey, CASS_QUORUM, flags, error))
        return FALSE;
    for (;;) {
        g_autoptr(GArray) page = g_array_new(FALSE, FALSE, sizeof(StoreIndexEntry));
        if (!index_page_at(s, user, from, NULL, MOVE_PAGE, CASS_QUORUM, page, error))
            return FALSE;
        if (page->len == 0)
            break;
        /* as many as fit a frame well: inline messages travel in the batch */
        gboolean full = page->len == MOVE_PAGE;
        guint64 octets = 0;
        for (guint i = 0; i < page->len; i++) {
            guint64 size = g_array_index(page, StoreIndexEntry, i).size;
            octets += size <= s->inline_max ? size : REF_LEN;
            if (i > 0 && octets > MOVE_OCTETS) {
                g_array_set_size(page, i);
                full = TRUE;
                break;
            }
        }
        g_autoptr(GArray) ids = g_array_new(FALSE, FALSE, sizeof(StoreMsgId));
        for (guint i = 0; i < page->len; i++)
            g_array_append_val(ids, g_array_index(page, StoreIndexEntry, i).id);
        g_autoptr(GPtrArray) names = names_of((StoreMsgId *)ids->data, ids->len);
        g_autoptr(GPtrArray) msgs = g_ptr_array_new_with_free_func(cass_column_free);
        g_autoptr(GPtrArray) meta = g_ptr_array_new_with_free_func(cass_column_free);
        GError *e = NULL;
        if (!cass_get_columns(s->client, CF_MAILBOXES, fkey, strlen(fkey),
                              (GBytes *const *)names->pdata, names->len, CASS_QUORUM,
                              CASS_RETRY_DEFAULT, msgs, &e) ||
            !cass_get_columns(s->client, CF_META, fkey, strlen(fkey),
                              (GBytes *const *)names->pdata, names->len, s->read_consistency,
                              CASS_RETRY_DEFAULT, meta, &e))
            return done(s, FALSE, e, error);
        /* the new row's columns are written now: a dropped mailbox of the same name left a row
         * tombstone newer than the messages' own times */
        gint64 ts = now_us();
        CassBatch *b = cass_batch_new();
        for (guint i = 0; i < page->len; i++) {
            const StoreIndexEntry *ent = &g_array_index(page, StoreIndexEntry, i);
            guint8 size[8];
            put_be64(size, ent->size);
            g_autoptr(GBytes) sv = g_bytes_new(size, 8);
            cass_batch_insert(b, CF_INDEX, tkey, strlen(tkey), ent->id.bytes, 16, sv, ts);
            cass_batch_delete(b, CF_INDEX, fkey, strlen(fkey), ent->id.bytes, 16, ts);
            cass_batch_delete(b, CF_MAILBOXES, fkey, strlen(fkey), ent->id.bytes, 16, ts);
            cass_batch_delete(b, CF_META, fkey, strlen(fkey), ent->id.bytes, 16, ts);
        }
        insert_columns(b, CF_MAILBOXES, tkey, msgs, ts);
        insert_columns(b, CF_META, tkey, meta, ts);
        for (guint i = 0; i < flags->len; i++) {
            CassColumn *c = g_ptr_array_index(flags, i);
            gsize nl;
            const guint8 *n = g_bytes_get_data(c->name, &nl);
            gboolean list = nl > 16;
            for (int j = 0; list && j < 16; j++)
                list = n[j] == 0;
            gboolean mine = list;   /* the keyword list goes with the first page */
            for (guint k = 0; !mine && k < ids->len && nl > 16; k++)
                mine = memcmp(n, g_array_index(ids, StoreMsgId, k).bytes, 16) == 0;
            if (!mine)
                continue;
            cass_batch_insert(b, CF_FLAGS, tkey, strlen(tkey), n, nl, c->value, ts);
            if (!list)
                cass_batch_delete(b, CF_FLAGS, fkey, strlen(fkey), n, nl, ts);
        }
        if (!write_batch(s, &b, CASS_QUORUM, error))
            return FALSE;
        if (!full)
            break;
    }
    return done(s, TRUE, NULL, error);
}

static gboolean
cs_seals_slice(Store *base, const char *user, const char *mailbox, const void *start,
               gsize start_len, const void *finish, gsize finish_len, gboolean reversed, guint max,
               GPtrArray *out, GError **error)
{
    CassStore *s = (CassStore *)base;
    g_autofree char *key = row_key(user, mailbox);
    g_autoptr(GPtrArray) cols = g_ptr_array_new_with_free_func(cass_column_free);
    GError *e = NULL;
    gboolean ok = cass_get_slice(s->client, CF_SEALS, key, strlen(key), start, start_len, finish,
                                 finish_len, reversed, (int)MIN(max, (guint)G_MAXINT), CASS_QUORUM,
                                 CASS_RETRY_DEFAULT, cols, &e);
    for (guint i = 0; ok && i < cols->len; i++) {
        CassColumn *c = g_ptr_array_index(cols, i);
        StoreColumn *sc = g_new(StoreColumn, 1);
        sc->name = g_bytes_ref(c->name);
        sc->value = g_bytes_ref(c->value);
        g_ptr_array_add(out, sc);
    }
    return done(s, ok, e, error);
}

static gboolean
cs_seal_put(Store *base, const char *user, const char *mailbox, const void *name, gsize name_len,
            GBytes *value, gint64 timestamp, GError **error)
{
    CassStore *s = (CassStore *)base;
    g_autofree char *key = row_key(user, mailbox);
    CassBatch *b = cass_batch_new();
    cass_batch_insert(b, CF_SEALS, key, strlen(key), name, name_len, value, timestamp);
    return write_batch(s, &b, CASS_QUORUM, error);
}

static gboolean
cs_flags_list(Store *base, const char *user, const char *mailbox, GPtrArray *out, GError **error)
{
    CassStore *s = (CassStore *)base;
    g_autofree char *key = row_key(user, mailbox);
    g_autoptr(GPtrArray) cols = g_ptr_array_new_with_free_func(cass_column_free);
    if (!every_flag(s, key, CASS_QUORUM, cols, error))
        return FALSE;
    for (guint i = 0; i < cols->len; i++) {
        gsize len;
        const guint8 *n = g_bytes_get_data(((CassColumn *)cols->pdata[i])->name, &len);
        if (len <= 16)
            continue;
        g_ptr_array_add(out, store_flag_new(n, len));
    }
    return TRUE;
}

static gboolean
cs_flags_change(Store *base, const char *user, const char *mailbox,
                const StoreFlagChange *changes, guint n, GError **error)
{
    CassStore *s = (CassStore *)base;
    g_autofree char *key = row_key(user, mailbox);
    static const StoreMsgId list_id;   /* all zero: the keyword list */
    g_autoptr(GBytes) empty = g_bytes_new(NULL, 0);
    gint64 ts = now_us();
    CassBatch *b = cass_batch_new();
    for (guint i = 0; i < n; i++) {
        g_autoptr(GByteArray) name = flag_name(&changes[i].id, changes[i].name);
        if (changes[i].set) {
            cass_batch_insert(b, CF_FLAGS, key, strlen(key), name->data, name->len, empty, ts);
            if (changes[i].name[0] != '\\') {
                g_autoptr(GByteArray) l = flag_name(&list_id, changes[i].name);
                cass_batch_insert(b, CF_FLAGS, key, strlen(key), l->data, l->len, empty, ts);
            }
        } else {
            cass_batch_delete(b, CF_FLAGS, key, strlen(key), name->data, name->len, ts);
        }
    }
    return write_batch(s, &b, CASS_QUORUM, error);
}

static gboolean
cs_meta_get(Store *base, const char *user, const char *mailbox, const StoreMsgId *ids, guint n,
            GPtrArray *out, GError **error)
{
    CassStore *s = (CassStore *)base;
    g_autofree char *key = row_key(user, mailbox);
    for (guint off = 0; off < n; off += META_NAMES) {
        guint m = MIN(META_NAMES, n - off);
        g_autoptr(GPtrArray) names = names_of(ids + off, m);
        g_autoptr(GPtrArray) cols = g_ptr_array_new_with_free_func(cass_column_free);
        GError *e = NULL;
        if (!cass_get_columns(s->client, CF_META, key, strlen(key), (GBytes *const *)names->pdata,
                              m, s->read_consistency, CASS_RETRY_DEFAULT, cols, &e))
            return done(s, FALSE, e, error);
        g_autoptr(GHashTable) found = g_hash_table_new(g_bytes_hash, g_bytes_equal);
        for (guint i = 0; i < cols->len; i++) {
            CassColumn *c = g_ptr_array_index(cols, i);
            g_hash_table_insert(found, c->name, c->value);
        }
        for (guint i = 0; i < m; i++) {
            GBytes *v = g_hash_table_lookup(found, names->pdata[i]);
            g_ptr_array_add(out, v ? g_bytes_ref(v) : NULL);
        }
    }
    return done(s, TRUE, NULL, error);
}

static gboolean
cs_meta_put(Store *base, const char *user, const char *mailbox, const StoreMsgId *id, GBytes *meta,
            GError **error)
{
    CassStore *s = (CassStore *)base;
    g_autofree char *key = row_key(user, mailbox);
    CassBatch *b = cass_batch_new();
    cass_batch_insert(b, CF_META, key, strlen(key), id->bytes, 16, meta, now_us());
    return write_batch(s, &b, s->write_consistency, error);
}

static gboolean
cs_remove(Store *base, const char *user, const char *mailbox, const StoreMsgId *ids, guint n,
          GError **error)
{
    CassStore *s = (CassStore *)base;
    g_autofree char *key = row_key(user, mailbox);
    /* IMAP's flags of the messages go with them (POP3 DELE and IMAP EXPUNGE see each other):
     * the system flags and each keyword of the mailbox's list, by name (Deletion takes no
     * slice in 0.7); and their FETCH meta */
    g_autoptr(GPtrArray) keywords = g_ptr_array_new_with_free_func(g_free);
    if (!keyword_list(s, key, s->read_consistency, keywords, error))
        return FALSE;
    gint64 ts = now_us();
    CassBatch *b = cass_batch_new();
    for (guint i = 0; i < n; i++) {
        cass_batch_delete(b, CF_MAILBOXES, key, strlen(key), ids[i].bytes, 16, ts);
        cass_batch_delete(b, CF_INDEX, key, strlen(key), ids[i].bytes, 16, ts);
        cass_batch_delete(b, CF_META, key, strlen(key), ids[i].bytes, 16, ts);
        for (guint f = 0; store_system_flags[f]; f++)
            flag_delete(b, key, &ids[i], store_system_flags[f], ts);
        for (guint f = 0; f < keywords->len; f++)
            flag_delete(b, key, &ids[i], g_ptr_array_index(keywords, f), ts);
    }
    return write_batch(s, &b, s->write_consistency, error);
}

static gboolean
cs_password_set(Store *base, const char *user, const char *hash, GError **error)
{
    CassStore *s = (CassStore *)base;
    CassBatch *b = cass_batch_new();
    g_autoptr(GBytes) value = g_bytes_new(hash, strlen(hash));
    cass_batch_insert(b, CF_CREDENTIALS, user, strlen(user), PASSWORD_COLUMN,
                      strlen(PASSWORD_COLUMN), value, now_us());
    return write_batch(s, &b, s->write_consistency, error);
}

static gboolean
cs_password_get(Store *base, const char *user, char **hash, GError **error)
{
    CassStore *s = (CassStore *)base;
    CassColumn *col = NULL;
    GError *e = NULL;
    gboolean ok = cass_get(s->client, CF_CREDENTIALS, user, strlen(user), PASSWORD_COLUMN,
                           strlen(PASSWORD_COLUMN), s->read_consistency, CASS_RETRY_DEFAULT, &col, &e);
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
    writer_buffer_free(s, &s->spare);
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
    .writer_begin = cw_begin,
    .writer_write = cw_write,
    .writer_commit = cw_commit,
    .writer_free = cw_free,
    .index_page = cs_index_page,
    .reader_open = cr_open,
    .reader_next = cr_next,
    .reader_free = cr_free,
    .remove = cs_remove,
    .password_set = cs_password_set,
    .password_get = cs_password_get,
    .mailbox_get = cs_mailbox_get,
    .mailbox_create = cs_mailbox_create,
    .mailbox_drop = cs_mailbox_drop,
    .mailbox_move = cs_mailbox_move,
    .index_page_quorum = cs_index_page_quorum,
    .seals_slice = cs_seals_slice,
    .seal_put = cs_seal_put,
    .flags_list = cs_flags_list,
    .flags_change = cs_flags_change,
    .meta_get = cs_meta_get,
    .meta_put = cs_meta_put,
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
store_open(const StoreSettings *set, GError **error)
{
    if (!set->endpoints || !set->endpoints[0]) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_FAILED, "no Cassandra endpoints configured");
        return NULL;
    }
    CassStore *s = g_new0(CassStore, 1);
    s->base.ops = &cass_ops;
    s->keyspace = g_strdup(set->keyspace);
    s->endpoints = g_strdupv((char **)set->endpoints);
    s->timeout_ms = set->timeout_ms;
    s->retry_ms = set->retry_ms;
    s->backoff_ms = set->backoff_ms;
    s->unavailable_ms = set->unavailable_retry_ms;
    s->write_consistency = set->write_consistency;
    s->read_consistency = set->read_consistency;
    s->inline_max = set->inline_max;
    s->part_size = set->part_size > 0 ? (gsize)set->part_size : STORE_PART_SIZE;
    s->gc_min_age_s = set->gc_min_age_s;
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
            for (guint j = 0; j < cfs->len; j++)
                have |= g_strcmp0(g_ptr_array_index(cfs, j), schema_cfs[i].name) == 0;
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

/* GC_PAGE_ROWS - rows per range scan page (one small column each: the body marker, an index
 * entry); GC_PAGE_COLUMNS - index entries per get_slice */
#define GC_PAGE_ROWS 256
#define GC_PAGE_COLUMNS 1024

/* gc_scan_keys - call FN for every row key of CF (rows with a live column), paging the ring in
 * token order at CL ALL */
static gboolean
gc_scan_keys(CassStore *s, const char *cf, gboolean (*fn)(CassStore *s, GBytes *key, gpointer data,
                                                         GError **error),
             gpointer data, GError **error)
{
    g_autoptr(GBytes) start = g_bytes_new(NULL, 0);
    for (;;) {
        g_autoptr(GPtrArray) keys = g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref);
        guint seen = 0;
        gsize slen;
        const void *sdata = g_bytes_get_data(start, &slen);
        GError *e = NULL;
        if (!cass_range_keys(s->client, cf, sdata, slen, GC_PAGE_ROWS, CASS_ALL, CASS_RETRY_DEFAULT,
                             keys, &seen, &e))
            return done(s, FALSE, e, error);
        for (guint i = 0; i < keys->len; i++) {
            GBytes *k = g_ptr_array_index(keys, i);
            if (slen && g_bytes_equal(k, start))
                continue;   /* the start key of a following page comes back again */
            if (!fn(s, k, data, error))
                return FALSE;
        }
        if (seen < GC_PAGE_ROWS || keys->len == 0)
            return TRUE;
        g_bytes_unref(start);
        start = g_bytes_ref(g_ptr_array_index(keys, keys->len - 1));
    }
}

typedef struct {
    GHashTable *candidates;   /* GBytes body key -> itself: old enough, not yet seen referred to */
    gint64 oldest_us;         /* bodies written before this are old enough */
    StoreGcReport *report;
} GcState;

/* gc_body - one Bodies row: a candidate when old enough */
static gboolean
gc_body(CassStore *s, GBytes *key, gpointer data, GError **error)
{
    (void)s, (void)error;
    GcState *g = data;
    g->report->bodies++;
    gsize len;
    const guint8 *k = g_bytes_get_data(key, &len);
    if (len != 16 || (k[6] >> 4) != 1 || uuid_timestamp_us((const StoreMsgId *)k) >= g->oldest_us)
        g->report->young++;   /* not a TimeUUID we wrote, or too recent to judge */
    else
        g_hash_table_add(g->candidates, g_bytes_ref(key));
    return TRUE;
}

/* gc_reference - scan_row's FN for gc_mailbox: the index entry COL refers to its body */
static void
gc_reference(CassColumn **col, gpointer data)
{
    GcState *g = data;
    g->report->references++;
    if (g_hash_table_remove(g->candidates, (*col)->name))
        g->report->referenced++;
}

/* gc_mailbox - one MailboxIndex row: every id it holds is referenced
 *
 * The index is read instead of Mailboxes (8-octet values instead of inline messages): a
 * mailbox's reference and its index entry share the row key "user:mailbox", so Cassandra applies
 * them (and their deletions, store_remove) in one RowMutation per replica — one is never there
 * without the other. The one exception, store_user_del, removes the Mailboxes row before the
 * index row, which can only leave an index entry behind: a body kept longer, never one lost. */
static gboolean
gc_mailbox(CassStore *s, GBytes *key, gpointer data, GError **error)
{
    GcState *g = data;
    g->report->mailboxes++;
    gsize klen;
    const void *k = g_bytes_get_data(key, &klen);
    return scan_row(s, CF_INDEX, k, klen, GC_PAGE_COLUMNS, CASS_ALL, gc_reference, g, error);
}

gboolean
store_gc(Store *base, int min_age_s, gboolean dry_run, StoreGcReport *report, GError **error)
{
    memset(report, 0, sizeof *report);
    if (base->ops != &cass_ops) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_FAILED, "gc needs the Cassandra store");
        return FALSE;
    }
    CassStore *s = (CassStore *)base;
    GcState g = {
        .candidates = g_hash_table_new_full(g_bytes_hash, g_bytes_equal,
                                            (GDestroyNotify)g_bytes_unref, NULL),
        .oldest_us = now_us() - (gint64)min_age_s * G_USEC_PER_SEC,
        .report = report,
    };
    /* Bodies first, then references: a body old enough now was committed (or abandoned) before
     * the reference scan starts, and no delivery ever adds a reference to an existing body. */
    gboolean ok = gc_scan_keys(s, CF_BODIES, gc_body, &g, error) &&
                  gc_scan_keys(s, CF_INDEX, gc_mailbox, &g, error);
    if (ok) {
        report->orphans = g_hash_table_size(g.candidates);
        gint64 ts = now_us();
        GHashTableIter it;
        gpointer key;
        g_hash_table_iter_init(&it, g.candidates);
        while (ok && !dry_run && g_hash_table_iter_next(&it, &key, NULL)) {
            gsize len;
            const void *k = g_bytes_get_data(key, &len);
            GError *e = NULL;
            ok = remove_row(s, CF_BODIES, k, len, ts, &e);
            if (ok)
                report->removed++;
            else
                done(s, FALSE, e, error);
        }
    }
    g_hash_table_unref(g.candidates);
    sync_counters(s);
    return ok;
}

CassClient *
store_cass_client(Store *base)
{
    return base->ops == &cass_ops ? ((CassStore *)base)->client : NULL;
}
