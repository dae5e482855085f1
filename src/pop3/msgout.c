/*
 * msgout.c - byte-stuffed, chunked POP3 message bodies (RFC 1939 sections 3 and 7); see msgout.h.
 *
 * Lines end at LF. Stored messages use CRLF (SMTP DATA, unstuffed); a stray bare LF is sent as it
 * is, so that what a client retrieves is byte for byte what was stored.
 */
#include "pop3/msgout.h"

#include <string.h>

/* line_end - offset just past the LF ending the line at POS, or LEN when the last line has none */
static gsize
line_end(const guint8 *data, gsize len, gsize pos)
{
    const guint8 *nl = memchr(data + pos, '\n', len - pos);
    return nl ? (gsize)(nl - data) + 1 : len;
}

gsize
pop3_msgout_top_end(const guint8 *data, gsize len, guint64 lines)
{
    gsize pos = 0;
    /* The header ends with the first empty line ("" or "\r" before the LF); keep that line. */
    while (pos < len) {
        gsize next = line_end(data, len, pos);
        gsize n = next - pos;
        gboolean empty = (n == 1 && data[pos] == '\n') ||
                         (n == 2 && data[pos] == '\r' && data[pos + 1] == '\n');
        pos = next;
        if (empty)
            break;
    }
    for (guint64 i = 0; i < lines && pos < len; i++)
        pos = line_end(data, len, pos);
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
    while (m->pos < m->end && written < budget) {
        if (m->line_start && m->data[m->pos] == '.') {
            g_string_append_c(out, '.');
            written++;
        }
        gsize stop = line_end(m->data, m->end, m->pos);
        gsize room = budget > written ? budget - written : 1;
        if (stop - m->pos > room)
            stop = m->pos + room;
        g_string_append_len(out, (const char *)m->data + m->pos, (gssize)(stop - m->pos));
        written += stop - m->pos;
        m->pos = stop;
        m->line_start = m->data[stop - 1] == '\n';
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
