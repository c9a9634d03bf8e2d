import { assertionClaims, assertionHeader, CLIENT_ASSERTION_TYPE } from './client-assertion';
import type { ClientCredential } from './credential';
import type { SigningKeys } from './kms-signing-keys';

/** The public part of a `kms_certificate` credential: the certificate and the KMS key that signs for it. */
export interface KmsCertificate {
  keyArn: string;
  thumbprintSha256: string;
  notAfter: string;
}

const base64url = (bytes: Uint8Array | string) => Buffer.from(bytes).toString('base64url');

/**
 * A certificate credential whose private key never leaves KMS (`credential_type: kms_certificate`). The assertion
 * is the one Entra documents (client-assertion.ts), signed by kms:Sign with RSASSA_PSS_SHA_256 (PS256).
 *
 * Why not jose or oauth4webapi's PrivateKeyJwt: both sign only with a WebCrypto key held in this process, which is
 * exactly what must not exist here. So this is oauth4webapi's client authentication hook, and the one thing done
 * by hand is the JWS compact serialisation (base64url header, claims and signature joined by dots); the tests
 * verify every assertion with jose and the Entra emulator.
 */
export function kmsCertificateCredential(options: {
  keys: SigningKeys;
  certificate: KmsCertificate;
  now?: () => number;
}): ClientCredential {
  const { keys, certificate } = options;
  const now = options.now ?? Date.now;
  return {
    method: 'private_key_jwt',
    facts: {
      type: 'kms_certificate',
      certificateThumbprintSha256: certificate.thumbprintSha256,
      certificateNotAfter: certificate.notAfter,
    },
    clientAuth: () => async (as, client, body) => {
      const header = assertionHeader(certificate.thumbprintSha256);
      const claims = assertionClaims(client.client_id, String(as.token_endpoint), now());
      const signingInput = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
      const signature = await keys.sign(
        certificate.keyArn,
        new TextEncoder().encode(signingInput),
        'RSASSA_PSS_SHA_256',
      );
      body.set('client_id', client.client_id);
      body.set('client_assertion_type', CLIENT_ASSERTION_TYPE);
      body.set('client_assertion', `${signingInput}.${base64url(signature)}`);
    },
  };
}
