/*
 * config.c - read cassmail.conf (GKeyFile) into a CassmailConfig, with defaults for every key.
 */
#include "util/config.h"

#include <string.h>

#include <arpa/inet.h>

#include "cass/cass.h"
#include "util/password.h"
#include "util/text.h"

G_DEFINE_QUARK(cassmail-config-error-quark, config_error)

/* The names of the consistency levels (their values are cass.h's). */
static const struct {
    const char *name;
    int value;
} consistency_levels[] = {
    {"ONE", CASS_ONE}, {"QUORUM", CASS_QUORUM}, {"LOCAL_QUORUM", CASS_LOCAL_QUORUM},
    {"EACH_QUORUM", CASS_EACH_QUORUM}, {"ALL", CASS_ALL}, {"ANY", CASS_ANY},
};

int
config_consistency_parse(const char *name)
{
    for (gsize i = 0; i < G_N_ELEMENTS(consistency_levels); i++)
        if (name && g_ascii_strcasecmp(name, consistency_levels[i].name) == 0)
            return consistency_levels[i].value;
    return -1;
}

/* The keys each section accepts; anything else is reported, so a typo is not silently ignored. */
static const char *const known_keys[][12] = {
    {"cassandra", "endpoints", "keyspace", "replication_factor", "write_consistency",
     "read_consistency", "timeout_ms", "retry_ms", "unavailable_retry_ms", "backoff_ms", NULL},
    {"smtp", "listen", "hostname", "domains", "max_message_size", "max_recipients",
     "allow_plaintext_auth", "outbox_copy", NULL},
    {"store", "inline_max", "part_size", "gc_min_age_s", NULL},
    {"pop3", "listen", "batch_size", "mailbox_delimiter", "login_delay_ms", "allow_plaintext_auth",
     NULL},
    {"imap", "listen", "allow_plaintext_auth", "settle_ms", NULL},
    {"tls", "certificate", "key", NULL},
    {"limits", "max_children", "client_connection_limit", "evict_idle_s", "idle_timeout_s",
     "data_timeout_s", "max_errors", NULL},
    {"server", "user", "group", NULL},
    {"auth", "password_iterations", NULL},
    {"relay", "smarthost", "starttls", "tls_verify", "tls_ca_file", "auth_user",
     "auth_password_file", "trusted_networks", "connect_timeout_s", "timeout_s", NULL},
};

/* check_keys - an error naming the first unknown group or key in KF */
static gboolean
check_keys(GKeyFile *kf, GError **error)
{
    g_auto(GStrv) groups = g_key_file_get_groups(kf, NULL);
    for (char **g = groups; *g; g++) {
        gssize row = -1;
        for (gsize i = 0; i < G_N_ELEMENTS(known_keys); i++)
            if (strcmp(known_keys[i][0], *g) == 0)
                row = (gssize)i;
        if (row < 0) {
            g_set_error(error, CONFIG_ERROR, 0, "unknown section [%s]", *g);
            return FALSE;
        }
        g_auto(GStrv) keys = g_key_file_get_keys(kf, *g, NULL, NULL);
        for (char **k = keys; k && *k; k++) {
            gboolean ok = FALSE;
            for (int j = 1; known_keys[row][j]; j++)
                ok |= strcmp(known_keys[row][j], *k) == 0;
            if (!ok) {
                g_set_error(error, CONFIG_ERROR, 0, "unknown key \"%s\" in [%s]", *k, *g);
                return FALSE;
            }
        }
    }
    return TRUE;
}

/* get_str / get_int / get_list - a value or the default; FALSE on a malformed value */
static void
get_str(GKeyFile *kf, const char *g, const char *k, const char *def, char **out)
{
    char *v = kf ? g_key_file_get_string(kf, g, k, NULL) : NULL;
    if (v)
        g_strstrip(v);
    *out = v ? v : g_strdup(def);
}

static gboolean
get_int(GKeyFile *kf, const char *g, const char *k, gint64 def, gint64 min, gint64 max,
        gint64 *out, GError **error)
{
    *out = def;
    if (!kf || !g_key_file_has_key(kf, g, k, NULL))
        return TRUE;
    g_autofree char *v = g_key_file_get_string(kf, g, k, NULL);
    g_strstrip(v);
    gint64 n;
    if (!g_ascii_string_to_signed(v, 10, min, max, &n, NULL)) {
        g_set_error(error, CONFIG_ERROR, 0, "[%s] %s = \"%s\": expected a whole number from %"
                    G_GINT64_FORMAT " to %" G_GINT64_FORMAT, g, k, v, min, max);
        return FALSE;
    }
    *out = n;
    return TRUE;
}

