import type * as z from 'zod';
import { ValidationError } from '../errors';

/**
 * Which credential a service uses (`config.credential_type`) and which config fields belong to it. A service has
 * exactly one credential; fields of another type are refused with a 400 naming them.
 */
export const ACCEPTED_CREDENTIAL_TYPES = [
  'client_secret',
  'certificate',
  'kms_certificate',
  'federated',
] as const;
export type AcceptedCredentialType = (typeof ACCEPTED_CREDENTIAL_TYPES)[number];

/** The config fields each credential type owns. */
const FIELDS_OF: Record<AcceptedCredentialType, readonly string[]> = {
  client_secret: ['client_secret', 'client_secret_arn'],
  certificate: ['certificate', 'private_key', 'certificate_secret_arn'],
  kms_certificate: ['kms_key_arn', 'key_spec', 'certificate_validity_days'],
  federated: ['federation_audience'],
};

/** The credential fields as they arrive in a config (after the schema checked their types). */
export interface CredentialFields {
  credential_type?: AcceptedCredentialType;
  client_secret?: string;
  client_secret_arn?: string;
  certificate?: string;
  private_key?: string;
  certificate_secret_arn?: string;
  federation_audience?: string;
  kms_key_arn?: string;
  key_spec?: string;
  certificate_validity_days?: number;
  grant_type?: string;
}

/**
 * zod refinement of a config's credential: fields of another type are refused; on create (`required`) the type's
 * own fields must be complete (one of client_secret / client_secret_arn; certificate with private_key).
 */
export const credentialChoice =
  (required: boolean) =>
  (config: CredentialFields, ctx: z.RefinementCtx): void => {
    const type = config.credential_type ?? 'client_secret';
    const present = (field: string) => (config as Record<string, unknown>)[field] !== undefined;
    if (type === 'federated' && config.grant_type === 'authorization_code') {
      // The delegated function's role is not the subject a federated credential trusts (one subject per broker).
      ctx.addIssue({
        code: 'custom',
        path: ['credential_type'],
        message:
          '"federated" serves the client credentials grant only; with grant_type "authorization_code" use client_secret, certificate or kms_certificate',
      });
    }
    for (const [other, fields] of Object.entries(FIELDS_OF)) {
      if (other === type) continue;
      for (const field of fields.filter(present)) {
        ctx.addIssue({
          code: 'custom',
          path: [field],
          message: `not allowed with credential_type "${type}" (it belongs to "${other}")`,
        });
      }
    }
    if (type === 'client_secret') {
      const both = present('client_secret') && present('client_secret_arn');
      const none = !present('client_secret') && !present('client_secret_arn');
      if (both || (required && none)) {
        ctx.addIssue({
          code: 'custom',
          path: ['client_secret'],
          message: required
            ? 'exactly one of client_secret or client_secret_arn is required'
            : 'send either client_secret or client_secret_arn, not both',
        });
      }
    }
    if (type === 'certificate' && present('certificate_secret_arn')) {
      for (const field of ['certificate', 'private_key'].filter(present)) {
        ctx.addIssue({
          code: 'custom',
          path: [field],
          message: 'send either certificate_secret_arn or certificate and private_key, not both',
        });
      }
    } else if (type === 'certificate' && (required || present('certificate') || present('private_key'))) {
      for (const field of ['certificate', 'private_key'].filter((f) => !present(f))) {
        ctx.addIssue({
          code: 'custom',
          path: [field],
          message:
            'is required with credential_type "certificate" (the PEM certificate and its PKCS#8 key together, or certificate_secret_arn)',
        });
      }
    }
  };

/**
 * A PATCH that changes the credential type must bring the new type's credential: a client secret (or ARN), or a
 * certificate and its key. Federated needs nothing. A kms_certificate service keeps its type (its keys and
 * certificates have their own lifecycle: create a new service to change it), and no service becomes one by PATCH.
 */
export function assertCredentialChange(
  from: AcceptedCredentialType,
  to: AcceptedCredentialType,
  fields: CredentialFields,
): void {
  if (from === to) return;
  if (from === 'kms_certificate' || to === 'kms_certificate') {
    throw new ValidationError(
      `config.credential_type: cannot change from "${from}" to "${to}" by PATCH: kms_certificate is chosen when a service is created (create a new service, then delete this one)`,
      { context: { field: 'config.credential_type' } },
    );
  }
  if (
    to === 'client_secret' &&
    fields.client_secret === undefined &&
    fields.client_secret_arn === undefined
  ) {
    throw new ValidationError(
      'config.client_secret: client_secret or client_secret_arn is required when credential_type becomes "client_secret"',
      { context: { field: 'config.client_secret' } },
    );
  }
  if (
    to === 'certificate' &&
    (fields.certificate === undefined || fields.private_key === undefined) &&
    fields.certificate_secret_arn === undefined
  ) {
    throw new ValidationError(
      'config.certificate: certificate and private_key (or certificate_secret_arn) are required when credential_type becomes "certificate"',
      { context: { field: 'config.certificate' } },
    );
  }
}
