/*
 * fuzz-smtp.c - libFuzzer harness for the SMTP protocol core (src/smtp/session.h).
 *
 * One input is one client's side of a session: its octets are cut into lines the way the bounded
 * line reader (src/net/conn.h) cuts them — after each LF; a line longer than the limit the core
 * asks for (smtp_core.line_max: commands, DATA text, AUTH responses) is handed over as its
 * terminator alone ("\r\n" or "\n") with PROTO_LINE_TOO_LONG; a line with a NUL octet carries
 * PROTO_LINE_NUL; an unfinished last line is dropped, as the adapter drops it at EOF. Mail goes into the in-memory store of the unit tests
 * (test/unit/support/store_mem.h), which knows the users anne (password "secret", for AUTH),
 * bob and postmaster.
 *
 * STARTTLS is offered; after its 220 the harness plays a handshake that succeeds (the rest of
 * the input is what the client says under TLS), except when the input's last octet says it
 * fails (the session ends). AUTH is offered before TLS too unless the configuration octet says
 * otherwise.
 *
 * An input that starts with the octet 0xff uses its second octet to make the next 0..7 store
 * operations fail (the 451/454 paths) and the one after to choose a different configuration
 * (tiny message size, one recipient, few errors, no STARTTLS, AUTH only over TLS); the session
 * text follows.
 *
 * Besides what AddressSanitizer, UBSan and LeakSanitizer catch, the harness checks what every
 * reply must be (RFC 5321 4.2, RFC 2034): lines of "NNN" then " " or "-" and text, each ending in
 * CRLF, no bare CR or LF inside, a 4xx/5xx carrying an enhanced code of its own class; a
 * multi-line reply keeps one code. Every stored message must start with our Received: field and
 * be CRLF-clean (no CR or LF outside a CRLF). No SMTP smuggling: every message that reaches the
 * end of DATA (stored or refused there) ends at a CRLF "." CRLF of the input, so there are never
 * more of them than the input holds (overlapping ones counted).
 * Between STARTTLS's 220 and the handshake, a line fed (one the client pipelined) gets no answer.
 * A violation aborts, so libFuzzer keeps the input.
 *
 *   make fuzz FUZZ_SECONDS=300       (build/fuzz/fuzz-smtp, seeds in test/fuzz/corpus/smtp and test/smtp)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/session.h"
#include "store/store.h"
#include "../unit/support/store_mem.h"
#include "common.h"

#define FUZZ_PEER "192.0.2.9"

static char *fuzz_domains[] = {"example.com", "Example.NET", NULL};
static const char *const fuzz_users[] = {"anne", "bob", "postmaster", NULL};

/* fuzz_check_replies - OUT is nothing but well-formed reply lines */
static void
fuzz_check_replies(const GString *out)
{
    gsize pos = 0;
    char prev_code[3] = {0};
    gboolean continued = FALSE;
    while (pos < out->len) {
        const char *l = out->str + pos;
        const char *crlf = g_strstr_len(l, (gssize)(out->len - pos), "\r\n");
        if (!crlf)
            fuzz_fail("a reply line without CRLF", out);
        gsize n = (gsize)(crlf - l);
        if (memchr(l, '\n', n) || memchr(l, '\r', n) || memchr(l, '\0', n))
            fuzz_fail("a CR, LF or NUL inside a reply line", out);
        if (n < 4 || !g_ascii_isdigit(l[0]) || !g_ascii_isdigit(l[1]) || !g_ascii_isdigit(l[2]) ||
            (l[3] != ' ' && l[3] != '-'))
            fuzz_fail("a reply line not of the form NNN SP/- text", out);
        if (l[0] < '2' || l[0] > '5')
            fuzz_fail("a reply code outside 2xx-5xx", out);
        if ((l[0] == '4' || l[0] == '5') && (n < 6 || l[4] != l[0] || l[5] != '.'))
            fuzz_fail("a 4xx/5xx reply without an enhanced status code of its class", out);
        if (continued && memcmp(prev_code, l, 3) != 0)
            fuzz_fail("a multi-line reply that changes its code", out);
        memcpy(prev_code, l, 3);
        continued = l[3] == '-';
        pos += n + 2;
    }
}

