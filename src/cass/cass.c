/*
 * cass.c - Thrift client for Cassandra 0.7.0 with endpoint failover (see cass.h).
 *
 * Each operation is an "attempt" function that makes one RPC on the current connection and turns
 * the outcome into a CASS_ERROR. cass_run() drives attempts: it connects when needed, and on a
 * transport error, UnavailableException or TimedOutException moves to the next endpoint and tries
 * again until the retry budget is spent. A transport failure puts the endpoint in back-off.
 */
#include "cass/cass.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <thrift/c_glib/thrift_application_exception.h>
#include <thrift/c_glib/protocol/thrift_binary_protocol.h>
#include <thrift/c_glib/transport/thrift_socket.h>
#include <thrift/c_glib/transport/thrift_framed_transport.h>
#include <thrift/c_glib/transport/thrift_memory_buffer.h>

#include "cassandra_cassandra.h"
#include "util/log.h"
#include "util/text.h"

G_DEFINE_QUARK(cassmail-cass-error-quark, cass_error)

struct CassClient {
    char **endpoints;
    guint n_endpoints;
    gint64 *down_until;      /* monotonic µs until which endpoint i is skipped */
    guint current;
    char *keyspace;
    int timeout_ms, retry_ms, backoff_ms;
    int unavailable_ms;          /* how long Unavailable answers are retried (within retry_ms) */

    int fd;                  /* owned by socket once it exists */
    ThriftTransport *socket;
    ThriftTransport *framed;
    ThriftProtocol *protocol;
    CassandraCassandraClient *client;
    CassandraCassandraIf *iface;
    CassStats stats;
    guint32 frame_refused;   /* the size of a frame just refused for being too large, or 0 */
};

/* A framed transport that checks every frame before it leaves: c_glib's own writes whatever it
 * is given, and Cassandra answers an oversized frame by closing the connection. This is the one
 * place every request passes, so the limit holds for all of them (see CASS_FRAME_MAX). */
typedef struct {
    ThriftFramedTransport parent;
    CassClient *owner;
    guint32 r_pos;           /* the next unread octet of the reply frame in parent.r_buf */
} CassFramedTransport;
typedef struct {
    ThriftFramedTransportClass parent;
} CassFramedTransportClass;

G_DEFINE_TYPE(CassFramedTransport, cass_framed_transport, THRIFT_TYPE_FRAMED_TRANSPORT)

/* cass_framed_transport_flush - send the buffered frame, or refuse it when too large */
static gboolean
cass_framed_transport_flush(ThriftTransport *transport, GError **error)
{
    CassFramedTransport *t = (CassFramedTransport *)transport;
    ThriftFramedTransport *ft = THRIFT_FRAMED_TRANSPORT(transport);
    guint32 len = ft->w_buf->len;
    if (len > CASS_FRAME_MAX) {
        t->owner->frame_refused = len;
        g_byte_array_set_size(ft->w_buf, 0);
        g_set_error(error, THRIFT_TRANSPORT_ERROR, THRIFT_TRANSPORT_ERROR_SEND,
                    "a request of %u octets exceeds the %u-octet Thrift frame", len, CASS_FRAME_MAX);
        return FALSE;
    }
    if (len > t->owner->stats.max_frame)
        t->owner->stats.max_frame = len;
    return THRIFT_TRANSPORT_CLASS(cass_framed_transport_parent_class)->flush(transport, error);
}

/* read_frame - the next reply frame into r_buf (its length, then its octets, read straight into
 * the buffer) */
static gboolean
read_frame(CassFramedTransport *t, GError **error)
{
    ThriftFramedTransport *ft = THRIFT_FRAMED_TRANSPORT(t);
    guint32 size_be;
    g_byte_array_set_size(ft->r_buf, 0);
    t->r_pos = 0;
    if (thrift_transport_read_all(ft->transport, &size_be, sizeof size_be, error) !=
        (gint32)sizeof size_be)
        return FALSE;
    guint32 size = GUINT32_FROM_BE(size_be);
    if (size > ft->max_frame_size) {
        g_set_error(error, THRIFT_TRANSPORT_ERROR, THRIFT_TRANSPORT_ERROR_MAX_MESSAGE_SIZE_REACHED,
                    "a reply frame of %u octets is over the %u-octet limit", size,
                    ft->max_frame_size);
        return FALSE;
    }
    g_byte_array_set_size(ft->r_buf, size);
    if (size && thrift_transport_read_all(ft->transport, ft->r_buf->data, size, error) !=
                    (gint32)size) {
        g_byte_array_set_size(ft->r_buf, 0);
        return FALSE;
    }
    return TRUE;
}

/* cass_framed_transport_read - LEN octets of the reply, handed out from an offset into the frame.
 * c_glib's own read moves the rest of the frame to the front of its buffer after every read, so
 * a reply of many small fields (a slice of 1000 index or meta columns: several reads a column)
 * cost time in the square of the frame's size; profiled, that was 89 % of cassmail-imapd's CPU
 * listing 10 000 messages. */
static gint32
cass_framed_transport_read(ThriftTransport *transport, gpointer buf, guint32 len, GError **error)
{
    CassFramedTransport *t = (CassFramedTransport *)transport;
    ThriftFramedTransport *ft = THRIFT_FRAMED_TRANSPORT(transport);
    if (!THRIFT_TRANSPORT_GET_CLASS(transport)->checkReadBytesAvailable(transport, len, error))
        return -1;
    guint32 done = 0;
    while (done < len) {
        if (t->r_pos == ft->r_buf->len && !read_frame(t, error))
            return -1;
        guint32 give = MIN(ft->r_buf->len - t->r_pos, len - done);
        memcpy((guint8 *)buf + done, ft->r_buf->data + t->r_pos, give);
        t->r_pos += give;
        done += give;
    }
    if (t->r_pos == ft->r_buf->len) {   /* all read: the parent's peek sees an empty buffer */
        g_byte_array_set_size(ft->r_buf, 0);
        t->r_pos = 0;
    }
    return (gint32)len;
}

static GQuark finalize_quark;
static void chained_finalize(GObject *obj);

/* cass_framed_transport_finalize - the parent's finalize; when patch_finalizers wrapped it,
 * its generated part and then the grandparent's, since chained_finalize looks at the object's
 * own type and would find ours */
static void
cass_framed_transport_finalize(GObject *obj)
{
    GObjectClass *parent = G_OBJECT_CLASS(cass_framed_transport_parent_class);
    if (parent->finalize != chained_finalize) {
        parent->finalize(obj);
        return;
    }
    void (*generated)(GObject *) = g_type_get_qdata(THRIFT_TYPE_FRAMED_TRANSPORT, finalize_quark);
    if (generated)
        generated(obj);
    G_OBJECT_CLASS(g_type_class_peek_parent(parent))->finalize(obj);
}

static void
cass_framed_transport_init(CassFramedTransport *t)
{
    t->owner = NULL;
    t->r_pos = 0;
}

static void
cass_framed_transport_class_init(CassFramedTransportClass *klass)
{
    THRIFT_TRANSPORT_CLASS(klass)->flush = cass_framed_transport_flush;
    THRIFT_TRANSPORT_CLASS(klass)->read = cass_framed_transport_read;
    G_OBJECT_CLASS(klass)->finalize = cass_framed_transport_finalize;
}

/* A batch: rows (in the order first named) -> column families -> mutations. Values are held by
 * reference, never copied: the frame is sent from them (see "the batch on the wire" below). */
typedef struct {
    GBytes *name;
    GBytes *value;             /* NULL: a deletion of column NAME */
    gint64 timestamp;
} BatchMutation;

typedef struct {
    char *cf;
    GArray *mutations;         /* BatchMutation */
} BatchCf;

typedef struct {
    GBytes *key;
    GArray *cfs;               /* BatchCf */
} BatchRow;

struct CassBatch {
    GPtrArray *rows;           /* BatchRow*, in order */
    GHashTable *rows_by_key;   /* GBytes key -> BatchRow* (borrowed) */
    guint n_mutations;
};

void
cass_column_free(gpointer p)
{
    CassColumn *col = p;
    if (col) {
        g_bytes_unref(col->name);
        g_bytes_unref(col->value);
        g_free(col);
    }
}

