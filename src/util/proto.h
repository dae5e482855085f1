/*
 * proto.h - the protocol-core interface: what every core (SMTP, POP3, IMAP) offers the one
 * adapter that drives it (src/net/adapter.h, where the loop that calls these is described).
 * Types only: a core includes this and nothing of src/net. Each core implements ProtoCore
 * (smtp_core in src/smtp/session.c, pop3_core in src/pop3/session.c, imap_core in
 * src/imap/session.c); CORE is its session.
 *
 * What every core keeps alike — TLS on or being started, a failed login's delay — is a ProtoState
 * at the start of its session, so that the entries which need only it are served once, here:
 * take_delay_ms = proto_take_delay_ms, tls_pending = proto_tls_pending, and a core's tls_started
 * calls proto_tls_on before forgetting what its protocol says to forget.
 */
#ifndef CASSMAIL_PROTO_H
#define CASSMAIL_PROTO_H

#include <glib.h>

/* What the reader saw about the line it hands to a core. */
typedef enum {
    PROTO_LINE_OK,        /* a complete line, its line ending included */
    PROTO_LINE_TOO_LONG,  /* longer than the core's limit; its text was skipped and the line holds
                           * only its terminator ("\r\n", "\n", or "" at EOF) */
    PROTO_LINE_NUL,       /* a complete line that contains a NUL octet */
} ProtoLine;

/* The first member of every core's session. */
typedef struct {
    gboolean tls;           /* the connection runs over TLS */
    gboolean tls_pending;   /* yes to STARTTLS/STLS said, handshake not yet reported: lines fed
                             * meanwhile are dropped unanswered (RFC 3207 6, RFC 2595) */
    guint delay_ms;         /* a failed login: wait this long before writing the reply just made */
} ProtoState;

/* How the adapter drives one core. Optional entries may be NULL. */
typedef struct {
    /* what the protocol says of the replies and timers the adapter keeps for it */
    const char *name;           /* "smtp": the prefix of its log lines, [NAME] in cassmail.conf */
    const char *tls_verb;       /* "STARTTLS", "STLS": for logs */
    const char *busy_reply;     /* to a client over the listener's limits */
    const char *unavailable;    /* to a client when the store cannot be opened; a format taking
                                 * the hostname (%s) once, or none */
    gboolean tls_on_connect;    /* has a port with TLS from the first byte (RFC 8314) */
    int min_idle_s;             /* the least autologout its RFC allows (RFC 1939 3: 600 s, RFC
                                 * 9051 5.4: 1800 s); 0: none asked for */
    void (*greeting)(gpointer core, GString *out);
    /* one line with its ending; TRUE when the connection closes after OUT */
    gboolean (*feed)(gpointer core, const char *line, gsize len, ProtoLine status, GString *out);
    /* optional: in text, the complete lines at the start of BUF in place; octets used */
    gsize (*feed_text)(gpointer core, const char *buf, gsize len, gsize max, GString *out);
    /* optional: more of a long reply, about MAX octets; TRUE while more remains */
    gboolean (*more)(gpointer core, GString *out, gsize max);
    /* optional: how long to wait before writing the reply just made (reading it resets it);
     * proto_take_delay_ms */
    guint (*take_delay_ms)(gpointer core);
    /* the longest line (its ending included) the core takes next */
    gsize (*line_max)(gpointer core);
    /* optional: the next line is message text (the data timeout; never evicted) */
    gboolean (*in_text)(gpointer core);
    /* optional: octets of a literal the core takes next as raw data (IMAP's {N} and {N+}); 0: a
     * line. While it is non-zero the adapter hands raw octets to feed_literal, whatever they are
     * (line endings, NULs), with the data timeout; never evicted. */
    gsize (*literal)(gpointer core);
    /* optional: LEN octets (1 <= LEN <= literal()) of that literal; TRUE when the connection
     * closes after OUT */
    gboolean (*feed_literal)(gpointer core, const char *buf, gsize len, GString *out);
    /* optional: milliseconds until the core wants tick() if no input arrives before (0: never);
     * asked before each wait for a command line — not inside text or a literal — and again after
     * each tick (IMAP IDLE polls the store with it); ticks do not put off the idle timeout */
    guint (*tick_ms)(gpointer core);
    /* optional: that time passed without input; OUT is written and flushed at once */
    void (*tick)(gpointer core, GString *out);
    /* the core said yes to STARTTLS/STLS: the adapter flushes, drops its input, handshakes;
     * proto_tls_pending */
    gboolean (*tls_pending)(gpointer core);
    /* the handshake is done: proto_tls_on, then what the protocol forgets (RFC 3207 4.2, ...) */
    void (*tls_started)(gpointer core);
    /* no input within the timeout: the core's last words */
    void (*timeout)(gpointer core, GString *out);
    /* NULL while the session goes on, else why it ended ("quit", "too-many-errors", ...) */
    const char *(*ended)(gpointer core);
    /* optional: the session's id for logs */
    const char *(*id)(gpointer core);
    /* the core's fields of the session-end line, before and after end= ms= tls= */
    void (*log_fields)(gpointer core, GString *head, GString *tail);
    void (*free)(gpointer core);
} ProtoCore;

/* proto_take_delay_ms - CORE's delay_ms, reset to 0 (its take_delay_ms) */
guint proto_take_delay_ms(gpointer core);
/* proto_tls_pending - CORE's tls_pending (its tls_pending) */
gboolean proto_tls_pending(gpointer core);
/* proto_tls_on - the handshake is done: TLS on, no longer pending (a core's tls_started, first) */
void proto_tls_on(gpointer core);

#endif
