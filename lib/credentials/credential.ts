import type { ClientAuth } from 'oauth4webapi';
import { StoreError } from '../errors';
import { certificateCredential } from './certificate';
import { clientSecretCredential } from './client-secret';
import type { AcceptedCredentialType } from './credential-config';

/**
 * Public facts about a credential, which the broker uses to tell an administrator what to fix when Entra refuses
 * it. Never secret: a certificate's thumbprint and expiry, the issuer/subject/audience a federated token carried.
 */
export interface CredentialFacts {
  type: AcceptedCredentialType;
  /** base64url SHA-256 of the certificate's DER, as Entra shows it and as `x5t#S256` carries it. */
  certificateThumbprintSha256?: string;
  /** ISO 8601 end of the certificate's validity. */
  certificateNotAfter?: string;
  /** What the last federated token named; Entra matches these against the app's federated credentials. */
  federation?: { issuer?: string; subject?: string; audience: string };
}

/**
 * How the broker proves its identity to Entra for one service. Each credential type is a module in this folder
 * that produces one: client-secret.ts, certificate.ts (imported key), kms-certificate.ts (key in KMS),
 * federated.ts (AWS STS web identity token).
 */
export interface ClientCredential {
  /** The OAuth client authentication method, for logs and metrics (never the credential itself). */
  readonly method: 'client_secret_post' | 'client_secret_basic' | 'private_key_jwt' | 'federated_assertion';
  /** Public facts for explaining Entra's refusals; read after a request (a federated token is fetched then). */
  readonly facts: CredentialFacts;
  /** The oauth4webapi client authentication that adds the credential to a token request. */
  clientAuth(): ClientAuth;
}

/**
 * The JSON document the broker keeps in Secrets Manager for a service: `client_secret` for a client secret, or
 * `certificate` (PEM) and `private_key` (PEM PKCS#8) for an imported certificate.
 */
export interface StoredCredential {
  client_secret?: string;
  certificate?: string;
  private_key?: string;
}

/** Serialises a client secret into the stored credential document. */
export function storedClientSecret(clientSecret: string): string {
  return JSON.stringify({ client_secret: clientSecret } satisfies StoredCredential);
}

/** Serialises an imported certificate and its private key into the stored credential document. */
export function storedCertificate(certificatePem: string, privateKeyPem: string): string {
  return JSON.stringify({
    certificate: certificatePem,
    private_key: privateKeyPem,
  } satisfies StoredCredential);
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
    if (typeof doc.certificate === 'string' && typeof doc.private_key === 'string') {
      return certificateCredential({ certificatePem: doc.certificate, privateKeyPem: doc.private_key });
    }
    throw new StoreError('the service secret has neither a client_secret nor a certificate and private_key');
  }
  if (secretValue.length === 0) throw new StoreError('the service secret is empty');
  return clientSecretCredential(secretValue);
}
