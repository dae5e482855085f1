/*
 * cass.h - CassMail's Cassandra 0.7.0 client: Thrift over an ordered endpoint list with failover.
 *
 * The only module that includes the generated Thrift headers (gen-c_glib). Everything it returns
 * is plain GLib data, and every failure is a GError in CASS_ERROR — nothing aborts:
 *   TRANSPORT    connection refused, reset, timed out, or a garbled frame (endpoint is skipped for
 *                the back-off period and the call moves to the next endpoint)
 *   UNAVAILABLE  not enough live replicas for the consistency level
 *   TIMEDOUT     the coordinator did not hear from enough replicas in time
 *   INVALID      InvalidRequestException (the server's "why" is in the message)
 *   NOT_FOUND    NotFoundException
 * TRANSPORT, UNAVAILABLE and TIMEDOUT are retried on the next endpoint until the call's retry
 * budget is spent (a data call's RETRY_MS, never more than the client's; CASS_RETRY_DEFAULT for
 * the client's; schema changes get none) (our writes carry fixed timestamps, so a retry is the same write); the others
 * are returned at once.
 *
 * Transport: our own TCP socket (connect and I/O timeouts), Thrift framed transport, strict binary
 * protocol — what the 0.7.0 server speaks on port 9160.
 */
#ifndef CASSMAIL_CASS_H
#define CASSMAIL_CASS_H

#include <glib.h>

#define CASS_ERROR (cass_error_quark())
GQuark cass_error_quark(void);
typedef enum {
    CASS_ERROR_TRANSPORT,
    CASS_ERROR_UNAVAILABLE,
    CASS_ERROR_TIMEDOUT,
    CASS_ERROR_INVALID,
    CASS_ERROR_NOT_FOUND,
} CassErrorCode;

/* Thrift ConsistencyLevel values (0.7.0). */
enum { CASS_ONE = 1, CASS_QUORUM = 2, CASS_LOCAL_QUORUM = 3, CASS_EACH_QUORUM = 4, CASS_ALL = 5, CASS_ANY = 6 };

typedef struct {
    guint64 bytes_read;      /* column names and values received */
    guint64 columns_read;
    guint64 bytes_written;   /* column names and values sent */
    guint64 calls;           /* RPCs that succeeded */
    guint64 retries;         /* RPC attempts repeated after a failure */
    guint64 failovers;       /* moves to another endpoint */
    guint64 max_frame;       /* the largest Thrift frame sent, in octets */
} CassStats;

/* The largest frame the client sends: Cassandra 0.7's thrift_framed_transport_size_in_mb (15),
 * counted as 15 × 10^6 octets to stay on the safe side of either reading of "MB". A request that
 * would need more is refused before a byte of it is sent (CASS_ERROR_INVALID, never retried):
 * the server would only drop the connection ("TSocket read 0 bytes"). */
#define CASS_FRAME_MAX (15u * 1000u * 1000u)

typedef struct {
    GBytes *name;
    GBytes *value;
    gint64 timestamp;
} CassColumn;
void cass_column_free(gpointer column);

typedef struct {
    char *start_token;
    char *end_token;
    char **endpoints;
} CassTokenRange;
void cass_token_range_free(gpointer range);

typedef struct {
    const char *name;
    const char *comparator;  /* e.g. "BytesType", "TimeUUIDType" */
    int gc_grace_seconds;    /* 0: server default */
    const char *comment;
    int memtable_flush_after_mins;   /* 0: server default (60) */
    int memtable_throughput_in_mb;   /* 0: server default (heap / 16) */
    double memtable_operations_in_millions;   /* 0: server default (0.3 x throughput / 64) */
    int min_compaction_threshold;    /* 0: server default (4) */
    int max_compaction_threshold;    /* 0: server default (32) */
} CassCfSpec;

/* A call's RETRY_MS that asks for the client's whole retry budget. */
#define CASS_RETRY_DEFAULT (-1)

typedef struct CassClient CassClient;
typedef struct CassBatch CassBatch;

/* cass_client_new - a client for ENDPOINTS ("host:port", most preferred first); connects on the
 * first call. TIMEOUT_MS bounds one connect/send/receive, RETRY_MS the whole of one operation's
 * retries, BACKOFF_MS how long a failed endpoint is skipped. KEYSPACE may be NULL. */
CassClient *cass_client_new(const char *const *endpoints, const char *keyspace, int timeout_ms,
                            int retry_ms, int backoff_ms);
void cass_client_free(CassClient **c);
const CassStats *cass_client_stats(CassClient *c);
/* cass_client_endpoint - the endpoint currently in use (or to be tried next) */
const char *cass_client_endpoint(CassClient *c);
/* cass_client_set_unavailable_ms - how long an operation retries while every endpoint answers
 * Unavailable (default 0: one round of all endpoints, then the error); within retry_ms */
