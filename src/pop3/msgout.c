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
 *
 * The message arrives in chunks (body parts) and a line, even a CRLF, may span two of them: the
 * line state (at its start, empty so far, a CR that ended the last chunk) carries over.
 */
#include "pop3/msgout.h"

#include <string.h>

void
pop3_msgout_start(Pop3MsgOut *m, StoreReader *reader, gboolean top, guint64 lines)
{
    pop3_msgout_clear(m);
    m->reader = reader;
    m->line_start = TRUE;
    m->line_empty = TRUE;
    m->top = top;
    m->in_header = TRUE;
    m->lines_left = lines;
}

gboolean
pop3_msgout_active(const Pop3MsgOut *m)
{
    return m->reader != NULL;
}

const GError *
pop3_msgout_failed(const Pop3MsgOut *m)
{
    return m->error;
}

/* msgout_line_done - a line just ended: whether TOP has sent all it should */
static gboolean
msgout_line_done(Pop3MsgOut *m)
{
    gboolean empty = m->line_empty;
    m->line_empty = TRUE;
    if (!m->top)
        return FALSE;
    if (m->in_header) {
        if (empty)   /* the header ends with the first empty line, which is sent */
            m->in_header = FALSE;
        return !m->in_header && m->lines_left == 0;
    }
    return --m->lines_left == 0;
}

/* msgout_fill - the next chunk in hand; FALSE at the end of the message or on a store error */
static gboolean
msgout_fill(Pop3MsgOut *m)
{
    while (m->pos == m->len) {
        g_clear_pointer(&m->chunk, g_bytes_unref);
        m->data = NULL;
        m->len = m->pos = 0;
        if (!store_reader_next(m->reader, &m->chunk, &m->error) || !m->chunk)
            return FALSE;
        m->data = g_bytes_get_data(m->chunk, &m->len);
    }
    return TRUE;
}

/* line_break - the offset of the first CR or LF in DATA[POS, LEN), or LEN */
static gsize
line_break(const guint8 *data, gsize len, gsize pos)
{
    for (gsize i = pos; i < len; i++)
        if (data[i] == '\n' || data[i] == '\r')
            return i;
    return len;
}

gboolean
pop3_msgout_next(Pop3MsgOut *m, GString *out, gsize max)
{
    if (!m->reader)
        return FALSE;
    gsize budget = MAX(max, 1);
    gsize written = 0;
    gboolean finished = FALSE;
    /* Accounting for the MAX + 5 bound: a line's text never passes BUDGET; its CRLF goes out
     * only while WRITTEN < BUDGET (so at most one octet over); the terminator adds 3 after a
     * CRLF, 5 after text. */
    while (written < budget) {
        if (!msgout_fill(m)) {
            finished = TRUE;
            break;
        }
        if (m->pending_cr) {
            m->pending_cr = FALSE;
            if (m->data[m->pos] == '\n') {   /* the LF of a CRLF split between chunks */
                m->pos++;
                continue;
            }
        }
        if (m->line_start) {
            m->line_start = FALSE;
            if (m->data[m->pos] == '.') {
                g_string_append_c(out, '.');
                written++;
                continue;
            }
        }
        gsize brk = line_break(m->data, m->len, m->pos);
        gsize n = MIN(brk - m->pos, budget - written);
        g_string_append_len(out, (const char *)m->data + m->pos, (gssize)n);
        written += n;
        m->pos += n;
        if (n)
            m->line_empty = FALSE;
        if (m->pos == brk && brk < m->len && written < budget) {
            gsize blen = 1;
            if (m->data[brk] == '\r') {
                if (brk + 1 < m->len)
                    blen = m->data[brk + 1] == '\n' ? 2 : 1;
                else
                    m->pending_cr = TRUE;   /* decided by the next chunk's first octet */
            }
            g_string_append_len(out, "\r\n", 2);
            written += 2;
            m->pos += blen;
            m->line_start = TRUE;
            if (msgout_line_done(m)) {
                finished = TRUE;
                break;
            }
        }
    }
    if (!finished)
        return TRUE;
    if (m->error) {
        /* the reader stops here; the error stays for pop3_msgout_failed */
        GError *e = g_steal_pointer(&m->error);
        pop3_msgout_clear(m);
        m->error = e;
        return FALSE;
    }
    /* The last line gets its CRLF, then the terminating "." line. */
    g_string_append(out, m->line_start ? ".\r\n" : "\r\n.\r\n");
    pop3_msgout_clear(m);
    return FALSE;
}

void
pop3_msgout_clear(Pop3MsgOut *m)
{
    store_reader_free(&m->reader);
    if (m->chunk)
        g_bytes_unref(m->chunk);
    g_clear_error(&m->error);
    memset(m, 0, sizeof *m);
}
