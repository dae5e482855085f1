/*
 * server.c - the fork-per-connection listener and the inetd mode (see server.h).
 *
 * Signals: the parent keeps SIGCHLD, SIGTERM and SIGINT blocked except inside ppoll(), so a
 * signal can only interrupt the wait — never arrive between checking a flag and sleeping.
 * Handlers only set flags; children are reaped with waitpid(WNOHANG) in the main loop.
 *
 * Sessions: the parent keeps a NetChild per live child — its pid, the peer, and the parent's copy
 * of the connection — in a table keyed by pid. The copy lets a full listener see, through
 * TCP_INFO, how long each client has been silent, and close the quietest (server.h); it is closed
 * when the child is reaped. A new child closes the whole table's copies at once (they belong to
 * its siblings), so a client always sees its connection end when its own session ends.
 *
 * Held sessions: each child has a slot, one byte of a page the parent maps shared and anonymous
 * before it forks anything. The child writes its byte (net_session_hold); the parent only reads
 * it, as "non-zero: do not evict", when it looks for a session to close. Which slot belongs to
 * which child is the parent's private bookkeeping, so whatever a child writes there can at worst
 * keep sessions from being evicted — never corrupt the listener's state or make it wait.
 */
#include "net/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/log.h"
#include "util/text.h"

#define LISTEN_TEXT_MAX 300   /* longer than any host:port we could mean */

/* descriptors the parent needs besides one per session (listener, logs, stdio, slack) */
#define NET_SERVE_SPARE_FDS 64

static volatile sig_atomic_t got_child;
static volatile sig_atomic_t got_stop;
static int evict_idle_s = NET_SERVE_EVICT_IDLE_S;
static int client_limit = NET_SERVE_CLIENT_LIMIT;
/* In a session forked by net_serve_fd: its byte in the listener's shared slot page (see above).
 * NULL in the listener itself and in inetd mode. */
static volatile guint8 *own_slot;

/* The slots of one listener: the shared page and the parent's private list of free slots. */
typedef struct {
    volatile guint8 *held;   /* MAP_SHARED: one byte per slot, non-zero while its child holds */
    gsize size;              /* bytes mapped */
    guint n;                 /* slots */
    guint *free;             /* private: free slot numbers, a stack */
    guint nfree;
} NetSlots;

/* One live session, as the parent sees it. */
typedef struct {
    pid_t pid;
    int fd;             /* the parent's copy of the connection (-1 when there is none) */
    char *peer;         /* the client's address, for logs and the per-client limit */
    guint slot;         /* its byte in NetSlots.held */
    gboolean evicted;   /* closed to make room; no longer counted, waiting to be reaped */
} NetChild;

/* net_child_free - close the parent's copy of the connection and free C (table destructor) */
static void
net_child_free(gpointer data)
{
    NetChild *c = data;
    if (c->fd >= 0)
        close(c->fd);
    g_free(c->peer);
    g_free(c);
}

/* net_serve_set_evict_idle - see server.h */
void
net_serve_set_evict_idle(int seconds)
{
    evict_idle_s = MAX(seconds, 0);
}

/* net_serve_set_client_limit - see server.h */
void
net_serve_set_client_limit(int sessions)
{
    client_limit = MAX(sessions, 0);
}

/* net_serve_client_share - see server.h */
int
net_serve_client_share(int max_children)
{
    if (client_limit <= 0)
        return max_children;
    return MIN(client_limit, MAX(max_children - 1, 1));
}

/* net_session_hold - see server.h */
void
net_session_hold(gboolean hold)
{
    if (own_slot)
        *own_slot = hold ? 1 : 0;
}

/* net_slots_init - N slots, every one free; FALSE with ERROR when the page cannot be mapped */
static gboolean
net_slots_init(NetSlots *sl, guint n, GError **error)
{
    sl->n = n;
    sl->size = n;
    void *p = mmap(NULL, sl->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        g_set_error(error, NET_ERROR, NET_ERROR_SYSTEM, "mmap: %s", g_strerror(errno));
        return FALSE;
    }
    sl->held = p;
    sl->free = g_new(guint, n);
    for (guint i = 0; i < n; i++)
        sl->free[i] = n - 1 - i;
    sl->nfree = n;
    return TRUE;
}

/* net_slots_clear - unmap and free SL's slots */
static void
net_slots_clear(NetSlots *sl)
{
    if (sl->held)
        munmap((void *)sl->held, sl->size);
    sl->held = NULL;
    g_clear_pointer(&sl->free, g_free);
    sl->nfree = 0;
}

