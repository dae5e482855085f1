/*
 * cassmail-admin - administer a CassMail installation: schema, users, mailboxes, passwords,
 * the ring, and a look at stored mail.
 *
 *   cassmail-admin [-c FILE] schema [--rf N]
 *   cassmail-admin [-c FILE] useradd [--password-stdin [--iterations N]] USER
 *   cassmail-admin [-c FILE] userdel USER
 *   cassmail-admin [-c FILE] users
 *   cassmail-admin [-c FILE] passwd [--iterations N] USER   (password from stdin, or prompted)
 *   cassmail-admin [-c FILE] mailbox add USER BOX
 *   cassmail-admin [-c FILE] mailboxes USER
 *   cassmail-admin [-c FILE] import FILE            (one address or user per line; - for stdin)
 *   cassmail-admin [-c FILE] ring
 *   cassmail-admin [-c FILE] version
 *   cassmail-admin [-c FILE] list USER [BOX]        (one line per message: TimeUUID size)
 *   cassmail-admin [-c FILE] fetch USER BOX ID      (the stored octets, to stdout)
 *   cassmail-admin [-c FILE] gc [--min-age S] [--dry-run]   (remove bodies nobody refers to)
 *
 * Exit status follows sysexits(3): 64 usage, 65 bad data, 66 no input file, 67 no such user,
 * 69 Cassandra unavailable (for gc also: consistency ALL cannot be had; nothing was removed),
 * 70 internal error, 78 configuration error.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "net/adapter.h"
#include "store/store.h"
#include "store/store_admin.h"
#include "util/config.h"
#include "util/password.h"

#define DEFAULT_CONFIG "/etc/cassmail/cassmail.conf"

static const char *usage_text =
    "COMMAND [ARGS]\n\n"
    "Commands:\n"
    "  schema [--rf N]              create keyspace and column families when missing\n"
    "  useradd [--password-stdin] USER   add USER with mailboxes inbox and outbox\n"
    "  userdel USER                 remove USER, its mail and its password\n"
    "  users                        list users\n"
    "  passwd [--iterations N] USER set USER's password (stdin, or prompted)\n"
    "  mailbox add USER BOX         add a mailbox\n"
    "  mailboxes USER               list USER's mailboxes\n"
    "  import FILE                  add the users named in FILE (addresses or names, one a line)\n"
    "  ring                         each token range and its endpoints\n"
    "  version                      Cassandra's cluster name and Thrift API version\n"
    "  list USER [BOX]              messages in BOX (default inbox): TimeUUID and size\n"
    "  fetch USER BOX ID            print one stored message\n"
    "  gc [--min-age S] [--dry-run] remove message bodies no mailbox refers to (reads at ALL)\n";

/* fail - report ERROR for WHAT and return the matching exit status */
static int
fail(const char *what, GError *error)
{
    int code = EX_SOFTWARE;
    if (error->domain == STORE_ERROR) {
        switch (error->code) {
        case STORE_ERROR_TEMPORARY: code = EX_UNAVAILABLE; break;
        case STORE_ERROR_NOT_FOUND: code = EX_NOUSER; break;
        case STORE_ERROR_INVALID: code = EX_DATAERR; break;
        default: code = EX_SOFTWARE; break;
        }
    } else if (error->domain == CASS_ERROR) {
        code = error->code == CASS_ERROR_INVALID ? EX_DATAERR : EX_UNAVAILABLE;
    }
    fprintf(stderr, "cassmail-admin: %s: %s\n", what, error->message);
    if (code == EX_UNAVAILABLE)
        fprintf(stderr, "cassmail-admin: is Cassandra running and listed in [cassandra] endpoints?\n");
    g_error_free(error);
    return code;
}

/* user_from_line - the user name in one line of a user list: "pete", "Pete@example.com",
 * "<pete@example.com>"; NULL for blank lines and comments. A line of several words ("Pete
 * Smith") gives them all, which store_name_valid then refuses, rather than its first word. */
static char *
user_from_line(const char *line)
{
    g_autofree char *t = g_strstrip(g_strdup(line));
    if (!*t || *t == '#')
        return NULL;
    char *p = t + (*t == '<');
    char *end = p + strcspn(p, "@>");
    return g_ascii_strdown(p, end - p);
}

