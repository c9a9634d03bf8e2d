import { createHash, createPrivateKey, type KeyObject, webcrypto, X509Certificate } from 'node:crypto';
import { type CryptoKey, modifyAssertion, PrivateKeyJwt } from 'oauth4webapi';
import { ValidationError } from '../errors';
import { assertionClaims, assertionHeader } from './client-assertion';
import type { ClientCredential } from './credential';

/** Entra requires RSA keys of at least 2048 bits for certificate credentials. */
export const MIN_RSA_BITS = 2048;

/** The public facts of a certificate, as GET and listings show them. */
export interface CertificateFacts {
  /** base64url SHA-256 of the DER (what `x5t#S256` carries and Entra shows). */
  thumbprintSha256: string;
  /** ISO 8601. */
  notBefore: string;
  /** ISO 8601. */
  notAfter: string;
}

const iso = (date: string) => new Date(Date.parse(date)).toISOString();

/** Reads the public facts of a PEM certificate; throws a ValidationError naming `field` when it is not one. */
export function certificateFacts(certificatePem: string, field = 'config.certificate'): CertificateFacts {
  let certificate: X509Certificate;
  try {
    if (!certificatePem.includes('-----BEGIN CERTIFICATE-----')) throw new Error('not PEM');
    certificate = new X509Certificate(certificatePem);
  } catch {
    throw new ValidationError(`${field}: must be a PEM X.509 certificate (-----BEGIN CERTIFICATE-----)`, {
      context: { field },
    });
  }
  return {
    thumbprintSha256: createHash('sha256').update(certificate.raw).digest('base64url'),
    notBefore: iso(certificate.validFrom),
    notAfter: iso(certificate.validTo),
  };
}

function privateKeyOf(privateKeyPem: string): KeyObject {
  const invalid = () =>
    new ValidationError(
      'config.private_key: must be an unencrypted PEM PKCS#8 private key (-----BEGIN PRIVATE KEY-----)',
      { context: { field: 'config.private_key' } },
    );
  if (!privateKeyPem.includes('-----BEGIN PRIVATE KEY-----')) throw invalid();
  try {
    return createPrivateKey({ key: privateKeyPem, format: 'pem' });
  } catch {
    // The parser's message is not passed on: it could quote the key.
    throw invalid();
  }
}

/**
 * Checks an imported certificate credential as creation requires: a PEM certificate, a PKCS#8 RSA key of 2048
 * bits or more that matches it, and a certificate not yet expired at `nowMs`. Returns the certificate's facts.
 * Error messages name the field and the rule, never the key.
 */
export function checkImportedCertificate(
  certificatePem: string,
  privateKeyPem: string,
  nowMs: number,
): CertificateFacts {
  const facts = certificateFacts(certificatePem);
  const key = privateKeyOf(privateKeyPem);
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (key.asymmetricKeyType !== 'rsa' || bits < MIN_RSA_BITS) {
    throw new ValidationError(`config.private_key: must be an RSA key of ${MIN_RSA_BITS} bits or more`, {
      context: { field: 'config.private_key' },
    });
  }
  if (!new X509Certificate(certificatePem).checkPrivateKey(key)) {
    throw new ValidationError('config.private_key: does not match config.certificate', {
      context: { field: 'config.private_key' },
    });
  }
  if (Date.parse(facts.notAfter) <= nowMs) {
    throw new ValidationError(`config.certificate: expired on ${facts.notAfter}`, {
      context: { field: 'config.certificate', certificate_not_after: facts.notAfter },
    });
  }
  return facts;
}

/**
 * A certificate credential whose private key was imported (`credential_type: certificate`): oauth4webapi's
 * private_key_jwt, with the assertion reshaped to what Entra documents (PS256 with `x5t#S256`, aud = the token
 * endpoint, a UUID jti, 10 minutes). The key stays in the closure; it is imported into WebCrypto on first use.
 */
export function certificateCredential(options: {
  certificatePem: string;
  privateKeyPem: string;
  now?: () => number;
}): ClientCredential {
  const facts = certificateFacts(options.certificatePem);
  const now = options.now ?? Date.now;
  let signingKey: Promise<CryptoKey> | undefined;
  return {
    method: 'private_key_jwt',
    facts: {
      type: 'certificate',
      certificateThumbprintSha256: facts.thumbprintSha256,
      certificateNotAfter: facts.notAfter,
    },
    clientAuth: () => async (as, client, body, headers) => {
      signingKey ??= webcrypto.subtle.importKey(
        'pkcs8',
        createPrivateKey(options.privateKeyPem).export({ format: 'der', type: 'pkcs8' }),
        { name: 'RSA-PSS', hash: 'SHA-256' },
        false,
        ['sign'],
      ) as Promise<CryptoKey>;
      const auth = PrivateKeyJwt(await signingKey, {
        [modifyAssertion]: (header, payload) => {
          for (const name of Object.keys(header)) delete header[name];
          Object.assign(header, assertionHeader(facts.thumbprintSha256));
          Object.assign(payload, assertionClaims(client.client_id, String(as.token_endpoint), now()));
        },
      });
      await auth(as, client, body, headers);
    },
  };
}