/* net_slot_take - a free slot, not held; FALSE when every slot is in use */
static gboolean
net_slot_take(NetSlots *sl, guint *slot)
{
    if (sl->nfree == 0)
        return FALSE;
    *slot = sl->free[--sl->nfree];
    sl->held[*slot] = 0;
    return TRUE;
}

/* net_slot_give - SLOT is free again (its child has been reaped) */
static void
net_slot_give(NetSlots *sl, guint slot)
{
    if (slot < sl->n && sl->nfree < sl->n)
        sl->free[sl->nfree++] = slot;
}

/* net_parse_listen - see server.h */
gboolean
net_parse_listen(const char *text, char **host, int *port, GError **error)
{
    *host = NULL;
    *port = 0;
    if (!text || !*text || strlen(text) > LISTEN_TEXT_MAX) {
        g_set_error(error, NET_ERROR, NET_ERROR_ADDRESS, "empty or overlong listen address");
        return FALSE;
    }
    guint n;
    const char *wrong = text_hostport_parse(text, 0, TEXT_HOSTPORT_LISTEN, host, &n);
    if (wrong) {
        g_set_error(error, NET_ERROR, NET_ERROR_ADDRESS, "\"%s\": %s", text, wrong);
        return FALSE;
    }
    *port = (int)n;
    return TRUE;
}

/* net_addr_text - the numeric address of SA (IPv4-mapped IPv6 as IPv4), with ":port" (and
 * brackets round IPv6) when WITH_PORT; "local" for a Unix socket */
static char *
net_addr_text(const struct sockaddr *sa, socklen_t len, gboolean with_port)
{
    char host[INET6_ADDRSTRLEN] = "";
    int port = 0;
    gboolean v6 = FALSE;
    if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
        port = ntohs(s4->sin_port);
    } else if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], host, sizeof host);
        } else {
            inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
            v6 = TRUE;
        }
        port = ntohs(s6->sin6_port);
    } else if (sa->sa_family == AF_UNIX) {
        return g_strdup("local");
    } else {
        return g_strdup("unknown");
    }
    if (!with_port)
        return g_strdup(host);
    return v6 ? g_strdup_printf("[%s]:%d", host, port) : g_strdup_printf("%s:%d", host, port);
}

/* net_peer_text - see server.h */
char *
net_peer_text(int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode))
        return g_strdup("pipe");
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
        return g_strdup("unknown");
    return net_addr_text((struct sockaddr *)&ss, len, FALSE);
}

/* net_local_text - "ADDR:PORT" that socket FD is bound to */
static char *
net_local_text(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return g_strdup("unknown");
    return net_addr_text((struct sockaddr *)&ss, len, TRUE);
}

/* net_bound_port - see server.h */
int
net_bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

/* net_listen_on - bind and listen on the first address HOST:PORT resolves to; DUAL_STACK lets an
 * IPv6 socket take IPv4 connections too */
static int
net_listen_on(const char *host, int port, gboolean dual_stack, const char *what, GError **error)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port_text[8];
    g_snprintf(port_text, sizeof port_text, "%d", port);
    int rc = getaddrinfo(host, port_text, &hints, &res);
    if (rc != 0) {
        g_set_error(error, NET_ERROR, NET_ERROR_ADDRESS, "%s: %s", what, gai_strerror(rc));
        return -1;
    }
    int fd = -1, err = 0;
    const char *step = "socket";
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            step = "socket";
            continue;
        }
        int one = 1, zero = 0;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (dual_stack && ai->ai_family == AF_INET6)
            (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            err = errno;
            step = "bind";
        } else if (listen(fd, NET_LISTEN_BACKLOG) != 0) {
            err = errno;
            step = "listen";
        } else {
            break;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        g_set_error(error, NET_ERROR, NET_ERROR_SYSTEM, "%s: %s: %s", what, step,
                    g_strerror(err ? err : EADDRNOTAVAIL));
    return fd;
}

/* net_listen - see server.h */
int
net_listen(const char *listen, GError **error)
{
    g_autofree char *host = NULL;
    int port;
    if (!net_parse_listen(listen, &host, &port, error))
        return -1;
    if (host)
        return net_listen_on(host, port, FALSE, listen, error);
    int fd = net_listen_on("::", port, TRUE, listen, NULL);
    return fd >= 0 ? fd : net_listen_on("0.0.0.0", port, FALSE, listen, error);
}

/* on_child - SIGCHLD: reap in the main loop */
static void
on_child(int sig)
{
    (void)sig;
    got_child = 1;
}

