/*
 * internal.h - what the files of the IMAP core (session.c, mailbox.c, fetch.c, search.c) share:
 * the session, a command being run, the response writers. Nothing outside them (and their unit
 * test) includes it.
 */
#ifndef CASSMAIL_IMAP_INTERNAL_H
#define CASSMAIL_IMAP_INTERNAL_H

#include <glib.h>

#include "imap/mime.h"
#include "imap/parse.h"
#include "imap/session.h"
#include "imap/view.h"

/* What a handler says about the command it ran. */
typedef enum {
    IMAP_DONE,   /* replied (OK or NO) */
    IMAP_BAD,    /* replied BAD: counts towards max_errors */
} ImapRc;

/* A command being run: its tag, its name ("FETCH", "UID FETCH"), its arguments. */
typedef struct {
    const char *tag;
    const char *name;
    gboolean uid;            /* the UID form */
    ImapParser p;            /* just after the command name */
} ImapCmd;

/* Long output handed out through more(): one FETCH at a time. */
typedef struct ImapFetch ImapFetch;

/* An APPEND whose message literal is arriving (mailbox.c). */
typedef struct {
    ImapAppend *append;      /* view.h's */
    guint flags;             /* IMAP_FLAG_* */
    GPtrArray *keywords;     /* NULL-terminated */
    guint64 size;            /* announced */
    GError *error;           /* the first failure: the rest is read and dropped */
    gboolean done;           /* the literal is complete; its command line's end comes next */
} ImapUpload;

struct ImapSession {
    ProtoState proto;         /* first: TLS, STARTTLS pending, a failed login's delay (proto.h) */
    ImapSessionConfig cfg;
    Store *store;
    const char *peer;
    ImapState state;
    gboolean rev2;            /* ENABLE IMAP4rev2 */
    char *user;               /* after login */
    const char *end_reason;   /* set when the state becomes LOGOUT */

    guint errors;
    guint failed_logins;
    guint commands;
    guint64 fetched_octets;
    guint appended;

    /* the command being gathered: lines and small literals (see parse.h) */
    GString *cmd;
    guint64 literal_left;     /* octets of the announced literal still to come */
    gboolean skipping;        /* the rest of this command is read and dropped ... */
    GString *skip_reply;      /* ... and this is its reply at its end */
    ImapUpload *append;       /* APPEND's message literal goes here */

    char *auth_tag;           /* AUTHENTICATE PLAIN waiting for the client's response */
    char *idle_tag;           /* IDLE until DONE */

    /* the selected mailbox */
    ImapView *view;
    char *mailbox;            /* its name as the client gave it (INBOX for inbox) */
    gboolean readonly;        /* EXAMINE */
    guint exists;             /* the message count the client last heard */

    ImapFetch *fetch;         /* a FETCH whose responses are still being handed out */
};

/* ---- responses (session.c) ---- */
void imap_tagged(GString *out, const char *tag, const char *status, const char *fmt, ...)
    G_GNUC_PRINTF(4, 5);
ImapRc imap_bad(const ImapCmd *c, GString *out, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
/* imap_append_astring - S as an atom when it is one, else a quoted string or a literal */
void imap_append_astring(GString *out, const char *s);
/* imap_temporary - whether a store error is worth retrying ([UNAVAILABLE] rather than NO) */
gboolean imap_temporary(const GError *e);
/* imap_store_failed - the tagged NO for error E of command C ([UNAVAILABLE] when temporary) */
void imap_store_failed(ImapSession *s, const ImapCmd *c, const GError *e, GString *out);
/* imap_sync - bring the selected mailbox up to date and send what changed (EXISTS, EXPUNGE,
 * FETCH FLAGS); never during FETCH, STORE or SEARCH (RFC 9051 7.4.1). An ended epoch ends the
 * session with * BYE. */
void imap_sync(ImapSession *s, GString *out);
/* imap_flags_append - "(\Seen ...)" of message I of the view */
void imap_flags_append(ImapSession *s, guint i, GString *out);
/* imap_set_of - the messages (indexes into the view) a sequence set names */
GArray *imap_set_of(ImapSession *s, GArray *ranges, gboolean uid);

/* A command's handler: its arguments are in C->p; it replies to OUT. */
typedef ImapRc ImapHandler(ImapSession *s, ImapCmd *c, GString *out);

/* ---- mailboxes (mailbox.c) ---- */
/* SELECT and EXAMINE; CREATE, DELETE and RENAME; SUBSCRIBE and UNSUBSCRIBE; LIST and LSUB;
 * STATUS; APPEND without its message literal; CLOSE and UNSELECT; EXPUNGE; STORE; COPY and MOVE */
ImapHandler imap_cmd_select, imap_cmd_manage, imap_cmd_subscribe, imap_cmd_list, imap_cmd_status,
    imap_cmd_append, imap_cmd_close, imap_cmd_expunge, imap_cmd_store, imap_cmd_copy;
/* imap_unselect - leave the selected mailbox (nothing expunged) */
void imap_unselect(ImapSession *s);
/* APPEND's message literal: whether the command gathered so far is an APPEND whose next literal
 * is the message; begin (checks, then "+" for a synchronizing literal, or a NO); the octets;
 * the end of the command (commit and reply); free */
gboolean imap_upload_starts(ImapSession *s);
ImapRc imap_upload_begin(ImapSession *s, guint64 n, gboolean plus, gboolean huge, GString *out);
void imap_upload_write(ImapSession *s, const char *buf, gsize len);
ImapRc imap_upload_finish(ImapSession *s, GString *out);
void imap_upload_free(ImapUpload **a);
/* the messages of the selected mailbox, 0 .. imap_msgs() - 1 (sequence number - 1) */
guint imap_msgs(const ImapSession *s);
guint32 imap_msg_uid(const ImapSession *s, guint i);
const StoreMsgId *imap_msg_id(const ImapSession *s, guint i);
guint64 imap_msg_size(const ImapSession *s, guint i);
guint imap_msg_flags(const ImapSession *s, guint i);
/* imap_msg_open - a reader of message I's octets */
gboolean imap_msg_open(const ImapSession *s, guint i, StoreReader **r, GError **error);

/* ---- FETCH (fetch.c) ---- */
ImapHandler imap_cmd_fetch;
/* imap_seen - set \Seen on the messages INDEXES (a GArray of guint) of the selected mailbox;
 * FALSE with ERROR when the store failed */
gboolean imap_seen(ImapSession *s, GArray *indexes, GError **error);
/* imap_msg_tree - the MIME tree of message I, streamed from the store (only its header when
 * WHOLE is FALSE); FALSE with ERROR when the store failed */
gboolean imap_msg_tree(ImapSession *s, guint i, gboolean whole, MimeTree **tree, GError **error);
/* imap_fetch_more - more of the FETCH in progress; TRUE while more remains */
gboolean imap_fetch_more(ImapSession *s, GString *out, gsize max);
void imap_fetch_free(ImapFetch **f);

/* ---- SEARCH (search.c) ---- */
ImapHandler imap_cmd_search;

#endif
