/*
 * fuzz-conn.c - libFuzzer harness for the bounded line reader (src/net/conn.h).
 *
 * The input's first two octets are parameters, the rest is what a client sends:
 *   octet 0, bit 0: how the octets arrive — 0: from a memory file (memfd), all at once and then
 *                   EOF; 1: through a socketpair, written by a thread in pieces whose sizes come
 *                   from the input, so lines arrive split at arbitrary points;
 *   octet 0, bit 1: after a line that starts with "STARTTLS", drop buffered input
 *                   (net_conn_discard_input), as the SMTP adapter does before a TLS handshake;
 *   octet 0, bits 2-7 and octet 1: the sequence of line limits (MAX) passed to each read, from 1
 *                   to a little over NET_CONN_LINE_MAX (which the reader clamps).
 * Each line read is echoed through the buffered writer into /dev/null. A line that ends in an
 * IMAP literal's announcement, "{N}" or "{N+}" (N of at most six digits), is followed by N raw
 * octets taken as the adapter takes them (net_conn_read_more, net_conn_peek, net_conn_consume,
 * in pieces of whatever the buffer holds): they must be the input's next N octets, whatever they
 * are, and the line reader resumes right after them.
 *
 * The oracle replays the reader's contract (conn.h) against the input:
 *   OK        the next octets of the input up to and including an LF, at most MAX, no NUL;
 *   NUL       the same with a NUL among them;
 *   TOO_LONG  the input's next line (through its LF, or to the end) was longer than MAX allows;
 *             LINE is how it ended: "\r\n", "\n", or empty when it ran to the end of the
 *             input; the reader resumes after its LF;
 *   EOF       the rest of the input, shorter than MAX and without an LF; EOF again afterwards;
 *   TIMEOUT / ERROR never happen here (every read may wait as long as it likes).
 * After a discard, the reader resumes exactly net_conn_pending() octets further on.
 * Any difference aborts.
 *
 *   make fuzz FUZZ_SECONDS=300       (build/fuzz/fuzz-conn, seeds in test/fuzz/corpus/conn)
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/conn.h"

typedef struct {
    int fd;
    const uint8_t *data;
    size_t size;
    guint seed;
} FuzzWriter;

/* fuzz_writer - the client: send the octets in pieces of 1..~1500, then shut the socket */
static void *
fuzz_writer(void *arg)
{
    FuzzWriter *w = arg;
    size_t pos = 0;
    guint seed = w->seed;
    while (pos < w->size) {
        seed = seed * 1103515245u + 12345u;
        size_t piece = MIN(w->size - pos, 1 + (seed >> 16) % 1500);
        ssize_t n = write(w->fd, w->data + pos, piece);
        if (n <= 0)
            break;
        pos += (size_t)n;
    }
    shutdown(w->fd, SHUT_WR);
    return NULL;
}

/* fuzz_fail - report the broken promise and abort */
static void
fuzz_fail(const char *what, NetLineStatus r, gsize max, size_t pos, const GString *line)
{
    fprintf(stderr, "fuzz-conn: %s (status %s, max %zu, input offset %zu, line length %zu)\n",
            what, net_line_status_name(r), (size_t)max, pos, (size_t)line->len);
    abort();
}

/* fuzz_literal - N when LINE (without its line end) ends in "{N}" or "{N+}", else 0 */
static gsize
fuzz_literal(const GString *line)
{
    const char *end = line->str + line->len;
    if (line->len < 3 || end[-1] != '}')
        return 0;
    const char *p = end - 2;
    if (*p == '+')
        p--;
    const char *digits_end = p + 1;
    while (p >= line->str && g_ascii_isdigit(*p))
        p--;
    if (p < line->str || *p != '{' || digits_end - (p + 1) < 1 || digits_end - (p + 1) > 6)
        return 0;
    return (gsize)g_ascii_strtoull(p + 1, NULL, 10);
}

