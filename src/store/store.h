/*
 * store.h - the mail store: users, mailboxes, messages and credentials.
 *
 * The only code that knows the schema (keyspace Mail; the details, and why, in store_cass.c):
 *   Users        row user                column mailbox name            value empty
 *   Mailboxes    row "user:mailbox"      column TimeUUID                value the message octets
 *                                                                       (inline) or a reference
 *                                                                       to its body
 *   MailboxIndex row "user:mailbox"      column TimeUUID                value size (8 octets, BE)
 *   Bodies       row TimeUUID            column part number (8, BE)     value one part's octets
 *   Credentials  row user                column "password"              value salted hash text
 *   ImapSeals    row "user:mailbox"      column epoch·seal·digest       value a seal (docs/imap.md)
 *   Flags        row "user:mailbox"      column TimeUUID·flag name      value empty
 *   MessageMeta  row "user:mailbox"      column TimeUUID                value ENVELOPE/BODYSTRUCTURE
 *                                                                       cache (the IMAP core's)
 *
 * A message is written once however many mailboxes hold it: up to the store's inline_max octets
 * it is kept inline in each Mailboxes column (the paper's layout: one read for a small message);
 * larger, its body goes to Bodies in parts of STORE_PART_SIZE, streamed while it arrives
 * (StoreWriter), and each mailbox gets a small reference. Reading streams the parts back
 * (StoreReader) with a bounded read-ahead. Removing a message removes the mailbox's reference;
 * bodies nobody refers to any more are reclaimed by store_gc (cassmail-admin gc).
 *
 * Protocol cores (src/smtp, src/pop3) call only this interface. A Store is a backend behind a
 * table of operations: the Cassandra backend (store_open) is the product; an in-memory backend
 * exists under test/unit/support for unit tests and fuzzers of the protocol cores only.
 *
 * Errors are GErrors in STORE_ERROR: TEMPORARY (Cassandra unreachable, Unavailable, TimedOut:
 * the client should retry later — SMTP 451), NOT_FOUND, INVALID (a bad name), FAILED.
 */
#ifndef CASSMAIL_STORE_H
#define CASSMAIL_STORE_H

#include <glib.h>

#define STORE_ERROR (store_error_quark())
GQuark store_error_quark(void);
typedef enum {
    STORE_ERROR_TEMPORARY,
    STORE_ERROR_NOT_FOUND,
    STORE_ERROR_INVALID,
    STORE_ERROR_FAILED,
} StoreErrorCode;
/* store_error_unanswered - E (NULL: none) is a failure that says nothing of what was asked:
 * anything but "not found" and "invalid" (Cassandra down or timed out, a keyspace that is not
 * there). A login it stopped was not checked; the client should try again later. */
gboolean store_error_unanswered(const GError *e);

/* A message id: the version-1 TimeUUID minted when the message was accepted. It names the
 * message everywhere: the Received: field, "250 ... queued as", the Mailboxes and MailboxIndex
 * column, POP3 UIDL. */
typedef struct {
    guint8 bytes[16];
} StoreMsgId;
#define STORE_MSGID_TEXT_LEN 37  /* canonical 8-4-4-4-12 text plus NUL */
void store_msgid_to_text(const StoreMsgId *id, char out[STORE_MSGID_TEXT_LEN]);
gboolean store_msgid_from_text(const char *text, StoreMsgId *id);

/* store_msgid_new - a fresh id for a message about to be delivered: a version-1 TimeUUID (RFC 4122
 * 4.2) of the current time whose node is 47 random bits with the multicast bit set (4.5: never a
 * network card's address) and whose clock sequence is random too. Both are drawn again in a new
 * process (a forked child), so processes minting in the same 100-ns tick, here or on other nodes,
 * still differ. Within one process ids are strictly ascending in Cassandra's TimeUUIDType order:
 * when the clock stands still or steps back, the timestamp is the previous one plus 100 ns. */
void store_msgid_new(StoreMsgId *id);
/* store_msgid_new_at - the same with NOW (100-ns intervals since 1582-10-15) as the clock reading,
 * for tests of a clock that stands still or steps back */
