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

typedef struct {
    Store *store;
    SmtpSessionConfig cfg;
    SmtpSession *s;
    GString *out;
    const char *peer;
    gboolean closed;   /* what the last smtp_session_feed returned, for tests that keep it */
} SmtpFixture;

/* smtp_fixture_open - a memory store holding USERS (NULL-terminated), CFG (copied; what it
 * points to must outlive F), a session from PEER (its greeting not asked for) and an empty OUT */
void smtp_fixture_open(SmtpFixture *f, const char *const *users, const SmtpSessionConfig *cfg,
                       const char *peer);
/* smtp_fixture_restart - a new session with F's configuration as it is now; OUT emptied */
void smtp_fixture_restart(SmtpFixture *f);
/* smtp_fixture_close - the session, the store and OUT freed */
void smtp_fixture_close(SmtpFixture *f);

#endif
