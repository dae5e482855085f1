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

/* Iterations for new hashes: one verification costs about 70 ms on the 2-core build machine. */
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

/* password_hash - the stored text for PASSWORD with a fresh salt (g_free it); NULL and ERROR on
 * failure */
char *password_hash(const char *password, GError **error);
/* password_hash_iterations - the same with a chosen cost (tests use a small one) */
char *password_hash_iterations(const char *password, guint iterations, GError **error);

/* The cost of a check, in PBKDF2 iterations, is the same whatever its outcome and whether the
 * user exists: max(the stored hash's iterations, PASSWORD_ITERATIONS). An unknown user, a user
 * without a password, and a malformed stored hash cost PASSWORD_ITERATIONS (the dummy check); a
 * hash made cheaper with `cassmail-admin passwd --iterations` is padded up to PASSWORD_ITERATIONS,
 * so its user cannot be told from an unknown name by timing. A hash made dearer than the default
 * costs what it says — which does set its user apart from unknown names: raise PASSWORD_ITERATIONS
 * for everyone rather than one user's count (cassmail-admin(8)). */

/* password_verify - whether PASSWORD matches STORED, at password_check_cost(STORED); FALSE for any
 * malformed STORED (after a dummy check of the same cost as an unknown user's) */
gboolean password_verify(const char *password, const char *stored);

/* password_verify_dummy - the check of an unknown user (or of one without a password): spend
 * PASSWORD_ITERATIONS and fail, so that response time does not tell which users exist */
void password_verify_dummy(const char *password);

/* password_check_cost - the iterations password_verify spends on STORED (see above) */
guint password_check_cost(const char *stored);
/* password_iterations_spent - PBKDF2 iterations this process has spent so far (tests count the
 * cost of a check with it instead of timing it) */
guint64 password_iterations_spent(void);

#endif
