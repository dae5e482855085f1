/*
 * cassmail-load - the storage ceiling: deliver messages straight into Cassandra through the mail
 * store (no SMTP), with Postal's workload, to measure what the store alone can take.
 *
 *   cassmail-load -c CONF -u USERS [-M MIN_KB] [-m MAX_KB] [-p PROCS] [-d SECONDS] [-i SECONDS]
 *
 * Each of PROCS worker processes opens its own store (as each smtpd child does) and delivers, as
 * fast as it can, messages whose size is uniform in [MIN_KB, MAX_KB] from a random user to a random
 * user of the list — the recipient's inbox and the sender's outbox in one write, exactly what
 * cassmail-smtpd stores for a local sender. Every interval it prints one CSV line:
 *   seconds,messages,payload_kb,errors
 * summed over the workers (payload = message octets, each message counted once).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/select.h>
#include <sys/wait.h>
#include <unistd.h>

#include "net/adapter.h"
#include "store/store.h"
#include "util/config.h"

typedef struct {
    guint64 messages, octets, errors;
} LoadTally;

/* read_users - user names from a Postal-style list (addresses or names, one a line) */
static GPtrArray *
read_users(const char *path, GError **error)
{
    g_autofree char *text = NULL;
    if (!g_file_get_contents(path, &text, NULL, error))
        return NULL;
    GPtrArray *users = g_ptr_array_new_with_free_func(g_free);
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    for (char **l = lines; *l; l++) {
        char *s = g_strstrip(*l);
        if (!*s || *s == '#')
            continue;
        s += *s == '<';
        g_ptr_array_add(users, g_ascii_strdown(s, (gssize)strcspn(s, "@> \t")));
    }
    return users;
}

/* worker - deliver until DEADLINE, writing a running tally to FD every INTERVAL */
static int
worker(const CassmailConfig *cfg, GPtrArray *users, gsize min, gsize max, gint64 deadline,
       int fd, guint seed)
{
    GError *error = NULL;
    Store *store = adapter_store_open(cfg, &error);
    if (!store) {
        fprintf(stderr, "cassmail-load: %s\n", error->message);
        return 1;
    }
    GRand *rand = g_rand_new_with_seed(seed);
    guint8 *body = g_malloc(max);
    for (gsize i = 0; i < max; i++)   /* printable text in 76-column lines, like MIME */
        body[i] = (i % 78 == 76) ? '\r' : (i % 78 == 77) ? '\n' : (guint8)('A' + g_rand_int_range(rand, 0, 26));
    LoadTally t = {0, 0, 0};
    while (g_get_monotonic_time() < deadline) {
        gsize len = min + (gsize)g_rand_int_range(rand, 0, (gint32)(max - min + 1));
        const char *to = g_ptr_array_index(users, g_rand_int_range(rand, 0, (gint32)users->len));
        const char *from = g_ptr_array_index(users, g_rand_int_range(rand, 0, (gint32)users->len));
        StoreTarget targets[2] = {{to, "inbox"}, {from, "outbox"}};
        StoreMsgId id;
        store_msgid_new(&id);
        if (store_deliver(store, &id, targets, 2, body, len, &error)) {
            t.messages++;
            t.octets += len;
        } else {
            t.errors++;
            g_clear_error(&error);
        }
        if (write(fd, &t, sizeof t) != sizeof t)
            break;
    }
    g_free(body);
    g_rand_free(rand);
    store_free(&store);
    return 0;
}