void store_msgid_new_at(StoreMsgId *id, guint64 now);
/* store_msgid_time - the 60-bit timestamp of a version-1 id (100-ns intervals since 1582-10-15) */
guint64 store_msgid_time(const StoreMsgId *id);
/* store_msgid_compare - <0, 0, >0 as Cassandra 0.7's TimeUUIDType orders column names: the
 * timestamp first, then the 16 octets as Java's ByteBuffer.compareTo does (signed octets) */
int store_msgid_compare(const StoreMsgId *a, const StoreMsgId *b);

/* One entry of a mailbox's index (MailboxIndex): which message, how many octets. */
typedef struct {
    StoreMsgId id;
    guint64 size;
} StoreIndexEntry;

/* Where a delivered message goes. */
typedef struct {
    const char *user;
    const char *mailbox;
} StoreTarget;

/* What a store has read from its backend, for tests and benchmarks. */
typedef struct {
    guint64 bytes_read;      /* column names + values received */
    guint64 columns_read;
    guint64 bytes_written;
    guint64 calls;           /* RPCs that succeeded */
    guint64 retries;         /* RPCs repeated after a failure */
    guint64 max_frame;       /* the largest request sent, in octets (0: not known) */
} StoreCounters;

typedef struct Store Store;

/* A column of the IMAP seal row (store_seals_slice): name and value as stored. */
typedef struct {
    GBytes *name;
    GBytes *value;
} StoreColumn;
void store_column_free(gpointer column);

/* A flag of a message (store_flags_list): ID all zero is the mailbox's keyword list (a keyword
 * that some message of the mailbox has or had), NAME the flag ("\\Seen") or keyword. One
 * allocation: g_free frees it. */
typedef struct {
    StoreMsgId id;
    char name[];
} StoreFlag;
/* store_flag_new - the flag of the flag column named COLUMN (LEN > 16 octets: the message id,
 * then the flag's name) */
StoreFlag *store_flag_new(const guint8 *column, gsize len);
/* One flag change for store_flags_change: set or clear NAME on message ID. */
typedef struct {
    StoreMsgId id;
    const char *name;
    gboolean set;
} StoreFlagChange;

/* The default size of a body part, [store] part_size (see store_cass.c for the measurement
 * behind it). */
#define STORE_PART_SIZE (1024 * 1024)

/* A message being written: the bytes go in as they arrive, then commit makes it visible in every
 * target mailbox at once (see store_writer_begin). Backends extend this struct. */
typedef struct {
    Store *store;
    StoreMsgId id;
    guint64 size;            /* octets written so far */
    GError *error;           /* the first failure; every later call fails with it */
    gboolean committed;
} StoreWriter;

/* A stored message being read, a chunk at a time. Backends extend this struct. */
typedef struct {
    Store *store;
    guint64 size;            /* the message's octets, known at open */
} StoreReader;

