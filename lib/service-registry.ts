import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import type { Cloud } from './authority';
import { delegatedConfigFromItem, delegatedConfigToItem } from './authorization-code/delegated-config';
import type { CallOptions } from './call-options';
import {
  kmsConfigFromItem,
  kmsConfigToItem,
  kmsFromItem,
  kmsToItem,
} from './credentials/kms-credential-item';
import { type DynamoDbOperations, isConditionalCheckFailure } from './dynamodb';
import { ConflictError, type StoreError, storeFailure as wrapStoreFailure } from './errors';
import type { ServiceRecord } from './service-config';
import { SERVICES_TABLE } from './tables';

/** Where service configurations live. The DynamoDB adapter below is the only production implementation. */
export interface ServiceRegistry {
  /** The service, or undefined when no service has that name. Strongly consistent. */
  get(name: string, options?: CallOptions): Promise<ServiceRecord | undefined>;
  /** Stores a new service; ConflictError when the name is taken. */
  create(record: ServiceRecord, options?: CallOptions): Promise<void>;
  /** Replaces a service if its stored version is still `expectedVersion`; ConflictError otherwise. */
  replace(record: ServiceRecord, expectedVersion: string, options?: CallOptions): Promise<void>;
  /** Deletes a service (only at `expectedVersion` when given; ConflictError otherwise). */
  delete(name: string, expectedVersion?: string, options?: CallOptions): Promise<void>;
  /** Every service, ordered by name. */
  list(options?: CallOptions): Promise<ServiceRecord[]>;
}

const s = (v: string): AttributeValue => ({ S: v });

function toItem(r: ServiceRecord): Record<string, AttributeValue> {
  const config: Record<string, AttributeValue> = {
    client_id: s(r.config.client_id),
    tenant_id: s(r.config.tenant_id),
    grant_type: s(r.config.grant_type),
    is_client_credentials: { BOOL: r.config.is_client_credentials },
    scopes: s(r.config.scopes),
  };
  if (r.config.authority_url !== undefined) config.authority_url = s(r.config.authority_url);
  Object.assign(config, delegatedConfigToItem(r.config));
  if (r.config.cloud !== undefined) config.cloud = s(r.config.cloud);
  if (r.config.credential_type !== undefined) config.credential_type = s(r.config.credential_type);
  if (r.config.federation_audience !== undefined)
    config.federation_audience = s(r.config.federation_audience);
  Object.assign(config, kmsConfigToItem(r.config));
  return {
    [SERVICES_TABLE.partitionKey]: s(r.name),
    label: s(r.label),
    description: s(r.description),
    type: s(r.type),
    is_active: { BOOL: r.is_active },
    config: { M: config },
    // Federated services have no secret.
    ...(r.secret ? { secret_arn: s(r.secret.arn), secret_managed: { BOOL: r.secret.managed } } : {}),
    ...(r.certificate
      ? {
          certificate: {
            M: {
              pem: s(r.certificate.pem),
              thumbprint_sha256: s(r.certificate.thumbprintSha256),
              not_after: s(r.certificate.notAfter),
            },
          },
        }
      : {}),
    ...(r.kms ? { kms: kmsToItem(r.kms) } : {}),
    version: s(r.version),
    created_at: s(r.created_at),
    updated_at: s(r.updated_at),
  };
}

function fromItem(item: Record<string, AttributeValue>): ServiceRecord {
  const str = (v: AttributeValue | undefined): string => (v && 'S' in v && v.S !== undefined ? v.S : '');
  const config = item.config?.M ?? {};
  const authority = config.authority_url?.S;
  const certificate = item.certificate?.M;
  return {
    name: str(item[SERVICES_TABLE.partitionKey]),
    label: str(item.label),
    description: str(item.description),
    type: 'oauth_azure_ad',
    is_active: item.is_active?.BOOL === true,
    config: {
      client_id: str(config.client_id),
      tenant_id: str(config.tenant_id),
      grant_type:
        str(config.grant_type) === 'authorization_code' ? 'authorization_code' : 'client_credentials',
      is_client_credentials: config.is_client_credentials?.BOOL === true,
      scopes: str(config.scopes),
      ...(authority !== undefined ? { authority_url: authority } : {}),
      ...delegatedConfigFromItem(config),
      ...(config.cloud?.S !== undefined ? { cloud: config.cloud.S as Cloud } : {}),
      ...(['certificate', 'kms_certificate', 'federated'].includes(config.credential_type?.S ?? '')
        ? { credential_type: config.credential_type?.S as 'certificate' | 'kms_certificate' | 'federated' }
        : {}),
      ...kmsConfigFromItem(config),
      ...(config.federation_audience?.S !== undefined
        ? { federation_audience: config.federation_audience.S }
        : {}),
    },
    ...(item.secret_arn?.S !== undefined
      ? { secret: { arn: item.secret_arn.S, managed: item.secret_managed?.BOOL !== false } }
      : {}),
    ...(certificate
      ? {
          certificate: {
            pem: str(certificate.pem),
            thumbprintSha256: str(certificate.thumbprint_sha256),
            notAfter: str(certificate.not_after),
          },
        }
      : {}),
    ...(item.kms?.M ? { kms: kmsFromItem(item.kms.M) } : {}),
    version: str(item.version),
    created_at: str(item.created_at),
    updated_at: str(item.updated_at),
  };
}

