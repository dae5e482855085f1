/*
 * view.h - the IMAP store layer: mailboxes as IMAP names them, and the selected mailbox (ImapView)
 * with UIDs established by the seal protocol of docs/imap.md, flags, expunges, APPEND, COPY/MOVE
 * and the cached ENVELOPE/BODYSTRUCTURE meta of messages.
 *
 * The IMAP protocol core (src/imap/session.c) calls only this and, to read a message's octets,
 * store_reader_open(imap_view_store(v), imap_view_user(v), imap_view_stored_name(v), id, ...).
 * Nothing here parses IMAP syntax; nothing here writes to a client.
 *
 * Names. IMAP mailbox names are what the client sends (after mUTF-7 is left as it is: the
 * server does not decode it). "INBOX" in any case is the stored "inbox"; every other name is
 * stored as given (case-sensitive): 1..IMAP_NAME_MAX octets of printable ASCII (0x20..0x7e), no
 * empty hierarchy level ("a//b", a leading or trailing '/'), the hierarchy delimiter being '/'.
 * The stored "outbox" (where cassmail-smtpd keeps what a local user sent) is listed with \Sent
 * (RFC 6154 SPECIAL-USE).
 *
 * Subscriptions are not kept: every mailbox is subscribed. LSUB answers as LIST does and
 * SUBSCRIBE/UNSUBSCRIBE succeed without effect (RFC 9051 allows a server to do so; see
 * docs/imap.md).
 *
 * Errors: GErrors in IMAP_VIEW_ERROR (below) or STORE_ERROR (TEMPORARY: the cluster could not
 * answer at the consistency level needed -> NO [UNAVAILABLE]; the operation changed nothing the
 * view shows, and may be retried).
 *
 * Sequence numbers are 1-based positions in the view (1..imap_view_count), UIDs as IMAP has them.
 */
#ifndef CASSMAIL_IMAP_VIEW_H
#define CASSMAIL_IMAP_VIEW_H

#include <glib.h>

#include "store/store.h"

#define IMAP_VIEW_ERROR (imap_view_error_quark())
GQuark imap_view_error_quark(void);
typedef enum {
    IMAP_VIEW_ERROR_EPOCH_ENDED,   /* the mailbox's UIDVALIDITY changed (or it was deleted or
                                      renamed away) under a selected view: answer * BYE and close;
                                      the client reconnects and resynchronises */
    IMAP_VIEW_ERROR_NONEXISTENT,   /* no such mailbox (NO [NONEXISTENT]; APPEND/COPY: [TRYCREATE]) */
    IMAP_VIEW_ERROR_EXISTS,        /* CREATE/RENAME to a name that exists (NO [ALREADYEXISTS]) */
    IMAP_VIEW_ERROR_BAD_NAME,      /* a name the store cannot hold (NO [CANNOT]) */
    IMAP_VIEW_ERROR_READ_ONLY,     /* a change through an EXAMINEd view (NO [READ-ONLY]) */
    IMAP_VIEW_ERROR_LIMIT,         /* too many or too long keywords (NO [LIMIT]) */
    IMAP_VIEW_ERROR_INBOX,         /* DELETE INBOX (NO [CANNOT]) */
} ImapViewErrorCode;

/* System flags as bits; keywords are strings (atoms, checked by the core). \Recent is not kept
 * (IMAP4rev2 dropped it; IMAP4rev1 sessions report RECENT 0). */
enum {
    IMAP_FLAG_SEEN = 1 << 0,
    IMAP_FLAG_ANSWERED = 1 << 1,
    IMAP_FLAG_FLAGGED = 1 << 2,
    IMAP_FLAG_DELETED = 1 << 3,
    IMAP_FLAG_DRAFT = 1 << 4,
};
#define IMAP_FLAG_ALL 0x1f
#define IMAP_KEYWORD_LEN_MAX 64    /* octets of one keyword */
#define IMAP_KEYWORDS_MAX 64       /* distinct keywords per mailbox (PERMANENTFLAGS lists them and \*) */
#define IMAP_NAME_MAX 200          /* octets of a stored mailbox name */

/* imap_flag_name - "\\Seen" etc. for one IMAP_FLAG_* bit; imap_flag_from_name - the bit of a
 * system flag name (case-insensitive), 0 when it is not one (a keyword, or \Recent) */
