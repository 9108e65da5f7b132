/**
 * What calling a function does, beyond returning a value: the classes policy needs so that an
 * operator's "allow SELECT where sql.write is false" holds without knowing the built-in rule
 * sets.
 *
 * Enumerated from the catalog, not from memory: every function PostgreSQL 15's `pg_catalog`
 * marks volatile (`provolatile = 'v'`), and every function of the contrib extensions that reach
 * out of the database or run SQL from text (dblink, adminpack, lo, postgres_fdw, file_fdw,
 * tablefunc), is classified below as
 * having side effects, running SQL given as text, or only reading. A test
 * (test/adapters/postgres/function-catalog.test.ts) lists the volatile functions of the live
 * server's catalog and fails on any this table does not classify, so a new server version
 * cannot add one silently. Names are matched without schema: a user function that shadows one
 * of these is classified as the built-in (the conservative direction for side effects).
 */

/** Runs SQL it is given as text (or reads tables it names at run time): the gateway cannot see what. */
const RUNS_SQL: readonly string[] = [
  'query_to_xml', 'query_to_xmlschema', 'query_to_xml_and_xmlschema',
  'cursor_to_xml', 'cursor_to_xmlschema',
  'table_to_xml', 'table_to_xmlschema', 'table_to_xml_and_xmlschema',
  'schema_to_xml', 'schema_to_xmlschema', 'schema_to_xml_and_xmlschema',
  'database_to_xml', 'database_to_xmlschema', 'database_to_xml_and_xmlschema',
  'ts_stat', 'ts_rewrite',
  // tablefunc: crosstab and connectby run the query text (or read the table) they are given.
  'crosstab', 'crosstab2', 'crosstab3', 'crosstab4', 'connectby',
  // dblink: SQL on another server, over a connection the database opens.
  'dblink', 'dblink_exec', 'dblink_open', 'dblink_fetch', 'dblink_close', 'dblink_send_query', 'dblink_get_result',
  'dblink_connect', 'dblink_connect_u', 'dblink_disconnect', 'dblink_cancel_query', 'dblink_get_notify', 'dblink_is_busy',
  'dblink_error_message', 'dblink_get_connections', 'dblink_current_query', 'dblink_get_pkey',
  'dblink_build_sql_insert', 'dblink_build_sql_update', 'dblink_build_sql_delete',
]

/** Changes state beyond the statement's result: data, locks, sequences, files, other sessions, the server. */
const SIDE_EFFECTS: readonly string[] = [
  // sequences
  'nextval', 'setval',
  // large objects that create, change or remove, and server files they write
  'lo_creat', 'lo_create', 'lo_from_bytea', 'lo_import', 'lo_export', 'lo_put', 'lo_truncate', 'lo_truncate64', 'lo_unlink', 'lowrite',
  'lo_open', 'lo_close', 'lo_lseek', 'lo_lseek64', 'lo_manage',
  // locks held past the statement
  'pg_advisory_lock', 'pg_advisory_lock_shared', 'pg_advisory_unlock', 'pg_advisory_unlock_all', 'pg_advisory_unlock_shared',
  'pg_advisory_xact_lock', 'pg_advisory_xact_lock_shared', 'pg_try_advisory_lock', 'pg_try_advisory_lock_shared',
  'pg_try_advisory_xact_lock', 'pg_try_advisory_xact_lock_shared',
  // other sessions and the server
  'pg_notify', 'pg_cancel_backend', 'pg_terminate_backend', 'pg_reload_conf', 'pg_rotate_logfile', 'pg_rotate_logfile_old',
  'pg_promote', 'pg_switch_wal', 'pg_create_restore_point', 'pg_backup_start', 'pg_backup_stop', 'pg_wal_replay_pause', 'pg_wal_replay_resume',
  'pg_log_backend_memory_contexts', 'pg_logical_emit_message', 'pg_export_snapshot', 'pg_import_system_collations',
  'pg_stop_making_pinned_objects', 'pg_nextoid', 'pg_extension_config_dump',
  'pg_stat_reset', 'pg_stat_reset_shared', 'pg_stat_reset_single_table_counters', 'pg_stat_reset_single_function_counters',
  'pg_stat_reset_slru', 'pg_stat_reset_replication_slot', 'pg_stat_reset_subscription_stats', 'pg_stat_clear_snapshot', 'pg_stat_force_next_flush',
  // replication slots and origins
  'pg_create_physical_replication_slot', 'pg_create_logical_replication_slot', 'pg_copy_physical_replication_slot', 'pg_copy_logical_replication_slot',
  'pg_drop_replication_slot', 'pg_replication_slot_advance', 'pg_logical_slot_get_changes', 'pg_logical_slot_get_binary_changes',
  'pg_replication_origin_create', 'pg_replication_origin_drop', 'pg_replication_origin_advance', 'pg_replication_origin_session_setup',
  'pg_replication_origin_session_reset', 'pg_replication_origin_xact_setup', 'pg_replication_origin_xact_reset',
  // index maintenance
  'brin_summarize_new_values', 'brin_summarize_range', 'brin_desummarize_range', 'gin_clean_pending_list',
  // settings and session state
  'set_config', 'setseed',
  // binary upgrade support (superuser only, catalog surgery)
  'binary_upgrade_create_empty_extension', 'binary_upgrade_set_missing_value', 'binary_upgrade_set_next_array_pg_type_oid',
  'binary_upgrade_set_next_attribute_versions', 'binary_upgrade_set_next_heap_pg_class_oid', 'binary_upgrade_set_next_heap_relfilenode',
  'binary_upgrade_set_next_index_pg_class_oid', 'binary_upgrade_set_next_index_relfilenode', 'binary_upgrade_set_next_multirange_array_pg_type_oid',
  'binary_upgrade_set_next_multirange_pg_type_oid', 'binary_upgrade_set_next_pg_authid_oid', 'binary_upgrade_set_next_pg_enum_oid',
  'binary_upgrade_set_next_pg_tablespace_oid', 'binary_upgrade_set_next_pg_type_oid', 'binary_upgrade_set_next_toast_pg_class_oid',
  'binary_upgrade_set_next_toast_relfilenode', 'binary_upgrade_set_record_init_privs',
  // adminpack: server files
  'pg_file_write', 'pg_file_rename', 'pg_file_unlink', 'pg_file_sync',
  // postgres_fdw connection management
  'postgres_fdw_disconnect', 'postgres_fdw_disconnect_all',
]