void
cass_token_range_free(gpointer p)
{
    CassTokenRange *r = p;
    if (!r)
        return;
    g_free(r->start_token);
    g_free(r->end_token);
    g_strfreev(r->endpoints);
    g_free(r);
}

/* byte_array - a GByteArray copy of LEN octets at DATA */
static GByteArray *
byte_array(const void *data, gsize len)
{
    GByteArray *a = g_byte_array_sized_new((guint)len);
    if (len)
        g_byte_array_append(a, data, (guint)len);
    return a;
}

/* The generated structs' finalize functions do not chain up to GObject's, so every object would
 * leak its GObject bookkeeping (qdata); libthrift_c_glib 0.17's framed transport and socket have
 * the same omission. The generated files are not ours to edit: instead each
 * struct class's finalize is wrapped, once, by one that calls the generated function and then
 * the parent class's finalize. */
static void
chained_finalize(GObject *obj)
{
    GType type = G_OBJECT_TYPE(obj);
    void (*generated)(GObject *) = g_type_get_qdata(type, finalize_quark);
    if (generated)
        generated(obj);
    GObjectClass *parent = g_type_class_peek_parent(G_OBJECT_GET_CLASS(obj));
    parent->finalize(obj);
}

/* framed_flush - the framed transport's flush, reporting failure: the frame (length, then the
 * buffered message) in one write to the socket, then the socket's own flush; FALSE with ERROR set
 * when either fails. The buffer is emptied either way: the connection is dropped after a
 * transport error, never written to again. */
static gboolean
framed_flush(ThriftTransport *transport, GError **error)
{
    ThriftFramedTransport *t = THRIFT_FRAMED_TRANSPORT(transport);
    /* what the library's flush does first: a new message, a new size budget */
    if (!THRIFT_TRANSPORT_GET_CLASS(transport)->resetConsumedMessageSize(transport, -1, error))
        return FALSE;
    guint32 size_be = GUINT32_TO_BE(t->w_buf->len);
    g_byte_array_prepend(t->w_buf, (const guint8 *)&size_be, sizeof size_be);
    ThriftTransportClass *below = THRIFT_TRANSPORT_GET_CLASS(t->transport);
    gboolean ok = below->write(t->transport, t->w_buf->data, t->w_buf->len, error) &&
                  below->flush(t->transport, error);
    g_byte_array_set_size(t->w_buf, 0);
    return ok;
}

/* patch_finalizers - install chained_finalize on every generated struct class, and
 * framed_flush on the framed transport (once) */
static void
patch_finalizers(void)
{
    static gsize done = 0;
    if (!g_once_init_enter(&done))
        return;
    GType (*const types[])(void) = {
        cassandra_column_get_type,
        cassandra_super_column_get_type,
        cassandra_column_or_super_column_get_type,
        cassandra_not_found_exception_get_type,
        cassandra_invalid_request_exception_get_type,
        cassandra_unavailable_exception_get_type,
        cassandra_timed_out_exception_get_type,
        cassandra_authentication_exception_get_type,
        cassandra_authorization_exception_get_type,
        cassandra_column_parent_get_type,
        cassandra_column_path_get_type,
        cassandra_slice_range_get_type,
        cassandra_slice_predicate_get_type,
        cassandra_index_expression_get_type,
        cassandra_index_clause_get_type,
        cassandra_key_range_get_type,
        cassandra_key_slice_get_type,
        cassandra_key_count_get_type,
        cassandra_deletion_get_type,
        cassandra_mutation_get_type,
        cassandra_token_range_get_type,
        cassandra_authentication_request_get_type,
        cassandra_column_def_get_type,
        cassandra_cf_def_get_type,
        cassandra_ks_def_get_type,
        /* the same omission in the installed Thrift library's transports, and in the
         * exception it reads when the server answers with a TApplicationException ("Internal
         * error processing get_slice"): 5 blocks per such answer, found by memcheck */
        thrift_framed_transport_get_type,
        thrift_socket_get_type,
        thrift_memory_buffer_get_type,   /* cass_batch_serialise's, for tests */
        thrift_application_exception_get_type,
    };
    finalize_quark = g_quark_from_static_string("cassmail-generated-finalize");
    for (gsize i = 0; i < G_N_ELEMENTS(types); i++) {
        GType t = types[i]();
        GObjectClass *klass = g_type_class_ref(t);   /* kept for the life of the process */
        if (klass->finalize != chained_finalize) {
            g_type_set_qdata(t, finalize_quark, (gpointer)klass->finalize);
            klass->finalize = chained_finalize;
        }
    }
    /* libthrift_c_glib 0.17's framed transport reports success from flush even when writing
     * the frame failed: the generated client then reads a reply with that GError still set
     * ("GError set over the top of a previous GError"), and the first error leaks. */
    ThriftTransportClass *framed = g_type_class_ref(THRIFT_TYPE_FRAMED_TRANSPORT);
    framed->flush = framed_flush;
    g_once_init_leave(&done, 1);
}

CassClient *
cass_client_new(const char *const *endpoints, const char *keyspace, int timeout_ms, int retry_ms,
                int backoff_ms)
{
    patch_finalizers();
    CassClient *c = g_new0(CassClient, 1);
    c->endpoints = g_strdupv((char **)endpoints);
    c->n_endpoints = g_strv_length(c->endpoints);
    c->down_until = g_new0(gint64, MAX(c->n_endpoints, 1));
    c->keyspace = g_strdup(keyspace);
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : 10000;
    c->retry_ms = retry_ms >= 0 ? retry_ms : 0;
    c->backoff_ms = backoff_ms >= 0 ? backoff_ms : 0;
    c->fd = -1;
    return c;
}

/* disconnect - drop the current connection, if any */
static void
disconnect(CassClient *c)
{
    g_clear_object(&c->client);
    c->iface = NULL;
    g_clear_object(&c->protocol);
    g_clear_object(&c->framed);
    g_clear_object(&c->socket);   /* closes the socket */
    c->fd = -1;
}

void
cass_client_free(CassClient **cp)
{
    CassClient *c = *cp;
    if (c) {
        disconnect(c);
        g_strfreev(c->endpoints);
        g_free(c->down_until);
        g_free(c->keyspace);
    }
    g_clear_pointer(cp, g_free);
}

const CassStats *
cass_client_stats(CassClient *c)
{
    return &c->stats;
}

const char *
cass_client_endpoint(CassClient *c)
{
    return c->n_endpoints ? c->endpoints[c->current] : "(none)";
}

void
cass_client_set_unavailable_ms(CassClient *c, int unavailable_ms)
{
    c->unavailable_ms = unavailable_ms >= 0 ? unavailable_ms : 0;
}

/* The Thrift port of Cassandra 0.7, for an endpoint that names none. */
#define CASS_DEFAULT_PORT 9160

