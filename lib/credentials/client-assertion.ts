import { randomUUID } from 'node:crypto';

/**
 * The client assertion Entra documents for private_key_jwt today (certificate credentials): header alg PS256,
 * typ JWT and `x5t#S256`; claims aud = the token endpoint, iss = sub = client_id, a fresh UUID as jti, nbf = iat =
 * now and exp 10 minutes later (as MSAL does). Shared by the imported and the KMS certificate credentials, so both
 * send the same assertion whoever signs it.
 */

/** Lifetime of an assertion; Entra accepts at most 10 minutes. */
export const ASSERTION_LIFETIME_SECONDS = 600;

export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/** The protected header of a certificate assertion. */
export function assertionHeader(thumbprintSha256: string): Record<string, string> {
  return { alg: 'PS256', typ: 'JWT', 'x5t#S256': thumbprintSha256 };
}

/** The claims of a certificate assertion for `clientId` at `tokenEndpoint`, issued at `nowMs`. */
export function assertionClaims(
  clientId: string,
  tokenEndpoint: string,
  nowMs: number,
): Record<string, unknown> {
  const now = Math.floor(nowMs / 1000);
  return {
    aud: tokenEndpoint,
    iss: clientId,
    sub: clientId,
    jti: randomUUID(),
    nbf: now,
    iat: now,
    exp: now + ASSERTION_LIFETIME_SECONDS,
  };
}