/** Wraps an SDK failure in a StoreError that names the operation (details go to logs, not callers). */
function storeFailure(operation: string, error: unknown): StoreError {
  return wrapStoreFailure(`services table ${operation} failed`, error);
}

/** The condition of an optimistic write: the stored item is still at `expected`. */
function atVersion(expected: string) {
  return {
    ConditionExpression: '#version = :expected',
    ExpressionAttributeNames: { '#version': 'version' },
    ExpressionAttributeValues: { ':expected': s(expected) },
  };
}

/** A failed optimistic write becomes a ConflictError; anything else a StoreError. */
function versionConflictOr(error: unknown, name: string, operation: string): Error {
  if (isConditionalCheckFailure(error)) {
    return new ConflictError(`service "${name}" was changed or deleted by another request; read it again`, {
      cause: error,
    });
  }
  return storeFailure(operation, error);
}

export interface DynamoDbServiceRegistryOptions {
  client: DynamoDbOperations;
  tableName: string;
}

/** ServiceRegistry on a DynamoDB table keyed by service name (see lib/tables.ts). */
export class DynamoDbServiceRegistry implements ServiceRegistry {
  private readonly client: DynamoDbOperations;
  private readonly tableName: string;

  constructor(options: DynamoDbServiceRegistryOptions) {
    this.client = options.client;
    this.tableName = options.tableName;
  }

  async get(name: string, options?: CallOptions): Promise<ServiceRecord | undefined> {
    try {
      const out = await this.client.getItem(
        {
          TableName: this.tableName,
          Key: { [SERVICES_TABLE.partitionKey]: s(name) },
          // A service just changed must not be served with its old configuration by any instance.
          ConsistentRead: true,
        },
        options,
      );
      return out.Item ? fromItem(out.Item) : undefined;
    } catch (error) {
      throw storeFailure('read', error);
    }
  }

  async create(record: ServiceRecord, options?: CallOptions): Promise<void> {
    try {
      await this.client.putItem(
        {
          TableName: this.tableName,
          Item: toItem(record),
          ConditionExpression: 'attribute_not_exists(#name)',
          ExpressionAttributeNames: { '#name': SERVICES_TABLE.partitionKey },
        },
        options,
      );
    } catch (error) {
      if (isConditionalCheckFailure(error)) {
        throw new ConflictError(`a service named "${record.name}" already exists`, { cause: error });
      }
      throw storeFailure('write', error);
    }
  }

  async replace(record: ServiceRecord, expectedVersion: string, options?: CallOptions): Promise<void> {
    try {
      await this.client.putItem(
        {
          TableName: this.tableName,
          Item: toItem(record),
          ...atVersion(expectedVersion),
        },
        options,
      );
    } catch (error) {
      throw versionConflictOr(error, record.name, 'write');
    }
  }

  async delete(name: string, expectedVersion?: string, options?: CallOptions): Promise<void> {
    try {
      await this.client.deleteItem(
        {
          TableName: this.tableName,
          Key: { [SERVICES_TABLE.partitionKey]: s(name) },
          ...(expectedVersion !== undefined ? atVersion(expectedVersion) : {}),
        },
        options,
      );
    } catch (error) {
      throw versionConflictOr(error, name, 'delete');
    }
  }

  async list(options?: CallOptions): Promise<ServiceRecord[]> {
    const records: ServiceRecord[] = [];
    let startKey: Record<string, AttributeValue> | undefined;
    try {
      do {
        const out = await this.client.scan(
          { TableName: this.tableName, ConsistentRead: true, ExclusiveStartKey: startKey },
          options,
        );
        for (const item of out.Items ?? []) {
          // Journal items of creates in progress live in the same table (lib/create-journal.ts).
          if (item[SERVICES_TABLE.partitionKey]?.S?.startsWith(SERVICES_TABLE.journalKeyPrefix)) continue;
          records.push(fromItem(item));
        }
        startKey = out.LastEvaluatedKey;
      } while (startKey);
    } catch (error) {
      throw storeFailure('scan', error);
    }
    return records.sort((a, b) => a.name.localeCompare(b.name));
  }
}