/* tcp_connect - a connected blocking socket with I/O timeouts to HOST:PORT, or -1 and ERROR */
static int
tcp_connect(const char *endpoint, const char *host, guint port, int timeout_ms, GError **error)
{
    char service[8];
    g_snprintf(service, sizeof service, "%u", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0) {
        g_set_error(error, CASS_ERROR, CASS_ERROR_TRANSPORT, "%s: %s", endpoint, gai_strerror(rc));
        return -1;
    }
    int fd = -1, err = 0;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            err = errno;
            if (errno == EINPROGRESS) {
                struct pollfd p = {.fd = fd, .events = POLLOUT};
                socklen_t len = sizeof err;
                rc = poll(&p, 1, timeout_ms);
                if (rc == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0)
                    break;
                if (rc == 0)
                    err = ETIMEDOUT;
            }
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        g_set_error(error, CASS_ERROR, CASS_ERROR_TRANSPORT, "cannot connect to %s: %s", endpoint,
                    g_strerror(err));
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* CassFault - what a failed generated call leaves behind: its GError and the exceptions it read */
typedef struct {
    GError *terr;
    CassandraInvalidRequestException *ire;
    CassandraNotFoundException *nfe;
    CassandraUnavailableException *ue;
    CassandraTimedOutException *te;
} CassFault;

/* frame_refused - the error for a request of OCTETS, over the frame Cassandra reads */
static void
frame_refused(gsize octets, GError **error)
{
    g_set_error(error, CASS_ERROR, CASS_ERROR_INVALID,
                "request of %zu octets refused: over the %u-octet Thrift frame", octets,
                CASS_FRAME_MAX);
}

/* classify - turn a failed RPC's outcome F into one CASS_ERROR, consuming F; a transport-level
 * failure also drops the connection, whose stream is now out of step. FALSE, for the attempt to
 * return. */
static gboolean
classify(CassClient *c, CassFault *f, GError **error)
{
    if (c->frame_refused) {
        frame_refused(c->frame_refused, error);
        c->frame_refused = 0;
        disconnect(c);   /* the generated client may have half a call in its buffers */
    } else if (f->ire) {
        gchar *why = NULL;
        g_object_get(f->ire, "why", &why, NULL);
        g_set_error(error, CASS_ERROR, CASS_ERROR_INVALID, "invalid request: %s", why ? why : "?");
        g_free(why);
    } else if (f->nfe) {
        g_set_error(error, CASS_ERROR, CASS_ERROR_NOT_FOUND, "not found");
    } else if (f->ue) {
        g_set_error(error, CASS_ERROR, CASS_ERROR_UNAVAILABLE,
                    "unavailable: not enough live replicas for the consistency level");
    } else if (f->te) {
        g_set_error(error, CASS_ERROR, CASS_ERROR_TIMEDOUT,
                    "timed out: replicas did not answer in time");
    } else {
        g_set_error(error, CASS_ERROR, CASS_ERROR_TRANSPORT, "%s: %s", cass_client_endpoint(c),
                    f->terr && f->terr->message ? f->terr->message : "transport error");
        disconnect(c);
    }
    g_clear_error(&f->terr);
    g_clear_object(&f->ire);
    g_clear_object(&f->nfe);
    g_clear_object(&f->ue);
    g_clear_object(&f->te);
    return FALSE;
}

/* connect_current - open the current endpoint and select the keyspace */
static gboolean
connect_current(CassClient *c, GError **error)
{
    if (c->iface)
        return TRUE;
    if (c->n_endpoints == 0) {
        g_set_error(error, CASS_ERROR, CASS_ERROR_TRANSPORT, "no Cassandra endpoints configured");
        return FALSE;
    }
    const char *endpoint = c->endpoints[c->current];
    g_autofree char *host = NULL;
    guint port = 0;
    if (!text_hostport_split(endpoint, CASS_DEFAULT_PORT, &host, &port)) {
        g_set_error(error, CASS_ERROR, CASS_ERROR_TRANSPORT, "%s: expected host:port", endpoint);
        return FALSE;
    }
    c->fd = tcp_connect(endpoint, host, port, c->timeout_ms, error);
    if (c->fd < 0)
        return FALSE;
    /* ThriftSocket's own open() has no connect timeout; it is handed our connected socket
     * instead (its "sd"), which it then reads, writes and closes like one it opened itself. */
    c->socket = g_object_new(THRIFT_TYPE_SOCKET, "hostname", host, "port", port, NULL);
    THRIFT_SOCKET(c->socket)->sd = c->fd;
    c->framed = g_object_new(cass_framed_transport_get_type(), "transport", c->socket, NULL);
    ((CassFramedTransport *)c->framed)->owner = c;
    c->protocol = g_object_new(THRIFT_TYPE_BINARY_PROTOCOL, "transport", c->framed, NULL);
    c->client = g_object_new(CASSANDRA_TYPE_CASSANDRA_CLIENT, "input_protocol", c->protocol,
                             "output_protocol", c->protocol, NULL);
    c->iface = CASSANDRA_CASSANDRA_IF(c->client);
    if (c->keyspace) {
        CassFault f = {0};
        if (!cassandra_cassandra_if_set_keyspace(c->iface, c->keyspace, &f.ire, &f.terr)) {
            classify(c, &f, error);
            disconnect(c);
            return FALSE;
        }
    }
    return TRUE;
}

/* pick_endpoint - the first endpoint (in preference order) not in back-off, else the one whose
 * back-off ends first */
static guint
pick_endpoint(CassClient *c)
{
    gint64 now = g_get_monotonic_time();
    guint best = 0;
    for (guint i = 0; i < c->n_endpoints; i++) {
        if (c->down_until[i] <= now)
            return i;
        if (c->down_until[i] < c->down_until[best])
            best = i;
    }
    return best;
}

/* next_endpoint - the endpoint after FROM in list order that is not in back-off (FROM itself
 * when every other one is) */
static guint
next_endpoint(CassClient *c, guint from, gint64 now)
{
    for (guint k = 1; k < c->n_endpoints; k++) {
        guint i = (from + k) % c->n_endpoints;
        if (c->down_until[i] <= now)
            return i;
    }
    return from;
}

typedef gboolean (*CassAttempt)(CassClient *c, gpointer data, GError **error);

/* cass_run - ATTEMPT on the current endpoint, failing over and retrying within the budget:
 * RETRY_MS, at most the client's (CASS_RETRY_DEFAULT: the client's)
 *
 * A transport error (refused, reset, timed out) puts the endpoint in back-off and moves to the
 * most preferred endpoint that is not in back-off. Unavailable and TimedOut leave the endpoint
 * usable and ask the next coordinator in the list. Once every endpoint has been asked in a round
 * (or none is left outside back-off), the operation pauses — 100 ms, growing to 1 s — before the
 * next round, so a ring that cannot serve the consistency level is asked a few times a second
 * until the budget is spent, never in a tight loop. Each move (from one endpoint to another) is
 * logged once per operation, however many rounds it takes.
 *
 * Unavailable is the coordinator's considered answer (it knows too few replicas are alive), and
 * a failure detector changes its mind in tens of seconds, not in the time a client should wait:
 * once every endpoint has said Unavailable in a row and the operation has run for unavailable_ms,
 * it fails at once instead of spending the rest of the budget. A replica that is down at CL ALL
 * then costs each message that needs it a quick 451, not a session held for retry_ms. */
static gboolean
cass_run(CassClient *c, const char *what, int retry_ms, CassAttempt attempt, gpointer data,
         GError **error)
{
    int budget = retry_ms < 0 ? c->retry_ms : MIN(retry_ms, c->retry_ms);
    gint64 start = g_get_monotonic_time();
    gint64 deadline = start + (gint64)budget * 1000;
    gint64 unavailable_deadline = start + (gint64)MIN(c->unavailable_ms, budget) * 1000;
    guint unavailable_in_a_row = 0;
    /* moves already logged in this operation: bit FROM * n + TO (small lists; longer lists are
     * logged without the bookkeeping) */
    guint64 logged = 0;
    guint asked = 0, rounds = 0;
    for (guint tries = 0;; tries++) {
        GError *e = NULL;
        gint64 now = g_get_monotonic_time();
        /* An operation starts on the most preferred endpoint outside back-off; a retry keeps the
         * endpoint the failure chose, unless that one is in back-off. */
        if (!c->iface && (tries == 0 || c->down_until[c->current] > now)) {
            guint pick = pick_endpoint(c);
            if (pick != c->current)
                c->stats.failovers++;
            c->current = pick;
        }
        if (connect_current(c, &e) && attempt(c, data, &e)) {
            c->stats.calls++;
            return TRUE;
        }
        gboolean retryable = e->domain == CASS_ERROR && (e->code == CASS_ERROR_TRANSPORT ||
                                                         e->code == CASS_ERROR_UNAVAILABLE ||
                                                         e->code == CASS_ERROR_TIMEDOUT);
        now = g_get_monotonic_time();
        unavailable_in_a_row = e->domain == CASS_ERROR && e->code == CASS_ERROR_UNAVAILABLE
                                   ? unavailable_in_a_row + 1 : 0;
        if (unavailable_in_a_row >= c->n_endpoints && now >= unavailable_deadline)
            deadline = now;   /* every coordinator says so: report it */
        if (!retryable || now >= deadline) {
            if (retryable && tries > 0)
                g_prefix_error(&e, "%s failed after %u attempts: ", what, tries + 1);
            g_propagate_error(error, e);
            return FALSE;
        }
        guint from = c->current;
        disconnect(c);
        if (e->code == CASS_ERROR_TRANSPORT) {
            c->down_until[from] = now + (gint64)c->backoff_ms * 1000;
            c->current = pick_endpoint(c);
        } else {
            /* Unavailable / TimedOut: the coordinator lives; ask the next one. */
            c->current = next_endpoint(c, from, now);
        }
        c->stats.retries++;
        if (c->current != from) {
            c->stats.failovers++;
            guint bit = from * c->n_endpoints + c->current;
            if (bit >= 64 || !(logged & (G_GUINT64_CONSTANT(1) << bit)))
                log_warn("cassandra: %s on %s failed (%s); moving to %s", what, c->endpoints[from],
                         e->message, c->endpoints[c->current]);
            if (bit < 64)
                logged |= G_GUINT64_CONSTANT(1) << bit;
        }
        g_error_free(e);
        /* Pause when the round is over: every endpoint asked, or nothing left to move to. */
        asked++;
        if (asked >= c->n_endpoints || c->current == from || c->down_until[c->current] > now) {
            gint64 pause = MIN((gint64)100000 * (rounds + 1), 1000000);
            pause = MIN(pause, deadline - now);
            if (pause > 0)
                g_usleep((gulong)pause);
            asked = 0;
            rounds++;
        }
    }
}

/* --- meta ----------------------------------------------------------------------------------- */

/* A describe call that answers with a string, and where the string goes. */
typedef struct {
    gboolean (*call)(CassandraCassandraIf *iface, gchar **out, GError **error);
    char **out;
} TextArgs;

static gboolean
attempt_describe_text(CassClient *c, gpointer data, GError **error)
{
    TextArgs *a = data;
    CassFault f = {0};
    g_clear_pointer(a->out, g_free);
    return a->call(c->iface, a->out, &f.terr) || classify(c, &f, error);
}

gboolean
cass_describe_version(CassClient *c, char **version, GError **error)
{
    TextArgs a = {cassandra_cassandra_if_describe_version, version};
    *version = NULL;
    return cass_run(c, "describe_version", CASS_RETRY_DEFAULT, attempt_describe_text, &a, error);
}

gboolean
cass_describe_cluster_name(CassClient *c, char **name, GError **error)
{
    TextArgs a = {cassandra_cassandra_if_describe_cluster_name, name};
    *name = NULL;
    return cass_run(c, "describe_cluster_name", CASS_RETRY_DEFAULT, attempt_describe_text, &a,
                    error);
}

typedef struct {
    const char *keyspace;
    GPtrArray *out;
} RingArgs;

static gboolean
attempt_describe_ring(CassClient *c, gpointer data, GError **error)
{
    RingArgs *a = data;
    CassFault f = {0};
    g_autoptr(GPtrArray) ranges = g_ptr_array_new_with_free_func(g_object_unref);
    if (!cassandra_cassandra_if_describe_ring(c->iface, &ranges, a->keyspace, &f.ire, &f.terr))
        return classify(c, &f, error);
    for (guint i = 0; i < ranges->len; i++) {
        CassandraTokenRange *tr = g_ptr_array_index(ranges, i);
        CassTokenRange *r = g_new0(CassTokenRange, 1);
        r->start_token = g_strdup(tr->start_token);
        r->end_token = g_strdup(tr->end_token);
        GPtrArray *eps = g_ptr_array_new();
        for (guint j = 0; tr->endpoints && j < tr->endpoints->len; j++)
            g_ptr_array_add(eps, g_strdup(g_ptr_array_index(tr->endpoints, j)));
        g_ptr_array_add(eps, NULL);
        r->endpoints = (char **)g_ptr_array_free(eps, FALSE);
        g_ptr_array_add(a->out, r);
    }
    return TRUE;
}

gboolean
cass_describe_ring(CassClient *c, const char *keyspace, GPtrArray *out, GError **error)
{
    RingArgs a = {keyspace, out};
    return cass_run(c, "describe_ring", CASS_RETRY_DEFAULT, attempt_describe_ring, &a, error);
}

typedef struct {
    const char *keyspace;
    gboolean *exists;
    GPtrArray *out;
} DescribeArgs;

/* keyspace_def - KEYSPACE's definition (g_object_unref), or NULL and F */
static CassandraKsDef *
keyspace_def(CassClient *c, const char *keyspace, CassFault *f)
{
    CassandraKsDef *ks = g_object_new(CASSANDRA_TYPE_KS_DEF, NULL);
    if (!cassandra_cassandra_if_describe_keyspace(c->iface, &ks, keyspace, &f->nfe, &f->ire, &f->terr))
        g_clear_object(&ks);
    return ks;
}

static gboolean
attempt_keyspace_describe(CassClient *c, gpointer data, GError **error)
{
    DescribeArgs *a = data;
    CassFault f = {0};
    CassandraKsDef *ks = keyspace_def(c, a->keyspace, &f);
    if (!ks && f.nfe && !f.ire) {   /* an absent keyspace is an answer, not a failure */
        g_object_unref(f.nfe);
        g_clear_error(&f.terr);
        *a->exists = FALSE;
        return TRUE;
    }
    if (!ks)
        return classify(c, &f, error);
    *a->exists = TRUE;
    for (guint i = 0; a->out && ks->cf_defs && i < ks->cf_defs->len; i++)
        g_ptr_array_add(a->out, g_strdup(((CassandraCfDef *)ks->cf_defs->pdata[i])->name));
    g_object_unref(ks);
    return TRUE;
}

gboolean
cass_keyspace_describe(CassClient *c, const char *keyspace, gboolean *exists, GPtrArray *out,
                       GError **error)
{
    DescribeArgs a = {keyspace, exists, out};
    *exists = FALSE;
    return cass_run(c, "describe_keyspace", CASS_RETRY_DEFAULT, attempt_keyspace_describe, &a,
                    error);
}

/* cf_def_tune - set in CF the memtable and compaction thresholds SPEC gives (not 0) */
static void
cf_def_tune(CassandraCfDef *cf, const CassCfSpec *spec)
{
    if (spec->memtable_flush_after_mins > 0)
        g_object_set(cf, "memtable_flush_after_mins", spec->memtable_flush_after_mins, NULL);
    if (spec->memtable_throughput_in_mb > 0)
        g_object_set(cf, "memtable_throughput_in_mb", spec->memtable_throughput_in_mb, NULL);
    if (spec->memtable_operations_in_millions > 0)
        g_object_set(cf, "memtable_operations_in_millions", spec->memtable_operations_in_millions,
                     NULL);
    if (spec->min_compaction_threshold > 0)
        g_object_set(cf, "min_compaction_threshold", spec->min_compaction_threshold, NULL);
    if (spec->max_compaction_threshold > 0)
        g_object_set(cf, "max_compaction_threshold", spec->max_compaction_threshold, NULL);
}

/* cf_def - a CfDef for SPEC in KEYSPACE */
static CassandraCfDef *
cf_def(const char *keyspace, const CassCfSpec *spec)
{
    CassandraCfDef *cf = g_object_new(CASSANDRA_TYPE_CF_DEF, "keyspace", keyspace, "name", spec->name,
                                      "column_type", "Standard", "comparator_type", spec->comparator,
                                      NULL);
    if (spec->gc_grace_seconds > 0)
        g_object_set(cf, "gc_grace_seconds", spec->gc_grace_seconds, NULL);
    if (spec->comment)
        g_object_set(cf, "comment", spec->comment, NULL);
    cf_def_tune(cf, spec);
    return cf;
}

/* attempt_schema_add - add DATA: a KsDef (a keyspace) or a CfDef (a column family) */
static gboolean
attempt_schema_add(CassClient *c, gpointer data, GError **error)
{
    CassFault f = {0};
    char *version = NULL;
    gboolean ok = CASSANDRA_IS_KS_DEF(data)
                      ? cassandra_cassandra_if_system_add_keyspace(c->iface, &version, data, &f.ire,
                                                                   &f.terr)
                      : cassandra_cassandra_if_system_add_column_family(c->iface, &version, data,
                                                                        &f.ire, &f.terr);
    g_free(version);
    return ok || classify(c, &f, error);
}

gboolean
cass_keyspace_add(CassClient *c, const char *keyspace, int replication_factor,
                  const CassCfSpec *cfs, guint n_cfs, GError **error)
{
    g_autoptr(GPtrArray) defs = g_ptr_array_new_with_free_func(g_object_unref);
    for (guint i = 0; i < n_cfs; i++)
        g_ptr_array_add(defs, cf_def(keyspace, &cfs[i]));
    CassandraKsDef *ks = g_object_new(CASSANDRA_TYPE_KS_DEF, "name", keyspace, "strategy_class",
                                      "org.apache.cassandra.locator.SimpleStrategy",
                                      "replication_factor", replication_factor, "cf_defs", defs,
                                      NULL);
    /* Not retried on a fresh coordinator blindly: a schema change that timed out may have been
     * applied; the caller re-reads the schema instead. */
    gboolean ok = cass_run(c, "system_add_keyspace", 0, attempt_schema_add, ks, error);
    g_object_unref(ks);
    return ok;
}

gboolean
cass_column_family_add(CassClient *c, const char *keyspace, const CassCfSpec *cf, GError **error)
{
    CassandraCfDef *def = cf_def(keyspace, cf);
    gboolean ok = cass_run(c, "system_add_column_family", 0, attempt_schema_add, def, error);
    g_object_unref(def);
    return ok;
}

typedef struct {
    const char *keyspace;
    const CassCfSpec *cf;
    gboolean *changed;
} TuneCfArgs;

/* cf_needs_tuning - whether the described DEF lacks a setting SPEC asks for */
static gboolean
cf_needs_tuning(const CassandraCfDef *def, const CassCfSpec *spec)
{
#define DIFFERS(field) (spec->field > 0 && (!def->__isset_##field || def->field != spec->field))
    return DIFFERS(memtable_flush_after_mins) || DIFFERS(memtable_throughput_in_mb) ||
           DIFFERS(memtable_operations_in_millions) || DIFFERS(min_compaction_threshold) ||
           DIFFERS(max_compaction_threshold);
#undef DIFFERS
}

static gboolean
attempt_cf_tune(CassClient *c, gpointer data, GError **error)
{
    TuneCfArgs *a = data;
    CassFault f = {0};
    CassandraKsDef *ks = keyspace_def(c, a->keyspace, &f);
    if (!ks)
        return classify(c, &f, error);
    CassandraCfDef *def = NULL;
    for (guint i = 0; ks->cf_defs && i < ks->cf_defs->len; i++) {
        CassandraCfDef *cf = g_ptr_array_index(ks->cf_defs, i);
        if (cf->name && strcmp(cf->name, a->cf->name) == 0)
            def = cf;
    }
    gboolean ok = TRUE;
    if (!def) {
        g_set_error(error, CASS_ERROR, CASS_ERROR_NOT_FOUND, "column family %s.%s does not exist",
                    a->keyspace, a->cf->name);
        ok = FALSE;
    } else if (cf_needs_tuning(def, a->cf)) {
        /* The described definition (its id included) with CF's settings changed. */
        cf_def_tune(def, a->cf);
        char *version = NULL;
        ok = cassandra_cassandra_if_system_update_column_family(c->iface, &version, def, &f.ire,
                                                                &f.terr);
        g_free(version);
        if (ok)
            *a->changed = TRUE;
        else
            classify(c, &f, error);
    }
    g_object_unref(ks);
    return ok;
}

gboolean
cass_column_family_tune(CassClient *c, const char *keyspace, const CassCfSpec *cf,
                        gboolean *changed, GError **error)
{
    TuneCfArgs a = {keyspace, cf, changed};
    *changed = FALSE;
    /* a schema change: re-read, never blindly repeated (as for adding) */
    return cass_run(c, "system_update_column_family", 0, attempt_cf_tune, &a, error);
}

static gboolean
attempt_schema_versions(CassClient *c, gpointer data, GError **error)
{
    guint *n_versions = data;
    CassFault f = {0};
    GHashTable *versions = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                                 (GDestroyNotify)g_ptr_array_unref);
    if (!cassandra_cassandra_if_describe_schema_versions(c->iface, &versions, &f.ire, &f.terr)) {
        g_hash_table_unref(versions);
        return classify(c, &f, error);
    }
    *n_versions = g_hash_table_size(versions) -
                  (g_hash_table_contains(versions, "UNREACHABLE") ? 1 : 0);
    g_hash_table_unref(versions);
    return TRUE;
}

