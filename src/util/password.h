/*
 * password.h - salted, slow password hashes for the Credentials column family.
 *
 * The stored text describes itself, so the cost can be raised later without breaking old hashes:
 *
 *     $pbkdf2-sha256$i=<iterations>$<salt, base64>$<derived key, base64>
 *
 * PBKDF2 (RFC 8018 section 5.2) with HMAC-SHA-256 from OpenSSL, a 16-octet salt from RAND_bytes and
 * a 32-octet derived key. Verification compares in constant time (CRYPTO_memcmp) and wipes every
 * intermediate buffer. The password itself is never stored.
 */
#ifndef CASSMAIL_PASSWORD_H
#define CASSMAIL_PASSWORD_H

#include <glib.h>

/* The default cost, [auth] password_iterations: PBKDF2 iterations of new hashes and the least a
 * check costs. One check costs about 0.1 s of CPU on a 2-core build machine. */
#define PASSWORD_ITERATIONS 300000
/* The range password_verify accepts in stored text (anything else is malformed). */
#define PASSWORD_ITERATIONS_MIN 1000
#define PASSWORD_ITERATIONS_MAX 100000000

#define PASSWORD_ERROR (password_error_quark())
GQuark password_error_quark(void);
typedef enum {
    PASSWORD_ERROR_INVALID,   /* an empty password, or more than PASSWORD_MAX_LEN octets */
    PASSWORD_ERROR_FAILED,    /* OpenSSL could not make random octets or derive the key */
} PasswordErrorCode;

#define PASSWORD_MAX_LEN 1024

/* password_hash - the stored text for PASSWORD with a fresh salt at the process's cost C (g_free
 * it); NULL and ERROR on failure */
char *password_hash(const char *password, GError **error);
/* password_hash_iterations - the same with a chosen cost (tests use a small one) */
char *password_hash_iterations(const char *password, guint iterations, GError **error);

/* The cost of a check, in PBKDF2 iterations, is the same whatever its outcome and whether the
 * user exists: max(the stored hash's iterations, C), where C is the cost set by
 * password_set_cost ([auth] password_iterations, default PASSWORD_ITERATIONS). An unknown user, a
 * user without a password, and a malformed stored hash cost C (the dummy check); a hash made
 * cheaper with `cassmail-admin passwd --iterations` is padded up to C, so its user cannot be told
 * from an unknown name by timing. A hash dearer than C costs what it says — which does set its
 * user apart from unknown names: raise C for everyone rather than one user's count
 * (cassmail-admin(8)). */

/* password_set_cost - the process's C (clamped to the accepted range): every server and
 * cassmail-admin set it from [auth] password_iterations before the first check or hash */
void password_set_cost(guint iterations);
/* password_get_cost - the process's C */
guint password_get_cost(void);

/* password_verify - whether PASSWORD matches STORED, at password_check_cost(STORED); FALSE for any
 * malformed STORED (after a dummy check of the same cost as an unknown user's) */
gboolean password_verify(const char *password, const char *stored);

/* password_verify_dummy - the check of an unknown user (or of one without a password): spend C
 * iterations and fail, so that response time does not tell which users exist */
void password_verify_dummy(const char *password);

/* password_check_cost - the iterations password_verify spends on STORED (see above) */
guint password_check_cost(const char *stored);
/* password_iterations_spent - PBKDF2 iterations this process has spent so far (tests count the
 * cost of a check with it instead of timing it) */
guint64 password_iterations_spent(void);

#endif
