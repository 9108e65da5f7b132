/**
 * Built-in rule sets an operator includes by name (`include: [sql-outbound]`). Each is a list of
 * deny rules written in the same rule language as the config, over the facts the PostgreSQL
 * analyzer reports (adapters/postgres/src/sql/facts.ts). They are written the way an attacker
 * holding one read-only agent token looks for a way out of the database: every path to the
 * network, the server's files, other programs, more privilege or SQL the gateway cannot see.
 *
 * Function names are matched on `sql.functionNames` (lower-cased, without schema), so a call
 * written `"PG_READ_FILE"`, `pg_catalog.pg_read_file` or `U&"\0070g_read_file"` matches too.
 */
import type { Rule, RuleSet } from '@gatehouse/core'

const SQL = ['sql.query']

const deny = (id: string, reason: string, rule: Omit<Rule, 'id' | 'effect' | 'reason'>): Rule => ({ id, effect: 'deny', actions: SQL, reason, ...rule })

/** The Kubernetes verbs that write (adapters/kubernetes names each request `k8s.<verb>`). */
const K8S_WRITES = ['k8s.create', 'k8s.update', 'k8s.patch']
const kdeny = (id: string, reason: string, rule: Omit<Rule, 'id' | 'effect' | 'reason'>): Rule => ({ id, effect: 'deny', reason, ...rule })
const mdeny = (id: string, reason: string, match: NonNullable<Rule['match']>): Rule => ({ id, effect: 'deny', reason, actions: ['mongo.command'], match })

/**
 * Denies calls of these functions however they are written: as calls (`sql.functionNames`) and
 * in attribute notation, `('/etc/passwd'::text).pg_read_file` (`sql.attributeNames`).
 */
const denyFunctions = (id: string, reason: string, names: readonly string[]): Rule[] => [
  deny(id, reason, { match: { 'sql.functionNames': [...names] } }),
  deny(id, reason, { match: { 'sql.attributeNames': [...names] } }),
]

/** The dblink extension: connections to other servers, and SQL sent there as text. */
const DBLINK = [
  'dblink',
  'dblink_exec',
  'dblink_connect',
  'dblink_connect_u',
  'dblink_disconnect',
  'dblink_open',
  'dblink_fetch',
  'dblink_close',
  'dblink_send_query',
  'dblink_get_result',
  'dblink_is_busy',
  'dblink_cancel_query',
  'dblink_error_message',
  'dblink_get_connections',
  'dblink_get_notify',
  'dblink_get_pkey',
  'dblink_current_query',
  'dblink_build_sql_insert',
  'dblink_build_sql_update',
  'dblink_build_sql_delete',
]

const SERVER_FILE_FUNCTIONS = [
  'pg_read_file',
  'pg_read_file_old',
  'pg_read_binary_file',
  'pg_ls_dir',
  'pg_stat_file',
  'pg_ls_logdir',
  'pg_ls_waldir',
  'pg_ls_tmpdir',
  'pg_ls_archive_statusdir',
  'pg_ls_logicalsnapdir',
  'pg_ls_logicalmapdir',
  'pg_ls_replslotdir',
  'pg_current_logfile',
  // adminpack
  'pg_file_write',
  'pg_file_rename',
  'pg_file_unlink',
  'pg_file_sync',
  'pg_logdir_ls',
  'pg_file_read',
  'pg_file_length',
  // the functions behind the configuration-file views
  'pg_show_all_file_settings',
  'pg_hba_file_rules',
  'pg_ident_file_mappings',
]

/** Views that show the contents of the server's configuration files. */
const CONFIG_FILE_VIEWS = ['pg_file_settings', 'pg_hba_file_rules', 'pg_ident_file_mappings'].flatMap((v) => [v, `pg_catalog.${v}`])

