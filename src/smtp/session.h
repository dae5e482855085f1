/*
 * session.h - the SMTP protocol core: one session, lines in, replies out, mail into the Store.
 *
 * Implements RFC 5321 section 3 (the mail transaction, 3.3; address verification, 3.5; QUIT and
 * closing, 3.8), section 4.1 (HELO, EHLO, MAIL, RCPT, DATA, RSET, VRFY, HELP, NOOP, QUIT; 4.1.1.4
 * the end of mail data; 4.1.4 order of commands), 4.2 (reply codes), 4.4 (the Received: trace
 * field), 4.5.2 (dot transparency), 4.5.3.1 (size limits) and 4.5.3.2 (timeouts, with the
 * adapter's help); the EHLO extensions PIPELINING (RFC 2920), SIZE (RFC 1870), 8BITMIME (RFC 6152)
 * and ENHANCEDSTATUSCODES (RFC 2034, codes of RFC 3463); STARTTLS (RFC 3207) and AUTH PLAIN and
 * LOGIN (RFC 4954, RFC 4616) against the store's Credentials; message submission (RFC 6409 4.1,
 * 6.2, 8.1, 8.3). It accepts mail for existing users of its local domains, and relays other
 * recipients only through the configured smarthost, only for authenticated or trusted clients.
 *
 * The core never touches a socket, TLS or Thrift. The one adapter (src/net/adapter.h, through
 * smtp_core below), the unit tests and a fuzzer drive it: greeting, then each line read with
 * the limit smtp_core.line_max gives (in DATA, the complete lines already buffered go to
 * smtp_core.feed_text in place), replies flushed when no more input is buffered (RFC 2920).
 *
 * TLS and authentication (decided here, tested in test/unit/test-smtp-session.c and end to end
 * in test/e2e/test_tls_auth.py):
 *   - STARTTLS is offered in EHLO only when the adapter can do TLS (cfg.starttls) and the session
 *     is not yet encrypted; it is allowed after HELO/EHLO, outside a mail transaction (503 in
 *     one, 503 when TLS is already active, 502 when not offered). Its 220 is the last reply on
 *     plaintext: until smtp_core.tls_started() every line fed is dropped unanswered, so a
 *     command pipelined behind STARTTLS can never be taken as sent under TLS (RFC 3207 6).
 *     After the handshake the session forgets everything the client said (RFC 3207 4.2): HELO
 *     name, transaction, authentication; the client must say EHLO again.
 *   - AUTH PLAIN and AUTH LOGIN are offered after EHLO over TLS, or without TLS when
 *     cfg.plaintext_auth (the adapter's reading of [smtp] allow_plaintext_auth for this peer);
 *     asked for anyway they get "538 5.7.11". Success is "235 2.7.0", bad credentials
 *     "535 5.7.8" (counted as an error, so max_errors bounds guessing), a store failure
 *     "454 4.7.0", a cancelled exchange ("*") or bad base64 "501". One AUTH per session (503 after
 *     success), never inside a transaction. A user is named "pete" or "pete@<local domain>";
 *     a PLAIN authorization identity must be empty or the same user.
 *   - Relay policy (RFC 2505): a recipient outside the local domains is "554 5.7.1" unless a
 *     smarthost is configured (cfg.relay, [relay] smarthost) AND the client authenticated or its
 *     address is in [relay] trusted_networks (cfg.relay_trusted) — no open relay in any
 *     combination. An unauthenticated client may give any sender (this is the domains' inbound
 *     MX, as in the paper). An authenticated client may give only its own address,
 *     user@<a local domain>: anything else, <> included, is "553 5.7.1" at MAIL — a login must
 *     not let one user write as another, nor put mail in another user's outbox.
 *   - Relaying (src/relay/relay.h): at the first non-local RCPT of a transaction the core opens a
 *     session with the smarthost (up to MAIL FROM with the client's sender) and forwards each
 *     non-local RCPT, answering the client with the smarthost's verdict (its 4xx/5xx and text;
 *     no answer at all — down, timed out — is "451 4.4.1" for that RCPT, and later non-local
 *     RCPTs of the transaction get the same without another attempt). Local recipients are
 *     looked up as before. At DATA the smarthost gets DATA too (its refusal refuses our DATA);
 *     the text goes to both the store (parts, unreferenced) and the smarthost as it arrives.
 *     At the end of the text, in this order: (1) the smarthost's final reply — only a 2xx goes
 *     on, anything else is passed to the client and nothing is committed; (2) one
 *     store_writer_commit of every local inbox and the sender's outbox copy; (3) 250. A text
 *     that cannot be accepted (size, NUL, bare CR, long line) closes the smarthost connection
 *     inside DATA, so the smarthost drops it. Why this order: see cassmail-smtpd(8), "Relaying".
 *   - Submission (cfg.submission, RFC 6409): MAIL needs AUTH first ("530 5.7.0"); the adapter
 *     offers AUTH without TLS only to loopback clients. A message without a Date: or
 *     Message-ID: header field gets one (Message-ID: <TIMEUUID@hostname>), inserted where its
 *     header section ends.
 *   - The sender's outbox copy (cfg.outbox_copy, [smtp] outbox_copy): by default only a client
 *     that authenticated gets one, in its own outbox (its sender address is checked above); an
 *     unauthenticated MAIL FROM naming a local user stores nothing there, since anyone can write
 *     that address. "local" copies for every local sender, proven or not (the paper's design);
 *     "never" copies for nobody.
 *
 * Stored message: exactly three lines of our Received: field, then the DATA text dot-unstuffed
 * with every line ending in CRLF (a bare LF becomes CRLF; a bare CR is refused, below), so a
 * stored message never holds a CR or an LF outside a CRLF:
 *
 *     Received: from HELO-NAME (PEER)\r\n
 *     \tby HOSTNAME (CassMail) with ESMTP id MSGID;\r\n
 *     \tDAY, DD MON YYYY HH:MM:SS +ZZZZ\r\n
 *     <the client's text>
 *
 * ("with SMTP" after HELO; "ESMTPS", "ESMTPA" or "ESMTPSA" over TLS and after AUTH, RFC 3848;
 * MSGID is the message's TimeUUID, minted at DATA with store_msgid_new: the id it is stored under
 * and the one "250 2.0.0 Ok: queued as MSGID" names — one message, one id).
 * Whoever needs the client's octets back drops the first three lines — smtp_received_strip().
 *
 * Text-line and message policies (decided here, tested in test/unit/test-smtp-session.c and
 * test/e2e/test_smuggling.py) — like Postfix 3.9's smtpd_forbid_bare_newline = normalize:
 *   - the text ends only at a line that is exactly "." CRLF and follows a line that really
 *     ended in CRLF (for an empty message: the DATA command's own CRLF). Every other "." line is
 *     text: after a bare LF ("\n.\r\n", "\n.\n"), before a bare LF or CR ("\r\n.\n",
 *     "\r\n.\r"), after an over-long line that the reader skipped to a bare LF, after a bare CR
 *     ("\r.\r\n" is one line holding a bare CR). However the octets were split across TCP reads,
 *     TLS records or pipelined batches, the lines are the same (the reader reassembles them), so
 *     no server that reads the end of DATA another way can smuggle a second message, with an
 *     envelope of the attacker's choosing, past us or through us (SMTP smuggling, Dec 2023);
 *   - a bare LF ends a text line, which is stored with CRLF (MUAs and scripts send it, and it is
 *     unambiguous once it can never end the text);
 *   - a bare CR (a CR not followed by LF) refuses the message: "554 5.6.0" after its end,
 *     nothing stored, the session goes on. RFC 5321 2.3.8 and RFC 5322 2.3 forbid it, legitimate
 *     text mail does not carry it (binary needs BINARYMIME, which we do not offer), and no single
 *     reading of it is safe: POP3 clients and MUAs differ on whether it ends a line, which is
 *     what the "\r.\r\n" and "\r\n.\r" variants exploit; turning it into CRLF would invent line
 *     breaks (and header fields) the sender's other readers never saw, dropping it would join
 *     words. Refusing keeps every stored message CRLF-clean;
 *   - a text line that is not the end and begins with "." loses that dot (RFC 5321 4.5.2);
 *   - a text line over 1000 octets (CRLF included, the transparency dot not counted, RFC 5321
 *     4.5.3.1.6) is skipped by the reader; the message is refused after its end with
 *     "500 5.6.0" and nothing is stored — one answer per message;
 *   - text over max_message_size is counted but not kept; "552 5.3.4" after the end;
 *   - a text line with a NUL octet: "554 5.6.0" after the end, nothing stored.
 */
