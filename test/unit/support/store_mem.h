/*
 * store_mem.h - an in-memory Store backend for the unit tests and fuzzers of the protocol cores.
 *
 * Test support only: it is never linked into a program and never used by end-to-end tests.
 * It behaves like the Cassandra backend as far as the cores can tell:
 *   - messages are stored under the caller's id (store_msgid_new) and a mailbox lists in
 *     Cassandra's TimeUUIDType order (arrival order within one process); the same id again
 *     replaces the message, as the same column written again would;
 *   - delivery to several targets stores one copy per distinct mailbox under one id, and needs
 *     no user to exist (the SMTP core checks recipients, not the store);
 *   - a writer keeps the whole message in memory and commits it like store_deliver (each write
 *     and the commit are operations store_mem_fail_next can fail); a reader
 *     hands it out in chunks (store_mem_set_chunk), a failure injected between chunks;
 *   - fetch of a missing message and password_get without a password give STORE_ERROR_NOT_FOUND;
 *     removing a missing message is not an error;
 *   - counters move like the real client's: each column read counts its name and value octets
 *     (an index entry 16 + 8, a fetched message 16 + its length), writes count inserted columns.
 * store_mem_fail_next() makes the next N operations fail with STORE_ERROR_TEMPORARY (SMTP 451,
 * POP3 -ERR [SYS/TEMP]) before they change anything.
 */
#ifndef CASSMAIL_TEST_STORE_MEM_H
#define CASSMAIL_TEST_STORE_MEM_H

#include "store/store.h"

/* store_mem_new - an empty store; free with store_free */
Store *store_mem_new(void);
/* store_mem_fail_next - the next N backend operations fail with STORE_ERROR_TEMPORARY */
void store_mem_fail_next(Store *s, int n);
/* store_mem_message_count - messages now in USER's MAILBOX (0 when there is none) */
guint store_mem_message_count(Store *s, const char *user, const char *mailbox);
/* store_mem_set_chunk - readers hand a message out CHUNK octets at a time (default
 * STORE_PART_SIZE, as the Cassandra store hands out parts) */
void store_mem_set_chunk(Store *s, gsize chunk);

/* IMAP's ImapSeals row is kept on REPLICAS simulated replicas (default 1): a seal write reaches a
 * random quorum of them, a slice merges a random quorum. PARTIAL_PERMILLE of the writes reach
 * one replica and fail (a coordinator that timed out), LOST_ACK_PERMILLE reach a quorum and fail
 * all the same (a lost acknowledgement). SEED makes the choices repeatable. Flags, index and
 * meta stay single copies (their levels are not what the seal protocol's safety rests on). */
void store_mem_set_replicas(Store *s, int replicas, guint32 seed, int partial_permille,
                            int lost_ack_permille);
/* store_mem_seal_copies - the fewest (*MIN) and most (*MAX) replicas an ImapSeals column of
 * USER:MAILBOX is on (0: none exists) */
void store_mem_seal_copies(Store *s, const char *user, const char *mailbox, int *min, int *max);
/* store_mem_set_hook - HOOK(DATA, OP) runs at the start of every backend operation (OP: its
 * function's name, e.g. "mem_seal_put"): a test's scheduler lets another thread run there (the
 * store itself is not thread-safe: the hook must let one thread at a time through), or a test
 * changes the store between two operations of a view (the hook may call the store: it is not
 * called again while it runs) */
typedef void (*StoreMemHook)(gpointer data, const char *op);
void store_mem_set_hook(Store *s, StoreMemHook hook, gpointer data);

#endif