/* The backend interface; every function returns FALSE and sets error on failure. */
typedef struct {
    gboolean (*user_exists)(Store *s, const char *user, gboolean *exists, GError **error);
    gboolean (*user_add)(Store *s, const char *user, GError **error);
    gboolean (*user_del)(Store *s, const char *user, GError **error);
    gboolean (*users_list)(Store *s, GPtrArray *out, GError **error);
    gboolean (*mailbox_add)(Store *s, const char *user, const char *mailbox, GError **error);
    gboolean (*mailboxes_list)(Store *s, const char *user, GPtrArray *out, GError **error);
    /* a writer for a message under ID (minted by store_writer_begin) */
    StoreWriter *(*writer_begin)(Store *s, const StoreMsgId *id);
    gboolean (*writer_write)(StoreWriter *w, const guint8 *data, gsize len, GError **error);
    gboolean (*writer_commit)(StoreWriter *w, const StoreTarget *targets, guint n_targets,
                              GError **error);
    /* free W; when it was not committed, forget (or leave for gc) what it wrote */
    void (*writer_free)(StoreWriter *w);
    gboolean (*index_page)(Store *s, const char *user, const char *mailbox, const StoreMsgId *after,
                           guint max, GArray *out, GError **error);
    gboolean (*reader_open)(Store *s, const char *user, const char *mailbox,
                            const StoreMsgId *id, StoreReader **reader, GError **error);
    /* the next chunk in *CHUNK, or NULL at the end */
    gboolean (*reader_next)(StoreReader *r, GBytes **chunk, GError **error);
    void (*reader_free)(StoreReader *r);
    gboolean (*remove)(Store *s, const char *user, const char *mailbox, const StoreMsgId *ids,
                       guint n, GError **error);
    gboolean (*password_set)(Store *s, const char *user, const char *hash, GError **error);
    gboolean (*password_get)(Store *s, const char *user, char **hash, GError **error);
    /* ---- IMAP (see the functions of the same names below) ---- */
    gboolean (*mailbox_get)(Store *s, const char *user, const char *mailbox, gboolean *exists,
                            guint32 *base, GError **error);
    gboolean (*mailbox_create)(Store *s, const char *user, const char *mailbox, guint32 base,
                               GError **error);
    gboolean (*mailbox_drop)(Store *s, const char *user, const char *mailbox, GError **error);
    gboolean (*mailbox_move)(Store *s, const char *user, const char *from, const char *to,
                             GError **error);
    gboolean (*index_page_quorum)(Store *s, const char *user, const char *mailbox,
                                  const StoreMsgId *after, guint max, GArray *out, GError **error);
    gboolean (*seals_slice)(Store *s, const char *user, const char *mailbox, const void *start,
                            gsize start_len, const void *finish, gsize finish_len,
                            gboolean reversed, guint max, GPtrArray *out, GError **error);
    gboolean (*seal_put)(Store *s, const char *user, const char *mailbox, const void *name,
                         gsize name_len, GBytes *value, gint64 timestamp, GError **error);
    gboolean (*flags_list)(Store *s, const char *user, const char *mailbox, GPtrArray *out,
                           GError **error);
    gboolean (*flags_change)(Store *s, const char *user, const char *mailbox,
                             const StoreFlagChange *changes, guint n, GError **error);
    gboolean (*meta_get)(Store *s, const char *user, const char *mailbox, const StoreMsgId *ids,
                         guint n, GPtrArray *out, GError **error);
    gboolean (*meta_put)(Store *s, const char *user, const char *mailbox, const StoreMsgId *id,
                         GBytes *meta, GError **error);
    void (*destroy)(Store *s);
} StoreOps;

struct Store {
    const StoreOps *ops;
    StoreCounters counters;
};

/* What the Cassandra store is told ([cassandra] and [store] of cassmail.conf, mapped by the
 * adapter, src/net/adapter.h); store_open copies it. */
typedef struct {
    char *const *endpoints;    /* "host:port", NULL-terminated, in order of preference */
    const char *keyspace;
    int write_consistency;     /* Thrift ConsistencyLevel values (src/cass/cass.h) */
    int read_consistency;
    int timeout_ms;            /* one RPC */
    int retry_ms;              /* one operation, failing over and retrying */
    int unavailable_retry_ms;  /* ...of which while every coordinator says Unavailable */
    int backoff_ms;            /* a failed endpoint is skipped this long */
    gsize inline_max;          /* messages up to this many octets stay inline in Mailboxes */
    int part_size;             /* octets of a body part (<= 0: STORE_PART_SIZE) */
    int gc_min_age_s;          /* bodies younger than this are left to deliveries in flight */
} StoreSettings;

/* store_open - the Cassandra store SET describes (connects on first use) */
Store *store_open(const StoreSettings *set, GError **error);
void store_free(Store **s);

/* store_name_valid - a user name we accept (and the mailbox names SMTP and POP3 address): 1..64
 * octets of [a-z0-9._+-], lower case (':' and the POP3 delimiter can never appear) */
gboolean store_name_valid(const char *name);
/* store_mailbox_name_valid - a mailbox name the store holds: 1..200 octets of printable ASCII
 * (0x20..0x7e), no control characters; mixed case, spaces, '/', ':' and '|' allowed (what IMAP
 * clients create). The row key "user:mailbox" splits at its first ':' (user names have none);
 * POP3's "user|mailbox" at its first delimiter, which user names never contain either. */
