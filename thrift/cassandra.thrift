/*
 * cassandra.thrift - Cassandra 0.7.0's RPC interface (API version 19.4.0), as CassMail speaks it.
 *
 * Written for CassMail from the wire facts of the 0.7.0 server: every struct, enum, exception and
 * method the server's jar compiles, with the same field ids, types, requiredness and defaults.
 * test/e2e/test_idl.py reflects over the cached cassandra-all-0.7.0.jar
 * (tools/idl/ThriftJarDump.java) and fails on any difference with this file.
 *
 * The server speaks the framed transport (15 MB frames by default) and the strict binary protocol
 * on port 9160. `make gen` turns this file into gen-c_glib/ (thrift --gen c_glib), which only
 * src/cass includes.
 *
 * Things that differ from later Cassandra versions and matter to a client:
 *  - Column.value and Column.timestamp are required; Deletion.timestamp is required;
 *  - KsDef.replication_factor (id 4) is required;
 *  - ColumnParent and ColumnPath field ids start at 3;
 *  - no counters, no CQL, no SchemaDisagreementException.
 */

namespace c_glib Cassandra

const string VERSION = "19.4.0"

/* --- data ------------------------------------------------------------------------------------ */

/* A named value with a client-supplied timestamp (microseconds by convention); ttl in seconds. */
struct Column {
   1: required binary name,
   2: required binary value,
   3: required i64 timestamp,
   4: optional i32 ttl,
}

struct SuperColumn {
   1: required binary name,
   2: required list<Column> columns,
}

/* Exactly one of the two is set. */
struct ColumnOrSuperColumn {
   1: optional Column column,
   2: optional SuperColumn super_column,
}

/* --- exceptions ------------------------------------------------------------------------------ */

/* The requested row or column does not exist. */
exception NotFoundException {
}

/* The request is malformed or refers to an unknown keyspace or column family. */
exception InvalidRequestException {
    1: required string why
}

/* Not enough replicas are alive to meet the requested consistency level. */
exception UnavailableException {
}

/* The coordinator did not hear from enough replicas within rpc_timeout_in_ms. */
exception TimedOutException {
}

exception AuthenticationException {
    1: required string why
}

exception AuthorizationException {
    1: required string why
}

/* --- requests -------------------------------------------------------------------------------- */

enum ConsistencyLevel {
    ONE = 1,
    QUORUM = 2,
    LOCAL_QUORUM = 3,
    EACH_QUORUM = 4,
    ALL = 5,
    ANY = 6,
}

struct ColumnParent {
    3: required string column_family,
    4: optional binary super_column,
}

struct ColumnPath {
    3: required string column_family,
    4: optional binary super_column,
    5: optional binary column,
}

/* A contiguous slice of a row, in comparator order; empty start/finish mean "from the first" and
 * "to the last". */
struct SliceRange {
    1: required binary start,
    2: required binary finish,
    3: required bool reversed=0,
    4: required i32 count=100,
}

/* Either a list of column names or a slice range. */
struct SlicePredicate {
    1: optional list<binary> column_names,
    2: optional SliceRange   slice_range,
}

enum IndexOperator {
    EQ,
    GTE,
    GT,
    LTE,
    LT
}

struct IndexExpression {
    1: required binary column_name,
    2: required IndexOperator op,
    3: required binary value,
}

struct IndexClause {
    1: required list<IndexExpression> expressions,
    2: required binary start_key,
    3: required i32 count=100,
}

/* Keys (order-preserving partitioners only) or tokens bound a range of rows. */
struct KeyRange {
    1: optional binary start_key,
    2: optional binary end_key,
    3: optional string start_token,
    4: optional string end_token,
    5: required i32 count=100
}

struct KeySlice {
    1: required binary key,
    2: required list<ColumnOrSuperColumn> columns,
}

struct KeyCount {
    1: required binary key,
    2: required i32 count
}

/* Deletes the row, a super column, or the columns named by the predicate, up to timestamp. */
struct Deletion {
    1: required i64 timestamp,
    2: optional binary super_column,
    3: optional SlicePredicate predicate,
}

/* One change inside batch_mutate: exactly one of the two is set. */
struct Mutation {
    1: optional ColumnOrSuperColumn column_or_supercolumn,
    2: optional Deletion deletion,
}

/* One range of the ring and the endpoints (addresses) that replicate it. */
struct TokenRange {
    1: required string start_token,
    2: required string end_token,
    3: required list<string> endpoints,
}

struct AuthenticationRequest {
    1: required map<string, string> credentials
}

/* --- schema ---------------------------------------------------------------------------------- */

enum IndexType {
    KEYS,
}

struct ColumnDef {
    1: required binary name,
    2: required string validation_class,
    3: optional IndexType index_type,
    4: optional string index_name
}

struct CfDef {
    1: required string keyspace,
    2: required string name,
    3: optional string column_type="Standard",
    5: optional string comparator_type="BytesType",
    6: optional string subcomparator_type,
    8: optional string comment,
    9: optional double row_cache_size=0,
    11: optional double key_cache_size=200000,
    12: optional double read_repair_chance=1.0,
    13: optional list<ColumnDef> column_metadata,
    14: optional i32 gc_grace_seconds,
    15: optional string default_validation_class,
    16: optional i32 id,
    17: optional i32 min_compaction_threshold,
    18: optional i32 max_compaction_threshold,
    19: optional i32 row_cache_save_period_in_seconds,
    20: optional i32 key_cache_save_period_in_seconds,
    21: optional i32 memtable_flush_after_mins,
    22: optional i32 memtable_throughput_in_mb,
    23: optional double memtable_operations_in_millions,
}

