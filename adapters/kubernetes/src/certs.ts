/**
 * What a kubernetes connection needs to be used: a CA and a serving certificate for the
 * listener (kubectl checks the server's certificate against the CA in its kubeconfig), and a
 * kubeconfig for each caller. ECDSA P-256, made with @peculiar/x509 on Node's WebCrypto.
 */
import { webcrypto, X509Certificate as NodeX509 } from 'node:crypto'
import { isIP } from 'node:net'
import * as x509 from '@peculiar/x509'
import { stringify } from 'yaml'

type CryptoKey = webcrypto.CryptoKey
type CryptoKeyPair = webcrypto.CryptoKeyPair

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0])
const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const

export interface GatewayCertificates {
  readonly caCert: string
  readonly caKey: string
  readonly cert: string
  readonly key: string
}

/** A new CA (10 years) and a serving certificate it signs (`days`), valid for `hosts` (names and IP addresses). */
export async function generateCertificates(hosts: readonly string[], days = 365): Promise<GatewayCertificates> {
  if (hosts.length === 0) throw new Error('name at least one host the gateway is reached at (--host)')
  const now = new Date(Date.now() - 60_000)
  const caKeys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'CN=Gatehouse kubernetes CA',
    keys: caKeys,
    notBefore: now,
    notAfter: new Date(now.getTime() + 3650 * 86_400_000),
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  })
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair
  const cert = await x509.X509CertificateGenerator.create({
    subject: `CN=${hosts[0]}`,
    issuer: ca.subject,
    publicKey: keys.publicKey,
    signingKey: caKeys.privateKey,
    notBefore: now,
    notAfter: new Date(now.getTime() + days * 86_400_000),
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(hosts.map((h) => ({ type: isIP(h) ? 'ip' : 'dns', value: h }))),
      await x509.AuthorityKeyIdentifierExtension.create(ca, false),
    ],
  })
  return { caCert: ca.toString('pem'), caKey: await pemKey(caKeys.privateKey), cert: cert.toString('pem'), key: await pemKey(keys.privateKey) }
}

async function pemKey(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key))
  return `-----BEGIN PRIVATE KEY-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END PRIVATE KEY-----\n`
}

/**
 * A kubeconfig for one caller: the gateway's address, the CA its certificate chains to, and the
 * caller's credential (`IDENTITY:TOKEN` for a gateway token, or a JWT).
 */
export function kubeconfigFor(opts: { server: string; ca: string; credential: string; name?: string; namespace?: string }): string {
  new NodeX509(opts.ca) // a CA that does not parse fails here, not in kubectl
  const name = opts.name ?? 'gatehouse'
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name, cluster: { server: opts.server, 'certificate-authority-data': Buffer.from(opts.ca).toString('base64') } }],
    users: [{ name, user: { token: opts.credential } }],
    contexts: [{ name, context: { cluster: name, user: name, ...(opts.namespace ? { namespace: opts.namespace } : {}) } }],
    'current-context': name,
  })
}
