import {
  CreateSecretCommand,
  DeleteSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  ResourceNotFoundException,
  type SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { StoreError } from './errors';

/** Where client secrets live. The Secrets Manager adapter below is the only production implementation. */
export interface SecretStore {
  /** Creates a secret and returns its ARN. */
  create(name: string, value: string, tags: Record<string, string>): Promise<string>;
  /** The current value of a secret. */
  read(arn: string): Promise<string>;
  /** Whether the secret exists and is not scheduled for deletion (DescribeSecret: no value is read). */
  exists(arn: string): Promise<boolean>;
  /**
   * Deletes a secret: with `recoveryWindowDays` it can be restored until then; without it, at once (used to
   * undo a secret whose service could not be stored, so nothing is left behind).
   */
  delete(arn: string, options?: { recoveryWindowDays?: number }): Promise<void>;
}

export interface SecretsManagerSecretStoreOptions {
  client: SecretsManagerClient;
  /** KMS key for new secrets; Secrets Manager's AWS managed key when undefined. */
  kmsKeyId?: string;
}

/** SecretStore on AWS Secrets Manager. Secret values never appear in its errors. */
export class SecretsManagerSecretStore implements SecretStore {
  private readonly client: SecretsManagerClient;
  private readonly kmsKeyId?: string;

  constructor(options: SecretsManagerSecretStoreOptions) {
    this.client = options.client;
    this.kmsKeyId = options.kmsKeyId;
  }

  async create(name: string, value: string, tags: Record<string, string>): Promise<string> {
    try {
      const out = await this.client.send(
        new CreateSecretCommand({
          Name: name,
          SecretString: value,
          KmsKeyId: this.kmsKeyId,
          Description: 'Entra client credential managed by Token Broker',
          Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })),
        }),
      );
      if (!out.ARN) throw new Error('CreateSecret returned no ARN');
      return out.ARN;
    } catch (error) {
      throw new StoreError('creating the service secret failed', { cause: error });
    }
  }

  async read(arn: string): Promise<string> {
    try {
      const out = await this.client.send(new GetSecretValueCommand({ SecretId: arn }));
      if (out.SecretString === undefined) throw new Error('secret has no SecretString');
      return out.SecretString;
    } catch (error) {
      throw new StoreError('reading the service secret failed', { cause: error });
    }
  }

  async exists(arn: string): Promise<boolean> {
    try {
      const out = await this.client.send(new DescribeSecretCommand({ SecretId: arn }));
      return out.DeletedDate === undefined;
    } catch (error) {
      if (error instanceof ResourceNotFoundException) return false;
      throw new StoreError('describing the service secret failed', { cause: error });
    }
  }

  async delete(arn: string, options?: { recoveryWindowDays?: number }): Promise<void> {
    try {
      await this.client.send(
        new DeleteSecretCommand(
          options?.recoveryWindowDays !== undefined
            ? { SecretId: arn, RecoveryWindowInDays: options.recoveryWindowDays }
            : { SecretId: arn, ForceDeleteWithoutRecovery: true },
        ),
      );
    } catch (error) {
      throw new StoreError('deleting the service secret failed', { cause: error });
    }
  }
}