/* fuzz_check_stored - every message in the store begins with our Received: field */
static void
fuzz_check_stored(Store *store)
{
    static const char *const boxes[] = {"inbox", "outbox"};
    for (const char *const *u = fuzz_users; *u; u++) {
        for (gsize b = 0; b < G_N_ELEMENTS(boxes); b++) {
            GArray *page = g_array_new(FALSE, FALSE, sizeof(StoreIndexEntry));
            if (!store_index_page(store, *u, boxes[b], NULL, 1000, page, NULL))
                abort();
            for (guint i = 0; i < page->len; i++) {
                StoreIndexEntry *e = &g_array_index(page, StoreIndexEntry, i);
                GBytes *msg = NULL;
                if (!store_fetch(store, *u, boxes[b], &e->id, &msg, NULL))
                    abort();
                gsize len, text_len;
                const char *data = g_bytes_get_data(msg, &len);
                if (len != e->size || !smtp_received_strip(data, len, &text_len)) {
                    fprintf(stderr, "fuzz-smtp: stored message without our Received: field\n");
                    abort();
                }
                for (gsize k = 0; k < len; k++) {
                    if ((data[k] == '\r' && (k + 1 == len || data[k + 1] != '\n')) ||
                        (data[k] == '\n' && (k == 0 || data[k - 1] != '\r'))) {
                        fprintf(stderr, "fuzz-smtp: stored message with a bare CR or LF\n");
                        abort();
                    }
                }
                g_bytes_unref(msg);
            }
            g_array_free(page, TRUE);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Store *store = store_mem_new();
    for (const char *const *u = fuzz_users; *u; u++)
        if (!store_user_add(store, *u, NULL))
            abort();
    if (!store_password_set(store, "anne", fuzz_secret_hash(), NULL))
        abort();
    guint8 options = fuzz_options(store, &data, &size);
    SmtpSessionConfig cfg = {
        .hostname = "mx.example.com",
        .domains = fuzz_domains,
        .max_message_size = options & 1 ? 1024 : 4096,   /* 1024: the configuration's least */
        .max_recipients = options & 2 ? 1 : 5,
        .max_errors = options & 8 ? 0 : options & 4 ? 2 : 20,   /* 0: no limit */
        .extensions = NULL,
        .starttls = !(options & 16),
        .plaintext_auth = !(options & 32),
    };

    SmtpSession *s = smtp_session_new(&cfg, store, FUZZ_PEER);
    FuzzRun f;
    fuzz_run_start(&f, &smtp_core, s, data, size);
    fuzz_check_replies(f.out);
    while (!f.closed) {
        /* the limit the next line is read with */
        gsize max = smtp_core.line_max(s);
        if (max != SMTP_COMMAND_LINE_MAX && max != SMTP_TEXT_READ_MAX && max != SMTP_AUTH_LINE_MAX)
            fuzz_fail("an unexpected line limit", f.out);
        if (smtp_core.in_text(s) && max != SMTP_TEXT_READ_MAX)
            fuzz_fail("a line limit other than the text limit in DATA", f.out);
        if (!fuzz_run_line(&f))
            break;   /* EOF in the middle of a line: the adapter never feeds it */
        fuzz_check_replies(f.out);
        if (!f.closed && smtp_core.tls_pending(s)) {
            if (!g_str_has_prefix(f.out->str, "220 ") && !strstr(f.out->str, "\r\n220 "))
                fuzz_fail("STARTTLS pending without a 220", f.out);
            if (!fuzz_run_tls(&f))
                break;   /* the handshake failed: the adapter closes */
            SmtpSessionStats st;
            smtp_session_stats(s, &st);
            if (!st.tls || st.auth_user || st.helo)
                fuzz_fail("a session that did not start over under TLS", f.out);
        }
    }
    if (fuzz_run_timeout(&f))
        fuzz_check_replies(f.out);
    SmtpSessionStats st;
    smtp_session_stats(s, &st);
    (void)smtp_state_name(st.state);
    guint ends = 0;
    for (gsize k = 0; k + 5 <= size; k++)
        ends += memcmp(data + k, "\r\n.\r\n", 5) == 0;
    if (st.accepted + st.rejected > ends) {
        fprintf(stderr, "fuzz-smtp: %u messages ended, the input holds %u CRLF.CRLF\n",
                st.accepted + st.rejected, ends);
        abort();
    }
    smtp_session_free(&s);
    store_mem_fail_next(store, 0);   /* the checks read the store; injected failures are over */
    fuzz_check_stored(store);
    store_free(&store);
    fuzz_run_free(&f);
    return 0;
}
