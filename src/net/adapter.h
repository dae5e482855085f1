/*
 * adapter.h - the one server shape: a protocol core (SMTP, POP3, IMAP) behind one adapter
 * that owns everything a core must not touch.
 *
 * The adapter owns `main` (options, configuration, logging), the listener or inetd choice
 * (src/net/server.h), TLS (the context, STARTTLS/STLS, TLS on connect), the privilege drop
 * (src/util/privs.h), the session loop (reading lines with the core's limit and timeout, writing
 * its output, pipelining flushes, eviction holds), the Store each session opens, and the one
 * session-end log line, and maps the configuration to the settings of the store, the relay
 * client and each core. A server program is a core (ProtoCore, src/util/proto.h: how to drive
 * it, and what its protocol says of the replies and timers kept here) and a server entry
 * (AdapterServer: its program name, options, how a session of its core opens); its `main` is
 * adapter_main(). It listens on [NAME] listen of cassmail.conf (the core's name), offers
 * --tls-on-connect when the core's protocol has such a port, and -t SECONDS when its RFC asks
 * for a least autologout (min_idle_s, which also raises [limits] idle_timeout_s).
 *
 * How the adapter drives a core, for every connection:
 *
 *     core = open(run, store, peer)          the server maps its configuration to the core
 *     [TLS on connect: handshake, tls_started(core)]
 *     greeting(core, out)                    write OUT
 *     loop:
 *         literal(core) = N > 0:  feed_literal(core, octets, n, out) with n <= N octets, any
 *                         octets at all: what the read buffer holds, else what one read brings
 *                         (the data timeout; never evicted); then OUT as after feed, below.
 *                         The adapter never holds a whole literal: memory stays bounded.
 *         in_text(core)?  feed_text(core, buffered input, line_max, out): the complete lines
 *                         held in the read buffer, in place; consume, write OUT, loop
 *         read one line of at most line_max(core) octets (the idle timeout, or the data timeout
 *             while in_text; evictable only while waiting for a command outside text)
 *             between commands, tick_ms(core) = T > 0: a wait that lasts T without a line
 *             calls tick(core, out), writes and flushes OUT (IMAP IDLE's new-mail reports),
 *             and waits again; the idle timeout still counts from the start of the wait
 *         timeout: timeout(core, out); write OUT; stop
 *         close = feed(core, line, len, status, out)
 *         take_delay_ms(core): flush, sleep (a failed login), then write OUT
 *         while more(core, out, CHUNK): write and flush OUT (RETR: bounded memory)
 *         close or ended(core): flush, stop
 *         flush when no input is buffered (RFC 2920, RFC 2449 pipelining)
 *         tls_pending(core): flush, drop buffered input, handshake, tls_started(core) or stop
 *
 * A session is evictable (src/net/server.h) only while it waits for a command: from each line
 * read until its reply is written (a delivery waiting on the store included) it holds, so a
 * stored message always gets its 250 rather than an eviction the client would retry. A literal
 * holds too (the client would have to send its command again), and so does a tick.
 *
 * The optional entries a core leaves NULL change nothing: SMTP and POP3 set neither literal nor
 * tick_ms, IMAP both (its literals {N} and {N+}, RFC 9051 4.3 and RFC 7888; IDLE, RFC 2177).
 *
 * The session-end line, the same for every protocol (the core gives HEAD and TAIL fields):
 *
 *     NAME [ID] PEER: session end HEAD end=REASON ms=N tls=yes|no TAIL bytes_read=N
 *         columns_read=N max_frame=N vmhwm_kb=N
 *
 * REASON: quit, too-many-errors, body-failed (from the core), eof, eof-in-data (inside text or
 * a literal), read-error, write-error, idle-timeout, data-timeout (inside text or a literal),
 * tls-failed (from the adapter).
 */
#ifndef CASSMAIL_NET_ADAPTER_H
#define CASSMAIL_NET_ADAPTER_H