gboolean
cass_schema_agree(CassClient *c, int timeout_ms, GError **error)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    for (;;) {
        guint n = 0;
        if (!cass_run(c, "describe_schema_versions", CASS_RETRY_DEFAULT, attempt_schema_versions,
                      &n, error))
            return FALSE;
        if (n <= 1)
            return TRUE;
        if (g_get_monotonic_time() > deadline) {
            g_set_error(error, CASS_ERROR, CASS_ERROR_TIMEDOUT,
                        "the nodes did not agree on one schema version within %d ms", timeout_ms);
            return FALSE;
        }
        g_usleep(200000);
    }
}

/* --- reads ---------------------------------------------------------------------------------- */

/* column_from - a CassColumn from a returned ColumnOrSuperColumn, counting what was read */
static CassColumn *
column_from(CassClient *c, CassandraColumnOrSuperColumn *cosc)
{
    CassandraColumn *col = cosc->column;
    if (!cosc->__isset_column || !col)
        return NULL;
    CassColumn *out = g_new0(CassColumn, 1);
    out->name = g_bytes_new(col->name ? col->name->data : NULL, col->name ? col->name->len : 0);
    /* the value's buffer is handed over, not copied: messages can be megabytes */
    if (col->value) {
        guint len = col->value->len;
        guint8 *data = g_byte_array_steal(col->value, NULL);
        out->value = g_bytes_new_take(data, len);
    } else {
        out->value = g_bytes_new(NULL, 0);
    }
    out->timestamp = col->timestamp;
    c->stats.columns_read++;
    c->stats.bytes_read += g_bytes_get_size(out->name) + g_bytes_get_size(out->value);
    return out;
}

