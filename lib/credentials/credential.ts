import type { ClientAuth } from 'oauth4webapi';
import { StoreError } from '../errors';
import { clientSecretCredential } from './client-secret';

/**
 * How the broker proves its identity to Entra for one service. Each credential type (client secret today;
 * certificate `private_key_jwt` and federated assertions next) is a module in this folder that produces one.
 */
export interface ClientCredential {
  /** The OAuth client authentication method, for logs and metrics (never the credential itself). */
  readonly method: 'client_secret_post' | 'client_secret_basic' | 'private_key_jwt';
  /** The oauth4webapi client authentication that adds the credential to a token request. */
  clientAuth(): ClientAuth;
}

/**
 * The JSON document the broker keeps in Secrets Manager for a service. `client_secret` is the only field
 * today; other credential types add their own fields (e.g. a PEM key and certificate thumbprint).
 */
export interface StoredCredential {
  client_secret?: string;
}

/** Serialises a client secret into the stored credential document. */
export function storedClientSecret(clientSecret: string): string {
  return JSON.stringify({ client_secret: clientSecret } satisfies StoredCredential);
}

/**
 * Builds the credential from a secret's stored value: the broker's JSON document, or a plain string (a secret
 * created by hand holding only the client secret). Throws a StoreError (not shown to callers) when unusable.
 */
export function credentialFromSecret(secretValue: string): ClientCredential {
  if (secretValue.trimStart().startsWith('{')) {
    let doc: StoredCredential;
    try {
      doc = JSON.parse(secretValue) as StoredCredential;
    } catch {
      throw new StoreError('the service secret is not valid JSON');
    }
    if (typeof doc.client_secret === 'string' && doc.client_secret.length > 0) {
      return clientSecretCredential(doc.client_secret);
    }
    throw new StoreError('the service secret has no client_secret field');
  }
  if (secretValue.length === 0) throw new StoreError('the service secret is empty');
  return clientSecretCredential(secretValue);
}