const char *imap_flag_name(guint bit);
guint imap_flag_from_name(const char *name);

/* ---- names ---- */

/* imap_name_to_store - the stored name of IMAP name NAME ("INBOX" in any case -> "inbox"), or
 * NULL when the store cannot hold it; g_free the result */
char *imap_name_to_store(const char *name);
/* imap_name_from_store - the IMAP name of stored name STORED ("inbox" -> "INBOX"); g_free */
char *imap_name_from_store(const char *stored);

/* ---- mailboxes (no selection needed) ---- */

/* One allocation: g_free frees it. */
typedef struct {
    gboolean sent;     /* \Sent (SPECIAL-USE) */
    char name[];       /* the IMAP name */
} ImapMailboxInfo;

/* imap_mailboxes_list - every mailbox of USER, INBOX first then by stored name, appended to OUT
 * as ImapMailboxInfo* (OUT should free with g_free). LIST patterns, \HasChildren
 * and \Noinferiors are the core's (the delimiter is '/'). */
gboolean imap_mailboxes_list(Store *s, const char *user, GPtrArray *out, GError **error);
/* imap_mailbox_create - CREATE NAME (RFC 9051 6.3.4): EXISTS when it is there; a trailing '/'
 * is the core's to strip. Its UIDVALIDITY will be above any the name had before. */
gboolean imap_mailbox_create(Store *s, const char *user, const char *name, GError **error);
/* imap_mailbox_delete - DELETE NAME with its messages (RFC 9051 6.3.5); INBOX refused (INBOX).
 * Sessions that have it selected end (EPOCH_ENDED at their next sync). Inferior names are
 * separate mailboxes and stay. */
gboolean imap_mailbox_delete(Store *s, const char *user, const char *name, GError **error);
/* imap_mailbox_rename - RENAME FROM TO (RFC 9051 6.3.6): the messages (same ids, flags, meta)
 * move to TO; FROM's inferiors ("FROM/...") are renamed too. RENAME INBOX moves INBOX's messages
 * into the new mailbox and leaves INBOX empty. TO must not exist (EXISTS). Sessions with FROM
 * selected end (EPOCH_ENDED) except for INBOX, whose sessions see expunges. */
gboolean imap_mailbox_rename(Store *s, const char *user, const char *from, const char *to,
                             GError **error);

typedef struct {
    guint32 messages;
    guint32 uidnext;
    guint32 uidvalidity;
    guint32 unseen;
    guint64 size;       /* RFC 8438 STATUS SIZE: octets of all messages */
    guint32 deleted;    /* messages with \Deleted (RFC 9051 STATUS DELETED) */
} ImapStatus;
/* imap_mailbox_status - STATUS NAME without selecting it. It runs what SELECT runs (a read-only
 * view: seals established, so UIDNEXT is what a SELECT right after would say) and frees it. */
gboolean imap_mailbox_status(Store *s, const char *user, const char *name, int settle_ms,
                             ImapStatus *out, GError **error);

/* ---- the selected mailbox ---- */

typedef struct ImapView ImapView;

/* imap_view_open - SELECT (READ_ONLY FALSE) or EXAMINE (TRUE) mailbox NAME of USER: reads the
 * current epoch's seals, establishes seals for messages older than the horizon (SETTLE_MS, from
 * [imap] settle_ms through ImapSessionConfig; <= 0 means 2000), reads flags. NULL with
 * NONEXISTENT, or STORE_ERROR_TEMPORARY when a quorum could not be had. The view keeps S (which
 * must outlive it); about 32 octets of memory a message. */
ImapView *imap_view_open(Store *s, const char *user, const char *name, gboolean read_only,
                         int settle_ms, GError **error);
void imap_view_free(ImapView **v);

Store *imap_view_store(const ImapView *v);
const char *imap_view_user(const ImapView *v);
const char *imap_view_stored_name(const ImapView *v);   /* for store_reader_open */
const char *imap_view_name(const ImapView *v);          /* the IMAP name */
gboolean imap_view_read_only(const ImapView *v);
guint32 imap_view_uidvalidity(const ImapView *v);
guint32 imap_view_uidnext(const ImapView *v);           /* above every UID given so far */
guint imap_view_count(const ImapView *v);               /* EXISTS */
/* imap_view_keywords - every keyword used in the mailbox (for FLAGS and PERMANENTFLAGS),
 * NULL-terminated, owned by the view (valid until its next call that changes anything) */
