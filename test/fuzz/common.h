/*
 * common.h - what the protocol cores' fuzz harnesses share (common.c, linked into each of them):
 * a failure report, the password every harness's user has, and the mail store the POP3 and IMAP
 * harnesses start from.
 */
#ifndef CASSMAIL_FUZZ_COMMON_H
#define CASSMAIL_FUZZ_COMMON_H

#include <glib.h>

#include "store/store.h"
#include "util/proto.h"

/* fuzz_fail - report WHAT about the output OUT and abort (libFuzzer keeps the input) */
G_GNUC_NORETURN void fuzz_fail(const char *what, const GString *out);

/* fuzz_line_len - the octets of the line at DATA[POS..SIZE), its LF included; 0 when no LF ends
 * it (the adapter drops an unfinished line at EOF) */
gsize fuzz_line_len(const guint8 *data, gsize size, gsize pos);

/* fuzz_feed_line - the LEN octets at LINE (a line with its LF) to CORE's SESSION as the adapter's
 * reader hands them over: over the core's line_max, its terminator alone with TOO_LONG; with a
 * NUL, NUL. TRUE when the session closes after OUT. */
gboolean fuzz_feed_line(const ProtoCore *core, gpointer session, const guint8 *line, gsize len,
                        GString *out);

/* fuzz_options - for an input that starts with 0xff: its second octet makes the next 0..7
 * operations of STORE fail, its third is returned (the harness's configuration bits), and the
 * three are taken off *DATA; 0 for any other input */
guint8 fuzz_options(Store *store, const guint8 **data, gsize *size);

/* One session of a core driven by one input, the client's side of it, line by line. */
typedef struct {
    const ProtoCore *core;
    gpointer session;
    const guint8 *data;
    gsize size, pos;     /* the input, and how much of it the core has had */
    GString *out;        /* what the core wrote in the last step */
    gboolean closed;     /* the core closed the connection */
} FuzzRun;

/* fuzz_run_start - SESSION of CORE on the input DATA[0..SIZE); OUT holds its greeting */
void fuzz_run_start(FuzzRun *f, const ProtoCore *core, gpointer session, const guint8 *data,
                    gsize size);

/* fuzz_run_line - the input's next line fed, OUT holding the answer; FALSE when the session has
 * closed or no complete line is left */
gboolean fuzz_run_line(FuzzRun *f);

/* fuzz_run_tls - after the core said yes to STARTTLS/STLS: a line the client pipelined behind it
 * (when the next line's first octet is odd) must go unanswered; then the handshake, which fails
 * when the input's last octet has its high bit (FALSE: the adapter closes) */
gboolean fuzz_run_tls(FuzzRun *f);

/* fuzz_run_timeout - an input whose last octet is odd and that is not all fed ends in a timeout
 * instead of a dropped connection: TRUE when the core wrote its last words into OUT */
gboolean fuzz_run_timeout(FuzzRun *f);

/* fuzz_run_free - what fuzz_run_start made (not the session) */
void fuzz_run_free(FuzzRun *f);

/* fuzz_secret_hash - "secret" hashed at the lowest cost password_verify accepts, which is also
 * what every login costs in a harness */
const char *fuzz_secret_hash(void);

/* fuzz_deliver - LEN octets at MSG into USER's BOX (aborts when the store refuses) */
void fuzz_deliver(Store *store, const char *user, const char *box, const char *msg, gsize len);

/* fuzz_mail_store - a new in-memory store: user pete (password "secret") with INBOX[0..N) in
 * inbox, where a NULL stands for a message of 3000 octets whose every fifth line starts with a
 * dot, and one message in outbox; user anne, who has no password */
Store *fuzz_mail_store(const char *const *inbox, gsize n);

#endif
