/*
 * session.h - the POP3 protocol core: one session, lines in, replies out, mail through the Store.
 *
 * Implements RFC 1939 (sections 3-7: AUTHORIZATION, TRANSACTION and UPDATE states; USER, PASS,
 * QUIT, STAT, LIST, RETR, DELE, NOOP, RSET, TOP, UIDL) and RFC 2449 (CAPA, response codes, the
 * 255-octet command line), with the [AUTH] and [SYS/TEMP] codes of RFC 3206, and STLS (RFC 2595
 * section 4). APOP is not offered: the store keeps only salted hashes, never a password APOP
 * could use.
 *
 * The core never touches a socket, a clock or a sleep. The one adapter (src/net/adapter.h,
 * through pop3_core below) and the unit tests drive it: it asks for a delay before a failed
 * login's reply (pop3_core.take_delay_ms) and hands RETR/TOP out in bounded chunks
 * (pop3_core.more).
 *
 * TLS and USER/PASS: STLS is offered (CAPA) and accepted in the AUTHORIZATION state when the
 * adapter can do TLS (cfg.stls) and the session is not encrypted yet; otherwise -ERR. After its
 * "+OK" every line fed is dropped unanswered until pop3_core.tls_started(), so nothing the
 * client pipelined behind STLS is taken as sent under TLS; TLS also makes the session forget a
 * name given with USER. USER/PASS are offered and accepted over TLS, or without TLS when
 * cfg.plaintext_auth (the adapter's reading of [pop3] allow_plaintext_auth for this peer);
 * otherwise USER is "-ERR [AUTH]" and CAPA lists no USER.
 *
 * A mailbox is "user" or "user<delimiter>mailbox" in USER (default inbox). Unknown users, unknown
 * mailboxes, missing and wrong passwords all fail at PASS with the same reply and the same cost.
 * There is no maildrop lock: another session may remove a message this one listed, which RETR
 * and TOP then report as gone.
 */
#ifndef CASSMAIL_POP3_SESSION_H
#define CASSMAIL_POP3_SESSION_H

#include <glib.h>

#include "store/store.h"
#include "util/proto.h"

/* RFC 2449 section 4: a command line is at most 255 octets. We count them without the CRLF. */
#define POP3_LINE_MAX 255

/* What a session is told: cassmail.conf and the peer, mapped by the adapter (src/net/adapter.h). */
typedef struct {
    guint batch_size;          /* index entries per store_index_page call */
    char mailbox_delimiter;    /* "pete|outbox" */
    guint login_delay_ms;      /* a failed PASS is answered after this long */
    guint max_errors;          /* bad commands and failed logins before the session is closed
                                * (0: no limit, as in SMTP) */
    gboolean plaintext_auth;   /* USER/PASS allowed before TLS (a loopback peer, or configured) */
    gboolean stls;             /* the adapter can start TLS: offer STLS (RFC 2595) */
} Pop3SessionConfig;

typedef enum {
    POP3_STATE_AUTHORIZATION,
    POP3_STATE_TRANSACTION,
    POP3_STATE_UPDATE,
    POP3_STATE_CLOSED,
} Pop3State;

/* What a session did, for the log line at its end. */
typedef struct {
    Pop3State state;
    const char *user;          /* NULL before a successful login */
    const char *mailbox;
    guint messages;            /* in the maildrop at login */
    guint64 octets;
    guint retrieved;           /* RETR completed */
    guint64 retrieved_octets;
    guint deleted;             /* removed from the store at QUIT */
    guint failed_logins;
    guint errors;
    gboolean tls;              /* the session runs over TLS (after STLS) */
} Pop3SessionStats;

typedef struct Pop3Session Pop3Session;

/* pop3_session_new - a session for PEER (for logs) on STORE; CFG is copied,
 * STORE and PEER are borrowed */
Pop3Session *pop3_session_new(const Pop3SessionConfig *cfg, Store *store, const char *peer);
void pop3_session_free(Pop3Session **s);

void pop3_session_stats(const Pop3Session *s, Pop3SessionStats *stats);

const char *pop3_state_name(Pop3State state);

/* pop3_core - this core behind the adapter (src/util/proto.h, src/net/adapter.h), and its only
 * entry points besides new, free and stats: greeting; feed (one command line: a trailing CRLF or
 * LF is ignored, NULs and lines the reader cut are refused; TRUE when the connection closes after
 * OUT); more (up to about MAX more octets of a RETR or TOP reply; when the store fails in the
 * middle of a body the session closes, ended says "body-failed", and nothing more may be sent);
 * take_delay_ms (a failed login's delay; reading it resets it), tls_pending/tls_started (STLS),
 * timeout (the autologout: a last -ERR, no UPDATE), ended (NULL until closed) */
extern const ProtoCore pop3_core;

#endif