/* column_parent - the ColumnParent of CF */
static CassandraColumnParent *
column_parent(const char *cf)
{
    return g_object_new(CASSANDRA_TYPE_COLUMN_PARENT, "column_family", cf, NULL);
}

/* slice_predicate - the predicate for COUNT columns from START to FINISH */
static CassandraSlicePredicate *
slice_predicate(GByteArray *start, GByteArray *finish, gboolean reversed, int count)
{
    CassandraSliceRange *range = g_object_new(CASSANDRA_TYPE_SLICE_RANGE, "start", start,
                                              "finish", finish, "reversed", reversed,
                                              "count", count, NULL);
    CassandraSlicePredicate *pred = g_object_new(CASSANDRA_TYPE_SLICE_PREDICATE,
                                                 "slice_range", range, NULL);
    g_object_unref(range);   /* the predicate holds its own reference */
    return pred;
}

typedef struct {
    const char *cf;
    GByteArray *key;
    CassandraSlicePredicate *pred;
    int consistency;
    GPtrArray *out;
} SliceArgs;

static gboolean
attempt_get_slice(CassClient *c, gpointer data, GError **error)
{
    SliceArgs *a = data;
    CassandraColumnParent *parent = column_parent(a->cf);
    g_autoptr(GPtrArray) result = g_ptr_array_new_with_free_func(g_object_unref);
    CassFault f = {0};
    gboolean ok = cassandra_cassandra_if_get_slice(c->iface, &result, a->key, parent, a->pred,
                                                   (CassandraConsistencyLevel)a->consistency,
                                                   &f.ire, &f.ue, &f.te, &f.terr);
    g_object_unref(parent);
    if (!ok)
        return classify(c, &f, error);
    for (guint i = 0; i < result->len; i++) {
        CassColumn *col = column_from(c, g_ptr_array_index(result, i));
        if (col)
            g_ptr_array_add(a->out, col);
    }
    return TRUE;
}

/* get_slice - get_slice of row KEY in CF with PRED (which it takes), the columns onto OUT: what
 * cass_get_slice and cass_get_columns share */
static gboolean
get_slice(CassClient *c, const char *cf, const void *key, gsize key_len,
          CassandraSlicePredicate *pred, int consistency, int retry_ms, GPtrArray *out,
          GError **error)
{
    SliceArgs a = {cf, byte_array(key, key_len), pred, consistency, out};
    gboolean ok = cass_run(c, "get_slice", retry_ms, attempt_get_slice, &a, error);
    g_byte_array_unref(a.key);
    g_object_unref(pred);
    return ok;
}

