/*
 * config.c - read cassmail.conf (GKeyFile) into a CassmailConfig, with defaults for every key.
 */
#include "util/config.h"

#include <stddef.h>
#include <string.h>

#include <arpa/inet.h>

#include "cass/cass.h"
#include "relay/relay.h"
#include "smtp/session.h"
#include "util/password.h"
#include "util/text.h"

G_DEFINE_QUARK(cassmail-config-error-quark, config_error)

/* ConfigChoices - the words a key accepts (case does not matter) and the value each stands for */
typedef struct {
    const char *expected;    /* the words, for an error */
    struct {
        const char *name;
        int value;
    } words[8];              /* up to the first NULL name */
} ConfigChoices;

/* The values are the layers' own: consistency levels cass.h's, outbox copies the SMTP core's,
 * STARTTLS towards the smarthost the relay client's. */
static const ConfigChoices consistency_choices = {
    "ONE, QUORUM, LOCAL_QUORUM, EACH_QUORUM, ALL or ANY",
    {{"ONE", CASS_ONE}, {"QUORUM", CASS_QUORUM}, {"LOCAL_QUORUM", CASS_LOCAL_QUORUM},
     {"EACH_QUORUM", CASS_EACH_QUORUM}, {"ALL", CASS_ALL}, {"ANY", CASS_ANY}},
};
static const ConfigChoices plaintext_choices = {
    "false, loopback or true",
    {{"false", CONFIG_PLAINTEXT_NEVER}, {"loopback", CONFIG_PLAINTEXT_LOOPBACK},
     {"true", CONFIG_PLAINTEXT_ALWAYS}, {"0", CONFIG_PLAINTEXT_NEVER}, {"1", CONFIG_PLAINTEXT_ALWAYS}},
};
static const ConfigChoices outbox_choices = {
    "authenticated, local or never",
    {{"authenticated", SMTP_OUTBOX_AUTHENTICATED}, {"local", SMTP_OUTBOX_LOCAL},
     {"never", SMTP_OUTBOX_NEVER}},
};
static const ConfigChoices relay_tls_choices = {
    "none, opportunistic or required",
    {{"none", RELAY_TLS_NONE}, {"opportunistic", RELAY_TLS_OPPORTUNISTIC},
     {"required", RELAY_TLS_REQUIRED}},
};
static const ConfigChoices bool_choices = {
    "true or false",
    {{"true", TRUE}, {"false", FALSE}, {"yes", TRUE}, {"no", FALSE}, {"1", TRUE}, {"0", FALSE}},
};
/* a choice is written through an int: the enums must be one */
G_STATIC_ASSERT(sizeof(ConfigPlaintextAuth) == sizeof(int));

typedef enum {
    KEY_STR,    /* text, stripped of white space */
    KEY_OPT,    /* the same, but not set or empty is NULL */
    KEY_LIST,   /* words separated by ';', ',' or spaces, as a NULL-ended array */
    KEY_INT,    /* a whole number from min to max, into an int */
    KEY_SIZE,   /* the same into a gsize */
    KEY_CHOICE, /* one of choices' words, its value into an int (the enums, gboolean) */
} ConfigKeyType;

/* ConfigKey - one key of cassmail.conf: where it is, what it holds, its default and its field */
typedef struct {
    const char *group, *key;
    ConfigKeyType type;
    size_t offset;                  /* of its CassmailConfig field */
    const char *text;               /* the default of STR, LIST and CHOICE */
    gint64 num, min, max;           /* the default and range of INT and SIZE */
    const ConfigChoices *choices;
} ConfigKey;

#define F(field) offsetof(CassmailConfig, field)
#define STR(g, k, field, def) {g, k, KEY_STR, F(field), .text = def}
#define OPT(g, k, field) {g, k, KEY_OPT, F(field), .text = NULL}
#define LIST(g, k, field, def) {g, k, KEY_LIST, F(field), .text = def}
#define INT(g, k, field, def, lo, hi) {g, k, KEY_INT, F(field), .num = def, .min = lo, .max = hi}
#define SIZE(g, k, field, def, lo, hi) {g, k, KEY_SIZE, F(field), .num = def, .min = lo, .max = hi}
#define CHOICE(g, k, field, def, ch) {g, k, KEY_CHOICE, F(field), .text = def, .choices = ch}