#include <glib.h>
#include <openssl/ssl.h>

#include "imap/session.h"
#include "net/conn.h"
#include "pop3/session.h"
#include "relay/relay.h"
#include "smtp/session.h"
#include "store/store.h"
#include "util/config.h"
#include "util/proto.h"

typedef struct AdapterRun AdapterRun;

/* One server program. */
typedef struct {
    const char *program;        /* "cassmail-smtpd": log ident and messages */
    const char *parameter;      /* "- CassMail SMTP server" (--help) */
    const char *summary;        /* --help text */
    GOptionEntry *options;      /* its own options, NULL-terminated, or NULL */
    /* optional: after the TLS context, before privileges are dropped; FALSE: exit 78 */
    gboolean (*prepare)(AdapterRun *run, GError **error);
    /* optional: the start-up log lines of a listener */
    void (*describe)(AdapterRun *run);
    /* optional: free what prepare made */
    void (*finish)(AdapterRun *run);
    /* a core session for PEER on STORE: the configuration mapped to the core's settings */
    gpointer (*open)(AdapterRun *run, Store *store, const char *peer);
    const ProtoCore *core;
} AdapterServer;

/* What every session of one server shares. */
struct AdapterRun {
    const AdapterServer *server;
    CassmailConfig *cfg;
    SSL_CTX *tls;               /* NULL without [tls] certificate and key */
    gboolean tls_on_connect;
    int idle_timeout_s;         /* between commands ([limits] idle_timeout_s, min_idle_s, -t) */
    int data_timeout_s;         /* in text ([limits] data_timeout_s) */
    gpointer data;              /* the server's own, set by prepare */
};

/* cassmail.conf mapped to the settings of each layer, here and nowhere else: the layers know
 * their own settings structs, not CassmailConfig. Strings are borrowed from the configuration. */

/* adapter_store_open - the Cassandra store of CFG's [cassandra] and [store] (for every program
 * that reads the store, cassmail-admin included) */
Store *adapter_store_open(const CassmailConfig *cfg, GError **error);
/* adapter_relay_config - [relay] for the smarthost client; the caller adds the password it read
 * and the TLS context (relay_tls_context) */
void adapter_relay_config(const CassmailConfig *cfg, RelayConfig *rc);
/* adapter_smtp_plaintext - when SMTP AUTH may go without TLS: [smtp] allow_plaintext_auth, and
 * in submission (RFC 6409 4.3, RFC 8314 3) from loopback peers at most */
ConfigPlaintextAuth adapter_smtp_plaintext(const CassmailConfig *cfg, gboolean submission);
/* adapter_smtp_config - an SMTP session's settings for PEER (SUBMISSION: RFC 6409 mode; no
 * relay: the caller sets sc->relay) */
void adapter_smtp_config(const AdapterRun *run, const char *peer, gboolean submission,
                         SmtpSessionConfig *sc);
/* adapter_pop3_config - a POP3 session's settings for PEER */
void adapter_pop3_config(const AdapterRun *run, const char *peer, Pop3SessionConfig *pc);
/* adapter_imap_config - an IMAP session's settings for PEER */
void adapter_imap_config(const AdapterRun *run, const char *peer, ImapSessionConfig *ic);

/* adapter_main - the whole program for SERVER: options, configuration, listener or inetd,
 * TLS, privilege drop, sessions until SIGTERM; the exit status (64 usage, 69 unavailable,
 * 77 permissions, 78 configuration) */
int adapter_main(const AdapterServer *server, int argc, char **argv);

/* adapter_run_session - one session of RUN's server for PEER on CONN, with STORE (the caller's,
 * left open): open, TLS on connect, the greeting, the loop above, the session-end line. What
 * adapter_main's sessions run once their store is open; unit tests drive a core through it. */
void adapter_run_session(AdapterRun *run, NetConn *conn, Store *store, const char *peer);

#endif