gboolean
cass_get_slice(CassClient *c, const char *cf, const void *key, gsize key_len, const void *start,
               gsize start_len, const void *finish, gsize finish_len, gboolean reversed, int count,
               int consistency, int retry_ms, GPtrArray *out, GError **error)
{
    g_autoptr(GByteArray) from = byte_array(start, start_len);
    g_autoptr(GByteArray) to = byte_array(finish, finish_len);
    return get_slice(c, cf, key, key_len, slice_predicate(from, to, reversed, count), consistency,
                     retry_ms, out, error);
}

typedef struct {
    const char *cf;
    GByteArray *key, *name;
    int consistency;
    CassColumn **out;
} GetArgs;

static gboolean
attempt_get(CassClient *c, gpointer data, GError **error)
{
    GetArgs *a = data;
    CassandraColumnPath *path = g_object_new(CASSANDRA_TYPE_COLUMN_PATH, "column_family", a->cf,
                                             "column", a->name, NULL);
    CassandraColumnOrSuperColumn *cosc = g_object_new(CASSANDRA_TYPE_COLUMN_OR_SUPER_COLUMN, NULL);
    CassFault f = {0};
    gboolean ok = cassandra_cassandra_if_get(c->iface, &cosc, a->key, path,
                                             (CassandraConsistencyLevel)a->consistency, &f.ire,
                                             &f.nfe, &f.ue, &f.te, &f.terr);
    g_object_unref(path);
    if (ok) {
        *a->out = column_from(c, cosc);
        if (!*a->out)
            g_set_error(error, CASS_ERROR, CASS_ERROR_NOT_FOUND, "not found");
        ok = *a->out != NULL;
    } else {
        classify(c, &f, error);
    }
    g_object_unref(cosc);
    return ok;
}

gboolean
cass_get(CassClient *c, const char *cf, const void *key, gsize key_len, const void *name,
         gsize name_len, int consistency, int retry_ms, CassColumn **out, GError **error)
{
    GetArgs a = {cf, byte_array(key, key_len), byte_array(name, name_len), consistency, out};
    *out = NULL;
    gboolean ok = cass_run(c, "get", retry_ms, attempt_get, &a, error);
    g_byte_array_unref(a.key);
    g_byte_array_unref(a.name);
    return ok;
}

typedef struct {
    const char *cf;
    GByteArray *start;
    int count, consistency;
    GPtrArray *out;
    guint *rows_seen;
} RangeArgs;

static gboolean
attempt_range_keys(CassClient *c, gpointer data, GError **error)
{
    RangeArgs *a = data;
    g_autoptr(GByteArray) empty = g_byte_array_new();
    CassandraColumnParent *parent = column_parent(a->cf);
    CassandraSlicePredicate *pred = slice_predicate(empty, empty, FALSE, 1);
    CassandraKeyRange *kr = g_object_new(CASSANDRA_TYPE_KEY_RANGE, "start_key", a->start,
                                         "end_key", empty, "count", a->count, NULL);
    g_autoptr(GPtrArray) result = g_ptr_array_new_with_free_func(g_object_unref);
    CassFault f = {0};
    gboolean ok = cassandra_cassandra_if_get_range_slices(c->iface, &result, parent, pred, kr,
                                                          (CassandraConsistencyLevel)a->consistency,
                                                          &f.ire, &f.ue, &f.te, &f.terr);
    g_object_unref(parent);
    g_object_unref(pred);
    g_object_unref(kr);
    if (!ok)
        return classify(c, &f, error);
    *a->rows_seen = result->len;
    for (guint i = 0; i < result->len; i++) {
        CassandraKeySlice *ks = g_ptr_array_index(result, i);
        c->stats.columns_read += ks->columns ? ks->columns->len : 0;
        /* rows whose columns are all deleted still come back, empty ("range ghosts") */
        if (ks->columns && ks->columns->len > 0)
            g_ptr_array_add(a->out, g_bytes_new(ks->key->data, ks->key->len));
    }
    return TRUE;
}

gboolean
cass_range_keys(CassClient *c, const char *cf, const void *start_key, gsize start_len, int count,
                int consistency, int retry_ms, GPtrArray *out, guint *rows_seen, GError **error)
{
    guint seen = 0;
    RangeArgs a = {cf, byte_array(start_key, start_len), count, consistency, out, &seen};
    gboolean ok = cass_run(c, "get_range_slices", retry_ms, attempt_range_keys, &a, error);
    g_byte_array_unref(a.start);
    if (rows_seen)
        *rows_seen = seen;
    return ok;
}

/* --- writes --------------------------------------------------------------------------------- */

typedef struct {
    const char *cf;
    GByteArray *key;
    gint64 timestamp;
    int consistency;
} RemoveArgs;

static gboolean
attempt_remove(CassClient *c, gpointer data, GError **error)
{
    RemoveArgs *a = data;
    CassandraColumnPath *path = g_object_new(CASSANDRA_TYPE_COLUMN_PATH, "column_family", a->cf, NULL);
    CassFault f = {0};
    gboolean ok = cassandra_cassandra_if_remove(c->iface, a->key, path, a->timestamp,
                                                (CassandraConsistencyLevel)a->consistency, &f.ire,
                                                &f.ue, &f.te, &f.terr);
    g_object_unref(path);
    return ok || classify(c, &f, error);
}

gboolean
cass_remove_row(CassClient *c, const char *cf, const void *key, gsize key_len, gint64 timestamp,
                int consistency, int retry_ms, GError **error)
{
    RemoveArgs a = {cf, byte_array(key, key_len), timestamp, consistency};
    gboolean ok = cass_run(c, "remove", retry_ms, attempt_remove, &a, error);
    g_byte_array_unref(a.key);
    return ok;
}

/* batch_mutation_clear - GArray clear function for BatchMutation */
static void
batch_mutation_clear(gpointer p)
{
    BatchMutation *m = p;
    g_bytes_unref(m->name);
    if (m->value)
        g_bytes_unref(m->value);
}

/* batch_cf_clear - GArray clear function for BatchCf */
static void
batch_cf_clear(gpointer p)
{
    BatchCf *c = p;
    g_free(c->cf);
    g_array_unref(c->mutations);
}

static void
batch_row_free(gpointer p)
{
    BatchRow *r = p;
    g_bytes_unref(r->key);
    g_array_unref(r->cfs);
    g_free(r);
}

CassBatch *
cass_batch_new(void)
{
    CassBatch *b = g_new0(CassBatch, 1);
    b->rows = g_ptr_array_new_with_free_func(batch_row_free);
    b->rows_by_key = g_hash_table_new(g_bytes_hash, g_bytes_equal);
    return b;
}

void
cass_batch_free(CassBatch **bp)
{
    if (*bp) {
        g_hash_table_unref((*bp)->rows_by_key);
        g_ptr_array_unref((*bp)->rows);
    }
    g_clear_pointer(bp, g_free);
}

/* batch_list - the mutation list for (KEY, CF), created on first use */
static GArray *
batch_list(CassBatch *b, const char *cf, const void *key, gsize key_len)
{
    g_autoptr(GBytes) k = g_bytes_new(key, key_len);
    BatchRow *row = g_hash_table_lookup(b->rows_by_key, k);
    if (!row) {
        row = g_new0(BatchRow, 1);
        row->key = g_bytes_ref(k);
        row->cfs = g_array_new(FALSE, FALSE, sizeof(BatchCf));
        g_array_set_clear_func(row->cfs, batch_cf_clear);
        g_ptr_array_add(b->rows, row);
        g_hash_table_insert(b->rows_by_key, row->key, row);
    }
    GArray *list = NULL;
    for (guint i = 0; i < row->cfs->len && !list; i++)
        if (strcmp(g_array_index(row->cfs, BatchCf, i).cf, cf) == 0)
            list = g_array_index(row->cfs, BatchCf, i).mutations;
    if (!list) {
        list = g_array_new(FALSE, FALSE, sizeof(BatchMutation));
        g_array_set_clear_func(list, batch_mutation_clear);
        BatchCf add = {g_strdup(cf), list};
        g_array_append_val(row->cfs, add);
    }
    b->n_mutations++;
    return list;
}

void
cass_batch_insert(CassBatch *b, const char *cf, const void *key, gsize key_len, const void *name,
                  gsize name_len, GBytes *value, gint64 timestamp)
{
    /* the value is referenced, not copied: the frame is written from it */
    BatchMutation m = {g_bytes_new(name, name_len), g_bytes_ref(value), timestamp};
    g_array_append_val(batch_list(b, cf, key, key_len), m);
}