/* read_password - one line from stdin (without echo on a terminal); NULL at EOF */
static char *
read_password(gboolean prompt)
{
    struct termios old, quiet;
    gboolean tty = prompt && isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
    if (tty) {
        fprintf(stderr, "Password: ");
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    char buf[1024];
    char *got = fgets(buf, sizeof buf, stdin);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fprintf(stderr, "\n");
    }
    if (!got)
        return NULL;
    buf[strcspn(buf, "\r\n")] = '\0';
    char *pw = g_strdup(buf);
    OPENSSL_cleanse(buf, sizeof buf);
    return pw;
}

/* set_password - hash PW with ITERATIONS rounds and store it for USER */
static int
set_password(Store *store, const char *user, char *pw, int iterations)
{
    GError *error = NULL;
    if (!pw || !*pw) {
        fprintf(stderr, "cassmail-admin: empty password refused\n");
        g_free(pw);
        return EX_DATAERR;
    }
    char *hash = password_hash_iterations(pw, (guint)iterations, &error);
    OPENSSL_cleanse(pw, strlen(pw));
    g_free(pw);
    if (!hash)
        return fail("password", error);
    gboolean ok = store_password_set(store, user, hash, &error);
    g_free(hash);
    return ok ? EX_OK : fail(user, error);
}

/* need_user - EX_OK when USER exists, else a message and EX_NOUSER (or the store's error) */
static int
need_user(Store *store, const char *user)
{
    gboolean exists = FALSE;
    GError *error = NULL;
    if (!store_user_exists(store, user, &exists, &error))
        return fail(user, error);
    if (!exists) {
        fprintf(stderr, "cassmail-admin: no such user: %s\n", user);
        return EX_NOUSER;
    }
    return EX_OK;
}

/* What a command works with: the store, the configuration, its arguments and the options. */
typedef struct {
    Store *store;
    const CassmailConfig *cfg;
    char **args;
    int n;
    int rf;                  /* --rf; 0: [cassandra] replication_factor */
    gboolean password_stdin;
    int iterations;          /* --iterations, or [auth] password_iterations */
    int min_age;             /* --min-age; -1: [store] gc_min_age_s */
    gboolean dry_run;
} Admin;

static int
cmd_ring(Admin *a)
{
    CassClient *client = store_cass_client(a->store);
    g_autoptr(GPtrArray) ranges = g_ptr_array_new_with_free_func(cass_token_range_free);
    GError *error = NULL;
    if (!cass_describe_ring(client, a->cfg->keyspace, ranges, &error))
        return fail("ring", error);
    printf("%-42s %-42s %s\n", "start token (exclusive)", "end token (inclusive)", "endpoints");
    for (guint i = 0; i < ranges->len; i++) {
        CassTokenRange *r = g_ptr_array_index(ranges, i);
        g_autofree char *eps = g_strjoinv(",", r->endpoints);
        printf("%-42s %-42s %s\n", r->start_token, r->end_token, eps);
    }
    return EX_OK;
}

static int
cmd_version(Admin *a)
{
    CassClient *client = store_cass_client(a->store);
    g_autofree char *name = NULL, *version = NULL;
    GError *error = NULL;
    if (!cass_describe_cluster_name(client, &name, &error) ||
        !cass_describe_version(client, &version, &error))
        return fail("version", error);
    printf("cluster %s, Thrift API %s, endpoint %s\n", name, version, cass_client_endpoint(client));
    return EX_OK;
}

static int
cmd_list(Admin *a)
{
    Store *store = a->store;
    const char *user = a->args[0], *box = a->n == 2 ? a->args[1] : "inbox";
    int rc = need_user(store, user);
    if (rc != EX_OK)
        return rc;
    guint batch = (guint)a->cfg->batch_size;
    g_autoptr(GArray) page = g_array_new(FALSE, FALSE, sizeof(StoreIndexEntry));
    StoreMsgId last;
    gboolean have_last = FALSE;
    GError *error = NULL;
    for (;;) {
        g_array_set_size(page, 0);
        if (!store_index_page(store, user, box, have_last ? &last : NULL, batch, page, &error))
            return fail("list", error);
        for (guint i = 0; i < page->len; i++) {
            StoreIndexEntry *e = &g_array_index(page, StoreIndexEntry, i);
            char text[STORE_MSGID_TEXT_LEN];
            store_msgid_to_text(&e->id, text);
            printf("%s %" G_GUINT64_FORMAT "\n", text, e->size);
            last = e->id;
            have_last = TRUE;
        }
        if (page->len < batch)
            return EX_OK;
    }
}