int
main(int argc, char **argv)
{
    g_autofree char *conf = NULL, *userlist = NULL;
    int min_kb = 200, max_kb = 2048, procs = 4, seconds = 60, interval = 60;
    GOptionEntry entries[] = {
        {"config", 'c', 0, G_OPTION_ARG_FILENAME, &conf, "configuration file", "FILE"},
        {"users", 'u', 0, G_OPTION_ARG_FILENAME, &userlist, "user list (Postal format)", "FILE"},
        {"min-kb", 'M', 0, G_OPTION_ARG_INT, &min_kb, "smallest message (KB, default 200)", "KB"},
        {"max-kb", 'm', 0, G_OPTION_ARG_INT, &max_kb, "largest message (KB, default 2048)", "KB"},
        {"procs", 'p', 0, G_OPTION_ARG_INT, &procs, "worker processes (default 4)", "N"},
        {"duration", 'd', 0, G_OPTION_ARG_INT, &seconds, "seconds to run (default 60)", "S"},
        {"interval", 'i', 0, G_OPTION_ARG_INT, &interval, "seconds between reports (default 60)", "S"},
        {NULL, 0, 0, 0, NULL, NULL, NULL},
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new("- store ceiling load generator");
    g_option_context_add_main_entries(ctx, entries, NULL);
    GError *error = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &error) || !userlist || min_kb < 1 ||
        max_kb < min_kb || procs < 1 || procs > 256 || seconds < 1 || interval < 1) {
        fprintf(stderr, "cassmail-load: %s (see --help)\n",
                error ? error->message : "need -u USERS, 1 <= MIN <= MAX, 1 <= PROCS <= 256");
        return 64;
    }
    CassmailConfig *cfg = config_load(conf, &error);
    GPtrArray *users = cfg ? read_users(userlist, &error) : NULL;
    if (!users || users->len == 0) {
        fprintf(stderr, "cassmail-load: %s\n", error ? error->message : "empty user list");
        return 66;
    }

    gint64 start = g_get_monotonic_time();
    gint64 deadline = start + (gint64)seconds * G_USEC_PER_SEC;
    typedef int PipePair[2];
    PipePair *pipes = g_new(PipePair, procs);
    pid_t *pids = g_new(pid_t, procs);
    for (int i = 0; i < procs; i++) {
        if (pipe(pipes[i]) < 0) {
            perror("pipe");
            return 71;
        }
        pids[i] = fork();
        if (pids[i] == 0) {
            close(pipes[i][0]);
            _exit(worker(cfg, users, (gsize)min_kb * 1024, (gsize)max_kb * 1024, deadline,
                         pipes[i][1], (guint)(getpid() * 2654435761u)));
        }
        close(pipes[i][1]);
    }
    /* Every worker writes its running tally after each message; keep the latest of each. */
    LoadTally *latest = g_new0(LoadTally, procs), last_report = {0, 0, 0};
    printf("seconds,messages,payload_kb,errors\n");
    fflush(stdout);
    gint64 next = start + (gint64)interval * G_USEC_PER_SEC;
    int open_pipes = procs;
    while (open_pipes > 0) {
        fd_set set;
        FD_ZERO(&set);
        int maxfd = -1;
        for (int i = 0; i < procs; i++)
            if (pipes[i][0] >= 0) {
                FD_SET(pipes[i][0], &set);
                maxfd = MAX(maxfd, pipes[i][0]);
            }
        struct timeval tv = {0, 200000};
        if (select(maxfd + 1, &set, NULL, NULL, &tv) < 0 && errno != EINTR)
            break;
        for (int i = 0; i < procs; i++) {
            if (pipes[i][0] < 0 || !FD_ISSET(pipes[i][0], &set))
                continue;
            LoadTally t;
            ssize_t n = read(pipes[i][0], &t, sizeof t);
            if (n == sizeof t)
                latest[i] = t;
            else if (n <= 0) {
                close(pipes[i][0]);
                pipes[i][0] = -1;
                open_pipes--;
            }
        }
        gint64 now = g_get_monotonic_time();
        if (now >= next || open_pipes == 0) {
            LoadTally sum = {0, 0, 0};
            for (int i = 0; i < procs; i++) {
                sum.messages += latest[i].messages;
                sum.octets += latest[i].octets;
                sum.errors += latest[i].errors;
            }
            if (sum.messages != last_report.messages || now >= next)
                printf("%.0f,%" G_GUINT64_FORMAT ",%" G_GUINT64_FORMAT ",%" G_GUINT64_FORMAT "\n",
                       (double)(now - start) / G_USEC_PER_SEC, sum.messages - last_report.messages,
                       (sum.octets - last_report.octets) / 1024, sum.errors - last_report.errors);
            fflush(stdout);
            last_report = sum;
            next += (gint64)interval * G_USEC_PER_SEC;
        }
    }
    int failed = 0;
    for (int i = 0; i < procs; i++) {
        int status;
        if (waitpid(pids[i], &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            failed++;
    }
    g_free(latest);
    g_free(pipes);
    g_free(pids);
    g_ptr_array_unref(users);
    config_free(&cfg);
    return failed ? 1 : 0;
}
