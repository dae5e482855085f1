/*
 * fuzz-pop3.c - libFuzzer harness for the POP3 protocol core (src/pop3/session.h).
 *
 * One input is one client's side of a session, cut into lines as the adapter's reader cuts them:
 * after each LF; a line over POP3_LINE_MAX + 2 octets is handed over empty with TOO_LONG; an
 * unfinished last line is dropped (EOF). Each command's reply is drained with pop3_session_more
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
#include "util/password.h"

static char *fuzz_hash;   /* "secret" at the lowest cost password_verify accepts */

static const char *const fuzz_inbox[] = {
    "Subject: one\r\n\r\nHello.\r\n",
    "Subject: dots\r\n\r\n.\r\n..\r\n.leading dot\r\n\r\n.\r\nend\r\n",
    "Subject: empty body\r\n\r\n",
    "Subject: no final line end\r\n\r\nlast line without CRLF",
    "Subject: legacy\rX: y\n\r\nx\r.\r\n.\n.\r\r\n..\rend\n.\r",
    NULL,   /* the long one, made at start-up */
};

/* fuzz_fail - report WHAT about OUT and abort (libFuzzer keeps the input) */
static void
fuzz_fail(const char *what, const GString *out)
{
    fprintf(stderr, "fuzz-pop3: %s in reply:\n%.*s\n", what, (int)MIN(out->len, 4096), out->str);
    abort();
}

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

/* fuzz_store - the store every input starts from */
static Store *
fuzz_store(void)
{
    Store *store = store_mem_new();
    if (!store_user_add(store, "pete", NULL) || !store_password_set(store, "pete", fuzz_hash, NULL) ||
        !store_user_add(store, "anne", NULL))
        abort();
    StoreTarget inbox = {"pete", "inbox"}, outbox = {"pete", "outbox"};
    StoreMsgId id;
    for (gsize i = 0; i < G_N_ELEMENTS(fuzz_inbox); i++) {
        GString *m = g_string_new(fuzz_inbox[i]);
        if (!fuzz_inbox[i]) {
            g_string_assign(m, "Subject: long\r\n\r\n");
            for (int n = 0; m->len < 3000; n++)
                g_string_append_printf(m, "%s%d line of the long message\r\n", n % 5 ? "" : ".", n);
        }
        store_msgid_new(&id);
        if (!store_deliver(store, &id, &inbox, 1, (const guint8 *)m->str, m->len, NULL))
            abort();
        g_string_free(m, TRUE);
    }
    static const char sent[] = "Subject: sent\r\n\r\nfrom the outbox\r\n";
    store_msgid_new(&id);
    if (!store_deliver(store, &id, &outbox, 1, (const guint8 *)sent, sizeof sent - 1, NULL))
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
    /* logins cost the least a deployment may configure ([auth] password_iterations) */
    password_set_cost(PASSWORD_ITERATIONS_MIN);
    fuzz_hash = password_hash_iterations("secret", PASSWORD_ITERATIONS_MIN, NULL);
    if (!fuzz_hash)
        abort();
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Pop3SessionConfig cfg = {
        .batch_size = 3, .mailbox_delimiter = '|', .login_delay_ms = 1000, .max_errors = 10,
        .plaintext_auth = TRUE, .stls = TRUE,
    };
    /* The store is made once and made again only after a session changed it (QUIT removed
     * messages): delivery mints TimeUUIDs, which is slow enough to dominate a run. */
    static Store *store;
    if (!store || store_mem_message_count(store, "pete", "inbox") != G_N_ELEMENTS(fuzz_inbox) ||
        store_mem_message_count(store, "pete", "outbox") != 1) {
        store_free(&store);
        store = fuzz_store();
    }
    if (size >= 3 && data[0] == 0xff) {
        store_mem_fail_next(store, data[1] & 7);
        if (data[2] & 1)
            cfg.plaintext_auth = FALSE;
        if (data[2] & 2)
            cfg.batch_size = 1;
        if (data[2] & 4)
            cfg.max_errors = 1;
        if (data[2] & 8)
            cfg.mailbox_delimiter = '+';
        if (data[2] & 16)
            cfg.mailbox_delimiter = ' ';
        if (data[2] & 32)
            cfg.stls = FALSE;
        data += 3;
        size -= 3;
    }
    /* Chunk sizes for pop3_session_more, from 1 octet up, varying with the input. */
    gsize chunk = 1 + (size ? data[size / 2] : 0);

    Pop3Session *s = pop3_session_new(&cfg, store, "fuzz");
    GString *out = g_string_new(NULL);
    pop3_core.greeting(s, out);
    fuzz_check_reply(out);

    gsize pos = 0;
    gboolean closed = FALSE;
    while (!closed && pos < size) {
        const uint8_t *lf = memchr(data + pos, '\n', size - pos);
        if (!lf)
            break;
        gsize len = (gsize)(lf - (data + pos)) + 1;
        g_string_truncate(out, 0);
        if (len > POP3_LINE_MAX + 2) {
            closed = pop3_session_feed(s, "", 0, PROTO_LINE_TOO_LONG, out);
        } else {
            char *line = g_memdup2(data + pos, len);   /* ASan sees reads past its end */
            closed = pop3_session_feed(s, line, len, PROTO_LINE_OK, out);
            g_free(line);
        }
        (void)pop3_core.take_delay_ms(s);
        if (pop3_core.take_delay_ms(s) != 0)
            fuzz_fail("a delay that did not reset when read", out);
        while (pop3_session_more(s, out, chunk))
            ;
        fuzz_check_reply(out);
        pos += len;
        chunk = chunk * 7 % 4099 + 1;
        if (!closed && pop3_core.tls_pending(s)) {
            if (!g_str_has_prefix(out->str, "+OK"))
                fuzz_fail("STLS pending without +OK", out);
            lf = memchr(data + pos, '\n', size - pos);
            if (lf && (data[pos] & 1)) {   /* pipelined behind STLS: dropped unanswered */
                len = (gsize)(lf - (data + pos)) + 1;
                g_string_truncate(out, 0);
                char *line = g_memdup2(data + pos, MIN(len, POP3_LINE_MAX + 2));
                closed = pop3_session_feed(s, line, MIN(len, POP3_LINE_MAX + 2),
                                           len > POP3_LINE_MAX + 2 ? PROTO_LINE_TOO_LONG : PROTO_LINE_OK, out);
                g_free(line);
                while (pop3_session_more(s, out, chunk))
                    ;
                if (out->len || !pop3_core.tls_pending(s))
                    fuzz_fail("a line fed while STLS was pending was acted on", out);
                pos += len;
            }
            if (size && (data[size - 1] & 0x80))
                break;   /* the handshake failed: the adapter closes */
            pop3_core.tls_started(s);
        }
    }
    if (!closed && pos < size && (data[size - 1] & 1)) {
        g_string_truncate(out, 0);
        pop3_core.timeout(s, out);
        fuzz_check_reply(out);
    }
    Pop3SessionStats st;
    pop3_session_stats(s, &st);
    (void)pop3_state_name(st.state);
    pop3_session_free(&s);
    store_mem_fail_next(store, 0);
    g_string_free(out, TRUE);
    return 0;
}
