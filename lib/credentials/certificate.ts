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

/** The certificate a PEM string holds; undefined when it is not a PEM X.509 certificate. */
function parseCertificate(certificatePem: string): X509Certificate | undefined {
  if (!certificatePem.includes('-----BEGIN CERTIFICATE-----')) return undefined;
  try {
    return new X509Certificate(certificatePem);
  } catch {
    return undefined;
  }
}

/** Reads the public facts of a PEM certificate; throws a ValidationError naming `field` when it is not one. */
export function certificateFacts(certificatePem: string, field = 'config.certificate'): CertificateFacts {
  const certificate = parseCertificate(certificatePem);
  if (!certificate) {
    throw new ValidationError(`${field}: must be a PEM X.509 certificate (-----BEGIN CERTIFICATE-----)`, {
      context: { field },
    });
  }
  return factsOf(certificate);
}

function factsOf(certificate: X509Certificate): CertificateFacts {
  return {
    thumbprintSha256: createHash('sha256').update(certificate.raw).digest('base64url'),
    notBefore: iso(certificate.validFrom),
    notAfter: iso(certificate.validTo),
  };
}

/**
 * Where the imported certificate and key came from, for error messages: the config fields, or the referenced
 * secret (`config.certificate_secret_arn`) that holds both.
 */
function fieldsOf(secretField?: string) {
  return secretField === undefined
    ? { certificate: 'config.certificate', privateKey: 'config.private_key' }
    : {
        certificate: `${secretField} (the secret's certificate)`,
        privateKey: `${secretField} (the secret's private_key)`,
        context: secretField,
      };
}

function refused(message: string, field: string, context?: string, extra: Record<string, unknown> = {}) {
  return new ValidationError(`${field}: ${message}`, { context: { field: context ?? field, ...extra } });
}

function privateKeyOf(privateKeyPem: string, secretField?: string): KeyObject {
  const names = fieldsOf(secretField);
  const invalid = () =>
    refused(
      'must be an unencrypted PEM PKCS#8 private key (-----BEGIN PRIVATE KEY-----)',
      names.privateKey,
      names.context,
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
 * Error messages name the field (or, with `secretField`, the referenced secret) and the rule, never the key.
 */
export function checkImportedCertificate(
  certificatePem: string,
  privateKeyPem: string,
  nowMs: number,
  secretField?: string,
): CertificateFacts {
  const names = fieldsOf(secretField);
  const certificate = parseCertificate(certificatePem);
  if (!certificate) {
    throw refused(
      'must be a PEM X.509 certificate (-----BEGIN CERTIFICATE-----)',
      names.certificate,
      names.context,
    );
  }
  const facts = factsOf(certificate);
  const key = privateKeyOf(privateKeyPem, secretField);
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (key.asymmetricKeyType !== 'rsa' || bits < MIN_RSA_BITS) {
    throw refused(`must be an RSA key of ${MIN_RSA_BITS} bits or more`, names.privateKey, names.context);
  }
  if (!certificate.checkPrivateKey(key)) {
    const other = secretField === undefined ? names.certificate : "the secret's certificate";
    throw refused(`does not match ${other}`, names.privateKey, names.context);
  }
  if (Date.parse(facts.notAfter) <= nowMs) {
    throw refused(`expired on ${facts.notAfter}`, names.certificate, names.context, {
      certificate_not_after: facts.notAfter,
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