/**
 * Volatile in the catalog (their result may change within a statement) but only read: time,
 * randomness, sizes, status, files and directories (reading files is judged by the rule sets'
 * file functions, not as a write). Listed so the catalog test can tell classified from missed.
 */
export const VOLATILE_READ_ONLY: readonly string[] = [
  'clock_timestamp', 'timeofday', 'random', 'gen_random_uuid', 'current_query', 'currval', 'lastval', 'currtid2',
  'pg_sleep', 'pg_sleep_for', 'pg_sleep_until',
  'loread', 'lo_get', 'lo_tell', 'lo_tell64',
  'pg_blocking_pids', 'pg_safe_snapshot_blocking_pids', 'pg_isolation_test_session_is_blocked', 'pg_lock_status',
  'pg_collation_actual_version', 'pg_database_collation_actual_version',
  'pg_control_checkpoint', 'pg_control_init', 'pg_control_recovery', 'pg_control_system',
  'pg_current_logfile', 'pg_current_wal_flush_lsn', 'pg_current_wal_insert_lsn', 'pg_current_wal_lsn',
  'pg_database_size', 'pg_indexes_size', 'pg_relation_size', 'pg_table_size', 'pg_tablespace_size', 'pg_total_relation_size',
  'pg_get_backend_memory_contexts', 'pg_get_multixact_members', 'pg_get_shmem_allocations', 'pg_get_wal_replay_pause_state', 'pg_get_wal_resource_managers',
  'pg_hba_file_rules', 'pg_ident_file_mappings', 'pg_show_all_file_settings',
  'pg_is_in_recovery', 'pg_is_wal_replay_paused', 'pg_jit_available', 'pg_last_committed_xact',
  'pg_last_wal_receive_lsn', 'pg_last_wal_replay_lsn', 'pg_last_xact_replay_timestamp',
  'pg_ls_archive_statusdir', 'pg_ls_dir', 'pg_ls_logdir', 'pg_ls_logicalmapdir', 'pg_ls_logicalsnapdir', 'pg_ls_replslotdir', 'pg_ls_tmpdir', 'pg_ls_waldir', 'pg_logdir_ls',
  'pg_read_file', 'pg_read_file_old', 'pg_read_binary_file', 'pg_stat_file',
  'pg_logical_slot_peek_changes', 'pg_logical_slot_peek_binary_changes',
  'pg_notification_queue_usage', 'pg_partition_ancestors', 'pg_partition_tree', 'pg_prepared_xact', 'pg_sequence_last_value',
  'pg_replication_origin_progress', 'pg_replication_origin_session_is_setup', 'pg_replication_origin_session_progress', 'pg_show_replication_origin_status',
  'pg_stat_have_stats', 'pg_stat_get_recovery_prefetch', 'pg_stat_get_xact_blocks_fetched', 'pg_stat_get_xact_blocks_hit',
  'pg_stat_get_xact_function_calls', 'pg_stat_get_xact_function_self_time', 'pg_stat_get_xact_function_total_time', 'pg_stat_get_xact_numscans',
  'pg_stat_get_xact_tuples_deleted', 'pg_stat_get_xact_tuples_fetched', 'pg_stat_get_xact_tuples_hot_updated', 'pg_stat_get_xact_tuples_inserted',
  'pg_stat_get_xact_tuples_returned', 'pg_stat_get_xact_tuples_updated',
  'pg_xact_commit_timestamp', 'pg_xact_commit_timestamp_origin', 'pg_xact_status', 'txid_status', 'postgres_fdw_get_connections', 'normal_rand',
  // access-method, language and tablesample support functions: called by the server, not by SQL that reads data
  'amvalidate', 'bernoulli', 'system', 'dsnowball_init', 'dsnowball_lexize', 'plpgsql_validator', 'plpgsql_call_handler', 'plpgsql_inline_handler',
  'dblink_fdw_validator', 'file_fdw_handler', 'file_fdw_validator', 'postgres_fdw_handler', 'postgres_fdw_validator',
  'brinhandler', 'bthandler', 'ginhandler', 'gisthandler', 'hashhandler', 'spghandler', 'heap_tableam_handler',
]

export interface FunctionClass {
  /** Changes state beyond its result (a write in the broad sense). */
  readonly sideEffects: boolean
  /** Runs SQL (or reads relations) given at run time: what it does cannot be judged from the text. */
  readonly runsSql: boolean
}

const CLASSES = new Map<string, FunctionClass>()
for (const n of SIDE_EFFECTS) CLASSES.set(n, { sideEffects: true, runsSql: false })
for (const n of RUNS_SQL) CLASSES.set(n, { sideEffects: true, runsSql: true })

/** The class of a function by its unqualified, lower-case name; undefined for a function without effects beyond its result. */
export function classifyFunction(name: string): FunctionClass | undefined {
  return CLASSES.get(name)
}

/** Every name this table classifies (for the catalog test). */
export function classifiedNames(): ReadonlySet<string> {
  return new Set([...SIDE_EFFECTS, ...RUNS_SQL, ...VOLATILE_READ_ONLY])
}
