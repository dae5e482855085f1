/*
 * smtp_fixture.h - an SMTP core's session over the in-memory store, as the SMTP unit tests
 * (test-smtp-session.c, test-smtp-smuggling.c, test-smtp-text.c) set it up: a store holding the
 * test's users, the test's configuration (which it may change and then restart the session
 * with), and the replies collected in OUT.
 */
#ifndef CASSMAIL_TEST_SMTP_FIXTURE_H
#define CASSMAIL_TEST_SMTP_FIXTURE_H

#include "smtp/session.h"
#include "store/store.h"

/* the configuration's hostname (greeting, Received:, 221) and its limit of bad commands */
#define SMTP_FIXTURE_HOST "mx.example.com"
#define SMTP_FIXTURE_MAX_ERRORS 20

typedef struct {
    Store *store;
    SmtpSessionConfig cfg;
    SmtpSession *s;
    GString *out;
    const char *peer;
    gboolean closed;   /* what the last smtp_core.feed returned, for tests that keep it */
} SmtpFixture;

/* smtp_fixture_open - a memory store holding USERS (NULL-terminated); a configuration for
 * SMTP_FIXTURE_HOST with the local DOMAINS (NULL-terminated, borrowed), MAX_MESSAGE_SIZE,
 * MAX_RECIPIENTS and SMTP_FIXTURE_MAX_ERRORS, the rest zero; a session from PEER (its greeting
 * not asked for) and an empty OUT */
void smtp_fixture_open(SmtpFixture *f, const char *const *users, char *const *domains,
                       gsize max_message_size, guint max_recipients, const char *peer);
/* smtp_fixture_restart - a new session with F's configuration as it is now; OUT emptied */
void smtp_fixture_restart(SmtpFixture *f);
/* smtp_fixture_close - the session, the store and OUT freed */
void smtp_fixture_close(SmtpFixture *f);

#endif
