/*
 * session.h - the IMAP protocol core: one session, command lines and literals in, responses out,
 * mail through the Store and the IMAP view of it (src/imap/view.h: UIDs, flags, mailboxes).
 *
 * Implements RFC 9051 (IMAP4rev2) for clients of RFC 3501 (IMAP4rev1) too: the not-authenticated,
 * authenticated, selected and logout states (RFC 9051 section 3); CAPABILITY, NOOP, LOGOUT,
 * STARTTLS, AUTHENTICATE PLAIN (RFC 4616, with SASL-IR RFC 4959), LOGIN, ENABLE (RFC 5161),
 * NAMESPACE (RFC 2342), ID (RFC 2971), IDLE (RFC 2177), SELECT, EXAMINE, CREATE, DELETE, RENAME,
 * SUBSCRIBE, UNSUBSCRIBE, LIST (with SPECIAL-USE, RFC 6154), LSUB, STATUS, APPEND, CLOSE,
 * UNSELECT (RFC 3691), EXPUNGE, UID EXPUNGE and the COPYUID/APPENDUID codes (UIDPLUS, RFC 4315),
 * SEARCH with ESEARCH's RETURN (RFC 4731), FETCH, STORE, COPY, MOVE (RFC 6851), UID; literals
 * {N} and non-synchronizing {N+} (LITERAL+, RFC 7888).
 *
 * The core never touches a socket, a clock or a sleep. The one adapter (src/net/adapter.h,
 * through imap_core below) and the unit tests drive it:
 *   - line_max() says how long a command line may be; literal() how many raw octets it takes next
 *     (an announced literal), which the adapter hands to feed_literal() as they arrive. APPEND's
 *     message literal goes to the store as it arrives (never held whole); other literals are
 *     small (IMAP_LITERAL_MAX) and kept with the command.
 *   - more() hands out long responses (FETCH of bodies, large FETCH/SEARCH results) in bounded
 *     chunks, reading message bodies from the store a part at a time.
 *   - tick_ms()/tick(): while IDLE, the core asks to be woken every idle_poll_ms and then sends
 *     what changed in the selected mailbox.
 *   - take_delay_ms(): a failed login's delay before its reply.
 *
 * UIDPLUS: UID EXPUNGE is there; APPENDUID is answered when the view knows the new UID at once
 * (it usually does not: UIDs come from a seal cut after [imap] settle_ms), COPYUID never (the
 * same reason, docs/imap.md). Clients then find the new message by UIDNEXT/SEARCH, as RFC 4315
 * allows a server without the codes. \Recent is not kept: IMAP4rev1 sessions hear "0 RECENT".
 * IMAP4rev2 (after ENABLE) gets ESEARCH for every SEARCH, no RECENT/UNSEEN at SELECT, and the
 * LIST and CLOSED responses of RFC 9051 6.3.2.
 *
 * TLS: STARTTLS is offered (CAPABILITY) when the adapter can do TLS (cfg.starttls) and the session
 * is not encrypted yet. After its "OK" every line fed is dropped unanswered until
 * imap_core.tls_started(). LOGIN and AUTHENTICATE are allowed over TLS, or without it when
 * cfg.plaintext_auth; otherwise CAPABILITY says LOGINDISABLED and they are refused.
 */
#ifndef CASSMAIL_IMAP_SESSION_H
#define CASSMAIL_IMAP_SESSION_H

#include <glib.h>

#include "store/store.h"
#include "util/proto.h"

/* A command line outside literals, its CRLF included (RFC 9051 section 4 sets no limit; RFC 7162
 * section 4 asks servers to take at least 8192 octets). */
#define IMAP_LINE_MAX 8192
/* A literal other than APPEND's message (a mailbox name, a password, a search string). */
#define IMAP_LITERAL_MAX (64 * 1024)
/* A whole command with its small literals. */
#define IMAP_COMMAND_MAX (256 * 1024)

/* What a session is told: cassmail.conf and the peer, mapped by the adapter (src/net/adapter.h). */
typedef struct {
    guint login_delay_ms;      /* a failed LOGIN/AUTHENTICATE is answered after this long */
    guint max_errors;          /* BAD commands and failed logins before the session is closed
                                * (0: no limit) */
    guint64 max_message_size;  /* the largest APPEND ([smtp] max_message_size) */
    guint settle_ms;           /* [imap] settle_ms: how old a delivery is before it gets a UID */
    guint idle_poll_ms;        /* IDLE looks for changes this often */
    gboolean plaintext_auth;   /* LOGIN/AUTHENTICATE allowed before TLS (set by the adapter for
                                * this peer from [imap] allow_plaintext_auth) */
    gboolean starttls;         /* the adapter can start TLS: offer STARTTLS */
} ImapSessionConfig;

typedef enum {
    IMAP_STATE_NOT_AUTHENTICATED,
    IMAP_STATE_AUTHENTICATED,
    IMAP_STATE_SELECTED,
    IMAP_STATE_LOGOUT,
} ImapState;

typedef struct ImapSession ImapSession;

/* imap_session_new - a session for PEER (for logs) on STORE; IC is copied, STORE
 * and PEER are borrowed */
ImapSession *imap_session_new(const ImapSessionConfig *ic, Store *store, const char *peer);
void imap_session_free(ImapSession **s);

ImapState imap_session_state(const ImapSession *s);
const char *imap_state_name(ImapState state);

/* imap_core - this core behind the adapter (src/util/proto.h, src/net/adapter.h) */
extern const ProtoCore imap_core;

#endif