static int
cmd_fetch(Admin *a)
{
    Store *store = a->store;
    const char *user = a->args[0], *box = a->args[1], *id_text = a->args[2];
    StoreMsgId id;
    if (!store_msgid_from_text(id_text, &id)) {
        fprintf(stderr, "cassmail-admin: not a TimeUUID: %s\n", id_text);
        return EX_DATAERR;
    }
    StoreReader *r = NULL;
    GError *error = NULL;
    if (!store_reader_open(store, user, box, &id, &r, &error))
        return fail(id_text, error);
    /* a part at a time: a message may be far larger than what a tool should hold */
    GBytes *chunk = NULL;
    int rc = EX_OK;
    while (rc == EX_OK && store_reader_next(r, &chunk, &error) && chunk) {
        gsize len;
        const void *data = g_bytes_get_data(chunk, &len);
        if (fwrite(data, 1, len, stdout) != len) {
            fprintf(stderr, "cassmail-admin: writing the message: %s\n", g_strerror(errno));
            rc = EX_IOERR;
        }
        g_bytes_unref(chunk);
    }
    store_reader_free(&r);
    if (error)
        return fail(id_text, error);
    if (rc == EX_OK && fflush(stdout) != 0) {
        fprintf(stderr, "cassmail-admin: writing the message: %s\n", g_strerror(errno));
        rc = EX_IOERR;
    }
    return rc;
}

/* cmd_gc - store_gc, and a report of what it found and did */
static int
cmd_gc(Admin *a)
{
    int min_age_s = a->min_age >= 0 ? a->min_age : a->cfg->gc_min_age_s;
    gboolean dry_run = a->dry_run;
    StoreGcReport r;
    GError *error = NULL;
    gint64 t0 = g_get_monotonic_time();
    if (!store_gc(a->store, min_age_s, dry_run, &r, &error)) {
        fprintf(stderr, "cassmail-admin: gc: nothing removed: the scan at consistency ALL did not "
                        "complete (is a replica down?)\n");
        return fail("gc", error);
    }
    printf("gc: %" G_GUINT64_FORMAT " bodies: %" G_GUINT64_FORMAT " younger than %d s left alone, %"
           G_GUINT64_FORMAT " referenced, %" G_GUINT64_FORMAT " orphans %s%s\n",
           r.bodies, r.young, min_age_s, r.referenced, dry_run ? r.orphans : r.removed,
           dry_run ? "found" : "removed", dry_run ? " (dry run: nothing removed)" : "");
    printf("gc: read at ALL: %" G_GUINT64_FORMAT " mailboxes, %" G_GUINT64_FORMAT
           " index entries; %.1f s\n", r.mailboxes, r.references,
           (double)(g_get_monotonic_time() - t0) / 1e6);
    return EX_OK;
}

static int
cmd_import(Admin *a)
{
    Store *store = a->store;
    const char *path = a->args[0];
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cassmail-admin: %s: %s\n", path, g_strerror(errno));
        return EX_NOINPUT;
    }
    char line[1024];
    guint added = 0, bad = 0, lineno = 0;
    int rc = EX_OK;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        g_autofree char *user = user_from_line(line);
        if (!user)
            continue;
        if (!store_name_valid(user)) {
            fprintf(stderr, "cassmail-admin: %s:%u: not a valid user name: %s\n", path, lineno, user);
            bad++;
            continue;
        }
        GError *error = NULL;
        if (!store_user_add(store, user, &error)) {
            rc = fail(user, error);
            break;
        }
        added++;
    }
    if (f != stdin)
        fclose(f);
    printf("%u users added, %u lines refused\n", added, bad);
    return rc != EX_OK ? rc : bad ? EX_DATAERR : EX_OK;
}


