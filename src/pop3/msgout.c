/*
 * msgout.c - byte-stuffed, chunked POP3 message bodies (RFC 1939 sections 3 and 7); see msgout.h.
 *
 * Lines end at LF. Stored messages use CRLF (SMTP DATA, unstuffed); a stray bare LF is sent as it
 * is, so that what a client retrieves is byte for byte what was stored. A line may span chunks:
 * the line state (at its start, its length so far, whether it began with CR) carries over.
 */
#include "pop3/msgout.h"

#include <string.h>

void
pop3_msgout_start(Pop3MsgOut *m, StoreReader *reader, gboolean top, guint64 lines)
{
    pop3_msgout_clear(m);
    m->reader = reader;
    m->line_start = TRUE;
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
    gboolean empty = m->line_len == 1 || (m->line_len == 2 && m->line_cr);
    m->line_len = 0;
    m->line_cr = FALSE;
    if (!m->top)
        return FALSE;
    if (m->in_header) {
        if (empty)
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

gboolean
pop3_msgout_next(Pop3MsgOut *m, GString *out, gsize max)
{
    if (!m->reader)
        return FALSE;
    gsize budget = MAX(max, 1);
    gsize written = 0;
    gboolean finished = FALSE;
    while (written < budget) {
        if (!msgout_fill(m)) {
            finished = TRUE;
            break;
        }
        if (m->line_start && m->data[m->pos] == '.') {
            g_string_append_c(out, '.');
            written++;
        }
        const guint8 *nl = memchr(m->data + m->pos, '\n', m->len - m->pos);
        gsize stop = nl ? (gsize)(nl - m->data) + 1 : m->len;
        gsize room = budget > written ? budget - written : 1;
        if (stop - m->pos > room)
            stop = m->pos + room;
        if (m->line_len == 0 && m->data[m->pos] == '\r')
            m->line_cr = TRUE;
        g_string_append_len(out, (const char *)m->data + m->pos, (gssize)(stop - m->pos));
        written += stop - m->pos;
        m->line_len += stop - m->pos;
        m->pos = stop;
        m->line_start = m->data[stop - 1] == '\n';
        if (m->line_start && msgout_line_done(m)) {
            finished = TRUE;
            break;
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
