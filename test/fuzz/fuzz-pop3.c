/*
 * fuzz-pop3.c - libFuzzer harness for the POP3 protocol core (src/pop3/session.h).
 *
 * One input is one client's side of a session, cut into lines as the adapter's reader cuts them:
 * after each LF; a line over POP3_LINE_MAX + 2 octets is handed over as its terminator alone
 * with TOO_LONG, one with a NUL as NUL (fuzz_feed_line, common.c); an unfinished last line is
 * dropped (EOF). Each command's reply is drained with pop3_core.more
 * in small chunks whose size varies with the input, as cassmail-pop3d drains RETR and TOP.
 *
 * The in-memory store of the unit tests holds user pete (password "secret") with six messages
 * in inbox — dot-stuffing cases, an empty body, a last line without CRLF, one with the bare CR
 * and bare LF an older version may have stored ("x\r.\r\n" and friends), one of 3000 octets —
 * and one in outbox (USER pete|outbox), read in pages of three; and anne, who has no password.
 * The login delay is the adapter's business and is not slept here, and the dummy verification
 * for unknown users (which costs a real PBKDF2 run on purpose) is replaced by a cheap one, so
 * the fuzzer spends its time on the protocol.
 *
 * STLS is offered; after its "+OK" the harness plays a handshake that succeeds (the rest of the
 * input is what the client says under TLS), unless the input's last octet says it fails (the
 * session ends).
 *
 * An input that starts with 0xff uses its second octet to make the next 0..7 store operations
 * fail and its third to change the configuration (plaintext login refused, pages of one entry,
 * a low error limit, other delimiters, no STLS); the session text follows.
 *
 * Checks beyond the sanitizers: every command gets a reply; a reply starts with "+OK" or "-ERR"
 * and ends in CRLF with no bare LF; a multi-line reply has no bare CR either, ends with "." CRLF
 * and has no line that is a lone "." before it (dot-stuffing, RFC 1939 section 3) — so no client,
 * whether it ends lines at CRLF, LF or CR, sees an early end; a line fed between STLS's "+OK" and
 * the handshake is dropped unanswered. A violation aborts.
 *
 *   make fuzz FUZZ_SECONDS=300       (build/fuzz/fuzz-pop3, seeds in test/fuzz/corpus/pop3)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pop3/session.h"
#include "store/store.h"
#include "../unit/support/store_mem.h"
#include "common.h"

static const char *const fuzz_inbox[] = {
    "Subject: one\r\n\r\nHello.\r\n",
    "Subject: dots\r\n\r\n.\r\n..\r\n.leading dot\r\n\r\n.\r\nend\r\n",
    "Subject: empty body\r\n\r\n",
    "Subject: no final line end\r\n\r\nlast line without CRLF",
    "Subject: legacy\rX: y\n\r\nx\r.\r\n.\n.\r\r\n..\rend\n.\r",
    NULL,   /* the long one, made at start-up */
};

/* fuzz_check_reply - OUT is one complete reply (see the top of the file) */
static void
fuzz_check_reply(const GString *out)
{
    if (out->len == 0)
        fuzz_fail("no reply", out);
    if (!g_str_has_prefix(out->str, "+OK") && !g_str_has_prefix(out->str, "-ERR"))
        fuzz_fail("a reply not starting with +OK or -ERR", out);
    if (out->len < 2 || memcmp(out->str + out->len - 2, "\r\n", 2) != 0)
        fuzz_fail("a reply not ending in CRLF", out);
    for (gsize i = 0; i < out->len; i++)
        if (out->str[i] == '\n' && (i == 0 || out->str[i - 1] != '\r'))
            fuzz_fail("a bare LF", out);
    const char *first_end = strstr(out->str, "\r\n");
    gsize first_len = (gsize)(first_end - out->str) + 2;
    if (memchr(out->str, '\0', first_len))
        fuzz_fail("a NUL in the status line", out);
    if (first_len == out->len)
        return;   /* single line */
    if (out->str[0] == '-')
        fuzz_fail("a multi-line -ERR", out);
    for (gsize i = first_len; i < out->len; i++)
        if (out->str[i] == '\r' && (i + 1 == out->len || out->str[i + 1] != '\n'))
            fuzz_fail("a bare CR in a multi-line reply", out);
    if (out->len < first_len + 3 || memcmp(out->str + out->len - 3, ".\r\n", 3) != 0 ||
        (out->len > first_len + 3 && out->str[out->len - 4] != '\n'))
        fuzz_fail("a multi-line reply not ending with . CRLF", out);
    /* No lone "." line before the terminator. */
    for (gsize i = first_len; i + 3 < out->len; i++)
        if (out->str[i - 1] == '\n' && memcmp(out->str + i, ".\r\n", 3) == 0)
            fuzz_fail("a lone . inside a multi-line reply", out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The store is made once and made again only after a session changed it (QUIT removed
     * messages): delivery mints TimeUUIDs, which is slow enough to dominate a run. */
    static Store *store;
    if (!store || store_mem_message_count(store, "pete", "inbox") != G_N_ELEMENTS(fuzz_inbox) ||
        store_mem_message_count(store, "pete", "outbox") != 1) {
        store_free(&store);
        store = fuzz_mail_store(fuzz_inbox, G_N_ELEMENTS(fuzz_inbox));
    }
    guint8 options = fuzz_options(store, &data, &size);
    Pop3SessionConfig cfg = {
        .batch_size = options & 2 ? 1 : 3,
        .mailbox_delimiter = options & 16 ? ' ' : options & 8 ? '+' : '|',
        .login_delay_ms = 1000,
        .max_errors = options & 4 ? 1 : 10,
        .plaintext_auth = !(options & 1),
        .stls = !(options & 32),
    };
    /* Chunk sizes for pop3_core.more, from 1 octet up, varying with the input. */
    gsize chunk = 1 + (size ? data[size / 2] : 0);

    Pop3Session *s = pop3_session_new(&cfg, store, "fuzz");
    FuzzRun f;
    fuzz_run_start(&f, &pop3_core, s, data, size);
    fuzz_check_reply(f.out);
    while (fuzz_run_line(&f)) {
        (void)pop3_core.take_delay_ms(s);
        if (pop3_core.take_delay_ms(s) != 0)
            fuzz_fail("a delay that did not reset when read", f.out);
        while (pop3_core.more(s, f.out, chunk))
            ;
        fuzz_check_reply(f.out);
        chunk = chunk * 7 % 4099 + 1;
        if (!f.closed && pop3_core.tls_pending(s)) {
            if (!g_str_has_prefix(f.out->str, "+OK"))
                fuzz_fail("STLS pending without +OK", f.out);
            if (!fuzz_run_tls(&f))
                break;   /* the handshake failed: the adapter closes */
        }
    }
    if (fuzz_run_timeout(&f))
        fuzz_check_reply(f.out);
    Pop3SessionStats st;
    pop3_session_stats(s, &st);
    (void)pop3_state_name(st.state);
    pop3_session_free(&s);
    store_mem_fail_next(store, 0);
    fuzz_run_free(&f);
    return 0;
}