#ifndef CASSMAIL_SMTP_SESSION_H
#define CASSMAIL_SMTP_SESSION_H

#include <glib.h>

#include "relay/relay.h"
#include "store/store.h"
#include "util/proto.h"

/* RFC 5321 4.5.3.1.4: a command line, CRLF included. */
#define SMTP_COMMAND_LINE_MAX 512
/* RFC 5321 4.5.3.1.6: a text line, CRLF included, not counting a transparency dot... */
#define SMTP_TEXT_LINE_MAX 1000
/* ...so the reader must allow one octet more for that dot. */
#define SMTP_TEXT_READ_MAX (SMTP_TEXT_LINE_MAX + 1)
/* RFC 4954 section 4: a client's response line in an AUTH exchange, CRLF included. */
#define SMTP_AUTH_LINE_MAX 12288
/* Lines of our Received: field at the start of every stored message. */
#define SMTP_RECEIVED_LINES 3

/* [smtp] outbox_copy: which senders get a copy of their message in their own outbox. Zero is the
 * safe default, so settings made by hand (tests, fuzzers) get it too. */
typedef enum {
    SMTP_OUTBOX_AUTHENTICATED,   /* only a client that logged in (AUTH) as that user, sending from
                                  * its own address (the default) */
    SMTP_OUTBOX_LOCAL,           /* any envelope sender that is a local user, proven or not (the
                                  * paper's design) */
    SMTP_OUTBOX_NEVER,           /* no outbox copies */
} SmtpOutboxCopy;

