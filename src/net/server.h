/*
 * server.h - the listener: one forked child per connection, a cap on live children, clean stop;
 * and the inetd mode (inetd, xinetd, systemd Accept=yes), where fds 0 and 1 are the connection.
 *
 * Daemon mode, for programs that must bind a privileged port and then drop privileges:
 *
 *     int fd = net_listen(cfg->smtp_listen, &error);      bind and listen (as root)
 *     ... setgid/setuid ...
 *     net_serve_fd(fd, cfg->max_children, busy, handler, data, &error);
 *
 * (src/net/adapter.c does both). The parent only accepts, forks, counts and reaps; the
 * child runs HANDLER on a NetConn for the socket, flushes, and exits. SIGTERM or SIGINT stops the
 * parent: it closes the listener, sends SIGTERM to the children, waits for them
 * (NET_SERVE_STOP_GRACE_MS, then SIGKILL) and returns 0. SIGPIPE is ignored.
 *
 * Hostile clients (a slowloris holding connections open and silent): sessions are cheap (a child
 * is a few hundred KB of its own and opens no Cassandra connection until it needs one), so
 * MAX_CHILDREN can be high. When MAX_CHILDREN sessions are running, a new connection closes the
 * session whose client has been silent longest — neither sent nor received data, per the
 * kernel's TCP_INFO, and no input waiting unread — if that silence has lasted at least the
 * eviction time (net_serve_set_evict_idle); that client gets BUSY_REPLY, its session reads EOF
 * and ends as if the client had gone (a transaction in progress is dropped), and the new
 * connection is served. Only when no session has been silent that long does the new connection
 * get BUSY_REPLY and is closed without a fork. (A client in TLS sees a broken record instead of
 * the reply: the parent cannot speak inside a child's TLS session.) To know that silence, the
 * parent keeps its copy of every session's socket until it reaps the child, and raises its soft
 * RLIMIT_NOFILE (within the hard limit) to fit MAX_CHILDREN of them.
 *
 * Sessions that must not be closed: a session in the middle of something the client would have
 * to repeat — an SMTP session inside DATA, or one waiting on the store (a delivery may take
 * retry_ms and more while Cassandra fails over, and its client is silent meanwhile) — says so
 * with net_session_hold(TRUE), and is never evicted until it says net_session_hold(FALSE).
 * Evicting it after the message was stored but before the 250 went out would make the client
 * send the message again. A held session ends by its own timeouts (idle, DATA, the store's).
 *
 * One client address (a trickle of bytes keeps all of its sessions from ever being silent) may
 * hold at most net_serve_client_share(MAX_CHILDREN) sessions: the client limit
 * (net_serve_set_client_limit, like Postfix's smtpd_client_connection_count_limit), but never
 * more than MAX_CHILDREN - 1, so another address always finds a slot that one address cannot
 * take (MAX_CHILDREN 1 leaves a share of 1). A connection over its address's share gets
 * BUSY_REPLY at once and is closed without a fork; it evicts nobody. Addresses are compared as
 * the numeric text of NetHandler's PEER_ADDR (each IPv6 address on its own).
 *
 * The log (util/log.h) gets "listening on ADDR:PORT" once the socket accepts connections, one
 * line per connection refused as busy ("N sessions running" or "N sessions from this address"),
 * one per session closed to make room ("evicted PID ..."), one for a session that died of a
 * signal (but for the SIGTERM of a stop) or exited non-zero, and one when the server stops.
 */
#ifndef CASSMAIL_NET_SERVER_H
#define CASSMAIL_NET_SERVER_H

#include <glib.h>

#include "net/conn.h"

/* pending connections the kernel queues for accept() */
#define NET_LISTEN_BACKLOG 256
/* how long a stopping server waits for its children before SIGKILL */
#define NET_SERVE_STOP_GRACE_MS 5000
/* the eviction time until net_serve_set_evict_idle says otherwise: longer than a delivery takes
 * while Cassandra fails over (a client waiting for its 250 is silent too) */
#define NET_SERVE_EVICT_IDLE_S 30
/* sessions from one client address until net_serve_set_client_limit says otherwise (Postfix's
 * smtpd_client_connection_count_limit) */
#define NET_SERVE_CLIENT_LIMIT 50

/* One connection, in its own child process. PEER_ADDR is the client's numeric address without
 * port ("192.0.2.7", "2001:db8::7"; IPv4-mapped IPv6 shown as IPv4), or "local" (a Unix socket)
 * or "pipe" (not a socket) in inetd mode. The caller flushes and frees CONN after it returns. */
typedef void (*NetHandler)(NetConn *conn, const char *peer_addr, gpointer user_data);

/* net_parse_listen - "127.0.0.1:2525", "[::1]:110", "mail.example:25", ":2525" or "*:2525".
 * HOST receives the host (NULL for ":PORT" and "*:PORT": every address); PORT 0..65535, where 0
 * asks the kernel for any free port. The parser is util/text.h's, in its listen form. */
gboolean net_parse_listen(const char *text, char **host, int *port, GError **error);

/* net_listen - a listening TCP socket for LISTEN (SO_REUSEADDR, close-on-exec, non-blocking); -1
 * and ERROR on failure. Every address means IPv6 "::" accepting IPv4 too, or 0.0.0.0 when the
 * host has no IPv6. */
int net_listen(const char *listen, GError **error);
/* net_bound_port - the local port of socket FD (-1 when it has none): learns what port 0 got */
int net_bound_port(int fd);

/* net_serve_fd - serve the listening socket FD until SIGTERM/SIGINT (see above); closes FD.
 * Returns 0 after a clean stop, -1 with ERROR when it cannot run. Signal handlers it changes are
 * restored before it returns. */
int net_serve_fd(int fd, int max_children, const char *busy_reply, NetHandler handler,
                 gpointer user_data, GError **error);
/* net_serve_set_evict_idle - the eviction time for the listeners of this process: a full
 * listener closes a session whose client has been silent at least SECONDS to serve a new
 * connection (see above); 0 never closes one (a full listener refuses). */
void net_serve_set_evict_idle(int seconds);
/* net_serve_set_client_limit - the most sessions one client address may hold in the listeners of
 * this process (see above); 0: no limit of its own, only MAX_CHILDREN */
void net_serve_set_client_limit(int sessions);
/* net_serve_client_share - what one address may hold of MAX_CHILDREN: the client limit, at most
 * MAX_CHILDREN - 1 and at least 1; MAX_CHILDREN itself when there is no client limit */
int net_serve_client_share(int max_children);
/* net_session_hold - in a session net_serve_fd forked: TRUE while it must not be evicted (inside
 * SMTP DATA, waiting on the store, answering); FALSE while it only waits for the client's next
 * command. Sessions start not held. A plain store to shared memory, cheap enough per line; a
 * no-op outside such a session (inetd mode, the listener). */
void net_session_hold(gboolean hold);

/* net_serve_inetd - run HANDLER once on fds 0 (input) and 1 (output), flush, and return */
void net_serve_inetd(NetHandler handler, gpointer user_data);

/* net_peer_text - the numeric address of FD's peer as described for NetHandler ("local",
 * "pipe"); free with g_free */
char *net_peer_text(int fd);

#endif
