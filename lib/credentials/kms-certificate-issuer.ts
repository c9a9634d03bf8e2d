import 'reflect-metadata';
import { randomBytes, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import type { SigningKeys } from './kms-signing-keys';

const DAY_MS = 24 * 60 * 60 * 1000;
const SHA256_WITH_RSA = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };

/**
 * Issues a self-signed X.509 certificate for a KMS key (subject CN = `commonName`), signed through kms:Sign so the
 * private key never leaves KMS. Built with @peculiar/x509 over a WebCrypto provider whose `sign` is KMS's
 * (RSASSA_PKCS1_V1_5_SHA_256: sha256WithRSAEncryption); everything else is Node's WebCrypto.
 *
 * This module loads @peculiar/x509 and its ASN.1 stack: only the admin function imports it, and only when it
 * issues a certificate.
 */
export async function issueKmsCertificate(options: {
  keys: SigningKeys;
  keyArn: string;
  commonName: string;
  validityDays: number;
  now: number;
}): Promise<string> {
  const { keys, keyArn } = options;
  const subtle = webcrypto.subtle;
  const kmsBacked = {
    getRandomValues: webcrypto.getRandomValues.bind(webcrypto),
    randomUUID: webcrypto.randomUUID.bind(webcrypto),
    subtle: new Proxy(subtle, {
      get(target, property) {
        if (property === 'sign') {
          return async (_algorithm: unknown, _key: unknown, data: ArrayBuffer | ArrayBufferView) => {
            const bytes = ArrayBuffer.isView(data)
              ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
              : new Uint8Array(data);
            const signature = await keys.sign(keyArn, bytes, 'RSASSA_PKCS1_V1_5_SHA_256');
            return signature.buffer.slice(signature.byteOffset, signature.byteOffset + signature.byteLength);
          };
        }
        const value = Reflect.get(target, property);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    }),
  } as unknown as Parameters<typeof x509.X509CertificateGenerator.create>[1];

  const notBefore = new Date(options.now);
  const name = new x509.Name([{ CN: [options.commonName] }]).toString();
  const certificate = await x509.X509CertificateGenerator.create(
    {
      serialNumber: randomBytes(16)
        .toString('hex')
        .replace(/^[89a-f]/, '1'),
      subject: name,
      issuer: name,
      notBefore,
      notAfter: new Date(options.now + options.validityDays * DAY_MS),
      publicKey: await keys.publicKey(keyArn),
      // Only its algorithm is read: the signature itself comes from KMS through the provider above.
      signingKey: { algorithm: SHA256_WITH_RSA } as unknown as webcrypto.CryptoKey,
      signingAlgorithm: SHA256_WITH_RSA,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
      ],
    },
    kmsBacked,
  );
  return certificate.toString('pem');
}