void
cass_batch_delete(CassBatch *b, const char *cf, const void *key, gsize key_len, const void *name,
                  gsize name_len, gint64 timestamp)
{
    BatchMutation m = {g_bytes_new(name, name_len), NULL, timestamp};
    g_array_append_val(batch_list(b, cf, key, key_len), m);
}

/* --- the batch on the wire ------------------------------------------------------------------
 *
 * batch_mutate is serialised here, not by the generated client: the generated one copies every
 * value into a GByteArray of its own (GByteArray owns its data), the framed transport copies it
 * again into its buffer, and our flush moves the whole frame once more to put its length in front
 * — three copies of each octet of a message, in buffers that are grown (and page-faulted) anew for
 * every message of a session that lives for one message. Here the frame's own octets (lengths,
 * field headers, names) are written into a small buffer and each large value stays where the
 * caller has it: the frame goes to the socket with one sendmsg() over both (a value named by
 * several mutations, as a message for several mailboxes is, is sent from the same octets each
 * time). The octets are exactly those of the generated client (Thrift's strict binary protocol;
 * test/unit/test-cass-frame.c compares them); its reader still reads the reply. */

/* Thrift binary protocol type codes, and the strict message header. */
enum { W_STOP = 0, W_I32 = 8, W_I64 = 10, W_STRING = 11, W_STRUCT = 12, W_MAP = 13, W_LIST = 15 };
#define THRIFT_VERSION_1 0x80010000u
#define THRIFT_CALL 1u
/* Values up to this size are copied into the frame's own octets (fewer pieces to send). */
#define WIRE_INLINE_VALUE 512

typedef struct {
    gsize meta_off;            /* a piece of META from here, or */
    const guint8 *data;        /* a caller's value (when not NULL) */
    gsize len;
} WirePiece;

typedef struct {
    GByteArray *meta;          /* the frame's own octets */
    GArray *pieces;            /* WirePiece, in frame order */
    gsize meta_done;           /* META octets already in a piece */
    gsize total;               /* the frame's length, its 4-octet length included */
    guint64 octets;            /* column names and values inserted */
} Wire;

static void
w_bytes(Wire *w, const void *data, gsize len)
{
    g_byte_array_append(w->meta, data, (guint)len);
}

static void
w_u8(Wire *w, guint8 v)
{
    w_bytes(w, &v, 1);
}

/* w_u16, w_u32, w_u64 - V big-endian (Thrift's binary protocol) */
static void
w_u16(Wire *w, guint16 v)
{
    v = GUINT16_TO_BE(v);
    w_bytes(w, &v, sizeof v);
}

static void
w_u32(Wire *w, guint32 v)
{
    v = GUINT32_TO_BE(v);
    w_bytes(w, &v, sizeof v);
}

static void
w_u64(Wire *w, guint64 v)
{
    v = GUINT64_TO_BE(v);
    w_bytes(w, &v, sizeof v);
}

static void
w_field(Wire *w, guint8 type, guint16 id)
{
    w_u8(w, type);
    w_u16(w, id);
}

/* w_meta_piece - the META octets written since the last piece become one */
static void
w_meta_piece(Wire *w)
{
    if (w->meta->len > w->meta_done) {
        WirePiece p = {w->meta_done, NULL, w->meta->len - w->meta_done};
        g_array_append_val(w->pieces, p);
        w->meta_done = w->meta->len;
    }
}

/* w_binary - a binary field's length and octets: small ones copied, large ones by reference */
static void
w_binary(Wire *w, GBytes *b)
{
    gsize len;
    const guint8 *data = g_bytes_get_data(b, &len);
    w_u32(w, (guint32)len);
    if (len <= WIRE_INLINE_VALUE) {
        if (len)
            w_bytes(w, data, len);
        return;
    }
    w_meta_piece(w);
    WirePiece p = {0, data, len};
    g_array_append_val(w->pieces, p);
    w->total += len;
}

static void
w_string(Wire *w, const void *s, gsize len)
{
    w_u32(w, (guint32)len);
    w_bytes(w, s, len);
}

/* wire_build - batch_mutate of B at CONSISTENCY, as the generated client would write it */
static void
wire_build(Wire *w, CassBatch *b, int consistency)
{
    w->meta = g_byte_array_sized_new(256 + 96 * b->n_mutations);
    w->pieces = g_array_new(FALSE, FALSE, sizeof(WirePiece));
    w_u32(w, 0);   /* the frame's length, set at the end */
    w_u32(w, THRIFT_VERSION_1 | THRIFT_CALL);
    w_string(w, "batch_mutate", 12);
    w_u32(w, 0);   /* seqid: the generated client sends 0 too */
    w_field(w, W_MAP, 1);   /* mutation_map */
    w_u8(w, W_STRING);
    w_u8(w, W_MAP);
    w_u32(w, b->rows->len);
    for (guint r = 0; r < b->rows->len; r++) {
        BatchRow *row = g_ptr_array_index(b->rows, r);
        gsize klen;
        const void *key = g_bytes_get_data(row->key, &klen);
        w_string(w, key, klen);
        w_u8(w, W_STRING);
        w_u8(w, W_LIST);
        w_u32(w, row->cfs->len);
        for (guint c = 0; c < row->cfs->len; c++) {
            BatchCf *cf = &g_array_index(row->cfs, BatchCf, c);
            w_string(w, cf->cf, strlen(cf->cf));
            w_u8(w, W_STRUCT);
            w_u32(w, cf->mutations->len);
            for (guint i = 0; i < cf->mutations->len; i++) {
                BatchMutation *m = &g_array_index(cf->mutations, BatchMutation, i);
                if (m->value) {
                    w_field(w, W_STRUCT, 1);   /* Mutation.column_or_supercolumn */
                    w_field(w, W_STRUCT, 1);   /* ColumnOrSuperColumn.column */
                    w_field(w, W_STRING, 1);   /* Column.name */
                    w_binary(w, m->name);
                    w_field(w, W_STRING, 2);   /* Column.value */
                    w_binary(w, m->value);
                    w_field(w, W_I64, 3);      /* Column.timestamp */
                    w_u64(w, (guint64)m->timestamp);
                    w_u8(w, W_STOP);
                    w_u8(w, W_STOP);
                    w->octets += g_bytes_get_size(m->name) + g_bytes_get_size(m->value);
                } else {
                    w_field(w, W_STRUCT, 2);   /* Mutation.deletion */
                    w_field(w, W_I64, 1);      /* Deletion.timestamp */
                    w_u64(w, (guint64)m->timestamp);
                    w_field(w, W_STRUCT, 3);   /* Deletion.predicate */
                    w_field(w, W_LIST, 1);     /* SlicePredicate.column_names */
                    w_u8(w, W_STRING);
                    w_u32(w, 1);
                    w_binary(w, m->name);
                    w_u8(w, W_STOP);
                    w_u8(w, W_STOP);
                }
                w_u8(w, W_STOP);   /* the end of the Mutation */
            }
        }
    }
    w_field(w, W_I32, 2);   /* consistency_level */
    w_u32(w, (guint32)consistency);
    w_u8(w, W_STOP);
    w_meta_piece(w);
    w->total += w->meta->len;
    guint32 len = (guint32)(w->total - 4);
    for (int i = 0; i < 4; i++)
        w->meta->data[i] = (guint8)(len >> (24 - 8 * i));
}

static void
wire_clear(Wire *w)
{
    g_byte_array_unref(w->meta);
    g_array_unref(w->pieces);
}

