/*
 * config.h - cassmail.conf: one GKeyFile read by every CassMail program.
 *
 * Sections: [cassandra] [smtp] [store] [pop3] [imap] [tls] [limits] [server] [auth] [relay]; see config/cassmail.conf for every
 * key with its default and meaning. A missing file (path NULL) means all defaults, which suit the
 * local single-node set-up of `make run`.
 */
#ifndef CASSMAIL_CONFIG_H
#define CASSMAIL_CONFIG_H

#include <glib.h>

/* [smtp] and [pop3] allow_plaintext_auth: where a password may travel without TLS (SMTP AUTH,
 * POP3 USER/PASS). Over TLS it is always allowed. */
typedef enum {
    CONFIG_PLAINTEXT_NEVER,      /* "false": only after STARTTLS/STLS, from every peer */
    CONFIG_PLAINTEXT_LOOPBACK,   /* "loopback" (default): also from this machine without TLS */
    CONFIG_PLAINTEXT_ALWAYS,     /* "true": from every peer (a trusted network, or for tests) */
} ConfigPlaintextAuth;

typedef struct {
    /* [cassandra] */
    char **endpoints;          /* "host:port", in order of preference (local node first) */
    char *keyspace;            /* Mail */
    int replication_factor;    /* used when the schema is created */
    int write_consistency;     /* Thrift ConsistencyLevel value: ONE=1, QUORUM=2, ALL=5, ... */
    int read_consistency;
    int timeout_ms;            /* one RPC (connect, send, receive) */
    int retry_ms;              /* total time one operation may spend failing over and retrying */
    int unavailable_retry_ms;  /* ...of which retrying while every coordinator says Unavailable */
    int backoff_ms;            /* a failed endpoint is skipped this long */

    /* [smtp] */
    char *smtp_listen;         /* address:port for the listener (daemon mode) */
    char *hostname;            /* our name in greetings and Received: lines */
    char **domains;            /* local domains; everything else is refused (no relay) */
    gsize max_message_size;    /* octets; SIZE= and DATA over it get 552 */
    int max_recipients;        /* RCPT over it get 452 */
    ConfigPlaintextAuth allow_plaintext_auth; /* AUTH without TLS: where */
    int outbox_copy;           /* who gets the sent copy in user:outbox (an SmtpOutboxCopy) */

    /* [store] */
    gsize inline_max;          /* messages up to this many octets stay inline in Mailboxes */
    int part_size;             /* octets of a body part in Bodies */
    int gc_min_age_s;          /* gc leaves bodies younger than this alone; a delivery must
                                  finish within half of it */

    /* [pop3] */
    char *pop3_listen;
    int batch_size;            /* index entries per get_slice */
    char *mailbox_delimiter;   /* USER pete|outbox */
    int login_delay_ms;        /* after a failed PASS */
    ConfigPlaintextAuth pop3_allow_plaintext_auth; /* USER/PASS without TLS: where (not set:
                                  [smtp] allow_plaintext_auth, the key that governed it before) */

    /* [imap] */
    char *imap_listen;
    ConfigPlaintextAuth imap_allow_plaintext_auth; /* LOGIN/AUTHENTICATE without TLS: where (not
                                  set: as POP3) */
    int imap_settle_ms;        /* how old a delivery is before IMAP gives it a UID (docs/imap.md) */

    /* [tls] */
    char *tls_certificate;     /* PEM certificate chain; with tls_key it enables STARTTLS/STLS */
    char *tls_key;             /* PEM private key, read before privileges are dropped */

    /* [limits] */
    int max_children;          /* concurrent sessions per listener */
    int client_connection_limit; /* ...of them from one client address (0: no limit) */
    int evict_idle_s;          /* a full listener closes a session silent this long (0: never) */
    int idle_timeout_s;        /* between commands (SMTP 300, POP3 600 by RFC) */
    int data_timeout_s;        /* SMTP DATA terminator wait */
    int max_errors;            /* bad commands before the session is closed (0: no limit) */

    /* [server] */
    char *user;                /* drop to this user after binding (when started as root) */
    char *group;

    /* [auth] */
    int password_iterations;   /* PBKDF2 cost of new hashes and the least a check costs */

    /* [relay] */
    char *relay_smarthost;     /* "host:port" that takes non-local recipients; NULL: no relay */
    int relay_starttls;        /* STARTTLS towards the smarthost (a RelayTls) */
    gboolean relay_tls_verify; /* check the smarthost's certificate chain and name */
    char *relay_tls_ca_file;   /* PEM CA certificates; NULL: the system's */
    char *relay_auth_user;     /* AUTH PLAIN towards the smarthost; NULL: no AUTH */
    char *relay_auth_password_file; /* the file holding its password (first line) */
    char **relay_trusted_networks; /* CIDR blocks that may relay without AUTH (empty: none) */
    int relay_connect_timeout_s;
    int relay_timeout_s;       /* each reply of the smarthost, the final one after DATA included */
} CassmailConfig;

/* config_load - read FILE (NULL: defaults only); unknown keys are errors so typos do not pass */
CassmailConfig *config_load(const char *path, GError **error);
void config_free(CassmailConfig **cfg);

/* config_plaintext_auth_allowed - whether ALLOW lets a password travel without TLS from PEER (a
 * NetHandler peer text: "127.0.0.1", "::1", "local" for a Unix socket, "pipe" when not a socket,
 * or NULL: all of those count as this machine) */
gboolean config_plaintext_auth_allowed(ConfigPlaintextAuth allow, const char *peer);
/* config_plaintext_auth_text - ALLOW for the start-up log: "every client", "loopback clients
 * only" or "never" */
const char *config_plaintext_auth_text(ConfigPlaintextAuth allow);
/* config_peer_is_loopback - whether PEER (as above) is this machine */
gboolean config_peer_is_loopback(const char *peer);

/* config_peer_trusted - whether PEER (an address text as above) lies in one of CFG's [relay]
 * trusted_networks ("local", "pipe" and NULL never do: only listed addresses relay unproven) */
gboolean config_peer_trusted(const CassmailConfig *cfg, const char *peer);
/* config_listen - [GROUP] listen ("smtp", "pop3", "imap": a server's name); NULL when GROUP has
 * none */
const char *config_listen(const CassmailConfig *cfg, const char *group);
/* config_outbox_copy_name - "authenticated", "local" or "never" for an SmtpOutboxCopy */
const char *config_outbox_copy_name(int copy);

#define CONFIG_ERROR (config_error_quark())
GQuark config_error_quark(void);

#endif
