/*
 * relay.h - the SMTP client that hands non-local recipients to the smarthost ([relay]).
 *
 * CassMail does not deliver to other domains itself (no queue, no MX lookup, no retries, no
 * bounces): an MTA made for that — Postfix, usually on the same machine or network — takes the
 * message, and the SMTP core answers its client only once the smarthost has taken
 * responsibility. The core drives one Relay per mail transaction, in step with its own client:
 *
 *     r = relay_open(cfg, sender, body8, &reply)   connect, EHLO, STARTTLS and AUTH as
 *                                                   configured, MAIL FROM (at the first
 *                                                   non-local RCPT)
 *     relay_rcpt(r, address, &reply)               RCPT TO; the reply is the smarthost's verdict
 *     relay_data(r, &reply)                        DATA (354 expected)
 *     relay_write(r, octets, len)                  the message text as it arrives (CRLF lines;
 *                                                   dot-stuffed here, RFC 5321 4.5.2)
 *     relay_end(r, &reply)                         "." and the smarthost's final reply: 250 is
 *                                                   the moment it took responsibility
 *     relay_free(&r)                               QUIT after relay_end; before it, the
 *                                                   connection is closed inside DATA, so the
 *                                                   smarthost discards the message
 *
 * Every wait has a deadline ([relay] connect_timeout_s for the connection, timeout_s for each
 * reply, the final one included); reply lines are at most RELAY_LINE_MAX octets and a reply at
 * most RELAY_REPLY_LINES lines; what is written is buffered up to RELAY_BUFFER octets, so memory
 * stays bounded whatever the message's size and whatever the smarthost sends. A smarthost that
 * stalls, closes or speaks nonsense makes the call fail (reply code 0), never hang.
 *
 * TLS towards the smarthost: STARTTLS (RFC 3207) when [relay] starttls says so, TLS 1.2 or newer;
 * with tls_verify the chain is checked against tls_ca_file (or the system's CAs) and the
 * certificate must name the smarthost's host (its DNS name, or its address when given as one).
 * AUTH PLAIN (RFC 4954, 4616) with [relay] auth_user and the password file's first line; the
 * password is sent only over TLS or to a smarthost on a loopback address.
 */
#ifndef CASSMAIL_RELAY_H
#define CASSMAIL_RELAY_H

#include <glib.h>
#include <openssl/ssl.h>

/* The longest reply line accepted from the smarthost, CRLF included (RFC 5321 4.5.3.1.5 says
 * 512; servers send longer texts, so a little slack). */
#define RELAY_LINE_MAX 2048
/* The most lines one reply may have (an EHLO reply has one per extension). */
#define RELAY_REPLY_LINES 64
/* Octets of message text held before they are written to the smarthost. */
#define RELAY_BUFFER 65536

/* [relay] starttls: whether the client uses STARTTLS towards the smarthost (RFC 3207). */
typedef enum {
    RELAY_TLS_OPPORTUNISTIC,        /* when the smarthost offers it (the default) */
    RELAY_TLS_NONE,                 /* never (a smarthost on loopback or a private link) */
    RELAY_TLS_REQUIRED,             /* no mail goes out without it */
} RelayTls;

/* What the smarthost client needs ([relay] of cassmail.conf, mapped by the adapter,
 * src/net/adapter.h); strings borrowed. */
typedef struct {
    const char *smarthost;          /* "host:port" (host may be [IPv6] or a name) */
    const char *helo;               /* our name in EHLO */
    RelayTls starttls;
    gboolean tls_verify;
    const char *tls_ca_file;        /* PEM CA certificates for tls_verify; NULL: the system's */
    SSL_CTX *tls;                   /* borrowed, from relay_tls_context (NULL: starttls none) */
    const char *auth_user;          /* NULL: no AUTH */
    const char *auth_password;
    int connect_timeout_ms;
    int timeout_ms;
} RelayConfig;

/* A reply, or why there is none. */
typedef struct {
    int code;      /* the smarthost's reply code; 0: no reply (could not connect, timed out,
                    * TLS or AUTH failed, protocol error) — TEXT then says what happened */
    char *text;    /* the reply's last line after "NNN " or "NNN-" (with any enhanced status
                    * code), or our description of the failure */
} RelayReply;

typedef struct Relay Relay;

/* relay_tls_context - the client TLS context towards the smarthost RC names: TLS 1.2 or newer,
 * with tls_verify the peer checked against tls_ca_file (or the system's CAs). Made at start-up,
 * before privileges are dropped (the CA file may be readable by root alone). NULL without error
 * when starttls is RELAY_TLS_NONE or there is no smarthost; NULL and ERROR when the CA file cannot
 * be loaded. Free with SSL_CTX_free. */
SSL_CTX *relay_tls_context(const RelayConfig *rc, GError **error);

/* relay_password_load - the first line of PATH (read it before dropping privileges); NULL and
 * ERROR when it cannot be read or is empty. Wipe with OPENSSL_cleanse before freeing. */
char *relay_password_load(const char *path, GError **error);

/* relay_open - a session with the smarthost up to its answer to MAIL FROM:<SENDER> (BODY8:
 * BODY=8BITMIME when the smarthost offers it). NULL when it failed or MAIL was refused: REPLY
 * says how (code 0, or the smarthost's 4xx/5xx to MAIL). */
Relay *relay_open(const RelayConfig *cfg, const char *sender, gboolean body8, RelayReply *reply);
/* relay_rcpt - RCPT TO:<ADDRESS>; TRUE when the smarthost accepted it (2xx) */
gboolean relay_rcpt(Relay *r, const char *address, RelayReply *reply);
/* relay_data - DATA; TRUE on 354 */
gboolean relay_data(Relay *r, RelayReply *reply);
/* relay_write - LEN octets of message text (CRLF-ended lines, maybe split anywhere); FALSE once
 * the smarthost's connection failed (then every later call fails) */
gboolean relay_write(Relay *r, const char *data, gsize len);
/* relay_end - the end of the text ("." CRLF) and the smarthost's final reply; TRUE on 2xx */
gboolean relay_end(Relay *r, RelayReply *reply);
/* relay_free - QUIT (after relay_end) or close at once (before: the smarthost drops the
 * message), free *R and set it to NULL */
void relay_free(Relay **r);
/* relay_peer - "host:port" of the smarthost, for logs */
const char *relay_peer(const Relay *r);

/* relay_reply_clear - free REPLY's text and zero it */
void relay_reply_clear(RelayReply *reply);
/* relay_reply_describe - REPLY for a log line: "NNN text", or the text alone when the smarthost
 * gave no reply (code 0); freed by the caller */
char *relay_reply_describe(const RelayReply *reply);

/* relay_queue_id - the smarthost's queue id in a 250 text ("2.0.0 Ok: queued as 4Zx1Qb3kz"),
 * newly allocated; NULL when the text names none */
char *relay_queue_id(const char *text);

#endif