export const RULE_SETS: Readonly<Record<string, RuleSet>> = {
  'sql-outbound': {
    description: "statements and functions that reach the network, the server's file system, or run programs",
    rules: [
      ...denyFunctions('dblink', 'dblink connects to another server', DBLINK),
      deny('foreign-data', 'foreign servers, user mappings, foreign tables and subscriptions connect to other servers', {
        match: {
          'sql.tags': [
            'CREATE SERVER',
            'ALTER SERVER',
            'CREATE FOREIGN DATA WRAPPER',
            'ALTER FOREIGN DATA WRAPPER',
            'CREATE USER MAPPING',
            'ALTER USER MAPPING',
            'CREATE FOREIGN TABLE',
            'IMPORT FOREIGN SCHEMA',
            'CREATE SUBSCRIPTION',
            'ALTER SUBSCRIPTION',
          ],
        },
      }),
      ...denyFunctions('postgres-fdw', 'postgres_fdw functions manage connections to other servers', ['postgres_fdw_get_connections', 'postgres_fdw_disconnect', 'postgres_fdw_disconnect_all', 'postgres_fdw_handler', 'postgres_fdw_validator']),
      deny('copy-program', 'COPY … PROGRAM runs a program on the database server', { match: { 'sql.copy.target': ['program'] } }),
      deny('copy-server-file', "COPY to or from a file reads or writes the database server's file system", { match: { 'sql.copy.target': ['file'] } }),
      ...denyFunctions('large-object-files', "lo_import and lo_export read and write the database server's file system", ['lo_import', 'lo_export']),
      ...denyFunctions('server-files', "file functions read, list or write the database server's file system", SERVER_FILE_FUNCTIONS),
      deny('config-files', "these views show the server's configuration files", { match: { 'sql.reads': CONFIG_FILE_VIEWS } }),
      deny('untrusted-code', 'code in an untrusted or compiled language can reach the network and run programs', {
        match: { 'sql.code': true },
        when: 'request.sql.code.exists(c, c.language.endsWith("u") || c.language in ["c", "internal"])',
      }),
    ],
  },
  'sql-privilege': {
    description: 'role and authorization changes, server configuration, extensions, grants, and functions that act on other sessions',
    rules: [
      deny('role-change', 'SET ROLE and SET SESSION AUTHORIZATION change whose privileges the session uses', { match: { 'sql.settings': ['role', 'session_authorization'] } }),
      deny('protected-settings', 'this setting turns off triggers, row security, activity tracking or server logging', {
        match: {
          'sql.settings': [
            'session_replication_role',
            'row_security',
            'log_statement',
            'log_min_duration_statement',
            'log_min_messages',
            'log_min_error_statement',
            'log_duration',
            'log_statement_sample_rate',
            'log_transaction_sample_rate',
            'track_activities',
            'track_counts',
            'track_functions',
          ],
        },
      }),
      deny('audit-settings', 'pgaudit settings change what the server audits', { match: { 'sql.settings': true }, when: 'request.sql.settings.exists(s, s.startsWith("pgaudit."))' }),
      deny('read-write-mode', 'the statement turns off read-only mode for the transaction or the session', { match: { 'sql.readWrite': true } }),
      deny('alter-system', 'ALTER SYSTEM changes the server configuration', { match: { 'sql.tags': ['ALTER SYSTEM'] } }),
      deny('extensions', 'extensions and languages load code into the server', { match: { 'sql.tags': ['CREATE EXTENSION', 'ALTER EXTENSION', 'CREATE LANGUAGE', 'ALTER LANGUAGE'] } }),
      deny('load', 'LOAD loads a shared library into the server', { match: { 'sql.kinds': ['LOAD'] } }),
      deny('grants', 'GRANT, REVOKE and default privileges change who may do what', { match: { 'sql.kinds': ['GRANT', 'REVOKE'] } }),
      deny('default-privileges', 'ALTER DEFAULT PRIVILEGES changes who may do what', { match: { 'sql.tags': ['ALTER DEFAULT PRIVILEGES'] } }),
      deny('roles', 'creating, changing or dropping roles and ownership', {
        match: { 'sql.tags': ['CREATE ROLE', 'ALTER ROLE', 'DROP ROLE', 'ALTER OWNER', 'REASSIGN OWNED', 'DROP OWNED', 'SECURITY LABEL'] },
      }),
      deny('security-definer', 'a SECURITY DEFINER function runs with its owner’s privileges', { match: { 'sql.securityDefiner': true } }),
      ...denyFunctions('server-control', 'these functions signal other sessions or control the server', [
        'pg_terminate_backend',
        'pg_cancel_backend',
        'pg_reload_conf',
        'pg_rotate_logfile',
        'pg_promote',
        'pg_switch_wal',
        'pg_create_restore_point',
        'pg_backup_start',
        'pg_backup_stop',
        'pg_start_backup',
        'pg_stop_backup',
        'pg_log_backend_memory_contexts',
        'pg_wal_replay_pause',
        'pg_wal_replay_resume',
        'pg_create_physical_replication_slot',
        'pg_create_logical_replication_slot',
        'pg_drop_replication_slot',
        'pg_copy_physical_replication_slot',
        'pg_copy_logical_replication_slot',
        'pg_replication_origin_create',
        'pg_replication_origin_drop',
        'pg_stat_reset',
        'pg_stat_reset_shared',
        'pg_stat_reset_single_table_counters',
        'pg_stat_reset_single_function_counters',
        'pg_stat_reset_slru',
        'pg_stat_reset_replication_slot',
        'pg_stat_statements_reset',
        'pg_stat_reset_subscription_stats',
        'pg_rotate_logfile_old',
        'pg_stop_making_pinned_objects',
        'pg_nextoid',
        'pg_import_system_collations',
        'pg_replication_slot_advance',
        'pg_logical_slot_get_changes',
        'pg_logical_slot_get_binary_changes',
        'pg_logical_slot_peek_changes',
        'pg_logical_slot_peek_binary_changes',
        'pg_replication_origin_advance',
        'pg_replication_origin_session_setup',
        'pg_replication_origin_session_reset',
        'pg_replication_origin_xact_setup',
        'pg_replication_origin_xact_reset',
      ]),
    ],
  },
  'sql-dynamic': {
    description: 'functions and code that execute SQL given as text, which the gateway cannot see before it runs',
    rules: [
      ...denyFunctions('text-to-sql', 'this function runs SQL (or reads a table) named in a string', [
        'query_to_xml',
        'query_to_xmlschema',
        'query_to_xml_and_xmlschema',
        'cursor_to_xml',
        'cursor_to_xmlschema',
        'table_to_xml',
        'table_to_xmlschema',
        'table_to_xml_and_xmlschema',
        'schema_to_xml',
        'schema_to_xmlschema',
        'schema_to_xml_and_xmlschema',
        'database_to_xml',
        'database_to_xmlschema',
        'database_to_xml_and_xmlschema',
        'ts_stat',
        'ts_rewrite',
        'crosstab',
        'crosstab2',
        'crosstab3',
        'crosstab4',
        'connectby',
        'dblink',
        'dblink_exec',
        'dblink_open',
        'dblink_send_query',
      ]),
      deny('dynamic-plpgsql', 'PL/pgSQL EXECUTE runs SQL built at run time', { match: { 'sql.dynamic': true } }),
    ],
  },
  'sql-secrets': {
    description: 'catalogs that hold password hashes, remote credentials, other sessions’ SQL, sampled column values or large-object contents',
    rules: [
      deny('catalog-secrets', 'this catalog holds password hashes, remote credentials, other sessions’ SQL or sampled column values', {
        match: {
          'sql.reads': ['pg_authid', 'pg_shadow', 'pg_user_mapping', 'pg_user_mappings', 'pg_statistic', 'pg_statistic_ext_data', 'pg_stats', 'pg_stats_ext', 'pg_stats_ext_exprs', 'pg_stat_activity', 'pg_stat_statements', 'pg_largeobject'].flatMap((v) => [v, `pg_catalog.${v}`]),
        },
      }),
      ...denyFunctions('session-activity', 'these functions show other sessions’ SQL or large-object contents', ['pg_stat_get_activity', 'pg_stat_get_backend_activity', 'pg_stat_statements', 'lo_get', 'loread']),
    ],
  },
  'sql-write': {
    description: 'anything that changes data, wherever it hides (CTEs, SELECT INTO, CREATE TABLE AS, COPY FROM, DO blocks, EXPLAIN ANALYZE)',
    rules: [
      ...denyFunctions('write-functions', 'this function changes data (sequences, large objects, indexes) or signals other sessions', [
        'nextval',
        'setval',
        'lo_create',
        'lo_creat',
        'lo_from_bytea',
        'lo_put',
        'lo_unlink',
        'lo_import',
        'lowrite',
        'lo_truncate',
        'lo_truncate64',
        'pg_logical_emit_message',
        'pg_notify',
        'brin_summarize_new_values',
        'brin_summarize_range',
        'brin_desummarize_range',
        'gin_clean_pending_list',
      ]),
      // After the named functions, so their more specific reason is the one reported. `sql.write`
      // also holds for every function the analysis classifies as having side effects.
      deny('writes', 'the statement changes data or state', { match: { 'sql.write': true } }),
      deny('two-phase', 'COMMIT PREPARED and ROLLBACK PREPARED finish other sessions’ transactions', { match: { 'sql.tags': ['PREPARE TRANSACTION', 'COMMIT PREPARED', 'ROLLBACK PREPARED'] } }),
      deny('row-locks', 'FOR UPDATE / FOR SHARE take row locks that block writers', { match: { 'sql.locking': true } }),
    ],
  },
  'sql-ddl': {
    description: 'statements that create, change or remove schema objects',
    rules: [deny('ddl', 'the statement changes the schema', { match: { 'sql.ddl': true } })],
  },

  // Kubernetes (adapters/kubernetes): the ways out of a namespace and onto a node.
  'k8s-exec': {
    description: 'commands run in containers: exec, attach, and debug containers added to a running pod',
    rules: [
      kdeny('exec', 'exec runs a command inside a container', { actions: ['k8s.exec'] }),
      kdeny('attach', 'attach joins the console of a running container', { actions: ['k8s.attach'] }),
      kdeny('ephemeral-containers', 'an ephemeral container (kubectl debug) runs a command inside a pod', { actions: K8S_WRITES, match: { 'k8s.resource': ['pods'], 'k8s.subresource': ['ephemeralcontainers'] } }),
    ],
  },
  'k8s-portforward': {
    description: 'network paths into the cluster through the API server: port-forward and the proxy subresources',
    rules: [
      kdeny('portforward', 'port-forward opens a tunnel to a pod', { actions: ['k8s.portforward'] }),
      kdeny('proxy', 'the proxy subresource reaches pods, services and nodes over the cluster network', { actions: ['k8s.proxy'] }),
    ],
  },
  'k8s-host-access': {
    description: 'workloads that reach the node: host namespaces, privileged mode, host paths and ports, added capabilities, privilege escalation',
    rules: [
      kdeny('host-network', 'the pod asks for the host network namespace', { actions: K8S_WRITES, match: { 'k8s.body.hostNetwork': true } }),
      kdeny('host-pid', 'the pod asks for the host PID namespace', { actions: K8S_WRITES, match: { 'k8s.body.hostPID': true } }),
      kdeny('host-ipc', 'the pod asks for the host IPC namespace', { actions: K8S_WRITES, match: { 'k8s.body.hostIPC': true } }),
      kdeny('privileged', 'a container asks for privileged mode', { actions: K8S_WRITES, match: { 'k8s.body.privileged': true } }),
      kdeny('host-path', 'the pod mounts a directory of the node (hostPath)', { actions: K8S_WRITES, match: { 'k8s.body.hostPath': true } }),
      kdeny('host-ports', 'a container binds a port of the node (hostPort)', { actions: K8S_WRITES, match: { 'k8s.body.hostPorts': true } }),
      kdeny('capabilities', 'a container adds Linux capabilities', { actions: K8S_WRITES, match: { 'k8s.body.capabilities': true } }),
      kdeny('privilege-escalation', 'a container allows privilege escalation', { actions: K8S_WRITES, match: { 'k8s.body.allowPrivilegeEscalation': true } }),
    ],
  },
  'k8s-escalation': {
    description: 'more privilege than the caller has: RBAC, service-account tokens, certificate signing, admission webhooks, impersonation-capable roles',
    rules: [
      kdeny('rbac', 'RBAC roles and bindings grant permissions', { actions: K8S_WRITES, match: { 'k8s.group': ['rbac.authorization.k8s.io'] } }),
      kdeny('service-account-tokens', 'a token request mints a credential of a service account', { actions: ['k8s.create'], match: { 'k8s.resource': ['serviceaccounts'], 'k8s.subresource': ['token'] } }),
      kdeny('certificates', 'certificate signing requests and their approval mint client certificates', { actions: K8S_WRITES, match: { 'k8s.group': ['certificates.k8s.io'] } }),
      kdeny('admission-webhooks', 'admission webhooks see and change every object the API server admits', { actions: K8S_WRITES, match: { 'k8s.group': ['admissionregistration.k8s.io'] } }),
      kdeny('nodes', 'changes to nodes (labels, taints) steer workloads onto them', { actions: K8S_WRITES, match: { 'k8s.resource': ['nodes'] } }),
    ],
  },

  // MongoDB (adapters/mongodb): writes, server-side JavaScript, administration, and reach into other collections.
  'mongo-write': {
    description: 'commands that change data or collections: insert, update, delete, findAndModify, $out and $merge, DDL',
    rules: [mdeny('write', 'the command writes', { 'mongo.write': true })],
  },
  'mongo-js': {
    description: 'server-side JavaScript: $where, $function, $accumulator, mapReduce, JavaScript code values',
    rules: [mdeny('js', 'the command runs JavaScript on the server', { 'mongo.js': true })],
  },
  'mongo-admin': {
    description: 'administration: users and roles, server parameters, shutdown, fsync, replication and sharding, killing operations, profiling; and commands the gateway does not know',
    rules: [
      mdeny('unknown', 'the gateway does not know this command (or a part of it), so cannot say what it touches', { 'mongo.unknown': true }),
      mdeny('admin', 'the command administers the server', { 'mongo.admin': true }),
    ],
  },
  'mongo-cross-collection': {
    description: 'one command that reaches collections besides the one it names: $lookup, $graphLookup, $unionWith, $out, $merge, views over other collections',
    rules: [mdeny('cross-collection', 'the command reaches another collection', { 'mongo.crossCollection': true })],
  },
}
