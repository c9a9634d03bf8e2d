import type { Logger } from '@aws-lambda-powertools/logger';
import { certificateFacts } from './credentials/certificate';
import {
  DEFAULT_CERTIFICATE_VALIDITY_DAYS,
  KMS_KEY_SPECS,
  type KmsSigningKey,
} from './credentials/kms-credential-config';
import type { SigningKeySpec, SigningKeys } from './credentials/kms-signing-keys';
import { BROKER_INSTANCE_TAG } from './credentials/kms-tags';
import { StoreError, storeFailure, ValidationError } from './errors';
import type { ServiceConfig, ServiceRecord } from './service-config';

/**
 * Days between scheduling a broker-created key's deletion and KMS deleting it: KMS's minimum waiting period
 * (7 to 30 days). Until then `aws kms cancel-key-deletion` brings the key back.
 */
export const KMS_KEY_DELETION_WINDOW_DAYS = 7;

/** Issues a self-signed certificate for a KMS key (lib/credentials/kms-certificate-issuer.ts). */
export type IssueKmsCertificate = (options: {
  keys: SigningKeys;
  keyArn: string;
  commonName: string;
  validityDays: number;
  now: number;
}) => Promise<string>;

export interface KmsCertificatesOptions {
  keys: SigningKeys;
  /**
   * Loads the issuer on first use: it brings @peculiar/x509 and its ASN.1 stack, which only the admin function
   * needs, and only when it issues a certificate.
   */
  issuer: () => Promise<IssueKmsCertificate>;
  logger: Logger;
  now: () => number;
  /** This broker's instance id: a key an administrator brings must carry it as its `token-broker:broker` tag. */
  brokerId: string;
}

/** What a kms_certificate service asks for: the key the administrator brought, or the spec of one to create. */
export interface KeyRequest {
  keyArn?: string;
  keySpec: SigningKeySpec;
  validityDays: number;
}

/** KMS's answers that mean "this key cannot be used by the broker", as opposed to KMS being unavailable. */
const UNUSABLE_KEY_ERRORS = [
  'NotFoundException',
  'AccessDeniedException',
  'InvalidArnException',
  'KMSInvalidStateException',
];

/** The KMS keys of kms_certificate services: checks brought keys, creates keys, issues certificates, retires keys. */
export class KmsCertificates {
  constructor(private readonly options: KmsCertificatesOptions) {}

  /** The key request of a stored kms_certificate service (for a rotation: always a new key). */
  static rotationRequest(config: ServiceConfig): KeyRequest {
    return {
      keySpec: config.key_spec ?? 'RSA_2048',
      validityDays: config.certificate_validity_days ?? DEFAULT_CERTIFICATE_VALIDITY_DAYS,
    };
  }

  /**
   * Checks a key the administrator brought (`config.kms_key_arn`): it must exist, be usable by the broker, be an
   * enabled RSA_2048 or RSA_3072 SIGN_VERIFY key, and match `config.key_spec` when one is given. Returns its spec.
   * A refusal is a ValidationError naming the field.
   */
  async checkKey(keyArn: string, wantedSpec?: SigningKeySpec): Promise<SigningKeySpec> {
    const refuse = (why: string) =>
      new ValidationError(`config.kms_key_arn: ${why}`, { context: { field: 'config.kms_key_arn' } });
    let description: Awaited<ReturnType<SigningKeys['describe']>>;
    try {
      description = await this.options.keys.describe(keyArn);
    } catch (error) {
      if (UNUSABLE_KEY_ERRORS.includes((error as Error).name)) {
        throw refuse(
          `KMS refused to describe this key (${(error as Error).name}): it does not exist in this account and region, or the broker may not use it (a key you bring must carry the tag ${BROKER_INSTANCE_TAG}=${this.options.brokerId})`,
        );
      }
      throw storeFailure('KMS DescribeKey failed', error);
    }
    const { keySpec, keyUsage, keyState } = description;
    if (keyUsage !== 'SIGN_VERIFY' || !KMS_KEY_SPECS.includes(keySpec as SigningKeySpec)) {
      throw refuse(
        `must be an asymmetric RSA_2048 or RSA_3072 key with key usage SIGN_VERIFY (this key is ${keySpec ?? 'of unknown spec'} with ${keyUsage ?? 'unknown usage'})`,
      );
    }
    if (keyState !== 'Enabled') throw refuse(`the key is ${keyState ?? 'not enabled'}; it must be Enabled`);
    if (wantedSpec !== undefined && wantedSpec !== keySpec) {
      throw refuse(`the key is ${keySpec}, but config.key_spec asks for ${wantedSpec}`);
    }
    return keySpec as SigningKeySpec;
  }

  /**
   * The key and certificate of a kms_certificate service: uses the brought key, or creates one tagged for the
   * service, and issues a self-signed certificate for it (CN = the service name). Should anything fail after
   * CreateKey, that key's deletion is scheduled before the error goes on. `onKeyCreated` runs right after
   * CreateKey (the create journal notes the key there, for a create cut off later).
   */
  async provision(
    service: string,
    request: KeyRequest,
    onKeyCreated?: (keyArn: string) => Promise<void>,
  ): Promise<KmsSigningKey> {
    const { keys } = this.options;
    const keyCreated = request.keyArn === undefined;
    let keyArn = request.keyArn;
    try {
      keyArn ??= await keys.create(service, request.keySpec);
      if (keyCreated) await onKeyCreated?.(keyArn);
      const issue = await this.options.issuer();
      const pem = await issue({
        keys,
        keyArn,
        commonName: service,
        validityDays: request.validityDays,
        now: this.options.now(),
      });
      const facts = certificateFacts(pem);
      return {
        keyArn,
        keyCreated,
        certificate: { pem: pem.trim(), thumbprintSha256: facts.thumbprintSha256, notAfter: facts.notAfter },
      };
    } catch (error) {
      if (keyCreated && keyArn !== undefined) await this.retire({ keyArn, keyCreated }, service);
      if (error instanceof StoreError || error instanceof ValidationError) throw error;
      throw storeFailure('issuing the certificate through KMS failed', error);
    }
  }

  /**
   * Schedules the deletion of a key the broker created ({@link KMS_KEY_DELETION_WINDOW_DAYS}); never of a key the
   * administrator brought. A key already pending deletion counts as done. Failures are logged with the key ARN
   * (the key is tagged with its service) and reported as false; nothing is thrown.
   */
  async retire(key: Pick<KmsSigningKey, 'keyArn' | 'keyCreated'>, service: string): Promise<boolean> {
    if (!key.keyCreated) return true;
    try {
      await this.options.keys.scheduleDeletion(key.keyArn, KMS_KEY_DELETION_WINDOW_DAYS);
    } catch (error) {
      if ((error as Error).name === 'KMSInvalidStateException') return true;
      this.options.logger.error('orphan KMS key left behind: schedule its deletion', {
        serviceName: service,
        keyArn: key.keyArn,
        error,
      });
      return false;
    }
    this.options.logger.info('audit: KMS key scheduled for deletion', {
      serviceName: service,
      keyArn: key.keyArn,
      pendingWindowInDays: KMS_KEY_DELETION_WINDOW_DAYS,
    });
    return true;
  }

  /** Retires every broker-created key of a service (a deleted service). */
  async retireAll(record: ServiceRecord): Promise<void> {
    const keys = [record.kms?.active, record.kms?.next].filter((k) => k !== undefined);
    await Promise.all(keys.map((key) => this.retire(key, record.name)));
  }
}
