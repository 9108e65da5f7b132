/**
 * The kubernetes adapter reads a request the way the API server's RequestInfoFactory does —
 * verb, group, version, namespace, resource, name, subresource — and refuses what two readers
 * could read differently. The expected readings follow k8s.io/apiserver's requestinfo.go.
 */
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { decodeBody, parseRequest, redactSecrets } from '@gatehouse/adapter-kubernetes'

const read = (method: string, target: string) => {
  const r = parseRequest(method, target)
  if (!r.ok) throw new Error(`refused: ${r.reason}`)
  const { query: _q, ...rest } = r.request
  return { ...rest, target: r.target }
}
const refused = (method: string, target: string) => {
  const r = parseRequest(method, target)
  return r.ok ? undefined : r.status
}

describe('reading a request as the API server does', () => {
  it.each([
    ['GET', '/api/v1/namespaces/default/pods', { verb: 'list', namespace: 'default', resource: 'pods', group: '', version: 'v1' }],
    ['GET', '/api/v1/namespaces/default/pods/web-1', { verb: 'get', namespace: 'default', resource: 'pods', name: 'web-1' }],
    ['GET', '/api/v1/namespaces/default/pods?watch=1', { verb: 'watch', resource: 'pods' }],
    ['GET', '/api/v1/namespaces/default/pods?watch=', { verb: 'watch' }],
    ['GET', '/api/v1/namespaces/default/pods?watch=FALSE', { verb: 'list' }],
    ['GET', '/api/v1/namespaces/default/pods?watch=0', { verb: 'list' }],
    ['GET', '/api/v1/watch/namespaces/default/pods', { verb: 'watch', namespace: 'default', resource: 'pods' }],
    ['GET', '/api/v1/pods', { verb: 'list', resource: 'pods' }],
    ['DELETE', '/api/v1/namespaces/default/pods', { verb: 'deletecollection', resource: 'pods' }],
    ['DELETE', '/api/v1/namespaces/default/pods/web-1', { verb: 'delete', name: 'web-1' }],
    ['POST', '/api/v1/namespaces/default/pods', { verb: 'create', resource: 'pods' }],
    ['PUT', '/api/v1/namespaces/default/pods/web-1/status', { verb: 'update', subresource: 'status' }],
    ['PATCH', '/apis/apps/v1/namespaces/prod/deployments/api', { verb: 'patch', group: 'apps', version: 'v1', namespace: 'prod', resource: 'deployments', name: 'api' }],
    ['GET', '/api/v1/namespaces/default/pods/web-1/exec?command=sh&stdin=true', { verb: 'exec', subresource: 'exec', name: 'web-1' }],
    ['POST', '/api/v1/namespaces/default/pods/web-1/attach', { verb: 'attach', subresource: 'attach' }],
    ['POST', '/api/v1/namespaces/default/pods/web-1/portforward', { verb: 'portforward' }],
    ['GET', '/api/v1/namespaces/default/pods/web-1/log?follow=true', { verb: 'log', subresource: 'log' }],
    ['GET', '/api/v1/namespaces/default/services/web:80/proxy/admin/x', { verb: 'proxy', name: 'web:80', subresource: 'proxy', extra: 'admin/x' }],
    ['GET', '/api/v1/proxy/namespaces/default/pods/web-1/x', { verb: 'proxy', resource: 'pods', name: 'web-1', extra: 'x' }],
    // the namespace itself, and its status / finalize subresources
    ['GET', '/api/v1/namespaces/prod', { verb: 'get', resource: 'namespaces', name: 'prod', namespace: 'prod' }],
    ['PUT', '/api/v1/namespaces/prod/finalize', { verb: 'update', resource: 'namespaces', name: 'prod', subresource: 'finalize' }],
    ['GET', '/api/v1/namespaces', { verb: 'list', resource: 'namespaces' }],
    // a list narrowed to one name by field selector is a read of that name
    ['GET', '/api/v1/namespaces/default/secrets?fieldSelector=metadata.name%3Ddb', { verb: 'list', resource: 'secrets', name: 'db' }],
    // percent-encoded letters are read decoded, and forwarded in one canonical form
    ['GET', '/api/v1/namespaces/default/%73ecrets/db', { resource: 'secrets', name: 'db', target: '/api/v1/namespaces/default/secrets/db' }],
  ])('%s %s', (method, target, expected) => {
    expect(read(method, target)).toMatchObject(expected)
  })

  it.each([
    ['/version', 'get'],
    ['/api', 'get'],
    ['/api/v1', 'get'],
    ['/apis', 'get'],
    ['/apis/apps', 'get'],
    ['/apis/apps/v1', 'get'],
    ['/openapi/v3', 'get'],
  ])('%s is not a resource request; it is discovery', (target, verb) => {
    expect(read('GET', target)).toMatchObject({ resourceRequest: false, discovery: true, verb })
  })

  it.each([['/logs/kube-apiserver.log'], ['/metrics'], ['/debug/pprof/profile'], ['/debug/api_priority_and_fairness/dump_requests'], ['/healthz/etcd'], ['/openapi/v2x']])('%s is not discovery', (target) => {
    expect(read('GET', target)).toMatchObject({ resourceRequest: false, discovery: false })
  })

  it.each([
    ['an encoded slash', '/api/v1/namespaces/default/pods%2Fweb-1/exec'],
    ['a lower-case encoded slash', '/api/v1/namespaces/default%2fsecrets/x'],
    ['a dot-dot segment', '/api/v1/namespaces/default/pods/../secrets/x'],
    ['an encoded dot-dot', '/api/v1/namespaces/default/pods/%2e%2e/secrets/x'],
    ['a dot segment', '/api/v1/namespaces/./default/pods'],
    ['an empty segment', '/api/v1//namespaces/default/pods'],
    ['a trailing slash', '/api/v1/namespaces/default/pods/'],
    ['a bad escape', '/api/v1/namespaces/default/pods/%zz'],
    ['invalid UTF-8', '/api/v1/namespaces/default/pods/%ff'],
    ['an encoded NUL', '/api/v1/namespaces/default/pods/a%00b'],
    ['a backslash', '/api/v1/namespaces/default/pods/a\\b'],
    ['a semicolon in the query', '/api/v1/namespaces/default/pods?watch=false;watch=true'],
    ['a parameter given twice', '/api/v1/namespaces/default/pods?watch=false&watch=true'],
    ['an encoded parameter name given twice', '/api/v1/namespaces/default/pods?watch=false&%77atch=true'],
    ['a relative target', 'api/v1/pods'],
    ['an absolute URL', 'https://evil/api/v1/pods'],
    ['a fragment', '/api/v1/pods#x'],
  ])('refuses %s', (_what, target) => {
    expect(refused('GET', target)).toBe(400)
  })

  it('refuses methods the API does not use', () => {
    expect(refused('OPTIONS', '/api/v1/pods')).toBe(405)
    expect(refused('CONNECT', '/api/v1/pods')).toBe(405)
  })

  it('forwards booleans as it read them, and repeated exec commands in order', () => {
    const r = parseRequest('GET', '/api/v1/namespaces/d/pods/p/exec?command=sh&command=-c&command=id%20-u&stdin=&tty=0&stdout=yes')
    expect(r.ok && r.target).toBe('/api/v1/namespaces/d/pods/p/exec?command=sh&command=-c&command=id%20-u&stdin=true&tty=false&stdout=true')
  })

  it('property: whatever it accepts, the target it forwards reads back the same', () => {
    const segment = fc.stringMatching(/^[a-z0-9%:.@_~-]{1,12}$/)
    fc.assert(
      fc.property(fc.constantFrom('GET', 'POST', 'DELETE', 'PATCH'), fc.array(segment, { minLength: 1, maxLength: 8 }), fc.array(fc.tuple(fc.constantFrom('watch', 'limit', 'dryRun', 'fieldSelector', 'x%26y', 'a+b'), segment), { maxLength: 4 }), (method, segs, params) => {
        const target = `/${segs.join('/')}${params.length ? `?${params.map(([k, v]) => `${k}=${v}`).join('&')}` : ''}`
        const first = parseRequest(method, target)
        if (!first.ok) return
        const again = parseRequest(method, first.target)
        expect(again.ok).toBe(true)
        if (!again.ok) return
        expect(again.target).toBe(first.target)
        expect(again.request).toEqual(first.request)
      }),
      { numRuns: 2000 },
    )
  })
})