const char *const *imap_view_keywords(const ImapView *v);
/* imap_view_keywords_full - whether no new keyword can be created (PERMANENTFLAGS without \*) */
gboolean imap_view_keywords_full(const ImapView *v);

/* Per message, SEQ in 1..imap_view_count (outside: 0 / NULL). */
guint32 imap_view_uid(const ImapView *v, guint seq);
const StoreMsgId *imap_view_msgid(const ImapView *v, guint seq);
guint64 imap_view_size(const ImapView *v, guint seq);       /* RFC822.SIZE: stored octets */
/* imap_view_internaldate - INTERNALDATE in seconds since the Unix epoch: the time of the
 * message's TimeUUID (when delivery, APPEND or COPY began) */
gint64 imap_view_internaldate(const ImapView *v, guint seq);
guint imap_view_flags(const ImapView *v, guint seq);        /* IMAP_FLAG_* bits */
/* imap_view_msg_keywords - the message's keywords, NULL-terminated, owned by the view (valid
 * until its next call that changes anything) */
const char *const *imap_view_msg_keywords(const ImapView *v, guint seq);
/* imap_view_seq_of_uid - the sequence number of UID, 0 when no message has it */
guint imap_view_seq_of_uid(const ImapView *v, guint32 uid);
/* imap_view_seq_range - the messages with LO <= UID <= HI are seqs *FIRST..*LAST (UIDs ascend
 * with seqs); FALSE when there is none. For UID sets ("4:*" is LO 4, HI G_MAXUINT32; RFC 9051
 * says "n:*" includes the last message even when n is above its UID: the core handles that). */
gboolean imap_view_seq_range(const ImapView *v, guint32 lo, guint32 hi, guint *first, guint *last);

/* What changed since the view last told its core. */
typedef struct {
    GArray *expunged;       /* guint seqs, in the order to send "* n EXPUNGE" (each number as it
                               is when sent: later ones already account for earlier ones) */
    GArray *flags_changed;  /* guint seqs (numbers after the expunges) whose flags others changed:
                               send "* n FETCH (FLAGS ...)" (with UID when the core must) */
    guint exists;           /* imap_view_count after the change: send "* n EXISTS" when it grew
                               (or when expunges and new mail happened together and it differs
                               from the count the client last heard) */
    gboolean keywords_changed;   /* the mailbox's keyword list grew: send FLAGS again */
} ImapViewChanges;
void imap_view_changes_init(ImapViewChanges *c);
void imap_view_changes_clear(ImapViewChanges *c);

/* imap_view_sync - NOOP, IDLE's poll, CHECK, and after each command that may see changes
 * (RFC 9051 7.4.1 forbids EXPUNGE during FETCH/STORE/SEARCH: the core calls sync only where it
 * may send them): reads the index and the seals, establishes new seals (new mail), detects
 * messages removed by others (POP3 DELE, another session's EXPUNGE) and flag changes by others,
 * and applies them to the view; OUT (initialised) gets what to send. Errors: EPOCH_ENDED (send
 * * BYE, close: the view is unusable), STORE_ERROR_TEMPORARY (nothing changed; try again at the
 * next poll). */
gboolean imap_view_sync(ImapView *v, ImapViewChanges *out, GError **error);

typedef enum {
    IMAP_FLAGS_ADD,       /* +FLAGS */
    IMAP_FLAGS_REMOVE,    /* -FLAGS */
    IMAP_FLAGS_REPLACE,   /* FLAGS */
} ImapFlagsOp;
/* imap_view_store_flags - STORE on seqs SEQS[0..N): FLAGS (IMAP_FLAG_* bits) and KEYWORDS
 * (NULL-terminated or NULL) by OP, written at QUORUM. CHANGED (may be NULL) gets the seqs
 * whose flags changed (the core answers FETCH FLAGS for them unless .SILENT; the new flags are
 * imap_view_flags/imap_view_msg_keywords). READ_ONLY for an EXAMINEd view; LIMIT when a keyword
 * is longer than IMAP_KEYWORD_LEN_MAX or the mailbox would have more than IMAP_KEYWORDS_MAX. The
 * core also calls this for the implicit \Seen of FETCH BODY[]. */