/* on_stop - SIGTERM, SIGINT: stop accepting */
static void
on_stop(int sig)
{
    (void)sig;
    got_stop = 1;
}

/* net_reap - collect every exited child, forgetting ours in CHILDREN (which closes our copy of
 * its connection) and freeing its slot in SLOTS. A session that died of a signal is logged,
 * except of the SIGTERM a STOPPING server sent it. */
static void
net_reap(GHashTable *children, NetSlots *slots, gboolean stopping)
{
    got_child = 0;
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0)
            return;
        NetChild *c = g_hash_table_lookup(children, GINT_TO_POINTER(pid));
        if (!c)
            continue;
        if (WIFSIGNALED(status) && !(stopping && WTERMSIG(status) == SIGTERM))
            log_err("session %ld died of signal %d (%s)", (long)pid, WTERMSIG(status), c->peer);
        else if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
            log_warn("session %ld exited with status %d (%s)", (long)pid, WEXITSTATUS(status),
                     c->peer);
        net_slot_give(slots, c->slot);
        g_hash_table_remove(children, GINT_TO_POINTER(pid));
    }
}

/* net_live - sessions that count against max_children: every child not evicted */
static guint
net_live(GHashTable *children)
{
    guint live = 0;
    GHashTableIter it;
    gpointer value;
    g_hash_table_iter_init(&it, children);
    while (g_hash_table_iter_next(&it, NULL, &value))
        if (!((NetChild *)value)->evicted)
            live++;
    return live;
}

/* net_client_sessions - sessions of CHILDREN (evicted ones not counted) from client address PEER */
static guint
net_client_sessions(GHashTable *children, const char *peer)
{
    guint n = 0;
    GHashTableIter it;
    gpointer value;
    g_hash_table_iter_init(&it, children);
    while (g_hash_table_iter_next(&it, NULL, &value)) {
        const NetChild *c = value;
        if (!c->evicted && strcmp(c->peer, peer) == 0)
            n++;
    }
    return n;
}

/* net_silent_ms - how long the client on FD has been silent: the time since data last went
 * either way on the connection (TCP_INFO). -1 when that is unknown (not TCP) or when input is
 * waiting unread (the session is busy, not its client idle). */
static gint64
net_silent_ms(int fd)
{
    struct tcp_info ti;
    memset(&ti, 0, sizeof ti);
    socklen_t len = sizeof ti;
    if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
        len < offsetof(struct tcp_info, tcpi_last_ack_recv))
        return -1;
    int unread = 0;
    if (ioctl(fd, SIOCINQ, &unread) != 0 || unread > 0)
        return -1;
    return MIN(ti.tcpi_last_data_recv, ti.tcpi_last_data_sent);
}

/* net_evict_idle - make room for a new connection: close the session whose client has been
 * silent longest, when that is at least evict_idle_s, among those that do not hold (SLOTS). The
 * client gets BUSY_REPLY; shutting the socket down makes the session read EOF and end. TRUE
 * when a session was closed. */
static gboolean
net_evict_idle(GHashTable *children, const NetSlots *slots, const char *busy_reply)
{
    if (evict_idle_s <= 0)
        return FALSE;
    NetChild *quietest = NULL;
    gint64 longest = -1;
    GHashTableIter it;
    gpointer value;
    g_hash_table_iter_init(&it, children);
    while (g_hash_table_iter_next(&it, NULL, &value)) {
        NetChild *c = value;
        gint64 ms = c->evicted || slots->held[c->slot] ? -1 : net_silent_ms(c->fd);
        if (ms > longest) {
            longest = ms;
            quietest = c;
        }
    }
    if (!quietest || longest < (gint64)evict_idle_s * 1000)
        return FALSE;
    if (busy_reply && *busy_reply)
        (void)send(quietest->fd, busy_reply, strlen(busy_reply), MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)shutdown(quietest->fd, SHUT_RDWR);
    quietest->evicted = TRUE;
    log_warn("evicted %ld (%s): silent %" G_GINT64_FORMAT " s, the listener is full",
             (long)quietest->pid, quietest->peer, longest / 1000);
    return TRUE;
}

/* net_raise_fd_limit - let the parent hold a copy of MAX_CHILDREN connections: raise the soft
 * RLIMIT_NOFILE (as far as the hard limit allows) */
static void
net_raise_fd_limit(int max_children)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t want = (rlim_t)max_children + NET_SERVE_SPARE_FDS;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY ? want : MIN(want, rl.rlim_max);
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want)
        log_warn("open files limited to %lu: fewer than %d sessions fit",
                 (unsigned long)rl.rlim_cur, max_children);
}

