/**
 * The kubernetes adapter reads a request the way the API server's RequestInfoFactory does —
 * verb, group, version, namespace, resource, name, subresource — and refuses what two readers
 * could read differently. The expected readings follow k8s.io/apiserver's requestinfo.go.
 */
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { decodeBody, needsYamlReader, parseRequest, redactSecrets, SecretRedactor } from '@gatehouse/adapter-kubernetes'

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

  it.each([
    // `+` is a plus in a path and a space in a query (Go's PathUnescape and QueryUnescape)
    ['GET', '/api/v1/namespaces/default/configmaps/a+b?labelSelector=app+in+(x)', { name: 'a+b' }, (q: ReadonlyMap<string, readonly string[]>) => expect(q.get('labelSelector')).toEqual(['app in (x)'])],
    // a bare parameter is an empty value: for a boolean, true
    ['GET', '/api/v1/namespaces/default/pods?watch&&limit=5', { verb: 'watch' }, (q: ReadonlyMap<string, readonly string[]>) => expect(q.get('limit')).toEqual(['5'])],
    // a selector that excludes a name, or names something that is not a name, narrows nothing
    ['GET', '/api/v1/namespaces/default/secrets?fieldSelector=metadata.name!%3Ddb', { verb: 'list' }, undefined],
    ['GET', '/api/v1/namespaces/default/secrets?fieldSelector=metadata.name%3DDB_X', { verb: 'list' }, undefined],
    ['GET', '/api/v1/namespaces/default/secrets?fieldSelector=type%3DOpaque,metadata.name%3D%3Ddb', { verb: 'list', name: 'db' }, undefined],
    ['GET', '/api/v1/namespaces/default/secrets?fieldSelector=xmetadata.name%3Ddb', { verb: 'list' }, undefined],
    ['HEAD', '/apis/apps/v1', { verb: 'head', discovery: true }, undefined],
    ['GET', '/openapi/v3/apis/apps/v1', { discovery: true }, undefined],
    ['POST', '/apis', { discovery: false, resourceRequest: false }, undefined],
    ['GET', '/apis/apps/v1/deployments', { discovery: false, resourceRequest: true, verb: 'list' }, undefined],
    ['GET', '/api/v1/namespaces/kube-system/status', { resource: 'namespaces', name: 'kube-system', subresource: 'status' }, undefined],
  ])('%s %s reads as the API server reads it', (method, target, expected, check) => {
    const r = parseRequest(method, target)
    expect(r.ok).toBe(true)
    if (!r.ok) return
    expect(r.request).toMatchObject(expected)
    if (!('name' in expected)) expect(r.request.name).toBeUndefined()
    check?.(r.request.query)
  })

  it.each([
    ['a path over 8,192 characters', `/api/v1/namespaces/default/pods/${'a'.repeat(8200)}`, 414],
    ['a control character in a parameter name', '/api/v1/pods?wat%01ch=true', 400],
    ['a bad escape in a parameter', '/api/v1/pods?labelSelector=%4', 400],
    ['a lone special verb', '/api/v1/watch', 400],
    ['a space', '/api/v1/pods /x', 400],
  ])('refuses %s', (_what, target, status) => {
    expect(refused('GET', target)).toBe(status)
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

  it('plainly off is off: false, null, "false" and port 0 ask for nothing', () => {
    const pod = { kind: 'Pod', apiVersion: 'v1', spec: { hostNetwork: false, hostPID: null, hostIPC: 'false', volumes: [{ name: 'v', hostPath: null }], containers: [{ name: 'c', ports: [{ containerPort: 80, hostPort: 0 }], securityContext: { privileged: false, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } } }] } }
    expect(decodeBody('application/json', Buffer.from(JSON.stringify(pod)))).toEqual({ ok: true, facts: { kind: 'Pod', apiVersion: 'v1', hostNetwork: false, hostPID: false, hostIPC: false, privileged: false, hostPath: false, hostPorts: false, allowPrivilegeEscalation: false, capabilities: [] } })
    expect(decodeBody('application/json', Buffer.from('{"spec":{"containers":[{"securityContext":{"capabilities":{"add":["SYS_PTRACE","NET_ADMIN"]}}}]}}'))).toMatchObject({ ok: true, facts: { capabilities: ['NET_ADMIN', 'SYS_PTRACE'] } })
    // a JSON patch path escapes / as ~1: the key is still the key
    expect(decodeBody('application/json-patch+json', Buffer.from('[{"op":"add","path":"/metadata/annotations/a~1b","value":"x"},{"op":"replace","path":"/spec/hostNetwork","value":true}]'))).toMatchObject({ ok: true, facts: { hostNetwork: true } })
  })

  it('the same key in different objects is no duplicate; escaped quotes do not confuse the scan', () => {
    for (const body of ['[{"a":1},{"a":2}]', '{"a":{"b":1},"b":2}', '{"a":[1,{"a":2}],"b":{"a":3}}', '{"x":"a\\"b","a":"\\"a\\"","y":{"x":1}}', '{"a":"}","b":"{","c":"]"}']) {
      expect(decodeBody('application/merge-patch+json', Buffer.from(body)), body).toMatchObject({ ok: true })
    }
    expect(decodeBody('application/merge-patch+json', Buffer.from('{"a":"}","a":1}'))).toMatchObject({ ok: false, status: 400 })
    expect(decodeBody('application/merge-patch+json', Buffer.from('[{"a":1,"b":[{"c":1}],"a":2}]'))).toMatchObject({ ok: false, status: 400 })
  })

  it('test against other paths is judged, not refused; a key that is a number in YAML is refused; YAML that is not UTF-8 is refused', () => {
    expect(decodeBody('application/json-patch+json', Buffer.from('[{"op":"test","path":"/metadata/name","value":"x"},{"op":"test","path":"/database","value":1}]'))).toMatchObject({ ok: true })
    expect(decodeBody('application/json-patch+json', Buffer.from('[{"op":"test","path":"/stringData","value":{}}]'))).toMatchObject({ ok: false, status: 400 })
    expect(decodeBody('application/yaml', Buffer.from('spec:\n  1: x\n'))).toMatchObject({ ok: false, status: 400 })
    expect(decodeBody('application/yaml', Buffer.from('a: 1\nb: [\n'))).toMatchObject({ ok: false, status: 400 })
    expect(decodeBody('application/yaml', Buffer.concat([Buffer.from('a: '), Buffer.from([0xff]), Buffer.from('\n')]))).toMatchObject({ ok: false, status: 400, reason: 'the request body is not UTF-8' })
    expect(decodeBody('application/json', Buffer.from('{"spec":{"x":1}}'))).toEqual({ ok: true, facts: expect.not.objectContaining({ kind: expect.anything() }) })
  })

  it('which bodies need the YAML reader (a worker thread)', () => {
    expect(needsYamlReader('application/yaml', Buffer.from('a: 1\n'))).toBe(true)
    expect(needsYamlReader('application/apply-patch+yaml; charset=utf-8', Buffer.from('  {"a": 1}'))).toBe(false)
    expect(needsYamlReader('application/apply-patch+yaml', Buffer.from('{a: 1}'))).toBe(true)
    expect(needsYamlReader('application/json', Buffer.from('a: 1'))).toBe(false)
    expect(needsYamlReader(undefined, Buffer.from('a: 1'))).toBe(false)
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

  it('a Secret whose data is not an object still has it replaced; objects without metadata are left alone; empty answers pass', () => {
    const found = new Set<string>()
    const out = JSON.parse(redactSecrets(Buffer.from(JSON.stringify({ items: [{ metadata: { name: 'odd' }, data: 'c2VjcmV0', stringData: ['x'] }, { data: { k: 'v' } }, { metadata: 'x', data: { k: 'v' } }] })), found).toString())
    expect(out.items[0]).toMatchObject({ data: 'REDACTED', stringData: 'REDACTED' })
    expect(out.items[1]).toEqual({ data: { k: 'v' } })
    expect(out.items[2]).toEqual({ metadata: 'x', data: { k: 'v' } })
    expect([...found].sort()).toEqual(['data', 'stringData'])
    expect(redactSecrets(Buffer.alloc(0), new Set()).length).toBe(0)
  })

  it('a watch of secrets is redacted event by event, however the stream is cut into chunks', () => {
    const events = [
      { type: 'ADDED', object: { kind: 'Secret', metadata: { name: 'a' }, data: { k: 'c2VjcmV0LWE=' } } },
      { type: 'MODIFIED', object: { kind: 'Secret', metadata: { name: 'b', annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{"data":{"k":"c2VjcmV0LWI="}}' } }, stringData: { p: 'plain-b' } } },
    ]
    const stream = Buffer.from(events.map((e) => JSON.stringify(e)).join('\n') + '\n')
    for (const size of [1, 2, 3, 7, 64, stream.length]) {
      const found = new Set<string>()
      const r = new SecretRedactor(found)
      const parts: Buffer[] = []
      for (let i = 0; i < stream.length; i += size) parts.push(r.push(stream.subarray(i, i + size)))
      parts.push(r.end())
      const text = Buffer.concat(parts).toString()
      expect(text, `chunks of ${size}`).not.toMatch(/c2VjcmV0|plain-b/)
      expect(text.trim().split('\n').map((l) => JSON.parse(l) as { type: string })).toMatchObject([{ type: 'ADDED', object: { data: { k: 'REDACTED' } } }, { type: 'MODIFIED', object: { stringData: { p: 'REDACTED' } } }])
      expect([...found].sort()).toEqual(['annotations.last-applied-configuration', 'data.k', 'stringData.p'])
    }
    // the last event without its newline is redacted at the end; an event that never ends is refused
    const r = new SecretRedactor(new Set())
    expect(r.push(Buffer.from('{"metadata":{},"data":{"k":"c2VjcmV0"}}')).length).toBe(0)
    expect(r.end().toString()).toBe('{"metadata":{},"data":{"k":"REDACTED"}}')
    const small = new SecretRedactor(new Set(), 16)
    expect(() => small.push(Buffer.from('{"metadata":{},"data":{"k":"c2VjcmV0"'))).toThrow(/too large/)
  })

  it('a response it cannot read is withheld, not passed on', () => {
    const out = redactSecrets(Buffer.from('k8s\x00protobuf c2VjcmV0'), new Set())
    expect(out.toString()).not.toContain('c2VjcmV0')
    expect(JSON.parse(out.toString())).toMatchObject({ kind: 'Status', code: 502 })
  })
})