static char **
get_list(GKeyFile *kf, const char *g, const char *k, const char *def)
{
    g_autofree char *v = NULL;
    get_str(kf, g, k, def, &v);
    g_auto(GStrv) parts = g_strsplit_set(v, ";, ", -1);
    GPtrArray *out = g_ptr_array_new();
    for (char **p = parts; *p; p++)
        if (**p)
            g_ptr_array_add(out, g_strdup(*p));
    g_ptr_array_add(out, NULL);
    return (char **)g_ptr_array_free(out, FALSE);
}

/* get_plaintext_auth - [GROUP] allow_plaintext_auth: true, false or loopback; DEF when not set */
static gboolean
get_plaintext_auth(GKeyFile *kf, const char *group, const char *def, ConfigPlaintextAuth *out,
                   GError **error)
{
    g_autofree char *v = NULL;
    get_str(kf, group, "allow_plaintext_auth", def, &v);
    if (g_ascii_strcasecmp(v, "loopback") == 0)
        *out = CONFIG_PLAINTEXT_LOOPBACK;
    else if (g_ascii_strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0)
        *out = CONFIG_PLAINTEXT_ALWAYS;
    else if (g_ascii_strcasecmp(v, "false") == 0 || strcmp(v, "0") == 0)
        *out = CONFIG_PLAINTEXT_NEVER;
    else {
        g_set_error(error, CONFIG_ERROR, 0,
                    "[%s] allow_plaintext_auth = \"%s\": expected false, loopback or true", group, v);
        return FALSE;
    }
    return TRUE;
}

static const char *const outbox_copy_names[] = {
    [CONFIG_OUTBOX_AUTHENTICATED] = "authenticated",
    [CONFIG_OUTBOX_LOCAL] = "local",
    [CONFIG_OUTBOX_NEVER] = "never",
};

static const char *const relay_tls_names[] = {
    [CONFIG_RELAY_TLS_OPPORTUNISTIC] = "opportunistic",
    [CONFIG_RELAY_TLS_NONE] = "none",
    [CONFIG_RELAY_TLS_REQUIRED] = "required",
};

/* config_outbox_copy_name, config_relay_tls_name - see config.h */
const char *
config_outbox_copy_name(ConfigOutboxCopy copy)
{
    return (gsize)copy < G_N_ELEMENTS(outbox_copy_names) ? outbox_copy_names[copy] : "?";
}

const char *
config_relay_tls_name(ConfigRelayTls tls)
{
    return (gsize)tls < G_N_ELEMENTS(relay_tls_names) ? relay_tls_names[tls] : "?";
}

/* get_choice - key K of group G (default DEF) as its index in NAMES (N of them); EXPECTED
 * lists them for the error */
static gboolean
get_choice(GKeyFile *kf, const char *g, const char *k, const char *def, const char *const *names,
           gsize n, const char *expected, int *out, GError **error)
{
    g_autofree char *v = NULL;
    get_str(kf, g, k, def, &v);
    for (gsize i = 0; i < n; i++) {
        if (g_ascii_strcasecmp(v, names[i]) == 0) {
            *out = (int)i;
            return TRUE;
        }
    }
    g_set_error(error, CONFIG_ERROR, 0, "[%s] %s = \"%s\": expected %s", g, k, v, expected);
    return FALSE;
}

/* get_bool - true/false/yes/no/1/0 or the default */
static gboolean
get_bool(GKeyFile *kf, const char *g, const char *k, gboolean def, gboolean *out, GError **error)
{
    static const char *const names[] = {"false", "true", "no", "yes", "0", "1"};   /* odd: TRUE */
    int i = 0;
    if (!get_choice(kf, g, k, def ? "true" : "false", names, G_N_ELEMENTS(names), "true or false",
                    &i, error))
        return FALSE;
    *out = i % 2 == 1;
    return TRUE;
}