/* net_refuse - tell a connection we are full (or its address has its share), and close it */
static void
net_refuse(int cfd, const char *busy_reply)
{
    if (busy_reply && *busy_reply)
        (void)send(cfd, busy_reply, strlen(busy_reply), MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)shutdown(cfd, SHUT_WR);
    close(cfd);
}

/* Signal dispositions net_serve_fd changes, to put back. */
typedef struct {
    struct sigaction chld, term, intr, pipe;
    sigset_t mask;
} NetSavedSignals;

/* net_restore_signals - the dispositions and mask from before net_serve_fd */
static void
net_restore_signals(const NetSavedSignals *saved)
{
    sigaction(SIGCHLD, &saved->chld, NULL);
    sigaction(SIGTERM, &saved->term, NULL);
    sigaction(SIGINT, &saved->intr, NULL);
    sigaction(SIGPIPE, &saved->pipe, NULL);
    sigprocmask(SIG_SETMASK, &saved->mask, NULL);
}

/* net_run_child - the child's life: one session on CFD, then exit */
static void G_GNUC_NORETURN
net_run_child(int listen_fd, GHashTable *children, NetSlots *slots, guint slot, int cfd,
              const char *peer, const sigset_t *unblocked, NetHandler handler, gpointer user_data)
{
    close(listen_fd);
    g_hash_table_unref(children);   /* the parent's bookkeeping; closes the siblings' sockets */
    g_clear_pointer(&slots->free, g_free);
    own_slot = &slots->held[slot];   /* the shared page stays mapped: net_session_hold */
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGCHLD, &dfl, NULL);
    sigaction(SIGTERM, &dfl, NULL);
    sigaction(SIGINT, &dfl, NULL);
    sigprocmask(SIG_SETMASK, unblocked, NULL);   /* SIGPIPE stays ignored */

    NetConn *c = net_conn_new(cfd, cfd);
    handler(c, peer, user_data);
    net_conn_flush(c);
    net_conn_free(&c);
    (void)shutdown(cfd, SHUT_WR);
    close(cfd);
    _exit(0);
}

