import { ClientSecretPost } from 'oauth4webapi';
import type { ClientCredential } from './credential';

/**
 * A client secret sent in the request body (client_secret_post), as Entra documents for the client
 * credentials grant. The secret stays inside the closure: it is not a property that could be logged.
 */
export function clientSecretCredential(clientSecret: string): ClientCredential {
  return {
    method: 'client_secret_post',
    facts: { type: 'client_secret' },
    clientAuth: () => ClientSecretPost(clientSecret),
  };
}