gboolean store_mailbox_name_valid(const char *name);

gboolean store_user_exists(Store *s, const char *user, gboolean *exists, GError **error);
/* store_user_add - a user with the mailboxes inbox and outbox; adding an existing user is fine */
gboolean store_user_add(Store *s, const char *user, GError **error);
/* store_user_del - the user, its mailboxes' messages and index, and its credentials */
gboolean store_user_del(Store *s, const char *user, GError **error);
/* store_users_list - every user name (strings owned by OUT, which should free with g_free) */
gboolean store_users_list(Store *s, GPtrArray *out, GError **error);
gboolean store_mailbox_add(Store *s, const char *user, const char *mailbox, GError **error);
gboolean store_mailboxes_list(Store *s, const char *user, GPtrArray *out, GError **error);
/* store_mailbox_exists - whether USER has MAILBOX (FALSE, no error, when the user is unknown) */
gboolean store_mailbox_exists(Store *s, const char *user, const char *mailbox, gboolean *exists,
                              GError **error);

/* store_writer_begin - start writing a message under ID, which the caller minted with
 * store_msgid_new (and may already have written into the message, as the SMTP core does in its
 * Received: field); NULL: one minted here, which store_writer_id tells. Memory stays bounded by a few parts whatever the
 * message's size: full parts go to the backend as the octets arrive.
 *
 * store_writer_write - append LEN octets. After a failure every later write and the commit fail
 * with the same error, so a protocol core can keep reading the message and answer at its end.
 *
 * store_writer_commit - the message into every target mailbox (and the index entries) in one
 * write. Returns only after the backend acknowledged at the configured write consistency; each
 * write is retried with the same id and timestamps, so it never duplicates. Until commit no
 * mailbox shows the message; a writer freed without commit leaves at most unreferenced parts,
 * which store_gc reclaims.
 *
 * store_writer_free - free *W and set it to NULL (aborting an uncommitted message). */
StoreWriter *store_writer_begin(Store *s, const StoreMsgId *id);
const StoreMsgId *store_writer_id(const StoreWriter *w);
gboolean store_writer_write(StoreWriter *w, const void *data, gsize len, GError **error);
gboolean store_writer_commit(StoreWriter *w, const StoreTarget *targets, guint n_targets,
                             GError **error);
void store_writer_free(StoreWriter **w);

/* store_deliver - MSG to every target under ID (minted with store_msgid_new) through one writer:
 * begin, write, commit. After a failure, deliver the message again under a new id. */
gboolean store_deliver(Store *s, const StoreMsgId *id, const StoreTarget *targets,
                       guint n_targets, const guint8 *msg, gsize len, GError **error);
/* store_index_page - up to MAX index entries strictly after AFTER (NULL: from the start), oldest
 * first, appended to OUT (a GArray of StoreIndexEntry). Fewer than MAX means the end. */
gboolean store_index_page(Store *s, const char *user, const char *mailbox, const StoreMsgId *after,
                          guint max, GArray *out, GError **error);
/* store_reader_open - a reader of one message; STORE_ERROR_NOT_FOUND when it is gone.
 * store_reader_next - the next chunk of its octets in *CHUNK (a part of at most
 * STORE_PART_SIZE, or a whole inline message), NULL after the last; a body that turns out
 * incomplete is STORE_ERROR_FAILED. The backend reads ahead a bounded number of parts.
 * store_reader_free - free *R and set it to NULL. */
gboolean store_reader_open(Store *s, const char *user, const char *mailbox, const StoreMsgId *id,
                           StoreReader **reader, GError **error);
guint64 store_reader_size(const StoreReader *r);
gboolean store_reader_next(StoreReader *r, GBytes **chunk, GError **error);
void store_reader_free(StoreReader **r);

/* store_fetch - one message's octets, whole (tools and tests; servers stream with a reader);
 * STORE_ERROR_NOT_FOUND when it is gone */
gboolean store_fetch(Store *s, const char *user, const char *mailbox, const StoreMsgId *id,
                     GBytes **msg, GError **error);
