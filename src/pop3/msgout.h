/*
 * msgout.h - a stored message as a POP3 multi-line response body, produced in bounded chunks.
 *
 * RFC 1939 section 3: every line starting with "." gets one more "." (byte-stuffing); the body ends
 * with CRLF "." CRLF, after a CRLF is added to a message whose last line has none. Section 7 (TOP):
 * the header, the blank line after it, then the first N lines of the body.
 *
 * Lines end at CRLF, a bare LF or a bare CR, and each goes out with CRLF (msgout.c says why): a
 * message as cassmail-smtpd stores it (CRLF-clean) goes out unchanged but for the stuffing; an
 * older one with bare CR or LF goes out CRLF-clean, so no client, however it splits lines, can
 * see a lone "." before the end (the response may then be longer than the "+OK n octets" and
 * LIST sizes, which count stored octets).
 *
 * The iterator reads straight from the fetched message (no stuffed copy of it is ever built): the
 * caller asks for up to MAX octets at a time, writes them out, and asks again.
 */
#ifndef CASSMAIL_POP3_MSGOUT_H
#define CASSMAIL_POP3_MSGOUT_H

#include <glib.h>

typedef struct {
    GBytes *msg;          /* owned reference; NULL when idle */
    const guint8 *data;
    gsize pos;            /* next octet of DATA to send */
    gsize end;            /* send DATA[0, END) */
    gboolean line_start;  /* POS is at the start of a line */
} Pop3MsgOut;

/* pop3_msgout_top_end - the length of the prefix of DATA that TOP sends for LINES body lines */
gsize pop3_msgout_top_end(const guint8 *data, gsize len, guint64 lines);

/* pop3_msgout_start - send MSG (a new reference is taken), whole, or only its first END octets
 * (END > length: whole) */
void pop3_msgout_start(Pop3MsgOut *m, GBytes *msg, gsize end);

/* pop3_msgout_next - append to OUT up to about MAX octets of the stuffed body (at most MAX + 5:
 * a stuffing dot and the terminator are never split); TRUE while more remains. After the
 * terminator the message reference is dropped. */
gboolean pop3_msgout_next(Pop3MsgOut *m, GString *out, gsize max);

/* pop3_msgout_active - whether a body is being sent */
gboolean pop3_msgout_active(const Pop3MsgOut *m);

/* pop3_msgout_clear - stop and drop the message reference (idempotent) */
void pop3_msgout_clear(Pop3MsgOut *m);

#endif
