/*
 * smtp_fixture.c - an SMTP core's session over the in-memory store (see the header).
 */
#include "smtp_fixture.h"

#include "store_mem.h"

void
smtp_fixture_open(SmtpFixture *f, const char *const *users, char *const *domains,
                  gsize max_message_size, guint max_recipients, const char *peer)
{
    f->store = store_mem_new();
    for (const char *const *u = users; *u; u++)
        g_assert_true(store_user_add(f->store, *u, NULL));
    f->cfg = (SmtpSessionConfig){
        .hostname = SMTP_FIXTURE_HOST,
        .domains = domains,
        .max_message_size = max_message_size,
        .max_recipients = max_recipients,
        .max_errors = SMTP_FIXTURE_MAX_ERRORS,
    };
    f->peer = peer;
    f->s = NULL;
    f->out = g_string_new(NULL);
    smtp_fixture_restart(f);
}

void
smtp_fixture_restart(SmtpFixture *f)
{
    smtp_session_free(&f->s);
    f->s = smtp_session_new(&f->cfg, f->store, f->peer);
    g_string_truncate(f->out, 0);
    f->closed = FALSE;
}

void
smtp_fixture_close(SmtpFixture *f)
{
    smtp_session_free(&f->s);
    g_assert_null(f->s);
    store_free(&f->store);
    g_string_free(f->out, TRUE);
}
