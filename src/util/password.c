/*
 * password.c - PBKDF2-HMAC-SHA-256 password hashes (RFC 8018 section 5.2) through OpenSSL.
 *
 * See password.h for the stored format. Parsing is strict: one known scheme, an iteration count in
 * range, canonical base64 of sane lengths; anything else is "malformed" and never matches.
 */
#include "util/password.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "util/text.h"

G_DEFINE_QUARK(cassmail-password-error-quark, password_error)

#define PASSWORD_SCHEME "$pbkdf2-sha256$"
#define PASSWORD_SALT_LEN 16
#define PASSWORD_KEY_LEN 32
/* Lengths password_verify accepts for salt and key (octets, after base64 decoding). */
#define PASSWORD_SALT_MIN 8
#define PASSWORD_SALT_MAX 64
#define PASSWORD_KEY_MIN 16
#define PASSWORD_KEY_MAX 64

/* PBKDF2 iterations spent by this process (password_iterations_spent). */
static guint64 password_spent;
/* The least a check costs, and the cost of new hashes (password_set_cost). */
static guint password_cost = PASSWORD_ITERATIONS;

void
password_set_cost(guint iterations)
{
    password_cost = CLAMP(iterations, PASSWORD_ITERATIONS_MIN, PASSWORD_ITERATIONS_MAX);
}

guint
password_get_cost(void)
{
    return password_cost;
}

guint64
password_iterations_spent(void)
{
    return password_spent;
}

/* password_derive - KEY_LEN octets of PBKDF2-HMAC-SHA-256 into KEY; FALSE when OpenSSL fails */
static gboolean
password_derive(const char *password, const guint8 *salt, gsize salt_len, guint iterations,
                guint8 *key, gsize key_len)
{
    password_spent += iterations;
    return PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, (int)salt_len, (int)iterations,
                             EVP_sha256(), (int)key_len, key) == 1;
}

char *
password_hash_iterations(const char *password, guint iterations, GError **error)
{
    gsize len = password ? strlen(password) : 0;
    if (len == 0 || len > PASSWORD_MAX_LEN) {
        g_set_error(error, PASSWORD_ERROR, PASSWORD_ERROR_INVALID,
                    "a password must have 1 to %d octets", PASSWORD_MAX_LEN);
        return NULL;
    }
    if (iterations < PASSWORD_ITERATIONS_MIN || iterations > PASSWORD_ITERATIONS_MAX) {
        g_set_error(error, PASSWORD_ERROR, PASSWORD_ERROR_INVALID,
                    "iterations must be from %d to %d", PASSWORD_ITERATIONS_MIN,
                    PASSWORD_ITERATIONS_MAX);
        return NULL;
    }
    guint8 salt[PASSWORD_SALT_LEN];
    guint8 key[PASSWORD_KEY_LEN];
    if (RAND_bytes(salt, sizeof salt) != 1) {
        g_set_error(error, PASSWORD_ERROR, PASSWORD_ERROR_FAILED, "no random octets for a salt");
        return NULL;
    }
    if (!password_derive(password, salt, sizeof salt, iterations, key, sizeof key)) {
        OPENSSL_cleanse(key, sizeof key);
        g_set_error(error, PASSWORD_ERROR, PASSWORD_ERROR_FAILED, "PBKDF2 failed");
        return NULL;
    }
    g_autofree char *salt64 = g_base64_encode(salt, sizeof salt);
    g_autofree char *key64 = g_base64_encode(key, sizeof key);
    OPENSSL_cleanse(key, sizeof key);
    return g_strdup_printf(PASSWORD_SCHEME "i=%u$%s$%s", iterations, salt64, key64);
}

char *
password_hash(const char *password, GError **error)
{
    return password_hash_iterations(password, password_cost, error);
}

/* password_b64_decode - decode LEN characters of canonical, padded base64 at TEXT into OUT (room
 * for MAX octets); the decoded length, or 0 when the text is not such base64 or too long */
