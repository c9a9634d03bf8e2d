import type {
  CreateSecretCommandInput,
  CreateSecretCommandOutput,
  DeleteSecretCommandInput,
  DeleteSecretCommandOutput,
  DescribeSecretCommandInput,
  DescribeSecretCommandOutput,
  GetSecretValueCommandInput,
  GetSecretValueCommandOutput,
} from '@aws-sdk/client-secrets-manager';
import type { AwsAnswer, CallOptions } from './call-options';
import { isAwsError, storeFailure } from './errors';

/**
 * The Secrets Manager operations the broker uses, with the SDK's shapes (dates as in the JSON protocol: epoch
 * seconds). The one production adapter is functions/aws-json.ts's JSON-protocol client (functions/aws-clients.ts).
 */
export interface SecretsManagerOperations {
  createSecret(
    input: CreateSecretCommandInput,
    options?: CallOptions,
  ): Promise<AwsAnswer<CreateSecretCommandOutput>>;
  getSecretValue(
    input: GetSecretValueCommandInput,
    options?: CallOptions,
  ): Promise<AwsAnswer<GetSecretValueCommandOutput>>;
  describeSecret(
    input: DescribeSecretCommandInput,
    options?: CallOptions,
  ): Promise<Omit<AwsAnswer<DescribeSecretCommandOutput>, 'DeletedDate'> & { DeletedDate?: unknown }>;
  deleteSecret(
    input: DeleteSecretCommandInput,
    options?: CallOptions,
  ): Promise<AwsAnswer<DeleteSecretCommandOutput>>;
}

/** What DescribeSecret tells about a secret: never its value. */
export interface SecretDescription {
  /** The complete ARN (with the 6-character suffix Secrets Manager adds), whatever form the caller asked with. */
  arn: string;
  name: string;
  tags: Record<string, string>;
  /** True when the secret is scheduled for deletion. */
  deleted: boolean;
}

/** Where client secrets live. The Secrets Manager adapter below is the only production implementation. */
export interface SecretStore {
  /** Creates a secret and returns its ARN. */
  create(name: string, value: string, tags: Record<string, string>, options?: CallOptions): Promise<string>;
  /** The current value of a secret. */
  read(arn: string, options?: CallOptions): Promise<string>;
  /** The secret's ARN, name and tags (DescribeSecret: no value is read); undefined when there is no such secret. */
  describe(arn: string, options?: CallOptions): Promise<SecretDescription | undefined>;
  /**
   * Deletes a secret (by ARN or name): with `recoveryWindowDays` it can be restored until then; without it, at
   * once (used to undo a secret whose service could not be stored, so nothing is left behind). A secret that
   * does not exist counts as deleted.
   */
  delete(arn: string, options?: CallOptions & { recoveryWindowDays?: number }): Promise<void>;
}

export interface SecretsManagerSecretStoreOptions {
  client: SecretsManagerOperations;
  /** KMS key for new secrets; Secrets Manager's AWS managed key when undefined. */
  kmsKeyId?: string;
}

/** SecretStore on AWS Secrets Manager. Secret values never appear in its errors. */
export class SecretsManagerSecretStore implements SecretStore {
  private readonly client: SecretsManagerOperations;
  private readonly kmsKeyId?: string;

  constructor(options: SecretsManagerSecretStoreOptions) {
    this.client = options.client;
    this.kmsKeyId = options.kmsKeyId;
  }

  async create(
    name: string,
    value: string,
    tags: Record<string, string>,
    options?: CallOptions,
  ): Promise<string> {
    try {
      const out = await this.client.createSecret(
        {
          Name: name,
          SecretString: value,
          KmsKeyId: this.kmsKeyId,
          Description: 'Entra client credential managed by Token Broker',
          Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })),
        },
        options,
      );
      if (!out.ARN) throw new Error('CreateSecret returned no ARN');
      return out.ARN;
    } catch (error) {
      throw storeFailure('creating the service secret failed', error);
    }
  }

  async read(arn: string, options?: CallOptions): Promise<string> {
    try {
      const out = await this.client.getSecretValue({ SecretId: arn }, options);
      if (out.SecretString === undefined) throw new Error('secret has no SecretString');
      return out.SecretString;
    } catch (error) {
      throw storeFailure('reading the service secret failed', error);
    }
  }

  async describe(arn: string, options?: CallOptions): Promise<SecretDescription | undefined> {
    try {
      const out = await this.client.describeSecret({ SecretId: arn }, options);
      return {
        arn: out.ARN ?? '',
        name: out.Name ?? '',
        tags: Object.fromEntries((out.Tags ?? []).map((t) => [t.Key ?? '', t.Value ?? ''])),
        deleted: out.DeletedDate !== undefined,
      };
    } catch (error) {
      if (isAwsError(error, 'ResourceNotFoundException')) return undefined;
      throw storeFailure('describing the service secret failed', error);
    }
  }

  async delete(arn: string, options?: CallOptions & { recoveryWindowDays?: number }): Promise<void> {
    try {
      await this.client.deleteSecret(
        options?.recoveryWindowDays !== undefined
          ? { SecretId: arn, RecoveryWindowInDays: options.recoveryWindowDays }
          : { SecretId: arn, ForceDeleteWithoutRecovery: true },
        options,
      );
    } catch (error) {
      // Already gone: deleting is idempotent (an undo may run twice, or after a partial create).
      if (isAwsError(error, 'ResourceNotFoundException')) return;
      throw storeFailure('deleting the service secret failed', error);
    }
  }
}
