/*
 * msgout.c - byte-stuffed, chunked POP3 message bodies (RFC 1939 sections 3 and 7); see msgout.h.
 *
 * Line model (the same for RETR, TOP's line count and the stuffing): a line ends at CRLF, at a
 * bare LF, or at a bare CR (a CR not followed by LF), and every line goes out ending in CRLF,
 * with one more "." when it starts with ".". A message stored by cassmail-smtpd is CRLF-clean
 * (bare LF is stored as CRLF, bare CR refused), so it goes out byte for byte as stored, plus the
 * stuffing. A message stored by an older version (or put there by other means) may hold bare CR
 * or LF: whatever a client takes for a line end — CRLF only, LF, or CR as well — it sees the same
 * lines, none of them a lone "." before the real terminator. Sending such octets as they are
 * would let "x\r.\r\n" end the response early for a client that reads CR as a line end
 * (SMTP smuggling's POP3 twin), and stuffing after a bare CR without converting it would add a
 * "." to the text of a client that does not.
 */
#include "pop3/msgout.h"

#include <string.h>

/* line_break - where the line at POS ends within DATA[0, LEN): the offset of its terminator (LEN
 * when the last line has none) and, in *BLEN, the terminator's length: 2 for CRLF, 1 for a bare
 * LF or a bare CR, 0 for none */
static gsize
line_break(const guint8 *data, gsize len, gsize pos, gsize *blen)
{
    for (gsize i = pos; i < len; i++) {
        if (data[i] == '\n') {
            *blen = 1;
            return i;
        }
        if (data[i] == '\r') {
            *blen = i + 1 < len && data[i + 1] == '\n' ? 2 : 1;
            return i;
        }
    }
    *blen = 0;
    return len;
}

gsize
pop3_msgout_top_end(const guint8 *data, gsize len, guint64 lines)
{
    gsize pos = 0, blen;
    /* The header ends with the first empty line; keep that line. */
    while (pos < len) {
        gsize brk = line_break(data, len, pos, &blen);
        gboolean empty = brk == pos;
        pos = brk + blen;
        if (empty)
            break;
    }
    for (guint64 i = 0; i < lines && pos < len; i++) {
        gsize brk = line_break(data, len, pos, &blen);
        pos = brk + blen;
    }
    return pos;
}

void
pop3_msgout_start(Pop3MsgOut *m, GBytes *msg, gsize end)
{
    pop3_msgout_clear(m);
    gsize len = 0;
    m->msg = g_bytes_ref(msg);
    m->data = g_bytes_get_data(msg, &len);
    m->pos = 0;
    m->end = MIN(end, len);
    m->line_start = TRUE;
}

gboolean
pop3_msgout_active(const Pop3MsgOut *m)
{
    return m->msg != NULL;
}

gboolean
pop3_msgout_next(Pop3MsgOut *m, GString *out, gsize max)
{
    if (!m->msg)
        return FALSE;
    gsize budget = MAX(max, 1);
    gsize written = 0;
    /* Accounting for the MAX + 5 bound: a line's text never passes BUDGET; its CRLF goes out
     * only while WRITTEN < BUDGET (so at most one octet over); the terminator adds 3 after a
     * CRLF, 5 after text. */
    while (m->pos < m->end && written < budget) {
        if (m->line_start) {
            m->line_start = FALSE;
            if (m->data[m->pos] == '.') {
                g_string_append_c(out, '.');
                written++;
                continue;
            }
        }
        gsize blen;
        gsize brk = line_break(m->data, m->end, m->pos, &blen);
        gsize n = MIN(brk - m->pos, budget - written);
        g_string_append_len(out, (const char *)m->data + m->pos, (gssize)n);
        written += n;
        m->pos += n;
        if (m->pos == brk && blen > 0 && written < budget) {
            g_string_append_len(out, "\r\n", 2);
            written += 2;
            m->pos += blen;
            m->line_start = TRUE;
        }
    }
    if (m->pos < m->end)
        return TRUE;
    /* The last line gets its CRLF, then the terminating "." line. */
    g_string_append(out, m->line_start ? ".\r\n" : "\r\n.\r\n");
    pop3_msgout_clear(m);
    return FALSE;
}

void
pop3_msgout_clear(Pop3MsgOut *m)
{
    if (m->msg)
        g_bytes_unref(m->msg);
    memset(m, 0, sizeof *m);
}