static int
cmd_schema(Admin *a)
{
    GError *error = NULL;
    if (!store_schema_create(a->store, a->rf > 0 ? a->rf : a->cfg->replication_factor, &error))
        return fail("schema", error);
    printf("keyspace %s ready (Users, Mailboxes, MailboxIndex, Bodies, Credentials; IMAP: ImapSeals, "
           "Flags, MessageMeta)\n",
           a->cfg->keyspace);
    return EX_OK;
}

static int
cmd_useradd(Admin *a)
{
    GError *error = NULL;
    const char *user = a->args[0];
    if (!store_name_valid(user)) {
        fprintf(stderr, "cassmail-admin: invalid user name \"%s\": use 1-64 of a-z 0-9 . _ + -\n", user);
        return EX_DATAERR;
    }
    if (!store_user_add(a->store, user, &error))
        return fail(user, error);
    return a->password_stdin ? set_password(a->store, user, read_password(FALSE), a->iterations)
                             : EX_OK;
}

static int
cmd_userdel(Admin *a)
{
    GError *error = NULL;
    int rc = need_user(a->store, a->args[0]);
    if (rc == EX_OK && !store_user_del(a->store, a->args[0], &error))
        rc = fail(a->args[0], error);
    return rc;
}

/* print_list - NAMES one a line, or ERROR (when set) for WHAT */
static int
print_list(GPtrArray *names, const char *what, GError *error)
{
    if (error)
        return fail(what, error);
    for (guint i = 0; i < names->len; i++)
        printf("%s\n", (char *)g_ptr_array_index(names, i));
    return EX_OK;
}

static int
cmd_users(Admin *a)
{
    GError *error = NULL;
    g_autoptr(GPtrArray) users = g_ptr_array_new_with_free_func(g_free);
    store_users_list(a->store, users, &error);
    return print_list(users, "users", error);
}

static int
cmd_passwd(Admin *a)
{
    int rc = need_user(a->store, a->args[0]);
    return rc == EX_OK ? set_password(a->store, a->args[0], read_password(TRUE), a->iterations)
                       : rc;
}

static int
cmd_mailbox(Admin *a)
{
    GError *error = NULL;
    if (strcmp(a->args[0], "add") != 0) {
        fprintf(stderr, "cassmail-admin: usage: mailbox add USER BOX\n");
        return EX_USAGE;
    }
    int rc = need_user(a->store, a->args[1]);
    if (rc == EX_OK && !store_mailbox_add(a->store, a->args[1], a->args[2], &error))
        rc = fail(a->args[2], error);
    return rc;
}

static int
cmd_mailboxes(Admin *a)
{
    GError *error = NULL;
    g_autoptr(GPtrArray) boxes = g_ptr_array_new_with_free_func(g_free);
    int rc = need_user(a->store, a->args[0]);
    if (rc != EX_OK)
        return rc;
    store_mailboxes_list(a->store, a->args[0], boxes, &error);
    return print_list(boxes, a->args[0], error);
}

/* The commands: name, how many arguments, the usage line shown for any other number (NULL:
 * "takes N arguments"), and what runs it. */
static const struct {
    const char *name;
    int min_args, max_args;
    const char *usage;
    int (*run)(Admin *a);
} commands[] = {
    {"schema", 0, 0, NULL, cmd_schema},
    {"useradd", 1, 1, NULL, cmd_useradd},
    {"userdel", 1, 1, NULL, cmd_userdel},
    {"users", 0, 0, NULL, cmd_users},
    {"passwd", 1, 1, NULL, cmd_passwd},
    {"mailbox", 3, 3, "mailbox add USER BOX", cmd_mailbox},
    {"mailboxes", 1, 1, NULL, cmd_mailboxes},
    {"import", 1, 1, NULL, cmd_import},
    {"ring", 0, 0, NULL, cmd_ring},
    {"version", 0, 0, NULL, cmd_version},
    {"list", 1, 2, "list USER [BOX]", cmd_list},
    {"fetch", 3, 3, NULL, cmd_fetch},
    {"gc", 0, 0, NULL, cmd_gc},
};

