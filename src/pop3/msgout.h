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
 * The iterator streams: it reads the message from a StoreReader a chunk (a body part) at a time
 * and never holds more than the chunk in hand; no stuffed copy is ever built. The caller asks for
 * up to MAX octets at a time, writes them out, and asks again.
 */
#ifndef CASSMAIL_POP3_MSGOUT_H
#define CASSMAIL_POP3_MSGOUT_H

#include <glib.h>

#include "store/store.h"

typedef struct {
    StoreReader *reader;  /* owned; NULL when idle */
    GBytes *chunk;        /* the chunk being sent (owned), NULL between chunks */
    const guint8 *data;
    gsize len;
    gsize pos;            /* next octet of DATA to send */
    gboolean line_start;  /* POS is at the start of a line */
    gboolean top;         /* TOP: stop after the header, its blank line and LINES_LEFT lines */
    gboolean in_header;
    guint64 lines_left;
    gboolean line_empty;  /* the current line has no text so far (TOP: the header's end) */
    gboolean pending_cr;  /* a chunk ended in a CR: an LF starting the next one is its CRLF */
    GError *error;        /* why the body stopped short (pop3_msgout_failed) */
} Pop3MsgOut;

/* pop3_msgout_start - send the message READER reads (the reader is taken over): whole, or for
 * TOP (TOP set) its header, the blank line and the first LINES lines of its body */
void pop3_msgout_start(Pop3MsgOut *m, StoreReader *reader, gboolean top, guint64 lines);

/* pop3_msgout_next - append to OUT up to about MAX octets of the stuffed body (at most MAX + 5:
 * a stuffing dot and the terminator are never split); TRUE while more remains. After the
 * terminator, or when the store fails mid-body (see pop3_msgout_failed), the reader is freed. */
gboolean pop3_msgout_next(Pop3MsgOut *m, GString *out, gsize max);

/* pop3_msgout_failed - after pop3_msgout_next returned FALSE: the store error that cut the body
 * short (owned by M, until the next start or clear), or NULL when it ended normally */
const GError *pop3_msgout_failed(const Pop3MsgOut *m);

/* pop3_msgout_active - whether a body is being sent */
gboolean pop3_msgout_active(const Pop3MsgOut *m);

/* pop3_msgout_clear - stop and free the reader (idempotent) */
void pop3_msgout_clear(Pop3MsgOut *m);

#endif
