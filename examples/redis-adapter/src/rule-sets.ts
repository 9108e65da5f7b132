/**
 * Rule sets this package ships: a policy includes them by name like the built-in ones
 * (`include: [redis-dangerous]`), over the attributes the adapter puts on each command
 * (`redis.command` lower-cased, `redis.dangerous`/`redis.admin`/`redis.scripting` from the
 * server's own ACL categories and flags, `redis.unknown` for a command the server's table lacks).
 */
import type { Rule, RuleSet } from '@gatehouse/core'

const deny = (id: string, reason: string, match: NonNullable<Rule['match']>): Rule => ({ id, effect: 'deny', actions: ['redis.command'], reason, match })

/** Server-side code: it runs inside Redis, out of the gateway's sight, touching any key. */
const SCRIPTING = ['eval', 'evalsha', 'eval_ro', 'evalsha_ro', 'fcall', 'fcall_ro', 'function', 'script']

export const RULE_SETS: Readonly<Record<string, RuleSet>> = Object.freeze({
  'redis-dangerous': {
    description: 'what takes a Redis server out of the gateway’s hands: wiping data, changing its configuration, loading modules, replicating to or migrating keys to another server, server-side scripts, and every command the server itself files as @dangerous or @admin, or does not know',
    rules: [
      deny('wipe', 'wipes every key', { 'redis.command': ['flushall', 'flushdb', 'swapdb'] }),
      deny('server', 'changes or stops the server', { 'redis.command': ['config', 'debug', 'shutdown', 'acl', 'module', 'save', 'bgsave', 'bgrewriteaof', 'failover', 'cluster'] }),
      deny('elsewhere', 'moves data to or from another server', { 'redis.command': ['migrate', 'replicaof', 'slaveof', 'sync', 'psync', 'restore', 'restore-asking'] }),
      deny('scripts', 'server-side scripts run out of the gateway’s sight', { 'redis.command': SCRIPTING }),
      deny('scripting', 'the server files this command under @scripting', { 'redis.scripting': true }),
      deny('dangerous', 'the server files this command under @dangerous', { 'redis.dangerous': true }),
      deny('admin', 'the server files this command under @admin', { 'redis.admin': true }),
      deny('unknown', 'the server’s command table does not describe this command', { 'redis.unknown': true }),
    ],
  },
  'redis-write': {
    description: 'every command the server flags as writing (for read-only callers)',
    rules: [deny('write', 'writes', { 'redis.write': true }), deny('unknown', 'the server’s command table does not describe this command', { 'redis.unknown': true })],
  },
})
