/*
 * store_admin.h - what administration tools may reach below the store: the Cassandra client of a
 * Cassandra store (ring layout, server version). Protocol code never includes this.
 */
#ifndef CASSMAIL_STORE_ADMIN_H
#define CASSMAIL_STORE_ADMIN_H

#include "cass/cass.h"
#include "store/store.h"

/* store_cass_client - the client under a Cassandra store; NULL for any other backend */
CassClient *store_cass_client(Store *s);

#endif