static gsize
password_b64_decode(const char *text, gsize len, guint8 *out, gsize max)
{
    if (len == 0 || !text_base64_valid(text, len) || len / 4 * 3 > max + 2)
        return 0;
    gsize n = len / 4 * 3 - (text[len - 1] == '=') - (text[len - 2] == '=');
    if (n > max)
        return 0;
    char copy[PASSWORD_KEY_MAX * 2];   /* base64 of at most PASSWORD_KEY_MAX octets, plus NUL */
    if (len >= sizeof copy)
        return 0;
    memcpy(copy, text, len);
    copy[len] = '\0';
    gsize got = 0;
    guchar *raw = g_base64_decode(copy, &got);
    gboolean ok = raw && got == n;
    if (ok)
        memcpy(out, raw, n);
    if (raw) {
        OPENSSL_cleanse(raw, got);
        g_free(raw);
    }
    return ok ? n : 0;
}

/* A parsed stored hash. */
typedef struct {
    guint iterations;
    guint8 salt[PASSWORD_SALT_MAX];
    gsize salt_len;
    guint8 key[PASSWORD_KEY_MAX];
    gsize key_len;
} PasswordStored;

/* password_parse - split STORED into P; FALSE when it is not our format */
static gboolean
password_parse(const char *stored, PasswordStored *p)
{
    if (!stored || strncmp(stored, PASSWORD_SCHEME "i=", strlen(PASSWORD_SCHEME "i=")) != 0)
        return FALSE;
    const char *s = stored + strlen(PASSWORD_SCHEME "i=");
    const char *salt = strchr(s, '$');
    char digits[10];
    guint64 it = 0;
    if (!salt || salt - s >= (gssize)sizeof digits)
        return FALSE;
    memcpy(digits, s, (gsize)(salt - s));
    digits[salt - s] = '\0';
    if (!g_ascii_string_to_unsigned(digits, 10, PASSWORD_ITERATIONS_MIN, PASSWORD_ITERATIONS_MAX,
                                    &it, NULL))
        return FALSE;
    p->iterations = (guint)it;
    salt++;
    const char *key = strchr(salt, '$');
    if (!key)
        return FALSE;
    p->salt_len = password_b64_decode(salt, (gsize)(key - salt), p->salt, sizeof p->salt);
    key++;
    p->key_len = password_b64_decode(key, strlen(key), p->key, sizeof p->key);
    return p->salt_len >= PASSWORD_SALT_MIN && p->key_len >= PASSWORD_KEY_MIN;
}

/* The salt of the dummy verification; its value does not matter, only the cost does. */
static const guint8 password_dummy_salt[PASSWORD_SALT_LEN] = "cassmail-dummy!";

/* password_burn - ITERATIONS of PBKDF2 whose result is thrown away, then a constant-time compare,
 * as a real check ends */
static void
password_burn(const char *password, guint iterations)
{
    guint8 key[PASSWORD_KEY_LEN];
    guint8 other[PASSWORD_KEY_LEN] = {0};
    if (iterations > 0)
        password_derive(password ? password : "", password_dummy_salt, sizeof password_dummy_salt,
                        iterations, key, sizeof key);
    volatile int sink = CRYPTO_memcmp(key, other, sizeof key);
    (void)sink;
    OPENSSL_cleanse(key, sizeof key);
}

guint
password_check_cost(const char *stored)
{
    PasswordStored p;
    guint cost = password_cost;
    if (password_parse(stored, &p))
        cost = MAX(p.iterations, password_cost);
    OPENSSL_cleanse(&p, sizeof p);
    return cost;
}

void
password_verify_dummy(const char *password)
{
    password_burn(password, password_cost);
}

gboolean
password_verify(const char *password, const char *stored)
{
    PasswordStored p;
    if (!password || strlen(password) > PASSWORD_MAX_LEN || !password_parse(stored, &p)) {
        OPENSSL_cleanse(&p, sizeof p);
        password_verify_dummy(password);
        return FALSE;
    }
    guint8 key[PASSWORD_KEY_MAX];
    gboolean ok = password_derive(password, p.salt, p.salt_len, p.iterations, key, p.key_len) &&
                  CRYPTO_memcmp(key, p.key, p.key_len) == 0;
    /* A hash cheaper than the configured cost is padded up to it, so that its user's checks cost
     * what an unknown user's dummy check costs (see password_check_cost). */
    if (p.iterations < password_cost)
        password_burn(password, password_cost - p.iterations);
    OPENSSL_cleanse(key, sizeof key);
    OPENSSL_cleanse(&p, sizeof p);
    return ok;
}