/* net_stop_children - SIGTERM every child, wait the grace period, SIGKILL the rest, reap all */
static void
net_stop_children(GHashTable *children, NetSlots *slots, const sigset_t *unblocked)
{
    GHashTableIter it;
    gpointer key;
    g_hash_table_iter_init(&it, children);
    while (g_hash_table_iter_next(&it, &key, NULL))
        kill(GPOINTER_TO_INT(key), SIGTERM);
    gint64 deadline = g_get_monotonic_time() + (gint64)NET_SERVE_STOP_GRACE_MS * 1000;
    net_reap(children, slots, TRUE);
    while (g_hash_table_size(children) > 0 && g_get_monotonic_time() < deadline) {
        struct timespec nap = {.tv_sec = 0, .tv_nsec = 50 * 1000 * 1000};
        (void)ppoll(NULL, 0, &nap, unblocked);   /* SIGCHLD ends the nap early */
        net_reap(children, slots, TRUE);
    }
    if (g_hash_table_size(children) == 0)
        return;
    log_warn("%u sessions ignored SIGTERM; killing them", g_hash_table_size(children));
    g_hash_table_iter_init(&it, children);
    while (g_hash_table_iter_next(&it, &key, NULL)) {
        pid_t pid = GPOINTER_TO_INT(key);
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    g_hash_table_remove_all(children);
}

/* net_serve_fd - see server.h */
int
net_serve_fd(int fd, int max_children, const char *busy_reply, NetHandler handler,
             gpointer user_data, GError **error)
{
    if (fd < 0 || max_children < 1 || !handler) {
        g_set_error(error, NET_ERROR, NET_ERROR_SYSTEM,
                    "net_serve_fd needs a listening socket, a handler and max_children >= 1");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
        g_set_error(error, NET_ERROR, NET_ERROR_SYSTEM, "fcntl: %s", g_strerror(errno));
        close(fd);
        return -1;
    }

    NetSavedSignals saved;
    sigset_t ours, unblocked;
    sigemptyset(&ours);
    sigaddset(&ours, SIGCHLD);
    sigaddset(&ours, SIGTERM);
    sigaddset(&ours, SIGINT);
    sigprocmask(SIG_BLOCK, &ours, &saved.mask);
    unblocked = saved.mask;
    sigdelset(&unblocked, SIGCHLD);
    sigdelset(&unblocked, SIGTERM);
    sigdelset(&unblocked, SIGINT);
    got_child = got_stop = 0;
    struct sigaction sa = {.sa_handler = on_child, .sa_flags = SA_NOCLDSTOP};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGCHLD, &sa, &saved.chld);
    sa.sa_handler = on_stop;
    sa.sa_flags = 0;
    sigaction(SIGTERM, &sa, &saved.term);
    sigaction(SIGINT, &sa, &saved.intr);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, &saved.pipe);

    /* Slots for max_children live sessions and as many evicted ones not yet reaped. */
    NetSlots slots = {0};
    if (!net_slots_init(&slots, (guint)max_children * 2, error)) {
        net_restore_signals(&saved);
        close(fd);
        return -1;
    }
    net_raise_fd_limit(max_children);
    GHashTable *children = g_hash_table_new_full(NULL, NULL, NULL, net_child_free);
    g_autofree char *where = net_local_text(fd);
    guint share = (guint)net_serve_client_share(max_children);
    log_info("listening on %s (at most %d sessions, %u from one client address)", where,
             max_children, share);
    int result = 0;

    while (!got_stop) {
        if (got_child)
            net_reap(children, &slots, FALSE);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = ppoll(&p, 1, NULL, &unblocked);
        if (r < 0 && errno != EINTR) {
            g_set_error(error, NET_ERROR, NET_ERROR_SYSTEM, "poll: %s", g_strerror(errno));
            result = -1;
            break;
        }
        if (r <= 0 || got_stop)
            continue;

        struct sockaddr_storage ss;
        socklen_t slen = sizeof ss;
        int cfd = accept4(fd, (struct sockaddr *)&ss, &slen, SOCK_CLOEXEC);
        if (cfd < 0) {
            int e = errno;
            if (e == EINTR || e == EAGAIN || e == EWOULDBLOCK || e == ECONNABORTED || e == EPROTO)
                continue;
            if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
                log_warn("accept: %s", g_strerror(e));
                g_usleep(100 * 1000);   /* let sessions end rather than spin */
                continue;
            }
            g_set_error(error, NET_ERROR, NET_ERROR_SYSTEM, "accept: %s", g_strerror(e));
            result = -1;
            break;
        }
        g_autofree char *peer = net_addr_text((struct sockaddr *)&ss, slen, FALSE);
        net_reap(children, &slots, FALSE);   /* count only sessions that are really alive */
        guint live = net_live(children);
        /* An address over its share is refused at once: evicting another client's session for
         * it would hand the listener to whoever opens the most connections. */
        guint mine = client_limit > 0 ? net_client_sessions(children, peer) : 0;
        if (client_limit > 0 && mine >= share) {
            net_refuse(cfd, busy_reply);
            log_warn("refused %s: %u sessions from this address, its limit", peer, mine);
            continue;
        }
        if (live >= (guint)max_children && !net_evict_idle(children, &slots, busy_reply)) {
            net_refuse(cfd, busy_reply);
            log_warn("refused %s: %u sessions running, the limit", peer, live);
            continue;
        }
        guint slot;
        if (!net_slot_take(&slots, &slot)) {
            net_refuse(cfd, busy_reply);
            log_warn("refused %s: %u evicted sessions have not ended yet", peer,
                     g_hash_table_size(children) - net_live(children));
            continue;
        }
        pid_t pid = fork();
        if (pid == 0)
            net_run_child(fd, children, &slots, slot, cfd, peer, &unblocked, handler, user_data);
        if (pid < 0) {
            log_err("fork: %s", g_strerror(errno));
            net_slot_give(&slots, slot);
            net_refuse(cfd, busy_reply);
            continue;
        }
        NetChild *child = g_new0(NetChild, 1);
        child->pid = pid;
        child->fd = cfd;   /* kept: see the top of this file */
        child->slot = slot;
        child->peer = g_steal_pointer(&peer);
        g_hash_table_insert(children, GINT_TO_POINTER(pid), child);
    }

    close(fd);
    log_info("stopping: %u sessions running", g_hash_table_size(children));
    net_stop_children(children, &slots, &unblocked);
    g_hash_table_unref(children);
    net_slots_clear(&slots);
    net_restore_signals(&saved);
    log_info("stopped listening on %s", where);
    return result;
}

/* net_serve_inetd - see server.h */
void
net_serve_inetd(NetHandler handler, gpointer user_data)
{
    struct sigaction sa = {.sa_handler = SIG_IGN};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPIPE, &sa, NULL);
    g_autofree char *peer = net_peer_text(0);
    NetConn *c = net_conn_new(0, 1);
    handler(c, peer, user_data);
    net_conn_flush(c);
    net_conn_free(&c);
}