/* config_cidr_parse - "ADDR[/BITS]" into the address (16 octets, IPv4 as its own 4), its family
 * and the prefix length; FALSE when it is not one */
static gboolean
config_cidr_parse(const char *text, int *family, guint8 addr[16], int *bits)
{
    g_autofree char *copy = g_strdup(text);
    char *slash = strchr(copy, '/');
    if (slash)
        *slash++ = '\0';
    memset(addr, 0, 16);
    if (inet_pton(AF_INET, copy, addr) == 1)
        *family = AF_INET;
    else if (inet_pton(AF_INET6, copy, addr) == 1)
        *family = AF_INET6;
    else
        return FALSE;
    int max = *family == AF_INET ? 32 : 128;
    gint64 n = max;
    if (slash && !g_ascii_string_to_signed(slash, 10, 0, max, &n, NULL))
        return FALSE;
    *bits = (int)n;
    return TRUE;
}

gboolean
config_peer_trusted(const CassmailConfig *cfg, const char *peer)
{
    int pf, pbits;
    guint8 pa[16];
    if (!peer || !config_cidr_parse(peer, &pf, pa, &pbits) || !pbits)
        return FALSE;
    for (char **n = cfg->relay_trusted_networks; n && *n; n++) {
        int nf, bits;
        guint8 na[16];
        if (!config_cidr_parse(*n, &nf, na, &bits) || nf != pf)
            continue;
        gboolean match = TRUE;
        for (int i = 0; i < bits && match; i++)
            match = ((pa[i / 8] ^ na[i / 8]) & (0x80 >> (i % 8))) == 0;
        if (match)
            return TRUE;
    }
    return FALSE;
}

gboolean
config_peer_is_loopback(const char *peer)
{
    return !peer || g_str_has_prefix(peer, "127.") || strcmp(peer, "::1") == 0 ||
           strcmp(peer, "local") == 0 || strcmp(peer, "pipe") == 0;
}

gboolean
config_plaintext_auth_allowed(ConfigPlaintextAuth allow, const char *peer)
{
    switch (allow) {
    case CONFIG_PLAINTEXT_ALWAYS:
        return TRUE;
    case CONFIG_PLAINTEXT_LOOPBACK:
        return config_peer_is_loopback(peer);
    case CONFIG_PLAINTEXT_NEVER:
    default:
        return FALSE;
    }
}

static gboolean
get_consistency(GKeyFile *kf, const char *k, int *out, GError **error)
{
    g_autofree char *v = NULL;
    get_str(kf, "cassandra", k, "ONE", &v);
    *out = config_consistency_parse(v);
    if (*out < 0) {
        g_set_error(error, CONFIG_ERROR, 0,
                    "[cassandra] %s = \"%s\": expected ONE, QUORUM, LOCAL_QUORUM, EACH_QUORUM, ALL or ANY",
                    k, v);
        return FALSE;
    }
    return TRUE;
}