void cass_client_set_unavailable_ms(CassClient *c, int unavailable_ms);

gboolean cass_describe_version(CassClient *c, char **version, GError **error);
gboolean cass_describe_cluster_name(CassClient *c, char **name, GError **error);
gboolean cass_describe_ring(CassClient *c, const char *keyspace, GPtrArray *out, GError **error);

/* cass_keyspace_describe - whether KEYSPACE exists and, in OUT (may be NULL), the names of its
 * column families (char *; OUT should free with g_free) */
gboolean cass_keyspace_describe(CassClient *c, const char *keyspace, gboolean *exists,
                                GPtrArray *out, GError **error);
gboolean cass_keyspace_add(CassClient *c, const char *keyspace, int replication_factor,
                           const CassCfSpec *cfs, guint n_cfs, GError **error);
gboolean cass_column_family_add(CassClient *c, const char *keyspace, const CassCfSpec *cf,
                                GError **error);
/* cass_column_family_tune - give the existing column family CF->name of KEYSPACE the settings of
 * CF that may change after creation (memtable and compaction thresholds: those CF sets), with
 * system_update_column_family when they differ; *CHANGED says whether it did */
gboolean cass_column_family_tune(CassClient *c, const char *keyspace, const CassCfSpec *cf,
                                 gboolean *changed, GError **error);
/* cass_schema_agree - wait (bounded) until every live node reports one schema version */
gboolean cass_schema_agree(CassClient *c, int timeout_ms, GError **error);

/* cass_get_slice - columns of row KEY in CF from START to FINISH (empty: open), at most COUNT,
 * appended to OUT as CassColumn* (OUT should free with cass_column_free) */
gboolean cass_get_slice(CassClient *c, const char *cf, const void *key, gsize key_len,
                        const void *start, gsize start_len, const void *finish, gsize finish_len,
                        gboolean reversed, int count, int consistency, int retry_ms,
                        GPtrArray *out, GError **error);
/* cass_get_columns - the columns named NAMES[0..N_NAMES) of row KEY in CF (those that exist, in
 * the comparator's order), appended to OUT as CassColumn* (IMAP additions) */
gboolean cass_get_columns(CassClient *c, const char *cf, const void *key, gsize key_len,
                          GBytes *const *names, guint n_names, int consistency, int retry_ms,
                          GPtrArray *out, GError **error);
/* cass_get - one column; NOT_FOUND when absent */
gboolean cass_get(CassClient *c, const char *cf, const void *key, gsize key_len, const void *name,
                  gsize name_len, int consistency, int retry_ms, CassColumn **out,
                  GError **error);
/* cass_range_keys - up to COUNT keys of CF with at least one live column, starting at START_KEY
 * (inclusive; empty for the beginning of the ring), in token order; appended to OUT as GBytes* */
gboolean cass_range_keys(CassClient *c, const char *cf, const void *start_key, gsize start_len,
                         int count, int consistency, int retry_ms, GPtrArray *out,
                         guint *rows_seen, GError **error);
/* cass_remove_row - delete row KEY of CF as of TIMESTAMP */
gboolean cass_remove_row(CassClient *c, const char *cf, const void *key, gsize key_len,
                         gint64 timestamp, int consistency, int retry_ms, GError **error);

/* A batch_mutate under construction: rows -> column families -> mutations. The batch takes a
 * reference to an inserted VALUE (a GBytes) and sends its octets from where they are, never
 * copied: a VALUE made with g_bytes_new_static must stay valid until the batch is freed. */
CassBatch *cass_batch_new(void);
void cass_batch_free(CassBatch **b);
void cass_batch_insert(CassBatch *b, const char *cf, const void *key, gsize key_len,
                       const void *name, gsize name_len, GBytes *value, gint64 timestamp);
void cass_batch_delete(CassBatch *b, const char *cf, const void *key, gsize key_len,
                       const void *name, gsize name_len, gint64 timestamp);
/* cass_batch_execute - one batch_mutate at CONSISTENCY, retried as described above */
gboolean cass_batch_execute(CassClient *c, CassBatch *b, int consistency, int retry_ms,
                            GError **error);

/* cass_batch_wire - the frame cass_batch_execute sends for B at CONSISTENCY (its 4-octet
 * length, then the message), into OUT; cass_batch_serialise - the frame the generated Thrift
 * client would send for it. Both for tests: they must be the same octets. */
void cass_batch_wire(CassBatch *b, int consistency, GByteArray *out);
void cass_batch_serialise(CassBatch *b, int consistency, GByteArray *out);

#endif