/* store_remove - delete messages and their index entries, flags and meta in one write (POP3 DELE,
 * IMAP EXPUNGE: each sees the other's deletions) */
gboolean store_remove(Store *s, const char *user, const char *mailbox, const StoreMsgId *ids,
                      guint n, GError **error);
/* store_password_set / _get - the stored hash text (see util/password.h); _get gives
 * STORE_ERROR_NOT_FOUND when the user has none */
gboolean store_password_set(Store *s, const char *user, const char *hash, GError **error);
gboolean store_password_get(Store *s, const char *user, char **hash, GError **error);

/* ---- IMAP: mailboxes, seals, flags, meta (docs/imap.md; src/imap/view.h uses them) ----
 * Levels: seals, the index read for seals, and flags at QUORUM whatever [store] says (the seal
 * protocol rests on quorum intersection); meta and mailbox rows at the configured levels. */

/* store_mailbox_get - whether USER has MAILBOX and its UIDVALIDITY base (the value of its Users
 * column: seconds; an older empty value: the column's write time in seconds) */
gboolean store_mailbox_get(Store *s, const char *user, const char *mailbox, gboolean *exists,
                           guint32 *base, GError **error);
/* store_mailbox_create - MAILBOX of USER with UIDVALIDITY base BASE (replaces an existing one's) */
gboolean store_mailbox_create(Store *s, const char *user, const char *mailbox, guint32 base,
                              GError **error);
/* store_mailbox_drop - MAILBOX's Users column and its messages, index, flags and meta rows; its
 * seals stay (the next epoch of the name continues from them) */
gboolean store_mailbox_drop(Store *s, const char *user, const char *mailbox, GError **error);
/* store_mailbox_move - every message of FROM (Mailboxes, MailboxIndex, Flags and MessageMeta
 * columns, same ids) into TO, removed from FROM (paged: not atomic; run again after a failure);
 * the Users columns are the caller's */
gboolean store_mailbox_move(Store *s, const char *user, const char *from, const char *to,
                            GError **error);
/* store_index_page_quorum - store_index_page at QUORUM */
gboolean store_index_page_quorum(Store *s, const char *user, const char *mailbox,
                                 const StoreMsgId *after, guint max, GArray *out, GError **error);
/* store_seals_slice - up to MAX columns (StoreColumn*) of MAILBOX's ImapSeals row from START to
 * FINISH (inclusive, BytesType order; empty: open), REVERSED from FINISH, at QUORUM */
gboolean store_seals_slice(Store *s, const char *user, const char *mailbox, const void *start,
                           gsize start_len, const void *finish, gsize finish_len, gboolean reversed,
                           guint max, GPtrArray *out, GError **error);
/* store_seal_put - one ImapSeals column at QUORUM with TIMESTAMP (µs) */
gboolean store_seal_put(Store *s, const char *user, const char *mailbox, const void *name,
                        gsize name_len, GBytes *value, gint64 timestamp, GError **error);
/* store_flags_list - every flag of MAILBOX (StoreFlag*, keyword list entries included) at QUORUM */
gboolean store_flags_list(Store *s, const char *user, const char *mailbox, GPtrArray *out,
                          GError **error);
/* store_flags_change - set and clear flags in one write at QUORUM; setting a keyword also puts
 * it on the mailbox's keyword list */
gboolean store_flags_change(Store *s, const char *user, const char *mailbox,
                            const StoreFlagChange *changes, guint n, GError **error);
/* store_meta_get - the meta blobs of IDS[0..N) (GBytes* or NULL each, in order) into OUT, about
 * one read per thousand ids */
gboolean store_meta_get(Store *s, const char *user, const char *mailbox, const StoreMsgId *ids,
                        guint n, GPtrArray *out, GError **error);
gboolean store_meta_put(Store *s, const char *user, const char *mailbox, const StoreMsgId *id,
                        GBytes *meta, GError **error);
/* The system flags' column names as the IMAP layer writes them; store_remove deletes these and
 * the mailbox's keywords for each removed message (batch_mutate cannot delete a slice). */
extern const char *const store_system_flags[];

const StoreCounters *store_counters(Store *s);

#endif
