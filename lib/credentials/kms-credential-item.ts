import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import type { ServiceConfig, StoredCertificate } from '../service-config';
import type { KmsCredential, KmsSigningKey } from './kms-credential-config';

/**
 * How a kms_certificate service's keys and settings are stored in its services-table item (lib/service-registry.ts
 * owns the rest of the item): `kms: {active: {key_arn, key_created, certificate}, next?: {...}}`, and `key_spec`,
 * `certificate_validity_days` in `config`.
 */
const s = (v: string): AttributeValue => ({ S: v });
const str = (v: AttributeValue | undefined): string => (v && 'S' in v && v.S !== undefined ? v.S : '');

function certificateToItem(c: StoredCertificate): AttributeValue {
  return { M: { pem: s(c.pem), thumbprint_sha256: s(c.thumbprintSha256), not_after: s(c.notAfter) } };
}

function certificateFromItem(m: Record<string, AttributeValue>): StoredCertificate {
  return { pem: str(m.pem), thumbprintSha256: str(m.thumbprint_sha256), notAfter: str(m.not_after) };
}

function keyToItem(key: KmsSigningKey): AttributeValue {
  return {
    M: {
      key_arn: s(key.keyArn),
      key_created: { BOOL: key.keyCreated },
      certificate: certificateToItem(key.certificate),
    },
  };
}

function keyFromItem(m: Record<string, AttributeValue>): KmsSigningKey {
  return {
    keyArn: str(m.key_arn),
    keyCreated: m.key_created?.BOOL === true,
    certificate: certificateFromItem(m.certificate?.M ?? {}),
  };
}

/** The `kms` attribute of a service item. */
export function kmsToItem(kms: KmsCredential): AttributeValue {
  return { M: { active: keyToItem(kms.active), ...(kms.next ? { next: keyToItem(kms.next) } : {}) } };
}

/** Reads the `kms` attribute of a service item. */
export function kmsFromItem(m: Record<string, AttributeValue>): KmsCredential {
  const next = m.next?.M;
  return { active: keyFromItem(m.active?.M ?? {}), ...(next ? { next: keyFromItem(next) } : {}) };
}

/** The kms_certificate settings of a config, as config map entries. */
export function kmsConfigToItem(config: ServiceConfig): Record<string, AttributeValue> {
  return {
    ...(config.key_spec !== undefined ? { key_spec: s(config.key_spec) } : {}),
    ...(config.certificate_validity_days !== undefined
      ? { certificate_validity_days: { N: String(config.certificate_validity_days) } }
      : {}),
  };
}

/** Reads the kms_certificate settings of a config map. */
export function kmsConfigFromItem(
  config: Record<string, AttributeValue>,
): Pick<ServiceConfig, 'key_spec' | 'certificate_validity_days'> {
  const spec = config.key_spec?.S;
  const days = config.certificate_validity_days?.N;
  return {
    ...(spec === 'RSA_2048' || spec === 'RSA_3072' ? { key_spec: spec } : {}),
    ...(days !== undefined ? { certificate_validity_days: Number(days) } : {}),
  };
}
