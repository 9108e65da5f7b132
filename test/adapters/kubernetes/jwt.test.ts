/**
 * A workload JWT (plugin auth-jwt) as kubectl's bearer token on a kubernetes connection: accepted
 * from the issuer for the audience, with the principal and groups from its claims; expired, from an
 * unknown key, or for another audience, refused with 401.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { exportJWK, generateKeyPair, SignJWT } from 'jose'
import { startK8sGateway, type K8sGateway } from '../../fixtures/k8s-gateway.js'

const ISSUER = 'https://ci.example'
const AUDIENCE = 'gatehouse-k8s'
let gw: K8sGateway
let signing: CryptoKey
let stranger: CryptoKey

async function jwt(opts: { aud?: string; exp?: number; key?: CryptoKey } = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000)
  return new SignJWT({ groups: ['agents'] })
    .setProtectedHeader({ alg: 'ES256', kid: 'ci-1' })
    .setIssuer(ISSUER)
    .setAudience(opts.aud ?? AUDIENCE)
    .setSubject('deploy-bot')
    .setIssuedAt(now - 5)
    .setExpirationTime(opts.exp ?? now + 600)
    .sign(opts.key ?? signing)
}

beforeAll(async () => {
  const pair = await generateKeyPair('ES256', { extractable: true })
  signing = pair.privateKey
  stranger = (await generateKeyPair('ES256')).privateKey
  const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'ci-1', alg: 'ES256', use: 'sig' }
  const dir = (await import('node:fs')).mkdtempSync(join((await import('node:os')).tmpdir(), 'gatehouse-k8s-jwks-'))
  const file = join(dir, 'jwks.json')
  writeFileSync(file, JSON.stringify({ keys: [jwk] }))
  gw = await startK8sGateway(
    `      - { id: reads, effect: allow, actions: [k8s.get, k8s.list], match: { k8s.namespace: [default] } }
      - { id: discovery, effect: allow, actions: [k8s.get], match: { k8s.discovery: true } }
`,
    '',
    [],
    {
      plugins: `  - { use: auth-jwt, config: { issuer: "${ISSUER}", audience: ${AUDIENCE}, jwksFile: "${file}", principal: { groupsClaim: groups } } }`,
      connection: '    plugins: { authenticate: [auth-jwt, auth-token], decide: [policy], record: [audit-jsonl] }',
    },
  )
}, 60_000)

afterAll(async () => {
  await gw?.close()
})

describe('workload JWTs on a kubernetes connection', () => {
  it('kubectl with a JWT as its token: the principal is the subject, in the audit', async () => {
    const r = await gw.kubectl(['get', 'pods', '-n', 'default', '-o', 'name'], { credential: await jwt() })
    expect(r.stderr).toBe('')
    expect(r.stdout).toContain('pod/web-1')
    expect(gw.audit().findLast((e) => e.type === 'request' && e.action === 'k8s.list')).toMatchObject({ principal: { id: 'deploy-bot', groups: ['agents'] }, verdict: 'allow' })
  })

  it.each([
    ['expired', () => jwt({ exp: Math.floor(Date.now() / 1000) - 60 })],
    ['signed by an unknown key', () => jwt({ key: stranger })],
    ['for another audience', () => jwt({ aud: 'someone-else' })],
  ])('a JWT %s is refused with 401', async (_what, make) => {
    const r = await gw.raw('/api/v1/namespaces/default/pods', { authorization: `Bearer ${await make()}` })
    expect(r.status).toBe(401)
    expect(r.body).toMatchObject({ kind: 'Status', reason: 'Unauthorized' })
  })
})
