/*
 * common.c - linked into every fuzz harness (test/fuzz/fuzz-*.c); see common.h.
 *
 * The harnesses are linked with -Wl,--wrap=password_verify_dummy: a login attempt for an unknown
 * user spends the time of a full-cost PBKDF2 verification on purpose (src/util/password.h), about
 * 0.1 s of CPU (README), which would leave the fuzzer doing nothing else. Here it costs nothing; the protocol
 * code around it is unchanged. Real verifications of a stored (low-cost) hash still run.
 *
 * The cores log every session and every refused command; millions of fuzzed sessions would
 * bury libFuzzer's own report. The log goes to syslog with every priority masked off, which
 * syslog(3) drops before doing any I/O (the formatting of each message still runs).
 */
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "../unit/support/store_mem.h"
#include "util/log.h"
#include "util/password.h"

void __wrap_password_verify_dummy(const char *password);

void
__wrap_password_verify_dummy(const char *password)
{
    (void)password;
}

/* fuzz_setup - before any input runs: a log that writes nothing, and logins that cost the least
 * a deployment may configure ([auth] password_iterations) */
__attribute__((constructor)) static void
fuzz_setup(void)
{
    log_open("cassmail-fuzz", FALSE);
    setlogmask(LOG_MASK(LOG_EMERG));
    password_set_cost(PASSWORD_ITERATIONS_MIN);
}

void
fuzz_fail(const char *what, const GString *out)
{
    fprintf(stderr, "%s: %s; output:\n%.*s\n", program_invocation_short_name, what,
            (int)MIN(out->len, 4096), out->str);
    abort();
}

gsize
fuzz_line_len(const guint8 *data, gsize size, gsize pos)
{
    const guint8 *lf = memchr(data + pos, '\n', size - pos);
    return lf ? (gsize)(lf - (data + pos)) + 1 : 0;
}

gboolean
fuzz_feed_line(const ProtoCore *core, gpointer session, const guint8 *line, gsize len,
               GString *out)
{
    if (len > core->line_max(session)) {
        gboolean crlf = len >= 2 && line[len - 2] == '\r';
        return core->feed(session, crlf ? "\r\n" : "\n", crlf ? 2 : 1, PROTO_LINE_TOO_LONG, out);
    }
    /* a private copy, so ASan sees any read past the line's end */
    char *copy = g_memdup2(line, len);
    gboolean closed = core->feed(session, copy, len,
                                 memchr(copy, '\0', len) ? PROTO_LINE_NUL : PROTO_LINE_OK, out);
    g_free(copy);
    return closed;
}

guint8
fuzz_options(Store *store, const guint8 **data, gsize *size)
{
    if (*size < 3 || (*data)[0] != 0xff)
        return 0;
    guint8 options = (*data)[2];
    store_mem_fail_next(store, (*data)[1] & 7);
    *data += 3;
    *size -= 3;
    return options;
}

void
fuzz_run_start(FuzzRun *f, const ProtoCore *core, gpointer session, const guint8 *data,
               gsize size)
{
    *f = (FuzzRun){.core = core, .session = session, .data = data, .size = size,
                   .out = g_string_new(NULL)};
    core->greeting(session, f->out);
}

gboolean
fuzz_run_line(FuzzRun *f)
{
    gsize len = f->closed || f->pos >= f->size ? 0 : fuzz_line_len(f->data, f->size, f->pos);
    if (!len)
        return FALSE;
    g_string_truncate(f->out, 0);
    f->closed = fuzz_feed_line(f->core, f->session, f->data + f->pos, len, f->out);
    f->pos += len;
    return TRUE;
}

gboolean
fuzz_run_tls(FuzzRun *f)
{
    gsize len = fuzz_line_len(f->data, f->size, f->pos);
    if (len && (f->data[f->pos] & 1)) {
        g_string_truncate(f->out, 0);
        f->closed = fuzz_feed_line(f->core, f->session, f->data + f->pos, len, f->out);
        while (f->core->more && f->core->more(f->session, f->out, 4096))
            ;
        if (f->out->len || !f->core->tls_pending(f->session))
            fuzz_fail("a line fed while STARTTLS was pending was acted on", f->out);
        f->pos += len;
    }
    if (f->size && (f->data[f->size - 1] & 0x80))
        return FALSE;
    f->core->tls_started(f->session);
    return TRUE;
}

gboolean
fuzz_run_timeout(FuzzRun *f)
{
    if (f->closed || f->pos >= f->size || !(f->data[f->size - 1] & 1))
        return FALSE;
    g_string_truncate(f->out, 0);
    f->core->timeout(f->session, f->out);
    return TRUE;
}

void
fuzz_run_free(FuzzRun *f)
{
    g_string_free(f->out, TRUE);
    f->out = NULL;
}

const char *
fuzz_secret_hash(void)
{
    static char *hash;
    if (!hash)
        hash = password_hash_iterations("secret", PASSWORD_ITERATIONS_MIN, NULL);
    if (!hash)
        abort();
    return hash;
}

void
fuzz_deliver(Store *store, const char *user, const char *box, const char *msg, gsize len)
{
    StoreMsgId id;
    StoreTarget t = {user, box};
    store_msgid_new(&id);
    if (!store_deliver(store, &id, &t, 1, (const guint8 *)msg, len, NULL))
        abort();
}

Store *
fuzz_mail_store(const char *const *inbox, gsize n)
{
    Store *store = store_mem_new();
    if (!store_user_add(store, "pete", NULL) ||
        !store_password_set(store, "pete", fuzz_secret_hash(), NULL) ||
        !store_user_add(store, "anne", NULL))
        abort();
    for (gsize i = 0; i < n; i++) {
        GString *m = g_string_new(inbox[i]);
        if (!inbox[i]) {
            g_string_assign(m, "Subject: long\r\n\r\n");
            for (int k = 0; m->len < 3000; k++)
                g_string_append_printf(m, "%s%d line of the long message\r\n", k % 5 ? "" : ".", k);
        }
        fuzz_deliver(store, "pete", "inbox", m->str, m->len);
        g_string_free(m, TRUE);
    }
    static const char sent[] = "Subject: sent\r\n\r\nfrom the outbox\r\n";
    fuzz_deliver(store, "pete", "outbox", sent, sizeof sent - 1);
    return store;
}
