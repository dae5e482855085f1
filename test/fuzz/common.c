/*
 * common.c - linked into every fuzz harness (test/fuzz/fuzz-*.c).
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
#include <syslog.h>

#include "util/log.h"

void __wrap_password_verify_dummy(const char *password);

void
__wrap_password_verify_dummy(const char *password)
{
    (void)password;
}

/* fuzz_quiet_logs - before any input runs: a log that writes nothing */
__attribute__((constructor)) static void
fuzz_quiet_logs(void)
{
    log_open("cassmail-fuzz", FALSE);
    setlogmask(LOG_MASK(LOG_EMERG));
}
