import type { Logger } from '@aws-lambda-powertools/logger';
import type { CallOptions } from './call-options';
import type { KmsCredential, KmsSigningKey } from './credentials/kms-credential-config';
import { ValidationError } from './errors';
import type { KmsCertificates } from './kms-certificates';
import type { ServiceRecord, StoredCertificate } from './service-config';
import type { ServiceCreation } from './service-create';
import type { ServiceRegistry } from './service-registry';

export interface KmsCertificateRotationDependencies {
  registry: ServiceRegistry;
  kms: KmsCertificates;
  /** Runs the rotation's key under a create-journal intent (ServiceCreation.rotateKey). */
  creation: ServiceCreation;
  logger: Logger;
  now: () => number;
  newId: () => string;
}

/** The result of issuing a next certificate: its public facts, and the service's new version (the ETag). */
export interface IssuedCertificate {
  certificate: StoredCertificate;
  version: string;
}

/** The record of a kms_certificate service after `active_certificate` named a thumbprint, and the key it retires. */
export interface ActivatedCertificate {
  kms: KmsCredential;
  certificate: StoredCertificate;
  retired?: KmsSigningKey;
}

/**
 * Rotation without downtime for kms_certificate services: {@link issueNext} issues the next certificate with a new
 * key while the active one keeps signing; the administrator registers it on the app registration and switches to
 * it with `PATCH {"config": {"active_certificate": "<thumbprint>"}}` ({@link activate}); the replaced
 * broker-created key is then scheduled for deletion.
 */
export class KmsCertificateRotation {
  constructor(private readonly deps: KmsCertificateRotationDependencies) {}

  /**
   * Issues the next certificate of a kms_certificate service (`current`, as read for this write), for a new key. A
   * pending next certificate it replaces has its broker-created key scheduled for deletion. The new key is
   * scheduled for deletion again should the record not be written (a concurrent write makes that one fail).
   */
  async issueNext(current: ServiceRecord, options: CallOptions = {}): Promise<IssuedCertificate> {
    const { name } = current;
    if (current.config.credential_type !== 'kms_certificate' || !current.kms) {
      throw new ValidationError(
        `service "${name}" does not use credential_type "kms_certificate": only the broker's own certificates are issued here`,
      );
    }
    const { active } = current.kms;
    const version = this.deps.newId();
    const next = await this.deps.creation.rotateKey(
      name,
      current.config,
      (key) =>
        this.deps.registry.replace(
          {
            ...current,
            kms: { active, next: key },
            version,
            updated_at: new Date(this.deps.now()).toISOString(),
          },
          current.version,
          options,
        ),
      options,
    );
    if (current.kms.next) await this.deps.kms.retire(current.kms.next, name);
    this.deps.logger.info('audit: next certificate issued', {
      serviceName: name,
      version,
      thumbprintSha256: next.certificate.thumbprintSha256,
      keyArn: next.keyArn,
      replacedPending: current.kms.next?.certificate.thumbprintSha256,
    });
    return { certificate: next.certificate, version };
  }

  /**
   * What `config.active_certificate` makes of a kms_certificate service: the pending certificate becomes the
   * active one (its key signs from now on), and the replaced key is to be retired once the record is written.
   * Naming the active certificate changes nothing; any other thumbprint is a 400 naming the field.
   */
  static activate(current: ServiceRecord, thumbprint: string): ActivatedCertificate {
    const kms = current.kms;
    const refuse = (why: string) =>
      new ValidationError(`config.active_certificate: ${why}`, {
        context: { field: 'config.active_certificate' },
      });
    if (current.config.credential_type !== 'kms_certificate' || !kms) {
      throw refuse('only kms_certificate services have certificates to switch between');
    }
    if (thumbprint === kms.active.certificate.thumbprintSha256) {
      return { kms, certificate: kms.active.certificate };
    }
    if (thumbprint !== kms.next?.certificate.thumbprintSha256) {
      throw refuse(
        kms.next
          ? `no certificate of this service has that thumbprint (active ${kms.active.certificate.thumbprintSha256}, pending ${kms.next.certificate.thumbprintSha256})`
          : `no certificate of this service has that thumbprint, and none is pending: POST /api/v2/system/service/${current.name}/certificate issues the next one`,
      );
    }
    return { kms: { active: kms.next }, certificate: kms.next.certificate, retired: kms.active };
  }
}