CassmailConfig *
config_load(const char *path, GError **error)
{
    g_autoptr(GKeyFile) kf = NULL;
    if (path) {
        kf = g_key_file_new();
        GError *e = NULL;
        if (!g_key_file_load_from_file(kf, path, G_KEY_FILE_NONE, &e)) {
            g_set_error(error, CONFIG_ERROR, 0, "%s: %s", path, e->message);
            g_error_free(e);
            return NULL;
        }
        if (!check_keys(kf, &e)) {
            g_set_error(error, CONFIG_ERROR, 0, "%s: %s", path, e->message);
            g_error_free(e);
            return NULL;
        }
    }

    CassmailConfig *c = g_new0(CassmailConfig, 1);
    gint64 n = 0;
    gboolean ok = TRUE;
    c->endpoints = get_list(kf, "cassandra", "endpoints", "127.0.0.1:9160");
    get_str(kf, "cassandra", "keyspace", "Mail", &c->keyspace);
#define INT(field, g, k, def, min, max) \
    (ok = ok && get_int(kf, g, k, def, min, max, &n, error), c->field = (int)n)
    INT(replication_factor, "cassandra", "replication_factor", 1, 1, 16);
    INT(timeout_ms, "cassandra", "timeout_ms", 10000, 100, 600000);
    INT(retry_ms, "cassandra", "retry_ms", 20000, 0, 3600000);
    INT(unavailable_retry_ms, "cassandra", "unavailable_retry_ms", 1000, 0, 3600000);
    INT(backoff_ms, "cassandra", "backoff_ms", 5000, 0, 3600000);
    ok = ok && get_consistency(kf, "write_consistency", &c->write_consistency, error);
    ok = ok && get_consistency(kf, "read_consistency", &c->read_consistency, error);

    get_str(kf, "smtp", "listen", "127.0.0.1:2525", &c->smtp_listen);
    get_str(kf, "smtp", "hostname", g_get_host_name(), &c->hostname);
    c->domains = get_list(kf, "smtp", "domains", "example.com");
    /* Bodies are stored in parts (store.h), so the limit is what users may send, no longer what a
     * Thrift frame holds; the store is tested with 200 MiB. */
    ok = ok && get_int(kf, "smtp", "max_message_size", 50 * 1024 * 1024, 1024, 1024 * 1024 * 1024,
                       &n, error);
    c->max_message_size = (gsize)n;
    INT(max_recipients, "smtp", "max_recipients", 100, 1, 100000);
    ok = ok && get_plaintext_auth(kf, "smtp", "loopback", &c->allow_plaintext_auth, error);
    int choice = 0;
    ok = ok && get_choice(kf, "smtp", "outbox_copy", "authenticated", outbox_copy_names,
                          G_N_ELEMENTS(outbox_copy_names), "authenticated, local or never",
                          &choice, error);
    c->outbox_copy = (ConfigOutboxCopy)choice;

    ok = ok && get_int(kf, "store", "inline_max", 64 * 1024, 0, 1024 * 1024 * 1024, &n, error);
    c->inline_max = (gsize)n;
    INT(part_size, "store", "part_size", 1024 * 1024, 4096, 4 * 1024 * 1024);   /* STORE_PART_SIZE */
    INT(gc_min_age_s, "store", "gc_min_age_s", 3600, 60, 30 * 86400);

    get_str(kf, "pop3", "listen", "127.0.0.1:1110", &c->pop3_listen);
    INT(batch_size, "pop3", "batch_size", 64, 1, 100000);
    get_str(kf, "pop3", "mailbox_delimiter", "|", &c->mailbox_delimiter);
    INT(login_delay_ms, "pop3", "login_delay_ms", 1000, 0, 60000);
    /* Before [pop3] had its own key, [smtp] allow_plaintext_auth governed POP3: it still does
     * when [pop3] says nothing. */
    c->pop3_allow_plaintext_auth = c->allow_plaintext_auth;
    if (ok && kf && g_key_file_has_key(kf, "pop3", "allow_plaintext_auth", NULL))
        ok = get_plaintext_auth(kf, "pop3", "loopback", &c->pop3_allow_plaintext_auth, error);
    if (ok && strlen(c->mailbox_delimiter) != 1) {
        g_set_error(error, CONFIG_ERROR, 0, "[pop3] mailbox_delimiter must be one character");
        ok = FALSE;
    }

    get_str(kf, "imap", "listen", "127.0.0.1:1143", &c->imap_listen);
    c->imap_allow_plaintext_auth = c->pop3_allow_plaintext_auth;
    if (ok && kf && g_key_file_has_key(kf, "imap", "allow_plaintext_auth", NULL))
        ok = get_plaintext_auth(kf, "imap", "loopback", &c->imap_allow_plaintext_auth, error);
    INT(imap_settle_ms, "imap", "settle_ms", 2000, 0, 600000);

    get_str(kf, "tls", "certificate", NULL, &c->tls_certificate);
    get_str(kf, "tls", "key", NULL, &c->tls_key);
    if (c->tls_certificate && !*c->tls_certificate)
        g_clear_pointer(&c->tls_certificate, g_free);
    if (c->tls_key && !*c->tls_key)
        g_clear_pointer(&c->tls_key, g_free);
    if (ok && !c->tls_certificate != !c->tls_key) {
        g_set_error(error, CONFIG_ERROR, 0, "[tls] certificate and key must be given together");
        ok = FALSE;
    }

    INT(max_children, "limits", "max_children", 1000, 1, 100000);
    INT(client_connection_limit, "limits", "client_connection_limit", 50, 0, 100000);
    INT(evict_idle_s, "limits", "evict_idle_s", 30, 0, 86400);
    INT(idle_timeout_s, "limits", "idle_timeout_s", 300, 1, 86400);
    INT(data_timeout_s, "limits", "data_timeout_s", 600, 1, 86400);
    INT(max_errors, "limits", "max_errors", 10, 0, 1000);
    INT(password_iterations, "auth", "password_iterations", PASSWORD_ITERATIONS,
        PASSWORD_ITERATIONS_MIN, PASSWORD_ITERATIONS_MAX);

    get_str(kf, "server", "user", NULL, &c->user);
    get_str(kf, "server", "group", NULL, &c->group);

    get_str(kf, "relay", "smarthost", NULL, &c->relay_smarthost);
    if (c->relay_smarthost && !*c->relay_smarthost)
        g_clear_pointer(&c->relay_smarthost, g_free);
    if (ok && c->relay_smarthost) {
        g_autofree char *host = NULL;
        guint port = 0;
        if (!text_hostport_split(c->relay_smarthost, 0, &host, &port)) {
            g_set_error(error, CONFIG_ERROR, 0, "[relay] smarthost = \"%s\": expected host:port",
                        c->relay_smarthost);
            ok = FALSE;
        }
    }
    ok = ok && get_choice(kf, "relay", "starttls", "opportunistic", relay_tls_names,
                          G_N_ELEMENTS(relay_tls_names), "none, opportunistic or required",
                          &choice, error);
    c->relay_starttls = (ConfigRelayTls)choice;
    ok = ok && get_bool(kf, "relay", "tls_verify", TRUE, &c->relay_tls_verify, error);
    get_str(kf, "relay", "tls_ca_file", NULL, &c->relay_tls_ca_file);
    get_str(kf, "relay", "auth_user", NULL, &c->relay_auth_user);
    get_str(kf, "relay", "auth_password_file", NULL, &c->relay_auth_password_file);
    if (c->relay_tls_ca_file && !*c->relay_tls_ca_file)
        g_clear_pointer(&c->relay_tls_ca_file, g_free);
    if (c->relay_auth_user && !*c->relay_auth_user)
        g_clear_pointer(&c->relay_auth_user, g_free);
    if (c->relay_auth_password_file && !*c->relay_auth_password_file)
        g_clear_pointer(&c->relay_auth_password_file, g_free);
    if (ok && !c->relay_auth_user != !c->relay_auth_password_file) {
        g_set_error(error, CONFIG_ERROR, 0, "[relay] auth_user and auth_password_file must be given together");
        ok = FALSE;
    }
    c->relay_trusted_networks = get_list(kf, "relay", "trusted_networks", "");
    for (char **n = c->relay_trusted_networks; ok && *n; n++) {
        int family, bits;
        guint8 addr[16];
        if (!config_cidr_parse(*n, &family, addr, &bits)) {
            g_set_error(error, CONFIG_ERROR, 0,
                        "[relay] trusted_networks: \"%s\" is not an address or ADDRESS/BITS", *n);
            ok = FALSE;
        }
    }
    INT(relay_connect_timeout_s, "relay", "connect_timeout_s", 30, 1, 3600);
    INT(relay_timeout_s, "relay", "timeout_s", 300, 1, 3600);
#undef INT

    if (ok && !c->endpoints[0]) {
        g_set_error(error, CONFIG_ERROR, 0, "[cassandra] endpoints is empty");
        ok = FALSE;
    }
    if (!ok) {
        config_free(&c);
        return NULL;
    }
    return c;
}

void
config_free(CassmailConfig **cfg)
{
    CassmailConfig *c = *cfg;
    if (!c)
        return;
    g_strfreev(c->endpoints);
    g_free(c->keyspace);
    g_free(c->smtp_listen);
    g_free(c->hostname);
    g_strfreev(c->domains);
    g_free(c->pop3_listen);
    g_free(c->mailbox_delimiter);
    g_free(c->imap_listen);
    g_free(c->tls_certificate);
    g_free(c->tls_key);
    g_free(c->user);
    g_free(c->group);
    g_free(c->relay_smarthost);
    g_free(c->relay_tls_ca_file);
    g_free(c->relay_auth_user);
    g_free(c->relay_auth_password_file);
    g_strfreev(c->relay_trusted_networks);
    g_free(c);
    *cfg = NULL;
}