/* run_command - the command ARGV[0] with the arguments after it, or EX_USAGE and why not */
static int
run_command(Admin *a, int argc, char **argv)
{
    for (gsize i = 0; i < G_N_ELEMENTS(commands); i++) {
        if (strcmp(commands[i].name, argv[0]) != 0)
            continue;
        int n = argc - 1, k = commands[i].min_args;
        if (n < k || n > commands[i].max_args) {
            if (commands[i].usage)
                fprintf(stderr, "cassmail-admin: usage: %s\n", commands[i].usage);
            else
                fprintf(stderr, "cassmail-admin: %s takes %d argument%s (see --help)\n",
                        argv[0], k, k == 1 ? "" : "s");
            return EX_USAGE;
        }
        a->args = argv + 1;
        a->n = n;
        return commands[i].run(a);
    }
    fprintf(stderr, "cassmail-admin: unknown command \"%s\" (see --help)\n", argv[0]);
    return EX_USAGE;
}

int
main(int argc, char **argv)
{
    g_autofree char *config_path = NULL;
    Admin a = {.min_age = -1};   /* iterations 0: [auth] password_iterations */
    GOptionEntry entries[] = {
        {"config", 'c', 0, G_OPTION_ARG_FILENAME, &config_path, "configuration file", "FILE"},
        {"rf", 0, 0, G_OPTION_ARG_INT, &a.rf, "replication factor for schema (default: configuration)", "N"},
        {"password-stdin", 0, 0, G_OPTION_ARG_NONE, &a.password_stdin,
         "useradd: read the password from standard input", NULL},
        {"iterations", 0, 0, G_OPTION_ARG_INT, &a.iterations,
         "passwd, useradd: PBKDF2 iterations of the new hash (default: [auth] password_iterations, "
         G_STRINGIFY(PASSWORD_ITERATIONS) " unless set)",
         "N"},
        {"min-age", 0, 0, G_OPTION_ARG_INT, &a.min_age,
         "gc: leave bodies younger than S seconds alone (default [store] gc_min_age_s)", "S"},
        {"dry-run", 0, 0, G_OPTION_ARG_NONE, &a.dry_run, "gc: count, remove nothing", NULL},
        {NULL, 0, 0, 0, NULL, NULL, NULL},
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new(usage_text);
    g_option_context_set_summary(ctx, "Administer CassMail users, mailboxes and schema in Cassandra.");
    g_option_context_add_main_entries(ctx, entries, NULL);
    GError *error = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
        fprintf(stderr, "cassmail-admin: %s (see --help)\n", error->message);
        g_error_free(error);
        return EX_USAGE;
    }
    if (argc < 2) {
        g_autofree char *help = g_option_context_get_help(ctx, TRUE, NULL);
        fputs(help, stderr);
        return EX_USAGE;
    }
    /* checked here too, so that a bad value is refused before a password is asked for */
    if (a.iterations != 0 &&
        (a.iterations < PASSWORD_ITERATIONS_MIN || a.iterations > PASSWORD_ITERATIONS_MAX)) {
        fprintf(stderr, "cassmail-admin: --iterations must be from %d to %d (got %d)\n",
                PASSWORD_ITERATIONS_MIN, PASSWORD_ITERATIONS_MAX, a.iterations);
        return EX_USAGE;
    }
    if (!config_path && g_file_test(DEFAULT_CONFIG, G_FILE_TEST_EXISTS))
        config_path = g_strdup(DEFAULT_CONFIG);
    CassmailConfig *cfg = config_load(config_path, &error);
    if (!cfg) {
        fprintf(stderr, "cassmail-admin: %s\n", error->message);
        g_error_free(error);
        return EX_CONFIG;
    }
    password_set_cost((guint)cfg->password_iterations);
    if (a.iterations == 0)
        a.iterations = cfg->password_iterations;
    Store *store = adapter_store_open(cfg, &error);
    if (!store) {
        config_free(&cfg);
        return fail("store", error);
    }

    a.store = store;
    a.cfg = cfg;
    int rc = run_command(&a, argc - 1, argv + 1);
    store_free(&store);
    config_free(&cfg);
    return rc;
}