/* Every key with its default (config/cassmail.conf explains them); a key not here is an error, so
 * a typo does not pass silently. The rules between keys are config_finish's. */
static const ConfigKey config_keys[] = {
    LIST("cassandra", "endpoints", endpoints, "127.0.0.1:9160"),
    STR("cassandra", "keyspace", keyspace, "Mail"),
    INT("cassandra", "replication_factor", replication_factor, 1, 1, 16),
    CHOICE("cassandra", "write_consistency", write_consistency, "ONE", &consistency_choices),
    CHOICE("cassandra", "read_consistency", read_consistency, "ONE", &consistency_choices),
    INT("cassandra", "timeout_ms", timeout_ms, 10000, 100, 600000),
    INT("cassandra", "retry_ms", retry_ms, 20000, 0, 3600000),
    INT("cassandra", "unavailable_retry_ms", unavailable_retry_ms, 1000, 0, 3600000),
    INT("cassandra", "backoff_ms", backoff_ms, 5000, 0, 3600000),

    STR("smtp", "listen", smtp_listen, "127.0.0.1:2525"),
    STR("smtp", "hostname", hostname, NULL),    /* NULL: the host name */
    LIST("smtp", "domains", domains, "example.com"),
    /* Bodies are stored in parts (store.h), so the limit is what users may send, no longer what a
     * Thrift frame holds; the store is tested with 200 MiB. */
    SIZE("smtp", "max_message_size", max_message_size, 50 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
    INT("smtp", "max_recipients", max_recipients, 100, 1, 100000),
    CHOICE("smtp", "allow_plaintext_auth", allow_plaintext_auth, "loopback", &plaintext_choices),
    CHOICE("smtp", "outbox_copy", outbox_copy, "authenticated", &outbox_choices),

    SIZE("store", "inline_max", inline_max, 64 * 1024, 0, 1024 * 1024 * 1024),
    INT("store", "part_size", part_size, 1024 * 1024, 4096, 4 * 1024 * 1024),   /* STORE_PART_SIZE */
    INT("store", "gc_min_age_s", gc_min_age_s, 3600, 60, 30 * 86400),

    STR("pop3", "listen", pop3_listen, "127.0.0.1:1110"),
    INT("pop3", "batch_size", batch_size, 64, 1, 100000),
    STR("pop3", "mailbox_delimiter", mailbox_delimiter, "|"),
    INT("pop3", "login_delay_ms", login_delay_ms, 1000, 0, 60000),
    CHOICE("pop3", "allow_plaintext_auth", pop3_allow_plaintext_auth, "loopback", &plaintext_choices),

    STR("imap", "listen", imap_listen, "127.0.0.1:1143"),
    CHOICE("imap", "allow_plaintext_auth", imap_allow_plaintext_auth, "loopback", &plaintext_choices),
    INT("imap", "settle_ms", imap_settle_ms, 2000, 0, 600000),

    OPT("tls", "certificate", tls_certificate),
    OPT("tls", "key", tls_key),

    INT("limits", "max_children", max_children, 1000, 1, 100000),
    INT("limits", "client_connection_limit", client_connection_limit, 50, 0, 100000),
    INT("limits", "evict_idle_s", evict_idle_s, 30, 0, 86400),
    INT("limits", "idle_timeout_s", idle_timeout_s, 300, 1, 86400),
    INT("limits", "data_timeout_s", data_timeout_s, 600, 1, 86400),
    INT("limits", "max_errors", max_errors, 10, 0, 1000),

    STR("server", "user", user, NULL),
    STR("server", "group", group, NULL),

    INT("auth", "password_iterations", password_iterations, PASSWORD_ITERATIONS,
        PASSWORD_ITERATIONS_MIN, PASSWORD_ITERATIONS_MAX),

    OPT("relay", "smarthost", relay_smarthost),
    CHOICE("relay", "starttls", relay_starttls, "opportunistic", &relay_tls_choices),
    CHOICE("relay", "tls_verify", relay_tls_verify, "true", &bool_choices),
    OPT("relay", "tls_ca_file", relay_tls_ca_file),
    OPT("relay", "auth_user", relay_auth_user),
    OPT("relay", "auth_password_file", relay_auth_password_file),
    LIST("relay", "trusted_networks", relay_trusted_networks, ""),
    INT("relay", "connect_timeout_s", relay_connect_timeout_s, 30, 1, 3600),
    INT("relay", "timeout_s", relay_timeout_s, 300, 1, 3600),
};

/* key_find - the entry of KEY in GROUP, or with KEY NULL the first of GROUP; NULL when none */
static const ConfigKey *
key_find(const char *group, const char *key)
{
    for (gsize i = 0; i < G_N_ELEMENTS(config_keys); i++)
        if (strcmp(config_keys[i].group, group) == 0 && (!key || strcmp(config_keys[i].key, key) == 0))
            return &config_keys[i];
    return NULL;
}

/* check_keys - an error naming the first unknown group or key in KF */
static gboolean
check_keys(GKeyFile *kf, GError **error)
{
    g_auto(GStrv) groups = g_key_file_get_groups(kf, NULL);
    for (char **g = groups; *g; g++) {
        if (!key_find(*g, NULL)) {
            g_set_error(error, CONFIG_ERROR, 0, "unknown section [%s]", *g);
            return FALSE;
        }
        g_auto(GStrv) keys = g_key_file_get_keys(kf, *g, NULL, NULL);
        for (char **k = keys; k && *k; k++) {
            if (!key_find(*g, *k)) {
                g_set_error(error, CONFIG_ERROR, 0, "unknown key \"%s\" in [%s]", *k, *g);
                return FALSE;
            }
        }
    }
    return TRUE;
}

/* key_read - KEY's value in KF (NULL, or not set there: its default) into its field of C */
static gboolean
key_read(GKeyFile *kf, const ConfigKey *key, CassmailConfig *c, GError **error)
{
    void *field = (char *)c + key->offset;
    g_autofree char *v = kf ? g_key_file_get_string(kf, key->group, key->key, NULL) : NULL;
    if (v)
        g_strstrip(v);
    const char *text = v ? v : key->text;
    switch (key->type) {
    case KEY_STR:
        *(char **)field = g_strdup(text);
        return TRUE;
    case KEY_OPT:
        *(char **)field = text && *text ? g_strdup(text) : NULL;
        return TRUE;
    case KEY_LIST: {
        g_auto(GStrv) parts = g_strsplit_set(text, ";, ", -1);
        GPtrArray *out = g_ptr_array_new();
        for (char **p = parts; *p; p++)
            if (**p)
                g_ptr_array_add(out, g_strdup(*p));
        g_ptr_array_add(out, NULL);
        *(char ***)field = (char **)g_ptr_array_free(out, FALSE);
        return TRUE;
    }
    case KEY_INT:
    case KEY_SIZE: {
        gint64 n = key->num;
        if (v && !g_ascii_string_to_signed(v, 10, key->min, key->max, &n, NULL)) {
            g_set_error(error, CONFIG_ERROR, 0, "[%s] %s = \"%s\": expected a whole number from %"
                        G_GINT64_FORMAT " to %" G_GINT64_FORMAT, key->group, key->key, v, key->min,
                        key->max);
            return FALSE;
        }
        if (key->type == KEY_INT)
            *(int *)field = (int)n;
        else
            *(gsize *)field = (gsize)n;
        return TRUE;
    }
    case KEY_CHOICE:
        for (gsize i = 0; i < G_N_ELEMENTS(key->choices->words) && key->choices->words[i].name; i++) {
            if (g_ascii_strcasecmp(text, key->choices->words[i].name) == 0) {
                *(int *)field = key->choices->words[i].value;
                return TRUE;
            }
        }
        g_set_error(error, CONFIG_ERROR, 0, "[%s] %s = \"%s\": expected %s", key->group, key->key,
                    text, key->choices->expected);
        return FALSE;
    }
    return FALSE;
}

const char *
config_listen(const CassmailConfig *cfg, const char *group)
{
    const ConfigKey *key = key_find(group, "listen");
    return key && key->type == KEY_STR ? *(char *const *)((const char *)cfg + key->offset) : NULL;
}

const char *
config_outbox_copy_name(int copy)
{
    for (gsize i = 0; i < G_N_ELEMENTS(outbox_choices.words) && outbox_choices.words[i].name; i++)
        if (outbox_choices.words[i].value == copy)
            return outbox_choices.words[i].name;
    return "?";
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

const char *
config_plaintext_auth_text(ConfigPlaintextAuth allow)
{
    return allow == CONFIG_PLAINTEXT_ALWAYS     ? "every client"
           : allow == CONFIG_PLAINTEXT_LOOPBACK ? "loopback clients only"
                                                : "never";
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

/* config_finish - the defaults and rules that are not one key's: the host name, the keys that
 * follow another when not set, and the values that must agree */
static gboolean
config_finish(GKeyFile *kf, CassmailConfig *c, GError **error)
{
    if (!c->hostname)
        c->hostname = g_strdup(g_get_host_name());
    /* Before [pop3] had its own key, [smtp] allow_plaintext_auth governed POP3: it still does
     * when [pop3] says nothing. [imap] follows [pop3] likewise. */
    if (!kf || !g_key_file_has_key(kf, "pop3", "allow_plaintext_auth", NULL))
        c->pop3_allow_plaintext_auth = c->allow_plaintext_auth;
    if (!kf || !g_key_file_has_key(kf, "imap", "allow_plaintext_auth", NULL))
        c->imap_allow_plaintext_auth = c->pop3_allow_plaintext_auth;

    g_autofree char *host = NULL;
    guint port = 0;
    int family, bits;
    guint8 addr[16];
    for (char **n = c->relay_trusted_networks; *n; n++) {
        if (!config_cidr_parse(*n, &family, addr, &bits)) {
            g_set_error(error, CONFIG_ERROR, 0,
                        "[relay] trusted_networks: \"%s\" is not an address or ADDRESS/BITS", *n);
            return FALSE;
        }
    }
    if (!c->endpoints[0])
        g_set_error(error, CONFIG_ERROR, 0, "[cassandra] endpoints is empty");
    else if (strlen(c->mailbox_delimiter) != 1)
        g_set_error(error, CONFIG_ERROR, 0, "[pop3] mailbox_delimiter must be one character");
    else if (!c->tls_certificate != !c->tls_key)
        g_set_error(error, CONFIG_ERROR, 0, "[tls] certificate and key must be given together");
    else if (c->relay_smarthost && !text_hostport_split(c->relay_smarthost, 0, &host, &port))
        g_set_error(error, CONFIG_ERROR, 0, "[relay] smarthost = \"%s\": expected host:port",
                    c->relay_smarthost);
    else if (!c->relay_auth_user != !c->relay_auth_password_file)
        g_set_error(error, CONFIG_ERROR, 0,
                    "[relay] auth_user and auth_password_file must be given together");
    else
        return TRUE;
    return FALSE;
}

CassmailConfig *
config_load(const char *path, GError **error)
{
    g_autoptr(GKeyFile) kf = NULL;
    if (path) {
        kf = g_key_file_new();
        GError *e = NULL;
        if (!g_key_file_load_from_file(kf, path, G_KEY_FILE_NONE, &e) || !check_keys(kf, &e)) {
            g_set_error(error, CONFIG_ERROR, 0, "%s: %s", path, e->message);
            g_error_free(e);
            return NULL;
        }
    }
    CassmailConfig *c = g_new0(CassmailConfig, 1);
    gboolean ok = TRUE;
    for (gsize i = 0; ok && i < G_N_ELEMENTS(config_keys); i++)
        ok = key_read(kf, &config_keys[i], c, error);
    if (!ok || !config_finish(kf, c, error)) {
        if (path)   /* which file, as for an unknown key */
            g_prefix_error(error, "%s: ", path);
        config_free(&c);
    }
    return c;
}

void
config_free(CassmailConfig **cfg)
{
    for (gsize i = 0; *cfg && i < G_N_ELEMENTS(config_keys); i++) {
        void *field = (char *)*cfg + config_keys[i].offset;
        if (config_keys[i].type == KEY_LIST)
            g_strfreev(*(char ***)field);
        else if (config_keys[i].type == KEY_STR || config_keys[i].type == KEY_OPT)
            g_free(*(char **)field);
    }
    g_clear_pointer(cfg, g_free);
}
