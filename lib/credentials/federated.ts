import { CLIENT_ASSERTION_TYPE } from './client-assertion';
import type { ClientCredential, CredentialFacts } from './credential';

/** The audience Entra expects in federated tokens in the global cloud. */
export const DEFAULT_FEDERATION_AUDIENCE = 'api://AzureADTokenExchange';

/** Lifetime asked of each web identity token: it is sent to Entra at once and never reused. */
export const WEB_IDENTITY_TOKEN_SECONDS = 300;

/**
 * Where the broker gets a JWT that names its own AWS identity (AWS STS GetWebIdentityToken in production; see
 * sts-web-identity.ts). The token is a bearer credential: it is passed to Entra and never logged or stored.
 */
export interface WebIdentityTokenSource {
  getWebIdentityToken(audience: string, durationSeconds: number): Promise<string>;
}

/** Reads iss and sub from a token for explaining a refusal; the token was issued to us, so no check is needed. */
function namedIdentity(token: string): { issuer?: string; subject?: string } {
  try {
    const claims = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as {
      iss?: unknown;
      sub?: unknown;
    };
    return {
      issuer: typeof claims.iss === 'string' ? claims.iss : undefined,
      subject: typeof claims.sub === 'string' ? claims.sub : undefined,
    };
  } catch {
    return {};
  }
}

/**
 * A federated credential (`credential_type: federated`): no secret exists anywhere. For each token request the
 * broker asks for a fresh web identity token of its own role, for `audience`, and sends it as the client
 * assertion; Entra trusts it through a federated identity credential on the app registration.
 */
export function federatedCredential(options: {
  source: () => Promise<WebIdentityTokenSource>;
  audience?: string;
}): ClientCredential {
  const audience = options.audience ?? DEFAULT_FEDERATION_AUDIENCE;
  const facts: CredentialFacts = { type: 'federated', federation: { audience } };
  return {
    method: 'federated_assertion',
    facts,
    clientAuth: () => async (_as, client, body) => {
      const source = await options.source();
      const token = await source.getWebIdentityToken(audience, WEB_IDENTITY_TOKEN_SECONDS);
      facts.federation = { ...namedIdentity(token), audience };
      body.set('client_id', client.client_id);
      body.set('client_assertion_type', CLIENT_ASSERTION_TYPE);
      body.set('client_assertion', token);
    },
  };
}