struct KsDef {
    1: required string name,
    2: required string strategy_class,
    3: optional map<string,string> strategy_options,
    4: required i32 replication_factor,
    5: required list<CfDef> cf_defs,
}

/* --- the service ----------------------------------------------------------------------------- */

service Cassandra {
  void login(1: required AuthenticationRequest auth_request)
       throws (1:AuthenticationException authnx, 2:AuthorizationException authzx),

  void set_keyspace(1: required string keyspace) throws (1:InvalidRequestException ire),

  /* reads */
  ColumnOrSuperColumn get(1:required binary key,
                          2:required ColumnPath column_path,
                          3:required ConsistencyLevel consistency_level=ConsistencyLevel.ONE)
                      throws (1:InvalidRequestException ire, 2:NotFoundException nfe,
                              3:UnavailableException ue, 4:TimedOutException te),

  list<ColumnOrSuperColumn> get_slice(1:required binary key,
                                      2:required ColumnParent column_parent,
                                      3:required SlicePredicate predicate,
                                      4:required ConsistencyLevel consistency_level=ConsistencyLevel.ONE)
                            throws (1:InvalidRequestException ire, 2:UnavailableException ue,
                                    3:TimedOutException te),

  i32 get_count(1:required binary key,
                2:required ColumnParent column_parent,
                3:required SlicePredicate predicate,
                4:required ConsistencyLevel consistency_level=ConsistencyLevel.ONE)
      throws (1:InvalidRequestException ire, 2:UnavailableException ue, 3:TimedOutException te),

  map<binary,list<ColumnOrSuperColumn>> multiget_slice(1:required list<binary> keys,
                                                       2:required ColumnParent column_parent,
                                                       3:required SlicePredicate predicate,
                                                       4:required ConsistencyLevel consistency_level=ConsistencyLevel.ONE)
                                        throws (1:InvalidRequestException ire,
                                                2:UnavailableException ue, 3:TimedOutException te),

  map<binary, i32> multiget_count(1:required list<binary> keys,
                                  2:required ColumnParent column_parent,
                                  3:required SlicePredicate predicate,
                                  4:required ConsistencyLevel consistency_level=ConsistencyLevel.ONE)
                   throws (1:InvalidRequestException ire, 2:UnavailableException ue,
                           3:TimedOutException te),

  list<KeySlice> get_range_slices(1:required ColumnParent column_parent,
                                  2:required SlicePredicate predicate,
                                  3:required KeyRange range,
                                  4:required ConsistencyLevel consistency_level=ConsistencyLevel.ONE)
                 throws (1:InvalidRequestException ire, 2:UnavailableException ue,
                         3:TimedOutException te),

  list<KeySlice> get_indexed_slices(1:required ColumnParent column_parent,
                                    2:required IndexClause index_clause,
                                    3:required SlicePredicate column_predicate,
                                    4:required ConsistencyLevel consistency_level=ConsistencyLevel.ONE)
                 throws (1:InvalidRequestException ire, 2:UnavailableException ue,
                         3:TimedOutException te),

  /* writes */
  void insert(1:required binary key,
              2:required ColumnParent column_parent,
              3:required Column column,
              4:required ConsistencyLevel consistency_level=ConsistencyLevel.ONE)
       throws (1:InvalidRequestException ire, 2:UnavailableException ue, 3:TimedOutException te),

  void remove(1:required binary key,
              2:required ColumnPath column_path,
              3:required i64 timestamp,
              4:ConsistencyLevel consistency_level=ConsistencyLevel.ONE)
       throws (1:InvalidRequestException ire, 2:UnavailableException ue, 3:TimedOutException te),

  /* row key -> column family -> mutations, applied per row atomically on each replica */
  void batch_mutate(1:required map<binary, map<string, list<Mutation>>> mutation_map,
                    2:required ConsistencyLevel consistency_level=ConsistencyLevel.ONE)
       throws (1:InvalidRequestException ire, 2:UnavailableException ue, 3:TimedOutException te),

  void truncate(1:required string cfname)
       throws (1: InvalidRequestException ire, 2: UnavailableException ue),

  /* meta */
  map<string, list<string>> describe_schema_versions() throws (1: InvalidRequestException ire),
  list<KsDef> describe_keyspaces() throws (1:InvalidRequestException ire),
  string describe_cluster_name(),
  string describe_version(),
  list<TokenRange> describe_ring(1:required string keyspace) throws (1:InvalidRequestException ire),
  string describe_partitioner(),
  string describe_snitch(),
  KsDef describe_keyspace(1:required string keyspace)
        throws (1:NotFoundException nfe, 2:InvalidRequestException ire),
  list<string> describe_splits(1:required string cfName,
                               2:required string start_token,
                               3:required string end_token,
                               4:required i32 keys_per_split),

  /* schema changes; each returns the new schema version */
  string system_add_column_family(1:required CfDef cf_def) throws (1:InvalidRequestException ire),
  string system_drop_column_family(1:required string column_family)
         throws (1:InvalidRequestException ire),
  string system_add_keyspace(1:required KsDef ks_def) throws (1:InvalidRequestException ire),
  string system_drop_keyspace(1:required string keyspace) throws (1:InvalidRequestException ire),
  string system_update_keyspace(1:required KsDef ks_def) throws (1:InvalidRequestException ire),
  string system_update_column_family(1:required CfDef cf_def) throws (1:InvalidRequestException ire),
}