/* fuzz_max - the limit for read number I */
static gsize
fuzz_max(guint params, guint i)
{
    static const gsize special[] = {1, 2, 3, 255, 257, 512, 1001, NET_CONN_LINE_MAX,
                                    NET_CONN_LINE_MAX + 7};
    guint v = (params >> 2) * 31u + i * 17u;
    if (v % 5 == 0)
        return special[(v / 5) % G_N_ELEMENTS(special)];
    return 1 + v % 1200;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    guint params = (guint)data[0] | (guint)data[1] << 8;
    gboolean use_socket = params & 1, discard = params & 2;
    data += 2;
    size -= 2;

    int rfd = -1, peer = -1;
    pthread_t thread;
    FuzzWriter w = {0};
    if (use_socket) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
            abort();
        rfd = sv[0];
        peer = sv[1];
        w = (FuzzWriter){.fd = peer, .data = data, .size = size, .seed = params};
        if (pthread_create(&thread, NULL, fuzz_writer, &w) != 0)
            abort();
    } else {
        rfd = memfd_create("fuzz-conn", 0);
        if (rfd < 0 || (size && write(rfd, data, size) != (ssize_t)size) || lseek(rfd, 0, SEEK_SET) != 0)
            abort();
    }
    int wfd = open("/dev/null", O_WRONLY);
    if (wfd < 0)
        abort();

    NetConn *c = net_conn_new(rfd, wfd);
    GString *line = g_string_new(NULL);
    size_t pos = 0;
    for (guint i = 0;; i++) {
        gsize max = fuzz_max(params, i);
        gsize eff = CLAMP(max, 1, (gsize)NET_CONN_LINE_MAX);
        NetLineStatus r = net_conn_read_line(c, max, -1, line);
        const uint8_t *rest = data + pos;
        size_t left = size - pos;
        const uint8_t *lf = left ? memchr(rest, '\n', left) : NULL;
        size_t next = lf ? (size_t)(lf - rest) + 1 : left;   /* the next line's length */
        if (r == NET_LINE_OK || r == NET_LINE_NUL) {
            if (!lf || line->len != next || memcmp(line->str, rest, next) != 0)
                fuzz_fail("the line is not the input's next line", r, max, pos, line);
            if (next > eff)
                fuzz_fail("a line longer than MAX", r, max, pos, line);
            if ((memchr(line->str, '\0', line->len) != NULL) != (r == NET_LINE_NUL))
                fuzz_fail("NUL reported wrongly", r, max, pos, line);
            pos += next;
            net_conn_write(c, line->str, line->len);
            if (i % 3 == 0)
                net_conn_printf(c, "%u %s\r\n", i, net_line_status_name(r));
            net_line_chomp(line);
            if (discard && g_str_has_prefix(line->str, "STARTTLS")) {
                gsize pending = net_conn_pending(c);
                if (pending > size - pos)
                    fuzz_fail("more pending than the input holds", r, max, pos, line);
                net_conn_discard_input(c);
                if (net_conn_pending(c) != 0)
                    fuzz_fail("input still pending after a discard", r, max, pos, line);
                pos += pending;
            }
            /* An IMAP literal: raw octets, in the pieces the buffer holds, then lines again. */
            for (gsize want = fuzz_literal(line); want > 0;) {
                NetLineStatus m = net_conn_read_more(c, -1);
                if (m == NET_LINE_EOF) {
                    if (pos != size)
                        fuzz_fail("EOF inside a literal before the input's end", m, max, pos, line);
                    break;
                }
                gsize avail = 0;
                const char *buf = net_conn_peek(c, &avail);
                if (m != NET_LINE_OK || avail == 0)
                    fuzz_fail("no literal octets although the input has more", m, max, pos, line);
                gsize n = MIN(avail, want);
                if (n > size - pos || memcmp(buf, data + pos, n) != 0)
                    fuzz_fail("literal octets that are not the input's", m, max, pos, line);
                net_conn_consume(c, n);
                pos += n;
                want -= n;
            }
        } else if (r == NET_LINE_TOO_LONG) {
            const char *want = !lf ? "" : next >= 2 && rest[next - 2] == '\r' ? "\r\n" : "\n";
            if (line->len != strlen(want) || memcmp(line->str, want, line->len) != 0)
                fuzz_fail("an over-long line reported with the wrong ending", r, max, pos, line);
            if (lf ? next <= eff : left < eff)
                fuzz_fail("a line within MAX called too long", r, max, pos, line);
            pos += next;
        } else if (r == NET_LINE_EOF) {
            if (lf || left >= eff || line->len != left || memcmp(line->str, rest, left) != 0)
                fuzz_fail("EOF with something other than a short unfinished line", r, max, pos, line);
            pos = size;
            if (net_conn_read_line(c, max, -1, line) != NET_LINE_EOF || line->len != 0)
                fuzz_fail("EOF did not stick", r, max, pos, line);
            break;
        } else {
            fuzz_fail("an unexpected status", r, max, pos, line);
        }
        if (i > size + 2)
            fuzz_fail("more lines than octets", r, max, pos, line);
    }
    if (pos != size)
        fuzz_fail("input left unread", NET_LINE_EOF, 0, pos, line);
    net_conn_flush(c);
    net_conn_free(&c);
    g_string_free(line, TRUE);
    if (use_socket) {
        /* The writer may still be blocked if a discard left octets unread: close unblocks it. */
        shutdown(rfd, SHUT_RDWR);
        pthread_join(thread, NULL);
        close(peer);
    }
    close(rfd);
    close(wfd);
    return 0;
}