/* What a session is told: cassmail.conf and the peer, mapped by the adapter (src/net/adapter.h). */
typedef struct {
    const char *hostname;            /* borrowed: greeting, Received:, 221 */
    char *const *domains;            /* borrowed, NULL-terminated: the local domains */
    gsize max_message_size;          /* octets of text (after unstuffing, CRLF line ends) */
    guint max_recipients;            /* distinct accepted recipients per transaction */
    guint max_errors;                /* bad commands before 421 and close (0: no limit) */
    const char *const *extensions;   /* borrowed, NULL-terminated or NULL: more EHLO keywords */
    gboolean starttls;               /* the adapter can start TLS: offer STARTTLS (RFC 3207) */
    gboolean plaintext_auth;         /* offer AUTH (RFC 4954) before TLS too */
    SmtpOutboxCopy outbox_copy;      /* who gets the sent copy in user:outbox (0: authenticated) */
    const RelayConfig *relay;        /* borrowed: the smarthost; NULL: non-local recipients are
                                      * refused for everyone */
    gboolean relay_trusted;          /* the peer is in [relay] trusted_networks: may relay
                                      * without AUTH */
    gboolean submission;             /* RFC 6409: AUTH before MAIL; Date:, Message-ID: added */
} SmtpSessionConfig;

typedef enum {
    SMTP_STATE_INIT,     /* greeted, no HELO/EHLO yet */
    SMTP_STATE_READY,    /* after HELO/EHLO, RSET or a finished transaction */
    SMTP_STATE_MAIL,     /* MAIL accepted, no recipient yet */
    SMTP_STATE_RCPT,     /* at least one recipient accepted */
    SMTP_STATE_DATA,     /* reading message text */
    SMTP_STATE_CLOSED,   /* after QUIT, a timeout or too many errors */
} SmtpState;

typedef struct {
    SmtpState state;
    const char *helo;          /* NULL before HELO/EHLO; owned by the session */
    const char *id;            /* the session id of Received: lines and logs; owned */
    guint accepted;            /* messages stored */
    guint64 accepted_octets;   /* their stored size */
    guint rejected;            /* transactions refused or failed at the end of DATA */
    guint relayed;             /* messages the smarthost accepted */
    guint errors;              /* bad commands (syntax, sequence, unknown, failed AUTH) */
    gboolean tls;              /* the session runs over TLS (after STARTTLS) */
    const char *auth_user;     /* the authenticated user, NULL when none; owned by the session */
} SmtpSessionStats;

typedef struct SmtpSession SmtpSession;

/* smtp_session_new - a session for PEER (an address, for the Received: field and logs); CFG is
 * copied, the strings it points to are borrowed; STORE and PEER are borrowed */
SmtpSession *smtp_session_new(const SmtpSessionConfig *cfg, Store *store, const char *peer);
/* smtp_session_free - free *S (a transaction in progress is dropped) and set it to NULL */
void smtp_session_free(SmtpSession **s);

/* smtp_session_stats - counters for the adapter's end-of-session log line, built when asked */
void smtp_session_stats(const SmtpSession *s, SmtpSessionStats *stats);

/* smtp_state_name - "init", "ready", ... for logs */
const char *smtp_state_name(SmtpState state);

/* smtp_received_strip - the client's text inside stored message MSG: what follows our
 * SMTP_RECEIVED_LINES lines, or NULL when MSG does not start with our field. */
const char *smtp_received_strip(const char *msg, gsize len, gsize *text_len);

/* smtp_core - this core behind the adapter (src/util/proto.h, src/net/adapter.h), and its only
 * entry points besides new, free and stats: greeting (220); feed (one line of LEN octets
 * including its line ending, STATUS from the reader; any reply appended to OUT; TRUE when the
 * connection closes after OUT); feed_text (the DATA fast path: in DATA, every complete text line
 * at the start of BUF, LEN octets read in place from the adapter's buffer, is handled exactly as
 * feed would handle it, the lines stored in runs rather than one by one. It stops after the end
 * of the text (what follows is commands: the state is READY again and OUT holds the reply),
 * before an incomplete last line and before a line longer than MAX (line_max): those the adapter
 * reads with its line reader and feeds to feed. It returns the octets consumed, 0 outside DATA or
 * when the first line is such a line. The lines are the reader's either way, so neither the
 * store's octets nor the end of the text depend on how the input was split into reads);
 * line_max (SMTP_TEXT_READ_MAX in DATA, SMTP_AUTH_LINE_MAX in AUTH, else SMTP_COMMAND_LINE_MAX),
 * in_text (DATA), tls_pending/tls_started (STARTTLS), timeout (421 4.4.2 and closed) */
extern const ProtoCore smtp_core;

#endif