describe('write bodies', () => {
  const json = (o: unknown) => Buffer.from(JSON.stringify(o))
  it('finds host access and privilege anywhere in a pod, a template, or a patch', () => {
    const deployment = { kind: 'Deployment', apiVersion: 'apps/v1', metadata: { name: 'd' }, spec: { template: { spec: { hostNetwork: true, volumes: [{ name: 'root', hostPath: { path: '/' } }], containers: [{ name: 'c', securityContext: { capabilities: { add: ['SYS_ADMIN'] } }, ports: [{ hostPort: 22 }] }] } } } }
    const d = decodeBody('application/json', json(deployment))
    expect(d).toMatchObject({ ok: true, facts: { kind: 'Deployment', hostNetwork: true, hostPath: true, hostPorts: true, capabilities: ['SYS_ADMIN'], privileged: false } })
    const patch = decodeBody('application/json-patch+json', json([{ op: 'add', path: '/spec/template/spec/hostPID', value: true }, { op: 'replace', path: '/spec/containers/0/securityContext/privileged', value: true }]))
    expect(patch).toMatchObject({ ok: true, facts: { patchType: 'json', hostPID: true, privileged: true } })
    const apply = decodeBody('application/apply-patch+yaml', Buffer.from('apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  hostIPC: true\n  containers: [{name: c, image: x}]\n'))
    expect(apply).toMatchObject({ ok: true, facts: { patchType: 'apply', kind: 'Pod', hostIPC: true } })
  })

  it.each([
    ['a key twice in JSON (the server keeps one, the gateway does not guess which)', 'application/json', '{"spec":{"hostNetwork":false,"hostNetwork":true}}', 400],
    ['a key twice in YAML', 'application/yaml', 'spec:\n  hostNetwork: false\n  hostNetwork: true\n', 400],
    ['a YAML alias', 'application/yaml', 'a: &x {hostNetwork: true}\nspec: *x\n', 400],
    ['protobuf', 'application/vnd.kubernetes.protobuf', 'k8s\x00', 415],
    ['an unknown content type', 'text/plain', 'x', 415],
    ['bytes that are not UTF-8', 'application/json', '\xff\xfe', 400],
    ['broken JSON', 'application/json', '{"a":', 400],
  ])('refuses %s', (_what, type, body, status) => {
    expect(decodeBody(type, Buffer.from(body, 'latin1'))).toMatchObject({ ok: false, status })
  })

  it.each([
    ['JSON patch copy (a value from elsewhere lands where it is not judged)', 'application/json-patch+json', '[{"op":"copy","from":"/metadata/annotations/x","path":"/spec/hostNetwork"}]'],
    ['JSON patch move', 'application/json-patch+json', '[{"op":"move","from":"/metadata/labels/x","path":"/spec/template/spec/hostPID"}]'],
    ['JSON patch test on data (an oracle for secret values)', 'application/json-patch+json', '[{"op":"test","path":"/data/password","value":"aHVudGVyMg=="}]'],
    ['a !!binary key hiding hostNetwork', 'application/yaml', 'spec: {!!binary aG9zdE5ldHdvcms=: true}\n'],
    ['an explicit tag', 'application/yaml', 'spec: {hostNetwork: !!bool true}\n'],
    ['a non-string key', 'application/yaml', 'spec: {[a]: 1}\n'],
  ])('refuses %s', (_what, type, body) => {
    expect(decodeBody(type, Buffer.from(body))).toMatchObject({ ok: false, status: 400 })
  })

  it('YAML goes on as the JSON that was judged; JSON sent as YAML is read as JSON, large YAML is refused', () => {
    const d = decodeBody('application/yaml', Buffer.from('metadata: {name: p}\nspec:\n  hostNetwork: true\n'))
    expect(d).toMatchObject({ ok: true, facts: { hostNetwork: true } })
    expect(d.ok && d.forward?.toString()).toBe('{"metadata":{"name":"p"},"spec":{"hostNetwork":true}}')
    const big = JSON.stringify({ metadata: { name: 'crd' }, spec: { pad: 'x'.repeat(1024 * 1024) } })
    expect(decodeBody('application/apply-patch+yaml', Buffer.from(big))).toMatchObject({ ok: true, facts: { patchType: 'apply' } })
    expect(decodeBody('application/yaml', Buffer.from(`a: 1\npad: ${'x'.repeat(1100 * 1024)}\n`))).toMatchObject({ ok: false, status: 413 })
  })

  it('a JSON patch adding one capability or removing allowPrivilegeEscalation is seen', () => {
    expect(decodeBody('application/json-patch+json', Buffer.from('[{"op":"add","path":"/spec/containers/0/securityContext/capabilities/add/-","value":"SYS_ADMIN"}]'))).toMatchObject({ ok: true, facts: { capabilities: ['SYS_ADMIN'] } })
    expect(decodeBody('application/json-patch+json', Buffer.from('[{"op":"remove","path":"/spec/containers/0/securityContext/allowPrivilegeEscalation"}]'))).toMatchObject({ ok: true, facts: { allowPrivilegeEscalation: true } })
    expect(decodeBody('application/merge-patch+json', Buffer.from('{"spec":{"containers":[{"name":"c","securityContext":{"allowPrivilegeEscalation":null}}]}}'))).toMatchObject({ ok: true, facts: { allowPrivilegeEscalation: true } })
  })

  it('a key escaped differently is still the same key', () => {
    expect(decodeBody('application/json', Buffer.from('{"spec":{"hostNetwork":false,"host\\u004eetwork":true}}'))).toMatchObject({ ok: false, status: 400 })
  })
})

describe('secret redaction', () => {
  it('replaces every data and stringData value and the last-applied annotation, and keeps the keys', () => {
    const found = new Set<string>()
    const list = { kind: 'SecretList', items: [{ metadata: { name: 'a', annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{"data":{"k":"c2VjcmV0"}}' } }, data: { k: 'c2VjcmV0' }, stringData: { s: 'plain' } }] }
    const out = redactSecrets(Buffer.from(JSON.stringify(list)), found).toString()
    expect(out).not.toContain('c2VjcmV0')
    expect(out).not.toContain('plain')
    expect(JSON.parse(out)).toMatchObject({ items: [{ data: { k: 'REDACTED' }, stringData: { s: 'REDACTED' } }] })
    expect([...found].sort()).toEqual(['annotations.last-applied-configuration', 'data.k', 'stringData.s'])
  })

  it('a response it cannot read is withheld, not passed on', () => {
    const out = redactSecrets(Buffer.from('k8s\x00protobuf c2VjcmV0'), new Set())
    expect(out.toString()).not.toContain('c2VjcmV0')
    expect(JSON.parse(out.toString())).toMatchObject({ kind: 'Status', code: 502 })
  })
})
