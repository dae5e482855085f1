/*
 * fuzz-imap.c - libFuzzer harness for the IMAP protocol core (src/imap/session.h and the files
 * behind it: parse.c, mailbox.c, fetch.c, search.c, and view.c over the in-memory store).
 *
 * One input is one client's side of a session, handed over as the adapter hands it: while the
 * core asks for a literal (imap_core.literal) the next octets go to feed_literal in pieces whose
 * size varies with the input; otherwise a line up to LF (a line over line_max is handed over as
 * TOO_LONG with only its terminator, one with a NUL as NUL); an unfinished last line is dropped
 * (EOF). Long responses are drained with more() in chunks whose size varies too. Between
 * commands the harness may play IDLE's timer (tick) when the core asks for one.
 *
 * The in-memory store holds user pete (password "secret") with messages in inbox (plain,
 * multipart, nested message/rfc822, one with bare CR and LF, one of 3000 octets) and outbox, a
 * mailbox "Work/Projects", and anne without a password. The view's clock runs an hour ahead, so
 * every message has its UID at once. The store is made again for every input (sessions change
 * it: APPEND, COPY, EXPUNGE, CREATE, DELETE).
 *
 * An input that starts with 0xff uses its second octet to make the next 0..7 store operations
 * fail and its third to change the configuration (plaintext login refused, STARTTLS offered, a
 * low error limit, a small APPEND limit, small store chunks); the session text follows.
 *
 * Checks beyond the sanitizers: after every line the output, when there is any, ends in CRLF;
 * the command buffer never exceeds its limits; a line fed between STARTTLS's OK and the
 * handshake is dropped unanswered; more() never adds much more than asked. A violation aborts.
 *
 *   make fuzz FUZZ_SECONDS=300       (build/fuzz/fuzz-imap, seeds in test/fuzz/corpus/imap)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/internal.h"
#include "imap/session.h"
#include "imap/view.h"
#include "store/store.h"
#include "../unit/support/store_mem.h"
#include "common.h"

static gint64 fuzz_now;

static gint64 fuzz_clock(void) { return fuzz_now; }

static const char *const fuzz_inbox[] = {
    "From: Anne <anne@example.com>\r\nTo: pete@example.com\r\nSubject: one\r\n"
    "Date: Mon, 30 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n\r\nHello.\r\n",
    "From: bob@example.org\r\nSubject: multi\r\nMIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=b1\r\n\r\npreamble\r\n--b1\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n\r\npart one\r\n--b1\r\n"
    "Content-Type: message/rfc822\r\n\r\nSubject: inner\r\nFrom: x@y\r\n\r\ninner body\r\n"
    "--b1--\r\nepilogue\r\n",
    "Subject: legacy\rX: y\n\r\nx\r.\r\n.\n.\r\r\n..\rend\n.\r",
    "Subject: empty body\r\n\r\n",
    NULL,   /* the long one, made at start-up */
};

/* fuzz_store - the store every input starts from */
static Store *
fuzz_store(void)
{
    Store *store = fuzz_mail_store(fuzz_inbox, G_N_ELEMENTS(fuzz_inbox));
    if (!imap_mailbox_create(store, "pete", "Work/Projects", NULL))
        abort();
    return store;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_now = (g_get_real_time() / 1000000 + 3600) * 1000000;
    imap_view_set_clock(fuzz_clock);
    return 0;
}

/* fuzz_drain - more() until done, in chunks of CHUNK; none adds much more than asked */
static void
fuzz_drain(ImapSession *s, GString *out, gsize chunk)
{
    for (;;) {
        gsize before = out->len;
        gboolean more = imap_core.more(s, out, chunk);
        if (out->len - before > chunk + 64 * 1024)
            fuzz_fail("more() added far more than asked", out);
        if (!more)
            break;
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Store *store = fuzz_store();
    guint8 options = fuzz_options(store, &data, &size);
    ImapSessionConfig cfg = {
        .login_delay_ms = 1000, .max_errors = options & 4 ? 2 : 50,
        .max_message_size = options & 8 ? 10 : 64 * 1024, .settle_ms = 2000,
        .idle_poll_ms = 5000, .plaintext_auth = !(options & 1), .starttls = (options & 2) != 0,
    };
    if (options & 16)
        store_mem_set_chunk(store, 7);
    gsize chunk = 1 + (size ? data[size / 2] : 0);
    gsize piece = 1 + (size ? data[size / 3] % 64 : 0);

    ImapSession *s = imap_session_new(&cfg, store, "fuzz");
    GString *out = g_string_new(NULL);
    imap_core.greeting(s, out);

    gsize pos = 0;
    gboolean closed = FALSE;
    while (!closed && pos < size) {
        g_string_truncate(out, 0);
        gsize lit = imap_core.literal(s);
        if (lit) {
            gsize n = MIN(MIN(lit, size - pos), piece);
            char *buf = g_memdup2(data + pos, n);   /* ASan sees reads past its end */
            closed = imap_core.feed_literal(s, buf, n, out);
            g_free(buf);
            pos += n;
            piece = piece * 5 % 251 + 1;
            continue;
        }
        gsize len = fuzz_line_len(data, size, pos);
        if (!len)
            break;
        gboolean pending = imap_core.tls_pending(s);
        closed = fuzz_feed_line(&imap_core, s, data + pos, len, out);
        pos += len;
        if (pending && out->len)
            fuzz_fail("a line fed while STARTTLS was pending was answered", out);
        (void)imap_core.take_delay_ms(s);
        if (imap_core.take_delay_ms(s) != 0)
            fuzz_fail("a delay that did not reset when read", out);
        fuzz_drain(s, out, chunk);
        chunk = chunk * 7 % 4099 + 1;
        if (out->len && (out->len < 2 || memcmp(out->str + out->len - 2, "\r\n", 2) != 0))
            fuzz_fail("output not ending in CRLF", out);
        if (s->cmd->len > IMAP_COMMAND_MAX + IMAP_LINE_MAX + 64)
            fuzz_fail("the command buffer passed its limit", out);
        if (!closed && imap_core.ended(s))
            closed = TRUE;
        if (!closed && imap_core.tls_pending(s)) {
            if (size && (data[size - 1] & 0x80))
                break;   /* the handshake failed: the adapter closes */
            imap_core.tls_started(s);
        }
        if (!closed && imap_core.tick_ms(s) && (len & 1)) {
            g_string_truncate(out, 0);
            imap_core.tick(s, out);
            if (out->len && memcmp(out->str + out->len - 2, "\r\n", 2) != 0)
                fuzz_fail("tick output not ending in CRLF", out);
            closed = imap_core.ended(s) != NULL;
        }
    }
    if (!closed && (size == 0 || (data[size - 1] & 1))) {
        g_string_truncate(out, 0);
        imap_core.timeout(s, out);
    }
    GString *head = g_string_new(NULL), *tail = g_string_new(NULL);
    imap_core.log_fields(s, head, tail);
    g_string_free(head, TRUE);
    g_string_free(tail, TRUE);
    imap_core.free(s);
    store_free(&store);
    g_string_free(out, TRUE);
    return 0;
}