gboolean imap_view_store_flags(ImapView *v, const guint *seqs, guint n, ImapFlagsOp op,
                               guint flags, const char *const *keywords, GArray *changed,
                               GError **error);

/* imap_view_expunge - EXPUNGE (SEQS NULL: every message with \Deleted) or UID EXPUNGE (SEQS[0..N):
 * those of them that have \Deleted; the core turns the UID set into seqs), and CLOSE. EXPUNGED
 * gets the seqs in the order to send "* n EXPUNGE" (as imap_view_sync's). READ_ONLY for an
 * EXAMINEd view. */
gboolean imap_view_expunge(ImapView *v, const guint *seqs, guint n, GArray *expunged,
                           GError **error);

/* imap_view_copy - COPY (MOVE FALSE) or MOVE (TRUE) seqs SEQS[0..N) into mailbox DEST (an IMAP
 * name; NONEXISTENT -> NO [TRYCREATE]). Each message is delivered again through a store writer
 * under a new id (its octets read and written: bodies are never shared between ids), with its
 * flags and keywords; INTERNALDATE becomes the copy's time. UIDs in DEST come from DEST's next
 * seal, so there is no COPYUID (*DEST_UIDVALIDITY is set, for the core's use). MOVE then removes
 * the sources and EXPUNGED (NULL for COPY) gets their seqs as imap_view_expunge's. MOVE on an
 * EXAMINEd view: READ_ONLY. A failure part-way leaves the copies made so far (RFC 9051 lets COPY
 * fail after some; the core answers NO). */
gboolean imap_view_copy(ImapView *v, const guint *seqs, guint n, const char *dest, gboolean move,
                        guint32 *dest_uidvalidity, GArray *expunged, GError **error);

/* ---- APPEND ---- */

typedef struct ImapAppend ImapAppend;
/* imap_append_begin - APPEND to mailbox NAME of USER (NONEXISTENT -> NO [TRYCREATE]). Then the
 * literal's octets, in chunks as they arrive (imap_append_write), then imap_append_commit with
 * the flags; imap_append_free at the end in any case (an uncommitted message is dropped). The
 * message goes through the store's write path (store_writer_*) under a new id. */
ImapAppend *imap_append_begin(Store *s, const char *user, const char *name, GError **error);
gboolean imap_append_write(ImapAppend *a, const void *data, gsize len, GError **error);
/* imap_append_commit - the message into the mailbox with FLAGS and KEYWORDS (as STORE's; LIMIT).
 * INTERNAL_DATE (the optional date-time argument, seconds; 0: none) is ignored: INTERNALDATE is
 * the time of the message's id. *UIDVALIDITY gets the mailbox's UIDVALIDITY; *UID the message's
 * UID, or 0: the UID comes from a seal established once the message is older than the horizon
 * (settle_ms, about 2 s), so APPENDUID cannot be given at once (the core then answers without
 * it, or waits and asks again with imap_append_uid). UID may be NULL. */
gboolean imap_append_commit(ImapAppend *a, guint flags, const char *const *keywords,
                            gint64 internal_date, guint32 *uidvalidity, guint32 *uid,
                            GError **error);
/* imap_append_id - the committed message's id */
const StoreMsgId *imap_append_id(const ImapAppend *a);
void imap_append_free(ImapAppend **a);

/* ---- message meta (ENVELOPE, BODYSTRUCTURE cache) ---- */

/* imap_view_meta_get - the cached meta blobs of seqs SEQS[0..N), in a few backend reads (about
 * one per thousand messages): OUT gets N entries, a GBytes* (the blob the core stored) or NULL
 * (none stored yet: the core computes it with src/imap/mime.h and stores it with
 * imap_view_meta_put). OUT should free with g_bytes_unref (its free func must accept NULL). The
 * blob's format is the core's; at most IMAP_META_MAX octets. */
#define IMAP_META_MAX (256 * 1024)
gboolean imap_view_meta_get(ImapView *v, const guint *seqs, guint n, GPtrArray *out,
                            GError **error);
gboolean imap_view_meta_put(ImapView *v, guint seq, GBytes *meta, GError **error);

/* imap_view_set_clock - for tests: the clock (µs since the Unix epoch) that horizons and new
 * mailboxes' UIDVALIDITY bases read; NULL: the real one */
void imap_view_set_clock(gint64 (*now_us)(void));

#endif