/* wire_send - the whole frame to FD, in as few sendmsg() calls as the socket allows */
static gboolean
wire_send(Wire *w, int fd, GError **error)
{
    struct iovec iov[64];
    guint next = 0;      /* the first piece not yet (wholly) sent */
    gsize skip = 0;      /* octets of it already sent */
    while (next < w->pieces->len) {
        guint n = 0;
        for (guint i = next; i < w->pieces->len && n < G_N_ELEMENTS(iov); i++, n++) {
            WirePiece *p = &g_array_index(w->pieces, WirePiece, i);
            const guint8 *data = p->data ? p->data : w->meta->data + p->meta_off;
            gsize off = i == next ? skip : 0;
            iov[n].iov_base = (void *)(data + off);
            iov[n].iov_len = p->len - off;
        }
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = n};
        /* a blocking socket with SO_SNDTIMEO (tcp_connect): a stall fails with EAGAIN */
        ssize_t sent = sendmsg(fd, &msg, MSG_NOSIGNAL);
        if (sent < 0 && errno == EINTR)
            continue;
        if (sent <= 0) {
            g_set_error(error, THRIFT_TRANSPORT_ERROR, THRIFT_TRANSPORT_ERROR_SEND,
                        "failed to send a frame of %zu octets: %s", w->total,
                        g_strerror(sent < 0 ? errno : EPIPE));
            return FALSE;
        }
        gsize left = (gsize)sent;
        while (left > 0) {
            WirePiece *p = &g_array_index(w->pieces, WirePiece, next);
            gsize rest = p->len - skip;
            if (left < rest) {
                skip += left;
                left = 0;
            } else {
                left -= rest;
                next++;
                skip = 0;
            }
        }
    }
    return TRUE;
}

/* attempt_batch - one batch_mutate: our frame to the socket, the generated client reads the
 * reply */
static gboolean
attempt_batch(CassClient *c, gpointer data, GError **error)
{
    Wire *w = data;
    CassFault f = {0};
    /* what framed_flush does first: a new message, a new size budget for its reply */
    gboolean ok = THRIFT_TRANSPORT_GET_CLASS(c->framed)->resetConsumedMessageSize(c->framed, -1, &f.terr) &&
                  wire_send(w, c->fd, &f.terr) &&
                  cassandra_cassandra_client_recv_batch_mutate(c->iface, &f.ire, &f.ue, &f.te, &f.terr);
    return ok || classify(c, &f, error);
}

gboolean
cass_batch_execute(CassClient *c, CassBatch *b, int consistency, int retry_ms, GError **error)
{
    Wire w = {0};
    wire_build(&w, b, consistency);
    gsize message = w.total - 4;
    gboolean ok;
    if (message > CASS_FRAME_MAX) {
        /* refused before a byte is sent: the server would only drop the connection */
        frame_refused(message, error);
        ok = FALSE;
    } else {
        ok = cass_run(c, "batch_mutate", retry_ms, attempt_batch, &w, error);
    }
    if (ok) {
        c->stats.bytes_written += w.octets;
        if (message > c->stats.max_frame)
            c->stats.max_frame = message;
    }
    wire_clear(&w);
    return ok;
}

void
cass_batch_wire(CassBatch *b, int consistency, GByteArray *out)
{
    Wire w = {0};
    wire_build(&w, b, consistency);
    g_byte_array_set_size(out, 0);
    for (guint i = 0; i < w.pieces->len; i++) {
        WirePiece *p = &g_array_index(w.pieces, WirePiece, i);
        g_byte_array_append(out, p->data ? p->data : w.meta->data + p->meta_off, (guint)p->len);
    }
    wire_clear(&w);
}

/* generated_mutation - M as the generated struct */
static CassandraMutation *
generated_mutation(const BatchMutation *m)
{
    gsize nlen;
    const void *ndata = g_bytes_get_data(m->name, &nlen);
    if (!m->value) {
        GPtrArray *names = g_ptr_array_new_with_free_func((GDestroyNotify)g_byte_array_unref);
        g_ptr_array_add(names, byte_array(ndata, nlen));
        CassandraSlicePredicate *pred = g_object_new(CASSANDRA_TYPE_SLICE_PREDICATE,
                                                     "column_names", names, NULL);
        CassandraDeletion *del = g_object_new(CASSANDRA_TYPE_DELETION, "timestamp", m->timestamp,
                                              "predicate", pred, NULL);
        CassandraMutation *mut = g_object_new(CASSANDRA_TYPE_MUTATION, "deletion", del, NULL);
        g_ptr_array_unref(names);
        g_object_unref(pred);
        g_object_unref(del);
        return mut;
    }
    gsize vlen;
    const void *vdata = g_bytes_get_data(m->value, &vlen);
    g_autoptr(GByteArray) n = byte_array(ndata, nlen);
    g_autoptr(GByteArray) v = byte_array(vdata, vlen);
    CassandraColumn *col = g_object_new(CASSANDRA_TYPE_COLUMN, "name", n, "value", v,
                                        "timestamp", m->timestamp, NULL);
    CassandraColumnOrSuperColumn *cosc = g_object_new(CASSANDRA_TYPE_COLUMN_OR_SUPER_COLUMN,
                                                      "column", col, NULL);
    CassandraMutation *mut = g_object_new(CASSANDRA_TYPE_MUTATION, "column_or_supercolumn", cosc, NULL);
    g_object_unref(col);
    g_object_unref(cosc);
    return mut;
}

void
cass_batch_serialise(CassBatch *b, int consistency, GByteArray *out)
{
    patch_finalizers();
    /* The generated writer walks the outer map's keys and looks each one up again in the same
     * table, so the table must find a key by its own pointer: keys are the GByteArray objects
     * themselves, hashed by address (c_glib's generated code hashes binary keys as strings). */
    GHashTable *map = g_hash_table_new_full(g_direct_hash, g_direct_equal,
                                            (GDestroyNotify)g_byte_array_unref,
                                            (GDestroyNotify)g_hash_table_unref);
    for (guint r = 0; r < b->rows->len; r++) {
        BatchRow *row = g_ptr_array_index(b->rows, r);
        GHashTable *cfs = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                                (GDestroyNotify)g_ptr_array_unref);
        for (guint c = 0; c < row->cfs->len; c++) {
            BatchCf *cf = &g_array_index(row->cfs, BatchCf, c);
            GPtrArray *list = g_ptr_array_new_with_free_func(g_object_unref);
            for (guint i = 0; i < cf->mutations->len; i++)
                g_ptr_array_add(list, generated_mutation(&g_array_index(cf->mutations, BatchMutation, i)));
            g_hash_table_insert(cfs, g_strdup(cf->cf), list);
        }
        gsize klen;
        const void *key = g_bytes_get_data(row->key, &klen);
        g_hash_table_insert(map, byte_array(key, klen), cfs);
    }
    ThriftTransport *mem = g_object_new(THRIFT_TYPE_MEMORY_BUFFER, "buf_size", CASS_FRAME_MAX, NULL);
    ThriftProtocol *proto = g_object_new(THRIFT_TYPE_BINARY_PROTOCOL, "transport", mem, NULL);
    GObject *client = g_object_new(CASSANDRA_TYPE_CASSANDRA_CLIENT, "input_protocol", proto,
                                   "output_protocol", proto, NULL);
    GError *e = NULL;
    if (!cassandra_cassandra_client_send_batch_mutate(CASSANDRA_CASSANDRA_IF(client), map,
                                                      (CassandraConsistencyLevel)consistency, &e))
        g_error("cass_batch_serialise: %s", e->message);   /* a memory buffer cannot fail */
    GByteArray *buf = THRIFT_MEMORY_BUFFER(mem)->buf;
    guint32 size_be = GUINT32_TO_BE(buf->len);
    g_byte_array_set_size(out, 0);
    g_byte_array_append(out, (const guint8 *)&size_be, sizeof size_be);
    g_byte_array_append(out, buf->data, buf->len);
    g_object_unref(client);
    g_object_unref(proto);
    g_object_unref(mem);
    g_hash_table_unref(map);
}

/* ==== IMAP additions (imapstore branch): reads the IMAP store layer needs ==================== */

/* cass_get_columns - see cass.h */
gboolean
cass_get_columns(CassClient *c, const char *cf, const void *key, gsize key_len,
                 GBytes *const *names, guint n_names, int consistency, int retry_ms,
                 GPtrArray *out, GError **error)
{
    CassandraSlicePredicate *pred = g_object_new(CASSANDRA_TYPE_SLICE_PREDICATE, NULL);
    g_ptr_array_unref(pred->column_names);
    pred->column_names = g_ptr_array_new_with_free_func((GDestroyNotify)g_byte_array_unref);
    pred->__isset_column_names = TRUE;
    for (guint i = 0; i < n_names; i++) {
        gsize len;
        const void *p = g_bytes_get_data(names[i], &len);
        g_ptr_array_add(pred->column_names, byte_array(p, len));
    }
    return get_slice(c, cf, key, key_len, pred, consistency, retry_ms, out, error);
}

/* ==== end of IMAP additions ================================================================== */
