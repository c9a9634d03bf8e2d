import * as z from 'zod';
import type { StoredCertificate } from '../service-config';
import type { SigningKeySpec } from './kms-signing-keys';

/** The key specs a `kms_certificate` service may ask for; the first is the default. */
export const KMS_KEY_SPECS = ['RSA_2048', 'RSA_3072'] as const satisfies readonly SigningKeySpec[];

/** A KMS key ARN (`arn:aws:kms:<region>:<account>:key/<id>`): aliases and bare key ids are refused. */
export const KMS_KEY_ARN_PATTERN = /^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[A-Za-z0-9-]{1,128}$/;

/** Default and longest validity of a certificate the broker issues (days). */
export const DEFAULT_CERTIFICATE_VALIDITY_DAYS = 365;
export const MAX_CERTIFICATE_VALIDITY_DAYS = 730;

/** The config fields of `credential_type: kms_certificate`, as sent to create a service. */
export const kmsConfigShape = {
  kms_key_arn: z
    .string({ error: 'must be a string' })
    .regex(KMS_KEY_ARN_PATTERN, 'must be the ARN of a KMS key (arn:aws:kms:<region>:<account>:key/<id>)')
    .optional()
    .describe(
      'credential_type kms_certificate: an existing asymmetric KMS key (RSA_2048 or RSA_3072, SIGN_VERIFY, enabled) to use instead of a key the broker creates. Only at creation; the broker never deletes it.',
    ),
  key_spec: z
    .enum(KMS_KEY_SPECS, { error: 'must be "RSA_2048" or "RSA_3072"' })
    .optional()
    .describe(
      'credential_type kms_certificate: the spec of the keys the broker creates (RSA_2048 default, or RSA_3072).',
    ),
  certificate_validity_days: z
    .number({ error: 'must be a whole number of days' })
    .int('must be a whole number of days')
    .min(1, 'must be at least 1')
    .max(MAX_CERTIFICATE_VALIDITY_DAYS, `must be at most ${MAX_CERTIFICATE_VALIDITY_DAYS}`)
    .optional()
    .describe(
      `credential_type kms_certificate: validity of each certificate the broker issues, in days (default ${DEFAULT_CERTIFICATE_VALIDITY_DAYS}, at most ${MAX_CERTIFICATE_VALIDITY_DAYS}).`,
    ),
};

/** The same fields in a PATCH (checked by the merged schema), and the switch to a pending certificate. */
export const kmsPatchShape = {
  kms_key_arn: z.string({ error: 'must be a string' }).optional(),
  key_spec: z.string({ error: 'must be a string' }).optional(),
  certificate_validity_days: z.number({ error: 'must be a whole number of days' }).optional(),
  active_certificate: z
    .string({ error: 'must be a string' })
    .max(64, 'must be a certificate thumbprint (base64url SHA-256)')
    .optional()
    .describe(
      'kms_certificate services: the SHA-256 thumbprint of the pending certificate (POST .../certificate) to sign with from now on.',
    ),
};

/** One KMS key of a `kms_certificate` service and the certificate the broker issued for it. */
export interface KmsSigningKey {
  keyArn: string;
  /** True when the broker created the key (it schedules its deletion); false for `kms_key_arn`. */
  keyCreated: boolean;
  certificate: StoredCertificate;
}

/**
 * The keys of a `kms_certificate` service: the active one (its certificate is also the record's `certificate`)
 * and the pending next one a rotation issued, which signs nothing until `active_certificate` names it.
 */
export interface KmsCredential {
  active: KmsSigningKey;
  next?: KmsSigningKey;
}

/**
 * The stored kms_certificate settings of a new service: key_spec (RSA_2048 unless given; with a brought key and no
 * key_spec, the key's own spec is recorded once it has been checked) and certificate_validity_days (365).
 */
export function kmsConfigDefaults(
  config: { key_spec?: SigningKeySpec; certificate_validity_days?: number },
  kmsKeyArn: string | undefined,
): { key_spec?: SigningKeySpec; certificate_validity_days: number } {
  const keySpec = config.key_spec ?? (kmsKeyArn === undefined ? 'RSA_2048' : undefined);
  return {
    ...(keySpec ? { key_spec: keySpec } : {}),
    certificate_validity_days: config.certificate_validity_days ?? DEFAULT_CERTIFICATE_VALIDITY_DAYS,
  };
}

/** The public facts of a service's KMS keys in its view: the brought key's ARN, and a pending next certificate. */
export function kmsView(kms: KmsCredential | undefined): {
  kms_key_arn?: string;
  next_certificate?: string;
  next_certificate_thumbprint_sha256?: string;
  next_certificate_not_after?: string;
} {
  return {
    ...(kms && !kms.active.keyCreated ? { kms_key_arn: kms.active.keyArn } : {}),
    ...(kms?.next
      ? {
          next_certificate: kms.next.certificate.pem,
          next_certificate_thumbprint_sha256: kms.next.certificate.thumbprintSha256,
          next_certificate_not_after: kms.next.certificate.notAfter,
        }
      : {}),
  };
}
