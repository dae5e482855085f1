/*
 * store_admin.h - what administration tools may reach below the store: the schema, the Cassandra
 * client of a Cassandra store (ring layout, server version) and garbage collection. Protocol
 * code never includes this.
 */
#ifndef CASSMAIL_STORE_ADMIN_H
#define CASSMAIL_STORE_ADMIN_H

#include "cass/cass.h"
#include "store/store.h"

/* store_cass_client - the client under a Cassandra store; NULL for any other backend */
CassClient *store_cass_client(Store *s);

/* store_schema_create - create keyspace and column families when missing, and bring the
 * settings of existing ones up to date (idempotent) */
gboolean store_schema_create(Store *s, int replication_factor, GError **error);

/* What store_gc found and did. */
typedef struct {
    guint64 bodies;          /* bodies seen (Bodies rows) */
    guint64 young;           /* ...left alone: younger than the minimum age */
    guint64 referenced;      /* ...kept: a mailbox refers to them */
    guint64 orphans;         /* ...no mailbox refers to them: removed (or would be, dry run) */
    guint64 removed;         /* bodies removed */
    guint64 mailboxes;       /* mailbox index rows read */
    guint64 references;      /* index entries read */
} StoreGcReport;

/* store_gc - remove the bodies no mailbox refers to
 *
 * Reads every body (Bodies) and every mailbox's index (MailboxIndex) at consistency ALL — a
 * stale replica read at ONE could miss the reference another mailbox holds, and the body would be
 * gone for good — and removes the bodies older than MIN_AGE_S seconds that nothing refers to:
 * the parts of sessions that died or were refused, and bodies whose last reference was
 * deleted. Younger bodies may belong to deliveries still in flight (or to references still
 * travelling as hints) and are left alone. Nothing is removed unless both scans completed: when
 * ALL cannot be had (a replica down) the error says so and nothing changed. DRY_RUN only
 * counts. */
gboolean store_gc(Store *s, int min_age_s, gboolean dry_run, StoreGcReport *report,
                  GError **error);

#endif
